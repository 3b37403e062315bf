"""Rule evaluators: one run's windows in, one :class:`RuleEvaluation` per rule out (pure: no I/O).

Metric checks, traffic stopped and labels stalled live here, the label-free data-quality rules in
:mod:`modelwatch.core.quality_rules`, the monitor's ``label_free`` rules (feature, score and multivariate
drift, positive rate, estimated performance) in :mod:`modelwatch.core.label_free_rules`. Every rule type is a
function ``(RunInput) -> list[RuleEvaluation]`` listed in :data:`modelwatch.core.alerts.RULE_EVALUATORS`; they
all feed the same lifecycle (:func:`modelwatch.core.alerts.advance`), so a new kind of rule is one more
function in that tuple.

An evaluation carries the run's verdict for its rule (the window an alert message quotes) and the
:class:`Judgement` of every window revision the rule could judge in this run: metric checks judge each
revision with enough labels, not only the newest window, so a later, more complete revision of a window
can open, escalate or resolve its alert.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from modelwatch.core.config import MetricCheck, MonitorConfig, Severity, Status
from modelwatch.core.result import HistoryPoint, RootCause, WindowResult
from modelwatch.core.rule_messages import bounds_text, shortfall_text
from modelwatch.core.thresholds import Bounds, IntervalFn, metric_value, threshold_for
from modelwatch.core.windows import as_utc  # naive = UTC; aware ones compare without raising


class RuleStatus(StrEnum):
    """A rule's verdict on a window (the value is what stored rows, ticks and payloads hold)."""

    BREACH = "breach"
    HEALTHY = "healthy"
    INSUFFICIENT = "insufficient"
    """Neither an alert nor a pass: too few labels, no bounds yet, no window."""


TRAFFIC_STOPPED = "traffic_stopped"
LABELS_STALLED = "labels_stalled"
TREND_POINTS = 12

MIN_EXPECTED_ARRIVAL = 0.1
"""Windows whose expected coverage at their age is below this say nothing about a stall (too young)."""
MIN_EXPECTED_LABELS = 50.0
"""The labels expected by now across the newest windows must be at least this many to judge a stall."""
FRESHNESS_WINDOWS = 2
"""The youngest windows expecting labels are pooled: older ones got theirs before a stall began and
would dilute it."""
MIN_ARRIVAL_WINDOWS = 12
"""Past windows observed at a revision before its expected coverage is learnt."""


