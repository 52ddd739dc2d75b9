"""`rsbox commit`, `diff`, `cp`, `export`, `history` against the output shapes Docker
documents (docs.docker.com: docker container diff / commit / cp / export, docker image
history), as both CI users; and a committed image pushed to the registry, pulled and run
by Podman with the same file tree, owners and modes."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox, one_line_error
from tests.podman import owners_dropped, scratch_podman
from tests.registry import Registry, running_registry
from tests.shared import need_tools

DIFF_LINE = re.compile(r"^[ACD] /\S+$")
HISTORY_HEADER = re.compile(r"^IMAGE {3,}CREATED {3,}CREATED BY {3,}SIZE {3,}COMMENT$")


def _name(what: str) -> str:
    return f"{what}-{os.urandom(4).hex()}"


def _bytes(rsbox: Rsbox, *args: str, stdin: bytes | None = None) -> bytes:
    res = subprocess.run(rsbox.argv(*args), input=stdin, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    return res.stdout


def _tar(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def _stream(*members: tuple[str, bytes | None, int]) -> bytes:
    """A tar stream: (name, content or None for a directory, uid)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, uid in members:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = uid
            info.mtime = 1_600_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_diff_lists_additions_changes_and_deletions(
    rsbox: Rsbox, busybox: str, userns: str
) -> None:
    name = _name("diff")
    script = "echo new > /new.txt; echo more >> /etc/lower.txt; rm /bin/true; mkdir -p /srv/a/b"
    rsbox.run("--userns", userns, "--network", "none", "--name", name, busybox, "sh", "-c",
              script, check=True)  # fmt: skip
    try:
        out = rsbox("diff", name, check=True).stdout.splitlines()
        assert all(DIFF_LINE.match(line) for line in out), out
        # Docker's shape: parents of changes are C, sorted by path, the launcher's mount
        # points (/etc/hosts, /etc/resolv.conf, ...) are not the container's changes
        assert out == [
            "C /bin",
            "D /bin/true",
            "C /etc",
            "C /etc/lower.txt",
            "A /new.txt",
            "A /srv",
            "A /srv/a",
            "A /srv/a/b",
        ]
        one_line_error(rsbox("diff", "no-such-container"), "no such container")
    finally:
        rsbox("rm", "-f", name)


