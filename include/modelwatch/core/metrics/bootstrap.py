"""Percentile-bootstrap intervals of a metric from sufficient statistics (no raw rows).

- Binary: confusion metrics resample the four confusion cells multinomially; ranking and probability
  metrics resample the histogram cells (bin x {positive, negative}); ``positive_rate`` is a binomial
  proportion; ``mean_score`` resamples the all-row histogram bins. Histograms with more than
  ``MAX_BOOTSTRAP_BINS`` bins are first merged into that many rank-contiguous groups (never across a
  calibration decile) so 200 resamples stay fast; the bootstrap deviations are computed on the groups and
  added to the exact value. Merging treats within-group pairs as ties, which changes the spread by
  O(1 / MAX_BOOTSTRAP_BINS). ``log_loss``/``brier`` give each resampled row its group's mean score.
- Multiclass: the K x K confusion cells are resampled multinomially. ``log_loss`` has no interval
  (only its sum is kept, not its spread).
- Regression: normal approximation, ``estimate +- z * se`` with the per-row variance taken from the sums
  (e² = |e|², so MAE and mean error are exact). MSE assumes normally distributed errors,
  Var(e²) = 2σ⁴ + 4μ²σ²; RMSE is the square root of the MSE interval and R² maps the MSE interval through
  ``1 - mse / label variance`` (label variance taken as fixed). MAPE has no interval (no spread kept).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import stats as scipy_stats

from modelwatch.core.metrics.binary import binary_metrics
from modelwatch.core.metrics.multiclass import confusion_scores, multiclass_metrics
from modelwatch.core.metrics.ranking import (
    auc_from_counts,
    average_precision_from_counts,
    ece_bin_index,
    ece_from_counts,
)
from modelwatch.core.metrics.regression import label_sum_of_squares, regression_metrics
from modelwatch.core.stats import LOG_EPS, BinaryStats, MulticlassStats, RegressionStats, TaskStats, WindowStats

MAX_BOOTSTRAP_BINS = 500
"""Histogram bins beyond this are merged into rank-contiguous groups before resampling."""

_CONFUSION: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "accuracy": lambda tp, fp, tn, fn: _div(tp + tn, tp + fp + tn + fn),
    "precision": lambda tp, fp, tn, fn: _div(tp, tp + fp),
    "recall": lambda tp, fp, tn, fn: _div(tp, tp + fn),
    "f1": lambda tp, fp, tn, fn: _div(2 * tp, 2 * tp + fp + fn),
    "specificity": lambda tp, fp, tn, fn: _div(tn, tn + fp),
    "prevalence": lambda tp, fp, tn, fn: _div(tp + fn, tp + fp + tn + fn),
}


def _div(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _resample(counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Multinomial resamples of integer cell counts, shape (n_boot, *counts.shape)."""
    flat = counts.reshape(-1).astype(np.float64)
    total = int(flat.sum())
    return rng.multinomial(total, flat / total, size=n_boot).reshape(n_boot, *counts.shape)


def _groups(weights: np.ndarray, decile: np.ndarray) -> np.ndarray:
    """Group index per bin: rank-contiguous groups of similar weight, never spanning a calibration decile."""
    if len(weights) <= MAX_BOOTSTRAP_BINS:
        return np.arange(len(weights))
    before = np.cumsum(weights) - weights
    rank_group = np.floor(before * MAX_BOOTSTRAP_BINS / max(weights.sum(), 1)).astype(np.int64)
    return np.unique(decile * (MAX_BOOTSTRAP_BINS + 1) + rank_group, return_inverse=True)[1]


def _histogram_metric(
    metric: str, pos: np.ndarray, neg: np.ndarray, mean: np.ndarray, decile: np.ndarray
) -> np.ndarray:
    """``metric`` of (resampled) group counts; ``mean`` is each group's mean labelled score."""
    if metric == "roc_auc":
        return auc_from_counts(pos, neg)
    if metric == "average_precision":
        return average_precision_from_counts(pos, neg)
    n = (pos + neg).sum(axis=-1)
    if metric == "ece":
        return ece_from_counts(pos, pos + neg, (pos + neg) * mean, decile)
    m = np.clip(mean, LOG_EPS, 1 - LOG_EPS)
    if metric == "log_loss":
        return _div(-(pos * np.log(m) + neg * np.log(1 - m)).sum(axis=-1), n)
    return _div((pos * (1 - mean) ** 2 + neg * mean**2).sum(axis=-1), n)  # brier


