"""Render a computed :class:`WindowResult` as one self-contained HTML page (Jinja2, autoescaped).

A renderer only (Evidently's calculation -> result -> renderer): it reads the typed result and the
rule evaluations, never recomputes metrics and performs no I/O; the caller decides where the bytes
go (the MLflow run's artifacts). The page leads with what the paged person needs: the verdict and
the status of every rule (breach / ok / insufficient data, with the effective bound, the baseline
and the rule), then the root cause in plain words with its evidence, then the details.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from modelwatch.core.config import MonitorConfig
from modelwatch.core.metric_registry import primary_metric
from modelwatch.core.result import DriftFinding, HistoryPoint, SegmentRow, WindowResult
from modelwatch.core.rules import RuleEvaluation, RuleStatus
from modelwatch.core.stats import BinaryStats, ScoreHistogram
from modelwatch.render.charts import BarChart, feature_chart, score_chart
from modelwatch.render.formatting import fmt_number, fmt_share, fmt_short
from modelwatch.render.timeline import render_timeline_png

__all__ = [
    "fmt_number", "fmt_share", "fmt_short", "history_point", "render_html", "render_timeline_png",
    "threshold_text", "with_window",
]  # fmt: skip

TOP_DRIFTED = 3
"""Features drawn as current-vs-reference histograms."""
IMPORTANT = 0.1
"""A feature whose importance (|corr| with the score) reaches this counts as one that matters."""
TEMPLATES = Path(__file__).resolve().parent / "templates"

_STATUS = {RuleStatus.BREACH: "breach", RuleStatus.HEALTHY: "ok", RuleStatus.INSUFFICIENT: "insufficient data"}
"""A rule's status as the page words it (a rule row's status)."""
_STATUS_RANK = {"breach": 3, "insufficient data": 2, "ok": 1}


# --- rules and statuses -------------------------------------------------------------------------


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


@dataclass(frozen=True)
class RuleRow:
    metric: str
    rule: str
    severity: str
    status: str
    """'breach', 'ok' or 'insufficient data'."""
    value: str
    bound: str
    baseline: str
    description: str


def bound_text(lower: float | None, upper: float | None) -> str:
    if lower is not None and upper is not None:
        return f"[{fmt_number(lower)}, {fmt_number(upper)}]"
    if lower is not None:
        return f">= {fmt_number(lower)}"
    return f"<= {fmt_number(upper)}" if upper is not None else "n/a"


def rule_rows(evaluations: Sequence[RuleEvaluation]) -> list[RuleRow]:
    """Breaches first, then insufficient data, then ok."""
    rows = [
        RuleRow(
            metric=str(ev.metric),
            rule=str(ev.rule_id),
            severity=str(ev.severity or "-"),
            status=_STATUS[ev.status],
            value=fmt_number(ev.value),
            bound=bound_text(ev.lower, ev.upper),
            baseline=fmt_number(ev.baseline),
            description=ev.description,
        )
        for ev in evaluations
    ]
    return sorted(rows, key=lambda r: -_STATUS_RANK.get(r.status, 0))


def overall_status(rows: Sequence[RuleRow]) -> str:
    """'breach' if any rule breaches, 'ok' if one passes and none breaches, else 'insufficient data'."""
    statuses = {r.status for r in rows}
    if "breach" in statuses:
        return "breach"
    return "ok" if "ok" in statuses else "insufficient data"


def metric_status(name: str, value: float | None, rows: Sequence[RuleRow]) -> str:
    """The Status cell of a metric row: never empty."""
    mine = [r.status for r in rows if r.metric == name]
    if mine:
        return max(mine, key=lambda s: _STATUS_RANK.get(s, 0))
    return "undefined" if value is None else "not checked"


# --- root cause in plain words -----------------------------------------------------------------


@dataclass(frozen=True)
class FeatureShift:
    feature: str
    segment: str | None
    kind: str
    importance: float | None
    psi: float | None
    methods: tuple[str, ...]
    """The methods that flag it (psi, ks, js, wasserstein, chi2)."""
    sentence: str
    reference: dict[str, Any]
    current: dict[str, Any]


def _move_words(finding: DriftFinding) -> str:
    ref, cur = finding.reference_summary, finding.current_summary
    if finding.kind == "numeric" and ref.get("mean") is not None and cur.get("mean") is not None:
        return f"{finding.feature} mean {fmt_short(ref['mean'])} -> {fmt_short(cur['mean'])}"
    ref_top, cur_top = ref.get("top") or {}, cur.get("top") or {}
    ref_n, cur_n = ref.get("n") or 0, cur.get("n") or 0
    if ref_n and cur_n and (ref_top or cur_top):
        moves = {k: cur_top.get(k, 0) / cur_n - ref_top.get(k, 0) / ref_n for k in {*ref_top, *cur_top}}
        key = max(sorted(moves), key=lambda k: abs(moves[k]))
        return (
            f"{finding.feature} '{key}' {fmt_share(ref_top.get(key, 0) / ref_n)} -> "
            f"{fmt_share(cur_top.get(key, 0) / cur_n)}"
        )
    return f"{finding.feature} changed"


def feature_shifts(drift: Sequence[DriftFinding]) -> list[FeatureShift]:
    """Drifted (feature, segment) pairs, most important and most shifted first, each in one sentence
    such as ``support_calls mean 2.1 -> 4.3 in region=EU (PSI 7.4)``."""
    groups: dict[tuple[str, str | None], list[DriftFinding]] = {}
    for finding in drift:
        groups.setdefault((finding.feature, finding.segment), []).append(finding)
    shifts = []
    for (feature, segment), findings in groups.items():
        flagged = tuple(f.method for f in findings if f.drifted)
        if not flagged:
            continue
        psi = next((f.score for f in findings if f.method == "psi"), None)
        first = next(f for f in findings if f.drifted)
        where = f" in {segment}" if segment else ""
        score = f"PSI {fmt_short(psi)}" if psi is not None else f"{first.method} {fmt_short(first.score)}"
        shifts.append(
            FeatureShift(
                feature=feature,
                segment=segment,
                kind=first.kind,
                importance=first.importance,
                psi=psi,
                methods=flagged,
                sentence=f"{_move_words(first)}{where} ({score}; flagged by {', '.join(flagged)})",
                reference=first.reference_summary,
                current=first.current_summary,
            )
        )
    return sorted(shifts, key=lambda s: (-(s.importance or 0.0), -(s.psi or 0.0), s.feature, s.segment or ""))


@dataclass(frozen=True)
class CauseView:
    verdict: str
    summary: str
    main: str
    """The main cause in one sentence."""
    others: tuple[str, ...]
    """Other causes present (e.g. an important feature that drifted under a concept-drift verdict)."""
    evidence: tuple[str, ...]
    top_features: str
    top_segment: str


def cause_view(result: WindowResult, shifts: Sequence[FeatureShift]) -> CauseView | None:
    """The root cause with the evidence that supports it and every other cause the drift table shows.

    Never lets a page read "inputs stable" above its own drift table: an important feature that
    drifted is listed as another cause whatever the verdict.
    """
    rc = result.root_cause
    if rc is None:
        return None
    important = [s for s in shifts if (s.importance or 0.0) >= IMPORTANT]
    named = set(rc.top_features)
    main = rc.summary
    if rc.verdict == "data_drift" and shifts:
        # The shift the verdict names, where it names it (its segment) before the same feature overall.
        ranked = sorted(shifts, key=lambda s: (s.feature not in named, s.segment != rc.top_segment, -(s.psi or 0.0)))
        lead = ranked[0]
        main = f"Data drift: {lead.sentence}"
    others = [f"Input shift: {s.sentence}" for s in important if rc.verdict != "data_drift" or s.feature not in named]
    if others and "stable" in main:
        # The summary's claim that inputs are stable is contradicted by the drift table: keep its cause only.
        main = re.split(r",? while [^,;]*stable", main)[0]
    return CauseView(
        verdict=rc.verdict,
        summary=rc.summary,
        main=main,
        others=tuple(dict.fromkeys(others)),
        evidence=rc.evidence,
        top_features=", ".join(rc.top_features) or "-",
        top_segment=rc.top_segment or "-",
    )


def _feature_chart(shift: FeatureShift) -> BarChart | None:
    where = f" in {shift.segment}" if shift.segment else ""
    return feature_chart(f"{shift.feature}{where}", shift.kind, shift.reference, shift.current)


# --- tables -------------------------------------------------------------------------------------


def segment_impact(segment: SegmentRow) -> float:
    """How much of the primary metric's change a segment explains (within + mix, in absolute value)."""
    return abs(segment.within_contribution or 0.0) + abs(segment.mix_contribution or 0.0)


