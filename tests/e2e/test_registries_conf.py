"""registries.conf against two real registries (Debian's docker-registry on loopback):
an origin and a mirror, each holding a different build of the same name, so the image
id and the registries' access logs both show where the bytes came from. Podman reads
the same file and must resolve the same names to the same images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import Rsbox, one_line_error
from tests.images import TarBuilder, write_oci_layout
from tests.podman import private_runtime
from tests.registry import PASSWORD, USER, Registry, push_layout, running_registry
from tests.shared import need_tools

TOOLS = ("/usr/bin/docker-registry", "skopeo", "podman")
RSBOX_AGENT = '"rsbox/'
BLOBS = r'"GET /v2/suite/{}/blobs/sha256:'


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    need_tools(TOOLS, "the registries.conf tests")


@dataclass
class Site:
    origin: Registry
    mirror: Registry
    ids: dict[str, str]  # "origin/app" -> image id (config digest hex) of that build


def _image(tmp: Path, where: str, repo: str) -> tuple[Path, str]:
    layer = TarBuilder().file("where.txt", f"{where} {repo}\n".encode()).bytes()
    return write_oci_layout(
        tmp / f"{where}-{repo}", [(layer, True)], config_extra={"Labels": {"where": where}}
    )


def _push(layout: Path, tag: str, ref: str) -> str:
    push_layout(layout, tag, ref, timeout=120)
    cfg = subprocess.run(
        ["skopeo", "inspect", "--raw", "--config", "--tls-verify=false", f"docker://{ref}"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return hashlib.sha256(cfg).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """origin: suite/app, suite/both, suite/onlyorigin, suite/blocked; mirror: suite/app,
    suite/both, suite/onlymirror (different builds from the origin's)."""
    tmp = tmp_path_factory.mktemp("sites")
    with running_registry(tmp / "origin") as origin, running_registry(tmp / "mirror") as mirror:
        ids = {}
        for reg, where, repos in (
            (origin, "origin", ("app", "both", "onlyorigin", "blocked")),
            (mirror, "mirror", ("app", "both", "onlymirror")),
        ):
            for repo in repos:
                layout, tag = _image(tmp, where, repo)
                ids[f"{where}/{repo}"] = _push(layout, tag, f"{reg.host}/suite/{repo}:v1")
        yield Site(origin, mirror, ids)


def _env(tmp: Path, conf: str, *, xdg: bool = False) -> dict[str, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    """A private HOME whose registries.conf is ``conf``: through the XDG path, or through
    CONTAINERS_REGISTRIES_CONF (Podman's variable)."""
    home = tmp / "home"
    path = home / ".config/containers/registries.conf"
    if xdg:
        extra = {"XDG_CONFIG_HOME": str(home / ".config")}
    else:
        path = tmp / "registries.conf"
        extra = {"CONTAINERS_REGISTRIES_CONF": str(path), "XDG_CONFIG_HOME": str(home / ".config")}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(conf)
    return {**os.environ, "HOME": str(home), **extra}


def rsbox(store: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        Rsbox(store).argv(*args), capture_output=True, text=True, env=env, timeout=120
    )


def rsbox_image(store: Path, env: dict[str, str], ref: str) -> tuple[str, list[str]]:
    """(id, names) of what `rsbox pull REF` stored."""
    res = rsbox(store, env, "pull", "-q", ref)
    assert res.returncode == 0, res.stderr
    image_id = res.stdout.strip()
    doc = json.loads(rsbox(store, env, "image", "inspect", image_id).stdout)[0]
    return image_id, doc["RepoTags"]


Podman = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture()
def podman(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Podman]]:
    """podman with a private store, under the given environment (HOME, registries.conf)."""
    runroot = Path(tempfile.mkdtemp(prefix="prun-"))  # podman: at most 50 characters
    argv = ["podman", "--root", str(tmp_path / "proot"), "--runroot", str(runroot),
            "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--storage-driver", "vfs"]  # fmt: skip
    (tmp_path / "podman").mkdir()
    with private_runtime(tmp_path / "podman") as base:

        def bind(env: dict[str, str]) -> Podman:
            def run(*args: str) -> subprocess.CompletedProcess[str]:
                env2 = {**env, "XDG_RUNTIME_DIR": base["XDG_RUNTIME_DIR"]}
                return subprocess.run(
                    [*argv, *args], capture_output=True, text=True, env=env2, timeout=180
                )

            return run

        try:
            yield bind
        finally:
            shutil.rmtree(runroot, ignore_errors=True)


def podman_image(pod: Podman, ref: str) -> tuple[str, list[str]]:
    res = pod("pull", "-q", ref)
    assert res.returncode == 0, res.stderr
    image_id = res.stdout.strip().splitlines()[-1]
    doc = json.loads(pod("image", "inspect", image_id).stdout)[0]
    return doc["Id"], doc["RepoTags"]


def _insecure(*hosts: str) -> str:
    """registries.conf entries for plain-HTTP registries (the suite's are on loopback)."""
    return "".join(f'[[registry]]\nlocation = "{h}"\ninsecure = true\n' for h in hosts)


def _searching(mode: str, *hosts: str) -> str:
    """registries.conf's short-name search over `hosts`, in order, in short-name `mode`."""
    return f'unqualified-search-registries = {json.dumps(hosts)}\nshort-name-mode = "{mode}"\n'


def agents(reg: Registry, repo: str) -> tuple[int, int]:
    """Blob downloads of suite/REPO in reg's access log: (by rsbox, by others)."""
    lines = reg.requests(BLOBS.format(repo))
    ours = sum(RSBOX_AGENT in line for line in lines)
    return ours, len(lines) - ours


def test_mirror_serves_the_pull_and_podman_agrees(
    site: Site, tmp_path: Path, podman: Callable[[dict[str, str]], Podman]
) -> None:
    o, m = site.origin.host, site.mirror.host
    conf = _insecure(o) + f'[[registry.mirror]]\nlocation = "{m}"\ninsecure = true\n'
    env = _env(tmp_path, conf, xdg=True)  # the user's own file, as Podman finds it too
    before_o, before_m = agents(site.origin, "app"), agents(site.mirror, "app")
    image_id, names = rsbox_image(tmp_path / "store", env, f"{o}/suite/app:v1")
    # named as asked, bytes from the mirror: its build, its log, nothing from the origin
    assert image_id == site.ids["mirror/app"] and names == [f"{o}/suite/app:v1"]
    assert agents(site.mirror, "app")[0] > before_m[0]
    assert agents(site.origin, "app")[0] == before_o[0]
    # a name the mirror lacks falls back to the origin
    image_id, _ = rsbox_image(tmp_path / "store", env, f"{o}/suite/onlyorigin:v1")
    assert image_id == site.ids["origin/onlyorigin"]
    # by digest too: the mirror's manifest, which the origin does not have, stored under
    # the name asked for
    digest = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{m}/suite/app:v1"],
            check=True, capture_output=True, text=True, timeout=60,
        ).stdout
    )["Digest"]  # fmt: skip
    by_digest = f"{o}/suite/app@{digest}"
    assert rsbox_image(tmp_path / "digest", env, by_digest)[0] == site.ids["mirror/app"]
    found = rsbox(tmp_path / "digest", env, "image", "inspect", by_digest)
    assert json.loads(found.stdout)[0]["Id"] == site.ids["mirror/app"], found.stderr
    # Podman, reading the same file, gets the same image from the same place
    pod = podman(env)
    pid, pnames = podman_image(pod, f"{o}/suite/app:v1")
    assert pid == site.ids["mirror/app"] and pnames == [f"{o}/suite/app:v1"]
    assert agents(site.mirror, "app")[1] > before_m[1]
    assert agents(site.origin, "app")[1] == before_o[1]


