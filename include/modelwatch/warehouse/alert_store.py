"""Alert state and the notification outbox, in the warehouse (SQLAlchemy Core, any dialect).

Tables:

``modelwatch_alerts`` - one row per ``dedup_key``: the :class:`modelwatch.alerts.AlertState`
(state open/resolved, severity, incident number, opened_at, last_as_of, breach_count,
healthy_streak, last_value, recent_statuses as JSON, first/last breach window) plus the monitor,
cadence, metric and rule it belongs to and ``updated_at``.

``modelwatch_alert_outbox`` - one row per (dedup_key, incident, event kind, destination), whose
readable text ``id`` is also the primary key, so a retried run cannot insert a notification twice.
Columns: monitor, destination ('slack', 'pagerduty', 'log'), conn_id (the Airflow connection
routed to), severity, payload (JSON rendered by :mod:`modelwatch.payloads`, never a secret),
status ('pending', 'sent', 'skipped'), attempts, next_attempt_at, last_error, created_at, sent_at.

All datetimes are stored as naive UTC and returned as aware UTC.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.alerts import AlertEvent, AlertState, RuleEvaluation, advance, check_for
from modelwatch.config import MonitorConfig, Severity
from modelwatch.payloads import render

log = logging.getLogger(__name__)

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
)

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


@dataclass(frozen=True)
class OutboxRow:
    id: str
    dedup_key: str
    incident: int
    kind: str
    destination: str
    monitor: str
    conn_id: str | None
    severity: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _to_db(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_alert_tables(engine: Engine) -> None:
    """Create both tables when missing (idempotent; checked once per engine and process)."""
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)


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
    }


def _load_states(conn: Connection, keys: Sequence[str]) -> dict[str, AlertState]:
    if not keys:
        return {}
    rows = conn.execute(sa.select(alerts_table).where(alerts_table.c.dedup_key.in_(list(keys)))).mappings()
    return {row["dedup_key"]: _state_from_row(row) for row in rows}


def alert_states(engine: Engine, keys: Sequence[str]) -> list[AlertState]:
    """The stored states of the alerts with these dedup keys (alerts never evaluated are absent)."""
    ensure_alert_tables(engine)
    with engine.connect() as conn:
        return list(_load_states(conn, keys).values())


def _save_state(conn: Connection, exists: bool, state: AlertState, evaluation: RuleEvaluation) -> None:
    values = _state_values(state, evaluation)
    if exists:
        conn.execute(alerts_table.update().where(alerts_table.c.dedup_key == state.dedup_key).values(**values))
    else:
        conn.execute(alerts_table.insert().values(dedup_key=state.dedup_key, **values))


def destinations(monitor: MonitorConfig, event: AlertEvent) -> list[tuple[str, str | None]]:
    """(destination, conn_id) pairs an event is routed to: log always, Slack always, PagerDuty if critical."""
    routed: list[tuple[str, str | None]] = [("log", None)]
    if monitor.routes.slack is not None:
        routed.append(("slack", monitor.routes.slack.conn_id))
    if monitor.routes.pagerduty is not None and event.severity == Severity.CRITICAL.value:
        routed.append(("pagerduty", monitor.routes.pagerduty.conn_id))
    return routed


def outbox_id(event: AlertEvent, destination: str) -> str:
    """The outbox row's key, e.g. ``modelwatch/churn/hourly/roc_auc/absolute:critical#1#trigger#slack``."""
    return f"{event.dedup_key}#{event.incident}#{event.kind}#{destination}"


def _insert_outbox(
    conn: Connection, monitor: MonitorConfig, event: AlertEvent, links: Mapping[str, str] | None
) -> None:
    now = _to_db(_now())
    for destination, conn_id in destinations(monitor, event):
        row_id = outbox_id(event, destination)
        exists = conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id == row_id)).first()
        if exists is not None:
            continue
        payload = render(event, destination, links=links)
        if destination == "log":
            log.info("modelwatch alert %s: %s", event.kind, payload["summary"])
        conn.execute(
            outbox_table.insert().values(
                id=row_id,
                dedup_key=event.dedup_key,
                incident=event.incident,
                kind=event.kind,
                destination=destination,
                monitor=monitor.name,
                conn_id=conn_id,
                severity=event.severity,
                payload=json.dumps(payload, default=str),
                status=SENT if destination == "log" else PENDING,
                # Due from the run's own tick, so a run's logical clock (now=as_of) sees it at once.
                attempts=0,
                next_attempt_at=_to_db(event.evaluation.as_of),
                last_error=None,
                created_at=now,
                sent_at=now if destination == "log" else None,
            )
        )


def record_run(
    engine: Engine,
    monitor: MonitorConfig,
    evaluations: Sequence[RuleEvaluation],
    *,
    links: Mapping[str, str] | None = None,
) -> list[AlertEvent]:
    """Advance every alert by one run and queue its notifications, in one transaction.

    Args:
        engine: The warehouse.
        monitor: The monitor the evaluations belong to (routes, checks).
        evaluations: ``modelwatch.alerts.evaluate_rules`` output for one run.
        links: Name -> URL links added to every message (MLflow run, Airflow run, report).

    Returns:
        The events of this run (empty for a retried or replayed run).
    """
    from modelwatch.warehouse.locks import window_lock

    ensure_alert_tables(engine)
    events: list[AlertEvent] = []
    # Read-advance-write under the monitor's alert lock: two overlapping runs (a backfill with
    # max_active_runs > 1) would otherwise both read the same state and the slower one would write its older
    # evaluation over the newer one, which a later replay then "advances" again.
    with window_lock(engine, f"alerts:{monitor.name}"), engine.begin() as conn:
        states = _load_states(conn, [e.dedup_key for e in evaluations])
        for evaluation in evaluations:
            before = states.get(evaluation.dedup_key)
            after, new_events = advance(before, evaluation, check=check_for(monitor, evaluation))
            if after is None or after == before:
                continue
            _save_state(conn, before is not None, after, evaluation)
            states[evaluation.dedup_key] = after
            for event in new_events:
                _insert_outbox(conn, monitor, event, links)
            events.extend(new_events)
    return events


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
