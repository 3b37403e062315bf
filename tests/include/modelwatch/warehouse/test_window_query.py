"""fetch_window_stats / fetch_segments_stats against an in-memory oracle of the documented join semantics."""

from __future__ import annotations

import functools
from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.core.stats import (
    BinaryStats,
    JoinCounts,
    MulticlassStats,
    RegressionStats,
    WindowStats,
    binary_stats_from_arrays,
    multiclass_stats_from_arrays,
    regression_stats_from_arrays,
)
from modelwatch.warehouse.engine import load_frame
from modelwatch.warehouse.keys import unique_ids
from modelwatch.warehouse.window_query import fetch_segments_stats, fetch_window_stats
from modelwatch.warehouse.window_sql import LABEL_LEAD, UniqueIds, window_statement
from tests.warehouse_tables import simple_monitor

START = datetime(2026, 11, 1, 10)
END = START + timedelta(hours=1)
AS_OF = END + timedelta(hours=2)
KEYS = ["tenant", "request_no"]
LABEL_KEYS = ["tenant_id", "req"]
CLASSES = ("a", "b", "c")


def _monitor(task: str, **extra):
    return simple_monitor(
        task,
        predictions={"request_id": KEYS, "timestamp": "predicted_at", "model_version": "mv", "segments": ["region"]},
        labels={"request_id": LABEL_KEYS, "timestamp": "labeled_at"},
        **({"classes": list(CLASSES)} if task == "multiclass_classification" else {}) | extra,
    )


