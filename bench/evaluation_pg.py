"""Warehouse rows read per monitored prediction in steady state, on PostgreSQL (part 4 of the benchmark).

A fresh database holds ``days`` days of predictions (``rows_per_hour`` an hour) and their late labels,
both tables with their request id as PRIMARY KEY and an index on their timestamp (what a table queried by
time would have). modelwatch's pipeline then runs every hourly window and, after each day, the daily one,
in window order as the DAG tasks do (``extract``, ``compute``, ``judge`` with ``as_of`` = the window's end,
as ``tests/integration/test_celery.py::run_sequentially``). Over the last ``measure_days`` days,
``seq_tup_read + idx_tup_fetch`` of ``pg_stat_user_tables`` is read before and after and divided by the
predictions of those days. The database is ANALYZEd after the load and after each simulated day, as
autovacuum would (this machine's server runs with ``autovacuum = off``). It is dropped at the end.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import sqlalchemy as sa
from evaluation_data import RowRange, generate_rows, monitor_document, text_columns
from sqlalchemy.engine import make_url

PG_START = datetime(2026, 11, 1)
MONITORED_TABLES = ("preds", "labels")
_READS = sa.text(
    "SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS rows_read FROM pg_stat_user_tables"
)


def reads_between(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """Rows read per table between two ``pg_stat_user_tables`` snapshots (tables created in between start at 0)."""
    return {table: after[table] - before.get(table, 0) for table in sorted(after) if after[table] != before.get(table)}


def per_prediction(reads: Mapping[str, int], predictions: int) -> dict[str, float]:
    """Rows read per monitored prediction: in total, from the monitored tables, from modelwatch's own tables."""
    monitored = sum(v for k, v in reads.items() if k in MONITORED_TABLES)
    own = sum(v for k, v in reads.items() if k not in MONITORED_TABLES)
    return {
        "total": (monitored + own) / predictions,
        "monitored_tables": monitored / predictions,
        "modelwatch_tables": own / predictions,
    }


def _table_reads(url: str) -> dict[str, int]:
    # The counters of a backend reach pg_stat_user_tables when it flushes them: at the latest when it exits.
    time.sleep(1.0)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {row.relname: int(row.rows_read) for row in conn.execute(_READS)}
    finally:
        engine.dispose()


def _load_history(url: str, *, days: int, rows_per_hour: int, seed: int) -> int:
    from modelwatch.warehouse.engine import load_frame, make_engine

    engine = make_engine(url)
    per_day = rows_per_hour * 24
    for day in range(days):
        part = RowRange(per_day, PG_START + timedelta(days=day), timedelta(days=1), first_id=day * per_day)
        predictions, labels = generate_rows(part, seed=seed)
        load_frame(engine, "preds", text_columns(predictions), replace=False)
        load_frame(engine, "labels", labels, replace=False)
    with engine.begin() as conn:
        for statement in (
            "ALTER TABLE preds ADD PRIMARY KEY (request_id)",
            "ALTER TABLE labels ADD PRIMARY KEY (request_id)",
            "CREATE INDEX ON preds (predicted_at)",
            "CREATE INDEX ON labels (labeled_at)",
        ):
            conn.execute(sa.text(statement))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()
    return per_day * days


def _run_day(url: str, monitor, day_start: datetime) -> None:
    """The day's 24 hourly runs, then its daily run, as the scheduler would order them."""
    from modelwatch.app.judging import judge
    from modelwatch.app.pipeline import compute, extract, load_results
    from modelwatch.core.windows import Window
    from modelwatch.warehouse.engine import make_engine

    engine = make_engine(url)
    hours = [Window(day_start + timedelta(hours=h), day_start + timedelta(hours=h + 1), "hourly") for h in range(24)]
    for window in [*hours, Window(day_start, day_start + timedelta(days=1), "daily")]:
        keys = extract(engine, monitor, window=window, as_of=window.end)
        compute(engine, monitor, keys)
        judge(engine, monitor, load_results(engine, monitor, keys), as_of=window.end)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # What autovacuum would have done by now (it is off on this machine's server): without statistics
        # the planner joins modelwatch_metric_results to itself in a nested loop, quadratic in its rows.
        conn.execute(sa.text("ANALYZE"))
    engine.dispose()  # its backends exit and flush their table counters


def steady_state(
    admin_url: str,
    *,
    days: int,
    rows_per_hour: int,
    measure_days: int = 1,
    seed: int = 16,
    progress: Callable[[str], None] = print,
) -> dict:
    """Rows read per monitored prediction over the last ``measure_days`` of ``days`` days of history."""
    from modelwatch.core.config import parse_monitor

    if not 0 < measure_days <= days:
        raise ValueError(f"expected 0 < measure_days <= days, got {measure_days} and {days}")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"mw_bench_{uuid.uuid4().hex[:10]}"
    quoted = admin.dialect.identifier_preparer.quote(name)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {quoted}"))  # our own name, quoted by the dialect
    try:
        loaded = _load_history(url, days=days, rows_per_hour=rows_per_hour, seed=seed)
        reference = {"kind": "rolling", "days": 7}
        monitor = parse_monitor(monitor_document(url=url, reference=reference, start_date=PG_START))
        began = time.perf_counter()
        for day in range(days - measure_days):
            _run_day(url, monitor, PG_START + timedelta(days=day))
        warmup_seconds = time.perf_counter() - began
        progress(f"  PostgreSQL {days} days: {days - measure_days} warm-up days run in {warmup_seconds:.0f} s")
        before = _table_reads(url)
        began = time.perf_counter()
        for day in range(days - measure_days, days):
            _run_day(url, monitor, PG_START + timedelta(days=day))
        seconds = time.perf_counter() - began
        reads = reads_between(before, _table_reads(url))
    finally:
        from modelwatch.warehouse.engine import make_engine

        make_engine(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        admin.dispose()
    predictions = rows_per_hour * 24 * measure_days
    return {
        "days": days,
        "rows_per_hour": rows_per_hour,
        "measured_days": measure_days,
        "rows_in_warehouse": loaded,
        "predictions_monitored": predictions,
        "runs_measured": 25 * measure_days,
        "seconds_measured": seconds,
        "rows_read": reads,
        "per_prediction": per_prediction(reads, predictions),
    }
