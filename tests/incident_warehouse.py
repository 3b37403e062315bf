"""A real warehouse holding a real incident: the demo's data, monitored hour by hour by the library code
the DAG tasks call (extract -> compute -> MLflow -> rules -> alert state), without Airflow.

Day 1 is the reference (the same hours of the previous day); on day 2, 06:00-14:00, region EU's
``support_calls`` (churn) and ``traffic_index`` (delivery) shift and the models get worse there: the
shipped rules alert on it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from modelwatch.core.config import MonitorConfig, load_monitor

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 1)


def shipped_monitor(directory: Path, name: str, *, first_hour: datetime) -> MonitorConfig:
    """A shipped monitor (``churn``, ``delivery``), hourly only, its windows computed from ``first_hour``."""
    raw = yaml.safe_load((REPO / "include" / "monitors" / f"{name}.yaml").read_text())
    raw |= {"start_date": first_hour.isoformat(), "cadences": ["hourly"]}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_monitor(path)


def seed(url: str, *, rows_per_hour: int = 2000, seed: int = 7) -> None:
    from modelwatch.demo.data import DemoSpec, churn_frames, delivery_frames
    from modelwatch.warehouse.engine import load_frame, make_engine

    spec = DemoSpec(start=T0, days=2, rows_per_hour=rows_per_hour, seed=seed, incident_day=2)
    engine = make_engine(url)
    for name, frames in (("churn", churn_frames), ("delivery", delivery_frames)):
        predictions, labels = frames(spec)
        load_frame(engine, f"{name}_predictions", predictions)
        load_frame(engine, f"{name}_labels", labels)
    engine.dispose()


def run_hour(engine: Any, monitor: MonitorConfig, end: datetime, *, airflow_url: str | None = None) -> list[Any]:
    """What one hourly DAG run does for the window ending at ``end``; returns its alert events."""
    from modelwatch.airflow.alert_events import alert_links
    from modelwatch.airflow.logging_policy import rule_statuses, worth_a_run_update
    from modelwatch.app.judging import history_start, judge
    from modelwatch.app.pipeline import compute, extract
    from modelwatch.core.windows import Window
    from modelwatch.integrations.tracking import log_window
    from modelwatch.warehouse.results_store import metric_history

    keys = extract(engine, monitor, window=Window(end - timedelta(hours=1), end, "hourly"), as_of=end)
    results = compute(engine, monitor, keys)
    own = results[-1]
    history = metric_history(
        engine, monitor=monitor.name, cadence="hourly", start=history_start(monitor, own), end=own.window_end
    )
    for result in results:
        if result is own or worth_a_run_update(monitor, result):
            statuses = rule_statuses(monitor, result, as_of=end, history=history)
            log_window(result, monitor=monitor, history=history, evaluations=statuses)
    # As evaluate_thresholds does: judging reads what the rules need and diagnoses each event's window.
    return judge(engine, monitor, results, as_of=end, links=alert_links(monitor, airflow_url))
