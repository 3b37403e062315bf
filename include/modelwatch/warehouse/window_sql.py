"""SQLAlchemy Core statements behind :mod:`modelwatch.warehouse.window_query`.

One statement per window: the window's predictions de-duplicated by request id, LEFT JOINed to the
labels (known before ``as_of``) de-duplicated the same way, and aggregated in a single GROUP BY whose
groups are small (score bin x model version [x segment value]). Everything else - the rollup of the
groups into one statistic - happens in Python on at most a few ten thousand rows. A second, tiny
statement counts orphan labels. Identifiers are ``table()``/``column()`` objects (quoted by the dialect)
and every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select

from modelwatch.config import MonitorConfig, Task
from modelwatch.stats import APE_EPS, BIN_NUDGE, LOG_EPS

NULL_SEGMENT = "(null)"


@dataclass(frozen=True)
class WindowBounds:
    start: datetime
    end: datetime
    as_of: datetime


def _count(cond: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.sum(sa.case((cond, 1), else_=0))


def _total(cond: ColumnElement[bool], value: ColumnElement[float]) -> ColumnElement[float]:
    return sa.func.sum(sa.case((cond, value), else_=None))


def _table(name: str, schema: str | None, columns: list[str]) -> sa.TableClause:
    return sa.table(name, *[sa.column(c) for c in dict.fromkeys(columns)], schema=schema)


def _latest_per_id(
    source: sa.TableClause,
    keys: tuple[str, ...],
    ts: str,
    selected: dict[str, ColumnElement],
    tiebreak: ColumnElement,
    where: list[ColumnElement[bool]],
    count_label: str,
) -> sa.Subquery:
    """Latest row per request id (ties: larger ``tiebreak`` first) plus how many rows the id had.

    ``row_number`` and ``count`` share one window (same PARTITION BY), so both engines sort/hash once.
    """
    part = [source.c[k] for k in keys]
    inner = (
        sa.select(
            *[source.c[k].label(f"k{i}") for i, k in enumerate(keys)],
            *[expr.label(name) for name, expr in selected.items()],
            sa.func.row_number()
            .over(partition_by=part, order_by=[source.c[ts].desc(), tiebreak.desc().nulls_last()])
            .label("rn"),
            sa.func.count().over(partition_by=part).label(count_label),
        )
        .where(*where)
        .subquery()
    )
    return sa.select(*[c for c in inner.c if c.key != "rn"]).where(inner.c.rn == 1).subquery()


def _predictions(monitor: MonitorConfig, bounds: WindowBounds, segment: str | None) -> sa.Subquery:
    p = monitor.predictions
    columns = [*p.request_id, p.timestamp]
    columns += [c for c in (p.score, p.predicted_label, p.model_version, segment) if c]
    columns += list(p.class_scores.values())
    source = _table(p.table, p.db_schema, columns)
    ts = source.c[p.timestamp]
    selected: dict[str, ColumnElement] = {"pts": ts}
    if monitor.task is Task.MULTICLASS:
        selected["score"] = sa.cast(source.c[p.predicted_label], sa.String)
        for i, cls in enumerate(monitor.classes):
            if cls in p.class_scores:
                selected[f"cs{i}"] = sa.cast(source.c[p.class_scores[cls]], sa.Double)
    else:
        selected["score"] = sa.cast(source.c[p.score], sa.Double)
    selected["mv"] = sa.cast(source.c[p.model_version], sa.String) if p.model_version else sa.null()
    if segment:
        selected["seg"] = sa.func.coalesce(sa.cast(source.c[segment], sa.String), NULL_SEGMENT)
    where = [ts >= bounds.start, ts < bounds.end]
    return _latest_per_id(source, p.request_id, p.timestamp, selected, selected["score"], where, "n_rows")


def _labels(monitor: MonitorConfig, bounds: WindowBounds) -> sa.Subquery:
    lab = monitor.labels
    source = _table(lab.table, lab.db_schema, [*lab.request_id, lab.timestamp, lab.label])
    value_type = sa.Double if monitor.task is Task.REGRESSION else sa.String
    value = sa.cast(source.c[lab.label], value_type)
    selected = {"lts": source.c[lab.timestamp], "lab": value}
    # Only labels of ids predicted in the window: de-duplicating the whole labels table per window would
    # cost a full sort of every label ever written, for a window that needs a few thousand of them.
    p = monitor.predictions
    window_ids = _table(p.table, p.db_schema, [*p.request_id, p.timestamp]).alias("window_ids")
    in_window = sa.exists(
        sa.select(sa.literal(1))
        .select_from(window_ids)
        .where(
            window_ids.c[p.timestamp] >= bounds.start,
            window_ids.c[p.timestamp] < bounds.end,
            *[window_ids.c[pk] == source.c[lk] for pk, lk in zip(p.request_id, lab.request_id, strict=True)],
        )
    )
    where = [source.c[lab.timestamp] < bounds.as_of, in_window]
    return _latest_per_id(source, lab.request_id, lab.timestamp, selected, value, where, "n_labels")


def _classes(monitor: MonitorConfig) -> tuple[str, ...]:
    return monitor.classes or ("0", "1")


@dataclass(frozen=True)
class _Row:
    """Row-level conditions over the joined, de-duplicated window (see window_query's docstring)."""

    score_ok: ColumnElement[bool]
    score_null: ColumnElement[bool]
    label_after: ColumnElement[bool]
    good_label: ColumnElement[bool]
    labelled: ColumnElement[bool]


def _conditions(monitor: MonitorConfig, p: sa.Subquery, lab: sa.Subquery) -> _Row:
    score = p.c.score
    if monitor.task is Task.BINARY:
        score_ok = sa.and_(score.is_not(None), score >= 0.0, score <= 1.0)
    elif monitor.task is Task.MULTICLASS:
        score_ok = sa.and_(score.is_not(None), score.in_(monitor.classes))
    else:
        score_ok = score.is_not(None)
    # Every condition is NULL-free (IS NOT NULL first), so NOT(cond) never turns into NULL.
    label_after = sa.and_(lab.c.lts.is_not(None), lab.c.lts >= p.c.pts)
    if monitor.task is Task.REGRESSION:
        good_label = sa.and_(label_after, lab.c.lab.is_not(None))
    else:
        good_label = sa.and_(label_after, lab.c.lab.is_not(None), lab.c.lab.in_(_classes(monitor)))
    return _Row(score_ok, score.is_(None), label_after, good_label, sa.and_(score_ok, good_label))


def _join_health(row: _Row, p: sa.Subquery, lab: sa.Subquery) -> list[ColumnElement]:
    return [
        sa.func.count().label("n"),
        sa.func.sum(p.c.n_rows).label("n_rows"),
        sa.func.sum(lab.c.n_labels - 1).label("dup_labels"),
        _count(lab.c.lts < p.c.pts).label("before"),
        _count(sa.and_(row.label_after, lab.c.lab.is_(None))).label("null_labels"),
        _count(sa.and_(row.label_after, lab.c.lab.is_not(None), sa.not_(row.good_label))).label("bad_labels"),
        _count(row.score_null).label("null_scores"),
        _count(sa.and_(sa.not_(row.score_null), sa.not_(row.score_ok))).label("bad_scores"),
        _count(row.labelled).label("labelled"),
    ]


def _binary(monitor: MonitorConfig, row: _Row, p: sa.Subquery, lab: sa.Subquery, resolution: float | None):
    negative, positive = _classes(monitor)
    s = p.c.score
    threshold = sa.literal(monitor.decision_threshold, sa.Double)
    if resolution is None:
        key = s
    else:
        top = round(1.0 / resolution) - 1
        index = sa.func.floor((s + sa.literal(BIN_NUDGE, sa.Double)) / sa.literal(resolution, sa.Double))
        key = sa.cast(sa.func.least(sa.func.greatest(index, 0), top), sa.BigInteger)
    is_pos = sa.and_(row.labelled, lab.c.lab == positive)
    is_neg = sa.and_(row.labelled, lab.c.lab == negative)
    unlabelled = sa.and_(row.score_ok, sa.not_(row.labelled))
    clipped = sa.func.least(sa.func.greatest(s, LOG_EPS), 1.0 - LOG_EPS)
    y = sa.case((lab.c.lab == positive, 1.0), else_=0.0)
    loss = sa.case((lab.c.lab == positive, -sa.func.ln(clipped)), else_=-sa.func.ln(1.0 - clipped))
    aggregates = [
        _count(is_pos).label("pos"),
        _count(is_neg).label("neg"),
        _count(unlabelled).label("unl"),
        _total(row.labelled, s).label("ssl"),
        _total(unlabelled, s).label("ssu"),
        _count(sa.and_(is_pos, s >= threshold)).label("tp"),
        _count(sa.and_(is_neg, s >= threshold)).label("fp"),
        _count(sa.and_(is_neg, s < threshold)).label("tn"),
        _count(sa.and_(is_pos, s < threshold)).label("fn"),
        _total(row.labelled, loss).label("log_loss_sum"),
        _total(row.labelled, (s - y) * (s - y)).label("brier_sum"),
        _count(sa.and_(row.score_ok, s >= threshold)).label("predicted_positive_all"),
        _count(row.score_ok).label("scored_all"),
        _total(row.score_ok, s).label("score_sum_all"),
    ]
    return [sa.case((row.score_ok, key), else_=None).label("bin")], aggregates


def _regression(row: _Row, p: sa.Subquery, lab: sa.Subquery):
    err = p.c.score - lab.c.lab
    ape = sa.and_(row.labelled, sa.func.abs(lab.c.lab) > APE_EPS)
    aggregates = [
        _total(row.labelled, err).label("sum_error"),
        _total(row.labelled, sa.func.abs(err)).label("sum_abs_error"),
        _total(row.labelled, err * err).label("sum_sq_error"),
        _total(row.labelled, lab.c.lab).label("sum_y"),
        _total(row.labelled, lab.c.lab * lab.c.lab).label("sum_y2"),
        _total(ape, sa.func.abs(err) / sa.func.abs(lab.c.lab)).label("sum_ape"),
        _count(ape).label("n_ape"),
        _count(row.score_ok).label("scored_all"),
        _total(row.score_ok, p.c.score).label("sum_prediction_all"),
    ]
    return [], aggregates


def _multiclass(monitor: MonitorConfig, row: _Row, p: sa.Subquery, lab: sa.Subquery):
    groups = [
        sa.case((row.labelled, p.c.score), else_=None).label("predicted"),
        sa.case((row.labelled, lab.c.lab), else_=None).label("truth"),
    ]
    whens = [(lab.c.lab == cls, p.c[f"cs{i}"]) for i, cls in enumerate(monitor.classes) if f"cs{i}" in p.c]
    if not whens:
        return groups, []
    p_true = sa.case(*whens, else_=None)
    clipped = sa.func.least(sa.func.greatest(p_true, LOG_EPS), 1.0 - LOG_EPS)
    with_proba = sa.and_(row.labelled, p_true.is_not(None))
    return groups, [
        _total(with_proba, -sa.func.ln(clipped)).label("log_loss_sum"),
        _count(with_proba).label("log_loss_n"),
    ]


def window_statement(
    monitor: MonitorConfig, bounds: WindowBounds, *, resolution: float | None, segment: str | None = None
) -> Select:
    """The grouped statement: one row per (task group, model version[, segment value]).

    Args:
        monitor: The monitor whose tables and columns are queried.
        bounds: Window and label cut-off.
        resolution: Binary score-bin width (None = group by exact score).
        segment: Optional predictions column to group by as well (``seg``).

    Returns:
        A SELECT whose rows :func:`modelwatch.warehouse.window_query` rolls up.
    """
    p = _predictions(monitor, bounds, segment)
    lab = _labels(monitor, bounds)
    on = sa.and_(*[p.c[f"k{i}"] == lab.c[f"k{i}"] for i in range(len(monitor.predictions.request_id))])
    row = _conditions(monitor, p, lab)
    if monitor.task is Task.BINARY:
        groups, aggregates = _binary(monitor, row, p, lab, resolution)
    elif monitor.task is Task.REGRESSION:
        groups, aggregates = _regression(row, p, lab)
    else:
        groups, aggregates = _multiclass(monitor, row, p, lab)
    groups = [*groups, p.c.mv]
    if segment:
        groups.append(p.c.seg)
    statement = sa.select(*groups, *_join_health(row, p, lab), *aggregates).select_from(p.outerjoin(lab, on))
    return statement.group_by(*groups)


def orphan_statement(monitor: MonitorConfig, bounds: WindowBounds) -> Select:
    """Labels with start <= label_ts < min(end, as_of) whose id was never predicted (any time)."""
    p, lab = monitor.predictions, monitor.labels
    preds = _table(p.table, p.db_schema, list(p.request_id)).alias("any_prediction")
    labels = _table(lab.table, lab.db_schema, [*lab.request_id, lab.timestamp])
    ts = labels.c[lab.timestamp]
    same_id = [preds.c[pk] == labels.c[lk] for pk, lk in zip(p.request_id, lab.request_id, strict=True)]
    predicted = sa.exists(sa.select(sa.literal(1)).select_from(preds).where(*same_id))
    upper = min(bounds.end, bounds.as_of)
    return sa.select(sa.func.count()).select_from(labels).where(ts >= bounds.start, ts < upper, ~predicted)
