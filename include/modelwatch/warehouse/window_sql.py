"""SQLAlchemy Core statements behind :mod:`modelwatch.warehouse.window_query`.

One statement per window: the window's predictions de-duplicated by request id, LEFT JOINed to the
labels (known before ``as_of``) de-duplicated the same way, and aggregated in a single GROUP BY whose
groups are small (score bin x row state x model version [x segment value]) and carry only a handful of
sums: the row state (score valid/NULL/out of range x label missing/early/NULL/out of domain/positive/
negative) is one small-integer key, so the join-health counters, tp/fp/tn/fn and the histogram split are
derived from group counts in Python instead of ~25 conditional aggregates per group. Everything else - the
rollup of the groups into one statistic - happens in Python on at most a few ten thousand rows. A second,
tiny statement counts orphan labels and the window's prediction rows. Identifiers are
``table()``/``column()`` objects (quoted by the dialect) and every value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.sql.elements import Label

from modelwatch.core.config import MonitorConfig, Task
from modelwatch.core.stats import APE_EPS, BIN_NUDGE, LOG_EPS
from modelwatch.warehouse.sql_values import (
    BOOLEAN,
    NUMERIC,
    TEXT,
    ColumnKinds,
    any_class,
    class_text,
    classes_of,
    exact_sum,
    finite,
    is_class,
    regression_sum,
    typed,
)

NULL_SEGMENT = "(null)"


@dataclass(frozen=True)
class UniqueIds:
    """Tables the warehouse guarantees to hold at most one row per request id (see ``warehouse.keys``).

    Their rows are used as they are: no window function, no per-id count, and for labels no semi-join
    (the LEFT JOIN from the window's predictions picks the few labels it needs).
    """

    predictions: bool = False
    labels: bool = False


TEXT_KINDS = ColumnKinds()
"""Both class-valued columns compared as text (the default when the catalogue was not read)."""


def _table(name: str, schema: str | None, columns: list[str]) -> sa.TableClause:
    return sa.table(name, *[sa.column(c) for c in dict.fromkeys(columns)], schema=schema)


def _latest_per_id(
    source: sa.TableClause,
    keys: tuple[str, ...],
    ts: str,
    selected: dict[str, ColumnElement],
    tiebreak: ColumnElement,
    where: list[ColumnElement[bool]],
    count_label: str | None,
    casts: dict[str, type[sa.types.TypeEngine]] | None = None,
    unique: bool = False,
) -> sa.Subquery:
    """Latest row per request id (ties: larger ``tiebreak`` first) plus how many rows the id had.

    ``row_number`` and ``count`` share one window (same PARTITION BY), so both engines sort/hash once.
    ``count_label`` None leaves the count out (it costs ~30% of the de-duplication). ``casts`` (result
    column -> type) are applied to the surviving rows only: casting before the window would cast every
    row and sort the cast values (a text cast of 10M labels costs DuckDB ~0.5 s).
    """
    casts = casts or {}
    if unique:
        one = [] if count_label is None else [sa.literal(1, sa.Integer).label(count_label)]
        keyed = [source.c[k].label(f"k{i}") for i, k in enumerate(keys)]
        rows = sa.select(*keyed, *[e.label(n) for n, e in selected.items()], *one).where(*where).subquery()
        return sa.select(*_cast(rows.c, casts)).subquery()
    part = [source.c[k] for k in keys]
    counts = [] if count_label is None else [sa.func.count().over(partition_by=part).label(count_label)]
    inner = (
        sa.select(
            *[source.c[k].label(f"k{i}") for i, k in enumerate(keys)],
            *[expr.label(name) for name, expr in selected.items()],
            sa.func.row_number()
            .over(partition_by=part, order_by=[source.c[ts].desc(), tiebreak.desc().nulls_last()])
            .label("rn"),
            *counts,
        )
        .where(*where)
        .subquery()
    )
    kept = [c for c in inner.c if c.key != "rn"]
    return sa.select(*_cast(kept, casts)).where(inner.c.rn == 1).subquery()


def _cast(columns: Iterable[ColumnElement], casts: dict[str, type[sa.types.TypeEngine]]) -> list[ColumnElement]:
    return [sa.cast(c, casts[c.key]).label(c.key) if c.key in casts else c for c in columns]


def segment_key(i: int) -> str:
    """Result column holding the values of the ``i``-th segment column of a multi-segment statement."""
    return f"seg{i}"


def _ids_present(source: sa.TableClause, keys: Sequence[str]) -> list[ColumnElement[bool]]:
    return [source.c[k].is_not(None) for k in keys]


def _predictions(
    monitor: MonitorConfig,
    start: datetime,
    end: datetime,
    segments: dict[str, str],
    unique: bool = False,
    kinds: ColumnKinds = TEXT_KINDS,
) -> sa.Subquery:
    """De-duplicated window predictions; ``segments`` maps result key (``seg``/``seg<i>``) -> column.

    Rows with a NULL request-id column are left out (counted as ``null_request_ids`` by side_statement):
    grouped by id they would all be one id and its "duplicates".
    """
    p = monitor.predictions
    columns = [*p.request_id, p.timestamp]
    columns += [c for c in (p.score, p.predicted_label) if c]
    columns += list(segments.values())
    columns += list(p.class_scores.values())
    source = _table(p.table, p.db_schema, columns)
    ts = source.c[p.timestamp]
    selected: dict[str, ColumnElement] = {"pts": ts}
    if monitor.task is Task.MULTICLASS:
        selected["score"] = typed(source.c[p.predicted_label], kinds.predicted_label)
        for i, cls in enumerate(monitor.classes):
            if cls in p.class_scores:
                selected[f"cs{i}"] = sa.cast(source.c[p.class_scores[cls]], sa.Double)
    else:
        selected["score"] = sa.cast(source.c[p.score], sa.Double)
    for key, column in segments.items():
        selected[key] = sa.func.coalesce(sa.cast(source.c[column], sa.String), NULL_SEGMENT)
    where = [ts >= start, ts < end, *_ids_present(source, p.request_id)]
    # Per-id row counts are only needed per segment; a whole window's total comes from side_statement.
    n_rows = "n_rows" if segments else None
    return _latest_per_id(source, p.request_id, p.timestamp, selected, selected["score"], where, n_rows, unique=unique)


LABEL_LEAD = timedelta(days=1)
"""Labels stamped more than this before a window's start are not read for it (see window_query's semantics):
without a lower bound every window statement reads the label table's whole history."""