def _base_frames(rng: np.random.Generator, n: int = 300) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ids with duplicates, rows outside the window, late/early/duplicate/orphan labels."""
    ids = pd.DataFrame({"tenant": rng.choice(["t1", "t2"], n), "request_no": np.arange(n)})
    offsets = rng.uniform(-0.3, 1.3, n) * 3600
    preds = ids.assign(predicted_at=START + pd.to_timedelta(np.round(offsets), unit="s"))
    dup = preds.sample(frac=0.15, random_state=1)
    dup = dup.assign(predicted_at=dup["predicted_at"] - pd.to_timedelta(rng.integers(1, 900, len(dup)), unit="s"))
    preds = pd.concat([preds, dup], ignore_index=True)
    preds["mv"] = rng.choice(["v1", "v2"], len(preds))
    preds["region"] = rng.choice(["eu", "us", "apac", "latam", None], len(preds), p=[0.4, 0.3, 0.15, 0.1, 0.05])
    labelled = preds.drop_duplicates(KEYS).sample(frac=0.8, random_state=2)
    delay = rng.uniform(0, 4 * 3600, len(labelled))
    delay[rng.random(len(labelled)) < 0.05] = -600  # labels before the prediction
    labels = pd.DataFrame({"tenant_id": labelled["tenant"], "req": labelled["request_no"]}).assign(
        labeled_at=labelled["predicted_at"].to_numpy() + pd.to_timedelta(np.round(delay), unit="s")
    )
    extra = labels.sample(frac=0.15, random_state=3)
    extra = extra.assign(labeled_at=extra["labeled_at"] + pd.to_timedelta(rng.integers(1, 3000, len(extra)), unit="s"))
    orphans = pd.DataFrame(
        {
            "tenant_id": "t1",
            "req": np.arange(n, n + 12),
            "labeled_at": START + pd.to_timedelta(np.arange(12) * 600, "s"),
        }
    )
    return preds, pd.concat([labels, extra, orphans], ignore_index=True)


def _binary_frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    preds, labels = _base_frames(rng)
    score = rng.random(len(preds))
    special = rng.random(len(preds))
    score[special < 0.05] = np.nan
    score[(special >= 0.05) & (special < 0.08)] = 1.4
    score[(special >= 0.08) & (special < 0.10)] = -0.1
    score[(special >= 0.10) & (special < 0.13)] = rng.choice([0.0, 1.0, 0.5], 1)
    preds["score"] = score
    y = pd.array(rng.choice([0, 1], len(labels)), dtype="Int64")
    bad = rng.random(len(labels))
    y[bad < 0.04] = pd.NA
    y[(bad >= 0.04) & (bad < 0.08)] = 2
    labels["y"] = y
    return preds, labels


def _regression_frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    preds, labels = _base_frames(rng)
    score = rng.normal(30, 10, len(preds))
    score[rng.random(len(preds)) < 0.05] = np.nan
    preds["score"] = score
    y = rng.normal(30, 12, len(labels))
    y[rng.random(len(labels)) < 0.05] = np.nan
    y[rng.random(len(labels)) < 0.05] = 0.0  # left out of MAPE
    labels["y"] = y
    return preds, labels


def _multiclass_frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    preds, labels = _base_frames(rng)
    proba = rng.dirichlet([1, 1, 1], len(preds))
    for i, c in enumerate(CLASSES):
        preds[f"p_{c}"] = proba[:, i]
    preds["predicted"] = rng.choice([*CLASSES, "zz", None], len(preds), p=[0.3, 0.3, 0.3, 0.05, 0.05])
    labels["y"] = rng.choice([*CLASSES, "q", None], len(labels), p=[0.3, 0.3, 0.3, 0.05, 0.05])
    return preds, labels


def _latest(frame: pd.DataFrame, keys: list[str], ts: str, value: str) -> pd.DataFrame:
    ordered = frame.sort_values([ts, value], ascending=False, na_position="last", kind="stable")
    return ordered.drop_duplicates(keys, keep="first")


def _oracle(
    monitor, preds: pd.DataFrame, labels: pd.DataFrame, as_of: datetime = AS_OF, resolution: float | None = 1e-4
) -> WindowStats:
    """The module docstring's semantics, row by row in pandas, then stats.*_from_arrays."""
    task = monitor.task.value
    value = "predicted" if task == "multiclass_classification" else "score"
    window = preds[(preds["predicted_at"] >= START) & (preds["predicted_at"] < END)]
    null_ids = window[KEYS].isna().any(axis=1)  # rows without a request id: counted, then left out
    versions = tuple(sorted(window["mv"].dropna().unique()))
    window = window[~null_ids]
    p = _latest(window, KEYS, "predicted_at", value)
    read = (labels["labeled_at"] >= START - LABEL_LEAD) & (labels["labeled_at"] < as_of)
    known = labels[read].rename(columns=dict(zip(LABEL_KEYS, KEYS, strict=True)))
    n_labels = known.groupby(KEYS).size().rename("n_labels").reset_index()
    lab = _latest(known, KEYS, "labeled_at", "y").merge(n_labels, on=KEYS)
    j = p.merge(lab, on=KEYS, how="left")
    after = j["labeled_at"].notna() & (j["labeled_at"] >= j["predicted_at"])
    if task == "regression":
        good = after & j["y"].notna()
        score_ok = j["score"].notna()
        score_null = ~score_ok
    else:
        text = j["y"].map(lambda v: None if pd.isna(v) else str(v))
        good = after & text.isin(monitor.classes or ("0", "1"))
        score_null = j[value].isna()
        score_ok = j[value].isin(CLASSES) if value == "predicted" else ~score_null & j["score"].between(0, 1)
    labelled = score_ok & good
    upper = min(END, as_of)
    in_range = labels[(labels["labeled_at"] >= START) & (labels["labeled_at"] < upper)]
    horizon = preds[(preds["predicted_at"] >= START - monitor.label_delay.lookback) & (preds["predicted_at"] < END)]
    recent_ids = set(map(tuple, horizon[KEYS].to_numpy().tolist()))
    orphans = sum(tuple(k) not in recent_ids for k in in_range[LABEL_KEYS].to_numpy().tolist())
    counts = JoinCounts(
        predictions=len(p),
        labelled=int(labelled.sum()),
        duplicate_predictions=len(window) - len(p),
        duplicate_labels=int((j["n_labels"].fillna(1) - 1).sum()),
        orphan_labels=orphans,
        labels_before_prediction=int((j["labeled_at"] < j["predicted_at"]).sum()),
        null_scores=int(score_null.sum()),
        scores_out_of_range=int((~score_null & ~score_ok).sum()),
        labels_out_of_domain=int((after & j["y"].notna() & ~good).sum()),
        null_labels=int((after & j["y"].isna()).sum()),
        null_request_ids=int(null_ids.sum()),
    )
    ok = j[score_ok]
    if task == "binary_classification":
        y = np.where(labelled[score_ok], (ok["y"].astype(str) == "1").astype(float), np.nan)
        stats = binary_stats_from_arrays(
            ok["score"].to_numpy(float), y, threshold=monitor.decision_threshold, resolution=resolution
        )
    elif task == "regression":
        stats = regression_stats_from_arrays(ok["score"].to_numpy(float), np.where(good[score_ok], ok["y"], np.nan))
    else:
        rows = j[labelled]
        proba = np.array([r[f"p_{r['y']}"] for _, r in rows.iterrows()])
        stats = multiclass_stats_from_arrays(rows["predicted"], rows["y"], classes=CLASSES, true_class_proba=proba)
    return WindowStats(counts, stats, versions)


