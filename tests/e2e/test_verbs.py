"""The everyday verbs Docker users reach for, through the real CLI: --format templates,
filters, `system df`, the prunes, `stats`, `rename`, `pause`, and Docker's management
forms (`container ls`, `image rm`...).

Expected outputs follow Docker's documentation (docker/cli docs/reference/commandline:
container_ls.md, image_ls.md, inspect.md, system_df.md, container_prune.md,
image_prune.md, system_prune.md, container_stats.md), each named where it is used, with
this run's values in place of the example's. Tables are what Docker's tabwriter makes of
them (cells padded to the widest plus 3, at least 10). Tests that prune or measure the
store use a store of their own: the session's store holds other modules' images.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox, du, one_line_error, table
from tests.images import make_busybox_rootfs, make_layered_oci_layout

DECIMAL = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}


def _bytes(text: str) -> float:
    """go-units' HumanSize back to a number: `4.121MB` -> 4121000."""
    m = re.fullmatch(r"([\d.]+)([kMGT]?B)", text)
    assert m, text
    return float(m[1]) * DECIMAL[m[2]]


@pytest.fixture()
def name() -> str:
    return f"verbs-{os.getpid()}-{os.urandom(3).hex()}"


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Rsbox:
    """A store of this module's own: `bb` (busybox) and `layered` (three layers)."""
    base = tmp_path_factory.mktemp("verbs")
    rs = Rsbox(base / "store")
    rs("import", str(make_busybox_rootfs(base / "bb")), "bb", check=True)
    layout, tag = make_layered_oci_layout(base / "layout")
    rs("import", f"oci:{layout}:{tag}", "layered", check=True)
    return rs


@pytest.fixture()
def sleeper(rsbox: Rsbox, busybox: str, name: str) -> Iterator[tuple[str, str, int]]:
    port = 20000 + int.from_bytes(os.urandom(2)) % 10000
    cid = rsbox.run("-d", "--name", name, "-p", f"{port}:80", busybox, "sleep", "1000", check=True)
    yield cid.stdout.strip(), name, port
    rsbox("rm", "-f", name)


def test_ps_and_inspect_formats_are_dockers(rsbox: Rsbox, sleeper: tuple[str, str, int]) -> None:
    cid, name, port = sleeper
    only = ("--filter", f"name=^{name}$")
    # container_ls.md: `docker ps --format "{{.ID}}: {{.Command}}"` (the command quoted,
    # as Docker quotes it since 1.13)
    res = rsbox("ps", *only, "--format", "{{.ID}}: {{.Command}}", check=True)
    assert res.stdout == f'{cid[:12]}: "sleep 1000"\n'
    # container_ls.md: `docker ps --format "table {{.ID}}\t{{.Labels}}"`: a header of
    # Docker's column names, then the rows, aligned
    res = rsbox("ps", *only, "--format", "table {{.ID}}\\t{{.Names}}\\t{{.Ports}}", check=True)
    assert res.stdout == table(
        ("CONTAINER ID", "NAMES", "PORTS"), (cid[:12], name, f"0.0.0.0:{port}->80/tcp")
    )
    # container_ls.md: `docker ps --format json`, as `{{json .}}` (rsbox's `json` is the
    # array it always printed): Docker's keys, in Docker's order
    res = rsbox("ps", *only, "--format", "{{json .}}", check=True)
    line = res.stdout
    assert line.startswith('{"Command":"\\"sleep 1000\\"","CreatedAt":"') and line.endswith("}\n")
    doc = json.loads(line)
    assert list(doc) == [
        "Command",
        "CreatedAt",
        "ID",
        "Image",
        "Labels",
        "LocalVolumes",
        "Mounts",
        "Names",
        "Networks",
        "Ports",
        "RunningFor",
        "Size",
        "State",
        "Status",
    ]
    assert (doc["ID"], doc["Names"], doc["State"], doc["Size"]) == (cid[:12], name, "running", "0B")
    assert doc["Status"].startswith("Up ") and doc["RunningFor"].endswith(" ago")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \S+", doc["CreatedAt"])
    assert json.loads(rsbox("ps", *only, "--format", "json", check=True).stdout)[0]["Id"] == cid
    # inspect.md and the issue: `{{.State.Status}}`, `{{json ...}}`, `index`
    res = rsbox("inspect", "--format", "{{.State.Status}}", name, check=True)
    assert res.stdout == "running\n"
    fmt = '{{.Name}} {{.State.Running}} {{(index (index .NetworkSettings.Ports "80/tcp") 0).HostPort}}'
    assert rsbox("inspect", "-f", fmt, cid, check=True).stdout == f"{name} true {port}\n"
    assert (
        rsbox("inspect", "-f", "{{json .Config.Image}}", name, check=True).stdout == '"busybox"\n'
    )
    one_line_error(
        rsbox("inspect", "-f", "{{.State.Nope}}", name), '"Nope"', "Status", hint=False, alone=True
    )
    one_line_error(rsbox("ps", "--format", "{{.Nope}}"), '"Nope"', "Names", hint=False, alone=True)
    one_line_error(rsbox("ps", "--format", "table {{.ID"), "--format", hint=False, alone=True)
    one_line_error(rsbox("ps", "--filter", "colour=red"), "colour", hint=False, alone=True)


