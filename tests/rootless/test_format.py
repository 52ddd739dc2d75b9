"""rootless.format and rootless.listing's schemas: Docker's --format, byte for byte.

Each expected text below is copied from Docker's own documentation or test data, with its
source named; the rows are given the values that example shows. Examples printed by
Docker versions before 20.10 (20-wide columns, `16.43 MB` with a space) are not used:
the current CLI prints neither, and rsbox follows the current CLI.
"""

from __future__ import annotations

from typing import Any

import pytest

from rootless.errors import UsageError
from rootless.format import (
    OutputFormat,
    Row,
    Schema,
    bytes_size,
    ellipsis,
    human_duration,
    human_size,
    tabwrite,
)
from rootless.gotemplate import FieldNotFound
from rootless.listing import CONTAINER, DISK_USAGE, IMAGE, STATS


def rows(schema: Schema, *docs: dict[str, Any]) -> list[Row]:
    out = []
    for doc in docs:
        values: dict[str, Any] = dict.fromkeys(schema.headers, "")
        values.update(doc)
        if schema is CONTAINER:
            values.setdefault("Label", lambda _k: "")
        out.append(Row(schema, values))
    return out


def render(fmt: str, schema: Schema, *docs: dict[str, Any]) -> str:
    return OutputFormat.parse(fmt, schema).render(rows(schema, *docs), schema)


def test_go_units() -> None:
    """docker/go-units size.go and duration.go (vendored in docker/cli)."""
    assert human_size(16.43e6) == "16.43MB"
    assert human_size(212) == "212B" and human_size(0) == "0B"
    assert human_size(2_498_000_000) == "2.498GB" and human_size(999_999) == "1000kB"
    assert human_size(72_900_000, 3) == "72.9MB" and human_size(539_000, 3) == "539kB"
    assert bytes_size(5.629 * 1024 * 1024) == "5.629MiB" and bytes_size(196 * 1024) == "196KiB"
    assert bytes_size(0) == "0B"
    assert [human_duration(s) for s in (0.5, 1, 59, 60, 119, 3599, 3600, 5400)] == [
        "Less than a second",
        "1 second",
        "59 seconds",
        "About a minute",
        "About a minute",
        "59 minutes",
        "About an hour",
        "2 hours",
    ]
    day = 86400
    assert human_duration(5 * day) == "5 days" and human_duration(20 * day) == "2 weeks"
    assert human_duration(100 * day) == "3 months" and human_duration(800 * day) == "2 years"
    assert ellipsis("busybox httpd -f -p 80", 20) == "busybox httpd -f -p…"


def test_tabwriter_as_docker_sets_it_up() -> None:
    """Go's text/tabwriter with minwidth 10, padding 3 (docker/cli formatter.go)."""
    assert tabwrite("A\tB\nlonger cell\tx\n") == "A             B\nlonger cell   x\n"
    assert tabwrite("no tabs\nat all\n") == "no tabs\nat all\n"
    # a column block ends at a line without that column
    assert tabwrite("a\tb\tc\nxx\n1\t2\n") == "a         b         c\nxx\n1         2\n"


def test_container_table_is_dockers_golden() -> None:
    """docker/cli cli/command/container/testdata/container-list-without-format.golden
    (the default `ps` table, trailing padding included)."""
    base = {
        "ID": "container_id",
        "Image": "busybox:latest",
        "Command": '"top"',
        "RunningFor": "About a minute ago",
        "Status": "Up 1 minute",
    }
    docs = [
        {**base, "Names": "c1"},
        {**base, "Names": "c2"},
        {**base, "Ports": "80-82/tcp", "Names": "c3"},
        {**base, "Ports": "81/udp", "Names": "c4"},
        {**base, "Ports": "8.8.8.8:82->82/tcp", "Names": "c5"},
    ]
    expected = (
        "CONTAINER ID   IMAGE            COMMAND   CREATED              STATUS        PORTS                NAMES\n"
        'container_id   busybox:latest   "top"     About a minute ago   Up 1 minute                        c1\n'
        'container_id   busybox:latest   "top"     About a minute ago   Up 1 minute                        c2\n'
        'container_id   busybox:latest   "top"     About a minute ago   Up 1 minute   80-82/tcp            c3\n'
        'container_id   busybox:latest   "top"     About a minute ago   Up 1 minute   81/udp               c4\n'
        'container_id   busybox:latest   "top"     About a minute ago   Up 1 minute   8.8.8.8:82->82/tcp   c5\n'
    )
    assert render("table", CONTAINER, *docs) == expected


