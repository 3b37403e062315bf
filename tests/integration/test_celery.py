"""Many monitors on two Celery workers: a concurrent backfill loses nothing, doubles nothing, retries nothing.

Started here and stopped at the end: the Execution API server, scheduler, dag-processor and two
``airflow celery worker`` processes (CeleryExecutor, the machine's Redis as broker on a queue of this test's
own, the metadata DB as result backend). Fresh PostgreSQL databases hold the metadata DB, the warehouse,
MLflow's store (never the metadata DB) and, for the comparison, a second warehouse. ``modelwatch db
migrate`` runs once before the workers start, as a deployment would. :data:`MONITORS` copies of the churn
monitor (each with its own rules) backfill :data:`WINDOWS` hourly windows at once. Then:

- every task instance succeeded on its first try;
- each window has exactly one MLflow run;
- no modelwatch table holds two rows with the same natural key;
- the local Slack receiver got exactly one request per Slack alert event, and every event was sent;
- the alerts equal those of the same windows computed one by one in window order (the pipeline functions
  in this process, into the second warehouse), although the backfill runs newest windows first: a late
  evaluation is folded in at its place (``modelwatch.core.alert_history``), and every event the sequential run
  queues is queued.

``make test-celery`` runs it (``.ci/run`` too, after ``make test``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from modelwatch.demo.data import DemoSpec, churn_frames
from modelwatch.warehouse.engine import load_frame, make_engine
from tests.conftest import database_factory
from tests.integration.conftest import AIRFLOW, REPO, AirflowProcesses, airflow_environment, free_port
from tests.monitor_setup import postgres_connection
from tests.receivers import Receiver

MONITORS = int(os.environ.get("MODELWATCH_CELERY_MONITORS", "6"))
WINDOWS = int(os.environ.get("MODELWATCH_CELERY_WINDOWS", "24"))
WORKER_CONCURRENCY = 4
"""Slots per worker. On 2 cores the tasks are CPU-bound, but each also waits on the scheduler, the broker
and the Execution API between steps: 4 slots per worker keep both cores busy through those waits."""
T0 = datetime(2026, 11, 1)
SPEC = DemoSpec(start=T0, days=2, rows_per_hour=300, seed=11, incident_day=1)  # EU incident 06:00-14:00
ACTIVE_RUNS = 4
"""Concurrent runs per monitor's backfill: 24 runs in flight over 8 slots. More runs only make each scheduler
loop longer (it visits at most max_dagruns_per_loop_to_schedule runs), and tasks wait for the loop."""
DEADLINE_SECONDS = 1500
TASKS = ("extract_and_validate", "compute", "log_to_mlflow", "evaluate_thresholds", "notify")
REDIS_URL = os.environ.get("MODELWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

RULES: list[dict[str, Any]] = [
    {"metric": "roc_auc", "rules": [{"type": "absolute", "min": 0.99, "severity": "critical"}]},
    {"metric": "roc_auc", "m_of_n": [2, 3], "rules": [{"type": "absolute", "min": 0.86, "severity": "warning"}]},
    {"metric": "roc_auc", "rules": [{"type": "absolute", "min": 0.84, "severity": "critical"}]},
    {
        "metric": "roc_auc",
        "rules": [{"type": "baseline_drop", "baseline": {"value": 0.88}, "max_drop": 0.03, "severity": "warning"}],
    },
    {"metric": "roc_auc", "m_of_n": [3, 4], "rules": [{"type": "absolute", "min": 0.85, "severity": "critical"}]},
    {"metric": "f1", "rules": [{"type": "absolute", "min": 0.6, "severity": "warning"}]},
]
NATURAL_KEYS = {
    "modelwatch_metric_results": ("monitor", "cadence", "window_start", "metric", "revision"),
    "modelwatch_window_stats": ("monitor", "cadence", "window_start", "revision"),
    "modelwatch_window_documents": ("monitor", "cadence", "window_start", "revision"),
    "modelwatch_alerts": ("monitor", "cadence", "metric", "rule_id"),
    "modelwatch_alert_outbox": ("dedup_key", "incident", "kind", "destination"),
}
ALERT_COLUMNS = (
    "dedup_key", "state", "severity", "incident", "opened_at", "last_as_of", "breach_count", "healthy_streak",
    "last_value", "recent_statuses", "first_breach_window", "last_breach_window",
)  # fmt: skip

_task_instance = sa.table(
    "task_instance",
    sa.column("dag_id"),
    sa.column("run_id"),
    sa.column("task_id"),
    sa.column("state"),
    sa.column("try_number"),
    sa.column("start_date"),
    sa.column("end_date"),
    sa.column("hostname"),
)
_dag_run = sa.table("dag_run", sa.column("dag_id"), sa.column("state"), sa.column("backfill_id"))
_serialized_dag = sa.table("serialized_dag", sa.column("dag_id"))


def monitor_names() -> list[str]:
    return [f"churn_{i}" for i in range(MONITORS)]


def write_monitors(directory: Path, *, queue: str, artifacts: Path) -> list[Path]:
    """Copies of the shipped churn monitor, hourly, labels judged within 2 h, one rule set each."""
    base = yaml.safe_load((REPO / "include" / "monitors" / "churn.yaml").read_text())
    paths = []
    for i, name in enumerate(monitor_names()):
        raw = {**base, "name": name, "start_date": T0.isoformat(), "cadences": ["hourly"]}
        raw["warehouse"] = {"conn_id": "modelwatch_warehouse", "results_schema": "modelwatch"}
        raw["label_delay"] = {"expected": "2h", "coverage_target": 0.9, "lookback": "3h"}
        raw["checks"] = [{"min_samples": 20, "min_coverage": 0.0, **RULES[i % len(RULES)]}]
        raw["routes"] = {"slack": {"conn_id": "modelwatch_slack"}}
        raw["operational"] = {"traffic_stopped": False, "labels_stalled": False}
        raw["tracking"] = {"artifact_root": str(artifacts / name)}  # the workers' shared artifact store
        raw["airflow"] = {"queue": queue, "retries": 1, "retry_delay": "1s"}
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        paths.append(path)
    return paths


@dataclass
class Backfill:
    """What the concurrent backfill left behind, read once for every assertion."""

    stack: AirflowProcesses
    meta: sa.Engine
    warehouse: sa.Engine
    sequential: sa.Engine
    tracking_uri: str
    slack: Receiver
    monitors: list[Path]
    wall_seconds: float
    backfill_seconds: float


def _dag_ids() -> list[str]:
    return [f"modelwatch_{name}_hourly" for name in monitor_names()]


def _all_serialized(meta: sa.Engine) -> bool:
    with meta.connect() as conn:
        found = conn.execute(sa.select(_serialized_dag.c.dag_id).where(_serialized_dag.c.dag_id.in_(_dag_ids())))
        return len(set(found.scalars())) == MONITORS


def _runs_done(meta: sa.Engine) -> bool:
    with meta.connect() as conn:
        states = conn.execute(
            sa.select(_dag_run.c.state).where(_dag_run.c.dag_id.in_(_dag_ids()), _dag_run.c.backfill_id.is_not(None))
        ).scalars()
        states = list(states)
    return len(states) == MONITORS * WINDOWS and all(s in ("success", "failed") for s in states)


def _start_stack(stack: AirflowProcesses, queue: str) -> None:
    port = stack.env["AIRFLOW__API__PORT"]
    stack.start("api-server", "api-server", "--apps", "execution", "-H", "127.0.0.1", "-p", port)
    stack.start("dag-processor", "dag-processor")
    stack.start("scheduler", "scheduler")
    for n in (1, 2):
        stack.start(
            f"worker{n}",
            "celery", "worker", "-q", queue, "-c", str(WORKER_CONCURRENCY), "-H", f"worker{n}@%h",
            "--without-gossip", "--without-mingle",
            # Two workers on one host: each serves its task logs on a port of its own.
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())},
        )  # fmt: skip


def _backfill_all(stack: AirflowProcesses) -> None:
    """``airflow backfill create`` for every monitor's DAG at once (the UI's backfill button, per DAG).

    Newest windows first (``--run-backwards``): a backfill's windows finish in no particular order, and
    reversed is the order that shows it for certain. Run forwards with 4 runs in flight per monitor, the
    measured run (2026-12-02) happened to record the same alerts as the sequential one; with 24 in flight
    (6 monitors x 4 windows) churn_0's breach_count was 3 instead of 4.
    """
    import subprocess

    first = (T0 + timedelta(hours=1)).replace(tzinfo=UTC).isoformat()
    last = (T0 + timedelta(hours=WINDOWS)).replace(tzinfo=UTC).isoformat()
    commands = [
        [str(AIRFLOW), "backfill", "create", "--dag-id", dag_id, "--from-date", first, "--to-date", last,
         "--max-active-runs", str(ACTIVE_RUNS), "--run-backwards"]
        for dag_id in _dag_ids()
    ]  # fmt: skip
    started = [subprocess.Popen(c, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in commands]
    for command, process in zip(commands, started, strict=True):
        out, _ = process.communicate(timeout=180)
        assert process.returncode == 0, f"{' '.join(command[1:5])} exited {process.returncode}:\n{out.decode()[-3000:]}"


def run_sequentially(engine: sa.Engine, monitors: list[Path]) -> None:
    """The same windows one by one in window order, in this process, as the DAG's tasks run them (extract,
    compute, judge): what a single slow worker would record."""
    from modelwatch.app.judging import judge
    from modelwatch.app.pipeline import compute, extract, load_results
    from modelwatch.core.config import load_monitor
    from modelwatch.core.windows import Window

    for path in monitors:
        monitor = load_monitor(path)
        for hour in range(WINDOWS):
            window = Window(T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1), "hourly")
            keys = extract(engine, monitor, window=window, as_of=window.end)
            compute(engine, monitor, keys)
            judge(engine, monitor, load_results(engine, monitor, keys), as_of=window.end)


@pytest.fixture(scope="module")
def backfill(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backfill]:
    if not AIRFLOW.exists():
        pytest.skip(f"no airflow executable next to {AIRFLOW.parent}")
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    tmp = tmp_path_factory.mktemp("celery")
    queue = f"modelwatch-test-{uuid.uuid4().hex[:8]}"
    slack = Receiver(default_status=200)
    slack.start()
    with database_factory() as create_database:
        metadata_url, warehouse_url = create_database("airflow"), create_database("warehouse")
        mlflow_url, sequential_url = create_database("mlflow"), create_database("sequential")
        home = tmp / "airflow"
        home.mkdir()
        stack = AirflowProcesses(home=home, env=airflow_environment(home, metadata_url, executor="CeleryExecutor"))
        monitors_dir = tmp / "monitors"
        monitors_dir.mkdir()
        monitors = write_monitors(monitors_dir, queue=queue, artifacts=tmp / "artifacts")
        stack.env.update(
            {
                "AIRFLOW__CORE__PARALLELISM": str(2 * WORKER_CONCURRENCY),
                # No schedule runs (use_job_schedule is off): unpaused from the start, no `dags unpause` CLI.
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CELERY__BROKER_URL": REDIS_URL,
                # psycopg 3 only: the result backend is SQLAlchemy through Celery's "db+" prefix.
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_url,
                # Task modules imported once per worker, inherited by every task process it forks.
                "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "modelwatch.airflow.celery_config.CELERY_CONFIG",
                "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
                "AIRFLOW__MODELWATCH__MONITORS_DIR": str(monitors_dir),
                "MLFLOW_TRACKING_URI": mlflow_url,
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "MODELWATCH_ROOT": str(tmp),
                "AIRFLOW_CONN_MODELWATCH_WAREHOUSE": postgres_connection(warehouse_url),
                "AIRFLOW_CONN_MODELWATCH_SLACK": json.dumps(
                    {"conn_type": "slackwebhook", "password": f"{slack.url}/services/T0/B0/secret"}
                ),
            }
        )
        warehouse = make_engine(warehouse_url)
        sequential = make_engine(sequential_url, results_schema="modelwatch")
        meta = sa.create_engine(metadata_url)
        try:
            predictions, labels = churn_frames(SPEC)
            for engine in (warehouse, make_engine(sequential_url)):
                load_frame(engine, "churn_predictions", predictions)
                load_frame(engine, "churn_labels", labels)
            stack.cli("db", "migrate", timeout=300)
            migrated = stack.run(sys.executable, "-m", "modelwatch", "db", "migrate")
            print(f"\n[celery] {migrated.strip()}")
            _start_stack(stack, queue)
            stack.wait_for("the DAGs to be serialized", lambda: _all_serialized(meta), deadline, every=2)
            print(f"[celery] stack up, {MONITORS} DAGs serialized after {time.monotonic() - started:.0f} s")
            backfill_started = time.monotonic()
            _backfill_all(stack)
            stack.wait_for(f"{MONITORS * WINDOWS} backfill runs", lambda: _runs_done(meta), deadline, every=5)
            backfill_seconds = time.monotonic() - backfill_started
            print(f"[celery] backfill of {MONITORS}x{WINDOWS} windows done in {backfill_seconds:.0f} s")
            # The last runs' notify tasks may still be sending; the Slack test then checks that nothing is left.
            stack.wait_for(
                "the Slack deliveries", lambda: _deliveries_settled(warehouse), min(deadline, time.monotonic() + 30),
                every=2, fail=False,
            )  # fmt: skip
            stack.stop()
            sequential_started = time.monotonic()
            run_sequentially(sequential, monitors)
            print(f"[celery] sequential run in {time.monotonic() - sequential_started:.0f} s")
            yield Backfill(
                stack=stack, meta=meta, warehouse=make_engine(warehouse_url, results_schema="modelwatch"),
                sequential=sequential, tracking_uri=mlflow_url, slack=slack, monitors=monitors,
                wall_seconds=time.monotonic() - started, backfill_seconds=backfill_seconds,
            )  # fmt: skip
        finally:
            stack.stop()
            slack.stop()
            for engine in (warehouse, sequential, meta):
                engine.dispose()
            _drop_queue(queue)
            print(f"[celery] wall time {time.monotonic() - started:.0f} s")


def _deliveries_settled(engine: sa.Engine) -> bool:
    """No Slack row pending: the last run's notify task has sent what the backfill queued."""
    with engine.connect() as conn:
        pending = conn.execute(
            sa.text("SELECT count(*) FROM modelwatch.modelwatch_alert_outbox WHERE status = 'pending'")
        ).scalar_one()
    return pending == 0


