"""Rows of the whole-evaluation benchmark (``bench/bench_evaluation.py``), made with numpy from a seed.

A binary classifier's predictions with 10 numeric and 3 categorical features and 3 segment columns, and
its labels (90% labelled, 1 h to ~1 day late). In a ``shifted`` range ``x0`` moves by one unit inside
segment ``seg0 = s0_1`` and the labels there stop following ``x0``, so the model's AUC drops in that
segment: the root cause has something to find.

numpy and pandas only: the NannyML and Evidently virtualenvs import this module too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

NUMERIC = tuple(f"x{i}" for i in range(10))
CATEGORICAL = {"cat0": ("c", 4), "cat1": ("d", 12), "cat2": ("e", 40)}
SEGMENTS = {"seg0": ("s0_", 5), "seg1": ("s1_", 10), "seg2": ("s2_", 20)}
"""Column -> (value prefix, number of values); values are prefix + index (``c0`` .. ``c3``)."""
SHIFTED_SEGMENT = ("seg0", "s0_1")
LABELLED_SHARE = 0.9
PREDICTION_COLUMNS = ("request_id", "predicted_at", "score", *NUMERIC, *CATEGORICAL, *SEGMENTS)
LABEL_COLUMNS = ("request_id", "labeled_at", "y")

_US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class RowRange:
    """``rows`` predictions spread uniformly over ``[start, start + span)``, ids from ``first_id``."""

    rows: int
    start: datetime
    span: timedelta
    first_id: int = 0
    shifted: bool = False


def _labels(prefix: str, codes: np.ndarray, count: int) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=[f"{prefix}{i}" for i in range(count)])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def generate_rows(part: RowRange, *, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and labels of one range; the same ``part`` and ``seed`` give the same rows.

    Categorical columns are ``pd.Categorical`` (cheap at 10M rows); writers cast them to text.
    """
    rng = np.random.default_rng([seed, part.first_id])
    n = part.rows
    span_us = int(part.span / timedelta(microseconds=1))
    offsets = np.sort(rng.integers(0, span_us, size=n))
    predicted_at = np.datetime64(part.start, "us") + offsets.astype("timedelta64[us]")
    x = rng.standard_normal((n, len(NUMERIC))) * np.arange(1, len(NUMERIC) + 1)
    cats = {c: rng.integers(0, k, size=n) for c, (_, k) in CATEGORICAL.items()}
    segs = {c: rng.integers(0, k, size=n) for c, (_, k) in SEGMENTS.items()}
    column, value = SHIFTED_SEGMENT
    in_segment = (segs[column] == int(value.rsplit("_", 1)[1])) & part.shifted
    x[:, 0] += in_segment
    rest = 0.5 * x[:, 1] - 0.3 * x[:, 2] + 1.0 * (cats["cat0"] == 1) - 0.5
    logit = 1.8 * x[:, 0] + rest
    truth = np.where(in_segment, rest, logit) + rng.standard_normal(n) * 0.5
    y = (rng.random(n) < _sigmoid(truth)).astype(np.int32)
    predictions = pd.DataFrame(
        {
            "request_id": np.arange(part.first_id, part.first_id + n, dtype=np.int64),
            "predicted_at": predicted_at,
            "score": _sigmoid(logit),
            **{name: x[:, i] for i, name in enumerate(NUMERIC)},
            **{c: _labels(prefix, cats[c], k) for c, (prefix, k) in CATEGORICAL.items()},
            **{c: _labels(prefix, segs[c], k) for c, (prefix, k) in SEGMENTS.items()},
        }
    )
    labelled = rng.random(n) < LABELLED_SHARE
    delay_us = (_US_PER_HOUR + rng.exponential(6 * _US_PER_HOUR, size=n)).astype(np.int64)
    labels = pd.DataFrame(
        {
            "request_id": predictions["request_id"].to_numpy()[labelled],
            "labeled_at": (predicted_at + delay_us.astype("timedelta64[us]"))[labelled],
            "y": y[labelled],
        }
    )
    return predictions, labels


def chunked(part: RowRange, *, chunk_rows: int) -> Iterator[RowRange]:
    """``part`` cut into consecutive ranges of at most ``chunk_rows`` rows, each an equal share of the span.

    Each piece is generated with its own seed, so 10M rows never sit in memory at once.
    """
    pieces = max(1, -(-part.rows // chunk_rows))
    for i in range(pieces):
        first = part.rows * i // pieces
        last = part.rows * (i + 1) // pieces
        yield RowRange(
            rows=last - first,
            start=part.start + part.span * i / pieces,
            span=part.span / pieces,
            first_id=part.first_id + first,
            shifted=part.shifted,
        )


def window_and_reference(rows: int, reference_rows: int, *, window_start: datetime) -> tuple[RowRange, RowRange]:
    """The benchmark's day window (shifted) and its reference: the day before, with ids below the window's."""
    day = timedelta(days=1)
    reference = RowRange(reference_rows, window_start - day, day, first_id=0)
    window = RowRange(rows, window_start, day, first_id=reference_rows, shifted=True)
    return window, reference


def monitor_document(*, url: str, reference: dict, start_date: datetime) -> dict:
    """The benchmark's monitor, as its YAML file would read: the shape of ``include/monitors/churn.yaml``
    (hourly + daily, 24 h label delay, roc_auc and f1 checks, its label-free rules) on these tables."""
    features = [{"name": n, "kind": "numeric"} for n in NUMERIC]
    features += [{"name": n, "kind": "categorical"} for n in CATEGORICAL]
    return {
        "name": "bench_evaluation",
        "model": {"name": "bench-classifier"},
        "task": "binary_classification",
        "warehouse": {"url": url},
        "predictions": {
            "table": "preds",
            "request_id": "request_id",
            "timestamp": "predicted_at",
            "score": "score",
            "features": features,
            "segments": list(SEGMENTS),
        },
        "labels": {"table": "labels", "request_id": "request_id", "timestamp": "labeled_at", "label": "y"},
        "classes": ["0", "1"],
        "decision_threshold": 0.5,
        "label_delay": {"expected": "24h", "coverage_target": 0.95, "lookback": "72h"},
        "cadences": ["hourly", "daily"],
        "start_date": start_date.isoformat(),
        "reference": reference,
        "checks": [
            {
                "metric": "roc_auc",
                "min_samples": 200,
                "rules": [
                    {"type": "absolute", "min": 0.75, "severity": "critical"},
                    {"type": "baseline_drop", "baseline": {"value": 0.87}, "max_drop": 0.05, "severity": "warning"},
                ],
            },
            {"metric": "f1", "min_samples": 200, "rules": [{"type": "absolute", "min": 0.5, "severity": "warning"}]},
        ],
        "label_free": [
            {"type": "feature_drift", "top_k": 3, "method": "psi", "threshold": 0.5, "segment": "seg0",
             "severity": "critical"},
            {"type": "feature_drift", "top_k": 5, "method": "psi", "threshold": 0.25, "severity": "warning"},
            {"type": "multivariate_drift", "threshold": 0.1, "severity": "warning"},
            {"type": "score_drift", "method": "psi", "threshold": 0.2, "severity": "warning"},
            {"type": "positive_rate", "max_change": 0.1, "severity": "warning"},
            {"type": "estimated", "metric": "roc_auc", "min": 0.75, "severity": "warning"},
        ],
    }  # fmt: skip


def text_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows with categorical columns as plain text, for writers that do not take categories."""
    return frame.astype({c: str for c in (*CATEGORICAL, *SEGMENTS) if c in frame})
