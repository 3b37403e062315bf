"""The ``information_schema`` views modelwatch reads, declared once, and the checks built on them: which
columns a table has (:func:`table_columns`) and whether a monitor's tables can serve it (:func:`validate_schema`).

``information_schema`` rather than ``sa.inspect``: it reads the same in DuckDB and PostgreSQL, and
duckdb-engine's reflection does not work with SQLAlchemy 2.1.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.core.config import MonitorConfig
from modelwatch.warehouse.caching import ExpiringCache


def _view(name: str, *columns: str) -> sa.TableClause:
    return sa.table(name, *[sa.column(c) for c in columns], schema="information_schema")


COLUMNS = _view("columns", "table_schema", "table_name", "column_name", "data_type", "is_nullable")
TABLE_CONSTRAINTS = _view(
    "table_constraints", "constraint_name", "constraint_schema", "table_schema", "table_name", "constraint_type"
)
SCHEMATA = _view("schemata", "schema_name")
KEY_COLUMN_USAGE = _view("key_column_usage", "constraint_name", "constraint_schema", "table_name", "column_name")


def in_schema(column: sa.ColumnElement[str], schema: str | None) -> sa.ColumnElement[bool]:
    """``column`` equals ``schema``, or the connection's current schema when it is None."""
    return column == (sa.literal(schema) if schema else sa.func.current_schema())


_NUMERIC_TYPES = {
    *("SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "TINYINT", "INT", "INT2", "INT4", "INT8"),
    *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"),
    *("DOUBLE", "DOUBLE PRECISION", "REAL", "FLOAT", "FLOAT4", "FLOAT8", "NUMERIC", "DECIMAL"),
}
_TEXT_TYPES = {"TEXT", "VARCHAR", "CHARACTER VARYING", "CHARACTER", "CHAR", "BPCHAR", "STRING"}


def type_family(data_type: str) -> str:
    """'numeric', 'boolean', 'text', 'timestamp' or the type itself (lower case): what decides whether a
    column can be a score, a timestamp or be compared with another one (INTEGER vs BIGINT compare; INTEGER
    vs VARCHAR not). Names are matched whole, as information_schema spells them on DuckDB and PostgreSQL
    (``DECIMAL(18,3)`` is DECIMAL; ``INTEGER[]`` or ``point`` are not numeric)."""
    name = data_type.upper().split("(")[0].strip()
    if name in _NUMERIC_TYPES:
        return "numeric"
    if name in ("BOOLEAN", "BOOL"):
        return "boolean"
    if name in _TEXT_TYPES:
        return "text"
    if name.startswith("TIMESTAMP") or name in ("DATE", "DATETIME"):
        return "timestamp"
    return data_type.lower()


def table_column_types(conn: Connection, table: str, schema: str | None) -> dict[str, str]:
    """Column name -> declared type of ``table`` (empty when it does not exist), the one catalogue read.

    SQLAlchemy's reflection fails on DuckDB, so this reads information_schema; ``schema`` None means the
    connection's current schema on every dialect.
    """
    query = sa.select(COLUMNS.c.column_name, COLUMNS.c.data_type).where(
        COLUMNS.c.table_name == table, in_schema(COLUMNS.c.table_schema, schema)
    )
    return {str(name): str(data_type) for name, data_type in conn.execute(query)}


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


class WarehouseSchemaError(ValueError):
    """A configured table or column does not exist in the warehouse."""


def table_columns(engine: Engine, table: str, *, schema: str | None = None) -> dict[str, str]:
    """Column name -> declared type of ``table``; empty when the table does not exist."""
    with engine.connect() as conn:
        return table_column_types(conn, table, schema)


_VALIDATED: ExpiringCache[None] = ExpiringCache(seconds=None)
"""(engine, ``config_hash``) pairs validated by this process: checked once per engine and monitor version."""


def validate_schema(engine: Engine, monitor: MonitorConfig) -> None:
    """Fail early, naming the table and column, before any heavy query runs (once per engine and process).

    Raises:
        WarehouseSchemaError: a configured table or column is missing, or a column's type cannot serve its
            role (a text score, timestamps stored as text, request ids of different types).
    """
    _VALIDATED.get(monitor.config_hash, lambda: _check_schema(engine, monitor), engine=engine)


def _check_schema(engine: Engine, monitor: MonitorConfig) -> None:
    p, lab = monitor.predictions, monitor.labels
    expected = {
        (p.db_schema, p.table): {
            *p.request_id,
            p.timestamp,
            *filter(None, [p.model_version, p.score, p.predicted_label]),
            *p.class_scores.values(),
            *p.segments,
        },
        (lab.db_schema, lab.table): {*lab.request_id, lab.timestamp, lab.label},
    }
    types: dict[tuple[str, str], str] = {}
    for (schema, table), columns in expected.items():
        present = table_columns(engine, table, schema=schema)
        if not present:
            raise WarehouseSchemaError(f"monitor {monitor.name!r}: table {table!r} not found in the warehouse")
        missing = sorted(columns - set(present))
        if missing:
            raise WarehouseSchemaError(
                f"monitor {monitor.name!r}: table {table!r} has no column(s) {', '.join(missing)} "
                f"(columns present: {', '.join(sorted(present))})"
            )
        types.update({(table, name): kind for name, kind in present.items()})
    problems = column_type_problems(monitor, types)
    if problems:
        raise WarehouseSchemaError(f"monitor {monitor.name!r}: wrong column type(s): {'; '.join(problems)}")
