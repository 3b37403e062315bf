"""Seeded synthetic incidents in a real DuckDB file, diagnosed end to end.

The incident tests run ~2 s each (about ten warehouse queries per diagnosis), hence ``integration``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.app.diagnosis import Diagnosis, coalesce, diagnose_window, reference_ranges
from modelwatch.core.config import MonitorConfig, parse_monitor
from modelwatch.core.windows import Window, WindowRun
from modelwatch.warehouse.window_query import fetch_window_stats

DAY = timedelta(days=1)
START = datetime(2026, 3, 8)
"""The evaluated (daily) window; the seven days before it are the rolling reference."""
REGIONS = ("EU", "US", "APAC", "LATAM")
NUMERIC = ("f0", "f1", "f2", "f3", "f4", "f5")
ROWS_PER_DAY = 3000
ROWS_CURRENT = 4000


def _monitor(path: Path) -> MonitorConfig:
    features = [{"name": f, "kind": "numeric"} for f in NUMERIC]
    features += [{"name": "c0", "kind": "categorical"}, {"name": "c1", "kind": "categorical"}]
    return parse_monitor(
        {
            "name": "synthetic",
            "model": {"name": "m"},
            "task": "binary_classification",
            "warehouse": {"url": f"duckdb:///{path}"},
            "predictions": {
                "table": "preds",
                "request_id": "request_id",
                "timestamp": "predicted_at",
                "score": "score",
                "features": features,
                "segments": ["region"],
            },
            "labels": {"table": "labels", "request_id": "request_id", "timestamp": "labeled_at", "label": "y"},
            "classes": ["0", "1"],
        }
    )


def _day(rng: np.random.Generator, day: datetime, n: int, incident: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One day of traffic; ``incident`` changes only what that incident is about."""
    region_p = [0.3, 0.3, 0.3, 0.1] if incident != "segment_shift" else [0.1, 0.1, 0.1, 0.7]
    region = rng.choice(REGIONS, size=n, p=region_p)
    x = {f: rng.normal(size=n) for f in NUMERIC[:5]}
    x["f5"] = rng.poisson(2.0, size=n).astype(float)
    c0 = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    c1 = rng.choice(["web", "app"], size=n)
    model_logit = 1.5 * x["f0"] + 1.0 * x["f1"] - 0.8 * x["f2"] + 0.3 * x["f5"] - 0.6 + 0.8 * (c0 == "a")
    eu = region == "EU"
    true_logit = model_logit.copy()
    if incident == "concept_drift":
        true_logit[eu] = -1.5 * x["f0"][eu] + (true_logit - 1.5 * x["f0"])[eu]
    # LATAM is hard: its labels are noisier (a weak segment even when nothing is wrong).
    true_logit = true_logit + np.where(region == "LATAM", rng.normal(0, 3.0, size=n), 0.0)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    observed = dict(x)
    if incident == "data_drift":
        # A broken upstream join in EU only: the model sees f0 values from other customers, shifted up.
        observed["f0"] = np.where(eu, rng.normal(2.0, 1.0, size=n), x["f0"])
    if incident == "null_burst":
        observed["f1"] = np.where(rng.random(n) < 0.4, np.nan, x["f1"])
    seen_logit = model_logit + 1.5 * (observed["f0"] - x["f0"]) - 1.0 * (x["f1"] - np.nan_to_num(observed["f1"]))
    ts = day + pd.to_timedelta(np.sort(rng.integers(0, 86_400, size=n)), unit="s")
    ids = [f"{day:%m%d}-{i}" for i in range(n)]
    preds = pd.DataFrame({"request_id": ids, "predicted_at": ts, "score": 1 / (1 + np.exp(-seen_logit))})
    preds = preds.assign(**observed, c0=c0, c1=c1, region=region)
    labels = pd.DataFrame({"request_id": ids, "labeled_at": ts + pd.Timedelta(hours=1), "y": y})
    if incident == "labels_stopped":
        labels = labels.iloc[: n // 10]
    return preds, labels


def _warehouse(
    tmp_path: Path, incident: str | None, *, seed: int = 7, days: int = 7
) -> tuple[sa.Engine, MonitorConfig]:
    rng = np.random.default_rng(seed)
    parts = [_day(rng, START - d * DAY, ROWS_PER_DAY, None) for d in range(days, 0, -1)]
    parts.append(_day(rng, START, ROWS_CURRENT, incident))
    preds = pd.concat([p for p, _ in parts], ignore_index=True)  # noqa: F841 - read by DuckDB by name
    labels = pd.concat([lab for _, lab in parts], ignore_index=True)  # noqa: F841
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE preds AS SELECT * FROM preds")
        con.execute("CREATE TABLE labels AS SELECT * FROM labels")
    return sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool), _monitor(path)


