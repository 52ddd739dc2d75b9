from __future__ import annotations

from rootless.idmap import IdMap, MapLine, SubRange, map_lines, parse_subid, proc_map_text


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


def test_keep_id_full_map_puts_you_at_your_own_ids() -> None:
    m = IdMap(1000, 1001, SubRange(100000, 65536), SubRange(200000, 65536), keep_id=True)
    assert (m.inside_uid, m.inside_gid) == (1000, 1001)
    assert m.uid_lines() == (
        MapLine(0, 100000, 1000),
        MapLine(1000, 1000, 1),
        MapLine(1001, 101000, 64535),
    )
    assert m.newgidmap_args() == [
        "0",
        "200000",
        "1001",
        "1001",
        "1001",
        "1",
        "1002",
        "201001",
        "64534",
    ]
    assert all(i in m.mapped_uids() for i in (0, 999, 1000, 1001, 65535))
    assert 65536 not in m.mapped_uids()
    assert m.unmapped_as == (0, 0)


def test_keep_id_single_map_is_u_u_1() -> None:
    m = IdMap(1000, 1001, None, None, keep_id=True)
    assert proc_map_text(m.uid_lines()) == "1000 1000 1\n"
    assert proc_map_text(m.gid_lines()) == "1001 1001 1\n"
    assert 0 not in m.mapped_uids() and 1001 in m.mapped_gids()
    assert m.unmapped_as == (1000, 1001)  # you are the only user there is


def test_default_maps_keep_root_as_the_host_user() -> None:
    single = IdMap(1000, 1000, None, None)
    assert proc_map_text(single.uid_lines()) == "0 1000 1\n" and single.unmapped_as == (0, 0)
    assert (single.inside_uid, single.inside_gid) == (0, 0)


def test_a_host_id_above_the_range_is_mapped_after_it() -> None:
    lines = map_lines(70000, 70000, SubRange(100000, 65536), 65536)
    assert lines == (MapLine(0, 100000, 65535), MapLine(70000, 70000, 1))
