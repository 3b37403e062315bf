"""Multivariate drift: PCA reconstruction error, reference vs window (pure: numpy only).

As in NannyML's data reconstruction drift: the reference's numeric features, standardised, are
projected on the principal components that explain :data:`EXPLAINED_VARIANCE` of their variance and
back. Rows that follow the reference's correlations come back close; a window whose joint distribution
changed (two features that moved together now move apart) comes back worse, even when every feature's
own distribution is unchanged. The finding's ``score`` is the relative change of the mean
reconstruction error. Both sides are bounded samples (``modelwatch.warehouse.profile.fetch_feature_sample``),
so memory does not grow with traffic.
"""

from __future__ import annotations

import numpy as np

from modelwatch.core.result import DriftFinding

EXPLAINED_VARIANCE = 0.65
"""NannyML's default: the components kept explain this share of the reference's variance."""
MIN_ROWS = 100
MULTIVARIATE = "multivariate"
"""The ``feature`` of the finding."""
METHOD = "pca_reconstruction"


def _standardise(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    filled = np.where(np.isnan(values), mean, values)  # a null sits at the reference mean (error 0)
    return (filled - mean) / std


def reconstruction_errors(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-row reconstruction errors of the reference and the current rows, and the components kept.

    Args:
        reference: Rows x numeric features of the reference sample (NaN: null).
        current: The same columns for the window's sample.
    """
    mean = np.nanmean(reference, axis=0)
    std = np.nanstd(reference, axis=0)
    std = np.where(std > 0, std, 1.0)
    ref = _standardise(reference, mean, std)
    _, singular, components = np.linalg.svd(ref - ref.mean(axis=0), full_matrices=False)
    explained = np.cumsum(singular**2) / np.sum(singular**2)
    kept = int(np.searchsorted(explained, EXPLAINED_VARIANCE) + 1)
    basis = components[:kept]

    def errors(rows: np.ndarray) -> np.ndarray:
        centred = rows - ref.mean(axis=0)
        return np.linalg.norm(centred - centred @ basis.T @ basis, axis=1)

    return errors(ref), errors(_standardise(current, mean, std)), kept


def pca_reconstruction_finding(
    reference: np.ndarray, current: np.ndarray, *, threshold: float, features: tuple[str, ...] = ()
) -> DriftFinding | None:
    """The relative change of the mean reconstruction error; None with fewer than 2 features or rows
    below :data:`MIN_ROWS` on either side (nothing sound to say)."""
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    if reference.ndim != 2 or reference.shape[1] < 2 or len(reference) < MIN_ROWS or len(current) < MIN_ROWS:
        return None
    ref_errors, cur_errors, kept = reconstruction_errors(reference, current)
    before, now = float(ref_errors.mean()), float(cur_errors.mean())
    score = abs(now - before) / before if before > 0 else 0.0
    return DriftFinding(
        feature=MULTIVARIATE,
        kind="numeric",
        method=METHOD,
        score=score,
        threshold=threshold,
        drifted=bool(score >= threshold),
        reference_summary={"n": len(reference), "error": before, "components": kept, "features": list(features)},
        current_summary={"n": len(current), "error": now},
    )
