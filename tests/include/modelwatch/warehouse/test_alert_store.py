"""Alert store: state round trip, outbox routing, idempotent retries and replays (DuckDB, optional PostgreSQL)."""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelwatch.app.alerting import record_run
from modelwatch.core.alerts import RESOLVE, TRIGGER, evaluate_rules
from modelwatch.core.config import MonitorConfig
from modelwatch.core.result import RootCause
from modelwatch.warehouse.alert_store import (
    PENDING,
    SENT,
    SKIPPED,
    alert_rows,
    alert_states,
    alerts_table,
    ensure_alert_tables,
    mark_attempt_failed,
    mark_sent,
    mark_skipped,
    outbox_table,
    pending,
)
from modelwatch.warehouse.engine import make_engine
from modelwatch.warehouse.locks import window_lock
from tests.concurrency import in_processes
from tests.include.modelwatch.core.test_alerts import HOUR, T0, monitor_config, window

ROUTES = {"slack": {"conn_id": "modelwatch_slack"}, "pagerduty": {"conn_id": "modelwatch_pagerduty"}}


def churn(**overrides: object) -> MonitorConfig:
    return monitor_config(
        routes=ROUTES,
        operational={"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}},
        **overrides,
    )


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
    monitor = monitor_config(
        operational={"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}}
    )
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


def test_a_reopen_cancels_the_held_pagerduty_resolve_and_pages_no_more(engine: sa.Engine) -> None:
    check = {
        "metric": "roc_auc",
        "min_samples": 100,
        "resolve_after": 1,
        "reopen_within": "6h",
        "rules": [{"type": "absolute", "min": 0.8, "severity": "critical"}],
    }
    monitor = churn(checks=[check])
    tick(engine, monitor, 1, 0.7)
    tick(engine, monitor, 2, 0.9)
    held = next(r for r in outbox(engine) if r["kind"] == "resolve" and r["destination"] == "pagerduty")
    assert held["status"] == PENDING and held["next_attempt_at"] == (T0 + 8 * HOUR).replace(tzinfo=None)
    assert [r.kind for r in pending(engine, "churn", now=T0 + 3 * HOUR) if r.destination == "pagerduty"] == ["trigger"]
    (reopen,) = tick(engine, monitor, 4, 0.7)
    assert (reopen.kind, reopen.incident, reopen.reopen) == (TRIGGER, 1, 1)
    rows = {r["id"].split("#", 1)[1]: r for r in outbox(engine)}
    assert rows["1#resolve#pagerduty"]["status"] == SKIPPED
    assert "reopened" in rows["1#resolve#pagerduty"]["last_error"]
    assert "1#trigger-r1#slack" in rows and "1#trigger-r1#pagerduty" not in rows  # the page never closed
    (row,) = alert_rows(engine, "churn")
    assert row["incident"] == 1 and row["state"] == "open"


def test_the_lifecycle_survives_the_round_trip(engine: sa.Engine) -> None:
    monitor = churn()
    tick(engine, monitor, 1, 0.7)
    (state,) = alert_states(engine, ["modelwatch/churn/hourly/roc_auc/absolute:critical"])
    assert state.windows == ((T0, 1, "breach"),) and state.last_breach_as_of == T0 + HOUR
    assert tick(engine, monitor, 2, 0.9) == [] and [e.kind for e in tick(engine, monitor, 3, 0.9)] == [RESOLVE]
    (state,) = alert_states(engine, ["modelwatch/churn/hourly/roc_auc/absolute:critical"])
    assert state.resolved_at == T0 + 3 * HOUR and state.counted_after == T0 + 2 * HOUR and len(state.windows) == 3


def test_an_event_without_a_root_cause_is_explained_before_it_is_rendered(engine: sa.Engine) -> None:
    cause = RootCause("concept_drift", "concept drift: roc_auc 0.86 -> 0.7 mostly in region=EU", (), "region=EU")
    asked = []

    def explain(evaluation):
        asked.append(evaluation.window_start)
        return cause

    (event,) = tick(engine, churn(), 1, 0.7, explain=explain)
    assert event.evaluation.root_cause == cause and asked == [T0]
    slack = next(r for r in outbox(engine) if r["destination"] == "slack")
    assert "concept drift: roc_auc 0.86" in slack["payload"] and "0.0 h old" in slack["payload"]
    assert tick(engine, churn(), 2, 0.6, explain=explain) == [] and asked == [T0]  # quiet runs diagnose nothing


def test_a_diagnosis_may_query_the_warehouse_on_one_kept_open_connection(tmp_path: Path) -> None:
    # The demo and dag.test keep one DuckDB connection open: explaining must not run inside the
    # state transaction, where DuckDB cannot start another one.
    engine = sa.create_engine("duckdb:///" + str(tmp_path / "one.duckdb"), poolclass=sa.pool.StaticPool)
    cause = RootCause("unknown", "unknown: asked the warehouse")

    def explain(evaluation):
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
        return cause

    (event,) = tick(engine, churn(), 1, 0.7, explain=explain)
    assert event.evaluation.root_cause == cause
    engine.dispose()


@pytest.mark.parametrize("kind", ["duckdb", "duckdb_results_schema", "postgres_results_schema"])
def test_a_table_from_before_the_lifecycle_column_is_upgraded(request, tmp_path: Path, kind: str) -> None:
    """Also where the tables live in the monitor's ``results_schema``, not the connection's own schema."""
    from modelwatch.warehouse.engine import make_engine

    if kind == "duckdb":
        engine = sa.create_engine("duckdb:///" + str(tmp_path / "old.duckdb"))
    elif kind == "duckdb_results_schema":
        engine = make_engine(f"duckdb:///{tmp_path / 'old.duckdb'}", results_schema="mw_results")
    else:
        engine = make_engine(request.getfixturevalue("fresh_database")("lifecycle"), results_schema="mw_results")
    old = sa.MetaData()
    sa.Table("modelwatch_alerts", old, *[c.copy() for c in alerts_table.columns if c.name != "lifecycle"])
    old.create_all(engine)
    tick(engine, churn(), 1, 0.7)
    (row,) = alert_rows(engine, "churn")
    assert row["state"] == "open" and '"windows"' in row["lifecycle"]
    engine.dispose()


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


def test_links_per_event_and_the_runbook_reach_every_message(engine: sa.Engine) -> None:
    """``links`` may be a function of the event (its own window's run); the YAML's runbook is added to them."""
    monitor = churn(runbook_url="https://wiki.example/runbooks/churn")
    seen = []

    def links(event):
        seen.append(event.evaluation.window_start)
        return {"MLflow run": f"http://mlflow/{event.evaluation.window_start:%H%M}"}

    tick(engine, monitor, 3, 0.7, links=links)
    assert seen == [T0 + 2 * HOUR]  # called once per queued event, with the event's own window
    payloads = {r.destination: r.payload for r in pending(engine, "churn")}
    assert {link["text"]: link["href"] for link in payloads["pagerduty"]["links"]} == {
        "MLflow run": "http://mlflow/0200",
        "Runbook": "https://wiki.example/runbooks/churn",
    }
    assert payloads["pagerduty"]["payload"]["custom_details"]["owner"] == "ml-platform"
    assert tick(engine, monitor, 4, 0.6, links=links) == [] and len(seen) == 1  # no event: no lookup


# Order independence: runs of one monitor that finish in any order (a concurrent backfill) leave the alerts
# and the queued events a sequential run leaves.

_INCIDENT = [0.9, 0.9, 0.7, 0.9, 0.7, 0.7, 0.72, 0.9, 0.9, 0.9, 0.6, 0.9, 0.9, 0.9, 0.9, 0.7, 0.7, 0.9, 0.9, 0.9]
"""roc_auc of hourly windows 1..20: a lone breach, an incident, a relapse, recovery, another incident."""


def _hysteresis_monitor() -> MonitorConfig:
    return churn(
        checks=[
            {
                "metric": "roc_auc",
                "min_samples": 100,
                "m_of_n": [2, 3],
                "resolve_after": 2,
                "rules": [
                    {"type": "absolute", "min": 0.8, "severity": "critical"},
                    {"type": "absolute", "min": 0.75, "severity": "warning"},
                ],
            }
        ]
    )


def _outcome(engine: sa.Engine) -> tuple[list[tuple], list[str]]:
    """The alert rows (without their write time) and the queued outbox ids."""
    rows = [tuple((k, v) for k, v in row.items() if k != "updated_at") for row in alert_rows(engine)]
    return sorted(rows), sorted(r["id"] for r in outbox(engine))


def _run_in_order(engine: sa.Engine, hours: list[int]) -> tuple[list[tuple], list[str]]:
    monitor = _hysteresis_monitor()
    for hour in hours:
        tick(engine, monitor, hour, _INCIDENT[hour - 1])
    return _outcome(engine)


def _bounded_shuffle(hours: list[int], rng: random.Random, active: int) -> list[int]:
    """An order in which at most ``active`` runs overlap (max_active_runs): each position finishes a run
    among the ``active`` oldest not yet finished."""
    waiting, out = list(hours), []
    while waiting:
        out.append(waiting.pop(rng.randrange(min(active, len(waiting)))))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_runs_finishing_in_any_order_leave_what_a_sequential_run_leaves(tmp_path: Path, seed: int) -> None:
    hours = list(range(1, len(_INCIDENT) + 1))
    sequential = sa.create_engine("duckdb:///" + str(tmp_path / "sequential.duckdb"))
    shuffled = sa.create_engine("duckdb:///" + str(tmp_path / "shuffled.duckdb"))
    try:
        expected = _run_in_order(sequential, hours)
        order = _bounded_shuffle(hours, random.Random(seed), active=4)
        assert order != hours
        assert _run_in_order(shuffled, order) == expected, f"order {order}"
        assert expected[1], "the incidents must have queued events"
    finally:
        sequential.dispose()
        shuffled.dispose()


@pytest.mark.postgres
def test_concurrent_runs_on_postgres_leave_what_a_sequential_run_leaves(fresh_database) -> None:
    """Four threads record the runs at once (as four Celery slots would), on PostgreSQL."""
    from concurrent.futures import ThreadPoolExecutor

    from modelwatch.warehouse.engine import make_engine

    hours = list(range(1, len(_INCIDENT) + 1))
    sequential, concurrent = make_engine(fresh_database("seq")), make_engine(fresh_database("conc"))
    try:
        expected = _run_in_order(sequential, hours)
        monitor = _hysteresis_monitor()
        ensure_alert_tables(concurrent)
        order = _bounded_shuffle(hours, random.Random(11), active=4)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda hour: tick(concurrent, monitor, hour, _INCIDENT[hour - 1]), order))
        assert _outcome(concurrent) == expected
    finally:
        sequential.dispose()
        concurrent.dispose()


