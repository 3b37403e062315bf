"""Typed results: computed once, then handed to MLflow, the warehouse, Slack, PagerDuty and the report.

``WindowResult.to_json_dict()`` is the object ``modelwatch evaluate --json`` prints and the
``result.json`` artifact of every MLflow run; its top-level keys are a stable interface.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from modelwatch.core.config import Cadence, Status, Task
from modelwatch.core.stats import JoinCounts, WindowStats
from modelwatch.core.windows import Window


@dataclass(frozen=True)
class MetricValue:
    """A metric's value, or None with the reason it is undefined (never 0 in its place)."""

    name: str
    value: float | None
    reason: str | None = None


@dataclass(frozen=True)
class DriftFinding:
    """One feature compared between the reference and the current window by one method."""

    feature: str
    kind: str
    """'numeric' or 'categorical'."""
    method: str
    """'psi', 'ks', 'js', 'wasserstein', 'chi2'."""
    score: float | None
    threshold: float
    drifted: bool
    p_value: float | None = None
    segment: str | None = None
    """None for the whole window, else 'column=value'."""
    importance: float | None = None
    """How much the score depends on the feature in the reference (|correlation| or eta)."""
    reference_summary: dict[str, Any] = field(default_factory=dict)
    current_summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FeatureQuality:
    feature: str
    null_rate: float | None
    reference_null_rate: float | None
    out_of_range_rate: float | None
    """Share of current numeric values outside the reference's [min, max]."""
    new_categories: tuple[str, ...] = ()
    vanished_categories: tuple[str, ...] = ()
    type_changed: bool = False
    new_category_rate: float | None = None
    """Categorical: share of current non-null values in categories the reference never had."""
    issue: str | None = None
    """A short sentence when this feature has a data-quality problem, else None."""


@dataclass(frozen=True)
class SegmentRow:
    column: str
    value: str
    predictions: int
    labelled: int
    metrics: dict[str, float | None]
    reference_metrics: dict[str, float | None] = field(default_factory=dict)
    reference_share: float | None = None
    share: float | None = None
    within_contribution: float | None = None
    """Part of the primary metric's change explained by this segment getting worse/better."""
    mix_contribution: float | None = None
    """Part explained by this segment's share of traffic moving."""
    score_shift: float | None = None
    """Mean prediction (score) now minus in the reference: where the inputs moved, even without a loss."""


@dataclass(frozen=True)
class RootCause:
    verdict: str
    """'data_drift', 'concept_drift', 'segment_shift', 'data_quality', 'label_pipeline', 'unknown' or 'healthy'."""
    summary: str
    top_features: tuple[str, ...] = ()
    top_segment: str | None = None
    evidence: tuple[str, ...] = ()


