"""metric_registry: one direction per metric and one primary metric per task."""

from __future__ import annotations

from modelwatch.core.config import Task
from modelwatch.core.metric_registry import higher_is_better, lower_is_better, primary_metric


def test_every_task_has_a_primary_metric_with_its_direction() -> None:
    assert {task: primary_metric(task) for task in Task} == {
        Task.BINARY: "roc_auc",
        Task.MULTICLASS: "accuracy",
        Task.REGRESSION: "mae",
    }
    assert primary_metric("regression") == "mae"  # a WindowResult's task is the enum's value
    assert higher_is_better("roc_auc") and higher_is_better("accuracy") and not higher_is_better("mae")


def test_direction_follows_the_naming_law() -> None:
    assert [lower_is_better(m) for m in ("rmse", "log_loss", "calibration_error", "f1", "ece")] == [
        True,
        True,
        True,
        False,
        True,
    ]