@dataclass(frozen=True)
class Judgement:
    """One window revision judged by one rule."""

    window_start: datetime
    revision: int
    status: RuleStatus
    """BREACH or HEALTHY; a plain string is parsed (stored ticks hold the value)."""
    clear: bool = True
    """Inside the bound by the resolve margin (only such healthy judgements count towards resolving)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RuleStatus(self.status))


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
    severity: Severity
    """A plain string is parsed (stored ticks hold the value): unknown ones raise ValueError."""
    status: RuleStatus
    """BREACH, HEALTHY or INSUFFICIENT; a plain string is parsed like ``severity``."""
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
    window_status: Status | None = None
    """The quoted window's maturity; a plain string is parsed like ``severity``."""
    model_versions: tuple[str, ...] = ()
    trend: tuple[float, ...] = ()
    root_cause: RootCause | None = None
    revision: int | None = None
    """Revision of the quoted window."""
    window_age_hours: float | None = None
    """Hours between the quoted window's end and the run's ``as_of``: how stale the judged window is."""
    within_margin: bool = True
    """The quoted value is inside the bound by the resolve margin."""
    judgements: tuple[Judgement, ...] = ()
    """Every window revision this rule judged in the run (empty: only the quoted window, if decided)."""
    recovery: RuleEvaluation | None = None
    """The newest healthy window's view when a breach is quoted: what a resolve in this run quotes."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "status", RuleStatus(self.status))
        if self.window_status is not None:
            object.__setattr__(self, "window_status", Status(self.window_status))


@dataclass(frozen=True)
class RunInput:
    """What a run hands to the rule evaluators."""

    monitor: MonitorConfig
    cadence: str
    as_of: datetime
    results: Sequence[WindowResult]
    """The windows the run computed (the fresh one and revisions of provisional ones)."""
    history: Sequence[HistoryPoint]
    """Latest revisions of earlier windows of the same cadence."""
    interval_fn: IntervalFn | None = None
    label_arrival: Mapping[int, float] = field(default_factory=dict)
    """Revision -> label coverage a window usually has at that revision (the monitor's own history)."""
    incident_windows: Mapping[str, Sequence[tuple[datetime, datetime]]] = field(default_factory=dict)
    """Metric -> window_start ranges of its open incidents: excluded from rolling baselines and bands."""


RuleEvaluator = Callable[[RunInput], list[RuleEvaluation]]


def dedup_key(monitor: str, cadence: str, metric: str, rule_id: str) -> str:
    """The stable identity of one alert, shared by Slack, PagerDuty and the alerts table.

    Example: ``modelwatch/churn/hourly/roc_auc/absolute:critical``.
    """
    return f"modelwatch/{monitor}/{cadence}/{metric}/{rule_id}"


def _trend(history: Sequence[HistoryPoint], metric: str, through: WindowResult | None = None) -> tuple[float, ...]:
    """The metric over the last windows, oldest first; with ``through``, ending at that window's revision
    (the one a message quotes, which may be older than the run's newest window)."""
    ordered = sorted(history, key=lambda p: as_utc(p.window_end))
    if through is not None:
        ordered = [p for p in ordered if as_utc(p.window_start) < as_utc(through.window_start)]
    values = [p.metrics.get(metric) for p in ordered]
    if through is not None:
        values.append(metric_value(through, metric))
    return tuple(float(v) for v in values if v is not None)[-TREND_POINTS:]


def rule_base(run: RunInput, metric: str, rule_id: str, rule_type: str, severity: Severity) -> dict:
    monitor = run.monitor
    return {
        "dedup_key": dedup_key(monitor.name, run.cadence, metric, rule_id),
        "monitor": monitor.name,
        "model": monitor.model.name,
        "cadence": run.cadence,
        "metric": metric,
        "rule_id": rule_id,
        "rule_type": rule_type,
        "severity": severity,
        "as_of": run.as_of,
    }


def window_fields(window: WindowResult, as_of: datetime) -> dict:
    return {
        "window_start": window.window_start,
        "window_end": window.window_end,
        "labelled": window.counts.labelled,
        "label_coverage": window.label_coverage,
        "window_status": window.status,
        "model_versions": tuple(window.stats.model_versions),
        "root_cause": window.root_cause,
        "revision": window.revision,
        "window_age_hours": (as_utc(as_of) - as_utc(window.window_end)).total_seconds() / 3600,
    }


def newest_first(results: Iterable[WindowResult]) -> list[WindowResult]:
    return sorted(results, key=lambda r: as_utc(r.window_end), reverse=True)


def inside_margin(value: float | None, bounds: Bounds, margin: float) -> bool:
    """True when ``value`` is inside ``bounds`` by ``margin`` times each bound's magnitude."""
    if value is None:
        return False
    if bounds.lower is not None and value < bounds.lower + margin * abs(bounds.lower):
        return False
    return not (bounds.upper is not None and value > bounds.upper - margin * abs(bounds.upper))


def one_judgement(window: WindowResult, status: RuleStatus, clear: bool) -> tuple[Judgement, ...]:
    if status not in (RuleStatus.BREACH, RuleStatus.HEALTHY):
        return ()
    return (Judgement(window.window_start, window.revision, status, clear),)


# --- metric checks ------------------------------------------------------------------------------


def labels_judgeable(status: str, label_coverage: float | None, *, min_coverage: float) -> bool:
    """Enough label coverage to judge a window: final, or at least ``min_coverage`` (early labels are biased).

    The one definition of "judgeable" by labels: the metric checks use it per check, the pipeline with the
    monitor's lowest ``min_coverage`` (:func:`judgeable_by_any_check`) to decide what to diagnose.
    """
    return status == Status.FINAL or (label_coverage or 0.0) >= min_coverage


def judgeable_by_any_check(monitor: MonitorConfig, status: str, label_coverage: float | None) -> bool:
    """Enough coverage for at least one of the monitor's checks (its lowest ``min_coverage``)."""
    min_coverage = min((check.min_coverage for check in monitor.checks), default=0.0)
    return labels_judgeable(status, label_coverage, min_coverage=min_coverage)


def _judgeable(result: WindowResult, check: MetricCheck) -> bool:
    """Enough labelled rows, and enough coverage unless the window is final."""
    mature = labels_judgeable(result.status, result.counts.label_coverage, min_coverage=check.min_coverage)
    return result.counts.labelled >= check.min_samples and mature


def outside_incidents(
    history: Sequence[HistoryPoint], ranges: Sequence[tuple[datetime, datetime]]
) -> list[HistoryPoint]:
    """History without the windows of open incidents: an incident must not become its own baseline."""
    if not ranges:
        return list(history)
    spans = [(as_utc(a), as_utc(b)) for a, b in ranges]
    return [p for p in history if not any(a <= as_utc(p.window_start) <= b for a, b in spans)]


@dataclass(frozen=True)
class _Verdict:
    window: WindowResult
    status: RuleStatus
    value: float | None
    bounds: Bounds | None
    reason: str
    clear: bool


def _judge_window(window: WindowResult, threshold, history: Sequence[HistoryPoint], margin: float) -> _Verdict:
    value = metric_value(window, threshold.metric)
    bounds = threshold.bounds(current=window, history=history)
    breach = None if bounds is None else threshold.is_breach(window, bounds)
    if bounds is None or breach is None:
        metric = window.metrics.get(threshold.metric)
        shortfall = getattr(threshold, "shortfall", None)
        found = shortfall(window, history) if shortfall and value is not None else None
        reason = (metric.reason if metric and metric.reason else None) or (
            "metric undefined for the window"
            if value is None
            else (shortfall_text(found) if found else None) or "bounds cannot be computed yet"
        )
        return _Verdict(window, RuleStatus.INSUFFICIENT, value, None, reason, False)
    clear = not breach and inside_margin(value, bounds, margin)
    return _Verdict(
        window, RuleStatus.BREACH if breach else RuleStatus.HEALTHY, value, bounds, bounds_text(bounds.basis), clear
    )


def _check_evaluations(run: RunInput, check: MetricCheck) -> list[RuleEvaluation]:
    judgeable = [r for r in newest_first(run.results) if _judgeable(r, check)]
    history = outside_incidents(run.history, run.incident_windows.get(check.metric, ()))
    trend = _trend(run.history, check.metric)
    evaluations = []
    for rule in check.rules:
        base = rule_base(run, check.metric, rule.rule_id, rule.type, rule.severity)
        if not judgeable:
            reason = f"no window has >= {check.min_samples} labelled rows and {check.min_coverage:.0%} coverage yet"
            evaluations.append(RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description=reason, trend=trend))
            continue
        threshold = threshold_for(rule, check.metric, interval_fn=run.interval_fn)
        verdicts = [_judge_window(w, threshold, history, check.resolve_margin) for w in judgeable]
        decided = [v for v in verdicts if v.status != RuleStatus.INSUFFICIENT]
        # The message quotes the newest breaching revision, else the newest decided one.
        quoted = next((v for v in decided if v.status == RuleStatus.BREACH), decided[0] if decided else verdicts[0])
        healthy = next((v for v in decided if v.status == RuleStatus.HEALTHY), None)
        judgements = tuple(Judgement(v.window.window_start, v.window.revision, v.status, v.clear) for v in decided)
        recovery = (
            _quote(base, healthy, run.as_of, _trend(run.history, check.metric, healthy.window))
            if healthy is not None and healthy is not quoted
            else None
        )
        quote = _quote(base, quoted, run.as_of, _trend(run.history, check.metric, quoted.window))
        evaluations.append(replace(quote, judgements=judgements, recovery=recovery))
    return evaluations