def _labels(
    monitor: MonitorConfig,
    start: datetime,
    end: datetime,
    as_of: datetime,
    unique: bool = False,
    kinds: ColumnKinds = TEXT_KINDS,
) -> sa.Subquery:
    lab = monitor.labels
    source = _table(lab.table, lab.db_schema, [*lab.request_id, lab.timestamp, lab.label])
    value_type = {NUMERIC: sa.Double, BOOLEAN: None, TEXT: sa.String}[kinds.label]
    if monitor.task is Task.REGRESSION:
        value_type = sa.Double
    # De-duplicated on the column's own values (ties: the larger one in its own type), cast once per id.
    value = source.c[lab.label]
    selected = {"lts": source.c[lab.timestamp], "lab": value}
    # Only labels of ids predicted in the window: de-duplicating the whole labels table per window would
    # cost a full sort of every label ever written, for a window that needs a few thousand of them.
    p = monitor.predictions
    window_ids = _table(p.table, p.db_schema, [*p.request_id, p.timestamp]).alias("window_ids")
    in_window = sa.exists(
        sa.select(sa.literal(1))
        .select_from(window_ids)
        .where(
            window_ids.c[p.timestamp] >= start,
            window_ids.c[p.timestamp] < end,
            *[window_ids.c[pk] == source.c[lk] for pk, lk in zip(p.request_id, lab.request_id, strict=True)],
        )
    )
    where = [
        source.c[lab.timestamp] >= start - LABEL_LEAD,
        source.c[lab.timestamp] < as_of,
        *_ids_present(source, lab.request_id),
    ]
    where += [] if unique else [in_window]
    return _latest_per_id(
        source,
        lab.request_id,
        lab.timestamp,
        selected,
        value,
        where,
        "n_labels",
        casts={"lab": value_type} if value_type is not None else {},
        unique=unique,
    )


# Row states, encoded as ``score_state * STATE_BASE + label_state`` in one small-integer group key: grouping
# by state and summing a handful of values is far cheaper than ~25 conditional aggregates per group.
STATE_BASE = 8
SCORE_OK, SCORE_NULL, SCORE_BAD = 0, 1, 2
LABEL_NONE, LABEL_BEFORE, LABEL_NULL, LABEL_BAD, LABEL_GOOD, LABEL_NEGATIVE = 0, 1, 2, 3, 4, 5
"""Label states of a joined row; binary monitors split good labels into LABEL_GOOD (positive) and
LABEL_NEGATIVE, other tasks use LABEL_GOOD for every usable label."""


