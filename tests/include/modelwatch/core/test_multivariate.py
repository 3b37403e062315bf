"""PCA reconstruction error sees a joint shift that leaves every feature's own distribution unchanged."""

from __future__ import annotations

import numpy as np

from modelwatch.core.config import DriftSettings
from modelwatch.core.drift import compare_profiles, numeric_profile_from_arrays
from modelwatch.core.multivariate import MULTIVARIATE, pca_reconstruction_finding


def _rows(n: int, rho: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(0, 1, n)
    x2 = rho * x1 + np.sqrt(1 - rho**2) * rng.normal(0, 1, n)
    return np.column_stack([x1, x2, rng.normal(0, 1, n)])


def test_a_broken_correlation_is_seen_jointly_but_not_per_feature() -> None:
    reference, flipped = _rows(5000, 0.9, 0), _rows(2000, -0.9, 1)
    finding = pca_reconstruction_finding(reference, flipped, threshold=0.2, features=("x1", "x2", "x3"))
    assert finding is not None and finding.feature == MULTIVARIATE and finding.drifted
    assert finding.score > 1.0
    ref = {f"x{i}": numeric_profile_from_arrays(f"x{i}", reference[:, i], bins=10) for i in range(3)}
    cur = {f"x{i}": numeric_profile_from_arrays(f"x{i}", flipped[:, i], reference=ref[f"x{i}"]) for i in range(3)}
    per_feature, _ = compare_profiles(ref, cur, DriftSettings())
    assert not any(f.drifted for f in per_feature if f.method == "psi")


def test_same_joint_distribution_stays_under_a_small_threshold() -> None:
    scores = [
        pca_reconstruction_finding(_rows(5000, 0.9, 10), _rows(2000, 0.9, 11 + s), threshold=0.1).score
        for s in range(10)
    ]
    assert max(scores) < 0.05


def test_nulls_sit_at_the_mean_and_too_little_data_says_nothing() -> None:
    reference, current = _rows(5000, 0.9, 2), _rows(2000, 0.9, 3)
    current[::10, 0] = np.nan
    assert pca_reconstruction_finding(reference, current, threshold=0.1) is not None
    assert pca_reconstruction_finding(reference, current[:50], threshold=0.1) is None
    assert pca_reconstruction_finding(reference[:, :1], current[:, :1], threshold=0.1) is None
