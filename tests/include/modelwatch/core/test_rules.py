"""Rule evaluators: every judgeable revision, rolling baselines, label freshness, data quality, volume."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from modelwatch.core.alerts import evaluate_rules
from modelwatch.core.quality_rules import NEW_CATEGORIES, NULL_RATE, OUT_OF_RANGE, VOLUME
from modelwatch.core.result import DriftFinding, FeatureQuality, HistoryPoint, MetricValue, WindowResult
from modelwatch.core.rules import (
    LABELS_STALLED,
    Judgement,
    RuleStatus,
    expected_label_arrival,
    inside_margin,
)
from modelwatch.core.thresholds import Bounds
from tests.include.modelwatch.core.test_alerts import HOUR, monitor_config, point
from tests.include.modelwatch.core.test_alerts import window as base_window

T0 = datetime(2026, 11, 10)
OFF = {"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}}


def window(start: datetime, *, revision: int, as_of: datetime, **kwargs) -> WindowResult:
    return replace(base_window(start, as_of=as_of, **kwargs), revision=revision)


def by_metric(evaluations):
    return {(e.metric, e.rule_id): e for e in evaluations}


def test_every_judgeable_revision_is_judged_and_the_breach_is_quoted() -> None:
    monitor = monitor_config(operational=OFF)
    as_of = T0 + 10 * HOUR
    old = window(T0, revision=9, as_of=as_of, value=0.7, labelled=900)  # its later revision breaches
    middle = window(T0 + 7 * HOUR, revision=2, as_of=as_of, value=0.9, labelled=600)
    fresh = window(T0 + 9 * HOUR, revision=0, as_of=as_of, value=0.1, labelled=50)  # too few labels
    (auc,) = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=[fresh, middle, old], history=[])
    assert auc.status == RuleStatus.BREACH and auc.window_start == T0 and auc.revision == 9
    assert auc.window_age_hours == pytest.approx(9.0)
    assert auc.judgements == (
        Judgement(T0 + 7 * HOUR, 2, RuleStatus.HEALTHY, True),
        Judgement(T0, 9, RuleStatus.BREACH, False),
    )


def test_the_trend_ends_at_the_window_the_message_quotes() -> None:
    monitor = monitor_config(operational=OFF)
    as_of = T0 + 10 * HOUR
    old = window(T0 + 6 * HOUR, revision=3, as_of=as_of, value=0.7, labelled=900)  # the breach quoted
    fresh = window(T0 + 9 * HOUR, revision=0, as_of=as_of, value=0.9, labelled=900)
    history = [point(T0 + i * HOUR, 0.9 - i / 100) for i in range(10)]  # includes both windows' stored values
    (auc,) = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=[fresh, old], history=history)
    assert auc.window_start == T0 + 6 * HOUR and auc.value == pytest.approx(0.7)
    assert auc.trend == pytest.approx((0.9, 0.89, 0.88, 0.87, 0.86, 0.85, 0.7))  # up to 05:00, then the quote
    assert auc.recovery is not None and auc.recovery.trend[-1] == pytest.approx(0.9)  # the healthy 09:00 view


def test_healthy_value_near_the_bound_is_not_clear_of_the_margin() -> None:
    monitor = monitor_config(operational=OFF)  # resolve_margin 0.02: roc_auc >= 0.8 needs 0.816 to be clear
    as_of = T0 + HOUR
    (near,) = evaluate_rules(
        monitor, cadence="hourly", as_of=as_of, results=[window(T0, revision=0, as_of=as_of, value=0.805)], history=[]
    )
    (far,) = evaluate_rules(
        monitor, cadence="hourly", as_of=as_of, results=[window(T0, revision=0, as_of=as_of, value=0.85)], history=[]
    )
    assert (near.status, near.within_margin) == (RuleStatus.HEALTHY, False)
    assert (far.status, far.within_margin) == (RuleStatus.HEALTHY, True)
    assert inside_margin(7.9, Bounds(None, 8.0, None), 0.01) and not inside_margin(7.95, Bounds(None, 8.0, None), 0.01)


def _rolling_monitor(**baseline):
    rule = {"type": "baseline_drop", "baseline": {"rolling": "24h", **baseline}, "max_drop": 0.05}
    return monitor_config(operational=OFF, checks=[{"metric": "roc_auc", "min_samples": 10, "rules": [rule]}])


def test_rolling_baseline_needs_a_minimum_of_windows_and_says_so() -> None:
    as_of = T0 + HOUR
    current = [window(T0, revision=0, as_of=as_of, value=0.5)]
    young = [point(T0 - i * HOUR, 0.9) for i in range(1, 6)]  # 5 windows; 24h of hourly needs 12 by default
    (few,) = evaluate_rules(_rolling_monitor(), cadence="hourly", as_of=as_of, results=current, history=young)
    assert few.status == RuleStatus.INSUFFICIENT
    assert "needs >= 12 windows" in few.description and "has 5" in few.description
    (configured,) = evaluate_rules(
        _rolling_monitor(min_windows=5), cadence="hourly", as_of=as_of, results=current, history=young
    )
    assert configured.status == RuleStatus.BREACH and configured.baseline == pytest.approx(0.9)


def test_rolling_baseline_leaves_out_the_windows_of_open_incidents() -> None:
    as_of = T0 + HOUR
    current = [window(T0, revision=0, as_of=as_of, value=0.76)]
    history = [point(T0 - i * HOUR, 0.9) for i in range(13, 25)] + [point(T0 - i * HOUR, 0.7) for i in range(1, 13)]
    monitor = _rolling_monitor(min_windows=6)
    (mixed,) = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=current, history=history)
    assert mixed.status == RuleStatus.HEALTHY  # the incident's own windows drag the baseline down to 0.8
    incident = {"roc_auc": [(T0 - 12 * HOUR, as_of)]}
    (clean,) = evaluate_rules(
        monitor, cadence="hourly", as_of=as_of, results=current, history=history, incident_windows=incident
    )
    assert clean.status == RuleStatus.BREACH and clean.baseline == pytest.approx(0.9)


def test_expected_label_arrival_is_the_median_per_revision_with_enough_windows() -> None:
    samples = [(1, 0.2), (1, 0.3), (1, 0.4), (2, 0.5), (2, None)]
    assert expected_label_arrival(samples, min_windows=3) == {1: pytest.approx(0.3)}
    assert expected_label_arrival(samples, min_windows=1) == {1: pytest.approx(0.3), 2: pytest.approx(0.5)}


def _stalled(results, as_of, arrival):
    monitor = monitor_config(operational={"traffic_stopped": False, "data_quality": {"enabled": False}}, checks=[])
    (rule,) = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[], label_arrival=arrival)
    assert rule.rule_id == LABELS_STALLED
    return rule


def test_labels_stalled_on_the_newest_windows_before_the_full_delay() -> None:
    as_of = T0 + 10 * HOUR
    arrival = {0: 0.05, 1: 0.3, 2: 0.45, 4: 0.6, 8: 0.8}

    def run(labelled: dict[int, int]):
        results = [
            window(as_of - (r + 1) * HOUR, revision=r, as_of=as_of, labelled=n, predictions=1000)
            for r, n in labelled.items()
        ]
        return _stalled(results, as_of, arrival)

    stopped = run({0: 0, 1: 20, 2: 40, 4: 300, 8: 790})  # labels stopped ~2 h ago
    assert stopped.status == RuleStatus.BREACH and stopped.severity == "warning"
    assert stopped.window_start == as_of - 2 * HOUR and stopped.revision == 1  # the newest window expecting labels
    assert "expected by these ages" in stopped.description and "h)" in stopped.description
    flowing = run({0: 60, 1: 280, 2: 470, 4: 590, 8: 800})
    assert flowing.status == RuleStatus.HEALTHY
    no_history = _stalled([window(T0, revision=1, as_of=T0 + 2 * HOUR)], T0 + 2 * HOUR, {})
    assert no_history.status == RuleStatus.INSUFFICIENT and "no label arrival history" in no_history.description


def _quality_window(as_of: datetime, quality, *, importance: float = 0.5, predictions: int = 1000) -> WindowResult:
    drift = tuple(DriftFinding(q.feature, "numeric", "psi", 0.0, 0.2, False, importance=importance) for q in quality)
    return replace(
        window(as_of - HOUR, revision=0, as_of=as_of, labelled=0, predictions=predictions),
        quality=tuple(quality),
        drift=drift,
    )


def _data_quality(results, history=(), **rules):
    operational = {"traffic_stopped": False, "labels_stalled": False, "data_quality": rules}
    features = [{"name": "tenure", "kind": "numeric"}, {"name": "plan", "kind": "categorical"}]
    predictions = {"table": "p", "request_id": "id", "timestamp": "ts", "score": "score", "features": features}
    monitor = monitor_config(operational=operational, checks=[], predictions=predictions)
    evaluations = evaluate_rules(monitor, cadence="hourly", as_of=T0 + HOUR, results=results, history=list(history))
    return {e.metric: e for e in evaluations}


def test_data_quality_rules_page_on_the_fresh_window_without_labels() -> None:
    quality = [
        FeatureQuality("tenure", 0.42, 0.01, 0.6),
        FeatureQuality("plan", 0.0, 0.0, None, new_categories=("gold",), new_category_rate=0.3),
    ]
    rules = _data_quality([_quality_window(T0 + HOUR, quality)])
    assert {k: v.status for k, v in rules.items()} == {
        NULL_RATE: RuleStatus.BREACH,
        OUT_OF_RANGE: RuleStatus.BREACH,
        NEW_CATEGORIES: RuleStatus.BREACH,
        VOLUME: RuleStatus.INSUFFICIENT,
    }
    null = rules[NULL_RATE]
    assert null.severity == "critical" and null.value == pytest.approx(0.41) and null.upper == 0.2
    assert (
        "tenure 41.0%" in null.description
        and null.dedup_key == "modelwatch/churn/hourly/null_rate/data_quality:critical"
    )
    assert null.label_coverage == 0.0  # judged with no label at all
    unimportant = _data_quality([_quality_window(T0 + HOUR, quality, importance=0.01)])
    assert unimportant[NULL_RATE].status == RuleStatus.HEALTHY
    small = _data_quality([_quality_window(T0 + HOUR, quality, predictions=50)])
    assert small[NULL_RATE].status == RuleStatus.INSUFFICIENT


def test_volume_against_the_same_hour_of_previous_days() -> None:
    history = [
        HistoryPoint(T0 - timedelta(days=d), T0 - timedelta(days=d) + HOUR, {}, 0, 1000 + d, "final", 24)
        for d in range(1, 8)
    ]
    quiet = _quality_window(T0 + HOUR, [FeatureQuality("tenure", 0.0, 0.0, 0.0)], predictions=300)
    assert _data_quality([quiet], history)[VOLUME].status == RuleStatus.BREACH
    normal = replace(quiet, stats=_quality_window(T0 + HOUR, [], predictions=1100).stats)
    volume = _data_quality([normal], history)[VOLUME]
    assert volume.status == RuleStatus.HEALTHY and volume.baseline == pytest.approx(1004)
    assert _data_quality([quiet], history[:2])[VOLUME].status == RuleStatus.INSUFFICIENT
    assert "has 2" in _data_quality([quiet], history[:2])[VOLUME].description


def test_a_metric_value_is_needed_for_every_judgement() -> None:
    monitor = monitor_config(operational=OFF)
    undefined = window(T0, revision=3, as_of=T0 + 4 * HOUR, value=None)
    undefined = replace(undefined, metrics={"roc_auc": MetricValue("roc_auc", None, "one class")})
    (auc,) = evaluate_rules(monitor, cadence="hourly", as_of=T0 + 4 * HOUR, results=[undefined], history=[])
    assert auc.status == RuleStatus.INSUFFICIENT and auc.judgements == () and auc.description == "one class"
