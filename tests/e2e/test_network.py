"""`--network` and `-p` end to end: a detached busybox httpd on a published port, fetched
from the host through pasta and through slirp4netns (both Debian packages, unprivileged)."""

from __future__ import annotations

import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox, processes_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _fetch(url: str, timeout: float = 60) -> bytes:
    """Retry until the server in the container listens (the bound is only a guard)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return bytes(r.read())
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(params=["pasta", "slirp4netns"])
def tool(request: pytest.FixtureRequest) -> str:
    name = str(request.param)
    if shutil.which(name) is None:
        msg = f"{name} is not installed (setup.sh packages installs it)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return name


def test_httpd_on_a_published_port(rsbox: Rsbox, busybox: str, tool: str, marker: str) -> None:
    port = _free_port()
    res = rsbox.run(
        "-d",
        "--network",
        tool,
        "-p",
        f"{port}:8080",
        "--add-host",
        "db.example:10.1.2.3",
        busybox,
        "sh",
        "-c",
        f"mkdir -p /www; echo hello {tool} > /www/index.html; exec httpd -f -p 8080 -h /www; : {marker}",
        check=True,
    )
    cid = res.stdout.strip()
    try:
        assert _fetch(f"http://127.0.0.1:{port}/") == f"hello {tool}\n".encode()
        assert rsbox("port", cid, check=True).stdout == f"8080/tcp -> 0.0.0.0:{port}\n"
        hosts = rsbox("exec", cid, "cat", "/etc/hosts", check=True).stdout
        assert "10.1.2.3\tdb.example" in hosts
        # Its own network namespace: only lo and the tool's interface, not the host's.
        links = rsbox("exec", cid, "cat", "/proc/net/dev", check=True).stdout
        assert links != Path("/proc/net/dev").read_text()
        inside = rsbox(
            "exec", cid, "busybox", "wget", "-q", "-O-", "http://127.0.0.1:8080/", check=True
        )
        assert inside.stdout == f"hello {tool}\n"
    finally:
        rsbox("rm", "-f", cid, check=True)
    assert not processes_of(marker)
    # The monitor stops pasta (slirp4netns quits when the monitor's exit pipe closes).
    deadline = time.monotonic() + 60
    while [p for p in processes_of(tool) if f" {port}:8080 " in p and "rootless" not in p]:
        assert time.monotonic() < deadline, f"{tool} outlived the container"
        time.sleep(0.1)


def test_network_none_has_only_loopback(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--network", "none", busybox, "cat", "/proc/net/dev", check=True)
    names = [line.split(":")[0].strip() for line in res.stdout.splitlines()[2:]]
    assert names == ["lo"]


def test_publishing_needs_a_network_of_its_own(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--network", "host", "-p", "8080:80", busybox, "true")
    assert res.returncode == 125 and "-p needs" in res.stderr
    res = rsbox.run("--rm", "--network", "pasta", "-p", "80:x", busybox, "true")
    assert res.returncode == 125 and "invalid port" in res.stderr
