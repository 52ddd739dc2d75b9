"""Capability sets: Docker's default, `--cap-add`, `--cap-drop`, `--privileged`.

What the kernel does with capabilities (capabilities(7)), and what bit us:

- A thread has five sets. *Bounding* caps what can ever be gained again, in particular
  what uid 0 regains at execve (root's file capabilities are "everything", masked by the
  bounding set). *Permitted* is what the thread may make *effective*, which is what the
  kernel checks. *Inheritable* and *ambient* carry caps across execve to programs that are
  not root: ambient to any program, inheritable to files whose inheritable file caps
  match.
- In a user namespace, caps count only there: CAP_SYS_ADMIN of container root is enough
  for sethostname on the container's uts namespace and nothing on the host's. The new
  namespace's creator starts with full permitted, effective and bounding sets whatever
  its parent had (`set_cred_user_ns`), so the container's sets are exactly what `apply`
  leaves, never less.
- Docker gives a container the same set as bounding, permitted and effective, and empty
  inheritable and ambient sets. Inheritable used to be the set too, until CVE-2022-24769
  (Docker 20.10.14; Podman CVE-2022-27649, runc CVE-2022-29162): with it, a non-root user
  in the container gained a program's inheritable file caps at execve. We leave it empty.
- Dropping a cap from the bounding set (PR_CAPBSET_DROP) needs CAP_SETPCAP in the
  effective set, so the bounding set is cut first (`limit_bounding`) and capset comes
  after (`set_current`): a set without CAP_SETPCAP could otherwise not finish the job.
- `setresuid` from uid 0 to ids that are all non-zero clears the permitted, effective and
  ambient sets (unless PR_SET_KEEPCAPS), so a container process with a non-root `-u` runs
  with no caps, as in Docker (where they are lost at execve instead); its bounding set
  still limits what a setuid-root program or a file with caps could give back.
- Caps are per thread: these calls are for the single-threaded process about to execve.

Docker's rules for the set (moby `oci/caps.TweakCapabilities`), kept here:

- `--privileged`: every capability the kernel has, whatever `--cap-add`/`--cap-drop` say;
- `--cap-add ALL`: every capability but the dropped ones (so `--cap-add ALL --cap-drop ALL`
  is every capability: ALL in the drops names no capability to remove);
- `--cap-drop ALL`: exactly the added ones;
- otherwise Docker's default set, minus the drops, plus the adds: a capability both added
  and dropped is kept (moby removes the drops from the default, then appends the adds).

Names are accepted as Docker accepts them (`chown`, `CHOWN`, `cap_chown`, `CAP_CHOWN`) and
validated even with `--privileged`, where moby ignores them: a typo is an error, not a
silently ignored flag. A known capability the running kernel lacks (above
/proc/sys/kernel/cap_last_cap) is refused, as moby refuses it ("not supported by your
kernel").

Pure except `last_cap` (reads /proc) and `limit_bounding`, `set_current` and `apply`,
which change the calling thread for good. Order for a process about to run the
container's command as root of its user namespace (rootless/launch/become.py):
`limit_bounding` (needs CAP_SETPCAP), then the switch to the container's user if any,
then `set_current` (the container's set for uid 0, nothing for any other uid). `apply` is
the two parts without a switch.
"""

from __future__ import annotations

from rootless import syscalls
from rootless.errors import HostError, UsageError

TYPE_CHECKING = False  # `exec` imports this module: no typing (rootless.record)
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Final

# <linux/capability.h>: the name of capability N is NAMES[N].
NAMES: Final[tuple[str, ...]] = (
    "CAP_CHOWN",  # 0
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",  # 5
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",  # 10
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",  # 15
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",  # 20
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",  # 25
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",  # 30
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",  # 35
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",  # 40
)
# types.MappingProxyType, without importing `types` (and what it pulls in) on exec's path
_MappingProxy = type(type.__dict__)
NUMBERS: Final[Mapping[str, int]] = _MappingProxy({n: i for i, n in enumerate(NAMES)})
LAST_KNOWN: Final = len(NAMES) - 1  # 40; also the fallback when /proc cannot tell
ALL: Final = "ALL"

# Docker's default set (moby `oci/caps/defaults.go`). policies.DEFAULT_CAPS is the same
# set for the seccomp side (policies cannot import us); a test keeps the two equal.
DEFAULT_CAPS: Final[frozenset[str]] = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)

_HINT = "use names from capabilities(7), with or without CAP_: CHOWN, NET_ADMIN, SYS_PTRACE, or ALL"


