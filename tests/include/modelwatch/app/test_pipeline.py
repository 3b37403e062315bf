"""The steps a DAG run performs, on a real DuckDB warehouse seeded with the demo generator."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from modelwatch.app.pipeline import compute, evaluate_window, extract
from modelwatch.core.config import Status, parse_monitor
from modelwatch.core.metrics.calibration import Calibration
from modelwatch.core.result import result_from_document, result_to_document
from modelwatch.core.windows import Window, WindowRun
from modelwatch.demo.data import DemoSpec, churn_frames
from modelwatch.warehouse.catalog import WarehouseSchemaError, table_columns, validate_schema
from modelwatch.warehouse.engine import load_frame
from modelwatch.warehouse.window_query import fetch_window_stats

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
T0 = datetime(2026, 11, 1)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def frames():
    predictions, labels = churn_frames(DemoSpec(start=T0, days=2, rows_per_hour=400, seed=3, incident_day=0))
    # Demo ids are logged twice a few seconds apart; cross-hour duplicates are covered by test_pipeline_daily.
    return predictions.drop_duplicates("request_id"), labels


@pytest.fixture
def engine(tmp_path, frames):
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    load_frame(engine, "churn_predictions", frames[0])
    load_frame(engine, "churn_labels", frames[1])
    yield engine
    engine.dispose()


@pytest.fixture
def monitor():
    raw = yaml.safe_load((MONITORS / "churn.yaml").read_text())
    raw["start_date"] = T0.isoformat()
    return parse_monitor(raw)


def _always_breaching(monitor, *, min_coverage: float):
    """The churn monitor with one rule no real model meets (roc_auc >= 0.99)."""
    rule = {"type": "absolute", "min": 0.99}
    check = {"metric": "roc_auc", "min_samples": 10, "min_coverage": min_coverage, "rules": [rule]}
    return parse_monitor({**monitor.model_dump(by_alias=True), "checks": [check]})


def _rows(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one()


def test_schema_errors_name_the_table_and_the_column(engine, monitor):
    validate_schema(engine, monitor)
    wrong_column = parse_monitor(
        {**monitor.model_dump(by_alias=True), "labels": {**monitor.labels.model_dump(by_alias=True), "label": "nope"}}
    )
    with pytest.raises(WarehouseSchemaError, match=r"table 'churn_labels' has no column\(s\) nope"):
        validate_schema(engine, wrong_column)
    wrong_table = parse_monitor(
        {**monitor.model_dump(by_alias=True), "labels": {**monitor.labels.model_dump(by_alias=True), "table": "gone"}}
    )
    with pytest.raises(WarehouseSchemaError, match="table 'gone' not found"):
        validate_schema(engine, wrong_table)


def test_a_run_recomputes_earlier_provisional_windows_with_growing_revisions(engine, monitor):
    first = extract(engine, monitor, window=Window(T0, T0 + HOUR, "hourly"), as_of=T0 + HOUR)
    assert [(k.window.start, k.revision) for k in first] == [(T0, 0)]
    compute(engine, monitor, first, diagnose=False)
    as_of = T0 + 5 * HOUR
    keys = extract(engine, monitor, window=Window(as_of - HOUR, as_of, "hourly"), as_of=as_of)
    # Windows ending 1, 2 and 4 hours before as_of are due (revisions 1, 2, 4); the one 3 hours old is not.
    assert [(k.window.start.hour, k.revision) for k in keys] == [(0, 4), (2, 2), (3, 1), (4, 0)]
    results = compute(engine, monitor, keys, diagnose=False)
    coverage = [r.label_coverage for r in results]
    assert coverage == sorted(coverage, reverse=True)  # older windows have more of their labels
    assert {r.status for r in results} == {Status.PROVISIONAL}


def test_a_revision_after_its_window_closed_carries_the_orphan_count(engine, monitor, frames):
    lab = monitor.labels
    orphans = frames[1].head(3).copy()
    orphans[lab.request_id[0]] = [f"never-predicted-{i}" for i in range(3)]
    orphans[lab.timestamp] = [T0 + timedelta(minutes=m) for m in (5, 10, 15)]
    load_frame(engine, lab.table, orphans, replace=False)
    anti_joins: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "any_prediction" in statement:  # orphan_statement's alias of the predictions table
            anti_joins.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    extract(engine, monitor, window=Window(T0, T0 + HOUR, "hourly"), as_of=T0 + HOUR)
    assert len(anti_joins) == 1
    anti_joins.clear()
    as_of = T0 + 5 * HOUR
    keys = extract(engine, monitor, window=Window(as_of - HOUR, as_of, "hourly"), as_of=as_of)
    assert [(k.window.start.hour, k.revision) for k in keys] == [(0, 4), (2, 2), (3, 1), (4, 0)]
    assert len(anti_joins) == 3  # hours 2, 3 and 4 (never computed before); hour 0 carries its count
    carried = compute(engine, monitor, keys[:1], diagnose=False)[0]
    direct = fetch_window_stats(engine, monitor, start=T0, end=T0 + HOUR, as_of=as_of)
    assert carried.counts.orphan_labels == direct.counts.orphan_labels >= 3


def test_extract_decides_each_window_status_once_and_compute_carries_it(engine, monitor, monkeypatch):
    from dataclasses import replace

    import modelwatch.app.pipeline as pipeline

    as_of = T0 + 26 * HOUR
    keys = extract(engine, monitor, window=Window(as_of - HOUR, as_of, "hourly"), as_of=as_of)
    assert {k.status for k in keys} == {Status.PROVISIONAL, Status.FINAL}
    decided = [k.status for k in keys]

    def decided_again(**_):
        raise AssertionError("maturity decided a second time")

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "maturity", decided_again)
        results = compute(engine, monitor, [WindowRun.from_xcom(k.to_xcom()) for k in keys], diagnose=False)
    assert [r.status for r in results] == decided
    # An XCom queued before the status was carried: compute decides it as extract would have.
    queued = compute(engine, monitor, [replace(k, status=None) for k in keys], diagnose=False)
    assert [r.status for r in queued] == decided


def test_windows_turn_final_after_the_expected_delay(engine, monitor):
    window = Window(T0 + 2 * HOUR, T0 + 3 * HOUR, "hourly")
    late = evaluate_window(engine, monitor, window=window, as_of=window.end + 25 * HOUR)
    early = evaluate_window(engine, monitor, window=window, as_of=window.end + HOUR)
    assert (early.status, late.status) == (Status.PROVISIONAL, Status.FINAL)
    assert late.revision == 25 and early.revision == 1
    assert late.counts.labelled > early.counts.labelled


def test_daily_window_after_the_hourly_runs_equals_the_direct_query(engine, monitor):
    day = Window(T0, T0 + timedelta(days=1), "daily")
    as_of = day.end
    for hour in range(24):
        window = Window(T0 + hour * HOUR, T0 + (hour + 1) * HOUR, "hourly")
        keys = extract(engine, monitor, window=window, as_of=as_of)
        compute(engine, monitor, keys[-1:], diagnose=False)
    rolled = evaluate_window(engine, monitor, window=day, as_of=as_of, diagnose=False)
    direct = fetch_window_stats(engine, monitor, start=day.start, end=day.end, as_of=as_of)
    assert rolled.counts == direct.counts
    got, want = rolled.stats.task_stats, direct.task_stats
    assert (got.tp, got.fp, got.tn, got.fn) == (want.tp, want.fp, want.tn, want.fn)
    np.testing.assert_array_equal(got.histogram.pos, want.histogram.pos)
    np.testing.assert_allclose(got.log_loss_sum, want.log_loss_sum, rtol=1e-9)
    assert rolled.metrics["roc_auc"].value == pytest.approx(
        evaluate_window(engine, monitor, window=Window(day.start, day.end, "hourly"), as_of=as_of, diagnose=False)
        .metrics["roc_auc"]
        .value,
        abs=1e-12,
    )


def test_rerunning_a_window_writes_no_new_rows(engine, monitor):
    window, as_of = Window(T0 + 3 * HOUR, T0 + 4 * HOUR, "hourly"), T0 + 6 * HOUR
    first = compute(engine, monitor, extract(engine, monitor, window=window, as_of=as_of))
    counts = {t: _rows(engine, t) for t in ("modelwatch_window_documents", "modelwatch_metric_results")}
    again = compute(engine, monitor, extract(engine, monitor, window=window, as_of=as_of))
    assert {t: _rows(engine, t) for t in counts} == counts
    assert [r.metrics["roc_auc"].value for r in again] == [r.metrics["roc_auc"].value for r in first]


def test_a_breaching_revision_reuses_the_earlier_diagnosis_and_says_so(engine, monitor):
    from dataclasses import replace

    from modelwatch.app.pipeline import compute_window
    from modelwatch.core.result import RootCause

    strict = _always_breaching(monitor, min_coverage=0.0)
    window = Window(T0 + 2 * HOUR, T0 + 3 * HOUR, "hourly")
    earlier = evaluate_window(engine, strict, window=window, as_of=window.end + HOUR, diagnose=False)
    earlier = replace(earlier, root_cause=RootCause("data_drift", "data drift: x shifted"))
    later_stats = fetch_window_stats(engine, strict, start=window.start, end=window.end, as_of=window.end + 2 * HOUR)
    run = WindowRun(window, 2, window.end + 2 * HOUR, Status.PROVISIONAL)  # 46% labelled after 2 h
    later = compute_window(engine, strict, run, stats=later_stats, diagnose=None, carried=earlier)
    assert later.root_cause.summary.startswith("data drift: x shifted (diagnosed at revision 1, ")
    assert later.counts.labelled > earlier.counts.labelled  # the metrics themselves are this revision's


def test_a_diagnosis_made_before_the_window_was_judgeable_is_not_reused(engine, monitor):
    from dataclasses import replace

    from modelwatch.app.pipeline import compute_window
    from modelwatch.core.result import RootCause

    strict = _always_breaching(monitor, min_coverage=0.9)
    window = Window(T0 + 2 * HOUR, T0 + 3 * HOUR, "hourly")
    earlier = evaluate_window(engine, strict, window=window, as_of=window.end + HOUR, diagnose=False)
    assert earlier.label_coverage < 0.9
    earlier = replace(earlier, root_cause=RootCause("data_drift", "data drift: x shifted"))
    stats = fetch_window_stats(engine, strict, start=window.start, end=window.end, as_of=window.end + 2 * HOUR)
    run = WindowRun(window, 2, window.end + 2 * HOUR, Status.PROVISIONAL)  # 46% labelled after 2 h
    later = compute_window(engine, strict, run, stats=stats, diagnose=None, carried=earlier)
    assert later.root_cause is None or "x shifted" not in later.root_cause.summary


@pytest.mark.parametrize(
    ("table", "column", "sql_type", "message"),
    [
        (
            "churn_predictions",
            "score",
            "VARCHAR",
            "churn_predictions.score is {found}, expected a numeric type",
        ),
        (
            "churn_labels",
            "labeled_at",
            "VARCHAR",
            "churn_labels.labeled_at is {found}, expected a timestamp type",
        ),
        (
            "churn_predictions",
            "predicted_at",
            "VARCHAR",
            "churn_predictions.predicted_at is {found}, expected a timestamp type",
        ),
        (
            "churn_predictions",
            "request_id",
            "BIGINT",
            "churn_predictions.request_id is {found} but churn_labels.request_id is {other}: request ids must",
        ),
    ],
)
def test_wrong_column_types_are_named_before_any_query(
    warehouse_engine, frames, monitor, table, column, sql_type, message
):
    """A text score, timestamps stored as text, integer ids against text ids: one message naming the
    table, the column, the type found and the type expected (DuckDB and PostgreSQL)."""
    predictions, labels = frames
    predictions, labels = predictions.head(200).copy(), labels.head(200).copy()
    if sql_type == "BIGINT":
        predictions[column] = np.arange(len(predictions))
    else:
        frame = predictions if table == "churn_predictions" else labels
        frame[column] = frame[column].astype(str)
    load_frame(warehouse_engine, "churn_predictions", predictions)
    load_frame(warehouse_engine, "churn_labels", labels)
    types = {}
    for name in ("churn_predictions", "churn_labels"):
        types[name] = table_columns(warehouse_engine, name)
    found, other = types[table][column], types["churn_labels"]["request_id"]
    expected = message.format(found=found, other=other)
    with pytest.raises(WarehouseSchemaError, match=re.escape(f"monitor 'churn': wrong column type(s): {expected}")):
        validate_schema(warehouse_engine, monitor)
    assert found.lower() in ("varchar", "text", "bigint", "character varying")


def _run_hours(engine, monitor, hours) -> list:
    results = []
    for end in hours:
        keys = extract(engine, monitor, window=Window(end - HOUR, end, "hourly"), as_of=end)
        results = compute(engine, monitor, keys, diagnose=False)
    return results


def test_the_fresh_window_gets_label_free_signals_and_later_revisions_keep_its_calibrated_estimate(engine, monitor):
    day2 = T0 + timedelta(days=1)
    _run_hours(engine, monitor, [T0 + i * HOUR for i in range(1, 25)])  # day 1: the reference windows
    (fresh,) = [r for r in _run_hours(engine, monitor, [day2 + HOUR]) if r.window_start == day2]
    assert fresh.revision == 0
    band = fresh.estimated_bands["roc_auc"]
    assert band[0] <= fresh.estimated["roc_auc"].value <= band[1]
    calibration = Calibration.from_dict(fresh.calibration)  # stored with the result: the map the estimate used
    assert calibration.labelled >= 200 and list(calibration.rates) == sorted(calibration.rates)
    assert result_from_document(result_to_document(fresh)).calibration == fresh.calibration
    signals = {(s.feature, s.method) for s in fresh.signals}
    assert {("score", "psi"), ("positive_rate", "positive_rate"), ("multivariate", "pca_reconstruction")} <= signals
    assert any(f.segment and f.segment.startswith("region=") for f in fresh.drift)  # the segment rule's drift
    later = next(r for r in _run_hours(engine, monitor, [day2 + 2 * HOUR]) if r.window_start == day2)
    assert later.revision == 1 and later.signals == ()
    assert later.estimated["roc_auc"].value == pytest.approx(fresh.estimated["roc_auc"].value)
    assert later.estimated_bands["roc_auc"] == pytest.approx(band)
