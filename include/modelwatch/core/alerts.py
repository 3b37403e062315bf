"""Alert decisions and the alert lifecycle (pure: no I/O).

Decisions advance per RUN, a tick identified by ``as_of`` (the end of the DAG run's data interval):
one run computes several windows (the fresh one and revisions of provisional ones whose labels are
still arriving). :func:`evaluate_rules` turns one run's windows into one :class:`RuleEvaluation` per
rule (the rule types live in :mod:`modelwatch.core.rules`, :mod:`modelwatch.core.quality_rules` and
:mod:`modelwatch.core.label_free_rules`), each
carrying the :class:`Judgement` of every window revision it judged; :func:`advance` moves one alert's
:class:`AlertState` by one tick and returns the events to notify. A tick at or before the state's
``last_as_of`` is ignored, and so is a window judged again at a revision already seen, which is why
retries, re-runs and backfills send nothing twice.

Hysteresis: a window that starts breaching (its first breaching judgement) is what opens an alert
and resets its healthy streak; a breach confirmed again by a later revision is no news; resolving
takes ``resolve_after`` healthy runs whose values are inside the bound by ``resolve_margin``, and no
sooner than ``cooldown`` after the last breach. A breach within ``reopen_within`` of a resolve
reopens the same incident (same number, same PagerDuty dedup key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from modelwatch.core.config import AlertPolicy, LabelFreeRule, MetricCheck, MonitorConfig, Severity
from modelwatch.core.label_free_rules import label_free_evaluations
from modelwatch.core.quality_rules import DATA_QUALITY, data_quality_evaluations
from modelwatch.core.result import HistoryPoint, WindowResult
from modelwatch.core.rules import (
    LABELS_STALLED,
    TRAFFIC_STOPPED,
    TREND_POINTS,
    Judgement,
    RuleEvaluation,
    RuleEvaluator,
    RuleStatus,
    RunInput,
    dedup_key,
    labels_stalled_evaluations,
    metric_check_evaluations,
    traffic_stopped_evaluations,
)
from modelwatch.core.thresholds import IntervalFn
from modelwatch.core.windows import as_utc

__all__ = [
    "DATA_QUALITY",
    "LABELS_STALLED",
    "TRAFFIC_STOPPED",
    "TREND_POINTS",
    "Judgement",
    "RuleEvaluation",
    "RuleStatus",
    "dedup_key",
]

OPEN = "open"
RESOLVED = "resolved"

TRIGGER = "trigger"
ESCALATE = "escalate"
RESOLVE = "resolve"
CONFIRMED = "confirmed"
"""A label-free alert's incident confirmed by the labels (a message in its thread, no page)."""
NOT_CONFIRMED = "not_confirmed"
"""A label-free alert's incident whose windows the labels found healthy."""

WINDOW_MEMORY = 240
"""Judged windows an alert remembers (their latest revision and status): M-of-N and idempotency."""

DEFAULT_POLICY = AlertPolicy(resolve_after=1, resolve_margin=0.0)
"""The lifecycle of an evaluation whose rule has no policy (1 of 1, resolves on the first healthy run)."""

RULE_EVALUATORS: tuple[RuleEvaluator, ...] = (
    metric_check_evaluations,
    traffic_stopped_evaluations,
    labels_stalled_evaluations,
    data_quality_evaluations,
    label_free_evaluations,
)
"""Every rule type, in the order their evaluations are reported; a new one is one more function
``(RunInput) -> list[RuleEvaluation]`` here."""


