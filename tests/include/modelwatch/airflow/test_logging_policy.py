"""What a run sends to MLflow: which windows, with which rule statuses, under which lock, from which run."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from modelwatch.airflow import logging_policy
from modelwatch.core.config import Status, parse_monitor
from modelwatch.core.result import MetricValue, WindowResult
from modelwatch.core.rules import RuleStatus
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
CHURN = yaml.safe_load((MONITORS / "churn.yaml").read_text())
MONITOR = parse_monitor({**CHURN, "label_free": []})
T0 = datetime(2026, 11, 3, 6)
HOUR = timedelta(hours=1)


def _result(
    *, revision: int = 1, auc: float = 0.9, labelled: int = 500, status: Status = Status.PROVISIONAL
) -> WindowResult:
    rng = np.random.default_rng(revision)
    scores = rng.random(50)
    stats = WindowStats(
        JoinCounts(predictions=labelled, labelled=labelled),
        binary_stats_from_arrays(scores, (rng.random(50) < scores).astype(float), threshold=0.5),
        ("v1",),
    )
    metrics = {
        "roc_auc": MetricValue("roc_auc", auc),
        "f1": MetricValue("f1", 0.7),
        "labelled": MetricValue("labelled", float(labelled)),
    }
    return WindowResult(
        monitor="churn", model="churn-classifier", task="binary_classification", cadence="hourly",
        window_start=T0, window_end=T0 + HOUR, as_of=T0 + HOUR * (1 + revision), status=status,
        revision=revision, stats=stats, metrics=metrics, estimated={}, config_hash="abc123",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("result", "worth"),
    [
        (_result(revision=0), True),  # a window's first revision
        (_result(revision=3, status=Status.FINAL), True),  # its final one
        (_result(revision=3, auc=0.7), True),  # breaching the absolute bound (min 0.80)
        (_result(revision=3), False),  # a healthy recomputation: warehouse only
        (_result(revision=3, auc=0.7, labelled=100), False),  # too few labels to breach (min_samples 200)
    ],
)
def test_only_first_breaching_and_final_revisions_are_worth_a_run_update(result: WindowResult, worth: bool) -> None:
    assert logging_policy.worth_a_run_update(MONITOR, result) is worth


def test_a_run_logs_its_own_window_whatever_its_revision_and_the_earlier_ones_worth_it() -> None:
    earlier = [replace(_result(revision=2), window_start=T0 - k * HOUR) for k in (3, 2, 1)]
    earlier[1] = replace(earlier[1], status=Status.FINAL)
    own = _result(revision=4)
    assert logging_policy.windows_to_log(MONITOR, [*earlier, own]) == [earlier[1], own]


def test_rule_statuses_judge_the_window_alone() -> None:
    statuses = logging_policy.rule_statuses(MONITOR, _result(auc=0.7), as_of=T0 + HOUR, history=[])
    by_rule = {(s.metric, s.rule_type): s for s in statuses}
    assert by_rule[("roc_auc", "absolute")].status == RuleStatus.BREACH
    assert by_rule[("roc_auc", "absolute")].value == pytest.approx(0.7)
    assert by_rule[("f1", "absolute")].status == RuleStatus.HEALTHY


def test_one_lock_per_monitor_cadence_and_window() -> None:
    result = _result()
    name = logging_policy.mlflow_lock_name(MONITOR, result)
    assert name == "mlflow:churn:hourly:2026-11-03T06:00:00"
    assert logging_policy.mlflow_lock_name(MONITOR, replace(result, revision=5)) == name  # revisions share it
    assert logging_policy.mlflow_lock_name(MONITOR, replace(result, window_start=T0 + HOUR)) != name


def test_the_run_context_names_the_airflow_run_and_its_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example.com/")
    context = {
        "ti": SimpleNamespace(try_number=2),
        "dag_run": SimpleNamespace(dag_id="modelwatch_churn_hourly", run_id="scheduled__2026-11-03T06:00:00"),
    }
    run = logging_policy.run_context(context)
    assert (run.dag_id, run.run_id, run.try_number) == (
        "modelwatch_churn_hourly", "scheduled__2026-11-03T06:00:00", 2,
    )  # fmt: skip
    assert run.airflow_url == (
        "https://airflow.example.com/dags/modelwatch_churn_hourly/runs/scheduled__2026-11-03T06:00:00"
    )


def test_a_context_without_a_dag_run_links_nowhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__API__BASE_URL", raising=False)
    run = logging_policy.run_context({"task_instance": SimpleNamespace(try_number=1)})
    assert (run.dag_id, run.try_number, run.airflow_url) == (None, 1, None)
