"""Label-free rules over seeded incidents with labels that land only after 30 days.

A classifier (2,000 predictions an hour, segment region) whose scores are overconfident (noise on the
logit), a fixed labelled reference of 7 days, then monitored hours whose labels never land within the
test. Every hour is one run as the pipeline does it for the fresh window: feature profiles against the
reference (overall and inside each region for the segment rule's features), score drift and
predicted-positive rate from the score histograms, the calibrated estimate with its band, PCA
reconstruction error from bounded samples; then ``alerts.evaluate_rules`` and ``alerts.advance`` with each
rule's policy. Asserted: each incident is alerted by a label-free rule within 2 hourly windows of onset
(the right feature and segment for the segment shift), no alert opens over 3 clean days, and on those days
the realised metrics (from the labels that land later) fall inside the estimate's 95 % band in at least
90 % of the windows (the band is a 95 % band: about 1 window in 20 is expected outside).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

import numpy as np
import pytest
from sklearn import metrics as skm

from modelwatch.core.alerts import TRIGGER, AlertState, advance, evaluate_rules, policy_for
from modelwatch.core.config import MonitorConfig, parse_monitor
from modelwatch.core.drift import compare_profiles
from modelwatch.core.label_free import positive_rate_finding, score_drift_findings
from modelwatch.core.metrics import compute_metrics
from modelwatch.core.metrics.calibration import estimate_with_band, fit_calibration
from modelwatch.core.multivariate import pca_reconstruction_finding
from modelwatch.core.result import WindowResult
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays
from tests.include.modelwatch.app.test_incident_suite import MONITOR as SUITE_MONITOR
from tests.include.modelwatch.app.test_incident_suite import NUMERIC, _sigmoid, in_segment, profiles

SEED = 18
START = datetime(2026, 11, 1)
MONITORED = START + timedelta(days=7)
HOUR = timedelta(hours=1)
ROWS = 2000
REGIONS = ("EU", "US", "APAC")
SAMPLE_ROWS = 5000
CLEAN_DAYS = 3
ONSET = MONITORED + timedelta(days=CLEAN_DAYS, hours=6)

MONITOR: MonitorConfig = parse_monitor(
    SUITE_MONITOR.model_dump(by_alias=True)
    | {
        "name": "early",
        "label_delay": {"expected": "30d", "lookback": "72h"},
        "reference": {"kind": "fixed", "start": START.isoformat(), "end": MONITORED.isoformat()},
        "checks": [{"metric": "roc_auc", "rules": [{"type": "absolute", "min": 0.7, "severity": "critical"}]}],
        "operational": {"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}},
        "label_free": [
            {"type": "feature_drift", "top_k": 2, "threshold": 0.5, "segment": "region", "severity": "critical"},
            {"type": "feature_drift", "top_k": 4, "threshold": 0.2},
            {"type": "score_drift", "threshold": 0.2},
            {"type": "positive_rate", "max_change": 0.1},
            {"type": "multivariate_drift", "threshold": 0.1},
            {"type": "estimated", "metric": "roc_auc", "min": 0.7},
        ],
    }
)
"""The incident suite's monitor (same features, segments region and tier), with a fixed labelled reference,
labels due after 30 days and the label-free rules."""


@dataclass(frozen=True)
class Hour:
    x: dict[str, np.ndarray]
    c: np.ndarray
    region: np.ndarray
    score: np.ndarray
    y: np.ndarray


def clean_hour(start: datetime, *, rho: float = 0.8, score_shift: float = 0.0, eu_shift: float = 0.0) -> Hour:
    rng = np.random.default_rng([SEED, int(start.timestamp()) // 3600])
    region = rng.choice(REGIONS, ROWS, p=[0.35, 0.45, 0.2])
    x1 = rng.normal(0, 1, ROWS)
    # x2 moves with x1 but the model does not use it: a broken correlation changes no score.
    x2 = rho * x1 + np.sqrt(1 - rho**2) * rng.normal(0, 1, ROWS)
    x3 = rng.normal(0, 1, ROWS)
    c = rng.choice(["a", "b", "c"], ROWS, p=[0.5, 0.3, 0.2])
    logit = -0.6 + 1.5 * x1 + 0.8 * x3 + 0.3 * (c == "a")
    y = (rng.random(ROWS) < _sigmoid(logit)).astype(float)
    seen_x1 = x1 + np.where(region == "EU", eu_shift, 0.0)  # an upstream change in one segment
    # Overconfident scores (noise on the logit): the raw score is not the probability.
    score = _sigmoid(-0.6 + 1.5 * seen_x1 + 0.8 * x3 + 0.3 * (c == "a") + rng.normal(0, 0.8, ROWS) + score_shift)
    return Hour({"x1": seen_x1, "x2": x2, "x3": x3}, c, region, score, y)


INCIDENTS: dict[str, Callable[[datetime], Hour]] = {
    "covariate shift of x1 in region EU": lambda start: clean_hour(start, eu_shift=2.0),
    "score distribution shift": lambda start: clean_hour(start, score_shift=1.0),
    "joint shift invisible per feature": lambda start: clean_hour(start, rho=-0.8),
}


@cache
def traffic(scenario: str, start: datetime) -> Hour:
    if scenario in INCIDENTS and ONSET <= start < ONSET + 6 * HOUR:
        return INCIDENTS[scenario](start)
    return clean_hour(start)


@dataclass(frozen=True)
class Reference:
    profiles: dict
    segments: dict
    histogram: object
    calibration: object
    sample: np.ndarray


@cache
def reference() -> Reference:
    """The fixed reference: 7 labelled days (profiles, score histogram, calibration, a bounded sample)."""
    hours = [clean_hour(START + i * HOUR) for i in range(7 * 24)]
    scores = np.concatenate([h.score for h in hours])
    labels = np.concatenate([h.y for h in hours])
    histogram = binary_stats_from_arrays(scores, labels, threshold=0.5).histogram
    rows = np.concatenate([np.column_stack([h.x[n] for n in NUMERIC]) for h in hours])
    sample = rows[np.random.default_rng(SEED).choice(len(rows), SAMPLE_ROWS, replace=False)]
    segments = {region: profiles(hours, keep=in_segment("region", region)) for region in REGIONS}
    return Reference(profiles(hours), segments, histogram, fit_calibration(histogram), sample)


def fresh_window(scenario: str, start: datetime) -> WindowResult:
    """The run's fresh window as ``pipeline.compute_window`` screens it (no label has landed)."""
    ref, hour = reference(), traffic(scenario, start)
    stats = binary_stats_from_arrays(hour.score, np.full(ROWS, np.nan), threshold=0.5)
    drift, _ = compare_profiles(ref.profiles, profiles([hour], ref.profiles), MONITOR.drift)
    for region in REGIONS:
        segment_ref = ref.segments[region]
        found, _ = compare_profiles(
            segment_ref,
            profiles([hour], segment_ref, in_segment("region", region)),
            MONITOR.drift,
            segment=f"region={region}",
        )
        drift += found
    estimate = estimate_with_band(stats, ref.calibration)
    rate = positive_rate_finding(ref.histogram, stats.histogram, 0.5)
    joint = pca_reconstruction_finding(
        ref.sample, np.column_stack([hour.x[n] for n in NUMERIC]), threshold=0.1, features=NUMERIC
    )
    window = WindowStats(JoinCounts(predictions=ROWS, labelled=0), stats, ("v1",))
    return WindowResult(
        monitor=MONITOR.name,
        model=MONITOR.model.name,
        task=MONITOR.task.value,
        cadence="hourly",
        window_start=start,
        window_end=start + HOUR,
        as_of=start + HOUR,
        status="provisional",
        revision=0,
        stats=window,
        metrics=compute_metrics(window, task=MONITOR.task),
        estimated=estimate.values,
        estimated_bands=estimate.bands,
        signals=(*score_drift_findings(ref.histogram, stats.histogram, MONITOR.drift), rate, joint),
        drift=tuple(drift),
    )