@dataclass(frozen=True)
class AlertState:
    """One alert's lifecycle state (one per dedup_key); ``incident`` 0 means it never opened."""

    dedup_key: str
    state: str
    severity: Severity
    """A plain string is parsed (stored rows and ticks hold the value)."""
    incident: int = 0
    opened_at: datetime | None = None
    last_as_of: datetime | None = None
    breach_count: int = 0
    """Windows that started breaching in the current (or last) incident."""
    healthy_streak: int = 0
    last_value: float | None = None
    recent_statuses: tuple[RuleStatus, ...] = ()
    """BREACH/HEALTHY of the last N judged windows at their latest revision (M-of-N); plain strings are parsed."""
    first_breach_window: datetime | None = None
    """``window_start`` of the incident's first breached decision window."""
    last_breach_window: datetime | None = None
    windows: tuple[tuple[datetime, int, RuleStatus], ...] = ()
    """``(window_start, latest judged revision, status)`` of the last judged windows, oldest first."""
    counted_after: datetime | None = None
    """Windows starting at or before this no longer count for M-of-N (the newest judged at a resolve)."""
    last_breach_as_of: datetime | None = None
    resolved_at: datetime | None = None
    reopens: int = 0
    """Times the current incident reopened within ``reopen_within`` of a resolve."""
    evidence: str | None = None
    """Label-free alerts: what the labels said of the incident (``modelwatch.core.corroboration``): awaiting
    labels, confirmed (a realised metric breached in its windows too) or not confirmed by labels."""
    evidence_note: str | None = None
    """Which realised rule confirmed it, on which window; or why it is not confirmed."""
    first_signal: str | None = None
    """Metric alerts: the dedup key of the label-free alert that raised the incident first, if any."""
    first_signal_at: datetime | None = None
    """When that label-free alert opened (its run's ``as_of``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))
        # replace() runs this on every step of a tick: parse only what a stored row or tick holds as strings.
        if not all(type(s) is RuleStatus for s in self.recent_statuses):
            object.__setattr__(self, "recent_statuses", tuple(RuleStatus(s) for s in self.recent_statuses))
        if not all(type(s) is RuleStatus for _, _, s in self.windows):
            object.__setattr__(self, "windows", tuple((w, r, RuleStatus(s)) for w, r, s in self.windows))


@dataclass(frozen=True)
class AlertEvent:
    kind: str
    """TRIGGER, ESCALATE or RESOLVE."""
    dedup_key: str
    incident: int
    severity: Severity
    evaluation: RuleEvaluation
    reopen: int = 0
    """How many times the incident reopened before this event (0 for its first opening)."""
    hold_pagerduty_until: datetime | None = None
    """RESOLVE: PagerDuty's resolve is due only then; a reopen before it cancels it (same page)."""
    opened_at: datetime | None = None
    """RESOLVE: when the incident opened (its span, with the breached windows below)."""
    first_breach_window: datetime | None = None
    last_breach_window: datetime | None = None
    breach_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "severity", Severity(self.severity))


def evaluate_rules(
    monitor: MonitorConfig,
    *,
    cadence: str,
    as_of: datetime,
    results: Sequence[WindowResult],
    history: Sequence[HistoryPoint],
    interval_fn: IntervalFn | None = None,
    label_arrival: Mapping[int, float] | None = None,
    incident_windows: Mapping[str, Sequence[tuple[datetime, datetime]]] | None = None,
) -> list[RuleEvaluation]:
    """Evaluate every rule of ``monitor`` for one run.

    Args:
        monitor: The monitor's configuration.
        cadence: 'hourly' or 'daily'.
        as_of: End of the run's data interval; identifies the tick.
        results: The windows this run computed (the fresh one and revised provisional ones).
        history: Latest revisions of earlier windows of the same cadence (baselines, bands, trend).
        interval_fn: Optional replacement for the bootstrap interval (see ``threshold_for``).
        label_arrival: Revision -> usual label coverage (``rules.expected_label_arrival``), for the
            labels-stalled rule on the newest windows.
        incident_windows: Metric -> window ranges of its open incidents (``incident_windows``),
            left out of rolling baselines and bands.

    Returns:
        One evaluation per (check, rule), then ``traffic_stopped``, ``labels_stalled`` and the
        data-quality rules when enabled.
    """
    run = RunInput(
        monitor=monitor,
        cadence=str(getattr(cadence, "value", cadence)),
        as_of=as_of,
        results=results,
        history=history,
        interval_fn=interval_fn,
        label_arrival=dict(label_arrival or {}),
        incident_windows=dict(incident_windows or {}),
    )
    return [evaluation for evaluator in RULE_EVALUATORS for evaluation in evaluator(run)]