def _quote(base: dict, verdict: _Verdict, as_of: datetime, trend: tuple[float, ...]) -> RuleEvaluation:
    bounds = verdict.bounds
    return RuleEvaluation(
        **base,
        **window_fields(verdict.window, as_of),
        status=verdict.status,
        value=verdict.value,
        lower=bounds.lower if bounds else None,
        upper=bounds.upper if bounds else None,
        baseline=bounds.baseline if bounds else None,
        description=verdict.reason,
        trend=trend,
        within_margin=verdict.clear,
    )


def metric_check_evaluations(run: RunInput) -> list[RuleEvaluation]:
    """Every rule of every metric check, judged on every revision with enough labels."""
    return [e for check in run.monitor.checks for e in _check_evaluations(run, check)]


# --- operational rules --------------------------------------------------------------------------


def traffic_stopped_evaluations(run: RunInput) -> list[RuleEvaluation]:
    """Critical when the newest window has no predictions."""
    if not run.monitor.operational.traffic_stopped:
        return []
    base = rule_base(run, "predictions", TRAFFIC_STOPPED, TRAFFIC_STOPPED, Severity.CRITICAL)
    ordered = sorted(run.history, key=lambda p: as_utc(p.window_end))
    trend = tuple(float(p.predictions) for p in ordered)[-TREND_POINTS:]
    if not run.results:
        return [RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description="no window computed", trend=trend)]
    newest = newest_first(run.results)[0]
    predictions = newest.counts.predictions
    status = RuleStatus.BREACH if predictions == 0 else RuleStatus.HEALTHY
    return [
        RuleEvaluation(
            **base,
            **window_fields(newest, run.as_of),
            status=status,
            value=float(predictions),
            lower=1.0,
            description="the newest window must have predictions",
            trend=trend,
            judgements=one_judgement(newest, status, True),
        )
    ]


