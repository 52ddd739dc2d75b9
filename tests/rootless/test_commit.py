"""rootless.images.commit without a container: `--change` applied to a config, history
kept consistent, timestamps, and a commit of a stopped container's upper into a store."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from rootless.errors import BuildError, UsageError
from rootless.image_import import import_rootfs
from rootless.images.commit import (
    CommitOptions,
    apply_changes,
    commit,
    consistent_history,
    history_rows,
    new_config,
    parse_changes,
    timestamp_option,
)
from rootless.store import Store
from tests.fs.upper import Scratch


def _apply(config: dict[str, Any], *changes: str) -> dict[str, Any]:
    return apply_changes(config, parse_changes(changes))


def test_cmd_and_entrypoint_forms() -> None:
    cfg = _apply({"Cmd": ["sh"]}, 'CMD ["echo", "hi"]')
    assert cfg["Cmd"] == ["echo", "hi"]
    cfg = _apply({}, "CMD echo $HOME")
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]  # the shell expands it, not us
    cfg = _apply({"Shell": ["/bin/bash", "-c"]}, "ENTRYPOINT exec app")
    assert cfg["Entrypoint"] == ["/bin/bash", "-c", "exec app"]


def test_entrypoint_clears_an_inherited_cmd_unless_cmd_is_given() -> None:
    assert "Cmd" not in _apply({"Cmd": ["sh"]}, 'ENTRYPOINT ["/app"]')
    both = _apply({"Cmd": ["sh"]}, 'CMD ["--flag"]', 'ENTRYPOINT ["/app"]')
    assert both["Cmd"] == ["--flag"] and both["Entrypoint"] == ["/app"]


def test_env_workdir_user_label_expose_volume_stopsignal() -> None:
    cfg = _apply(
        {"Env": ["PATH=/usr/bin", "A=1"], "WorkingDir": "/srv", "Labels": {"old": "x"}},
        "ENV PATH=$PATH:/opt/bin B=two",
        "WORKDIR app",
        "USER 1000:1000",
        "LABEL version=1.0 maintainer=me",
        "EXPOSE 80 53/udp",
        "VOLUME /data",
        "STOPSIGNAL SIGINT",
    )
    assert cfg["Env"] == ["PATH=/usr/bin:/opt/bin", "A=1", "B=two"]
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "1000:1000"
    assert cfg["Labels"] == {"old": "x", "version": "1.0", "maintainer": "me"}
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert cfg["Volumes"] == {"/data": {}}
    assert cfg["StopSignal"] == "SIGINT"


@pytest.mark.parametrize("change", ["RUN echo hi", "FROM busybox", "COPY a /b"])
def test_other_instructions_are_refused_in_one_line(change: str) -> None:
    with pytest.raises(BuildError) as exc:
        parse_changes([change])
    assert exc.value.hint


def test_history_is_padded_to_one_entry_per_layer() -> None:
    doc = {"created": "2020-01-01T00:00:00Z", "history": [{"created_by": "ADD x"}]}
    hist = consistent_history(doc, 3)
    assert len(hist) == 3 and hist[-1] == {"created_by": "ADD x"}
    with_empty = {"history": [{"created_by": "a"}, {"created_by": "ENV", "empty_layer": True}]}
    assert consistent_history(with_empty, 1) == with_empty["history"]


def test_new_config_appends_layer_and_history() -> None:
    base = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created_by": "rsbox import"}],
        "container_config": {"Cmd": ["old"]},
    }
    opts = CommitOptions(changes=('CMD ["x"]',), message="fix", author="Me", timestamp=0)
    doc = json.loads(new_config(base, 1, "b" * 64, parse_changes(opts.changes), opts))
    assert doc["rootfs"]["diff_ids"] == ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    assert doc["created"] == "1970-01-01T00:00:00Z" and doc["author"] == "Me"
    assert doc["history"][-1] == {
        "created": "1970-01-01T00:00:00Z",
        "created_by": "rsbox commit --change 'CMD [\"x\"]'",
        "author": "Me",
        "comment": "fix",
    }
    assert doc["config"]["Cmd"] == ["x"] and "container_config" not in doc
    empty = json.loads(new_config(base, 1, None, [], CommitOptions(timestamp=0)))
    assert empty["rootfs"]["diff_ids"] == base["rootfs"]["diff_ids"]  # type: ignore[index]
    assert empty["history"][-1]["empty_layer"] is True


def test_timestamp_option() -> None:
    assert timestamp_option("5", {}) == 5
    assert timestamp_option(None, {"SOURCE_DATE_EPOCH": "7"}) == 7
    assert timestamp_option("5", {"SOURCE_DATE_EPOCH": "7"}) == 5
    assert timestamp_option(None, {}) is None
    with pytest.raises(UsageError):
        timestamp_option("yesterday", {})


def test_commit_of_a_stopped_container_into_the_store(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "motd").write_text("hi\n")
    base = import_rootfs(store, str(rootfs), "base")
    c = store.create_container(base, "c1", {})
    # the container's writes, as its FUSE server would make them
    s = Scratch.over(base.layers, c.upper)
    s.mkdir("home", 0o755)
    s.write("home/f", b"x", uid=1000, gid=1000)
    s.rm("etc/motd")
    image = commit(store, c, ["localhost/committed:v1"], CommitOptions(message="m", timestamp=1))
    assert image.names == ("localhost/committed:v1",)
    assert len(image.layers) == 2
    meta = json.loads((image.layers[-1] / "meta").read_text())["entries"]
    assert meta["home/f"]["uid"] == 1000 and meta["home/f"]["mode"] == stat.S_IFREG | 0o644
    assert (image.layers[-1] / "fs/etc/.wh.motd").exists()
    rows = history_rows(store, image)
    assert [r.image_id for r in rows] == [image.id, base.id]
    assert rows[0].comment == "m" and rows[0].size > 0
    again = commit(store, c, [], CommitOptions(message="m", timestamp=1))
    assert again.id == image.id  # same changes, same timestamp: the same image
