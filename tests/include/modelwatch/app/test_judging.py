"""Judging a run on a real DuckDB warehouse seeded with the demo generator."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from modelwatch.app.judging import judge
from modelwatch.app.pipeline import compute, extract
from modelwatch.core.config import parse_monitor
from modelwatch.core.windows import Window
from modelwatch.warehouse.engine import load_frame
from tests.include.modelwatch.app import test_pipeline as seeded

HOUR, T0 = seeded.HOUR, seeded.T0
engine, frames, monitor = seeded.engine, seeded.frames, seeded.monitor  # the seeded warehouse's fixtures


def test_judge_explains_every_event_and_a_rerun_sends_nothing(engine, monitor):
    # A warning-only baseline rule: compute does not diagnose it (no absolute bound), judging must.
    rule = {"type": "baseline_drop", "baseline": {"value": 0.99}, "max_drop": 0.01, "severity": "warning"}
    check = {"metric": "roc_auc", "min_samples": 10, "min_coverage": 0.0, "rules": [rule]}
    strict = parse_monitor({**monitor.model_dump(by_alias=True), "checks": [check]})
    as_of = T0 + timedelta(days=1, hours=10)
    keys = extract(engine, strict, window=Window(as_of - HOUR, as_of, "hourly"), as_of=as_of)
    results = compute(engine, strict, keys)
    assert all(r.root_cause is None for r in results)
    fresh = results[-1]
    assert fresh.quality and fresh.drift  # profiled for the data-quality rules, without labels
    events = judge(engine, strict, results, as_of=as_of)
    warning = next(e for e in events if e.dedup_key.endswith("roc_auc/baseline_drop:warning"))
    assert warning.evaluation.root_cause is not None and warning.evaluation.root_cause.verdict
    assert warning.evaluation.window_age_hours is not None
    assert judge(engine, strict, results, as_of=as_of) == []  # a retried run


# --- order independence -------------------------------------------------------------------------------

ORDER_RULES = [  # the rules whose state depends most on the order of the ticks: M-of-N, a baseline, f1
    {"metric": "roc_auc", "m_of_n": [2, 3], "rules": [{"type": "absolute", "min": 0.86, "severity": "warning"}]},
    {
        "metric": "roc_auc",
        "rules": [{"type": "baseline_drop", "baseline": {"value": 0.88}, "max_drop": 0.03, "severity": "warning"}],
    },
    {"metric": "f1", "rules": [{"type": "absolute", "min": 0.6, "severity": "warning"}]},
]
ORDER_HOURS = 8


def _order_monitors(monitor):
    raw = monitor.model_dump(by_alias=True)
    return [
        parse_monitor(
            {
                **raw,
                "name": f"churn_{i}",
                "cadences": ["hourly"],
                "label_delay": {"expected": "2h", "coverage_target": 0.9, "lookback": "3h"},
                "checks": [{"min_samples": 20, "min_coverage": 0.0, **check}],
                "operational": {"traffic_stopped": False, "labels_stalled": False},
            }
        )
        for i, check in enumerate(ORDER_RULES)
    ]


def _run_in_order(engine, monitors, hours) -> tuple[dict, list]:
    """Every monitor's hourly runs in the given order of hours, as the DAG runs them; the alert rows and
    events they leave."""
    from modelwatch.app.pipeline import load_results
    from modelwatch.warehouse.alert_store import alert_rows, outbox_rows

    for monitor in monitors:
        for hour in hours:
            as_of = T0 + (hour + 1) * HOUR
            keys = extract(engine, monitor, window=Window(as_of - HOUR, as_of, "hourly"), as_of=as_of)
            compute(engine, monitor, keys)
            judge(engine, monitor, load_results(engine, monitor, keys), as_of=as_of)
    columns = ("state", "severity", "incident", "opened_at", "last_as_of", "breach_count", "healthy_streak")
    columns += ("last_value", "recent_statuses", "first_breach_window", "last_breach_window")
    alerts = {row["dedup_key"]: {c: row[c] for c in columns} for row in alert_rows(engine)}
    events = sorted((r.dedup_key, r.incident, r.kind, r.destination) for r in outbox_rows(engine))
    return alerts, events


def test_the_same_windows_run_in_any_order_leave_the_same_alerts_and_events(tmp_path, frames, monitor):
    # What a concurrent backfill does (Airflow runs it newest first, workers finish in any order): each
    # run judges the windows and history as of its own end, not what later runs stored before it.
    import random

    orders = {"sequential": list(range(ORDER_HOURS)), "newest first": list(reversed(range(ORDER_HOURS)))}
    shuffled = list(range(ORDER_HOURS))
    random.Random(5).shuffle(shuffled)
    orders["shuffled"] = shuffled
    left = {}
    for name, hours in orders.items():
        engine = sa.create_engine(f"duckdb:///{tmp_path / (name.replace(' ', '_') + '.duckdb')}")
        load_frame(engine, "churn_predictions", frames[0])
        load_frame(engine, "churn_labels", frames[1])
        left[name] = _run_in_order(engine, _order_monitors(monitor), hours)
        engine.dispose()
    alerts, events = left["sequential"]
    assert any(a["incident"] > 0 for a in alerts.values()), "no alert opened: the comparison would prove nothing"
    for name in ("newest first", "shuffled"):
        assert left[name][0] == alerts, name
        assert left[name][1] == events, name
