"""rsbox against the real CNCF distribution registry (Debian's docker-registry), on
loopback: plain HTTP, and TLS (a CA made here) with htpasswd auth. Images are built by
the suite; skopeo and umoci check interoperability both ways."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.conftest import IN_CI, Rsbox, one_line_error
from tests.images import (
    GIB,
    docker_archive,
    gzip_bomb,
    make_layered_oci_layout,
    make_registry_layout,
    sparse_tar,
    write_oci_layout,
    write_oci_layout_blobs,
)
from tests.podman import private_runtime
from tests.registry import PASSWORD, USER, Registry, running_registry
from tests.rootless.leftovers import leftovers, nothing_stored
from tests.shared import need_tools

TOOLS = ("/usr/bin/docker-registry", "skopeo", "umoci", "openssl", "htpasswd")


@pytest.fixture(scope="module", autouse=True)
def _tools() -> None:
    need_tools(TOOLS, "the registry tests")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry-plain")) as reg:
        yield reg


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with running_registry(tmp_path_factory.mktemp("registry-tls"), tls=True) as reg:
        yield reg


@pytest.fixture(scope="module")
def multi(plain: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The multi-platform index (zstd layer inside), pushed by skopeo."""
    layout, tag = make_registry_layout(tmp_path_factory.mktemp("multi") / "layout")
    ref = f"{plain.host}/suite/multi:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{ref}")
    return ref


@pytest.fixture()
def fresh(tmp_path: Path) -> Rsbox:
    return Rsbox(tmp_path / "store")


def skopeo(*args: str) -> str:
    res = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_skopeo_pushed_index_with_zstd_layer_is_pulled_and_run(multi: str, fresh: Rsbox) -> None:
    image_id = fresh("pull", "-q", multi, check=True).stdout.strip()
    res = fresh.run("--rm", multi, "cat", "/zstd.txt", "/plain.txt", check=True)
    assert res.stdout == "from a zstd layer\nfrom a plain layer\n"
    doc = json.loads(fresh("image", "inspect", multi, check=True).stdout)[0]
    assert doc["Id"] == image_id and len(doc["RootFS"]["Layers"]) == 3
    assert doc["Digest"].startswith("sha256:") and doc["RepoTags"] == [multi]


def test_platform_selection(multi: str, fresh: Rsbox) -> None:
    import platform

    other = "amd64" if platform.machine() == "aarch64" else "arm64"
    fresh("pull", "-q", "--platform", f"linux/{other}", multi, check=True)
    doc = json.loads(fresh("image", "inspect", multi, check=True).stdout)[0]
    assert doc["Architecture"] == other and len(doc["RootFS"]["Layers"]) == 1
    res = fresh("pull", "--platform", "linux/ppc64le", multi)
    one_line_error(res, "no image for linux/ppc64le", f"linux/{other}")


def test_rsbox_push_then_fresh_store_pulls_and_runs(
    plain: Registry, multi: str, fresh: Rsbox, tmp_path: Path
) -> None:
    fresh("pull", "-q", multi, check=True)
    dest = f"{plain.host}/suite/pushed:v2"
    fresh("push", multi, dest, check=True)
    other = Rsbox(tmp_path / "other")
    other("pull", "-q", dest, check=True)
    assert other.run("--rm", dest, "cat", "/zstd.txt", check=True).stdout == "from a zstd layer\n"
    # the same layers: the zstd blob went up as it came down
    a = json.loads(fresh("image", "inspect", multi, check=True).stdout)[0]
    b = json.loads(other("image", "inspect", dest, check=True).stdout)[0]
    assert a["Id"] == b["Id"] and a["RootFS"] == b["RootFS"]


