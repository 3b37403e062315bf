"""The "Model monitors" page as the on-call engineer opens it: the real ``airflow api-server`` with the
plugin, a real warehouse holding the demo's incident, Airflow's login, headless Chromium.

The incident hour 06:00 of day 2 is judged by the 11:00 run (its labels arrive late), so the page and
the alert must point at 06:00's MLflow run, not at 11:00's.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from modelwatch.warehouse.engine import make_engine, resolve_url
from tests.incident_warehouse import T0, run_hour, seed, shipped_monitor
from tests.integration.conftest import free_port

pytest_plugins = ("tests.browser",)
pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
USER, PASSWORD = "oncall", "incident-06"


def _wait_until_up(url: str, stack, deadline: float) -> None:
    while time.monotonic() < deadline:
        stack.assert_alive()
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # answering (a 401/redirect is an answer)
        except OSError:
            time.sleep(1)
    pytest.fail(f"api-server did not answer at {url}:\n{stack.log_tail('api-server')}")


def test_overview_lists_the_incident_with_its_verdict(
    airflow_processes, tmp_path: Path, page, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = airflow_processes
    url = resolve_url(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    seed(url)
    day2 = T0 + timedelta(days=1)
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    churn_monitor = shipped_monitor(monitors, "churn", first_hour=day2 + timedelta(hours=5))
    delivery_monitor = shipped_monitor(monitors, "delivery", first_hour=day2 + timedelta(hours=5))
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    port = free_port()
    env = {
        "MODELWATCH_MONITORS_DIR": str(monitors),
        "MODELWATCH_WAREHOUSE_URL": url,
        "MODELWATCH_ROOT": str(tmp_path),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MODELWATCH_MLFLOW_UI_URL": "http://mlflow.example:5000",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    engine = make_engine(url)
    hours = [day2 + timedelta(hours=hour) for hour in range(6, 12)]
    events = [event for end in hours for event in run_hour(engine, churn_monitor, end)]
    delivery_events = [event for end in hours[:3] for event in run_hour(engine, delivery_monitor, end)]
    engine.dispose()  # DuckDB: one process at a time; the API server reads it next
    critical = [e for e in events if e.dedup_key.endswith("roc_auc/absolute:critical")]
    assert [(e.kind, e.evaluation.window_start) for e in critical] == [("trigger", day2 + timedelta(hours=6))]
    assert any(e.dedup_key.startswith("modelwatch/delivery/hourly/mae/") for e in delivery_events)

    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    stack.env.update(env)
    stack.env.update(
        {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False",
        }
    )
    stack.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    _wait_until_up(f"{base}/api/v2/monitor/health", stack, time.monotonic() + 180)

    page.goto(f"{base}/modelwatch/overview")
    assert "/auth/login" in page.url  # not signed in: Airflow's login first
    page.fill("input[name='username']", USER)
    page.fill("input[name='password']", PASSWORD)
    page.click("button[type='submit']")
    page.wait_for_url(f"{base}/modelwatch/overview*", timeout=30_000)

    churn = page.locator("#monitor-churn")
    assert churn.get_attribute("data-status") == "alerting"
    incident = churn.locator("tr.incident[data-state='open'][data-metric='roc_auc'][data-rule='absolute:critical']")
    assert incident.count() == 1
    assert incident.get_attribute("data-verdict") == "data_drift"
    assert "2026-11-02 06:00" in incident.inner_text()
    mlflow_link = incident.locator("a", has_text="MLflow run").get_attribute("href", timeout=5000)
    from mlflow import MlflowClient

    run = MlflowClient(mlflow_uri).get_run(mlflow_link.rsplit("/", 1)[-1])
    assert run.data.tags["modelwatch.window_start"] == "2026-11-02T06:00:00"  # the incident's own window
    assert churn.locator("tr[data-cadence='hourly'] svg polyline").count() == 1
    assert churn.locator("tr[data-cadence='hourly'] svg line").count() == 1  # roc_auc's absolute floor 0.8
    delivery = page.locator("#monitor-delivery")
    assert delivery.get_attribute("data-status") == "alerting"
    # Both of delivery's metric rules breach in the incident hour, and its label-free rules (feature and
    # multivariate drift) opened before them. Select rows by metric, not by text: the r2 row's root cause is
    # the window's, which names mae (the monitor's main metric).
    opened = delivery.locator("tr.incident[data-state='open']")
    metrics = sorted(opened.nth(i).get_attribute("data-metric") for i in range(opened.count()))
    assert [m for m in metrics if m in ("mae", "r2")] == ["mae", "r2"]
    assert "feature_drift" in metrics, metrics  # the early, label-free page is listed too
    mae = delivery.locator("tr.incident[data-state='open'][data-metric='mae']")
    assert mae.count() == 1 and mae.get_attribute("data-verdict") == "data_drift"
    assert "traffic_index" in mae.inner_text()
    DOCS.mkdir(exist_ok=True)
    page.screenshot(path=str(DOCS / "overview.png"), full_page=True)
