"""Daily windows equal the day computed directly, after the hourly runs stored their own revisions.

Merging the hours' stored statistics got three things wrong: an id predicted in two hours of the day
counted twice, each hour's newest stored revision knew only the labels of its own ``as_of``, and an hour
re-queried with exact scores was coarsened back to bins without the day's AUC bound being checked.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from modelwatch.app.pipeline import compute, extract
from modelwatch.core.windows import Window
from modelwatch.warehouse.engine import KEEP_OPEN_ENV, load_frame, make_engine
from tests.warehouse_tables import simple_monitor

DAY = Window(datetime(2026, 11, 1), datetime(2026, 11, 2), "daily")
HOUR = timedelta(hours=1)
MONITOR = simple_monitor(classes=["0", "1"], label_delay={"expected": "24h", "lookback": "72h"})


def _run_hours(engine, hours: range) -> None:
    """What the hourly DAG did during the day: each hour's run at its own end."""
    for h in hours:
        window = Window(DAY.start + h * HOUR, DAY.start + (h + 1) * HOUR, "hourly")
        compute(
            engine,
            MONITOR,
            extract(engine, MONITOR, window=window, as_of=window.end),
            diagnose=False,
        )


def _day(engine):
    keys = extract(engine, MONITOR, window=DAY, as_of=DAY.end)
    (result,) = [r for r in compute(engine, MONITOR, keys, diagnose=False) if r.window_start == DAY.start]
    return result


def _oracle(preds: pd.DataFrame, labels: pd.DataFrame, as_of: datetime) -> tuple[int, int, int, float | None]:
    """predictions, duplicates, labelled and sklearn's AUC of the day, by the README's rules."""
    day = preds[(preds["ts"] >= DAY.start) & (preds["ts"] < DAY.end)]
    latest = day.sort_values(["ts", "score"], ascending=False).drop_duplicates("id")
    known = labels[labels["lts"] < as_of].sort_values(["lts", "y"], ascending=False).drop_duplicates("id")
    joined = latest.merge(known, on="id", how="inner")
    joined = joined[joined["lts"] >= joined["ts"]]
    auc = roc_auc_score(joined["y"], joined["score"]) if joined["y"].nunique() == 2 else None
    return len(latest), len(day) - len(latest), len(joined), auc


def test_daily_window_counts_an_id_predicted_in_two_hours_once_with_its_later_score(warehouse_engine) -> None:
    rng = np.random.default_rng(3)
    n, again = 600, 40
    ids = np.arange(n)
    ts = DAY.start + pd.to_timedelta(rng.integers(8 * 3600, 9 * 3600, n), unit="s")
    y = rng.integers(0, 2, n)
    first = pd.DataFrame({"id": ids, "ts": ts, "score": rng.random(n)})
    # 40 ids predicted again two hours later, with the score that should count: the true label's side.
    second = pd.DataFrame({"id": ids[:again], "ts": ts[:again] + 2 * HOUR, "score": 0.6 + 0.4 * y[:again] - 0.3})
    preds = pd.concat([first, second], ignore_index=True)
    labels = pd.DataFrame({"id": ids, "lts": ts + 3 * HOUR, "y": y})
    load_frame(warehouse_engine, "preds", preds)
    load_frame(warehouse_engine, "labels", labels)
    _run_hours(warehouse_engine, range(8, 12))
    result = _day(warehouse_engine)
    predictions, duplicates, labelled, auc = _oracle(preds, labels, DAY.end)
    assert (predictions, duplicates, labelled) == (600, 40, 600)
    counts = result.counts
    assert (counts.predictions, counts.duplicate_predictions, counts.labelled) == (predictions, duplicates, labelled)
    assert counts.duplicate_labels == 0
    assert result.metrics["roc_auc"].value == pytest.approx(auc, abs=1e-3)