def _drop_queue(queue: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_timeout=2)
    client.delete(queue, f"_kombu.binding.{queue}")
    client.close()


def _table(engine: sa.Engine, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), autoload_with=engine, schema="modelwatch")


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.celery
@pytest.mark.timeout(DEADLINE_SECONDS + 300)
def test_every_task_succeeds_on_its_first_try(backfill):
    with backfill.meta.connect() as conn:
        rows = conn.execute(
            sa.select(
                _task_instance.c.dag_id, _task_instance.c.run_id, _task_instance.c.task_id,
                _task_instance.c.state, _task_instance.c.try_number, _task_instance.c.hostname,
                _task_instance.c.start_date, _task_instance.c.end_date,
            ).where(_task_instance.c.dag_id.in_(_dag_ids()))
        ).all()  # fmt: skip
    assert len(rows) == MONITORS * WINDOWS * len(TASKS)
    bad = [
        (r.dag_id, r.run_id, r.task_id, r.state, r.try_number)
        for r in rows
        if (r.state, r.try_number) != ("success", 1)
    ]
    assert not bad, (
        f"{len(bad)} task instances not successful on try 1, e.g. {bad[:5]}\n{backfill.stack.task_log_tail()}"
    )
    _report_throughput(rows, backfill)


def _report_throughput(rows: list[Any], backfill: Backfill) -> None:
    slots = 2 * WORKER_CONCURRENCY
    per_task: dict[str, list[float]] = {}
    for row in rows:
        per_task.setdefault(row.task_id, []).append((row.end_date - row.start_date).total_seconds())
    medians = {task: sorted(v)[len(v) // 2] for task, v in per_task.items()}
    windows_per_minute = MONITORS * WINDOWS / (backfill.backfill_seconds / 60)
    hosts = Counter(r.hostname for r in rows)
    print(
        f"\n[celery] {MONITORS * WINDOWS} windows in {backfill.backfill_seconds:.0f} s on {slots} slots: "
        f"{windows_per_minute / slots:.2f} windows/min/slot; median task seconds {medians}; "
        f"tasks per host {dict(hosts)}"
    )


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.celery
def test_each_window_has_exactly_one_mlflow_run(backfill):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(backfill.tracking_uri)
    counts: dict[tuple[str, str], int] = {}
    for name in monitor_names():
        experiment = client.get_experiment_by_name(f"modelwatch/{name}")
        assert experiment is not None, f"no experiment for {name}"
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            key = (name, run.data.tags["modelwatch.window_start"])
            counts[key] = counts.get(key, 0) + 1
    expected = {(name, (T0 + timedelta(hours=h)).isoformat()) for name in monitor_names() for h in range(WINDOWS)}
    assert set(counts) == expected
    assert {key: n for key, n in counts.items() if n != 1} == {}


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.celery
def test_no_table_holds_a_natural_key_twice(backfill):
    engine = backfill.warehouse
    assert set(NATURAL_KEYS) <= set(sa.inspect(engine).get_table_names(schema="modelwatch"))
    duplicates = {}
    for name, key in NATURAL_KEYS.items():
        table = _table(engine, name)
        columns = [table.c[c] for c in key]
        query = sa.select(*columns, sa.func.count()).group_by(*columns).having(sa.func.count() > 1)
        with engine.connect() as conn:
            found = conn.execute(query).all()
            total = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
        assert total > 0, f"{name} is empty: the backfill wrote nothing there"
        if found:
            duplicates[name] = found[:5]
    assert duplicates == {}


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.celery
def test_exactly_one_slack_delivery_per_alert_event(backfill):
    table = _table(backfill.warehouse, "modelwatch_alert_outbox")
    with backfill.warehouse.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.destination == "slack")).mappings().all()
    assert rows, "no Slack alert event: the rules should have opened alerts"
    assert Counter(r["status"] for r in rows) == {"sent": len(rows)}
    sent = Counter(json.dumps(json.loads(r["payload"]), sort_keys=True) for r in rows)
    received = Counter(json.dumps(body, sort_keys=True) for body in backfill.slack.bodies())
    assert received == sent
    assert max(received.values()) == 1


