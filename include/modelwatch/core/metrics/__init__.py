"""Model performance metrics computed only from sufficient statistics (never from raw rows).

The warehouse computes :mod:`modelwatch.core.stats` objects in SQL; everything here turns them into
:class:`~modelwatch.core.result.MetricValue` objects. A metric the data does not define is
``MetricValue(name, None, reason)``, never 0 and never an exception. Otherwise values follow
scikit-learn's conventions (rows in one score bin are ties).
"""

from __future__ import annotations

from modelwatch.core.config import Task
from modelwatch.core.metrics._values import ratio
from modelwatch.core.metrics.binary import binary_metrics
from modelwatch.core.metrics.bootstrap import bootstrap_interval
from modelwatch.core.metrics.estimation import estimate_metrics
from modelwatch.core.metrics.multiclass import multiclass_metrics
from modelwatch.core.metrics.ranking import average_precision_error_bound, roc_auc_error_bound
from modelwatch.core.metrics.regression import regression_metrics
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import BinaryStats, MulticlassStats, RegressionStats, WindowStats

__all__ = [
    "average_precision_error_bound",
    "bootstrap_interval",
    "compute_metrics",
    "estimate_metrics",
    "roc_auc_error_bound",
]

_BY_TASK = {
    Task.BINARY: (BinaryStats, binary_metrics),
    Task.MULTICLASS: (MulticlassStats, multiclass_metrics),
    Task.REGRESSION: (RegressionStats, regression_metrics),
}


def compute_metrics(window: WindowStats, *, task: Task) -> dict[str, MetricValue]:
    """Join-health counts plus every metric of ``task`` for one window.

    Args:
        window: The window's statistics as returned by the warehouse.
        task: The monitor's task.

    Returns:
        ``predictions``, ``labelled``, ``label_coverage`` then the task's metrics, by name.

    Raises:
        ValueError: Unknown ``task`` or statistics of another task (a wiring error, not a data issue).
    """
    if task not in _BY_TASK:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(t.value for t in _BY_TASK)}")
    stats_type, task_metrics = _BY_TASK[task]
    if not isinstance(window.task_stats, stats_type):
        raise ValueError(f"task {task!r} needs {stats_type.__name__}, got {type(window.task_stats).__name__}")
    counts = window.counts
    values = {
        "predictions": MetricValue("predictions", float(counts.predictions)),
        "labelled": MetricValue("labelled", float(counts.labelled)),
        "label_coverage": ratio("label_coverage", counts.labelled, counts.predictions, "no predictions"),
    }
    return values | task_metrics(window.task_stats)
