"""A small Go text/template: the part of it people paste into `--format` from Docker's docs.

Docker's CLI runs every `--format` through Go's text/template with a few functions of its
own (docker/cli, templates/templates.go; read for the semantics, the code here is ours).
What this module understands, with Go's meaning:

* text and actions, `{{- ` and ` -}}` trimming the white space beside them, comments
  `{{/* ... */}}`;
* `.`, fields `.A.B`, variables `$`, `$x` (`{{$x := ...}}`, `{{$x = ...}}`), fields of
  variables and of parenthesised pipelines (`(index .Ports 0).HostPort`), literals
  (strings "..." and `...`, numbers, true, false, nil), pipelines `a | b` (the value
  goes in as the last argument);
* `{{if}}`, `{{else if}}`, `{{else}}`, `{{range}}` (over lists, and over maps in key
  order, with `$v :=` or `$k, $v :=`), `{{with}}`, `{{end}}`;
* Go's functions `and or not len index print println printf eq ne lt le gt ge`, and
  Docker's `json join split lower upper title pad truncate`.

Data: a `Fields` object (a row of `ps`, `images`, `stats`, `system df`: named values,
some of them methods that take arguments, as `.Label "key"`), or JSON-like values (dict,
list, str, int, float, bool, None: what `inspect` shows). A field that is not there is an
error naming it (Go says the same for Docker's typed rows; for maps it would print
"<no value>", which hides typos). Errors are `TemplateError`, a `UsageError`: one line,
exit status 125.

`Template.parse(text)` checks the syntax once; `execute(data)` may run many times.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn, Protocol, runtime_checkable

from rootless.errors import UsageError

_HINT = (
    "see Go's text/template; fields look like {{.ID}}, a table like 'table {{.ID}}\\t{{.Names}}'"
)


class TemplateError(UsageError):
    def __init__(self, message: str, hint: str | None = _HINT) -> None:
        super().__init__(f"--format: {message}", hint=hint)


@runtime_checkable
class Fields(Protocol):
    """A record with named fields, as Docker's formatter contexts are (ContainerContext
    and friends): `field(name)` gives a value, or a callable for a method with
    arguments; `names()` lists what exists (for the error message); `json_doc()` is what
    `{{json .}}` prints (Docker's MarshalJSON: a map with sorted keys, HTML escaped)."""

    kind: str

    def field(self, name: str) -> Any: ...

    def names(self) -> Sequence[str]: ...

    def json_doc(self) -> dict[str, Any]: ...


class FieldNotFound(TemplateError):
    pass


# --- values as Go prints them -------------------------------------------------------------


def go_text(value: Any) -> str:
    """What `{{.X}}` writes for a value (Go's fmt %v on what encoding/json decodes)."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, Fields):
        value = value.json_doc()
    if isinstance(value, Mapping):
        items = " ".join(f"{k}:{go_text(value[k])}" for k in sorted(value, key=str))
        return f"map[{items}]"
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_text(v) for v in value) + "]"
    return str(value)


def _go_float(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:  # Go: 1e+21, 1e-07 (two digits at least)
        mant, _, exp = text.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        text = f"{mant}e{sign}{exp.lstrip('+-').rjust(2, '0')}"
    return text


def _escape_json(text: str, html: bool) -> str:
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if html:  # what Go's json.Marshal does by default (Docker's rows go through it)
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text


def go_json(value: Any) -> str:
    """Docker's `json` function: compact JSON, UTF-8 kept. A row (`Fields`) is a map with
    sorted keys in which <, > and & are escaped, as Go's json.Marshal writes it; other
    values are written as they are (Docker's encoder has HTML escaping off)."""
    if isinstance(value, Fields):
        doc = value.json_doc()
        inner = ",".join(
            f"{json.dumps(k, ensure_ascii=False)}:{go_json(doc[k])}" for k in sorted(doc)
        )
        return _escape_json("{" + inner + "}", html=True)
    if isinstance(value, Mapping):
        inner = ",".join(
            f"{json.dumps(str(k), ensure_ascii=False)}:{go_json(v)}" for k, v in value.items()
        )
        return "{" + inner + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return _escape_json(json.dumps(value, ensure_ascii=False), html=False)


def truth(value: Any) -> bool:
    """Go's truth for if/with/and/or/not: false, 0, nil and empty things are false."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float | str | list | tuple | Mapping):
        return bool(value)
    return True


# --- functions -----------------------------------------------------------------------


def _join(elems: Any, sep: str) -> str:
    if elems is None:
        return ""
    if isinstance(elems, Mapping):
        return sep.join(sorted(go_text(v) for v in elems.values()))
    if isinstance(elems, list | tuple):
        return sep.join(go_text(v) for v in elems)
    raise TemplateError(f"join: expected a list, got {_type(elems)}")


def _split(value: Any, sep: str) -> list[str]:
    text = _want_str("split", value)
    return list(text) if sep == "" else text.split(sep)


def _title(value: Any) -> str:
    text = _want_str("title", value)
    return re.sub(r"(^|[^\w'])(\w)", lambda m: m.group(1) + m.group(2).upper(), text)


def _pad(value: Any, prefix: int, suffix: int) -> str:
    text = _want_str("pad", value)
    return text if not text else " " * int(prefix) + text + " " * int(suffix)


def _truncate(value: Any, length: int) -> str:
    text = _want_str("truncate", value)
    return text if len(text) < int(length) else text[: int(length)]


def _want_str(fn: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise TemplateError(f"{fn}: expected a string, got {_type(value)}")


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, Mapping):
            item = item.get(key)  # Go: the zero value for a missing key
        elif isinstance(item, list | tuple | str):
            if not isinstance(key, int) or isinstance(key, bool):
                raise TemplateError(f"index: cannot index a list with {go_text(key)!r}")
            if not 0 <= key < len(item):
                raise TemplateError(f"index: index out of range: {key}")
            item = item[key]
        elif isinstance(item, Fields):
            item = item.field(str(key))
        else:
            raise TemplateError(f"index: cannot index {_type(item)}")
    return item


def _len(item: Any) -> int:
    if isinstance(item, str | list | tuple | Mapping):
        return len(item)
    raise TemplateError(f"len: cannot take the length of {_type(item)}")


def _print(*args: Any) -> str:
    """Go's fmt.Sprint: a space between two operands when neither is a string."""
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_text(a))
    return "".join(out)


def _println(*args: Any) -> str:
    return " ".join(go_text(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+ #0]*)(\d+)?(?:\.(\d+))?([vsdqftxX%])")


def _printf(spec: Any, *args: Any) -> str:
    fmt = _want_str("printf", spec)
    queue = list(args)

    def one(m: re.Match[str]) -> str:
        flags, width, prec, verb = m.groups()
        if verb == "%":
            return "%"
        if not queue:
            return f"%!{verb}(MISSING)"
        arg = queue.pop(0)
        if verb in "vs":
            text = go_text(arg)
            if prec is not None:
                text = text[: int(prec)]
        elif verb == "q":
            text = json.dumps(go_text(arg), ensure_ascii=False)
        elif verb == "t":
            text = go_text(bool(arg))
        elif verb in "dxX" and isinstance(arg, int | float):
            text = format(int(arg), {"d": "d", "x": "x", "X": "X"}[verb])
        elif verb == "f" and isinstance(arg, int | float):
            text = f"{float(arg):.{int(prec) if prec is not None else 6}f}"
        else:
            return f"%!{verb}({_type(arg)}={go_text(arg)})"
        if width:
            text = text.ljust(int(width)) if "-" in flags else text.rjust(int(width))
        return text

    return _VERB.sub(one, fmt)


def _cmp_args(a: Any, b: Any, fn: str) -> None:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        ok = isinstance(a, bool) and isinstance(b, bool)
    else:
        ok = (isinstance(a, numbers) and isinstance(b, numbers)) or type(a) is type(b)
    if not ok:
        raise TemplateError(f"{fn}: incompatible types for comparison: {_type(a)} and {_type(b)}")


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("eq: missing argument for comparison")
    for b in others:
        if a is not None and b is not None:
            _cmp_args(a, b, "eq")
        if a == b:
            return True
    return False


def _order(fn: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        _cmp_args(a, b, fn)
        if isinstance(a, bool | Mapping | list | tuple) or a is None:
            raise TemplateError(f"{fn}: invalid type for comparison: {_type(a)}")
        return op(a, b)

    return compare


def _json_fn(value: Any) -> str:
    return go_json(value)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "json": _json_fn,
    "join": _join,
    "split": _split,
    "lower": lambda s: _want_str("lower", s).lower(),
    "upper": lambda s: _want_str("upper", s).upper(),
    "title": _title,
    "pad": _pad,
    "truncate": _truncate,
    "index": _index,
    "len": _len,
    "print": _print,
    "println": _println,
    "printf": _printf,
    "not": lambda v: not truth(v),
    "eq": _eq,
    "ne": lambda a, b: not _eq(a, b),
    "lt": _order("lt", lambda a, b: a < b),
    "le": _order("le", lambda a, b: a <= b),
    "gt": _order("gt", lambda a, b: a > b),
    "ge": _order("ge", lambda a, b: a >= b),
}

# Docker renders a table's header with the same template over the header names, with
# these in place of the data functions, so that the header stays the column's name
# (templates.HeaderFunctions; `pad` is kept, to keep the columns aligned).
HEADER_FUNCTIONS: dict[str, Callable[..., Any]] = {
    **FUNCTIONS,
    "json": lambda v: go_text(v),
    "split": lambda v, _sep: go_text(v),
    "join": lambda v, _sep: go_text(v),
    "title": lambda v: go_text(v),
    "lower": lambda v: go_text(v),
    "upper": lambda v: go_text(v),
    "truncate": lambda v, _n: go_text(v),
}

_SHORT_CIRCUIT = ("and", "or")


def _type(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, Fields):
        return value.kind
    return {
        bool: "bool",
        int: "int",
        float: "float64",
        str: "string",
        list: "list",
        tuple: "list",
        dict: "map",
    }.get(type(value), type(value).__name__)


# --- lexing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    kind: str  # field dot var ident string number ( ) | := = ,
    text: str
    value: Any = None
    spaced: bool = True  # white space before it (a field right after a term chains)


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<declare>:=)
  | (?P<assign>=)
  | (?P<pipe>\|)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>[+-]?(?:0[xX][0-9a-fA-F_]+|\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?))
  | (?P<field>\.[A-Za-z_][A-Za-z0-9_]*)
  | (?P<dot>\.)
  | (?P<var>\$[A-Za-z0-9_]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_RIGHT_TRIM = re.compile(r"\s-}}")
_LEFT_TRIM = re.compile(r"-\s")
_COMMENT = re.compile(r"\s*/\*.*?\*/(\s-)?}}", re.DOTALL)
_KIND = {"lparen": "(", "rparen": ")", "pipe": "|", "declare": ":=", "assign": "=", "comma": ","}


def _go_unquote(text: str) -> str:
    try:
        value = json.loads(re.sub(r"\\x([0-9a-fA-F]{2})", r"\\u00\1", text))
    except ValueError:
        raise TemplateError(f"bad string literal {text}") from None
    return str(value)


def _lex_action(src: str, pos: int) -> tuple[list[_Tok], int, bool]:
    """Tokens of the action starting at src[pos] (after `{{` and a left trim marker) up
    to its `}}`. Returns (tokens, index after `}}`, right trim)."""
    toks: list[_Tok] = []
    spaced = True
    while True:
        if src.startswith("}}", pos):
            return toks, pos + 2, False
        m = _RIGHT_TRIM.match(src, pos)
        if m:
            return toks, m.end(), True
        if pos >= len(src):
            raise TemplateError("unclosed action: a '{{' has no '}}'")
        m = _TOKEN.match(src, pos)
        if m is None:
            raise TemplateError(
                f"unexpected {src[pos]!r} in action at {src[max(0, pos - 10) : pos + 10]!r}"
            )
        kind = m.lastgroup or ""
        text = m.group()
        pos = m.end()
        if kind == "space":
            spaced = True
            continue
        value: Any = None
        if kind == "string":
            kind, value = "literal", _go_unquote(text)
        elif kind == "raw":
            kind, value = "literal", text[1:-1]
        elif kind == "number":
            kind = "literal"
            clean = text.replace("_", "")
            try:
                value = (
                    int(clean, 0)
                    if not re.search(r"[.eE]", clean) or "x" in clean.lower()
                    else float(clean)
                )
            except ValueError:
                raise TemplateError(f"bad number syntax: {text!r}") from None
        elif kind == "ident" and text in ("true", "false"):
            kind, value = "literal", text == "true"
        elif kind == "ident" and text == "nil":
            kind, value = "literal", None
        toks.append(_Tok(_KIND.get(kind, kind), text, value, spaced))
        spaced = False


# --- the tree --------------------------------------------------------------------------


@dataclass
class _Field:
    names: tuple[str, ...]


@dataclass
class _Dot:
    pass


@dataclass
class _Var:
    name: str
    names: tuple[str, ...] = ()


@dataclass
class _Literal:
    value: Any


@dataclass
class _Ident:
    name: str


@dataclass
class _Paren:
    pipe: _Pipe
    names: tuple[str, ...] = ()


_Operand = _Field | _Dot | _Var | _Literal | _Ident | _Paren


@dataclass
class _Command:
    args: list[_Operand]


@dataclass
class _Pipe:
    commands: list[_Command]
    decl: tuple[str, ...] = ()
    assign: bool = False  # `$x = ...` (else `:=`)


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipe


@dataclass
class _If:
    pipe: _Pipe
    then: list[_Node]
    other: list[_Node] = field(default_factory=list)
    kind: str = "if"  # or "with"


@dataclass
class _Range:
    pipe: _Pipe
    body: list[_Node]
    other: list[_Node] = field(default_factory=list)


_Node = _Text | _Action | _If | _Range


@dataclass(frozen=True)
class _Item:
    """What the scanner yields: text, or one action's tokens."""

    text: str | None = None
    toks: tuple[_Tok, ...] = ()


def _scan(src: str) -> list[_Item]:
    items: list[_Item] = []
    pos = 0
    trim_next = False
    while True:
        start = src.find("{{", pos)
        text = src[pos:] if start < 0 else src[pos:start]
        if trim_next:
            text = text.lstrip(" \t\r\n")
        if start < 0:
            if text:
                items.append(_Item(text=text))
            return items
        inner = start + 2
        if _LEFT_TRIM.match(src, inner):
            text = text.rstrip(" \t\r\n")
            inner += 2
        if text:
            items.append(_Item(text=text))
        comment = _COMMENT.match(src, inner)
        if comment:
            pos, trim_next = comment.end(), bool(comment.group(1))
            continue
        toks, pos, trim_next = _lex_action(src, inner)
        if not toks:
            raise TemplateError("missing value for command: an empty action {{ }}")
        items.append(_Item(toks=tuple(toks)))


class _Parser:
    def __init__(self, items: list[_Item]) -> None:
        self.items = items
        self.i = 0

    def parse(self) -> list[_Node]:
        nodes, stop = self.nodes()
        if stop is not None:
            raise TemplateError(f"unexpected {{{{{stop[0].text}}}}}")
        return nodes

    def nodes(self) -> tuple[list[_Node], tuple[_Tok, ...] | None]:
        """Nodes up to an {{end}} or {{else ...}} (returned) or the end of the text."""
        out: list[_Node] = []
        while self.i < len(self.items):
            item = self.items[self.i]
            self.i += 1
            if item.text is not None:
                out.append(_Text(item.text))
                continue
            toks = item.toks
            head = toks[0]
            if head.kind == "ident" and head.text in ("end", "else"):
                return out, toks
            if head.kind == "ident" and head.text in ("if", "with"):
                out.append(self.conditional(head.text, toks[1:]))
            elif head.kind == "ident" and head.text == "range":
                out.append(self.range(toks[1:]))
            elif head.kind == "ident" and head.text in (
                "define",
                "template",
                "block",
                "break",
                "continue",
            ):
                raise TemplateError(f"{{{{{head.text}}}}} is not supported here")
            else:
                out.append(_Action(_PipeParser(list(toks)).pipe(allow_decl=True)))
        return out, None

    def _closing(self, what: str) -> NoReturn:
        raise TemplateError(f"unexpected end of the format: {{{{{what}}}}} has no {{{{end}}}}")

    def conditional(self, kind: str, toks: Sequence[_Tok]) -> _If:
        pipe = _PipeParser(list(toks)).pipe(allow_decl=True)
        then, stop = self.nodes()
        if stop is None:
            self._closing(kind)
        node = _If(pipe, then, kind=kind)
        if stop[0].text == "else":
            rest = stop[1:]
            if rest and rest[0].kind == "ident" and rest[0].text in ("if", "with"):
                # `{{else if x}}`: an if inside the else, closed by the same {{end}}
                node.other = [self.conditional(rest[0].text, rest[1:])]
                return node
            if rest:
                raise TemplateError(f"unexpected {rest[0].text!r} after else")
            node.other, stop = self.nodes()
            if stop is None or stop[0].text != "end":
                self._closing(kind)
        if len(stop) > 1:
            raise TemplateError(f"unexpected {stop[1].text!r} after end")
        return node

    def range(self, toks: Sequence[_Tok]) -> _Range:
        pipe = _PipeParser(list(toks)).pipe(allow_decl=True, in_range=True)
        body, stop = self.nodes()
        if stop is None:
            self._closing("range")
        node = _Range(pipe, body)
        if stop[0].text == "else":
            if len(stop) > 1:
                raise TemplateError(f"unexpected {stop[1].text!r} after else")
            node.other, stop = self.nodes()
            if stop is None or stop[0].text != "end":
                self._closing("range")
        return node


class _PipeParser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self, ahead: int = 0) -> _Tok | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def pipe(
        self, allow_decl: bool = False, in_range: bool = False, closing: str | None = None
    ) -> _Pipe:
        decl: tuple[str, ...] = ()
        assign = False
        if allow_decl:
            decl, assign = self.declaration(in_range)
        commands: list[_Command] = []
        while True:
            args: list[_Operand] = []
            while (tok := self.peek()) is not None and tok.kind not in ("|", ")"):
                args.append(self.operand())
            if not args:
                raise TemplateError("missing value for command")
            commands.append(_Command(args))
            tok = self.peek()
            if tok is None or tok.kind == ")":
                break
            self.take()  # |
        if closing is None and self.peek() is not None:
            raise TemplateError(f"unexpected {self.peek().text!r} in operand")  # type: ignore[union-attr]
        return _Pipe(commands, decl, assign)

    def declaration(self, in_range: bool) -> tuple[tuple[str, ...], bool]:
        a, b = self.peek(), self.peek(1)
        if a is not None and a.kind == "var" and b is not None and b.kind in (":=", "="):
            self.i += 2
            return (a.text,), b.kind == "="
        c, d = self.peek(2), self.peek(3)
        if (
            in_range
            and a is not None
            and a.kind == "var"
            and b is not None
            and b.kind == ","
            and c is not None
            and c.kind == "var"
            and d is not None
            and d.kind == ":="
        ):
            self.i += 4
            return (a.text, c.text), False
        return (), False

    def chain(self) -> tuple[str, ...]:
        names: list[str] = []
        while (tok := self.peek()) is not None and tok.kind == "field" and not tok.spaced:
            names.append(self.take().text[1:])
        return tuple(names)

    def operand(self) -> _Operand:
        tok = self.take()
        if tok.kind == "field":
            return _Field((tok.text[1:], *self.chain()))
        if tok.kind == "dot":
            return _Dot()
        if tok.kind == "var":
            return _Var(tok.text, self.chain())
        if tok.kind == "literal":
            return _Literal(tok.value)
        if tok.kind == "ident":
            if tok.text not in FUNCTIONS and tok.text not in _SHORT_CIRCUIT:
                raise TemplateError(f'function "{tok.text}" not defined')
            return _Ident(tok.text)
        if tok.kind == "(":
            inner = self.pipe(closing=")")
            end = self.peek()
            if end is None or end.kind != ")":
                raise TemplateError("unclosed left paren")
            self.take()
            return _Paren(inner, self.chain())
        raise TemplateError(f"unexpected {tok.text!r} in operand")


# --- evaluation --------------------------------------------------------------------------


class _Scope:
    def __init__(self, root: Any) -> None:
        self.frames: list[dict[str, Any]] = [{"$": root}]

    def push(self) -> None:
        self.frames.append({})

    def pop(self) -> None:
        self.frames.pop()

    def declare(self, name: str, value: Any) -> None:
        self.frames[-1][name] = value

    def assign(self, name: str, value: Any) -> None:
        for frame in reversed(self.frames):
            if name in frame:
                frame[name] = value
                return
        raise TemplateError(f"undefined variable: {name}")

    def get(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        raise TemplateError(f"undefined variable: {name}")


def _field(value: Any, name: str, args: Sequence[Any], where: str) -> Any:
    if isinstance(value, Fields):
        found = value.field(name)
        if callable(found):
            return found(*args)
        if args:
            raise TemplateError(f"{name} is not a method but has arguments")
        return found
    if args:
        raise TemplateError(f"{name} is not a method but has arguments")
    if isinstance(value, Mapping):
        if name in value:
            return value[name]
        known = ", ".join(str(k) for k in value)
        raise FieldNotFound(
            f'no field "{name}" in {where or "."}', hint=f"fields there: {known}" if known else None
        )
    raise TemplateError(f"can't evaluate field {name} in type {_type(value)}")


class Template:
    """A parsed template. `execute(data)` returns the text."""

    def __init__(self, source: str, nodes: list[_Node]) -> None:
        self.source = source
        self._nodes = nodes

    @classmethod
    def parse(cls, source: str) -> Template:
        return cls(source, _Parser(_scan(source)).parse())

    def execute(self, data: Any, functions: Mapping[str, Callable[..., Any]] = FUNCTIONS) -> str:
        out: list[str] = []
        _Exec(functions, _Scope(data), out).nodes(self._nodes, data)
        return "".join(out)


class _Exec:
    def __init__(
        self, functions: Mapping[str, Callable[..., Any]], scope: _Scope, out: list[str]
    ) -> None:
        self.functions = functions
        self.scope = scope
        self.out = out

    def nodes(self, nodes: Sequence[_Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                value = self.pipe(node.pipe, dot)
                if not node.pipe.decl:
                    self.out.append(go_text(value))
            elif isinstance(node, _If):
                self.scope.push()
                try:
                    value = self.pipe(node.pipe, dot)
                    if truth(value):
                        self.nodes(node.then, value if node.kind == "with" else dot)
                    else:
                        self.nodes(node.other, dot)
                finally:
                    self.scope.pop()
            else:
                self.range(node, dot)

    def range(self, node: _Range, dot: Any) -> None:
        self.scope.push()
        try:
            value = self.pipe(_Pipe(node.pipe.commands), dot)
            pairs: Iterator[tuple[Any, Any]]
            if value is None:
                pairs = iter(())
            elif isinstance(value, Mapping):
                pairs = ((k, value[k]) for k in sorted(value, key=str))
            elif isinstance(value, list | tuple):
                pairs = iter(enumerate(value))
            elif isinstance(value, int) and not isinstance(value, bool):
                pairs = ((i, i) for i in range(value))
            else:
                raise TemplateError(f"range can't iterate over {go_text(value)}")
            empty = True
            for key, item in pairs:
                empty = False
                self.scope.push()
                try:
                    if len(node.pipe.decl) == 1:
                        self.scope.declare(node.pipe.decl[0], item)
                    elif len(node.pipe.decl) == 2:
                        self.scope.declare(node.pipe.decl[0], key)
                        self.scope.declare(node.pipe.decl[1], item)
                    self.nodes(node.body, item)
                finally:
                    self.scope.pop()
            if empty:
                self.nodes(node.other, dot)
        finally:
            self.scope.pop()

    def pipe(self, pipe: _Pipe, dot: Any) -> Any:
        value: Any = None
        for i, command in enumerate(pipe.commands):
            value = self.command(command, dot, final=(value,) if i else ())
        for name in pipe.decl:
            if pipe.assign:
                self.scope.assign(name, value)
            else:
                self.scope.declare(name, value)
        return value

    def command(self, command: _Command, dot: Any, final: tuple[Any, ...]) -> Any:
        first, rest = command.args[0], command.args[1:]
        if isinstance(first, _Ident):
            if first.name in _SHORT_CIRCUIT:
                return self.short_circuit(first.name, rest, dot, final)
            args = [self.arg(a, dot) for a in rest] + list(final)
            return self.call(first.name, args)
        if isinstance(first, _Field | _Var | _Paren) and first.names:
            args = [self.arg(a, dot) for a in rest] + list(final)
            return self.chained(first, dot, args)
        if rest or final:
            raise TemplateError(f"can't give an argument to a non-function {_describe(first)}")
        return self.arg(first, dot)

    def short_circuit(
        self, name: str, rest: Sequence[_Operand], dot: Any, final: tuple[Any, ...]
    ) -> Any:
        if not rest and not final:
            raise TemplateError(f"{name}: wrong number of args: want at least 1")
        value: Any = None
        for a in rest:
            value = self.arg(a, dot)
            if truth(value) != (name == "and"):
                return value
        return final[0] if final else value

    def call(self, name: str, args: list[Any]) -> Any:
        fn = self.functions[name]
        try:
            return fn(*args)
        except TypeError as exc:
            raise TemplateError(f"wrong number of args for {name}: {exc}") from None

    def arg(self, node: _Operand, dot: Any) -> Any:
        if isinstance(node, _Dot):
            return dot
        if isinstance(node, _Literal):
            return node.value
        if isinstance(node, _Ident):
            if node.name in _SHORT_CIRCUIT:
                raise TemplateError(f"{node.name}: wrong number of args: want at least 1")
            return self.call(node.name, [])
        return self.chained(node, dot, [])

    def chained(self, node: _Field | _Var | _Paren, dot: Any, args: list[Any]) -> Any:
        if isinstance(node, _Field):
            value, names, where = dot, node.names, ""
        elif isinstance(node, _Var):
            value, names, where = self.scope.get(node.name), node.names, node.name
        else:
            value, names, where = self.pipe(node.pipe, dot), node.names, "(...)"
        for i, name in enumerate(names):
            last = i == len(names) - 1
            value = _field(value, name, args if last else (), where)
            where = f"{where}.{name}"
        return value


def _describe(node: _Operand) -> str:
    if isinstance(node, _Literal):
        return go_text(node.value)
    if isinstance(node, _Var):
        return node.name
    return "."
