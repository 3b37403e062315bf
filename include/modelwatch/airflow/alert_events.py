"""How an alert event shows up outside the warehouse: its task-log line and the links it carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelwatch.core.config import MonitorConfig


def event_line(event: Any) -> str:
    """One readable sentence for the task log (no reprs)."""
    e = event.evaluation
    window = e.window_start.strftime("%Y-%m-%d %H:%M") if e.window_start else "no window"
    value = "n/a" if e.value is None else f"{e.value:.4g}"
    return (
        f"{event.kind} {event.severity} alert #{event.incident} {e.monitor}/{e.cadence} {e.metric} "
        f"({e.rule_id}): {value} for window {window} [{event.dedup_key}]"
    )


def alert_links(monitor: MonitorConfig, airflow_url: str | None) -> Callable[[Any], dict[str, str]]:
    """Links of one alert event: its OWN window's MLflow run and report (not the run that raised it,
    which may have recomputed an earlier window) and the Airflow run that raised it."""
    from modelwatch.integrations.tracking import window_run

    def links(event: Any) -> dict[str, str]:
        evaluation = event.evaluation
        out: dict[str, str] = {}
        if evaluation.window_start is not None:
            run = window_run(monitor, cadence=evaluation.cadence, window_start=evaluation.window_start)
            if run is not None:
                out |= {"MLflow run": run.url, "Report": run.report_url}
        if airflow_url:
            out["Airflow run"] = airflow_url
        return out

    return links
