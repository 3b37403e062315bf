"""Backfills through the real scheduler are idempotent: reprocessing windows changes nothing.

The real ``airflow scheduler`` (LocalExecutor), ``dag-processor`` and the Execution API server run as
subprocesses on a fresh PostgreSQL metadata DB; the warehouse is another fresh PostgreSQL database
because several task processes write to it at once. Four hourly windows are run with
``airflow backfill create`` (the path of the UI's backfill button), then backfilled again with
``--reprocess-behavior completed``. The second pass must re-run every task and still leave the MLflow
metrics, the MLflow run count, every ``modelwatch_*`` table, the alerts, the outbox and the notification
receivers exactly as the first pass left them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from modelwatch.demo.data import DemoSpec, churn_frames
from modelwatch.warehouse.engine import load_frame, make_engine
from tests.monitor_setup import receiver_connections, write_breaching_churn_monitor

pytest_plugins = ("tests.receivers",)

T0 = datetime(2026, 11, 1)
WINDOWS = 4
DAG_ID = "modelwatch_churn_hourly"
SPEC = DemoSpec(start=T0, days=1, rows_per_hour=300, seed=5, incident_day=0)
DEADLINE_SECONDS = 600
"""A hang guard, not a speed target: ~100 s on an idle machine, 300 s seen with the 2 cores shared."""

_serialized_dag = sa.table("serialized_dag", sa.column("dag_id"))
_backfill_table = sa.table("backfill", sa.column("id"), sa.column("dag_id"), sa.column("completed_at"))
_dag_run = sa.table(
    "dag_run", sa.column("id"), sa.column("dag_id"), sa.column("run_id"), sa.column("state"), sa.column("backfill_id")
)
_dag_run_note = sa.table("dag_run_note", sa.column("dag_run_id"), sa.column("content"))


def _note_user(tmp_path, port: str) -> dict[str, str]:
    """An API user for the tasks' run notes (simple auth manager, password file written here) and the
    connection that names it, as a deployment would define them."""
    import json

    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"modelwatch": "note-secret"}))
    return {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "modelwatch:user",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW_CONN_MODELWATCH_AIRFLOW_API": f"http://modelwatch:note-secret@127.0.0.1:{port}",
    }


_task_instance = sa.table(
    "task_instance", sa.column("dag_id"), sa.column("run_id"), sa.column("state"), sa.column("end_date")
)


def _backfill(stack, meta: sa.Engine, *reprocess: str) -> int:
    """``airflow backfill create`` over the test's windows; returns the new backfill's id."""
    stack.cli(
        "backfill", "create", "--dag-id", DAG_ID,
        "--from-date", (T0 + timedelta(hours=1)).replace(tzinfo=UTC).isoformat(),
        "--to-date", (T0 + timedelta(hours=WINDOWS)).replace(tzinfo=UTC).isoformat(),
        "--max-active-runs", "2",
        *reprocess,
    )  # fmt: skip
    with meta.connect() as conn:
        return conn.execute(
            sa.select(sa.func.max(_backfill_table.c.id)).where(_backfill_table.c.dag_id == DAG_ID)
        ).scalar_one()


def _backfill_done(meta: sa.Engine, backfill_id: int) -> list[tuple[str, str]] | None:
    """The (run_id, state) of the DAG's runs once the backfill completed and no run is still active."""
    with meta.connect() as conn:
        completed = conn.execute(
            sa.select(_backfill_table.c.completed_at).where(_backfill_table.c.id == backfill_id)
        ).scalar()
        runs = conn.execute(sa.select(_dag_run.c.run_id, _dag_run.c.state).where(_dag_run.c.dag_id == DAG_ID)).all()
    if completed is None or any(state in ("queued", "running") for _, state in runs):
        return None
    return sorted((run_id, state) for run_id, state in runs)