def incident_windows(states: Sequence[AlertState], *, until: datetime) -> dict[str, list[tuple[datetime, datetime]]]:
    """Metric -> ``(first breached window, until)`` of every open alert (rolling baselines skip them)."""
    out: dict[str, list[tuple[datetime, datetime]]] = {}
    for state in states:
        if state.state == OPEN and state.first_breach_window is not None:
            metric = state.dedup_key.split("/")[3] if state.dedup_key.count("/") >= 4 else state.dedup_key
            out.setdefault(metric, []).append((state.first_breach_window, until))
    return out


def check_for(monitor: MonitorConfig, evaluation: RuleEvaluation) -> MetricCheck | None:
    """The check an evaluation came from (None for operational rules)."""
    for check in monitor.checks:
        if check.metric == evaluation.metric and any(r.rule_id == evaluation.rule_id for r in check.rules):
            return check
    return None


def label_free_rule_for(monitor: MonitorConfig, evaluation: RuleEvaluation) -> LabelFreeRule | None:
    """The label-free rule an evaluation came from (None for metric and operational rules)."""
    for rule in monitor.label_free:
        if rule.signal == evaluation.metric and rule.rule_id == evaluation.rule_id:
            return rule
    return None


def policy_for(monitor: MonitorConfig, evaluation: RuleEvaluation) -> AlertPolicy:
    """The lifecycle of an evaluation's alert: its check's or label-free rule's, else the operational one."""
    return check_for(monitor, evaluation) or label_free_rule_for(monitor, evaluation) or monitor.operational.policy


def _judgements(evaluation: RuleEvaluation) -> tuple[Judgement, ...]:
    if evaluation.judgements or evaluation.status not in (RuleStatus.BREACH, RuleStatus.HEALTHY):
        return evaluation.judgements
    window = evaluation.window_start or evaluation.as_of
    revision = evaluation.revision if evaluation.revision is not None else 0
    return (Judgement(window, revision, evaluation.status, evaluation.within_margin),)


def _reopens(state: AlertState, evaluation: RuleEvaluation, policy: AlertPolicy) -> bool:
    if state.incident == 0 or state.resolved_at is None or policy.reopen_within <= timedelta(0):
        return False
    return as_utc(evaluation.as_of) - as_utc(state.resolved_at) < policy.reopen_within


def _on_breach(
    state: AlertState, evaluation: RuleEvaluation, policy: AlertPolicy, breaches: int
) -> tuple[AlertState, list[AlertEvent]]:
    window = evaluation.window_start
    if state.state != OPEN:
        if breaches < policy.m_of_n[0]:
            return state, []
        if _reopens(state, evaluation, policy):
            reopened = replace(
                state,
                state=OPEN,
                severity=evaluation.severity,
                breach_count=state.breach_count + 1,
                last_breach_window=window,
                reopens=state.reopens + 1,
            )
            event = AlertEvent(
                TRIGGER, state.dedup_key, state.incident, reopened.severity, evaluation, reopen=reopened.reopens
            )
            return reopened, [event]
        opened = replace(
            state,
            state=OPEN,
            severity=evaluation.severity,
            incident=state.incident + 1,
            opened_at=evaluation.as_of,
            breach_count=breaches,
            first_breach_window=window,
            last_breach_window=window,
            reopens=0,
            evidence=None,
            evidence_note=None,
            first_signal=None,
            first_signal_at=None,
        )
        return opened, [AlertEvent(TRIGGER, state.dedup_key, opened.incident, opened.severity, evaluation)]
    updated = replace(state, breach_count=state.breach_count + 1, last_breach_window=window)
    if evaluation.severity.rank > state.severity.rank:
        updated = replace(updated, severity=evaluation.severity)
        event = AlertEvent(ESCALATE, state.dedup_key, state.incident, evaluation.severity, evaluation, state.reopens)
        return updated, [event]
    return updated, []


