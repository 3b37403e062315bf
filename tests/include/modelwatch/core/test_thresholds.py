"""Threshold rules: bounds from config and history, direction of error metrics, bootstrap intervals."""

from __future__ import annotations

import statistics
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from modelwatch.core.config import Rule
from modelwatch.core.metric_registry import lower_is_better
from modelwatch.core.result import WindowResult
from modelwatch.core.rule_messages import bounds_text
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays
from modelwatch.core.thresholds import (
    AbsoluteThreshold,
    BaselineDropThreshold,
    BootstrapCIThreshold,
    StdBandThreshold,
    threshold_for,
)
from tests.include.modelwatch.core.test_alerts import HOUR, T0, point, window


def rule(**raw: Any) -> Rule:
    return Rule.model_validate(raw)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("mae", True),
        ("rmse", True),
        ("log_loss", True),
        ("mean_absolute_error", True),
        ("brier", True),
        ("ece", True),
        ("mape", True),
        ("roc_auc", False),
        ("f1", False),
        ("r2", False),
        ("accuracy", False),
    ],
)
def test_error_metrics_are_lower_is_better(metric: str, expected: bool) -> None:
    assert lower_is_better(metric) is expected


def test_table_maps_each_rule_type() -> None:
    assert isinstance(threshold_for(rule(type="absolute", min=0.8), "roc_auc"), AbsoluteThreshold)
    drop = rule(type="baseline_drop", baseline={"value": 0.86}, max_drop=0.05)
    assert isinstance(threshold_for(drop, "roc_auc"), BaselineDropThreshold)
    assert isinstance(threshold_for(rule(type="std_band", k=2), "roc_auc"), StdBandThreshold)
    assert isinstance(threshold_for(rule(type="bootstrap_ci", min=0.8), "roc_auc"), BootstrapCIThreshold)


def test_absolute_bounds_and_breach() -> None:
    threshold = threshold_for(rule(type="absolute", min=0.5, max=0.9), "f1")
    bounds = threshold.bounds(current=window(T0, metric="f1", value=0.95), history=[])
    assert bounds is not None and (bounds.lower, bounds.upper) == (0.5, 0.9)
    assert threshold.is_breach(window(T0, metric="f1", value=0.95), bounds) is True
    assert threshold.is_breach(window(T0, metric="f1", value=0.5), bounds) is False  # the bound itself is fine
    assert threshold.is_breach(window(T0, metric="f1", value=None), bounds) is None


def test_baseline_drop_fixed_absolute_and_relative() -> None:
    current = window(T0, value=0.80)
    absolute = threshold_for(rule(type="baseline_drop", baseline={"value": 0.86}, max_drop=0.05), "roc_auc")
    bounds = absolute.bounds(current=current, history=[])
    assert bounds is not None and bounds.lower == pytest.approx(0.81) and bounds.upper is None
    assert bounds.baseline == 0.86 and absolute.is_breach(current, bounds) is True
    relative = threshold_for(
        rule(type="baseline_drop", baseline={"value": 0.86}, max_drop=0.1, relative=True), "roc_auc"
    )
    rel_bounds = relative.bounds(current=current, history=[])
    assert rel_bounds is not None and rel_bounds.lower == pytest.approx(0.86 - 0.086)
    assert relative.is_breach(current, rel_bounds) is False


def test_baseline_drop_for_error_metric_bounds_the_rise() -> None:
    current = window(T0, metric="mae", value=9.0)
    threshold = threshold_for(rule(type="baseline_drop", baseline={"value": 6.0}, max_drop=0.25, relative=True), "mae")
    bounds = threshold.bounds(current=current, history=[])
    assert bounds is not None and bounds.lower is None and bounds.upper == pytest.approx(7.5)
    assert threshold.is_breach(current, bounds) is True
    assert threshold.is_breach(window(T0, metric="mae", value=4.0), bounds) is False  # lower error is good


def test_baseline_drop_rolling_uses_only_the_period_before_the_window() -> None:
    history = [point(T0 - i * HOUR, 0.8 + i / 100) for i in range(1, 7)]  # 0.81 .. 0.86
    history.append(point(T0, 0.1))  # the window itself must not be in its own baseline
    threshold = threshold_for(rule(type="baseline_drop", baseline={"rolling": "3h"}, max_drop=0.05), "roc_auc")
    bounds = threshold.bounds(current=window(T0, value=0.7), history=history)
    assert bounds is not None and bounds.baseline == pytest.approx((0.81 + 0.82 + 0.83) / 3)
    assert threshold.bounds(current=window(T0, value=0.7), history=[]) is None  # nothing to compare with


