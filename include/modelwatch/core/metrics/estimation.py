"""Confidence-based performance estimation (CBPE, as in NannyML): expected metrics without labels.

Assumes the model is calibrated: a row with score s is positive with probability s. Then, per score
bin, the expected positives are the bin's score sum and the expected negatives its count minus that.
Every scored row counts (labelled or not), so the estimate is available as soon as traffic is.
The estimates are ratios of expected counts, which equal the expected metric up to O(1/n).
"""

from __future__ import annotations

import numpy as np

from modelwatch.core.metrics._values import defined, ratio, undefined
from modelwatch.core.metrics.ranking import auc_from_counts
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import BinaryStats

NO_SCORED = "no scored predictions"
ONE_EXPECTED_CLASS = "scores are all 0 or all 1, so only one class is expected"


def _expected_confusion(stats: BinaryStats, expected_pos: np.ndarray, count: np.ndarray) -> tuple[float, ...]:
    hist = stats.histogram
    # A bin straddling the threshold is assigned by its lower edge, like the rows of an exact histogram.
    predicted_pos = hist.keys >= stats.threshold
    expected_neg = count - expected_pos
    tp = float(expected_pos[predicted_pos].sum())
    fp = float(expected_neg[predicted_pos].sum())
    fn = float(expected_pos[~predicted_pos].sum())
    tn = float(expected_neg[~predicted_pos].sum())
    return tp, fp, tn, fn


def estimate_metrics(stats: BinaryStats) -> dict[str, MetricValue]:
    """Expected roc_auc, accuracy, precision, recall and f1 from the scores of all rows.

    Args:
        stats: Binary statistics; only the histogram (all label states) and the threshold are used.

    Returns:
        Metric name -> estimated value (same names as the realised metrics); None with a reason when
        there are no scored rows or a ratio's expected denominator is 0.
    """
    hist = stats.histogram
    count = (hist.pos + hist.neg + hist.unlabelled).astype(np.float64)
    expected_pos = hist.score_sum_labelled + hist.score_sum_unlabelled
    names = ("roc_auc", "accuracy", "precision", "recall", "f1")
    if count.sum() == 0:
        return {name: undefined(name, NO_SCORED) for name in names}
    expected_neg = count - expected_pos
    tp, fp, tn, fn = _expected_confusion(stats, expected_pos, count)
    values = [
        defined("roc_auc", auc_from_counts(expected_pos, expected_neg), ONE_EXPECTED_CLASS),
        ratio("accuracy", tp + tn, tp + fp + tn + fn, NO_SCORED),
        ratio("precision", tp, tp + fp, "no rows scored at or above the threshold"),
        ratio("recall", tp, tp + fn, ONE_EXPECTED_CLASS),
        ratio("f1", 2 * tp, 2 * tp + fp + fn, "no expected positives and no predicted positives"),
    ]
    return {m.name: m for m in values}