def test_ps_filters(rsbox: Rsbox, busybox: str, layered: str, name: str) -> None:
    up = rsbox.run("-d", "--name", f"{name}-up", busybox, "sleep", "1000", check=True).stdout
    down = rsbox.run("--name", f"{name}-down", layered, "sh", "-c", "exit 3")
    assert down.returncode == 3

    def ids(*f: str) -> list[str]:
        return rsbox("ps", "-q", "--filter", f"name={name}", *f, check=True).stdout.split()

    try:
        assert ids() == [up.strip()[:12]]
        assert len(ids("--filter", "status=exited")) == 1  # without -a, as Docker
        assert ids("--filter", "status=exited") == ids("-a", "--filter", "exited=3")
        assert ids("-a", "--filter", f"ancestor={busybox}") == [up.strip()[:12]]
        assert len(ids("-a", "--filter", "status=exited", "--filter", "status=running")) == 2
        assert ids("-a", "--filter", "label=no.such.label") == []
        # the management form is the same command
        fmt = ("-a", "--filter", f"name={name}", "--format", "{{.ID}} {{.State}} {{.Command}}")
        plain = rsbox("ps", *fmt, check=True).stdout
        assert rsbox("container", "ls", *fmt, check=True).stdout == plain
    finally:
        rsbox("rm", "-f", f"{name}-up", f"{name}-down")


def test_images_formats_and_filters(own: Rsbox) -> None:
    iid = json.loads(own("image", "inspect", "bb", check=True).stdout)[0]["Id"]
    bb = ("--filter", "reference=bb")
    # image_ls.md: `docker images --format "{{.ID}}: {{.Repository}}"`
    assert own("images", *bb, "--format", "{{.ID}}: {{.Repository}}", check=True).stdout == (
        f"{iid[:12]}: localhost/bb\n"
    )
    # image_ls.md: `docker images --format "table {{.ID}}\t{{.Repository}}\t{{.Tag}}"`
    res = own("images", *bb, "--format", "table {{.ID}}\\t{{.Repository}}\\t{{.Tag}}", check=True)
    assert res.stdout == table(
        ("IMAGE ID", "REPOSITORY", "TAG"), (iid[:12], "localhost/bb", "latest")
    )
    # image_ls.md: `docker images --format json`: Docker's keys, <none> escaped as Go does
    doc = json.loads(own("images", *bb, "--format", "{{json .}}", check=True).stdout)
    assert list(doc) == [
        "Containers",
        "CreatedAt",
        "CreatedSince",
        "Digest",
        "ID",
        "Repository",
        "SharedSize",
        "Size",
        "Tag",
        "UniqueSize",
    ]
    assert (doc["ID"], doc["Tag"], doc["Containers"]) == (iid[:12], "latest", "N/A")
    assert '"Digest":"\\u003cnone\\u003e"' in own("images", *bb, "--format", "{{json .}}").stdout
    assert own("image", "inspect", "-f", "{{.Id}} {{json .RepoTags}}", "bb", check=True).stdout == (
        f'{iid} ["localhost/bb:latest"]\n'
    )
    assert own("images", "-q", *bb, check=True).stdout == f"{iid[:12]}\n"
    # The management form is the same verb (the CREATED column moves with the clock, so
    # compare the table without it).
    fmt = ("--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}")
    assert own("image", "ls", *fmt, check=True).stdout == own("images", *fmt, check=True).stdout
    assert own("images", "--filter", "dangling=true", "-q", check=True).stdout == ""
    one_line_error(own("images", "--format", "{{.Tags}}"), '"Tags"', "Tag", hint=False, alone=True)
    one_line_error(own("images", "--filter", "dangling=maybe"), "dangling", hint=False, alone=True)


