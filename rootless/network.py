"""`--network` and `-p`: a container's own network namespace, wired by pasta or slirp4netns.

P2 unshares the network namespace (it is owned by P1's user namespace); P1, outside it,
then runs the tool against P2's pid, as Podman does against its infra process:

* pasta (passt): `pasta --config-net -t H:C PID` joins P2's user and network
  namespaces, copies the host's addresses and routes into them, forwards the published
  ports, and detaches; it quits by itself when the namespace goes away.
* slirp4netns: `slirp4netns --configure --userns-path=... PID tap0` stays attached to P1:
  it reports readiness on a pipe, takes port forwards on its API socket, and quits when
  its exit pipe (held by P1 only) closes, i.e. when the monitor exits.

The container's pid 1 makes its mounts meanwhile and waits only before it executes the
command (so that its first connection works).

What the container must not reach, and the options that open it on purpose:

* The host's loopback services and abstract unix sockets (an X11 display or a session
  bus on an abstract address means keystrokes into the desktop): a network namespace of
  its own has its own loopback and its own abstract socket namespace. pasta would map
  the gateway address to the host's loopback: `--no-map-gw`, and nothing forwarded from
  the namespace to the host's ports (`-T none -U none`), unless the user asks with
  Podman's syntax, `--network pasta:-T,5432` (the container's 127.0.0.1:5432 is the
  host's) or `pasta:--map-gw`. slirp4netns runs `--disable-host-loopback`.
* slirp4netns parses the container's packets in a process of the user's: it always runs
  with `--enable-sandbox --enable-seccomp` (its own mount namespace, a syscall filter).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rootless.errors import HostError, UsageError

TOOLS = ("pasta", "slirp4netns")
SLIRP_DNS = "10.0.2.3"
SLIRP_ADDR = "10.0.2.100"


@dataclass(frozen=True, slots=True)
class Port:
    host: int
    container: int
    proto: str = "tcp"

    @classmethod
    def parse(cls, text: str) -> Port:
        """`HOSTPORT:CTRPORT[/tcp|udp]`, or `CTRPORT` (the same port on the host)."""
        spec, _, proto = text.partition("/")
        proto = proto or "tcp"
        parts = spec.split(":")
        if proto not in ("tcp", "udp") or len(parts) > 2 or not all(p.isdigit() for p in parts):
            raise UsageError(f"invalid port {text!r}", hint="use -p HOSTPORT:CTRPORT[/udp]")
        host, ctr = (int(parts[0]), int(parts[-1]))
        if not (0 < host < 65536 and 0 < ctr < 65536):
            raise UsageError(f"port out of range in {text!r}", hint="ports are 1 to 65535")
        return cls(host, ctr, proto)

    def __str__(self) -> str:
        return f"{self.host}:{self.container}/{self.proto}"


def default_tool() -> str | None:
    for tool in TOOLS:
        if shutil.which(tool):
            return tool
    return None


def resolv_conf(network: str) -> str:
    """The container's resolv.conf: the host's, except behind slirp4netns, whose DNS
    forwarder is at 10.0.2.3 (the host's 127.x resolvers are unreachable from inside)."""
    try:
        host = Path("/etc/resolv.conf").read_text()
    except OSError:
        host = ""
    if network == "slirp4netns":
        return f"nameserver {SLIRP_DNS}\n"
    return host


def pasta_argv(
    pid: int, ports: tuple[Port, ...], pidfile: Path, options: tuple[str, ...] = ()
) -> list[str]:
    """pasta's command line (pure): the published ports, nothing of the host's loopback
    unless `options` (from `--network pasta:OPT,...`) ask for it."""
    argv = ["pasta", "--quiet", "--config-net"]
    for proto, flag in (("tcp", "-t"), ("udp", "-u")):
        chosen = [p for p in ports if p.proto == proto]
        argv += [flag, ",".join(f"{p.host}:{p.container}" for p in chosen) or "none"]
    given = set(options)
    # From the namespace to the host's ports: nothing, unless asked (-T/-U PORTS).
    for flag, long in (("-T", "--tcp-ns"), ("-U", "--udp-ns")):
        if not given & {flag, long}:
            argv += [flag, "none"]
    if "--map-gw" not in given:  # the gateway address would be the host's loopback
        argv.append("--no-map-gw")
    argv += [o for o in options if o != "--map-gw"]
    # This pasta does not quit when the namespace goes: the monitor stops it at the end
    # (`stop_pasta`), by the pid it writes.
    return [*argv, "-P", str(pidfile), str(pid)]


def attach(
    tool: str, pid: int, ports: tuple[Port, ...], rundir: Path, options: tuple[str, ...] = ()
) -> int | None:
    """Wire the network namespace of `pid`. Returns the fd that keeps slirp4netns alive
    (to be held by the monitor), or None."""
    if tool == "pasta":
        argv = pasta_argv(pid, ports, rundir / "pasta.pid", options)
        res = subprocess.run(argv, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            raise HostError(
                f"pasta failed: {(res.stderr or res.stdout).strip()[:300]}",
                hint="is a published port already in use? try --network slirp4netns",
            )
        return None
    if tool == "slirp4netns":
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
        api = rundir / "slirp.sock"
        argv = [
            "slirp4netns",
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--enable-sandbox",
            "--enable-seccomp",
            f"--ready-fd={ready_w}",
            f"--exit-fd={exit_r}",
            f"--api-socket={api}",
            f"--userns-path=/proc/{pid}/ns/user",
            str(pid),
            "tap0",
        ]
        subprocess.Popen(
            argv,
            pass_fds=(ready_w, exit_r),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        os.close(ready_w)
        os.close(exit_r)
        ok = os.read(ready_r, 1)
        os.close(ready_r)
        if ok != b"1":
            os.close(exit_w)
            raise HostError("slirp4netns failed to set up the network", hint="run rsbox info")
        for p in ports:
            _slirp_forward(api, p)
        return exit_w
    raise UsageError(f"unknown network tool {tool}", hint="use pasta or slirp4netns")


def stop_pasta(rundir: Path | int, proc: str | int = "/proc") -> None:
    """SIGTERM the pasta that served this container, if it still runs. `rundir` and
    `proc` may be directory fds opened earlier (P2's guard: its root is the container's
    by then)."""
    import signal

    def read(path: str, at: str | int | Path) -> str:
        if isinstance(at, int):
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=at)
        else:
            fd = os.open(os.path.join(at, path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.read(fd, 256).decode(errors="replace")
        finally:
            os.close(fd)

    try:
        pid = int(read("pasta.pid", rundir).split()[0])
        if pid > 1 and read(f"{pid}/comm", proc).startswith(("pasta", "passt")):
            os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        pass


def _slirp_forward(api: Path, port: Port) -> None:
    req = {
        "execute": "add_hostfwd",
        "arguments": {
            "proto": port.proto,
            "host_addr": "0.0.0.0",
            "host_port": port.host,
            "guest_port": port.container,
        },
    }
    import socket  # only for slirp4netns's ports: ~2.6 ms of every run's import otherwise

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(api))
        s.sendall(json.dumps(req).encode())
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    try:
        doc = json.loads(reply or b"{}")
    except ValueError:
        doc = {"error": reply.decode(errors="replace")}
    if "error" in doc:
        raise HostError(
            f"slirp4netns cannot publish {port}: {doc['error']}",
            hint="is the host port already in use?",
        )
