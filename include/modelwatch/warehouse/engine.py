"""SQLAlchemy engines for the warehouse (DuckDB file or PostgreSQL) and a fast bulk loader.

DuckDB holds an exclusive file lock while a connection is open, and Airflow runs every task in its own
process. DuckDB engines therefore use ``NullPool``: each ``engine.connect()`` opens the file and closing
the connection releases it, so tasks (threads or processes) can use the same file one after another.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool, StaticPool

KEEP_OPEN_ENV = "MODELWATCH_DUCKDB_KEEP_OPEN"
"""Set to 1 when one process owns the DuckDB file (demo, dag.test): one connection is kept open instead
of opening the file ~45 ms per use. Never with several worker processes: they would wait on its lock."""

MEMORY_LIMIT_ENV = "MODELWATCH_DUCKDB_MEMORY_LIMIT"
"""DuckDB ``memory_limit`` per connection (e.g. ``512MB``); default :data:`DEFAULT_MEMORY_LIMIT`."""
THREADS_ENV = "MODELWATCH_DUCKDB_THREADS"
"""DuckDB ``threads`` per connection; default: DuckDB's own (one per core)."""
DEFAULT_MEMORY_LIMIT = "768MB"
"""Past it DuckDB spills hash tables and sorts to disk instead of growing: a 10M-row window's
de-duplication otherwise peaks at several GB, on workers that run several tasks side by side."""
_MEMORY = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)

_ENGINES: dict[tuple[str, str | None, timedelta | None], Engine] = {}
_ENGINES_LOCK = threading.Lock()

UNREACHABLE_ERRORS: tuple[type[Exception], ...] = (sa.exc.OperationalError, sa.exc.InterfaceError)
"""What a warehouse that cannot be reached raises (down, wrong host, bad password, file locked)."""


def resolve_url(url: str, *, root: Path | None = None) -> str:
    """Normalise a warehouse URL.

    Relative DuckDB paths (``duckdb:///.modelwatch/warehouse.duckdb``) are resolved against ``root``
    (default: env ``MODELWATCH_ROOT``, else the current directory) and the parent directory is created.
    A plain ``postgresql://`` URL gets the psycopg 3 driver (``postgresql+psycopg://``).

    Args:
        url: A SQLAlchemy URL.
        root: Directory that relative DuckDB paths are relative to.

    Returns:
        The URL as a string, passwords included (never log it).
    """
    parsed = make_url(url)
    if parsed.drivername == "duckdb":
        database = parsed.database or ""
        if not database or database == ":memory:":
            return url  # in-memory: nothing to resolve (and each NullPool connection is a fresh database)
        path = Path(database).expanduser()
        if not path.is_absolute():
            base = root if root is not None else Path(os.environ.get("MODELWATCH_ROOT") or Path.cwd())
            path = Path(base) / path
        path.parent.mkdir(parents=True, exist_ok=True)
        parsed = parsed.set(database=str(path))
    elif parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, results_schema: str | None = None, statement_timeout: timedelta | None = None) -> Engine:
    """Return the process-wide engine for ``url`` and these settings (cached).

    Args:
        url: A SQLAlchemy URL; see :func:`resolve_url`.
        results_schema: Schema of modelwatch's own tables (``sa.Table``; created when missing). The
            monitored tables are unaffected: they are named with their own schema or none.
        statement_timeout: PostgreSQL ``statement_timeout`` of every session (DuckDB has none: the
            task's ``execution_timeout`` bounds it).

    Returns:
        An engine; DuckDB engines open and close the file per connection (``NullPool``).
    """
    resolved = resolve_url(url)
    if make_url(resolved).drivername == "duckdb":
        statement_timeout = None
    key = (resolved, results_schema, statement_timeout)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _create_engine(resolved, statement_timeout)
            if results_schema:
                from modelwatch.warehouse.schema import create_schema

                create_schema(engine, results_schema)
                # Translates only sa.Table objects (modelwatch's tables), never sa.table() clauses.
                engine = engine.execution_options(schema_translate_map={None: results_schema})
            _ENGINES[key] = engine
        return engine


def _create_engine(resolved: str, statement_timeout: timedelta | None) -> Engine:
    if make_url(resolved).drivername == "duckdb":
        pool = StaticPool if os.environ.get(KEEP_OPEN_ENV) == "1" else NullPool
        engine = sa.create_engine(resolved, poolclass=pool)
        _configure_duckdb(engine)
        return engine
    engine = sa.create_engine(resolved, pool_pre_ping=True)
    if statement_timeout is not None and engine.dialect.name == "postgresql":
        _set_statement_timeout(engine, statement_timeout)
    return engine