def _binary_histogram_deviations(stats: BinaryStats, metric: str, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    hist = stats.histogram
    decile_per_bin = ece_bin_index(hist)
    group = _groups((hist.pos + hist.neg).astype(np.float64), decile_per_bin)
    size = int(group.max()) + 1 if len(group) else 0
    pos = np.bincount(group, weights=hist.pos, minlength=size)
    neg = np.bincount(group, weights=hist.neg, minlength=size)
    score_sum = np.bincount(group, weights=hist.score_sum_labelled, minlength=size)
    decile = np.zeros(size, dtype=np.int64)
    decile[group] = decile_per_bin
    mean = _div(score_sum, pos + neg)
    mean = np.where(np.isnan(mean), 0.0, mean)
    observed = _histogram_metric(metric, pos, neg, mean, decile)
    draws = _resample(np.stack([pos, neg], axis=-1).astype(np.int64), n_boot, rng)
    return _histogram_metric(metric, draws[..., 0], draws[..., 1], mean, decile) - observed


def _binary_samples(stats: BinaryStats, metric: str, value: float, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    if metric in _CONFUSION:
        draws = _resample(np.array([stats.tp, stats.fp, stats.tn, stats.fn]), n_boot, rng)
        return _CONFUSION[metric](*draws.T)
    if metric == "positive_rate":
        return rng.binomial(stats.scored_all, value, size=n_boot) / stats.scored_all
    if metric == "mean_score":
        hist = stats.histogram
        count = hist.pos + hist.neg + hist.unlabelled
        means = (hist.score_sum_labelled + hist.score_sum_unlabelled) / np.maximum(count, 1)
        group = _groups(count.astype(np.float64), np.zeros(len(count), dtype=np.int64))
        grouped_count = np.bincount(group, weights=count).astype(np.int64)
        grouped_mean = np.bincount(group, weights=means * count) / np.maximum(grouped_count, 1)
        draws = _resample(grouped_count, n_boot, rng)
        return (draws @ grouped_mean) / grouped_count.sum()
    return value + _binary_histogram_deviations(stats, metric, n_boot, rng)


def _multiclass_samples(
    stats: MulticlassStats, metric: str, n_boot: int, rng: np.random.Generator
) -> np.ndarray | None:
    if metric == "log_loss":
        return None
    scores = confusion_scores(_resample(stats.confusion, n_boot, rng))
    if metric.startswith("recall_") and metric not in scores:
        return scores["recall_by_class"][:, stats.classes.index(metric.removeprefix("recall_"))]
    return scores[metric]


def _regression_interval(stats: RegressionStats, metric: str, z: float) -> tuple[float, float] | None:
    n = stats.n
    if n < 2 or metric == "mape":
        return None
    mean_error, mse, mae = stats.sum_error / n, stats.sum_sq_error / n, stats.sum_abs_error / n
    if metric in ("mae", "mean_error"):
        center = mae if metric == "mae" else mean_error
        half = z * math.sqrt(max(mse - center**2, 0.0) / n)
        return center - half, center + half
    sigma2 = max(mse - mean_error**2, 0.0)
    half = z * math.sqrt((2 * sigma2**2 + 4 * mean_error**2 * sigma2) / n)
    low, high = max(mse - half, 0.0), mse + half
    if metric == "mse":
        return low, high
    if metric == "rmse":
        return math.sqrt(low), math.sqrt(high)
    label_variance = label_sum_of_squares(stats) / n
    return 1 - high / label_variance, 1 - low / label_variance  # r2 (defined, so variance > 0)


def bootstrap_interval(
    stats: TaskStats | WindowStats, metric: str, *, confidence: float = 0.95, n_boot: int = 200, seed: int = 0
) -> tuple[float, float] | None:
    """Two-sided ``confidence`` interval of ``metric`` (see the module docstring for the method per task).

    Args:
        stats: The window's task statistics (a whole ``WindowStats`` is accepted and unwrapped).
        metric: A metric name as produced by ``compute_metrics`` for this task.
        confidence: Coverage of the interval, in (0, 1).
        n_boot: Number of resamples (ignored by the regression normal approximation).
        seed: Resamples are deterministic for a given seed.

    Returns:
        ``(lower, upper)``, or None when the metric is undefined for these statistics or has no
        interval (multiclass ``log_loss``, regression ``mape``).

    Raises:
        ValueError: ``metric`` is not a metric of this task (including the join counts such as
            ``label_coverage``, which have no sampling distribution here).
    """
    if isinstance(stats, WindowStats):
        stats = stats.task_stats
    if isinstance(stats, BinaryStats):
        known = binary_metrics(stats)
    elif isinstance(stats, MulticlassStats):
        known = multiclass_metrics(stats)
    elif isinstance(stats, RegressionStats):
        known = regression_metrics(stats)
    else:
        raise TypeError(f"expected task statistics, got {type(stats).__name__}")
    if metric not in known:
        raise ValueError(f"{metric!r} is not a {type(stats).__name__} metric; expected one of {sorted(known)}")
    value = known[metric].value
    if value is None:
        return None
    if isinstance(stats, RegressionStats):
        return _regression_interval(stats, metric, float(scipy_stats.norm.ppf(0.5 + confidence / 2)))
    rng = np.random.default_rng(seed)
    if isinstance(stats, BinaryStats):
        samples = _binary_samples(stats, metric, value, n_boot, rng)
    else:
        samples = _multiclass_samples(stats, metric, n_boot, rng)
    if samples is None or np.all(np.isnan(samples)):
        return None
    low, high = np.nanquantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
