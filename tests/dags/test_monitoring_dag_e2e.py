"""Real DAG runs end to end: warehouse -> join -> metrics -> MLflow -> threshold -> Slack + PagerDuty.

Three consecutive hourly windows run through ``dag.test()`` on a migrated temp metadata DB. The MLflow
runs must carry exactly what scikit-learn computes on the same joined rows, and the local receivers must
get exactly one Slack message and one PagerDuty trigger for the breach that persists across the windows.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from modelwatch.airflow import runner as airflow_runner
from modelwatch.demo.data import DemoSpec, churn_frames
from modelwatch.warehouse.engine import load_frame, make_engine, resolve_url
from tests.monitor_setup import receiver_connections, write_breaching_churn_monitor

pytest_plugins = ("tests.receivers",)

T0 = datetime(2026, 11, 1)
SPEC = DemoSpec(start=T0, days=1, rows_per_hour=600, seed=11, incident_day=0)


def _oracle(predictions: pd.DataFrame, labels: pd.DataFrame, start: datetime, end: datetime, as_of: datetime) -> dict:
    """The join semantics, written plainly in pandas, then scikit-learn."""
    window = predictions[(predictions.predicted_at >= start) & (predictions.predicted_at < end)]
    window = window.sort_values("predicted_at").drop_duplicates("request_id", keep="last")
    known = labels[labels.labeled_at < as_of].sort_values("labeled_at").drop_duplicates("request_id", keep="last")
    joined = window.merge(known, on="request_id", how="inner")
    joined = joined[joined.labeled_at >= joined.predicted_at]
    y, s = joined.churned.to_numpy(), joined.score.to_numpy()
    predicted = (s >= 0.5).astype(int)
    return {
        "predictions": len(window),
        "labelled": len(joined),
        "roc_auc": skm.roc_auc_score(y, s),
        "f1": skm.f1_score(y, predicted),
        "precision": skm.precision_score(y, predicted),
        "recall": skm.recall_score(y, predicted),
        "accuracy": skm.accuracy_score(y, predicted),
    }


def _set_up(tmp_path, monkeypatch, url, slack, pagerduty, **monitor) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Demo data in the warehouse at ``url``, the breaching churn monitor (``monitor`` overrides) and the
    environment pointing the DAGs at them and at the local receivers; returns the loaded frames."""
    predictions, labels = churn_frames(SPEC)
    engine = make_engine(url)
    load_frame(engine, "churn_predictions", predictions)
    load_frame(engine, "churn_labels", labels)
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    write_breaching_churn_monitor(monitors, start=T0, min_samples=50, **monitor)
    monkeypatch.setenv("MODELWATCH_MONITORS_DIR", str(monitors))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", url)
    monkeypatch.setenv("MODELWATCH_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name, value in receiver_connections(slack, pagerduty, routing_key="routing-key-e2e").items():
        monkeypatch.setenv(name, value)
    return predictions, labels


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        return resolve_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    return request.getfixturevalue("fresh_database")("e2e")


def test_three_hourly_runs_log_three_mlflow_runs_and_alert_once(
    airflow_home, tmp_path, monkeypatch, http_receiver, https_receiver, warehouse_url
):
    predictions, labels = _set_up(
        tmp_path, monkeypatch, warehouse_url, http_receiver, https_receiver, traffic_stopped=True
    )
    airflow_runner.serialize_dags()
    dag = airflow_runner.load_dags()["modelwatch_churn_hourly"]
    started = datetime.now(UTC)
    for hour in (1, 2, 3):
        assert airflow_runner.run_dag(dag, run_after=T0 + timedelta(hours=hour)) == "success"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("modelwatch/churn")
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == 3
    as_of = T0 + timedelta(hours=3)
    for run in runs:
        start = datetime.fromisoformat(run.data.tags["modelwatch.window_start"])
        expected = _oracle(predictions, labels, start, start + timedelta(hours=1), as_of)
        got = run.data.metrics
        assert got["count/predictions"] == expected["predictions"]
        assert got["count/labelled"] == expected["labelled"]
        assert abs(got["roc_auc"] - expected["roc_auc"]) <= 1e-3
        # The checked metric (roc_auc, the only check here) keeps its name; the rest are grouped under "other/".
        for name in ("f1", "precision", "recall", "accuracy"):
            assert got[f"other/{name}"] == pytest.approx(expected[name], abs=1e-12), name

    slack_bodies = http_receiver.bodies()
    assert len(slack_bodies) == 1
    assert "roc_auc" in json.dumps(slack_bodies[0])
    pagerduty_bodies = https_receiver.bodies()
    assert len(pagerduty_bodies) == 1
    assert pagerduty_bodies[0]["event_action"] == "trigger"
    assert pagerduty_bodies[0]["dedup_key"].startswith("modelwatch/churn/hourly/roc_auc/")
    assert np.isfinite(pagerduty_bodies[0]["payload"]["custom_details"]["value"])
    _assert_links_open_the_alert_window(client, pagerduty_bodies[0], json.dumps(slack_bodies[0]))
    _assert_task_logs_are_readable_as_the_ui_reads_them(dag.dag_id, since=started)
    _assert_each_run_notes_its_verdict(dag.dag_id, since=started)


def _assert_task_logs_are_readable_as_the_ui_reads_them(dag_id: str, *, since: datetime) -> None:
    """Airflow's log reader (what the UI's log view calls) finds modelwatch's lines for every task this
    test ran (the metadata DB is the session's: other tests ran the same DAG before)."""
    from airflow.models import TaskInstance
    from airflow.utils.log.log_reader import TaskLogReader
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.start_date >= since).all()
        assert len(tis) == 15  # three runs of five tasks
        events = {}
        for ti in tis:
            stream, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
            events[(ti.run_id, ti.task_id)] = [getattr(m, "event", str(m)) for m in stream]
    assert all(any("ran in-process" in e for e in lines) for lines in events.values())
    extract_lines = [e for (_, task), lines in events.items() if task == "extract_and_validate" for e in lines]
    assert any(" rows" in e and "rev " in e for e in extract_lines), extract_lines[:5]
    assert not any("Window(" in e or "AlertEvent(" in e for lines in events.values() for e in lines)  # no reprs


