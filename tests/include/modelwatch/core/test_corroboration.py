"""Early (label-free) and later (labelled) evidence of one incident joined up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelwatch.core.alerts import CONFIRMED, NOT_CONFIRMED, OPEN, RESOLVED, TRIGGER, AlertEvent, AlertState
from modelwatch.core.corroboration import AWAITING_LABELS, corroborate, incident_rows, rule_kind
from modelwatch.core.rules import RuleStatus
from tests.include.modelwatch.core.test_alerts import evaluation
from tests.include.modelwatch.core.test_label_free_rules import label_free_monitor

T0 = datetime(2026, 11, 2, 6, tzinfo=UTC)
HOUR = timedelta(hours=1)
EARLY = "modelwatch/churn/hourly/feature_drift/psi:top3:region:critical"
LATE = "modelwatch/churn/hourly/roc_auc/absolute:critical"
KIND = {EARLY: "label_free", LATE: "metric"}.get


def early(state: str = OPEN, windows=((T0, 0, RuleStatus.BREACH), (T0 + HOUR, 0, RuleStatus.BREACH))) -> AlertState:
    return AlertState(
        EARLY, state, "critical", incident=1, opened_at=T0 + HOUR, first_breach_window=T0, windows=tuple(windows)
    )


def late(*windows, incident: int = 0) -> AlertState:
    breached = [w for w, _, s in windows if s == RuleStatus.BREACH]
    return AlertState(
        LATE,
        OPEN if breached else RESOLVED,
        "critical",
        incident=incident,
        first_breach_window=breached[0] if breached else None,
        windows=tuple(windows),
    )


def test_a_metric_breach_on_an_incident_window_confirms_it_and_names_the_first_signal() -> None:
    as_of = T0 + 5 * HOUR
    trigger = AlertEvent(TRIGGER, LATE, 1, "critical", evaluation(RuleStatus.BREACH, as_of))
    states = {EARLY: early(), LATE: late((T0, 4, RuleStatus.BREACH), incident=1)}
    changed, events = corroborate(states, [trigger], {EARLY: evaluation(RuleStatus.BREACH, as_of)}, kind=KIND)
    assert changed[EARLY].evidence == CONFIRMED and "roc_auc/absolute:critical" in changed[EARLY].evidence_note
    assert changed[LATE].first_signal == EARLY and changed[LATE].first_signal_at == T0 + HOUR
    kinds = [(e.kind, e.dedup_key) for e in events]
    assert kinds == [(TRIGGER, LATE), (CONFIRMED, EARLY)]
    assert (
        "first signalled without labels by feature_drift/psi:top3:region:critical" in events[0].evaluation.description
    )
    assert "(4 h earlier)" in events[0].evaluation.description
    again, repeated = corroborate({**states, **changed}, [], {EARLY: evaluation(RuleStatus.BREACH, as_of)}, kind=KIND)
    assert again == {} and repeated == []  # decided once per incident


def test_healthy_labels_on_every_window_of_a_finished_incident_do_not_confirm_it() -> None:
    as_of = T0 + 30 * HOUR
    judged = late((T0, 12, RuleStatus.HEALTHY), (T0 + HOUR, 12, RuleStatus.HEALTHY))
    open_still, _ = corroborate({EARLY: early(), LATE: judged}, [], {}, kind=KIND)
    assert open_still[EARLY].evidence == AWAITING_LABELS  # the incident goes on: more windows to judge
    one_judged = late((T0, 12, RuleStatus.HEALTHY))
    waiting, _ = corroborate({EARLY: early(RESOLVED), LATE: one_judged}, [], {}, kind=KIND)
    assert waiting[EARLY].evidence == AWAITING_LABELS
    changed, events = corroborate(
        {EARLY: early(RESOLVED), LATE: judged}, [], {EARLY: evaluation(RuleStatus.HEALTHY, as_of)}, kind=KIND
    )
    assert changed[EARLY].evidence == NOT_CONFIRMED
    assert [e.kind for e in events] == [NOT_CONFIRMED]
    assert events[0].evaluation.description.startswith("not confirmed by labels")


def test_rule_kind_tells_label_free_from_metric_rules() -> None:
    monitor = label_free_monitor(
        {"type": "score_drift", "threshold": 0.1},
        checks=[{"metric": "roc_auc", "rules": [{"type": "absolute", "min": 0.8, "severity": "critical"}]}],
    )
    kind = rule_kind(monitor)
    assert kind("modelwatch/churn/hourly/score_drift/psi:warning") == "label_free"
    assert kind("modelwatch/churn/daily/roc_auc/absolute:critical") == "metric"
    assert kind("modelwatch/churn/hourly/predictions/traffic_stopped") is None


def test_the_report_lists_the_incidents_of_a_window_with_what_the_labels_said() -> None:
    confirmed = AlertState(
        EARLY,
        OPEN,
        "critical",
        incident=1,
        opened_at=T0 + HOUR,
        first_breach_window=T0,
        windows=((T0, 0, RuleStatus.BREACH),),
        evidence=CONFIRMED,
        evidence_note="roc_auc/absolute:critical breached on window 2026-11-02 06:00",
    )
    metric = AlertState(
        LATE,
        OPEN,
        "critical",
        incident=1,
        opened_at=T0 + 5 * HOUR,
        first_breach_window=T0,
        windows=((T0, 4, RuleStatus.BREACH),),
        first_signal=EARLY,
        first_signal_at=T0 + HOUR,
    )
    rows = incident_rows([metric, confirmed], T0, kind=KIND)
    assert [(r["alert"], r["signal"]) for r in rows] == [
        ("feature_drift/psi:top3:region:critical", "label-free"),
        ("roc_auc/absolute:critical", "labels"),
    ]
    assert rows[0]["evidence"].startswith("confirmed by labels: roc_auc/absolute:critical")
    assert "first signalled by feature_drift/psi:top3:region:critical at 2026-11-02 07:00" in rows[1]["evidence"]
    assert incident_rows([metric, confirmed], T0 + 3 * HOUR, kind=KIND) == []  # not one of their windows
