"""A window's feature profiles in ONE statement: every monitored feature, whole and per segment value.

The statement reads the window's prediction rows once and aggregates them under ``GROUPING SETS``:
``()`` (the whole window), ``(segment)`` for each segment column, ``(category)`` for each categorical
feature and ``(segment, category)`` for each pair. Every row of the result carries ``GROUPING()`` flags
that say which set it belongs to: the rows without a category give the rows, the numeric features' bin
counts on the monitor's stored edges (cumulative ``sum(CASE WHEN x < edge THEN 1 ELSE 0 END)`` per edge,
and ``x > last edge``), nulls, min, max and the sums of ``x - centre`` and its square; the rows with a category
give that category's count (a null category is the feature's nulls).

GROUPING SETS rather than ``UNION ALL`` over one materialised CTE: DuckDB and PostgreSQL both plan it as one
scan feeding one aggregation per set, with nothing written to a temporary relation, and the SQL is one
``SELECT``. The price is CPU, not I/O: the numeric aggregates are also evaluated in the category sets,
where they are ignored, so the aggregation work grows with ``(1 + segments) x (1 + categorical features)``
while the rows read stay one pass over the window's columns.

Identifiers are quoted by the dialect (``sa.table``/``sa.column``); edges, centres and the window bounds are
bound parameters. Values are compared as the database compares them: NaN counts as a null (as in
:mod:`modelwatch.warehouse.profile`), categories and segment values are cast to text (so a text column
profiles exactly as :func:`modelwatch.core.profiles.profile_frame` does with ``str``), and rows whose
segment value is null belong to no segment. The features profiled are those of the edges: a column the edges
name must exist (the catalog check for missing or retyped columns stays with the caller).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelwatch.core.config import MonitorConfig
from modelwatch.core.profiles import (
    WHOLE_WINDOW,
    BinEdges,
    FeatureCounts,
    NumericCounts,
    ProfileKey,
    Segment,
    WindowProfile,
    categorical_from_group_counts,
)
from modelwatch.core.windows import to_naive_utc
from modelwatch.warehouse.session import window_connection


@dataclass(frozen=True)
class _Layout:
    """The names of a statement's columns: segment ``s{k}``, category ``c{m}``, numeric ``x{i}_*``."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    segments: tuple[str, ...]


def _value(table: sa.TableClause, name: str) -> sa.ColumnElement[float]:
    # NaN is no value: a null, never in min, max, moments or bins (both engines sort NaN above every number).
    value = sa.cast(table.c[name], sa.Double)
    return sa.func.nullif(value, sa.cast(sa.literal_column("'NaN'"), sa.Double))


def _text(table: sa.TableClause, name: str) -> sa.ColumnElement[str]:
    return sa.cast(table.c[name], sa.String)


def _count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    # sum(CASE ...) rather than count(x) FILTER (WHERE ...): 8x faster on DuckDB (1.33 s against 0.17 s for
    # 10 features x 11 edges over 1M rows), the same on PostgreSQL. A null x compares as null: not counted.
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def _numeric_columns(table: sa.TableClause, edges: BinEdges, layout: _Layout) -> list[sa.ColumnElement[Any]]:
    cols: list[sa.ColumnElement[Any]] = []
    for i, name in enumerate(layout.numeric):
        x = _value(table, name)
        shifted = x - sa.literal(edges.centre(name), sa.Double)
        cols += [
            sa.func.count(x).label(f"x{i}_count"),
            sa.func.min(x).label(f"x{i}_min"),
            sa.func.max(x).label(f"x{i}_max"),
            sa.func.sum(shifted).label(f"x{i}_sum"),
            sa.func.sum(shifted * shifted).label(f"x{i}_sum_sq"),
        ]
        cuts = edges.numeric[name]
        cols += [_count_where(x < sa.literal(e, sa.Double)).label(f"x{i}_below{j}") for j, e in enumerate(cuts)]
        if cuts:
            cols.append(_count_where(x > sa.literal(cuts[-1], sa.Double)).label(f"x{i}_above"))
    return cols


