"""Label-free signals of a run's fresh window: calibrated estimates, score and positive-rate drift (edge).

Reads the stored reference windows (``modelwatch.reference_stats``: no scan) and, for the feature-drift
rules that watch a segment, profiles the rules' features inside its values; the decisions are pure
(:mod:`modelwatch.label_free`, :mod:`modelwatch.metrics.calibration`, :mod:`modelwatch.label_free_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from modelwatch.config import MonitorConfig
from modelwatch.result import DriftFinding, MetricValue
from modelwatch.stats import BinaryStats, WindowStats


@dataclass(frozen=True)
class LabelFreeSignals:
    """What the label-free rules read off a fresh window beyond its feature drift."""

    estimated: dict[str, MetricValue]
    bands: dict[str, tuple[float, float]] = field(default_factory=dict)
    signals: tuple[DriftFinding, ...] = ()
    drift: tuple[DriftFinding, ...] | None = None
    """The window's drift with the segment screening the rules need (None: the diagnosis' as it is)."""


def label_free_signals(
    engine: Engine, monitor: MonitorConfig, key: Any, *, as_of: datetime, stats: WindowStats, diagnosis: Any
) -> LabelFreeSignals:
    """Calibrated estimates with their band, score drift and positive-rate change of the fresh window,
    all against its stored reference windows (no scan), and the segment drift a diagnosis lacked."""
    from modelwatch.diagnosis import screen_segments
    from modelwatch.label_free import positive_rate_finding, score_drift_findings
    from modelwatch.metrics import estimate_metrics
    from modelwatch.metrics.calibration import estimate_with_band, fit_calibration
    from modelwatch.reference_stats import reference_histogram

    drift = None
    if diagnosis is not None and diagnosis.segments:
        # A diagnosed window drew drift in its suspect segments only: add those the rules watch.
        have = {(f.feature, f.method, f.segment) for f in diagnosis.drift}
        ranges = _reference_ranges(monitor, key)
        extra = screen_segments(
            engine, monitor, ranges, start=key.window_start, end=key.window_end, overall=diagnosis.drift
        )
        drift = (*diagnosis.drift, *(f for f in extra if (f.feature, f.method, f.segment) not in have))
    task_stats = stats.task_stats
    if not isinstance(task_stats, BinaryStats):
        return LabelFreeSignals(estimated={}, drift=drift)
    reference = reference_histogram(
        engine, monitor, cadence=key.cadence, start=key.window_start, end=key.window_end, as_of=as_of
    )
    if reference is None:
        return LabelFreeSignals(estimated=estimate_metrics(task_stats), drift=drift)
    confidence = next((r.confidence for r in monitor.label_free if r.type == "estimated"), 0.95)
    estimate = estimate_with_band(task_stats, fit_calibration(reference), confidence=confidence)
    found = [*score_drift_findings(reference, task_stats.histogram, monitor.drift)]
    rate = positive_rate_finding(reference, task_stats.histogram, monitor.decision_threshold)
    return LabelFreeSignals(
        estimated=estimate.values if estimate.calibrated else estimate_metrics(task_stats),
        bands=estimate.bands if estimate.calibrated else {},
        signals=(*found, *([rate] if rate else [])),
        drift=drift,
    )


def _reference_ranges(monitor: MonitorConfig, key: Any) -> list[tuple[datetime, datetime]]:
    from modelwatch.diagnosis import coalesce, reference_ranges

    return coalesce(reference_ranges(monitor, cadence=key.cadence, start=key.window_start, end=key.window_end))
