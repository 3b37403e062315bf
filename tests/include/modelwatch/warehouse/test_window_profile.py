"""The one-statement window profile against core.profiles on the same rows in pandas (DuckDB and PostgreSQL)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.core.config import MonitorConfig, parse_monitor
from modelwatch.core.profiles import WHOLE_WINDOW, WindowProfile, edges_from_baseline, merge_all, profile_frame
from modelwatch.warehouse.window_profile import fetch_window_profile
from tests.profile_checks import assert_same_profile

T0 = datetime(2026, 5, 1)
DAY = timedelta(days=1)
SEGMENTS = ["Region", "tier"]  # "Region" must be quoted on PostgreSQL; "order" below is a reserved word


def _rows(n: int = 4000) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.05] = np.nan
    frame = pd.DataFrame(
        {
            "ts": T0 + pd.to_timedelta(rng.integers(0, 2 * 86400, size=n), unit="s"),
            "x": x,
            "order": rng.poisson(2.0, size=n).astype(float),  # ties on the edges
            "plan": rng.choice(["basic", "pro", "max", "legacy", "trial", None], size=n),
            "Region": rng.choice(["EU", "US", None], size=n, p=[0.5, 0.4, 0.1]),
            "tier": rng.choice(["a", "b"], size=n),
        }
    )
    second_day = frame["ts"] >= T0 + DAY
    frame.loc[second_day, "x"] = frame.loc[second_day, "x"] * 3 + 1  # beyond the baseline's range
    # Degenerate edges: "flat" is one value in the baseline (one edge), "void" has none there (no edges).
    frame["flat"] = 2.0
    frame.loc[second_day, "flat"] = rng.choice([1.0, 2.0, 3.0], size=int(second_day.sum()))
    frame["void"] = np.nan
    frame.loc[second_day, "void"] = rng.normal(size=int(second_day.sum()))
    return frame


ROWS = _rows()
BASELINE = ROWS[ROWS["ts"] < T0 + DAY]
EDGES = edges_from_baseline(
    BASELINE, numeric=["x", "order"], categorical=["plan"], bins=10, top_categories=2, extra_categories=2
)

DEGENERATE = edges_from_baseline(
    BASELINE, numeric=["flat", "void", "x"], categorical=["plan"], bins=10, top_categories=2, extra_categories=1
)


def _monitor() -> MonitorConfig:
    return parse_monitor(
        {
            "name": "profiled",
            "model": {"name": "m"},
            "task": "binary_classification",
            "warehouse": {"url": "duckdb:///:memory:"},
            "predictions": {
                "table": "preds",
                "request_id": "request_id",
                "timestamp": "ts",
                "score": "x",
                "features": [
                    {"name": "x", "kind": "numeric"},
                    {"name": "order", "kind": "numeric"},
                    {"name": "plan", "kind": "categorical"},
                ],
                "segments": SEGMENTS,
            },
            "labels": {"table": "labels", "request_id": "request_id", "timestamp": "ts", "label": "y"},
        }
    )


@pytest.fixture
def warehouse(warehouse_engine) -> sa.Engine:
    ROWS.to_sql("preds", warehouse_engine, index=False)
    # Real NaNs as well as NULLs (to_sql writes NaN as NULL): NaN must count as a null too.
    nan_rows = [{"ts": T0 + DAY + timedelta(hours=h), "x": float("nan"), "order": 1.0, "tier": "a"} for h in range(3)]
    with warehouse_engine.begin() as conn:
        conn.execute(sa.insert(sa.table("preds", *[sa.column(k) for k in nan_rows[0]])), nan_rows)
    return warehouse_engine


def _window(start: datetime, end: datetime) -> pd.DataFrame:
    extra = pd.DataFrame(
        [{"ts": T0 + DAY + timedelta(hours=h), "x": np.nan, "order": 1.0, "tier": "a"} for h in range(3)]
    )
    frame = pd.concat([ROWS, extra], ignore_index=True)
    return frame[(frame["ts"] >= start) & (frame["ts"] < end)]


def _statements(engine: sa.Engine, action):
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        return action(), seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)


def _session_setting(statement: str) -> bool:
    return "set_config" in statement or statement.startswith("SET ")


@pytest.mark.parametrize("day", [0, 1])
def test_the_statement_profiles_equal_core_profiles_of_the_same_rows(warehouse, day) -> None:
    start, end = T0 + day * DAY, T0 + (day + 1) * DAY
    sql, statements = _statements(
        warehouse, lambda: fetch_window_profile(warehouse, _monitor(), EDGES, start=start, end=end)
    )
    memory = profile_frame(_window(start, end), EDGES, segments=SEGMENTS)
    assert_same_profile(sql, memory)
    reads = [s for s in statements if not _session_setting(s)]
    assert len(reads) == 1 and "GROUPING SETS" in reads[0]
    assert len(re.findall(r"\bFROM\s+preds\b", reads[0])) == 1  # the window's rows are read once
    assert sql.segments() == [WHOLE_WINDOW, ("Region", "EU"), ("Region", "US"), ("tier", "a"), ("tier", "b")]
    x = sql.features[(*WHOLE_WINDOW, "x")]
    assert x.nulls >= (3 if day == 1 else 1)
    if day == 1:
        assert x.bins[0] + x.above_last > 0  # the drifted day leaves the baseline's range


def test_the_hours_merge_into_the_day(warehouse) -> None:
    hours: list[WindowProfile] = [
        fetch_window_profile(
            warehouse, _monitor(), EDGES, start=T0 + h * 6 * timedelta(hours=1), end=T0 + (h + 1) * timedelta(hours=6)
        )
        for h in range(4)
    ]
    day = fetch_window_profile(warehouse, _monitor(), EDGES, start=T0, end=T0 + DAY)
    merged = merge_all(hours)
    assert merged is not None
    assert_same_profile(merged, day)


def test_an_empty_window_gives_zero_counts(warehouse) -> None:
    start = T0 + 10 * DAY
    sql = fetch_window_profile(warehouse, _monitor(), EDGES, start=start, end=start + DAY)
    assert_same_profile(sql, profile_frame(_window(start, start + DAY), EDGES, segments=SEGMENTS))
    assert sql.features[(*WHOLE_WINDOW, "x")].n == 0


@pytest.mark.parametrize("segments", [[], SEGMENTS])
def test_edges_of_one_value_or_none_with_and_without_segments(warehouse, segments) -> None:
    assert DEGENERATE.numeric["flat"] == (2.0,) and DEGENERATE.numeric["void"] == ()
    start, end = T0, T0 + 2 * DAY
    sql = fetch_window_profile(warehouse, _monitor(), DEGENERATE, start=start, end=end, segments=segments)
    assert_same_profile(sql, profile_frame(_window(start, end), DEGENERATE, segments=segments))
    assert len(sql.segments()) == (1 if not segments else 5)
    flat = sql.features[(*WHOLE_WINDOW, "flat")]
    assert len(flat.bins) == 2 and flat.bins[0] > 0 and flat.bins[1] > flat.above_last > 0
    void = sql.features[(*WHOLE_WINDOW, "void")]
    assert void.bins == (void.n - void.nulls,) and void.bins[0] > 0 and void.above_last == 0