def test_ps_json_is_dockers_documented_line() -> None:
    """docs/reference/commandline/container_ls.md, "docker ps --format json"."""
    doc = {
        "Command": '"/docker-entrypoint.…"',
        "CreatedAt": "2021-03-10 00:15:05 +0100 CET",
        "ID": "a762a2b37a1d",
        "Image": "nginx",
        "Labels": "maintainer=NGINX Docker Maintainers <docker-maint@nginx.com>",
        "LocalVolumes": "0",
        "Mounts": "",
        "Names": "boring_keldysh",
        "Networks": "bridge",
        "Ports": "80/tcp",
        "RunningFor": "4 seconds ago",
        "Size": "0B",
        "State": "running",
        "Status": "Up 3 seconds",
    }
    expected = (
        '{"Command":"\\"/docker-entrypoint.…\\"","CreatedAt":"2021-03-10 00:15:05 +0100 CET",'
        '"ID":"a762a2b37a1d","Image":"nginx","Labels":"maintainer=NGINX Docker Maintainers '
        '\\u003cdocker-maint@nginx.com\\u003e","LocalVolumes":"0","Mounts":"","Names":"boring_keldysh",'
        '"Networks":"bridge","Ports":"80/tcp","RunningFor":"4 seconds ago","Size":"0B",'
        '"State":"running","Status":"Up 3 seconds"}\n'
    )
    assert render("{{json .}}", CONTAINER, doc) == expected


def test_ps_table_with_join_is_dockers_documented_table() -> None:
    """container_ls.md, `docker ps --format "table {{.ID}}\\t{{join .IPAddresses ", "}}"`
    (a field rsbox's rows do not have: the engine and the table, with Docker's header)."""
    schema = Schema(
        "container",
        {"ID": "CONTAINER ID", "IPAddresses": "IP ADDRESSES"},
        ("ID", "IPAddresses"),
        "",
    )
    data = [
        Row(schema, {"ID": "c0cf2877da71", "IPAddresses": ["bridge/172.17.0.3"]}),
        Row(
            schema,
            {"ID": "17e7d1910fc0", "IPAddresses": ["bridge/172.17.0.2", "mynetwork/172.19.0.2"]},
        ),
    ]
    fmt = OutputFormat.parse('table {{.ID}}\\t{{join .IPAddresses ", "}}', schema)
    assert fmt.render(data, schema) == (
        "CONTAINER ID   IP ADDRESSES\n"
        "c0cf2877da71   bridge/172.17.0.3\n"
        "17e7d1910fc0   bridge/172.17.0.2, mynetwork/172.19.0.2\n"
    )


def test_images_examples() -> None:
    """docs/reference/commandline/image_ls.md: `--format "{{.ID}}: {{.Repository}}"` and
    `--format json`."""
    listed = [("77af4d6b9913", "<none>"), ("b6fa739cedf5", "committ"), ("78a85c484f71", "<none>")]
    text = render(
        "{{.ID}}: {{.Repository}}", IMAGE, *({"ID": i, "Repository": r} for i, r in listed)
    )
    assert text == "77af4d6b9913: <none>\nb6fa739cedf5: committ\n78a85c484f71: <none>\n"
    docs = [
        {
            "Containers": "N/A",
            "CreatedAt": "2021-03-04 03:24:42 +0100 CET",
            "CreatedSince": "5 days ago",
            "Digest": "<none>",
            "ID": "4dd97cefde62",
            "Repository": "ubuntu",
            "SharedSize": "N/A",
            "Size": "72.9MB",
            "Tag": "latest",
            "UniqueSize": "N/A",
        },
        {
            "Containers": "N/A",
            "CreatedAt": "2021-02-17 22:19:54 +0100 CET",
            "CreatedSince": "2 weeks ago",
            "Digest": "<none>",
            "ID": "28f6e2705743",
            "Repository": "alpine",
            "SharedSize": "N/A",
            "Size": "5.61MB",
            "Tag": "latest",
            "UniqueSize": "N/A",
        },
    ]
    assert render("json", IMAGE, *docs) == (
        '{"Containers":"N/A","CreatedAt":"2021-03-04 03:24:42 +0100 CET","CreatedSince":"5 days ago","Digest":"\\u003cnone\\u003e","ID":"4dd97cefde62","Repository":"ubuntu","SharedSize":"N/A","Size":"72.9MB","Tag":"latest","UniqueSize":"N/A"}\n'
        '{"Containers":"N/A","CreatedAt":"2021-02-17 22:19:54 +0100 CET","CreatedSince":"2 weeks ago","Digest":"\\u003cnone\\u003e","ID":"28f6e2705743","Repository":"alpine","SharedSize":"N/A","Size":"5.61MB","Tag":"latest","UniqueSize":"N/A"}\n'
    )


