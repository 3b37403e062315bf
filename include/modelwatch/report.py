"""Render a computed :class:`WindowResult` as one self-contained HTML page and a PNG time line.

A renderer only: it reads the typed result, never recomputes metrics and performs no I/O (the
caller decides where the bytes go, e.g. the MLflow run's artifacts). matplotlib is imported lazily
with the Agg backend so that importing this module stays cheap.
"""

from __future__ import annotations

import base64
import html
import io
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelwatch.config import MonitorConfig
from modelwatch.result import HistoryPoint, WindowResult
from modelwatch.stats import BinaryStats, ScoreHistogram

DISTRIBUTION_BINS = 20
"""Score distribution bars in the report (the histogram is re-binned to this many)."""

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1f2933;max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d9e2ec}
table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{padding:4px 10px;border:1px solid #d9e2ec;
text-align:left}th{background:#f0f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta td:first-child{font-weight:600;background:#f8fafc}.breach,.critical{color:#b42318;font-weight:600}
.warning{color:#b54708;font-weight:600}.ok,.pass{color:#027a48}.muted{color:#829ab1}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;background:#e4e7eb;font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, digits: int = 4) -> str:
    """Numbers for humans; None (an undefined metric) is shown as 'n/a', never as 0."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return "n/a"
        return f"{float(value):.{digits}g}" if abs(value) >= 1e4 or 0 < abs(value) < 1e-3 else f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, css: str = "") -> str:
    head = "<thead><tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr></thead>" if headers else ""
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if isinstance(cell, _Raw):
                cells.append(f"<td>{cell.markup}</td>")
            elif isinstance(cell, int | float | np.number) and not isinstance(cell, bool):
                cells.append(f'<td class="num">{_e(_fmt(cell))}</td>')
            else:
                cells.append(f"<td>{_e(_fmt(cell))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}>{head}<tbody>{''.join(body)}</tbody></table>"


class _Raw:
    """Already-escaped markup placed in a table cell."""

    def __init__(self, markup: str) -> None:
        self.markup = markup


def _status_cell(status: str | None) -> _Raw:
    text = status or "n/a"
    return _Raw(f'<span class="{_e(text)}">{_e(text)}</span>')


def threshold_text(monitor: MonitorConfig, metric: str) -> list[str]:
    """Human-readable rules configured for ``metric`` (e.g. ``'absolute:critical >= 0.8'``)."""
    out: list[str] = []
    for check in monitor.checks:
        if check.metric != metric:
            continue
        for rule in check.rules:
            parts = [rule.rule_id]
            if rule.min is not None:
                parts.append(f">= {rule.min:g}")
            if rule.max is not None:
                parts.append(f"<= {rule.max:g}")
            if rule.type == "baseline_drop" and rule.max_drop is not None:
                parts.append(f"drop <= {rule.max_drop:g}{' (relative)' if rule.relative else ''}")
            if rule.type == "std_band":
                parts.append(f"within {rule.k:g} std of last {rule.lookback_windows}")
            out.append(" ".join(parts))
    return out


def _header(result: WindowResult, monitor: MonitorConfig) -> str:
    versions = ", ".join(result.stats.model_versions) or "n/a"
    rows = [
        ("Monitor", result.monitor),
        ("Model", result.model),
        ("Model versions", versions),
        ("Task", result.task),
        ("Cadence", result.cadence),
        ("Window", f"{result.window_start.isoformat()} to {result.window_end.isoformat()}"),
        ("Status", result.status),
        ("Revision", result.revision),
        ("As of", result.as_of.isoformat()),
        ("Config hash", result.config_hash or monitor.config_hash),
    ]
    title = f"modelwatch: {result.monitor} ({result.cadence} {result.window_start.isoformat()})"
    return f"<h1>{_e(title)}</h1>" + _table([], rows, css="meta")


def _metrics_section(result: WindowResult, monitor: MonitorConfig, evaluations: Sequence[Any]) -> str:
    by_metric: dict[str, list[Any]] = {}
    for ev in evaluations:
        by_metric.setdefault(str(getattr(ev, "metric", "")), []).append(ev)
    rows = []
    for name, mv in result.metrics.items():
        statuses = sorted({str(getattr(ev, "status", "")) for ev in by_metric.get(name, ())})
        rows.append(
            [name, mv.value, mv.reason or "", "; ".join(threshold_text(monitor, name)) or "-", ", ".join(statuses)]
        )
    for name, mv in result.estimated.items():
        rows.append([f"estimated {name}", mv.value, mv.reason or "", "-", ""])
    html_out = "<h2>Metrics vs thresholds</h2>" + _table(["Metric", "Value", "Reason", "Thresholds", "Status"], rows)
    if evaluations:
        ev_rows = [
            [
                getattr(ev, "metric", None),
                getattr(ev, "rule_id", None),
                _status_cell(str(getattr(ev, "status", None))),
                getattr(ev, "value", None),
                getattr(ev, "lower", None),
                getattr(ev, "upper", None),
            ]
            for ev in evaluations
        ]
        html_out += "<h2>Rule evaluations</h2>" + _table(
            ["Metric", "Rule", "Status", "Value", "Lower", "Upper"], ev_rows
        )
    return html_out


def _counts_section(result: WindowResult) -> str:
    counts = result.counts.to_dict()
    coverage = counts.pop("label_coverage")
    rows = [["label_coverage", coverage], *([name, value] for name, value in counts.items())]
    findings = "".join(f"<li>{_e(f)}</li>" for f in result.findings)
    return (
        "<h2>Label coverage and join health</h2>"
        + _table(["Count", "Value"], rows)
        + (f"<ul>{findings}</ul>" if findings else "")
    )


def _distribution(histogram: ScoreHistogram, bins: int) -> np.ndarray:
    """Share of rows per equal-width score bin over [0, 1]."""
    totals = histogram.pos + histogram.neg + histogram.unlabelled
    idx = np.clip(np.floor(np.asarray(histogram.keys, dtype=np.float64) * bins).astype(int), 0, bins - 1)
    counts = np.bincount(idx, weights=totals.astype(np.float64), minlength=bins)
    total = counts.sum()
    return counts / total if total else counts


def _score_svg(current: ScoreHistogram, reference: ScoreHistogram | None) -> str:
    """Inline SVG bars: current (blue) next to reference (grey) for each score bin."""
    width, height, pad = 640, 180, 20
    series = [("current", _distribution(current, DISTRIBUTION_BINS), "#2f6fde")]
    if reference is not None and len(reference.keys):
        series.append(("reference", _distribution(reference, DISTRIBUTION_BINS), "#9aa5b1"))
    top = max(float(s.max()) for _, s, _ in series) or 1.0
    slot = (width - 2 * pad) / DISTRIBUTION_BINS
    bar = slot / (len(series) + 0.5)
    shapes = []
    for j, (_, shares, colour) in enumerate(series):
        for i, share in enumerate(shares):
            h = (height - 2 * pad) * share / top
            x = pad + i * slot + j * bar
            shapes.append(
                f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{i / DISTRIBUTION_BINS:.2f}-{(i + 1) / DISTRIBUTION_BINS:.2f}: {share:.3f}</title></rect>"
            )
    legend = " ".join(
        f'<text x="{pad + 110 * k}" y="14" font-size="12" fill="{c}">&#9632; {name}</text>'
        for k, (name, _, c) in enumerate(series)
    )
    axis = (
        f'<text x="{pad}" y="{height - 4}" font-size="11">0</text>'
        f'<text x="{width - pad - 8}" y="{height - 4}" font-size="11">1</text>'
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="score distribution">{legend}{"".join(shapes)}{axis}</svg>'
    )


def _distribution_section(result: WindowResult, reference: ScoreHistogram | None) -> str:
    stats = result.stats.task_stats
    if not isinstance(stats, BinaryStats):
        return ""
    if not len(stats.histogram.keys):
        return '<h2>Score distribution</h2><p class="muted">No scored rows in this window.</p>'
    note = "" if reference is not None else '<p class="muted">No reference histogram given.</p>'
    return "<h2>Score distribution (current vs reference)</h2>" + _score_svg(stats.histogram, reference) + note


def _columns_table(title: str, items: Sequence[Any], columns: dict[str, Any]) -> str:
    """A titled table with one row per item; ``columns`` maps header -> attribute name or function."""
    if not items:
        return ""
    getters = [(lambda item, a=spec: getattr(item, a)) if isinstance(spec, str) else spec for spec in columns.values()]
    return f"<h2>{_e(title)}</h2>" + _table(list(columns), [[get(item) for get in getters] for item in items])


def _segments_section(result: WindowResult, monitor: MonitorConfig) -> str:
    primary = next((c.metric for c in monitor.checks), None) or next(iter(result.metrics), "metric")
    columns: dict[str, Any] = {
        "Column": "column",
        "Value": "value",
        "Predictions": "predictions",
        "Labelled": "labelled",
        "Share": "share",
        "Ref. share": "reference_share",
        primary: lambda s: s.metrics.get(primary),
        f"ref. {primary}": lambda s: s.reference_metrics.get(primary),
        "Within contrib.": "within_contribution",
        "Mix contrib.": "mix_contribution",
    }
    return _columns_table("Segments", result.segments, columns)


_DRIFT_COLUMNS: dict[str, Any] = {
    **{h: h.lower() for h in ("Feature", "Kind", "Method")},
    "Segment": lambda d: d.segment or "all",
    "Score": "score",
    "Threshold": "threshold",
    "Drifted": lambda d: _status_cell("breach" if d.drifted else "ok"),
    "p-value": "p_value",
    "Importance": "importance",
}
_QUALITY_COLUMNS: dict[str, Any] = {
    "Feature": "feature",
    "Null rate": "null_rate",
    "Ref. null rate": "reference_null_rate",
    "Out of range": "out_of_range_rate",
    "New cats": lambda q: ", ".join(q.new_categories) or "-",
    "Vanished": lambda q: ", ".join(q.vanished_categories) or "-",
    "Type changed": "type_changed",
    "Issue": lambda q: q.issue or "-",
}


def _drift_section(result: WindowResult) -> str:
    return _columns_table("Drift", result.drift, _DRIFT_COLUMNS) + _columns_table(
        "Data quality", result.quality, _QUALITY_COLUMNS
    )


def _root_cause_section(result: WindowResult) -> str:
    rc = result.root_cause
    if rc is None:
        return ""
    evidence = "".join(f"<li>{_e(item)}</li>" for item in rc.evidence)
    return (
        f'<h2>Root cause</h2><p><span class="badge">{_e(rc.verdict)}</span> {_e(rc.summary)}</p>'
        f"<p>Top features: {_e(', '.join(rc.top_features) or '-')}; top segment: {_e(rc.top_segment or '-')}</p>"
        + (f"<ul>{evidence}</ul>" if evidence else "")
    )


def render_html(
    result: WindowResult,
    *,
    monitor: MonitorConfig,
    history: Sequence[HistoryPoint] = (),
    evaluations: Sequence[Any] = (),
    reference_histogram: ScoreHistogram | None = None,
    timeline_png: bytes | None = None,
) -> str:
    """One self-contained HTML page (inline CSS and images, no external assets) for one window.

    Args:
        result: The computed window.
        monitor: Its monitor config (thresholds come from ``monitor.checks``).
        history: Past windows for the time line (the current window is added to it).
        evaluations: Rule evaluation objects with ``metric, rule_id, status, value, lower, upper``.
        reference_histogram: The reference window's score histogram (binary tasks).
        timeline_png: An already rendered time line, so callers that also store the PNG render it once.

    Returns:
        The HTML document; every piece of text from the result or config is escaped.
    """
    png = (
        timeline_png if timeline_png is not None else render_timeline_png(with_window(history, result), monitor=monitor)
    )
    timeline = (
        f'<h2>Time line</h2><img alt="metrics time line" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )
    body = "".join(
        [
            _header(result, monitor),
            _metrics_section(result, monitor, evaluations),
            _counts_section(result),
            timeline,
            _distribution_section(result, reference_histogram),
            _segments_section(result, monitor),
            _drift_section(result),
            _root_cause_section(result),
        ]
    )
    title = _e(f"modelwatch {result.monitor} {result.cadence} {result.window_start.isoformat()}")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_CSS}</style></head><body>{body}</body></html>"
    )


def history_point(result: WindowResult) -> HistoryPoint:
    """The time-line point of a freshly computed window."""
    return HistoryPoint(
        window_start=result.window_start,
        window_end=result.window_end,
        metrics={name: m.value for name, m in result.metrics.items()},
        labelled=result.counts.labelled,
        predictions=result.counts.predictions,
        status=result.status,
        revision=result.revision,
    )


def with_window(history: Sequence[HistoryPoint], result: WindowResult) -> list[HistoryPoint]:
    """``history`` with the current window's point replacing any older revision of it, sorted by time."""
    point = history_point(result)
    kept = [h for h in history if h.window_start != result.window_start]
    return sorted([*kept, point], key=lambda h: h.window_start)


# --- time line ---------------------------------------------------------------------------------

_FIGURES: dict[int, Any] = {}
_FIGURE_LOCK = threading.Lock()
_RULE_COLOURS = {"critical": "#b42318", "warning": "#dc6803"}


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
    final = np.array([p.status == "final" for p in points], dtype=bool)
    # Remove the previous drawing's artists instead of ax.clear(): clearing rebuilds every tick
    # object, which is most of the render time.
    for artist in [*ax.lines, *ax.collections]:
        artist.remove()
    ax.plot(x, y, color="#2f6fde", linewidth=1.2)
    ax.plot(x[final], y[final], "o", color="#2f6fde", markersize=3)
    # Provisional windows are hollow: their value may still move as labels arrive.
    ax.plot(x[~final], y[~final], "o", markerfacecolor="white", color="#2f6fde", markersize=3)
    for bound, severity, _ in _absolute_lines(monitor, metric):
        ax.axhline(bound, color=_RULE_COLOURS.get(severity, "#52606d"), linestyle="--", linewidth=1)
    ax.set_ylabel(metric, fontsize=8)
    ax.relim()
    ax.autoscale_view()


def render_timeline_png(
    history: Sequence[HistoryPoint],
    *,
    monitor: MonitorConfig,
    metrics: Sequence[str] | None = None,
    last_n: int = 72,
) -> bytes:
    """PNG of the main metrics over the last ``last_n`` windows, with the absolute rules' min/max lines.

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
