from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from modelwatch.app.reference_stats import reference_score_histogram
from modelwatch.core.config import load_monitor
from modelwatch.core.result import MetricValue, WindowResult, result_to_document
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays
from modelwatch.warehouse.documents import ensure_documents_table, save_document
from modelwatch.warehouse.engine import make_engine, resolve_url

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
START = datetime(2026, 11, 8, 6)


def _window(start: datetime, scores: np.ndarray, *, revision: int = 0) -> WindowResult:
    stats = WindowStats(
        JoinCounts(predictions=len(scores), labelled=0),
        binary_stats_from_arrays(scores, np.full(len(scores), np.nan), threshold=0.5),
    )
    return WindowResult(
        monitor="churn", model="m", task="binary_classification", cadence="hourly", window_start=start,
        window_end=start + timedelta(hours=1), as_of=start + timedelta(hours=1 + revision), status="provisional",
        revision=revision, stats=stats, metrics={"roc_auc": MetricValue("roc_auc", None, "no labels")},
    )  # fmt: skip


def test_reference_histogram_merges_the_same_hours_of_previous_days(tmp_path: Path) -> None:
    monitor = load_monitor(MONITORS / "churn.yaml")  # rolling 7-day reference
    engine = make_engine(resolve_url(f"duckdb:///{tmp_path / 'w.duckdb'}"))
    ensure_documents_table(engine)
    rng = np.random.default_rng(0)
    current = _window(START, rng.random(50))
    stored = [
        _window(START - timedelta(days=1), np.full(30, 0.25)),
        _window(START - timedelta(days=2), np.full(20, 0.75)),
        _window(START - timedelta(days=1, hours=1), np.full(999, 0.5)),  # another hour: not the reference
        _window(START - timedelta(days=8), np.full(999, 0.5)),  # beyond the 7 days
    ]
    for window in [*stored, current]:
        save_document(
            engine, monitor="churn", cadence="hourly", window_start=window.window_start, window_end=window.window_end,
            revision=window.revision, as_of=window.as_of, status=window.status, document=result_to_document(window),
        )  # fmt: skip
    histogram = reference_score_histogram(engine, monitor, replace(current, as_of=START + timedelta(hours=2)))
    assert histogram is not None
    totals = histogram.pos + histogram.neg + histogram.unlabelled
    assert dict(zip(np.round(histogram.keys, 4).tolist(), totals.tolist(), strict=True)) == {0.25: 30, 0.75: 20}
    assert reference_score_histogram(engine, monitor, _window(START - timedelta(days=20), rng.random(5))) is None
