"""`rsbox policy list | show NAME | check PATH | export-bpf NAME|PATH -o FILE`."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from rootless.commands import Context
from rootless.errors import UsageError

if TYPE_CHECKING:
    from policies.profile import Profile

DESCRIPTIONS = {
    "default": "rsbox's allowlist: at least Docker's default, plus no TIOCSTI/TIOCLINUX,"
    " AF_ALG or AF_VSOCK",
    "strict": "default without ptrace, personality changes or sockets but AF_UNIX/INET/INET6",
    "fakeroot": "default, but chown/set*id/setgroups/capset/device mknod succeed without"
    " effect (package managers under a single-id map)",
    "unconfined": "no filter at all",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="seccomp profiles: list, show, check, export-bpf")
    ps = p.add_subparsers(dest="policy_command", required=True, parser_class=type(p))
    ps.add_parser("list", help="the built-in profiles").set_defaults(handler=_list)
    show = ps.add_parser("show", help="print a built-in profile (Docker JSON)")
    show.add_argument("name")
    show.set_defaults(handler=_show)
    check = ps.add_parser("check", help="validate a profile; what it allows and denies here")
    check.add_argument("path")
    check.set_defaults(handler=_check)
    exp = ps.add_parser("export-bpf", help="write the compiled filter (struct sock_filter[])")
    exp.add_argument("profile", metavar="NAME|PATH")
    exp.add_argument("-o", "--output", required=True, metavar="FILE")
    exp.set_defaults(handler=_export)


def _load(choice: str, *, as_path: bool = False) -> Profile:
    import policies

    try:
        if not as_path and "/" not in choice and choice in policies.builtin_names():
            return policies.load_builtin(choice)
        return policies.load_file(choice)
    except policies.PolicyError as exc:
        raise UsageError(f"seccomp profile {choice}: {exc}", hint="check the profile") from exc


def _list(ns: argparse.Namespace, ctx: Context) -> int:
    import policies

    for name in policies.builtin_names():
        print(f"{name:<12}{DESCRIPTIONS.get(name, '')}")
    return 0


def _show(ns: argparse.Namespace, ctx: Context) -> int:
    import policies
    from policies.profile import to_json_dict

    if ns.name not in policies.builtin_names():
        raise UsageError(
            f'no built-in seccomp profile "{ns.name}"',
            hint=f"one of: {', '.join(policies.builtin_names())}",
        )
    print(json.dumps(to_json_dict(_load(ns.name)), indent=1))
    return 0


def _check(ns: argparse.Namespace, ctx: Context) -> int:
    from policies.profile import Host
    from policies.summary import describe

    profile = _load(ns.path, as_path=True)
    host = Host.current()
    for w in profile.warnings:
        print(f"warning: {w}")
    verdicts = describe(profile, host)
    print(f"{ns.path}: valid; on {host.goarch}, kernel {'.'.join(map(str, host.kernel))}:")
    for kind in ("allow", "deny", "conditional"):
        group = [v for v in verdicts if v.kind == kind]
        print(f"{kind} ({len(group)}):")
        if kind == "allow":
            print(
                textwrap.fill(
                    " ".join(v.name for v in group), 88, initial_indent="  ", subsequent_indent="  "
                )
            )
            continue
        for v in group:
            print(f"  {v.name:<24}{v.detail}")
    return 0


def _export(ns: argparse.Namespace, ctx: Context) -> int:
    import policies

    profile = _load(ns.profile)
    try:
        program = policies.compile_profile(profile)
    except policies.PolicyError as exc:
        raise UsageError(f"seccomp profile {ns.profile}: {exc}", hint="check the profile") from exc
    if program is None:
        raise UsageError(
            f"seccomp profile {ns.profile} filters nothing: there is no BPF to write",
            hint="unconfined means no filter is installed",
        )
    from rootless.lifecycle import atomic_write_bytes

    out = Path(ns.output)
    try:
        atomic_write_bytes(out, program, mode=0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}", hint="check -o") from exc
    print(f"{out}: {len(program) // 8} BPF instructions")
    return 0
