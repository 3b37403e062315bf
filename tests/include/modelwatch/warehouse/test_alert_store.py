"""Alert store: state round trip, outbox routing, idempotent retries and replays (DuckDB, optional PostgreSQL)."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelwatch.alerts import RESOLVE, TRIGGER, evaluate_rules
from modelwatch.config import MonitorConfig
from modelwatch.warehouse.alert_store import (
    PENDING,
    SENT,
    SKIPPED,
    alert_rows,
    ensure_alert_tables,
    mark_attempt_failed,
    mark_sent,
    mark_skipped,
    outbox_table,
    pending,
    record_run,
)
from modelwatch.warehouse.engine import make_engine
from modelwatch.warehouse.locks import window_lock
from tests.concurrency import in_processes
from tests.include.modelwatch.test_alerts import HOUR, T0, monitor_config, window

ROUTES = {"slack": {"conn_id": "modelwatch_slack"}, "pagerduty": {"conn_id": "modelwatch_pagerduty"}}


def churn(**overrides: object) -> MonitorConfig:
    return monitor_config(routes=ROUTES, operational={"traffic_stopped": False, "labels_stalled": False}, **overrides)


def tick(engine: sa.Engine, monitor: MonitorConfig, hour: int, value: float, **kwargs: object) -> list:
    """One run at T0 + hour whose fresh window has roc_auc = value."""
    as_of = T0 + hour * HOUR
    results = [window(as_of - HOUR, value=value, as_of=as_of)]
    evaluations = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[])
    return record_run(engine, monitor, evaluations, **kwargs)


def outbox(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(outbox_table).order_by(outbox_table.c.id)).mappings()]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine("duckdb:///" + str(tmp_path / "w.duckdb"))
    yield engine
    engine.dispose()


def test_first_breach_queues_log_slack_and_pagerduty(engine: sa.Engine) -> None:
    events = tick(engine, churn(), 1, 0.7, links={"MLflow run": "http://mlflow/r/1"})
    assert [(e.kind, e.incident) for e in events] == [(TRIGGER, 1)]
    rows = outbox(engine)
    assert sorted((r["destination"], r["status"]) for r in rows) == [
        ("log", SENT),
        ("pagerduty", PENDING),
        ("slack", PENDING),
    ]
    slack = next(r for r in rows if r["destination"] == "slack")
    assert slack["id"] == "modelwatch/churn/hourly/roc_auc/absolute:critical#1#trigger#slack"
    assert slack["conn_id"] == "modelwatch_slack" and "http://mlflow/r/1" in slack["payload"]
    due = pending(engine, "churn", now=T0 + 2 * HOUR)
    assert {r.destination for r in due} == {"slack", "pagerduty"}
    payloads = {r.destination: r.payload for r in due}
    assert payloads["slack"]["text"].startswith("[CRITICAL]") and payloads["pagerduty"]["action"] == "trigger"
    assert pending(engine, "churn", now=T0) == []  # not due before the run's tick


def test_same_breach_next_tick_and_retried_run_insert_nothing(engine: sa.Engine) -> None:
    monitor = churn()
    tick(engine, monitor, 1, 0.7)
    assert tick(engine, monitor, 1, 0.7) == []  # the same run retried
    assert tick(engine, monitor, 2, 0.6) == []  # still breaching: no new message
    assert len(outbox(engine)) == 3
    (row,) = alert_rows(engine, "churn")
    assert row["state"] == "open" and row["breach_count"] == 2 and row["last_value"] == pytest.approx(0.6)
    assert row["last_as_of"] == T0 + 2 * HOUR and row["recent_statuses"] == ["breach"]


def test_recovery_queues_resolve_for_slack_and_pagerduty(engine: sa.Engine) -> None:
    monitor = churn()
    tick(engine, monitor, 1, 0.7)
    assert tick(engine, monitor, 2, 0.9) == []  # resolve_after defaults to 2 healthy ticks
    events = tick(engine, monitor, 3, 0.91)
    assert [e.kind for e in events] == [RESOLVE]
    kinds = sorted((r["kind"], r["destination"]) for r in outbox(engine) if r["destination"] != "log")
    assert kinds == [("resolve", "pagerduty"), ("resolve", "slack"), ("trigger", "pagerduty"), ("trigger", "slack")]


def test_backfill_of_old_ticks_sends_nothing(engine: sa.Engine) -> None:
    monitor = churn()
    tick(engine, monitor, 10, 0.7)
    before = outbox(engine)
    for hour in range(1, 11):
        assert tick(engine, monitor, hour, 0.95 if hour % 2 else 0.5) == []
    assert outbox(engine) == before


def test_warning_alerts_do_not_page(engine: sa.Engine) -> None:
    monitor = churn(
        checks=[
            {"metric": "roc_auc", "min_samples": 10, "rules": [{"type": "absolute", "min": 0.8, "severity": "warning"}]}
        ]
    )
    tick(engine, monitor, 1, 0.7)
    assert sorted(r["destination"] for r in outbox(engine)) == ["log", "slack"]


def test_no_routes_still_logs(engine: sa.Engine) -> None:
    monitor = monitor_config(operational={"traffic_stopped": False, "labels_stalled": False})
    tick(engine, monitor, 1, 0.7)
    assert [(r["destination"], r["status"]) for r in outbox(engine)] == [("log", SENT)]


def test_outbox_marks_and_due_times(engine: sa.Engine) -> None:
    tick(engine, churn(), 1, 0.7)
    slack, pagerduty_row = (
        next(r for r in pending(engine, "churn") if r.destination == d) for d in ("slack", "pagerduty")
    )
    mark_attempt_failed(engine, slack.id, error="HTTP 500", next_attempt_at=T0 + 5 * HOUR)
    assert [r.destination for r in pending(engine, "churn", now=T0 + 4 * HOUR)] == ["pagerduty"]
    (later,) = [r for r in pending(engine, "churn", now=T0 + 5 * HOUR) if r.destination == "slack"]
    assert later.attempts == 1 and later.last_error == "HTTP 500" and later.next_attempt_at == T0 + 5 * HOUR
    mark_sent(engine, slack.id, at=T0 + 5 * HOUR)
    mark_skipped(engine, pagerduty_row.id, reason="skipped: no connection", at=T0 + 5 * HOUR)
    assert pending(engine, "churn") == []
    statuses = {r["destination"]: (r["status"], r["attempts"]) for r in outbox(engine)}
    assert statuses == {"log": (SENT, 0), "slack": (SENT, 2), "pagerduty": (SKIPPED, 0)}


def test_naive_datetimes_round_trip_as_utc(engine: sa.Engine) -> None:
    monitor = churn()
    as_of = (T0 + HOUR).replace(tzinfo=None)
    results = [window((T0).replace(tzinfo=None), value=0.7, as_of=as_of)]
    record_run(engine, monitor, evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[]))
    assert tick(engine, monitor, 1, 0.95) == []  # the aware twin of the same tick is a replay
    assert alert_rows(engine)[0]["opened_at"] == T0 + HOUR


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_overlapping_runs_advance_an_alert_one_at_a_time(request: pytest.FixtureRequest, backend: str) -> None:
    """A run's read-advance-write waits for an overlapping run of the monitor, so neither overwrites the other."""
    engine = request.getfixturevalue("engine" if backend == "duckdb" else "postgres_engine")
    monitor = churn()
    tick(engine, monitor, 1, 0.9)
    done = threading.Event()
    with window_lock(engine, f"alerts:{monitor.name}"):
        worker = threading.Thread(target=lambda: (tick(engine, monitor, 2, 0.7), done.set()))
        worker.start()
        assert not done.wait(0.5), "record_run wrote while an overlapping run held the monitor's alerts"
        assert [r["breach_count"] for r in alert_rows(engine, monitor.name)] == [0]
    worker.join(timeout=30)
    assert done.is_set()
    assert [r["breach_count"] for r in alert_rows(engine, monitor.name)] == [1]