def window_profile_statement(
    monitor: MonitorConfig, edges: BinEdges, *, start: datetime, end: datetime, segments: Sequence[str] | None = None
) -> tuple[sa.Select[Any], _Layout]:
    """The one statement profiling the window ``[start, end)`` on ``edges`` (``segments`` default: the
    monitor's segment columns), and the layout :func:`profile_from_rows` reads its rows with."""
    p = monitor.predictions
    layout = _Layout(tuple(edges.numeric), tuple(edges.categories), tuple(p.segments if segments is None else segments))
    names = dict.fromkeys([p.timestamp, *layout.numeric, *layout.categorical, *layout.segments])
    table = sa.table(p.table, *[sa.column(n) for n in names], schema=p.db_schema)
    ts = table.c[p.timestamp]
    seg = [_text(table, s) for s in layout.segments]
    cat = [_text(table, c) for c in layout.categorical]
    sets = [sa.tuple_(), *[sa.tuple_(s) for s in seg], *[sa.tuple_(c) for c in cat]]
    sets += [sa.tuple_(s, c) for s, c in itertools.product(seg, cat)]
    keys = [
        *[col for k, s in enumerate(seg) for col in (s.label(f"s{k}"), sa.func.grouping(s).label(f"s{k}_rolled"))],
        *[col for m, c in enumerate(cat) for col in (c.label(f"c{m}"), sa.func.grouping(c).label(f"c{m}_rolled"))],
    ]
    statement = (
        sa.select(*keys, sa.func.count().label("rows"), *_numeric_columns(table, edges, layout))
        .where(ts >= to_naive_utc(start), ts < to_naive_utc(end))
        .group_by(sa.func.grouping_sets(*sets))
    )
    return statement, layout


def _segment_of(row: Mapping[str, Any], layout: _Layout) -> Segment | None:
    """The segment a result row belongs to; None for the rows of a null segment value."""
    for k, column in enumerate(layout.segments):
        if not row[f"s{k}_rolled"]:
            return None if row[f"s{k}"] is None else (column, str(row[f"s{k}"]))
    return WHOLE_WINDOW


def _numeric(row: Mapping[str, Any], i: int, edges: BinEdges, name: str) -> NumericCounts:
    rows, non_null = int(row["rows"]), int(row[f"x{i}_count"])
    cuts = edges.numeric[name]
    cumulative = [0, *[int(row[f"x{i}_below{j}"]) for j in range(len(cuts))], non_null]
    return NumericCounts(
        edges_version=edges.version,
        n=rows,
        nulls=rows - non_null,
        bins=tuple(b - a for a, b in itertools.pairwise(cumulative)),
        above_last=int(row[f"x{i}_above"]) if cuts else 0,
        sum=float(row[f"x{i}_sum"] or 0.0),
        sum_sq=float(row[f"x{i}_sum_sq"] or 0.0),
        min=None if row[f"x{i}_min"] is None else float(row[f"x{i}_min"]),
        max=None if row[f"x{i}_max"] is None else float(row[f"x{i}_max"]),
    )


def profile_from_rows(rows: Sequence[Mapping[str, Any]], edges: BinEdges, layout: _Layout) -> WindowProfile:
    """The :class:`~modelwatch.core.profiles.WindowProfile` of the statement's result rows."""
    totals: dict[Segment, int] = {}
    features: dict[ProfileKey, FeatureCounts] = {}
    categories: dict[tuple[Segment, str], dict[str | None, int]] = {}
    for row in rows:
        segment = _segment_of(row, layout)
        if segment is None:
            continue
        category = next((m for m in range(len(layout.categorical)) if not row[f"c{m}_rolled"]), None)
        if category is None:
            totals[segment] = int(row["rows"])
            for i, name in enumerate(layout.numeric):
                features[(*segment, name)] = _numeric(row, i, edges, name)
        else:
            value = row[f"c{category}"]
            found = categories.setdefault((segment, layout.categorical[category]), {})
            found[None if value is None else str(value)] = int(row["rows"])
    for segment, total in totals.items():
        for name in layout.categorical:
            counts = categories.get((segment, name), {})
            features[(*segment, name)] = categorical_from_group_counts(counts, edges, name, n=total)
    return WindowProfile(edges.version, dict(sorted(features.items())))


def fetch_window_profile(
    engine: Engine,
    monitor: MonitorConfig,
    edges: BinEdges,
    *,
    start: datetime,
    end: datetime,
    segments: Sequence[str] | None = None,
) -> WindowProfile:
    """Every feature of ``edges`` over the window ``[start, end)``, whole and per segment value: one
    statement (after the session's UTC settings), only aggregates come back.

    Args:
        engine: Warehouse engine.
        monitor: The monitor (predictions table, timestamp and segment columns).
        edges: The monitor's stored bin edges (the profile names their version).
        start: Window start (UTC).
        end: Window end (UTC, exclusive).
        segments: Segment columns; default the monitor's.
    """
    statement, layout = window_profile_statement(monitor, edges, start=start, end=end, segments=segments)
    with window_connection(engine) as conn:
        rows = conn.execute(statement).mappings().all()
    return profile_from_rows(rows, edges, layout)
