"""The results tables that BI tools read and that history-based rules (baselines, bands, M-of-N) query.

``modelwatch_metric_results`` holds one row per (window, metric, revision); ``modelwatch_window_stats``
holds the window's sufficient statistics as JSON so daily windows can be rolled up from hourly ones
without rescanning. Writes are idempotent: a revision's rows are replaced (delete + insert in one
transaction), so re-writing the same revision updates it in place and never adds rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelwatch.core.result import HistoryPoint, MetricValue, WindowResult
from modelwatch.core.stats import WindowStats
from modelwatch.core.windows import to_naive_utc

METADATA = sa.MetaData()

METRIC_RESULTS = sa.Table(
    "modelwatch_metric_results",
    METADATA,
    sa.Column("monitor", sa.String(64), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("window_start", sa.DateTime, primary_key=True),
    sa.Column("metric", sa.String(128), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("value", sa.Double, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("label_coverage", sa.Double, nullable=True),
    sa.Column("predictions", sa.BigInteger, nullable=False),
    sa.Column("labelled", sa.BigInteger, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)

WINDOW_STATS = sa.Table(
    "modelwatch_window_stats",
    METADATA,
    sa.Column("monitor", sa.String(64), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("window_start", sa.DateTime, primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("stats_json", sa.Text, nullable=False),
)


def ensure_tables(engine: Engine) -> None:
    """Create the results tables when they do not exist (safe to call on every run)."""
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)


def _metric_rows(result: WindowResult, computed_at: datetime) -> list[dict[str, Any]]:
    shared = {
        "monitor": result.monitor,
        "cadence": result.cadence,
        "window_start": to_naive_utc(result.window_start),
        "window_end": to_naive_utc(result.window_end),
        "revision": result.revision,
        "status": result.status,
        "label_coverage": result.label_coverage,
        "predictions": result.counts.predictions,
        "labelled": result.counts.labelled,
        "as_of": to_naive_utc(result.as_of),
        "config_hash": result.config_hash,
        "computed_at": computed_at,
    }
    # Estimated metrics share the table under an "estimated_" prefix so BI can plot them next to real ones.
    named = [*result.metrics.items(), *((f"estimated_{k}", v) for k, v in result.estimated.items())]
    rows = [{**shared, "metric": name, "value": m.value, "reason": m.reason} for name, m in named]
    for name, (low, high) in result.estimated_bands.items():
        rows += [
            {**shared, "metric": f"estimated_{name}{BAND_LOW}", "value": low, "reason": None},
            {**shared, "metric": f"estimated_{name}{BAND_HIGH}", "value": high, "reason": None},
        ]
    return rows


BAND_LOW = "_band_low"
BAND_HIGH = "_band_high"
"""Suffixes of the rows holding an estimated metric's band (``estimated_roc_auc_band_low``)."""


