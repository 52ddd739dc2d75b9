"""What a Docker-format profile *means* for one syscall, computed from the profile alone.

An independent reading of the JSON semantics (Docker/runc), written without libseccomp or
our compiler, so that tests can compare it with what the compiled filter does:

- only rules that apply to the host (includes/excludes on caps, arches, minKernel);
- a rule matches when all its conditions hold, except that several conditions on the
  same argument are OR-ed (runc splits them into one rule each);
- arguments compare as 64-bit values (libseccomp on a 64-bit arch), MASKED_EQ is
  `arg & value == valueTwo`;
- no matching rule: the default action, except that a syscall numbered above every name
  in the profile gets ENOSYS (runc's and rsbox's rule for syscalls newer than the profile);
- two rules for the same syscall without conditions: the first one counts (libseccomp).
"""

from __future__ import annotations

import errno
from collections import Counter

from policies import Action, Arg, Host, Op, Profile, _arch

ALLOWED = 0  # the verdict for "the call goes to the kernel"


def _holds(arg: Arg, args: tuple[int, ...]) -> bool:
    v = args[arg.index] if arg.index < len(args) else 0
    return {
        Op.NE: v != arg.value,
        Op.LT: v < arg.value,
        Op.LE: v <= arg.value,
        Op.EQ: v == arg.value,
        Op.GE: v >= arg.value,
        Op.GT: v > arg.value,
        Op.MASKED_EQ: v & arg.value == arg.value_two,
    }[arg.op]


def _matches(conds: tuple[Arg, ...], args: tuple[int, ...]) -> bool:
    if not conds:
        return True
    if max(Counter(a.index for a in conds).values()) > 1:
        return any(_holds(a, args) for a in conds)
    return all(_holds(a, args) for a in conds)


def _verdict(action: Action, errno_ret: int | None) -> int | str:
    if action in (Action.ALLOW, Action.LOG):
        return ALLOWED
    if action is Action.ERRNO:
        return errno.EPERM if errno_ret is None else errno_ret
    return action.value  # KILL/TRAP/...: the probe would not survive to print


def verdict(profile: Profile, name: str, args: tuple[int, ...], host: Host) -> int | str:
    """0 when `name(args)` reaches the kernel, else the errno the filter returns."""
    native = _arch.native_scmp_arch()
    matching = [
        r for r in profile.effective_rules(host) if name in r.names and _matches(r.args, args)
    ]
    if matching and not matching[0].args:
        # libseccomp keeps the first syscall-wide rule and ignores later ones for the same
        # syscall (Podman's profile allows setns, then denies it without CAP_SYS_ADMIN).
        return _verdict(matching[0].action, matching[0].errno_ret)
    actions = {_verdict(r.action, r.errno_ret) for r in matching}
    if len(actions) > 1:
        raise AssertionError(f"{name}{args}: overlapping rules with different actions {actions}")
    if actions:
        return actions.pop()
    nr = _nr(native, name)
    known = [n for n in (_nr(native, x) for r in profile.rules for x in r.names) if n is not None]
    restrictive = profile.default_action not in (Action.ALLOW, Action.LOG)
    if restrictive and nr is not None and nr > max(known, default=-1):
        return errno.ENOSYS
    return _verdict(profile.default_action, profile.default_errno_ret)


def _nr(arch: str, name: str) -> int | None:
    if name in _arch.NEWER_SYSCALLS and not _arch.known_to_libseccomp(name):
        return _arch.NEWER_SYSCALLS[name]
    if not _arch.known_to_libseccomp(name):
        return None
    return _arch.syscall_number(arch, name)
