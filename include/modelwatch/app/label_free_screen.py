"""Label-free signals of a run's fresh window: calibrated estimates, score and positive-rate drift (edge).

Reads the stored reference windows (``modelwatch.app.reference_stats``: no scan) and, for the feature-drift
rules that watch a segment, profiles the rules' features inside its values; the decisions are pure
(:mod:`modelwatch.core.label_free`, :mod:`modelwatch.core.metrics.calibration`,
:mod:`modelwatch.core.label_free_rules`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from modelwatch.core.config import MonitorConfig
from modelwatch.core.result import DriftFinding, MetricValue
from modelwatch.core.stats import BinaryStats, WindowStats
from modelwatch.core.windows import Window, WindowRun
from modelwatch.warehouse.engine import Engine


@dataclass(frozen=True)
class LabelFreeSignals:
    """What the label-free rules read off a fresh window beyond its feature drift."""

    estimated: dict[str, MetricValue]
    bands: dict[str, tuple[float, float]] = field(default_factory=dict)
    signals: tuple[DriftFinding, ...] = ()
    drift: tuple[DriftFinding, ...] | None = None
    """The window's drift with the segment screening the rules need (None: the diagnosis' as it is)."""
    calibration: dict[str, Any] | None = None
    """The calibration map the estimate used (``Calibration.to_dict``)."""


SAMPLE_ROWS = 5000
"""Rows sampled from each side (reference, window) for the multivariate detector: memory stays flat."""


def label_free_signals(
    engine: Engine, monitor: MonitorConfig, run: WindowRun, *, stats: WindowStats, diagnosis: Any
) -> LabelFreeSignals:
    """Calibrated estimates with their band, score drift and positive-rate change of the fresh window
    (against its stored reference windows: no scan), its multivariate drift when a rule asks for it (two
    bounded samples), and the segment drift a diagnosis lacked."""
    from modelwatch.core.metrics import estimate_metrics

    drift = _with_rule_segments(engine, monitor, run, diagnosis)
    multivariate = _multivariate(engine, monitor, run.window)
    task_stats = stats.task_stats
    if not isinstance(task_stats, BinaryStats):
        return LabelFreeSignals(estimated={}, signals=multivariate, drift=drift)
    scored = _score_signals(engine, monitor, run, stats=task_stats)
    if scored is None:
        return LabelFreeSignals(estimated=estimate_metrics(task_stats), signals=multivariate, drift=drift)
    estimated, bands, signals, calibration = scored
    return LabelFreeSignals(
        estimated=estimated, bands=bands, signals=(*signals, *multivariate), drift=drift, calibration=calibration
    )


def _with_rule_segments(
    engine: Engine, monitor: MonitorConfig, run: WindowRun, diagnosis: Any
) -> tuple[DriftFinding, ...] | None:
    from modelwatch.app.diagnosis import screen_segments

    if diagnosis is None or not diagnosis.segments:
        return None  # a screened window has the rules' segments already
    # A diagnosed window drew drift in its suspect segments only: add those the rules watch.
    have = {(f.feature, f.method, f.segment) for f in diagnosis.drift}
    extra = screen_segments(engine, monitor, run, overall=diagnosis.drift)
    return (*diagnosis.drift, *(f for f in extra if (f.feature, f.method, f.segment) not in have))


def _score_signals(
    engine: Engine, monitor: MonitorConfig, run: WindowRun, *, stats: BinaryStats
) -> tuple[dict[str, MetricValue], dict[str, tuple[float, float]], tuple[DriftFinding, ...], dict | None] | None:
    from modelwatch.app.reference_stats import reference_histogram
    from modelwatch.core.label_free import positive_rate_finding, score_drift_findings
    from modelwatch.core.metrics import estimate_metrics
    from modelwatch.core.metrics.calibration import estimate_with_band, fit_calibration

    reference = reference_histogram(engine, monitor, run.window, as_of=run.as_of)
    if reference is None:
        return None
    confidence = next((r.confidence for r in monitor.label_free if r.type == "estimated"), 0.95)
    calibration = fit_calibration(reference)
    estimate = estimate_with_band(stats, calibration, confidence=confidence)
    rate = positive_rate_finding(reference, stats.histogram, monitor.decision_threshold)
    signals = (*score_drift_findings(reference, stats.histogram, monitor.drift), *([rate] if rate else []))
    if calibration is None:
        return estimate_metrics(stats), {}, signals, None
    return estimate.values, estimate.bands, signals, calibration.to_dict()


def _multivariate(engine: Engine, monitor: MonitorConfig, window: Window) -> tuple[DriftFinding, ...]:
    from modelwatch.app.window_profiles import within_data_span
    from modelwatch.core.multivariate import pca_reconstruction_finding
    from modelwatch.warehouse.profile import fetch_feature_sample

    rule = next((r for r in monitor.label_free if r.type == "multivariate_drift"), None)
    names = tuple(f.name for f in monitor.predictions.features if f.kind == "numeric")
    if rule is None or len(names) < 2:
        return ()
    ranges = within_data_span(engine, monitor, _reference_ranges(monitor, window))
    if not ranges:
        return ()
    reference = fetch_feature_sample(engine, monitor, ranges=ranges, names=names, limit=SAMPLE_ROWS)
    current = fetch_feature_sample(engine, monitor, ranges=[(window.start, window.end)], names=names, limit=SAMPLE_ROWS)
    finding = pca_reconstruction_finding(reference, current, threshold=rule.threshold or 0.0, features=names)
    return (finding,) if finding is not None else ()


def _reference_ranges(monitor: MonitorConfig, window: Window) -> list[tuple[datetime, datetime]]:
    from modelwatch.app.diagnosis import coalesce, reference_ranges

    return coalesce(reference_ranges(monitor, window))
