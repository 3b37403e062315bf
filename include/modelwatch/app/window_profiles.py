"""Stored, mergeable feature profiles for drift: each window's predictions profiled once, references merged.

A monitor's bin edges are fixed from its first reference (the quantile profile of the first diagnosed
window's reference rows) and stored with that reference's feature importance. From then on:

* the judged window is profiled in one statement (:func:`~modelwatch.warehouse.window_profile.fetch_window_profile`:
  every feature, whole and per segment value) and the profile is stored under the run's revision, so a retry,
  the label-free screen and the segment drift of the same run read it back instead of scanning again;
* its reference is the merge of the *stored* profiles of the windows it covers (the same hour of the previous
  days for an hourly window, the previous days for a daily one, the configured range for a fixed reference),
  read in one statement. A reference window never profiled (before the monitor ran, or a window that was
  neither diagnosed nor screened) is profiled once and stored: no window's predictions are profiled twice;
* drift, data quality and segment drift are compared on those profiles (:func:`Profiled.features`).

This module decides what to read and what to store; the SQL is in :mod:`modelwatch.warehouse`, the
profile arithmetic in :mod:`modelwatch.core.profiles`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from modelwatch.core.config import MonitorConfig
from modelwatch.core.drift import FeatureProfile
from modelwatch.core.profiles import (
    WHOLE_WINDOW,
    BinEdges,
    NumericCounts,
    ProfileKey,
    Segment,
    WindowProfile,
    edges_from_reference,
    merge_all,
    outside_range,
    to_feature_profiles,
)
from modelwatch.core.windows import Ranges, WindowRun, to_naive_utc
from modelwatch.warehouse.engine import Engine

FIXED_REFERENCE = "reference"
"""The ``cadence`` a fixed reference range's profile is stored under (its window is the configured range)."""


@dataclass(frozen=True)
class Profiled:
    """A judged window's profile and its reference's, on the monitor's stored edges."""

    edges: BinEdges
    importance: Mapping[str, float | None]
    reference: WindowProfile
    current: WindowProfile
    unusable: Mapping[str, FeatureProfile]
    """Configured features the table no longer has (or has retyped): flagged, never scanned."""
    order: tuple[str, ...]
    """The monitor's features in configuration order (findings and quality rows keep it)."""

    def features(
        self, segment: Segment = WHOLE_WINDOW, names: Sequence[str] | None = None
    ) -> tuple[dict[str, FeatureProfile], dict[str, FeatureProfile]]:
        """Reference and current :class:`FeatureProfile` per feature of one segment (``names``: only
        those), ready for :func:`~modelwatch.core.drift.compare_profiles`."""
        wanted = set(self.order if names is None else names)
        ref = to_feature_profiles(self.reference, self.edges, segment=segment)
        cur = to_feature_profiles(self.current, self.edges, segment=segment)
        reference: dict[str, FeatureProfile] = {}
        current: dict[str, FeatureProfile] = {}
        for name in self.order:
            if name not in wanted:
                continue
            if name in self.unusable:  # a quality finding on both sides, no drift statement
                reference[name] = current[name] = self.unusable[name]
            elif name in ref:
                reference[name] = replace(ref[name], importance=self.importance.get(name))
                if name in cur:
                    current[name] = self._against_reference(cur[name], reference[name], (*segment, name))
        return reference, current

    def _against_reference(self, current: FeatureProfile, reference: FeatureProfile, key: ProfileKey) -> FeatureProfile:
        """The window's out-of-range count against the reference's observed range (not the baseline's)."""
        counts = self.current.features.get(key)
        if not isinstance(counts, NumericCounts):
            return current
        edges = self.edges.numeric[key[2]]
        return replace(current, out_of_range=outside_range(counts, edges, reference.min, reference.max))

    def has_reference_rows(self, segment: Segment = WHOLE_WINDOW) -> bool:
        return any(
            counts.n > 0 for (column, value, _), counts in self.reference.features.items() if (column, value) == segment
        )

    def segment_values(self, column: str, limit: int) -> list[str]:
        """The ``limit`` most frequent values of segment ``column`` in the judged window (ties by value)."""
        rows: dict[str, int] = {}
        for (col, value, _), counts in self.current.features.items():
            if col == column:
                rows[value] = max(rows.get(value, 0), counts.n)
        ranked = sorted((item for item in rows.items() if item[1] > 0), key=lambda kv: (-kv[1], kv[0]))
        return [value for value, _ in ranked[:limit]]


