"""The default seccomp profile, enforced inside a real container (not just compiled)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import policies
from tests.e2e.conftest import IN_CI, Rsbox
from tests.policies.probe_build import ALLOWED, CALLS, DANGEROUS, parse_output
from tests.policies.reference import ALLOWED as GOES_TO_KERNEL
from tests.policies.reference import verdict
from tests.shared import DOCKER_SECCOMP

PODMAN_SECCOMP = Path("/usr/share/containers/seccomp.json")


def _verdicts(rsbox: Rsbox, image: str, probe_dir: Path, *opts: str) -> dict[str, int]:
    res = rsbox.run(
        "--rm",
        "-v",
        f"{probe_dir}:/probe:ro",
        *opts,
        image,
        "/probe/seccomp-probe",
        *DANGEROUS,
        *ALLOWED,
    )
    assert res.returncode == 0, res.stderr
    pairs = (line.split() for line in res.stdout.splitlines())
    return {name: int(err) for name, err in pairs}


def test_default_profile_refuses_every_dangerous_call(
    rsbox: Rsbox, busybox: str, probe_dir: Path, userns: str
) -> None:
    got = _verdicts(rsbox, busybox, probe_dir, "--userns", userns)
    refused = {errno.EPERM} | {errno.ENOSYS}  # clone3: ENOSYS so that glibc falls back
    assert {n: got[n] for n in DANGEROUS if got[n] not in refused} == {}
    assert got["clone3"] == errno.ENOSYS
    assert {n: got[n] for n in ("getpid", "open_devnull", "fork", "pthread") if got[n] != 0} == {}


def test_unconfined_shows_the_probes_can_succeed(
    rsbox: Rsbox, busybox: str, probe_dir: Path
) -> None:
    got = _verdicts(rsbox, busybox, probe_dir, "--security-opt", "seccomp=unconfined")
    # The kernel itself allows these to root in the container's user namespace, so a
    # refusal under `default` above is seccomp's doing.
    assert got["unshare_user"] == 0
    assert got["mount"] not in (0, errno.EPERM)  # the probe mounts on an absent path
    assert got["keyctl"] != errno.EPERM
    assert got["ioctl_tiocsti"] != errno.EPERM
    assert got["clone3"] != errno.ENOSYS


def test_security_opt_accepts_a_profile_file(
    rsbox: Rsbox, busybox: str, probe_dir: Path, tmp_path: Path
) -> None:
    own = tmp_path / "deny-keyctl.json"
    own.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
            }
        )
    )
    got = _verdicts(rsbox, busybox, probe_dir, "--security-opt", f"seccomp={own}")
    assert got["keyctl"] == errno.EACCES and got["add_key"] != errno.EPERM
    # Podman's profile (Debian's containers-common): it denies kexec_load, allows getpid.
    got = _verdicts(
        rsbox, busybox, probe_dir, "--security-opt", "seccomp=/usr/share/containers/seccomp.json"
    )
    assert got["kexec_load"] == errno.EPERM and got["getpid"] == 0


def test_unknown_profile_is_a_clear_error(rsbox: Rsbox, busybox: str) -> None:
    res = rsbox.run("--rm", "--security-opt", "seccomp=/no/such.json", busybox, "true")
    assert res.returncode == 125 and res.stderr.startswith("rsbox: error: ")


@pytest.mark.parametrize(("policy", "works"), [("default", False), ("unconfined", True)])
def test_tmpfs_mount_is_seccomps_decision(
    rsbox: Rsbox, busybox: str, policy: str, works: bool
) -> None:
    res = rsbox.run(
        "--rm",
        "--cap-add",
        "SYS_ADMIN",  # the kernel's own condition, so that the filter decides alone
        "--security-opt",
        f"seccomp={policy}",
        busybox,
        "sh",
        "-c",
        "mkdir -p /mnt/t && /bin/busybox mount -t tmpfs none /mnt/t && echo mounted",
    )
    if works:
        assert res.stdout == "mounted\n", res.stderr
    else:
        assert (
            res.returncode != 0 and "permission denied" in res.stderr
        )  # EPERM, as busybox says it


def _probe_all(rsbox: Rsbox, image: str, probe_dir: Path, policy: str) -> dict[str, int]:
    res = rsbox.run(
        "--rm",
        "-v",
        f"{probe_dir}:/probe:ro",
        "--security-opt",
        f"seccomp={policy}",
        image,
        "/probe/seccomp-probe",
        *CALLS,
    )
    assert res.returncode == 0, res.stderr
    return parse_output(res.stdout)


@pytest.fixture(scope="module")
def kernel_says(rsbox: Rsbox, busybox: str, probe_dir: Path) -> dict[str, int]:
    """What each probe gets with no filter at all: the kernel's own answer in a container."""
    return _probe_all(rsbox, busybox, probe_dir, "unconfined")


@pytest.mark.parametrize("which", ["docker", "podman", "default", "strict", "fakeroot"])
def test_compiled_filter_matches_the_profiles_meaning(
    rsbox: Rsbox, busybox: str, probe_dir: Path, kernel_says: dict[str, int], which: str
) -> None:
    """For every probe: a syscall the profile allows gets the kernel's own answer (as
    unconfined), one it denies gets the profile's errno, inside a real container."""
    path = {"docker": DOCKER_SECCOMP, "podman": PODMAN_SECCOMP}.get(which)
    if path is not None and not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing (RSBOX_SHARED, containers-common)")
        pytest.skip(f"{path} is missing")
    profile = policies.load_file(path) if path else policies.load_builtin(which)
    host = policies.Host.current()
    expected = {}
    for probe, (name, args) in CALLS.items():
        v = verdict(profile, name, args, host)
        expected[probe] = kernel_says[probe] if v == GOES_TO_KERNEL else v
    got = _probe_all(rsbox, busybox, probe_dir, str(path) if path else which)
    assert len(CALLS) >= 40
    assert {p: (got[p], expected[p]) for p in CALLS if got[p] != expected[p]} == {}
    # Not a vacuous comparison: each profile allows some probes and denies others.
    denied = [p for p in CALLS if expected[p] != kernel_says[p]]
    assert len(denied) >= 10 and len(CALLS) - len(denied) >= 10


@pytest.mark.parametrize(("policy", "works"), [("default", False), ("fakeroot", True)])
def test_fakeroot_lets_package_managers_chown_under_a_single_id_map(
    rsbox: Rsbox, busybox: str, policy: str, works: bool
) -> None:
    # With one id mapped, uid 1000 does not exist in the container: chown fails (EINVAL)
    # and mknod of a device fails (EPERM), as dpkg and rpm would see them, unless
    # `fakeroot`: the device mknod becomes a success that changes nothing, and the chown is
    # kept as the file's true owner (rootless/launch/fakeroot.py; tests/e2e/test_fakeroot).
    res = rsbox.run(
        "--rm",
        "--userns",
        "single",
        "--security-opt",
        f"seccomp={policy}",
        busybox,
        "sh",
        "-c",
        "touch /tmp/f && chown 1000:1000 /tmp/f && mknod /tmp/null c 1 3 && mkfifo /tmp/p"
        " && stat -c '%u %F' /tmp/f /tmp/p && ls /tmp",
    )
    if works:
        assert res.returncode == 0, res.stderr
        assert res.stdout == "1000 regular empty file\n0 fifo\nf\np\n"
    else:
        assert res.returncode != 0 and "chown" in res.stderr
