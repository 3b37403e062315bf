"""Hostile Params and bad data in real DAG runs: what the user sees, and that nothing is lost or doubled.

A future or off-hour ``window_start`` used to be evaluated, moving every alert's clock past the scheduled
runs still to come, which were then ignored as replays (a traffic stop that followed was never alerted);
one NaN in a numeric feature failed ``compute`` on every try. The cases of the other faults (overlapping
deliveries, slow receivers, wrong column types, MLflow down, bad YAML) run against the library's own
tests: test_notify, test_pipeline, test_tracking, test_config, test_cli.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from modelwatch.airflow import runner as airflow_runner
from modelwatch.warehouse.engine import make_engine, resolve_url
from tests.dags.test_monitoring_dag_e2e import T0, _set_up

pytest_plugins = ("tests.receivers",)


def _mlflow_windows() -> list[str]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("modelwatch/churn")
    runs = client.search_runs([experiment.experiment_id], max_results=200) if experiment else []
    return sorted(run.data.tags["modelwatch.window_start"] for run in runs)


def _extract_state(dag_id: str, run_after: datetime) -> str:
    """State and try number of the extract task of the run triggered at ``run_after``."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
            .filter(
                DagRun.dag_id == dag_id,
                DagRun.run_after == run_after.replace(tzinfo=UTC),
                TaskInstance.task_id == "extract_and_validate",
            )
            .one()
        )
        return f"{ti.state} try {ti.try_number}"


def _stored_windows(after: datetime) -> list[str]:
    """Window starts of stored results at or after ``after`` (a refused run must have written none)."""
    from modelwatch.warehouse.documents import ensure_documents_table

    engine = make_engine(os.environ["MODELWATCH_WAREHOUSE_URL"])
    ensure_documents_table(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT DISTINCT window_start FROM modelwatch_window_documents WHERE window_start >= :t"),
            {"t": after.replace(minute=0)},
        )
        return sorted(str(start) for (start,) in rows)


def _fresh(dag):
    """The DAG parsed again: ``dag.test`` leaves the last run's Param values on the in-process DAG object,
    where the scheduler would start the next run from the serialized defaults."""
    return airflow_runner.load_dags()[dag.dag_id]


@pytest.fixture
def churn_dag(airflow_home, tmp_path, monkeypatch, http_receiver, https_receiver):
    url = resolve_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    _set_up(tmp_path, monkeypatch, url, http_receiver, https_receiver, traffic_stopped=True)
    engine = make_engine(url)
    with engine.begin() as conn:
        # A real traffic stop in the 04:00 window: the monitor must alert on it.
        conn.execute(
            sa.text("DELETE FROM churn_predictions WHERE predicted_at >= :a AND predicted_at < :b"),
            {"a": T0 + timedelta(hours=4), "b": T0 + timedelta(hours=5)},
        )
    engine.dispose()
    airflow_runner.serialize_dags()
    return airflow_runner.load_dags()["modelwatch_churn_hourly"]


def _refused(dag, window_start: str, why: str, capfd) -> None:
    """A manual run at 02:40 asking for ``window_start`` fails in its first try, saying ``why``."""
    manual = T0 + timedelta(hours=2, minutes=40)
    before = _mlflow_windows()
    capfd.readouterr()
    assert airflow_runner.run_dag(dag, run_after=manual, run_conf={"window_start": window_start}) == "failed"
    assert _extract_state(dag.dag_id, manual) == "failed try 1"  # AirflowFailException: no retries
    printed = "".join(capfd.readouterr())
    assert f"AirflowFailException: window_start {window_start!r}" in printed and why in printed
    assert _mlflow_windows() == before  # no MLflow run for the refused window
    assert _stored_windows(manual) == []  # and no warehouse row for it


def test_a_future_window_start_does_not_silence_the_scheduled_runs(churn_dag, https_receiver, capfd):
    for hour in (1, 2):
        assert airflow_runner.run_dag(churn_dag, run_after=T0 + timedelta(hours=hour)) == "success"
    _refused(churn_dag, "2027-11-01T02:00:00", "has not ended", capfd)  # a typo'd year

    # The next scheduled run still counts: the traffic stop in the 04:00 window is alerted, once.
    assert airflow_runner.run_dag(_fresh(churn_dag), run_after=T0 + timedelta(hours=5)) == "success"
    traffic = [b for b in https_receiver.bodies() if "traffic_stopped" in b["dedup_key"]]
    assert [b["event_action"] for b in traffic] == ["trigger"]
    assert max(_mlflow_windows()) == "2026-11-01T04:00:00"


