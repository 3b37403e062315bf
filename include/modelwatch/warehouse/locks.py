"""Per-window mutual exclusion, held in the warehouse so it spans Airflow worker processes.

Logging a window to MLflow reads the run's current revision and then writes; two overlapping DAG runs
(a backfill with max_active_runs > 1, or the hourly run recomputing a window its neighbour just closed)
could interleave and leave an older revision's tags on top. PostgreSQL: a transaction-scoped advisory
lock keyed on the window. DuckDB allows one writer process per file, so a process-local lock suffices.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_LOCAL: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


def _key(name: str) -> int:
    # A stable signed 64-bit key (pg_advisory locks take bigint); Python's hash() is salted per process.
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def window_lock(engine: Engine, name: str) -> Iterator[None]:
    """Hold an exclusive lock named ``name`` (e.g. 'mlflow:churn:hourly:2026-11-03T06:00') for the block."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_key(name))))
            yield
        return
    with _LOCAL_GUARD:
        lock = _LOCAL.setdefault(name, threading.Lock())
    with lock:
        yield
