"""rootless.record: typing.NamedTuple's class syntax, collections.namedtuple at run time."""

from __future__ import annotations

import pickle

import pytest

from rootless.record import Record


class Point(Record):
    """A point."""

    x: int
    y: int = 0

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


def test_fields_defaults_methods_and_docstring() -> None:
    p = Point(3)
    assert (p.x, p.y, p.norm1()) == (3, 0, 3)
    assert p == Point(x=3, y=0) and p != Point(3, 1)
    assert p._replace(y=-4).norm1() == 7
    assert Point._fields == ("x", "y") and Point.__doc__ == "A point."
    assert repr(p) == "Point(x=3, y=0)"


def test_immutable_and_pickled_by_name() -> None:
    p = Point(1, 2)
    with pytest.raises(AttributeError):
        p.x = 5  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(p)) == p
    assert Point.__module__ == __name__ and Point.__qualname__ == "Point"


def test_a_field_without_a_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="without a default follows"):

        class Bad(Record):
            a: int = 0
            b: int
