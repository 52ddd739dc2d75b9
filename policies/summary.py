"""What a profile allows and denies on this architecture, syscall by syscall (for
`rsbox policy check`). Computed from the profile's rules, the way the compiler reads them:

- rules that do not apply to the host (includes/excludes) are left out;
- the first argument-free rule naming a syscall decides it (libseccomp ignores later
  argument-free rules for the same syscall);
- argument-conditioned rules make the syscall "conditional" (the conditions are listed);
- anything else gets the default action, or ENOSYS when its number is above every
  syscall the profile names (compiler rule 5).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from policies import _arch
from policies.profile import Action, Arg, Host, Op, Profile, Rule

_OP_TEXT = {
    Op.NE: "!=",
    Op.LT: "<",
    Op.LE: "<=",
    Op.EQ: "==",
    Op.GE: ">=",
    Op.GT: ">",
}


@dataclass(frozen=True)
class Verdict:
    name: str
    nr: int
    kind: str  # "allow", "deny", "conditional"
    detail: str  # "EPERM", "ENOSYS (newer than the profile)", conditions...


def action_text(action: Action, errno_ret: int | None) -> str:
    if action is Action.ERRNO:
        e = errno.EPERM if errno_ret is None else errno_ret
        return "success without effect" if e == 0 else str(errno.errorcode.get(e, e))
    value: str = action.value
    return value.removeprefix("SCMP_ACT_")


def _arg_text(a: Arg) -> str:
    if a.op is Op.MASKED_EQ:
        return f"arg{a.index} & {a.value:#x} == {a.value_two:#x}"
    return f"arg{a.index} {_OP_TEXT[a.op]} {a.value:#x}"


def _kind(action: Action) -> str:
    return "allow" if action in (Action.ALLOW, Action.LOG) else "deny"


def _native_syscalls() -> list[tuple[str, int]]:
    import pyseccomp

    arch = _arch.native_scmp_arch()
    out = []
    for nr in range(1024):
        try:
            name = pyseccomp.resolve_syscall(_arch.SCMP_ARCH_TOKENS[arch], nr)
        except ValueError:
            continue
        out.append((name.decode() if isinstance(name, bytes) else str(name), nr))
    known = {n for n, _ in out}
    out += [(n, nr) for n, nr in _arch.NEWER_SYSCALLS.items() if n not in known]
    return sorted(out, key=lambda x: x[1])


def describe(profile: Profile, host: Host | None = None) -> list[Verdict]:
    """One Verdict per syscall of the native architecture, in number order."""
    host = host or Host.current()
    arch = _arch.native_scmp_arch()
    rules = profile.effective_rules(host)
    by_name: dict[str, list[Rule]] = {}
    for r in rules:
        for n in r.names:
            by_name.setdefault(n, []).append(r)
    numbers = [_number(arch, n) for r in profile.rules for n in r.names]
    highest = max((n for n in numbers if n is not None), default=-1)
    restrictive = profile.default_action not in (Action.ALLOW, Action.LOG)
    out = []
    for name, nr in _native_syscalls():
        named = by_name.get(name, [])
        if named and not named[0].args:
            r = named[0]
            out.append(Verdict(name, nr, _kind(r.action), action_text(r.action, r.errno_ret)))
        elif named:
            parts = [
                f"{action_text(r.action, r.errno_ret)} if "
                + (" and ".join(_arg_text(a) for a in r.args) or "always")
                for r in named
            ]
            default = action_text(profile.default_action, profile.default_errno_ret)
            out.append(Verdict(name, nr, "conditional", "; ".join(parts) + f"; else {default}"))
        elif restrictive and nr > highest:
            out.append(Verdict(name, nr, "deny", "ENOSYS (newer than the profile)"))
        else:
            kind = _kind(profile.default_action)
            text = action_text(profile.default_action, profile.default_errno_ret)
            out.append(Verdict(name, nr, kind, text))
    return out


def _number(arch: str, name: str) -> int | None:
    if name in _arch.NEWER_SYSCALLS and not _arch.known_to_libseccomp(name):
        return _arch.NEWER_SYSCALLS[name]
    if not _arch.known_to_libseccomp(name):
        return None
    return _arch.syscall_number(arch, name)
