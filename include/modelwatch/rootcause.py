"""The root-cause verdict: one sentence for whoever is paged at 3 a.m., with the evidence behind it (pure).

The checks run in the order that makes the others trustworthy: a broken label pipeline makes the
metric meaningless, broken inputs explain any performance change, a metric that did not fall needs
no further cause, and only then is a fall attributed to traffic mix, moved inputs or a changed
input-label relation.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelwatch.result import DriftFinding, FeatureQuality, RootCause, SegmentRow
from modelwatch.segments import top_segment
from modelwatch.stats import JoinCounts

IMPORTANCE_MIN = 0.05
"""A feature whose |correlation| (or eta) with the score is below this cannot move the score much."""

RELATIVE_TOLERANCE = 0.02
"""A metric change smaller than this share of the reference value counts as noise, not deterioration."""

COVERAGE_COLLAPSE = 0.5
"""Coverage below this fraction of the expected coverage means labels stopped arriving."""

MIN_EXPECTED_COVERAGE = 0.2
"""Below this expected coverage the window is too young to judge the label pipeline."""

TOP_FEATURES = 3


def _matters(finding: DriftFinding) -> bool:
    # Unknown importance (e.g. no score column) counts as mattering: never blame the concept on a guess.
    return finding.importance is None or finding.importance >= IMPORTANCE_MIN


def _label_problem(counts: JoinCounts, expected: float | None, age_hours: float, delay_hours: float) -> str | None:
    coverage = counts.label_coverage
    if coverage is None:
        return None
    if expected is None and age_hours >= delay_hours:
        expected = 1.0
    if expected is None or expected < MIN_EXPECTED_COVERAGE or coverage >= COVERAGE_COLLAPSE * expected:
        return None
    return (
        f"label pipeline: label coverage {coverage:.0%} at {age_hours:.0f}h old, expected about {expected:.0%}; "
        "performance metrics are not trustworthy"
    )


def _quality_problems(quality: Sequence[FeatureQuality], drift: Sequence[DriftFinding]) -> list[FeatureQuality]:
    importance = {f.feature: f.importance for f in drift if f.segment is None}
    drifted = {f.feature for f in drift if f.drifted}
    return [
        q
        for q in quality
        if q.issue
        and (importance.get(q.feature) is None or importance[q.feature] >= IMPORTANCE_MIN)  # type: ignore[operator]
        and not _shifted_out_of_range(q, drifted)
    ]


def _shifted_out_of_range(quality: FeatureQuality, drifted: set[str]) -> bool:
    """Values beyond the reference range on a feature whose whole distribution moved are a shift (data
    drift, reported with the drift evidence), not broken data; nulls and type changes always are."""
    broken_values = quality.type_changed or "null rate" in (quality.issue or "")
    return quality.feature in drifted and not broken_values


def _moved_features(drift: Sequence[DriftFinding], segment_drift: Sequence[DriftFinding]) -> list[DriftFinding]:
    """Drifted PSI findings of features that matter, strongest first, one per feature."""
    seen: dict[str, DriftFinding] = {}
    for finding in [*segment_drift, *drift]:
        if finding.method == "psi" and finding.drifted and _matters(finding):
            best = seen.get(finding.feature)
            if best is None or (finding.score or 0.0) > (best.score or 0.0):
                seen[finding.feature] = finding
    return sorted(seen.values(), key=lambda f: -(f.score or 0.0))


def _segment_name(row: SegmentRow | None) -> str | None:
    return f"{row.column}={row.value}" if row is not None else None


def _segment_loss(row: SegmentRow, metric: str, sign: float) -> str:
    now, before = row.metrics.get(metric), row.reference_metrics.get(metric)
    if now is None or before is None:
        return ""
    loss = sign * (before - now)
    if sign > 0:
        return f", which lost {loss:.2f} {metric}" if loss > 0 else f", where {metric} is {now:.3g}"
    return f", where {metric} rose by {loss:.3g}" if loss > 0 else f", where {metric} is {now:.3g}"


def _mix_dominates(rows: Sequence[SegmentRow], top: SegmentRow | None, sign: float) -> bool:
    if top is None or top.mix_contribution is None or top.within_contribution is None:
        return False
    column_rows = [r for r in rows if r.column == top.column and r.mix_contribution is not None]
    mix = sum(r.mix_contribution for r in column_rows)  # type: ignore[misc]
    within = sum(r.within_contribution for r in column_rows)  # type: ignore[misc]
    # Mix must itself be a loss and explain more of the change than the segments' own decline.
    return -sign * mix > 0 and abs(mix) > abs(within)


def diagnose(
    *,
    metric: str,
    current: float | None,
    reference: float | None,
    higher_is_better: bool,
    drift: Sequence[DriftFinding],
    segment_drift: Sequence[DriftFinding],
    quality: Sequence[FeatureQuality],
    segments: Sequence[SegmentRow],
    counts: JoinCounts,
    expected_coverage: float | None,
    age_hours: float,
    label_delay_hours: float,
) -> RootCause:
    """Decide why the window's primary metric moved (or that it did not).

    Args:
        metric: Name of the primary metric (``roc_auc``, ``accuracy``, ``mae``).
        current: Its value in the window (None when undefined).
        reference: Its value over the reference rows.
        higher_is_better: False for error metrics.
        drift: Whole-window drift findings (ranked, as from ``compare_profiles``).
        segment_drift: Drift findings restricted to the worst segment.
        quality: Data-quality rows of the window.
        segments: Segment rows of every segment column.
        counts: Join counts of the window.
        expected_coverage: Label coverage a healthy pipeline would have reached at this age.
        age_hours: Hours since the window ended.
        label_delay_hours: The configured expected label delay.

    Returns:
        A :class:`RootCause` whose verdict is one of 'label_pipeline', 'data_quality', 'healthy',
        'segment_shift', 'data_drift', 'concept_drift' or 'unknown'.
    """
    sign = 1.0 if higher_is_better else -1.0
    top = top_segment(segments, higher_is_better=higher_is_better)
    segment = _segment_name(top)
    evidence = _evidence(metric, current, reference, counts, top)

    label_problem = _label_problem(counts, expected_coverage, age_hours, label_delay_hours)
    if label_problem:
        return RootCause("label_pipeline", label_problem, evidence=tuple(evidence))

    broken = _quality_problems(quality, drift)
    if broken:
        names = tuple(q.feature for q in broken[:TOP_FEATURES])
        evidence += [q.issue for q in broken]  # type: ignore[misc]
        return RootCause("data_quality", f"data quality: {broken[0].issue}", names, segment, tuple(evidence))

    moved = _moved_features(drift, segment_drift)
    evidence += [_drift_line(f) for f in moved[:TOP_FEATURES]]
    features = tuple(f.feature for f in moved[:TOP_FEATURES])
    if current is None or reference is None:
        summary = f"unknown: {metric} is undefined in the {'window' if current is None else 'reference'}"
        return RootCause("unknown", summary, features, segment, tuple(evidence))
    change = current - reference
    if sign * change >= -RELATIVE_TOLERANCE * max(abs(reference), 1e-12):
        summary = f"healthy: {metric} {current:.3g} vs reference {reference:.3g}"
        return RootCause("healthy", summary, features, None, tuple(evidence))

    fall = f"{metric} {reference:.3g} -> {current:.3g}"
    if _mix_dominates(segments, top, sign):
        summary = (
            f"segment shift: traffic moved to {segment} (share {top.reference_share:.0%} -> {top.share:.0%}"  # type: ignore[union-attr]
            f"{_segment_loss(top, metric, sign)}), {fall}"  # type: ignore[arg-type]
        )
        return RootCause("segment_shift", summary, features, segment, tuple(evidence))
    if moved:
        lead = moved[0]
        where = f" in {lead.segment}" if lead.segment else ""
        names = ", ".join(f.feature for f in moved[:TOP_FEATURES])
        loss = _segment_loss(top, metric, sign) if top is not None else ""
        scope = f"{where}{loss}" if where else (f"; worst segment {segment}{loss}" if segment else "")
        summary = f"data drift: {names} shifted (PSI {lead.score:.2f}){scope}; {fall}"
        return RootCause("data_drift", summary, features, segment, tuple(evidence))
    if drift or segment_drift:
        where = f" mostly in {segment}{_segment_loss(top, metric, sign)}" if top is not None else ""
        summary = f"concept drift: {fall}{where}, while the inputs that matter are stable"
        return RootCause("concept_drift", summary, (), segment, tuple(evidence))
    summary = f"unknown: {fall} and no feature profiles to explain it"
    return RootCause("unknown", summary, (), segment, tuple(evidence))


def _drift_line(finding: DriftFinding) -> str:
    where = f" in {finding.segment}" if finding.segment else ""
    importance = f", importance {finding.importance:.2f}" if finding.importance is not None else ""
    return f"{finding.feature}{where}: PSI {finding.score:.2f}{importance}"


def _evidence(
    metric: str, current: float | None, reference: float | None, counts: JoinCounts, top: SegmentRow | None
) -> list[str]:
    lines = [
        f"{metric}: {_fmt(current)} now vs {_fmt(reference)} in the reference",
        f"label coverage {_fmt(counts.label_coverage)} ({counts.labelled} of {counts.predictions} predictions)",
    ]
    if top is not None:
        lines.append(
            f"worst segment {top.column}={top.value}: within {_fmt(top.within_contribution)}, "
            f"mix {_fmt(top.mix_contribution)}, share {_fmt(top.reference_share)} -> {_fmt(top.share)}"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
