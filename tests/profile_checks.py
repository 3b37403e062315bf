"""One comparison of window profiles for the tests: integer counts exactly, sums within float tolerance."""

from __future__ import annotations

import pytest

from modelwatch.core.profiles import NumericCounts, WindowProfile


def assert_same_profile(a: WindowProfile, b: WindowProfile) -> None:
    """``a`` and ``b`` hold the same features and counts (moments' sums to 1e-9)."""
    assert a.edges_version == b.edges_version
    assert a.features.keys() == b.features.keys()
    for key, left in a.features.items():
        right = b.features[key]
        if isinstance(left, NumericCounts):
            assert isinstance(right, NumericCounts), key
            exact = (left.n, left.nulls, left.bins, left.above_last, left.min, left.max)
            assert exact == (right.n, right.nulls, right.bins, right.above_last, right.min, right.max), key
            assert left.sum == pytest.approx(right.sum, rel=1e-9, abs=1e-9), key
            assert left.sum_sq == pytest.approx(right.sum_sq, rel=1e-9, abs=1e-9), key
        else:
            assert left == right, key
