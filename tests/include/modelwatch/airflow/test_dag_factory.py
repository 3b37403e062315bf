"""Where the monitors come from, what a task process parses, and the per-monitor Airflow settings."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from modelwatch.airflow.dag_factory import build_dags, duckdb_pool
from modelwatch.airflow.monitors_folder import MonitorsFolderError

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
CHURN = yaml.safe_load((MONITORS / "churn.yaml").read_text())


def _write(directory: Path, name: str, suffix: str = ".yaml", **overrides: object) -> Path:
    path = directory / f"{name}{suffix}"
    path.write_text(yaml.safe_dump({**CHURN, "name": name, **overrides}))
    return path


@pytest.fixture(autouse=True)
def _no_folder_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_MONITORS_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__MODELWATCH__MONITORS_DIR", raising=False)
    monkeypatch.delenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", raising=False)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root / "missing", "does not exist"),
        (lambda root: root, "holds no \\*.yaml or \\*.yml file"),
    ],
)
def test_missing_or_empty_folder_is_an_error_naming_it(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "notes.txt").write_text("not a monitor")
    folder = make(tmp_path)
    with pytest.raises(MonitorsFolderError, match=message) as caught:
        build_dags(folder)
    assert str(folder) in str(caught.value)


def test_a_yml_monitor_tasks_read_their_own_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "churn", ".yml", cadences=["hourly"])
    dags = build_dags(tmp_path)
    assert set(dags) == {"modelwatch_churn_hourly"}
    assert f"**Monitor file:** `{path.resolve()}`" in dags["modelwatch_churn_hourly"].doc_md


def test_a_task_process_parses_only_its_monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """40 monitor files, one broken: the task of m07 builds m07's DAGs only and never reads the broken file."""
    for number in range(40):
        _write(tmp_path, f"m{number:02d}")
    (tmp_path / "m39.yaml").write_text("name: [unclosed")
    started = time.perf_counter()
    everything = build_dags(tmp_path)
    full = time.perf_counter() - started
    assert len(everything) == 39 * 2 + 1 and "modelwatch_invalid_m39" in everything

    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "modelwatch_m07_daily")
    started = time.perf_counter()
    one = build_dags(tmp_path)
    single = time.perf_counter() - started
    assert set(one) == {"modelwatch_m07_hourly", "modelwatch_m07_daily"}
    assert single < full / 5, (single, full)
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "modelwatch_invalid_m39")
    assert set(build_dags(tmp_path)) == {"modelwatch_invalid_m39"}
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "someone_elses_dag")
    assert len(build_dags(tmp_path)) == len(everything)


def test_airflow_section_sets_every_task(tmp_path: Path) -> None:
    settings = {
        "pool": "warehouse",
        "queue": "monitoring",
        "retries": 5,
        "retry_delay": "30s",
        "execution_timeout": "20m",
        "dagrun_timeout": "3h",
        "max_active_runs": 3,
    }
    _write(tmp_path, "churn", airflow=settings)
    dag = build_dags(tmp_path)["modelwatch_churn_hourly"]
    assert dag.max_active_runs == 3 and dag.dagrun_timeout == timedelta(hours=3)
    for task in dag.tasks:
        assert (task.pool, task.queue, task.retries) == ("warehouse", "monitoring", 5)
        assert (task.retry_delay, task.execution_timeout) == (timedelta(seconds=30), timedelta(minutes=20))


def test_defaults_bound_each_task_and_run(tmp_path: Path) -> None:
    _write(tmp_path, "churn")
    dags = build_dags(tmp_path)
    hourly, daily = dags["modelwatch_churn_hourly"], dags["modelwatch_churn_daily"]
    assert (hourly.dagrun_timeout, hourly.deadline, daily.dagrun_timeout, daily.deadline) == (None,) * 4
    assert (hourly.max_active_runs, daily.max_active_runs) == (4, 2)
    assert {(t.pool, t.execution_timeout, t.retries) for t in hourly.tasks} == {
        ("default_pool", timedelta(minutes=30), 2)
    }


def test_a_duckdb_url_monitor_gets_a_one_slot_pool(tmp_path: Path) -> None:
    _write(tmp_path, "churn", warehouse={"url": "duckdb:///.modelwatch/churn.duckdb"})
    dags = build_dags(tmp_path)
    for dag in dags.values():
        assert dag.max_active_runs == 1
        assert {t.pool for t in dag.tasks} == {"modelwatch_duckdb_churn"}
    # With a conn_id the connection decides the warehouse's kind, not the fallback url.
    assert duckdb_pool_of(CHURN["warehouse"]) is None
    assert duckdb_pool_of({"url": "duckdb:///:memory:"}) is None
    assert duckdb_pool_of({"url": "postgresql://h/db"}) is None


def duckdb_pool_of(warehouse: dict) -> str | None:
    from modelwatch.core.config import parse_monitor

    return duckdb_pool(parse_monitor({**CHURN, "warehouse": warehouse}))


def test_failures_and_late_runs_alert_on_the_monitor_routes(tmp_path: Path) -> None:
    """Each task reports its final failure through the providers' notifiers; each run carries one deadline
    alert per route (delivered by the triggerer, which dag.test() does not run)."""
    from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    _write(tmp_path, "churn", airflow={"deadline": "45m"})
    _write(tmp_path, "quiet", routes={})
    dags = build_dags(tmp_path)
    hourly = dags["modelwatch_churn_hourly"]
    for task in hourly.tasks:
        slack, pagerduty = task.on_failure_callback
        assert isinstance(slack, SlackWebhookNotifier) and slack.slack_webhook_conn_id == "modelwatch_slack"
        assert isinstance(pagerduty, PagerdutyNotifier) and pagerduty.pagerduty_events_conn_id == "modelwatch_pagerduty"
    deadlines = hourly.deadline
    assert [d.interval for d in deadlines] == [timedelta(minutes=45)] * 2
    assert [d.callback.kwargs.get("slack_webhook_conn_id") for d in deadlines] == ["modelwatch_slack", None]
    assert "modelwatch_churn_hourly is not done 0:45:00 after it was queued" in deadlines[0].callback.kwargs["text"]
    assert [d.interval for d in dags["modelwatch_churn_daily"].deadline] == [timedelta(minutes=45)] * 2
    quiet = dags["modelwatch_quiet_hourly"]
    assert not quiet.deadline and not any(t.on_failure_callback for t in quiet.tasks)
