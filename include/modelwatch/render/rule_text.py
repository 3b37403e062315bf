"""Rules and durations in words, from the configuration alone (pure, light: read at DAG-parse time).

A metric's direction comes from :mod:`modelwatch.core.metric_registry`; numbers and durations are written
as in the evaluations' messages (:mod:`modelwatch.core.rule_messages`).
"""

from __future__ import annotations

from modelwatch.core.config import Rule
from modelwatch.core.metric_registry import lower_is_better
from modelwatch.core.rule_messages import duration_text, number

__all__ = ["duration_text", "number", "rule_summary"]


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
    return f"{rule.type}: {what} -> {rule.severity}"
