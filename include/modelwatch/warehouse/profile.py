"""Feature profiles computed in the warehouse: only aggregates come back, so memory does not grow with rows.

Scans per profile: one aggregate query for all numeric features (moments, correlation with the
score and, for the current window, counts per reference bin and out-of-range counts; for the
reference, the quantile edges), one more for the reference's bin counts (its edges are only known
after the first), and one ``GROUP BY`` per categorical feature.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.config import MonitorConfig
from modelwatch.drift import OTHER_CATEGORY, FeatureProfile

TOP_CATEGORIES = 50
GROUPS_FETCHED = 1000
"""Categories read back per feature (by volume); a high-cardinality column must not flood memory."""

Ranges = Sequence[tuple[datetime, datetime]]


_NUMERIC_TYPE_WORDS = ("int", "double", "float", "real", "decimal", "numeric")


def _columns(conn: Connection, monitor: MonitorConfig) -> dict[str, str]:
    """Column name -> declared type (lower case) from information_schema.

    ``information_schema`` rather than ``sa.inspect``: it reads the same in DuckDB and PostgreSQL, and
    duckdb-engine's reflection does not work with SQLAlchemy 2.1.
    """
    p = monitor.predictions
    info = sa.table(
        "columns",
        sa.column("table_name"),
        sa.column("table_schema"),
        sa.column("column_name"),
        sa.column("data_type"),
        schema="information_schema",
    )
    schema = sa.literal(p.db_schema) if p.db_schema else sa.func.current_schema()
    query = sa.select(info.c.column_name, info.c.data_type).where(
        info.c.table_name == p.table, info.c.table_schema == schema
    )
    return {str(name): str(kind).lower() for name, kind in conn.execute(query)}


def _is_numeric_type(column_type: str) -> bool:
    return any(word in column_type for word in _NUMERIC_TYPE_WORDS) and "interval" not in column_type


@dataclass(frozen=True)
class _Scan:
    """The rows a profile reads: prediction rows in ``ranges``, optionally of one segment value."""

    monitor: MonitorConfig
    ranges: Ranges
    segment: tuple[str, str] | None

    def source(self, names: Sequence[str]) -> tuple[sa.TableClause, sa.ColumnElement[bool]]:
        """The predictions table with ``names`` (plus timestamp and segment columns) and the row filter."""
        p = self.monitor.predictions
        extra = [p.timestamp, *([self.segment[0]] if self.segment else [])]
        table = sa.table(p.table, *[sa.column(n) for n in dict.fromkeys([*names, *extra])], schema=p.db_schema)
        ts = table.c[p.timestamp]
        condition = sa.or_(*[sa.and_(ts >= start, ts < end) for start, end in self.ranges])
        if self.segment is not None:
            condition = sa.and_(condition, sa.cast(table.c[self.segment[0]], sa.String) == self.segment[1])
        return table, condition


def _unusable(monitor: MonitorConfig, columns: Mapping[str, Any]) -> dict[str, FeatureProfile]:
    out = {}
    for f in monitor.predictions.features:
        if f.name not in columns:
            out[f.name] = FeatureProfile(f.name, f.kind, missing=True)
        elif f.kind == "numeric" and not _is_numeric_type(columns[f.name]):
            out[f.name] = FeatureProfile(f.name, f.kind, type_changed=True)
    return out


def _x(table: sa.TableClause, name: str) -> sa.ColumnElement[float]:
    return sa.cast(table.c[name], sa.Double)


def _count_below(x: sa.ColumnElement[float], edge: float) -> sa.ColumnElement[int]:
    return sa.func.sum(sa.case((x < edge, 1), else_=0))


def _moment_columns(table: sa.TableClause, names: Sequence[str], score: str | None) -> list[sa.ColumnElement[Any]]:
    cols: list[sa.ColumnElement[Any]] = []
    for i, name in enumerate(names):
        x = _x(table, name)
        cols += [
            sa.func.count(x).label(f"c{i}"),
            sa.func.min(x).label(f"lo{i}"),
            sa.func.max(x).label(f"hi{i}"),
            sa.func.avg(x).label(f"mu{i}"),
            sa.func.stddev_samp(x).label(f"sd{i}"),
        ]
        if score is not None:
            cols.append(sa.func.corr(x, _x(table, score)).label(f"r{i}"))
    return cols


def _quantile_columns(
    conn: Connection, table: sa.TableClause, names: Sequence[str], bins: int
) -> list[sa.ColumnElement[Any]]:
    fractions = [k / bins for k in range(1, bins)]
    cols = []
    for i, name in enumerate(names):
        x = _x(table, name)
        if conn.dialect.name == "duckdb":
            # DuckDB's approximate quantiles (t-digest) are one streaming pass instead of a sort.
            cols.append(sa.func.approx_quantile(x, sa.cast(sa.literal(fractions), sa.ARRAY(sa.Float))).label(f"q{i}"))
        else:
            cols.append(
                sa.func.percentile_cont(sa.literal(fractions, sa.ARRAY(sa.Double))).within_group(x).label(f"q{i}")
            )
    return cols


def _float(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _edges(raw: Any) -> tuple[float, ...]:
    values = [float(v) for v in (raw or []) if v is not None and not math.isnan(float(v))]
    return tuple(float(v) for v in np.unique(values))


def _bin_counts(row: Mapping[str, Any], i: int, edges: Sequence[float], non_null: int) -> tuple[int, ...]:
    cumulative = [0, *[int(row[f"b{i}_{j}"] or 0) for j in range(len(edges))], non_null]
    return tuple(int(b - a) for a, b in itertools.pairwise(cumulative))


def _bin_columns(table: sa.TableClause, names: Sequence[str], reference: Mapping[str, FeatureProfile]) -> list[Any]:
    cols = []
    for i, name in enumerate(names):
        x = _x(table, name)
        cols += [_count_below(x, e).label(f"b{i}_{j}") for j, e in enumerate(reference[name].edges)]
    return cols


def _numeric_profiles(
    conn: Connection,
    monitor: MonitorConfig,
    scan: _Scan,
    names: Sequence[str],
    *,
    bins: int | None,
    reference: Mapping[str, FeatureProfile] | None,
) -> tuple[int, dict[str, FeatureProfile]]:
    """Total rows and numeric profiles; ``bins`` set for a reference, ``reference`` for a current window."""
    score = monitor.predictions.score
    table, condition = scan.source([*names, *([score] if score else [])])
    cols = [sa.func.count().label("n"), *_moment_columns(table, names, score)]
    if bins is not None:
        cols += _quantile_columns(conn, table, names, bins)
    if reference is not None:
        cols += _bin_columns(table, names, reference)
        for i, name in enumerate(names):
            ref = reference[name]
            if ref.min is not None and ref.max is not None:
                x = _x(table, name)
                cols.append(sa.func.sum(sa.case(((x < ref.min) | (x > ref.max), 1), else_=0)).label(f"o{i}"))
    row = conn.execute(sa.select(*cols).where(condition)).mappings().one()
    total = int(row["n"] or 0)
    profiles = {}
    for i, name in enumerate(names):
        non_null = int(row[f"c{i}"] or 0)
        edges = _edges(row[f"q{i}"]) if bins is not None else reference[name].edges  # type: ignore[index]
        corr = _float(row.get(f"r{i}"))
        profiles[name] = FeatureProfile(
            name=name,
            kind="numeric",
            n=total,
            nulls=total - non_null,
            min=_float(row[f"lo{i}"]),
            max=_float(row[f"hi{i}"]),
            mean=_float(row[f"mu{i}"]),
            std=_float(row[f"sd{i}"]),
            edges=edges,
            bin_counts=_bin_counts(row, i, edges, non_null) if reference is not None else (),
            out_of_range=int(row.get(f"o{i}") or 0),
            importance=abs(corr) if corr is not None else None,
        )
    return total, profiles


def _reference_bins(conn: Connection, scan: _Scan, profiles: dict[str, FeatureProfile]) -> dict[str, FeatureProfile]:
    names = list(profiles)
    table, condition = scan.source(names)
    cols = _bin_columns(table, names, profiles)
    if not cols:
        return {n: _with_bins(p, {}, i) for i, (n, p) in enumerate(profiles.items())}
    row = conn.execute(sa.select(*cols).where(condition)).mappings().one()
    return {n: _with_bins(p, row, i) for i, (n, p) in enumerate(profiles.items())}


def _with_bins(profile: FeatureProfile, row: Mapping[str, Any], i: int) -> FeatureProfile:
    return replace(profile, bin_counts=_bin_counts(row, i, profile.edges, profile.non_null))


def _categorical_profile(
    conn: Connection, monitor: MonitorConfig, scan: _Scan, name: str, total: int
) -> FeatureProfile:
    score = monitor.predictions.score
    table, condition = scan.source([name, *([score] if score else [])])
    category = sa.cast(table.c[name], sa.String).label("category")
    count = sa.func.count().label("rows")
    cols: list[Any] = [category, count]
    if score is not None:
        s = _x(table, score)
        cols += [sa.func.count(s).label("scored"), sa.func.avg(s).label("mu"), sa.func.var_pop(s).label("var")]
    query = sa.select(*cols).where(condition).group_by(category).order_by(count.desc(), category).limit(GROUPS_FETCHED)
    groups = conn.execute(query).mappings().all()
    nulls = sum(int(g["rows"]) for g in groups if g["category"] is None)
    named = [g for g in groups if g["category"] is not None]
    categories = {str(g["category"]): int(g["rows"]) for g in named[:TOP_CATEGORIES]}
    rest = total - nulls - sum(categories.values())
    if rest > 0:
        categories[OTHER_CATEGORY] = rest
    importance = _eta(named) if score is not None else None
    return FeatureProfile(name, "categorical", n=total, nulls=nulls, categories=categories, importance=importance)


def _eta(groups: Sequence[Mapping[str, Any]]) -> float | None:
    """Correlation ratio of the score by category from per-category count, mean and variance."""
    stats = [(int(g["scored"]), float(g["mu"]), float(g["var"] or 0.0)) for g in groups if g["scored"]]
    n = sum(c for c, _, _ in stats)
    if n == 0:
        return None
    grand = sum(c * m for c, m, _ in stats) / n
    between = sum(c * (m - grand) ** 2 for c, m, _ in stats)
    within = sum(c * v for c, _, v in stats)
    return math.sqrt(between / (between + within)) if between + within > 0 else None


def _profiles(
    engine: Engine,
    monitor: MonitorConfig,
    ranges: Ranges,
    segment: tuple[str, str] | None,
    *,
    bins: int | None,
    reference: Mapping[str, FeatureProfile] | None,
) -> dict[str, FeatureProfile]:
    with engine.connect() as conn:
        return _profiles_on(conn, monitor, ranges, segment, bins=bins, reference=reference)


def _profiles_on(
    conn: Connection,
    monitor: MonitorConfig,
    ranges: Ranges,
    segment: tuple[str, str] | None,
    *,
    bins: int | None,
    reference: Mapping[str, FeatureProfile] | None,
) -> dict[str, FeatureProfile]:
    columns = _columns(conn, monitor)
    unusable = _unusable(monitor, columns)
    features = [f for f in monitor.predictions.features if f.name not in unusable]
    if reference is not None:
        # Compare only what the reference could bin: its edges define the current window's bins.
        features = [f for f in features if f.name in reference and _usable(reference[f.name])]
    numeric = [f.name for f in features if f.kind == "numeric"]

    scan = _Scan(monitor, ranges, segment)
    total, profiles = _numeric_profiles(conn, monitor, scan, numeric, bins=bins, reference=reference)
    if bins is not None and total:
        profiles = _reference_bins(conn, scan, profiles)
    for f in features:
        if f.kind == "categorical":
            profiles[f.name] = _categorical_profile(conn, monitor, scan, f.name, total)
    for name, profile in unusable.items():
        profiles[name] = FeatureProfile(
            profile.name, profile.kind, n=total, missing=profile.missing, type_changed=profile.type_changed
        )
    order = [f.name for f in monitor.predictions.features]
    return {name: profiles[name] for name in order if name in profiles}


def _usable(profile: FeatureProfile) -> bool:
    return not (profile.missing or profile.type_changed)


def fetch_reference_profile(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    ranges: Ranges,
    bins: int,
    segment: tuple[str, str] | None = None,
) -> dict[str, FeatureProfile]:
    """Profiles of every configured feature over the prediction rows in any of ``ranges``.

    Args:
        engine: Warehouse engine.
        monitor: The monitor (predictions table, features, score column).
        ranges: Half-open ``[start, end)`` timestamp ranges making up the reference.
        bins: Number of quantile bins (``bins - 1`` interior edges, duplicates dropped).
        segment: ``(column, value)`` to restrict the rows to one segment.

    Returns:
        Feature name -> profile, in configuration order. A missing column or a numeric column that
        is now text gives a profile flagged ``missing`` / ``type_changed`` instead of an error.
    """
    return _profiles(engine, monitor, ranges, segment, bins=bins, reference=None)


def fetch_current_profile(
    engine: Engine,
    monitor: MonitorConfig,
    reference: Mapping[str, FeatureProfile],
    *,
    start: datetime,
    end: datetime,
    segment: tuple[str, str] | None = None,
) -> dict[str, FeatureProfile]:
    """Profiles of the window ``[start, end)`` binned on the reference's edges.

    Features the reference could not profile are reported only through their missing/type flags.
    """
    return _profiles(engine, monitor, [(start, end)], segment, bins=None, reference=reference)
