"""rootless.gotemplate: Go's text/template, the part `--format` needs, pure."""

from __future__ import annotations

from typing import Any

import pytest

from rootless.errors import UsageError
from rootless.gotemplate import (
    HEADER_FUNCTIONS,
    FieldNotFound,
    Template,
    TemplateError,
    go_json,
    go_text,
)


def run(src: str, data: Any = None) -> str:
    return Template.parse(src).execute(data)


class Rec:
    """A row with fields, as rootless.format.Row is (the Fields protocol)."""

    kind = "thing"

    def __init__(self, **values: Any) -> None:
        self.values = values

    def field(self, name: str) -> Any:
        if name not in self.values:
            raise FieldNotFound(f'no field "{name}" in a thing row')
        return self.values[name]

    def names(self) -> list[str]:
        return sorted(self.values)

    def json_doc(self) -> dict[str, Any]:
        return {k: v for k, v in self.values.items() if not callable(v)}


def test_text_fields_and_nested_fields() -> None:
    doc = {"State": {"Status": "running", "Pid": 42, "Running": True}, "Name": "web"}
    assert run("{{.Name}}: {{.State.Status}} {{.State.Pid}} {{.State.Running}}", doc) == (
        "web: running 42 true"
    )
    assert run("plain text", doc) == "plain text"
    assert run("{{.}}", "x") == "x"


def test_go_prints_values_as_fmt_v_does() -> None:
    assert go_text(None) == "<no value>"
    assert go_text([1, "a"]) == "[1 a]"
    assert go_text({"b": 1, "a": [2]}) == "map[a:[2] b:1]"
    assert go_text(1.5) == "1.5" and go_text(3.0) == "3" and go_text(False) == "false"


def test_trim_markers_and_comments() -> None:
    assert run("a  {{- .X -}}  b", {"X": 1}) == "a1b"
    assert run("a {{/* hidden */}}b") == "a b"
    assert run("a  {{- /* hidden */ -}}\n  b") == "ab"
    assert run("{{.X}} -}}", {"X": 1}) == "1 -}}"  # text, not a marker


def test_if_else_if_with_and_comparisons() -> None:
    t = '{{if eq .S "running"}}up{{else if eq .S "exited"}}down{{else}}?{{end}}'
    assert [run(t, {"S": s}) for s in ("running", "exited", "created")] == ["up", "down", "?"]
    assert run("{{with .A}}{{.B}}{{else}}none{{end}}", {"A": {"B": 7}}) == "7"
    assert run("{{with .A}}{{.B}}{{else}}none{{end}}", {"A": {}}) == "none"
    assert run("{{if and .A (not .B)}}y{{end}}", {"A": 1, "B": 0}) == "y"
    assert run("{{or .A .B}}", {"A": "", "B": "b"}) == "b"
    assert run("{{if lt .N 3}}small{{end}} {{ne .N 2}}", {"N": 2}) == "small false"


def test_range_over_lists_and_maps_with_variables() -> None:
    doc = {"L": ["a", "b"], "M": {"z": 1, "a": 2}, "E": []}
    assert run("{{range .L}}<{{.}}>{{end}}", doc) == "<a><b>"
    assert run("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", doc) == "0=a 1=b "
    assert run("{{range $k, $v := .M}}{{$k}}:{{$v}},{{end}}", doc) == "a:2,z:1,"  # key order
    assert run("{{range .E}}x{{else}}empty{{end}}", doc) == "empty"
    assert run("{{$n := .L}}{{range $n}}{{$}}{{end}}", doc) == go_text(doc) * 2
    assert run("{{$x := 1}}{{$x = 2}}{{$x}}") == "2"