def _metric_rows(result: WindowResult, monitor: MonitorConfig, rules: Sequence[RuleRow]) -> list[dict[str, str]]:
    rows = []
    for name, mv in result.metrics.items():
        rows.append(
            {
                "name": name,
                "value": fmt_number(mv.value),
                "status": metric_status(name, mv.value, rules),
                "thresholds": "; ".join(threshold_text(monitor, name)) or "-",
                "reason": mv.reason or "",
            }
        )
    for name, mv in result.estimated.items():
        band = result.estimated_bands.get(name)
        # Judged only by an 'estimated' label-free rule; otherwise context beside the realised value.
        rows.append(
            {
                "name": f"estimated {name}",
                "value": fmt_number(mv.value) + (f" [{fmt_number(band[0])}, {fmt_number(band[1])}]" if band else ""),
                "status": "estimate",
                "thresholds": "; ".join(_estimate_rules(monitor, name)) or "-",
                "reason": ESTIMATE_CALIBRATED if band else ESTIMATE_RAW,
            }
        )
    return rows


ESTIMATE_CALIBRATED = (
    "from all rows' scores, calibrated on the reference's labels; the band is where the realised value should "
    "fall (sampling error). It sees covariate shift the calibration covers, not concept drift."
)
ESTIMATE_RAW = "from scores alone, read as probabilities (no labelled reference to calibrate on yet)"


