"""Alert state and the notification outbox, in the warehouse (SQLAlchemy Core, any dialect).

Tables:

``modelwatch_alerts`` - one row per ``dedup_key``: the :class:`modelwatch.core.alerts.AlertState`
(state open/resolved, severity, incident number, opened_at, last_as_of, breach_count,
healthy_streak, last_value, recent_statuses as JSON, first/last breach window) plus the monitor,
cadence, metric and rule it belongs to and ``updated_at``; ``lifecycle`` (JSON) holds the judged
windows with their latest revision and status, ``counted_after``, ``last_breach_as_of``, ``resolved_at``
and ``reopens`` (added to older tables on first use).

``modelwatch_alert_outbox`` - one row per (dedup_key, incident, event kind, destination), whose
readable text ``id`` is also the primary key, so a retried run cannot insert a notification twice.
Columns: monitor, destination ('slack', 'pagerduty', 'log'), conn_id (the Airflow connection
routed to), severity, payload (JSON rendered by :mod:`modelwatch.render.payloads`, never a secret),
status ('pending', 'sent', 'skipped'), attempts, next_attempt_at, last_error, created_at, sent_at.

All datetimes are stored as naive UTC and returned as aware UTC.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.core.alert_history import Tick, tick_from_json, tick_to_json
from modelwatch.core.alerts import RESOLVE, AlertEvent, AlertState, RuleEvaluation
from modelwatch.core.outbox import OutboxRow
from modelwatch.core.result import RootCause
from modelwatch.core.windows import as_utc, to_naive_utc
from modelwatch.warehouse.caching import ExpiringCache

PENDING = "pending"
SENT = "sent"
SKIPPED = "skipped"

metadata = sa.MetaData()

alerts_table = sa.Table(
    "modelwatch_alerts",
    metadata,
    sa.Column("dedup_key", sa.String(300), primary_key=True),
    sa.Column("monitor", sa.String(100), nullable=False),
    sa.Column("cadence", sa.String(20), nullable=False),
    sa.Column("metric", sa.String(100), nullable=False),
    sa.Column("rule_id", sa.String(100), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("incident", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.DateTime),
    sa.Column("last_as_of", sa.DateTime),
    sa.Column("breach_count", sa.Integer, nullable=False),
    sa.Column("healthy_streak", sa.Integer, nullable=False),
    sa.Column("last_value", sa.Float),
    sa.Column("recent_statuses", sa.Text, nullable=False),
    sa.Column("first_breach_window", sa.DateTime),
    sa.Column("last_breach_window", sa.DateTime),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Column("lifecycle", sa.Text),
)

ticks_table = sa.Table(
    "modelwatch_alert_ticks",
    metadata,
    sa.Column("dedup_key", sa.String(300), primary_key=True),
    sa.Column("as_of", sa.DateTime, primary_key=True),
    sa.Column("monitor", sa.String(100), nullable=False),
    sa.Column("evaluation", sa.Text, nullable=False),
    sa.Column("state_before", sa.Text, nullable=False),
    sa.Column("state_after", sa.Text, nullable=False),
    sa.Column("recorded_at", sa.DateTime, nullable=False),
)
"""Every tick of every alert (``modelwatch.core.alert_history``): the rule's evaluation (JSON) and the alert's
state before and after it, chained in ``as_of`` order, so a tick that finishes late is folded in where it
belongs."""

outbox_table = sa.Table(
    "modelwatch_alert_outbox",
    metadata,
    sa.Column("id", sa.String(400), primary_key=True),
    sa.Column("dedup_key", sa.String(300), nullable=False),
    sa.Column("incident", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("destination", sa.String(20), nullable=False),
    sa.Column("monitor", sa.String(100), nullable=False),
    sa.Column("conn_id", sa.String(250)),
    sa.Column("severity", sa.String(20), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
)


def _to_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else to_naive_utc(moment)


def _from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _now() -> datetime:
    return datetime.now(UTC)


_UPGRADED: ExpiringCache[bool] = ExpiringCache(seconds=None)
"""Engines whose alert table has the lifecycle column (checked once per engine's life)."""


def _add_lifecycle_column(engine: Engine) -> bool:
    # Tables created before the lifecycle column existed get it (PostgreSQL and DuckDB both know
    # ADD COLUMN IF NOT EXISTS); their rows read as an empty lifecycle. A DDL against the table names
    # it as the engine does, so a ``results_schema`` (schema_translate_map) finds it.
    upgrade = sa.DDL("ALTER TABLE %(fullname)s ADD COLUMN IF NOT EXISTS lifecycle TEXT").against(alerts_table)
    with engine.begin() as conn:
        conn.execute(upgrade)
    return True


def ensure_alert_tables(engine: Engine) -> None:
    """Create both tables when missing (idempotent; checked once per engine and process)."""
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)
    _UPGRADED.get("lifecycle", lambda: _add_lifecycle_column(engine), engine=engine)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else _to_db(moment).isoformat()  # type: ignore[union-attr]


