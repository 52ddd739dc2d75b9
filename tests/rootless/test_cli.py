"""The command line's dispatch: only the asked command's group is built, and `exec`'s
path imports none of the modules it was freed of (rootless.commands.exec)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from rootless.aliases import command_of
from rootless.commands import MODULES, QUICK, Parser, build_parser


def _commands(module: str) -> set[str]:
    parser = Parser(prog="t")
    sub = parser.add_subparsers(dest="command")
    importlib.import_module(module).register(sub)
    return set(sub.choices)


@pytest.mark.parametrize("command", sorted(QUICK))
def test_quick_names_the_module_that_registers_the_command(command: str) -> None:
    assert QUICK[command] in MODULES
    assert command in _commands(QUICK[command])


def test_every_command_is_registered_by_one_module() -> None:
    seen: dict[str, str] = {}
    for module in MODULES:
        for command in _commands(module):
            assert command not in seen, (command, module, seen.get(command))
            seen[command] = module
    assert set(QUICK) <= set(seen)


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "-e", "A=1", "-w", "/tmp", "ctr", "sh", "-c", "echo"],
        ["--root", "/r", "run", "--rm", "--network", "none", "img", "true"],
        ["--root=/r", "ps", "-a"],
    ],
)
def test_the_quick_parser_parses_as_the_whole_tree(argv: list[str]) -> None:
    command = command_of(argv)
    assert command in QUICK
    quick, whole = build_parser(command).parse_args(argv), build_parser().parse_args(argv)
    assert {k: v for k, v in vars(quick).items() if k != "handler"} == {
        k: v for k, v in vars(whole).items() if k != "handler"
    }


def test_command_of_skips_the_global_options() -> None:
    assert command_of(["--root", "exec", "run"]) == "run"
    assert command_of(["--root=/x", "exec"]) == "exec"
    assert command_of(["--help"]) is None


def test_an_unknown_command_gets_the_whole_tree_and_one_error() -> None:
    from rootless.errors import UsageError

    with pytest.raises(UsageError, match=r"invalid choice: 'nosuch'.*'exec'"):
        build_parser("nosuch").parse_args(["nosuch"])


def test_execs_path_imports_no_heavy_module() -> None:
    """What `rsbox exec CTR CMD` imports up to the fork, in a fresh interpreter, with the
    C half of rootless.syscalls loaded (not ctypes); the same probe run for `ps` and
    P1's fakeroot (which keeps ctypes) does import them, so that the probe can tell."""
    probe = """
import json, sys
from rootless.commands import build_parser
ns = build_parser(sys.argv[1]).parse_args(sys.argv[1:])
if sys.argv[1] == "exec":
    import rootless.containers_lookup, rootless.launch.exec, rootless.running
else:
    import rootless.containers_cli, rootless.store, rootless.launch.fakeroot
from rootless import syscalls
syscalls.set_dumpable(True)  # loads rootless._syscalls; the flag is already set
print(json.dumps(sorted(sys.modules)))
"""
    heavy = {"typing", "dataclasses", "pathlib", "sqlite3", "socket", "rootless.store", "ctypes"}

    def loaded(*argv: str) -> set[str]:
        out = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=True
        ).stdout
        return set(json.loads(out))

    exec_path = loaded("exec", "ctr", "true")
    assert exec_path & heavy == set()
    assert "rootless._syscalls" in exec_path
    assert loaded("ps") & heavy == heavy  # fakeroot imports socket


def test_runs_path_loads_no_openssl() -> None:
    """`run` names containers and volumes with os.urandom (rootless.store.random_hex):
    `secrets` would import hmac and hashlib, whose _hashlib loads OpenSSL on every start.
    The same probe sees _hashlib once `secrets` is imported, so that it can tell."""
    probe = "import sys, {}; print('_hashlib' in sys.modules)"
    run_path = "rootless.launch.gather, rootless.launch.p0, rootless.volumes, rootless.store"

    def loads_openssl(modules: str) -> str:
        argv = [sys.executable, "-c", probe.format(modules)]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert loads_openssl(run_path + ", policies.program_cache") == "False"
    assert loads_openssl(run_path + ", secrets") == "True"
