"""Value-level SQL of the window statements: classes compared in the column's own type, finiteness, and
sums whose result does not depend on the order rows are added in.

Identifiers are never interpolated here; the few constants rendered into SQL text (the fixed-point unit and
limit of :class:`exact_sum`) are this module's own numbers, since a cast's type takes no bound parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from modelwatch.core.config import MonitorConfig, Task

NUMERIC, BOOLEAN, TEXT = "numeric", "boolean", "text"
"""Kinds of a label (or predicted-label) column: classes are compared by value in the column's own type."""


@dataclass(frozen=True)
class ColumnKinds:
    """The kinds (``NUMERIC``, ``BOOLEAN``, ``TEXT``) of the class-valued columns, read from the catalogue.

    A numeric label column compares with a class's number (DOUBLE 1.0 is class "1"); a BOOLEAN one maps
    TRUE to the positive class (``classes[1]``) and FALSE to the negative one (multiclass: to classes
    "true"/"1" and "false"/"0"); anything else compares as text.
    """

    label: str = TEXT
    predicted_label: str = TEXT


@dataclass(frozen=True)
class FixedPoint:
    """How DuckDB sums one kind of value exactly: as integers of ``2**bits`` units, when ``abs(x) < limit``."""

    bits: int
    integer: str
    limit: float


BOUNDED = FixedPoint(50, "BIGINT", 8000.0)
"""Probabilities, losses, squared probability errors (at most ~36 a row): units of 2**-50 (~1e-15)."""
UNBOUNDED = FixedPoint(40, "HUGEINT", 1e26)
"""Regression values: units of 2**-40 (~1e-12), up to 1e26 (HUGEINT holds 1.7e38)."""


class exact_sum(FunctionElement):
    """``sum(x)`` whose result does not depend on the order rows are added in.

    DuckDB adds doubles in parallel in whatever order its threads finish, so re-runs of a window differed
    in the last digits. On DuckDB each value is therefore rounded to a multiple of ``2**-bits`` and the
    integers are summed (exact, and nearly as fast as the float sum); values beyond the limit, inf and NaN
    are added as doubles instead of failing the statement. PostgreSQL keeps its float sum.
    """

    type = sa.Double()
    inherit_cache = True
    name = "exact_sum"
    fixed: ClassVar[FixedPoint] = BOUNDED


class regression_sum(exact_sum):
    """:class:`exact_sum` of unbounded values (a class of its own: the class is part of the cache key)."""

    inherit_cache = True
    fixed = UNBOUNDED


@compiles(exact_sum)
def _float_sum(element: exact_sum, compiler, **kw) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(exact_sum, "duckdb")
def _fixed_point_sum(element: exact_sum, compiler, **kw) -> str:
    x = compiler.process(element.clauses, **kw)
    fixed = element.fixed
    # Constants of this module, not values (a cast's type takes no bound parameter); 2**bits is exact.
    unit, fits = f"{float(2**fixed.bits)!r}", f"abs({x}) < {fixed.limit!r}"
    return (
        f"(coalesce(sum(CASE WHEN {fits} THEN CAST(({x}) * {unit} AS {fixed.integer}) END), 0) / {unit}"
        f" + coalesce(sum(CASE WHEN NOT ({fits}) THEN {x} END), 0))"
    )


def typed(column: ColumnElement, kind: str) -> ColumnElement:
    """A class-valued column in the type its classes are compared in (see :class:`ColumnKinds`)."""
    if kind == NUMERIC:
        return sa.cast(column, sa.Double)
    return column if kind == BOOLEAN else sa.cast(column, sa.String)


def classes_of(monitor: MonitorConfig) -> tuple[str, ...]:
    return monitor.classes or ("0", "1")


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_TRUE_CLASSES, _FALSE_CLASSES = ("true", "1"), ("false", "0")


def is_class(monitor: MonitorConfig, value: ColumnElement, kind: str, cls: str) -> ColumnElement[bool]:
    """``value`` (a column of ``kind``, see :func:`typed`) is class ``cls``, compared by value in its own type."""
    if kind == NUMERIC:
        number = _number(cls)
        return sa.false() if number is None else value == sa.literal(number, sa.Double)
    if kind == BOOLEAN:
        if monitor.task is Task.BINARY:
            negative, positive = classes_of(monitor)
            truth = True if cls == positive else False if cls == negative else None
        else:
            lowered = cls.lower()
            truth = True if lowered in _TRUE_CLASSES else False if lowered in _FALSE_CLASSES else None
        return sa.false() if truth is None else value.is_(sa.true() if truth else sa.false())
    return value == cls


def any_class(monitor: MonitorConfig, value: ColumnElement, kind: str) -> ColumnElement[bool]:
    return sa.or_(*[is_class(monitor, value, kind, cls) for cls in monitor.classes])


def class_text(monitor: MonitorConfig, value: ColumnElement, kind: str) -> ColumnElement:
    """The configured class (as text) that ``value`` is, else NULL."""
    return sa.case(*[(is_class(monitor, value, kind, cls), cls) for cls in monitor.classes], else_=None)


def finite(value: ColumnElement) -> ColumnElement[bool]:
    # NaN sorts above +inf on both engines, so it fails the upper comparison; NULL is handled before.
    return sa.and_(value > sa.literal(-math.inf, sa.Double), value < sa.literal(math.inf, sa.Double))
