"""Stored window profiles and the monitor's fixed bin edges, so a reference is merged, never re-scanned.

``modelwatch_profile_edges``: one row per (monitor, edges_version): the :class:`~modelwatch.core.profiles.BinEdges`
as JSON, where they came from (``source``, e.g. the baseline window) and ``created_at``. The newest row is
the monitor's current edges; fixing different edges when some are stored is refused unless asked for
(``new_version=True``): re-binning is an explicit, versioned step, and old profiles keep naming their edges.

``modelwatch_profiles``: one row per (monitor, cadence, window_start, edges_version, revision,
segment_column, segment_value, feature): ``window_end``, ``kind`` ('numeric' or 'categorical'), ``payload``
(JSON of :func:`~modelwatch.core.profiles.to_payload`: bin counts, nulls, rows, moments, min, max or
category counts) and ``computed_at``. ``segment_column`` and ``segment_value`` are the empty string for the
whole window. A profile is of the window's *predictions* only, so it does not depend on labels: there is no
``labels_as_of``; ``revision`` lets a window whose predictions arrived late be profiled again (readers take
the newest revision of each window). Writes replace the rows of one (window, edges_version, revision) in one
transaction and the primary key makes a duplicate impossible, so a retried task writes the same rows again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelwatch.core.profiles import BinEdges, WindowProfile, from_payload, merge_all, to_payload

METADATA = sa.MetaData()

PROFILE_EDGES = sa.Table(
    "modelwatch_profile_edges",
    METADATA,
    sa.Column("monitor", sa.String(128), primary_key=True),
    sa.Column("edges_version", sa.String(32), primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("edges_json", sa.Text, nullable=False),
    sa.Column("importance_json", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

PROFILES = sa.Table(
    "modelwatch_profiles",
    METADATA,
    sa.Column("monitor", sa.String(128), primary_key=True),
    sa.Column("cadence", sa.String(16), primary_key=True),
    sa.Column("window_start", sa.DateTime, primary_key=True),
    sa.Column("edges_version", sa.String(32), primary_key=True),
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("segment_column", sa.String(128), primary_key=True),
    sa.Column("segment_value", sa.Text, primary_key=True),
    sa.Column("feature", sa.String(128), primary_key=True),
    sa.Column("window_end", sa.DateTime, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("computed_at", sa.DateTime, nullable=False),
)


class EdgesAlreadyFixedError(RuntimeError):
    """The monitor already has other bin edges; replacing them must be asked for explicitly."""


@dataclass(frozen=True)
class StoredWindow:
    """The newest stored revision of one window's profile."""

    window_start: datetime
    window_end: datetime
    revision: int
    profile: WindowProfile


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_tables(engine: Engine) -> None:
    """Create modelwatch's tables (these among them) when they do not exist (safe on every run)."""
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)


