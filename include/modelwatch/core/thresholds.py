"""Threshold rules: each rule type is a small object that turns history into ``(lower, upper)`` bounds.

Pure module (no I/O). A threshold answers two questions for one metric of one window:
``bounds(current=..., history=...)`` - the acceptable range, or None when it cannot be computed
(too little history, undefined baseline) - and ``is_breach(current, bounds)`` - whether the window is
outside that range (None when the window's value is undefined). :func:`threshold_for` maps a
:class:`modelwatch.core.config.Rule` to its object through a table, so a new rule type is one entry.

Thresholds return numbers only: how the bounds were derived is a typed ``basis`` on :class:`Bounds` and
why they cannot be computed a typed shortfall; :mod:`modelwatch.core.rule_messages` puts both in words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from modelwatch.core.config import Baseline, Rule
from modelwatch.core.metric_registry import lower_is_better
from modelwatch.core.result import HistoryPoint, WindowResult

MIN_STD_BAND_POINTS = 3

MIN_ROLLING_WINDOWS = 3
"""A rolling baseline is never the mean of fewer windows than this."""

IntervalFn = Callable[..., "tuple[float, float] | None"]


@dataclass(frozen=True)
class AbsoluteBasis:
    """Fixed limits from the configuration."""

    metric: str
    min: float | None
    max: float | None


@dataclass(frozen=True)
class BaselineEstimate:
    """A baseline value and where it came from."""

    value: float
    source: Literal["fixed", "rolling", "period"]
    windows: int = 0
    """History windows averaged (0 for a fixed baseline)."""
    rolling: timedelta | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class BaselineDropBasis:
    """A bound at ``max_drop`` (absolute, or relative to the baseline) on the bad side of the baseline."""

    metric: str
    baseline: BaselineEstimate
    max_drop: float
    relative: bool
    lower_is_better: bool
    bound: float


@dataclass(frozen=True)
class StdBandBasis:
    """``mean +- k x std`` of the last ``windows`` earlier windows."""

    metric: str
    mean: float
    std: float
    k: float
    windows: int


@dataclass(frozen=True)
class IntervalBasis:
    """The window's confidence interval ``[low, high]``, which must overlap ``[min, max]``."""

    metric: str
    confidence: float
    low: float
    high: float
    min: float | None
    max: float | None


BoundsBasis = AbsoluteBasis | BaselineDropBasis | StdBandBasis | IntervalBasis


@dataclass(frozen=True)
class RollingShortfall:
    """A rolling baseline with fewer windows than it needs."""

    rolling: timedelta
    needed: int
    has: int


@dataclass(frozen=True)
class NoBaselineWindows:
    """No stored window in a fixed baseline period."""


@dataclass(frozen=True)
class StdBandShortfall:
    """Too few earlier windows for a band."""

    needed: int


Shortfall = RollingShortfall | NoBaselineWindows | StdBandShortfall


@dataclass(frozen=True)
class Bounds:
    """The acceptable range of a metric for one window; a side that is None is unbounded."""

    lower: float | None
    upper: float | None
    baseline: float | None
    basis: BoundsBasis | None = None
    """How the range was derived (None for bounds built by rules without a threshold object)."""

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
        return Bounds(self.min, self.max, None, AbsoluteBasis(self.metric, self.min, self.max))

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        return _point_breach(current, self.metric, bounds)

    def breached_by(self, value: float) -> bool:
        """True when ``value`` is outside ``[min, max]`` (no history needed: the bounds are fixed)."""
        return not Bounds(self.min, self.max, None).contains(value)


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

    def shortfall(self, current: WindowResult, history: Sequence[HistoryPoint]) -> Shortfall | None:
        """Why the bounds cannot be computed (None when they can): said in the rule's evaluation."""
        source = self.baseline
        if source.value is not None:
            return None
        if source.rolling is not None:
            values = _history_values(
                history, self.metric, start=current.window_start - source.rolling, end=current.window_start
            )
            needed = self.min_windows(current)
            return RollingShortfall(source.rolling, needed, len(values)) if len(values) < needed else None
        return None if self.baseline_value(current, history) else NoBaselineWindows()

    def baseline_value(self, current: WindowResult, history: Sequence[HistoryPoint]) -> BaselineEstimate | None:
        """The baseline and where it came from, or None when no history covers the baseline period."""
        source = self.baseline
        if source.value is not None:
            return BaselineEstimate(float(source.value), "fixed")
        if source.rolling is not None:
            start = current.window_start - source.rolling
            values = _history_values(history, self.metric, start=start, end=current.window_start)
            if len(values) < self.min_windows(current):
                return None
            found = BaselineEstimate(0.0, "rolling", len(values), rolling=source.rolling)
        else:
            assert source.start is not None and source.end is not None  # guaranteed by Baseline's validator
            values = _history_values(history, self.metric, start=source.start, end=source.end)
            found = BaselineEstimate(0.0, "period", len(values), start=source.start, end=source.end)
        if not values:
            return None
        return replace(found, value=sum(values) / len(values))

    def bounds(self, *, current: WindowResult, history: Sequence[HistoryPoint]) -> Bounds | None:
        found = self.baseline_value(current, history)
        if found is None:
            return None
        baseline = found.value
        drop = self.max_drop * abs(baseline) if self.relative else self.max_drop
        up = lower_is_better(self.metric)
        bound = baseline + drop if up else baseline - drop
        basis = BaselineDropBasis(self.metric, found, self.max_drop, self.relative, up, bound)
        return Bounds(None, bound, baseline, basis) if up else Bounds(bound, None, baseline, basis)

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
        return Bounds(lower, upper, mean, StdBandBasis(self.metric, mean, std, self.k, len(values)))

    def is_breach(self, current: WindowResult, bounds: Bounds) -> bool | None:
        return _point_breach(current, self.metric, bounds)

    def shortfall(self, current: WindowResult, history: Sequence[HistoryPoint]) -> Shortfall | None:
        if self.bounds(current=current, history=history) is not None:
            return None
        return StdBandShortfall(MIN_STD_BAND_POINTS)


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
        return Bounds(
            self.min, self.max, None, IntervalBasis(self.metric, self.confidence, low, high, self.min, self.max)
        )

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