def _as_segment(stats: WindowStats) -> WindowStats:
    """What segment statistics report of the same rows: no orphan labels or NULL ids, no model versions."""
    counts = JoinCounts(**{**stats.counts.__dict__, "orphan_labels": 0, "null_request_ids": 0})
    return WindowStats(counts, stats.task_stats, ())


def _assert_same(got: WindowStats, want: WindowStats) -> None:
    assert got.counts == want.counts
    assert got.model_versions == want.model_versions
    assert type(got.task_stats) is type(want.task_stats)
    a, b = got.task_stats, want.task_stats
    if isinstance(a, BinaryStats):
        np.testing.assert_allclose(a.histogram.keys, b.histogram.keys, rtol=0, atol=1e-12)
        for name in ("pos", "neg", "unlabelled"):
            np.testing.assert_array_equal(getattr(a.histogram, name), getattr(b.histogram, name))
        for name in ("score_sum_labelled", "score_sum_unlabelled"):
            np.testing.assert_allclose(getattr(a.histogram, name), getattr(b.histogram, name), rtol=1e-9)
    if isinstance(a, MulticlassStats):
        np.testing.assert_array_equal(a.confusion, b.confusion)
        assert a.log_loss_n == b.log_loss_n
        assert a.log_loss_sum == pytest.approx(b.log_loss_sum, rel=1e-9)
        return
    for f in fields(a):
        if f.name != "histogram":
            want_value = getattr(b, f.name)
            assert getattr(a, f.name) == (
                pytest.approx(want_value, rel=1e-9, abs=1e-9) if isinstance(want_value, float) else want_value
            ), f.name


FRAMES = {
    "binary_classification": (_binary_frames, {"classes": ["0", "1"], "decision_threshold": 0.5}),
    "regression": (_regression_frames, {}),
    "multiclass_classification": (_multiclass_frames, {"classes": list(CLASSES)}),
}


def _load(engine, preds: pd.DataFrame, labels: pd.DataFrame) -> None:
    assert load_frame(engine, "preds", preds) == len(preds)
    assert load_frame(engine, "labels", labels) == len(labels)


def _with_null_ids(preds: pd.DataFrame) -> pd.DataFrame:
    """A few window rows without a request id (one key column NULL), some of them sharing a request_no."""
    nulls = preds[(preds["predicted_at"] >= START) & (preds["predicted_at"] < END)].head(6).copy()
    nulls["tenant"] = None
    nulls["request_no"] = [90_001, 90_001, 90_002, 90_003, 90_003, 90_004][: len(nulls)]
    return pd.concat([preds, nulls], ignore_index=True)


@pytest.mark.parametrize("task", list(FRAMES))
def test_window_stats_equal_the_in_memory_definition(warehouse_engine, task: str) -> None:
    _check_against_the_oracle(warehouse_engine, task)


