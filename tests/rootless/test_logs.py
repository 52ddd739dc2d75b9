"""The json-file log of a detached container, without a container: the splitter and the
encoder of the monitor (rootless.launch.supervise), the file side (rootless.lifecycle:
--log-opt, rotation, reading the tail across rotated files)."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from rootless.errors import UsageError
from rootless.launch.supervise import (
    LOG_PIECE,
    JsonFileEncoder,
    LineSplitter,
    LogFile,
    json_string,
)
from rootless.lifecycle import LogOptions, rotate_log, rotated_logs, tail_ranges
from rootless.runspec import RunSpec

NOW = b"2024-01-02T03:04:05.000006Z"


def _split(data: bytes, chunk: int) -> list[bytes]:
    splitter = LineSplitter()
    pieces = []
    for i in range(0, len(data), chunk):
        pieces += splitter.feed(data[i : i + chunk])
    if rest := splitter.end():
        pieces.append(rest)
    return pieces


# --- the splitter ------------------------------------------------------------------------


def test_short_lines_are_one_message_each_with_their_newline() -> None:
    assert _split(b"a\n\nbc\nlast", 65536) == [b"a\n", b"\n", b"bc\n", b"last"]


def test_a_line_up_to_16k_with_its_newline_stays_whole() -> None:
    line = b"x" * (LOG_PIECE - 1) + b"\n"
    assert _split(line * 2, 65536) == [line, line]


def test_a_16k_line_is_cut_as_docker_cuts_it() -> None:
    # Docker's 16 KiB buffer fills before the newline comes: a partial, then "\n" alone.
    assert _split(b"x" * LOG_PIECE + b"\n", 65536) == [b"x" * LOG_PIECE, b"\n"]


def test_a_flood_without_newlines_comes_out_in_16k_pieces() -> None:
    data = b"a" * (5 * LOG_PIECE + 123)
    pieces = _split(data, 65536)
    assert [len(p) for p in pieces] == [LOG_PIECE] * 5 + [123]
    assert b"".join(pieces) == data


@pytest.mark.parametrize("chunk", [1, 7, 4096, 16384, 65536, 1 << 20])
def test_the_pieces_do_not_depend_on_how_the_reads_fell(chunk: int) -> None:
    rng = random.Random(chunk)
    parts = []
    for _ in range(200):
        parts.append(b"y" * rng.choice([0, 1, 100, LOG_PIECE - 1, LOG_PIECE, 40000]))
        parts.append(b"\n" if rng.random() < 0.7 else b"")
    data = b"".join(parts)
    pieces = _split(data, chunk)
    assert pieces == _split(data, len(data) or 1)
    assert b"".join(pieces) == data
    assert all(len(p.rstrip(b"\n")) <= LOG_PIECE for p in pieces)
    assert all(p.endswith(b"\n") or len(p) == LOG_PIECE for p in pieces[:-1])


def test_what_is_held_back_stays_under_16k_whatever_is_fed() -> None:
    splitter = LineSplitter()
    fed = out = 0
    for _ in range(100):  # 6.4 MB without a newline, 64 KiB per read
        fed += 65536
        out += sum(len(p) for p in splitter.feed(b"z" * 65536))
        assert fed - out < LOG_PIECE


def test_a_cut_never_splits_a_utf8_character() -> None:
    text = ("é" * 10 + "€" * 10 + "🙂" * 10) * 2000  # 2, 3 and 4 byte characters
    pieces = _split(text.encode(), 65536)
    assert len(pieces) > 5
    assert all(len(p) <= LOG_PIECE for p in pieces)
    assert "".join(p.decode() for p in pieces) == text  # every piece decodes on its own


def test_bytes_that_are_not_utf8_are_cut_at_16k() -> None:
    data = b"\x80" * (LOG_PIECE + 10)
    assert [len(p) for p in _split(data, 65536)] == [LOG_PIECE, 10]


# --- the encoder -------------------------------------------------------------------------


def test_entries_have_docker_json_file_fields_and_partials_lack_the_newline() -> None:
    enc = JsonFileEncoder("stderr")
    entries = enc.encode([b"a" * LOG_PIECE, b"b\n", b'"quoted" \xff\n'], NOW)
    docs = [json.loads(e) for e in entries]
    assert all(e.endswith(b"}\n") and e.count(b"\n") == 1 for e in entries)
    assert [set(d) for d in docs] == [{"log", "stream", "time"}] * 3
    assert docs[0]["log"] == "a" * LOG_PIECE  # partial: no "\n"
    assert docs[1]["log"] == "b\n"
    assert docs[2]["log"] == '"quoted" \ufffd\n'
    assert {d["stream"] for d in docs} == {"stderr"}
    assert docs[0]["time"] == "2024-01-02T03:04:05.000006Z"


@pytest.mark.parametrize(
    "piece",
    [
        b"",
        b"\n",
        b"plain text\n",
        b"a" * LOG_PIECE,
        b'"q"\\',
        b"tab\there\n",
        b"\x7f\x00\x1f",
        "é€🙂\n".encode(),
        b"\xff\xfe broken",
        b"two\n\n",
    ],
)
def test_json_string_is_json_dumps_of_the_text(piece: bytes) -> None:
    assert json_string(piece) == json.dumps(piece.decode(errors="replace")).encode()


def test_json_string_of_any_bytes_is_json_dumps_of_the_text() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        piece = bytes(
            rng.choice(b'ab "\\\n\t\x00\x7f\x80\xc3\xa9') for _ in range(rng.randrange(8))
        )
        assert json_string(piece) == json.dumps(piece.decode(errors="replace")).encode()


def test_every_piece_of_a_cut_line_has_the_time_of_the_first() -> None:
    enc = JsonFileEncoder("stdout")
    first = enc.encode([b"a" * LOG_PIECE], b"T1")
    rest = enc.encode([b"a\n", b"next\n"], b"T2")
    times = [json.loads(e)["time"] for e in first + rest]
    assert times == ["T1", "T1", "T2"]


# --- --log-opt ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ((), LogOptions(None, 1)),
        (("max-size=10m",), LogOptions(10_000_000, 1)),
        (("max-size=10m", "max-file=3"), LogOptions(10_000_000, 3)),
        (("max-size=1k",), LogOptions(1000, 1)),
        (("max-size=1.5k",), LogOptions(1500, 1)),
        (("max-size=2MB",), LogOptions(2_000_000, 1)),
        (("max-size=1g",), LogOptions(1_000_000_000, 1)),
        (("max-size=123",), LogOptions(123, 1)),
        (("max-size=1k", "max-size=2k"), LogOptions(2000, 1)),  # the last wins
        (("max-size=0.5k",), LogOptions(500, 1)),
        (("max-size=" + "9" * 40 + "p",), LogOptions(int("9" * 40) * 1000**5, 1)),
    ],
)
def test_log_opts_take_dockers_names_and_units(opts: tuple[str, ...], expected: LogOptions) -> None:
    assert LogOptions.parse(opts) == expected


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (("max-file=3",), "max-file needs max-size"),
        (("max-size=0",), "invalid --log-opt max-size"),
        (("max-size=0.0001k",), "invalid --log-opt max-size"),
        (("max-size=1e9",), "invalid --log-opt max-size"),
        (("max-size=ten",), "invalid --log-opt max-size"),
        (("max-size=-1m",), "invalid --log-opt max-size"),
        (("max-size=10m", "max-file=0"), "invalid --log-opt max-file"),
        (("max-size=10m", "max-file=x"), "invalid --log-opt max-file"),
        (("compress=true",), "unsupported --log-opt 'compress'"),
        (("max-size",), "invalid --log-opt 'max-size'"),
    ],
)
def test_bad_log_opts_are_one_line_with_a_hint(opts: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        RunSpec("img", log_opts=opts).validate()
    assert info.value.hint
    assert "\n" not in info.value.line()


def test_log_opts_survive_the_config_for_start() -> None:
    spec = RunSpec("img", detach=True, log_opts=("max-size=1k", "max-file=2"))
    again = RunSpec.from_json(json.loads(json.dumps(spec.to_json())))
    assert again.log_opts == spec.log_opts
    assert again.log_options() == LogOptions(1000, 2)


# --- rotation ----------------------------------------------------------------------------


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_rotation_shifts_files_up_and_drops_the_oldest(tmp_path: Path) -> None:
    log = tmp_path / "ctr.log"
    for name, text in [("ctr.log", "live"), ("ctr.log.1", "one"), ("ctr.log.2", "two")]:
        (tmp_path / name).write_text(text)
    rotate_log(log, 3)
    assert _names(tmp_path) == ["ctr.log.1", "ctr.log.2"]
    assert [p.read_text() for p in rotated_logs(tmp_path)] == ["one", "live"]  # oldest first


def test_rotation_with_one_file_keeps_nothing(tmp_path: Path) -> None:
    (tmp_path / "ctr.log").write_text("live")
    rotate_log(tmp_path / "ctr.log", 1)
    assert _names(tmp_path) == ["ctr.log"]  # LogFile truncates it


def _entries(n: int) -> list[bytes]:
    return JsonFileEncoder("stdout").encode([f"{i}\n".encode() for i in range(n)], NOW)


def _logged(d: Path) -> bytes:
    return b"".join(p.read_bytes() for p in [*rotated_logs(d), d / "ctr.log"])


@pytest.mark.parametrize("max_file", [1, 2, 3])
def test_log_file_rotates_at_max_size_and_keeps_max_file_files(
    tmp_path: Path, max_file: int
) -> None:
    path = tmp_path / "ctr.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    log = LogFile(fd, path, LogOptions(1000, max_file))
    entries = _entries(500)
    for i in range(0, 500, 7):  # as reads bring them
        log.write(entries[i : i + 7])
    os.close(log.fd)
    assert len(_names(tmp_path)) == max_file
    biggest = max(len(e) for e in entries)
    assert all(p.stat().st_size < 1000 + biggest for p in tmp_path.iterdir())
    assert b"".join(entries).endswith(_logged(tmp_path))  # what is kept is the end, in order
    assert len(_logged(tmp_path)) >= (max_file - 1) * 1000


def test_log_file_counts_what_an_earlier_run_wrote(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    path.write_bytes(b"x" * 999 + b"\n")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    log = LogFile(fd, path, LogOptions(1000, 2))
    log.write(_entries(1))
    os.close(log.fd)
    assert _names(tmp_path) == ["ctr.log", "ctr.log.1"]


def test_log_file_never_rotates_without_max_size(tmp_path: Path) -> None:
    path = tmp_path / "ctr.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    LogFile(fd, path, LogOptions()).write(_entries(2000))
    os.close(fd)
    assert _names(tmp_path) == ["ctr.log"]


# --- reading the tail --------------------------------------------------------------------


@pytest.fixture()
def three_files(tmp_path: Path) -> Iterator[list[tuple[int, int]]]:
    contents = [b"1\n2\n3\n", b"4\n5\n", b"6\n7\nhalf-writ"]
    files = []
    for i, data in enumerate(contents):
        (tmp_path / str(i)).write_bytes(data)
        fd = os.open(tmp_path / str(i), os.O_RDONLY)
        files.append((fd, len(data)))
    yield files
    for fd, _ in files:
        os.close(fd)


def _read(files: list[tuple[int, int]], ranges: list[tuple[int, int]]) -> bytes:
    return b"".join(
        os.pread(fd, stop - start, start)
        for (fd, _), (start, stop) in zip(files, ranges, strict=True)
    )


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (None, b"1\n2\n3\n4\n5\n6\n7\n"),
        (0, b""),
        (1, b"7\n"),
        (2, b"6\n7\n"),
        (3, b"5\n6\n7\n"),
        (5, b"3\n4\n5\n6\n7\n"),
        (100, b"1\n2\n3\n4\n5\n6\n7\n"),
    ],
)
def test_tail_reads_across_rotated_files_and_leaves_out_a_half_written_entry(
    three_files: list[tuple[int, int]], count: int | None, expected: bytes
) -> None:
    ranges = tail_ranges(three_files, count)
    assert _read(three_files, ranges) == expected
    assert ranges[-1][1] == 4  # where `logs -f` goes on: after "7\n"


def test_tail_of_a_long_file_reads_backwards_in_blocks(tmp_path: Path) -> None:
    data = b"".join(f"{i}\n".encode() for i in range(100_000))
    (tmp_path / "big").write_bytes(data)
    fd = os.open(tmp_path / "big", os.O_RDONLY)
    try:
        ranges = tail_ranges([(fd, len(data))], 3)
        assert _read([(fd, len(data))], ranges) == b"99997\n99998\n99999\n"
    finally:
        os.close(fd)