def parse_cap(name: str) -> str:
    """The canonical name (`CAP_CHOWN`) of `chown`, `CHOWN`, `cap_chown`, ...; `ALL` stays."""
    canon = name.upper()
    if canon == ALL:
        return ALL
    if not canon.startswith("CAP_"):
        canon = f"CAP_{canon}"
    if canon not in NUMBERS:
        raise UsageError(f"unknown capability {name!r}", hint=_HINT)
    return canon


def capability_set(
    add: Iterable[str] = (),
    drop: Iterable[str] = (),
    *,
    privileged: bool = False,
    last_cap: int,
) -> frozenset[str]:
    """The canonical names in force for `--cap-add add --cap-drop drop [--privileged]` on a
    kernel whose highest capability is `last_cap` (Docker's rules: see the module doc)."""
    adds = frozenset(parse_cap(n) for n in add)
    drops = frozenset(parse_cap(n) for n in drop)
    for name in sorted((adds | drops) - {ALL}):
        if NUMBERS[name] > last_cap:
            raise HostError(
                f"capability {name} is not supported by this kernel",
                hint=f"its last capability is {last_cap} ({NAMES[min(last_cap, LAST_KNOWN)]})",
            )
    available = frozenset(NAMES[: last_cap + 1])
    if privileged:
        return available
    if ALL in adds:
        return available - drops
    if ALL in drops:
        return adds
    # A default cap the kernel lacks (none today) is left out rather than refused.
    return ((DEFAULT_CAPS - drops) | adds) & available


def to_numbers(names: Iterable[str]) -> frozenset[int]:
    """Capability numbers of canonical names (a ValueError for anything else: the names
    come from `capability_set`, so a bad one is a bug, not a user error)."""
    try:
        return frozenset(NUMBERS[n] for n in names)
    except KeyError as exc:
        raise ValueError(f"not a canonical capability name: {exc.args[0]!r}") from None


def mask(names: Iterable[str]) -> int:
    """The bit mask of canonical names, as /proc/PID/status shows it in hex (CapEff...)."""
    bits = 0
    for n in to_numbers(names):
        bits |= 1 << n
    return bits


def from_mask(bits: int) -> frozenset[str]:
    """The canonical names in a mask (bits above LAST_KNOWN are ignored)."""
    return frozenset(name for i, name in enumerate(NAMES) if bits >> i & 1)


def last_cap() -> int:
    """The kernel's highest capability number (/proc/sys/kernel/cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return LAST_KNOWN


def limit_bounding(names: frozenset[str], *, last: int | None = None) -> None:
    """Part one: cut the calling thread's bounding set to `names`, empty its ambient set.

    Needs CAP_SETPCAP in the effective set, so it comes before `set_current`. The
    permitted and effective sets are untouched: a switch to the container's user
    (setgroups, setresgid, setresuid) may come next even if `names` lacks CAP_SETUID or
    CAP_SETGID (`--cap-drop SETUID -u 1000` works in Docker). `last` is the kernel's
    cap_last_cap (read from /proc when not given: pass it when /proc is not mounted).
    """
    top = last_cap() if last is None else last
    keep = to_numbers(names)
    # Caps the kernel has and we do not know (above LAST_KNOWN) are dropped too.
    for cap in range(top + 1):
        if cap not in keep:
            syscalls.capbset_drop(cap)
    # Ambient empty (capset would shrink it to permitted & inheritable anyway: say it).
    syscalls.cap_ambient_clear_all()


def set_current(names: frozenset[str]) -> None:
    """Part two: permitted = effective = `names`, inheritable empty (CVE-2022-24769).

    Only lowers: after a switch to a non-root uid the kernel has already emptied permitted
    and effective, so the caller passes the empty set there (as Docker's process ends up
    at execve); root passes the container's set."""
    bits = mask(names)
    syscalls.capset(effective=bits, permitted=bits, inheritable=0)


def apply(names: frozenset[str], *, last: int | None = None) -> None:
    """Docker's process capabilities for root of the container's user namespace: `names`
    as the bounding, permitted and effective sets, empty inheritable and ambient sets.
    Irreversible; call it in the single-threaded process about to execve.

    A caller that switches to the container's user does `limit_bounding`, the switch, then
    `set_current` instead (see those): after apply() the switch would need CAP_SETUID and
    CAP_SETGID in `names`.
    """
    limit_bounding(names, last=last)
    set_current(names)
