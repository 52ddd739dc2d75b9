"""Issue 13's first Done-when project, as both CI users: a Debian environment with apt
packages from Debian's archive, a venv with a pinned package from PyPI and an npm global
from npm's registry, whose shims work from a plain host shell; `on_create = "npm ci"`
making files the user owns on the host; `host_ca` with its control (this machine's HTTPS
goes through a TLS-inspecting proxy that only the host's CA bundle trusts); and
.devcontainer/devcontainer.json projects.

The Debian environment is built once for the module (`dev_env`); its control differs in
[run] only, so its build is all cache hits."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rootless.env.trust import trust
from tests.e2e.conftest import Rsbox
from tests.e2e.test_env import SOURCE, _in, _ok, _project, _steps_run
from tests.e2e.test_network import _fetch, _free_port
from tests.e2e.test_workloads import ENV_PACKAGES, debian_tarball
from tests.registry import running_registry
from tests.shared import need_tools

PACKAGE_JSON = """\
{
  "name": "rsbox-env-test",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "is-number": "7.0.0"
  }
}
"""
# Written by `npm install --package-lock-only` (npm 11) from PACKAGE_JSON.
PACKAGE_LOCK = """\
{
  "name": "rsbox-env-test",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "rsbox-env-test",
      "version": "1.0.0",
      "dependencies": {
        "is-number": "7.0.0"
      }
    },
    "node_modules/is-number": {
      "version": "7.0.0",
      "integrity": "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==",
      "license": "MIT",
      "engines": {
        "node": ">=0.12.0"
      }
    }
  }
}
"""

BUILD = """
[env]
base = "{base}"
[build]
apt = ["jq"]
run = ["python3 -m venv /opt/venv"]
pip = {{ python = "/opt/venv/bin/python", requirements = "requirements.txt" }}
npm = {{ global = ["typescript@5.4.5"] }}
"""
HOST_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The probe the control must fail: pip itself, reaching PyPI over HTTPS.
PIP_DOWNLOAD = "/opt/venv/bin/pip download -q --no-deps --no-cache-dir -d /tmp/dl six==1.16.0"


@dataclass(frozen=True)
class DevEnv:
    root: Path
    build_output: str


@pytest.fixture(scope="module")
def debian(rsbox: Rsbox) -> str:
    name = "debian-env-base"  # what tests/e2e/test_env.py imports too: once per store
    if rsbox("image", "inspect", name).returncode != 0:
        rsbox("import", str(debian_tarball(ENV_PACKAGES)), name, check=True, timeout=600)
    return name


@pytest.fixture(scope="module")
def dev_env(
    rsbox: Rsbox, debian: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevEnv]:
    toml = BUILD.format(base=debian) + textwrap.dedent("""
        [run]
        env = { PATH = "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin" }
        on_create = "npm ci --no-audit --no-fund"
        [expose]
        bins = ["python", "jq", "tsc", "node"]
        """)
    root = _project(
        rsbox,
        tmp_path_factory.mktemp("env-build"),
        toml,
        {
            "requirements.txt": "six==1.16.0\n",
            "package.json": PACKAGE_JSON,
            "package-lock.json": PACKAGE_LOCK,
        },
    )
    out = _ok(rsbox, root, "env", "build", timeout=1200)
    yield DevEnv(root, out)
    _in(rsbox, root, "env", "down")


def _host_shell(cwd: Path, script: str) -> subprocess.CompletedProcess[str]:
    """A plain /bin/sh on the host (the source tree on PYTHONPATH, as the suite runs)."""
    return subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": SOURCE},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def test_apt_venv_pypi_and_npm_global_tools_run_from_a_plain_host_shell(
    rsbox: Rsbox, dev_env: DevEnv, tmp_path: Path
) -> None:
    root = dev_env.root
    # apt, run, COPY and pip may be test_env's layers (the same steps); npm is this one's
    assert "STEP 6/6: RUN npm install --global" in dev_env.build_output
    assert _steps_run(dev_env.build_output) >= 1, dev_env.build_output
    _ok(rsbox, root, "env", "shims")
    bin_ = root / ".rsbox" / "bin"
    # from outside the project, in a shell that knows nothing of rsbox but the shims' paths
    res = _host_shell(
        tmp_path,
        f"{bin_}/python -c 'import six; print(six.__version__)' && "
        f"""echo '{{"a": [1, 2]}}' | {bin_}/jq -c .a && {bin_}/tsc --version""",
    )
    assert (res.returncode, res.stdout) == (0, "1.16.0\n[1,2]\nVersion 5.4.5\n"), res.stderr
    # on_create ran `npm ci` once, in the project, as the user: its files are the user's
    made = [root / "node_modules", root / "node_modules" / "is-number" / "package.json"]
    assert [p.stat().st_uid for p in made] == [os.getuid()] * 2
    res = _host_shell(root, f"""{bin_}/node -p "require('is-number')(7)" """)
    assert (res.returncode, res.stdout) == (0, "true\n"), res.stderr


def _bundle_sha(rsbox: Rsbox, root: Path) -> str:
    out = _ok(rsbox, root, "shell", "sha256sum", str(HOST_BUNDLE))
    return out.split()[0]


def test_host_ca_replaces_the_image_bundle_and_pip_reaches_pypi_only_with_it(
    rsbox: Rsbox, debian: str, dev_env: DevEnv, tmp_path: Path
) -> None:
    host = hashlib.sha256(HOST_BUNDLE.read_bytes()).hexdigest()
    assert _bundle_sha(rsbox, dev_env.root) == host
    res = _in(rsbox, dev_env.root, "shell", "sh", "-c", PIP_DOWNLOAD + " && ls /tmp/dl")
    assert (res.returncode, res.stdout) == (0, "six-1.16.0-py2.py3-none-any.whl\n"), res.stderr
    # the control: the same [build] (every step a cache hit), host_ca = false
    control = _project(
        rsbox,
        tmp_path,
        BUILD.format(base=debian) + "[run]\nhost_ca = false\n",
        {"requirements.txt": "six==1.16.0\n"},
    )
    assert _steps_run(_ok(rsbox, control, "env", "build", timeout=600)) == 0
    try:
        assert _bundle_sha(rsbox, control) != host  # the image's own (Debian's) bundle
        res = _in(rsbox, control, "shell", "sh", "-c", PIP_DOWNLOAD)
        assert res.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in res.stdout + res.stderr
    finally:
        _in(rsbox, control, "env", "down")


def test_npm_global_without_npm_in_the_image_fails_in_one_line(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    toml = f'[env]\nbase = "{busybox}"\n[build]\nnpm = {{ global = ["x"] }}\n'
    root = _project(rsbox, tmp_path, toml)
    res = _in(rsbox, root, "env", "build")
    assert res.returncode == 125
    last = res.stderr.splitlines()[-1]
    assert last == (
        f"rsbox: error: {root / 'rsbox.toml'}: [build] npm: npm is not in the image "
        '(hint: add "nodejs" and "npm" to [build] apt (or install them in a run step))'
    ), res.stderr
    assert "Traceback" not in res.stderr
    # the control: the same step with an `npm` in the image gets past that
    fake_npm = (
        """printf '#!/bin/sh\\necho npm "$@" > /npm.log\\n' > /bin/npm && chmod +x /bin/npm"""
    )
    npm = f"[env]\nbase = \"{busybox}\"\n[build]\nrun = ['''{fake_npm}''']\n"
    npm += 'npm = { global = ["x"] }\n'
    root = _project(rsbox, tmp_path, npm)
    _ok(rsbox, root, "env", "build")
    assert _ok(rsbox, root, "shell", "cat", "/npm.log") == (
        "npm install --global --no-audit --no-fund x\n"
    )
    _ok(rsbox, root, "env", "down")


def test_rsbox_lock_pins_the_base_until_build_pull(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    """A base pulled from a registry is pinned by rsbox.lock's digest: after the tag moves
    and the local copy is gone, `env build` pulls the digest the lock names (the old
    base); the control, `env build --pull`, asks for the tag and gets the new one, and
    the lock then pins that. A lost digest is one line with the --pull hint."""
    need_tools(("/usr/bin/docker-registry",), "the base pinning test")
    with running_registry(tmp_path / "registry") as reg:
        base = f"{reg.host}/envbase:1"
        local = f"localhost/envbase-{os.urandom(3).hex()}"

        def push_base(which: str) -> None:
            ctx = tmp_path / f"ctx-{which}"
            ctx.mkdir()
            (ctx / "Containerfile").write_text(f"FROM {busybox}\nRUN echo {which} > /which\n")
            rsbox("build", "-t", f"{local}:{which}", str(ctx), check=True)
            rsbox("push", f"{local}:{which}", base, check=True)
            rsbox("rmi", base)  # the build must pull it

        push_base("old")
        root = _project(rsbox, tmp_path, f'[env]\nbase = "{base}"\n[build]\nrun = ["true"]\n')
        _ok(rsbox, root, "env", "build")
        lock = json.loads((root / "rsbox.lock").read_text())
        old_digest = lock["base"]["digest"]
        assert old_digest.startswith("sha256:")
        push_base("new")  # the tag moves (and the base the first build pulled is gone)
        _ok(rsbox, root, "env", "build", "--no-cache")
        assert _ok(rsbox, root, "shell", "cat", "/which") == "old\n"
        assert json.loads((root / "rsbox.lock").read_text())["base"]["digest"] == old_digest
        _ok(rsbox, root, "env", "build", "--pull")
        assert _ok(rsbox, root, "shell", "cat", "/which") == "new\n"
        new_digest = json.loads((root / "rsbox.lock").read_text())["base"]["digest"]
        assert new_digest not in ("", old_digest)
        _ok(rsbox, root, "env", "down")
        # a digest the registry no longer has
        lock = json.loads((root / "rsbox.lock").read_text())
        lock["base"]["digest"] = "sha256:" + "0" * 64
        (root / "rsbox.lock").write_text(json.dumps(lock))
        rsbox("rmi", base, check=True)
        res = _in(rsbox, root, "env", "build")
        assert res.returncode == 125 and res.stderr.count("\n") == 1, res.stderr
        assert f"the base {base} pinned by {root / 'rsbox.lock'}" in res.stderr
        assert "(hint: rsbox env build --pull" in res.stderr
        rsbox("rmi", f"{local}:old", f"{local}:new", check=True)


def _devcontainer(
    rsbox: Rsbox, tmp_path: Path, text: str, files: dict[str, str] | None = None
) -> Path:
    """A trusted devcontainer.json project (trust covers it as it covers rsbox.toml)."""
    root = tmp_path / f"dc-{os.urandom(3).hex()}"
    (root / ".devcontainer").mkdir(parents=True)
    (root / ".devcontainer" / "devcontainer.json").write_text(textwrap.dedent(text))
    for rel, body in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(body)
    trust(str(rsbox.root), str(root / ".devcontainer" / "devcontainer.json"))
    return root


def test_a_devcontainer_json_project_enters_and_runs(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.txt").write_text("from the host\n")
    root = _devcontainer(
        rsbox,
        tmp_path,
        f"""\
        // as VS Code writes it
        {{
            "name": "busybox dev", /* display only */
            "image": "{busybox}",
            "containerEnv": {{ "GREETING": "hello from devcontainer.json", }},
            "mounts": [
                "source={data},target=/mnt/data,type=bind,readonly",
            ],
            "postCreateCommand": "echo created >> created.log",
            "postStartCommand": ["sh", "-c", "echo started >> started.log"],
            "customizations": {{ "vscode": {{ "extensions": ["x.y"] }} }},
        }}
        """,
    )
    sub = root / "src"
    sub.mkdir()
    res = _in(rsbox, sub, "env", "build")
    assert res.returncode == 0, res.stderr
    path = root / ".devcontainer" / "devcontainer.json"
    assert res.stderr == f"rsbox: warning: {path}: ignored: customizations, name\n"
    script = 'pwd; echo "$GREETING"; cat /mnt/data/in.txt; touch /mnt/data/x || echo ro'
    out = _ok(rsbox, sub, "shell", "sh", "-c", script)
    assert out == f"{sub}\nhello from devcontainer.json\nfrom the host\nro\n"
    made = root / "created.log"
    assert (made.read_text(), made.stat().st_uid) == ("created\n", os.getuid())
    assert (root / "started.log").read_text() == "started\n"
    _ok(rsbox, root, "env", "down")


def test_a_devcontainer_dockerfile_project_builds_with_its_context_and_args(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _devcontainer(
        rsbox,
        tmp_path,
        """\
        {
            "build": { "dockerfile": "Dockerfile", "context": "..", "args": { "WHO": "args" } },
        }
        """,
        {
            ".devcontainer/Dockerfile": f"FROM {busybox}\nARG WHO\nCOPY note.txt /note\n"
            'RUN echo "$WHO" >> /note\n',
            "note.txt": "from the context\n",
        },
    )
    _ok(rsbox, root, "env", "build")
    assert _ok(rsbox, root, "shell", "cat", "/note") == "from the context\nargs\n"
    _ok(rsbox, root, "env", "down")


def test_devcontainer_forward_ports_reach_the_container_through_pasta(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    """forwardPorts gives the container a network of its own (pasta) with each listed
    port published on the host's loopback at the same number. The control: a server on
    a port not listed answers inside the container and not from the host."""
    forwarded, other = _free_port(), _free_port()
    www = "mkdir -p /tmp/www && echo hello > /tmp/www/index.html"
    # busybox httpd without -f forks into the background and outlives the command
    serve = f"{www} && httpd -p {forwarded} -h /tmp/www && httpd -p {other} -h /tmp/www"
    root = _devcontainer(
        rsbox,
        tmp_path,
        f"""\
        {{ "image": "{busybox}", "forwardPorts": [{forwarded}], "postStartCommand": "{serve}" }}
        """,
    )
    _ok(rsbox, root, "env", "build")
    try:
        inside = "wget -q -O- http://127.0.0.1:{0}/"
        assert _ok(rsbox, root, "shell", "sh", "-c", inside.format(forwarded)) == "hello\n"
        assert _ok(rsbox, root, "shell", "sh", "-c", inside.format(other)) == "hello\n"
        assert _fetch(f"http://127.0.0.1:{forwarded}/") == b"hello\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", other), timeout=10).close()
    finally:
        _ok(rsbox, root, "env", "down")


def test_devcontainer_features_are_refused_in_one_line(rsbox: Rsbox, tmp_path: Path) -> None:
    root = _devcontainer(
        rsbox,
        tmp_path,
        '{"image": "debian:12", "features": {"ghcr.io/devcontainers/features/node:1": {}}}',
    )
    res = _in(rsbox, root, "env", "build")
    assert res.returncode == 125 and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith(
        f"rsbox: error: {root / '.devcontainer' / 'devcontainer.json'}: features: "
        "rsbox does not run devcontainer features (hint: install the tools in a Dockerfile"
    ), res.stderr