def test_rsbox_push_is_read_by_skopeo_and_umoci(
    plain: Registry, fresh: Rsbox, tmp_path: Path
) -> None:
    layout, tag = make_layered_oci_layout(tmp_path / "layout")
    fresh("import", f"oci:{layout}:{tag}", "layered", check=True)
    dest = f"{plain.host}/suite/layered:v1"
    fresh("push", "layered", dest, check=True)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{dest}"))
    assert len(info["Layers"]) == 3
    skopeo("copy", "--src-tls-verify=false", f"docker://{dest}", f"oci:{tmp_path / 'copy'}:t")
    bundle = tmp_path / "bundle"
    subprocess.run(
        ["umoci", "unpack", "--rootless", "--image", f"{tmp_path / 'copy'}:t", str(bundle)],
        check=True,
        capture_output=True,
    )
    rootfs = bundle / "rootfs"
    assert (rootfs / "top.txt").read_text() == "top\n"
    assert not (rootfs / "etc" / "removeme").exists()
    assert sorted(os.listdir(rootfs / "opaque")) == ["new"]


def test_oci_layout_as_push_destination_and_pull_source(
    multi: str, fresh: Rsbox, tmp_path: Path
) -> None:
    fresh("pull", "-q", multi, check=True)
    fresh("push", multi, f"oci:{tmp_path / 'out'}:saved", check=True)
    # (umoci 0.4 has no zstd support: skopeo reads this layout)
    info = json.loads(skopeo("inspect", f"oci:{tmp_path / 'out'}:saved"))
    assert len(info["Layers"]) == 3
    other = Rsbox(tmp_path / "other")
    other("pull", "-q", f"oci:{tmp_path / 'out'}:saved", check=True)
    assert (
        other.run("--rm", "out:saved", "cat", "/zstd.txt", check=True).stdout
        == "from a zstd layer\n"
    )


