"""The metrics time line of a monitor as a PNG, with the absolute rules' bounds as dashed lines.

matplotlib is imported lazily with the Agg backend so that importing this module stays cheap.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelwatch.core.config import MonitorConfig, Status
from modelwatch.core.result import HistoryPoint

_FIGURES: dict[int, Any] = {}
_FIGURE_LOCK = threading.Lock()
_RULE_COLOURS = {"critical": "#b42318", "warning": "#dc6803"}
_ESTIMATE_COLOUR = "#7a5af8"
"""Estimated (dashed) with its band (shaded), beside the realised metric (solid blue)."""


def _figure(n_axes: int) -> Any:
    """A cached Agg figure with ``n_axes`` stacked axes (building figures dominates the render time)."""
    fig = _FIGURES.get(n_axes)
    if fig is None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        # Figure + FigureCanvasAgg directly: pyplot's global state is neither needed nor thread-safe.
        fig = Figure(figsize=(8, 0.4 + 1.7 * n_axes), dpi=72)
        FigureCanvasAgg(fig)
        for ax in fig.subplots(n_axes, 1, sharex=True, squeeze=False)[:, 0]:
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.12 / n_axes + 0.05, hspace=0.35)
        _FIGURES[n_axes] = fig
    return fig


def _default_metrics(history: Sequence[HistoryPoint], monitor: MonitorConfig) -> list[str]:
    checked = list(dict.fromkeys(check.metric for check in monitor.checks))
    if checked:
        return checked
    seen = dict.fromkeys(name for point in history for name in point.metrics)
    return list(seen)[:3]


def _absolute_lines(monitor: MonitorConfig, metric: str) -> list[tuple[float, str, str]]:
    lines = []
    for check in monitor.checks:
        if check.metric != metric:
            continue
        for rule in check.rules:
            if rule.type != "absolute":
                continue
            lines += [(bound, str(rule.severity), rule.rule_id) for bound in (rule.min, rule.max) if bound is not None]
    return lines


def _plot_metric(ax: Any, points: Sequence[HistoryPoint], metric: str, monitor: MonitorConfig) -> None:
    x = np.arange(len(points))
    values = [p.metrics.get(metric) for p in points]
    y = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    final = np.array([p.status is Status.FINAL for p in points], dtype=bool)
    # Remove the previous drawing's artists instead of ax.clear(): clearing rebuilds every tick
    # object, which is most of the render time.
    for artist in [*ax.lines, *ax.collections]:
        artist.remove()
    ax.plot(x, y, color="#2f6fde", linewidth=1.2)
    ax.plot(x[final], y[final], "o", color="#2f6fde", markersize=3)
    # Provisional windows are hollow: their value may still move as labels arrive.
    ax.plot(x[~final], y[~final], "o", markerfacecolor="white", color="#2f6fde", markersize=3)
    _plot_estimate(ax, points, metric, x)
    for bound, severity, _ in _absolute_lines(monitor, metric):
        ax.axhline(bound, color=_RULE_COLOURS.get(severity, "#52606d"), linestyle="--", linewidth=1)
    ax.set_ylabel(metric, fontsize=8)
    ax.relim()
    ax.autoscale_view()


def _series(points: Sequence[HistoryPoint], name: str) -> np.ndarray:
    return np.array([np.nan if p.metrics.get(name) is None else float(p.metrics[name]) for p in points], dtype=float)


def _plot_estimate(ax: Any, points: Sequence[HistoryPoint], metric: str, x: np.ndarray) -> None:
    """The metric estimated from scores (dashed) and its band (shaded), where windows carry a band: an
    uncalibrated estimate (no labelled reference) is left out, it can sit far from the truth."""
    low, high = _series(points, f"estimated_{metric}_band_low"), _series(points, f"estimated_{metric}_band_high")
    estimated = np.where(np.isnan(low), np.nan, _series(points, f"estimated_{metric}"))
    if np.isnan(estimated).all():
        return
    ax.plot(x, estimated, color=_ESTIMATE_COLOUR, linewidth=1, linestyle="--")
    ax.fill_between(x, low, high, color=_ESTIMATE_COLOUR, alpha=0.15, linewidth=0)


def render_timeline_png(
    history: Sequence[HistoryPoint],
    *,
    monitor: MonitorConfig,
    metrics: Sequence[str] | None = None,
    last_n: int = 72,
) -> bytes:
    """PNG of the main metrics over the last ``last_n`` windows, with the absolute rules' min/max lines and,
    where the windows carry one, the metric estimated from scores alone with its band.

    Args:
        history: Windows to draw (any order; sorted by ``window_start``).
        monitor: Supplies the default metrics (the checked ones) and the threshold lines.
        metrics: Metrics to draw instead of the checked ones.
        last_n: How many of the most recent windows to draw.

    Returns:
        PNG bytes. Undefined metric values leave gaps rather than dropping to 0.
    """
    points = sorted(history, key=lambda h: h.window_start)[-last_n:] if last_n > 0 else []
    names = list(metrics) if metrics is not None else _default_metrics(points, monitor)
    names = names[:4] or ["(no metrics)"]
    with _FIGURE_LOCK:
        fig = _figure(len(names))
        axes = fig.axes
        for ax, name in zip(axes, names, strict=True):
            _plot_metric(ax, points, name, monitor)
        step = max(1, len(points) // 8)
        ticks = list(range(0, len(points), step))
        axes[-1].set_xticks(ticks, [points[i].window_start.strftime("%m-%d %H:%M") for i in ticks])
        fig.suptitle(f"{monitor.name}: last {len(points)} windows", fontsize=9)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    return buffer.getvalue()
