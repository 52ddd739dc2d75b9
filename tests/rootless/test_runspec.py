from __future__ import annotations

from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.network import Port, pasta_argv
from rootless.runspec import (
    DEFAULT_PATH,
    ImageDefaults,
    RunSpec,
    Volume,
    merge_env,
    parse_network,
    plan_process,
    valid_hostname,
)

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


def test_slurm_variables_pass_over_the_image_and_under_dash_e() -> None:
    host = {"SLURM_JOB_ID": "7", "SLURM_PROCID": "1", "SLURMD_NODENAME": "n2", "HOME": "/h"}
    env = merge_env(["SLURM_JOB_ID=image", "A=1"], ["SLURM_PROCID=9"], host)
    assert env == ["SLURM_JOB_ID=7", "A=1", "SLURM_PROCID=9", "SLURMD_NODENAME=n2"]
    assert merge_env(["A=1"], [], {"HOME": "/h", "XSLURM_X": "1"}) == ["A=1"]


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
    for bad in ("x", f"{tmp_path}:rel", f"{tmp_path}:/d:rx", "a:b:c:d", "n$me:/d", "x:/d"):
        with pytest.raises(UsageError):
            Volume.parse(bad)
    named = Volume.parse("cache:/d:ro,nocopy,Z")
    assert (named.kind, named.name, named.target, named.readonly) == ("volume", "cache", "/d", True)
    assert named.options == "nocopy"
    anonymous = Volume.parse("/d/")
    assert (anonymous.kind, anonymous.anonymous, anonymous.target) == ("volume", True, "/d")
    assert Volume.from_json(named.to_json()) == named
    old = Volume.from_json([str(tmp_path), "/d", True])  # a record of an older rsbox
    assert (old.kind, old.source, old.readonly) == ("bind", tmp_path, True)


@pytest.mark.parametrize(
    "spec",
    [
        RunSpec("img", network="bridge"),
        RunSpec("img", userns="keep-all"),
        RunSpec("img", userns="keep-id", seccomp="fakeroot"),
        RunSpec("img", workdir="relative"),
        RunSpec("img", env=("=x",)),
        RunSpec("img", volumes=(Volume(Path("/nonexistent/rsbox"), "/x"),)),
        RunSpec("img", hostname="h" * 65),
        RunSpec("img", hostname="with space"),
        RunSpec("img", hostname="a/b"),
        RunSpec("img", hostname="-lead"),
        RunSpec("img", user="99999999"),
        RunSpec("img", user="0:70000"),
        RunSpec("img", memory="99999999999999999999999g"),
        RunSpec("img", ulimits=("nofile=99999999999999999999999",)),
        RunSpec("img", network="host", network_options=("-T", "80")),
        RunSpec("img", cap_add=("CAP_NO_SUCH",)),
        RunSpec("img", privileged=True, seccomp="default"),
    ],
)
def test_validate_rejects(spec: RunSpec) -> None:
    with pytest.raises(UsageError):
        spec.validate()


def test_validate_accepts_a_plain_spec(tmp_path: Path) -> None:
    RunSpec("img", volumes=(Volume(tmp_path, "/x"),), network="none", userns="single").validate()
    # Controls for the rejections above: the same fields, within their bounds.
    RunSpec(
        "img",
        hostname="web-1.example",
        user="65535:65535",
        memory="8589934591g",
        network="pasta",
        network_options=("-T", "80"),
        cap_add=("CAP_NET_ADMIN",),
        privileged=True,
        seccomp="unconfined",
    ).validate()


def test_valid_hostname_is_rfc_1123() -> None:
    assert valid_hostname("a") and valid_hostname("a-b.c9") and valid_hostname("x" * 63)
    for bad in ("", "a..b", "a_b", "b-", "x" * 64 + ".y", "é"):
        assert not valid_hostname(bad), bad


def test_network_mode_and_options_use_podmans_syntax() -> None:
    assert parse_network("pasta") == ("pasta", ())
    assert parse_network("pasta:-T,5432,--map-gw") == ("pasta", ("-T", "5432", "--map-gw"))
    assert parse_network("host") == ("host", ())
    with pytest.raises(UsageError):
        parse_network("pasta:")


def test_pasta_maps_nothing_of_the_hosts_loopback_unless_asked(tmp_path: Path) -> None:
    pid_file = tmp_path / "p"
    plain = pasta_argv(42, (Port(8080, 80),), pid_file)
    assert plain[-3:] == ["-P", str(pid_file), "42"]
    assert {"--no-map-gw"} <= set(plain) and plain.count("none") == 3  # -u, -T, -U
    assert plain[plain.index("-t") + 1] == "8080:80"
    asked = pasta_argv(42, (), pid_file, ("-T", "5432", "--map-gw"))
    assert "--no-map-gw" not in asked and "--map-gw" not in asked
    assert asked[asked.index("-T") + 1] == "5432" and asked.count("-T") == 1


@pytest.mark.parametrize(
    ("network", "pasta_from_p0", "netns_of_p2"),
    [
        ("pasta", True, False),
        ("slirp4netns", False, True),
        ("none", False, True),
        ("host", False, False),
    ],
)
def test_who_makes_the_network_namespace(
    network: str, pasta_from_p0: bool, netns_of_p2: bool
) -> None:
    """One rule for P0, P1 and P2: pasta's namespace is P1's (P0 runs pasta against it),
    none's and slirp4netns's are P2's, host keeps the host's."""
    spec = RunSpec(image="x", network=network)
    assert (spec.pasta_from_p0, spec.netns_of_p2) == (pasta_from_p0, netns_of_p2)
