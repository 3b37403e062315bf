"""Early and later evidence of one incident joined up: label-free alerts confirmed by the labels (pure).

A label-free alert (drift, score, estimate) opens an incident hours or weeks before its windows' labels
land. After every run, :func:`corroborate` reads the alerts' states: when a realised metric rule judged
one of the incident's breaching windows as a breach, the incident is *confirmed* (and the metric alert
records that the label-free alert fired first, and when); when the incident is over and the metric
rules judged every one of its breaching windows healthy, it is *not confirmed by labels*. Until then it
awaits labels. Each verdict is one message in the label-free alert's thread (no page).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from modelwatch.core.alerts import CONFIRMED, NOT_CONFIRMED, OPEN, TRIGGER, AlertEvent, AlertState, RuleEvaluation
from modelwatch.core.config import MonitorConfig
from modelwatch.core.rules import RuleStatus, dedup_key
from modelwatch.core.windows import as_utc

AWAITING_LABELS = "awaiting_labels"

Kind = Callable[[str], str | None]
"""Dedup key -> 'label_free', 'metric' or None (the operational and data-quality rules)."""


def rule_kind(monitor: MonitorConfig) -> Kind:
    """Which of ``monitor``'s dedup keys are label-free rules and which realised-metric rules."""
    kinds: dict[str, str] = {}
    for cadence in monitor.cadences:
        for rule in monitor.label_free:
            kinds[dedup_key(monitor.name, cadence.value, rule.signal, rule.rule_id)] = "label_free"
        for check in monitor.checks:
            for metric_rule in check.rules:
                kinds[dedup_key(monitor.name, cadence.value, check.metric, metric_rule.rule_id)] = "metric"
    return kinds.get


def _key_name(key: str) -> str:
    """``feature_drift/psi:top3:critical`` out of the full dedup key."""
    return "/".join(key.split("/")[3:])


def _incident_windows(state: AlertState) -> list[datetime]:
    """The breaching windows of the state's current incident."""
    first = state.first_breach_window
    if first is None:
        return []
    return [as_utc(w) for w, _, status in state.windows if status == RuleStatus.BREACH and as_utc(w) >= as_utc(first)]


def _judged(metric_states: list[AlertState], window: datetime) -> list[tuple[AlertState, str]]:
    return [(m, status) for m in metric_states for w, _, status in m.windows if as_utc(w) == window]


def _verdict(early: AlertState, metric_states: list[AlertState]) -> tuple[str, str | None]:
    windows = _incident_windows(early)
    for window in windows:
        for metric, status in _judged(metric_states, window):
            if status == RuleStatus.BREACH:
                return CONFIRMED, f"{_key_name(metric.dedup_key)} breached on window {window:%Y-%m-%d %H:%M}"
    if early.state == OPEN or not windows:
        return AWAITING_LABELS, None
    if all(any(status == RuleStatus.HEALTHY for _, status in _judged(metric_states, w)) for w in windows):
        return NOT_CONFIRMED, f"the metric rules judged its {len(windows)} breaching window(s) healthy"
    return AWAITING_LABELS, None


def _first_signal(metric: AlertState, early_states: list[AlertState]) -> AlertState | None:
    """The earliest label-free incident that breached the metric alert's first breaching window."""
    if metric.first_breach_window is None:
        return None
    window = as_utc(metric.first_breach_window)
    covering = [e for e in early_states if e.incident > 0 and window in _incident_windows(e) and e.opened_at]
    return min(covering, key=lambda e: as_utc(e.opened_at), default=None)  # type: ignore[arg-type]


