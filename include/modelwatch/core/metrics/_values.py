"""Small constructors shared by the metric modules: a value, or None with a reason (never 0)."""

from __future__ import annotations

import math

from modelwatch.core.result import MetricValue


def undefined(name: str, reason: str) -> MetricValue:
    """A metric that the data does not define, with a short human reason."""
    return MetricValue(name, None, reason)


def defined(name: str, value: float, reason_if_nan: str) -> MetricValue:
    """Wrap a computed float; a NaN/inf (e.g. from a vectorised 0/0) becomes None with ``reason_if_nan``."""
    value = float(value)
    return MetricValue(name, value) if math.isfinite(value) else undefined(name, reason_if_nan)


def ratio(name: str, numerator: float, denominator: float, reason: str) -> MetricValue:
    """``numerator / denominator``, or None with ``reason`` when the denominator is 0."""
    if denominator == 0:
        return undefined(name, reason)
    return MetricValue(name, float(numerator) / float(denominator))
