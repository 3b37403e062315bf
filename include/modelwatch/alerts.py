"""Alert decisions and the alert lifecycle (pure: no I/O).

Decisions advance per RUN, a tick identified by ``as_of`` (the end of the DAG run's data interval),
not per window: one run computes several windows (the fresh one and revisions of provisional ones
whose labels are still arriving). :func:`evaluate_rules` turns one run's windows into one
:class:`RuleEvaluation` per (check, rule) plus the operational rules; :func:`advance` moves one
alert's :class:`AlertState` by one tick and returns the events to notify. A tick at or before the
state's ``last_as_of`` is ignored, which is why retries, re-runs and backfills send nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from modelwatch.config import MetricCheck, MonitorConfig, Severity
from modelwatch.result import HistoryPoint, RootCause, WindowResult
from modelwatch.thresholds import IntervalFn, metric_value, threshold_for

BREACH = "breach"
HEALTHY = "healthy"
INSUFFICIENT = "insufficient"

OPEN = "open"
RESOLVED = "resolved"

TRIGGER = "trigger"
ESCALATE = "escalate"
RESOLVE = "resolve"

TRAFFIC_STOPPED = "traffic_stopped"
LABELS_STALLED = "labels_stalled"
TREND_POINTS = 12
_SEVERITY_RANK = {Severity.WARNING.value: 1, Severity.CRITICAL.value: 2}


def severity_rank(severity: str) -> int:
    """warning 1, critical 2, anything else 0."""
    return _SEVERITY_RANK.get(severity, 0)


@dataclass(frozen=True)
class RuleEvaluation:
    """One rule's verdict for one run, with everything a message needs."""

    dedup_key: str
    monitor: str
    model: str
    cadence: str
    metric: str
    rule_id: str
    rule_type: str
    severity: str
    status: str
    """BREACH, HEALTHY or INSUFFICIENT (neither an alert nor a pass)."""
    as_of: datetime
    window_start: datetime | None = None
    window_end: datetime | None = None
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    baseline: float | None = None
    description: str = ""
    """How the bounds were derived, or why the status is INSUFFICIENT."""
    labelled: int | None = None
    label_coverage: float | None = None
    window_status: str | None = None
    """'provisional' or 'final'."""
    model_versions: tuple[str, ...] = ()
    trend: tuple[float, ...] = ()
    root_cause: RootCause | None = None


@dataclass(frozen=True)
class AlertState:
    """One alert's lifecycle state (one per dedup_key); ``incident`` 0 means it never opened."""

    dedup_key: str
    state: str
    severity: str
    incident: int = 0
    opened_at: datetime | None = None
    last_as_of: datetime | None = None
    breach_count: int = 0
    """Breached ticks in the current (or last) incident."""
    healthy_streak: int = 0
    last_value: float | None = None
    recent_statuses: tuple[str, ...] = ()
    """BREACH/HEALTHY of the last N evaluated ticks (M-of-N)."""
    first_breach_window: datetime | None = None
    """``window_start`` of the incident's first breached decision window."""
    last_breach_window: datetime | None = None


@dataclass(frozen=True)
class AlertEvent:
    kind: str
    """TRIGGER, ESCALATE or RESOLVE."""
    dedup_key: str
    incident: int
    severity: str
    evaluation: RuleEvaluation


def dedup_key(monitor: str, cadence: str, metric: str, rule_id: str) -> str:
    """The stable identity of one alert, shared by Slack, PagerDuty and the alerts table.

    Example: ``modelwatch/churn/hourly/roc_auc/absolute:critical``.
    """
    return f"modelwatch/{monitor}/{cadence}/{metric}/{rule_id}"


def _utc(moment: datetime) -> datetime:
    # Naive datetimes are UTC throughout modelwatch; comparing them with aware ones must not raise.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _trend(history: Sequence[HistoryPoint], metric: str) -> tuple[float, ...]:
    ordered = sorted(history, key=lambda p: _utc(p.window_end))
    values = [p.metrics.get(metric) for p in ordered]
    return tuple(float(v) for v in values if v is not None)[-TREND_POINTS:]


def _base(
    monitor: MonitorConfig, cadence: str, as_of: datetime, metric: str, rule_id: str, rule_type: str, severity: str
) -> dict:
    return {
        "dedup_key": dedup_key(monitor.name, cadence, metric, rule_id),
        "monitor": monitor.name,
        "model": monitor.model.name,
        "cadence": cadence,
        "metric": metric,
        "rule_id": rule_id,
        "rule_type": rule_type,
        "severity": severity,
        "as_of": as_of,
    }


