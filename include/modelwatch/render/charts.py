"""Chart geometry for the HTML pages: grouped bars of shares (current vs reference), computed here and
drawn by the templates as inline SVG (no JavaScript, no external assets)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelwatch.core.stats import ScoreHistogram
from modelwatch.render.formatting import fmt_share, fmt_short

DISTRIBUTION_BINS = 20
"""Score distribution bars (the 1e-4-wide histogram is re-binned to this many)."""


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: str
    title: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: tuple[Bar, ...]
    labels: tuple[tuple[float, str], ...]
    width: int = 640
    height: int = 190


_CURRENT, _REFERENCE = "#2f6fde", "#9aa5b1"


def bar_chart(title: str, labels: Sequence[str], series: Sequence[tuple[str, np.ndarray]]) -> BarChart:
    """Grouped bars of shares: one group per label, one bar per series (current, reference)."""
    width, height, pad, bottom = 640, 190, 24, 30
    colours = {"current": _CURRENT, "reference": _REFERENCE}
    top = max((float(s.max()) for _, s in series if len(s)), default=0.0) or 1.0
    slot = (width - 2 * pad) / max(len(labels), 1)
    bar_width = slot / (len(series) + 0.5)
    bars = []
    for j, (name, shares) in enumerate(series):
        for i, share in enumerate(shares):
            h = (height - pad - bottom) * float(share) / top
            bars.append(
                Bar(
                    x=round(pad + i * slot + j * bar_width, 1),
                    y=round(height - bottom - h, 1),
                    width=round(bar_width, 1),
                    height=round(h, 1),
                    colour=colours.get(name, _CURRENT),
                    title=f"{name} {labels[i]}: {fmt_share(float(share))}",
                )
            )
    step = max(1, len(labels) // 8)
    ticks = tuple((round(pad + i * slot, 1), labels[i]) for i in range(0, len(labels), step))
    return BarChart(title=title, bars=tuple(bars), labels=ticks, width=width, height=height)


def _shares(counts: Sequence[float]) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    return values / total if total else values


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    inner = (f"{fmt_short(edges[i])}.." for i in range(len(edges) - 1))
    return [f"< {fmt_short(edges[0])}", *inner, f">= {fmt_short(edges[-1])}"]


def feature_chart(title: str, kind: str, ref: dict[str, Any], cur: dict[str, Any]) -> BarChart | None:
    """Current vs reference histogram of one drifted feature from its drift summaries (numeric bins with
    ``edges``/``counts``, or categorical ``top`` counts); None when the summaries hold no bins."""
    if kind == "numeric":
        if not ref.get("counts") or len(ref["counts"]) != len(cur.get("counts") or ()):
            return None
        labels = _bin_labels(ref.get("edges") or [])
        series = [("current", _shares(cur["counts"])), ("reference", _shares(ref["counts"]))]
        return bar_chart(title, labels, series)
    keys = sorted({*(ref.get("top") or {}), *(cur.get("top") or {})})
    if not keys:
        return None
    ref_n, cur_n = ref.get("n") or 1, cur.get("n") or 1
    series = [
        ("current", np.array([(cur.get("top") or {}).get(k, 0) / cur_n for k in keys])),
        ("reference", np.array([(ref.get("top") or {}).get(k, 0) / ref_n for k in keys])),
    ]
    return bar_chart(title, keys, series)


def _score_shares(histogram: ScoreHistogram, bins: int) -> np.ndarray:
    """Share of rows per equal-width score bin over [0, 1]."""
    totals = histogram.pos + histogram.neg + histogram.unlabelled
    idx = np.clip(np.floor(np.asarray(histogram.keys, dtype=np.float64) * bins).astype(int), 0, bins - 1)
    return _shares(np.bincount(idx, weights=totals.astype(np.float64), minlength=bins))


def score_chart(current: ScoreHistogram, reference: ScoreHistogram | None) -> BarChart | None:
    """Share of rows per score bin, current next to reference."""
    if not len(current.keys):
        return None
    labels = [f"{i / DISTRIBUTION_BINS:.2f}" for i in range(DISTRIBUTION_BINS)]
    series = [("current", _score_shares(current, DISTRIBUTION_BINS))]
    if reference is not None and len(reference.keys):
        series.append(("reference", _score_shares(reference, DISTRIBUTION_BINS)))
    return bar_chart("score", labels, series)