def _on_healthy(
    state: AlertState, evaluation: RuleEvaluation, policy: AlertPolicy, clear: bool
) -> tuple[AlertState, list[AlertEvent]]:
    # A healthy value between the bound and the margin is not a recovery: it restarts the count.
    state = replace(state, healthy_streak=state.healthy_streak + 1 if clear else 0)
    cooled = state.last_breach_as_of is None or (
        as_utc(evaluation.as_of) - as_utc(state.last_breach_as_of) >= policy.cooldown
    )
    if state.state != OPEN or state.healthy_streak < policy.resolve_after or not cooled:
        return state, []
    newest = state.windows[-1][0] if state.windows else None
    # A resolved alert starts a fresh M-of-N window: old breaches must not re-open it at once.
    resolved = replace(state, state=RESOLVED, recent_statuses=(), counted_after=newest, resolved_at=evaluation.as_of)
    hold = evaluation.as_of + policy.reopen_within if policy.reopen_within > timedelta(0) else None
    # The run may also have confirmed an older window's breach: the recovery quotes the healthy window.
    quoted = evaluation.recovery or evaluation
    event = AlertEvent(
        RESOLVE,
        state.dedup_key,
        state.incident,
        state.severity,
        quoted,
        state.reopens,
        hold_pagerduty_until=hold,
        opened_at=state.opened_at,
        first_breach_window=state.first_breach_window,
        last_breach_window=state.last_breach_window,
        breach_count=state.breach_count,
    )
    return resolved, [event]


def _breaches_up_to(
    kept: Sequence[tuple[datetime, tuple[int, RuleStatus]]], window: datetime, after: datetime | None, n: int
) -> int:
    statuses = [status for w, (_, status) in kept if w <= window and (after is None or w > after)]
    return statuses[-n:].count(RuleStatus.BREACH)


def advance(
    state: AlertState | None, evaluation: RuleEvaluation, *, check: AlertPolicy | None
) -> tuple[AlertState | None, list[AlertEvent]]:
    """Move one alert forward by one tick.

    Args:
        state: The alert's stored state, None when it was never evaluated.
        evaluation: This tick's verdict for the alert's rule, with the window revisions it judged.
        check: The rule's lifecycle policy (a ``MetricCheck`` or ``operational.policy``); None: 1 of 1,
            resolve on the first healthy run, no margin.

    Returns:
        The new state and the events to notify (TRIGGER, ESCALATE, RESOLVE). A tick at or before
        ``state.last_as_of`` returns ``state`` unchanged and no events; window revisions judged before
        (or older revisions of them) are ignored.
    """
    if state is not None and state.last_as_of is not None and as_utc(evaluation.as_of) <= as_utc(state.last_as_of):
        return state, []
    policy = check or DEFAULT_POLICY
    if state is None:
        state = AlertState(dedup_key=evaluation.dedup_key, state=RESOLVED, severity=evaluation.severity)
    state = replace(state, last_as_of=evaluation.as_of)
    known = {as_utc(w): (revision, status) for w, revision, status in state.windows}
    news: list[tuple[Judgement, RuleStatus | None]] = []
    for judgement in _judgements(evaluation):
        key = as_utc(judgement.window_start)
        prior = known.get(key)
        if prior is not None and prior[0] >= judgement.revision:
            continue
        known[key] = (judgement.revision, judgement.status)
        news.append((judgement, prior[1] if prior else None))
    if not news:
        return state, []
    kept = sorted(known.items())[-WINDOW_MEMORY:]
    after = as_utc(state.counted_after) if state.counted_after is not None else None
    counted = [status for w, (_, status) in kept if after is None or w > after][-policy.m_of_n[1] :]
    state = replace(
        state,
        windows=tuple((w, revision, status) for w, (revision, status) in kept),
        recent_statuses=tuple(counted),
        last_value=evaluation.value,
    )
    started = [j for j, prior in news if j.status == RuleStatus.BREACH and prior != RuleStatus.BREACH]
    if started:
        # M of the N windows up to each newly breaching one: a later revision of an older window counts
        # among its own neighbours, not among the newest windows.
        breaches = max(_breaches_up_to(kept, as_utc(j.window_start), after, policy.m_of_n[1]) for j in started)
        state = replace(state, healthy_streak=0, last_breach_as_of=evaluation.as_of)
        return _on_breach(state, evaluation, policy, breaches)
    # A breach confirmed again by a later revision is no news; the run's healthy windows still count.
    healthy = [j for j, _ in news if j.status == RuleStatus.HEALTHY]
    if not healthy:
        return state, []
    return _on_healthy(state, evaluation, policy, clear=all(j.clear for j in healthy))
