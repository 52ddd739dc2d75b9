"""Trust, change detection and the environment's housekeeping, end to end as both CI
users: `rsbox env trust/untrust` (an edit revokes trust; nothing builds, starts or puts
tools on PATH until then), `rsbox hook bash|zsh|fish` run by the real shells,
`env status`, `auto_rebuild`, `env lock` of a Debian project and `env gc` (with what
is still referenced as the control)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from rootless.env.trust import is_trusted, trust
from tests.e2e.conftest import Rsbox
from tests.e2e.test_env import SOURCE, _container_line, _in, _ok, _steps_run
from tests.e2e.test_workloads import ENV_PACKAGES, debian_tarball
from tests.shared import need_tools

# `trust(...)` below is the function `rsbox env trust` runs, called in-process to spare a
# CLI start where trusting is the setup, not what is tested.


def _untrusted(tmp: Path, toml: str, name: str | None = None) -> Path:
    root = tmp / (name or f"proj-{os.urandom(3).hex()}")
    root.mkdir(parents=True)
    (root / "rsbox.toml").write_text(textwrap.dedent(toml).lstrip())
    return root


def _field(status: str, name: str) -> str:
    return next(line.split(None, 1)[1] for line in status.splitlines() if line.startswith(name))


def _containers(rsbox: Rsbox, cwd: Path) -> list[str]:
    return _ok(rsbox, cwd, "ps", "-a", "--format", "{{.Names}}").split()


def _record(rsbox: Rsbox, root: Path) -> Path:
    """env-trust/K, K = sha256(path + "\\n" + sha256 of the bytes): the fixed interface
    the lean shim path reads."""
    data = (root / "rsbox.toml").read_bytes()
    text = f"{root / 'rsbox.toml'}\n{hashlib.sha256(data).hexdigest()}"
    return rsbox.root / "env-trust" / hashlib.sha256(text.encode()).hexdigest()


def _refused(res: subprocess.CompletedProcess[str], root: Path, edited: bool = False) -> None:
    assert res.returncode == 125, res
    if edited:
        line = f"rsbox: error: rsbox.toml at {root} is not trusted: it changed since it was "
        line += "trusted (hint: review it, then rsbox env trust)\n"
    else:
        line = f"rsbox: error: rsbox.toml at {root} is not trusted (hint: rsbox env trust)\n"
    assert res.stderr == line, res


def test_nothing_builds_or_starts_until_trusted_and_an_edit_revokes_it(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    root = _untrusted(tmp_path, f'[env]\nbase = "{busybox}"\n[run]\non_create = "touch made"\n')
    image = f"localhost/rsbox-env-{root.name}:latest"
    for args in (("env", "build"), ("env", "up"), ("shell", "true"), ("env", "lock")):
        _refused(_in(rsbox, root, *args), root)
    assert _in(rsbox, root, "image", "inspect", image).returncode != 0  # no build
    assert f"rsbox-env-{root.name}" not in _containers(rsbox, root)  # no container
    assert not (root / "made").exists()  # no on_create
    assert _field(_ok(rsbox, root, "env", "status"), "trust:").startswith("untrusted")
    # the same commands once trusted (the control)
    assert _ok(rsbox, root, "env", "trust") == f"trusted {root / 'rsbox.toml'}\n"
    record = _record(rsbox, root)
    assert record.read_text() == f"{root / 'rsbox.toml'}\n"
    _ok(rsbox, root, "env", "build")
    assert _ok(rsbox, root, "shell", "echo", "in") == "in\n"
    assert (root / "made").exists()
    assert _field(_ok(rsbox, root, "env", "status"), "trust:") == "trusted"
    # an edit (even a comment) revokes it: entry refuses, the old record is not enough
    with (root / "rsbox.toml").open("a") as f:
        f.write("# edited\n")
    _refused(_in(rsbox, root, "shell", "true"), root, edited=True)
    assert _field(_ok(rsbox, root, "env", "status"), "trust:").startswith("edited")
    _ok(rsbox, root, "env", "trust")
    assert not record.exists()  # the earlier content's record is gone, the new one made
    assert _record(rsbox, root).read_text() == f"{root / 'rsbox.toml'}\n"
    assert _ok(rsbox, root, "shell", "echo", "again") == "again\n"
    # untrust: refused again; a second untrust says there was nothing
    assert _ok(rsbox, root, "env", "untrust") == f"untrusted {root / 'rsbox.toml'}\n"
    _refused(_in(rsbox, root, "shell", "true"), root)
    assert "was not trusted" in _ok(rsbox, root, "env", "untrust")
    _ok(rsbox, root, "env", "down")


def _hook_projects(rsbox: Rsbox, tmp: Path) -> dict[str, Path]:
    """Two trusted projects, an untrusted one and an edited one, each with a shim."""
    out = {}
    for kind in ("a", "b", "untrusted", "edited"):
        root = _untrusted(tmp, '[env]\nbase = "busybox"\n[expose]\nbins = ["cat"]\n', kind)
        (root / "sub").mkdir()
        _ok(rsbox, root, "env", "shims")  # needs no trust: writing files runs nothing
        if kind != "untrusted":
            trust(str(rsbox.root), str(root / "rsbox.toml"))
        out[kind] = root
    with (out["edited"] / "rsbox.toml").open("a") as f:
        f.write("# edited after trust\n")
    return out


# Each line is read after a prompt, so the hook runs between any two lines.
_SCRIPT = """\
echo "start $PATH"
cd {a}/sub
echo "a $PATH"
command -v cat
cd {b}
echo "b $PATH"
cd {a}/..
echo "out $PATH"
cd {untrusted}
echo "untrusted $PATH"
cd sub
cd ..
cd {edited}
echo "edited $PATH"
true
"""


def _check_hook_run(res: subprocess.CompletedProcess[str], p: dict[str, Path]) -> None:
    lines = dict(line.split(" ", 1) for line in res.stdout.splitlines() if " " in line)
    start = lines["start"]
    assert lines["a"] == f"{p['a']}/.rsbox/bin:{start}", res
    assert f"{p['a']}/.rsbox/bin/cat" in res.stdout.splitlines()  # the shim is what runs
    assert lines["b"] == f"{p['b']}/.rsbox/bin:{start}", res  # swapped, not stacked
    assert lines["out"] == start  # off again outside
    assert lines["untrusted"] == start and lines["edited"] == start
    said = [line for line in res.stderr.splitlines() if line.startswith("rsbox: ")]
    assert said == [
        # once per directory, not at each of its prompts
        f"rsbox: {p['untrusted']}/rsbox.toml is not trusted: .rsbox/bin is not put on PATH "
        "(hint: rsbox env trust)",
        f"rsbox: {p['untrusted']}/rsbox.toml is not trusted: .rsbox/bin is not put on PATH "
        "(hint: rsbox env trust)",
        f"rsbox: {p['untrusted']}/rsbox.toml is not trusted: .rsbox/bin is not put on PATH "
        "(hint: rsbox env trust)",
        f"rsbox: {p['edited']}/rsbox.toml changed since it was trusted: .rsbox/bin is off "
        "PATH (hint: review it, then rsbox env trust)",
    ], res.stderr


@pytest.fixture(scope="module")
def hook_projects(
    rsbox: Rsbox, busybox: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return _hook_projects(rsbox, tmp_path_factory.mktemp("hook"))


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SOURCE, "PATH": "/usr/local/bin:/usr/bin:/bin"}


def test_bash_hook_puts_the_shims_on_path_inside_trusted_projects_only(
    rsbox: Rsbox, hook_projects: dict[str, Path], tmp_path: Path
) -> None:
    rc = tmp_path / "bashrc"
    rc.write_text(_ok(rsbox, tmp_path, "hook", "bash"))
    script = _SCRIPT.format(**{k: str(v) for k, v in hook_projects.items()})
    res = subprocess.run(["bash", "--rcfile", str(rc), "-i"], input=script, cwd=tmp_path,
                         env=_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    _check_hook_run(res, hook_projects)
    # the Done-when form: `bash -ic` runs no prompt of its own, so it calls the hook
    p = hook_projects["a"]
    cmd = f'eval "$({" ".join(rsbox.argv("hook", "bash"))})"; cd {p}; _rsbox_hook; '
    cmd += "command -v cat; cd ..; _rsbox_hook; command -v cat || echo none"
    res = subprocess.run(["bash", "--norc", "-ic", cmd], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.stdout == f"{p}/.rsbox/bin/cat\n/usr/bin/cat\n", res


def test_zsh_hook_runs_at_each_prompt_alike(
    rsbox: Rsbox, hook_projects: dict[str, Path], tmp_path: Path
) -> None:
    need_tools(("zsh",), "the zsh hook")
    (tmp_path / ".zshrc").write_text(_ok(rsbox, tmp_path, "hook", "zsh"))
    script = _SCRIPT.format(**{k: str(v) for k, v in hook_projects.items()})
    res = subprocess.run(["zsh", "-i"], input=script, cwd=tmp_path,
                         env={**_env(), "ZDOTDIR": str(tmp_path), "PS1": ""},
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    _check_hook_run(res, hook_projects)


def test_fish_hook_on_the_prompt_event(
    rsbox: Rsbox, hook_projects: dict[str, Path], tmp_path: Path
) -> None:
    need_tools(("fish",), "the fish hook")
    hook = tmp_path / "hook.fish"
    hook.write_text(_ok(rsbox, tmp_path, "hook", "fish"))
    # fish reading a pipe shows no prompt: the script emits the prompt's event itself
    lines = _SCRIPT.format(**{k: str(v) for k, v in hook_projects.items()}).splitlines()
    script = "\n".join(f"emit fish_prompt\n{line}" for line in lines) + "\n"
    res = subprocess.run(["fish", "--no-config", "-C", f"source {hook}"], input=script,
                         cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    _check_hook_run(res, hook_projects)


def test_each_hook_reads_the_store_it_was_printed_for(rsbox: Rsbox, tmp_path: Path) -> None:
    # a store whose path needs quoting in every shell; trust recorded there only
    other = Rsbox(tmp_path / "it's a \\store $x")
    root = _untrusted(tmp_path, '[env]\nbase = "busybox"\n')
    subprocess.run(other.argv("env", "trust"), cwd=root, env=_env(), check=True,
                   capture_output=True)  # fmt: skip
    hooks = {}
    for shell in ("bash", "zsh", "fish", "tcsh"):
        res = subprocess.run(other.argv("hook", shell), env=_env(), capture_output=True, text=True)
        hooks[shell] = tmp_path / f"hook.{shell}"
        hooks[shell].write_text(res.stdout)
    assert res.returncode == 125 and "invalid choice: 'tcsh'" in res.stderr
    bin_ = f"{root}/.rsbox/bin"
    runs = {
        "bash": ["bash", "--norc", "-c", f". {hooks['bash']}; cd {root}; _rsbox_hook; echo $PATH"],
        "zsh": ["zsh", "-f", "-c", f". {hooks['zsh']}; cd {root}; _rsbox_hook; echo $PATH"],
        "fish": ["fish", "--no-config", "-c",
                 f"source {hooks['fish']}; cd {root}; emit fish_prompt; string join : $PATH"],
    }  # fmt: skip
    for shell, argv in runs.items():
        need_tools((shell,), f"the {shell} hook")
        res = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=30)
        assert res.stdout == f"{bin_}:/usr/local/bin:/usr/bin:/bin\n", (shell, res)
    # the suite's own store has no record of it: same hook, other store, PATH unchanged
    theirs = tmp_path / "hook.theirs"
    theirs.write_text(_ok(rsbox, tmp_path, "hook", "bash"))
    res = subprocess.run(["bash", "--norc", "-c", f". {theirs}; cd {root}; _rsbox_hook; echo $PATH"],
                         env=_env(), capture_output=True, text=True, timeout=30)  # fmt: skip
    assert res.stdout == "/usr/local/bin:/usr/bin:/bin\n" and "not trusted" in res.stderr


def test_status_drift_and_auto_rebuild(rsbox: Rsbox, busybox: str, tmp_path: Path) -> None:
    root = _untrusted(
        tmp_path,
        f"""
        [env]
        base = "{busybox}"
        auto_rebuild = true
        [build]
        run = ["echo {os.urandom(4).hex()} > /id", "echo v1 > /version"]
        [run]
        env = {{ MODE = "a" }}
        """,
    )  # the first step is this test's own: no other test's build cache answers it
    trust(str(rsbox.root), str(root / "rsbox.toml"))
    status = _ok(rsbox, root, "env", "status")
    assert _field(status, "image:").endswith("(not built)")
    assert _field(status, "container:").endswith(" absent")
    # auto_rebuild: the first entry builds; the tool's stdout is the tool's alone
    res = _in(rsbox, root, "shell", "cat", "/version")
    assert (res.returncode, res.stdout) == (0, "v1\n"), res
    assert "--> " in res.stderr  # the build's progress went to stderr
    status = _ok(rsbox, root, "env", "status")
    assert _field(status, "trust:") == "trusted" and _field(status, "drift:") == "none"
    assert _container_line(status).endswith(" running\n")
    image = _field(status, "image:")
    toml = root / "rsbox.toml"
    # a [run] edit: drift "run"; the entry recreates the container, keeps the image
    toml.write_text(toml.read_text().replace('"a"', '"b"'))
    trust(str(rsbox.root), str(root / "rsbox.toml"))
    assert _field(_ok(rsbox, root, "env", "status"), "drift:").startswith("run ")
    res = _in(rsbox, root, "shell", "sh", "-c", 'echo "$MODE"')
    assert (res.stdout, _steps_run(res.stderr)) == ("b\n", 0), res
    assert _field(_ok(rsbox, root, "env", "status"), "image:") == image
    # a [build] edit: drift "build"; the entry rebuilds that step alone
    toml.write_text(toml.read_text().replace("echo v1", "echo v2"))
    trust(str(rsbox.root), str(root / "rsbox.toml"))
    assert _field(_ok(rsbox, root, "env", "status"), "drift:").startswith("build (rsbox.toml")
    res = _in(rsbox, root, "shell", "cat", "/version")
    assert (res.stdout, _steps_run(res.stderr)) == ("v2\n", 1), res
    assert _field(_ok(rsbox, root, "env", "status"), "drift:") == "none"
    _ok(rsbox, root, "env", "down")


@pytest.fixture(scope="module")
def debian(rsbox: Rsbox) -> str:
    """The suite's Debian base, imported once per store (test_env.py's fixture names it
    the same, so whichever module runs first imports it)."""
    if rsbox("image", "inspect", "debian-env-base").returncode != 0:
        rsbox(
            "import", str(debian_tarball(ENV_PACKAGES)), "debian-env-base", check=True, timeout=600
        )
    return "debian-env-base"


def test_lock_lists_the_debian_packages_of_the_image(
    rsbox: Rsbox, debian: str, tmp_path: Path
) -> None:
    npm = 'npm = { global = ["is-number@7.0.0"] }'  # npm's registry; the base has npm
    root = _untrusted(tmp_path, f'[env]\nbase = "{debian}"\n[build]\n{npm}\n')
    trust(str(rsbox.root), str(root / "rsbox.toml"))
    _ok(rsbox, root, "env", "build", timeout=600)
    said = _ok(rsbox, root, "env", "lock")
    lock = json.loads((root / "rsbox.lock").read_text())
    dpkg = lock["packages"]["dpkg"]
    assert said == f"{root / 'rsbox.lock'}: {len(dpkg)} dpkg, 1 npm\n"
    assert set(lock["packages"]) == {"dpkg", "npm"}  # no pip, rpm or apk in this image
    assert lock["packages"]["npm"] == {"is-number": "7.0.0"}
    # the same list as dpkg-query's inside, sorted; the base and image ids kept
    inside = _ok(rsbox, root, "shell", "dpkg-query", "-W", "-f", "${Package}=${Version}\\n")
    assert dpkg == sorted(inside.splitlines()) and any(p.startswith("python3=") for p in dpkg)
    assert lock["base"]["ref"] == debian and lock["image"].startswith("sha256:")
    # a no-op rebuild keeps the lists (they still describe the image)
    assert _steps_run(_ok(rsbox, root, "env", "build")) == 0
    assert json.loads((root / "rsbox.lock").read_text())["packages"]["dpkg"] == dpkg
    _ok(rsbox, root, "env", "down")


def test_gc_removes_what_no_project_uses_and_keeps_what_one_does(
    rsbox: Rsbox, busybox: str, tmp_path: Path
) -> None:
    def project(name: str) -> Path:
        steps = f'run = ["echo {name} 1 > /v"]'  # an image of its own
        root = _untrusted(tmp_path, f'[env]\nbase = "{busybox}"\n[build]\n{steps}\n', name)
        trust(str(rsbox.root), str(root / "rsbox.toml"))  # the CLI's own function
        _ok(rsbox, root, "env", "build")
        return root

    def built(root: Path) -> str:
        return str(json.loads((root / "rsbox.lock").read_text())["image"])[:19]

    suffix = os.urandom(3).hex()
    keep, gone = project(f"keep{suffix}"), project(f"gone{suffix}")
    old = built(keep)
    toml = keep / "rsbox.toml"
    toml.write_text(toml.read_text().replace(" 1 > ", " 2 > "))
    trust(str(rsbox.root), str(toml))
    _ok(rsbox, keep, "env", "build")  # the old image is now used by nothing
    new = built(keep)
    gone_image = built(gone)
    for root in (keep, gone):
        _ok(rsbox, root, "env", "up")  # a container and a home each
    subprocess.run(["rm", "-rf", str(gone)], check=True)
    homes = rsbox.root / "env-homes"
    expected = [  # containers, images (by environment), homes, trust and entry records
        f"container rsbox-env-{gone.name} (project gone: {gone})",
        f"image {gone_image} (rsbox-env-{gone.name})",
        f"image {old} (rsbox-env-{keep.name})",
        f"home {homes / gone.name} (project gone: {gone})",
        f"trust of {gone / 'rsbox.toml'} (no such file)",
        f"entry record of {gone} (project gone)",
    ]
    dry = _ok(rsbox, tmp_path, "env", "gc", "--dry-run").splitlines()
    ours = [line for line in dry if suffix in line]
    assert ours == [f"would remove {e}" for e in expected], dry
    assert f"rsbox-env-{gone.name}" in _containers(rsbox, tmp_path)  # dry: nothing went
    done = [line for line in _ok(rsbox, tmp_path, "env", "gc").splitlines() if suffix in line]
    assert done == [f"removed {e}" for e in expected], done
    assert not (homes / gone.name).exists()
    ids = " ".join(_ok(rsbox, tmp_path, "images", "-q", "--no-trunc").split())
    assert old[7:] not in ids and gone_image[7:] not in ids
    # the control: the live project's image, container, home and trust stay
    assert new[7:] in ids
    assert _containers(rsbox, tmp_path).count(f"rsbox-env-{keep.name}") == 1
    assert f"rsbox-env-{gone.name}" not in _containers(rsbox, tmp_path)
    assert (homes / keep.name).is_dir() and is_trusted(str(rsbox.root), str(toml))
    from rootless.env.enter import record_path

    assert os.path.exists(record_path(str(rsbox.root), str(keep)))
    assert not os.path.exists(record_path(str(rsbox.root), str(gone)))
    assert [line for line in _ok(rsbox, tmp_path, "env", "gc").splitlines() if suffix in line] == []
    _ok(rsbox, keep, "env", "down")