def test_commit_history_and_the_committed_image_runs(
    rsbox: Rsbox, busybox: str, userns: str, tmp_path: Path
) -> None:
    names = [_name("commit"), _name("commit")]
    script = "echo committed > /hello; mkdir /data; echo x > /data/x; rm /etc/lower.txt"
    for n in names:
        rsbox.run("--userns", userns, "--network", "none", "--name", n, busybox, "sh", "-c",
                  script, check=True)  # fmt: skip
    image = f"localhost/committed-{userns}:v1"
    try:
        res = rsbox(
            "commit", "-m", "add hello", "--author", "Tester <t@example.com>",
            "-c", 'CMD ["cat", "/hello"]', "-c", "ENV GREETING=hi", "-c", "WORKDIR /data",
            names[0], image, check=True,
        )  # fmt: skip
        image_id = res.stdout.strip()
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id), res.stdout
        assert rsbox.run("--rm", "--userns", userns, image, check=True).stdout == "committed\n"
        out = rsbox.run("--rm", "--userns", userns, image, "sh", "-c",
                        "pwd; echo $GREETING; ls /etc/lower.txt 2>&1 || true", check=True)  # fmt: skip
        assert out.stdout.splitlines()[:2] == ["/data", "hi"]
        assert "No such file" in out.stdout
        doc = json.loads(rsbox("image", "inspect", image, check=True).stdout)[0]
        assert doc["Config"]["Cmd"] == ["cat", "/hello"]
        base = json.loads(rsbox("image", "inspect", busybox, check=True).stdout)[0]
        assert len(doc["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
        assert doc["History"][-1]["comment"] == "add hello"
        assert doc["History"][-1]["author"] == "Tester <t@example.com>"

        lines = rsbox("history", image, check=True).stdout.splitlines()
        assert HISTORY_HEADER.match(lines[0]), lines[0]
        assert lines[1].startswith(image_id[7:19] + " ")
        assert "ago" in lines[1] and lines[1].rstrip().endswith("add hello")
        assert "rsbox commit --change 'CMD" in lines[1] and "…" in lines[1]  # cut at 45
        assert lines[2].startswith(base["Id"][:12] + " ")  # the base is a local image
        assert len(lines) == 1 + len(base["History"]) + 1
        quiet = rsbox("history", "-q", "--no-trunc", image, check=True).stdout.splitlines()
        assert quiet[0] == image_id and quiet[1] == "sha256:" + base["Id"]
        full = rsbox("history", "--no-trunc", image, check=True).stdout
        assert "--change 'WORKDIR /data'" in full

        # saved and loaded like a pulled image
        rsbox("save", "--format", "oci-archive", "-o", str(tmp_path / "saved.tar"), image,
              check=True)  # fmt: skip
        other = Rsbox(tmp_path / "other-store")
        other("load", "-i", str(tmp_path / "saved.tar"), check=True)
        loaded = json.loads(other("image", "inspect", image, check=True).stdout)[0]
        assert loaded["Id"] == doc["Id"] and loaded["RootFS"] == doc["RootFS"]

        # reproducible: the same work in another container, the same timestamp
        ids = [
            rsbox("commit", "--timestamp", "1700000000", n, check=True).stdout.strip()
            for n in names
        ]
        assert ids[0] == ids[1]
        one_line_error(rsbox("commit", "-c", "RUN echo no", names[0]), "RUN")
    finally:
        rsbox("rm", "-f", *names)
        rsbox("rmi", image)


def test_cp_both_ways_for_a_stopped_container(
    rsbox: Rsbox, busybox: str, userns: str, tmp_path: Path
) -> None:
    name = _name("cp")
    rsbox.run("--userns", userns, "--network", "none", "--name", name, busybox, "sh", "-c",
              "mkdir -p /dst && ln -s /dst /link && echo inside > /dst/in.txt", check=True)  # fmt: skip
    (tmp_path / "file.txt").write_text("from the host\n")
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a").write_text("a\n")
    (tree / "sub" / "b").write_text("b\n")
    try:
        rsbox("cp", str(tmp_path / "file.txt"), f"{name}:/dst/", check=True)
        rsbox("cp", str(tmp_path / "file.txt"), f"{name}:/dst/renamed.txt", check=True)
        rsbox("cp", str(tree), f"{name}:/dst", check=True)  # into: /dst/tree
        rsbox("cp", f"{tree}/.", f"{name}:/link", check=True)  # content, through the link
        stream = _stream(("owned", None, 1000), ("owned/f", b"mine\n", 1000))
        _bytes(rsbox, "cp", "-a", "-", f"{name}:/dst", stdin=stream)

        got = _tar(_bytes(rsbox, "cp", f"{name}:/dst", "-"))
        assert {
            "dst/in.txt", "dst/file.txt", "dst/renamed.txt", "dst/tree/a", "dst/tree/sub/b",
            "dst/a", "dst/sub/b", "dst/owned/f",
        } <= set(got)  # fmt: skip
        assert (got["dst/file.txt"].uid, got["dst/file.txt"].gid) == (0, 0)  # root's, no -a
        assert (got["dst/owned/f"].uid, got["dst/owned/f"].mode) == (1000, 0o640)
        assert got["dst/owned"].isdir() and got["dst/owned"].uid == 1000
        link = _tar(_bytes(rsbox, "cp", f"{name}:/link", "-"))
        assert link["link"].issym() and link["link"].linkname == "/dst"

        out = tmp_path / "out"
        out.mkdir()
        rsbox("cp", f"{name}:/dst/file.txt", str(out / "copy.txt"), check=True)
        assert (out / "copy.txt").read_text() == "from the host\n"
        rsbox("cp", f"{name}:/dst/tree", str(out), check=True)
        assert (out / "tree" / "sub" / "b").read_text() == "b\n"
        rsbox("cp", f"{name}:/link/.", str(out / "content"), check=True)
        assert (out / "content" / "in.txt").read_text() == "inside\n"

        one_line_error(rsbox("cp", f"{name}:/no/such", str(out)), "could not find")
        one_line_error(rsbox("cp", str(tree), f"{name}:/dst/file.txt"), "directory")
        one_line_error(rsbox("cp", str(out), str(tmp_path)), "container")
        diff = rsbox("diff", name, check=True).stdout.splitlines()
        assert "A /dst/owned/f" in diff and "A /dst/tree/sub/b" in diff
    finally:
        rsbox("rm", "-f", name)


def test_cp_into_and_out_of_a_running_container(
    rsbox: Rsbox, busybox: str, userns: str, tmp_path: Path
) -> None:
    name = _name("cpr")
    # pid 1 keeps a file open for writing: its dirty pages must be written back first
    rsbox.run("-d", "--userns", userns, "--network", "none", "--name", name, busybox,
              "sh", "-c", "exec 3>/open.txt; echo partial >&3; exec sleep 60",
              check=True)  # fmt: skip
    (tmp_path / "file.txt").write_text("hello running\n")
    try:
        rsbox("cp", str(tmp_path / "file.txt"), f"{name}:/tmp/", check=True)
        res = rsbox("exec", name, "cat", "/tmp/file.txt", check=True)
        assert res.stdout == "hello running\n"  # seen at once, through the container's mount
        got = _tar(_bytes(rsbox, "cp", f"{name}:/open.txt", "-"))
        assert got["open.txt"].size == len("partial\n")
        rsbox("exec", name, "sh", "-c", "echo made > /made.txt", check=True)
        rsbox("cp", f"{name}:/made.txt", str(tmp_path / "made.txt"), check=True)
        assert (tmp_path / "made.txt").read_text() == "made\n"
        stream = _stream(("streamed", None, 0), ("streamed/x", b"x\n", 0))
        _bytes(rsbox, "cp", "-", f"{name}:/", stdin=stream)
        assert rsbox("exec", name, "cat", "/streamed/x", check=True).stdout == "x\n"
        diff = rsbox("diff", name, check=True).stdout.splitlines()
        assert {"A /made.txt", "A /streamed", "A /streamed/x", "C /tmp", "A /tmp/file.txt"} <= set(
            diff
        )
    finally:
        rsbox("rm", "-f", name)


def test_export_is_the_flattened_filesystem(
    rsbox: Rsbox, busybox: str, userns: str, tmp_path: Path
) -> None:
    name = _name("export")
    rsbox.run("--userns", userns, "--network", "none", "--name", name, busybox, "sh", "-c",
              "echo e > /exported; rm /etc/lower.txt; chmod 4755 /exported", check=True)  # fmt: skip
    try:
        rsbox("export", "-o", str(tmp_path / "out.tar"), name, check=True)
        members = _tar((tmp_path / "out.tar").read_bytes())
        assert {"bin/busybox", "bin/sh", "etc/passwd", "exported"} <= set(members)
        assert "etc/lower.txt" not in members
        assert members["exported"].mode == 0o4755 and members["exported"].uid == 0
        assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
        streamed = _tar(_bytes(rsbox, "export", name))
        assert sorted(streamed) == sorted(members)
        one_line_error(rsbox("export", name, "-o", str(tmp_path / "no/such/dir.tar")), "cannot")
    finally:
        rsbox("rm", "-f", name)


# --- Podman reads what rsbox commits ----------------------------------------------------------

# path, type, mode, owner; size and link count of non-directories (a merged directory's
# link count is 1 in rsbox, as on btrfs; its size is the filesystem's business)
LISTING = (
    "cd / && for f in $(find /app | sort) /etc/passwd /bin/sh; do "
    'if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c \'%n %F %a %u %g\' "$f"; '
    "else stat -c '%n %F %a %u %g %s %h' \"$f\"; fi; done; "
    "readlink /app/link; ls /etc/lower.txt 2>/dev/null || echo lower-gone; ls -a /app/opaque"
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    need_tools(("/usr/bin/docker-registry", "podman"), "the podman interop test")
    with running_registry(tmp_path_factory.mktemp("registry")) as reg:
        yield reg


def _podman_listing(tmp_path: Path, ref: str, full_map: bool) -> str:
    with scratch_podman(tmp_path, full_map) as pod:
        pod("pull", "-q", "--tls-verify=false", ref)
        return pod("run", "--rm", "--network", "none", ref, "/bin/sh", "-c", LISTING)


def test_committed_image_runs_under_podman_with_the_same_tree(
    rsbox: Rsbox, busybox: str, registry: Registry, full_map: bool, tmp_path: Path
) -> None:
    name = _name("interop")
    script = (
        "mkdir -p /app/opaque/sub && echo old > /app/opaque/sub/old && "
        "echo data > /app/data && chmod 4755 /app/data && ln /app/data /app/hard && "
        "ln -s data /app/link && chmod 700 /app/opaque && rm /etc/lower.txt"
    )
    rsbox.run("--name", name, "--network", "none", busybox, "sh", "-c", script, check=True)
    base = f"localhost/interop-base-{os.urandom(3).hex()}:v1"
    image = f"{registry.host}/suite/committed:{os.urandom(3).hex()}"
    second = _name("interop")
    try:
        # a first commit, then a second container on it deletes and replaces a directory
        # (an opaque directory and whiteouts in the top layer) and gets files of uid 1000
        rsbox("commit", name, base, check=True)
        rsbox.run("--name", second, "--network", "none", base, "sh", "-c",
                  "rm -rf /app/opaque && mkdir /app/opaque && echo new > /app/opaque/new",
                  check=True)  # fmt: skip
        stream = _stream(("owned", None, 1000), ("owned/f", b"mine\n", 1000))
        _bytes(rsbox, "cp", "-a", "-", f"{second}:/app", stdin=stream)
        rsbox("commit", "--compression", "zstd", second, image, check=True)
        rsbox("push", image, check=True)
        ours = rsbox.run("--rm", "--network", "none", image, "sh", "-c", LISTING, check=True)
        theirs = _podman_listing(tmp_path, image, full_map)
        assert "lower-gone" in ours.stdout
        assert ".\n..\nnew\n" in ours.stdout  # the opaque directory hid sub/
        if full_map:
            assert "/app/owned/f regular file 640 1000 1000 5 1" in ours.stdout
            assert theirs == ours.stdout
        else:
            assert owners_dropped(theirs) == owners_dropped(ours.stdout)
    finally:
        rsbox("rm", "-f", name, second)
        rsbox("rmi", image, base)
