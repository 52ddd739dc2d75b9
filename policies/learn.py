"""Learn mode: learn the seccomp profile a workload needs, without root and without audit.

The workload runs under a filter whose action for (almost) every syscall is
SCMP_ACT_NOTIFY: the kernel stops the calling thread and posts the call on a *listener*
fd; a supervisor outside the container reads it (`policies.notify.supervise`), records
it in a `Recorder`, and tells the kernel to let the call go on as if there were no filter
(SECCOMP_USER_NOTIF_FLAG_CONTINUE). At the end, `Recorder.to_profile()` is a minimal
Docker-format profile: the syscalls seen, with argument conditions for `ioctl` (the
commands), `socket` (the families) and `clone` (the namespace flags).

CONTINUE is fine for *learning*, never for enforcing: a multi-threaded workload can change
the memory a pointer argument points to between our look and the kernel's (the kernel's
own documentation says so). We only read integer arguments, which cannot change.

The bootstrap problem, and BOOTSTRAP
------------------------------------
seccomp(2) hands the listener fd to the process that installs the filter, and that process
is already filtered when it gets it: every syscall it makes before the supervisor holds
the fd would wait for an answer nobody can give. So the filter lets through, unnotified,
the few syscalls needed to pass the fd on (`sendmsg`, and what an allocator may do on the
way: `brk`, `mmap`, `munmap`, `madvise`, `futex`), and `to_profile` always allows them. The
profile is thus a superset of what the workload did by at most those six.

What the launcher must do for `rsbox run --seccomp-learn OUT.json` (one socketpair and
three calls; the same steps `tests/policies/test_learn.py` performs without the launcher):

1. P0 resolves OUT.json to an absolute host path and, before forking, creates
   `a, b = socket.socketpair(AF_UNIX, SOCK_SEQPACKET)`; P1 keeps `a`, P2/P3 inherit `b`
   (keep `b` open through P2's fork; close `a` in P2 and P3, close `b` in P1).
2. P3, instead of `install_seccomp(bpf)` as its last step before execve, and after it
   closed every other fd but `b` (and its error pipe): `policies.learn.install_and_send(b)`
   then `os.close(b)`, then execve. `install_and_send` sets no_new_privs, installs
   `learn_filter()` with SECCOMP_FILTER_FLAG_NEW_LISTENER and sends the listener fd over
   `b` with SCM_RIGHTS. Do not stack the normal filter under it (learning wants to see
   every syscall; a default filter would refuse before the notification).
3. P1, in the trio nursery that serves FUSE: `fd = await policies.notify.receive_listener(a)`,
   then `await nursery.start(policies.notify.supervise, fd, recorder)` with
   `recorder = policies.learn.Recorder()`. `supervise` returns by itself when every process
   under the filter has exited (the listener reports POLLHUP) and closes the fd.
4. When `supervise` has returned (the container is gone), P1 writes OUT.json atomically
   (temp file in the same directory, fsync, rename) with
   `json.dumps(recorder.to_profile(), indent=1)`; P1 runs as the host user there, so the
   file belongs to the user. If the container failed before step 2, nothing is written.
"""

from __future__ import annotations

import errno
import os
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from policies import _arch
from policies._default_profile import CLONE_NEW_MASK

BOOTSTRAP = ("sendmsg", "brk", "mmap", "munmap", "madvise", "futex")
# Syscalls whose arguments decide what the learned profile allows.
IOCTL, SOCKET, CLONE = "ioctl", "socket", "clone"
M32 = 0xFFFFFFFF


