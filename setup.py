"""The one build step pyproject.toml cannot say: compile rsbox-init into the package.

pyproject.toml holds the metadata; this adds to build_py the compilation of
rootless/launch/init.c into rootless/launch/rsbox-init, a static binary (images such as
a busybox-only one have no libc to link against). $CC overrides the compiler (default cc);
gcc and libc6-dev (which has libc.a) are in setup.sh's package list.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

SOURCE = Path("rootless", "launch", "init.c")
BINARY = Path("rootless", "launch", "rsbox-init")


class BuildPyWithInit(build_py):
    def _binary(self) -> Path:
        # An editable install imports the package from the source tree: build it there.
        return BINARY if getattr(self, "editable_mode", False) else Path(self.build_lib, BINARY)

    def run(self) -> None:
        super().run()
        out = self._binary()
        out.parent.mkdir(parents=True, exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "cc"))
        cmd = [*cc, "-static", "-Os", "-s", "-Wall", "-Wextra", "-o", str(out), str(SOURCE)]
        self.announce(" ".join(cmd), level=logging.INFO)
        try:
            subprocess.run(cmd, check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise SystemExit(
                f"building rsbox-init failed ({exc}): a C compiler and a static libc are "
                "needed (Debian: apt-get install gcc libc6-dev)"
            ) from exc

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib, BINARY))]

    def get_output_mapping(self) -> dict[str, str]:
        """Editable installs: build_lib's copy is the source tree's (strict mode links it)."""
        mapping = dict(super().get_output_mapping())
        if getattr(self, "editable_mode", False):
            mapping[str(Path(self.build_lib, BINARY))] = str(BINARY)
        return mapping


class BdistWheelForThisPlatform(bdist_wheel):
    """The wheel holds a machine binary: tag it py3-none-<platform>, not py3-none-any."""

    def finalize_options(self) -> None:
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self) -> tuple[str, str, str]:
        return "py3", "none", super().get_tag()[2]


setup(cmdclass={"build_py": BuildPyWithInit, "bdist_wheel": BdistWheelForThisPlatform})