def _set_statement_timeout(engine: Engine, timeout: timedelta) -> None:
    value = f"{max(1, int(timeout.total_seconds() * 1000))}ms"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT set_config('statement_timeout', %s, false)", (value,))
        finally:
            cursor.close()
        dbapi_connection.commit()  # a session setting made in a rolled-back transaction would be undone


def duckdb_settings() -> dict[str, str]:
    """The settings every DuckDB connection of :func:`make_engine` gets (validated: they are SQL text)."""
    memory = os.environ.get(MEMORY_LIMIT_ENV) or DEFAULT_MEMORY_LIMIT
    if not _MEMORY.match(memory):
        raise ValueError(f"{MEMORY_LIMIT_ENV}={memory!r}: expected a size such as 512MB or 2GB")
    # Aggregates need no row order; dropping it lets DuckDB stream instead of buffering in order.
    settings = {"preserve_insertion_order": "false", "memory_limit": f"'{memory}'"}
    threads = os.environ.get(THREADS_ENV)
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"{THREADS_ENV}={threads!r}: expected a positive integer")
        settings["threads"] = threads
    return settings


def _configure_duckdb(engine: Engine) -> None:
    settings = duckdb_settings()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SET takes no bound parameters; the values were validated above and names are constants.
        for name, value in settings.items():
            dbapi_connection.execute(f"SET {name} = {value}")


def _is_duckdb(engine: Engine) -> bool:
    return engine.dialect.name == "duckdb"


def _sql_type(dtype: object) -> sa.types.TypeEngine:
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Double()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return sa.DateTime()
    return sa.Text()


def _naive_utc_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps are stored naive UTC everywhere; convert tz-aware columns once here."""
    aware = [c for c in frame.columns if isinstance(frame[c].dtype, pd.DatetimeTZDtype)]
    if not aware:
        return frame
    frame = frame.copy()
    for name in aware:
        frame[name] = frame[name].dt.tz_convert("UTC").dt.tz_localize(None)
    return frame


def _frame_table(table: str, frame: pd.DataFrame, schema: str | None) -> sa.Table:
    columns = [sa.Column(str(name), _sql_type(dtype)) for name, dtype in frame.dtypes.items()]
    return sa.Table(table, sa.MetaData(), *columns, schema=schema)


def _load_duckdb(engine: Engine, target: sa.Table, frame: pd.DataFrame, replace: bool) -> None:
    quoted = engine.dialect.identifier_preparer.format_table(target)
    view = "_modelwatch_load_frame"
    with engine.begin() as conn:
        if target.schema:
            conn.execute(sa.schema.CreateSchema(target.schema, if_not_exists=True))
        raw = conn.connection.driver_connection
        # Registering the frame lets DuckDB scan pandas memory directly (no row-by-row INSERT).
        raw.register(view, frame)
        try:
            if replace:
                raw.execute(f"CREATE OR REPLACE TABLE {quoted} AS SELECT * FROM {view}")
            else:
                raw.execute(f"CREATE TABLE IF NOT EXISTS {quoted} AS SELECT * FROM {view} LIMIT 0")
                raw.execute(f"INSERT INTO {quoted} BY NAME SELECT * FROM {view}")
        finally:
            raw.unregister(view)


def _load_postgres(engine: Engine, target: sa.Table, frame: pd.DataFrame, replace: bool) -> None:
    from psycopg import sql  # edge-only dependency, imported where it is used

    parts = (target.schema, target.name) if target.schema else (target.name,)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(*parts), sql.SQL(", ").join(sql.Identifier(str(c)) for c in frame.columns)
    )
    with engine.begin() as conn:
        if target.schema:
            conn.execute(sa.schema.CreateSchema(target.schema, if_not_exists=True))
        if replace:
            target.drop(conn, checkfirst=True)
        target.create(conn, checkfirst=True)
        cursor = conn.connection.driver_connection.cursor()
        # COPY is the fast path; NaN/NaT become NULL, never a coerced value.
        rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
        with cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)


def load_frame(
    engine: Engine, table: str, frame: pd.DataFrame, *, schema: str | None = None, replace: bool = True
) -> int:
    """Bulk-load a DataFrame into ``table``.

    DuckDB scans the registered DataFrame natively; PostgreSQL uses ``COPY``. Identifiers are quoted by
    the dialect. With ``replace`` the table is recreated from the frame's columns, otherwise rows are
    appended (the table is created first when missing).

    Args:
        engine: Target warehouse.
        table: Table name.
        frame: Rows to write; tz-aware timestamps are stored as naive UTC.
        schema: Optional schema (created when missing).
        replace: Recreate the table instead of appending.

    Returns:
        The number of rows written.
    """
    frame = _naive_utc_frame(frame)
    target = _frame_table(table, frame, schema)
    if _is_duckdb(engine):
        _load_duckdb(engine, target, frame, replace)
    else:
        _load_postgres(engine, target, frame, replace)
    return len(frame)