def test_system_df_examples() -> None:
    """docs/reference/commandline/system_df.md (`--format "{{.Type}}: {{.TotalCount}}"`,
    `--format json`) and docker/cli's
    cli/command/formatter/testdata/disk-usage-context-write-custom.golden."""
    counts = [("Images", "2"), ("Containers", "4"), ("Local Volumes", "1")]
    text = render(
        "{{.Type}}: {{.TotalCount}}", DISK_USAGE, *({"Type": t, "TotalCount": n} for t, n in counts)
    )
    assert text == "Images: 2\nContainers: 4\nLocal Volumes: 1\n"
    lines = [
        ("2", "2.498GB (94%)", "2.631GB", "6", "Images"),
        ("1", "1.114kB (49%)", "2.23kB", "7", "Containers"),
        ("0", "256.5MB (100%)", "256.5MB", "1", "Local Volumes"),
        ("0", "158B", "158B", "17", "Build Cache"),
    ]
    docs = [
        dict(zip(("Active", "Reclaimable", "Size", "TotalCount", "Type"), line, strict=True))
        for line in lines
    ]
    assert render("json", DISK_USAGE, *docs) == (
        '{"Active":"2","Reclaimable":"2.498GB (94%)","Size":"2.631GB","TotalCount":"6","Type":"Images"}\n'
        '{"Active":"1","Reclaimable":"1.114kB (49%)","Size":"2.23kB","TotalCount":"7","Type":"Containers"}\n'
        '{"Active":"0","Reclaimable":"256.5MB (100%)","Size":"256.5MB","TotalCount":"1","Type":"Local Volumes"}\n'
        '{"Active":"0","Reclaimable":"158B","Size":"158B","TotalCount":"17","Type":"Build Cache"}\n'
    )
    kinds = ("Images", "Containers", "Local Volumes", "Build Cache")
    custom = render(
        "table {{.Type}}\\t{{.Active}}", DISK_USAGE, *({"Type": k, "Active": "0"} for k in kinds)
    )
    assert custom == (
        "TYPE            ACTIVE\nImages          0\nContainers      0\n"
        "Local Volumes   0\nBuild Cache     0\n"
    )


def test_stats_examples() -> None:
    """docs/reference/commandline/container_stats.md: `--format "{{ json . }}"` and
    `--format "{{.Container}}: {{.CPUPerc}}"`."""
    doc = {
        "BlockIO": "0B / 13.3kB",
        "CPUPerc": "0.03%",
        "Container": "nginx",
        "ID": "ed37317fbf42",
        "MemPerc": "0.24%",
        "MemUsage": "2.352MiB / 982.5MiB",
        "Name": "nginx",
        "NetIO": "539kB / 606kB",
        "PIDs": "2",
    }
    assert render("{{ json . }}", STATS, doc) == (
        '{"BlockIO":"0B / 13.3kB","CPUPerc":"0.03%","Container":"nginx","ID":"ed37317fbf42",'
        '"MemPerc":"0.24%","MemUsage":"2.352MiB / 982.5MiB","Name":"nginx","NetIO":"539kB / 606kB",'
        '"PIDs":"2"}\n'
    )
    listed = [("09d3bb5b1604", "6.61%"), ("9db7aa4d986d", "9.19%"), ("3f214c61ad1d", "0.00%")]
    text = render(
        "{{.Container}}: {{.CPUPerc}}", STATS, *({"Container": c, "CPUPerc": p} for c, p in listed)
    )
    assert text == "09d3bb5b1604: 6.61%\n9db7aa4d986d: 9.19%\n3f214c61ad1d: 0.00%\n"


def test_headers_and_empty_tables() -> None:
    assert render("table {{.ID}}\\t{{.Names}}", CONTAINER) == "CONTAINER ID   NAMES\n"
    assert render("{{.ID}}", CONTAINER) == ""
    assert render('table {{.ID}}\\t{{.Label "com.example.some-key"}}', CONTAINER) == (
        "CONTAINER ID   some key\n"
    )
    # `table` + spaces, \\t and \\n as typed in a shell (formatter.go templateString)
    assert render("table   {{.ID}}\\n  ", CONTAINER, {"ID": "x"}) == "CONTAINER ID\n\nx\n\n"


def test_bad_formats_are_one_line_errors() -> None:
    with pytest.raises(FieldNotFound) as info:
        render("{{.Nope}}", CONTAINER)  # even without rows
    assert 'no field "Nope" in a container row' in info.value.line()
    with pytest.raises(UsageError) as bad:
        OutputFormat.parse("yaml", CONTAINER)
    assert "unknown --format 'yaml'" in bad.value.line()
    with pytest.raises(UsageError):
        OutputFormat.parse("{{.ID", CONTAINER)


def test_json_means_the_legacy_array_only_where_asked() -> None:
    assert OutputFormat.parse("json", CONTAINER, legacy_json=True).legacy_json
    assert not OutputFormat.parse("json", STATS).legacy_json
