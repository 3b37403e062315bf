"""When a sustained breach should retrain the model (pure: no I/O).

A metric alert that stays open for ``retraining.after_breaches`` breaching windows asks for one retraining
run per alert incident. The Airflow run id is derived from the alert's identity and incident number, so
the trigger is idempotent: a retried task, a re-run window or every later breaching window of the same
incident names the same run, and Airflow keeps the first (``skip_when_already_exists``). A new incident
(the alert resolved, then opened again) gets a new run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelwatch.core.alerts import OPEN, AlertState, dedup_key
from modelwatch.core.config import Cadence, MonitorConfig


@dataclass(frozen=True)
class RetrainingRequest:
    """One retraining run to trigger: the DAG, its run id and its conf."""

    dag_id: str
    run_id: str
    conf: dict[str, Any]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def watched_alerts(monitor: MonitorConfig, cadence: str) -> dict[str, str]:
    """dedup key -> metric of every rule the retraining config watches at this cadence."""
    cfg = monitor.retraining
    assert cfg is not None
    metrics = set(cfg.metrics) or {c.metric for c in monitor.checks}
    return {
        dedup_key(monitor.name, cadence, check.metric, rule.rule_id): check.metric
        for check in monitor.checks
        if check.metric in metrics
        for rule in check.rules
    }


def run_id_for(monitor: str, alert: str, incident: int) -> str:
    """``modelwatch_retrain__<monitor>__<incident>__<hash of the alert key>``: valid as an Airflow run id."""
    digest = hashlib.sha256(alert.encode()).hexdigest()[:12]
    return f"modelwatch_retrain__{monitor}__{incident}__{digest}"


def plan_retraining(
    monitor: MonitorConfig, cadence: str, states: Sequence[AlertState], *, as_of: datetime
) -> RetrainingRequest | None:
    """The retraining run this monitor's alerts ask for, if any.

    Args:
        monitor: The monitor; None is returned when it has no ``retraining`` section.
        cadence: The cadence of the run that just advanced the alerts.
        states: Alert states after that run (any monitor's; others are ignored).
        as_of: The run's as_of, recorded in the conf.

    Returns:
        A request for the longest-open qualifying alert (open, severe enough, on a watched metric and
        cadence, with at least ``after_breaches`` breaching windows), or None.
    """
    cfg = monitor.retraining
    if cfg is None or (cfg.cadences and Cadence(cadence) not in cfg.cadences):
        return None
    watched = watched_alerts(monitor, cadence)
    due = [
        s
        for s in states
        if s.dedup_key in watched
        and s.state == OPEN
        and s.severity.rank >= cfg.min_severity.rank
        and s.breach_count >= cfg.after_breaches
    ]
    if not due:
        return None
    alert = min(due, key=lambda s: (s.opened_at or as_of, s.dedup_key))
    conf = {
        **cfg.conf,
        "modelwatch": {
            "monitor": monitor.name,
            "model": monitor.model.name,
            "cadence": cadence,
            "metric": watched[alert.dedup_key],
            "alert": alert.dedup_key,
            "incident": alert.incident,
            "severity": alert.severity,
            "breaching_windows": alert.breach_count,
            "last_value": alert.last_value,
            "opened_at": _iso(alert.opened_at),
            "first_breach_window": _iso(alert.first_breach_window),
            "last_breach_window": _iso(alert.last_breach_window),
            "as_of": _iso(as_of),
        },
    }
    return RetrainingRequest(cfg.dag_id, run_id_for(monitor.name, alert.dedup_key, alert.incident), conf)
