"""Window documents: the full result of each (window, revision), handed between Airflow tasks.

Table ``modelwatch_window_documents``: one row per (monitor, cadence, window_start, revision) with
``status``, ``as_of`` and ``document`` (JSON of :func:`modelwatch.core.result.result_to_document`, or only the
statistics while the extract task has run and compute has not). Downstream tasks (MLflow, thresholds,
report) read these rows instead of recomputing, and the daily window is rolled up from the hourly rows.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

_metadata = sa.MetaData()
DOCUMENTS = sa.Table(
    "modelwatch_window_documents",
    _metadata,
    sa.Column("monitor", sa.String(128), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("window_start", sa.DateTime, primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("as_of", sa.DateTime, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("document", sa.Text, nullable=False),
)


def ensure_documents_table(engine: Engine) -> None:
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)


def save_document(
    engine: Engine,
    *,
    monitor: str,
    cadence: str,
    window_start: datetime,
    window_end: datetime,
    revision: int,
    as_of: datetime,
    status: str,
    document: dict[str, Any],
) -> None:
    """Insert or replace the row of this (window, revision): re-running writes the same row again."""
    key = {"monitor": monitor, "cadence": cadence, "window_start": window_start, "revision": revision}
    values = {**key, "window_end": window_end, "as_of": as_of, "status": status, "document": json.dumps(document)}
    with engine.begin() as conn:
        conn.execute(sa.delete(DOCUMENTS).where(*[DOCUMENTS.c[k] == v for k, v in key.items()]))
        conn.execute(sa.insert(DOCUMENTS).values(**values))


def load_document(
    engine: Engine, *, monitor: str, cadence: str, window_start: datetime, revision: int
) -> dict[str, Any] | None:
    query = sa.select(DOCUMENTS.c.document).where(
        DOCUMENTS.c.monitor == monitor,
        DOCUMENTS.c.cadence == cadence,
        DOCUMENTS.c.window_start == window_start,
        DOCUMENTS.c.revision == revision,
    )
    with engine.connect() as conn:
        raw = conn.execute(query).scalar_one_or_none()
    return json.loads(raw) if raw is not None else None


def _in_windows(monitor: str, cadence: str, start: datetime, end: datetime) -> list[sa.ColumnElement[bool]]:
    """The rows of one monitor's cadence whose window starts in [start, end)."""
    return [
        DOCUMENTS.c.monitor == monitor,
        DOCUMENTS.c.cadence == cadence,
        DOCUMENTS.c.window_start >= start,
        DOCUMENTS.c.window_start < end,
    ]


def _newest_revisions(conditions: list[sa.ColumnElement[bool]]):
    """The newest revision's row of each window matching ``conditions``, in window order."""
    newest = (
        sa.select(DOCUMENTS.c.window_start, sa.func.max(DOCUMENTS.c.revision).label("revision"))
        .where(*conditions)
        .group_by(DOCUMENTS.c.window_start)
        .subquery()
    )
    return (
        sa.select(DOCUMENTS)
        .join(
            newest,
            sa.and_(DOCUMENTS.c.window_start == newest.c.window_start, DOCUMENTS.c.revision == newest.c.revision),
        )
        .where(*conditions)  # on the outer side too, so the join reads only the matching rows
        .order_by(DOCUMENTS.c.window_start)
    )


def _latest_per_window(monitor: str, cadence: str, start: datetime, end: datetime, as_of: datetime | None):
    conditions = _in_windows(monitor, cadence, start, end)
    if as_of is not None:
        conditions.append(DOCUMENTS.c.as_of <= as_of)
    return _newest_revisions(conditions)


def latest_statuses(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime, before: datetime | None = None
) -> dict[datetime, tuple[int, str]]:
    """window_start -> (revision, status) of the newest stored revision, for windows in [start, end);
    with ``before``, only revisions computed as of an earlier moment (what a run at ``before`` may know,
    whichever later runs finished first)."""
    conditions = _in_windows(monitor, cadence, start, end)
    if before is not None:
        conditions.append(DOCUMENTS.c.as_of < before)
    query = (
        sa.select(DOCUMENTS.c.window_start, DOCUMENTS.c.revision, DOCUMENTS.c.status)
        .where(*conditions)
        .order_by(DOCUMENTS.c.window_start, DOCUMENTS.c.revision)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    # Ordered by revision, so the last row of each window is its newest.
    return {row.window_start: (row.revision, row.status) for row in rows}


def latest_documents(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime, as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """Newest revision's document of each window in [start, end) (only revisions as of ``as_of``)."""
    with engine.connect() as conn:
        rows = conn.execute(_latest_per_window(monitor, cadence, start, end, as_of)).mappings().all()
    return [json.loads(row["document"]) for row in rows]


def closed_orphan_counts(
    engine: Engine, *, monitor: str, cadence: str, start: datetime, end: datetime, before: datetime
) -> dict[datetime, int]:
    """window_start -> ``orphan_labels`` of the newest stored revision computed after its window ended (and
    before ``before``), for windows starting in [start, end): one statement.

    An orphan count covers the labels stamped in ``[start, min(end, as_of))``; once ``as_of >= end`` that range
    is closed, so later revisions may carry the count instead of anti-joining the look-back's predictions again.
    """
    conditions = [*_in_windows(monitor, cadence, start, end), DOCUMENTS.c.as_of >= DOCUMENTS.c.window_end]
    conditions.append(DOCUMENTS.c.as_of < before)
    with engine.connect() as conn:
        rows = conn.execute(_newest_revisions(conditions)).mappings().all()
    out = {}
    for row in rows:
        counts = json.loads(row["document"]).get("stats", {}).get("counts", {})
        if "orphan_labels" in counts:
            out[row["window_start"]] = int(counts["orphan_labels"])
    return out


def revision_count(engine: Engine, *, monitor: str, cadence: str) -> int:
    """How many (window, revision) results are stored for a monitor's cadence."""
    query = sa.select(sa.func.count()).where(DOCUMENTS.c.monitor == monitor, DOCUMENTS.c.cadence == cadence)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def previous_result(
    engine: Engine, *, monitor: str, cadence: str, window_start: datetime, before_revision: int
) -> dict[str, Any] | None:
    """The newest computed document of a window older than ``before_revision`` (None if there is none)."""
    query = (
        sa.select(DOCUMENTS.c.document)
        .where(
            DOCUMENTS.c.monitor == monitor,
            DOCUMENTS.c.cadence == cadence,
            DOCUMENTS.c.window_start == window_start,
            DOCUMENTS.c.revision < before_revision,
        )
        .order_by(DOCUMENTS.c.revision.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        raw = conn.execute(query).scalar_one_or_none()
    document = json.loads(raw) if raw is not None else None
    return document if document and "result" in document else None
