"""Label-free signals of a window from score histograms: score drift and predicted-positive rate (pure).

Both compare the window's score histogram with its reference's (the stored windows of the same hours
on previous days, ``modelwatch.app.reference_stats``), so they cost no warehouse scan. Score drift reuses
the feature-drift methods (:func:`modelwatch.core.drift.compare_profiles`) on the score binned at the
reference's deciles; the positive-rate finding's ``score`` is the absolute change of the share of rows
at or above the decision threshold.
"""

from __future__ import annotations

import math

import numpy as np

from modelwatch.core.config import DriftSettings
from modelwatch.core.drift import FeatureProfile, compare_profiles
from modelwatch.core.result import DriftFinding
from modelwatch.core.stats import ScoreHistogram

SCORE_FEATURE = "score"
"""The ``feature`` of score-drift findings (``WindowResult.signals``)."""
POSITIVE_RATE = "positive_rate"
"""The ``method`` (and ``feature``) of the predicted-positive-rate finding."""


def _counts(hist: ScoreHistogram) -> np.ndarray:
    return (hist.pos + hist.neg + hist.unlabelled).astype(np.float64)


def _profile(hist: ScoreHistogram, edges: tuple[float, ...]) -> FeatureProfile:
    count = _counts(hist)
    n = int(count.sum())
    mean = float((hist.score_sum_labelled + hist.score_sum_unlabelled).sum() / n)
    # Bin keys stand for their rows: the std is that of the bin keys (within 1e-4 of the exact one).
    std = float(math.sqrt(max(np.average((hist.keys - mean) ** 2, weights=count), 0.0)))
    bins = np.bincount(np.searchsorted(np.asarray(edges), hist.keys, side="right"), count, len(edges) + 1)
    return FeatureProfile(
        name=SCORE_FEATURE,
        kind="numeric",
        n=n,
        min=float(hist.keys.min()),
        max=float(hist.keys.max()),
        mean=mean,
        std=std,
        edges=edges,
        bin_counts=tuple(int(c + 0.5) for c in bins),
    )


def _decile_edges(hist: ScoreHistogram, bins: int) -> tuple[float, ...]:
    cumulative = np.cumsum(_counts(hist)) / _counts(hist).sum()
    at = np.searchsorted(cumulative, np.arange(1, bins) / bins, side="left")
    # A bin's lower edge as the cut: the rows of the crossing bin fall above it, as in the SQL profiles.
    return tuple(sorted({float(hist.keys[min(i + 1, len(hist.keys) - 1)]) for i in at}))


def score_drift_findings(
    reference: ScoreHistogram, current: ScoreHistogram, settings: DriftSettings
) -> list[DriftFinding]:
    """PSI, KS, JS and normalised Wasserstein of the score, reference vs window (none when either is empty)."""
    if not _counts(reference).sum() or not _counts(current).sum():
        return []
    edges = _decile_edges(reference, settings.bins)
    findings, _ = compare_profiles(
        {SCORE_FEATURE: _profile(reference, edges)}, {SCORE_FEATURE: _profile(current, edges)}, settings
    )
    return findings


def positive_share(hist: ScoreHistogram, threshold: float) -> float | None:
    """Share of rows (labelled or not) scored at or above ``threshold``; None without rows."""
    count = _counts(hist)
    total = count.sum()
    return float(count[hist.keys >= threshold - 1e-12].sum() / total) if total else None


def positive_rate_finding(reference: ScoreHistogram, current: ScoreHistogram, threshold: float) -> DriftFinding | None:
    """The change of the predicted-positive share, reference -> window (None when either is empty)."""
    before, now = positive_share(reference, threshold), positive_share(current, threshold)
    if before is None or now is None:
        return None
    return DriftFinding(
        feature=POSITIVE_RATE,
        kind="numeric",
        method=POSITIVE_RATE,
        score=abs(now - before),
        threshold=0.0,
        drifted=False,
        reference_summary={"n": int(_counts(reference).sum()), "rate": before},
        current_summary={"n": int(_counts(current).sum()), "rate": now, "change": now - before},
    )
