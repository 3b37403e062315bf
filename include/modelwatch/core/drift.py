"""Feature drift and data quality from feature profiles (pure: numpy/scipy only).

A :class:`FeatureProfile` is what the warehouse returns for one feature over a set of rows: counts,
moments, counts per reference quantile bin (numeric) or per category (categorical). Drift is judged
on effect sizes (PSI, KS statistic, Jensen-Shannon distance, normalised Wasserstein distance,
Cramér's V); p-values are attached as context only because at millions of rows every p-value is tiny.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import special, stats
from scipy.spatial import distance

from modelwatch.core.config import DriftSettings
from modelwatch.core.result import DriftFinding, FeatureQuality

PSI_EPSILON = 1e-4
"""Bin proportions are floored at this before taking logs, so an empty bin gives a large but finite PSI."""

CRAMERS_V_THRESHOLD = 0.1
"""Cramér's V of the chi-square test above which a categorical feature counts as drifted (a 'small' effect)."""

OTHER_CATEGORY = "__other__"
"""Bucket for categories beyond the top ones, so a high-cardinality column stays a bounded profile."""

VANISHED_MIN_SHARE = 0.01
"""A reference category is reported as vanished only when it held at least this share of the rows."""


@dataclass(frozen=True)
class FeatureProfile:
    """One feature over one set of rows (the reference or the current window).

    Numeric: ``edges`` are the reference's interior quantile edges (sorted, distinct) and
    ``bin_counts`` has ``len(edges) + 1`` counts of non-null values, bin ``i`` holding
    ``edges[i-1] <= x < edges[i]``. Categorical: ``categories`` maps category -> count.
    """

    name: str
    kind: str
    """'numeric' or 'categorical'."""
    n: int = 0
    """Rows, null or not."""
    nulls: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    edges: tuple[float, ...] = ()
    bin_counts: tuple[int, ...] = ()
    out_of_range: int = 0
    """Current window only: non-null values outside the reference's [min, max]."""
    categories: dict[str, int] = field(default_factory=dict)
    importance: float | None = None
    """|corr(feature, score)| (numeric) or the correlation ratio eta (categorical), over the same rows."""
    missing: bool = False
    """The column is absent from the table."""
    type_changed: bool = False
    """The column exists but its type no longer matches the configured kind (e.g. numeric now text)."""

    @property
    def non_null(self) -> int:
        return self.n - self.nulls

    @property
    def null_rate(self) -> float | None:
        return self.nulls / self.n if self.n and not (self.missing or self.type_changed) else None


# --- distances on binned data ------------------------------------------------------------------


