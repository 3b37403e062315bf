"""The monitor of the monitor: a run that fails is reported through the providers' notifiers on its routes."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from modelwatch.airflow import runner as airflow_runner
from modelwatch.warehouse.engine import resolve_url
from tests.monitor_setup import receiver_connections, write_breaching_churn_monitor

pytest_plugins = ("tests.receivers",)

T0 = datetime(2026, 11, 1)


def test_a_failed_run_posts_to_the_monitor_slack_route(
    airflow_home, tmp_path, monkeypatch, http_receiver, https_receiver
):
    """The warehouse has no predictions table: extract fails (no retries), the run fails, Slack hears of it."""
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    write_breaching_churn_monitor(
        monitors,
        start=T0,
        min_samples=1,
        traffic_stopped=False,
        routes={"slack": {"conn_id": "modelwatch_slack"}},
        airflow={"retries": 0},
    )
    monkeypatch.setenv("MODELWATCH_MONITORS_DIR", str(monitors))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", resolve_url(f"duckdb:///{tmp_path / 'empty.duckdb'}"))
    monkeypatch.setenv("MODELWATCH_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    for name, value in receiver_connections(http_receiver, https_receiver, routing_key="rk").items():
        monkeypatch.setenv(name, value)
    airflow_runner.serialize_dags()
    dag = airflow_runner.load_dags()["modelwatch_churn_hourly"]

    assert airflow_runner.run_dag(dag, run_after=T0 + timedelta(hours=1)) == "failed"
    bodies = http_receiver.bodies()
    assert len(bodies) == 1, bodies
    text = json.dumps(bodies[0])
    assert "task extract_and_validate of modelwatch_churn_hourly failed in run manual__" in text
    assert https_receiver.bodies() == []  # no PagerDuty route on this monitor