def test_baseline_drop_fixed_period() -> None:
    history = [point(T0 - timedelta(days=3) + i * HOUR, v) for i, v in enumerate([0.9, 0.8, None, 0.7])]
    start, end = T0 - timedelta(days=3), T0 - timedelta(days=3) + 3 * HOUR
    threshold = threshold_for(
        rule(type="baseline_drop", baseline={"start": start, "end": end}, max_drop=0.1), "roc_auc"
    )
    bounds = threshold.bounds(current=window(T0), history=history)
    assert bounds is not None and bounds.baseline == pytest.approx(0.85)  # 0.7 ends after 'end', None skipped


def test_std_band_mean_and_sample_std_of_last_n() -> None:
    values = [0.80, 0.82, 0.84, 0.86, 0.88, 0.90]
    history = [point(T0 - (len(values) - i) * HOUR, v) for i, v in enumerate(values)]
    threshold = threshold_for(rule(type="std_band", k=2, lookback_windows=4), "roc_auc")
    bounds = threshold.bounds(current=window(T0, value=0.5), history=history)
    last = values[-4:]
    mean, std = statistics.mean(last), statistics.stdev(last)
    assert bounds is not None
    assert bounds.lower == pytest.approx(mean - 2 * std) and bounds.upper == pytest.approx(mean + 2 * std)
    assert threshold.is_breach(window(T0, value=0.5), bounds) is True
    assert threshold.is_breach(window(T0, value=0.87), bounds) is False


def test_std_band_needs_three_points() -> None:
    history = [point(T0 - HOUR, 0.8), point(T0 - 2 * HOUR, 0.9), point(T0 - 3 * HOUR, None)]
    threshold = threshold_for(rule(type="std_band"), "roc_auc")
    assert threshold.bounds(current=window(T0), history=history) is None


def test_bootstrap_ci_breaches_only_when_whole_interval_is_beyond() -> None:
    calls = []

    def interval(stats: Any, metric: str, *, confidence: float) -> tuple[float, float]:
        calls.append((metric, confidence))
        return intervals[stats.counts.labelled]

    intervals = {50: (0.55, 0.85), 5000: (0.70, 0.74), 7: (0.9, 0.95)}
    threshold = threshold_for(rule(type="bootstrap_ci", min=0.8, confidence=0.9), "roc_auc", interval_fn=interval)
    noisy = window(T0, value=0.7, labelled=50)
    bounds = threshold.bounds(current=noisy, history=[])
    assert bounds is not None and bounds.lower == 0.8
    assert threshold.is_breach(noisy, bounds) is False  # point estimate is low, the interval reaches 0.85
    assert threshold.is_breach(window(T0, value=0.72, labelled=5000), bounds) is True
    assert threshold.is_breach(window(T0, value=0.92, labelled=7), bounds) is False
    assert calls[0] == ("roc_auc", 0.9)


def test_bootstrap_ci_undefined_interval_is_no_bounds() -> None:
    threshold = threshold_for(rule(type="bootstrap_ci", max=8.0), "mae", interval_fn=lambda *a, **k: None)
    assert threshold.bounds(current=window(T0, metric="mae", value=9.0), history=[]) is None


def test_bootstrap_ci_with_the_real_interval_spares_small_noisy_windows() -> None:
    pytest.importorskip("modelwatch.core.metrics")

    def binary_window(scores: np.ndarray, labels: np.ndarray) -> WindowResult:
        stats = WindowStats(
            JoinCounts(predictions=len(labels), labelled=len(labels)),
            binary_stats_from_arrays(scores, labels, threshold=0.5),
        )
        return replace(window(T0, value=float(roc_auc_score(labels, scores)), labelled=len(labels)), stats=stats)

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 4000)
    big_bad = binary_window(np.clip(0.5 + 0.1 * (labels - 0.5) + rng.normal(0, 0.25, 4000), 0, 1), labels)
    small_labels = np.array([0, 1] * 10)
    small_scores = np.array(
        [
            0.91,
            0.0,
            0.5,
            0.46,
            0.29,
            0.55,
            0.0,
            0.54,
            0.18,
            1.0,
            0.46,
            0.51,
            0.33,
            0.43,
            0.14,
            0.5,
            0.52,
            0.54,
            0.64,
            0.55,
        ]
    )
    small = binary_window(small_scores, small_labels)
    threshold = threshold_for(rule(type="bootstrap_ci", min=0.8), "roc_auc")
    bounds = threshold.bounds(current=big_bad, history=[])
    assert bounds is not None and "interval" in bounds_text(bounds.basis)
    assert threshold.is_breach(big_bad, bounds) is True  # AUC ~0.61 on 4000 rows: the whole interval is low
    assert small.metrics["roc_auc"].value == pytest.approx(0.665)
    assert threshold.is_breach(small, bounds) is False  # below 0.8 too, but 20 rows cannot rule 0.8 out