def _window_fields(window: WindowResult) -> dict:
    return {
        "window_start": window.window_start,
        "window_end": window.window_end,
        "labelled": window.counts.labelled,
        "label_coverage": window.label_coverage,
        "window_status": window.status,
        "model_versions": tuple(window.stats.model_versions),
        "root_cause": window.root_cause,
    }


def _newest(results: Sequence[WindowResult]) -> list[WindowResult]:
    return sorted(results, key=lambda r: _utc(r.window_end), reverse=True)


def _judgeable(result: WindowResult, check: MetricCheck) -> bool:
    """Enough labelled rows, and enough coverage unless the window is final (early labels are biased)."""
    coverage = result.counts.label_coverage or 0.0
    mature = result.status == "final" or coverage >= check.min_coverage
    return result.counts.labelled >= check.min_samples and mature


def _check_evaluations(
    monitor: MonitorConfig,
    check: MetricCheck,
    cadence: str,
    as_of: datetime,
    results: Sequence[WindowResult],
    history: Sequence[HistoryPoint],
    interval_fn: IntervalFn | None,
) -> list[RuleEvaluation]:
    decision = next((r for r in _newest(results) if _judgeable(r, check)), None)
    trend = _trend(history, check.metric)
    evaluations = []
    for rule in check.rules:
        base = _base(monitor, cadence, as_of, check.metric, rule.rule_id, rule.type, rule.severity.value)
        if decision is None:
            reason = f"no window has >= {check.min_samples} labelled rows and {check.min_coverage:.0%} coverage yet"
            evaluations.append(RuleEvaluation(**base, status=INSUFFICIENT, description=reason, trend=trend))
            continue
        fields = _window_fields(decision)
        value = metric_value(decision, check.metric)
        threshold = threshold_for(rule, check.metric, interval_fn=interval_fn)
        bounds = threshold.bounds(current=decision, history=history)
        breach = None if bounds is None else threshold.is_breach(decision, bounds)
        if bounds is None or breach is None:
            metric = decision.metrics.get(check.metric)
            reason = (metric.reason if metric and metric.reason else None) or (
                "metric undefined for the window" if value is None else "bounds cannot be computed yet"
            )
            evaluations.append(
                RuleEvaluation(**base, **fields, status=INSUFFICIENT, value=value, description=reason, trend=trend)
            )
            continue
        evaluations.append(
            RuleEvaluation(
                **base,
                **fields,
                status=BREACH if breach else HEALTHY,
                value=value,
                lower=bounds.lower,
                upper=bounds.upper,
                baseline=bounds.baseline,
                description=bounds.description,
                trend=trend,
            )
        )
    return evaluations


def _traffic_stopped(
    monitor: MonitorConfig,
    cadence: str,
    as_of: datetime,
    results: Sequence[WindowResult],
    history: Sequence[HistoryPoint],
) -> RuleEvaluation:
    base = _base(monitor, cadence, as_of, "predictions", TRAFFIC_STOPPED, TRAFFIC_STOPPED, Severity.CRITICAL.value)
    trend = tuple(float(p.predictions) for p in sorted(history, key=lambda p: _utc(p.window_end)))[-TREND_POINTS:]
    if not results:
        return RuleEvaluation(**base, status=INSUFFICIENT, description="no window computed", trend=trend)
    newest = _newest(results)[0]
    predictions = newest.counts.predictions
    return RuleEvaluation(
        **base,
        **_window_fields(newest),
        status=BREACH if predictions == 0 else HEALTHY,
        value=float(predictions),
        lower=1.0,
        description="the newest window must have predictions",
        trend=trend,
    )


def _labels_stalled(
    monitor: MonitorConfig,
    cadence: str,
    as_of: datetime,
    results: Sequence[WindowResult],
    history: Sequence[HistoryPoint],
) -> RuleEvaluation:
    delay = monitor.label_delay
    base = _base(monitor, cadence, as_of, "label_coverage", LABELS_STALLED, LABELS_STALLED, Severity.WARNING.value)
    ordered = sorted(history, key=lambda p: _utc(p.window_end))
    trend = tuple(p.labelled / p.predictions for p in ordered if p.predictions)[-TREND_POINTS:]
    due = [r for r in _newest(results) if _utc(as_of) - _utc(r.window_end) >= delay.expected]
    if not due:
        reason = f"no window is older than the expected label delay {delay.expected}"
        return RuleEvaluation(**base, status=INSUFFICIENT, description=reason, trend=trend)
    stalled = [r for r in due if r.label_coverage is not None and r.label_coverage < delay.stalled_coverage]
    window = stalled[0] if stalled else due[0]
    description = f"label coverage must reach {delay.stalled_coverage:.0%} within {delay.expected}"
    return RuleEvaluation(
        **base,
        **_window_fields(window),
        status=BREACH if stalled else HEALTHY,
        value=window.label_coverage,
        lower=delay.stalled_coverage,
        description=description,
        trend=trend,
    )


