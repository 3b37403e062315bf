"""Window statements under hostile sessions: a non-UTC time zone, and PostgreSQL tables never ANALYZEd."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.app.pipeline import evaluate_window
from modelwatch.core.windows import Window
from modelwatch.warehouse.engine import load_frame
from modelwatch.warehouse.window_query import fetch_segments_stats, fetch_window_stats
from tests.warehouse_tables import NAIVE, ZONED, create_table, simple_monitor

START = datetime(2026, 11, 1, 8)
END = START + timedelta(hours=1)


def _at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 1, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize("column_type", [ZONED, NAIVE], ids=["timestamptz", "timestamp"])
def test_windows_are_utc_whatever_the_session_time_zone(zoned_engine, column_type) -> None:
    # 13:10Z is 08:10 in New York: a window that followed the session would count it and drop the others.
    moments = [_at(8, 10), _at(8, 40), _at(13, 10), _at(7, 50)]
    if column_type is NAIVE:
        moments = [m.replace(tzinfo=None) for m in moments]
    rows = [
        {"id": i, "ts": m, "score": s, "x": float(i), "region": "eu"}
        for i, (m, s) in enumerate(zip(moments, [0.2, 0.7, 0.5, 0.4], strict=True))
    ]
    columns = {"id": sa.BigInteger(), "ts": column_type, "score": sa.Double(), "x": sa.Double(), "region": sa.Text()}
    create_table(zoned_engine, "preds", columns, rows)
    labels = [{"id": i, "lts": m + timedelta(minutes=10), "y": i % 2} for i, m in enumerate(moments)]
    create_table(zoned_engine, "labels", {"id": sa.BigInteger(), "lts": column_type, "y": sa.Integer()}, labels)
    monitor = simple_monitor(
        classes=["0", "1"],
        predictions={"features": [{"name": "x", "kind": "numeric"}], "segments": ["region"]},
        reference={"kind": "fixed", "start": "2026-11-01T07:00:00", "end": "2026-11-01T08:00:00"},
    )
    as_of = END + timedelta(hours=1)
    stats = fetch_window_stats(zoned_engine, monitor, start=START, end=END, as_of=as_of)
    assert (stats.counts.predictions, stats.counts.labelled, stats.counts.labels_before_prediction) == (2, 2, 0)
    assert stats.task_stats.tp + stats.task_stats.fn == 1  # id 1 (08:40Z), labelled 1
    segments = fetch_segments_stats(zoned_engine, monitor, columns=["region"], start=START, end=END, as_of=as_of)[
        "region"
    ]
    assert segments["eu"].counts.predictions == 2
    # The whole evaluation, diagnosis included (it reads the column's zoned min/max: DuckDB needs pytz).
    result = evaluate_window(zoned_engine, monitor, window=Window(START, END, "hourly"), as_of=as_of)
    assert result.counts.predictions == 2
    assert result.drift and result.drift[0].current_summary["n"] == 2  # ids 0 and 1 (x = 0.0, 1.0)
    assert result.drift[0].current_summary["max"] == 1.0


def test_postgres_plans_do_not_depend_on_statistics_of_fresh_tables(postgres_engine) -> None:
    # Freshly loaded, never ANALYZEd: the planner guessed a handful of rows and nested-looped the join
    # (20 s for this window); with nested loops off it hashes (0.1 s here, as fast as after ANALYZE).
    n = 4_000
    rng = np.random.default_rng(4)
    ts = START + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    load_frame(postgres_engine, "preds", pd.DataFrame({"id": np.arange(n), "ts": ts, "score": rng.random(n)}))
    labels = pd.DataFrame({"id": np.arange(n), "lts": END + timedelta(minutes=5), "y": rng.integers(0, 2, n)})
    load_frame(postgres_engine, "labels", labels)
    monitor = simple_monitor(classes=["0", "1"])
    began = time.perf_counter()
    stats = fetch_window_stats(postgres_engine, monitor, start=START, end=END, as_of=END + timedelta(hours=1))
    elapsed = time.perf_counter() - began
    assert stats.counts.predictions == n and stats.counts.labelled == n
    assert elapsed < 3.0, f"{elapsed:.1f} s for a {n}-row window on never-analyzed tables"
    with postgres_engine.connect() as conn:
        # The settings are transaction-local: a pooled connection keeps the server's own afterwards.
        assert conn.execute(sa.text("SHOW enable_nestloop")).scalar_one() == "on"
