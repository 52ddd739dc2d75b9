"""The json-file log of detached containers, end to end: long lines cut at 16 KiB and
marked partial as Docker marks them, `logs` giving the bytes back, `--log-opt` rotation
read across files. The cost of a flood (the monitor's CPU per MB, the container's
filesystem during a flood) is measured by `python -m tests.bench --only logs`, not here."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.e2e.conftest import Rsbox

PIECE = 16 * 1024
MB40 = 40 * 1024 * 1024


def _detach(rsbox: Rsbox, *args: str) -> str:
    cid = rsbox.run("-d", *args, check=True).stdout.strip()
    assert len(cid) == 64
    return cid


def _log_dir(rsbox: Rsbox, cid: str) -> Path:
    doc = json.loads(rsbox("inspect", cid, check=True).stdout)[0]
    return Path(doc["LogPath"]).parent


def _entries(path: Path) -> list[dict[str, str]]:
    with open(path, "rb") as f:
        return [json.loads(line) for line in f]


def test_a_40mb_line_comes_back_whole_from_16k_partial_entries(rsbox: Rsbox, busybox: str) -> None:
    script = f"busybox head -c {MB40} /dev/zero | busybox tr '\\0' a"
    cid = _detach(rsbox, busybox, "sh", "-c", script)
    assert rsbox("wait", cid, timeout=300, check=True).stdout == "0\n"
    logs = subprocess.run(rsbox.argv("logs", cid), capture_output=True, timeout=300, check=True)
    assert len(logs.stdout) == MB40
    assert logs.stdout.count(b"a") == MB40  # exactly the bytes, concatenated in order
    entries = _entries(_log_dir(rsbox, cid) / "ctr.log")
    assert len(entries) == MB40 // PIECE
    assert all(e["log"] == "a" * PIECE and e["stream"] == "stdout" for e in entries)
    # No newline ever came: every entry is partial (no "\n" at the end of "log").
    assert not any(e["log"].endswith("\n") for e in entries)
    rsbox("rm", cid, check=True)


def test_long_lines_are_cut_and_short_ones_kept_on_both_streams(rsbox: Rsbox, busybox: str) -> None:
    long = 40_000
    script = (
        "echo short; "
        f"busybox head -c {long} /dev/zero | busybox tr '\\0' b; echo; "
        "echo err >&2; printf tail"
    )
    cid = _detach(rsbox, busybox, "sh", "-c", script)
    assert rsbox("wait", cid, check=True).stdout == "0\n"
    out = [(e["stream"], e["log"]) for e in _entries(_log_dir(rsbox, cid) / "ctr.log")]
    stdout = [log for stream, log in out if stream == "stdout"]
    rest = long - 2 * PIECE
    # Docker's pieces: 16 KiB partials, then the end of the line with its newline.
    assert stdout == ["short\n", "b" * PIECE, "b" * PIECE, "b" * rest + "\n", "tail"]
    assert [log for stream, log in out if stream == "stderr"] == ["err\n"]
    res = rsbox("logs", cid, check=True)
    assert res.stdout == "short\n" + "b" * long + "\ntail"
    assert res.stderr == "err\n"
    rsbox("rm", cid, check=True)


def test_rotation_keeps_max_file_files_and_logs_reads_across_them(
    rsbox: Rsbox, busybox: str
) -> None:
    opts = ("--log-opt", "max-size=20k", "--log-opt", "max-file=3")
    cid = _detach(rsbox, *opts, busybox, "busybox", "seq", "1", "30000")
    assert rsbox("wait", cid, check=True).stdout == "0\n"
    d = _log_dir(rsbox, cid)
    names = sorted(p.name for p in d.iterdir() if p.name.startswith("ctr.log"))
    assert names == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    biggest = max(len(json.dumps(e)) + 1 for e in _entries(d / "ctr.log.1"))
    assert all((d / n).stat().st_size < 20_000 + biggest for n in names)
    numbers = [int(n) for n in rsbox("logs", cid, check=True).stdout.split()]
    # The oldest files are gone; what is left is the end, in order, across the files.
    assert numbers[-1] == 30000
    assert numbers == list(range(numbers[0], 30001))
    assert 30000 - numbers[0] > 20_000 // 100  # more than one file's worth
    assert rsbox("logs", "--tail", "3", cid, check=True).stdout == "29998\n29999\n30000\n"
    tail = rsbox("logs", "--tail", str(len(numbers) - 5), cid, check=True).stdout
    assert [int(n) for n in tail.split()] == numbers[5:]
    # `start` runs it again with the same options (the config keeps them).
    rsbox("start", cid, check=True)
    assert rsbox("wait", cid, check=True).stdout == "0\n"
    names = sorted(p.name for p in d.iterdir() if p.name.startswith("ctr.log"))
    assert names == ["ctr.log", "ctr.log.1", "ctr.log.2"]
    assert all((d / n).stat().st_size < 20_000 + biggest for n in names)
    rsbox("rm", cid, check=True)


def test_logs_follow_goes_on_across_rotations(rsbox: Rsbox, busybox: str) -> None:
    go = Path(f"/tmp/rsbox-e2e-logs-go-{os.getpid()}")
    go.mkdir(exist_ok=True)
    # 20 rounds of 100 lines (~6 KiB of log each), rotating every few rounds; each round
    # waits until the follower has printed the one before, so that no file is dropped
    # before it was read.
    script = (
        "i=0; while [ $i -lt 20 ]; do "
        "busybox seq $((i*100+1)) $((i*100+100)); "
        "while [ ! -e /go/$i ]; do sleep 0.02; done; i=$((i+1)); done"
    )
    opts = ("--log-opt", "max-size=10k", "--log-opt", "max-file=2")
    cid = _detach(rsbox, *opts, "-v", f"{go}:/go", busybox, "sh", "-c", script)
    try:
        with subprocess.Popen(
            rsbox.argv("logs", "-f", cid), stdout=subprocess.PIPE, text=True
        ) as follow:
            try:
                assert follow.stdout is not None
                for i in range(20):
                    for n in range(i * 100 + 1, i * 100 + 101):
                        assert follow.stdout.readline() == f"{n}\n"
                    (go / str(i)).write_text("")
                assert follow.wait(timeout=60) == 0
                assert follow.stdout.read() == ""
            finally:
                follow.kill()
        rotated = [p.name for p in _log_dir(rsbox, cid).iterdir() if p.name.startswith("ctr.log.")]
        assert rotated == ["ctr.log.1"]  # it rotated (max-file=2 keeps one rotated file)
    finally:
        for p in go.iterdir():
            p.unlink()
        go.rmdir()
    rsbox("rm", cid, check=True)


def test_bad_log_opts_fail_in_one_line_before_anything_runs(rsbox: Rsbox, busybox: str) -> None:
    for opts, words in [
        (("--log-opt", "max-file=3"), "max-file needs max-size"),
        (("--log-opt", "max-size=lots"), "invalid --log-opt max-size"),
        (("--log-opt", "tag=x"), "unsupported --log-opt 'tag'"),
    ]:
        res = rsbox.run("-d", "--name", "badlog", *opts, busybox, "true")
        assert res.returncode == 125, res.stderr
        assert res.stderr.count("\n") == 1 and words in res.stderr and "hint:" in res.stderr
    assert "badlog" not in rsbox("ps", "-a", check=True).stdout