@pytest.mark.parametrize("task", list(FRAMES))
def test_window_stats_equal_the_in_memory_definition_on_a_new_york_session(zoned_engine, task: str) -> None:
    _check_against_the_oracle(zoned_engine, task)


def _check_against_the_oracle(engine, task: str) -> None:
    make, extra = FRAMES[task]
    monitor = _monitor(task, **extra)
    preds, labels = make(seed=7)
    preds = _with_null_ids(preds)
    _load(engine, preds, labels)
    got = fetch_window_stats(engine, monitor, start=START, end=END, as_of=AS_OF)
    want = _oracle(monitor, preds, labels)
    # The generated data must exercise every counter, or this comparison proves little.
    interesting = ("duplicate_predictions", "duplicate_labels", "orphan_labels", "labels_before_prediction")
    assert all(getattr(want.counts, name) > 0 for name in (*interesting, "null_scores", "null_labels"))
    assert want.counts.null_request_ids == 6
    if task != "regression":
        assert want.counts.scores_out_of_range > 0 and want.counts.labels_out_of_domain > 0
    _assert_same(got, want)


@pytest.mark.parametrize("task", list(FRAMES))
def test_tables_with_unique_ids_are_read_without_deduplication_with_the_same_result(warehouse_engine, task) -> None:
    make, extra = FRAMES[task]
    monitor = _monitor(task, **extra)
    preds, labels = make(seed=5)
    value = "predicted" if task == "multiclass_classification" else "score"
    preds = _latest(preds, KEYS, "predicted_at", value)
    labels = _latest(labels, LABEL_KEYS, "labeled_at", "y")
    _load(warehouse_engine, preds, labels)
    with warehouse_engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE preds ADD PRIMARY KEY (tenant, request_no)"))
        conn.execute(sa.text("ALTER TABLE labels ADD PRIMARY KEY (tenant_id, req)"))
        assert unique_ids(conn, monitor) == UniqueIds(predictions=True, labels=True)
    statement = str(
        window_statement(monitor, start=START, end=END, as_of=AS_OF, resolution=1e-4, unique=UniqueIds(True, True))
    )
    assert "row_number" not in statement.lower() and "exists" not in statement.lower()
    want = _oracle(monitor, preds, labels)
    assert want.counts.orphan_labels > 0 and want.counts.labels_before_prediction > 0
    _assert_same(fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF), want)
    segments = fetch_segments_stats(warehouse_engine, monitor, columns=["region"], start=START, end=END, as_of=AS_OF)
    merged = functools.reduce(WindowStats.merge, segments["region"].values())
    assert merged.counts == JoinCounts(**{**want.counts.__dict__, "orphan_labels": 0})


def test_binary_exact_scores_and_other_threshold(warehouse_engine) -> None:
    monitor = _monitor("binary_classification", decision_threshold=0.3)
    preds, labels = _binary_frames(seed=11)
    _load(warehouse_engine, preds, labels)
    got = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF, resolution=None)
    assert got.task_stats.histogram.resolution is None
    assert got.task_stats.histogram.keys.size > 100  # one key per distinct score
    _assert_same(got, _oracle(monitor, preds, labels, resolution=None))


def test_late_labels_do_not_change_a_rerun_with_the_same_as_of(duckdb_engine) -> None:
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=3)
    _load(duckdb_engine, preds, labels)
    first = fetch_window_stats(duckdb_engine, monitor, start=START, end=END, as_of=AS_OF)
    late = labels.head(50).assign(labeled_at=AS_OF + timedelta(minutes=5), y=1)
    load_frame(duckdb_engine, "labels", late, replace=False)
    again = fetch_window_stats(duckdb_engine, monitor, start=START, end=END, as_of=AS_OF)
    later = fetch_window_stats(duckdb_engine, monitor, start=START, end=END, as_of=AS_OF + timedelta(hours=1))
    _assert_same(again, first)  # float sums may differ in the last bit (parallel aggregation order)
    assert later.counts.duplicate_labels > first.counts.duplicate_labels


