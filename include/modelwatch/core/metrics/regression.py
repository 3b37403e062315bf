"""Regression metrics from :class:`~modelwatch.core.stats.RegressionStats` (error = prediction - label)."""

from __future__ import annotations

import math

from modelwatch.core.metrics._values import ratio, undefined
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import APE_EPS, RegressionStats

NO_LABELS = "no labelled rows"
CONSTANT_LABELS = "labels are constant (no variance to explain)"
FEW_ROWS = "fewer than two labelled rows"
NO_APE_ROWS = f"no labelled rows with |label| > {APE_EPS:g}"

_RELATIVE_VARIANCE_FLOOR = 1e-12
"""Label variance below this share of the mean square is floating-point residue of constant labels."""


def label_sum_of_squares(stats: RegressionStats) -> float:
    """Total sum of squares of the labels around their mean (sklearn's r2 denominator)."""
    return stats.sum_y2 - stats.sum_y**2 / stats.n if stats.n else 0.0


def _r2(stats: RegressionStats) -> MetricValue:
    if stats.n < 2:
        return undefined("r2", FEW_ROWS)
    total = label_sum_of_squares(stats)
    if total <= _RELATIVE_VARIANCE_FLOOR * stats.sum_y2:
        return undefined("r2", CONSTANT_LABELS)
    return MetricValue("r2", 1.0 - stats.sum_sq_error / total)


def regression_metrics(stats: RegressionStats) -> dict[str, MetricValue]:
    """MAE, MSE, RMSE, R², MAPE and mean error (bias) of the labelled rows.

    Args:
        stats: Sufficient statistics of the window.

    Returns:
        Metric name -> value; undefined metrics carry None and a reason.
    """
    n = stats.n
    mse = ratio("mse", stats.sum_sq_error, n, NO_LABELS)
    rmse = MetricValue("rmse", math.sqrt(mse.value)) if mse.value is not None else undefined("rmse", NO_LABELS)
    values = [
        ratio("mae", stats.sum_abs_error, n, NO_LABELS),
        mse,
        rmse,
        _r2(stats) if n else undefined("r2", NO_LABELS),
        ratio("mape", stats.sum_ape, stats.n_ape, NO_APE_ROWS if n else NO_LABELS),
        ratio("mean_error", stats.sum_error, n, NO_LABELS),
    ]
    return {m.name: m for m in values}
