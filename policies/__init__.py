"""Seccomp for rsbox: profile model, Docker/OCI JSON loader, built-in profiles, BPF compiler.

Layering: `policies` imports neither `rootless` nor `fs`. It hands the launcher BPF bytes
(an array of `struct sock_filter`); installing them (PR_SET_NO_NEW_PRIVS, then
seccomp(SECCOMP_SET_MODE_FILTER) as the last step before execve) is the launcher's job.

Built-in profiles:
- `default`: rsbox's own allowlist (design in `_default_profile.py` and README.md);
- `unconfined`: no filter at all (`compile_profile` returns None).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from policies.compiler import compile_cached, compile_profile
    from policies.errors import PolicyError
    from policies.profile import (
        DEFAULT_CAPS,
        Action,
        Arg,
        Condition,
        Host,
        Op,
        Profile,
        Rule,
        from_json_dict,
    )

__all__ = [
    "DEFAULT_CAPS",
    "Action",
    "Arg",
    "Condition",
    "Host",
    "Op",
    "PolicyError",
    "Profile",
    "Rule",
    "builtin_names",
    "compile_cached",
    "compile_profile",
    "from_json_dict",
    "load_builtin",
    "load_file",
]

# Imported on first use (PEP 562): `rsbox run` with a cached filter needs none of them,
# and the compiler pulls in pyseccomp, which forks /sbin/ldconfig to find its library.
_LAZY = {
    "compile_cached": "policies.compiler",
    "compile_profile": "policies.compiler",
    "PolicyError": "policies.errors",
    **dict.fromkeys(
        [
            "DEFAULT_CAPS",
            "Action",
            "Arg",
            "Condition",
            "Host",
            "Op",
            "Profile",
            "Rule",
            "from_json_dict",
            "load_json_text",
        ],
        "policies.profile",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'policies' has no attribute {name!r}")


_PROFILES = Path(__file__).with_name("profiles")
_UNCONFINED_NAME = "unconfined"


def builtin_names() -> list[str]:
    """Names `load_builtin` accepts, sorted."""
    names = {p.name.removesuffix(".json") for p in _PROFILES.iterdir() if p.name.endswith(".json")}
    return sorted(names | {_UNCONFINED_NAME})


def load_builtin(name: str) -> Profile:
    from policies.errors import PolicyError
    from policies.profile import UNCONFINED, load_json_text

    if name == _UNCONFINED_NAME:
        return UNCONFINED
    if name not in builtin_names():
        raise PolicyError(
            "", f'no built-in seccomp profile "{name}" ({", ".join(builtin_names())})'
        )
    text = (_PROFILES / f"{name}.json").read_text()
    return load_json_text(text, source=f"builtin:{name}")


def load_file(path: Path | str) -> Profile:
    """Load a Docker seccomp profile, an OCI `linux.seccomp` object, or a whole config.json."""
    from policies.errors import PolicyError
    from policies.profile import load_json_text

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise PolicyError("", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PolicyError("", f"{path}: not UTF-8 text") from exc
    return load_json_text(text, source=str(path))
