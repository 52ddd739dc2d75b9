"""Facts about the compiler and the libseccomp it uses, cheap to get: no pyseccomp import.

pyseccomp locates its library with ctypes.util.find_library, which forks /sbin/ldconfig;
the soname is stable, so we load it directly. Kept apart so that a cache hit in
`policies.program_cache` costs neither that nor parsing the profile.
"""

from __future__ import annotations

import ctypes
import functools

# Bump when the BPF the compiler emits for the same profile changes.
# 2: ENOSYS for ABIs a profile does not list (compiler rule 7); 3: a binary tree
COMPILER_VERSION = 3


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


@functools.cache
def libseccomp_version() -> str:
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:  # pragma: no cover - pyseccomp would not import either
        return "unknown"
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"