def expected_label_arrival(
    samples: Iterable[tuple[int, float | None]], *, min_windows: int = MIN_ARRIVAL_WINDOWS
) -> dict[int, float]:
    """Revision -> the median label coverage past windows had at that revision.

    Args:
        samples: ``(revision, label_coverage)`` of stored window revisions of the monitor.
        min_windows: Revisions observed fewer times are left out (no expectation yet).
    """
    by_revision: dict[int, list[float]] = {}
    for revision, coverage in samples:
        if coverage is not None and math.isfinite(coverage):
            by_revision.setdefault(int(revision), []).append(float(coverage))
    return {r: statistics.median(v) for r, v in sorted(by_revision.items()) if len(v) >= min_windows}


def _stalled_after_delay(run: RunInput) -> tuple[RuleStatus, WindowResult | None, str]:
    delay = run.monitor.label_delay
    due = [r for r in newest_first(run.results) if as_utc(run.as_of) - as_utc(r.window_end) >= delay.expected]
    if not due:
        return RuleStatus.INSUFFICIENT, None, f"no window is older than the expected label delay {delay.expected}"
    stalled = [r for r in due if r.label_coverage is not None and r.label_coverage < delay.stalled_coverage]
    description = f"label coverage must reach {delay.stalled_coverage:.0%} within {delay.expected}"
    return (RuleStatus.BREACH if stalled else RuleStatus.HEALTHY), (stalled[0] if stalled else due[0]), description


@dataclass(frozen=True)
class _Freshness:
    status: RuleStatus
    window: WindowResult | None
    description: str
    observed: float | None = None
    expected: float | None = None


def _freshness(run: RunInput) -> _Freshness:
    """Are the labels that the monitor's own history says should be here by now here?"""
    delay, arrival = run.monitor.label_delay, run.label_arrival
    young = [
        r
        for r in newest_first(run.results)
        if as_utc(run.as_of) - as_utc(r.window_end) < delay.expected
        and arrival.get(r.revision, 0.0) >= MIN_EXPECTED_ARRIVAL
        and r.counts.predictions > 0
    ][:FRESHNESS_WINDOWS]
    expected = sum(r.counts.predictions * arrival[r.revision] for r in young)
    if expected < MIN_EXPECTED_LABELS:
        reason = "no label arrival history yet" if not arrival else "no window is old enough to expect labels"
        return _Freshness(RuleStatus.INSUFFICIENT, None, reason)
    predictions = sum(r.counts.predictions for r in young)
    observed = sum(r.counts.labelled for r in young)
    ratio = run.monitor.operational.stalled_ratio
    ages = [(as_utc(run.as_of) - as_utc(r.window_end)).total_seconds() / 3600 for r in young]
    description = (
        f"{observed / predictions:.0%} of the {len(young)} newest windows (ages {min(ages):.0f}-{max(ages):.0f} h) "
        f"labelled, {expected / predictions:.0%} expected by these ages (median of the last "
        f"{run.monitor.operational.label_arrival_days} days); must reach {ratio:.0%} of that"
    )
    status = RuleStatus.BREACH if observed < ratio * expected else RuleStatus.HEALTHY
    return _Freshness(status, young[0], description, observed / predictions, ratio * expected / predictions)


def labels_stalled_evaluations(run: RunInput) -> list[RuleEvaluation]:
    """Warning when labels stall: below ``stalled_coverage`` after the expected delay, or the newest
    windows hold less than ``stalled_ratio`` of the labels their age should have brought."""
    if not run.monitor.operational.labels_stalled:
        return []
    base = rule_base(run, "label_coverage", LABELS_STALLED, LABELS_STALLED, Severity.WARNING)
    ordered = sorted(run.history, key=lambda p: as_utc(p.window_end))
    trend = tuple(p.labelled / p.predictions for p in ordered if p.predictions)[-TREND_POINTS:]
    late_status, late_window, late_text = _stalled_after_delay(run)
    fresh = _freshness(run)
    if late_status == RuleStatus.BREACH or (fresh.status != RuleStatus.BREACH and late_status == RuleStatus.HEALTHY):
        status, window, text = late_status, late_window, late_text
        value = late_window.label_coverage if late_window else None
        lower = run.monitor.label_delay.stalled_coverage
    elif fresh.status != RuleStatus.INSUFFICIENT:
        status, window, text, value, lower = (
            fresh.status,
            fresh.window,
            fresh.description,
            fresh.observed,
            fresh.expected,
        )
    else:
        return [
            RuleEvaluation(
                **base, status=RuleStatus.INSUFFICIENT, description=f"{late_text}; {fresh.description}", trend=trend
            )
        ]
    assert window is not None  # a decided part always names its window
    return [
        RuleEvaluation(
            **base,
            **window_fields(window, run.as_of),
            status=status,
            value=value,
            lower=lower,
            description=text,
            trend=trend,
            judgements=one_judgement(window, status, True),
        )
    ]