def _alerts(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    table = _table(engine, "modelwatch_alerts")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(*[table.c[c] for c in ALERT_COLUMNS])).mappings().all()
    return {row["dedup_key"]: {k: str(v) for k, v in row.items()} for row in rows}


def _events(engine: sa.Engine) -> list[tuple[str, int, str, str]]:
    table = _table(engine, "modelwatch_alert_outbox")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.dedup_key, table.c.incident, table.c.kind, table.c.severity))
        return sorted(tuple(r) for r in rows)


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.celery
def test_alerts_equal_a_sequential_run_of_the_same_windows(backfill):
    concurrent, sequential = _alerts(backfill.warehouse), _alerts(backfill.sequential)
    assert sequential, "the sequential run opened no alert: the comparison would prove nothing"
    differing = {
        key: {c: (concurrent.get(key, {}).get(c), sequential[key][c]) for c in ALERT_COLUMNS
              if concurrent.get(key, {}).get(c) != sequential[key][c]}
        for key in sequential
        if concurrent.get(key) != sequential[key]
    }  # fmt: skip
    print(f"\n[celery] alerts differing (concurrent, sequential): {json.dumps(differing, indent=1, default=str)}")
    events_c, events_s = _events(backfill.warehouse), _events(backfill.sequential)
    print(f"[celery] events only concurrent: {sorted(set(events_c) - set(events_s))}")
    print(f"[celery] events only sequential: {sorted(set(events_s) - set(events_c))}")
    assert differing == {} and set(concurrent) == set(sequential)
    # Nothing a sequential run sends is missing. A run folded in late cannot recall an event already sent
    # from the earlier, out-of-order state (README, "Order does not matter"): those are printed above.
    assert set(events_s) <= set(events_c)