def test_control_without_the_mirror_goes_to_the_origin(site: Site, tmp_path: Path) -> None:
    o = site.origin.host
    env = _env(tmp_path, _insecure(o))
    before = agents(site.origin, "both")[0]
    image_id, names = rsbox_image(tmp_path / "store", env, f"{o}/suite/both:v1")
    assert image_id == site.ids["origin/both"] and names == [f"{o}/suite/both:v1"]
    assert agents(site.origin, "both")[0] > before


def test_blocked_registry_is_refused_in_one_line(
    site: Site, tmp_path: Path, podman: Callable[[dict[str, str]], Podman]
) -> None:
    o = site.origin.host
    conf = (
        _insecure(o)
        + f'[[registry]]\nprefix = "{o}/suite/blocked"\nlocation = "{o}/suite/blocked"\n'
        "blocked = true\n"
    )
    env = _env(tmp_path, conf)
    res = rsbox(tmp_path / "store", env, "pull", f"{o}/suite/blocked:v1")
    one_line_error(res, "is blocked by registries.conf", f"{o}/suite/blocked", alone=True)
    asked = site.origin.requests(r'"GET /v2/suite/blocked/')
    assert not [line for line in asked if RSBOX_AGENT in line], "nothing was asked for"
    # the control: the same registry, a name that is not blocked
    assert (
        rsbox_image(tmp_path / "store", env, f"{o}/suite/onlyorigin:v1")[0]
        == (site.ids["origin/onlyorigin"])
    )
    # a push to the blocked name is refused too (pushes are not redirected, blocks hold)
    pushed = rsbox(
        tmp_path / "store", env, "push", f"{o}/suite/onlyorigin:v1", f"{o}/suite/blocked:v2"
    )
    assert pushed.returncode == 125 and "is blocked by registries.conf" in pushed.stderr
    writes = site.origin.requests(r'"(PUT|POST|HEAD|PATCH) /v2/suite/blocked/')
    assert not [line for line in writes if RSBOX_AGENT in line]
    # and Podman refuses it too, with the same file
    pres = podman(env)("pull", f"{o}/suite/blocked:v1")
    assert pres.returncode != 0 and "blocked" in pres.stderr, pres.stderr