@pytest.mark.parametrize(
    ("window_start", "why"),
    [
        ("2999-01-01T00:00:00", "has not ended"),
        ("2026-11-01T02:00:00", "has not ended"),  # ends at 03:00, after the trigger time
        ("2026-11-01T02:30:00", "is not the start of a hourly window"),  # off-hour
        ("2026-10-31T23:00:00", "before the monitor's start_date"),
        ("2026-02-30T00:00:00", "is not an ISO 8601 date-time"),  # passes the pattern, not the calendar
    ],
)
def test_a_window_the_schedule_would_not_produce_fails_at_once(churn_dag, window_start, why, capfd):
    _refused(churn_dag, window_start, why, capfd)


@pytest.mark.parametrize("window_start", ["yesterday", "2026-13-45", "2026-11-01'; DROP TABLE churn_labels; --"])
def test_a_malformed_window_start_is_refused_at_trigger_time(churn_dag, window_start):
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError, match="does not match"):
        airflow_runner.run_dag(churn_dag, run_after=T0 + timedelta(hours=2), run_conf={"window_start": window_start})
    assert _mlflow_windows() == []


def test_a_valid_window_start_evaluates_exactly_that_window(churn_dag):
    for hour in (1, 2, 3):
        assert airflow_runner.run_dag(churn_dag, run_after=T0 + timedelta(hours=hour)) == "success"
    before = _mlflow_windows()
    conf = {"window_start": "2026-11-01T01:00:00+00:00"}
    assert airflow_runner.run_dag(churn_dag, run_after=T0 + timedelta(hours=3, minutes=5), run_conf=conf) == "success"
    assert _mlflow_windows() == before  # the window's run is updated, not doubled


def test_a_manual_run_with_an_off_hour_logical_date_evaluates_the_last_complete_window(churn_dag):
    """The inferred data interval 01:37 - 02:37 is no window of the schedule: 01:00 - 02:00 is evaluated."""
    assert airflow_runner.run_dag(churn_dag, run_after=T0 + timedelta(hours=2, minutes=37)) == "success"
    assert _mlflow_windows() == ["2026-11-01T00:00:00", "2026-11-01T01:00:00"]  # its own + a recomputation


def test_nan_in_a_numeric_feature_is_counted_and_the_breach_still_alerts(
    airflow_home, tmp_path, monkeypatch, http_receiver, https_receiver
):
    """5 % of monthly_charges (a DOUBLE) 'nan' in every hour: the run succeeds, logs its MLflow run and pages once."""
    url = resolve_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    # The first hour is the reference (the day has no earlier days), so the run diagnoses the breach.
    reference = {"kind": "fixed", "start": T0.isoformat(), "end": (T0 + timedelta(hours=1)).isoformat()}
    _set_up(tmp_path, monkeypatch, url, http_receiver, https_receiver, traffic_stopped=False, reference=reference)
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE churn_predictions SET monthly_charges = 'nan'::DOUBLE WHERE hash(request_id) % 20 = 0")
        )
        nan_rows = conn.execute(sa.text("SELECT count(*) FROM churn_predictions WHERE isnan(monthly_charges)")).scalar()
    assert nan_rows > 100
    airflow_runner.serialize_dags()
    dag = airflow_runner.load_dags()["modelwatch_churn_hourly"]
    assert airflow_runner.run_dag(dag, run_after=T0 + timedelta(hours=2)) == "success"
    assert _mlflow_windows() == ["2026-11-01T00:00:00", "2026-11-01T01:00:00"]
    assert [b["event_action"] for b in https_receiver.bodies()] == ["trigger"] and len(http_receiver.bodies()) == 1
    with engine.connect() as conn:
        documents = conn.execute(sa.text("SELECT document FROM modelwatch_window_documents")).scalars().all()
    rates = [
        q["null_rate"]
        for document in documents
        for q in json.loads(document).get("result", {}).get("quality", [])
        if q["feature"] == "monthly_charges"
    ]
    assert rates and all(0.02 < rate < 0.08 for rate in rates)  # diagnosed, NaN counted as null