def monitor_edges(
    engine: Engine, monitor: MonitorConfig, ranges: Sequence[tuple[datetime, datetime]]
) -> tuple[BinEdges, dict[str, float | None]] | None:
    """The monitor's stored edges and baseline importance, fixing them from ``ranges`` (its first reference)
    when none are stored; None when that reference has no rows yet.

    Two tasks fixing a monitor's edges at once: the first stored wins, the other profiles on its edges.
    """
    from modelwatch.warehouse.profile import fetch_reference_profile
    from modelwatch.warehouse.profiles_store import (
        EdgesAlreadyFixedError,
        baseline_importance,
        current_edges,
        fix_edges,
    )

    edges = current_edges(engine, monitor=monitor.name)
    if edges is None and not ranges:
        return None
    if edges is None:
        reference = fetch_reference_profile(engine, monitor, ranges=ranges, bins=monitor.drift.bins)
        if not any(p.n > 0 for p in reference.values()):
            return None
        fixed = edges_from_reference(reference)
        importance = {name: reference[name].importance for name in (*fixed.numeric, *fixed.categories)}
        first, last = min(r0 for r0, _ in ranges), max(r1 for _, r1 in ranges)
        source = f"the reference of the first diagnosed window: {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
        with contextlib.suppress(EdgesAlreadyFixedError):  # another task fixed them a moment ago: use theirs
            fix_edges(engine, monitor=monitor.name, edges=fixed, source=source, importance=importance)
        edges = current_edges(engine, monitor=monitor.name) or fixed
    return edges, baseline_importance(engine, monitor=monitor.name, edges_version=edges.version)


def _scan(
    engine: Engine,
    monitor: MonitorConfig,
    edges: BinEdges,
    unusable: Mapping[str, FeatureProfile],
    span: tuple[datetime, datetime],
) -> WindowProfile:
    """One statement over ``span``'s predictions: the usable features of ``edges``, named by ``edges``' version."""
    from modelwatch.warehouse.window_profile import fetch_window_profile

    usable = BinEdges(
        {k: v for k, v in edges.numeric.items() if k not in unusable},
        {k: v for k, v in edges.categories.items() if k not in unusable},
        edges.extra_categories,
    )
    profile = fetch_window_profile(engine, monitor, usable, start=span[0], end=span[1])
    return WindowProfile(edges.version, profile.features)


def _reference(
    engine: Engine,
    monitor: MonitorConfig,
    edges: BinEdges,
    unusable: Mapping[str, FeatureProfile],
    ranges: Sequence[tuple[datetime, datetime]],
    scannable: Sequence[tuple[datetime, datetime]],
    cadence: str,
) -> WindowProfile | None:
    """The merge of the stored profiles of the reference windows (stored under ``cadence``), profiling (once)
    the scannable ones never stored."""
    from modelwatch.warehouse.profiles_store import load_windows, save_profile

    stored = load_windows(
        engine, monitor=monitor.name, cadence=cadence, starts=[r0 for r0, _ in ranges], edges_version=edges.version
    )
    holding = {(to_naive_utc(r0), to_naive_utc(r1)) for r0, r1 in scannable}
    parts: list[WindowProfile] = []
    for span in ((to_naive_utc(r0), to_naive_utc(r1)) for r0, r1 in ranges):
        hit = stored.get(span[0])
        if hit is not None and hit.window_end == span[1]:
            parts.append(hit.profile)
            continue
        if span not in holding:
            continue  # no predictions there: nothing to profile
        profile = _scan(engine, monitor, edges, unusable, span)
        save_profile(
            engine, monitor=monitor.name, cadence=cadence, window_start=span[0], window_end=span[1], profile=profile
        )
        parts.append(profile)
    return merge_all(parts)


def within_data_span(engine: Engine, monitor: MonitorConfig, ranges: Ranges) -> list[tuple[datetime, datetime]]:
    """Drop reference ranges before the first or after the last prediction: each would cost queries
    that can only return nothing (a new monitor has days of empty rolling reference)."""
    from modelwatch.warehouse.profile import prediction_span

    span = prediction_span(engine, monitor)
    if span is None:
        return []
    first, last = span
    return [(r0, r1) for r0, r1 in ranges if r1 > first and r0 <= last]


def profiled(
    engine: Engine,
    monitor: MonitorConfig,
    run: WindowRun,
    ranges: Sequence[tuple[datetime, datetime]],
    *,
    scannable: Sequence[tuple[datetime, datetime]],
) -> Profiled | None:
    """The judged window's profile (stored under its revision, read back when already there) and the merge
    of the stored profiles of its reference windows ``ranges``; of those never stored, the ``scannable`` ones
    (holding predictions) are profiled once and stored. None when no reference window has a profile."""
    from modelwatch.warehouse.profile import unusable_features
    from modelwatch.warehouse.profiles_store import load_windows, save_profile

    fixed = monitor_edges(engine, monitor, scannable)
    if fixed is None:
        return None
    edges, importance = fixed
    unusable = unusable_features(engine, monitor)
    window, cadence = run.window, run.window.cadence.value
    # A rolling reference is the same window on earlier days: stored under the judged window's cadence.
    reference_cadence = FIXED_REFERENCE if monitor.reference.kind == "fixed" else cadence
    reference = _reference(engine, monitor, edges, unusable, ranges, scannable, reference_cadence)
    if reference is None:
        return None
    version = edges.version
    mine = load_windows(engine, monitor=monitor.name, cadence=cadence, starts=[window.start], edges_version=version)
    hit = mine.get(to_naive_utc(window.start))
    if hit is not None and hit.revision >= run.revision:
        current = hit.profile
    else:
        current = _scan(engine, monitor, edges, unusable, (window.start, window.end))
        save_profile(
            engine,
            monitor=monitor.name,
            cadence=cadence,
            window_start=window.start,
            window_end=window.end,
            profile=current,
            revision=run.revision,
        )
    order = tuple(f.name for f in monitor.predictions.features)
    return Profiled(edges, importance, reference, current, unusable, order)
