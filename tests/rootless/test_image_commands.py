"""`cmd_import` / `cmd_images`: what the CLI prints."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rootless.errors import RsboxError, UsageError
from rootless.image_commands import cmd_images, cmd_import, human_ago, human_size
from rootless.store import Store
from tests.images import make_busybox_rootfs, make_layered_oci_layout


def test_import_then_list(tmp_path: Path, store: Store) -> None:
    image_id = cmd_import(store, str(make_busybox_rootfs(tmp_path / "rootfs")), "busybox")
    layout, tag = make_layered_oci_layout(tmp_path / "layout")
    layered_id = cmd_import(store, f"oci:{layout}:{tag}", "quay.io/me/layered:v1")
    assert len(image_id) == 64
    lines = cmd_images(store, "table").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["localhost/busybox"][1:3] == ["latest", image_id[:12]]
    assert rows["quay.io/me/layered"][1:3] == ["v1", layered_id[:12]]
    assert rows["quay.io/me/layered"][-1] == "MB"
    doc = json.loads(cmd_images(store, "json"))
    by_id = {d["Id"]: d for d in doc}
    assert by_id[image_id]["Names"] == ["localhost/busybox:latest"]
    assert len(by_id[layered_id]["Layers"]) == 3
    assert all(layer.startswith("sha256:") for layer in by_id[layered_id]["Layers"])
    assert by_id[layered_id]["Size"] > 0 and by_id[layered_id]["Created"]


def test_empty_store_lists_header_only(store: Store) -> None:
    assert cmd_images(store, "table").split() == [
        "REPOSITORY",
        "TAG",
        "IMAGE",
        "ID",
        "CREATED",
        "SIZE",
    ]
    assert json.loads(cmd_images(store, "json")) == []


def test_bad_input(tmp_path: Path, store: Store) -> None:
    with pytest.raises(UsageError):
        cmd_images(store, "yaml")
    with pytest.raises(RsboxError):
        cmd_import(store, str(tmp_path / "missing"), "x")
    with pytest.raises(UsageError):
        cmd_import(store, str(tmp_path), "UPPER")
    with pytest.raises(UsageError):
        cmd_import(store, "", "x")


def test_human_formats() -> None:
    assert human_size(0) == "0 B"
    assert human_size(4_260_000) == "4.26 MB"
    assert human_size(1080) == "1.08 kB"
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert human_ago("2024-01-01T10:59:59.123456789Z", now) == "1 hour ago"
    assert human_ago("2024-01-01T11:59:30Z", now) == "30 seconds ago"
    assert human_ago("2023-12-29T12:00:00Z", now) == "3 days ago"
    assert human_ago("", now) == "unknown"
