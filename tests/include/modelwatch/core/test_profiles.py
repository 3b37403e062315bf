"""Mergeable window profiles: merge over any split equals the profile of all rows, merge is associative and
commutative, edges versions are never mixed, and the drift statistics agree with scipy within the bounds."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from modelwatch.core.config import DriftSettings
from modelwatch.core.drift import (
    FeatureProfile,
    categorical_profile_from_arrays,
    chi2_categorical,
    compare_profiles,
    js_distance,
    numeric_profile_from_arrays,
    psi,
)
from modelwatch.core.profiles import (
    WHOLE_WINDOW,
    BinEdges,
    CategoricalCounts,
    EdgesMismatchError,
    NumericCounts,
    WindowProfile,
    categorical_counts,
    edges_from_baseline,
    edges_from_reference,
    from_payload,
    ks_bound,
    merge,
    merge_all,
    numeric_counts,
    outside_range,
    profile_frame,
    to_feature_profiles,
    to_payload,
    wasserstein_bound,
)
from tests.profile_checks import assert_same_profile

EDGES = BinEdges({"x": (-1.0, 0.0, 0.5, 1.0, 3.0)}, {"c": ("a", "b")}, extra_categories=2)
CATEGORIES = ["a", "b", "c", "d", "e", "f", None]

row = st.tuples(
    st.one_of(st.floats(-10, 10, allow_nan=False), st.just(math.nan), st.sampled_from([-1.0, 0.5, 3.0])),
    st.sampled_from(CATEGORIES),
    st.sampled_from(["eu", "us", None]),
)
rows_strategy = st.lists(row, max_size=60)


def _frame(rows: list[tuple[float, str | None, str | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["x", "c", "region"]).astype({"x": float, "c": object, "region": object})


def _profile(rows: list[tuple[float, str | None, str | None]]) -> WindowProfile:
    return profile_frame(_frame(rows), EDGES, segments=["region"])


@settings(max_examples=150, deadline=None)
@given(rows=rows_strategy, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_merging_the_profiles_of_any_split_gives_the_profile_of_all_rows(rows, cuts) -> None:
    bounds = [0, *sorted(min(c, len(rows)) for c in cuts), len(rows)]
    parts = [_profile(rows[a:b]) for a, b in itertools.pairwise(bounds)]
    merged = merge_all(parts)
    assert merged is not None
    whole = _profile(rows)
    assert_same_profile(merged, whole)
    segment_rows = sum(counts.n for (column, _, name), counts in whole.features.items() if column and name == "x")
    assert segment_rows == sum(1 for r in rows if r[2] is not None)


@settings(max_examples=100, deadline=None)
@given(a=rows_strategy, b=rows_strategy, c=rows_strategy)
def test_merge_is_associative_and_commutative(a, b, c) -> None:
    pa, pb, pc = _profile(a), _profile(b), _profile(c)
    assert_same_profile(merge(pa, merge(pb, pc)), merge(merge(pa, pb), pc))
    assert_same_profile(merge(pa, pb), merge(pb, pa))


def test_the_tail_beyond_the_cap_folds_into_other_by_name_not_by_count() -> None:
    counts = categorical_counts(["a", "z", "z", "z", "y", "q", "b", None], EDGES, "c")
    assert counts.vocabulary == {"a": 1, "b": 1}
    assert counts.extras == {"q": 1, "y": 1}  # the two smallest names, although z is the most frequent
    assert (counts.other, counts.nulls, counts.n) == (3, 1, 8)
    drift_view = to_feature_profiles(
        profile_frame(pd.DataFrame({"x": [0.0] * 8, "c": [*"azzzyqb", None]}), EDGES), EDGES
    )
    assert drift_view["c"].categories == {"a": 1, "b": 1, "q": 1, "y": 1, "__other__": 3}


def test_profiles_on_other_edges_are_refused() -> None:
    other = BinEdges({"x": (-1.0, 0.0, 1.0)}, {"c": ("a", "b")}, extra_categories=2)
    assert other.version != EDGES.version
    mine = _profile([(0.1, "a", "eu")])
    theirs = profile_frame(_frame([(0.1, "a", "eu")]), other, segments=["region"])
    with pytest.raises(EdgesMismatchError, match=other.version):
        merge(mine, theirs)
    with pytest.raises(EdgesMismatchError):
        merge(numeric_counts(np.array([1.0]), EDGES, "x"), numeric_counts(np.array([1.0]), other, "x"))
    with pytest.raises(EdgesMismatchError):
        to_feature_profiles(theirs, EDGES)


def test_the_version_names_the_content_and_survives_a_round_trip() -> None:
    assert BinEdges.from_dict(json.loads(json.dumps(EDGES.to_dict()))).version == EDGES.version
    reordered = BinEdges({"x": EDGES.numeric["x"]}, {"c": ("a", "b")}, extra_categories=2)
    assert reordered.version == EDGES.version
    assert BinEdges({"x": (-1.0, 0.0, 0.5, 1.0, 3.0000001)}, EDGES.categories, 2).version != EDGES.version
    assert BinEdges(EDGES.numeric, EDGES.categories, 3).version != EDGES.version
    with pytest.raises(ValueError, match="strictly increasing"):
        BinEdges({"x": (1.0, 1.0)})


def test_payloads_round_trip_exactly() -> None:
    window = _profile([(0.25, "a", "eu"), (math.nan, "z", "us"), (9.0, None, None), (-3.0, "b", "eu")])
    for counts in window.features.values():
        assert from_payload(json.loads(json.dumps(to_payload(counts))), window.edges_version) == counts


def test_moments_are_accurate_far_from_zero() -> None:
    rng = np.random.default_rng(3)
    values = 1e9 + rng.normal(0, 1, 10_000)
    edges = edges_from_baseline(pd.DataFrame({"x": values}), numeric=["x"], categorical=[], bins=10)
    halves = [profile_frame(pd.DataFrame({"x": part}), edges) for part in np.array_split(values, 7)]
    profile = to_feature_profiles(merge_all(halves), edges)["x"]  # type: ignore[arg-type]
    assert profile.mean == pytest.approx(values.mean(), rel=1e-15)
    assert profile.std == pytest.approx(values.std(ddof=1), rel=1e-9)
    assert (profile.min, profile.max) == (values.min(), values.max())


def _samples(seed: int, *, discrete: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if discrete:  # ties on the edges themselves
        return rng.poisson(4, 3000).astype(float), rng.poisson(4, 2000).astype(float), rng.poisson(5, 2500) * 1.0
    return rng.normal(0, 1, 3000), rng.normal(0, 1, 2000), rng.normal(0.3, 1.3, 2500)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ks_and_wasserstein_agree_with_scipy_on_raw_rows_within_the_bounds(seed, discrete) -> None:
    baseline, reference, current = _samples(seed, discrete=discrete)
    edges = edges_from_baseline(pd.DataFrame({"x": baseline}), numeric=["x"], categorical=[], bins=10)
    ref = to_feature_profiles(profile_frame(pd.DataFrame({"x": reference}), edges), edges)
    cur = to_feature_profiles(profile_frame(pd.DataFrame({"x": current}), edges), edges)
    findings = {f.method: f for f in compare_profiles(ref, cur, DriftSettings())[0]}
    p, q = ref["x"].bin_counts, cur["x"].bin_counts

    exact_ks = stats.ks_2samp(reference, current).statistic
    assert findings["ks"].score <= exact_ks + 1e-12
    assert exact_ks <= findings["ks"].score + ks_bound(p, q) + 1e-12

    low, high = min(reference.min(), current.min()), max(reference.max(), current.max())
    binned_w = findings["wasserstein"].score * ref["x"].std
    bound = wasserstein_bound(edges.numeric["x"], low, high, p, q)
    assert abs(binned_w - stats.wasserstein_distance(reference, current)) <= bound + 1e-9
    widths = np.diff([low, *edges.numeric["x"], high])
    assert bound <= widths.max() + 1e-12


@pytest.mark.parametrize("seed", [4, 5])
def test_psi_and_js_equal_drift_on_the_same_bins(seed) -> None:
    baseline, reference, current = _samples(seed, discrete=False)
    edges = edges_from_baseline(pd.DataFrame({"x": baseline}), numeric=["x"], categorical=[], bins=10)
    halves = [profile_frame(pd.DataFrame({"x": part}), edges) for part in np.array_split(reference, 3)]
    ref = to_feature_profiles(merge_all(halves), edges)  # type: ignore[arg-type]
    cur = to_feature_profiles(profile_frame(pd.DataFrame({"x": current}), edges), edges)
    on_edges = FeatureProfile("x", "numeric", edges=edges.numeric["x"])
    oracle_p = numeric_profile_from_arrays("x", reference, reference=on_edges).bin_counts
    oracle_q = numeric_profile_from_arrays("x", current, reference=on_edges).bin_counts
    assert (ref["x"].bin_counts, cur["x"].bin_counts) == (oracle_p, oracle_q)
    findings = {f.method: f.score for f in compare_profiles(ref, cur, DriftSettings())[0]}
    assert findings["psi"] == psi(np.array(oracle_p), np.array(oracle_q))
    assert findings["js"] == js_distance(np.array(oracle_p), np.array(oracle_q))
    assert ref["x"].mean == pytest.approx(reference.mean()) and ref["x"].std == pytest.approx(reference.std(ddof=1))
    outside = np.sum((current < edges.numeric["x"][0]) | (current > edges.numeric["x"][-1]))
    assert cur["x"].out_of_range == outside > 0


def test_chi_square_equals_drift_on_the_raw_categories() -> None:
    rng = np.random.default_rng(6)
    reference = list(rng.choice(["a", "b", "c", "d"], 4000, p=[0.4, 0.3, 0.2, 0.1]))
    current = list(rng.choice(["a", "b", "c", "d"], 3000, p=[0.3, 0.3, 0.2, 0.2]))
    edges = edges_from_baseline(pd.DataFrame({"c": reference}), numeric=[], categorical=["c"], bins=10)
    assert edges.categories["c"] == ("a", "b", "c", "d")
    ref = to_feature_profiles(profile_frame(pd.DataFrame({"c": reference}), edges), edges)
    cur = to_feature_profiles(profile_frame(pd.DataFrame({"c": current}), edges), edges)
    oracle_ref = categorical_profile_from_arrays("c", reference)
    oracle_cur = categorical_profile_from_arrays("c", current)
    assert (ref["c"].categories, cur["c"].categories) == (oracle_ref.categories, oracle_cur.categories)
    findings = {f.method: f.score for f in compare_profiles(ref, cur, DriftSettings())[0]}
    keys = sorted(oracle_ref.categories)
    p = np.array([oracle_ref.categories[k] for k in keys])
    q = np.array([oracle_cur.categories[k] for k in keys])
    assert findings["chi2"] == pytest.approx(chi2_categorical(p, q)[0])
    assert findings["chi2"] == pytest.approx(math.sqrt(stats.chi2_contingency(np.vstack([p, q]))[0] / 7000), rel=0.05)


def test_edges_from_an_existing_reference_profile_keep_its_bins_inside_its_range() -> None:
    values = np.arange(100.0)
    reference = {
        "x": numeric_profile_from_arrays("x", values, bins=4),
        "c": categorical_profile_from_arrays("c", ["a"] * 5 + ["b"] * 3, top=1),
    }
    edges = edges_from_reference(reference)
    assert edges.numeric["x"] == (0.0, *reference["x"].edges, 99.0)
    assert edges.categories["c"] == ("a",)
    profile = to_feature_profiles(
        profile_frame(pd.DataFrame({"x": values, "c": ["a"] * 50 + ["b"] * 50}), edges), edges
    )
    assert profile["x"].bin_counts[0] == 0 and profile["x"].out_of_range == 0
    assert sum(profile["x"].bin_counts) == 100


def test_an_empty_window_profile_has_zero_counts_and_no_range() -> None:
    empty = profile_frame(_frame([]), EDGES, segments=["region"])
    x = empty.features[(*WHOLE_WINDOW, "x")]
    c = empty.features[(*WHOLE_WINDOW, "c")]
    assert isinstance(x, NumericCounts) and isinstance(c, CategoricalCounts)
    assert (x.n, sum(x.bins), x.min, x.max) == (0, 0, None, None)
    assert (c.n, c.other, dict(c.vocabulary)) == (0, 0, {"a": 0, "b": 0})
    assert empty.segments() == [WHOLE_WINDOW]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-4, 5, allow_nan=False), min_size=1, max_size=80),
    st.floats(-3, 1),
    st.floats(0, 4),
)
def test_outside_range_is_exact_on_the_baseline_range_and_never_more_than_the_true_count(values, low, width):
    x = np.asarray(values)
    counts = numeric_counts(x, EDGES, "x")
    edges = EDGES.numeric["x"]
    exact = lambda lo, hi: int(np.sum((x < lo) | (x > hi)))  # noqa: E731
    assert outside_range(counts, edges, edges[0], edges[-1]) == exact(edges[0], edges[-1])
    high = low + width
    found = outside_range(counts, edges, low, high)
    assert found <= exact(low, high)
    if x.min() >= low and x.max() <= high:
        assert found == 0
    # A lower end on an edge is exact too (bins are [e_i, e_i+1): an upper end inside the edges is not).
    assert outside_range(counts, edges, 0.0, edges[-1]) == exact(0.0, edges[-1])
