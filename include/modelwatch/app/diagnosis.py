"""Root-cause analysis of one window: profiles and segment statistics from the warehouse, verdict from the pure core.

This is an edge module (it talks to the warehouse); the decisions live in :mod:`modelwatch.core.drift`,
:mod:`modelwatch.core.segments` and :mod:`modelwatch.core.rootcause`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import TYPE_CHECKING

from modelwatch.core import metric_registry
from modelwatch.core.config import MonitorConfig
from modelwatch.core.drift import compare_profiles
from modelwatch.core.result import DriftFinding, FeatureQuality, RootCause, SegmentRow
from modelwatch.core.rootcause import diagnose
from modelwatch.core.segments import segment_rows, suspects_per_column
from modelwatch.core.stats import WindowStats
from modelwatch.core.windows import Ranges, Window, WindowRun
from modelwatch.warehouse.engine import Engine

if TYPE_CHECKING:
    from modelwatch.app.window_profiles import Profiled

AGGREGATE_SEGMENT_VALUES = frozenset({"other", "__other__", "(null)"})
"""Segment keys that are not one value of the column (the tail, NULL): no equality selects their rows."""

SEGMENT_RESOLUTION = 1e-2
"""Score-bin width of segment statistics: segment metrics only rank segments, and 100 bins per segment
keep the grouped result (segments x bins x label states) small at any volume."""


@dataclass(frozen=True)
class Diagnosis:
    """Everything root-cause analysis adds to a :class:`~modelwatch.core.result.WindowResult`."""

    drift: tuple[DriftFinding, ...]
    quality: tuple[FeatureQuality, ...]
    segments: tuple[SegmentRow, ...]
    root_cause: RootCause | None


def reference_ranges(monitor: MonitorConfig, window: Window) -> list[tuple[datetime, datetime]]:
    """The reference rows' timestamp ranges for ``window``.

    Rolling: the same window shifted back 1..``reference.days`` days, so an hourly window is compared
    with the same hour of the previous days (daily seasonality cancels) and a daily window with the
    previous days: a one-day shift gives the right ranges for both cadences. Fixed:
    ``[reference.start, reference.end)``.
    """
    ref = monitor.reference
    if ref.kind == "fixed":
        return [(ref.start, ref.end)]  # type: ignore[list-item]
    return [(window.start - timedelta(days=d), window.end - timedelta(days=d)) for d in range(1, ref.days + 1)]


def coalesce(ranges: Ranges) -> list[tuple[datetime, datetime]]:
    """Merge touching or overlapping ranges (a daily rolling reference becomes one range, one query)."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _merge_by_key(parts: Sequence[Mapping[str, WindowStats]]) -> dict[str, WindowStats]:
    merged: dict[str, WindowStats] = {}
    for part in parts:
        for key, stats in part.items():
            merged[key] = merged[key].merge(stats) if key in merged else stats
    return merged


def _metric_fn(monitor: MonitorConfig) -> tuple[str, bool, Callable[[WindowStats], float | None]]:
    from modelwatch.core.metrics import compute_metrics

    name = metric_registry.primary_metric(monitor.task)

    def metric_fn(stats: WindowStats) -> float | None:
        return compute_metrics(stats, task=monitor.task)[name].value

    return name, metric_registry.higher_is_better(name), metric_fn


def _segment_rows(
    engine: Engine, monitor: MonitorConfig, ranges: Ranges, run: WindowRun
) -> tuple[list[SegmentRow], WindowStats | None]:
    """Segment rows of every segment column, and the whole reference's statistics when they come for free.

    The segment values of one column (top ones, ``other`` and NULL) partition the rows, so merging
    them gives the reference's own statistics without another scan.
    """
    from modelwatch.warehouse.window_query import fetch_segments_stats

    name, higher_is_better, metric_fn = _metric_fn(monitor)
    columns = list(monitor.predictions.segments)
    options = {"as_of": run.as_of, "top_k": monitor.drift.top_k_segment_values, "resolution": SEGMENT_RESOLUTION}
    # One statement per period for all segment columns: the de-duplication and label join dominate the
    # cost, and GROUPING SETS does them once instead of once per column.
    window = run.window
    now = fetch_segments_stats(engine, monitor, columns=columns, start=window.start, end=window.end, **options)
    parts = [fetch_segments_stats(engine, monitor, columns=columns, start=r0, end=r1, **options) for r0, r1 in ranges]
    rows: list[SegmentRow] = []
    reference_stats = None
    for column in columns:
        before = _merge_by_key([part[column] for part in parts])
        if reference_stats is None and before:
            reference_stats = reduce(WindowStats.merge, before.values())
        rows += segment_rows(
            now.get(column, {}),
            before,
            column=column,
            metric_fn=metric_fn,
            higher_is_better=higher_is_better,
            metric=name,
        )
    return rows, reference_stats


