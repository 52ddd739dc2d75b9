"""The filter for `rsbox run --security-opt seccomp=CHOICE`, from a cache keyed by the
profile's bytes.

`compile_cached` keys its cache by the parsed profile, so every hit still pays for
parsing the JSON and loading pyseccomp (together most of the policy's share of a
container's start). This cache sits in front of it and is keyed by what can be read
without either: the profile file's bytes, the host, libseccomp's version and the
compiler's, and the container's capabilities (rules with `includes.caps`/`excludes.caps`
depend on them). A miss falls through to the real loader and compiler, so a malformed file
still gets its precise PolicyError.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import sha256
else:
    try:
        # The builtin SHA-256, as CPython's random.py takes _sha512: hashlib would load
        # OpenSSL to hash one small key (with store.py not importing secrets: P0 of `run`
        # 92 -> 86 ms of CPU under load, medians of 20 alternated runs).
        from _sha256 import sha256
    except ImportError:  # builds without it (3.12+ names it _sha2)
        from hashlib import sha256

from policies._files import write_atomically
from policies._libseccomp import COMPILER_VERSION, libseccomp_version

PROFILES = Path(__file__).with_name("profiles")
UNCONFINED = "unconfined"
_NO_FILTER = b""  # a cached "this profile needs no filter"


def profile_source(choice: str) -> tuple[Path, bool]:
    """(file, is_builtin) for a built-in name or a path."""
    builtin = PROFILES / f"{choice}.json"
    if "/" not in choice and builtin.is_file():
        return builtin, True
    return Path(choice), False


def _key(text: bytes, caps: frozenset[str] | None) -> str:
    u = os.uname()
    facts = f"rsbox-bpf\0{COMPILER_VERSION}\0{libseccomp_version()}\0{u.machine}\0{u.release}\0"
    # None (DEFAULT_CAPS) is its own word: naming the set would mean importing profile.py,
    # hence pyseccomp, on the hit path. Canonical cap names contain no comma.
    held = "default" if caps is None else ",".join(sorted(caps))
    return sha256(f"{facts}{held}\0".encode() + text).hexdigest()


def program_for(
    choice: str, cache_dir: Path, *, caps: frozenset[str] | None = None
) -> bytes | None:
    """BPF bytes for `choice` (built-in name or profile path), None for no filter.

    `caps`: the canonical names (`CAP_SYS_ADMIN`) the container holds, which the profile's
    `includes.caps`/`excludes.caps` are evaluated against; None means
    `policies.DEFAULT_CAPS` (Docker's default set).
    Raises PolicyError for a profile that does not load, FileNotFoundError for none."""
    if choice == UNCONFINED:
        return None
    source, builtin = profile_source(choice)
    text = source.read_bytes()
    path = cache_dir / f"{_key(text, caps)}.prog"
    with contextlib.suppress(OSError):
        cached = path.read_bytes()
        if cached == _NO_FILTER:
            return None
        if len(cached) % 8 == 0:
            return cached
    from policies import load_builtin, load_file
    from policies.compiler import compile_profile
    from policies.profile import Host

    profile = load_builtin(choice) if builtin else load_file(source)
    program = compile_profile(profile, Host.current() if caps is None else Host.current(caps))
    # The cache is an optimisation: an unwritable cache_dir only costs a recompile.
    with contextlib.suppress(OSError):
        write_atomically(path, program if program is not None else _NO_FILTER)
    return program
