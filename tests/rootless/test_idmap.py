from __future__ import annotations

from rootless.idmap import IdMap, SubRange, parse_subid


def test_parse_subid_by_name_or_uid() -> None:
    text = "alice:100000:65536\n1001:200000:1000\nbad line\n"
    assert parse_subid(text, "alice", 1000) == SubRange(100000, 65536)
    assert parse_subid(text, "bob", 1001) == SubRange(200000, 1000)
    assert parse_subid(text, "carol", 1002) is None


def test_full_map_covers_0_to_65535() -> None:
    m = IdMap(1000, 1000, SubRange(100000, 65536), SubRange(100000, 65536))
    assert m.full and m.size == 65536
    assert m.newuidmap_args() == ["0", "1000", "1", "1", "100000", "65535"]


def test_small_range_limits_the_map() -> None:
    m = IdMap(1000, 1000, SubRange(100000, 100), SubRange(5, 1000))
    assert m.size == 101


def test_single_map() -> None:
    m = IdMap(1000, 1000, None, None)
    assert not m.full and m.size == 1