def test_timezone_aware_bounds_are_utc(duckdb_engine) -> None:
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=5)
    _load(duckdb_engine, preds, labels)
    naive = fetch_window_stats(duckdb_engine, monitor, start=START, end=END, as_of=AS_OF)
    plus2 = timezone(timedelta(hours=2))
    aware = fetch_window_stats(
        duckdb_engine,
        monitor,
        start=START.replace(tzinfo=UTC).astimezone(plus2),
        end=END.replace(tzinfo=UTC).astimezone(plus2),
        as_of=AS_OF.replace(tzinfo=UTC),
    )
    _assert_same(aware, naive)


def test_empty_window_has_no_rows_and_empty_statistics(duckdb_engine) -> None:
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=5)
    _load(duckdb_engine, preds, labels)
    later = START + timedelta(days=3)
    stats = fetch_window_stats(duckdb_engine, monitor, start=later, end=later + timedelta(hours=1), as_of=later)
    assert stats.counts == JoinCounts()
    assert stats.task_stats.scored_all == 0 and stats.task_stats.histogram.keys.size == 0
    assert stats.model_versions == ()
    assert isinstance(_oracle(_monitor("regression"), *_regression_frames(1)).task_stats, RegressionStats)


def test_labels_for_predictions_older_than_the_lookback_count_as_orphans(warehouse_engine) -> None:
    monitor = _monitor("binary_classification", label_delay={"lookback": "6h"})
    old = pd.DataFrame({"tenant": ["t1", "t1"], "request_no": [20_001, 20_002], "score": [0.4, 0.6]})
    old["predicted_at"] = [START - timedelta(hours=7), START - timedelta(hours=5)]  # beyond / within 6 h
    old["mv"], old["region"] = "v1", "eu"
    late = pd.DataFrame({"tenant_id": ["t1", "t1"], "req": [20_001, 20_002], "y": pd.array([1, 0])})
    late["labeled_at"] = START + timedelta(minutes=10)
    _load(warehouse_engine, old, late)
    stats = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF)
    assert stats.counts.orphan_labels == 1  # 20_001: predicted 7 h before the window, no recomputation reaches it


def test_labels_stamped_over_a_day_before_the_window_are_not_read(warehouse_engine) -> None:
    monitor = _monitor("binary_classification")
    preds = pd.DataFrame({"tenant": ["t1", "t1"], "request_no": [30_001, 30_002], "score": [0.4, 0.6]})
    preds["predicted_at"] = [START + timedelta(minutes=5), START + timedelta(minutes=6)]
    preds["mv"], preds["region"] = "v1", "eu"
    early = pd.DataFrame({"tenant_id": ["t1", "t1"], "req": [30_001, 30_002], "y": pd.array([1, 0])})
    # 30_001's label is within a day before the window: read, and a label older than its prediction;
    # 30_002's is older than that: not read at all, so its prediction is unlabelled, not "label before".
    early["labeled_at"] = [START - timedelta(hours=3), START - LABEL_LEAD - timedelta(minutes=1)]
    _load(warehouse_engine, preds, early)
    counts = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF).counts
    assert (counts.predictions, counts.labelled, counts.labels_before_prediction) == (2, 0, 1)
    assert counts.duplicate_labels == 0


def test_window_without_predictions_still_counts_orphan_labels(warehouse_engine) -> None:
    # Orphans are counted even when the grouped statement returns no rows at all.
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=5)
    _load(warehouse_engine, preds, labels)
    later = START + timedelta(days=3)
    extra = pd.DataFrame({"tenant_id": ["t9"] * 3, "req": [10_001, 10_002, 10_003], "y": pd.array([1, 0, 1])})
    extra["labeled_at"] = later + pd.to_timedelta([1, 2, 3], unit="min")
    load_frame(warehouse_engine, "labels", extra, replace=False)
    bounds = {"start": later, "end": later + timedelta(hours=1), "as_of": later + timedelta(hours=2)}
    stats = fetch_window_stats(warehouse_engine, monitor, **bounds)
    assert stats.counts == JoinCounts(orphan_labels=3)
    assert stats.task_stats.scored_all == 0


