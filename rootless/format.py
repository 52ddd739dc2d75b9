"""Docker's output layer: `--format` (table, json, a Go template), its tables, its units.

What Docker's CLI does with `--format` (docker/cli, cli/command/formatter; read for the
semantics, the code here is ours):

* `table` alone is the command's default table; `table TEMPLATE` is TEMPLATE with a
  header line; `json` is `{{json .}}`; anything else is a template. Before parsing, the
  `table` word and the spaces around the template are cut, and the two-character
  sequences `\\t` and `\\n` become a tab and a newline (what people type in a shell).
* Each row is the template's text plus a newline. A table's header is the same template
  run over the column names (`{{.ID}}` -> `CONTAINER ID`), and the whole table goes
  through Go's tabwriter with a minimum cell width of 10 and a padding of 3: every
  tab-terminated cell of a column block is padded to the block's widest cell, the text
  after a line's last tab is not.
* Sizes are go-units': `HumanSize` (decimal units, 4 significant digits: `2.53MB`),
  `HumanSizeWithPrecision(3)`, `BytesSize` (binary units: `1.95GiB`); ages are
  `HumanDuration` (`Less than a second`, `About a minute`, `3 hours`).

rsbox's one difference: `ps --format json` and `images --format json` keep printing the
JSON array they printed before (as Podman does; scripts read it). Docker's one object per
line is `--format '{{json .}}'`, and is what `json` means for `stats` and `system df`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rootless.errors import UsageError
from rootless.gotemplate import HEADER_FUNCTIONS, FieldNotFound, Template, TemplateError

# --- units (go-units) --------------------------------------------------------------------

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def _scaled(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return "%.*g%s" % (precision, size, units[i])  # noqa: UP031 (Go's %.*g, exactly)


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSize (precision 4) / HumanSizeWithPrecision: `2.531MB`, `0B`."""
    return _scaled(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """go-units BytesSize: `5.629MiB`."""
    return _scaled(float(size), 1024.0, _BINARY, 4)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration."""
    if math.isnan(seconds) or int(seconds) < 1:
        return "Less than a second"
    s = int(seconds)
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def go_time(when: datetime) -> str:
    """Go's time.Time.String() of a whole second, in local time: `2021-03-10 00:15:05
    +0100 CET` (what Docker's CreatedAt shows)."""
    local = when.astimezone().replace(microsecond=0)
    return local.strftime("%Y-%m-%d %H:%M:%S %z %Z")


def ellipsis(text: str, width: int) -> str:
    """Docker's Ellipsis: at most `width` characters, the last one `…` when cut."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…" if width > 1 else text[:width]


def truncate_id(ident: str) -> str:
    return ident.removeprefix("sha256:")[:12]


# --- Go's tabwriter, as Docker sets it up ---------------------------------------------------


def tabwrite(text: str, minwidth: int = 10, padding: int = 3) -> str:
    """Align tab-separated cells as Go's text/tabwriter does with padchar ' ' and no
    flags. A column block is a run of consecutive lines that have a tab-terminated cell
    in that column; its width is the widest such cell plus `padding`, at least
    `minwidth`. The last cell of a line (after its last tab) is never padded."""
    body = text[:-1] if text.endswith("\n") else text
    lines = [line.split("\t") for line in body.split("\n")]
    widths: list[int] = []
    out: list[str] = []

    def write(line0: int, line1: int) -> None:
        for line in lines[line0:line1]:
            parts = []
            for j, cell in enumerate(line):
                parts.append(cell)
                if j < len(widths):
                    parts.append(" " * (widths[j] - len(cell)))
            out.append("".join(parts))

    def block(line0: int, line1: int) -> None:
        column = len(widths)
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write(line0, this)
            line0 = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            widths.append(width)
            block(line0, this)
            widths.pop()
            line0 = this
        write(line0, line1)

    block(0, len(lines))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


# --- rows and their schema ---------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    """One kind of row (a container of `ps`, an image of `images`...): its fields with
    their column headers, the fields `{{json .}}` shows (Docker's MarshalJSON: every
    method without arguments; the documented set), and the default table."""

    kind: str
    headers: Mapping[str, str]
    json_fields: tuple[str, ...]
    default: str
    methods: Mapping[str, Callable[[str], str]] | None = None  # header of `.Label "x"`


class Row:
    """One row: the schema's fields. A value may be a callable: run when the template
    uses it (`.Size` costs a walk of the container's files), or a method with arguments
    (`.Label "key"`)."""

    def __init__(self, schema: Schema, values: Mapping[str, Any]) -> None:
        self.schema = schema
        self.kind = schema.kind
        self._values = values

    def field(self, name: str) -> Any:
        if name not in self._values:
            raise FieldNotFound(
                f'no field "{name}" in a {self.kind} row',
                hint=f"the fields of a {self.kind}: {', '.join(self.names())}",
            )
        return self._values[name]

    def names(self) -> Sequence[str]:
        return sorted(self._values)

    def json_doc(self) -> dict[str, Any]:
        doc = {}
        for name in self.schema.json_fields:
            value = self._values[name]
            doc[name] = value() if callable(value) else value
        return doc


class HeaderRow:
    """What a table's header line is rendered from: each field is its column name."""

    def __init__(self, schema: Schema) -> None:
        self.kind = schema.kind
        self.schema = schema
        self._names = [*schema.headers, *(schema.methods or {})]

    def field(self, name: str) -> Any:
        methods = self.schema.methods or {}
        if name in methods:
            return methods[name]
        if name not in self._names:
            raise FieldNotFound(
                f'no field "{name}" in a {self.kind} row',
                hint=f"the fields of a {self.kind}: {', '.join(sorted(self._names))}",
            )
        return self.schema.headers.get(name, name.upper())

    def names(self) -> Sequence[str]:
        return self._names

    def json_doc(self) -> dict[str, Any]:
        return {}


def label_header(name: str) -> str:
    """Docker's header for `.Label "com.example.some-key"`: the last dotted part, `-` and
    `_` as spaces (`some key`)."""
    return name.split(".")[-1].replace("-", " ").replace("_", " ")


# --- --format ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFormat:
    """A parsed `--format`: a template (checked once), whether it is a table, or the
    legacy JSON array of `ps`/`images` (`template is None`)."""

    template: Template | None
    table: bool
    source: str

    @property
    def legacy_json(self) -> bool:
        return self.template is None

    @classmethod
    def parse(cls, text: str | None, schema: Schema, *, legacy_json: bool = False) -> OutputFormat:
        text = text or "table"
        if text == "json" and legacy_json:
            return cls(None, False, text)
        if text == "json":
            text = "{{json .}}"
        if text == "table":
            text = schema.default
        table = text.startswith("table")
        body = text[len("table") :] if table else text
        if "{{" not in body and not table:
            raise UsageError(
                f"unknown --format {text!r}",
                hint="use table, json, or a Go template such as '{{.ID}}' or 'table {{.ID}}\\t{{.Names}}'",
            )
        body = body.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
        return cls(Template.parse(body), table, text)

    def render(self, rows: Sequence[Any], schema: Schema) -> str:
        """The rows as the template says: each followed by a newline; a table gets its
        header and Go's alignment."""
        if self.template is None:
            raise AssertionError("the legacy JSON array is the caller's")
        try:
            header = self.template.execute(HeaderRow(schema), HEADER_FUNCTIONS)
        except FieldNotFound:
            raise
        except TemplateError:
            header = ""  # Docker ignores a header that does not render
        body = "".join(self.template.execute(row) + "\n" for row in rows)
        if not self.table:
            return body
        return tabwrite(header + "\n" + body)