def _parse(raw: str | None) -> datetime | None:
    return None if raw is None else as_utc(datetime.fromisoformat(raw))


def _lifecycle_json(state: AlertState) -> str:
    return json.dumps(
        {
            "windows": [[_iso(w), revision, status] for w, revision, status in state.windows],
            "counted_after": _iso(state.counted_after),
            "last_breach_as_of": _iso(state.last_breach_as_of),
            "resolved_at": _iso(state.resolved_at),
            "reopens": state.reopens,
            "evidence": state.evidence,
            "evidence_note": state.evidence_note,
            "first_signal": state.first_signal,
            "first_signal_at": _iso(state.first_signal_at),
        }
    )


def _lifecycle_fields(raw: str | None) -> dict[str, Any]:
    found = json.loads(raw) if raw else {}
    return {
        "windows": tuple((_parse(w), int(r), str(s)) for w, r, s in found.get("windows", [])),
        "counted_after": _parse(found.get("counted_after")),
        "last_breach_as_of": _parse(found.get("last_breach_as_of")),
        "resolved_at": _parse(found.get("resolved_at")),
        "reopens": int(found.get("reopens", 0)),
        "evidence": found.get("evidence"),
        "evidence_note": found.get("evidence_note"),
        "first_signal": found.get("first_signal"),
        "first_signal_at": _parse(found.get("first_signal_at")),
    }


def _state_from_row(row: Mapping[str, Any]) -> AlertState:
    return AlertState(
        dedup_key=row["dedup_key"],
        state=row["state"],
        severity=row["severity"],
        incident=row["incident"],
        opened_at=_from_db(row["opened_at"]),
        last_as_of=_from_db(row["last_as_of"]),
        breach_count=row["breach_count"],
        healthy_streak=row["healthy_streak"],
        last_value=row["last_value"],
        recent_statuses=tuple(json.loads(row["recent_statuses"])),
        first_breach_window=_from_db(row["first_breach_window"]),
        last_breach_window=_from_db(row["last_breach_window"]),
        **_lifecycle_fields(row.get("lifecycle")),
    )


def _state_values(state: AlertState, evaluation: RuleEvaluation) -> dict[str, Any]:
    return {
        "monitor": evaluation.monitor,
        "cadence": evaluation.cadence,
        "metric": evaluation.metric,
        "rule_id": evaluation.rule_id,
        "state": state.state,
        "severity": state.severity,
        "incident": state.incident,
        "opened_at": _to_db(state.opened_at),
        "last_as_of": _to_db(state.last_as_of),
        "breach_count": state.breach_count,
        "healthy_streak": state.healthy_streak,
        "last_value": state.last_value,
        "recent_statuses": json.dumps(list(state.recent_statuses)),
        "first_breach_window": _to_db(state.first_breach_window),
        "last_breach_window": _to_db(state.last_breach_window),
        "updated_at": _to_db(_now()),
        "lifecycle": _lifecycle_json(state),
    }


