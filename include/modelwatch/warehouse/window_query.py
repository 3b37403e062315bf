"""A window's join health and sufficient statistics, computed inside the warehouse.

Join semantics (exact; the tests compare against an in-memory implementation of this text):

* Window on the prediction timestamp: ``start <= predicted_at < end``. Datetimes are naive UTC;
  tz-aware arguments are converted to UTC and made naive. The statements run in a UTC session
  (:mod:`modelwatch.warehouse.session`), so TIMESTAMPTZ columns compare as instants whatever the
  database's or the process's time zone.
* Prediction rows with a NULL request-id column are ``null_request_ids``: left out of everything else.
* Predictions are de-duplicated by request id (all ``predictions.request_id`` columns): the row with the
  latest ``predicted_at`` wins (ties: the larger score / predicted label). ``duplicate_predictions`` =
  rows in the window - distinct ids; ``predictions`` = distinct ids.
* Labels exist only when ``start - LABEL_LEAD <= label_ts < as_of``, so re-running a window with the same
  ``as_of`` gives the same result. The lower bound (``window_sql.LABEL_LEAD``, one day) keeps the label rows a
  window reads proportional to the time since it began, not to the table's history: a label stamped that long
  before the window began predates every prediction of it, so it could only be a ``labels_before_prediction``
  row; it is not read, and the prediction counts as unlabelled. Per id the latest label wins (ties: the larger
  value). ``duplicate_labels`` = extra label rows of ids predicted in the window. The join is a LEFT JOIN on
  all request-id columns (by position).
* ``orphan_labels``: label rows with ``start <= label_ts < min(end, as_of)`` whose id has no prediction
  in ``[start - label_delay.lookback, end)``: never predicted, or predicted too long ago for any
  recomputation to pick the label up. Segment statistics report 0 orphans (labels carry no segment).
* Each predicted id is then classified; bad rows are counted and excluded, never coerced:
  - ``null_scores``: score NULL (multiclass: predicted label NULL);
  - ``scores_out_of_range``: binary score outside [0, 1] or NaN (multiclass: predicted label not in classes;
    regression: NaN or +-inf);
  - ``labels_before_prediction``: the joined label is older than the prediction (a data bug) - the row is
    treated as unlabelled; otherwise, for the joined label, ``null_labels`` (label NULL) and
    ``labels_out_of_domain`` (classification: label matching no class of ``monitor.classes``, or not "0"/"1"
    for a binary monitor without classes; regression: NaN or +-inf). These label counts do not depend on
    the score being valid. A few distinct out-of-domain values come back as ``out_of_domain_labels``.
  - ``class_scores_out_of_range``: multiclass rows with a class score outside [0, 1] or NaN, left out of
    the log-loss sums (not clipped).
  - ``labelled``: valid score and valid label - the rows the metrics use. Rows with a valid score and no
    usable label are "unlabelled" (binary: ``histogram.unlabelled``, ``scored_all``).
* Labels are compared with the classes by value in the column's own type
  (:class:`~modelwatch.warehouse.sql_values.ColumnKinds`: numeric 1.0 is "1", BOOLEAN TRUE is
  ``classes[1]``, text as text); binary positive = ``classes[1]``. Regression labels are cast to double.
  Request ids of different kinds in the two tables raise ``RequestIdTypeError``.
* A table whose PRIMARY KEY (or a UNIQUE constraint on NOT NULL columns) lies within its request-id
  columns cannot hold duplicates; it is read without de-duplication (:mod:`modelwatch.warehouse.keys`),
  which gives the same result several times faster.
* ``model_versions``: distinct non-NULL model versions of the window's prediction rows (superseded
  duplicates included), sorted. Segment statistics carry no versions.

The result equals ``stats.*_from_arrays`` applied to the same rows. Only aggregates leave the warehouse:
one grouped statement (score bin x row state [x segment]) plus one row holding the orphan-label count,
the window's prediction-row count and its model versions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from modelwatch.core.config import MonitorConfig, Task
from modelwatch.core.stats import (
    DEFAULT_RESOLUTION,
    BinaryStats,
    JoinCounts,
    MulticlassStats,
    RegressionStats,
    ScoreHistogram,
    TaskStats,
    WindowStats,
    histogram_keys,
)
from modelwatch.core.windows import to_naive_utc
from modelwatch.warehouse.column_types import column_kinds
from modelwatch.warehouse.keys import unique_ids
from modelwatch.warehouse.session import window_connection
from modelwatch.warehouse.window_sql import (
    LABEL_BAD,
    LABEL_BEFORE,
    LABEL_GOOD,
    LABEL_NEGATIVE,
    LABEL_NULL,
    SCORE_BAD,
    SCORE_NULL,
    SCORE_OK,
    STATE_BASE,
    out_of_domain_statement,
    segment_key,
    side_statement,
    window_statement,
)

OTHER_SEGMENT = "other"


def _bounds(start: datetime, end: datetime, as_of: datetime) -> dict[str, datetime]:
    """The keyword arguments of the window statements, in naive UTC."""
    return {"start": to_naive_utc(start), "end": to_naive_utc(end), "as_of": to_naive_utc(as_of)}


_KEYS = ("bin", "seg", "predicted", "truth")
"""Group-key columns; every other column is a count or a sum (NULL = empty sum = 0)."""


def _is_key(name: str) -> bool:
    return name in _KEYS or name.startswith("seg")


def _column(name: str, values: Any) -> np.ndarray:
    if _is_key(name):
        if isinstance(values, np.ma.MaskedArray):
            if values.dtype.kind != "O":
                return values.astype(float).filled(np.nan)
            # Not ``filled(None)``: None means "the default fill value", which is the string "?".
            keys = np.asarray(values.data, dtype=object).copy()
            keys[np.ma.getmaskarray(values)] = None
            return keys
        return np.asarray(values, dtype=object if name != "bin" else None)
    if isinstance(values, np.ma.MaskedArray):
        return values.astype(np.float64).filled(0.0)
    # PostgreSQL returns sum(bigint) as Decimal and empty sums as NULL.
    return np.asarray([0.0 if v is None else float(v) for v in values], dtype=np.float64)


def _fetch(conn: Connection, statement: Any) -> pd.DataFrame:
    """The grouped rows as one numpy column each: DuckDB's ``fetchnumpy`` skips per-row Python objects."""
    result = conn.execute(statement)
    if conn.dialect.name == "duckdb":
        columns = result.cursor.fetchnumpy()
        result.close()
    else:
        rows = result.fetchall()
        columns = {name: [row[i] for row in rows] for i, name in enumerate(result.keys())}
    frame = pd.DataFrame({name: _column(name, values) for name, values in columns.items()})
    # Groups arrive in hash order, which varies between runs: sorted, every later sum adds in one order.
    keys = [name for name in frame.columns if _is_key(name)] + ["state"]
    frame = frame.sort_values(keys, na_position="last", kind="stable", ignore_index=True)
    frame["score_state"] = frame["state"].to_numpy(dtype=np.int64) // STATE_BASE
    frame["label_state"] = frame["state"].to_numpy(dtype=np.int64) % STATE_BASE
    return frame


