"""Data-quality rules: null rate, out-of-range share, unseen categories and volume (pure: no I/O).

Judged on the run's own (newest) window without waiting for labels: its feature profile against the
reference (``WindowResult.quality``, computed for the fresh window of every run when these rules are
enabled) and the stored volumes of the same window on previous days. They page (critical by default).
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from modelwatch.core.result import WindowResult
from modelwatch.core.rootcause import IMPORTANCE_MIN
from modelwatch.core.rules import (
    RuleEvaluation,
    RuleStatus,
    RunInput,
    inside_margin,
    newest_first,
    one_judgement,
    rule_base,
    window_fields,
)
from modelwatch.core.thresholds import Bounds
from modelwatch.core.windows import as_utc

DATA_QUALITY = "data_quality"
NULL_RATE = "null_rate"
OUT_OF_RANGE = "out_of_range"
NEW_CATEGORIES = "new_categories"
VOLUME = "volume"


def _importance(window: WindowResult) -> dict[str, float | None]:
    return {f.feature: f.importance for f in window.drift if f.segment is None}


def _quality_rule(
    run: RunInput, window: WindowResult, kind: str, observed: dict[str, float], limit: float, unit: str
) -> RuleEvaluation:
    rules = run.monitor.operational.data_quality
    base = rule_base(run, kind, f"{DATA_QUALITY}:{rules.severity}", DATA_QUALITY, rules.severity)
    worst = max(observed.values(), default=0.0)
    breaching = sorted((f for f, v in observed.items() if v >= limit), key=lambda f: -observed[f])
    bounds = Bounds(None, limit, None)
    clear = inside_margin(worst, bounds, run.monitor.operational.policy.resolve_margin)
    status = RuleStatus.BREACH if breaching else RuleStatus.HEALTHY
    named = ", ".join(f"{f} {observed[f]:.1%}" for f in breaching) or "none"
    description = f"{unit} of features that matter must stay below {limit:.0%}; breaching: {named}"
    return RuleEvaluation(
        **base,
        **window_fields(window, run.as_of),
        status=status,
        value=worst,
        upper=limit,
        description=description,
        within_margin=clear,
        judgements=one_judgement(window, status, clear),
    )


def _profiled_quality(run: RunInput, window: WindowResult) -> list[RuleEvaluation]:
    rules = run.monitor.operational.data_quality
    importance = _importance(window)
    matters = [
        q for q in window.quality if importance.get(q.feature) is None or importance[q.feature] >= IMPORTANCE_MIN
    ]  # type: ignore[operator]
    nulls = {
        q.feature: q.null_rate - q.reference_null_rate
        for q in matters
        if q.null_rate is not None and q.reference_null_rate is not None
    }
    out = {q.feature: q.out_of_range_rate for q in matters if q.out_of_range_rate is not None}
    new = {q.feature: q.new_category_rate for q in matters if q.new_category_rate is not None}
    return [
        _quality_rule(run, window, NULL_RATE, nulls, rules.null_rate_increase, "null-rate increase"),
        _quality_rule(run, window, OUT_OF_RANGE, out, rules.out_of_range_rate, "share outside the reference range"),
        _quality_rule(run, window, NEW_CATEGORIES, new, rules.new_category_rate, "share in unseen categories"),
    ]


def _volume(run: RunInput, window: WindowResult) -> RuleEvaluation:
    rules = run.monitor.operational.data_quality
    base = rule_base(run, VOLUME, f"{DATA_QUALITY}:{rules.severity}", DATA_QUALITY, rules.severity)
    days = run.monitor.reference.days
    same_window = {as_utc(window.window_start) - timedelta(days=d) for d in range(1, days + 1)}
    volumes = [p.predictions for p in run.history if as_utc(p.window_start) in same_window]
    predictions = window.counts.predictions
    if predictions == 0 or len(volumes) < rules.min_volume_days:
        reason = (
            "no predictions (traffic_stopped judges that)"
            if predictions == 0
            else f"volume needs the same window on >= {rules.min_volume_days} earlier days, has {len(volumes)}"
        )
        return RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description=reason)
    typical = statistics.median(volumes)
    low, high = rules.volume_ratio
    bounds = Bounds(low * typical, high * typical, typical)
    status = RuleStatus.HEALTHY if bounds.contains(predictions) else RuleStatus.BREACH
    clear = inside_margin(float(predictions), bounds, run.monitor.operational.policy.resolve_margin)
    description = (
        f"predictions must stay within {low:g}x-{high:g}x the median {typical:g} of the same window "
        f"on the {len(volumes)} previous days"
    )
    return RuleEvaluation(
        **base,
        **window_fields(window, run.as_of),
        status=status,
        value=float(predictions),
        lower=bounds.lower,
        upper=bounds.upper,
        baseline=typical,
        description=description,
        within_margin=clear,
        judgements=one_judgement(window, status, clear),
    )


def data_quality_evaluations(run: RunInput) -> list[RuleEvaluation]:
    """Null rate, out-of-range share, unseen categories and volume of the run's own (newest) window.

    Judged without labels, on the window's feature profile (computed for the fresh window of every run
    when these rules are enabled); a window without a profile or with too few rows is insufficient.
    """
    rules = run.monitor.operational.data_quality
    if not rules.enabled or not run.results:
        return []
    window = newest_first(run.results)[0]
    evaluations: list[RuleEvaluation] = []
    if not run.monitor.predictions.features:
        pass
    elif window.quality and window.counts.predictions >= rules.min_rows:
        evaluations = _profiled_quality(run, window)
    else:
        reason = f"fewer than {rules.min_rows} predictions" if window.quality else "window not profiled"
        for kind in (NULL_RATE, OUT_OF_RANGE, NEW_CATEGORIES):
            rule_id = f"{DATA_QUALITY}:{rules.severity}"
            base = rule_base(run, kind, rule_id, DATA_QUALITY, rules.severity)
            evaluations.append(RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description=reason))
    return [*evaluations, _volume(run, window)]