def current_edges(engine: Engine, *, monitor: str) -> BinEdges | None:
    """The monitor's current (newest) bin edges, None before they are fixed."""
    ensure_tables(engine)
    t = PROFILE_EDGES
    query = (
        sa.select(t.c.edges_json)
        .where(t.c.monitor == monitor)
        .order_by(t.c.created_at.desc(), t.c.edges_version.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        raw = conn.execute(query).scalar_one_or_none()
    return None if raw is None else BinEdges.from_dict(json.loads(raw))


def load_edges(engine: Engine, *, monitor: str, edges_version: str) -> BinEdges:
    """The stored edges of one version (the ones a stored profile names).

    Raises:
        LookupError: No such version is stored for the monitor.
    """
    ensure_tables(engine)
    t = PROFILE_EDGES
    query = sa.select(t.c.edges_json).where(t.c.monitor == monitor, t.c.edges_version == edges_version)
    with engine.connect() as conn:
        raw = conn.execute(query).scalar_one_or_none()
    if raw is None:
        raise LookupError(f"monitor {monitor!r} has no stored bin edges {edges_version!r}")
    return BinEdges.from_dict(json.loads(raw))


def baseline_importance(engine: Engine, *, monitor: str, edges_version: str) -> dict[str, float | None]:
    """The feature importance stored with one edges version ({} when none was)."""
    ensure_tables(engine)
    t = PROFILE_EDGES
    query = sa.select(t.c.importance_json).where(t.c.monitor == monitor, t.c.edges_version == edges_version)
    with engine.connect() as conn:
        raw = conn.execute(query).scalar_one_or_none()
    return json.loads(raw) if raw else {}


def fix_edges(
    engine: Engine,
    *,
    monitor: str,
    edges: BinEdges,
    source: str,
    new_version: bool = False,
    importance: Mapping[str, float | None] | None = None,
) -> str:
    """Store ``edges`` as the monitor's bin edges and return their version.

    ``importance`` is the baseline's feature importance (|corr(feature, score)| or eta), stored beside the
    edges: a stored profile has no score moments, so drift findings rank features by the baseline's.

    Storing the current version again does nothing (a retried task). Different edges from the current
    ones are stored only with ``new_version=True``, and then become current.

    Raises:
        EdgesAlreadyFixedError: The monitor has other edges and ``new_version`` is False.
    """
    current = current_edges(engine, monitor=monitor)
    if current is not None and current.version == edges.version:
        return edges.version
    if current is not None and not new_version:
        raise EdgesAlreadyFixedError(
            f"monitor {monitor!r} already profiles on bin edges {current.version!r}; pass new_version=True to "
            f"start version {edges.version!r} (profiles on the old edges are not merged with new ones)"
        )
    row = {
        "monitor": monitor,
        "edges_version": edges.version,
        "source": source,
        "edges_json": json.dumps(edges.to_dict(), sort_keys=True),
        "importance_json": json.dumps(dict(importance or {}), sort_keys=True),
        "created_at": _now(),
    }
    key = [PROFILE_EDGES.c.monitor == monitor, PROFILE_EDGES.c.edges_version == edges.version]
    with engine.begin() as conn:
        # Back to an older version: it becomes current again (a newer created_at), still one row per version.
        conn.execute(sa.delete(PROFILE_EDGES).where(*key))
        conn.execute(sa.insert(PROFILE_EDGES).values(row))
    return edges.version


def _profile_rows(
    monitor: str, cadence: str, window_start: datetime, window_end: datetime, revision: int, profile: WindowProfile
) -> list[dict[str, Any]]:
    shared = {
        "monitor": monitor,
        "cadence": cadence,
        "window_start": _naive_utc(window_start),
        "window_end": _naive_utc(window_end),
        "edges_version": profile.edges_version,
        "revision": revision,
        "computed_at": _now(),
    }
    rows = []
    for (column, value, feature), counts in sorted(profile.features.items()):
        payload = to_payload(counts)
        rows.append(
            {
                **shared,
                "segment_column": column,
                "segment_value": value,
                "feature": feature,
                "kind": payload["kind"],
                "payload": json.dumps(payload, sort_keys=True),
            }
        )
    return rows


def save_profile(
    engine: Engine,
    *,
    monitor: str,
    cadence: str,
    window_start: datetime,
    window_end: datetime,
    profile: WindowProfile,
    revision: int = 0,
) -> int:
    """Write one window's profile (every feature, whole and per segment value) idempotently.

    Returns:
        Rows written; writing the same (window, edges version, revision) again replaces them.
    """
    ensure_tables(engine)
    t = PROFILES
    key = [
        t.c.monitor == monitor,
        t.c.cadence == cadence,
        t.c.window_start == _naive_utc(window_start),
        t.c.edges_version == profile.edges_version,
        t.c.revision == revision,
    ]
    rows = _profile_rows(monitor, cadence, window_start, window_end, revision, profile)
    with engine.begin() as conn:
        conn.execute(sa.delete(t).where(*key))
        if rows:
            conn.execute(sa.insert(t), rows)
    return len(rows)


def _newest_rows(inside: Sequence[sa.ColumnElement[bool]], *, segments: bool) -> sa.Select[Any]:
    """The newest revision's rows of every stored window matching ``inside``, in one statement."""
    t = PROFILES
    newest = (
        sa.select(t.c.window_start, sa.func.max(t.c.revision).label("revision"))
        .where(*inside)
        .group_by(t.c.window_start)
        .subquery()
    )
    query = (
        sa.select(t.c.window_start, t.c.window_end, t.c.revision, t.c.segment_column, t.c.segment_value)
        .add_columns(t.c.feature, t.c.payload)
        .join(newest, sa.and_(t.c.window_start == newest.c.window_start, t.c.revision == newest.c.revision))
        .where(*inside)
        .order_by(t.c.window_start, t.c.segment_column, t.c.segment_value, t.c.feature)
    )
    return query if segments else query.where(t.c.segment_column == "")


def _read_windows(engine: Engine, query: sa.Select[Any], edges_version: str) -> list[StoredWindow]:
    windows: dict[datetime, tuple[datetime, int, dict[Any, Any]]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            _, _, features = windows.setdefault(row.window_start, (row.window_end, int(row.revision), {}))
            key = (row.segment_column, row.segment_value, row.feature)
            features[key] = from_payload(json.loads(row.payload), edges_version)
    return [
        StoredWindow(start_, end_, revision, WindowProfile(edges_version, features))
        for start_, (end_, revision, features) in windows.items()
    ]


def _of_monitor(monitor: str, cadence: str, edges_version: str) -> list[sa.ColumnElement[bool]]:
    t = PROFILES
    return [t.c.monitor == monitor, t.c.cadence == cadence, t.c.edges_version == edges_version]


def load_profiles(
    engine: Engine,
    *,
    monitor: str,
    cadence: str,
    start: datetime,
    end: datetime,
    edges_version: str,
    segments: bool = True,
) -> list[StoredWindow]:
    """The newest revision of every stored window profile inside ``[start, end)`` on one edges version,
    oldest first (``segments=False`` reads only the whole-window rows)."""
    ensure_tables(engine)
    t = PROFILES
    inside = [
        *_of_monitor(monitor, cadence, edges_version),
        t.c.window_start >= _naive_utc(start),
        t.c.window_end <= _naive_utc(end),
    ]
    return _read_windows(engine, _newest_rows(inside, segments=segments), edges_version)


def load_windows(
    engine: Engine, *, monitor: str, cadence: str, starts: Sequence[datetime], edges_version: str
) -> dict[datetime, StoredWindow]:
    """The newest stored revision of the windows starting at ``starts`` (keyed by naive UTC start), whole
    and per segment value, in one statement; windows never profiled are absent."""
    ensure_tables(engine)
    if not starts:
        return {}
    wanted = sorted({_naive_utc(s) for s in starts})
    inside = [*_of_monitor(monitor, cadence, edges_version), PROFILES.c.window_start.in_(wanted)]
    stored = _read_windows(engine, _newest_rows(inside, segments=True), edges_version)
    return {window.window_start: window for window in stored}


def merged_reference(
    engine: Engine,
    *,
    monitor: str,
    cadence: str,
    start: datetime,
    end: datetime,
    edges_version: str,
    segments: bool = True,
) -> WindowProfile | None:
    """The profile of a reference ``[start, end)`` as the merge of the stored windows it covers.

    Reads only ``modelwatch_profiles`` (one statement): the reference's predictions are never scanned.
    None when no window of the range is stored.
    """
    stored = load_profiles(
        engine, monitor=monitor, cadence=cadence, start=start, end=end, edges_version=edges_version, segments=segments
    )
    return merge_all(window.profile for window in stored)
