"""First use of a fresh warehouse by many workers at once: every table created once, no creator fails.

Real concurrency: separate processes (PostgreSQL) released together by a barrier, threads on one DuckDB
file, and a creator that holds an uncommitted ``CREATE TABLE`` (as one without the lock would).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from modelwatch.warehouse import alert_store
from modelwatch.warehouse.engine import make_engine
from modelwatch.warehouse.schema import all_metadata, create_tables
from tests.concurrency import WORKERS, in_processes

TABLES = {
    "modelwatch_metric_results",
    "modelwatch_window_stats",
    "modelwatch_window_documents",
    "modelwatch_alerts",
    "modelwatch_alert_ticks",
    "modelwatch_alert_outbox",
    "modelwatch_profile_edges",
    "modelwatch_profiles",
}


def _migrate(barrier, url: str, schema: str) -> None:
    engine = make_engine(url, results_schema=None)
    engine.connect().close()  # connect before the barrier: the race is about the DDL, not the login
    barrier.wait(timeout=60)
    create_tables(make_engine(url, results_schema=schema))


def _tables(url: str, schema: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names(schema=schema))
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_concurrent_first_use_by_processes_creates_schema_and_tables_once(postgres_schema):
    url, schema = postgres_schema
    errors = in_processes(_migrate, url, schema)
    assert not errors, errors[0]
    assert _tables(url, schema) == TABLES


@pytest.mark.postgres
def test_a_creator_that_takes_no_lock_is_tolerated(postgres_schema):
    """An uncommitted CREATE TABLE of another session: ours waits on pg_type's index, then finds the table."""
    url, schema = postgres_schema
    engine = make_engine(url, results_schema=schema)
    other = sa.create_engine(url)
    outcome: list[BaseException | None] = []
    with other.connect() as conn:
        transaction = conn.begin()
        table = alert_store.alerts_table.to_metadata(sa.MetaData(), schema=schema)
        conn.execute(sa.schema.CreateTable(table))
        worker = threading.Thread(target=lambda: outcome.append(_attempt(lambda: create_tables(engine))))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive(), "create_tables did not wait for the other session's CREATE TABLE"
        transaction.commit()
    worker.join(timeout=30)
    other.dispose()
    assert outcome == [None], outcome
    assert _tables(url, schema) == TABLES


def _attempt(action: Callable[[], object]) -> BaseException | None:
    try:
        action()
    except BaseException as exc:
        return exc
    return None


def test_concurrent_first_use_by_threads_on_duckdb(tmp_path):
    engine = make_engine(f"duckdb:///{tmp_path / 'warehouse.duckdb'}", results_schema="modelwatch")
    barrier = threading.Barrier(WORKERS)
    outcomes: list[BaseException | None] = []

    def worker() -> None:
        barrier.wait(timeout=30)
        outcomes.append(_attempt(lambda: create_tables(engine)))

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert outcomes == [None] * WORKERS, outcomes
    assert set(sa.inspect(engine).get_table_names(schema="modelwatch")) == TABLES
    engine.dispose()


def test_create_tables_twice_changes_nothing(duckdb_engine):
    first = create_tables(duckdb_engine)
    with duckdb_engine.begin() as conn:
        conn.execute(alert_store.outbox_table.delete())  # a statement on the table: it exists and is usable
    assert create_tables(duckdb_engine) == first
    assert set(first) == TABLES == {t.name for m in all_metadata() for t in m.sorted_tables}
