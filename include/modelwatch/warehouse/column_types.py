"""The types of the columns a window compares, read from ``information_schema``.

Labels and predicted labels are compared with the configured classes by value in their own type (a DOUBLE
label 1.0 is class "1", see :class:`~modelwatch.warehouse.sql_values.ColumnKinds`). Request ids are joined
column by column; ids of different kinds in the two tables (BIGINT predictions, TEXT labels) would join on
DuckDB by an implicit cast and fail on PostgreSQL, so both engines refuse them with one clear error instead.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from modelwatch.core.config import MonitorConfig
from modelwatch.warehouse.caching import ExpiringCache
from modelwatch.warehouse.catalog import table_column_types, type_family
from modelwatch.warehouse.sql_values import BOOLEAN, NUMERIC, TEXT, ColumnKinds


class RequestIdTypeError(TypeError):
    """The request-id columns of the predictions and labels tables have types that do not compare."""


def kind_of(data_type: str | None) -> str:
    """``NUMERIC``, ``BOOLEAN``, ``TEXT`` or, for other types, the type's own name (e.g. ``UUID``)."""
    family = type_family(data_type or "")
    if family in (NUMERIC, BOOLEAN, TEXT):
        return family
    return (data_type or "").upper().split("(")[0].strip() or TEXT


def _class_kind(data_type: str | None) -> str:
    """Class-valued columns of other types (dates, uuids) compare as text."""
    kind = kind_of(data_type)
    return kind if kind in (NUMERIC, BOOLEAN) else TEXT


_COLUMN_KINDS: ExpiringCache[ColumnKinds] = ExpiringCache()
"""Per engine, for the default time (the catalogue query costs as much as a small window)."""


def column_kinds(conn: Connection, monitor: MonitorConfig) -> ColumnKinds:
    """The kinds of the monitor's label and predicted-label columns; checks that request ids compare.

    Raises:
        RequestIdTypeError: a request-id column of the predictions table and its labels counterpart have
            different kinds (the message names both tables, columns and types).
    """
    p, lab = monitor.predictions, monitor.labels
    key = (p.db_schema, p.table, tuple(p.request_id), p.predicted_label, lab.db_schema, lab.table, lab.label)
    return _COLUMN_KINDS.get(key, lambda: _read_column_kinds(conn, monitor), engine=conn.engine)


def _read_column_kinds(conn: Connection, monitor: MonitorConfig) -> ColumnKinds:
    p, lab = monitor.predictions, monitor.labels
    predictions = table_column_types(conn, p.table, p.db_schema)
    labels = table_column_types(conn, lab.table, lab.db_schema)
    for pk, lk in zip(p.request_id, lab.request_id, strict=True):
        left, right = predictions.get(pk), labels.get(lk)
        if left and right and type_family(left) != type_family(right):
            raise RequestIdTypeError(
                f"monitor {monitor.name!r}: request id {p.table}.{pk} is {left.upper()} but {lab.table}.{lk} is "
                f"{right.upper()}; "
                "ids of different types cannot be joined: store them with one type (or point the monitor at a "
                "view that casts one side)"
            )
    return ColumnKinds(
        label=_class_kind(labels.get(lab.label)),
        predicted_label=_class_kind(predictions.get(p.predicted_label)) if p.predicted_label else TEXT,
    )