def _segment_drift(
    profiled: Profiled, monitor: MonitorConfig, top: SegmentRow | None, names: Sequence[str] | None = None
) -> list[DriftFinding]:
    """Drift of the features (``names``: only those) inside one segment value, from the stored profiles."""
    if top is None or top.value in AGGREGATE_SEGMENT_VALUES:
        return []
    segment = (top.column, top.value)
    if not profiled.has_reference_rows(segment):
        return []
    ref, cur = profiled.features(segment, names)
    findings, _ = compare_profiles(ref, cur, monitor.drift, segment=f"{top.column}={top.value}")
    return findings


def expected_label_coverage(reference_coverage: float | None, age_hours: float, delay_hours: float) -> float | None:
    """Coverage a healthy label pipeline should have reached at ``age_hours``.

    After the expected delay: the reference's coverage. Before it, half of a linear ramp towards it:
    label arrival is often back-loaded, and a false 'labels stopped' page is worse than a late one.
    """
    if reference_coverage is None:
        return None
    if delay_hours <= 0 or age_hours >= delay_hours:
        return reference_coverage
    return reference_coverage * 0.5 * max(age_hours, 0.0) / delay_hours


def _profiled(
    engine: Engine, monitor: MonitorConfig, run: WindowRun
) -> tuple[list[tuple[datetime, datetime]], Profiled | None, list[DriftFinding], list[FeatureQuality]]:
    """The reference ranges holding predictions (coalesced, for the segment statistics), the stored profiles
    and the window's drift findings and data quality."""
    from modelwatch.app.window_profiles import profiled, within_data_span

    windows = reference_ranges(monitor, run.window)
    scannable = within_data_span(engine, monitor, windows)
    found = profiled(engine, monitor, run, windows, scannable=scannable)
    if found is None:
        return coalesce(scannable), None, [], []
    reference, current = found.features()
    drift, quality = compare_profiles(reference, current, monitor.drift)
    return coalesce(scannable), found, drift, quality


def screen_window(engine: Engine, monitor: MonitorConfig, run: WindowRun) -> Diagnosis:
    """Drift and data quality of ``run``'s window without labels, segments or a verdict (its profile and
    the stored reference profiles): what the data-quality rules judge on every run's fresh window. The
    label-free feature-drift rules that watch a segment add the drift of their features inside its values."""
    _, found, drift, quality = _profiled(engine, monitor, run)
    segment_drift = screen_segments(engine, monitor, run, overall=drift, found=found)
    return Diagnosis((*drift, *segment_drift), tuple(quality), (), None)


def _rule_segments(monitor: MonitorConfig, overall: Sequence[DriftFinding]) -> dict[str, tuple[str | None, set[str]]]:
    """Segment spec -> (its one value or None for every top value, the features its rules watch)."""
    importance = {f.feature: f.importance or 0.0 for f in overall if f.segment is None}
    by_importance = sorted(importance, key=lambda f: -importance[f])
    wanted: dict[str, tuple[str | None, set[str]]] = {}
    for rule in monitor.label_free:
        if rule.type != "feature_drift" or rule.segment is None:
            continue
        features = set(rule.features) if rule.features else set(by_importance[: rule.top_k])
        value = rule.segment.split("=", 1)[1] if "=" in rule.segment else None
        _, known = wanted.get(rule.segment, (value, set()))
        wanted[rule.segment] = (value, known | features)
    return wanted


