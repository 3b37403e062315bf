"""Monitor definitions: one YAML file per monitored model, parsed into frozen pydantic models.

A bad file raises :class:`MonitorConfigError` whose message names the file, the key and what was
expected, so that a DAG import error or a CLI run points straight at the line to fix.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
"""Matched whole (``fullmatch``): ``$`` would also accept a trailing newline."""
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][\w+.-]*://[^:/@\s]*):[^@/\s]*@")
_QUERY_SECRET = re.compile(r"(?P<head>[?&](?:password|pwd|passwd|token|secret|api_key)=)[^&\s'\"]*", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it: every DAG-file parse reads every monitor file."""
MONITOR_SUFFIXES = (".yaml", ".yml")
_LABEL_FREE_KEY = re.compile(r"^'(?P<key>label_free\.\d+(?:\.\w+)?)' ?(?P<rest>.*)$")


class MonitorConfigError(ValueError):
    """A monitor file that cannot be used; the message names file, key and expectation."""

    def __init__(self, path: str | Path, key: str, expected: str) -> None:
        self.path = str(path)
        self.key = key
        self.expected = expected
        super().__init__(f"{self.path}: key '{key}': {expected}")


def mask_credentials(text: str) -> str:
    """``text`` with the passwords of URLs in it (``scheme://user:secret@host``, ``?password=...``) as ``***``.

    Used wherever a monitor's config or a warehouse URL is echoed: MLflow params, logs, error messages.
    """
    masked = _URL_PASSWORD.sub(lambda m: f"{m['head']}:***@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}***", masked)


class _UniqueKeyLoader(_YAML_LOADER):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            continue  # a complex key: PyYAML's own check refuses it as unhashable
        line = key_node.start_mark.line + 1
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} at lines {seen[key]} and {line}", key_node.start_mark
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def _parse_duration(value: Any) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"expected a duration such as '90m', '24h' or '3d', got {value!r}")