@dataclass(frozen=True)
class Outcome:
    triggers: list[tuple[str, datetime, str]]
    """(dedup key, window_start, description) of every alert opened."""
    windows: list[WindowResult]


@cache
def run(scenario: str, first: datetime, hours: int) -> Outcome:
    states: dict[str, AlertState] = {}
    triggers, windows = [], []
    for i in range(hours):
        start = first + i * HOUR
        window = fresh_window(scenario, start)
        windows.append(window)
        for evaluation in evaluate_rules(MONITOR, cadence="hourly", as_of=start + HOUR, results=[window], history=[]):
            state, events = advance(states.get(evaluation.dedup_key), evaluation, check=policy_for(MONITOR, evaluation))
            states[evaluation.dedup_key] = state  # type: ignore[assignment]
            triggers += [(e.dedup_key, start, e.evaluation.description) for e in events if e.kind == TRIGGER]
    return Outcome(triggers, windows)


def _realised(hour: Hour) -> dict[str, float]:
    predicted = hour.score >= 0.5
    return {
        "roc_auc": skm.roc_auc_score(hour.y, hour.score),
        "accuracy": skm.accuracy_score(hour.y, predicted),
        "precision": skm.precision_score(hour.y, predicted),
        "recall": skm.recall_score(hour.y, predicted),
        "f1": skm.f1_score(hour.y, predicted),
    }