def _mlflow_snapshot(tracking_uri: str) -> dict[str, dict[str, Any]]:
    """Per window start: its MLflow run count, latest revision, metrics and roc_auc history length."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("modelwatch/churn")
    assert experiment is not None, "no MLflow experiment was created"
    out: dict[str, dict[str, Any]] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=1000):
        window = run.data.tags["modelwatch.window_start"]
        entry = out.setdefault(window, {"runs": 0})
        entry["runs"] += 1
        entry["revision"] = run.data.tags.get("modelwatch.revision")
        entry["metrics"] = dict(run.data.metrics)
        points = client.get_metric_history(run.info.run_id, "roc_auc")
        entry["roc_auc_points"] = len(points)
        entry["newest_logged_revision"] = str(max((p.step for p in points), default=-1))
    return out


def _assert_tags_follow_newest_revision(snapshot: dict[str, dict[str, Any]]) -> None:
    """The run's revision tag must name the newest revision logged (metric step), whatever the run order."""
    stale = {
        window: (entry["revision"], entry["newest_logged_revision"])
        for window, entry in snapshot.items()
        if entry["revision"] != entry["newest_logged_revision"]
    }
    assert not stale, (
        f"MLflow tags of an older revision overwrote a newer one, (tag, newest step) per window: {stale}; "
        "concurrent runs raced between reading modelwatch.revision and log_batch (tracking._log_once)"
    )


def _warehouse_snapshot(engine: sa.Engine) -> dict[str, Any]:
    """Row counts of every modelwatch_* table, plus the full alert and outbox rows."""
    names = sorted(n for n in sa.inspect(engine).get_table_names() if n.startswith("modelwatch_"))
    metadata = sa.MetaData()
    tables = {name: sa.Table(name, metadata, autoload_with=engine) for name in names}
    with engine.connect() as conn:
        counts = {
            name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for name, t in tables.items()
        }
        rows = {
            name: sorted(tuple(map(str, row)) for row in conn.execute(sa.select(tables[name])))
            for name in ("modelwatch_alerts", "modelwatch_alert_outbox")
            if name in tables
        }
    return {"counts": counts, "rows": rows}