def _assert_each_run_notes_its_verdict(dag_id: str, *, since: datetime) -> None:
    """The grid's tooltip and the run's page show the window's verdict (the run's note)."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ran = session.query(TaskInstance.run_id).filter(TaskInstance.dag_id == dag_id, TaskInstance.start_date >= since)
        runs = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id.in_(ran.scalar_subquery()))
        notes = [run.note for run in runs.order_by(DagRun.logical_date)]
    assert len(notes) == 3 and all(notes), notes
    assert all(note.startswith("**breach**: hourly window") for note in notes[1:]), notes  # the 0.99 floor
    assert any("alert event(s):" in note and "trigger critical alert #1" in note for note in notes), notes


def _assert_links_open_the_alert_window(client, pagerduty_body: dict, slack_text: str) -> None:
    """The MLflow link is the alert window's own run, and that run holds a report judging the rule."""
    links = {link["text"]: link["href"] for link in pagerduty_body["links"]}
    assert set(links) == {"MLflow run", "Report", "Airflow run"}
    run_id = links["MLflow run"].rsplit("/", 1)[-1]
    run = client.get_run(run_id)
    assert run.data.tags["modelwatch.window_start"] == pagerduty_body["payload"]["custom_details"]["window_start"]
    assert links["Report"].endswith(f"run_uuid={run_id}") and links["MLflow run"] in slack_text
    assert "/dags/modelwatch_churn_hourly/runs/" in links["Airflow run"]
    local = client.download_artifacts(run_id, "report.html")
    with open(local, encoding="utf-8") as page:
        assert 'id="verdict" data-status="breach"' in page.read()  # the report leads with the alert's verdict


def test_a_sustained_breach_triggers_one_retraining_run(
    airflow_home, tmp_path, monkeypatch, http_receiver, https_receiver
):
    """Breaching hours 1-3 with ``after_breaches: 2``: hour 2 triggers the run, hour 3 finds it and skips.

    The retraining target must be a DAG Airflow knows; the monitor's own daily DAG stands in for the
    user's training DAG (it is only queued, never run, here).
    """
    target = "modelwatch_churn_daily"
    retraining = {"dag_id": target, "after_breaches": 2, "conf": {"training_days": 14}}
    url = resolve_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    _set_up(
        tmp_path,
        monkeypatch,
        url,
        http_receiver,
        https_receiver,
        traffic_stopped=False,
        cadences=["hourly", "daily"],
        retraining=retraining,
    )
    airflow_runner.serialize_dags()
    dag = airflow_runner.load_dags()["modelwatch_churn_hourly"]
    assert {"plan_retraining", "trigger_retraining"} <= set(dag.task_ids)
    states = []
    for hour in (1, 2, 3):
        assert airflow_runner.run_dag(dag, run_after=T0 + timedelta(hours=hour)) == "success"
        states.append(_task_states(dag.dag_id, "trigger_retraining"))

    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter(DagRun.dag_id == target).all()
        triggered = [run.conf for run in runs if run.run_id.startswith("modelwatch_retrain__churn__")]
    assert len(triggered) == 1
    conf = triggered[0]
    assert conf["training_days"] == 14
    assert conf["modelwatch"]["metric"] == "roc_auc" and conf["modelwatch"]["incident"] == 1
    assert conf["modelwatch"]["breaching_windows"] >= 2
    assert states[0][-1] == "skipped"  # one breach: not sustained yet
    assert states[1][-1] == "success"  # second breach: triggered
    assert states[2][-1] == "skipped"  # same incident: the run exists, nothing doubled


def _task_states(dag_id: str, task_id: str) -> list[str]:
    """States of ``task_id`` in the DAG's runs, oldest run first."""
    from airflow.models import DagRun, TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance.state)
            .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(DagRun.run_after)
            .all()
        )
    return [str(state) for (state,) in rows]