def psi(reference: np.ndarray, current: np.ndarray, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index between two count vectors over the same bins (epsilon-smoothed)."""
    p = np.maximum(np.asarray(reference, dtype=np.float64) / np.sum(reference), epsilon)
    q = np.maximum(np.asarray(current, dtype=np.float64) / np.sum(current), epsilon)
    return float(np.sum((q - p) * np.log(q / p)))


def ks_binned(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """KS statistic between the binned CDFs, and its asymptotic p-value (context only)."""
    n, m = float(np.sum(reference)), float(np.sum(current))
    cdf_p = np.cumsum(reference) / n
    cdf_q = np.cumsum(current) / m
    statistic = float(np.max(np.abs(cdf_p - cdf_q)))
    effective_n = n * m / (n + m)
    return statistic, float(special.kolmogorov(statistic * math.sqrt(effective_n)))


def js_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between two count vectors."""
    return float(distance.jensenshannon(np.asarray(reference, float), np.asarray(current, float), base=2))


def bin_midpoints(edges: Sequence[float], low: float, high: float) -> np.ndarray:
    """Midpoint of each bin; the outer bins span from ``low`` / to ``high`` (the observed min/max)."""
    bounds = np.concatenate([[min(low, edges[0]) if edges else low], edges, [max(high, edges[-1]) if edges else high]])
    return (bounds[:-1] + bounds[1:]) / 2


def wasserstein_binned(midpoints: np.ndarray, reference: np.ndarray, current: np.ndarray) -> float:
    """Earth mover's distance between two histograms placed at the same bin midpoints."""
    return float(stats.wasserstein_distance(midpoints, midpoints, u_weights=reference, v_weights=current))


def chi2_categorical(reference: np.ndarray, current: np.ndarray) -> tuple[float, float | None, float]:
    """Chi-square test of a 2 x K table: (Cramér's V, p-value, statistic)."""
    table = np.vstack([reference, current]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0, 0.0
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(statistic / table.sum())
    return float(cramers_v), float(p_value), float(statistic)


# --- comparison -------------------------------------------------------------------------------


def _finding(ref: FeatureProfile, method: str, score: float, threshold: float, **extra: object) -> DriftFinding:
    return DriftFinding(
        feature=ref.name,
        kind=ref.kind,
        method=method,
        score=score,
        threshold=threshold,
        drifted=bool(score >= threshold),
        importance=ref.importance,
        **extra,  # type: ignore[arg-type]
    )


def _numeric_findings(ref: FeatureProfile, cur: FeatureProfile, settings: DriftSettings) -> list[DriftFinding]:
    p, q = np.asarray(ref.bin_counts, float), np.asarray(cur.bin_counts, float)
    summaries = {
        "reference_summary": {"n": ref.non_null, "mean": ref.mean, "std": ref.std, "min": ref.min, "max": ref.max},
        "current_summary": {"n": cur.non_null, "mean": cur.mean, "std": cur.std, "min": cur.min, "max": cur.max},
    }
    # The binned counts behind the scores, so a report can draw current vs reference without a query.
    for key, profile in (("reference_summary", ref), ("current_summary", cur)):
        summaries[key] |= {"edges": [float(e) for e in profile.edges], "counts": [int(c) for c in profile.bin_counts]}
    ks, ks_p = ks_binned(p, q)
    low = min(v for v in (ref.min, cur.min) if v is not None)
    high = max(v for v in (ref.max, cur.max) if v is not None)
    findings = [
        _finding(ref, "psi", psi(p, q), settings.psi_threshold, **summaries),
        _finding(ref, "ks", ks, settings.ks_threshold, p_value=ks_p, **summaries),
        _finding(ref, "js", js_distance(p, q), settings.js_threshold, **summaries),
    ]
    if ref.std and ref.std > 0:
        w = wasserstein_binned(bin_midpoints(ref.edges, low, high), p, q) / ref.std
        findings.append(_finding(ref, "wasserstein", w, settings.wasserstein_threshold, **summaries))
    else:
        # A constant reference has no scale to normalise by: the distance is undefined, not 0.
        undefined = DriftFinding(ref.name, ref.kind, "wasserstein", None, settings.wasserstein_threshold, False)
        findings.append(replace(undefined, importance=ref.importance))
    return findings


def _categorical_findings(ref: FeatureProfile, cur: FeatureProfile, settings: DriftSettings) -> list[DriftFinding]:
    keys = sorted(set(ref.categories) | set(cur.categories))
    p = np.array([ref.categories.get(k, 0) for k in keys], dtype=np.float64)
    q = np.array([cur.categories.get(k, 0) for k in keys], dtype=np.float64)
    top = 10
    summaries = {
        "reference_summary": {
            "n": ref.non_null,
            "top": dict(sorted(ref.categories.items(), key=lambda kv: -kv[1])[:top]),
        },
        "current_summary": {
            "n": cur.non_null,
            "top": dict(sorted(cur.categories.items(), key=lambda kv: -kv[1])[:top]),
        },
    }
    cramers_v, chi2_p, chi2_stat = chi2_categorical(p, q)
    summaries["current_summary"]["chi2"] = chi2_stat
    return [
        _finding(ref, "psi", psi(p, q), settings.psi_threshold, **summaries),
        _finding(ref, "chi2", cramers_v, CRAMERS_V_THRESHOLD, p_value=chi2_p, **summaries),
        _finding(ref, "js", js_distance(p, q), settings.js_threshold, **summaries),
    ]


def _category_changes(ref: FeatureProfile, cur: FeatureProfile) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if ref.kind != "categorical" or not ref.non_null or not cur.non_null:
        return (), ()
    new = tuple(sorted(k for k in cur.categories if k not in ref.categories and k != OTHER_CATEGORY))
    vanished = tuple(
        sorted(
            k
            for k, count in ref.categories.items()
            if k != OTHER_CATEGORY and k not in cur.categories and count / ref.non_null >= VANISHED_MIN_SHARE
        )
    )
    return new, vanished


def _quality(ref: FeatureProfile, cur: FeatureProfile, settings: DriftSettings) -> FeatureQuality:
    if cur.missing or cur.type_changed:
        what = "is missing from the table" if cur.missing else f"is no longer {ref.kind}"
        return FeatureQuality(ref.name, None, ref.null_rate, None, type_changed=True, issue=f"{ref.name} {what}")
    out_of_range = cur.out_of_range / cur.non_null if ref.kind == "numeric" and cur.non_null else None
    new, vanished = _category_changes(ref, cur)
    new_rate = (
        sum(cur.categories[k] for k in new) / cur.non_null if ref.kind == "categorical" and cur.non_null else None
    )
    issues = []
    null_rates_known = cur.null_rate is not None and ref.null_rate is not None
    if cur.n and cur.null_rate == 1.0:
        # Also when the reference was empty too: a feature without any value is broken, not stable.
        issues.append(f"{ref.name} is null (or NaN) in all {cur.n} rows")
    elif null_rates_known and cur.null_rate - ref.null_rate >= settings.null_rate_increase:  # type: ignore[operator]
        issues.append(f"{ref.name} null rate {ref.null_rate:.1%} -> {cur.null_rate:.1%}")
    if out_of_range is not None and out_of_range >= settings.out_of_range_rate:
        issues.append(f"{ref.name} {out_of_range:.1%} outside the reference range [{ref.min:.4g}, {ref.max:.4g}]")
    return FeatureQuality(
        feature=ref.name,
        null_rate=cur.null_rate,
        reference_null_rate=ref.null_rate,
        out_of_range_rate=out_of_range,
        new_categories=new,
        vanished_categories=vanished,
        issue="; ".join(issues) or None,
        new_category_rate=new_rate,
    )


def _comparable(ref: FeatureProfile, cur: FeatureProfile) -> bool:
    if ref.missing or ref.type_changed or cur.missing or cur.type_changed:
        return False
    if not ref.non_null or not cur.non_null:
        return False
    if ref.kind == "numeric":
        # Both ranges known: the distances place the outer bins at the observed min and max.
        known = None not in (ref.min, ref.max, cur.min, cur.max)
        return known and len(ref.bin_counts) == len(cur.bin_counts) > 0
    return True


def compare_profiles(
    reference: Mapping[str, FeatureProfile],
    current: Mapping[str, FeatureProfile],
    settings: DriftSettings,
    *,
    segment: str | None = None,
) -> tuple[list[DriftFinding], list[FeatureQuality]]:
    """Drift findings and data-quality rows for every feature profiled in both sets of rows.

    Args:
        reference: Profiles of the reference rows, by feature name.
        current: Profiles of the current window (binned on the reference edges).
        settings: A ``DriftSettings`` (thresholds, quality limits).
        segment: ``'column=value'`` when the rows were restricted to one segment.

    Returns:
        Findings ranked PSI-first (all PSI findings by descending score, then the other methods
        in the same feature order), and one :class:`FeatureQuality` per feature.
    """
    findings: list[DriftFinding] = []
    quality: list[FeatureQuality] = []
    for name, ref in reference.items():
        cur = current.get(name)
        if cur is None:
            continue
        quality.append(_quality(ref, cur, settings))
        if not _comparable(ref, cur):
            # Empty or unusable rows: no drift statement at all (a missing column is a quality issue).
            continue
        compute = _numeric_findings if ref.kind == "numeric" else _categorical_findings
        findings.extend(compute(ref, cur, settings))
    if segment is not None:
        findings = [_with_segment(f, segment) for f in findings]
    return rank_findings(findings), quality


def _with_segment(finding: DriftFinding, segment: str) -> DriftFinding:
    return replace(finding, segment=segment)


def rank_findings(findings: Sequence[DriftFinding]) -> list[DriftFinding]:
    """PSI findings first by descending PSI; other methods follow in the same feature order."""
    psi_by_feature = {(f.feature, f.segment): f.score or 0.0 for f in findings if f.method == "psi"}
    return sorted(
        findings,
        key=lambda f: (f.method != "psi", -psi_by_feature.get((f.feature, f.segment), 0.0), f.feature, f.method),
    )


# --- in-memory definitions (the oracle for the SQL profiles) -----------------------------------


def numeric_profile_from_arrays(
    name: str,
    values: np.ndarray,
    *,
    score: np.ndarray | None = None,
    bins: int | None = None,
    reference: FeatureProfile | None = None,
) -> FeatureProfile:
    """Profile of one numeric feature held in memory (NaN = null).

    Pass ``bins`` for a reference (exact quantile edges) or ``reference`` for a current window
    (binned on the reference's edges, out-of-range counted against its [min, max]).
    """
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    x = values[valid]
    if reference is not None:
        edges = reference.edges
    elif bins is not None and len(x):
        edges = tuple(float(e) for e in np.unique(np.quantile(x, np.arange(1, bins) / bins)))
    else:
        edges = ()
    importance = None
    if score is not None and len(x) > 1 and np.std(x) > 0:
        s = np.asarray(score, dtype=np.float64)[valid]
        importance = abs(float(np.corrcoef(x, s)[0, 1])) if np.std(s) > 0 else None
    out_of_range = 0
    if reference is not None and reference.min is not None and reference.max is not None:
        out_of_range = int(np.sum((x < reference.min) | (x > reference.max)))
    return FeatureProfile(
        name=name,
        kind="numeric",
        n=len(values),
        nulls=int((~valid).sum()),
        min=float(x.min()) if len(x) else None,
        max=float(x.max()) if len(x) else None,
        mean=float(x.mean()) if len(x) else None,
        std=float(x.std(ddof=1)) if len(x) > 1 else None,
        edges=edges,
        bin_counts=tuple(
            int(c) for c in np.bincount(np.searchsorted(edges, x, side="right"), minlength=len(edges) + 1)
        ),
        out_of_range=out_of_range,
        importance=importance,
    )


def categorical_profile_from_arrays(
    name: str, values: Sequence[object], *, score: np.ndarray | None = None, top: int = 50
) -> FeatureProfile:
    """Profile of one categorical feature held in memory (None/NaN = null), top categories + ``__other__``."""
    labels = np.array([None if v is None or v != v else str(v) for v in values], dtype=object)
    valid = labels != None  # noqa: E711 - element-wise comparison on an object array
    names, counts = np.unique(labels[valid].astype(str), return_counts=True)
    order = np.lexsort((names, -counts))
    categories = {str(names[i]): int(counts[i]) for i in order[:top]}
    rest = int(valid.sum()) - sum(categories.values())
    if rest > 0:
        categories[OTHER_CATEGORY] = rest
    importance = None
    if score is not None and valid.any():
        s = np.asarray(score, dtype=np.float64)[valid]
        groups = labels[valid].astype(str)
        between = sum(np.sum(groups == g) * (s[groups == g].mean() - s.mean()) ** 2 for g in names)
        total = float(np.sum((s - s.mean()) ** 2))
        importance = math.sqrt(between / total) if total > 0 else None
    return FeatureProfile(
        name, "categorical", n=len(labels), nulls=int((~valid).sum()), categories=categories, importance=importance
    )
