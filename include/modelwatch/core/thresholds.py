"""Threshold rules: each rule type is a small object that turns history into ``(lower, upper)`` bounds.

Pure module (no I/O). A threshold answers two questions for one metric of one window:
``bounds(current=..., history=...)`` - the acceptable range, or None when it cannot be computed
(too little history, undefined baseline) - and ``is_breach(current, bounds)`` - whether the window is
outside that range (None when the window's value is undefined). :func:`threshold_for` maps a
:class:`modelwatch.core.config.Rule` to its object through a table, so a new rule type is one entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from modelwatch.core.config import Baseline, Rule
from modelwatch.core.result import HistoryPoint, WindowResult
from modelwatch.render.rule_text import duration_text as _duration
from modelwatch.render.rule_text import lower_is_better
from modelwatch.render.rule_text import number as _fmt

MIN_STD_BAND_POINTS = 3

MIN_ROLLING_WINDOWS = 3
"""A rolling baseline is never the mean of fewer windows than this."""

IntervalFn = Callable[..., "tuple[float, float] | None"]


@dataclass(frozen=True)
class Bounds:
    """The acceptable range of a metric for one window; a side that is None is unbounded."""

    lower: float | None
    upper: float | None
    baseline: float | None
    description: str

    def contains(self, value: float) -> bool:
        """True when ``value`` is inside the range (the bounds themselves are inside)."""
        if self.lower is not None and value < self.lower:
            return False
        return not (self.upper is not None and value > self.upper)


class Threshold(Protocol):
    metric: str

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None: ...

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None: ...


def metric_value(current: WindowResult, metric: str) -> float | None:
    """The window's value of ``metric``, None when absent, undefined or not finite."""
    found = current.metrics.get(metric)
    if found is None or found.value is None or not math.isfinite(found.value):
        return None
    return float(found.value)


def _point_breach(current: WindowResult, metric: str, bounds: Bounds) -> bool | None:
    value = metric_value(current, metric)
    return None if value is None else not bounds.contains(value)


def _history_values(history: Sequence[HistoryPoint], metric: str, *, start: datetime, end: datetime) -> list[float]:
    """Values of ``metric`` in history windows lying wholly inside ``[start, end]``."""
    values = []
    for point in history:
        value = point.metrics.get(metric)
        if value is None or not math.isfinite(value):
            continue
        if point.window_start >= start and point.window_end <= end:
            values.append(float(value))
    return values


@dataclass(frozen=True)
class AbsoluteThreshold:
    metric: str
    min: float | None
    max: float | None

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None:
        parts = []
        if self.min is not None:
            parts.append(f">= {_fmt(self.min)}")
        if self.max is not None:
            parts.append(f"<= {_fmt(self.max)}")
        description = f"{self.metric} must be " + " and ".join(parts)
        return Bounds(self.min, self.max, None, description)

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        return _point_breach(current, self.metric, bounds)


