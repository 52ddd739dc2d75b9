"""`Record`: typing.NamedTuple's class syntax for mypy, a tuple class of ours at run time.

`rsbox exec` and every environment shim import the launcher's value classes
(become.Process, protocol's helpers, userdb.ExecUser) and nothing else of rsbox's start
path. Measured with `-X importtime` and process CPU time: typing costs it ~5 ms and
dataclasses ~10 ms; collections (for namedtuple) ~4 ms of an idle shim's ~29 ms once
`signal`'s enums were gone (rootless.signals), so the tuple class is made here: fields
as itemgetter properties, defaults, keyword arguments, `_replace`, `_fields`, `_asdict`,
a namedtuple's repr, and pickling by module and name (as Launch must).
A class written as

    class Point(Record):
        x: int
        y: int = 0

is, for mypy, exactly a typing.NamedTuple, and at run time a tuple of the same fields,
defaults, docstring and methods.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:
    from _operator import itemgetter  # operator's C half: no Python module to import

    def _tuple_class(name: str, ns: dict[str, Any]) -> type:
        fields = tuple(ns.get("__annotations__", {}))
        defaults = {f: ns[f] for f in fields if f in ns}
        if any(f not in defaults for f in fields[len(fields) - len(defaults) :]):
            raise TypeError(f"{name}: a field without a default follows one with a default")

        def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
            if len(args) > len(fields):
                raise TypeError(f"{name}() takes {len(fields)} arguments, {len(args)} given")
            values = list(args)
            for f in fields[len(args) :]:
                if f in kwargs:
                    values.append(kwargs.pop(f))
                elif f in defaults:
                    values.append(defaults[f])
                else:
                    raise TypeError(f"{name}() missing argument {f!r}")
            if kwargs:
                raise TypeError(f"{name}() got unexpected arguments {', '.join(kwargs)}")
            return tuple.__new__(cls, values)

        def _replace(self: tuple[Any, ...], **kwargs: Any) -> Any:
            values = [kwargs.pop(f, v) for f, v in zip(fields, self, strict=True)]
            if kwargs:
                raise TypeError(f"{name}._replace got unexpected fields {', '.join(kwargs)}")
            return tuple.__new__(type(self), values)

        def __repr__(self: tuple[Any, ...]) -> str:
            return f"{name}({', '.join(f'{f}={v!r}' for f, v in zip(fields, self, strict=True))})"

        body: dict[str, Any] = {
            "__slots__": (),
            "__module__": ns["__module__"],
            "__qualname__": ns["__qualname__"],
            "__doc__": ns.get("__doc__") or f"{name}({', '.join(fields)})",
            "__new__": __new__,
            "__repr__": __repr__,
            "__getnewargs__": lambda self: tuple(self),
            "_fields": fields,
            "_field_defaults": defaults,
            "_replace": _replace,
            "_asdict": lambda self: dict(zip(fields, self, strict=True)),
        }
        for i, f in enumerate(fields):
            body[f] = property(itemgetter(i), doc=f"{name}.{f}")
        for key, value in ns.items():  # methods, properties, class constants
            if key not in fields and not (key.startswith("__") and key.endswith("__")):
                body[key] = value
        return type(name, (tuple,), body)

    class _RecordMeta(type):
        def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> type:
            if not bases:  # Record itself
                return super().__new__(mcls, name, bases, ns)
            return _tuple_class(name, ns)

    class Record(metaclass=_RecordMeta):
        pass


__all__ = ["Record"]