def _score_ok(monitor: MonitorConfig, score: ColumnElement, kinds: ColumnKinds) -> ColumnElement[bool]:
    if monitor.task is Task.BINARY:
        return sa.and_(score >= 0.0, score <= 1.0)  # NaN sorts above 1: out of range
    if monitor.task is Task.MULTICLASS:
        return any_class(monitor, score, kinds.predicted_label)
    return finite(score)


def label_state(monitor: MonitorConfig, p: sa.Subquery, lab: sa.Subquery, kinds: ColumnKinds) -> ColumnElement[int]:
    """The joined label's state (LABEL_*); the CASE order encodes the precedence of the docstring."""
    if monitor.task is Task.REGRESSION:
        good: list[tuple[ColumnElement[bool], int]] = [(finite(lab.c.lab), LABEL_GOOD)]
    elif monitor.task is Task.BINARY:
        negative, positive = classes_of(monitor)
        good = [
            (is_class(monitor, lab.c.lab, kinds.label, positive), LABEL_GOOD),
            (is_class(monitor, lab.c.lab, kinds.label, negative), LABEL_NEGATIVE),
        ]
    else:
        good = [(any_class(monitor, lab.c.lab, kinds.label), LABEL_GOOD)]
    return sa.case(
        (lab.c.lts.is_(None), LABEL_NONE),
        (lab.c.lts < p.c.pts, LABEL_BEFORE),
        (lab.c.lab.is_(None), LABEL_NULL),
        *good,
        else_=LABEL_BAD,
    )


def _state(monitor: MonitorConfig, p: sa.Subquery, lab: sa.Subquery, kinds: ColumnKinds) -> ColumnElement[int]:
    """The row's state code (see STATE_BASE)."""
    score = p.c.score
    score_state = sa.case((score.is_(None), SCORE_NULL), (_score_ok(monitor, score, kinds), SCORE_OK), else_=SCORE_BAD)
    return (score_state * STATE_BASE + label_state(monitor, p, lab, kinds)).label("state")


def _labelled(monitor: MonitorConfig, state: ColumnElement[int]) -> ColumnElement[bool]:
    good = [SCORE_OK * STATE_BASE + LABEL_GOOD]
    if monitor.task is Task.BINARY:
        good.append(SCORE_OK * STATE_BASE + LABEL_NEGATIVE)
    return state.in_(good)


def _join_health(p: sa.Subquery, lab: sa.Subquery, unique: UniqueIds) -> list[ColumnElement]:
    """Group counts. Unique labels have no duplicates: a constant 0, not a sum over every row."""
    rows = [sa.func.sum(p.c.n_rows).label("n_rows")] if "n_rows" in p.c else []
    extra_labels = sa.literal_column("0") if unique.labels else sa.func.sum(lab.c.n_labels - 1)
    return [sa.func.count().label("n"), *rows, extra_labels.label("dup_labels")]


def _binary(monitor: MonitorConfig, p: sa.Subquery, lab: sa.Subquery, resolution: float | None, kinds: ColumnKinds):
    _, positive = classes_of(monitor)
    s = p.c.score
    if resolution is None:
        key = s
    else:
        top = round(1.0 / resolution) - 1
        index = sa.func.floor((s + sa.literal(BIN_NUDGE, sa.Double)) / sa.literal(resolution, sa.Double))
        key = sa.cast(sa.func.least(sa.func.greatest(index, 0), top), sa.BigInteger)
    clipped = sa.func.least(sa.func.greatest(s, LOG_EPS), 1.0 - LOG_EPS)
    is_positive = is_class(monitor, lab.c.lab, kinds.label, positive)
    y = sa.case((is_positive, 1.0), else_=0.0)
    # Sums over every row of a group; only the labelled groups' loss and squared error are used.
    groups = [
        sa.case((_score_ok(monitor, s, kinds), key), else_=None).label("bin"),
        sa.case((s >= sa.literal(monitor.decision_threshold, sa.Double), 1), else_=0).label("above"),
    ]
    return groups, [
        exact_sum(s).label("score_sum"),
        exact_sum(-sa.func.ln(sa.case((is_positive, clipped), else_=1.0 - clipped))).label("loss_sum"),
        exact_sum((s - y) * (s - y)).label("sq_sum"),
    ]


def _regression(p: sa.Subquery, lab: sa.Subquery):
    err = p.c.score - lab.c.lab
    ape = sa.func.abs(lab.c.lab) > APE_EPS
    return [], [
        regression_sum(p.c.score).label("score_sum"),
        regression_sum(err).label("sum_error"),
        regression_sum(sa.func.abs(err)).label("sum_abs_error"),
        regression_sum(err * err).label("sum_sq_error"),
        regression_sum(lab.c.lab).label("sum_y"),
        regression_sum(lab.c.lab * lab.c.lab).label("sum_y2"),
        regression_sum(sa.case((ape, sa.func.abs(err) / sa.func.abs(lab.c.lab)), else_=None)).label("sum_ape"),
        sa.func.count().filter(ape).label("n_ape"),
    ]