def fresh_estimates(
    engine: Engine, *, monitor: str, cadence: str, window_starts: Sequence[datetime]
) -> dict[datetime, tuple[dict[str, MetricValue], dict[str, tuple[float, float]]]]:
    """Window start -> the calibrated estimates and bands stored with its revision 0 (the run that screened
    it), so that later revisions keep them: one query for all the windows a run recomputes."""
    if not window_starts:
        return {}
    ensure_tables(engine)
    t = METRIC_RESULTS
    statement = sa.select(t.c.window_start, t.c.metric, t.c.value, t.c.reason).where(
        t.c.monitor == monitor,
        t.c.cadence == cadence,
        t.c.revision == 0,
        t.c.metric.startswith("estimated_", autoescape=True),
        t.c.window_start.in_([to_naive_utc(w) for w in window_starts]),
    )
    rows: dict[datetime, dict[str, tuple[float | None, str | None]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(statement):
            rows.setdefault(row.window_start, {})[row.metric.removeprefix("estimated_")] = (row.value, row.reason)
    out = {}
    for start, found in rows.items():
        bands = {
            name.removesuffix(BAND_LOW): (value, found[name.removesuffix(BAND_LOW) + BAND_HIGH][0])
            for name, (value, _) in found.items()
            if name.endswith(BAND_LOW) and name.removesuffix(BAND_LOW) + BAND_HIGH in found
        }
        if not bands:
            continue  # screened without a calibration: nothing better than a fresh estimate to keep
        estimated = {
            name: MetricValue(name, value, reason)
            for name, (value, reason) in found.items()
            if not name.endswith((BAND_LOW, BAND_HIGH))
        }
        out[start] = (estimated, {k: v for k, v in bands.items() if None not in v})
    return out


def upsert_window_result(engine: Engine, result: WindowResult) -> int:
    """Write one window result (its metrics and its statistics) idempotently.

    Args:
        engine: The warehouse (tables are created when missing).
        result: The evaluated window.

    Returns:
        Rows written (metric rows + 1 statistics row); re-writing the same revision updates in place.
    """
    ensure_tables(engine)
    computed_at = to_naive_utc(datetime.now(UTC))
    stats_row = {
        "monitor": result.monitor,
        "cadence": result.cadence,
        "window_start": to_naive_utc(result.window_start),
        "window_end": to_naive_utc(result.window_end),
        "revision": result.revision,
        "status": result.status,
        "as_of": to_naive_utc(result.as_of),
        "stats_json": json.dumps(result.stats.to_dict()),
    }
    with engine.begin() as conn:
        # Replace this revision's rows (delete + insert, one transaction): the same result as an upsert,
        # at a third of DuckDB's ON CONFLICT cost, and metrics that disappeared do not linger.
        revision_rows = [
            METRIC_RESULTS.c.monitor == result.monitor,
            METRIC_RESULTS.c.cadence == result.cadence,
            METRIC_RESULTS.c.window_start == to_naive_utc(result.window_start),
            METRIC_RESULTS.c.revision == result.revision,
        ]
        conn.execute(sa.delete(METRIC_RESULTS).where(*revision_rows))
        rows = _metric_rows(result, computed_at)
        conn.execute(sa.insert(METRIC_RESULTS).values(rows))
        written = len(rows)
        # Delete + insert in the same transaction: DuckDB's ON CONFLICT update of a ~50 kB text value
        # costs ~80 ms, the replacement ~10 ms, with the same effect.
        keys = [c for c in WINDOW_STATS.primary_key.columns]
        conn.execute(sa.delete(WINDOW_STATS).where(*[c == stats_row[c.name] for c in keys]))
        conn.execute(sa.insert(WINDOW_STATS).values(stats_row))
        return written + 1


def _latest_revisions(
    table: sa.Table, monitor: str, cadence: str, start: datetime, end: datetime, as_of: datetime | None = None
) -> sa.Subquery:
    conditions = [
        table.c.monitor == monitor,
        table.c.cadence == cadence,
        table.c.window_start >= to_naive_utc(start),
        table.c.window_start < to_naive_utc(end),
    ]
    if as_of is not None:
        conditions.append(table.c.as_of <= to_naive_utc(as_of))
    return (
        sa.select(table.c.window_start, sa.func.max(table.c.revision).label("revision"))
        .where(*conditions)
        .group_by(table.c.window_start)
        .subquery()
    )


def metric_history(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime, as_of: datetime | None = None
) -> list[HistoryPoint]:
    """The latest revision of every stored window with ``start <= window_start < end``, oldest first.

    With ``as_of``, the latest revision computed as of that moment: what a run judging at ``as_of`` sees
    whichever later runs finished first (a concurrent backfill), so its judgement does not depend on them.
    """
    ensure_tables(engine)
    t = METRIC_RESULTS
    latest = _latest_revisions(t, monitor, cadence, start, end, as_of)
    statement = (
        sa.select(t)
        .join(latest, sa.and_(t.c.window_start == latest.c.window_start, t.c.revision == latest.c.revision))
        .where(t.c.monitor == monitor, t.c.cadence == cadence)
        .order_by(t.c.window_start, t.c.metric)
    )
    points: dict[datetime, HistoryPoint] = {}
    with engine.connect() as conn:
        for row in conn.execute(statement).mappings():
            point = points.get(row["window_start"])
            if point is None:
                point = HistoryPoint(
                    row["window_start"], row["window_end"], {}, row["labelled"], row["predictions"],
                    row["status"], row["revision"],
                )  # fmt: skip
                points[row["window_start"]] = point
            point.metrics[row["metric"]] = row["value"]
    return list(points.values())


def newest_window_start(engine: Engine, *, monitor: str, cadence: str) -> datetime | None:
    """The start of the monitor's newest stored window of ``cadence``, or None before its first result."""
    ensure_tables(engine)
    t = METRIC_RESULTS
    query = sa.select(sa.func.max(t.c.window_start)).where(t.c.monitor == monitor, t.c.cadence == cadence)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one_or_none()


def label_coverage_samples(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime, as_of: datetime | None = None
) -> list[tuple[int, float | None]]:
    """``(revision, label_coverage)`` of every stored revision of the windows with ``start <= window_start
    < end`` (computed as of ``as_of`` at the latest): how fast this monitor's labels usually arrive
    (``rules.expected_label_arrival``)."""
    ensure_tables(engine)
    t = METRIC_RESULTS
    conditions = [
        t.c.monitor == monitor,
        t.c.cadence == cadence,
        t.c.metric == "label_coverage",
        t.c.window_start >= to_naive_utc(start),
        t.c.window_start < to_naive_utc(end),
    ]
    if as_of is not None:
        conditions.append(t.c.as_of <= to_naive_utc(as_of))
    statement = sa.select(t.c.revision, t.c.label_coverage).where(*conditions)
    with engine.connect() as conn:
        return [(int(row.revision), row.label_coverage) for row in conn.execute(statement)]


def latest_revision(
    engine: Engine, *, monitor: str, cadence: str, window_start: datetime
) -> tuple[int, str, datetime] | None:
    """``(revision, status, as_of)`` of the newest stored revision of one window, or None."""
    ensure_tables(engine)
    t = WINDOW_STATS
    statement = (
        sa.select(t.c.revision, t.c.status, t.c.as_of)
        .where(t.c.monitor == monitor, t.c.cadence == cadence, t.c.window_start == to_naive_utc(window_start))
        .order_by(t.c.revision.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(statement).first()
    return None if row is None else (int(row.revision), str(row.status), row.as_of)


def load_window_stats(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime
) -> list[WindowStats]:
    """Stored statistics of the latest revision of each window in ``[start, end)``, oldest first."""
    ensure_tables(engine)
    t = WINDOW_STATS
    latest = _latest_revisions(t, monitor, cadence, start, end)
    statement = (
        sa.select(t.c.stats_json)
        .join(latest, sa.and_(t.c.window_start == latest.c.window_start, t.c.revision == latest.c.revision))
        .where(t.c.monitor == monitor, t.c.cadence == cadence)
        .order_by(t.c.window_start)
    )
    with engine.connect() as conn:
        return [WindowStats.from_dict(json.loads(raw)) for raw in conn.execute(statement).scalars()]


def count_rows(engine: Engine, table: str) -> int:
    """Rows in ``table`` (a name, quoted by the dialect)."""
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(sa.table(table))).scalar_one())