def test_alias_and_short_name_search_order_match_podman(
    site: Site, tmp_path: Path, podman: Callable[[dict[str, str]], Podman]
) -> None:
    o, m = site.origin.host, site.mirror.host
    conf = (
        _searching("permissive", o, m)
        + f'[aliases]\n"rsbox-test-alias" = "{m}/suite/app"\n'
        + _insecure(o, m)
    )
    env = _env(tmp_path, conf)
    pod = podman(env)
    expected = {
        # an alias: straight to its registry
        "rsbox-test-alias:v1": (f"{m}/suite/app:v1", "mirror/app"),
        # search order: the first registry that has it
        "suite/both:v1": (f"{o}/suite/both:v1", "origin/both"),
        "suite/onlymirror:v1": (f"{m}/suite/onlymirror:v1", "mirror/onlymirror"),
    }
    for short, (name, build) in expected.items():
        image_id, names = rsbox_image(tmp_path / "store", env, short)
        assert (image_id, names) == (site.ids[build], [name]), short
        pid, pnames = podman_image(pod, short)
        assert (pid, pnames) == (site.ids[build], [name]), short
    # in neither registry: one line naming every place that was tried
    res = rsbox(tmp_path / "store", env, "pull", "suite/nowhere:v1")
    tried = (f"{o}/suite/nowhere:v1: ", f"{m}/suite/nowhere:v1: ")
    one_line_error(res, *tried, hint=False, alone=True)
    assert pod("pull", "suite/nowhere:v1").returncode != 0


def test_enforcing_mode_without_a_terminal_fails_as_podman_does(
    site: Site, tmp_path: Path, podman: Callable[[dict[str, str]], Podman]
) -> None:
    o, m = site.origin.host, site.mirror.host
    conf = _searching("enforcing", o, m) + _insecure(o, m)
    env = _env(tmp_path, conf)
    res = rsbox(tmp_path / "store", env, "pull", "suite/both:v1")
    one_line_error(res, "enforcing", alone=True)
    pod = podman(env)
    pres = pod("pull", "suite/both:v1")
    assert pres.returncode != 0 and "TTY" in pres.stderr, pres.stderr
    # the control: a fully qualified name needs no search, in either tool
    assert rsbox_image(tmp_path / "store", env, f"{o}/suite/both:v1")[0] == site.ids["origin/both"]
    assert podman_image(pod, f"{o}/suite/both:v1")[0] == site.ids["origin/both"]


def test_enforcing_mode_asks_on_a_terminal(site: Site, tmp_path: Path) -> None:
    o, m = site.origin.host, site.mirror.host
    conf = _searching("enforcing", o, m)
    env = _env(tmp_path, conf)
    store = tmp_path / "store"
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        Rsbox(store).argv("pull", "-q", "suite/both:v1"),
        stdin=secondary, stdout=secondary, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    os.close(secondary)
    os.write(primary, b"2\n")  # the terminal holds the answer: the second registry
    _, err = proc.communicate(timeout=120)
    os.close(primary)
    question = err.decode()
    assert proc.returncode == 0, question
    assert f"1) {o}/suite/both:v1" in question and f"2) {m}/suite/both:v1" in question
    assert "choice [1]" in question
    doc = json.loads(rsbox(store, env, "image", "inspect", f"{m}/suite/both:v1").stdout)[0]
    assert doc["Id"] == site.ids["mirror/both"]


def test_insecure_allows_an_untrusted_certificate(tmp_path: Path) -> None:
    """The TLS registry's CA is nobody's: refused, unless registries.conf says insecure."""
    with running_registry(tmp_path / "tls", tls=True) as reg:
        layout, tag = _image(tmp_path, "tls", "app")
        ref = f"{reg.host}/suite/app:v1"
        subprocess.run(
            ["skopeo", "copy", "-q", f"--dest-cert-dir={reg.cert_dir}", f"--dest-creds={USER}:{PASSWORD}",
             f"oci:{layout}:{tag}", f"docker://{ref}"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        creds = ("--creds", f"{USER}:{PASSWORD}")
        refused = rsbox(tmp_path / "s1", _env(tmp_path / "a", ""), "pull", *creds, ref)
        assert refused.returncode == 125 and "not trusted" in refused.stderr, refused.stderr
        env = _env(tmp_path / "b", _insecure(reg.host))
        res = rsbox(tmp_path / "s2", env, "pull", "-q", *creds, ref)
        assert res.returncode == 0, res.stderr