def test_a_warning_said_by_the_critical_of_the_same_window_is_not_sent_twice(engine: sa.Engine) -> None:
    """One event, one message: the critical and the warning rule of roc_auc breach in the same window."""
    rules = [
        {"type": "absolute", "min": 0.8, "severity": "critical"},
        {"type": "absolute", "min": 0.85, "severity": "warning"},
    ]
    monitor = churn(checks=[{"metric": "roc_auc", "min_samples": 100, "rules": rules}])
    assert len(tick(engine, monitor, 1, 0.7)) == 2
    rows = {(r["severity"], r["destination"]): r for r in outbox(engine)}
    assert rows["critical", "slack"]["status"] == PENDING and rows["critical", "pagerduty"]["status"] == PENDING
    assert rows["warning", "slack"]["status"] == SKIPPED
    assert rows["warning", "slack"]["last_error"] == "covered by modelwatch/churn/hourly/roc_auc/absolute:critical"
    assert rows["warning", "log"]["status"] == SENT
    # A warning on its own (0.82: only the warning rule breaches) is sent.
    later = churn(checks=[{"metric": "roc_auc", "min_samples": 100, "rules": rules}])
    fresh = sa.create_engine("duckdb:///:memory:")
    tick(fresh, later, 1, 0.82)
    assert [(r["severity"], r["status"]) for r in outbox(fresh) if r["destination"] == "slack"] == [
        ("warning", PENDING)
    ]


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