def corroborate(
    states: Mapping[str, AlertState],
    events: list[AlertEvent],
    evaluations: Mapping[str, RuleEvaluation],
    *,
    kind: Kind,
) -> tuple[dict[str, AlertState], list[AlertEvent]]:
    """Join the label-free alerts' incidents with what the metric rules later judged on their windows.

    Args:
        states: Every alert's state after the run (dedup key -> state), of one monitor and cadence.
        events: The run's events; a metric alert's trigger is told which label-free alert fired first.
        evaluations: The run's evaluations by dedup key (the messages quote them).
        kind: Which alerts are label-free and which are realised-metric rules.

    Returns:
        The states this changed (dedup key -> new state) and the run's events: those given (metric
        triggers annotated) plus one CONFIRMED or NOT_CONFIRMED per label-free incident decided now.
    """
    early = [s for s in states.values() if kind(s.dedup_key) == "label_free" and s.incident > 0]
    metric = [s for s in states.values() if kind(s.dedup_key) == "metric"]
    changed: dict[str, AlertState] = {}
    for state in metric:
        first = _first_signal(state, early) if state.incident > 0 and state.first_signal is None else None
        if first is not None:
            changed[state.dedup_key] = replace(state, first_signal=first.dedup_key, first_signal_at=first.opened_at)
    out = [_annotated(e, changed) for e in events]
    for state in early:
        if state.evidence in (CONFIRMED, NOT_CONFIRMED):
            continue
        verdict, note = _verdict(state, metric)
        if verdict == state.evidence:
            continue
        changed[state.dedup_key] = replace(state, evidence=verdict, evidence_note=note)
        evaluation = evaluations.get(state.dedup_key)
        if verdict != AWAITING_LABELS and evaluation is not None:
            told = replace(evaluation, description=f"{_VERDICT_TEXT[verdict]}: {note}")
            out.append(AlertEvent(verdict, state.dedup_key, state.incident, state.severity, told, state.reopens))
    return changed, out


_VERDICT_TEXT = {CONFIRMED: "confirmed by labels", NOT_CONFIRMED: "not confirmed by labels"}


def _annotated(event: AlertEvent, changed: Mapping[str, AlertState]) -> AlertEvent:
    state = changed.get(event.dedup_key)
    if event.kind != TRIGGER or state is None or state.first_signal is None or state.first_signal_at is None:
        return event
    lead = (as_utc(event.evaluation.as_of) - as_utc(state.first_signal_at)).total_seconds() / 3600
    note = (
        f"; first signalled without labels by {_key_name(state.first_signal)} at "
        f"{state.first_signal_at:%Y-%m-%d %H:%M} ({lead:.0f} h earlier)"
    )
    return replace(event, evaluation=replace(event.evaluation, description=event.evaluation.description + note))


_EVIDENCE_TEXT = {AWAITING_LABELS: "awaiting labels", **_VERDICT_TEXT}


def incident_rows(states: Sequence[AlertState], window_start: datetime, *, kind: Kind) -> list[dict[str, str]]:
    """The incidents a window belongs to (one of its breaching windows), as the report lists them: which
    rule, label-free or realised, when it opened, and what the labels said (as of the last judged run)."""
    window = as_utc(window_start)
    rows = []
    for state in states:
        signal = kind(state.dedup_key)
        if state.incident == 0 or signal is None or window not in _incident_windows(state):
            continue
        if signal == "label_free":
            said = _EVIDENCE_TEXT.get(state.evidence or AWAITING_LABELS, str(state.evidence))
            said += f": {state.evidence_note}" if state.evidence_note else ""
        else:
            said = "realised metric"
            if state.first_signal and state.first_signal_at:
                said += (
                    f"; first signalled by {_key_name(state.first_signal)} at {state.first_signal_at:%Y-%m-%d %H:%M}"
                )
        opened = f"{state.opened_at:%Y-%m-%d %H:%M}" if state.opened_at else "-"
        rows.append(
            {
                "alert": _key_name(state.dedup_key),
                "signal": "label-free" if signal == "label_free" else "labels",
                "state": state.state,
                "opened": opened,
                "evidence": said,
            }
        )
    return sorted(rows, key=lambda r: (r["opened"], r["alert"]))
