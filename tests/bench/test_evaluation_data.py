"""bench/evaluation_data.py: the benchmark's rows are what its docstring says, and reproducible."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from evaluation_data import (
    CATEGORICAL,
    LABEL_COLUMNS,
    PREDICTION_COLUMNS,
    SEGMENTS,
    SHIFTED_SEGMENT,
    RowRange,
    chunked,
    generate_rows,
    monitor_document,
    text_columns,
    window_and_reference,
)

START = datetime(2026, 11, 8)
PART = RowRange(20_000, START, timedelta(days=1), first_id=500)


def test_rows_have_the_documented_shape():
    predictions, labels = generate_rows(PART, seed=3)
    assert tuple(predictions.columns) == PREDICTION_COLUMNS
    assert tuple(labels.columns) == LABEL_COLUMNS
    assert predictions["request_id"].tolist() == list(range(500, 20_500))
    assert predictions["predicted_at"].is_monotonic_increasing
    assert predictions["predicted_at"].min() >= pd.Timestamp(START)
    assert predictions["predicted_at"].max() < pd.Timestamp(START + timedelta(days=1))
    assert predictions["score"].between(0, 1).all()
    for column, (prefix, count) in {**CATEGORICAL, **SEGMENTS}.items():
        assert set(predictions[column].astype(str)) == {f"{prefix}{i}" for i in range(count)}
    assert len(labels) / len(predictions) == pytest.approx(0.9, abs=0.01)
    joined = predictions.merge(labels, on="request_id", validate="one_to_one")
    assert (joined["labeled_at"] - joined["predicted_at"] >= pd.Timedelta(hours=1)).all()
    assert set(joined["y"]) == {0, 1}


def test_same_range_and_seed_give_the_same_rows_and_another_seed_does_not():
    first, second, other = generate_rows(PART, seed=3), generate_rows(PART, seed=3), generate_rows(PART, seed=4)
    pd.testing.assert_frame_equal(first[0], second[0])
    pd.testing.assert_frame_equal(first[1], second[1])
    assert not np.allclose(first[0]["x0"], other[0]["x0"])


def test_the_shift_moves_x0_by_one_inside_its_segment_only():
    plain, _ = generate_rows(PART, seed=3)
    shifted, _ = generate_rows(RowRange(PART.rows, PART.start, PART.span, PART.first_id, shifted=True), seed=3)
    column, value = SHIFTED_SEGMENT
    inside = (plain[column] == value).to_numpy()
    moved = shifted["x0"].to_numpy() - plain["x0"].to_numpy()
    assert inside.any() and (~inside).any()
    np.testing.assert_allclose(moved[inside], 1.0)
    np.testing.assert_allclose(moved[~inside], 0.0)
    pd.testing.assert_frame_equal(shifted.drop(columns=["x0", "score"]), plain.drop(columns=["x0", "score"]))


def test_chunks_tile_the_range_with_contiguous_ids():
    part = RowRange(10_003, START, timedelta(days=1), first_id=7)
    pieces = list(chunked(part, chunk_rows=3_000))
    assert [p.rows for p in pieces] == [2_500, 2_501, 2_501, 2_501]
    assert sum(p.rows for p in pieces) == part.rows
    assert pieces[0].start == START and pieces[-1].start + pieces[-1].span == START + timedelta(days=1)
    for before, after in pairwise(pieces):
        assert after.first_id == before.first_id + before.rows
        assert after.start == before.start + before.span
    assert [p.rows for p in chunked(RowRange(5, START, timedelta(hours=1)), chunk_rows=100)] == [5]


def test_the_reference_is_the_day_before_with_ids_below_the_window():
    window, reference = window_and_reference(1_000, 400, window_start=START)
    assert (reference.start, reference.start + reference.span) == (START - timedelta(days=1), START)
    assert (window.start, window.first_id, window.shifted, reference.shifted) == (START, 400, True, False)
    assert reference.first_id + reference.rows == window.first_id


def test_the_monitor_document_is_a_valid_monitor_on_these_columns():
    from modelwatch.core.config import parse_monitor

    reference = {"kind": "fixed", "start": "2026-11-07T00:00:00", "end": "2026-11-08T00:00:00"}
    monitor = parse_monitor(monitor_document(url="duckdb:///x.duckdb", reference=reference, start_date=START))
    features = [f.name for f in monitor.predictions.features]
    predictions, _ = generate_rows(RowRange(10, START, timedelta(hours=1)), seed=1)
    assert set(features) | set(monitor.predictions.segments) <= set(predictions.columns)
    assert len(features) == 13 and len(monitor.predictions.segments) == 3


def test_text_columns_turns_categories_into_plain_text():
    predictions, labels = generate_rows(RowRange(50, START, timedelta(hours=1)), seed=1)
    text = text_columns(predictions)
    for column in (*CATEGORICAL, *SEGMENTS):
        assert not isinstance(text[column].dtype, pd.CategoricalDtype)
        assert text[column].tolist() == predictions[column].astype(str).tolist()
    pd.testing.assert_frame_equal(text_columns(labels), labels)