def test_tls_registry_with_htpasswd(
    secure: Registry, multi: str, fresh: Rsbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    fresh("pull", "-q", multi, check=True)
    dest = f"{secure.host}/private/img:v1"
    certs = str(secure.cert_dir)
    # the CA is not trusted by default; plain HTTP is not tried against a TLS server
    one_line_error(fresh("push", multi, dest), "not trusted", "--cert-dir")
    one_line_error(
        fresh("push", "--cert-dir", certs, multi, dest), "requires authentication", "rsbox login"
    )
    res = fresh(
        "login", "--cert-dir", certs, "-u", USER, "--password-stdin", secure.host, input="wrong\n"
    )
    one_line_error(res, "rejected the credentials")
    assert not (tmp_path / "config" / "rsbox" / "auth.json").exists()
    res = fresh(
        "login",
        "--cert-dir",
        certs,
        "-u",
        USER,
        "--password-stdin",
        secure.host,
        input=f"{PASSWORD}\n",
    )
    assert res.returncode == 0, res.stderr
    auth = tmp_path / "config" / "rsbox" / "auth.json"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    fresh("push", "--cert-dir", certs, multi, dest, check=True)
    other = Rsbox(tmp_path / "other")
    other("pull", "-q", "--cert-dir", certs, dest, check=True)
    assert other.run("--rm", dest, "cat", "/plain.txt", check=True).stdout == "from a plain layer\n"
    # --tls-verify=false skips verification (credentials still from the file)
    third = Rsbox(tmp_path / "third")
    third("pull", "-q", "--tls-verify=false", dest, check=True)
    assert fresh("logout", secure.host, check=True).returncode == 0
    one_line_error(
        Rsbox(tmp_path / "fourth")("pull", "--cert-dir", certs, dest), "requires authentication"
    )
    # credentials Podman wrote are read as well
    run_dir = tmp_path / "run" / "containers"
    run_dir.mkdir(parents=True)
    import base64

    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (run_dir / "auth.json").write_text(json.dumps({"auths": {secure.host: {"auth": token}}}))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    Rsbox(tmp_path / "fifth")("pull", "-q", "--cert-dir", certs, dest, check=True)


def test_registry_that_demands_a_client_certificate(
    multi: str, fresh: Rsbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docker's certs.d layout: X.cert + X.key in --cert-dir is presented to the
    registry; without it the TLS handshake is refused and rsbox says so in one line."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with running_registry(tmp_path / "mtls", tls=True, client_certs=True) as reg:
        assert reg.cert_dir is not None
        fresh("pull", "-q", multi, check=True)
        dest = f"{reg.host}/private/img:v1"
        login = ["login", "-u", USER, "--password-stdin", reg.host]
        ca_only = tmp_path / "ca-only"
        ca_only.mkdir()
        shutil.copy(reg.cert_dir / "ca.crt", ca_only / "ca.crt")
        res = fresh(login[0], "--cert-dir", str(ca_only), *login[1:], input=f"{PASSWORD}\n")
        one_line_error(res, "wants a client certificate", "NAME.cert")
        res = fresh(login[0], "--cert-dir", str(reg.cert_dir), *login[1:], input=f"{PASSWORD}\n")
        assert res.returncode == 0, res.stderr
        fresh("push", "--cert-dir", str(reg.cert_dir), multi, dest, check=True)
        other = Rsbox(tmp_path / "other")
        other("pull", "-q", "--cert-dir", str(reg.cert_dir), dest, check=True)
        out = other.run("--rm", dest, "cat", "/plain.txt", check=True).stdout
        assert out == "from a plain layer\n"


def test_concurrent_pulls_download_each_layer_once(
    plain: Registry, multi: str, fresh: Rsbox
) -> None:
    # a repository of its own, so that the access log shows only this test's pulls
    repo = f"{plain.host}/suite/concurrent"
    skopeo(
        "copy", "--all", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{multi}", f"docker://{repo}:v1",
    )  # fmt: skip
    multi = f"{repo}:v1"
    procs = [
        subprocess.Popen(
            fresh.argv("pull", "-q", multi),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    doc = json.loads(fresh("image", "inspect", multi, check=True).stdout)[0]
    manifest = json.loads(
        skopeo(
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{multi.rpartition(':')[0]}@{doc['Digest']}",
        )
    )
    for layer in manifest["layers"]:
        gets = plain.requests(rf'"GET /v2/suite/concurrent/blobs/{layer["digest"]} ')
        assert len(gets) == 1, gets


def _du(path: Path) -> int:
    return int(
        subprocess.run(
            ["du", "-sk", str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )


def test_images_sharing_a_base_layer_store_it_once(
    plain: Registry, fresh: Rsbox, tmp_path: Path
) -> None:
    from tests.images import TarBuilder, make_busybox_rootfs

    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    base = TarBuilder().add_tree(rootfs).bytes()
    for name in ("one", "two"):
        top = TarBuilder().file(f"{name}.txt", name.encode()).bytes()
        layout, tag = write_oci_layout(tmp_path / name, [(base, True), (top, True)])
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:{tag}",
            f"docker://{plain.host}/share/{name}:v1",
        )
    fresh("pull", "-q", f"{plain.host}/share/one:v1", check=True)
    one = _du(fresh.root / "layers")
    fresh("pull", "-q", f"{plain.host}/share/two:v1", check=True)
    two = _du(fresh.root / "layers")
    assert len(os.listdir(fresh.root / "layers")) == 3
    busybox_kb = os.stat("/bin/busybox").st_size // 1024
    assert one > busybox_kb and two - one < busybox_kb // 10
    # removing one image keeps the shared layer; removing both collects layers and blobs
    fresh("rmi", f"{plain.host}/share/one:v1", check=True)
    assert len(os.listdir(fresh.root / "layers")) == 2
    assert (
        fresh.run("--rm", f"{plain.host}/share/two:v1", "cat", "/two.txt", check=True).stdout
        == "two"
    )
    fresh("rmi", f"{plain.host}/share/two:v1", check=True)
    assert os.listdir(fresh.root / "layers") == []
    assert os.listdir(fresh.root / "blobs" / "sha256") == []


def test_rmi_refuses_while_a_container_uses_the_image(multi: str, fresh: Rsbox) -> None:
    fresh("pull", "-q", multi, check=True)
    fresh.run("--name", "keeper", multi, "true", check=True)
    one_line_error(fresh("rmi", multi), "used by container", "--force")
    assert fresh.run("--rm", multi, "true").returncode == 0  # still runnable
    fresh("rmi", "--force", multi, check=True)
    assert json.loads(fresh("images", "--format", "json", check=True).stdout) == []


def test_missing_image_and_bad_reference(plain: Registry, fresh: Rsbox) -> None:
    one_line_error(fresh("pull", f"{plain.host}/suite/nothing:here"), "not found")
    one_line_error(fresh("pull", "UPPER/Case"), "invalid")


def test_run_pulls_a_missing_image(plain: Registry, multi: str, fresh: Rsbox) -> None:
    one_line_error(fresh.run("--rm", "--pull=never", multi, "true"), "no such image")
    res = fresh.run("--rm", multi, "cat", "/zstd.txt", check=True)
    assert res.stdout == "from a zstd layer\n"  # progress went to stderr
    manifest_gets = len(plain.requests(r'"GET /v2/suite/multi/manifests/'))
    fresh.run("--rm", multi, "true", check=True)  # present: no registry request
    assert len(plain.requests(r'"GET /v2/suite/multi/manifests/')) == manifest_gets
    fresh.run("--rm", "--pull=always", multi, "true", check=True)
    assert len(plain.requests(r'"GET /v2/suite/multi/manifests/')) > manifest_gets


def test_run_by_digest_pulls_once(plain: Registry, multi: str, fresh: Rsbox) -> None:
    digest = skopeo("inspect", "--tls-verify=false", "--format", "{{.Digest}}", f"docker://{multi}")
    by_digest = f"{multi.rpartition(':')[0]}@{digest.strip()}"
    res = fresh.run("--rm", by_digest, "cat", "/zstd.txt", check=True)
    assert res.stdout == "from a zstd layer\n"
    manifest_gets = len(plain.requests(r'"GET /v2/suite/multi/manifests/'))
    fresh.run("--rm", by_digest, "true", check=True)  # --pull=missing: it is present
    assert len(plain.requests(r'"GET /v2/suite/multi/manifests/')) == manifest_gets


def test_podman_save_loads_and_rsbox_save_is_read_back(fresh: Rsbox, tmp_path: Path) -> None:
    from tests.images import make_busybox_rootfs

    if shutil.which("podman") is None:
        if IN_CI:
            pytest.fail("podman is missing (./setup.sh packages)")
        pytest.skip("podman is missing")
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "hello.txt").write_text("made by podman\n")
    tar = ["tar", "--owner=0", "--group=0", "--numeric-owner", "-C", str(rootfs)]
    subprocess.run([*tar, "-cf", str(tmp_path / "rootfs.tar"), "."], check=True)
    runroot = Path(tempfile.mkdtemp(prefix="prun-"))  # podman: at most 50 characters
    podman = [
        "podman", "--root", str(tmp_path / "proot"), "--runroot", str(runroot),
        "--cgroup-manager", "cgroupfs", "--runtime", "runc", "--storage-driver", "vfs",
    ]  # fmt: skip
    with private_runtime(tmp_path) as env:

        def pod(*args: str) -> None:
            res = subprocess.run(
                [*podman, *args], capture_output=True, text=True, env=env, timeout=120
            )
            assert res.returncode == 0, res.stderr

        try:
            pod("import", str(tmp_path / "rootfs.tar"), "localhost/frompodman:v1")
            pod("save", "-o", str(tmp_path / "docker.tar"), "localhost/frompodman:v1")
            pod("save", "--format", "oci-archive", "-o", str(tmp_path / "oci.tar"),
                "localhost/frompodman:v1")  # fmt: skip
        finally:
            shutil.rmtree(runroot, ignore_errors=True)
    for archive in ("docker.tar", "oci.tar"):
        store = Rsbox(tmp_path / f"store-{archive}")
        res = store("load", "-i", str(tmp_path / archive), check=True)
        assert "localhost/frompodman:v1" in res.stdout
        out = store.run("--rm", "frompodman:v1", "cat", "/hello.txt", check=True).stdout
        assert out == "made by podman\n"
    # and back: rsbox's archives load into rsbox and are read by skopeo
    src = Rsbox(tmp_path / "store-docker.tar")
    for fmt, transport in (("docker-archive", "docker-archive"), ("oci-archive", "oci-archive")):
        out = tmp_path / f"saved-{fmt}.tar"
        src("save", "--format", fmt, "-o", str(out), "frompodman:v1", check=True)
        info = json.loads(skopeo("inspect", f"{transport}:{out}"))
        assert len(info["Layers"]) == 1
        again = Rsbox(tmp_path / f"again-{fmt}")
        again("load", "-i", str(out), check=True)
        assert (
            again.run("--rm", "frompodman:v1", "cat", "/hello.txt", check=True).stdout
            == "made by podman\n"
        )
    one_line_error(fresh("load", "-i", str(tmp_path / "rootfs.tar")), "neither")


def test_large_layer_is_uploaded_in_chunks(plain: Registry, fresh: Rsbox, tmp_path: Path) -> None:
    from tests.images import TarBuilder, make_busybox_rootfs

    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "big.bin").write_bytes(os.urandom(20 * 1024 * 1024))  # > 2 chunks of 8 MiB
    tarball = tmp_path / "rootfs.tar"
    tarball.write_bytes(TarBuilder().add_tree(rootfs).bytes())
    fresh("import", str(tarball), "big", check=True)
    dest = f"{plain.host}/suite/big:v1"
    fresh("push", "big", dest, check=True)
    assert len(plain.requests(r'"PATCH /v2/suite/big/blobs/uploads/')) >= 3
    other = Rsbox(tmp_path / "other")
    other("pull", "-q", dest, check=True)
    res = other.run("--rm", dest, "sh", "-c", "wc -c < /big.bin", check=True)
    assert res.stdout.strip() == str(20 * 1024 * 1024)


def test_rsbox_pushes_a_multi_platform_index_from_an_oci_layout(
    plain: Registry, fresh: Rsbox, tmp_path: Path
) -> None:
    import platform

    layout, tag = make_registry_layout(tmp_path / "layout")
    dest = f"{plain.host}/suite/rsbox-multi:v1"
    fresh("push", f"oci:{layout}:{tag}", dest, check=True)
    index = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{dest}"))
    assert len(index["manifests"]) == 2
    fresh("pull", "-q", dest, check=True)
    assert fresh.run("--rm", dest, "cat", "/zstd.txt", check=True).stdout == "from a zstd layer\n"
    other = "amd64" if platform.machine() == "aarch64" else "arm64"
    fresh("pull", "-q", "--platform", f"linux/{other}", dest, check=True)
    doc = json.loads(fresh("image", "inspect", dest, check=True).stdout)[0]
    assert doc["Architecture"] == other


# --- bombs and bad input ------------------------------------------------------------------

TAR = "application/vnd.oci.image.layer.v1.tar"


@dataclass(frozen=True)
class Bombs:
    """The same two layers (a 20 KiB `tar --sparse` of a 2 GiB file, a 2 MB gzip of
    2 GiB of zeros) as tarballs for `import`, a docker-archive for `load`, and an image
    in the registry for `pull`; and a sparse-only variant of each."""

    sparse: Path
    bomb: Path
    archive: Path
    ref: str
    sparse_archive: Path
    sparse_ref: str


@pytest.fixture(scope="module")
def bombs(plain: Registry, tmp_path_factory: pytest.TempPathFactory) -> Bombs:
    d = tmp_path_factory.mktemp("bombs")
    sparse_blob = sparse_tar(d / "src", 2 * GIB)
    sparse = (sparse_blob, hashlib.sha256(sparse_blob).hexdigest())
    bomb = gzip_bomb(2 * GIB)
    (d / "sparse.tar").write_bytes(sparse_blob)
    (d / "bomb.tar.gz").write_bytes(bomb[0])
    refs = {}
    for name, layers in (("bombs", [sparse, bomb]), ("sparse", [sparse])):
        docker_archive(d / f"{name}-archive.tar", layers)
        media = [
            (blob, TAR if blob is sparse_blob else f"{TAR}+gzip", diff_id)
            for blob, diff_id in layers
        ]
        layout, tag = write_oci_layout_blobs(d / f"{name}-layout", media)
        refs[name] = f"{plain.host}/suite/{name}:v1"
        skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:{tag}", f"docker://{refs[name]}")
    return Bombs(d / "sparse.tar", d / "bomb.tar.gz", d / "bombs-archive.tar", refs["bombs"],
                 d / "sparse-archive.tar", refs["sparse"])  # fmt: skip


def _stored_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every regular file of the store's layers: name -> (size, bytes allocated)."""
    out = {}
    for path in (root / "layers").glob("*/fs/*"):
        st = path.lstat()
        out[path.name] = (st.st_size, st.st_blocks * 512)
    return out


def _allocated(root: Path) -> int:
    return sum(
        os.lstat(os.path.join(d, f)).st_blocks * 512 for d, _, files in os.walk(root) for f in files
    )


def test_sparse_and_bomb_layers_stay_sparse_through_import_load_and_pull(
    bombs: Bombs, tmp_path: Path
) -> None:
    cases = {
        "import": [("import", str(bombs.sparse), "sparse"), ("import", str(bombs.bomb), "bomb")],
        "load": [("load", "-i", str(bombs.archive))],
        "pull": [("pull", "-q", bombs.ref)],
    }
    for how, commands in cases.items():
        store = Rsbox(tmp_path / how)
        for args in commands:
            store(*args, timeout=300, check=True)
        files = _stored_files(store.root)
        assert files["sparse.bin"][0] == 2 * GIB and files["zeros.bin"][0] == 2 * GIB, how
        assert files["after.txt"][0] == 6, how  # what follows the 2 GiB of zeros
        # 4 GiB of files, 2 layers, 2 blobs and a database in a few MB at most
        assert _allocated(store.root) < 16 * 1024 * 1024, (how, files)


def test_a_store_reserve_larger_than_the_free_space_refuses_with_one_line(
    bombs: Bombs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commands = {
        "import": ("import", str(bombs.sparse), "sparse"),
        "load": ("load", "-i", str(bombs.sparse_archive)),
        "pull": ("pull", "-q", bombs.sparse_ref),
    }
    for how, args in commands.items():
        store = Rsbox(tmp_path / how)
        monkeypatch.setenv("RSBOX_STORE_RESERVE", "100%")
        line = one_line_error(store(*args), "would leave less than", "RSBOX_STORE_RESERVE")
        assert re.search(r"error: layer sha256:[0-9a-f]{12} would leave less than ", line), line
        assert nothing_stored(store.root), (how, leftovers(store.root))
        monkeypatch.setenv("RSBOX_STORE_RESERVE", "64M")  # control: a small reserve
        store(*args, check=True)
        assert _stored_files(store.root)["sparse.bin"][0] == 2 * GIB
    monkeypatch.setenv("RSBOX_STORE_RESERVE", "plenty")
    one_line_error(Rsbox(tmp_path / "bad")(*commands["import"]), "RSBOX_STORE_RESERVE")


def test_bad_input_to_save_and_load_is_one_line_and_stores_nothing(
    bombs: Bombs, fresh: Rsbox, tmp_path: Path
) -> None:
    fresh("load", "-i", str(bombs.sparse_archive), check=True)
    fresh("save", "-o", str(tmp_path / "good.tar"), "localhost/bomb:v1", check=True)
    before = leftovers(fresh.root)
    one_line_error(
        fresh("save", "-o", "/no/such/dir/x.tar", "localhost/bomb:v1"),
        "cannot write /no/such/dir/x.tar",
        "does not exist",
    )
    assert not Path("/no/such").exists()
    one_line_error(fresh("save", "-o", str(tmp_path), "localhost/bomb:v1"), "is a directory")
    good = (tmp_path / "good.tar").read_bytes()
    inputs = {
        "not-a-tar": (b"#!/bin/sh\necho this is a script\n", "is not a tar archive"),
        "empty": (b"", "is empty"),
        "truncated": (good[: len(good) // 2], "truncated"),
    }
    for name, (content, words) in inputs.items():
        (tmp_path / name).write_bytes(content)
        one_line_error(fresh("load", "-i", str(tmp_path / name)), words)
        assert leftovers(fresh.root) == before, name


def test_load_of_a_layer_not_matching_its_digest_stores_nothing(
    fresh: Rsbox, tmp_path: Path
) -> None:
    from tests.images import TarBuilder

    good = TarBuilder().file("good.txt", b"good\n").bytes()
    bad = TarBuilder().file("bad.txt", b"bad\n").bytes()
    archive = docker_archive(
        tmp_path / "bad.tar", [(good, hashlib.sha256(good).hexdigest()), (bad, "ab" * 32)]
    )
    one_line_error(fresh("load", "-i", str(archive)), "the image config says sha256:" + "ab" * 32)
    assert nothing_stored(fresh.root), leftovers(fresh.root)
