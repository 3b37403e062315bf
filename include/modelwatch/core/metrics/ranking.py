"""Ranking and calibration metrics from score histograms, vectorised over leading (bootstrap) axes.

Rows in the same bin are treated as tied, exactly as scikit-learn treats tied scores, so with an
exact histogram (``resolution`` None: one bin per distinct score) the results equal sklearn's. With
binned scores the error is bounded by :func:`roc_auc_error_bound` / :func:`average_precision_error_bound`.
Functions taking count arrays return NaN where the metric is undefined; callers turn NaN into
``MetricValue(name, None, reason)``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import digamma

from modelwatch.core.stats import ScoreHistogram

ECE_BINS = 10
"""Equal-width calibration bins over [0, 1] for the expected calibration error."""


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    return np.divide(num, den, out=out, where=den != 0)


def auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC of bins sorted by ascending score (last axis); ties within a bin count one half.

    Counts may be fractional (expected counts in performance estimation).
    """
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    neg_below = np.cumsum(neg, axis=-1) - neg
    concordant = np.sum(pos * (neg_below + 0.5 * neg), axis=-1)
    return _safe_divide(concordant, pos.sum(axis=-1) * neg.sum(axis=-1))


def average_precision_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step-wise definition, no interpolation) over ascending bins."""
    pos_desc = np.asarray(pos, dtype=np.float64)[..., ::-1]
    neg_desc = np.asarray(neg, dtype=np.float64)[..., ::-1]
    tps = np.cumsum(pos_desc, axis=-1)
    precision = np.nan_to_num(_safe_divide(tps, tps + np.cumsum(neg_desc, axis=-1)))
    return _safe_divide(np.sum(pos_desc * precision, axis=-1), tps[..., -1] if tps.shape[-1] else 0.0)


def ece_bin_index(hist: ScoreHistogram) -> np.ndarray:
    """Calibration bin (0..ECE_BINS-1) of each histogram bin, from its key (lower edge or exact score)."""
    scaled = hist.keys * ECE_BINS
    if hist.resolution is not None:
        # Keys are multiples of the resolution computed in floating point (0.3 may be 0.29999...);
        # the nudge keeps a bin starting exactly on a calibration edge in the upper calibration bin.
        scaled = scaled + 1e-9
    return np.clip(np.floor(scaled), 0, ECE_BINS - 1).astype(np.int64)


def ece_from_counts(pos: np.ndarray, labelled: np.ndarray, score_sum: np.ndarray, ece_bin: np.ndarray) -> np.ndarray:
    """Expected calibration error: sum over calibration bins of |sum of scores - positives| / labelled rows."""
    pos = np.asarray(pos, dtype=np.float64)
    lead = pos.shape[:-1]
    gap = np.zeros((*lead, ECE_BINS))
    for k in range(ECE_BINS):
        in_k = ece_bin == k
        gap[..., k] = np.abs(np.sum(score_sum[..., in_k], axis=-1) - np.sum(pos[..., in_k], axis=-1))
    return _safe_divide(gap.sum(axis=-1), np.sum(labelled, axis=-1))


def roc_auc_error_bound(hist: ScoreHistogram) -> float:
    """Largest possible |histogram AUC - exact AUC of the unbinned rows|.

    Only positive/negative pairs inside one bin can be ordered differently by the exact scores; the
    histogram counts each such pair as 1/2 while the truth is 0, 1/2 or 1. Hence the bound
    ``0.5 * sum_b(pos_b * neg_b) / (P * N)``; 0 for exact histograms and when AUC is undefined.

    Args:
        hist: The labelled part of this histogram is used.

    Returns:
        The bound, in AUC units. The pipeline re-queries with exact scores when it exceeds 1e-3.
    """
    pos = hist.pos.astype(np.float64)
    neg = hist.neg.astype(np.float64)
    pairs = pos.sum() * neg.sum()
    if hist.resolution is None or pairs == 0:
        return 0.0
    return float(0.5 * np.sum(pos * neg) / pairs)


def _precision_sum(a: np.ndarray, c: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``sum_{i=1..p} (a+i)/(c+i) = p - (c-a) * (digamma(c+p+1) - digamma(c+1))`` for c >= a >= 0."""
    return p - (c - a) * (digamma(c + p + 1) - digamma(c + 1))


def average_precision_error_bound(hist: ScoreHistogram) -> float:
    """Largest possible |histogram average precision - exact average precision of the unbinned rows|.

    Going down the bins, let ``a``/``f`` be the positives/negatives in higher bins and ``p``/``n``
    those in bin b. The histogram credits the bin's positives with ``p * h``, ``h = (a+p)/(a+f+p+n)``.
    With exact scores, sklearn credits each positive with the precision at the end of its tie group,
    ``(a+i)/(a+f+i+j)`` with ``i`` positives and ``j`` negatives of the bin ranked at or above it.
    The bin's total is largest when all ``p`` positives tie above every negative,
    ``hi = p*(a+p)/(a+f+p)``, and smallest when every negative ranks first and the positives are
    distinct, ``lo = sum_{i=1..p} (a+i)/(a+f+n+i)`` (ties among positives only raise it). Both are
    attainable, so the error is at most ``sum_b max(hi - p*h, p*h - lo) / P``; 0 for exact histograms.

    Args:
        hist: The labelled part of this histogram is used.

    Returns:
        The bound, in average-precision units (0 when undefined: no positives).
    """
    total_pos = float(hist.pos.sum())
    if hist.resolution is None or total_pos == 0:
        return 0.0
    p = hist.pos[::-1].astype(np.float64)
    n = hist.neg[::-1].astype(np.float64)
    a = np.cumsum(p) - p
    f = np.cumsum(n) - n
    credited = p * np.nan_to_num(_safe_divide(a + p, a + f + p + n))
    hi = p * np.nan_to_num(_safe_divide(a + p, a + f + p))
    lo = _precision_sum(a, a + f + n, p)
    slack = np.maximum(hi - credited, credited - lo)
    return float(np.sum(np.maximum(slack, 0.0)) / total_pos)
