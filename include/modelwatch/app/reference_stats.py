"""The reference a report draws next to its window, read from the windows already stored (no new scan).

The reference of a window is the same hours of the previous days (rolling) or a fixed span
(``modelwatch.app.diagnosis.reference_ranges``); their statistics are in the window documents, so the
reference score histogram is the merge of those windows' histograms as known at the window's ``as_of``.
"""

from __future__ import annotations

from datetime import datetime
from functools import reduce

from modelwatch.app.diagnosis import coalesce, reference_ranges
from modelwatch.core.config import MonitorConfig
from modelwatch.core.result import WindowResult
from modelwatch.core.stats import BinaryStats, ScoreHistogram, WindowStats
from modelwatch.core.windows import Window
from modelwatch.warehouse.documents import latest_documents
from modelwatch.warehouse.engine import Engine


def reference_score_histogram(engine: Engine, monitor: MonitorConfig, result: WindowResult) -> ScoreHistogram | None:
    """The merged score histogram of ``result``'s reference windows, or None (not binary, none stored)."""
    if not isinstance(result.stats.task_stats, BinaryStats):
        return None
    return reference_histogram(engine, monitor, result.window, as_of=result.as_of)


def reference_histogram(
    engine: Engine, monitor: MonitorConfig, window: Window, *, as_of: datetime
) -> ScoreHistogram | None:
    """The merged score histogram of the stored reference windows of ``window`` as known at ``as_of``
    (labels included: the calibration of the estimated metrics is fitted on it); None when none is stored."""
    ranges = coalesce(reference_ranges(monitor, window))
    histograms = []
    for r0, r1 in ranges:
        cadence = window.cadence
        for document in latest_documents(engine, monitor=monitor.name, cadence=cadence, start=r0, end=r1, as_of=as_of):
            stats = WindowStats.from_dict(document["stats"]).task_stats
            if isinstance(stats, BinaryStats) and len(stats.histogram.keys):
                histograms.append(stats.histogram)
    return reduce(ScoreHistogram.merge, histograms) if histograms else None
