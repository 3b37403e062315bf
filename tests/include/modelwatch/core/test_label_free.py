"""Score drift and predicted-positive rate from score histograms, against the drift module's oracles."""

from __future__ import annotations

import numpy as np
import pytest

from modelwatch.core.config import DriftSettings
from modelwatch.core.drift import compare_profiles, numeric_profile_from_arrays
from modelwatch.core.label_free import POSITIVE_RATE, SCORE_FEATURE, positive_rate_finding, score_drift_findings
from modelwatch.core.stats import ScoreHistogram, binary_stats_from_arrays


def _hist(scores: np.ndarray) -> ScoreHistogram:
    return binary_stats_from_arrays(scores, np.full(len(scores), np.nan), threshold=0.5).histogram


def test_score_psi_matches_the_feature_drift_of_the_same_scores() -> None:
    rng = np.random.default_rng(0)
    reference, current = rng.beta(2, 5, 20_000), rng.beta(3, 4, 5_000)
    found = {f.method: f for f in score_drift_findings(_hist(reference), _hist(current), DriftSettings())}
    ref_profile = numeric_profile_from_arrays("score", reference, bins=10)
    oracle, _ = compare_profiles(
        {"score": ref_profile},
        {"score": numeric_profile_from_arrays("score", current, reference=ref_profile)},
        DriftSettings(),
    )
    psi = next(f for f in oracle if f.method == "psi")
    assert found["psi"].feature == SCORE_FEATURE and found["psi"].drifted
    assert found["psi"].score == pytest.approx(psi.score, rel=0.05)
    assert set(found) == {"psi", "ks", "js", "wasserstein"}


def test_same_score_distribution_does_not_drift() -> None:
    rng = np.random.default_rng(1)
    found = score_drift_findings(_hist(rng.beta(2, 5, 20_000)), _hist(rng.beta(2, 5, 5_000)), DriftSettings())
    assert all(not f.drifted for f in found) and max(f.score for f in found if f.method == "psi") < 0.02
    assert score_drift_findings(ScoreHistogram.empty(), _hist(rng.random(10)), DriftSettings()) == []


def test_positive_rate_change_is_the_share_at_or_above_the_threshold() -> None:
    reference = _hist(np.array([0.1, 0.2, 0.6, 0.7]))  # 50% positive
    current = _hist(np.array([0.5, 0.6, 0.7, 0.1]))  # 75%: 0.5 is at the threshold
    finding = positive_rate_finding(reference, current, 0.5)
    assert finding is not None and finding.method == POSITIVE_RATE
    assert finding.score == pytest.approx(0.25)
    assert finding.current_summary["change"] == pytest.approx(0.25)
    assert positive_rate_finding(ScoreHistogram.empty(), current, 0.5) is None