def test_a_label_free_incident_is_confirmed_by_labels_in_the_table_and_its_routes(engine: sa.Engine) -> None:
    import json
    from dataclasses import replace

    from modelwatch.core.result import DriftFinding

    rule = {"type": "feature_drift", "features": ["tenure"], "threshold": 0.2, "severity": "critical"}
    predictions = {
        "table": "p",
        "request_id": "id",
        "timestamp": "ts",
        "score": "score",
        "features": [{"name": "tenure", "kind": "numeric"}],
    }
    monitor = churn(label_free=[rule], predictions=predictions)
    drifted = (DriftFinding("tenure", "numeric", "psi", 0.9, 0.2, True, importance=0.5),)

    def run(hour: int, *, fresh_labelled: int, older=()) -> list:
        as_of = T0 + hour * HOUR
        fresh = replace(window(as_of - HOUR, value=0.9, as_of=as_of, labelled=fresh_labelled), revision=0)
        results = [replace(fresh, drift=drifted), *older]
        evaluations = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[])
        return record_run(engine, monitor, evaluations)

    early = run(1, fresh_labelled=0)  # no labels: only the drift rule can speak
    assert [(e.kind, e.evaluation.metric) for e in early] == [(TRIGGER, "feature_drift")]
    # Labels land for the first window: its roc_auc breaches; the drift incident is confirmed.
    labelled = replace(window(T0, value=0.6, as_of=T0 + 2 * HOUR, labelled=600), revision=1)
    later = run(2, fresh_labelled=0, older=[labelled])
    assert [(e.kind, e.evaluation.metric) for e in later] == [(TRIGGER, "roc_auc"), ("confirmed", "feature_drift")]
    assert "first signalled without labels by feature_drift/psi:tenure:critical" in later[0].evaluation.description
    rows = {r["dedup_key"].split("/", 3)[3]: json.loads(r["lifecycle"]) for r in alert_rows(engine)}
    assert rows["feature_drift/psi:tenure:critical"]["evidence"] == "confirmed"
    assert rows["roc_auc/absolute:critical"]["first_signal"].endswith("feature_drift/psi:tenure:critical")
    destinations = {(r["kind"], r["destination"]) for r in outbox(engine)}
    assert ("confirmed", "slack") in destinations and ("confirmed", "pagerduty") not in destinations
    assert run(2, fresh_labelled=0, older=[labelled]) == []  # the same run again: nothing twice
