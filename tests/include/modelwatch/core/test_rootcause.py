from __future__ import annotations

import numpy as np
import pytest

from modelwatch.core.config import DriftSettings
from modelwatch.core.drift import compare_profiles, numeric_profile_from_arrays
from modelwatch.core.result import DriftFinding, FeatureQuality, SegmentRow
from modelwatch.core.rootcause import diagnose, size_aware_threshold, strength
from modelwatch.core.stats import JoinCounts

FULL = JoinCounts(predictions=1000, labelled=990)


def _psi(feature, score, *, importance=0.5, segment=None):
    return DriftFinding(feature, "numeric", "psi", score, 0.2, score >= 0.2, segment=segment, importance=importance)


def _segment(value, *, within, mix, now=0.7, before=0.85, share=0.3, reference_share=0.3):
    return SegmentRow(
        "region",
        value,
        300,
        300,
        {"roc_auc": now},
        {"roc_auc": before},
        reference_share=reference_share,
        share=share,
        within_contribution=within,
        mix_contribution=mix,
    )


def _diagnose(**overrides):
    args = {
        "metric": "roc_auc",
        "current": 0.74,
        "reference": 0.86,
        "higher_is_better": True,
        "drift": [_psi("tenure", 0.01)],
        "segment_drift": [],
        "quality": [],
        "segments": [],
        "counts": FULL,
        "expected_coverage": 0.99,
        "age_hours": 30.0,
        "label_delay_hours": 24.0,
    }
    return diagnose(**(args | overrides))


def test_data_drift_names_features_and_segment():
    eu = _segment("EU", within=-0.1, mix=0.0, now=0.64)
    cause = _diagnose(
        drift=[_psi("support_calls", 0.5), _psi("tenure", 0.3), _psi("noise", 0.9, importance=0.01)],
        segment_drift=[_psi("support_calls", 1.8, segment="region=EU")],
        segments=[eu, _segment("US", within=0.0, mix=0.0, now=0.85)],
    )
    assert cause.verdict == "data_drift"
    assert cause.top_features == ("support_calls", "tenure")
    assert cause.top_segment == "region=EU"
    assert cause.summary.startswith("data drift: support_calls, tenure shifted (PSI 1.80) in region=EU")
    assert "which lost 0.21 roc_auc" in cause.summary
    assert any("support_calls in region=EU: PSI 1.80" in line for line in cause.evidence)


def test_moved_features_that_do_not_matter_leave_concept_drift():
    cause = _diagnose(
        drift=[_psi("noise", 0.9, importance=0.01)], segments=[_segment("EU", within=-0.1, mix=0.0, now=0.6)]
    )
    assert cause.verdict == "concept_drift"
    assert cause.top_segment == "region=EU" and "region=EU" in cause.summary


def test_mix_dominated_loss_is_segment_shift():
    weak = _segment("LATAM", within=0.001, mix=-0.08, now=0.7, before=0.7, share=0.7, reference_share=0.1)
    strong = _segment("US", within=0.0, mix=-0.01, now=0.9, before=0.9, share=0.3, reference_share=0.9)
    cause = _diagnose(drift=[_psi("tenure", 0.4)], segments=[weak, strong])
    assert cause.verdict == "segment_shift"
    assert cause.top_segment == "region=LATAM"
    assert "share 10% -> 70%" in cause.summary


def test_label_collapse_wins_over_everything():
    cause = _diagnose(counts=JoinCounts(predictions=1000, labelled=50), drift=[_psi("tenure", 3.0)])
    assert cause.verdict == "label_pipeline"
    assert "coverage 5%" in cause.summary
    # Young windows are not judged: 5% at 2 h old may be normal.
    young = _diagnose(counts=JoinCounts(predictions=1000, labelled=50), expected_coverage=0.05, age_hours=2)
    assert young.verdict != "label_pipeline"


def test_labels_stopped_after_the_delay_without_expected_coverage():
    cause = _diagnose(counts=JoinCounts(predictions=1000, labelled=0), current=None, expected_coverage=None)
    assert cause.verdict == "label_pipeline"


def test_quality_issue_in_a_feature_that_matters():
    quality = [
        FeatureQuality("noise", 0.5, 0.0, None, issue="noise null rate 0.0% -> 50.0%"),
        FeatureQuality("tenure", 0.4, 0.0, None, issue="tenure null rate 0.0% -> 40.0%"),
    ]
    drift = [_psi("noise", 0.0, importance=0.0), _psi("tenure", 0.0, importance=0.6)]
    cause = _diagnose(quality=quality, drift=drift)
    assert cause.verdict == "data_quality"
    assert cause.top_features == ("tenure",)
    assert cause.summary == "data quality: tenure null rate 0.0% -> 40.0%"
    assert _diagnose(quality=quality[:1], drift=drift).verdict != "data_quality"


def test_no_deterioration_is_healthy_in_both_directions():
    assert _diagnose(current=0.855, reference=0.86).verdict == "healthy"
    assert _diagnose(current=0.80, reference=0.86).verdict != "healthy"
    # For an error metric a fall is an improvement, a rise a deterioration.
    assert _diagnose(metric="mae", current=4.0, reference=5.0, higher_is_better=False).verdict == "healthy"
    worse = _diagnose(metric="mae", current=6.0, reference=5.0, higher_is_better=False)
    assert worse.verdict == "concept_drift" and "mae 5 -> 6" in worse.summary


def test_undefined_metric_or_no_profiles_is_unknown():
    assert _diagnose(current=None).verdict == "unknown"
    cause = _diagnose(drift=[])
    assert cause.verdict == "unknown" and "no feature profiles" in cause.summary


