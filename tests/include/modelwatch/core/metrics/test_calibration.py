"""Calibrated estimation: the isotonic map against scikit-learn, and the band against realised labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.isotonic import IsotonicRegression

from modelwatch.core.metrics.calibration import (
    Calibration,
    _pool_adjacent_violators,
    estimate_with_band,
    fit_calibration,
)
from modelwatch.core.stats import binary_stats_from_arrays


def _miscalibrated(n: int, seed: int, *, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Scores that overstate the risk: the true probability is score**2 (a calibrated model would be score)."""
    rng = np.random.default_rng(seed)
    scores = np.clip(rng.beta(2, 3, n) + shift, 0, 1)
    y = (rng.random(n) < scores**2).astype(float)
    return scores, y


def test_pool_adjacent_violators_matches_sklearn_isotonic() -> None:
    rng = np.random.default_rng(3)
    rates, weights = rng.random(30), rng.integers(1, 50, 30).astype(float)
    blocks = _pool_adjacent_violators(rates, weights)
    fitted = np.empty(30)
    for block in blocks:
        fitted[block] = np.average(rates[block], weights=weights[block])
    oracle = IsotonicRegression().fit(np.arange(30), rates, sample_weight=weights).predict(np.arange(30))
    np.testing.assert_allclose(fitted, oracle, atol=1e-12)


def test_calibration_learns_the_true_rate_and_round_trips() -> None:
    scores, y = _miscalibrated(40_000, 0)
    calibration = fit_calibration(binary_stats_from_arrays(scores, y, threshold=0.5).histogram)
    assert calibration is not None and calibration.labelled == 40_000
    grid = np.array([0.2, 0.5, 0.8])
    np.testing.assert_allclose(calibration.apply(grid), grid**2, atol=0.04)
    assert np.all(np.diff(calibration.rates) >= 0)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_too_few_labels_give_no_calibration() -> None:
    scores, y = _miscalibrated(100, 1)
    assert fit_calibration(binary_stats_from_arrays(scores, y, threshold=0.5).histogram) is None


def test_calibrated_estimate_is_inside_its_band_where_the_raw_one_is_not() -> None:
    ref_scores, ref_y = _miscalibrated(30_000, 2)
    calibration = fit_calibration(binary_stats_from_arrays(ref_scores, ref_y, threshold=0.5).histogram)
    covered = {name: 0 for name in ("roc_auc", "accuracy", "precision", "recall", "f1")}
    trials = 20
    for seed in range(trials):
        scores, y = _miscalibrated(3000, 100 + seed)
        unlabelled = binary_stats_from_arrays(scores, np.full(len(scores), np.nan), threshold=0.5)
        estimate = estimate_with_band(unlabelled, calibration, confidence=0.95)
        predicted = scores >= 0.5
        realised = {
            "roc_auc": skm.roc_auc_score(y, scores),
            "accuracy": skm.accuracy_score(y, predicted),
            "precision": skm.precision_score(y, predicted),
            "recall": skm.recall_score(y, predicted),
            "f1": skm.f1_score(y, predicted),
        }
        for name, (low, high) in estimate.bands.items():
            covered[name] += low <= realised[name] <= high
    # A 95% band: at least 17 of 20 windows inside (the binomial's 1st percentile is 16).
    assert min(covered.values()) >= 17, covered
    raw = estimate_with_band(unlabelled, None)
    assert raw.values["precision"].value > realised["precision"] + 0.1  # the uncalibrated read is far off
    assert estimate.calibrated and not raw.calibrated


def test_band_narrows_with_the_window_size_and_is_reproducible() -> None:
    ref_scores, ref_y = _miscalibrated(30_000, 4)
    calibration = fit_calibration(binary_stats_from_arrays(ref_scores, ref_y, threshold=0.5).histogram)

    def width(n: int) -> float:
        scores, _ = _miscalibrated(n, 5)
        stats = binary_stats_from_arrays(scores, np.full(n, np.nan), threshold=0.5)
        low, high = estimate_with_band(stats, calibration).bands["roc_auc"]
        return high - low

    assert width(500) > 2 * width(8000)
    assert width(2000) == pytest.approx(width(2000))


def test_no_rows_is_undefined_with_a_reason() -> None:
    empty = binary_stats_from_arrays(np.array([]), np.array([]), threshold=0.5)
    estimate = estimate_with_band(empty, None)
    assert estimate.values["roc_auc"].value is None and estimate.values["roc_auc"].reason
    assert estimate.bands == {}
