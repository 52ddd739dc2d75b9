"""Compile a Profile to classic-BPF bytes (an array of `struct sock_filter`).

What runc and crun learned, and what this module therefore does:

1. Every architecture is added to the libseccomp context before any rule. A rule added
   first is only generated for the arches present at that moment.
2. A rule whose action equals the default action is skipped: libseccomp rejects it
   (EACCES), and it would change nothing.
3. libseccomp refuses two conditions on the same argument in one rule. When a rule has
   that, every condition becomes its own rule (the conditions are OR-ed, as in runc).
4. Syscall names libseccomp does not know are skipped (the loader already warned).
5. Syscalls *newer than the profile* must fail with ENOSYS, not the default EPERM: glibc
   and friends probe new syscalls (clone3, faccessat2, fchmodat2, ...) and fall back only
   on ENOSYS. libseccomp 2.5 cannot say "nr > N", so, like runc's patchbpf, we prepend a
   short hand-written BPF prologue: per architecture, a syscall number above the highest
   one the profile names returns ERRNO(ENOSYS); anything else falls through to
   libseccomp's program, which re-reads what it needs. The ENOSYS part is only emitted
   when the default action is restrictive (not ALLOW/LOG).
6. libseccomp 2.5.4 names syscalls up to 456 and refuses rules for numbers it cannot name
   once a second arch is in the filter (EFAULT). Argument-free rules for the newer ones in
   `_arch.NEWER_SYSCALLS` (mseal, listmount, ...) are emitted in the same prologue.
7. A syscall of an ABI the profile does not list (`target_arches`) gets ERRNO(ENOSYS),
   libseccomp's "bad arch" action; runc leaves libseccomp's default there, which kills
   the thread with SIGSYS. Which ABIs are filtered, and so every allow/deny verdict, is
   the profile's; only the form of the refusal differs. ENOSYS is what a kernel without
   that ABI answers (x32 is off in most kernels, i386 can be switched off with
   ia32_emulation=0), and a stray number with bit 30 set is an x32 syscall: it deserves
   an error, not a kill (libseccomp itself passes -1 on to the rules). On x86_64
   libseccomp tells x32 apart by that 0x40000000 bit (x32 arrives as AUDIT_ARCH_X86_64),
   so a filter without x32 refuses those numbers too. The built-in profiles use this to
   cover the native ABI only (why: `_default_profile.py`); Docker's profile lists i386
   and x32 and keeps its verdicts.

The result of installing the bytes is the launcher's business (prctl NO_NEW_PRIVS, then
seccomp(SECCOMP_SET_MODE_FILTER) right before execve). A profile that filters nothing
compiles to None: no filter at all.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import struct
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyseccomp

from policies import _arch

# Bump when the generated program changes for the same inputs (invalidates caches).
from policies._files import write_atomically
from policies._libseccomp import COMPILER_VERSION
from policies.errors import PolicyError
from policies.profile import Action, Arg, Host, Op, Profile, Rule

_OPS = {
    Op.NE: pyseccomp.NE,
    Op.LT: pyseccomp.LT,
    Op.LE: pyseccomp.LE,
    Op.EQ: pyseccomp.EQ,
    Op.GE: pyseccomp.GE,
    Op.GT: pyseccomp.GT,
    Op.MASKED_EQ: pyseccomp.MASKED_EQ,
}

SECCOMP_RET_ERRNO = 0x00050000
# What a syscall of an ABI the profile does not list gets (rule 7).
FOREIGN_ABI_ACTION = SECCOMP_RET_ERRNO | errno.ENOSYS


def action_value(action: Action, errno_ret: int | None) -> int:
    """The 32-bit SECCOMP_RET_* value libseccomp uses for `action`."""
    value: int
    if action is Action.ERRNO:
        value = pyseccomp.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
        return value
    if action is Action.TRACE:
        value = pyseccomp.TRACE(errno.EPERM if errno_ret is None else errno_ret)
        return value
    value = {
        Action.KILL_THREAD: pyseccomp.KILL_THREAD,
        Action.KILL: pyseccomp.KILL_THREAD,
        Action.KILL_PROCESS: pyseccomp.KILL_PROCESS,
        Action.TRAP: pyseccomp.TRAP,
        Action.ALLOW: pyseccomp.ALLOW,
        Action.LOG: pyseccomp.LOG,
        Action.NOTIFY: pyseccomp.NOTIFY,
    }[action]
    return value


def condition_sets(args: Sequence[Arg]) -> list[tuple[Arg, ...]]:
    """The libseccomp rules one profile rule becomes (rule 3 above)."""
    if not args:
        return [()]
    counts = Counter(a.index for a in args)
    if max(counts.values()) > 1:
        return [(a,) for a in args]
    return [tuple(args)]


def target_arches(profile: Profile, native: str | None = None) -> tuple[str, ...]:
    """Native first, then the companions (32-bit ABIs) the profile asks for.

    - `archMap`: the entry for the native arch gives its subArchitectures;
    - `architectures`: those that are native or a native companion;
    - neither: native plus all its companions (what a Docker daemon would pick).
    Arches the host kernel cannot run are never compiled.
    """
    native = native or _arch.native_scmp_arch()
    companions = _arch.COMPANIONS.get(native, ())
    wanted: list[str] = []
    if profile.arch_map:
        for main, subs in profile.arch_map:
            if main == native:
                wanted.extend(subs)
    elif profile.architectures:
        wanted.extend(profile.architectures)
    else:
        wanted.extend(companions)
    out = [native]
    for a in wanted:
        if a in companions and a not in out:
            out.append(a)
    return tuple(out)


# --------------------------------------------------------------------------- BPF prologue

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_JSET_K = 0x45
_JA = 0x05
_RET_K = 0x06
_OFF_NR = 0
_OFF_ARCH = 4


@dataclass(frozen=True)
class _Insn:
    code: int
    k: int = 0
    jt: str | None = None  # label; None = next instruction
    jf: str | None = None
    label: str | None = None  # label of this instruction


def _assemble(insns: Sequence[_Insn], end_label: str) -> bytes:
    where = {i.label: n for n, i in enumerate(insns) if i.label}
    where[end_label] = len(insns)
    out = bytearray()
    for n, i in enumerate(insns):

        def rel(label: str | None, n: int = n) -> int:
            return 0 if label is None else where[label] - n - 1

        if i.code == _JA:
            out += struct.pack("=HBBI", i.code, 0, 0, rel(i.jt))
            continue
        jt, jf = rel(i.jt), rel(i.jf)
        if not (0 <= jt <= 255 and 0 <= jf <= 255):  # pragma: no cover - prologue is tiny
            raise AssertionError("BPF prologue jump out of range")
        out += struct.pack("=HBBI", i.code, jt, jf, i.k)
    return bytes(out)


def max_known_syscalls(names: Iterable[str], arches: Sequence[str]) -> dict[str, int]:
    """Per arch, the highest syscall number among `names` (x32: without the x32 bit)."""
    out: dict[str, int] = {}
    for arch in arches:
        best = -1
        for name in names:
            if name in _arch.NEWER_SYSCALLS and not _arch.known_to_libseccomp(name):
                best = max(best, _arch.NEWER_SYSCALLS[name])
                continue
            if not _arch.known_to_libseccomp(name):
                continue
            nr = _arch.syscall_number(arch, name)
            if nr is None:
                continue
            if arch == "SCMP_ARCH_X32":
                nr &= ~_arch.X32_SYSCALL_BIT
                if nr >= _arch.X32_LEGACY_BASE:
                    continue
            best = max(best, nr)
        if best >= 0:
            out[arch] = best
    return out


def prologue(
    arches: Sequence[str],
    maxima: dict[str, int] | None,
    by_number: dict[int, int] | None = None,
) -> bytes:
    """Hand-written BPF run before libseccomp's program (rule 5 and the newest syscalls).

    Per architecture: a syscall in `by_number` (number -> action value, for syscalls
    libseccomp cannot name) returns its action; with `maxima`, a number above
    `maxima[arch]` returns ERRNO(ENOSYS). Everything else falls through.
    """
    by_number = by_number or {}
    rets = {v: f"ret{v:x}" for v in sorted(set(by_number.values()))}
    x32 = "SCMP_ARCH_X32" in arches

    def checks(arch: str, bit: int) -> list[_Insn]:
        out = [_Insn(_JEQ_K, bit | nr, jt=rets[act]) for nr, act in sorted(by_number.items())]
        if maxima is not None and arch in maxima:
            out.append(_Insn(_JGT_K, bit | maxima[arch], jt="enosys", jf="out"))
        else:
            out.append(_Insn(_JA, jt="out"))
        return out

    ins: list[_Insn] = [_Insn(_LD_W_ABS, _OFF_ARCH)]
    blocks: list[_Insn] = []
    for arch in arches:
        if arch == "SCMP_ARCH_X32":
            continue
        if not by_number and (maxima is None or arch not in maxima):
            continue
        ins.append(_Insn(_JEQ_K, _arch.SCMP_ARCH_TOKENS[arch], jt=arch))
        blocks.append(_Insn(_LD_W_ABS, _OFF_NR, label=arch))
        if arch == "SCMP_ARCH_X86_64":
            # x32 syscalls arrive with AUDIT_ARCH_X86_64 and bit 30 set in the number.
            blocks.append(_Insn(_JSET_K, _arch.X32_SYSCALL_BIT, jt="x32" if x32 else "out"))
        blocks.extend(checks(arch, 0))
        if arch == "SCMP_ARCH_X86_64" and x32:
            bit = _arch.X32_SYSCALL_BIT
            # x32's own copies of old syscalls (512..) are not "newer".
            blocks.append(_Insn(_JGE_K, bit | _arch.X32_LEGACY_BASE, jt="out", label="x32"))
            blocks.extend(checks("SCMP_ARCH_X32", bit))
    if len(ins) == 1:
        return b""
    ins.append(_Insn(_JA, jt="out"))
    ins.extend(blocks)
    ins.append(_Insn(_RET_K, SECCOMP_RET_ERRNO | errno.ENOSYS, label="enosys"))
    for value, label in rets.items():
        ins.append(_Insn(_RET_K, value, label=label))
    return _assemble(ins, "out")


# --------------------------------------------------------------------------- compile


def _rule_path(profile: Profile, rule: Rule) -> str:
    for i, r in enumerate(profile.rules):
        if r is rule:
            return f"syscalls[{i}]"
    return "syscalls"  # pragma: no cover


def compile_profile(profile: Profile, host: Host | None = None) -> bytes | None:
    """BPF bytes for `profile` on `host` (default: this machine, Docker's default caps).

    Returns None when the profile filters nothing (e.g. the built-in `unconfined`).
    """
    host = host or Host.current()
    default = action_value(profile.default_action, profile.default_errno_ret)
    rules = profile.effective_rules(host)
    live = [r for r in rules if action_value(r.action, r.errno_ret) != default]
    if default == pyseccomp.ALLOW and not live:
        return None

    arches = target_arches(profile)
    try:
        filt = pyseccomp.SyscallFilter(default)
    except OSError as exc:
        raise PolicyError("defaultAction", f"libseccomp rejects it: {exc}") from exc
    for arch in arches:  # rule 1: every arch before any rule
        token = _arch.SCMP_ARCH_TOKENS[arch]
        if not filt.exist_arch(token):
            filt.add_arch(token)
    # Rule 7: an ABI left out of `arches` (for x86_64's x32: a number with bit 30 set) gets
    # ENOSYS rather than libseccomp's default, a SIGSYS kill.
    filt.set_attr(pyseccomp.Attr.ACT_BADARCH, FOREIGN_ABI_ACTION)
    # A binary tree of syscall numbers, not libseccomp's default linear chain: the kernel
    # emulates the filter for every syscall number when it is installed (the bitmap of
    # syscalls allowed whatever their arguments), so a chain's length is paid on every
    # `run` and `exec`. Installing the default profile: 446 instructions in 0.76 ms ->
    # 523 in 0.42 ms (a one-instruction filter: 0.16 ms), measured here.
    filt.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)

    by_number: dict[int, int] = {}
    for rule in live:
        act = action_value(rule.action, rule.errno_ret)
        for j, name in enumerate(rule.names):
            if not _arch.known_to_libseccomp(name):
                if name in _arch.NEWER_SYSCALLS and not rule.args:
                    by_number.setdefault(_arch.NEWER_SYSCALLS[name], act)
                # Unknown names (rule 4) and argument rules on syscalls libseccomp
                # cannot name are skipped: the latter then get the default action.
                continue
            if all(_arch.syscall_number(a, name) is None for a in arches):
                continue  # e.g. an s390-only syscall on x86_64
            for conds in condition_sets(rule.args):
                seccomp_args = [
                    pyseccomp.Arg(a.index, _OPS[a.op], a.value, a.value_two) for a in conds
                ]
                try:
                    filt.add_rule(act, name, *seccomp_args)
                except OSError as exc:
                    path = f"{_rule_path(profile, rule)}.names[{j}]"
                    raise PolicyError(path, f'libseccomp rejects rule for "{name}": {exc}') from exc

    with tempfile.TemporaryFile() as f:
        filt.export_bpf(f)
        f.seek(0)
        program = f.read()

    maxima = None
    if profile.default_action not in (Action.ALLOW, Action.LOG):
        maxima = max_known_syscalls(_names(profile), arches)
    program = prologue(arches, maxima, by_number) + program
    if len(program) // 8 > 4096:  # BPF_MAXINSNS
        raise PolicyError("syscalls", f"program has {len(program) // 8} instructions, max 4096")
    return program


def _names(profile: Profile) -> set[str]:
    # Every name the profile mentions counts as "known to the profile", whatever the rule's
    # action or includes: the profile's author knew that syscall existed.
    return {n for r in profile.rules for n in r.names}


def cache_key(profile: Profile, host: Host) -> str:
    facts = {
        "compiler": COMPILER_VERSION,
        "libseccomp": _arch.libseccomp_version(),
        "arch": _arch.native_scmp_arch(),
        "goarch": host.goarch,
        "caps": sorted(host.caps),
        "kernel": list(host.kernel),
        "profile": profile.canonical_json(),
    }
    blob = json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def compile_cached(profile: Profile, cache_dir: Path, host: Host | None = None) -> bytes | None:
    """`compile_profile`, memoised on disk in `cache_dir` (created if missing).

    Entries are named by `cache_key` and written atomically (temp file, fsync, rename), so
    concurrent rsbox processes can share a cache directory. A cache that cannot be written
    is not an error.
    """
    host = host or Host.current()
    key = cache_key(profile, host)
    path = cache_dir / f"{key}.bpf"
    try:
        cached = path.read_bytes()
    except OSError:
        pass
    else:
        if cached and len(cached) % 8 == 0:
            return cached
    program = compile_profile(profile, host)
    if program is None:
        return None
    # The cache is an optimisation: an unwritable cache_dir only costs a recompile.
    with contextlib.suppress(OSError):
        write_atomically(path, program)
    return program