def load_states(conn: Connection, keys: Sequence[str]) -> dict[str, AlertState]:
    if not keys:
        return {}
    rows = conn.execute(sa.select(alerts_table).where(alerts_table.c.dedup_key.in_(list(keys)))).mappings()
    return {row["dedup_key"]: _state_from_row(row) for row in rows}


def alert_states(engine: Engine, keys: Sequence[str]) -> list[AlertState]:
    """The stored states of the alerts with these dedup keys (alerts never evaluated are absent)."""
    ensure_alert_tables(engine)
    with engine.connect() as conn:
        return list(load_states(conn, keys).values())


def save_state(conn: Connection, exists: bool, state: AlertState, evaluation: RuleEvaluation) -> None:
    values = _state_values(state, evaluation)
    if exists:
        conn.execute(alerts_table.update().where(alerts_table.c.dedup_key == state.dedup_key).values(**values))
    else:
        conn.execute(alerts_table.insert().values(dedup_key=state.dedup_key, **values))


def outbox_id(event: AlertEvent, destination: str) -> str:
    """The outbox row's key, e.g. ``modelwatch/churn/hourly/roc_auc/absolute:critical#1#trigger#slack``;
    events after the incident's n-th reopen end their kind with ``-rn`` (``#1#trigger-r1#slack``)."""
    kind = f"{event.kind}-r{event.reopen}" if event.reopen else event.kind
    return f"{event.dedup_key}#{event.incident}#{kind}#{destination}"


def continue_page(conn: Connection, event: AlertEvent) -> bool:
    """A reopen cancels the incident's held PagerDuty resolve; True when one was still held (the page
    never closed, so no new PagerDuty trigger is needed)."""
    held = (
        outbox_table.c.dedup_key == event.dedup_key,
        outbox_table.c.incident == event.incident,
        outbox_table.c.kind == RESOLVE,
        outbox_table.c.destination == "pagerduty",
        outbox_table.c.status == PENDING,
    )
    found = conn.execute(sa.select(outbox_table.c.id).where(*held)).first()
    if found is None:
        return False
    reason = f"superseded: incident reopened at {event.evaluation.as_of:%Y-%m-%d %H:%M}"
    conn.execute(outbox_table.update().where(*held).values(status=SKIPPED, last_error=reason))
    return True


def stored_ticks(conn: Connection, dedup_key: str, after: datetime) -> list[tuple[datetime, Tick, AlertState | None]]:
    """(as_of, tick, state before it) of the alert's stored ticks after ``after``, oldest first."""
    rows = conn.execute(
        sa.select(ticks_table.c.as_of, ticks_table.c.evaluation, ticks_table.c.state_before, ticks_table.c.state_after)
        .where(ticks_table.c.dedup_key == dedup_key, ticks_table.c.as_of > _to_db(after))
        .order_by(ticks_table.c.as_of)
    ).all()
    out = []
    for as_of, evaluation, before, after_json in rows:
        tick = tick_from_json(evaluation, after_json)
        out.append((as_of, tick, tick_from_json(evaluation, before).state_after))
    return out


def queued_ids(conn: Connection, events: Sequence[AlertEvent]) -> set[str]:
    """The log-destination outbox ids of ``events`` that are queued already (every event has a log row)."""
    ids = [outbox_id(event, "log") for event in events]
    if not ids:
        return set()
    return set(conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id.in_(ids))).scalars())


def tick_recorded(conn: Connection, dedup_key: str, as_of: datetime) -> bool:
    """True when the alert's tick at ``as_of`` has a row already (a retry or a reprocessing backfill)."""
    found = conn.execute(
        sa.select(ticks_table.c.as_of).where(ticks_table.c.dedup_key == dedup_key, ticks_table.c.as_of == _to_db(as_of))
    ).first()
    return found is not None


