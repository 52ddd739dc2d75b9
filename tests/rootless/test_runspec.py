from __future__ import annotations

from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.runspec import DEFAULT_PATH, ImageDefaults, RunSpec, Volume, merge_env, plan_process

IMAGE = ImageDefaults(
    env=("PATH=/bin", "A=1"), cmd=("sh",), entrypoint=("/entry",), workdir="/srv", user="app"
)
CID = "0123456789abcdef" * 4


def test_image_entrypoint_and_cmd_are_joined() -> None:
    assert plan_process(RunSpec("img"), IMAGE, CID).argv == ("/entry", "sh")


def test_cli_command_replaces_image_cmd_only() -> None:
    plan = plan_process(RunSpec("img", command=("ls", "-l")), IMAGE, CID)
    assert plan.argv == ("/entry", "ls", "-l")


def test_entrypoint_flag_clears_image_cmd() -> None:
    assert plan_process(RunSpec("img", entrypoint="/bin/x"), IMAGE, CID).argv == ("/bin/x",)


def test_empty_entrypoint_means_none() -> None:
    plan = plan_process(RunSpec("img", entrypoint="", command=("id",)), IMAGE, CID)
    assert plan.argv == ("id",)


def test_no_command_at_all_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no command"):
        plan_process(RunSpec("img"), ImageDefaults(), CID)


def test_env_order_and_host_passthrough() -> None:
    env = merge_env(["A=1", "B=2"], ["A=3", "HOSTONLY", "MISSING"], {"HOSTONLY": "h"})
    assert env == ["A=3", "B=2", "HOSTONLY=h"]


def test_defaults_path_hostname_and_term() -> None:
    plan = plan_process(RunSpec("img", command=("true",), tty=True), ImageDefaults(), CID)
    assert f"PATH={DEFAULT_PATH}" in plan.env
    assert f"HOSTNAME={CID[:12]}" in plan.env
    assert "TERM=xterm" in plan.env
    assert plan.cwd == "/" and plan.user == "" and plan.hostname == CID[:12]


def test_flags_override_image_workdir_user_hostname() -> None:
    spec = RunSpec("img", workdir="/w", user="0:0", hostname="box")
    plan = plan_process(spec, IMAGE, CID)
    assert (plan.cwd, plan.user, plan.hostname) == ("/w", "0:0", "box")
    assert plan_process(RunSpec("img"), IMAGE, CID).cwd == "/srv"


def test_volume_parse(tmp_path: Path) -> None:
    v = Volume.parse(f"{tmp_path}:/data:ro")
    assert (v.source, v.target, v.readonly) == (tmp_path, "/data", True)
    assert not Volume.parse(f"{tmp_path}:/data/").readonly
    for bad in ("x", f"{tmp_path}:rel", f"{tmp_path}:/d:rx", "named:/d"):
        with pytest.raises(UsageError):
            Volume.parse(bad)


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec("img", network="bridge"),
        RunSpec("img", userns="keep-id"),
        RunSpec("img", workdir="relative"),
        RunSpec("img", env=("=x",)),
        RunSpec("img", volumes=(Volume(Path("/nonexistent/rsbox"), "/x"),)),
        RunSpec("img", hostname="h" * 65),
    ],
)
def test_validate_rejects(spec: RunSpec) -> None:
    with pytest.raises(UsageError):
        spec.validate()


def test_validate_accepts_a_plain_spec(tmp_path: Path) -> None:
    RunSpec("img", volumes=(Volume(tmp_path, "/x"),), network="none", userns="single").validate()