@dataclass(frozen=True)
class BaselineDropThreshold:
    metric: str
    baseline: Baseline
    max_drop: float
    relative: bool = False

    def min_windows(self, current: WindowResult) -> int:
        """Windows a rolling baseline needs: configured, else half of those the period holds (at least 3)."""
        source = self.baseline
        if source.min_windows is not None:
            return source.min_windows
        width = current.window_end - current.window_start
        held = source.rolling // width if source.rolling is not None and width.total_seconds() > 0 else 0
        return max(MIN_ROLLING_WINDOWS, held // 2)

    def shortfall(self, current: WindowResult, history: Sequence[HistoryPoint]) -> str | None:
        """Why the bounds cannot be computed (None when they can): said in the rule's evaluation."""
        source = self.baseline
        if source.value is not None:
            return None
        if source.rolling is not None:
            values = _history_values(
                history, self.metric, start=current.window_start - source.rolling, end=current.window_start
            )
            needed = self.min_windows(current)
            if len(values) < needed:
                return (
                    f"no baseline rule yet: the rolling {_duration(source.rolling)} baseline needs >= {needed} "
                    f"windows outside open incidents, has {len(values)}"
                )
            return None
        return None if self.baseline_value(current, history) else "no stored window in the baseline period"

    def baseline_value(self, current: WindowResult, history: Sequence[HistoryPoint]) -> tuple[float, str] | None:
        """The baseline and where it came from, or None when no history covers the baseline period."""
        source = self.baseline
        if source.value is not None:
            return float(source.value), "fixed baseline"
        if source.rolling is not None:
            start = current.window_start - source.rolling
            values = _history_values(history, self.metric, start=start, end=current.window_start)
            if len(values) < self.min_windows(current):
                return None
            label = f"mean of the {len(values)} windows in the {source.rolling} before the window"
        else:
            assert source.start is not None and source.end is not None  # guaranteed by Baseline's validator
            values = _history_values(history, self.metric, start=source.start, end=source.end)
            label = f"mean of {len(values)} windows {source.start:%Y-%m-%d %H:%M}..{source.end:%Y-%m-%d %H:%M}"
        if not values:
            return None
        return sum(values) / len(values), label

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None:
        found = self.baseline_value(current, history)
        if found is None:
            return None
        baseline, label = found
        drop = self.max_drop * abs(baseline) if self.relative else self.max_drop
        allowed = f"{self.max_drop:.0%}" if self.relative else _fmt(self.max_drop)
        if lower_is_better(self.metric):
            upper = baseline + drop
            text = f"{self.metric} may rise at most {allowed} above {_fmt(baseline)} ({label}): <= {_fmt(upper)}"
            return Bounds(None, upper, baseline, text)
        lower = baseline - drop
        text = f"{self.metric} may drop at most {allowed} below {_fmt(baseline)} ({label}): >= {_fmt(lower)}"
        return Bounds(lower, None, baseline, text)

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        return _point_breach(current, self.metric, bounds)


@dataclass(frozen=True)
class StdBandThreshold:
    metric: str
    k: float = 3.0
    lookback_windows: int = 48

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None:
        earlier = sorted(
            (p for p in history if p.window_end <= current.window_start and p.metrics.get(self.metric) is not None),
            key=lambda p: p.window_end,
        )
        values = [float(p.metrics[self.metric]) for p in earlier[-self.lookback_windows :]]  # type: ignore[arg-type]
        values = [v for v in values if math.isfinite(v)]
        if len(values) < MIN_STD_BAND_POINTS:
            return None
        mean = sum(values) / len(values)
        # Sample standard deviation: the band is an estimate from few windows, not a population.
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        lower, upper = mean - self.k * std, mean + self.k * std
        text = (
            f"{self.metric} within mean {_fmt(mean)} +- {self.k:g} x std {_fmt(std)} of the last {len(values)} windows"
        )
        return Bounds(lower, upper, mean, text)

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        return _point_breach(current, self.metric, bounds)

    def shortfall(self, current: WindowResult, history: Sequence[HistoryPoint]) -> str | None:
        if self.bounds(current=current, history=history) is not None:
            return None
        return f"no band yet: needs >= {MIN_STD_BAND_POINTS} earlier windows outside open incidents"


def _default_interval(stats: Any, metric: str, *, confidence: float) -> tuple[float, float] | None:
    # Imported lazily: metrics.py is a sibling pure module and the rule must load without it.
    from modelwatch.core.metrics import bootstrap_interval

    return bootstrap_interval(stats, metric, confidence=confidence)


@dataclass(frozen=True)
class BootstrapCIThreshold:
    """Breach only when the window's whole confidence interval is beyond ``min``/``max``.

    A small, noisy window whose point estimate crosses the line but whose interval still reaches
    back into the acceptable range does not page.
    """

    metric: str
    min: float | None
    max: float | None
    confidence: float = 0.95
    interval_fn: IntervalFn | None = None

    def interval(self, current: WindowResult) -> tuple[float, float] | None:
        fn = self.interval_fn or _default_interval
        return fn(current.stats, self.metric, confidence=self.confidence)

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None:
        found = self.interval(current)
        if found is None:
            return None
        low, high = found
        allowed_low = _fmt(self.min) if self.min is not None else "-inf"
        allowed_high = _fmt(self.max) if self.max is not None else "inf"
        text = (
            f"{self.confidence:.0%} interval [{_fmt(low)}, {_fmt(high)}] of {self.metric} must overlap "
            f"[{allowed_low}, {allowed_high}]"
        )
        return Bounds(self.min, self.max, None, text)

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        found = self.interval(current)
        if found is None:
            return None
        low, high = found
        below = bounds.lower is not None and high < bounds.lower
        above = bounds.upper is not None and low > bounds.upper
        return below or above


_BUILDERS: dict[str, Callable[[Rule, str], Threshold]] = {
    "absolute": lambda rule, metric: AbsoluteThreshold(metric, rule.min, rule.max),
    "baseline_drop": lambda rule, metric: BaselineDropThreshold(
        metric,
        rule.baseline,  # type: ignore[arg-type]  # validated: baseline_drop has a baseline
        rule.max_drop,  # type: ignore[arg-type]
        rule.relative,
    ),
    "std_band": lambda rule, metric: StdBandThreshold(metric, rule.k, rule.lookback_windows),
    "bootstrap_ci": lambda rule, metric: BootstrapCIThreshold(metric, rule.min, rule.max, rule.confidence),
}


def threshold_for(rule: Rule, metric: str, *, interval_fn: IntervalFn | None = None) -> Threshold:
    """Build the threshold object of ``rule`` for ``metric``.

    Args:
        rule: A validated rule from a monitor's ``checks``.
        metric: The metric the rule watches.
        interval_fn: Replaces :func:`modelwatch.core.metrics.bootstrap_interval` for ``bootstrap_ci``
            (tests, or a cheaper interval); called as ``fn(stats, metric, confidence=...)``.
    """
    threshold = _BUILDERS[rule.type](rule, metric)
    if interval_fn is not None and isinstance(threshold, BootstrapCIThreshold):
        threshold = BootstrapCIThreshold(metric, rule.min, rule.max, rule.confidence, interval_fn)
    return threshold