def write_ticks(
    conn: Connection,
    monitor: str,
    checkpoint: AlertState | None,
    ticks: Sequence[Tick],
    stored: frozenset[datetime] = frozenset(),
) -> None:
    """Write ``ticks`` (folded from ``checkpoint``, oldest first); those whose ``as_of`` is in ``stored``
    have a row already and are updated."""
    before = checkpoint
    now = _to_db(_now())
    for tick in ticks:
        evaluation_json, after_json = tick_to_json(tick)
        before_json = tick_to_json(Tick(tick.evaluation, before))[1]
        as_of = _to_db(tick.evaluation.as_of)
        values = {"evaluation": evaluation_json, "state_before": before_json, "state_after": after_json}
        if as_of in stored:
            key = (ticks_table.c.dedup_key == tick.evaluation.dedup_key, ticks_table.c.as_of == as_of)
            conn.execute(ticks_table.update().where(*key).values(**values))
        else:
            conn.execute(
                ticks_table.insert().values(
                    dedup_key=tick.evaluation.dedup_key, as_of=as_of, monitor=monitor, recorded_at=now, **values
                )
            )
        before = tick.state_after


def outbox_row_exists(conn: Connection, row_id: str) -> bool:
    return conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id == row_id)).first() is not None


def insert_outbox(
    conn: Connection,
    event: AlertEvent,
    destination: str,
    *,
    monitor: str,
    conn_id: str | None,
    payload: Mapping[str, Any],
    status: str,
    next_attempt_at: datetime,
    last_error: str | None,
    queued_at: datetime,
) -> None:
    """Queue one outbox row of ``event`` for ``destination``; a row queued as SENT (the log) is sent at
    ``queued_at`` (one moment for all the rows of an event: delivery orders by it, then by id)."""
    now = _to_db(queued_at)
    conn.execute(
        outbox_table.insert().values(
            id=outbox_id(event, destination),
            dedup_key=event.dedup_key,
            incident=event.incident,
            kind=event.kind,
            destination=destination,
            monitor=monitor,
            conn_id=conn_id,
            severity=event.severity,
            payload=json.dumps(payload, default=str),
            status=status,
            attempts=0,
            next_attempt_at=_to_db(next_attempt_at),
            last_error=last_error,
            created_at=now,
            sent_at=now if status == SENT else None,
        )
    )


@contextmanager
def alert_lock(engine: Engine, monitor: str) -> Iterator[None]:
    """The monitor's alert lock (tables created first): a run's read-fold-write happens inside it."""
    from modelwatch.warehouse.locks import window_lock

    ensure_alert_tables(engine)
    with window_lock(engine, f"alerts:{monitor}"):
        yield


def _outbox_from_row(row: Mapping[str, Any]) -> OutboxRow:
    values = dict(row)
    values["payload"] = json.loads(values["payload"])
    for name in ("next_attempt_at", "created_at", "sent_at"):
        values[name] = _from_db(values[name])
    return OutboxRow(**values)


def pending(engine: Engine, monitor: str, *, now: datetime | None = None) -> list[OutboxRow]:
    """Pending outbox rows of ``monitor`` in creation order; only those due at ``now`` when given."""
    query = sa.select(outbox_table).where(outbox_table.c.monitor == monitor, outbox_table.c.status == PENDING)
    if now is not None:
        query = query.where(outbox_table.c.next_attempt_at <= _to_db(now))
    query = query.order_by(outbox_table.c.created_at, outbox_table.c.incident, outbox_table.c.id)
    with engine.connect() as conn:
        return [_outbox_from_row(row) for row in conn.execute(query).mappings()]


