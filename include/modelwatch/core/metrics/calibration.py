"""Calibrated performance estimation with a confidence band (CBPE, checked instead of assumed).

NannyML's CBPE reads a score as the probability of the positive class. Here that reading is learnt:
the reference's labelled rows fit an isotonic map from score to positive rate (pool-adjacent-violators
over the reference's score bins), and the window's expected confusion counts and AUC come from the
calibrated probabilities of all its rows, labelled or not. The band is a parametric bootstrap of what
the labels could turn out to be: each draw takes the calibration's block rates from their Beta
posterior (the reference's finite labels) and then each bin's positives from a binomial (the window's
finite size), and the band is the central ``confidence`` share of the metrics of the draws.

What it sees: covariate shift the calibration covers (the inputs move to where the model is less sure,
so scores pile up near the threshold and the expected metrics fall). What it cannot see: concept drift
(the same inputs now mean another outcome): the map learnt on the reference still holds the old meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwatch.core.metrics._values import defined, undefined
from modelwatch.core.metrics.ranking import auc_from_counts
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import BinaryStats, ScoreHistogram

CALIBRATION_RESOLUTION = 0.01
"""Reference score bins fitted by the isotonic map (100 bins: enough rows per bin at hourly volumes)."""
ESTIMATION_RESOLUTION = 1e-3
"""The window's histogram is re-binned to this before estimating (the threshold stays on a bin edge)."""
MIN_CALIBRATION_LABELS = 200
"""A reference with fewer labelled rows gives no calibration (the raw scores are used, and said so)."""
BAND_DRAWS = 400
ESTIMATED_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class Calibration:
    """An isotonic score -> positive-rate map: one block per pooled run of reference score bins."""

    scores: tuple[float, ...]
    """Mean reference score of each block (ascending): the interpolation knots."""
    rates: tuple[float, ...]
    """Positive rate of each block (non-decreasing)."""
    weights: tuple[int, ...]
    """Labelled reference rows in each block (the rates' uncertainty)."""

    @property
    def labelled(self) -> int:
        return int(sum(self.weights))

    def apply(self, scores: np.ndarray, rates: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probability of each score (linear between knots, flat outside them)."""
        return np.interp(scores, self.scores, self.rates if rates is None else rates)

    def to_dict(self) -> dict[str, Any]:
        return {"scores": list(self.scores), "rates": list(self.rates), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Calibration:
        return cls(tuple(raw["scores"]), tuple(raw["rates"]), tuple(int(w) for w in raw["weights"]))


def _pool_adjacent_violators(rates: np.ndarray, weights: np.ndarray) -> list[list[int]]:
    """Index blocks whose weighted mean rates are non-decreasing (the isotonic regression's blocks)."""
    blocks: list[tuple[float, float, list[int]]] = []
    for i, (rate, weight) in enumerate(zip(rates, weights, strict=True)):
        blocks.append((float(rate) * weight, float(weight), [i]))
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            (s2, w2, i2), (s1, w1, i1) = blocks.pop(), blocks.pop()
            blocks.append((s1 + s2, w1 + w2, i1 + i2))
    return [indices for _, _, indices in blocks]


def fit_calibration(reference: ScoreHistogram, *, min_labelled: int = MIN_CALIBRATION_LABELS) -> Calibration | None:
    """Isotonic calibration on the reference's labelled rows; None with too few of them.

    Args:
        reference: The reference windows' merged score histogram (its labelled rows are used).
        min_labelled: Fewer labelled rows and there is nothing sound to fit.
    """
    hist = reference.coarsen(CALIBRATION_RESOLUTION) if reference.resolution != CALIBRATION_RESOLUTION else reference
    labelled = (hist.pos + hist.neg).astype(np.float64)
    keep = labelled > 0
    if labelled.sum() < min_labelled or keep.sum() < 2:
        return None
    weights, positives = labelled[keep], hist.pos[keep].astype(np.float64)
    mean_scores = hist.score_sum_labelled[keep] / weights
    blocks = _pool_adjacent_violators(positives / weights, weights)
    return Calibration(
        scores=tuple(float(np.average(mean_scores[b], weights=weights[b])) for b in blocks),
        rates=tuple(float(positives[b].sum() / weights[b].sum()) for b in blocks),
        weights=tuple(int(weights[b].sum()) for b in blocks),
    )


def _metrics_from_expected(pos: np.ndarray, neg: np.ndarray, predicted_pos: np.ndarray) -> dict[str, np.ndarray]:
    """The five metrics of (possibly fractional, possibly stacked) positives/negatives per ascending bin."""
    tp, fp = (pos * predicted_pos).sum(-1), (neg * predicted_pos).sum(-1)
    fn, tn = (pos * ~predicted_pos).sum(-1), (neg * ~predicted_pos).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "roc_auc": auc_from_counts(pos, neg),
            "accuracy": (tp + tn) / (tp + fp + tn + fn),
            "precision": tp / (tp + fp),
            "recall": tp / (tp + fn),
            "f1": 2 * tp / (2 * tp + fp + fn),
        }


@dataclass(frozen=True)
class Estimate:
    """Estimated metrics of one window and the band each realised metric should fall in."""

    values: dict[str, MetricValue]
    bands: dict[str, tuple[float, float]]
    calibrated: bool


def estimate_with_band(
    stats: BinaryStats,
    calibration: Calibration | None,
    *,
    confidence: float = 0.95,
    draws: int = BAND_DRAWS,
    seed: int = 0,
) -> Estimate:
    """Expected roc_auc, accuracy, precision, recall and f1 of a window from its scores alone.

    Args:
        stats: The window's binary statistics (every row's score counts, labelled or not).
        calibration: From :func:`fit_calibration`; None reads the raw scores as probabilities (no band
            for the calibration's own error then).
        confidence: Central share of the draws the band holds.
        draws: Bootstrap draws (fixed ``seed``: the same window gives the same band).
        seed: Random seed of the draws.
    """
    hist = stats.histogram
    if hist.resolution is not None and hist.resolution < ESTIMATION_RESOLUTION:
        hist = hist.coarsen(ESTIMATION_RESOLUTION)
    count = (hist.pos + hist.neg + hist.unlabelled).astype(np.float64)
    if count.sum() == 0:
        return Estimate({n: undefined(n, "no scored predictions") for n in ESTIMATED_METRICS}, {}, False)
    mean_score = (hist.score_sum_labelled + hist.score_sum_unlabelled) / np.maximum(count, 1)
    probability = calibration.apply(mean_score) if calibration is not None else np.clip(mean_score, 0, 1)
    predicted_pos = hist.keys >= stats.threshold - 1e-12
    point = _metrics_from_expected(count * probability, count * (1 - probability), predicted_pos)
    reasons = {
        "roc_auc": "only one class is expected",
        "accuracy": "no scored predictions",
        "precision": "no rows scored at or above the threshold",
        "recall": "no expected positives",
        "f1": "no expected positives and no predicted positives",
    }
    values = {n: defined(n, float(point[n]), reasons[n]) for n in ESTIMATED_METRICS}
    rng = np.random.default_rng(seed)
    if calibration is not None:
        w = np.asarray(calibration.weights, dtype=np.float64)
        r = np.asarray(calibration.rates)
        block_rates = rng.beta(r * w + 0.5, (1 - r) * w + 0.5, size=(draws, len(w)))
        drawn_p = np.stack([calibration.apply(mean_score, rates) for rates in np.sort(block_rates, axis=1)])
    else:
        drawn_p = np.broadcast_to(probability, (draws, len(count)))
    positives = rng.binomial(count.astype(np.int64), np.clip(drawn_p, 0, 1)).astype(np.float64)
    sampled = _metrics_from_expected(positives, count - positives, predicted_pos)
    tail = (1 - confidence) / 2
    bands = {}
    for name in ESTIMATED_METRICS:
        finite = sampled[name][np.isfinite(sampled[name])]
        if values[name].value is not None and len(finite) >= draws // 2:
            bands[name] = (float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail)))
    return Estimate(values, bands, calibration is not None)
