"""Label-free rules: each type judged on the fresh window, config errors naming the key, the lifecycle."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from modelwatch.core.alerts import TRIGGER, advance, evaluate_rules, policy_for
from modelwatch.core.config import MonitorConfigError
from modelwatch.core.label_free import POSITIVE_RATE, SCORE_FEATURE
from modelwatch.core.multivariate import MULTIVARIATE
from modelwatch.core.result import DriftFinding, MetricValue, WindowResult
from modelwatch.core.rules import RuleStatus
from tests.include.modelwatch.core.test_alerts import monitor_config
from tests.include.modelwatch.core.test_alerts import window as base_window

T0 = datetime(2026, 11, 10)
HOUR = timedelta(hours=1)
OFF = {"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}}
FEATURES = [
    {"name": "support_calls", "kind": "numeric"},
    {"name": "tenure", "kind": "numeric"},
    {"name": "plan", "kind": "categorical"},
]
PREDICTIONS = {
    "table": "p",
    "request_id": "id",
    "timestamp": "ts",
    "score": "score",
    "features": FEATURES,
    "segments": ["region"],
}


def label_free_monitor(*rules: dict, **overrides):
    keys = {"operational": OFF, "checks": [], "predictions": PREDICTIONS, "label_free": list(rules)}
    return monitor_config(**(keys | overrides))


def drift(feature: str, score: float, *, segment: str | None = None, method: str = "psi", importance=0.5):
    return DriftFinding(feature, "numeric", method, score, 0.2, score >= 0.2, segment=segment, importance=importance)


def fresh(start: datetime = T0, *, predictions: int = 1000, revision: int = 0, **fields) -> WindowResult:
    window = base_window(start, labelled=0, predictions=predictions, as_of=start + HOUR)
    return replace(window, revision=revision, **fields)


def judge(monitor, *windows):
    evaluations = evaluate_rules(monitor, cadence="hourly", as_of=T0 + HOUR, results=list(windows), history=[])
    return {e.rule_id: e for e in evaluations}


def test_feature_drift_on_named_features_overall() -> None:
    monitor = label_free_monitor({"type": "feature_drift", "features": ["support_calls"], "threshold": 0.2})
    window = fresh(drift=(drift("support_calls", 0.9), drift("tenure", 5.0)))
    (rule,) = judge(monitor, window).values()
    assert rule.status == RuleStatus.BREACH and rule.value == pytest.approx(0.9) and rule.upper == 0.2
    assert rule.dedup_key == "modelwatch/churn/hourly/feature_drift/psi:support_calls:warning"
    assert "support_calls 0.9" in rule.description and rule.revision == 0 and rule.labelled == 0
    quiet = judge(monitor, fresh(drift=(drift("support_calls", 0.05),)))
    assert next(iter(quiet.values())).status == RuleStatus.HEALTHY


def test_feature_drift_top_k_by_importance_and_within_a_segment() -> None:
    monitor = label_free_monitor(
        {"type": "feature_drift", "top_k": 1, "threshold": 0.2, "segment": "region", "severity": "critical"}
    )
    findings = (
        drift("support_calls", 0.1, importance=0.6),
        drift("tenure", 0.1, importance=0.1),
        drift("support_calls", 1.4, segment="region=EU", importance=0.6),
        drift("support_calls", 0.05, segment="region=NA", importance=0.6),
        drift("tenure", 3.0, segment="region=NA", importance=0.1),  # not among the top 1: ignored
    )
    (rule,) = judge(monitor, fresh(drift=findings)).values()
    assert rule.status == RuleStatus.BREACH and rule.severity == "critical"
    assert "support_calls in region=EU 1.4" in rule.description
    one = label_free_monitor({"type": "feature_drift", "top_k": 1, "threshold": 0.2, "segment": "region=NA"})
    assert next(iter(judge(one, fresh(drift=findings)).values())).status == RuleStatus.HEALTHY


def test_score_drift_and_positive_rate() -> None:
    monitor = label_free_monitor(
        {"type": "score_drift", "method": "js", "threshold": 0.1},
        {"type": "positive_rate", "max_change": 0.05},
    )
    rate = DriftFinding(
        POSITIVE_RATE,
        "numeric",
        POSITIVE_RATE,
        0.08,
        0.0,
        False,
        reference_summary={"rate": 0.20},
        current_summary={"rate": 0.28},
    )
    signals = (DriftFinding(SCORE_FEATURE, "numeric", "js", 0.15, 0.1, True), rate)
    rules = judge(monitor, fresh(signals=signals))
    score, positive = rules["js:warning"], rules["warning"]
    assert score.status == RuleStatus.BREACH and score.metric == "score_drift"
    assert positive.status == RuleStatus.BREACH and (positive.lower, positive.upper) == pytest.approx((0.15, 0.25))
    assert positive.value == pytest.approx(0.28) and "20.0%" in positive.description
    assert all(e.status == RuleStatus.INSUFFICIENT for e in judge(monitor, fresh()).values())


def test_estimated_rule_breaches_only_when_the_whole_band_is_outside() -> None:
    monitor = label_free_monitor({"type": "estimated", "metric": "roc_auc", "min": 0.8, "severity": "critical"})

    def estimated(value: float, band: tuple[float, float]):
        window = fresh(estimated={"roc_auc": MetricValue("roc_auc", value)}, estimated_bands={"roc_auc": band})
        return next(iter(judge(monitor, window).values()))

    assert estimated(0.74, (0.71, 0.77)).status == RuleStatus.BREACH
    straddling = estimated(0.78, (0.75, 0.81))
    assert straddling.status == RuleStatus.HEALTHY and not straddling.within_margin
    assert estimated(0.86, (0.83, 0.89)).status == RuleStatus.HEALTHY
    uncalibrated = judge(monitor, fresh(estimated={"roc_auc": MetricValue("roc_auc", 0.9)}))
    assert next(iter(uncalibrated.values())).status == RuleStatus.INSUFFICIENT
    assert "covariate shift" in estimated(0.74, (0.71, 0.77)).description


def test_multivariate_rule_reads_its_signal() -> None:
    monitor = label_free_monitor({"type": "multivariate_drift", "threshold": 0.1})
    signal = DriftFinding(MULTIVARIATE, "numeric", "pca_reconstruction", 0.3, 0.1, True)
    (rule,) = judge(monitor, fresh(signals=(signal,))).values()
    assert rule.status == RuleStatus.BREACH and rule.metric == "multivariate_drift"


def test_only_the_fresh_window_with_enough_rows_is_judged() -> None:
    monitor = label_free_monitor({"type": "feature_drift", "features": ["tenure"], "threshold": 0.2})
    old = fresh(T0 - HOUR, revision=3, drift=(drift("tenure", 5.0),))
    (rule,) = judge(monitor, old).values()
    assert rule.status == RuleStatus.INSUFFICIENT  # a revision of an older window: its labels speak now
    (small,) = judge(monitor, fresh(predictions=50, drift=(drift("tenure", 5.0),))).values()
    assert small.status == RuleStatus.INSUFFICIENT and "fewer than 200" in small.description


def test_label_free_rules_share_the_lifecycle_m_of_n() -> None:
    rule = {"type": "feature_drift", "features": ["tenure"], "threshold": 0.2, "m_of_n": [2, 3]}
    monitor = label_free_monitor(rule)
    state, kinds = None, []
    for i, score in enumerate([0.5, 0.1, 0.6]):
        start = T0 + i * HOUR
        window = replace(fresh(start, drift=(drift("tenure", score),)), as_of=start + HOUR)
        (evaluation,) = evaluate_rules(monitor, cadence="hourly", as_of=start + HOUR, results=[window], history=[])
        state, events = advance(state, evaluation, check=policy_for(monitor, evaluation))
        kinds.append([e.kind for e in events])
    assert kinds == [[], [], [TRIGGER]]
    assert policy_for(monitor, evaluation).m_of_n == (2, 3)


@pytest.mark.parametrize(
    ("rule", "key", "text"),
    [
        ({"type": "feature_drift", "threshold": 0.2}, "label_free.0", "exactly one of 'features' or 'top_k'"),
        ({"type": "feature_drift", "features": ["nope"], "threshold": 0.2}, "label_free.0.features", "nope"),
        ({"type": "feature_drift", "top_k": 2}, "label_free.0", "needs 'threshold'"),
        ({"type": "feature_drift", "top_k": 2, "threshold": 0.2, "segment": "plan"}, "label_free.0.segment", "plan"),
        (
            {"type": "feature_drift", "features": ["plan"], "threshold": 0.2, "method": "wasserstein"},
            "label_free.0.method",
            "numeric",
        ),
        ({"type": "score_drift", "threshold": 0.1, "method": "chi2"}, "label_free.0", "psi, js or wasserstein"),
        ({"type": "positive_rate"}, "label_free.0", "needs 'max_change'"),
        ({"type": "estimated", "metric": "roc_auc"}, "label_free.0", "'min' and/or 'max'"),
        ({"type": "estimated", "metric": "mae", "min": 1}, "label_free.0.metric", "roc_auc"),
        ({"type": "score_drift", "threshold": 0.1, "top_k": 3}, "label_free.0", "belong to 'feature_drift'"),
    ],
)
def test_bad_label_free_rules_name_the_key(rule: dict, key: str, text: str) -> None:
    with pytest.raises(MonitorConfigError) as info:
        label_free_monitor(rule)
    assert info.value.key == key and text in info.value.expected


def test_estimated_rules_share_one_confidence() -> None:
    low = {"type": "estimated", "metric": "roc_auc", "min": 0.8}
    high = {"type": "estimated", "metric": "f1", "min": 0.5, "confidence": 0.8}
    with pytest.raises(MonitorConfigError) as info:
        label_free_monitor(low, high)
    assert info.value.key == "label_free.1.confidence"
    assert len(label_free_monitor(low, {**high, "confidence": 0.95}).label_free) == 2


def test_two_rules_with_one_identity_need_a_name() -> None:
    rule = {"type": "score_drift", "threshold": 0.1}
    with pytest.raises(MonitorConfigError, match="give one a 'name'"):
        label_free_monitor(rule, rule)
    named = label_free_monitor(rule, {**rule, "threshold": 0.3, "severity": "warning", "name": "score_big"})
    assert {r.rule_id for r in named.label_free} == {"psi:warning", "score_big:warning"}


def test_a_regression_monitor_refuses_score_rules() -> None:
    raw = {"type": "positive_rate", "max_change": 0.1}
    with pytest.raises(MonitorConfigError) as info:
        label_free_monitor(raw, task="regression", classes=[])
    assert info.value.key == "label_free.0.type" and "binary_classification" in info.value.expected