def test_clean_days_open_no_alert_and_the_realised_metrics_fall_in_the_band() -> None:
    outcome = run("clean", MONITORED, CLEAN_DAYS * 24)
    assert outcome.triggers == []
    inside = dict.fromkeys(("roc_auc", "accuracy", "precision", "recall", "f1"), 0)
    for window in outcome.windows:
        realised = _realised(traffic("clean", window.window_start))
        for name, (low, high) in window.estimated_bands.items():
            inside[name] += low <= realised[name] <= high
    share = {name: count / len(outcome.windows) for name, count in inside.items()}
    assert min(share.values()) >= 0.9, share
    # The raw scores are overconfident: read as probabilities they overstate precision; calibrated, not.
    window, hour = outcome.windows[0], traffic("clean", MONITORED)
    raw = estimate_with_band(window.stats.task_stats, None).values["precision"].value  # type: ignore[arg-type]
    assert abs(raw - _realised(hour)["precision"]) > 2 * abs(
        window.estimated["precision"].value - _realised(hour)["precision"]  # type: ignore[operator]
    )


@pytest.mark.parametrize(
    ("scenario", "rule", "named"),
    [
        ("covariate shift of x1 in region EU", "feature_drift/psi:top2:region:critical", "x1 in region=EU"),
        ("score distribution shift", "score_drift/psi:warning", "score"),
        ("joint shift invisible per feature", "multivariate_drift/warning", "multivariate"),
    ],
)
def test_each_incident_is_alerted_without_labels_within_two_windows(scenario: str, rule: str, named: str) -> None:
    outcome = run(scenario, ONSET - 6 * HOUR, 12)
    opened = {key.removeprefix("modelwatch/early/hourly/"): (start, text) for key, start, text in outcome.triggers}
    assert rule in opened, opened
    start, text = opened[rule]
    assert ONSET <= start < ONSET + 2 * HOUR and named in text
    assert all(s >= ONSET for s, _ in opened.values())  # nothing before the onset
    assert all(w.counts.labelled == 0 for w in outcome.windows)  # no label was needed
    if scenario == "joint shift invisible per feature":
        assert not any(key.startswith("feature_drift") for key in opened)