def _total(groups: pd.DataFrame, column: str, mask: Any = None) -> float:
    if column not in groups:
        return 0.0
    values = groups[column].to_numpy(dtype=np.float64)
    # fsum: correctly rounded, so the total does not depend on the order of the groups.
    return math.fsum(values if mask is None else values[np.asarray(mask)])


def _good_labels(monitor: MonitorConfig) -> tuple[int, ...]:
    return (LABEL_GOOD, LABEL_NEGATIVE) if monitor.task is Task.BINARY else (LABEL_GOOD,)


def _counts(
    monitor: MonitorConfig, groups: pd.DataFrame, orphans: int, window_rows: int | None, null_ids: int = 0
) -> JoinCounts:
    n = groups["n"].to_numpy(dtype=np.float64)
    score, label = groups["score_state"].to_numpy(), groups["label_state"].to_numpy()

    def count(mask: np.ndarray) -> int:
        return round(n[mask].sum())

    predictions = count(np.ones(len(n), dtype=bool))
    rows = window_rows if window_rows is not None else round(_total(groups, "n_rows"))
    return JoinCounts(
        predictions=predictions,
        labelled=count((score == SCORE_OK) & np.isin(label, _good_labels(monitor))),
        duplicate_predictions=rows - predictions,
        duplicate_labels=round(_total(groups, "dup_labels")),
        orphan_labels=orphans,
        labels_before_prediction=count(label == LABEL_BEFORE),
        null_scores=count(score == SCORE_NULL),
        scores_out_of_range=count(score == SCORE_BAD),
        labels_out_of_domain=count(label == LABEL_BAD),
        null_labels=count(label == LABEL_NULL),
        null_request_ids=null_ids,
        class_scores_out_of_range=round(_total(groups, "bad_class_scores")),
    )


