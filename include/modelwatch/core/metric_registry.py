"""The one registry of metric direction and of each task's primary metric (pure, light: read at DAG-parse time).

Naming law (as scikit-learn's): error-like metrics (``mae``, ``log_loss``, ``*_error``...) are lower-is-better,
every other metric is higher-is-better. The primary metric of a task is the one root-cause analysis explains
and the report's segment table shows, whatever the monitor's first check watches.
"""

from __future__ import annotations

from modelwatch.core.config import Task

ERROR_METRIC_SUFFIXES = ("_error", "mae", "mse", "rmse", "mape", "log_loss", "brier", "ece")
"""Metrics whose bad direction is UP (lower is better)."""

PRIMARY_METRIC: dict[Task, str] = {
    Task.BINARY: "roc_auc",
    Task.MULTICLASS: "accuracy",
    Task.REGRESSION: "mae",
}
"""The metric root cause explains and the report's segment table shows, per task."""


def lower_is_better(metric: str) -> bool:
    """True for error-like metrics (``mae``, ``log_loss``, ``*_error``...), whose bad direction is up."""
    return metric.lower().endswith(ERROR_METRIC_SUFFIXES)


def higher_is_better(metric: str) -> bool:
    """The direction root cause and segment ranking need: False for error-like metrics."""
    return not lower_is_better(metric)


def primary_metric(task: Task | str) -> str:
    """The primary metric of ``task`` (a :class:`Task` or its value, e.g. ``"regression"``)."""
    return PRIMARY_METRIC[Task(task)]
