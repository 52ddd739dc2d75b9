"""The real CNCF distribution registry (Debian's `docker-registry`) on a free loopback
port, for tests and benchmarks: plain HTTP, or TLS with a CA made here by openssl plus
htpasswd (bcrypt) auth. Its access log (stderr) lets tests count requests."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REGISTRY_BIN = "/usr/bin/docker-registry"
USER, PASSWORD = "rsbox", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca_and_cert(d: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` signed by it: (ca.crt, server.crt, key)."""
    d.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=rsbox test CA")  # fmt: skip
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", f"/CN={host}")  # fmt: skip
    (d / "ext.cnf").write_text(f"subjectAltName=IP:{host},DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


def make_client_cert(d: Path) -> tuple[Path, Path]:
    """A client certificate signed by the CA of ``make_ca_and_cert(d)``: (cert, key)."""
    for args in (
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
         "-subj", "/CN=rsbox test client"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.cert", "-days", "2"],
    ):  # fmt: skip
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    return d / "client.cert", d / "client.key"


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    dir: Path
    proc: subprocess.Popen[bytes]
    log: Path
    ca: Path | None = None  # set for the TLS registry
    cert_dir: Path | None = None  # holds ca.crt only (for --cert-dir)

    def requests(self, pattern: str) -> list[str]:
        """Access-log lines whose request matches ``pattern`` (a regex)."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if '"' in line and re.search(pattern, line)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_registry(base: Path, *, tls: bool = False, client_certs: bool = False) -> Registry:
    """``client_certs`` (with ``tls``): the registry also demands a client certificate
    signed by its CA; cert_dir then holds client.cert and client.key next to ca.crt."""
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    config = [
        "version: 0.1",
        "log: {level: info, formatter: text, accesslog: {disabled: false}}",
        f"storage: {{filesystem: {{rootdirectory: {base / 'data'}}}, delete: {{enabled: true}}}}",
    ]
    ca = cert_dir = None
    if tls:
        ca, crt, key = make_ca_and_cert(base / "pki")
        cert_dir = base / "certs"
        cert_dir.mkdir()
        shutil.copy(ca, cert_dir / "ca.crt")
        htpasswd = base / "htpasswd"
        subprocess.run(
            ["htpasswd", "-B", "-b", "-c", str(htpasswd), USER, PASSWORD],
            check=True,
            capture_output=True,
        )
        clientcas = ""
        if client_certs:
            cert, ckey = make_client_cert(base / "pki")
            shutil.copy(cert, cert_dir / "client.cert")
            shutil.copy(ckey, cert_dir / "client.key")
            clientcas = f", clientcas: [{ca}]"
        config.append(
            f"http: {{addr: '{host}', tls: {{certificate: {crt}, key: {key}{clientcas}}}}}"
        )
        config.append(f"auth: {{htpasswd: {{realm: rsbox-test, path: {htpasswd}}}}}")
    else:
        config.append(f"http: {{addr: '{host}'}}")
    (base / "config.yml").write_text("\n".join(config) + "\n")
    log = base / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(base / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
    reg = Registry(host, base, proc, log, ca, cert_dir)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        with contextlib.suppress(OSError):
            if tls:
                ctx = ssl.create_default_context(cafile=str(ca))
                if client_certs and cert_dir is not None:
                    ctx.load_cert_chain(cert_dir / "client.cert", cert_dir / "client.key")
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", port, context=ctx, timeout=2
                )
            else:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v2/")
            conn.getresponse().read()
            conn.close()
            return reg
        if time.monotonic() > deadline:
            reg.stop()
            raise RuntimeError(f"docker-registry did not start: {log.read_text()}")
        time.sleep(0.1)


@contextlib.contextmanager
def running_registry(
    base: Path, *, tls: bool = False, client_certs: bool = False
) -> Iterator[Registry]:
    reg = start_registry(base, tls=tls, client_certs=client_certs)
    try:
        yield reg
    finally:
        reg.stop()


def push_layout(layout: Path, tag: str, ref: str, timeout: float = 600) -> None:
    """skopeo copies the OCI layout's `tag` to `ref` on a plain-HTTP registry."""
    subprocess.run(
        [
            "skopeo",
            "copy",
            "-q",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{ref}",
        ],
        check=True,
        capture_output=True,
        timeout=timeout,
    )
