"""An alert event's task-log line and links."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import yaml

from modelwatch.airflow.alert_events import alert_links, event_line
from modelwatch.core.config import parse_monitor

CHURN = yaml.safe_load((Path(__file__).resolve().parents[4] / "include" / "monitors" / "churn.yaml").read_text())


def _event(window_start: datetime | None, value: float | None) -> SimpleNamespace:
    evaluation = SimpleNamespace(
        window_start=window_start, value=value, monitor="churn", cadence="hourly", metric="roc_auc",
        rule_id="absolute-critical",
    )  # fmt: skip
    return SimpleNamespace(
        evaluation=evaluation, kind="trigger", severity="critical", incident=3,
        dedup_key="churn/hourly/roc_auc/absolute-critical",
    )  # fmt: skip


def test_an_event_reads_as_one_sentence() -> None:
    assert event_line(_event(datetime(2026, 11, 3, 6), 0.712345)) == (
        "trigger critical alert #3 churn/hourly roc_auc (absolute-critical): 0.7123 for window 2026-11-03 06:00 "
        "[churn/hourly/roc_auc/absolute-critical]"
    )
    assert "n/a for window no window" in event_line(_event(None, None))


def test_an_event_without_a_window_links_only_the_airflow_run() -> None:
    links = alert_links(parse_monitor(CHURN), "http://airflow/dags/d/runs/r")
    assert links(_event(None, 0.7)) == {"Airflow run": "http://airflow/dags/d/runs/r"}
    assert alert_links(parse_monitor(CHURN), None)(_event(None, 0.7)) == {}
