"""`Record`: typing.NamedTuple's class syntax for mypy, collections.namedtuple at run time.

`rsbox exec` imports the launcher's value classes (become.Process, protocol's helpers,
userdb.ExecUser) and nothing else of rsbox's start path. Under load, measured with
`-X importtime` and process CPU time: typing costs it ~5 ms and dataclasses ~10 ms (of a
command that now takes ~40 ms), collections.namedtuple nothing (enum has already imported
collections).
A class written as

    class Point(Record):
        x: int
        y: int = 0

is, for mypy, exactly a typing.NamedTuple, and at run time the namedtuple of the same
fields, defaults, docstring and methods (it pickles by its module and name, as Launch
must).
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any
    from typing import NamedTuple as Record
else:

    class _RecordMeta(type):
        def __new__(mcls, name: str, bases: tuple[type, ...], ns: dict[str, Any]) -> type:
            if not bases:  # Record itself
                return super().__new__(mcls, name, bases, ns)
            fields = list(ns.get("__annotations__", {}))
            defaults = [ns[f] for f in fields if f in ns]
            if any(f not in ns for f in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            cls = collections.namedtuple(name, fields, defaults=defaults, module=ns["__module__"])
            cls.__qualname__ = ns["__qualname__"]
            cls.__doc__ = ns.get("__doc__") or cls.__doc__
            for key, value in ns.items():  # methods, properties, class constants
                if key not in fields and not (key.startswith("__") and key.endswith("__")):
                    setattr(cls, key, value)
            return cls

    class Record(metaclass=_RecordMeta):
        pass


__all__ = ["Record"]