def test_system_df_is_du_of_the_stores_parts(own: Rsbox) -> None:
    own.run("--name", "df-stopped", "bb", "sh", "-c", "echo data > /payload", check=True)
    try:
        docs = [
            json.loads(line)
            for line in own(
                "system", "df", "--format", "{{json .}}", check=True
            ).stdout.splitlines()
        ]
        by_type = {d["Type"]: d for d in docs}
        assert list(by_type) == ["Images", "Containers", "Local Volumes", "Build Cache"]
        root = own.root
        for kind, parts in (
            ("Images", [root / "layers", root / "blobs"]),
            ("Containers", [root / "containers"]),
        ):
            size, measured = _bytes(by_type[kind]["Size"]), du(*parts)
            assert abs(size - measured) <= measured / 100, (kind, size, measured)
        assert (by_type["Containers"]["TotalCount"], by_type["Containers"]["Active"]) == ("1", "0")
        assert by_type["Containers"]["Reclaimable"].endswith("%)")
        assert (by_type["Local Volumes"]["Size"], by_type["Build Cache"]["Size"]) == ("0B", "0B")
        # system_df.md: the default table, Docker's columns
        table = own("system", "df", check=True).stdout.splitlines()
        assert table[0] == "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE"
        assert [line[:16] for line in table[1:]] == [
            "Images          ",
            "Containers      ",
            "Local Volumes   ",
            "Build Cache     ",
        ]
        verbose = own("system", "df", "-v", check=True).stdout
        for heading in ("Images space usage:", "Containers space usage:", "Build cache usage: 0B"):
            assert f"{heading}\n" in verbose
        assert "df-stopped" in verbose and "localhost/bb" in verbose
    finally:
        own("rm", "df-stopped")