def _diagnose(engine: sa.Engine, monitor: MonitorConfig) -> Diagnosis:
    as_of = START + DAY + timedelta(hours=48)
    window = fetch_window_stats(engine, monitor, start=START, end=START + DAY, as_of=as_of)
    return diagnose_window(
        engine, monitor, WindowRun.of(Window(START, START + DAY, "daily"), as_of=as_of), stats=window
    )


@pytest.mark.integration
def test_feature_shift_inside_one_segment_is_data_drift(tmp_path):
    diagnosis = _diagnose(*_warehouse(tmp_path, "data_drift"))
    cause = diagnosis.root_cause
    assert cause.verdict == "data_drift", cause
    assert cause.top_features[0] == "f0"
    assert cause.top_segment == "region=EU"
    assert "f0" in cause.summary and "region=EU" in cause.summary
    drifted = {f.feature for f in diagnosis.drift if f.method == "psi" and f.drifted}
    assert drifted == {"f0"}


@pytest.mark.integration
def test_concept_flip_inside_a_segment_is_concept_drift(tmp_path):
    cause = _diagnose(*_warehouse(tmp_path, "concept_drift")).root_cause
    assert cause.verdict == "concept_drift", cause
    assert cause.top_segment == "region=EU"
    assert "region=EU" in cause.summary


@pytest.mark.integration
def test_null_burst_is_data_quality(tmp_path):
    diagnosis = _diagnose(*_warehouse(tmp_path, "null_burst"))
    assert diagnosis.root_cause.verdict == "data_quality", diagnosis.root_cause
    assert diagnosis.root_cause.top_features[0] == "f1"
    f1 = next(q for q in diagnosis.quality if q.feature == "f1")
    assert f1.null_rate == pytest.approx(0.4, abs=0.03)


@pytest.mark.integration
def test_traffic_moving_to_a_weak_segment_is_segment_shift(tmp_path):
    diagnosis = _diagnose(*_warehouse(tmp_path, "segment_shift"))
    cause = diagnosis.root_cause
    assert cause.verdict == "segment_shift", cause
    assert cause.top_segment == "region=LATAM"
    latam = next(r for r in diagnosis.segments if r.value == "LATAM")
    assert latam.reference_share == pytest.approx(0.1, abs=0.02)
    assert latam.share == pytest.approx(0.7, abs=0.03)


@pytest.mark.integration
def test_labels_stopping_is_label_pipeline(tmp_path):
    cause = _diagnose(*_warehouse(tmp_path, "labels_stopped")).root_cause
    assert cause.verdict == "label_pipeline", cause
    assert "coverage 10%" in cause.summary


@pytest.mark.integration
def test_clean_window_is_healthy_with_no_drift(tmp_path):
    diagnosis = _diagnose(*_warehouse(tmp_path, None))
    assert not [f for f in diagnosis.drift if f.drifted and f.segment is None]
    # Inside LATAM (~400 rows of the day, ~10%) binned JS and Wasserstein sit at the 0.1 threshold from sampling
    # alone (0.084 / 0.097 on per-segment quantile edges, 0.10 / 0.12 on the monitor's fixed edges): a few
    # noisy segment findings, which must not make a verdict.
    assert not [f for f in diagnosis.drift if f.drifted and f.method == "psi"]
    assert all(q.issue is None for q in diagnosis.quality)
    assert diagnosis.root_cause.verdict == "healthy", diagnosis.root_cause
    overall = [f for f in diagnosis.drift if f.segment is None]
    assert len(overall) == 6 * 4 + 2 * 3
    # The findings measured inside a segment (the worst one, drawn in the report) are on top of those.
    assert len(diagnosis.drift) - len(overall) in (0, len(overall))
    assert {r.value for r in diagnosis.segments} == set(REGIONS)