def learn_filter() -> bytes:
    """BPF: NOTIFY for every syscall of the native arch and its companions, but BOOTSTRAP
    (ALLOW). Other architectures get ENOSYS, as in every rsbox filter (compiler rule 7)."""
    import pyseccomp

    from policies.compiler import FOREIGN_ABI_ACTION, target_arches
    from policies.profile import UNCONFINED

    filt = pyseccomp.SyscallFilter(pyseccomp.NOTIFY)
    for arch in target_arches(UNCONFINED):  # native + all companions
        token = _arch.SCMP_ARCH_TOKENS[arch]
        if not filt.exist_arch(token):
            filt.add_arch(token)
    filt.set_attr(pyseccomp.Attr.ACT_BADARCH, FOREIGN_ABI_ACTION)
    for name in BOOTSTRAP:
        filt.add_rule(pyseccomp.ALLOW, name)
    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        return f.read()


def install_and_send(sock: socket.socket | int, program: bytes | None = None) -> None:
    """In the process to be learned: install the learning filter with a listener and send
    the listener fd over `sock` (SCM_RIGHTS). The caller then closes `sock` and execs."""
    from policies import notify

    program = learn_filter() if program is None else program
    # Everything the send needs is made before the filter exists (see BOOTSTRAP).
    s = sock if isinstance(sock, socket.socket) else socket.socket(fileno=os.dup(sock))
    payload = [b"L"]
    listener = notify.install_with_listener(program)
    socket.send_fds(s, payload, [listener])
    os.close(listener)
    if not isinstance(sock, socket.socket):
        s.close()


@dataclass
class Recorder:
    """The syscalls a workload made, as names plus the arguments a profile can look at."""

    names: set[str] = field(default_factory=set)
    ioctl_cmds: set[int] = field(default_factory=set)
    socket_families: set[int] = field(default_factory=set)
    clone_ns_flags: set[int] = field(default_factory=set)
    unknown: set[tuple[int, int]] = field(default_factory=set)  # (arch, nr) no name for

    def record(self, arch: int, nr: int, args: Iterable[int]) -> None:
        a = list(args)
        name = _syscall_name(arch, nr)
        if name is None:
            self.unknown.add((arch, nr))
            return
        self.names.add(name)
        if name == IOCTL:
            self.ioctl_cmds.add(a[1] & M32)  # the kernel reads cmd as unsigned int
        elif name == SOCKET:
            self.socket_families.add(a[0] & M32)
        elif name == CLONE:
            self.clone_ns_flags.add(a[0] & CLONE_NEW_MASK)

    def to_profile(self) -> dict[str, Any]:
        """A minimal Docker-format profile allowing what was seen (and BOOTSTRAP)."""
        plain = sorted((self.names | set(BOOTSTRAP)) - {IOCTL, SOCKET, CLONE})
        rules: list[dict[str, Any]] = [
            {"names": plain, "action": "SCMP_ACT_ALLOW", "comment": "seen while learning"}
        ]

        def masked(name: str, index: int, mask: int, values: set[int], why: str) -> None:
            for v in sorted(values):
                rules.append(
                    {
                        "names": [name],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [
                            {
                                "index": index,
                                "value": mask,
                                "valueTwo": v,
                                "op": "SCMP_CMP_MASKED_EQ",
                            }
                        ],
                        "comment": why,
                    }
                )

        masked(IOCTL, 1, M32, self.ioctl_cmds, "ioctl commands seen (low 32 bits)")
        masked(SOCKET, 0, M32, self.socket_families, "socket families seen (low 32 bits)")
        masked(CLONE, 0, CLONE_NEW_MASK, self.clone_ns_flags, "clone: namespace flags seen")
        return {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": errno.EPERM,
            "syscalls": rules,
        }


def _syscall_name(arch: int, nr: int) -> str | None:
    import pyseccomp

    token = arch
    if arch == pyseccomp.Arch.X86_64 and nr & _arch.X32_SYSCALL_BIT:
        token = pyseccomp.Arch.X32
    newer = {v: k for k, v in _arch.NEWER_SYSCALLS.items()}
    try:
        name = pyseccomp.resolve_syscall(token, nr)
    except ValueError:
        return newer.get(nr & ~_arch.X32_SYSCALL_BIT)
    return name.decode() if isinstance(name, bytes) else str(name)