def test_prune_removes_exactly_what_docker_says(own: Rsbox, tmp_path: Path) -> None:
    # An untagged image: its name moves to a newer import.
    old = own("import", str(make_busybox_rootfs(tmp_path / "a")), "tmp:1", check=True).stdout
    (tmp_path / "b").mkdir()
    (make_busybox_rootfs(tmp_path / "b") / "etc" / "b").write_text("b\n")
    new = own("import", str(tmp_path / "b"), "tmp:1", check=True).stdout
    old_id, new_id = old.strip(), new.strip()
    running = own.run("-d", "bb", "sleep", "1000", check=True).stdout.strip()
    own.run("--name", "stopped", "layered", "true", check=True)
    bb_layers = json.loads(own("image", "inspect", "bb", check=True).stdout)[0]["RootFS"]

    def images() -> list[str]:
        return sorted(own("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())

    try:
        assert images() == [
            "<none>:<none>",
            "localhost/bb:latest",
            "localhost/layered:latest",
            "localhost/tmp:1",
        ]

        # system_prune.md: asks first; anything but y cancels, quietly, status 0
        res = own("system", "prune", input="n\n", check=True)
        assert res.stdout == (
            "WARNING! This will remove:\n  - all stopped containers\n  - all dangling images\n\n"
            "Are you sure you want to continue? [y/N] "
        )
        assert len(images()) == 4

        # image_prune.md: dangling images only
        res = own("image", "prune", "-f", check=True)
        assert res.stdout.startswith(f"Deleted Images:\ndeleted: sha256:{old_id}\n")
        assert re.search(r"\n\nTotal reclaimed space: [\d.]+[kM]B\n$", res.stdout), res.stdout
        assert images() == ["localhost/bb:latest", "localhost/layered:latest", "localhost/tmp:1"]

        # container_prune.md: stopped containers, never a running one
        res = own("container", "prune", input="y\n", check=True)
        assert res.stdout.startswith(
            "WARNING! This will remove all stopped containers.\n"
            "Are you sure you want to continue? [y/N] Deleted Containers:\n"
        )
        ps = own("ps", "-a", "--format", "{{.ID}} {{.Names}}", check=True).stdout
        assert ps == f"{running[:12]} {own('inspect', '-f', '{{.Name}}', running).stdout}"

        # image_prune.md -a: every image without a container; the running one's stays
        res = own("image", "prune", "-a", "-f", check=True)
        assert "untagged: localhost/tmp:1\n" in res.stdout
        assert f"deleted: sha256:{new_id}\n" in res.stdout
        assert "untagged: localhost/layered:latest\n" in res.stdout
        assert images() == ["localhost/bb:latest"]
        assert (
            json.loads(own("image", "inspect", "bb", check=True).stdout)[0]["RootFS"] == bb_layers
        )
        assert own("exec", running, "cat", "/etc/passwd", check=True).stdout.startswith("root:")

        # nothing left to prune (--volumes: no volume here; tests/e2e/test_volumes.py)
        res = own("system", "prune", "-a", "--volumes", "-f", check=True)
        assert res.stdout == "Total reclaimed space: 0B\n"
        assert res.stderr == ""
        assert own("ps", "-q", check=True).stdout == f"{running[:12]}\n"
    finally:
        own("rm", "-f", running)
    # and with the container gone, -a takes its image too
    res = own("system", "prune", "-a", "-f", check=True)
    assert "untagged: localhost/bb:latest\n" in res.stdout
    assert own("images", "-q", check=True).stdout == ""
    # the module's images come back for whoever runs after
    own("import", str(make_busybox_rootfs(tmp_path / "bb")), "bb", check=True)
    layout, tag = make_layered_oci_layout(tmp_path / "layout")
    own("import", f"oci:{layout}:{tag}", "layered", check=True)


def test_stats_sees_a_busy_cpu_and_an_idle_one(rsbox: Rsbox, busybox: str, name: str) -> None:
    """container_stats.md: `--no-stream`, `--format`. A functional check: generous
    bounds, nothing timed."""
    rsbox.run(
        "-d", "--name", f"{name}-busy", busybox, "sh", "-c", "while :; do :; done", check=True
    )
    rsbox.run("-d", "--name", f"{name}-idle", busybox, "sleep", "1000", check=True)
    try:
        res = rsbox(
            "stats", "--no-stream", "--format", "{{.Container}} {{.CPUPerc}} {{.PIDs}}",
            f"{name}-busy", f"{name}-idle", check=True,
        )  # fmt: skip
        cpu = {
            line.split()[0]: float(line.split()[1].rstrip("%")) for line in res.stdout.splitlines()
        }
        assert cpu[f"{name}-busy"] > 10, res.stdout
        assert cpu[f"{name}-idle"] < 5, res.stdout
        assert "/proc" in res.stderr  # where the figures come from, said
        doc = json.loads(
            rsbox("stats", "--no-stream", "--format", "{{ json . }}", f"{name}-idle").stdout
        )
        assert list(doc) == [
            "BlockIO",
            "CPUPerc",
            "Container",
            "ID",
            "MemPerc",
            "MemUsage",
            "Name",
            "NetIO",
            "PIDs",
        ]
        assert (doc["Container"], doc["Name"], doc["PIDs"]) == (f"{name}-idle", f"{name}-idle", "1")
        assert re.fullmatch(r"[\d.]+(B|KiB|MiB) / [\d.]+GiB", doc["MemUsage"]), doc
        table = rsbox("container", "stats", "--no-stream", f"{name}-idle", check=True).stdout
        assert re.split(r"\s{2,}", table.splitlines()[0]) == [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS",
        ]
        # Where the suite runs in a delegated cgroup v2 (CI: .ci/cgroup.sh) the container
        # has a freezer of its own (tests/e2e/test_cgroups.py); elsewhere, and with
        # `--cgroups disabled`, none: one line, saying why.
        if own_cgroup_delegated():
            assert rsbox("pause", f"{name}-idle").returncode == 0
            assert rsbox("container", "unpause", f"{name}-idle").returncode == 0
            rsbox.run("-d", "--cgroups", "disabled", "--name", f"{name}-plain", busybox,
                      "sleep", "1000", check=True)  # fmt: skip
            idle = f"{name}-plain"
        else:
            idle = f"{name}-idle"
        one_line_error(rsbox("pause", idle), "cgroup", hint=False, alone=True)
        one_line_error(rsbox("container", "unpause", idle), "cgroup", hint=False, alone=True)
        one_line_error(
            rsbox("stats", "--no-stream", "no-such-container"),
            "no-such-container",
            hint=False,
            alone=True,
        )
    finally:
        rsbox("rm", "-f", f"{name}-busy", f"{name}-idle", f"{name}-plain")


def own_cgroup_delegated() -> bool:
    from rootless import cgroups

    h = cgroups.hierarchy()
    return h is not None and cgroups.delegated(cgroups.default_parent(h)) is None


def test_rename_then_ps_shows_the_new_name(rsbox: Rsbox, busybox: str, name: str) -> None:
    cid = rsbox.run("-d", "--name", name, busybox, "sleep", "1000", check=True).stdout.strip()
    other = rsbox.run("--name", f"{name}-other", busybox, "true", check=True)
    assert other.returncode == 0
    try:
        assert rsbox("rename", name, f"{name}-new", check=True).stdout == ""
        ps = rsbox("ps", "--filter", f"id={cid[:12]}", "--format", "{{.Names}}", check=True)
        assert ps.stdout == f"{name}-new\n"
        assert rsbox("container", "rename", cid[:12], f"{name}-2", check=True).returncode == 0
        assert rsbox("inspect", "-f", "{{.Name}}", cid, check=True).stdout == f"{name}-2\n"
        one_line_error(
            rsbox("rename", f"{name}-2", f"{name}-other"), "already in use", hint=False, alone=True
        )
        one_line_error(
            rsbox("rename", f"{name}-2", "bad name"),
            "invalid container name",
            hint=False,
            alone=True,
        )
        assert rsbox("exec", f"{name}-2", "true").returncode == 0  # still the same container
    finally:
        rsbox("rm", "-f", cid, f"{name}-other")


def test_management_forms_are_the_plain_verbs(rsbox: Rsbox, busybox: str, name: str) -> None:
    assert rsbox("container", "run", "--rm", busybox, "echo", "hi", check=True).stdout == "hi\n"
    cid = rsbox("container", "run", "-d", "--name", name, busybox, "sleep", "1000", check=True)
    try:
        assert rsbox("container", "exec", name, "echo", "in", check=True).stdout == "in\n"
        assert rsbox("container", "inspect", name).stdout == rsbox("inspect", name).stdout
        assert rsbox("container", "ps", "-q").stdout == rsbox("ps", "-q").stdout
        assert rsbox("container", "top", name, check=True).stdout.startswith("     PID")
        assert rsbox("container", "stop", "-t", "0", name, check=True).stdout == f"{name}\n"
        assert rsbox("container", "logs", name, check=True).returncode == 0
    finally:
        assert rsbox("container", "rm", "-f", cid.stdout.strip(), check=True).returncode == 0
    rsbox("tag", busybox, f"{name}:x", check=True)
    assert rsbox("image", "ls", "--filter", f"reference={name}:x", "-q").stdout.strip()
    assert rsbox("image", "rm", f"{name}:x", check=True).stdout == f"Untagged: localhost/{name}:x\n"
    info = rsbox("system", "info", check=True).stdout
    assert info.splitlines()[0] == rsbox("info", check=True).stdout.splitlines()[0]
    assert "prune" in rsbox("container", "--help", check=True).stdout
    one_line_error(rsbox("container", "frobnicate"), "frobnicate", hint=False, alone=True)
    assert rsbox("inspect", name).returncode == 125  # `container rm` removed it
