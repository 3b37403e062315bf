"""modelwatch's own tables: created idempotently and race-free, on first use or once by ``modelwatch db migrate``.

``CREATE TABLE IF NOT EXISTS`` is check-then-create inside PostgreSQL too: two sessions that both find no
table both try to create it, and the second fails with ``DuplicateTable`` or a unique violation on
``pg_type``'s (typname, typnamespace) index (each table has a row type). Several Celery workers starting
on a fresh warehouse do exactly that. The creation therefore runs under the warehouse lock
:data:`SCHEMA_LOCK` (a PostgreSQL advisory lock; process-local on DuckDB, which has one writer process),
and a creator that does not take the lock (an older modelwatch, a DBA's script) is tolerated: such an
error is accepted when the table (or schema) now exists.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.warehouse.caching import ExpiringCache
from modelwatch.warehouse.locks import window_lock

SCHEMA_LOCK = "modelwatch:schema"
_CONCURRENT_CREATE = {"42P07", "42P06", "23505"}
"""SQLSTATEs of a concurrent creator: duplicate_table, duplicate_schema, unique_violation (pg_type, pg_namespace)."""


def all_metadata() -> tuple[sa.MetaData, ...]:
    """The metadata of every modelwatch table (results, window documents, alerts and outbox, profiles)."""
    from modelwatch.warehouse import alert_store, documents, profiles_store, results_store

    return (results_store.METADATA, documents.DOCUMENTS.metadata, alert_store.metadata, profiles_store.METADATA)


def results_schema(engine: Engine) -> str | None:
    """The schema modelwatch's tables are translated into on this engine (``make_engine(results_schema=)``)."""
    return (engine.get_execution_options().get("schema_translate_map") or {}).get(None)


def _concurrent_creator(exc: sa.exc.DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _CONCURRENT_CREATE


def create_schema(engine: Engine, schema: str) -> None:
    """Create ``schema`` unless it exists (looked up first: a role may use a schema it may not create)."""
    from modelwatch.warehouse.catalog import SCHEMATA

    def exists(conn: Connection) -> bool:
        found = conn.execute(sa.select(SCHEMATA.c.schema_name).where(SCHEMATA.c.schema_name == schema)).first()
        return found is not None

    with engine.connect() as conn:
        if exists(conn):
            return
    with window_lock(engine, SCHEMA_LOCK):
        try:
            with engine.begin() as conn:
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        except sa.exc.DBAPIError as exc:
            with engine.connect() as conn:
                if not (_concurrent_creator(exc) and exists(conn)):
                    raise


def create_tables(engine: Engine, metadata: Iterable[sa.MetaData] | None = None) -> list[str]:
    """``CREATE TABLE IF NOT EXISTS`` for each table of ``metadata`` (default: all of modelwatch's).

    Args:
        engine: The warehouse engine (with its results schema, if any).
        metadata: The tables to create; default :func:`all_metadata`.

    Returns:
        The names of the tables ensured, in creation order.
    """
    tables = [table for item in (metadata or all_metadata()) for table in item.sorted_tables]
    schema = results_schema(engine)
    with window_lock(engine, SCHEMA_LOCK):
        for table in tables:
            try:
                with engine.begin() as conn:
                    conn.execute(sa.schema.CreateTable(table, if_not_exists=True))
            except sa.exc.DBAPIError as exc:
                if not (_concurrent_creator(exc) and sa.inspect(engine).has_table(table.name, schema=schema)):
                    raise
    return [table.name for table in tables]


_ENSURED: ExpiringCache[list[str]] = ExpiringCache(seconds=None)
"""Engines whose tables this process ensured (weak: a new engine never inherits a dead one's)."""


def ensure_once(engine: Engine) -> None:
    """:func:`create_tables` once per engine and process (each pass costs a lock and catalog queries)."""
    _ENSURED.get("tables", lambda: create_tables(engine), engine=engine)
