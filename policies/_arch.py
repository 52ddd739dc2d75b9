"""Architecture names and syscall lookup: the only place that asks libseccomp about names.

Three spellings of an architecture meet here:

- libseccomp's `SCMP_ARCH_*` names, used by `architectures` and `archMap` in profiles;
- Go's `GOARCH` names (`amd64`, `arm64`, ...), used by Docker's `includes.arches`;
- libseccomp's numeric tokens (`pyseccomp.Arch.*`), which equal the kernel's AUDIT_ARCH_*
  values except for x32 (the kernel reports x32 syscalls as AUDIT_ARCH_X86_64 with bit
  0x40000000 set in the syscall number).
"""

from __future__ import annotations

import functools
import platform

import pyseccomp

from policies import _libseccomp

SCMP_ARCH_TOKENS: dict[str, int] = {
    "SCMP_ARCH_X86": pyseccomp.Arch.X86,
    "SCMP_ARCH_X86_64": pyseccomp.Arch.X86_64,
    "SCMP_ARCH_X32": pyseccomp.Arch.X32,
    "SCMP_ARCH_ARM": pyseccomp.Arch.ARM,
    "SCMP_ARCH_AARCH64": pyseccomp.Arch.AARCH64,
    "SCMP_ARCH_MIPS": pyseccomp.Arch.MIPS,
    "SCMP_ARCH_MIPS64": pyseccomp.Arch.MIPS64,
    "SCMP_ARCH_MIPS64N32": pyseccomp.Arch.MIPS64N32,
    "SCMP_ARCH_MIPSEL": pyseccomp.Arch.MIPSEL,
    "SCMP_ARCH_MIPSEL64": pyseccomp.Arch.MIPSEL64,
    "SCMP_ARCH_MIPSEL64N32": pyseccomp.Arch.MIPSEL64N32,
    "SCMP_ARCH_PARISC": pyseccomp.Arch.PARISC,
    "SCMP_ARCH_PARISC64": pyseccomp.Arch.PARISC64,
    "SCMP_ARCH_PPC": pyseccomp.Arch.PPC,
    "SCMP_ARCH_PPC64": pyseccomp.Arch.PPC64,
    "SCMP_ARCH_PPC64LE": pyseccomp.Arch.PPC64LE,
    "SCMP_ARCH_S390": pyseccomp.Arch.S390,
    "SCMP_ARCH_S390X": pyseccomp.Arch.S390X,
    "SCMP_ARCH_RISCV64": pyseccomp.Arch.RISCV64,
}

# Architectures libseccomp 2.5.4 does not know but real profiles name (Docker's archMap
# lists loongarch64). Accepted by the loader, never compiled.
FOREIGN_SCMP_ARCHES = frozenset({"SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_SH"})

# A native architecture and the ones its kernel also runs (32-bit compat ABIs).
COMPANIONS: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_PPC64": ("SCMP_ARCH_PPC",),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
}

# uname -m -> (SCMP name, GOARCH name)
_MACHINES: dict[str, tuple[str, str]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "amd64"),
    "aarch64": ("SCMP_ARCH_AARCH64", "arm64"),
    "armv7l": ("SCMP_ARCH_ARM", "arm"),
    "i686": ("SCMP_ARCH_X86", "386"),
    "ppc64le": ("SCMP_ARCH_PPC64LE", "ppc64le"),
    "s390x": ("SCMP_ARCH_S390X", "s390x"),
    "riscv64": ("SCMP_ARCH_RISCV64", "riscv64"),
    "mips64": ("SCMP_ARCH_MIPS64", "mips64"),
}

# Syscalls newer than libseccomp 2.5.4 (which stops at 456, futex_requeue). Since Linux 5.1
# every architecture but alpha numbers new syscalls alike (x32 adds X32_SYSCALL_BIT), so
# one number per name serves x86_64, x86, x32, arm, aarch64, ... The compiler emits these
# in its own BPF prologue, because libseccomp refuses numbers it cannot name.
NEWER_SYSCALLS: dict[str, int] = {
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
    "file_getattr": 468,
    "file_setattr": 469,
}

X32_SYSCALL_BIT = 0x40000000
# x32 keeps its own copies of a few dozen syscalls at 512..547; they are not "newer".
X32_LEGACY_BASE = 512


def native_scmp_arch() -> str:
    return _MACHINES.get(platform.machine(), ("SCMP_ARCH_X86_64", "amd64"))[0]


def native_goarch() -> str:
    return _MACHINES.get(platform.machine(), ("SCMP_ARCH_X86_64", "amd64"))[1]


@functools.cache
def syscall_number(scmp_arch: str, name: str) -> int | None:
    """The syscall number of `name` on `scmp_arch`, or None when that arch lacks it.

    Negative pseudo-numbers (libseccomp's way to name, say, socketcall on x86_64) count as
    absent: they are not numbers the kernel will ever see on that arch.
    """
    nr: int = pyseccomp.resolve_syscall(SCMP_ARCH_TOKENS[scmp_arch], name)
    return nr if nr >= 0 else None


def known(name: str) -> bool:
    """True if rsbox can compile a rule for `name` on some architecture."""
    return known_to_libseccomp(name) or name in NEWER_SYSCALLS


@functools.cache
def known_to_libseccomp(name: str) -> bool:
    """True if any architecture libseccomp knows has a syscall called `name`."""
    nr: int = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    # Non-native syscalls resolve to negative pseudo-numbers below -1 (__NR_SCMP_ERROR).
    return nr != -1


libseccomp_version = _libseccomp.libseccomp_version