@dataclass(frozen=True)
class WindowResult:
    monitor: str
    model: str
    task: Task
    cadence: Cadence
    window_start: datetime
    window_end: datetime
    as_of: datetime
    """Labels that arrived after this instant are not counted (re-runs reproduce the same result)."""
    status: Status
    revision: int
    stats: WindowStats
    metrics: dict[str, MetricValue]
    estimated: dict[str, MetricValue] = field(default_factory=dict)
    """Performance estimated from scores alone (before labels), e.g. 'roc_auc'."""
    estimated_bands: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Metric -> the band its realised value should fall in (sampling error of the window and of the
    reference's calibration); empty when the estimate is uncalibrated (no labelled reference)."""
    calibration: dict[str, Any] | None = None
    """The score -> positive-rate map the estimate used (``metrics.calibration.Calibration.to_dict``),
    fitted on the reference windows' labelled rows; None when uncalibrated."""
    signals: tuple[DriftFinding, ...] = ()
    """Label-free signals of the run's fresh window beyond feature drift: score drift (feature 'score'),
    the predicted-positive rate change (method 'positive_rate'), multivariate drift."""
    drift: tuple[DriftFinding, ...] = ()
    quality: tuple[FeatureQuality, ...] = ()
    segments: tuple[SegmentRow, ...] = ()
    root_cause: RootCause | None = None
    findings: tuple[str, ...] = ()
    """Window-level findings such as 'labels stalled'."""
    config_hash: str = ""

    def __post_init__(self) -> None:
        # Parsed once here, so a result built from stored text compares and serialises like a computed one.
        object.__setattr__(self, "task", Task(self.task))
        object.__setattr__(self, "cadence", Cadence(self.cadence))
        object.__setattr__(self, "status", Status(self.status))

    @property
    def window(self) -> Window:
        return Window(self.window_start, self.window_end, self.cadence)

    @property
    def counts(self) -> JoinCounts:
        return self.stats.counts

    @property
    def label_coverage(self) -> float | None:
        return self.stats.counts.label_coverage

    @property
    def age_hours(self) -> float:
        return (self.as_of - self.window_end).total_seconds() / 3600

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON view; a non-finite float anywhere in it is ``None`` (JSON has no NaN or Infinity)."""
        return _finite_json(self._json_view())

    def _json_view(self) -> dict[str, Any]:
        return {
            "monitor": self.monitor,
            "model": self.model,
            "task": self.task.value,
            "cadence": self.cadence.value,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "as_of": self.as_of.isoformat(),
            "status": self.status.value,
            "revision": self.revision,
            "age_hours": round(self.age_hours, 3),
            "model_versions": list(self.stats.model_versions),
            "counts": self.stats.counts.to_dict(),
            "metrics": {name: m.value for name, m in self.metrics.items()},
            "metric_reasons": {name: m.reason for name, m in self.metrics.items() if m.reason},
            "estimated": {name: m.value for name, m in self.estimated.items()},
            "estimated_bands": {name: list(band) for name, band in self.estimated_bands.items()},
            "signals": [asdict(s) for s in self.signals],
            "calibration": self.calibration,
            "drift": [asdict(d) for d in self.drift],
            "quality": [asdict(q) for q in self.quality],
            "segments": [asdict(s) for s in self.segments],
            "root_cause": asdict(self.root_cause) if self.root_cause else None,
            "findings": list(self.findings),
            "config_hash": self.config_hash,
        }


def _finite_json(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_json(v) for v in value]
    return value


@dataclass(frozen=True)
class HistoryPoint:
    """A past window's latest revision, as stored in the results table (for baselines, bands, M-of-N)."""

    window_start: datetime
    window_end: datetime
    metrics: dict[str, float | None]
    labelled: int
    predictions: int
    status: Status
    revision: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", Status(self.status))


def result_to_document(result: WindowResult) -> dict[str, Any]:
    """Everything needed to rebuild ``result`` in another task: the JSON view plus the raw statistics."""
    return {"result": result.to_json_dict(), "stats": result.stats.to_dict()}


def result_from_document(document: dict[str, Any]) -> WindowResult:
    """Inverse of :func:`result_to_document` (downstream Airflow tasks never recompute)."""
    raw = document["result"]
    reasons = raw.get("metric_reasons", {})
    return WindowResult(
        monitor=raw["monitor"],
        model=raw["model"],
        task=Task(raw["task"]),
        cadence=Cadence(raw["cadence"]),
        window_start=datetime.fromisoformat(raw["window_start"]),
        window_end=datetime.fromisoformat(raw["window_end"]),
        as_of=datetime.fromisoformat(raw["as_of"]),
        status=Status(raw["status"]),
        revision=raw["revision"],
        stats=WindowStats.from_dict(document["stats"]),
        metrics={k: MetricValue(k, v, reasons.get(k)) for k, v in raw["metrics"].items()},
        estimated={k: MetricValue(k, v) for k, v in raw.get("estimated", {}).items()},
        estimated_bands={k: (v[0], v[1]) for k, v in raw.get("estimated_bands", {}).items()},
        signals=tuple(DriftFinding(**s) for s in raw.get("signals", [])),
        calibration=raw.get("calibration"),
        drift=tuple(DriftFinding(**d) for d in raw.get("drift", [])),
        quality=tuple(
            FeatureQuality(
                **{
                    **q,
                    "new_categories": tuple(q["new_categories"]),
                    "vanished_categories": tuple(q["vanished_categories"]),
                }
            )
            for q in raw.get("quality", [])
        ),
        segments=tuple(SegmentRow(**s) for s in raw.get("segments", [])),
        root_cause=root_cause_from_dict(raw.get("root_cause")),
        findings=tuple(raw.get("findings", [])),
        config_hash=raw.get("config_hash", ""),
    )


def root_cause_from_dict(raw: dict[str, Any] | None) -> RootCause | None:
    """A RootCause from its JSON view (``asdict``); None stays None."""
    if raw is None:
        return None
    return RootCause(
        verdict=raw["verdict"],
        summary=raw["summary"],
        top_features=tuple(raw.get("top_features", ())),
        top_segment=raw.get("top_segment"),
        evidence=tuple(raw.get("evidence", ())),
    )