def _multiclass(
    monitor: MonitorConfig, p: sa.Subquery, lab: sa.Subquery, labelled: ColumnElement[bool], kinds: ColumnKinds
):
    groups = [
        sa.case((labelled, class_text(monitor, p.c.score, kinds.predicted_label)), else_=None).label("predicted"),
        sa.case((labelled, class_text(monitor, lab.c.lab, kinds.label)), else_=None).label("truth"),
    ]
    scores = [(cls, p.c[f"cs{i}"]) for i, cls in enumerate(monitor.classes) if f"cs{i}" in p.c]
    if not scores:
        return groups, []
    # A class score outside [0, 1] (or NaN, inf) is a bad row: counted, and left out of log_loss, not clipped.
    bad = sa.or_(*[sa.and_(cs.is_not(None), sa.not_(sa.and_(cs >= 0.0, cs <= 1.0))) for _, cs in scores])
    p_true = sa.case(*[(is_class(monitor, lab.c.lab, kinds.label, cls), cs) for cls, cs in scores], else_=None)
    usable = sa.and_(p_true.is_not(None), sa.not_(bad))
    clipped = sa.func.least(sa.func.greatest(p_true, LOG_EPS), 1.0 - LOG_EPS)
    return groups, [
        exact_sum(sa.case((usable, -sa.func.ln(clipped)), else_=None)).label("log_loss_sum"),
        sa.func.count().filter(usable).label("log_loss_n"),
        sa.func.count().filter(bad).label("bad_class_scores"),
    ]


def _unlabelled(expr: ColumnElement) -> ColumnElement:
    return expr.element if isinstance(expr, Label) else expr


def window_statement(
    monitor: MonitorConfig,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    resolution: float | None,
    segments: Sequence[str] = (),
    unique: UniqueIds = UniqueIds(),
    kinds: ColumnKinds = TEXT_KINDS,
) -> Select:
    """The grouped statement: one row per (task keys, row state[, segment value]).

    Args:
        monitor: The monitor whose tables and columns are queried.
        start: Start of the range (inclusive, on the prediction timestamp), naive UTC.
        end: End of the range (exclusive).
        as_of: Label cut-off: only labels with a timestamp before it are joined.
        resolution: Binary score-bin width (None = group by exact score).
        segments: Predictions columns, each grouped separately in one statement (GROUPING SETS:
            the window is de-duplicated and joined once for all of them). Column ``i``'s values are in
            ``seg<i>`` (:func:`segment_key`); in a row of column ``i``'s grouping the other ``seg<j>`` are
            NULL, and a segment value is never NULL (``NULL_SEGMENT``), so the non-NULL key tells them apart.
        unique: Tables known to hold one row per id: read as they are, not de-duplicated.
        kinds: Types of the label and predicted-label columns (classes compare by value in them).

    Returns:
        A SELECT whose rows :func:`modelwatch.warehouse.window_query` rolls up. ``state`` encodes the
        row's score and label state (``state // STATE_BASE``, ``state % STATE_BASE``). With segments,
        ``n_rows`` sums each group's prediction rows; without, :func:`side_statement` counts them.
    """
    keys = {segment_key(i): c for i, c in enumerate(segments)}
    p, lab, joined = _joined(monitor, keys, unique, kinds, start=start, end=end, as_of=as_of)
    state = _state(monitor, p, lab, kinds)
    if monitor.task is Task.BINARY:
        groups, aggregates = _binary(monitor, p, lab, resolution, kinds)
    elif monitor.task is Task.REGRESSION:
        groups, aggregates = _regression(p, lab)
    else:
        groups, aggregates = _multiclass(monitor, p, lab, _labelled(monitor, state), kinds)
    groups = [*groups, state]
    segment_columns = [p.c[key] for key in keys]
    statement = sa.select(*groups, *segment_columns, *_join_health(p, lab, unique), *aggregates)
    statement = statement.select_from(joined)
    if len(segment_columns) <= 1:
        return statement.group_by(*groups, *segment_columns)
    base = [_unlabelled(g) for g in groups]
    return statement.group_by(sa.func.grouping_sets(*[sa.tuple_(*base, c) for c in segment_columns]))


