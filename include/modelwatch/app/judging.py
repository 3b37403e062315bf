"""Judging one run: what the rules need from the warehouse, the rules, the alert events (orchestration).

``judge`` reads the cadence's history, the monitor's own label arrival and the windows of open
incidents, evaluates every rule (:mod:`modelwatch.core.alerts`), diagnoses the quoted window of any event
that has no root cause yet, and records the events (:mod:`modelwatch.app.alerting`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from modelwatch.core.alerts import AlertEvent, RuleEvaluation
from modelwatch.core.config import MonitorConfig
from modelwatch.core.result import RootCause, WindowResult
from modelwatch.core.windows import WindowRun, to_naive_utc
from modelwatch.warehouse.engine import Engine

if TYPE_CHECKING:
    from modelwatch.app.alerting import Links


def history_start(monitor: MonitorConfig, own: WindowResult) -> datetime:
    """Far enough back for every rule: rolling baselines, std bands, M-of-N and the volume rule."""
    width = own.window_end - own.window_start
    needed = [timedelta(days=14), width * 12, timedelta(days=monitor.reference.days + 1)]
    for check in monitor.checks:
        needed.append(width * check.m_of_n[1])
        for rule in check.rules:
            needed.append(width * rule.lookback_windows)
            if rule.baseline is not None and rule.baseline.rolling is not None:
                needed.append(rule.baseline.rolling)
    return own.window_start - max(needed)


def _explainer(
    engine: Engine,
    monitor: MonitorConfig,
    results: Sequence[WindowResult],
    as_of: datetime,
    label_arrival: Mapping[int, float],
) -> Callable[[RuleEvaluation], RootCause | None]:
    """Root cause of an event's quoted window: the window's own when it has one, else diagnosed now
    (baseline-only breaches, warnings, label-free rules), once per window and run; the label coverage
    it should have is the monitor's own arrival at its revision when known."""
    by_start = {to_naive_utc(r.window_start): r for r in results}
    found: dict[datetime, RootCause | None] = {}

    def explain(evaluation: RuleEvaluation) -> RootCause | None:
        if evaluation.window_start is None:
            return None
        window = by_start.get(to_naive_utc(evaluation.window_start))
        if window is None or not monitor.predictions.features:
            return None
        if window.root_cause is not None:
            return window.root_cause
        if window.window_start not in found:
            from modelwatch.app.diagnosis import diagnose_window

            diagnosis = diagnose_window(
                engine,
                monitor,
                WindowRun(window.window, window.revision, as_of, window.status),
                stats=window.stats,
                expected_coverage=label_arrival.get(window.revision),
            )
            found[window.window_start] = diagnosis.root_cause
        return found[window.window_start]

    return explain


def judge(
    engine: Engine,
    monitor: MonitorConfig,
    results: Sequence[WindowResult],
    *,
    as_of: datetime,
    links: Links = None,
) -> list[AlertEvent]:
    """Judge one run's windows with every rule and record the alert events (idempotent per run).

    Reads what the rules need from the warehouse (history of the cadence, the monitor's own label
    arrival, the windows of open incidents) and diagnoses the quoted window of any event without one.
    """
    from modelwatch.app.alerting import record_run
    from modelwatch.core.alerts import dedup_key, evaluate_rules, incident_windows
    from modelwatch.core.rules import expected_label_arrival
    from modelwatch.warehouse.alert_store import alert_states, ensure_alert_tables
    from modelwatch.warehouse.results_store import label_coverage_samples, metric_history

    as_of = to_naive_utc(as_of)
    own = max(results, key=lambda r: r.window_end)
    cadence = own.cadence
    history = metric_history(
        engine,
        monitor=monitor.name,
        cadence=cadence,
        start=history_start(monitor, own),
        end=own.window_end,
        as_of=as_of,
    )
    days = timedelta(days=monitor.operational.label_arrival_days)
    samples = label_coverage_samples(
        engine,
        monitor=monitor.name,
        cadence=cadence,
        start=own.window_start - days,
        end=own.window_start,
        as_of=as_of,
    )
    ensure_alert_tables(engine)
    keys = [dedup_key(monitor.name, cadence, c.metric, r.rule_id) for c in monitor.checks for r in c.rules]
    arrival = expected_label_arrival(samples)
    evaluations = evaluate_rules(
        monitor,
        cadence=cadence,
        as_of=as_of,
        results=results,
        history=history,
        label_arrival=arrival,
        incident_windows=incident_windows(alert_states(engine, keys), until=as_of),
    )
    explain = _explainer(engine, monitor, results, as_of, arrival)
    return record_run(engine, monitor, evaluations, links=links, explain=explain)