def claim(engine: Engine, row: OutboxRow, *, until: datetime) -> bool:
    """Take ``row`` for one delivery: True when this caller owns it, False when another delivery does.

    An atomic compare-and-set on the row as read (still pending, same attempts and due time) that moves
    its due time to ``until``, a lease: an overlapping ``notify`` task no longer sees it due, and a task
    killed mid-send leaves it to the first run after the lease. Held under the monitor's warehouse lock
    (a PostgreSQL advisory lock; in-process on DuckDB, which has one writer process) so two claims never
    race on the same row.
    """
    from modelwatch.warehouse.locks import window_lock

    table = outbox_table
    with window_lock(engine, f"outbox:{row.monitor}"), engine.begin() as conn:
        taken = conn.execute(
            table.update()
            .where(
                table.c.id == row.id,
                table.c.status == PENDING,
                table.c.attempts == row.attempts,
                table.c.next_attempt_at == _to_db(row.next_attempt_at),
            )
            .values(next_attempt_at=_to_db(until))
        ).rowcount
    return taken == 1


def _update_outbox(engine: Engine, row_id: str, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(outbox_table.update().where(outbox_table.c.id == row_id).values(**values))


def mark_sent(engine: Engine, row_id: str, *, at: datetime) -> None:
    """The receiver accepted the row: it is never sent again."""
    _update_outbox(
        engine, row_id, status=SENT, sent_at=_to_db(at), attempts=outbox_table.c.attempts + 1, last_error=None
    )


def mark_attempt_failed(engine: Engine, row_id: str, *, error: str, next_attempt_at: datetime) -> None:
    """Count a failed attempt; the row stays pending and is due again at ``next_attempt_at``."""
    _update_outbox(
        engine,
        row_id,
        attempts=outbox_table.c.attempts + 1,
        last_error=error[:2000],
        next_attempt_at=_to_db(next_attempt_at),
    )


def mark_skipped(engine: Engine, row_id: str, *, reason: str, at: datetime) -> None:
    """The route cannot be used (e.g. no connection): record why, once, and stop trying."""
    _update_outbox(engine, row_id, status=SKIPPED, last_error=reason[:2000], sent_at=None, next_attempt_at=_to_db(at))


def opening_root_causes(engine: Engine, alerts: Sequence[Mapping[str, Any]]) -> dict[str, RootCause]:
    """dedup_key -> the root cause the tick that opened the alert's incident quoted (the message's),
    for incidents whose window documents carry none (label-free rules, warnings diagnosed when judged)."""
    wanted = [(a["dedup_key"], _to_db(a["opened_at"])) for a in alerts if a.get("incident") and a.get("opened_at")]
    if not wanted:
        return {}
    condition = sa.or_(*(sa.and_(ticks_table.c.dedup_key == k, ticks_table.c.as_of == t) for k, t in wanted))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ticks_table.c.dedup_key, ticks_table.c.evaluation).where(condition)).all()
    out = {}
    for key, evaluation in rows:
        cause = tick_from_json(evaluation, "null").evaluation.root_cause
        if cause is not None:
            out[key] = cause
    return out


def alert_rows(engine: Engine, monitor: str | None = None) -> list[dict[str, Any]]:
    """Alert states as plain dicts (newest activity first), for summaries and the demo."""
    ensure_alert_tables(engine)
    query = sa.select(alerts_table).order_by(alerts_table.c.last_as_of.desc(), alerts_table.c.dedup_key)
    if monitor is not None:
        query = query.where(alerts_table.c.monitor == monitor)
    with engine.connect() as conn:
        rows = [dict(row) for row in conn.execute(query).mappings()]
    for row in rows:
        row["recent_statuses"] = json.loads(row["recent_statuses"])
        for name in ("opened_at", "last_as_of", "first_breach_window", "last_breach_window", "updated_at"):
            row[name] = _from_db(row[name])
    return rows


def outbox_rows(engine: Engine, monitor: str | None = None) -> list[OutboxRow]:
    """Every notification ever recorded, oldest first (the demo summary and audits)."""
    ensure_alert_tables(engine)
    query = sa.select(outbox_table).order_by(outbox_table.c.created_at, outbox_table.c.id)
    if monitor is not None:
        query = query.where(outbox_table.c.monitor == monitor)
    with engine.connect() as conn:
        return [_outbox_from_row(row) for row in conn.execute(query).mappings()]