def test_daily_run_uses_the_labels_known_at_its_own_as_of(warehouse_engine) -> None:
    # Labels land 5-20 h after their hour: the hourly runs (at each hour's end) saw none of them.
    rng = np.random.default_rng(5)
    n = 400
    ts = DAY.start + pd.to_timedelta(rng.integers(0, 3 * 3600, n), unit="s")
    preds = pd.DataFrame({"id": np.arange(n), "ts": ts, "score": rng.random(n)})
    delay = pd.to_timedelta(rng.integers(5 * 3600, 20 * 3600, n), unit="s")
    labels = pd.DataFrame({"id": np.arange(n), "lts": ts + delay, "y": rng.integers(0, 2, n)})
    load_frame(warehouse_engine, "preds", preds)
    load_frame(warehouse_engine, "labels", labels)
    _run_hours(warehouse_engine, range(3))
    result = _day(warehouse_engine)
    want = _oracle(preds, labels, DAY.end)
    assert want[2] == int((labels["lts"] < DAY.end).sum()) > 300
    assert result.counts.labelled == want[2]


def test_daily_auc_holds_when_one_hour_needed_exact_scores(warehouse_engine) -> None:
    # Hour 8: every score in one 1e-4 bin, perfectly ordered (exact AUC 1.0, the hour is re-queried exactly).
    # Hour 9: spread scores. Merged, hour 8 fell back into one bin: roc_auc ~0.65 instead of ~1.0.
    rng = np.random.default_rng(8)
    tight_y = np.repeat([0, 1], 150)
    tight = 0.5 + np.where(tight_y == 1, 5e-5, 1e-5) + rng.uniform(0, 1e-6, 300)
    spread_y = rng.integers(0, 2, 60)
    spread = np.where(spread_y == 1, rng.uniform(0.5, 1.0, 60), rng.uniform(0.0, 0.5, 60))
    scores = np.concatenate([tight, spread])
    y = np.concatenate([tight_y, spread_y])
    ts = DAY.start + pd.to_timedelta(
        np.concatenate([np.full(300, 8 * 3600), np.full(60, 9 * 3600)]) + np.arange(360), "s"
    )
    preds = pd.DataFrame({"id": np.arange(360), "ts": ts, "score": scores})
    labels = pd.DataFrame({"id": np.arange(360), "lts": ts + timedelta(minutes=1), "y": y})
    load_frame(warehouse_engine, "preds", preds)
    load_frame(warehouse_engine, "labels", labels)
    _run_hours(warehouse_engine, range(8, 10))
    result = _day(warehouse_engine)
    assert result.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, scores), abs=1e-3)
    assert roc_auc_score(y, scores) > 0.95


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(5, 60),
    hours=st.integers(1, 4),
    repeat=st.floats(0.0, 0.5),
    tight=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_the_day_equals_its_direct_computation(tmp_path_factory, n, hours, repeat, tight, seed) -> None:
    """Hours with cross-hour duplicates, exact re-queries and late labels: the day is the day's own oracle."""
    rng = np.random.default_rng(seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEEP_OPEN_ENV, "1")  # one process owns the file: no re-open per statement
        engine = make_engine(f"duckdb:///{tmp_path_factory.mktemp('day') / 'w.duckdb'}")
    ids = rng.integers(0, max(2, int(n * (1 - repeat))), n)  # repeated ids land in any hour of the day
    ts = DAY.start + pd.to_timedelta(rng.integers(0, hours * 3600, n), unit="s")
    scores = 0.5 + rng.uniform(0, 9e-5, n) if tight else rng.random(n)
    preds = pd.DataFrame({"id": ids, "ts": ts, "score": scores})
    label_ids = np.unique(ids)
    first_seen = preds.groupby("id")["ts"].max().loc[label_ids].to_numpy()
    delay = pd.to_timedelta(rng.integers(60, 30 * 3600, len(label_ids)), unit="s")  # some land after the day
    labels = pd.DataFrame({"id": label_ids, "lts": first_seen + delay, "y": rng.integers(0, 2, len(label_ids))})
    load_frame(engine, "preds", preds)
    load_frame(engine, "labels", labels)
    _run_hours(engine, range(hours))
    result = _day(engine)
    predictions, duplicates, labelled, auc = _oracle(preds, labels, DAY.end)
    assert (result.counts.predictions, result.counts.duplicate_predictions) == (predictions, duplicates)
    assert result.counts.labelled == labelled
    got = result.metrics["roc_auc"].value
    assert (got is None) == (auc is None)
    if auc is not None:
        assert got == pytest.approx(auc, abs=1e-3)
    engine.dispose()