def screen_segments(
    engine: Engine,
    monitor: MonitorConfig,
    run: WindowRun,
    *,
    overall: Sequence[DriftFinding],
    found: Profiled | None = None,
) -> list[DriftFinding]:
    """Drift of the watched features inside each segment value the label-free rules name (no labels).

    From the window's stored profile and the merged reference (``found``, else read back): a rule on a
    column screens its ``drift.top_k_segment_values`` most frequent values in the window.
    """
    wanted = _rule_segments(monitor, overall)
    if not wanted:
        return []
    if found is None:
        _, found, _, _ = _profiled(engine, monitor, run)
    if found is None:
        return []
    findings: list[DriftFinding] = []
    for spec, (value, features) in wanted.items():
        column = spec.split("=", 1)[0]
        values = [value] if value is not None else found.segment_values(column, monitor.drift.top_k_segment_values)
        names = [f.name for f in monitor.predictions.features if f.name in features]
        for one in values:
            top = SegmentRow(column=column, value=one, predictions=0, labelled=0, metrics={})
            findings += _segment_drift(found, monitor, top, names)
    return findings


def _suspects_drift(
    found: Profiled,
    monitor: MonitorConfig,
    segments: Sequence[SegmentRow],
    *,
    higher_is_better: bool,
) -> list[DriftFinding]:
    """Drift inside each column's suspects (the worst segment, the one whose predictions moved most): the
    named segment is where a feature moved most, which need not be the segment that lost most metric."""
    return [
        finding
        for row in suspects_per_column(segments, higher_is_better=higher_is_better)
        for finding in _segment_drift(found, monitor, row)
    ]


def _reference_stats(engine: Engine, monitor: MonitorConfig, ranges: Ranges, as_of: datetime) -> WindowStats:
    """The whole reference's statistics, one statement per range (when the segment rows did not give them)."""
    from modelwatch.warehouse.window_query import fetch_window_stats

    return reduce(
        WindowStats.merge, [fetch_window_stats(engine, monitor, start=r0, end=r1, as_of=as_of) for r0, r1 in ranges]
    )


def diagnose_window(
    engine: Engine,
    monitor: MonitorConfig,
    run: WindowRun,
    *,
    stats: WindowStats,
    expected_coverage: float | None = None,
) -> Diagnosis:
    """Drift, data quality, segment rows and the root-cause verdict of ``run``'s window.

    Args:
        engine: Warehouse engine.
        monitor: The monitor configuration.
        run: The window and its label cut-off (labels that arrived after ``run.as_of`` are ignored).
        stats: The window's statistics (already fetched by the caller).
        expected_coverage: The label coverage the window should have by now, when the monitor's own
            label arrival says (else a ramp towards the reference's coverage).

    Returns:
        A :class:`Diagnosis`; with no reference rows (e.g. the first day of data) drift, segments and
        root cause are empty, since there is nothing to compare against.
    """
    window, as_of = run.window, run.as_of
    ranges, found, drift, quality = _profiled(engine, monitor, run)
    if found is None:
        return Diagnosis((), (), (), None)
    if not found.has_reference_rows():
        return Diagnosis((), tuple(quality), (), None)

    name, higher_is_better, metric_fn = _metric_fn(monitor)
    segments, reference_stats = _segment_rows(engine, monitor, ranges, run)
    segment_drift = _suspects_drift(found, monitor, segments, higher_is_better=higher_is_better)
    if reference_stats is None and ranges:
        reference_stats = _reference_stats(engine, monitor, ranges, as_of)
    # No reference rows left in the warehouse (the profiles are stored): no reference metric, no coverage ramp.
    labelled = reference_stats if reference_stats is not None and reference_stats.counts.labelled else None
    age_hours = (as_of - window.end).total_seconds() / 3600
    delay_hours = monitor.label_delay.expected.total_seconds() / 3600
    root_cause = diagnose(
        metric=name,
        current=metric_fn(stats) if stats.counts.labelled else None,
        reference=metric_fn(labelled) if labelled is not None else None,
        higher_is_better=higher_is_better,
        drift=drift,
        segment_drift=segment_drift,
        quality=quality,
        segments=segments,
        counts=stats.counts,
        expected_coverage=expected_coverage
        if expected_coverage is not None
        else expected_label_coverage(
            reference_stats.counts.label_coverage if reference_stats else None, age_hours, delay_hours
        ),
        age_hours=age_hours,
        label_delay_hours=delay_hours,
    )
    # The worst segment's own drift is evidence the report draws (``segment`` set), next to the overall drift.
    return Diagnosis((*drift, *segment_drift), tuple(quality), tuple(segments), root_cause)
