"""The ``information_schema`` views modelwatch reads, declared once.

``information_schema`` rather than ``sa.inspect``: it reads the same in DuckDB and PostgreSQL, and
duckdb-engine's reflection does not work with SQLAlchemy 2.1.
"""

from __future__ import annotations

import sqlalchemy as sa


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
