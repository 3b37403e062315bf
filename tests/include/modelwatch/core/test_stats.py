"""Property tests: every sufficient statistic merges exactly like concatenating the rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelwatch.core.stats import (
    BinaryStats,
    JoinCounts,
    MulticlassStats,
    RegressionStats,
    ScoreHistogram,
    WindowStats,
    binary_stats_from_arrays,
    multiclass_stats_from_arrays,
    regression_stats_from_arrays,
    stats_from_dict,
)

CLASSES = ("a", "b", "c")
RESOLUTIONS = st.sampled_from([1e-4, 0.01, 0.1, None])

# stats._bin_index floors ``score / resolution`` in floating point, where 0.15 / 1e-4 = 1499.99... (bin
# 0.1499) but 0.15 / 0.01 = 15.000...2 (bin 0.15): coarsening a fine histogram then disagrees with binning
# the rows coarsely. Fix (stats.py, and the same expression in the warehouse SQL):
# ``np.floor((scores + 1e-12) / resolution)``. Remove these markers once it is applied.

# Scores from a coarse grid as well as arbitrary floats, so that ties and bin edges are exercised.
score = st.one_of(st.floats(0, 1), st.integers(0, 20).map(lambda k: k / 20))
label = st.sampled_from([0.0, 1.0, np.nan])
binary_rows = st.lists(st.tuples(score, label), max_size=30)
regression_rows = st.lists(
    st.tuples(st.floats(-1e3, 1e3), st.one_of(st.floats(-1e3, 1e3), st.just(0.0), st.just(np.nan))), max_size=30
)
multiclass_rows = st.lists(
    st.tuples(st.sampled_from(CLASSES), st.sampled_from(CLASSES), st.floats(0.01, 1.0)), max_size=30
)


def _binary(rows, resolution) -> BinaryStats:
    scores = np.array([s for s, _ in rows], dtype=np.float64)
    labels = np.array([y for _, y in rows], dtype=np.float64)
    return binary_stats_from_arrays(scores, labels, threshold=0.5, resolution=resolution)


def _regression(rows) -> RegressionStats:
    return regression_stats_from_arrays(np.array([p for p, _ in rows]), np.array([y for _, y in rows]))


def _multiclass(rows) -> MulticlassStats:
    predicted = np.array([p for p, _, _ in rows], dtype=object)
    labels = np.array([y for _, y, _ in rows], dtype=object)
    proba = np.array([q for _, _, q in rows], dtype=np.float64)
    return multiclass_stats_from_arrays(predicted, labels, classes=CLASSES, true_class_proba=proba)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)


def assert_histograms_equal(a: ScoreHistogram, b: ScoreHistogram) -> None:
    assert a.resolution == b.resolution
    np.testing.assert_allclose(a.keys, b.keys, rtol=0, atol=1e-12)
    for name in ("pos", "neg", "unlabelled"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("score_sum_labelled", "score_sum_unlabelled"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12, err_msg=name)


def assert_stats_equal(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, BinaryStats):
        assert_histograms_equal(a.histogram, b.histogram)
        assert a.threshold == b.threshold
    if isinstance(a, MulticlassStats):
        assert a.classes == b.classes and a.log_loss_n == b.log_loss_n
        np.testing.assert_array_equal(a.confusion, b.confusion)
        assert (a.log_loss_sum is None) == (b.log_loss_sum is None)
        if a.log_loss_sum is not None:
            assert _close(a.log_loss_sum, b.log_loss_sum)
        return
    for name, value in vars(a).items():
        if name in ("histogram", "threshold"):
            continue
        other = getattr(b, name)
        if isinstance(value, int):
            assert value == other, name
        else:
            assert _close(value, other), name


# --- merge equals concatenation ---------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(a=binary_rows, b=binary_rows, resolution=RESOLUTIONS)
def test_binary_merge_equals_stats_of_concatenated_rows(a, b, resolution):
    assert_stats_equal(_binary(a, resolution).merge(_binary(b, resolution)), _binary(a + b, resolution))


@settings(max_examples=25, deadline=None)
@given(a=regression_rows, b=regression_rows)
def test_regression_merge_equals_stats_of_concatenated_rows(a, b):
    assert_stats_equal(_regression(a).merge(_regression(b)), _regression(a + b))


@settings(max_examples=25, deadline=None)
@given(a=multiclass_rows, b=multiclass_rows)
def test_multiclass_merge_equals_stats_of_concatenated_rows(a, b):
    assert_stats_equal(_multiclass(a).merge(_multiclass(b)), _multiclass(a + b))


@settings(max_examples=25, deadline=None)
@given(a=binary_rows, b=binary_rows, c=binary_rows, resolution=RESOLUTIONS)
def test_binary_merge_is_associative_and_commutative(a, b, c, resolution):
    x, y, z = (_binary(rows, resolution) for rows in (a, b, c))
    assert_stats_equal(x.merge(y), y.merge(x))
    assert_stats_equal(x.merge(y).merge(z), x.merge(y.merge(z)))


@settings(max_examples=25, deadline=None)
@given(a=regression_rows, b=regression_rows, c=regression_rows)
def test_regression_merge_is_associative_and_commutative(a, b, c):
    x, y, z = (_regression(rows) for rows in (a, b, c))
    assert_stats_equal(x.merge(y), y.merge(x))
    assert_stats_equal(x.merge(y).merge(z), x.merge(y.merge(z)))


@settings(max_examples=25, deadline=None)
@given(a=multiclass_rows, b=multiclass_rows, c=multiclass_rows)
def test_multiclass_merge_is_associative_and_commutative(a, b, c):
    x, y, z = (_multiclass(rows) for rows in (a, b, c))
    assert_stats_equal(x.merge(y), y.merge(x))
    assert_stats_equal(x.merge(y).merge(z), x.merge(y.merge(z)))


join_counts = st.builds(JoinCounts, *[st.integers(0, 10**6) for _ in range(10)])


@settings(max_examples=25, deadline=None)
@given(a=join_counts, b=join_counts, c=join_counts)
def test_join_counts_merge_is_additive_associative_and_commutative(a, b, c):
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b).predictions == a.predictions + b.predictions
    assert JoinCounts.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_merge_refuses_incompatible_statistics():
    with pytest.raises(ValueError, match="decision thresholds"):
        _binary([(0.2, 1.0)], 0.01).merge(binary_stats_from_arrays(np.array([0.3]), np.array([0.0]), threshold=0.6))
    other = multiclass_stats_from_arrays(np.array(["x"]), np.array(["x"]), classes=("x", "y"))
    with pytest.raises(ValueError, match="different classes"):
        _multiclass([("a", "b", 0.5)]).merge(other)


# --- serialisation and coarsening -------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(b_rows=binary_rows, r_rows=regression_rows, m_rows=multiclass_rows, resolution=RESOLUTIONS)
def test_to_dict_from_dict_round_trips_through_json(b_rows, r_rows, m_rows, resolution):
    for stats in (_binary(b_rows, resolution), _regression(r_rows), _multiclass(m_rows)):
        restored = stats_from_dict(json.loads(json.dumps(stats.to_dict())))
        assert_stats_equal(restored, stats)
        window = WindowStats(JoinCounts(predictions=3, labelled=2), stats, ("v2", "v1"))
        again = WindowStats.from_dict(json.loads(json.dumps(window.to_dict())))
        assert again.counts == window.counts and again.model_versions == window.model_versions
        assert_stats_equal(again.task_stats, stats)


@settings(max_examples=50, deadline=None)
@given(rows=binary_rows, fine=st.sampled_from([1e-4, 1e-3, None]), coarse=st.sampled_from([0.01, 0.05, 0.1, 0.5]))
@example(rows=[(0.15, 0.0)], fine=1e-4, coarse=0.01)
def test_coarsen_equals_binning_the_rows_at_the_coarser_resolution(rows, fine, coarse):
    assert_histograms_equal(_binary(rows, fine).histogram.coarsen(coarse), _binary(rows, coarse).histogram)


@settings(max_examples=25, deadline=None)
@given(a=binary_rows, b=binary_rows)
@example(a=[(0.3001, 1.0)], b=[(0.5, 0.0)])
def test_merging_histograms_of_different_resolutions_coarsens_to_the_wider(a, b):
    merged = _binary(a, 1e-4).histogram.merge(_binary(b, 0.1).histogram)
    assert_histograms_equal(merged, _binary(a + b, 0.1).histogram)
