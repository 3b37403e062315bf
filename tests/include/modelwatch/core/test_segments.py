from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelwatch.core.segments import (
    mix_shift,
    segment_rows,
    suspects_per_column,
    top_segment,
    total_contribution,
    worst_per_column,
)
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays


def _stats(n: int, accuracy: float, *, unlabelled: int = 0) -> WindowStats:
    """A segment with ``n`` labelled rows of which a share ``accuracy`` is classified correctly."""
    correct = round(n * accuracy)
    labels = np.array([1.0] * n + [np.nan] * unlabelled)
    scores = np.array([0.9] * correct + [0.1] * (n - correct) + [0.5] * unlabelled)
    counts = JoinCounts(predictions=n + unlabelled, labelled=n)
    return WindowStats(counts, binary_stats_from_arrays(scores, labels, threshold=0.5, resolution=0.01))


def _accuracy(stats: WindowStats) -> float | None:
    s = stats.task_stats
    n = s.tp + s.fp + s.tn + s.fn
    return (s.tp + s.tn) / n if n else None


def _rows(current, reference, higher_is_better=True):
    return segment_rows(
        current, reference, column="region", metric_fn=_accuracy, higher_is_better=higher_is_better, metric="acc"
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 500), st.integers(1, 500), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=6
    )
)
def test_contributions_sum_to_the_approximated_total_change(segments):
    current = {f"s{i}": _stats(n_now, a_now) for i, (n_now, _, a_now, _) in enumerate(segments)}
    reference = {f"s{i}": _stats(n_ref, a_ref) for i, (_, n_ref, _, a_ref) in enumerate(segments)}
    rows = _rows(current, reference)
    total_now = sum(r.labelled for r in rows)
    total_ref = sum(s.counts.labelled for s in reference.values())
    approx_now = sum(r.labelled / total_now * r.metrics["acc"] for r in rows)
    approx_ref = sum(reference[r.value].counts.labelled / total_ref * r.reference_metrics["acc"] for r in rows)
    assert sum(total_contribution(r) for r in rows) == pytest.approx(approx_now - approx_ref, abs=1e-9)
    assert sum(r.share for r in rows) == pytest.approx(1.0)


def test_traffic_moving_to_a_weak_segment_is_a_mix_loss_there():
    reference = {"EU": _stats(100, 0.6), "US": _stats(900, 0.9)}
    current = {"EU": _stats(600, 0.6), "US": _stats(400, 0.9)}
    rows = _rows(current, reference)
    top = top_segment(rows)
    assert top is not None and top.value == "EU"
    assert top.mix_contribution < 0
    assert top.within_contribution == pytest.approx(0.0)
    assert (top.reference_share, top.share) == (pytest.approx(0.1), pytest.approx(0.6))
    assert sum(total_contribution(r) for r in rows) == pytest.approx(0.72 - 0.87)


def test_segment_getting_worse_is_a_within_loss():
    reference = {"EU": _stats(300, 0.9), "US": _stats(700, 0.9)}
    current = {"EU": _stats(300, 0.5), "US": _stats(700, 0.9), "APAC": _stats(10, 0.5)}
    rows = _rows(current, reference)
    top = top_segment(rows)
    assert top.value == "EU"
    assert top.within_contribution == pytest.approx(-0.4 * 300 / 1000)
    apac = next(r for r in rows if r.value == "APAC")
    # No reference rows: its metric change is undefined, so are its contributions.
    assert apac.reference_metrics["acc"] is None and apac.within_contribution is None
    assert rows[0].value == "EU"


def test_no_deterioration_has_no_top_segment_and_direction_matters():
    reference = {"EU": _stats(300, 0.5), "US": _stats(700, 0.9)}
    current = {"EU": _stats(300, 0.8), "US": _stats(700, 0.9)}
    rows = _rows(current, reference)
    assert top_segment(rows) is None
    # Read as an error metric, the same rise is a deterioration.
    assert top_segment(_rows(current, reference, higher_is_better=False), higher_is_better=False).value == "EU"


def test_unlabelled_segment_has_volume_but_no_metric():
    reference = {"EU": _stats(100, 0.9)}
    current = {"EU": _stats(0, 0.9, unlabelled=50)}
    (row,) = _rows(current, reference)
    assert (row.predictions, row.labelled) == (50, 0)
    assert row.metrics["acc"] is None and row.share is None
    assert top_segment([row]) is None


def _row(column, value, *, within, mix):
    from modelwatch.core.result import SegmentRow

    return SegmentRow(column, value, 100, 100, {}, within_contribution=within, mix_contribution=mix)


def test_each_column_names_its_own_worst_segment():
    rows = [
        _row("tier", "plus", within=-0.08, mix=0.0),
        _row("tier", "basic", within=-0.01, mix=0.0),
        _row("country", "DE", within=-0.05, mix=0.0),
        _row("country", "FR", within=0.01, mix=0.0),
        _row("channel", "web", within=0.01, mix=0.0),
    ]
    worst = worst_per_column(rows)
    assert [(r.column, r.value) for r in worst] == [("tier", "plus"), ("country", "DE")]  # channel did not lose


def test_mix_shift_is_decided_over_every_column():
    rows = [
        _row("region", "EU", within=-0.09, mix=0.0),  # the biggest loser, but not by mix
        _row("region", "US", within=0.0, mix=0.0),
        _row("tier", "basic", within=-0.01, mix=-0.06),
        _row("tier", "plus", within=0.0, mix=-0.01),
    ]
    blamed = mix_shift(rows)
    assert (blamed.column, blamed.value) == ("tier", "basic")
    assert mix_shift(rows[:2]) is None
    # For an error metric a rise is the loss: the same numbers read the other way are no mix shift.
    assert mix_shift(rows, higher_is_better=False) is None


def test_the_segment_whose_predictions_moved_is_a_suspect_even_without_a_loss():
    from dataclasses import replace

    rows = [
        replace(_row("region", "EU", within=0.0, mix=0.0), score_shift=0.3),  # moved, kept its own ranking
        replace(_row("region", "US", within=-0.02, mix=0.0), score_shift=0.01),
        replace(_row("tier", "plus", within=-0.06, mix=0.0), score_shift=0.1),
    ]
    suspects = [(r.column, r.value) for r in suspects_per_column(rows)]
    assert suspects == [("tier", "plus"), ("region", "US"), ("region", "EU")]


def test_score_shift_is_the_change_of_the_mean_prediction():
    reference = {"EU": _stats(100, 0.5)}
    current = {"EU": _stats(100, 0.9)}
    (row,) = _rows(current, reference)
    assert row.score_shift == pytest.approx((0.9 * 0.9 + 0.1 * 0.1) - (0.5 * 0.9 + 0.5 * 0.1))