def test_segments_partition_the_window(warehouse_engine) -> None:
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=9)
    _load(warehouse_engine, preds, labels)
    kwargs = {"start": START, "end": END, "as_of": AS_OF, "resolution": 1e-3}
    segments = fetch_segments_stats(warehouse_engine, monitor, columns=["region"], top_k=3, **kwargs)["region"]
    window = preds[(preds["predicted_at"] >= START) & (preds["predicted_at"] < END)]
    latest = _latest(window, KEYS, "predicted_at", "score")
    volume = latest["region"].fillna("(null)").value_counts()
    assert list(segments) == [*volume.index[:3], "other"]
    assert [s.counts.predictions for s in segments.values()] == [*volume.iloc[:3], volume.iloc[3:].sum()]
    whole = fetch_window_stats(warehouse_engine, monitor, **kwargs)
    merged = functools.reduce(WindowStats.merge, segments.values())
    assert merged.counts == JoinCounts(**{**whole.counts.__dict__, "orphan_labels": 0})
    np.testing.assert_array_equal(merged.task_stats.histogram.pos, whole.task_stats.histogram.pos)
    eu_ids = latest[latest["region"] == "eu"]
    eu_rows = preds[preds.set_index(KEYS).index.isin(eu_ids.set_index(KEYS).index)]
    want = _oracle(monitor, eu_rows, labels, resolution=1e-3)
    assert segments["eu"].counts.predictions == len(eu_ids)
    _assert_same(segments["eu"], _as_segment(want))
    all_segments = fetch_segments_stats(warehouse_engine, monitor, columns=["region"], top_k=10, **kwargs)["region"]
    assert "(null)" in all_segments and "other" not in all_segments


@pytest.mark.parametrize("task", list(FRAMES))
def test_several_segment_columns_in_one_statement_equal_one_column_each(warehouse_engine, task: str) -> None:
    make, extra = FRAMES[task]
    monitor = _monitor(task, **extra)
    preds, labels = make(seed=13)
    rng = np.random.default_rng(13)
    preds["channel"] = rng.choice(["web", "app", None], len(preds), p=[0.5, 0.4, 0.1])
    _load(warehouse_engine, preds, labels)
    kwargs = {"start": START, "end": END, "as_of": AS_OF, "resolution": 1e-2, "top_k": 3}
    together = fetch_segments_stats(warehouse_engine, monitor, columns=["region", "channel", "mv"], **kwargs)
    assert list(together) == ["region", "channel", "mv"]
    for column, got in together.items():
        want = fetch_segments_stats(warehouse_engine, monitor, columns=[column], **kwargs)[column]
        assert list(got) == list(want), column
        for value in want:
            _assert_same(got[value], want[value])
    assert "(null)" in together["channel"] and "other" in together["region"]
    assert fetch_segments_stats(warehouse_engine, monitor, columns=[], **kwargs) == {}


def test_segments_of_an_empty_window_are_empty(duckdb_engine) -> None:
    monitor = _monitor("binary_classification")
    _load(duckdb_engine, *_binary_frames(seed=5))
    later = START + timedelta(days=3)
    got = fetch_segments_stats(
        duckdb_engine, monitor, columns=["region", "mv"], start=later, end=later + timedelta(hours=1), as_of=later
    )
    assert got == {"region": {}, "mv": {}}


def test_null_model_versions_are_not_reported_as_a_version(warehouse_engine) -> None:
    # DuckDB hands NULL text back as a masked array whose default fill value is the string "?".
    monitor = _monitor("binary_classification")
    preds, labels = _binary_frames(seed=5)
    preds["mv"] = preds["mv"].where(preds.index % 3 != 0, None)
    _load(warehouse_engine, preds, labels)
    stats = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF)
    assert stats.model_versions == ("v1", "v2")
    by_version = fetch_segments_stats(warehouse_engine, monitor, columns=["mv"], start=START, end=END, as_of=AS_OF)[
        "mv"
    ]
    assert set(by_version) == {"v1", "v2", "(null)"}