def _estimate_rules(monitor: MonitorConfig, metric: str) -> list[str]:
    return [
        f"rule 'estimated': the band must reach {bound_text(r.min, r.max)} ({r.severity})"
        for r in monitor.label_free
        if r.type == "estimated" and r.metric == metric
    ]


def _count_rows(result: WindowResult) -> list[tuple[str, str]]:
    counts = result.counts.to_dict()
    coverage = counts.pop("label_coverage")
    return [("label_coverage", fmt_share(coverage)), *((k, fmt_number(int(v))) for k, v in counts.items())]


def _segment_rows(result: WindowResult, primary: str) -> list[dict[str, str]]:
    rows = []
    for s in sorted(result.segments, key=lambda s: (-segment_impact(s), s.column, s.value)):
        rows.append(
            {
                "segment": f"{s.column}={s.value}",
                "predictions": fmt_number(s.predictions),
                "labelled": fmt_number(s.labelled),
                "share": fmt_share(s.share),
                "reference_share": fmt_share(s.reference_share),
                "metric": fmt_number(s.metrics.get(primary)),
                "reference_metric": fmt_number(s.reference_metrics.get(primary)),
                "within": fmt_number(s.within_contribution),
                "mix": fmt_number(s.mix_contribution),
                "impact": fmt_number(segment_impact(s)),
            }
        )
    return rows


def _drift_rows(result: WindowResult) -> list[dict[str, str]]:
    ordered = sorted(result.drift, key=lambda d: (not d.drifted, -(d.importance or 0.0), d.feature, d.segment or ""))
    return [
        {
            "feature": d.feature,
            "segment": d.segment or "all",
            "method": d.method,
            "score": fmt_number(d.score),
            "threshold": fmt_number(d.threshold),
            "status": "breach" if d.drifted else "ok",
            "p_value": fmt_number(d.p_value),
            "importance": fmt_number(d.importance),
        }
        for d in ordered
    ]


def _quality_rows(result: WindowResult) -> list[dict[str, str]]:
    return [
        {
            "feature": q.feature,
            "null_rate": fmt_share(q.null_rate),
            "reference_null_rate": fmt_share(q.reference_null_rate),
            "out_of_range": fmt_share(q.out_of_range_rate),
            "new": ", ".join(q.new_categories) or "-",
            "vanished": ", ".join(q.vanished_categories) or "-",
            "type_changed": "yes" if q.type_changed else "no",
            "issue": q.issue or "-",
        }
        for q in result.quality
    ]


