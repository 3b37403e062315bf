"""Label-free rules: feature drift, score drift, predicted-positive rate and estimated metrics (pure).

Each rule of ``monitor.label_free`` judges the run's fresh window (revision 0) on what the pipeline
profiled without labels: ``WindowResult.drift`` (features, overall and within segments),
``WindowResult.signals`` (score, positive rate, multivariate) and ``WindowResult.estimated`` with its
band. They feed the same lifecycle as the metric checks (their own M-of-N, resolve and severity).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelwatch.core.config import LabelFreeRule
from modelwatch.core.label_free import POSITIVE_RATE, SCORE_FEATURE
from modelwatch.core.multivariate import MULTIVARIATE
from modelwatch.core.result import DriftFinding, WindowResult
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


@dataclass(frozen=True)
class _Reading:
    """What one rule read off the window: the value judged, its bound and what to say."""

    value: float | None
    bounds: Bounds | None
    breach: bool
    description: str
    finding: DriftFinding | None = None


def _in_segment(finding: DriftFinding, segment: str | None) -> bool:
    if segment is None:
        return finding.segment is None
    if "=" in segment:
        return finding.segment == segment
    return finding.segment is not None and finding.segment.split("=", 1)[0] == segment


def _watched(rule: LabelFreeRule, window: WindowResult) -> list[str]:
    if rule.features:
        return list(rule.features)
    # Importance is measured on the reference (|corr| with the score), the same for every segment.
    overall = {f.feature: f.importance or 0.0 for f in window.drift if f.segment is None}
    return sorted(overall, key=lambda f: -overall[f])[: rule.top_k]


def _worst(findings: list[DriftFinding], threshold: float, what: str) -> _Reading:
    if not findings:
        return _Reading(None, None, False, f"nothing profiled for {what} in the window")
    worst = max(findings, key=lambda f: f.score or 0.0)
    bounds = Bounds(None, threshold, None)
    where = f" in {worst.segment}" if worst.segment else ""
    drifted = sorted((f for f in findings if (f.score or 0.0) >= threshold), key=lambda f: -(f.score or 0.0))
    named = ", ".join(f"{f.feature}{' in ' + f.segment if f.segment else ''} {f.score:.3g}" for f in drifted[:3])
    text = f"{worst.method} of {what} must stay below {threshold:g}; worst {worst.feature}{where} {worst.score:.3g}"
    return _Reading(worst.score, bounds, bool(drifted), text + (f" (drifted: {named})" if drifted else ""), worst)


def _feature_drift(rule: LabelFreeRule, window: WindowResult) -> _Reading:
    watched = set(_watched(rule, window))
    findings = [
        f
        for f in window.drift
        if f.method == rule.method and f.feature in watched and f.score is not None and _in_segment(f, rule.segment)
    ]
    what = ", ".join(sorted(watched)) if rule.features else f"the top {rule.top_k} features by importance"
    if rule.segment:
        what += f" within {rule.segment}"
    return _worst(findings, rule.threshold or 0.0, what)


def _signal(window: WindowResult, feature: str, method: str) -> DriftFinding | None:
    return next((s for s in window.signals if s.feature == feature and s.method == method), None)


def _score_drift(rule: LabelFreeRule, window: WindowResult) -> _Reading:
    finding = _signal(window, SCORE_FEATURE, rule.method)
    return _worst([finding] if finding and finding.score is not None else [], rule.threshold or 0.0, "the score")


def _multivariate(rule: LabelFreeRule, window: WindowResult) -> _Reading:
    finding = next((s for s in window.signals if s.feature == MULTIVARIATE and s.score is not None), None)
    return _worst([finding] if finding else [], rule.threshold or 0.0, "the joint feature distribution")


def _positive_rate(rule: LabelFreeRule, window: WindowResult) -> _Reading:
    finding = _signal(window, POSITIVE_RATE, POSITIVE_RATE)
    if finding is None:
        return _Reading(None, None, False, "no reference score histogram for the window yet")
    before, now = finding.reference_summary["rate"], finding.current_summary["rate"]
    limit = rule.max_change or 0.0
    text = f"the predicted-positive share must stay within {limit:.1%} of the reference's {before:.1%}; now {now:.1%}"
    bounds = Bounds(before - limit, before + limit, before)
    return _Reading(now, bounds, not bounds.contains(now), text, finding)


def _estimated(rule: LabelFreeRule, window: WindowResult) -> _Reading:
    metric = rule.metric or ""
    estimate = window.estimated.get(metric)
    band = window.estimated_bands.get(metric)
    if estimate is None or estimate.value is None or band is None:
        reason = (estimate.reason if estimate else None) or "no calibrated estimate (no labelled reference yet)"
        return _Reading(None, None, False, reason)
    low, high = band
    bounds = Bounds(rule.min, rule.max, None)
    # The band lies wholly outside the bound: the labels, when they land, should breach it too.
    breach = (rule.min is not None and high < rule.min) or (rule.max is not None and low > rule.max)
    limits = " and ".join(
        f"{sign} {bound:g}" for sign, bound in ((">=", rule.min), ("<=", rule.max)) if bound is not None
    )
    text = (
        f"estimated {metric} {estimate.value:.3f} (band {low:.3f}-{high:.3f}, calibrated on the reference's labels) "
        f"must not lie wholly outside {limits}; an estimate sees covariate shift, not concept drift"
    )
    return _Reading(estimate.value, bounds, bool(breach), text)


_READERS = {
    "feature_drift": _feature_drift,
    "score_drift": _score_drift,
    "positive_rate": _positive_rate,
    "estimated": _estimated,
    "multivariate_drift": _multivariate,
}


def _evaluate(run: RunInput, rule: LabelFreeRule, window: WindowResult | None) -> RuleEvaluation:
    base = rule_base(run, rule.signal, rule.rule_id, rule.type, rule.severity)
    if window is None:
        return RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description="no fresh window in this run")
    if window.counts.predictions < rule.min_rows:
        reason = f"fewer than {rule.min_rows} predictions in the fresh window"
        return RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description=reason)
    reading = _READERS[rule.type](rule, window)
    if reading.bounds is None or reading.value is None:
        return RuleEvaluation(**base, status=RuleStatus.INSUFFICIENT, description=reading.description)
    status = RuleStatus.BREACH if reading.breach else RuleStatus.HEALTHY
    clear = not reading.breach and inside_margin(reading.value, reading.bounds, rule.resolve_margin)
    return RuleEvaluation(
        **base,
        **window_fields(window, run.as_of),
        status=status,
        value=reading.value,
        lower=reading.bounds.lower,
        upper=reading.bounds.upper,
        baseline=reading.bounds.baseline,
        description=reading.description,
        within_margin=clear,
        judgements=one_judgement(window, status, clear),
    )


def label_free_evaluations(run: RunInput) -> list[RuleEvaluation]:
    """Every rule of ``monitor.label_free``, judged on the run's fresh window at revision 0."""
    if not run.monitor.label_free:
        return []
    fresh = [r for r in newest_first(run.results) if r.revision == 0]
    window = fresh[0] if fresh else None
    return [_evaluate(run, rule, window) for rule in run.monitor.label_free]