def _histogram(scored: pd.DataFrame, resolution: float | None) -> ScoreHistogram:
    if scored.empty:
        return ScoreHistogram.empty(resolution)
    raw = scored["bin"].to_numpy(dtype=np.float64)
    keys = raw if resolution is None else raw * resolution
    # Same keys as stats.binary_stats_from_arrays so they compare exactly.
    uniq, inverse = histogram_keys(keys, resolution)
    label = scored["label_state"].to_numpy()
    n = scored["n"].to_numpy(dtype=np.float64)
    score_sum = scored["score_sum"].to_numpy(dtype=np.float64)
    labelled = (label == LABEL_GOOD) | (label == LABEL_NEGATIVE)

    def per_bin(mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=np.where(mask, weights, 0.0), minlength=len(uniq))

    return ScoreHistogram(
        resolution,
        uniq,
        per_bin(label == LABEL_GOOD, n).round().astype(np.int64),
        per_bin(label == LABEL_NEGATIVE, n).round().astype(np.int64),
        per_bin(~labelled, n).round().astype(np.int64),
        per_bin(labelled, score_sum),
        per_bin(~labelled, score_sum),
    )


def _binary_stats(monitor: MonitorConfig, groups: pd.DataFrame, resolution: float | None) -> BinaryStats:
    scored = groups[groups["score_state"] == SCORE_OK]
    label, above = scored["label_state"].to_numpy(), scored["above"].to_numpy() == 1
    pos, neg = label == LABEL_GOOD, label == LABEL_NEGATIVE

    def count(mask: np.ndarray) -> int:
        return round(_total(scored, "n", mask))

    return BinaryStats(
        threshold=monitor.decision_threshold,
        histogram=_histogram(scored, resolution),
        tp=count(pos & above),
        fp=count(neg & above),
        tn=count(neg & ~above),
        fn=count(pos & ~above),
        log_loss_sum=_total(scored, "loss_sum", pos | neg),
        brier_sum=_total(scored, "sq_sum", pos | neg),
        predicted_positive_all=count(above),
        scored_all=count(np.ones(len(scored), dtype=bool)),
        score_sum_all=_total(scored, "score_sum"),
    )


def _regression_stats(groups: pd.DataFrame) -> RegressionStats:
    scored = groups[groups["score_state"] == SCORE_OK]
    labelled = scored[scored["label_state"] == LABEL_GOOD]
    floats = ("sum_error", "sum_abs_error", "sum_sq_error", "sum_y", "sum_y2", "sum_ape")
    return RegressionStats(
        n=round(_total(labelled, "n")),
        n_ape=round(_total(labelled, "n_ape")),
        scored_all=round(_total(scored, "n")),
        sum_prediction_all=_total(scored, "score_sum"),
        **{c: _total(labelled, c) for c in floats},
    )


def _multiclass_stats(monitor: MonitorConfig, groups: pd.DataFrame) -> MulticlassStats:
    index = {c: i for i, c in enumerate(monitor.classes)}
    confusion = np.zeros((len(index), len(index)), dtype=np.int64)
    labelled = groups[(groups["score_state"] == SCORE_OK) & (groups["label_state"] == LABEL_GOOD)]
    for truth, predicted, count in zip(labelled["truth"], labelled["predicted"], labelled["n"], strict=True):
        confusion[index[truth], index[predicted]] += round(count)
    if "log_loss_sum" not in groups:
        return MulticlassStats(monitor.classes, confusion)
    return MulticlassStats(
        monitor.classes, confusion, _total(labelled, "log_loss_sum"), round(_total(labelled, "log_loss_n"))
    )


def _window_stats(
    monitor: MonitorConfig,
    groups: pd.DataFrame,
    resolution: float | None,
    orphans: int = 0,
    window_rows: int | None = None,
    versions: Sequence[str] = (),
    null_ids: int = 0,
) -> WindowStats:
    """Roll the grouped rows up; ``window_rows`` None = per-group ``n_rows`` sums (segment statements)."""
    task_stats: TaskStats
    if monitor.task is Task.BINARY:
        task_stats = _binary_stats(monitor, groups, resolution)
    elif monitor.task is Task.REGRESSION:
        task_stats = _regression_stats(groups)
    else:
        task_stats = _multiclass_stats(monitor, groups)
    return WindowStats(
        _counts(monitor, groups, orphans, window_rows, null_ids), task_stats, tuple(sorted({str(v) for v in versions}))
    )