@pytest.mark.integration
def test_a_reference_is_merged_from_stored_profiles_never_scanned_again(tmp_path):
    """The second diagnosis of the window (a later revision) profiles only the window: the reference comes from
    the profiles stored by the first, so it survives its rows being deleted from the predictions table."""
    engine, monitor = _warehouse(tmp_path, "data_drift")
    profile_scans: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "GROUPING SETS" in statement.upper() and "preds" in statement:
            profile_scans.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    as_of = START + DAY + timedelta(hours=48)
    stats = fetch_window_stats(engine, monitor, start=START, end=START + DAY, as_of=as_of)
    window = Window(START, START + DAY, "daily")
    first = diagnose_window(engine, monitor, WindowRun.of(window, as_of=as_of), stats=stats)
    assert len(profile_scans) == 1 + 7  # the window and, once, each of the seven reference days
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM preds WHERE predicted_at < :start"), {"start": START})
    profile_scans.clear()
    later = as_of + timedelta(days=1)
    again = diagnose_window(engine, monitor, WindowRun.of(window, as_of=later), stats=stats)
    assert len(profile_scans) == 1  # the window's own rows, at its new revision
    overall = [(f.feature, f.method, f.score) for f in first.drift if f.segment is None]
    assert overall and [(f.feature, f.method, f.score) for f in again.drift if f.segment is None] == overall
    assert {f.feature for f in again.drift if f.method == "psi" and f.drifted} == {"f0"}


def test_first_day_of_data_has_no_reference_and_no_verdict(tmp_path):
    diagnosis = _diagnose(*_warehouse(tmp_path, None, days=0))
    assert diagnosis.drift == () and diagnosis.root_cause is None


def test_reference_ranges_rolling_and_fixed():
    monitor = _monitor(Path("unused.duckdb"))
    hour = datetime(2026, 3, 8, 13)
    ranges = reference_ranges(monitor, Window(hour, hour + timedelta(hours=1), "hourly"))
    assert len(ranges) == 7
    assert ranges[0] == (hour - DAY, hour - DAY + timedelta(hours=1))
    assert ranges[-1][0] == hour - 7 * DAY
    assert len(coalesce(ranges)) == 7
    daily = reference_ranges(monitor, Window(START, START + DAY, "daily"))
    assert coalesce(daily) == [(START - 7 * DAY, START)]
    fixed = monitor.model_copy(
        update={"reference": monitor.reference.model_copy(update={"kind": "fixed", "start": START, "end": START + DAY})}
    )
    assert reference_ranges(fixed, Window(START, START + DAY, "daily")) == [(START, START + DAY)]


@pytest.mark.integration
def test_nan_values_in_a_numeric_feature_are_counted_and_the_window_is_diagnosed(tmp_path):
    """5 % of f1 'nan' in every day (DuckDB sorts NaN above all numbers): used to raise in the drift code."""
    engine, monitor = _warehouse(tmp_path, "data_drift")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE preds SET f1 = 'nan'::DOUBLE WHERE hash(request_id) % 20 = 0"))
        nan_share = conn.execute(sa.text("SELECT avg(CAST(isnan(f1) AS INT)) FROM preds")).scalar()
    assert 0.04 < nan_share < 0.06
    diagnosis = _diagnose(engine, monitor)
    assert diagnosis.root_cause.verdict == "data_drift" and diagnosis.root_cause.top_features[0] == "f0"
    f1 = next(q for q in diagnosis.quality if q.feature == "f1")
    assert f1.null_rate == pytest.approx(nan_share, abs=0.02) and f1.issue is None  # as in the reference
    assert {f.feature for f in diagnosis.drift if f.method == "psi"} >= {"f0", "f1"}
