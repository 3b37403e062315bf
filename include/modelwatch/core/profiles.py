"""Mergeable per-window feature profiles on fixed, versioned per-monitor bin edges (pure: numpy/pandas).

A monitor's :class:`BinEdges` are fixed once from a baseline (a sample of rows or an existing reference
:class:`~modelwatch.core.drift.FeatureProfile`) and named by a content hash, :attr:`BinEdges.version`.
Every window profile records the version it was counted on, and :func:`merge` refuses to add profiles
counted on different edges: changing the edges is an explicit new version, never a silent re-binning.

Numeric features: edges ``e_0 < ... < e_m`` are the baseline's quantiles *including* its min and max,
and a profile holds ``m + 2`` bin counts (bin ``0`` is ``x < e_0``, bin ``i`` is ``e_{i-1} <= x < e_i``,
the last is ``x >= e_m``, the same ``searchsorted(side="right")`` rule as :mod:`modelwatch.core.drift`),
``above_last`` (``x > e_m``, so values outside the baseline range are exactly ``bins[0] + above_last``),
nulls (NaN counts as null), rows, min, max, and the sum and sum of squares of ``x - centre`` (a fixed
per-feature centre, the middle edge: mergeable, and without the cancellation of raw sums of squares when
the mean is large against the spread).

Categorical features: the baseline's top categories are a fixed *vocabulary*, always counted exactly.
Other categories are kept with exact counts for the ``extra_categories`` smallest names (code-point
order) among those seen; the rest are folded into ``other``. The rule does not look at counts, so a
category kept in the merge of two profiles is kept, with its exact count, in each of them: merging the
profiles of any split of the rows gives exactly the profile of all the rows.

Bounds of the binned drift statistics against the exact ones on the raw rows (tested against scipy):

* KS: with ``D_b`` the largest gap between the binned CDFs (evaluated just below every edge) and
  ``p_i``, ``q_i`` the two samples' shares of bin ``i``, ``D_b <= D_exact <= D_b + max_i min(p_i, q_i)``
  (:func:`ks_bound`), since inside a bin each ECDF moves by at most its own share of the bin.
* Wasserstein-1: every value is moved to its bin's midpoint (outer bins end at the observed min / max),
  so ``|W_binned - W_exact| <= sum_i (p_i + q_i) * width_i / 2 <= max_i width_i``
  (:func:`wasserstein_bound`).
* PSI, JS and chi-square are defined on the bins: they equal :mod:`~modelwatch.core.drift`'s on the same bins.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from modelwatch.core.drift import OTHER_CATEGORY, FeatureProfile

DEFAULT_TOP_CATEGORIES = 50
"""Categories of the baseline that make up a categorical feature's fixed vocabulary."""
DEFAULT_EXTRA_CATEGORIES = 50
"""Categories outside the vocabulary kept with exact counts (the smallest names); the rest fold into other."""

WHOLE_WINDOW = ("", "")
"""The (segment column, segment value) of a window's profile over all its rows."""

Segment = tuple[str, str]
ProfileKey = tuple[str, str, str]
"""(segment column, segment value, feature); ``("", "", feature)`` for the whole window."""


class EdgesMismatchError(ValueError):
    """Two profiles (or a profile and edges) were counted on different bin edges."""


def _check_version(expected: str, found: str, what: str) -> None:
    if expected != found:
        raise EdgesMismatchError(
            f"cannot combine {what} counted on bin edges {found!r} with bin edges {expected!r}: "
            "profiles on different edges are not comparable; re-profile on one version of the edges"
        )


