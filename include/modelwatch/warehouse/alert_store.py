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
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from modelwatch.core.alert_history import Replayed, Tick, is_late, replay, tick_from_json, tick_to_json, with_root_cause
from modelwatch.core.alerts import (
    CONFIRMED,
    NOT_CONFIRMED,
    RESOLVE,
    AlertEvent,
    AlertState,
    RuleEvaluation,
    policy_for,
    severity_rank,
)
from modelwatch.core.config import MonitorConfig, Severity
from modelwatch.core.corroboration import corroborate, rule_kind
from modelwatch.core.result import RootCause
from modelwatch.core.windows import as_utc, to_naive_utc
from modelwatch.render.payloads import render

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
    return None if moment is None else to_naive_utc(moment)


def _from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else as_utc(moment)


def _now() -> datetime:
    return datetime.now(UTC)


_UPGRADED: set[tuple[int, str]] = set()


def ensure_alert_tables(engine: Engine) -> None:
    """Create both tables when missing (idempotent; checked once per engine and process)."""
    from modelwatch.warehouse.schema import ensure_once

    ensure_once(engine)
    key = (id(engine), str(engine.url))
    if key not in _UPGRADED:
        # Tables created before the lifecycle column existed get it (PostgreSQL and DuckDB both know
        # ADD COLUMN IF NOT EXISTS); their rows read as an empty lifecycle. A DDL against the table names
        # it as the engine does, so a ``results_schema`` (schema_translate_map) finds it.
        upgrade = sa.DDL("ALTER TABLE %(fullname)s ADD COLUMN IF NOT EXISTS lifecycle TEXT").against(alerts_table)
        with engine.begin() as conn:
            conn.execute(upgrade)
        _UPGRADED.add(key)


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
    """(destination, conn_id) pairs an event is routed to: log always, Slack always, PagerDuty if critical,
    email and webhook from their ``min_severity``."""
    routed: list[tuple[str, str | None]] = [("log", None)]
    if monitor.routes.slack is not None:
        routed.append(("slack", monitor.routes.slack.conn_id))
    # What the labels said of an early alert is news for its thread, not a page.
    paged = event.kind not in (CONFIRMED, NOT_CONFIRMED)
    if monitor.routes.pagerduty is not None and event.severity == Severity.CRITICAL.value and paged:
        routed.append(("pagerduty", monitor.routes.pagerduty.conn_id))
    for name in ("email", "webhook"):
        route = getattr(monitor.routes, name)
        if route is not None and severity_rank(event.severity) >= severity_rank(route.min_severity.value):
            routed.append((name, route.conn_id))
    return routed


def outbox_id(event: AlertEvent, destination: str) -> str:
    """The outbox row's key, e.g. ``modelwatch/churn/hourly/roc_auc/absolute:critical#1#trigger#slack``;
    events after the incident's n-th reopen end their kind with ``-rn`` (``#1#trigger-r1#slack``)."""
    kind = f"{event.kind}-r{event.reopen}" if event.reopen else event.kind
    return f"{event.dedup_key}#{event.incident}#{kind}#{destination}"


def _continue_page(conn: Connection, event: AlertEvent) -> bool:
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


Links = Mapping[str, str] | Callable[[AlertEvent], Mapping[str, str]] | None
"""Links added to messages: one mapping for every event, or a function of the event (its own window's run)."""


def covering_event(event: AlertEvent, siblings: Sequence[AlertEvent]) -> AlertEvent | None:
    """A more severe event of the same run saying the same thing (same metric, window and kind), e.g. the
    critical rule's trigger beside the warning rule's: the person is told once, by that one."""
    window, metric = event.evaluation.window_start, event.evaluation.metric
    covering = [
        other
        for other in siblings
        if other.kind == event.kind
        and other.evaluation.metric == metric
        and other.evaluation.window_start == window
        and severity_rank(other.severity) > severity_rank(event.severity)
    ]
    return max(covering, key=lambda other: severity_rank(other.severity), default=None)


