"""`--network` and `-p` end to end: a detached busybox httpd on a published port, fetched
from the host through pasta and through slirp4netns (both Debian packages, unprivileged)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox, processes_of
from tests.policies.probe_build import parse_output


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


def _need(name: str) -> str:
    """The network tool `name`: fails in CI, skips elsewhere, when it is missing."""
    if shutil.which(name) is None:
        msg = f"{name} is not installed (setup.sh packages installs it)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return name


@pytest.fixture(params=["pasta", "slirp4netns"])
def tool(request: pytest.FixtureRequest) -> str:
    return _need(str(request.param))


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


class _Listener:
    """A server of the test's own on the host: a TCP port on 127.0.0.1 or an abstract
    unix socket, answering "hello" to every connection, for as long as the test runs."""

    def __init__(self, family: int, address: object) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                self.accepted += 1
                conn.sendall(b"hello\n")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture()
def loopback_listener() -> Iterator[tuple[_Listener, int]]:
    listener = _Listener(socket.AF_INET, ("127.0.0.1", 0))
    try:
        yield listener, int(listener.sock.getsockname()[1])
    finally:
        listener.close()


def _nc(rsbox: Rsbox, busybox: str, port: int, *network: str) -> str:
    res = rsbox.run(
        "--rm", *network, busybox, "sh", "-c", f"nc -w 3 127.0.0.1 {port} </dev/null; true"
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_the_hosts_loopback_services_are_out_of_reach_by_default(
    rsbox: Rsbox, busybox: str, loopback_listener: tuple[_Listener, int]
) -> None:
    """A service on the host's 127.0.0.1 (a database, a desktop's helper) is not the
    container's: the default network is a namespace of its own, wired by pasta."""
    listener, port = loopback_listener
    assert _nc(rsbox, busybox, port) == ""
    assert _nc(rsbox, busybox, port, "--network", "slirp4netns") == ""
    assert listener.accepted == 0
    # Control: the same probe reaches it through the host's network, chosen explicitly.
    assert _nc(rsbox, busybox, port, "--network", "host") == "hello\n"
    assert listener.accepted == 1


def test_pasta_can_map_a_loopback_port_when_asked(
    rsbox: Rsbox, busybox: str, loopback_listener: tuple[_Listener, int]
) -> None:
    """Podman's syntax: `--network pasta:-T,PORT` forwards the container's 127.0.0.1:PORT
    to the host's (and only that port)."""
    listener, port = loopback_listener
    assert _nc(rsbox, busybox, port, "--network", f"pasta:-T,{port}") == "hello\n"
    assert listener.accepted == 1
    with socket.socket() as other:  # a second service, not mapped
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        other_port = other.getsockname()[1]
        assert _nc(rsbox, busybox, other_port, "--network", f"pasta:-T,{port}") == ""


def test_the_default_network_reaches_out_and_has_dns(rsbox: Rsbox, busybox: str) -> None:
    """Outbound connectivity and DNS through pasta: a lookup of Debian's archive (the one
    network this suite may use), then a loopback listener of the container's own."""
    res = rsbox.run("--rm", busybox, "sh", "-c", "nslookup deb.debian.org >/dev/null && echo ok")
    assert res.stdout == "ok\n", res.stderr
    own = rsbox.run(
        "--rm",
        busybox,
        "sh",
        "-c",
        "(echo mine | nc -l -p 7000 &); sleep 0.3; nc -w 3 127.0.0.1 7000",
    )
    assert own.stdout == "mine\n", own.stderr


