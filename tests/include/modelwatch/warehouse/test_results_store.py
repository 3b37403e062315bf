"""Idempotent upserts and history reads of the results tables, on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from modelwatch.core.result import MetricValue, WindowResult
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays
from modelwatch.warehouse.results_store import (
    count_rows,
    ensure_tables,
    latest_revision,
    load_window_stats,
    metric_history,
    upsert_window_result,
)

T0 = datetime(2026, 11, 1)
HOUR = timedelta(hours=1)


def _result(hour: int, revision: int, auc: float | None, status: str = "provisional") -> WindowResult:
    rng = np.random.default_rng(hour)
    scores = rng.random(50)
    labels = np.where(rng.random(50) < 0.8, (rng.random(50) < scores).astype(float), np.nan)
    stats = WindowStats(
        JoinCounts(predictions=50, labelled=int((~np.isnan(labels)).sum())),
        binary_stats_from_arrays(scores, labels, threshold=0.5),
        ("v1",),
    )
    start = T0 + hour * HOUR
    metrics = {
        "roc_auc": MetricValue("roc_auc", auc, None if auc is not None else "one class"),
        "f1": MetricValue("f1", 0.5 + revision / 10),
    }
    return WindowResult(
        monitor="churn",
        model="churn-classifier",
        task="binary_classification",
        cadence="hourly",
        window_start=start,
        window_end=start + HOUR,
        as_of=start + HOUR * (2 + revision),
        status=status,
        revision=revision,
        stats=stats,
        metrics=metrics,
        estimated={"roc_auc": MetricValue("roc_auc", 0.8)},
        config_hash="abc123",
    )


def test_upsert_is_idempotent(warehouse_engine) -> None:
    ensure_tables(warehouse_engine)
    result = _result(0, 1, 0.9)
    assert upsert_window_result(warehouse_engine, result) == 4  # 2 metrics + 1 estimated + 1 stats row
    assert upsert_window_result(warehouse_engine, result) == 4
    assert count_rows(warehouse_engine, "modelwatch_metric_results") == 3
    assert count_rows(warehouse_engine, "modelwatch_window_stats") == 1
    changed = _result(0, 1, 0.7, status="final")
    upsert_window_result(warehouse_engine, changed)
    assert count_rows(warehouse_engine, "modelwatch_metric_results") == 3
    assert latest_revision(warehouse_engine, monitor="churn", cadence="hourly", window_start=T0) == (
        1,
        "final",
        changed.as_of,
    )
    history = metric_history(warehouse_engine, monitor="churn", cadence="hourly", start=T0, end=T0 + HOUR)
    assert history[0].metrics["roc_auc"] == 0.7


def test_history_takes_the_latest_revision_per_window(warehouse_engine) -> None:
    for hour in range(3):
        upsert_window_result(warehouse_engine, _result(hour, 1, 0.8 + hour / 100))
    upsert_window_result(warehouse_engine, _result(1, 2, None, status="final"))
    upsert_window_result(warehouse_engine, _result(5, 1, 0.5))  # outside the range asked for
    history = metric_history(warehouse_engine, monitor="churn", cadence="hourly", start=T0, end=T0 + 3 * HOUR)
    assert [p.window_start for p in history] == [T0, T0 + HOUR, T0 + 2 * HOUR]
    assert [p.revision for p in history] == [1, 2, 1]
    assert history[1].metrics["roc_auc"] is None and history[1].status == "final"
    assert history[2].metrics == {"roc_auc": 0.8 + 2 / 100, "f1": 0.5 + 1 / 10, "estimated_roc_auc": 0.8}
    assert history[0].predictions == 50 and history[0].window_end == T0 + HOUR
    assert metric_history(warehouse_engine, monitor="other", cadence="hourly", start=T0, end=T0 + HOUR) == []
    assert latest_revision(warehouse_engine, monitor="churn", cadence="hourly", window_start=T0 + HOUR)[0] == 2
    assert latest_revision(warehouse_engine, monitor="churn", cadence="daily", window_start=T0) is None


def test_stored_stats_round_trip_and_roll_up(warehouse_engine) -> None:
    results = [_result(hour, 1, 0.9) for hour in range(4)]
    for result in results:
        upsert_window_result(warehouse_engine, result)
    upsert_window_result(warehouse_engine, _result(2, 3, 0.9))
    stored = load_window_stats(warehouse_engine, monitor="churn", cadence="hourly", start=T0, end=T0 + 4 * HOUR)
    assert len(stored) == 4
    assert stored[0].to_dict() == results[0].stats.to_dict()
    daily = stored[0]
    for stats in stored[1:]:
        daily = daily.merge(stats)
    assert daily.counts.predictions == 200
    assert daily.task_stats.scored_all == 200
    np.testing.assert_array_equal(
        daily.task_stats.histogram.pos.sum(), sum(r.stats.task_stats.histogram.pos.sum() for r in results)
    )