def _check_identifier(value: Any) -> Any:
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"expected an SQL identifier (letters, digits, underscore; not starting with a digit), got {value!r}"
        )
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Duration = Annotated[timedelta, BeforeValidator(_parse_duration)]
Identifier = Annotated[str, BeforeValidator(_check_identifier)]
IdentifierList = Annotated[tuple[Identifier, ...], BeforeValidator(_as_list)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Task(StrEnum):
    BINARY = "binary_classification"
    MULTICLASS = "multiclass_classification"
    REGRESSION = "regression"


class Cadence(StrEnum):
    HOURLY = "hourly"
    DAILY = "daily"

    @property
    def width(self) -> timedelta:
        return timedelta(hours=1) if self is Cadence.HOURLY else timedelta(days=1)


class Severity(StrEnum):
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """warning 1, critical 2: a higher rank escalates an open alert and passes a route's floor."""
        return 2 if self is Severity.CRITICAL else 1


class Status(StrEnum):
    """A window's label maturity: provisional until its labels are complete or it is old enough."""

    PROVISIONAL = "provisional"
    FINAL = "final"


class ModelRef(_Frozen):
    name: str = Field(min_length=1)
    mlflow_model_uri: str | None = None
    """Optional link to the model's own MLflow run or registered version (``models:/churn/3``)."""


class Warehouse(_Frozen):
    conn_id: str | None = None
    """Airflow connection id (used inside Airflow)."""
    url: str | None = None
    """SQLAlchemy URL (CLI, tests, or Airflow when no connection is set)."""
    results_schema: Identifier | None = None
    """Schema of modelwatch's own tables (created when missing); default: the connection's current schema."""
    statement_timeout: Duration | None = timedelta(minutes=10)
    """PostgreSQL ``statement_timeout`` of every warehouse session (``null``: the role's own setting)."""

    @model_validator(mode="after")
    def _one_target(self) -> Warehouse:
        if not self.conn_id and not self.url:
            raise ValueError("expected 'conn_id' (an Airflow connection) or 'url' (SQLAlchemy URL)")
        return self


class Feature(_Frozen):
    name: Identifier
    kind: Literal["numeric", "categorical"]


class PredictionsTable(_Frozen):
    table: Identifier
    db_schema: Identifier | None = Field(default=None, alias="schema")
    request_id: IdentifierList
    timestamp: Identifier
    model_version: Identifier | None = None
    score: Identifier | None = None
    """Probability of the positive class (binary) or the prediction (regression)."""
    predicted_label: Identifier | None = None
    class_scores: dict[str, Identifier] = Field(default_factory=dict)
    """Multiclass: class label -> column holding its probability (optional, enables log_loss)."""
    features: tuple[Feature, ...] = ()
    segments: tuple[Identifier, ...] = ()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class LabelsTable(_Frozen):
    table: Identifier
    db_schema: Identifier | None = Field(default=None, alias="schema")
    request_id: IdentifierList
    timestamp: Identifier
    label: Identifier

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class LabelDelay(_Frozen):
    expected: Duration = timedelta(hours=24)
    """After this age a window is final whatever its coverage."""
    coverage_target: float = Field(default=0.95, gt=0, le=1)
    """A window whose label coverage reaches this is final."""
    lookback: Duration = timedelta(hours=72)
    """Each run recomputes provisional windows that ended at most this long ago."""
    stalled_coverage: float = Field(default=0.5, ge=0, le=1)
    """After ``expected``, coverage below this is the 'labels stalled' finding."""


class Reference(_Frozen):
    kind: Literal["rolling", "fixed"] = "rolling"
    days: int = Field(default=7, ge=1, le=90)
    """Rolling: the same hours of the previous ``days`` days."""
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _fixed_needs_dates(self) -> Reference:
        if self.kind == "fixed" and (self.start is None or self.end is None or self.start >= self.end):
            raise ValueError("a fixed reference needs 'start' < 'end'")
        return self


class DriftSettings(_Frozen):
    psi_threshold: float = Field(default=0.2, gt=0)
    js_threshold: float = Field(default=0.1, gt=0)
    ks_threshold: float = Field(default=0.1, gt=0)
    wasserstein_threshold: float = Field(default=0.1, gt=0)
    """Wasserstein distance divided by the reference's standard deviation."""
    bins: int = Field(default=10, ge=2, le=100)
    null_rate_increase: float = Field(default=0.05, ge=0, le=1)
    out_of_range_rate: float = Field(default=0.05, ge=0, le=1)
    top_k_segment_values: int = Field(default=10, ge=1, le=100)


class Baseline(_Frozen):
    value: float | None = None
    """A fixed value, e.g. the validation AUC."""
    rolling: Duration | None = None
    """Mean over the windows of this much time before the evaluated window (windows of open incidents
    of the same metric excluded)."""
    min_windows: int | None = Field(default=None, ge=1)
    """Rolling: fewer windows than this in the period and the rule is 'insufficient data' (default:
    half the windows the period holds, at least 3)."""
    start: datetime | None = None
    end: datetime | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Baseline:
        sources = [self.value is not None, self.rolling is not None, self.start is not None]
        if sum(sources) != 1:
            raise ValueError("expected exactly one of 'value', 'rolling' or 'start'/'end'")
        if self.start is not None and (self.end is None or self.end <= self.start):
            raise ValueError("a fixed baseline needs 'start' < 'end'")
        return self


class Rule(_Frozen):
    type: Literal["absolute", "baseline_drop", "std_band", "bootstrap_ci"]
    severity: Severity = Severity.WARNING
    min: float | None = None
    max: float | None = None
    baseline: Baseline | None = None
    max_drop: float | None = Field(default=None, gt=0)
    relative: bool = False
    """baseline_drop: ``max_drop`` is a fraction of the baseline instead of an absolute amount."""
    k: float = Field(default=3.0, gt=0)
    lookback_windows: int = Field(default=48, ge=3)
    confidence: float = Field(default=0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if self.type in ("absolute", "bootstrap_ci") and self.min is None and self.max is None:
            raise ValueError(f"a '{self.type}' rule needs 'min' and/or 'max'")
        if self.type == "baseline_drop" and (self.baseline is None or self.max_drop is None):
            raise ValueError("a 'baseline_drop' rule needs 'baseline' and 'max_drop'")
        return self

    @property
    def rule_id(self) -> str:
        return f"{self.type}:{self.severity}"


class AlertPolicy(_Frozen):
    """How one alert opens and resolves (the lifecycle shared by every rule type)."""

    m_of_n: tuple[int, int] = (1, 1)
    """Alert when M of the last N judged windows breach (each window counted at its latest revision)."""
    resolve_after: int = Field(default=2, ge=1)
    """Healthy runs in a row that resolve an open alert."""
    resolve_margin: float = Field(default=0.02, ge=0, lt=1)
    """A run counts as healthy for resolving only when the value is inside the bound by this share of
    the bound's magnitude (roc_auc >= 0.80: at least 0.816; mae <= 8: at most 7.84); a value between
    bound and margin keeps the alert open."""
    cooldown: Duration = timedelta(0)
    """An open alert resolves no earlier than this after its last breach."""
    reopen_within: Duration = timedelta(0)
    """A breach this soon after a resolve reopens the same incident: PagerDuty's resolve is held back for
    this long and cancelled by the reopen, so the page continues instead of starting a new one."""

    @field_validator("m_of_n")
    @classmethod
    def _m_le_n(cls, value: tuple[int, int]) -> tuple[int, int]:
        m, n = value
        if not 1 <= m <= n:
            raise ValueError(f"expected [M, N] with 1 <= M <= N, got {list(value)}")
        return value


class MetricCheck(AlertPolicy):
    metric: str = Field(min_length=1)
    rules: tuple[Rule, ...] = Field(min_length=1)
    min_samples: int = Field(default=100, ge=0)
    """Labelled rows below this make the window 'insufficient data', neither breach nor pass."""
    min_coverage: float = Field(default=0.5, ge=0, le=1)
    """A provisional window is judged only once this share of its predictions is labelled: the first
    labels to land are a biased sample (fast deliveries, quick churners)."""


LABEL_FREE_TYPES = ("feature_drift", "score_drift", "positive_rate", "estimated", "multivariate_drift")
DRIFT_METHODS = ("psi", "js", "wasserstein", "chi2")
ESTIMATED_METRICS = ("roc_auc", "accuracy", "precision", "recall", "f1")


class LabelFreeRule(AlertPolicy):
    """A rule judged on the run's fresh window (revision 0) without waiting for labels.

    Same lifecycle as a metric check (M-of-N, resolve, cool-down, reopen: the ``AlertPolicy`` keys),
    same severities and routes. ``feature_drift`` watches named ``features`` or the ``top_k`` by
    importance, by one ``method`` and ``threshold``, overall or within ``segment`` (``column``: every
    top value of it, the worst is quoted; ``column=value``: that value); ``score_drift`` the score's
    distribution; ``positive_rate`` the share predicted positive (``max_change``, absolute);
    ``estimated`` a calibrated estimate of ``metric`` whose confidence band must stay inside
    ``min``/``max``.
    """

    type: Literal["feature_drift", "score_drift", "positive_rate", "estimated", "multivariate_drift"]
    name: Identifier | None = None
    """Tells two rules of the same type apart in the dedup key (default: derived from the rule)."""
    severity: Severity = Severity.WARNING
    features: IdentifierList = ()
    top_k: int | None = Field(default=None, ge=1, le=100)
    method: Literal["psi", "js", "wasserstein", "chi2"] = "psi"
    threshold: float | None = Field(default=None, gt=0)
    segment: str | None = None
    max_change: float | None = Field(default=None, gt=0, le=1)
    metric: Literal["roc_auc", "accuracy", "precision", "recall", "f1"] | None = None
    min: float | None = None
    max: float | None = None
    confidence: float = Field(default=0.95, gt=0, lt=1)
    min_rows: int = Field(default=200, ge=1)
    """A fresh window with fewer predictions is insufficient (too noisy to judge)."""

    @model_validator(mode="after")
    def _complete(self) -> LabelFreeRule:
        needs = {
            "feature_drift": ("threshold",),
            "score_drift": ("threshold",),
            "multivariate_drift": ("threshold",),
            "positive_rate": ("max_change",),
            "estimated": ("metric",),
        }[self.type]
        missing = [key for key in needs if getattr(self, key) is None]
        if missing:
            raise ValueError(f"a '{self.type}' rule needs '{missing[0]}'")
        if self.type == "feature_drift" and bool(self.features) == (self.top_k is not None):
            raise ValueError("a 'feature_drift' rule needs exactly one of 'features' or 'top_k'")
        if self.type != "feature_drift" and (self.features or self.top_k is not None or self.segment):
            raise ValueError(f"'features', 'top_k' and 'segment' belong to 'feature_drift' rules, not '{self.type}'")
        if self.type == "score_drift" and self.method == "chi2":
            raise ValueError("a 'score_drift' rule takes method psi, js or wasserstein (the score is numeric)")
        if self.type == "estimated" and self.min is None and self.max is None:
            raise ValueError("an 'estimated' rule needs 'min' and/or 'max'")
        if self.segment is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}(=.+)?", self.segment):
            raise ValueError(f"expected 'segment' as 'column' or 'column=value', got {self.segment!r}")
        return self

    @property
    def segment_column(self) -> str | None:
        return self.segment.split("=", 1)[0] if self.segment else None

    @property
    def signal(self) -> str:
        """The ``metric`` part of the dedup key: what the rule watches."""
        return f"estimated_{self.metric}" if self.type == "estimated" else self.type

    @property
    def rule_id(self) -> str:
        if self.name:
            return f"{self.name}:{self.severity}"
        parts = [self.method] if self.type in ("feature_drift", "score_drift") else []
        if self.type == "feature_drift":
            parts.append("+".join(self.features) if self.features else f"top{self.top_k}")
            parts += [self.segment] if self.segment else []
        return ":".join([*parts, str(self.severity)])


class SlackRoute(_Frozen):
    conn_id: str
    channel: str | None = None


class PagerDutyRoute(_Frozen):
    conn_id: str


class EmailRoute(_Frozen):
    conn_id: str
    """An Airflow ``smtp`` connection (host, port, login/password; extra ``from_email``, ``disable_tls``...)."""
    to: tuple[str, ...] = Field(min_length=1)
    min_severity: Severity = Severity.WARNING


class WebhookRoute(_Frozen):
    conn_id: str
    """An Airflow ``http`` connection: host (+ schema/port) is the URL, extra ``endpoint`` a path, the
    password the HMAC secret that signs every body (``X-Modelwatch-Signature: sha256=<hex>``)."""
    min_severity: Severity = Severity.WARNING


class Routes(_Frozen):
    slack: SlackRoute | None = None
    pagerduty: PagerDutyRoute | None = None
    """Critical alerts only."""
    email: EmailRoute | None = None
    webhook: WebhookRoute | None = None


class DataQualityRules(_Frozen):
    """Rules judged on the run's own (newest) window, without waiting for labels; they page (critical)."""

    enabled: bool = True
    severity: Severity = Severity.CRITICAL
    min_rows: int = Field(default=200, ge=1)
    """Windows with fewer predictions are not judged (too noisy)."""
    null_rate_increase: float = Field(default=0.2, gt=0, le=1)
    """A feature that matters whose null rate rose by at least this much against the reference."""
    out_of_range_rate: float = Field(default=0.5, gt=0, le=1)
    """A feature that matters with at least this share of values outside the reference's [min, max]
    (a smaller share of a shifted feature is drift, reported by the root cause)."""
    new_category_rate: float = Field(default=0.1, gt=0, le=1)
    """A categorical feature that matters with at least this share of rows in unseen categories."""
    volume_ratio: tuple[float, float] = (0.5, 2.0)
    """Allowed range of predictions / the median of the same window of the previous days (same hour, hourly)."""
    min_volume_days: int = Field(default=3, ge=1)
    """Reference days with a stored window needed before the volume rule judges."""

    @field_validator("volume_ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0 <= low < 1 < high:
            raise ValueError(f"expected [low, high] with 0 <= low < 1 < high, got {list(value)}")
        return value


class Operational(_Frozen):
    traffic_stopped: bool = True
    """Alert (critical) when a window has no predictions."""
    labels_stalled: bool = True
    """Alert (warning) when coverage stays below ``label_delay.stalled_coverage`` after the delay, or when
    the newest windows lack the labels the monitor's own history says should have arrived by their age."""
    label_arrival_days: int = Field(default=7, ge=1, le=90)
    """Days of the monitor's own history from which the expected label arrival per age is learnt."""
    stalled_ratio: float = Field(default=0.5, gt=0, lt=1)
    """Labels stalled when the newest windows hold less than this share of the labels expected by now."""
    data_quality: DataQualityRules = DataQualityRules()
    policy: AlertPolicy = AlertPolicy()
    """Lifecycle of the operational and data-quality alerts (M-of-N, resolve, cool-down, reopen)."""


class Tracking(_Frozen):
    tracking_uri: str | None = None
    experiment: str | None = None
    artifact_root: str | None = None


class AirflowSettings(_Frozen):
    """Per-monitor Airflow task and DAG settings (the ``airflow:`` section)."""

    pool: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    """Airflow pool of every task; default: ``modelwatch_duckdb_<file>`` (one slot, create it) for a monitor
    whose warehouse is a DuckDB ``url`` without ``conn_id``, else Airflow's default pool."""
    queue: str | None = None
    retries: int = Field(default=2, ge=0, le=20)
    retry_delay: Duration | None = None
    """Default: env ``MODELWATCH_RETRY_DELAY_SECONDS`` or 2 minutes."""
    execution_timeout: Duration = timedelta(minutes=30)
    """Per task: a task running longer fails (and so alerts through the failure callbacks)."""
    deadline: Duration | None = None
    """A run not finished this long after it was queued is reported on the routes (an Airflow deadline
    alert, sent by the triggerer); default: none (``dag.test()`` of Airflow 3.3.2 fails on deadlines)."""
    dagrun_timeout: Duration | None = None
    """A run not finished this long after it started is failed by the scheduler; default: none."""
    max_active_runs: int | None = Field(default=None, ge=1)
    """Default: 4 hourly, 2 daily; 1 for a DuckDB ``url`` monitor (one writer process per file)."""


class Retraining(_Frozen):
    """Trigger a retraining DAG when a metric alert stays open (see ``modelwatch.core.retraining``)."""

    dag_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """The Airflow DAG that retrains the model; it receives the breach as its run conf."""
    after_breaches: int = Field(default=3, ge=1)
    """Breaching windows an open alert must have counted (the M of its M-of-N included)."""
    min_severity: Severity = Severity.CRITICAL
    metrics: tuple[str, ...] = ()
    """Only alerts on these metrics (default: every metric check)."""
    cadences: tuple[Cadence, ...] = ()
    """Only alerts of these cadences (default: all of the monitor's)."""
    conf: dict[str, Any] = Field(default_factory=dict)
    """Extra keys for the triggered run's conf (e.g. the training data range)."""


class MonitorConfig(_Frozen):
    name: Identifier
    model: ModelRef
    task: Task
    owner: str = "ml-platform"
    description: str = ""
    runbook_url: str | None = Field(default=None, pattern=r"^https?://")
    """What the paged person should read first; linked from every alert message."""
    warehouse: Warehouse
    predictions: PredictionsTable
    labels: LabelsTable
    classes: tuple[str, ...] = ()
    """Declared label values (as text). Binary: [negative, positive]."""
    decision_threshold: float = Field(default=0.5, ge=0, le=1)
    label_delay: LabelDelay = LabelDelay()
    cadences: tuple[Cadence, ...] = (Cadence.HOURLY, Cadence.DAILY)
    start_date: datetime = datetime(2026, 1, 1)
    reference: Reference = Reference()
    drift: DriftSettings = DriftSettings()
    checks: tuple[MetricCheck, ...] = ()
    label_free: tuple[LabelFreeRule, ...] = ()
    """Rules judged on each run's fresh window before its labels land (drift, score, estimated metrics)."""
    operational: Operational = Operational()
    routes: Routes = Routes()
    tracking: Tracking = Tracking()
    retraining: Retraining | None = None
    airflow: AirflowSettings = AirflowSettings()

    @model_validator(mode="after")
    def _task_columns(self) -> MonitorConfig:
        p = self.predictions
        if self.task is Task.BINARY:
            if p.score is None:
                raise ValueError("a binary_classification monitor needs 'predictions.score'")
            if self.classes and len(self.classes) != 2:
                raise ValueError("binary_classification 'classes' must list exactly 2 labels")
        if self.task is Task.REGRESSION and p.score is None:
            raise ValueError("a regression monitor needs 'predictions.score' (the prediction)")
        if self.task is Task.MULTICLASS:
            if p.predicted_label is None:
                raise ValueError("a multiclass_classification monitor needs 'predictions.predicted_label'")
            if len(self.classes) < 2:
                raise ValueError("a multiclass_classification monitor needs 'classes' (2 or more)")
        if len(p.request_id) != len(self.labels.request_id):
            raise ValueError("'predictions.request_id' and 'labels.request_id' need the same number of columns")
        self._check_label_free()
        if self.retraining is not None:
            checked = {c.metric for c in self.checks}
            unknown = [m for m in self.retraining.metrics if m not in checked]
            if unknown:
                raise ValueError(
                    f"'retraining.metrics' names {', '.join(unknown)}, which no check in 'checks' monitors "
                    f"(checked: {', '.join(sorted(checked)) or 'none'})"
                )
        return self

    def _check_label_free(self) -> None:
        features = {f.name: f.kind for f in self.predictions.features}
        seen: set[tuple[str, str]] = set()
        for i, rule in enumerate(self.label_free):
            where = f"'label_free.{i}"
            unknown = [f for f in rule.features if f not in features]
            if unknown:
                raise ValueError(f"{where}.features' names {', '.join(unknown)}, not in 'predictions.features'")
            wrong_kind = {"wasserstein": "categorical", "chi2": "numeric"}.get(rule.method)
            if rule.type == "feature_drift" and any(features[f] == wrong_kind for f in rule.features):
                needed = "numeric" if wrong_kind == "categorical" else "categorical"
                raise ValueError(f"{where}.method' {rule.method} needs {needed} features")
            if rule.segment_column and rule.segment_column not in self.predictions.segments:
                raise ValueError(f"{where}.segment' names {rule.segment_column!r}, not in 'predictions.segments'")
            if rule.type in ("score_drift", "positive_rate", "estimated") and self.task is not Task.BINARY:
                raise ValueError(f"{where}.type' {rule.type} needs a binary_classification monitor")
            if rule.type in ("feature_drift", "multivariate_drift") and not features:
                raise ValueError(f"{where}.type' {rule.type} needs 'predictions.features'")
            first_estimate = (
                next(r for r in self.label_free if r.type == "estimated") if rule.type == "estimated" else rule
            )
            if rule.confidence != first_estimate.confidence:
                # The band is computed once per window, at one confidence.
                raise ValueError(f"{where}.confidence' differs from the first 'estimated' rule's; use one confidence")
            if (rule.signal, rule.rule_id) in seen:
                raise ValueError(f"{where}' repeats the rule {rule.signal}/{rule.rule_id}: give one a 'name'")
            seen.add((rule.signal, rule.rule_id))

    @property
    def positive_class(self) -> str:
        return self.classes[1] if self.classes else "1"

    @property
    def config_hash(self) -> str:
        # Where and how it runs (Airflow settings, results schema, timeouts) does not change what a window is.
        operational = {"airflow": True, "warehouse": {"results_schema", "statement_timeout"}}
        canonical = json.dumps(self.model_dump(mode="json", by_alias=True, exclude=operational), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def dag_id(self, cadence: Cadence | str) -> str:
        return f"modelwatch_{self.name}_{Cadence(cadence).value}"


def _error_key(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "<file>"


def parse_monitor(raw: Any, *, path: str | Path = "<memory>") -> MonitorConfig:
    """Validate an already-loaded YAML document.

    Raises:
        MonitorConfigError: naming the first offending key.
    """
    if not isinstance(raw, dict):
        raise MonitorConfigError(path, "<file>", f"expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return MonitorConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "is required but missing"
        elif first["type"] == "extra_forbidden":
            message = "is not a known key (check the spelling)"
        key = _error_key(first["loc"])
        named = _LABEL_FREE_KEY.match(message)
        if key == "<file>" and named:
            # A whole-monitor check of one label-free rule (a feature or segment the monitor lacks).
            key, message = named["key"], named["rest"]
        raise MonitorConfigError(path, key, mask_credentials(message)) from exc


def load_monitor(path: str | Path) -> MonitorConfig:
    """Read and validate one monitor YAML file."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a safe loader: no arbitrary objects
    except OSError as exc:
        raise MonitorConfigError(path, "<file>", f"cannot be read: {exc.strerror}") from exc
    except yaml.constructor.ConstructorError as exc:
        raise MonitorConfigError(path, "<file>", str(exc.problem)) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise MonitorConfigError(path, "<file>", f"is not valid YAML{where}") from exc
    config = parse_monitor(raw, path=path)
    if config.name != path.stem:
        raise MonitorConfigError(path, "name", f"expected the file's stem {path.stem!r}, got {config.name!r}")
    return config


def load_monitors(directory: str | Path) -> tuple[list[MonitorConfig], list[MonitorConfigError]]:
    """Load every ``*.yaml``/``*.yml`` in ``directory``; bad files are returned, not raised.

    One broken file must not stop the other monitors from loading.
    """
    monitors: list[MonitorConfig] = []
    errors: list[MonitorConfigError] = []
    for path in monitor_files(directory):
        try:
            monitors.append(load_monitor(path))
        except MonitorConfigError as exc:
            errors.append(exc)
    return monitors, errors


def monitor_files(directory: str | Path) -> list[Path]:
    """The monitor files (``*.yaml``, ``*.yml``) in ``directory``, sorted; none when it is not a folder."""
    if not Path(directory).is_dir():
        return []
    return sorted(path for path in Path(directory).iterdir() if path.suffix in MONITOR_SUFFIXES and path.is_file())