def _insert_outbox(
    conn: Connection, monitor: MonitorConfig, event: AlertEvent, links: Links, covered_by: AlertEvent | None = None
) -> None:
    """Queue ``event`` on its routes; a ``covered_by`` event's message says it already (people's routes
    skip this one; the log row stays)."""
    now = _to_db(_now())
    continued = event.reopen > 0 and _continue_page(conn, event)
    links = dict(links(event) if callable(links) else links or {})
    if monitor.runbook_url:
        links["Runbook"] = monitor.runbook_url
    for destination, conn_id in destinations(monitor, event):
        if continued and destination == "pagerduty":
            continue
        row_id = outbox_id(event, destination)
        exists = conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id == row_id)).first()
        if exists is not None:
            continue
        to = monitor.routes.email.to if destination == "email" and monitor.routes.email else ()
        payload = render(event, destination, links=links, to=to, owner=monitor.owner)
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
                status=SENT if destination == "log" else SKIPPED if covered_by is not None else PENDING,
                # Due from the run's own tick, so a run's logical clock (now=as_of) sees it at once; a held
                # PagerDuty resolve only after the reopen time.
                attempts=0,
                next_attempt_at=_to_db(
                    event.hold_pagerduty_until
                    if destination == "pagerduty" and event.hold_pagerduty_until is not None
                    else event.evaluation.as_of
                ),
                last_error=None if covered_by is None or destination == "log" else f"covered by {covered_by.dedup_key}",
                created_at=now,
                sent_at=now if destination == "log" else None,
            )
        )


@dataclass(frozen=True)
class _Plan:
    """What one evaluation does to its alert: fold ``evaluations`` (this tick, then the stored later ones
    when it is late) onto ``checkpoint``; ``stored`` are the as_of of the ticks that already have a row."""

    checkpoint: AlertState | None
    evaluations: tuple[RuleEvaluation, ...]
    stored: frozenset[datetime]


def _stored_ticks(conn: Connection, dedup_key: str, after: datetime) -> list[tuple[datetime, Tick, AlertState | None]]:
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


def _plan(conn: Connection, state: AlertState | None, evaluation: RuleEvaluation) -> _Plan | None:
    """None when the tick changes nothing: recorded already (a retry or a reprocessing backfill), or late
    for an alert whose later ticks predate the ticks table (then it is ignored, as before)."""
    as_of = _to_db(evaluation.as_of)
    recorded = conn.execute(
        sa.select(ticks_table.c.as_of).where(
            ticks_table.c.dedup_key == evaluation.dedup_key, ticks_table.c.as_of == as_of
        )
    ).first()
    if recorded is not None:
        return None
    if not is_late(state, evaluation):
        return _Plan(state, (evaluation,), frozenset())
    later = _stored_ticks(conn, evaluation.dedup_key, evaluation.as_of)
    if not later or _to_db(later[-1][1].evaluation.as_of) != _to_db(state.last_as_of):  # type: ignore[union-attr]
        return None
    return _Plan(
        later[0][2], (evaluation, *(tick.evaluation for _, tick, _ in later)), frozenset(a for a, _, _ in later)
    )


def _queued_ids(conn: Connection, events: Sequence[AlertEvent]) -> set[str]:
    """The log-destination outbox ids of ``events`` that are queued already (every event has a log row)."""
    ids = [outbox_id(event, "log") for event in events]
    if not ids:
        return set()
    return set(conn.execute(sa.select(outbox_table.c.id).where(outbox_table.c.id.in_(ids))).scalars())


def _explain_plan(
    plan: _Plan,
    replayed: Replayed,
    queued: set[str],
    explain: Callable[[RuleEvaluation], RootCause | None],
) -> _Plan:
    """The plan whose ticks that will queue an event carry the quoted window's root cause (``replayed`` is
    the dry run of its fold; events queued before, ids in ``queued``, are not diagnosed again)."""
    evaluations = list(plan.evaluations)
    for index, event in replayed.events:
        if event.evaluation.root_cause is not None or outbox_id(event, "log") in queued:
            continue
        tick = Tick(evaluations[index], None)
        evaluations[index] = with_root_cause(tick, event, explain(event.evaluation)).evaluation  # type: ignore[arg-type]
    return replace(plan, evaluations=tuple(evaluations))