def test_no_network_tool_is_one_line_with_the_choice(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    # A PATH with the id-map helpers but neither pasta nor slirp4netns.
    for tool in ("newuidmap", "newgidmap"):
        if found := shutil.which(tool):
            (tmp_path / tool).symlink_to(found)
    env = dict(os.environ, PATH=str(tmp_path))
    res = subprocess.run(
        rsbox.argv("run", "--rm", busybox, "true"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 125
    assert res.stderr.count("\n") == 1 and "--network host" in res.stderr, res.stderr
    ok = subprocess.run(
        rsbox.argv("run", "--rm", "--network", "none", busybox, "true"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr  # control: an explicit choice needs no tool


def test_the_hosts_abstract_unix_sockets_are_out_of_reach_by_default(
    rsbox: Rsbox, busybox: str, probe_dir: Path, marker: str
) -> None:
    """An abstract unix socket of the host (an X11 display, a session bus) belongs to the
    host's network namespace: a default container cannot connect to it."""
    listener = _Listener(socket.AF_UNIX, f"\0{marker}")
    try:

        def probe(*network: str) -> dict[str, int]:
            res = rsbox.run(
                "--rm",
                *network,
                "-v",
                f"{probe_dir}:/probe:ro",
                busybox,
                "/probe/seccomp-probe",
                "abstract_connect",
                marker,
            )
            assert res.returncode == 0, res.stderr
            return parse_output(res.stdout)

        assert probe() == {"abstract_connect": errno.ECONNREFUSED}
        assert listener.accepted == 0
        # Control: the same probe, in the host's network namespace, reaches it.
        assert probe("--network", "host") == {"abstract_connect": 0}
        assert listener.accepted == 1
    finally:
        listener.close()


_BOUND_PROBE = (
    # The container's own: a TCP listener on 7777 and syslogd's unix socket /dev/log,
    # waited for, then what the network namespace holds.
    "nc -l -p 7777 & syslogd -n -O /tmp/log & "
    "until grep -q ':1E61 .* 0A ' /proc/net/tcp /proc/net/tcp6 && [ -S /dev/log ]; "
    "do sleep 0.05; done; "
    "for f in unix tcp tcp6 udp udp6; do echo == $f; tail -n +2 /proc/net/$f; done; "
    "kill %1 %2"
)


def _bound(text: str) -> dict[str, set[str]]:
    """/proc/net/{unix,tcp*,udp*} as printed by _BOUND_PROBE -> what can be reached:
    unix sockets with a name (a path, or @ for abstract) or listening without one, TCP
    listeners and bound UDP ports by local port."""
    out: dict[str, set[str]] = {"unix": set(), "tcp": set(), "udp": set()}
    kind = ""
    for line in text.splitlines():
        if line.startswith("== "):
            kind = line[3:].rstrip("6")
            continue
        f = line.split()
        if kind == "unix" and len(f) >= 7:
            listening = int(f[3], 16) & 0x10000  # __SO_ACCEPTCON
            if len(f) > 7 or listening:
                out["unix"].add(f[7] if len(f) > 7 else f"listening, no name: {line}")
        elif kind == "tcp" and len(f) > 3 and f[3] == "0A":
            out["tcp"].add(f[1].rsplit(":", 1)[1])
        elif kind == "udp" and len(f) > 3:
            out["udp"].add(f[1].rsplit(":", 1)[1])
    return out


@pytest.mark.parametrize("network", ["default", "pasta", "slirp4netns", "none"])
def test_nothing_of_rsbox_can_be_reached_in_the_containers_network_namespace(
    rsbox: Rsbox, busybox: str, network: str
) -> None:
    """A socket bound in the container's network namespace by rsbox's own processes (P1,
    the FUSE server, makes that namespace when pasta wires it), by pasta or by slirp4netns
    could be reached from the container: a unix socket with a name (abstract ones are per
    namespace), a TCP listener, a bound UDP port. The container finds only its own there
    (the control: the nc listener and syslogd's /dev/log that the same command starts are
    found by the same parsing). With pasta, P1's trio socketpairs are listed too:
    connected and nameless, so nothing can connect to them."""
    if network != "none":
        _need("slirp4netns" if network == "slirp4netns" else "pasta")  # default: pasta here
    args = () if network == "default" else ("--network", network)
    res = rsbox.run("--rm", *args, busybox, "sh", "-c", _BOUND_PROBE, check=True)
    assert _bound(res.stdout) == {"unix": {"/dev/log"}, "tcp": {"1E61"}, "udp": set()}, res.stdout


def test_pasta_does_not_outlive_a_killed_rsbox(rsbox: Rsbox, busybox: str, marker: str) -> None:
    """pasta holds the container's network namespace, so it would never notice the
    container is gone: when the CLI is killed with SIGKILL, the container's guard (P2)
    stops it too."""
    name = f"pasta-{marker}"
    proc = subprocess.Popen(
        rsbox.argv("run", "--rm", "--name", name, busybox, "sleep", "1000"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        pid_file = None
        while pid_file is None or not pid_file.exists():
            assert time.monotonic() < deadline, "pasta did not start"
            res = rsbox("inspect", name)
            if res.returncode == 0:
                pid_file = Path(json.loads(res.stdout)[0]["RuntimeDir"]) / "pasta.pid"
            time.sleep(0.05)
        pasta = int(pid_file.read_text().split()[0])
        assert _live_pasta(pasta)  # control: it runs
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while _live_pasta(pasta):
            assert time.monotonic() < deadline, "pasta outlived the killed rsbox"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        rsbox("rm", "-f", name)


def test_pasta_does_not_outlive_a_detached_rm_container(rsbox: Rsbox, busybox: str) -> None:
    """`run -d --rm`: the monitor stops pasta before it removes the runtime directory
    that holds pasta's pid file."""
    cid = rsbox.run("-d", "--rm", busybox, "sleep", "3", check=True).stdout.strip()
    pid_file = Path(json.loads(rsbox("inspect", cid, check=True).stdout)[0]["RuntimeDir"])
    pasta = int((pid_file / "pasta.pid").read_text().split()[0])
    assert _live_pasta(pasta)  # control: it runs
    deadline = time.monotonic() + 30
    while _live_pasta(pasta):
        assert time.monotonic() < deadline, "pasta outlived the removed container"
        time.sleep(0.05)
    assert rsbox("inspect", cid).returncode != 0  # and --rm did remove it


def _live_pasta(pid: int) -> bool:
    """pid is a pasta that runs (a zombie waiting for this machine's pid 1 is done)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(")", 1)[1].split()[0]
    return name.startswith(("pasta", "passt")) and state != "Z"
