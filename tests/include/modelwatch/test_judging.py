"""Judging a run on a real DuckDB warehouse seeded with the demo generator."""

from __future__ import annotations

from datetime import timedelta

from modelwatch.config import parse_monitor
from modelwatch.judging import judge
from modelwatch.pipeline import compute, extract
from modelwatch.windows import Window
from tests.include.modelwatch import test_pipeline as seeded

HOUR, T0 = seeded.HOUR, seeded.T0
engine, frames, monitor = seeded.engine, seeded.frames, seeded.monitor  # the seeded warehouse's fixtures


def test_judge_explains_every_event_and_a_rerun_sends_nothing(engine, monitor):
    # A warning-only baseline rule: compute does not diagnose it (no absolute bound), judging must.
    rule = {"type": "baseline_drop", "baseline": {"value": 0.99}, "max_drop": 0.01, "severity": "warning"}
    check = {"metric": "roc_auc", "min_samples": 10, "min_coverage": 0.0, "rules": [rule]}
    strict = parse_monitor({**monitor.model_dump(by_alias=True), "checks": [check]})
    as_of = T0 + timedelta(days=1, hours=10)
    keys = extract(engine, strict, cadence="hourly", window=Window(as_of - HOUR, as_of), as_of=as_of)
    results = compute(engine, strict, keys, as_of=as_of)
    assert all(r.root_cause is None for r in results)
    fresh = results[-1]
    assert fresh.quality and fresh.drift  # profiled for the data-quality rules, without labels
    events = judge(engine, strict, results, as_of=as_of)
    warning = next(e for e in events if e.dedup_key.endswith("roc_auc/baseline_drop:warning"))
    assert warning.evaluation.root_cause is not None and warning.evaluation.root_cause.verdict
    assert warning.evaluation.window_age_hours is not None
    assert judge(engine, strict, results, as_of=as_of) == []  # a retried run
