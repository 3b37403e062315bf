"""A window's join health and sufficient statistics, computed inside the warehouse.

Join semantics (exact; the tests compare against an in-memory implementation of this text):

* Window on the prediction timestamp: ``start <= predicted_at < end``. Datetimes are naive UTC;
  tz-aware arguments are converted to UTC and made naive.
* Predictions are de-duplicated by request id (all ``predictions.request_id`` columns): the row with the
  latest ``predicted_at`` wins (ties: the larger score / predicted label). ``duplicate_predictions`` =
  rows in the window - distinct ids; ``predictions`` = distinct ids.
* Labels exist only when ``label_ts < as_of``, so re-running a window with the same ``as_of`` gives the
  same result. Per id the latest label wins (ties: the larger value). ``duplicate_labels`` = extra label
  rows of ids predicted in the window. The join is a LEFT JOIN on all request-id columns (by position).
* ``orphan_labels``: label rows with ``start <= label_ts < min(end, as_of)`` whose id has no prediction
  anywhere in the predictions table. Segment statistics report 0 orphans (labels carry no segment).
* Each predicted id is then classified; bad rows are counted and excluded, never coerced:
  - ``null_scores``: score NULL (multiclass: predicted label NULL);
  - ``scores_out_of_range``: binary score outside [0, 1] (multiclass: predicted label not in classes);
  - ``labels_before_prediction``: the joined label is older than the prediction (a data bug) - the row is
    treated as unlabelled; otherwise, for the joined label, ``null_labels`` (label NULL) and
    ``labels_out_of_domain`` (classification: label text not in ``monitor.classes``, or not "0"/"1" for a
    binary monitor without classes). These label counts do not depend on the score being valid.
  - ``labelled``: valid score and valid label - the rows the metrics use. Rows with a valid score and no
    usable label are "unlabelled" (binary: ``histogram.unlabelled``, ``scored_all``).
* Labels are compared as text for classification (``CAST(label AS VARCHAR)``: integer 1 -> "1"); binary
  positive = ``classes[1]``. Regression labels are cast to double.
* ``model_versions``: distinct non-NULL model versions of the de-duplicated predictions, sorted.

The result equals ``stats.*_from_arrays`` applied to the same rows. Only aggregates leave the warehouse:
one grouped statement (score bin x model version [x segment]) plus a count of orphan labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from modelwatch.config import MonitorConfig, Task
from modelwatch.stats import (
    DEFAULT_RESOLUTION,
    BinaryStats,
    JoinCounts,
    MulticlassStats,
    RegressionStats,
    ScoreHistogram,
    TaskStats,
    WindowStats,
)
from modelwatch.warehouse.window_sql import WindowBounds, orphan_statement, window_statement

OTHER_SEGMENT = "other"


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _bounds(start: datetime, end: datetime, as_of: datetime) -> WindowBounds:
    return WindowBounds(_naive_utc(start), _naive_utc(end), _naive_utc(as_of))


def _ints(values: Iterable[Any]) -> np.ndarray:
    # PostgreSQL returns sum(bigint) as Decimal and empty sums as NULL.
    return np.asarray([int(v) if v is not None else 0 for v in values], dtype=np.int64)


def _floats(values: Iterable[Any]) -> np.ndarray:
    return np.asarray([float(v) if v is not None else 0.0 for v in values], dtype=np.float64)


def _counts(groups: pd.DataFrame, orphans: int) -> JoinCounts:
    total = {c: int(_ints(groups[c]).sum()) for c in ("n", "n_rows", "dup_labels", "labelled")}
    extra = {c: int(_ints(groups[c]).sum()) for c in ("before", "null_labels", "bad_labels", "null_scores")}
    return JoinCounts(
        predictions=total["n"],
        labelled=total["labelled"],
        duplicate_predictions=total["n_rows"] - total["n"],
        duplicate_labels=total["dup_labels"],
        orphan_labels=orphans,
        labels_before_prediction=extra["before"],
        null_scores=extra["null_scores"],
        scores_out_of_range=int(_ints(groups["bad_scores"]).sum()),
        labels_out_of_domain=extra["bad_labels"],
        null_labels=extra["null_labels"],
    )


def _histogram(groups: pd.DataFrame, resolution: float | None) -> ScoreHistogram:
    binned = groups[groups["bin"].notna()]
    if binned.empty:
        return ScoreHistogram.empty(resolution)
    raw = _floats(binned["bin"])
    keys = raw if resolution is None else raw * resolution
    # Same rounding as stats.binary_stats_from_arrays so keys compare exactly.
    uniq, inverse = np.unique(np.round(keys, 12), return_inverse=True)

    def per_bin(column: str) -> np.ndarray:
        return np.bincount(inverse, weights=_floats(binned[column]), minlength=len(uniq))

    ints = {c: per_bin(c).round().astype(np.int64) for c in ("pos", "neg", "unl")}
    return ScoreHistogram(resolution, uniq, ints["pos"], ints["neg"], ints["unl"], per_bin("ssl"), per_bin("ssu"))


def _binary_stats(monitor: MonitorConfig, groups: pd.DataFrame, resolution: float | None) -> BinaryStats:
    ints = ("tp", "fp", "tn", "fn", "predicted_positive_all", "scored_all")
    floats = ("log_loss_sum", "brier_sum", "score_sum_all")
    return BinaryStats(
        threshold=monitor.decision_threshold,
        histogram=_histogram(groups, resolution),
        **{c: int(_ints(groups[c]).sum()) for c in ints},
        **{c: float(_floats(groups[c]).sum()) for c in floats},
    )


def _regression_stats(groups: pd.DataFrame) -> RegressionStats:
    floats = ("sum_error", "sum_abs_error", "sum_sq_error", "sum_y", "sum_y2", "sum_ape", "sum_prediction_all")
    return RegressionStats(
        n=int(_ints(groups["labelled"]).sum()),
        n_ape=int(_ints(groups["n_ape"]).sum()),
        scored_all=int(_ints(groups["scored_all"]).sum()),
        **{c: float(_floats(groups[c]).sum()) for c in floats},
    )


def _multiclass_stats(monitor: MonitorConfig, groups: pd.DataFrame) -> MulticlassStats:
    index = {c: i for i, c in enumerate(monitor.classes)}
    confusion = np.zeros((len(index), len(index)), dtype=np.int64)
    labelled = groups[groups["truth"].notna()]
    for truth, predicted, count in zip(
        labelled["truth"], labelled["predicted"], _ints(labelled["labelled"]), strict=True
    ):
        confusion[index[truth], index[predicted]] += count
    if "log_loss_sum" not in groups:
        return MulticlassStats(monitor.classes, confusion)
    return MulticlassStats(
        monitor.classes,
        confusion,
        float(_floats(groups["log_loss_sum"]).sum()),
        int(_ints(groups["log_loss_n"]).sum()),
    )


def _window_stats(monitor: MonitorConfig, groups: pd.DataFrame, orphans: int, resolution: float | None) -> WindowStats:
    task_stats: TaskStats
    if monitor.task is Task.BINARY:
        task_stats = _binary_stats(monitor, groups, resolution)
    elif monitor.task is Task.REGRESSION:
        task_stats = _regression_stats(groups)
    else:
        task_stats = _multiclass_stats(monitor, groups)
    versions = tuple(sorted({str(v) for v in groups["mv"] if v is not None and not pd.isna(v)}))
    return WindowStats(_counts(groups, orphans), task_stats, versions)


def _run(engine: Engine, statement: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        result = conn.execute(statement)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)


def fetch_window_stats(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    resolution: float | None = DEFAULT_RESOLUTION,
) -> WindowStats:
    """Join health and task statistics of one window, aggregated in the warehouse.

    Args:
        engine: The warehouse holding the monitor's predictions and labels tables.
        monitor: The monitor (tables, columns, task, classes, threshold).
        start: Window start (inclusive, on the prediction timestamp).
        end: Window end (exclusive).
        as_of: Only labels with a timestamp before this are known.
        resolution: Binary score-bin width; None keeps exact scores.

    Returns:
        The window's :class:`WindowStats` (see the module docstring for the exact semantics).
    """
    bounds = _bounds(start, end, as_of)
    with engine.connect() as conn:
        result = conn.execute(window_statement(monitor, bounds, resolution=resolution))
        groups = pd.DataFrame(result.fetchall(), columns=list(result.keys()), dtype=object)
        orphans = int(conn.execute(orphan_statement(monitor, bounds)).scalar_one() or 0)
    return _window_stats(monitor, groups, orphans, resolution)


def fetch_segment_stats(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    column: str,
    start: datetime,
    end: datetime,
    as_of: datetime,
    top_k: int = 10,
    resolution: float | None = 1e-3,
) -> dict[str, WindowStats]:
    """The same statistics per value of one predictions column, in a single grouped statement.

    Args:
        engine: The warehouse.
        monitor: The monitor.
        column: A predictions column (normally one of ``predictions.segments``).
        start: Window start (inclusive).
        end: Window end (exclusive).
        as_of: Label cut-off.
        top_k: Values beyond the ``top_k`` largest by predictions are merged into ``"other"``.
        resolution: Binary score-bin width (coarser than the window default: many groups).

    Returns:
        Segment value (text; NULL -> ``"(null)"``) -> statistics, largest segments first.
    """
    bounds = _bounds(start, end, as_of)
    groups = _run(engine, window_statement(monitor, bounds, resolution=resolution, segment=column))
    if groups.empty:
        return {}
    groups["n_int"] = _ints(groups["n"])
    volume = groups.groupby("seg")["n_int"].sum().sort_values(ascending=False, kind="stable")
    kept = set(volume.index[:top_k])
    groups["segment"] = [s if s in kept else OTHER_SEGMENT for s in groups["seg"]]
    order = [s for s in volume.index if s in kept] + ([OTHER_SEGMENT] if len(volume) > top_k else [])
    return {
        name: _window_stats(monitor, groups[groups["segment"] == name], 0, resolution) for name in dict.fromkeys(order)
    }