@dataclass(frozen=True)
class BinEdges:
    """A monitor's fixed bin edges (numeric) and vocabularies (categorical), named by :attr:`version`."""

    numeric: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    """Feature -> strictly increasing finite edges, the baseline's min and max included."""
    categories: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Feature -> the vocabulary (the baseline's most frequent categories)."""
    extra_categories: int = DEFAULT_EXTRA_CATEGORIES

    def __post_init__(self) -> None:
        for name, edges in self.numeric.items():
            if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError(f"edges of {name} must be finite and strictly increasing, got {edges!r}")
        if self.extra_categories < 0:
            raise ValueError(f"extra_categories must be >= 0, got {self.extra_categories}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; floats as ``float.hex`` so a round trip (and the version) is exact."""
        return {
            "numeric": {k: [float(e).hex() for e in v] for k, v in self.numeric.items()},
            "categories": {k: list(v) for k, v in self.categories.items()},
            "extra_categories": self.extra_categories,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> BinEdges:
        numeric = {k: tuple(float.fromhex(e) for e in v) for k, v in raw["numeric"].items()}
        categories = {k: tuple(v) for k, v in raw["categories"].items()}
        return cls(numeric, categories, int(raw["extra_categories"]))

    @property
    def version(self) -> str:
        """Content hash of the edges, vocabularies and cap (feature order does not matter)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def centre(self, feature: str) -> float:
        """The fixed offset of a numeric feature's moments: its middle edge (0 without edges)."""
        edges = self.numeric[feature]
        return float(edges[len(edges) // 2]) if edges else 0.0


def _quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    x = values[np.isfinite(values)]
    if not len(x):
        return ()
    return tuple(float(e) for e in np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1))))


def _top_categories(values: Iterable[object], top: int) -> tuple[str, ...]:
    counts = pd.Series([_label(v) for v in values], dtype=object).dropna().value_counts()
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(str(k) for k, _ in ranked[:top])


def edges_from_baseline(
    frame: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    bins: int,
    top_categories: int = DEFAULT_TOP_CATEGORIES,
    extra_categories: int = DEFAULT_EXTRA_CATEGORIES,
) -> BinEdges:
    """Edges from baseline rows: ``bins + 1`` quantiles (min and max included, duplicates dropped) per
    numeric feature, the ``top_categories`` most frequent categories (ties by name) per categorical one."""
    return BinEdges(
        {n: _quantile_edges(frame[n].to_numpy(dtype=np.float64, na_value=np.nan), bins) for n in numeric},
        {c: _top_categories(frame[c], top_categories) for c in categorical},
        extra_categories,
    )


def edges_from_reference(
    reference: Mapping[str, FeatureProfile], *, extra_categories: int = DEFAULT_EXTRA_CATEGORIES
) -> BinEdges:
    """Edges from an existing reference profile: its interior edges framed by its min and max, and its
    named categories by count (the ``__other__`` bucket is not a category)."""
    numeric, categories = {}, {}
    for name, profile in reference.items():
        if profile.missing or profile.type_changed:
            continue
        if profile.kind == "numeric":
            ends = [v for v in (profile.min, profile.max) if v is not None]
            numeric[name] = tuple(float(e) for e in np.unique([*profile.edges, *ends]))
        else:
            ranked = sorted(profile.categories.items(), key=lambda kv: (-kv[1], kv[0]))
            categories[name] = tuple(k for k, _ in ranked if k != OTHER_CATEGORY)
    return BinEdges(numeric, categories, extra_categories)


# --- profiles of one feature ------------------------------------------------------------------


@dataclass(frozen=True)
class NumericCounts:
    """One numeric feature over a set of rows, on the edges named by ``edges_version``."""

    edges_version: str
    n: int
    nulls: int
    bins: tuple[int, ...]
    above_last: int
    sum: float
    """Sum of ``x - centre`` over the non-null values."""
    sum_sq: float
    """Sum of ``(x - centre) ** 2`` over the non-null values."""
    min: float | None
    max: float | None


@dataclass(frozen=True)
class CategoricalCounts:
    """One categorical feature over a set of rows, on the vocabulary named by ``edges_version``."""

    edges_version: str
    n: int
    nulls: int
    vocabulary: Mapping[str, int]
    """Every vocabulary category, zero counts included."""
    extras: Mapping[str, int]
    """The kept categories outside the vocabulary (at most the edges' ``extra_categories``, smallest names)."""
    other: int
    extra_cap: int


FeatureCounts = NumericCounts | CategoricalCounts


def numeric_counts(values: np.ndarray, edges: BinEdges, feature: str) -> NumericCounts:
    """Profile of one numeric feature's values held in memory (NaN = null)."""
    values = np.asarray(values, dtype=np.float64)
    x = values[~np.isnan(values)]
    cuts = np.asarray(edges.numeric[feature], dtype=np.float64)
    shifted = x - edges.centre(feature)
    bins = np.bincount(np.searchsorted(cuts, x, side="right"), minlength=len(cuts) + 1)
    return NumericCounts(
        edges_version=edges.version,
        n=len(values),
        nulls=len(values) - len(x),
        bins=tuple(int(c) for c in bins),
        above_last=int(np.sum(x > cuts[-1])) if len(cuts) else 0,
        sum=float(np.sum(shifted)),
        sum_sq=float(np.sum(shifted * shifted)),
        min=float(x.min()) if len(x) else None,
        max=float(x.max()) if len(x) else None,
    )


def _label(value: object) -> str | None:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _fold(
    version: str, n: int, nulls: int, vocabulary: Mapping[str, int], extras: Mapping[str, int], other: int, cap: int
) -> CategoricalCounts:
    kept = {name: extras[name] for name in sorted(extras)[:cap]}
    folded = sum(extras.values()) - sum(kept.values())
    return CategoricalCounts(version, n, nulls, dict(vocabulary), kept, other + folded, cap)


def categorical_from_group_counts(
    counts: Mapping[str | None, int], edges: BinEdges, feature: str, *, n: int
) -> CategoricalCounts:
    """Profile of one categorical feature from its rows per category (``None`` = null), e.g. a GROUP BY."""
    vocabulary = dict.fromkeys(edges.categories[feature], 0)
    extras: dict[str, int] = {}
    for name, count in counts.items():
        if name is None:
            continue
        target = vocabulary if name in vocabulary else extras
        target[name] = target.get(name, 0) + int(count)
    nulls = int(counts.get(None, 0))
    return _fold(edges.version, n, nulls, vocabulary, extras, 0, edges.extra_categories)


def categorical_counts(values: Sequence[object], edges: BinEdges, feature: str) -> CategoricalCounts:
    """Profile of one categorical feature's values held in memory (None/NaN = null, others as ``str``)."""
    labels = pd.Series([_label(v) for v in values], dtype=object)
    counts: dict[str | None, int] = {str(k): int(c) for k, c in labels.dropna().value_counts().items()}
    counts[None] = int(labels.isna().sum())
    return categorical_from_group_counts(counts, edges, feature, n=len(labels))


# --- merging -----------------------------------------------------------------------------------


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _merge_numeric(a: NumericCounts, b: NumericCounts) -> NumericCounts:
    if len(a.bins) != len(b.bins):
        raise EdgesMismatchError(f"{len(a.bins)} bins against {len(b.bins)} on the same edges version")
    return NumericCounts(
        a.edges_version,
        a.n + b.n,
        a.nulls + b.nulls,
        tuple(x + y for x, y in zip(a.bins, b.bins, strict=True)),
        a.above_last + b.above_last,
        a.sum + b.sum,
        a.sum_sq + b.sum_sq,
        _min(a.min, b.min),
        _max(a.max, b.max),
    )


def _added(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted(set(a) | set(b))}


def _merge_categorical(a: CategoricalCounts, b: CategoricalCounts) -> CategoricalCounts:
    vocabulary = {k: a.vocabulary.get(k, 0) + b.vocabulary.get(k, 0) for k in a.vocabulary}
    extras = _added(a.extras, b.extras)
    return _fold(a.edges_version, a.n + b.n, a.nulls + b.nulls, vocabulary, extras, a.other + b.other, a.extra_cap)


@dataclass(frozen=True)
class WindowProfile:
    """Every monitored feature of one window (or a merge of windows), whole and per segment value."""

    edges_version: str
    features: Mapping[ProfileKey, FeatureCounts]

    def segments(self) -> list[Segment]:
        """The (column, value) pairs profiled, the whole window (``("", "")``) first."""
        return sorted({(c, v) for c, v, _ in self.features})


_Mergeable = TypeVar("_Mergeable", NumericCounts, CategoricalCounts, WindowProfile)


def merge(a: _Mergeable, b: _Mergeable) -> _Mergeable:
    """The profile of the rows of ``a`` and ``b`` together (associative and commutative).

    Raises:
        EdgesMismatchError: ``a`` and ``b`` were counted on different bin edges.
    """
    _check_version(a.edges_version, b.edges_version, type(b).__name__)
    if isinstance(a, WindowProfile):
        keys = sorted(set(a.features) | set(b.features))  # type: ignore[union-attr]
        found = [(k, a.features.get(k), b.features.get(k)) for k in keys]  # type: ignore[union-attr]
        merged = {k: x if y is None else y if x is None else merge(x, y) for k, x, y in found}
        return WindowProfile(a.edges_version, merged)  # type: ignore[return-value]
    if type(a) is not type(b):
        raise TypeError(f"cannot merge {type(a).__name__} with {type(b).__name__}")
    return _merge_numeric(a, b) if isinstance(a, NumericCounts) else _merge_categorical(a, b)  # type: ignore[return-value]


def merge_all(profiles: Iterable[WindowProfile]) -> WindowProfile | None:
    """The merge of any number of window profiles, None for none."""
    merged: WindowProfile | None = None
    for profile in profiles:
        merged = profile if merged is None else merge(merged, profile)
    return merged


def profile_frame(frame: pd.DataFrame, edges: BinEdges, *, segments: Sequence[str] = ()) -> WindowProfile:
    """The profile of rows held in memory: every feature of ``edges``, whole and per value of each
    ``segments`` column (values as ``str``; rows whose segment value is null belong to no segment)."""
    groups: list[tuple[Segment, pd.DataFrame]] = [(WHOLE_WINDOW, frame)]
    for column in segments:
        labels = frame[column].map(_label)
        groups += [((column, str(value)), rows) for value, rows in frame.groupby(labels.dropna(), sort=True)]
    features: dict[ProfileKey, FeatureCounts] = {}
    for (column, value), rows in groups:
        for name in edges.numeric:
            features[(column, value, name)] = numeric_counts(
                rows[name].to_numpy(np.float64, na_value=np.nan), edges, name
            )
        for name in edges.categories:
            features[(column, value, name)] = categorical_counts(list(rows[name]), edges, name)
    return WindowProfile(edges.version, features)


# --- conversion and bounds ---------------------------------------------------------------------


def _to_numeric_profile(name: str, counts: NumericCounts, edges: BinEdges) -> FeatureProfile:
    non_null = counts.n - counts.nulls
    centre = edges.centre(name)
    mean = centre + counts.sum / non_null if non_null else None
    variance = (counts.sum_sq - counts.sum * counts.sum / non_null) / (non_null - 1) if non_null > 1 else None
    return FeatureProfile(
        name=name,
        kind="numeric",
        n=counts.n,
        nulls=counts.nulls,
        min=counts.min,
        max=counts.max,
        mean=mean,
        std=math.sqrt(max(variance, 0.0)) if variance is not None else None,
        edges=tuple(edges.numeric[name]),
        bin_counts=counts.bins,
        out_of_range=counts.bins[0] + counts.above_last,
    )


def _to_categorical_profile(name: str, counts: CategoricalCounts) -> FeatureProfile:
    # Zero counts are left out: drift reads a category missing from a window as vanished.
    categories = {k: v for k, v in {**counts.vocabulary, **counts.extras}.items() if v > 0}
    if counts.other > 0:
        categories[OTHER_CATEGORY] = counts.other
    return FeatureProfile(name, "categorical", n=counts.n, nulls=counts.nulls, categories=categories)


def to_feature_profiles(
    window: WindowProfile, edges: BinEdges, *, segment: Segment = WHOLE_WINDOW
) -> dict[str, FeatureProfile]:
    """:class:`~modelwatch.core.drift.FeatureProfile` per feature of one segment, for ``compare_profiles``.

    ``out_of_range`` counts values outside the *edges'* range (the baseline's), exactly (compare a window with a
    reference's own range with :func:`outside_range`); importance is not part of a stored profile and stays None.

    Raises:
        EdgesMismatchError: ``window`` was counted on other edges.
    """
    _check_version(edges.version, window.edges_version, "a window profile")
    out = {}
    for (column, value, name), counts in window.features.items():
        if (column, value) != segment:
            continue
        if isinstance(counts, NumericCounts):
            out[name] = _to_numeric_profile(name, counts, edges)
        else:
            out[name] = _to_categorical_profile(name, counts)
    return out


def outside_range(counts: NumericCounts, edges: Sequence[float], low: float | None, high: float | None) -> int:
    """Non-null values of ``counts`` outside ``[low, high]`` (a reference's observed range), from the bins.

    Exact on the baseline's own range (``bins[0] + above_last``), for a ``low`` on an edge, and on a side the
    values stay inside (``counts.min >= low``: none below); otherwise a lower bound, counting only the bins
    wholly outside the range, so a reference wider than the baseline never inflates the count.
    """
    if low is None or high is None or not edges or not counts.bins:
        return 0
    outside = 0
    if counts.min is not None and counts.min < low:  # bin i < len(edges) ends at edges[i]
        outside += sum(c for c, upper in zip(counts.bins, edges, strict=False) if upper <= low)
    if counts.max is not None and counts.max > high:  # bin i >= 1 starts at edges[i - 1]
        outside += sum(c for c, lower in zip(counts.bins[1:], edges, strict=False) if lower > high)
        if edges[-1] == high:
            outside += counts.above_last
    return outside


def _shares(counts: Sequence[int]) -> np.ndarray:
    array = np.asarray(counts, dtype=np.float64)
    return array / array.sum()


def ks_bound(reference: Sequence[int], current: Sequence[int]) -> float:
    """Largest possible excess of the exact KS statistic over the binned one: ``max_i min(p_i, q_i)``."""
    return float(np.max(np.minimum(_shares(reference), _shares(current))))


def wasserstein_bound(
    edges: Sequence[float], low: float, high: float, reference: Sequence[int], current: Sequence[int]
) -> float:
    """Largest possible gap between the binned and exact Wasserstein-1 distances (unnormalised):
    ``sum_i (p_i + q_i) * width_i / 2``, the outer bins ending at ``low`` / ``high`` (the observed range)."""
    # The bins' bounds as drift.bin_midpoints places them: the midpoints are their centres.
    ends = ([min(low, edges[0])], [max(high, edges[-1])]) if len(edges) else ([low], [high])
    widths = np.diff(np.concatenate([ends[0], np.asarray(edges, dtype=np.float64), ends[1]]))
    return float(np.sum((_shares(reference) + _shares(current)) * widths) / 2)


# --- JSON payloads -----------------------------------------------------------------------------


def to_payload(counts: FeatureCounts) -> dict[str, Any]:
    """The JSON form of one feature's counts (the ``payload`` of a stored profile row)."""
    kind = "numeric" if isinstance(counts, NumericCounts) else "categorical"
    fields = asdict(counts)
    del fields["edges_version"]  # the row's own column
    return {"kind": kind, **fields}


def from_payload(raw: Mapping[str, Any], edges_version: str) -> FeatureCounts:
    """The counts of a stored payload (the inverse of :func:`to_payload`)."""
    fields = {k: v for k, v in raw.items() if k != "kind"}
    if raw["kind"] == "numeric":
        return NumericCounts(edges_version, **{**fields, "bins": tuple(fields["bins"])})
    return CategoricalCounts(edges_version, **fields)