def _run_backfill(stack, meta: sa.Engine, deadline: float, *reprocess: str) -> tuple[int, list[tuple[str, str]]]:
    backfill_id = _backfill(stack, meta, *reprocess)
    runs = stack.wait_for(f"backfill {backfill_id}", lambda: _backfill_done(meta, backfill_id), deadline, every=2)
    failed = [run for run in runs if run[1] != "success"]
    assert not failed, f"backfill {backfill_id}: runs not successful: {failed}\n{stack.task_log_tail()}"
    return backfill_id, runs


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.timeout(DEADLINE_SECONDS + 120)
def test_reprocessing_backfill_changes_nothing(
    airflow_processes, fresh_database, tmp_path, http_receiver, https_receiver
):
    started = time.monotonic()
    deadline = started + DEADLINE_SECONDS
    stack = airflow_processes
    warehouse_url = fresh_database("warehouse")
    warehouse = make_engine(warehouse_url)
    meta = sa.create_engine(stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    try:
        predictions, labels = churn_frames(SPEC)
        load_frame(warehouse, "churn_predictions", predictions)
        load_frame(warehouse, "churn_labels", labels)
        monitors = tmp_path / "monitors"
        monitors.mkdir()
        write_breaching_churn_monitor(monitors, start=T0, min_samples=20, traffic_stopped=False)
        tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        # Create the MLflow schema once here: concurrent first-use migrations of one SQLite file race.
        from mlflow.tracking import MlflowClient

        MlflowClient(tracking_uri).search_experiments()
        stack.env.update(
            {
                "MODELWATCH_MONITORS_DIR": str(monitors),
                "MODELWATCH_WAREHOUSE_URL": warehouse_url,
                "MODELWATCH_ROOT": str(tmp_path),
                "MODELWATCH_RETRY_DELAY_SECONDS": "1",
                "MLFLOW_TRACKING_URI": tracking_uri,
                **receiver_connections(http_receiver, https_receiver, routing_key="routing-key-backfill"),
                **_note_user(tmp_path, stack.env["AIRFLOW__API__PORT"]),
            }
        )
        port = stack.env["AIRFLOW__API__PORT"]
        # The public API too: the tasks set their runs' notes through it (modelwatch.airflow.run_notes).
        stack.start("api-server", "api-server", "--apps", "core,execution", "-H", "127.0.0.1", "-p", port)
        stack.start("dag-processor", "dag-processor")
        stack.start("scheduler", "scheduler")

        def serialized() -> bool:
            with meta.connect() as conn:
                query = (
                    sa.select(sa.func.count()).select_from(_serialized_dag).where(_serialized_dag.c.dag_id == DAG_ID)
                )
                return conn.execute(query).scalar_one() > 0

        stack.wait_for(f"{DAG_ID} to be serialized", serialized, deadline)
        stack.cli("dags", "unpause", DAG_ID)
        print(f"\n[backfill] stack up and DAG serialized after {time.monotonic() - started:.1f} s")

        _, first_runs = _run_backfill(stack, meta, deadline)
        assert len(first_runs) == WINDOWS
        print(f"[backfill] first pass ({WINDOWS} runs) done after {time.monotonic() - started:.1f} s")
        mlflow_before = _mlflow_snapshot(tracking_uri)
        warehouse_before = _warehouse_snapshot(warehouse)
        slack_before, pagerduty_before = len(http_receiver.bodies()), len(https_receiver.bodies())
        revisions = {window[11:16]: entry["revision"] for window, entry in sorted(mlflow_before.items())}
        print(f"[backfill] rows {warehouse_before['counts']}; MLflow revisions {revisions}")
        print(f"[backfill] notifications: {slack_before} Slack, {pagerduty_before} PagerDuty")

        expected_windows = {(T0 + timedelta(hours=h)).isoformat() for h in range(WINDOWS)}
        assert set(mlflow_before) == expected_windows
        assert all(entry["runs"] == 1 for entry in mlflow_before.values()), mlflow_before
        _assert_tags_follow_newest_revision(mlflow_before)
        assert warehouse_before["rows"]["modelwatch_alerts"], "the 0.99 roc_auc floor should have opened an alert"
        assert warehouse_before["rows"]["modelwatch_alert_outbox"]
        assert slack_before >= 1 and pagerduty_before >= 1
        with meta.connect() as conn:
            notes = (
                conn.execute(
                    sa.select(_dag_run_note.c.content)
                    .select_from(_dag_run.join(_dag_run_note, _dag_run.c.id == _dag_run_note.c.dag_run_id))
                    .where(_dag_run.c.dag_id == DAG_ID)
                )
                .scalars()
                .all()
            )
        # Every window breaches the 0.99 floor once judged: the run's note says so where the grid shows it.
        assert len(notes) == WINDOWS and sum(n.startswith("**breach**") for n in notes) >= WINDOWS - 1, notes

        with meta.connect() as conn:
            reprocess_started = conn.execute(sa.select(sa.func.now())).scalar_one()
        second_id, second_runs = _run_backfill(stack, meta, deadline, "--reprocess-behavior", "completed")
        print(f"[backfill] reprocessing pass done after {time.monotonic() - started:.1f} s")

        # The second pass must really have re-run every task of every window, or the test proves nothing.
        assert [run_id for run_id, _ in second_runs] == [run_id for run_id, _ in first_runs]
        with meta.connect() as conn:
            rerun = conn.execute(
                sa.select(sa.func.count()).where(_dag_run.c.dag_id == DAG_ID, _dag_run.c.backfill_id == second_id)
            ).scalar_one()
            stale_tasks = conn.execute(
                sa.select(_task_instance.c.run_id, _task_instance.c.end_date).where(
                    _task_instance.c.dag_id == DAG_ID,
                    sa.or_(_task_instance.c.end_date.is_(None), _task_instance.c.end_date < reprocess_started),
                )
            ).all()
        assert rerun == WINDOWS
        assert not stale_tasks, f"tasks not re-run by the reprocessing backfill: {stale_tasks}"

        assert _mlflow_snapshot(tracking_uri) == mlflow_before
        warehouse_after = _warehouse_snapshot(warehouse)
        assert warehouse_after["counts"] == warehouse_before["counts"]
        assert warehouse_after["rows"] == warehouse_before["rows"]
        assert len(http_receiver.bodies()) == slack_before
        assert len(https_receiver.bodies()) == pagerduty_before
    finally:
        warehouse.dispose()
        meta.dispose()
        print(f"[backfill] wall time {time.monotonic() - started:.1f} s")