def headline(status: str, rules: Sequence[RuleRow]) -> str:
    breaches = [r for r in rules if r.status == "breach"]
    if breaches:
        return "; ".join(f"{r.metric} {r.value} breaches {r.rule} ({r.bound})" for r in breaches)
    if status == "ok":
        return "Every rule that could judge this window passes."
    return "Not enough labelled data to judge this window yet: neither an alert nor a pass."


# --- page ---------------------------------------------------------------------------------------


@cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, **context: Any) -> str:
    """Render one of modelwatch's templates (every value autoescaped)."""
    return _environment().get_template(name).render(**context)


def render_html(
    result: WindowResult,
    *,
    monitor: MonitorConfig,
    history: Sequence[HistoryPoint] = (),
    evaluations: Sequence[RuleEvaluation] = (),
    reference_histogram: ScoreHistogram | None = None,
    timeline_png: bytes | None = None,
    incidents: Sequence[dict[str, str]] = (),
) -> str:
    """One self-contained HTML page (inline CSS, SVG and images, no external assets) for one window.

    Args:
        result: The computed window.
        monitor: Its monitor config (thresholds come from ``monitor.checks``).
        history: Past windows for the time line (the current window is added to it).
        evaluations: Rule evaluations of this window (``modelwatch.core.alerts.RuleEvaluation``).
        reference_histogram: The reference windows' score histogram (binary tasks).
        timeline_png: An already rendered time line, so callers that also store the PNG render it once.
        incidents: The alert incidents the window belongs to (``corroboration.incident_rows``): label-free
            ones with what the labels said of them, realised ones with the signal that fired first.

    Returns:
        The HTML document; every piece of text from the result or config is escaped by Jinja2.
    """
    if timeline_png is None:
        timeline_png = render_timeline_png(with_window(history, result), monitor=monitor)
    png = timeline_png
    rules = rule_rows(evaluations)
    status = overall_status(rules)
    shifts = feature_shifts(result.drift)
    overall = [s for s in shifts if s.segment is None][:TOP_DRIFTED]
    worst = result.root_cause.top_segment if result.root_cause else None
    in_segment = [s for s in shifts if worst and s.segment == worst][:TOP_DRIFTED]
    primary = primary_metric(monitor.task)  # the metric segment rows carry, not the first check's
    has_scores = isinstance(result.stats.task_stats, BinaryStats)
    return render_template(
        "report.html.j2",
        result=result,
        window=f"{result.window_start:%Y-%m-%d %H:%M} to {result.window_end:%Y-%m-%d %H:%M} UTC",
        versions=", ".join(result.stats.model_versions) or "n/a",
        config_hash=result.config_hash or monitor.config_hash,
        status=status,
        headline=headline(status, rules),
        rules=rules,
        incidents=list(incidents),
        cause=cause_view(result, shifts),
        metrics=_metric_rows(result, monitor, rules),
        counts=_count_rows(result),
        segments=_segment_rows(result, primary),
        primary=primary,
        feature_charts=[c for c in map(_feature_chart, [*overall, *in_segment]) if c is not None],
        score_chart=score_chart(result.stats.task_stats.histogram, reference_histogram) if has_scores else None,
        has_scores=has_scores,
        has_reference=reference_histogram is not None and len(reference_histogram.keys) > 0,
        timeline=base64.b64encode(png).decode(),
        drift=_drift_rows(result),
        quality=_quality_rows(result),
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


def verdict_text(result: WindowResult, evaluations: Sequence[RuleEvaluation]) -> str:
    """The window's verdict in a few Markdown lines, as the report's first lines say it (MLflow's run
    description, the Airflow run's note)."""
    rows = rule_rows(evaluations)
    status = overall_status(rows) if rows else "not evaluated"
    lines = [
        f"**{status}**: {result.cadence} window {result.window_start:%Y-%m-%d %H:%M} UTC "
        f"({result.status}, revision {result.revision}, {fmt_share(result.label_coverage)} labelled)",
        "",
        headline(status, rows) if rows else "No rule was evaluated for this revision.",
    ]
    if result.root_cause is not None:
        lines += ["", f"Root cause: **{result.root_cause.verdict}**: {result.root_cause.summary}"]
    return "\n".join(lines)