def evaluate_rules(
    monitor: MonitorConfig,
    *,
    cadence: str,
    as_of: datetime,
    results: Sequence[WindowResult],
    history: Sequence[HistoryPoint],
    interval_fn: IntervalFn | None = None,
) -> list[RuleEvaluation]:
    """Evaluate every rule of ``monitor`` for one run.

    Args:
        monitor: The monitor's configuration.
        cadence: 'hourly' or 'daily'.
        as_of: End of the run's data interval; identifies the tick.
        results: The windows this run computed (the fresh one and revised provisional ones).
        history: Latest revisions of earlier windows of the same cadence (baselines, bands, trend).
        interval_fn: Optional replacement for the bootstrap interval (see ``threshold_for``).

    Returns:
        One evaluation per (check, rule), then ``traffic_stopped`` and ``labels_stalled`` when enabled.
    """
    cadence = str(getattr(cadence, "value", cadence))
    evaluations: list[RuleEvaluation] = []
    for check in monitor.checks:
        evaluations.extend(_check_evaluations(monitor, check, cadence, as_of, results, history, interval_fn))
    if monitor.operational.traffic_stopped:
        evaluations.append(_traffic_stopped(monitor, cadence, as_of, results, history))
    if monitor.operational.labels_stalled:
        evaluations.append(_labels_stalled(monitor, cadence, as_of, results, history))
    return evaluations


def check_for(monitor: MonitorConfig, evaluation: RuleEvaluation) -> MetricCheck | None:
    """The check an evaluation came from (None for operational rules)."""
    for check in monitor.checks:
        if check.metric == evaluation.metric and any(r.rule_id == evaluation.rule_id for r in check.rules):
            return check
    return None


def _on_breach(state: AlertState, evaluation: RuleEvaluation, m: int) -> tuple[AlertState, list[AlertEvent]]:
    window = evaluation.window_start
    if state.state != OPEN:
        if state.recent_statuses.count(BREACH) < m:
            return state, []
        opened = replace(
            state,
            state=OPEN,
            severity=evaluation.severity,
            incident=state.incident + 1,
            opened_at=evaluation.as_of,
            breach_count=state.recent_statuses.count(BREACH),
            first_breach_window=window,
            last_breach_window=window,
        )
        return opened, [AlertEvent(TRIGGER, state.dedup_key, opened.incident, opened.severity, evaluation)]
    updated = replace(state, breach_count=state.breach_count + 1, last_breach_window=window)
    if _SEVERITY_RANK.get(evaluation.severity, 0) > _SEVERITY_RANK.get(state.severity, 0):
        updated = replace(updated, severity=evaluation.severity)
        return updated, [AlertEvent(ESCALATE, state.dedup_key, state.incident, evaluation.severity, evaluation)]
    return updated, []


def advance(
    state: AlertState | None, evaluation: RuleEvaluation, *, check: MetricCheck | None
) -> tuple[AlertState | None, list[AlertEvent]]:
    """Move one alert forward by one tick.

    Args:
        state: The alert's stored state, None when it was never evaluated.
        evaluation: This tick's verdict for the alert's rule.
        check: The rule's check (M-of-N, resolve_after); None for operational rules (1-of-1, resolve after 1).

    Returns:
        The new state and the events to notify (TRIGGER, ESCALATE, RESOLVE). A tick at or before
        ``state.last_as_of`` returns ``state`` unchanged and no events.
    """
    if state is not None and state.last_as_of is not None and _utc(evaluation.as_of) <= _utc(state.last_as_of):
        return state, []
    if state is None:
        state = AlertState(dedup_key=evaluation.dedup_key, state=RESOLVED, severity=evaluation.severity)
    state = replace(state, last_as_of=evaluation.as_of)
    if evaluation.status not in (BREACH, HEALTHY):
        return state, []
    m, n = check.m_of_n if check is not None else (1, 1)
    resolve_after = check.resolve_after if check is not None else 1
    recent = (*state.recent_statuses, evaluation.status)[-n:]
    state = replace(state, recent_statuses=recent, last_value=evaluation.value)
    if evaluation.status == BREACH:
        return _on_breach(replace(state, healthy_streak=0), evaluation, m)
    state = replace(state, healthy_streak=state.healthy_streak + 1)
    if state.state == OPEN and state.healthy_streak >= resolve_after:
        # A resolved alert starts a fresh M-of-N window: old breaches must not re-open it at once.
        resolved = replace(state, state=RESOLVED, recent_statuses=())
        return resolved, [AlertEvent(RESOLVE, state.dedup_key, state.incident, state.severity, evaluation)]
    return state, []
