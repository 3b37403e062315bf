"""Whether the warehouse guarantees one row per request id, so a window can skip the de-duplication.

De-duplicating a window (latest row per id, on both tables) is most of the cost of its statistics: at 10M
rows on two cores DuckDB spends ~7 s sorting and hashing ids it then mostly keeps. A table whose PRIMARY
KEY, or a UNIQUE constraint over NOT NULL columns, lies within the request-id columns cannot hold two rows
of one id, so its rows are used as they are: same results, by the database's own guarantee. Only enforced
constraints count: a column merely named ``request_id`` proves nothing.
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from modelwatch.core.config import MonitorConfig
from modelwatch.warehouse.caching import ExpiringCache
from modelwatch.warehouse.catalog import COLUMNS, KEY_COLUMN_USAGE, TABLE_CONSTRAINTS, in_schema
from modelwatch.warehouse.window_sql import UniqueIds


def table_has_unique_ids(conn: Connection, table: str, schema: str | None, id_columns: tuple[str, ...]) -> bool:
    """True when a PRIMARY KEY, or a UNIQUE constraint on NOT NULL columns, uses only ``id_columns``."""
    tc, kcu, cols = TABLE_CONSTRAINTS, KEY_COLUMN_USAGE, COLUMNS

    def same(left: sa.TableClause, right: sa.TableClause, *names: str) -> sa.ColumnElement[bool]:
        return sa.and_(*[left.c[n] == right.c[n] for n in names])

    query = (
        sa.select(tc.c.constraint_name, tc.c.constraint_type, kcu.c.column_name, cols.c.is_nullable)
        .join(kcu, same(kcu, tc, "constraint_name", "constraint_schema", "table_name"))
        .join(cols, sa.and_(same(cols, tc, "table_name", "table_schema"), cols.c.column_name == kcu.c.column_name))
        .where(
            tc.c.table_name == table,
            in_schema(tc.c.table_schema, schema),
            tc.c.constraint_type.in_(["PRIMARY KEY", "UNIQUE"]),
        )
    )
    constraints: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for name, kind, column, nullable in conn.execute(query):
        constraints[(str(name), str(kind))].append((str(column), str(nullable).upper() == "YES"))
    for (_, kind), members in constraints.items():
        within = all(column in id_columns for column, _ in members)
        if within and (kind == "PRIMARY KEY" or not any(nullable for _, nullable in members)):
            return True
    return False


_UNIQUE_IDS: ExpiringCache[UniqueIds] = ExpiringCache()
"""Per engine, for the default time: the catalogue query costs DuckDB 20-60 ms and constraints change rarely."""


def unique_ids(conn: Connection, monitor: MonitorConfig) -> UniqueIds:
    """Which of the monitor's two tables hold at most one row per request id (see the module docstring)."""
    p, lab = monitor.predictions, monitor.labels
    key = (p.db_schema, p.table, tuple(p.request_id), lab.db_schema, lab.table, tuple(lab.request_id))
    return _UNIQUE_IDS.get(
        key,
        lambda: UniqueIds(
            predictions=table_has_unique_ids(conn, p.table, p.db_schema, tuple(p.request_id)),
            labels=table_has_unique_ids(conn, lab.table, lab.db_schema, tuple(lab.request_id)),
        ),
        engine=conn.engine,
    )
