"""Alert evaluation and lifecycle: per-run ticks, M-of-N, min_samples, resolve, replay, escalation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelwatch.core.alerts import (
    ESCALATE,
    LABELS_STALLED,
    OPEN,
    RESOLVE,
    RESOLVED,
    TRAFFIC_STOPPED,
    TRIGGER,
    AlertState,
    Judgement,
    RuleEvaluation,
    RuleStatus,
    advance,
    check_for,
    dedup_key,
    evaluate_rules,
    incident_windows,
)
from modelwatch.core.config import MetricCheck, MonitorConfig, Severity, parse_monitor
from modelwatch.core.result import HistoryPoint, MetricValue, RootCause, WindowResult
from modelwatch.core.stats import BinaryStats, JoinCounts, ScoreHistogram, WindowStats

T0 = datetime(2026, 11, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)


def monitor_config(**overrides: Any) -> MonitorConfig:
    """A small binary monitor; ``overrides`` replace top-level keys."""
    raw: dict[str, Any] = {
        "name": "churn",
        "model": {"name": "churn-classifier"},
        "task": "binary_classification",
        "warehouse": {"url": "duckdb:///:memory:"},
        "predictions": {"table": "p", "request_id": "id", "timestamp": "ts", "score": "score"},
        "labels": {"table": "l", "request_id": "id", "timestamp": "ts", "label": "y"},
        "classes": ["0", "1"],
        "label_delay": {"expected": "24h", "stalled_coverage": 0.5},
        "checks": [
            {
                "metric": "roc_auc",
                "min_samples": 100,
                "rules": [{"type": "absolute", "min": 0.8, "severity": "critical"}],
            },
        ],
    }
    raw.update(overrides)
    return parse_monitor(raw)


def window(
    start: datetime,
    *,
    value: float | None = 0.9,
    metric: str = "roc_auc",
    labelled: int = 500,
    predictions: int = 1000,
    as_of: datetime | None = None,
    width: timedelta = HOUR,
    root_cause: RootCause | None = None,
    status: str = "provisional",
) -> WindowResult:
    counts = JoinCounts(predictions=predictions, labelled=labelled)
    stats = WindowStats(counts, BinaryStats(0.5, ScoreHistogram.empty()), ("v3",))
    return WindowResult(
        monitor="churn",
        model="churn-classifier",
        task="binary_classification",
        cadence="hourly",
        window_start=start,
        window_end=start + width,
        as_of=as_of or start + width,
        status=status,
        revision=1,
        stats=stats,
        metrics={metric: MetricValue(metric, value, None if value is not None else "one class")},
        root_cause=root_cause,
    )


def point(
    start: datetime,
    value: float | None,
    *,
    metric: str = "roc_auc",
    labelled: int = 500,
    predictions: int = 1000,
    width: timedelta = HOUR,
) -> HistoryPoint:
    return HistoryPoint(start, start + width, {metric: value}, labelled, predictions, "final", 1)


def evaluation(
    status: str, as_of: datetime, *, severity: Severity = Severity.CRITICAL, value: float = 0.7
) -> RuleEvaluation:
    return RuleEvaluation(
        dedup_key="k",
        monitor="churn",
        model="m",
        cadence="hourly",
        metric="roc_auc",
        rule_id="absolute:critical",
        rule_type="absolute",
        severity=severity,
        status=status,
        as_of=as_of,
        window_start=as_of - HOUR,
        window_end=as_of,
        value=value,
        lower=0.8,
    )


def run_ticks(statuses: list[str], check: MetricCheck | None) -> tuple[AlertState | None, list[list[str]]]:
    state: AlertState | None = None
    kinds = []
    for i, status in enumerate(statuses):
        state, events = advance(state, evaluation(status, T0 + i * HOUR), check=check)
        kinds.append([e.kind for e in events])
    return state, kinds


def by_rule(evaluations: list[RuleEvaluation]) -> dict[str, RuleEvaluation]:
    return {e.rule_id: e for e in evaluations}


def test_dedup_key_is_deterministic_and_readable() -> None:
    key = dedup_key("churn", "hourly", "roc_auc", "absolute:critical")
    assert key == "modelwatch/churn/hourly/roc_auc/absolute:critical"
    assert key != dedup_key("churn", "daily", "roc_auc", "absolute:critical")


def test_decision_window_is_newest_with_enough_labels() -> None:
    monitor = monitor_config()
    fresh = window(T0 + 2 * HOUR, value=0.5, labelled=20)  # too few labels yet
    older = window(T0 + HOUR, value=0.7, labelled=300, predictions=500)
    oldest = window(T0, value=0.95, labelled=900)
    evals = by_rule(
        evaluate_rules(monitor, cadence="hourly", as_of=T0 + 3 * HOUR, results=[oldest, fresh, older], history=[])
    )
    auc = evals["absolute:critical"]
    assert auc.status == RuleStatus.BREACH
    assert auc.window_start == T0 + HOUR and auc.value == 0.7 and auc.labelled == 300
    assert auc.dedup_key == "modelwatch/churn/hourly/roc_auc/absolute:critical"
    assert auc.model_versions == ("v3",)


def test_low_coverage_provisional_window_is_not_judged_but_a_final_one_is() -> None:
    monitor = monitor_config()  # min_coverage defaults to 0.5
    early = window(T0 + HOUR, value=0.5, labelled=300, predictions=1000)  # 30 %: biased early labels
    mature = window(T0, value=0.95, labelled=900, predictions=1000)
    evals = by_rule(evaluate_rules(monitor, cadence="hourly", as_of=T0 + 3 * HOUR, results=[mature, early], history=[]))
    assert evals["absolute:critical"].window_start == T0 and evals["absolute:critical"].status != RuleStatus.BREACH
    final = window(T0 + HOUR, value=0.5, labelled=300, predictions=1000, status="final")
    evals = by_rule(evaluate_rules(monitor, cadence="hourly", as_of=T0 + 3 * HOUR, results=[mature, final], history=[]))
    assert (
        evals["absolute:critical"].window_start == T0 + HOUR and evals["absolute:critical"].status == RuleStatus.BREACH
    )


def test_min_samples_not_met_is_insufficient_not_breach_or_pass() -> None:
    monitor = monitor_config()
    evals = by_rule(
        evaluate_rules(
            monitor, cadence="hourly", as_of=T0 + HOUR, results=[window(T0, value=0.1, labelled=99)], history=[]
        )
    )
    assert evals["absolute:critical"].status == RuleStatus.INSUFFICIENT
    assert "100 labelled" in evals["absolute:critical"].description


def test_undefined_metric_is_insufficient_with_reason() -> None:
    evals = by_rule(
        evaluate_rules(
            monitor_config(), cadence="hourly", as_of=T0 + HOUR, results=[window(T0, value=None)], history=[]
        )
    )
    assert evals["absolute:critical"].status == RuleStatus.INSUFFICIENT
    assert evals["absolute:critical"].description == "one class"


def test_evaluation_carries_trend_and_root_cause() -> None:
    cause = RootCause("data_drift", "tenure drifted", ("tenure_months",), "region=EU")
    history = [point(T0 - i * HOUR, 0.9 - i / 100) for i in range(20, 0, -1)]
    evals = by_rule(
        evaluate_rules(
            monitor_config(),
            cadence="hourly",
            as_of=T0 + HOUR,
            results=[window(T0, value=0.6, root_cause=cause)],
            history=history,
        )
    )
    auc = evals["absolute:critical"]
    assert auc.root_cause == cause
    assert len(auc.trend) == 12
    # Ends at the judged window's own value, after the history before it.
    assert auc.trend[-1] == pytest.approx(0.6) and auc.trend[-2] == pytest.approx(0.89)
    assert auc.trend[0] == pytest.approx(0.79)


def test_traffic_stopped_on_newest_window_only() -> None:
    monitor = monitor_config()
    stopped = evaluate_rules(
        monitor,
        cadence="hourly",
        as_of=T0 + 2 * HOUR,
        results=[window(T0), window(T0 + HOUR, predictions=0, labelled=0)],
        history=[],
    )
    rule = by_rule(stopped)[TRAFFIC_STOPPED]
    assert rule.status == RuleStatus.BREACH and rule.severity == "critical" and rule.value == 0
    flowing = evaluate_rules(
        monitor,
        cadence="hourly",
        as_of=T0 + 2 * HOUR,
        results=[window(T0, predictions=0, labelled=0), window(T0 + HOUR)],
        history=[],
    )
    assert by_rule(flowing)[TRAFFIC_STOPPED].status == RuleStatus.HEALTHY


def test_labels_stalled_only_after_expected_delay() -> None:
    monitor = monitor_config()
    old = window(T0, labelled=100, predictions=1000)  # 10% coverage
    young = window(T0 + 20 * HOUR, labelled=0, predictions=1000)
    at_delay = by_rule(
        evaluate_rules(monitor, cadence="hourly", as_of=T0 + 25 * HOUR, results=[old, young], history=[])
    )[LABELS_STALLED]
    assert at_delay.status == RuleStatus.BREACH and at_delay.severity == "warning"
    assert at_delay.window_start == T0 and at_delay.label_coverage == pytest.approx(0.1)
    early = by_rule(evaluate_rules(monitor, cadence="hourly", as_of=T0 + 23 * HOUR, results=[old], history=[]))
    assert early[LABELS_STALLED].status == RuleStatus.INSUFFICIENT
    covered = window(T0, labelled=800, predictions=1000)
    fine = by_rule(evaluate_rules(monitor, cadence="hourly", as_of=T0 + 25 * HOUR, results=[covered], history=[]))
    assert fine[LABELS_STALLED].status == RuleStatus.HEALTHY


def test_operational_rules_can_be_disabled() -> None:
    operational = {"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}}
    monitor = monitor_config(operational=operational)
    evals = evaluate_rules(monitor, cadence="hourly", as_of=T0 + HOUR, results=[window(T0)], history=[])
    assert [e.rule_id for e in evals] == ["absolute:critical"]
    assert check_for(monitor, evals[0]) is monitor.checks[0]


def test_first_breach_triggers_then_stays_quiet_then_resolves() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], resolve_after=2)
    state, kinds = run_ticks(
        [
            RuleStatus.BREACH,
            RuleStatus.BREACH,
            RuleStatus.HEALTHY,
            RuleStatus.BREACH,
            RuleStatus.HEALTHY,
            RuleStatus.HEALTHY,
        ],
        check,
    )
    assert kinds == [[TRIGGER], [], [], [], [], [RESOLVE]]
    assert state is not None and state.state == RESOLVED and state.incident == 1 and state.breach_count == 3


def test_m_of_n_needs_m_breaches_within_last_n_ticks() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], m_of_n=(2, 3))
    _, kinds = run_ticks(
        [
            RuleStatus.BREACH,
            RuleStatus.HEALTHY,
            RuleStatus.HEALTHY,
            RuleStatus.BREACH,
            RuleStatus.HEALTHY,
            RuleStatus.BREACH,
        ],
        check,
    )
    assert kinds == [[], [], [], [], [], [TRIGGER]]
    _, spread = run_ticks([RuleStatus.BREACH, RuleStatus.HEALTHY, RuleStatus.HEALTHY, RuleStatus.BREACH], check)
    assert all(k == [] for k in spread)  # the two breaches are 4 ticks apart


def test_insufficient_ticks_change_only_last_as_of() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], m_of_n=(2, 2))
    state, _ = advance(None, evaluation(RuleStatus.BREACH, T0), check=check)
    after, events = advance(state, evaluation(RuleStatus.INSUFFICIENT, T0 + HOUR), check=check)
    assert events == [] and after == replace(state, last_as_of=T0 + HOUR)
    _, events = advance(after, evaluation(RuleStatus.BREACH, T0 + 2 * HOUR), check=check)
    assert [e.kind for e in events] == [TRIGGER]  # the insufficient tick did not break the 2-of-2 run


def test_replayed_or_older_ticks_are_ignored() -> None:
    state, events = advance(None, evaluation(RuleStatus.BREACH, T0 + 5 * HOUR), check=None)
    assert [e.kind for e in events] == [TRIGGER] and state is not None
    for as_of in (T0 + 5 * HOUR, T0 + HOUR):
        again, replayed = advance(state, evaluation(RuleStatus.HEALTHY, as_of), check=None)
        assert again is state and replayed == []
    naive_same_tick = evaluation(RuleStatus.HEALTHY, (T0 + 5 * HOUR).replace(tzinfo=None))
    assert advance(state, naive_same_tick, check=None) == (state, [])


def test_new_incident_after_resolve_increments_incident() -> None:
    state, kinds = run_ticks([RuleStatus.BREACH, RuleStatus.HEALTHY, RuleStatus.BREACH], None)
    assert kinds == [[TRIGGER], [RESOLVE], [TRIGGER]]
    assert state is not None and state.incident == 2 and state.state == OPEN
    assert state.first_breach_window == T0 + HOUR  # window_start of the second incident's first breach


def test_severity_escalation_while_open_sends_escalate() -> None:
    state, events = advance(None, evaluation(RuleStatus.BREACH, T0, severity=Severity.WARNING), check=None)
    assert events[0].severity == "warning"
    state, events = advance(state, evaluation(RuleStatus.BREACH, T0 + HOUR, severity=Severity.WARNING), check=None)
    assert events == []
    state, events = advance(state, evaluation(RuleStatus.BREACH, T0 + 2 * HOUR, severity=Severity.CRITICAL), check=None)
    assert [(e.kind, e.severity, e.incident) for e in events] == [(ESCALATE, "critical", 1)]
    assert state is not None and state.severity == "critical"


def judged(as_of: datetime, *judgements: Judgement, value: float = 0.7) -> RuleEvaluation:
    status = RuleStatus.BREACH if any(j.status == RuleStatus.BREACH for j in judgements) else RuleStatus.HEALTHY
    return replace(evaluation(status, as_of, value=value), judgements=judgements)


def test_a_later_revision_opens_its_windows_alert_once() -> None:
    check = MetricCheck(metric="mae", rules=[{"type": "absolute", "max": 5.0}])
    state, events = advance(None, judged(T0, Judgement(T0 - HOUR, 2, RuleStatus.HEALTHY)), check=check)
    assert events == [] and state is not None
    state, events = advance(state, judged(T0 + 2 * HOUR, Judgement(T0 - HOUR, 4, RuleStatus.BREACH)), check=check)
    assert [(e.kind, e.incident) for e in events] == [(TRIGGER, 1)]
    # The same window and revision judged again by a later run (a re-run, a backfill): nothing new.
    again, events = advance(state, judged(T0 + 3 * HOUR, Judgement(T0 - HOUR, 4, RuleStatus.BREACH)), check=check)
    assert events == [] and again == replace(state, last_as_of=T0 + 3 * HOUR)
    # A still later revision confirming the breach is no news either.
    _, events = advance(again, judged(T0 + 4 * HOUR, Judgement(T0 - HOUR, 8, RuleStatus.BREACH)), check=check)
    assert events == []


def test_a_later_healthy_revision_resolves_its_windows_alert() -> None:
    check = MetricCheck(metric="mae", rules=[{"type": "absolute", "max": 5.0}], resolve_after=1)
    state, events = advance(None, judged(T0, Judgement(T0 - HOUR, 1, RuleStatus.BREACH)), check=check)
    assert [e.kind for e in events] == [TRIGGER]
    state, events = advance(state, judged(T0 + HOUR, Judgement(T0 - HOUR, 2, RuleStatus.HEALTHY)), check=check)
    assert [e.kind for e in events] == [RESOLVE] and state is not None and state.state == RESOLVED


def test_old_windows_confirmed_breaching_do_not_hold_a_recovered_alert_open() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], resolve_after=2)
    state, _ = advance(None, judged(T0, Judgement(T0 - HOUR, 1, RuleStatus.BREACH)), check=check)
    kinds = []
    for i in (1, 2):
        tick = judged(
            T0 + i * HOUR,
            Judgement(T0 - HOUR, 1 + 2 * i, RuleStatus.BREACH),
            Judgement(T0 + (i - 1) * HOUR, 1, RuleStatus.HEALTHY),
        )
        state, events = advance(state, tick, check=check)
        kinds.append([e.kind for e in events])
    assert kinds == [[], [RESOLVE]]


def test_resolving_needs_values_clear_of_the_margin_and_the_cooldown() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], resolve_after=1, cooldown="3h")
    state, _ = advance(None, evaluation(RuleStatus.BREACH, T0), check=check)
    near = replace(evaluation(RuleStatus.HEALTHY, T0 + HOUR, value=0.801), within_margin=False)
    state, events = advance(state, near, check=check)
    assert events == [] and state is not None and state.healthy_streak == 0
    state, events = advance(state, evaluation(RuleStatus.HEALTHY, T0 + 2 * HOUR, value=0.9), check=check)
    assert events == [] and state is not None and state.healthy_streak == 1  # clear, but within the cool-down
    state, events = advance(state, evaluation(RuleStatus.HEALTHY, T0 + 3 * HOUR, value=0.9), check=check)
    assert [e.kind for e in events] == [RESOLVE]


def test_a_breach_soon_after_a_resolve_reopens_the_same_incident() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], resolve_after=1, reopen_within="6h")
    state, kinds = None, []
    for hour, status in [
        (0, RuleStatus.BREACH),
        (1, RuleStatus.HEALTHY),
        (3, RuleStatus.BREACH),
        (4, RuleStatus.HEALTHY),
        (12, RuleStatus.BREACH),
    ]:
        state, events = advance(state, evaluation(status, T0 + hour * HOUR), check=check)
        kinds.append([(e.kind, e.incident, e.reopen, e.hold_pagerduty_until) for e in events])
    assert kinds == [
        [(TRIGGER, 1, 0, None)],
        [(RESOLVE, 1, 0, T0 + 7 * HOUR)],  # PagerDuty's resolve is held for reopen_within
        [(TRIGGER, 1, 1, None)],  # reopened: same incident, same PagerDuty dedup key
        [(RESOLVE, 1, 1, T0 + 10 * HOUR)],
        [(TRIGGER, 2, 0, None)],  # 8 h after the resolve: a new incident
    ]


def test_incident_windows_of_open_alerts_by_metric() -> None:
    opened = AlertState(
        dedup_key=dedup_key("churn", "hourly", "roc_auc", "absolute:critical"),
        state=OPEN,
        severity="critical",
        incident=1,
        first_breach_window=T0,
    )
    closed = replace(opened, dedup_key=dedup_key("churn", "hourly", "f1", "absolute:warning"), state=RESOLVED)
    assert incident_windows([opened, closed], until=T0 + 5 * HOUR) == {"roc_auc": [(T0, T0 + 5 * HOUR)]}


def test_a_resolve_quotes_the_healthy_window_not_an_old_confirmed_breach() -> None:
    check = MetricCheck(metric="roc_auc", rules=[{"type": "absolute", "min": 0.8}], resolve_after=1)
    state, _ = advance(None, judged(T0, Judgement(T0 - HOUR, 1, RuleStatus.BREACH)), check=check)
    healthy_view = replace(evaluation(RuleStatus.HEALTHY, T0 + HOUR, value=0.9), window_start=T0)
    tick = replace(
        judged(T0 + HOUR, Judgement(T0 - HOUR, 2, RuleStatus.BREACH), Judgement(T0, 1, RuleStatus.HEALTHY)),
        recovery=healthy_view,
    )
    _, events = advance(state, tick, check=check)
    assert [(e.kind, e.evaluation.value, e.evaluation.window_start) for e in events] == [(RESOLVE, 0.9, T0)]