def test_docker_inspect_examples() -> None:
    """The forms docker/cli's docs/reference/commandline/inspect.md shows."""
    doc = {
        "LogPath": "/x/ctr.log",
        "Config": {"Image": "busybox"},
        "NetworkSettings": {
            "Networks": {"bridge": {"IPAddress": "172.17.0.2", "MacAddress": "02:42"}},
            "Ports": {"8787/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]},
        },
    }
    assert run("{{.LogPath}}", doc) == "/x/ctr.log"
    assert run("{{.Config.Image}}", doc) == "busybox"
    assert run("{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", doc) == "172.17.0.2"
    assert run('{{(index (index .NetworkSettings.Ports "8787/tcp") 0).HostPort}}', doc) == "8080"
    ports = (
        "{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> "
        "{{with $conf}}{{(index . 0).HostPort}}{{else}}none{{end}} {{end}}"
    )
    assert run(ports, doc) == " 8787/tcp -> 8080 "
    assert run("{{json .Config}}", doc) == '{"Image":"busybox"}'


def test_docker_functions() -> None:
    doc = {"L": ["a", "b"], "S": "a,b", "M": {"k": "v"}}
    assert run('{{join .L ", "}}', doc) == "a, b"
    assert run('{{join (split .S ",") "+"}}', doc) == "a+b"
    assert run('{{upper .S}} {{lower (upper .S)}} {{title "hello world"}}', doc) == (
        "A,B a,b Hello World"
    )
    assert run('{{pad .S 1 2}}|{{pad "" 1 1}}|{{truncate .S 1}}', doc) == " a,b  ||a"
    assert run('{{index .M "k"}} {{index .L 1}} {{len .L}}', doc) == "v b 2"
    assert run('{{println "a" 1}}{{print "a" 1 2 "b"}}', doc) == "a 1\na1 2b"
    assert run('{{printf "%-4s|%3d|%.1f|%q" "ab" 7 1.25 "x"}}', doc) == 'ab  |  7|1.2|"x"'
    assert run("{{.S | upper | lower}}", doc) == "a,b"


def test_json_is_gos_encoding() -> None:
    """Docker's `json` (templates.go: an Encoder with HTML escaping off) for values; a
    row is marshalled by json.Marshal, which escapes <, > and &."""
    assert go_json({"a": "<x>", "b": [1, 2.5, None, True]}) == '{"a":"<x>","b":[1,2.5,null,true]}'
    assert go_json("é\u2028") == '"é\\u2028"'
    row = Rec(B="<none>", A="a&b")
    assert go_json(row) == '{"A":"a\\u0026b","B":"\\u003cnone\\u003e"}'
    assert run("{{json .}}", row) == go_json(row)
    assert run("{{json .B}}", row) == '"<none>"'


def test_methods_with_arguments() -> None:
    row = Rec(Label=lambda k: {"com.example.x": "1"}.get(k, ""))
    assert run('{{.Label "com.example.x"}}|{{.Label "y"}}', row) == "1|"
    assert run('{{(.Label "com.example.x")}}', row) == "1"


def test_header_functions_keep_the_column_name() -> None:
    t = Template.parse('{{upper .A}} {{json .A}} {{join .A ","}} {{pad .A 1 0}}')
    assert t.execute({"A": "NAME"}, HEADER_FUNCTIONS) == "NAME NAME NAME  NAME"


@pytest.mark.parametrize(
    ("src", "says"),
    [
        ("{{.A", "unclosed action"),
        ("{{nosuch .A}}", 'function "nosuch" not defined'),
        ("{{if .A}}x", "has no {{end}}"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{range .A}}x{{else}}y", "has no {{end}}"),
        ("{{.A | }}", "missing value"),
        ("{{(.A}}", "unclosed left paren"),
        ("{{ }}", "empty action"),
        ('{{define "x"}}{{end}}', "not supported"),
        ('{{"unterminated}}', "unexpected"),
    ],
)
def test_syntax_errors_are_one_line_usage_errors(src: str, says: str) -> None:
    with pytest.raises(UsageError) as info:
        Template.parse(src)
    line = info.value.line()
    assert says in line and "\n" not in line and line.startswith("rsbox: error: --format: ")


def test_an_unknown_field_names_the_field_and_what_exists() -> None:
    with pytest.raises(FieldNotFound) as info:
        run("{{.State.Nope}}", {"State": {"Status": "x", "Pid": 1}})
    assert 'no field "Nope" in .State' in info.value.line()
    assert "Status, Pid" in info.value.line()
    with pytest.raises(FieldNotFound):
        run("{{.Nope}}", Rec(A=1))


@pytest.mark.parametrize(
    ("src", "data"),
    [
        ("{{index .L 5}}", {"L": [1]}),
        ("{{range .S}}{{end}}", {"S": "abc"}),
        ("{{.A.B}}", {"A": "str"}),
        ('{{join .S ","}}', {"S": "abc"}),
        ('{{eq .N "1"}}', {"N": 1}),
        ("{{$nope}}", {}),
        ("{{.A 1}}", {"A": "x"}),
        ("{{upper 1}}", {}),
        ("{{len}}", {}),
    ],
)
def test_execution_errors_are_template_errors(src: str, data: Any) -> None:
    with pytest.raises(TemplateError):
        run(src, data)
