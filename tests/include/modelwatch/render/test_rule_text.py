"""rule_text: rules and durations as the DAG docs and messages print them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelwatch.core.config import Rule
from modelwatch.core.metric_registry import lower_is_better
from modelwatch.render.rule_text import duration_text, rule_summary


@pytest.mark.parametrize(
    ("span", "text"), [(timedelta(days=1), "1d"), (timedelta(hours=6), "6h"), (timedelta(minutes=90), "90m")]
)
def test_durations_read_like_the_yaml(span: timedelta, text: str) -> None:
    assert duration_text(span) == text


@pytest.mark.parametrize(
    ("rule", "metric", "text"),
    [
        ({"type": "absolute", "min": 0.8, "severity": "critical"}, "roc_auc", "absolute: >= 0.8 -> critical"),
        ({"type": "absolute", "max": 8}, "mae", "absolute: <= 8 -> warning"),
        (
            {"type": "baseline_drop", "baseline": {"value": 0.86}, "max_drop": 0.05},
            "roc_auc",
            "baseline_drop: >= 0.81 (fixed baseline 0.86 - 0.05) -> warning",
        ),
        (
            {"type": "baseline_drop", "baseline": {"value": 4.0}, "max_drop": 0.5, "relative": True},
            "mae",
            "baseline_drop: <= 6 (fixed baseline 4 + 50%) -> warning",
        ),
        (
            {"type": "baseline_drop", "baseline": {"rolling": "7d"}, "max_drop": 0.05},
            "f1",
            "baseline_drop: rolling 7d mean - 0.05 -> warning",
        ),
        (
            {"type": "std_band", "k": 3, "lookback_windows": 48},
            "f1",
            "std_band: within 3 std of the last 48 windows -> warning",
        ),
        (
            {"type": "bootstrap_ci", "min": 0.8, "confidence": 0.9},
            "roc_auc",
            "bootstrap_ci: 90% interval >= 0.8 -> warning",
        ),
    ],
)
def test_a_rule_says_its_effective_bound(rule: dict, metric: str, text: str) -> None:
    assert rule_summary(Rule(**rule), metric) == text


def test_error_metrics_are_lower_is_better() -> None:
    assert lower_is_better("mae") and lower_is_better("log_loss") and not lower_is_better("roc_auc")