def test_values_beyond_the_reference_range_of_a_shifted_feature_are_drift_not_broken_data():
    shifted = FeatureQuality("traffic_index", 0.0, 0.0, 0.31, issue="traffic_index 31.0% outside the reference range")
    cause = _diagnose(drift=[_psi("traffic_index", 2.5)], quality=[shifted])
    assert cause.verdict == "data_drift"
    assert cause.top_features == ("traffic_index",)


def test_a_null_burst_stays_data_quality_even_when_the_feature_also_drifted():
    nulls = FeatureQuality("traffic_index", 0.4, 0.0, 0.0, issue="traffic_index null rate 0.0% -> 40.0%")
    assert _diagnose(drift=[_psi("traffic_index", 2.5)], quality=[nulls]).verdict == "data_quality"


def test_the_segment_where_the_feature_moved_is_named_not_the_biggest_loser():
    plus = SegmentRow("tier", "plus", 300, 300, {"roc_auc": 0.6}, {"roc_auc": 0.85}, 0.3, 0.3, -0.08, 0.0)
    de = SegmentRow("country", "DE", 300, 300, {"roc_auc": 0.7}, {"roc_auc": 0.86}, 0.2, 0.2, -0.04, 0.0)
    cause = _diagnose(
        drift=[_psi("tenure", 0.25)],
        segment_drift=[_psi("tenure", 0.3, segment="tier=plus"), _psi("tenure", 2.4, segment="country=DE")],
        segments=[plus, de],
    )
    assert cause.verdict == "data_drift" and cause.top_segment == "country=DE"
    assert "(PSI 2.40) in country=DE, which lost 0.16 roc_auc" in cause.summary


def test_a_mix_shift_in_any_column_is_a_segment_shift():
    eu = SegmentRow("region", "EU", 300, 300, {"roc_auc": 0.8}, {"roc_auc": 0.86}, 0.3, 0.3, -0.02, 0.0)
    basic = SegmentRow("tier", "basic", 300, 300, {"roc_auc": 0.7}, {"roc_auc": 0.7}, 0.1, 0.6, 0.0, -0.09)
    cause = _diagnose(drift=[_psi("tenure", 0.4)], segments=[eu, basic])
    assert cause.verdict == "segment_shift" and cause.top_segment == "tier=basic"
    assert "share 10% -> 60%" in cause.summary


def _finding(method, score, threshold, *, n=2600, m=18200, mean=0.0, std=1.0, feature="delay"):
    return DriftFinding(
        feature, "numeric", method, score, threshold, score >= threshold, importance=0.5,
        reference_summary={"n": m, "mean": 0.0, "std": std}, current_summary={"n": n, "mean": mean, "std": std},
    )  # fmt: skip


def test_a_shift_psi_misses_is_caught_by_another_method():
    drift = [_finding("psi", 0.03, 0.2, mean=0.8), _finding("wasserstein", 0.77, 0.1, mean=0.8)]
    cause = _diagnose(drift=drift)
    assert cause.verdict == "data_drift" and cause.top_features == ("delay",)
    assert "(Wasserstein 0.77)" in cause.summary
    # Wasserstein alone, with the exact means where they were, is a heavy tail's noise, not a shift.
    still = [_finding("psi", 0.01, 0.2), _finding("wasserstein", 0.2, 0.1, mean=0.01)]
    assert _diagnose(drift=still).verdict == "concept_drift"


def test_thresholds_grow_with_sampling_noise():
    small = _finding("ks", 0.15, 0.1, n=100, m=700)
    large = _finding("ks", 0.15, 0.1)
    assert size_aware_threshold(large) == 0.1 and strength(large) == pytest.approx(1.5)
    assert size_aware_threshold(small) == pytest.approx(2.0 * (1 / 100 + 1 / 700) ** 0.5)
    assert strength(small) < 1.0


@pytest.mark.parametrize("rows", [300, 2600, 62000])
def test_default_thresholds_stay_quiet_on_clean_data_and_see_a_shift(rows):
    rng = np.random.default_rng(rows)
    samples = {
        "normal": lambda n: rng.normal(50, 10, n),
        "lognormal": lambda n: rng.lognormal(3, 1, n),
        "poisson": lambda n: rng.poisson(2, n).astype(float),
    }
    flagged = 0
    for _trial in range(30 if rows < 10_000 else 8):
        for name, draw in samples.items():
            reference = numeric_profile_from_arrays(name, draw(7 * rows), bins=10)
            current = numeric_profile_from_arrays(name, draw(rows), reference=reference)
            findings, _ = compare_profiles({name: reference}, {name: current}, DriftSettings())
            flagged += any(strength(f) >= 1.0 for f in findings)
    assert flagged == 0
    reference = numeric_profile_from_arrays("x", rng.normal(50, 10, 7 * rows), bins=10)
    shifted = numeric_profile_from_arrays("x", rng.normal(55, 10, rows), reference=reference)  # half a std
    findings, _ = compare_profiles({"x": reference}, {"x": shifted}, DriftSettings())
    assert max(strength(f) for f in findings) >= 1.0


def test_whether_a_feature_matters_is_read_on_the_whole_window_not_inside_the_segment():
    eu = SegmentRow("region", "EU", 300, 300, {"mae": 9.0}, {"mae": 4.0}, 0.3, 0.3, 1.5, 0.0)
    cause = _diagnose(
        metric="mae",
        current=8.6,
        reference=4.1,
        higher_is_better=False,
        drift=[_psi("traffic_index", 0.55, importance=0.3)],
        # Inside EU the score hardly correlates with traffic_index any more: the shift is still there.
        segment_drift=[_psi("traffic_index", 3.1, importance=0.01, segment="region=EU")],
        segments=[eu],
    )
    assert cause.verdict == "data_drift" and cause.top_segment == "region=EU"
    assert "(PSI 3.10) in region=EU" in cause.summary