def fetch_window_stats(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    resolution: float | None = DEFAULT_RESOLUTION,
    orphans: int | None = None,
) -> WindowStats:
    """Join health and task statistics of one window, aggregated in the warehouse.

    Args:
        engine: The warehouse holding the monitor's predictions and labels tables.
        monitor: The monitor (tables, columns, task, classes, threshold).
        start: Window start (inclusive, on the prediction timestamp).
        end: Window end (exclusive).
        as_of: Only labels with a timestamp before this are known.
        resolution: Binary score-bin width; None keeps exact scores.
        orphans: The window's orphan-label count when already known (a revision after the window closed:
            :func:`modelwatch.warehouse.documents.closed_orphan_counts`); not queried again.

    Returns:
        The window's :class:`WindowStats` (see the module docstring for the exact semantics).
    """
    bounds = _bounds(start, end, as_of)
    with window_connection(engine) as conn:
        unique, kinds = unique_ids(conn, monitor), column_kinds(conn, monitor)
        groups = _fetch(conn, window_statement(monitor, **bounds, resolution=resolution, unique=unique, kinds=kinds))
        # A separate statement: riding along as a cross join saved one round trip (~2 ms) but let DuckDB
        # hold both hash tables at once (+190 MB peak at 10M rows).
        side = conn.execute(side_statement(monitor, **bounds, orphans=orphans is None)).one()
        stats = _window_stats(
            monitor,
            groups,
            resolution,
            int(side.orphans or 0) if orphans is None else orphans,
            int(side.window_rows or 0),
            side.versions or (),
            int(side.null_ids or 0),
        )
        if stats.counts.labels_out_of_domain:
            statement = out_of_domain_statement(monitor, **bounds, unique=unique, kinds=kinds)
            examples = tuple(str(value) for (value,) in conn.execute(statement))
            stats = replace(stats, out_of_domain_labels=examples)
    return stats


def _segment_groups(
    engine: Engine,
    monitor: MonitorConfig,
    bounds: dict[str, datetime],
    resolution: float | None,
    segments: Sequence[str],
) -> pd.DataFrame:
    with window_connection(engine) as conn:
        unique, kinds = unique_ids(conn, monitor), column_kinds(conn, monitor)
        statement = window_statement(
            monitor, **bounds, resolution=resolution, segments=segments, unique=unique, kinds=kinds
        )
        return _fetch(conn, statement)


def _by_segment(
    monitor: MonitorConfig, groups: pd.DataFrame, key: str, top_k: int, resolution: float | None
) -> dict[str, WindowStats]:
    """Split grouped rows by their segment value in ``key``: the ``top_k`` largest, the rest as ``other``."""
    if groups.empty:
        return {}
    volume = groups.groupby(key)["n"].sum().sort_values(ascending=False, kind="stable")
    kept = set(volume.index[:top_k])
    segment = np.asarray([s if s in kept else OTHER_SEGMENT for s in groups[key]], dtype=object)
    order = [s for s in volume.index if s in kept] + ([OTHER_SEGMENT] if len(volume) > top_k else [])
    return {name: _window_stats(monitor, groups[segment == name], resolution) for name in dict.fromkeys(order)}


def fetch_segments_stats(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    columns: Sequence[str],
    start: datetime,
    end: datetime,
    as_of: datetime,
    top_k: int = 10,
    resolution: float | None = 1e-3,
) -> dict[str, dict[str, WindowStats]]:
    """The same statistics per value of each predictions column: one statement, one de-duplication and join.

    Args:
        engine: The warehouse.
        monitor: The monitor.
        columns: Predictions columns (normally ``predictions.segments``).
        start: Window start (inclusive).
        end: Window end (exclusive).
        as_of: Label cut-off.
        top_k: Values beyond the ``top_k`` largest by predictions are merged into ``"other"``.
        resolution: Binary score-bin width (coarser than the window default: many groups).

    Returns:
        Column -> (segment value (text; NULL -> ``"(null)"``) -> statistics, largest segments first).
    """
    columns = list(dict.fromkeys(columns))
    if not columns:
        return {}
    groups = _segment_groups(engine, monitor, _bounds(start, end, as_of), resolution, columns)
    out = {}
    for i, column in enumerate(columns):
        key = segment_key(i)
        mine = groups[groups[key].notna()] if not groups.empty else groups
        out[column] = _by_segment(monitor, mine.reset_index(drop=True), key, top_k, resolution)
    return out
