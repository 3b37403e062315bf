"""The ``information_schema`` views modelwatch reads, declared once.

``information_schema`` rather than ``sa.inspect``: it reads the same in DuckDB and PostgreSQL, and
duckdb-engine's reflection does not work with SQLAlchemy 2.1.
"""

from __future__ import annotations

import sqlalchemy as sa

from modelwatch.config import MonitorConfig


def _view(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *[sa.column(c) for c in columns], schema="information_schema")


COLUMNS = _view("columns", "table_schema", "table_name", "column_name", "data_type", "is_nullable")
TABLE_CONSTRAINTS = _view(
    "table_constraints", "constraint_name", "constraint_schema", "table_schema", "table_name", "constraint_type"
)
KEY_COLUMN_USAGE = _view("key_column_usage", "constraint_name", "constraint_schema", "table_name", "column_name")


def in_schema(column: sa.ColumnElement[str], schema: str | None) -> sa.ColumnElement[bool]:
    """``column`` equals ``schema``, or the connection's current schema when it is None."""
    return column == (sa.literal(schema) if schema else sa.func.current_schema())


_NUMERIC_TYPE_WORDS = ("int", "double", "float", "real", "decimal", "numeric")
_TEXT_TYPE_WORDS = ("char", "text", "string")


def type_family(data_type: str) -> str:
    """'numeric', 'text', 'timestamp' or the type itself (lower case): what decides whether a column can be
    a score, a timestamp or be compared with another one (INTEGER vs BIGINT compare; INTEGER vs VARCHAR not)."""
    kind = data_type.lower()
    if "interval" in kind:  # before 'int'
        return kind
    if "timestamp" in kind or kind in ("date", "datetime"):
        return "timestamp"
    if any(word in kind for word in _NUMERIC_TYPE_WORDS):
        return "numeric"
    if any(word in kind for word in _TEXT_TYPE_WORDS):
        return "text"
    return kind


def column_type_problems(monitor: MonitorConfig, types: dict[tuple[str, str], str]) -> list[str]:
    """Columns whose declared type cannot serve their role: 'table.column is FOUND, expected ...'."""
    p, lab = monitor.predictions, monitor.labels
    expected = {(p.table, p.timestamp): "timestamp", (lab.table, lab.timestamp): "timestamp"}
    for column in [*filter(None, [p.score]), *p.class_scores.values()]:
        expected[(p.table, column)] = "numeric"
    problems = [
        f"{table}.{column} is {types[(table, column)]}, expected a {family} type"
        for (table, column), family in expected.items()
        if type_family(types[(table, column)]) != family
    ]
    for ours, theirs in zip(p.request_id, lab.request_id, strict=False):
        found, other = types[(p.table, ours)], types[(lab.table, theirs)]
        if type_family(found) != type_family(other):
            problems.append(
                f"{p.table}.{ours} is {found} but {lab.table}.{theirs} is {other}: "
                "request ids must have comparable types to be joined"
            )
    return problems
