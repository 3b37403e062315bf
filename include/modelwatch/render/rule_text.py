"""Rules and durations in words, from the configuration alone (pure, light: read at DAG-parse time).

Also the one definition of a metric's direction (:func:`lower_is_better`), which the thresholds use.
"""

from __future__ import annotations

from datetime import timedelta

from modelwatch.core.config import Rule

ERROR_METRIC_SUFFIXES = ("_error", "mae", "mse", "rmse", "mape", "log_loss", "brier", "ece")
"""Metrics whose bad direction is UP (lower is better)."""


def lower_is_better(metric: str) -> bool:
    """True for error-like metrics (``mae``, ``log_loss``, ``*_error``...), whose bad direction is up."""
    return metric.lower().endswith(ERROR_METRIC_SUFFIXES)


def number(value: float) -> str:
    """Four significant digits: 0.8, 0.8123, 8.617."""
    return f"{value:.4g}"


def duration_text(span: timedelta) -> str:
    """'7d', '24h' or '90m' (never Python's '1 day, 0:00:00')."""
    minutes = int(span.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _bound_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"in [{number(low)}, {number(high)}]"
    return f">= {number(low)}" if low is not None else f"<= {number(high)}"  # type: ignore[arg-type]


def _baseline_text(rule: Rule, metric: str) -> str:
    assert rule.baseline is not None and rule.max_drop is not None  # guaranteed by Rule's validator
    allowed = f"{rule.max_drop:.0%}" if rule.relative else number(rule.max_drop)
    up = lower_is_better(metric)
    sign = "+" if up else "-"
    source = rule.baseline
    if source.value is not None:
        drop = rule.max_drop * abs(source.value) if rule.relative else rule.max_drop
        bound = source.value + drop if up else source.value - drop
        return f"{'<=' if up else '>='} {number(bound)} (fixed baseline {number(source.value)} {sign} {allowed})"
    if source.rolling is not None:
        return f"rolling {duration_text(source.rolling)} mean {sign} {allowed}"
    return f"mean of {source.start:%Y-%m-%d %H:%M}..{source.end:%Y-%m-%d %H:%M} {sign} {allowed}"


def rule_summary(rule: Rule, metric: str) -> str:
    """What a rule asks of ``metric``, with its effective bound when the configuration alone fixes it,
    e.g. 'baseline_drop: >= 0.81 (fixed baseline 0.86 - 0.05) -> warning'."""
    if rule.type == "absolute":
        what = _bound_text(rule.min, rule.max)
    elif rule.type == "bootstrap_ci":
        what = f"{rule.confidence:.0%} interval {_bound_text(rule.min, rule.max)}"
    elif rule.type == "std_band":
        what = f"within {number(rule.k)} std of the last {rule.lookback_windows} windows"
    else:
        what = _baseline_text(rule, metric)
    return f"{rule.type}: {what} -> {rule.severity.value}"
