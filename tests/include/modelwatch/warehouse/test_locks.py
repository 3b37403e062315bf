from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from modelwatch.warehouse.locks import window_lock


def _contended(engine: sa.Engine) -> list[tuple[str, str]]:
    """Two threads take the same lock; each records enter/leave. Overlap would interleave them."""
    events: list[tuple[str, str]] = []

    def worker(name: str) -> None:
        with window_lock(engine, "mlflow:churn:hourly:2026-11-03T06:00"):
            events.append((name, "enter"))
            time.sleep(0.2)
            events.append((name, "leave"))

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return events


def _serialized(events: list[tuple[str, str]]) -> bool:
    return [kind for _, kind in events] == ["enter", "leave", "enter", "leave"] and events[0][0] == events[1][0]


def test_duckdb_window_lock_serializes_threads(tmp_path):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert _serialized(_contended(engine))


def test_postgres_advisory_lock_serializes_connections(postgres_engine):
    assert _serialized(_contended(postgres_engine))


def test_different_windows_do_not_wait_for_each_other(tmp_path):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with window_lock(engine, "a"):
        done = threading.Event()
        threading.Thread(target=lambda: (window_lock(engine, "b").__enter__(), done.set())).start()
        assert done.wait(2)
