"""Window statistics on adversarial values, both engines: label types, exact scores, NaN/inf, NULL ids.

Each case is checked against scikit-learn or a count written out by hand: these are the values on which an
implementation of the README's semantics and the warehouse statements used to disagree.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.metrics import log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

from modelwatch.app.pipeline import evaluate_window
from modelwatch.core.stats import LOG_EPS
from modelwatch.core.windows import Window
from modelwatch.warehouse.column_types import RequestIdTypeError, kind_of
from modelwatch.warehouse.window_query import fetch_window_stats
from tests.warehouse_tables import NAIVE, create_table, simple_monitor

START = datetime(2026, 11, 1, 8)
END = START + timedelta(hours=1)
AS_OF = END + timedelta(hours=30)
WINDOW = Window(START, END, "hourly")


def _predictions(engine, scores, *, ids=None, extra=None) -> None:
    ids = list(range(len(scores))) if ids is None else ids
    rows = [
        {"id": i, "ts": START + timedelta(seconds=10 * n), "score": s, **(extra[n] if extra else {})}
        for n, (i, s) in enumerate(zip(ids, scores, strict=True))
    ]
    columns = {"id": sa.BigInteger(), "ts": NAIVE, "score": sa.Double()}
    if extra:
        columns.update({k: sa.Double() if isinstance(v, float) else sa.Text() for k, v in extra[0].items()})
    create_table(engine, "preds", columns, rows)


def _labels(engine, values, *, label_type, ids=None) -> None:
    ids = list(range(len(values))) if ids is None else ids
    rows = [{"id": i, "lts": END + timedelta(minutes=5), "y": v} for i, v in zip(ids, values, strict=True)]
    create_table(engine, "labels", {"id": sa.BigInteger(), "lts": NAIVE, "y": label_type}, rows)


def _binary_case(rng: np.random.Generator, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, n)
    return np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1), y


@pytest.mark.parametrize(
    ("label_type", "encode"),
    [(sa.Double(), float), (sa.Boolean(), bool), (sa.Integer(), int), (sa.Text(), str)],
    ids=["double", "boolean", "integer", "text"],
)
def test_labels_compare_by_value_in_their_own_type(warehouse_engine, label_type, encode) -> None:
    # DOUBLE 1.0 is class "1" (DuckDB's text of it is '1.0'); BOOLEAN TRUE is the positive class.
    scores, y = _binary_case(np.random.default_rng(1))
    _predictions(warehouse_engine, scores.tolist())
    _labels(warehouse_engine, [encode(v) for v in y.tolist()], label_type=label_type)
    monitor = simple_monitor(classes=["0", "1"])
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    assert result.counts.labels_out_of_domain == 0
    assert result.counts.labelled == len(y)
    assert result.metrics["roc_auc"].value == pytest.approx(roc_auc_score(y, scores), abs=1e-3)
    assert result.metrics["prevalence"].value == pytest.approx(y.mean())


def test_boolean_labels_map_true_to_the_positive_class_whatever_its_name(warehouse_engine) -> None:
    scores, y = _binary_case(np.random.default_rng(2))
    _predictions(warehouse_engine, scores.tolist())
    _labels(warehouse_engine, [bool(v) for v in y.tolist()], label_type=sa.Boolean())
    monitor = simple_monitor(classes=["stayed", "churned"])
    stats = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF)
    assert stats.task_stats.tp + stats.task_stats.fn == int(y.sum())
    assert stats.counts.labelled == len(y)


def test_out_of_domain_labels_are_reported_with_what_was_found(warehouse_engine) -> None:
    # Classes named "no"/"yes" while the table holds 0.0/1.0: a finding that says so, not "labels stalled".
    scores, y = _binary_case(np.random.default_rng(3), n=50)
    _predictions(warehouse_engine, scores.tolist())
    _labels(warehouse_engine, [float(v) for v in y.tolist()], label_type=sa.Double())
    monitor = simple_monitor(classes=["no", "yes"])
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    assert result.counts.labels_out_of_domain == 50 and result.counts.labelled == 0
    found = "0.0/1.0" if warehouse_engine.dialect.name == "duckdb" else "0/1"  # each engine's text of a DOUBLE
    assert result.stats.out_of_domain_labels == tuple(found.split("/"))
    assert f"labels out of domain: found {found}, expected no/yes (50 labels excluded)" in result.findings
    assert not any(f.startswith("labels stalled") for f in result.findings)


@pytest.mark.parametrize(
    ("scores", "y"),
    [
        ([1e-14, 2e-14, 3e-14, 4e-14, 5e-14, 6e-14], [0, 0, 0, 1, 1, 1]),
        ([0.3, 0.1 + 0.2, 0.3, 0.1 + 0.2], [1, 0, 1, 0]),
    ],
    ids=["tiny-distinct", "0.3-vs-0.1+0.2"],
)
def test_exact_requery_keeps_every_distinct_double(warehouse_engine, scores, y) -> None:
    _predictions(warehouse_engine, scores)
    _labels(warehouse_engine, y, label_type=sa.Integer())
    monitor = simple_monitor(classes=["0", "1"])
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    assert result.metrics["roc_auc"].value == roc_auc_score(y, scores)  # 1.0 and 0.0: no tie left


def test_log_loss_clips_at_machine_epsilon_like_scikit_learn(warehouse_engine) -> None:
    scores = [0.0, 1.0, 0.0, 1.0, 0.5, 0.9]
    y = [0, 1, 1, 0, 1, 0]  # two confident misses: the clipping decides the value
    _predictions(warehouse_engine, scores)
    _labels(warehouse_engine, y, label_type=sa.Integer())
    monitor = simple_monitor(classes=["0", "1"])
    stats = fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF)
    assert np.finfo(np.float64).eps == LOG_EPS
    assert stats.task_stats.log_loss_sum / len(y) == pytest.approx(log_loss(y, scores), rel=1e-12)


def test_non_finite_regression_predictions_are_counted_and_excluded(warehouse_engine) -> None:
    predictions = [10.0, 12.0, math.nan, math.inf, -math.inf, 7.0, 3.0]
    truths = [11.0, 12.5, 9.0, 9.0, 9.0, math.nan, 4.0]  # a NaN label too: out of domain, not a number
    _predictions(warehouse_engine, predictions)
    _labels(warehouse_engine, truths, label_type=sa.Double())
    monitor = simple_monitor("regression")
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    assert result.counts.scores_out_of_range == 3
    assert result.counts.labels_out_of_domain == 1  # the NaN label (its prediction, 7.0, is finite)
    assert result.counts.labelled == 3
    kept_p, kept_y = [10.0, 12.0, 3.0], [11.0, 12.5, 4.0]
    assert result.metrics["mae"].value == pytest.approx(mean_absolute_error(kept_y, kept_p), rel=1e-12)
    assert result.metrics["mse"].value == pytest.approx(mean_squared_error(kept_y, kept_p), rel=1e-12)
    assert "non-finite predictions: 3 NaN or infinite predictions excluded" in result.findings
    text = json.dumps(result.to_json_dict(), allow_nan=False)  # valid JSON: no bare NaN anywhere
    assert json.loads(text)["metrics"]["mae"] == pytest.approx(2.5 / 3)


def test_multiclass_class_scores_above_one_are_counted_not_clipped(warehouse_engine) -> None:
    classes = ["a", "b", "c"]
    proba = [(0.7, 0.2, 0.1), (0.1, 0.8, 0.1), (1.5, 0.0, 0.0), (0.2, 0.2, 0.6), (0.3, 0.3, 0.4)]
    predicted = ["a", "b", "a", "c", "c"]
    y = ["a", "b", "a", "c", "a"]
    extra = [
        {"predicted": p, **{f"p_{c}": v for c, v in zip(classes, row, strict=True)}}
        for p, row in zip(predicted, proba, strict=True)
    ]
    _predictions(warehouse_engine, [0.0] * len(y), extra=extra)
    _labels(warehouse_engine, y, label_type=sa.Text())
    monitor = simple_monitor("multiclass_classification", classes=classes)
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    assert result.counts.class_scores_out_of_range == 1
    assert result.counts.labelled == 5 and result.metrics["accuracy"].value == pytest.approx(0.8)
    kept = [i for i in range(5) if i != 2]
    want = log_loss([y[i] for i in kept], [proba[i] for i in kept], labels=classes)
    assert result.metrics["log_loss"].value == pytest.approx(want, rel=1e-12)
    assert any(f.startswith("class scores out of range: 1 ") for f in result.findings)


def test_null_request_ids_are_counted_and_excluded_not_one_id_with_duplicates(warehouse_engine) -> None:
    scores = [0.1, 0.9, 0.2, 0.8, 0.6, 0.4, 0.7]
    ids = [1, 2, 3, 4, None, None, None]
    _predictions(warehouse_engine, scores, ids=ids)
    _labels(warehouse_engine, [0, 1, 0, 1, 1], label_type=sa.Integer(), ids=[1, 2, 3, 4, None])
    monitor = simple_monitor(classes=["0", "1"])
    result = evaluate_window(warehouse_engine, monitor, window=WINDOW, as_of=AS_OF, diagnose=False)
    counts = result.counts
    assert (counts.predictions, counts.null_request_ids, counts.duplicate_predictions) == (4, 3, 0)
    assert counts.labelled == 4 and counts.duplicate_labels == 0
    assert "null request ids: 3 prediction rows without a request id excluded" in result.findings


def test_request_ids_of_different_types_fail_with_one_clear_error(warehouse_engine) -> None:
    _predictions(warehouse_engine, [0.2, 0.7])
    rows = [{"id": str(i), "lts": END, "y": i} for i in range(2)]
    create_table(warehouse_engine, "labels", {"id": sa.Text(), "lts": NAIVE, "y": sa.Integer()}, rows)
    monitor = simple_monitor(classes=["0", "1"])
    with pytest.raises(RequestIdTypeError, match=r"request id preds\.id is BIGINT but labels\.id is (TEXT|VARCHAR)"):
        fetch_window_stats(warehouse_engine, monitor, start=START, end=END, as_of=AS_OF)


def test_column_kinds_of_both_engines_spellings() -> None:
    assert {kind_of(t) for t in ("BIGINT", "double precision", "DECIMAL(18,3)", "numeric", "INTEGER")} == {"numeric"}
    assert {kind_of(t) for t in ("VARCHAR", "text", "character varying")} == {"text"}
    assert kind_of("boolean") == kind_of("BOOLEAN") == "boolean"
    assert kind_of("interval") == "INTERVAL" and kind_of("uuid") == "UUID"


def test_duckdb_reruns_are_byte_identical(tmp_path) -> None:
    # Enough rows for DuckDB to add each group's doubles on both threads, in an order that varies per run.
    from modelwatch.warehouse.engine import load_frame, make_engine

    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    rng = np.random.default_rng(9)
    n = 300_000
    import pandas as pd

    ts = START + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    load_frame(engine, "preds", pd.DataFrame({"id": np.arange(n), "ts": ts, "score": rng.random(n)}))
    load_frame(engine, "labels", pd.DataFrame({"id": np.arange(n), "lts": END, "y": rng.integers(0, 2, n)}))
    for task, monitor in [("binary", simple_monitor(classes=["0", "1"])), ("regression", simple_monitor("regression"))]:
        runs = {
            json.dumps(fetch_window_stats(engine, monitor, start=START, end=END, as_of=AS_OF).to_dict())
            for _ in range(3)
        }
        assert len(runs) == 1, task
    engine.dispose()
