"""The build steps pyproject.toml cannot say: compile rsbox's three C parts into the package.

pyproject.toml holds the metadata; this builds the extension module

- rootless/_syscalls.c into rootless._syscalls, the C half of rootless.syscalls (setns,
  unshare, mount, pivot_root, prctl, capset, the seccomp syscall: what Python 3.11's os
  lacks, without ctypes' import on `exec`'s path). It needs Python.h (python3-dev, in
  setup.sh's package list). Without it there is no rsbox: a failure stops the build.

and adds to build_py the compilation of

- rootless/launch/init.c into rootless/launch/rsbox-init, a static binary (images such as
  a busybox-only one have no libc to link against); gcc and libc6-dev (which has libc.a)
  are in setup.sh's package list. Without it there is no rsbox: a failure stops the build.
- fs/cache_shim.c and fs/read_shim.c into fs/librsbox-fscache.so, the libfuse shim that
  lets the kernel cache directory listings and symlink targets (fs/kcache.py) and answers
  READ in C. It needs libfuse3-dev and
  pkg-config, which pyfuse3's own build needs too. Without it the filesystem works, only
  slower, and `rsbox info` says so: a failure is a warning.

$CC overrides the compiler (default cc). With an extension module the wheel is tagged for
this interpreter and platform (cp311-cp311-linux_x86_64) by setuptools itself.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

SOURCE = Path("rootless", "launch", "init.c")
BINARY = Path("rootless", "launch", "rsbox-init")
SHIM_SOURCES = [Path("fs", "cache_shim.c"), Path("fs", "read_shim.c")]
SHIM = Path("fs", "librsbox-fscache.so")
SYSCALLS = Extension(
    "rootless._syscalls",
    ["rootless/_syscalls.c"],
    # -Wno-unused-parameter: `self`, unused by every module-level function of CPython's API
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)


def _pkg_config(*args: str) -> list[str]:
    out = subprocess.run(["pkg-config", *args, "fuse3"], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout)


class BuildPyWithInit(build_py):
    def _out(self, rel: Path) -> Path:
        # An editable install imports the package from the source tree: build it there.
        return rel if getattr(self, "editable_mode", False) else Path(self.build_lib, rel)

    def run(self) -> None:
        super().run()
        cc = shlex.split(os.environ.get("CC", "cc"))
        out = self._out(BINARY)
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-o", str(out), str(SOURCE)]
        self.announce(" ".join(cmd), level=logging.INFO)
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(
                f"building rsbox-init failed ({exc}): a C compiler and a static libc are "
                "needed (Debian: apt-get install gcc libc6-dev)"
            ) from exc
        self._build_shim(cc)

    def _build_shim(self, cc: list[str]) -> None:
        out = self._out(SHIM)
        try:
            # --no-as-needed: the shim calls libfuse only through dlvsym(RTLD_NEXT), which
            # finds it only among the shim's own dependencies.
            cmd = [
                *cc,
                "-shared",
                "-fPIC",
                "-O2",
                "-s",
                "-Wall",
                "-Wextra",
                *_pkg_config("--cflags"),
                "-o",
                str(out),
                *map(str, SHIM_SOURCES),
                "-Wl,--no-as-needed",
                *_pkg_config("--libs"),
                "-ldl",
            ]
            self.announce(" ".join(cmd), level=logging.INFO)
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            out.unlink(missing_ok=True)
            self.warn(
                f"building {SHIM} failed ({exc}): the filesystem works without it, with no "
                "kernel caching of listings (Debian: apt-get install libfuse3-dev pkg-config)"
            )

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        shim = Path(self.build_lib, SHIM)  # absent if its build failed (a warning)
        built = [str(Path(self.build_lib, BINARY)), *([str(shim)] if shim.exists() else [])]
        return [*super().get_outputs(include_bytecode), *built]

    def get_output_mapping(self) -> dict[str, str]:
        """Editable installs: build_lib's copy is the source tree's (strict mode links it)."""
        mapping = dict(super().get_output_mapping())
        if getattr(self, "editable_mode", False):
            for p in (BINARY, SHIM):
                mapping[str(Path(self.build_lib, p))] = str(p)
        return mapping


class BuildExtRequired(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # setuptools' CompileError, LinkError, DistutilsExecError
            raise SystemExit(
                f"building rootless._syscalls failed ({exc}): a C compiler and Python's "
                "headers are needed (Debian: apt-get install gcc python3-dev)"
            ) from exc


setup(
    ext_modules=[SYSCALLS],
    cmdclass={
        "build_py": BuildPyWithInit,
        "build_ext": BuildExtRequired,
    },
)