def _joined(
    monitor: MonitorConfig,
    keys: dict[str, str],
    unique: UniqueIds,
    kinds: ColumnKinds,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
) -> tuple[sa.Subquery, sa.Subquery, sa.Join]:
    p = _predictions(monitor, start, end, keys, unique.predictions, kinds)
    lab = _labels(monitor, start, end, as_of, unique.labels, kinds)
    on = sa.and_(*[p.c[f"k{i}"] == lab.c[f"k{i}"] for i in range(len(monitor.predictions.request_id))])
    return p, lab, p.outerjoin(lab, on)


EXAMPLES = 5
"""How many distinct out-of-domain label values a window reports (for the finding, not for metrics)."""


def out_of_domain_statement(
    monitor: MonitorConfig,
    *,
    start: datetime,
    end: datetime,
    as_of: datetime,
    unique: UniqueIds = UniqueIds(),
    kinds: ColumnKinds = TEXT_KINDS,
) -> Select:
    """Up to :data:`EXAMPLES` distinct values (as text, smallest first) of the window's out-of-domain labels.

    Only run when the grouped statement counted some: it tells "found 0.0/1.0, expected 0/1" apart from
    labels that never arrived.
    """
    p, lab, joined = _joined(monitor, {}, unique, kinds, start=start, end=end, as_of=as_of)
    value = sa.cast(lab.c.lab, sa.String).label("value")
    bad = label_state(monitor, p, lab, kinds) == LABEL_BAD
    return sa.select(value).select_from(joined).where(bad).distinct().order_by(value).limit(EXAMPLES)


def side_statement(
    monitor: MonitorConfig, *, start: datetime, end: datetime, as_of: datetime, orphans: bool = True
) -> Select:
    """One row: ``orphans`` (see :func:`orphan_statement`; NULL with ``orphans=False``), ``window_rows``
    (prediction rows in the window with a request id), ``null_ids`` (those without: a NULL in any request-id
    column) and ``versions`` (distinct non-NULL model versions of those rows, NULL without a version column).

    Versions come from this cheap scan rather than the grouped statement: a text group key there made
    every group key wider and cost DuckDB a third of the aggregation.
    """
    p = monitor.predictions
    preds = _table(p.table, p.db_schema, [*p.request_id, p.timestamp, *([p.model_version] if p.model_version else [])])
    ts = preds.c[p.timestamp]
    in_window = [ts >= start, ts < end]
    null_id = sa.or_(*[preds.c[k].is_(None) for k in p.request_id])
    rows = sa.select(
        sa.func.count().filter(sa.not_(null_id)).label("window_rows"), sa.func.count().filter(null_id).label("null_ids")
    )
    rows = rows.select_from(preds).where(*in_window).subquery()
    if p.model_version:
        mv = sa.cast(preds.c[p.model_version], sa.String)
        versions = sa.select(sa.func.array_agg(sa.distinct(mv))).where(*in_window, mv.is_not(None))
        versions_column = versions.scalar_subquery()
    else:
        versions_column = sa.null()
    orphan_count = orphan_statement(monitor, start=start, end=end, as_of=as_of).scalar_subquery() if orphans else None
    return sa.select(
        (orphan_count if orphan_count is not None else sa.null()).label("orphans"),
        rows.c.window_rows,
        rows.c.null_ids,
        versions_column.label("versions"),
    ).select_from(rows)


def orphan_statement(monitor: MonitorConfig, *, start: datetime, end: datetime, as_of: datetime) -> Select:
    """Labels with start <= label_ts < min(end, as_of) whose id has no prediction in
    [start - label_delay.lookback, end).

    The horizon keeps the cost proportional to the look-back, not to the table's whole history (an
    anti-join against every prediction ever made grew with each hour). A label older than that after its
    prediction cannot update any window, since none that old is recomputed, so it is counted with the
    labels nothing will match.
    """
    p, lab = monitor.predictions, monitor.labels
    preds = _table(p.table, p.db_schema, [*p.request_id, p.timestamp]).alias("any_prediction")
    labels = _table(lab.table, lab.db_schema, [*lab.request_id, lab.timestamp])
    ts = labels.c[lab.timestamp]
    same_id = [preds.c[pk] == labels.c[lk] for pk, lk in zip(p.request_id, lab.request_id, strict=True)]
    horizon = [
        preds.c[p.timestamp] >= start - monitor.label_delay.lookback,
        preds.c[p.timestamp] < end,
    ]
    predicted = sa.exists(sa.select(sa.literal(1)).select_from(preds).where(*same_id, *horizon))
    upper = min(end, as_of)
    return sa.select(sa.func.count()).select_from(labels).where(ts >= start, ts < upper, ~predicted)