def test_ensure_alert_tables_is_idempotent(engine: sa.Engine) -> None:
    ensure_alert_tables(engine)
    ensure_alert_tables(engine)
    assert {"modelwatch_alerts", "modelwatch_alert_outbox"} <= set(sa.inspect(engine).get_table_names())


@pytest.mark.postgres
def test_postgres_round_trip() -> None:
    url = os.environ.get("MODELWATCH_TEST_POSTGRES_URL")
    if not url or url == "off":
        pytest.skip("MODELWATCH_TEST_POSTGRES_URL is not set")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url
    schema = f"mw_alerts_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        monitor = churn()
        assert [e.kind for e in tick(engine, monitor, 1, 0.7)] == [TRIGGER]
        assert tick(engine, monitor, 1, 0.7) == []
        assert len(pending(engine, "churn", now=T0 + timedelta(hours=2))) == 2
        assert alert_rows(engine, "churn")[0]["last_as_of"] == T0 + HOUR
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


def _first_breach(barrier, url: str, schema: str) -> None:
    engine = make_engine(url, results_schema=schema)
    ensure_alert_tables(engine)
    barrier.wait(timeout=60)
    tick(engine, churn(), 1, 0.7)


@pytest.mark.postgres
def test_concurrent_first_insert_of_an_alert_from_processes(postgres_schema):
    """Workers that all see the alert's first breach at once: one alert row, one outbox row per route, no error."""
    url, schema = postgres_schema
    errors = in_processes(_first_breach, url, schema)
    assert not errors, errors[0]
    engine = make_engine(url, results_schema=schema)
    rows = alert_rows(engine, "churn")
    assert [(r["state"], r["incident"], r["breach_count"]) for r in rows] == [("open", 1, 1)]
    assert sorted((r["kind"], r["destination"]) for r in outbox(engine)) == [
        (TRIGGER, "log"), (TRIGGER, "pagerduty"), (TRIGGER, "slack"),
    ]  # fmt: skip