def _write_ticks(conn: Connection, monitor: MonitorConfig, plan: _Plan, replayed: Replayed) -> None:
    before = plan.checkpoint
    now = _to_db(_now())
    for tick in replayed.ticks:
        evaluation_json, after_json = tick_to_json(tick)
        before_json = tick_to_json(Tick(tick.evaluation, before))[1]
        as_of = _to_db(tick.evaluation.as_of)
        values = {"evaluation": evaluation_json, "state_before": before_json, "state_after": after_json}
        if as_of in plan.stored:
            key = (ticks_table.c.dedup_key == tick.evaluation.dedup_key, ticks_table.c.as_of == as_of)
            conn.execute(ticks_table.update().where(*key).values(**values))
        else:
            conn.execute(
                ticks_table.insert().values(
                    dedup_key=tick.evaluation.dedup_key, as_of=as_of, monitor=monitor.name, recorded_at=now, **values
                )
            )
        before = tick.state_after


def record_run(
    engine: Engine,
    monitor: MonitorConfig,
    evaluations: Sequence[RuleEvaluation],
    *,
    links: Links = None,
    explain: Callable[[RuleEvaluation], RootCause | None] | None = None,
) -> list[AlertEvent]:
    """Advance every alert by one run and queue its notifications, in one transaction.

    A run that finishes after a later run of the same monitor (a concurrent backfill) is folded in at
    its place in ``as_of`` order (``modelwatch.core.alert_history``): the alert ends where the same runs one by
    one would leave it, and the fold's events not queued yet are queued now.

    Args:
        engine: The warehouse.
        monitor: The monitor the evaluations belong to (routes, checks).
        evaluations: ``modelwatch.core.alerts.evaluate_rules`` output for one run.
        links: Name -> URL links added to every message (MLflow run, Airflow run, report), or a function
            of the event returning them (called only for events that are queued).
        explain: Diagnoses the quoted window of an event whose evaluation carries no root cause (every
            message names one); called only for events, never for quiet runs.

    Returns:
        The events queued by this run (empty for a retried or replayed run).
    """
    from modelwatch.warehouse.locks import window_lock

    ensure_alert_tables(engine)
    events: list[AlertEvent] = []
    # Read-fold-write under the monitor's alert lock: two overlapping runs would otherwise both read the
    # same state. The dry run that picks the events to explain is inside the lock too (it runs before the
    # write transaction: a diagnosis queries the warehouse, and an embedded database allows no query
    # inside another's transaction).
    with window_lock(engine, f"alerts:{monitor.name}"):
        with engine.connect() as conn:
            states = _load_states(conn, [e.dedup_key for e in evaluations])
            plans = {e.dedup_key: _plan(conn, states.get(e.dedup_key), e) for e in evaluations}
            dry = {
                e.dedup_key: replay(plan.checkpoint, plan.evaluations, check=policy_for(monitor, e))
                for e in evaluations
                if (plan := plans[e.dedup_key]) is not None
            }
            queued = _queued_ids(conn, [event for replayed in dry.values() for _, event in replayed.events])
        if explain is not None:
            for key, replayed in dry.items():
                plans[key] = _explain_plan(plans[key], replayed, queued, explain)  # type: ignore[arg-type]
        with engine.begin() as conn:
            after: dict[str, AlertState] = {}
            for evaluation in evaluations:
                plan = plans.get(evaluation.dedup_key)
                if plan is None:
                    if evaluation.dedup_key in states:
                        after[evaluation.dedup_key] = states[evaluation.dedup_key]
                    continue
                replayed = replay(plan.checkpoint, plan.evaluations, check=policy_for(monitor, evaluation))
                _write_ticks(conn, monitor, plan, replayed)
                if replayed.state is not None:
                    after[evaluation.dedup_key] = replayed.state
                events.extend(event for _, event in replayed.events if outbox_id(event, "log") not in queued)
            joined, events = corroborate(after, events, {e.dedup_key: e for e in evaluations}, kind=rule_kind(monitor))
            after |= joined
            for evaluation in evaluations:
                state, before = after.get(evaluation.dedup_key), states.get(evaluation.dedup_key)
                if state is not None and state != before:
                    _save_state(conn, before is not None, state, evaluation)
            for event in events:
                _insert_outbox(conn, monitor, event, links, covered_by=covering_event(event, events))
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
