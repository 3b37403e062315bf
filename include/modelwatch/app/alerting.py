"""Alerting one run: the alert state machine, routing and payloads over the alert store (orchestration).

:func:`record_run` folds a run's evaluations onto the stored alert states (:mod:`modelwatch.core.alert_history`),
joins label-free and realised alerts (:mod:`modelwatch.core.corroboration`), routes each event
(:func:`destinations`) and renders its payloads (:mod:`modelwatch.render.payloads`); the alert store
(:mod:`modelwatch.warehouse.alert_store`) only reads and writes the rows, inside the monitor's alert lock
and one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from modelwatch.core.alert_history import Replayed, Tick, is_late, replay, with_root_cause
from modelwatch.core.alerts import (
    CONFIRMED,
    NOT_CONFIRMED,
    AlertEvent,
    AlertState,
    RuleEvaluation,
    policy_for,
)
from modelwatch.core.config import MonitorConfig, Severity
from modelwatch.core.corroboration import corroborate, rule_kind
from modelwatch.core.result import RootCause
from modelwatch.core.windows import to_naive_utc
from modelwatch.render.payloads import render
from modelwatch.warehouse import alert_store as store
from modelwatch.warehouse.alert_store import PENDING, SENT, SKIPPED, outbox_id

if TYPE_CHECKING:
    from modelwatch.warehouse.alert_store import Connection, Engine  # the store's handles, not SQL

log = logging.getLogger(__name__)


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
        and other.severity.rank > event.severity.rank
    ]
    return max(covering, key=lambda other: other.severity.rank, default=None)


def destinations(monitor: MonitorConfig, event: AlertEvent) -> list[tuple[str, str | None]]:
    """(destination, conn_id) pairs an event is routed to: log always, Slack always, PagerDuty if critical,
    email and webhook from their ``min_severity``."""
    routed: list[tuple[str, str | None]] = [("log", None)]
    if monitor.routes.slack is not None:
        routed.append(("slack", monitor.routes.slack.conn_id))
    # What the labels said of an early alert is news for its thread, not a page.
    paged = event.kind not in (CONFIRMED, NOT_CONFIRMED)
    if monitor.routes.pagerduty is not None and event.severity is Severity.CRITICAL and paged:
        routed.append(("pagerduty", monitor.routes.pagerduty.conn_id))
    for name in ("email", "webhook"):
        route = getattr(monitor.routes, name)
        if route is not None and event.severity.rank >= route.min_severity.rank:
            routed.append((name, route.conn_id))
    return routed


@dataclass(frozen=True)
class _Plan:
    """What one evaluation does to its alert: fold ``evaluations`` (this tick, then the stored later ones
    when it is late) onto ``checkpoint``; ``stored`` are the as_of of the ticks that already have a row."""

    checkpoint: AlertState | None
    evaluations: tuple[RuleEvaluation, ...]
    stored: frozenset[datetime]


def _plan(conn: Connection, state: AlertState | None, evaluation: RuleEvaluation) -> _Plan | None:
    """None when the tick changes nothing: recorded already (a retry or a reprocessing backfill), or late
    for an alert whose later ticks predate the ticks table (then it is ignored, as before)."""
    if store.tick_recorded(conn, evaluation.dedup_key, evaluation.as_of):
        return None
    if not is_late(state, evaluation):
        return _Plan(state, (evaluation,), frozenset())
    later = store.stored_ticks(conn, evaluation.dedup_key, evaluation.as_of)
    if not later or to_naive_utc(later[-1][1].evaluation.as_of) != to_naive_utc(state.last_as_of):  # type: ignore[union-attr]
        return None
    return _Plan(
        later[0][2], (evaluation, *(tick.evaluation for _, tick, _ in later)), frozenset(a for a, _, _ in later)
    )


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


def _insert_outbox(
    conn: Connection, monitor: MonitorConfig, event: AlertEvent, links: Links, covered_by: AlertEvent | None = None
) -> None:
    """Queue ``event`` on its routes; a ``covered_by`` event's message says it already (people's routes
    skip this one; the log row stays)."""
    now = datetime.now(UTC)
    continued = event.reopen > 0 and store.continue_page(conn, event)
    links = dict(links(event) if callable(links) else links or {})
    if monitor.runbook_url:
        links["Runbook"] = monitor.runbook_url
    for destination, conn_id in destinations(monitor, event):
        if continued and destination == "pagerduty":
            continue
        if store.outbox_row_exists(conn, outbox_id(event, destination)):
            continue
        to = monitor.routes.email.to if destination == "email" and monitor.routes.email else ()
        payload = render(event, destination, links=links, to=to, owner=monitor.owner)
        if destination == "log":
            log.info("modelwatch alert %s: %s", event.kind, payload["summary"])
        store.insert_outbox(
            conn,
            event,
            destination,
            monitor=monitor.name,
            conn_id=conn_id,
            payload=payload,
            status=SENT if destination == "log" else SKIPPED if covered_by is not None else PENDING,
            # Due from the run's own tick, so a run's logical clock (now=as_of) sees it at once; a held
            # PagerDuty resolve only after the reopen time.
            next_attempt_at=(
                event.hold_pagerduty_until
                if destination == "pagerduty" and event.hold_pagerduty_until is not None
                else event.evaluation.as_of
            ),
            last_error=None if covered_by is None or destination == "log" else f"covered by {covered_by.dedup_key}",
            queued_at=now,
        )


def _dry_run(
    engine: Engine, monitor: MonitorConfig, evaluations: Sequence[RuleEvaluation]
) -> tuple[dict[str, AlertState], dict[str, _Plan | None], dict[str, Replayed], set[str]]:
    """Stored states, each evaluation's plan, the dry run of each plan's fold and the events queued already."""
    with engine.connect() as conn:
        states = store.load_states(conn, [e.dedup_key for e in evaluations])
        plans = {e.dedup_key: _plan(conn, states.get(e.dedup_key), e) for e in evaluations}
        dry = {
            e.dedup_key: replay(plan.checkpoint, plan.evaluations, check=policy_for(monitor, e))
            for e in evaluations
            if (plan := plans[e.dedup_key]) is not None
        }
        queued = store.queued_ids(conn, [event for replayed in dry.values() for _, event in replayed.events])
    return states, plans, dry, queued


def _commit(
    conn: Connection,
    monitor: MonitorConfig,
    evaluations: Sequence[RuleEvaluation],
    states: Mapping[str, AlertState],
    plans: Mapping[str, _Plan | None],
    queued: set[str],
    links: Links,
) -> list[AlertEvent]:
    """Fold, corroborate, save the changed states and queue the new events, in the caller's transaction."""
    events: list[AlertEvent] = []
    after: dict[str, AlertState] = {}
    for evaluation in evaluations:
        plan = plans.get(evaluation.dedup_key)
        if plan is None:
            if evaluation.dedup_key in states:
                after[evaluation.dedup_key] = states[evaluation.dedup_key]
            continue
        replayed = replay(plan.checkpoint, plan.evaluations, check=policy_for(monitor, evaluation))
        store.write_ticks(conn, monitor.name, plan.checkpoint, replayed.ticks, plan.stored)
        if replayed.state is not None:
            after[evaluation.dedup_key] = replayed.state
        events.extend(event for _, event in replayed.events if outbox_id(event, "log") not in queued)
    joined, events = corroborate(after, events, {e.dedup_key: e for e in evaluations}, kind=rule_kind(monitor))
    after |= joined
    for evaluation in evaluations:
        state, before = after.get(evaluation.dedup_key), states.get(evaluation.dedup_key)
        if state is not None and state != before:
            store.save_state(conn, before is not None, state, evaluation)
    for event in events:
        _insert_outbox(conn, monitor, event, links, covered_by=covering_event(event, events))
    return events


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
    # Read-fold-write under the monitor's alert lock: two overlapping runs would otherwise both read the
    # same state. The dry run that picks the events to explain is inside the lock too (it runs before the
    # write transaction: a diagnosis queries the warehouse, and an embedded database allows no query
    # inside another's transaction).
    with store.alert_lock(engine, monitor.name):
        states, plans, dry, queued = _dry_run(engine, monitor, evaluations)
        if explain is not None:
            for key, replayed in dry.items():
                plans[key] = _explain_plan(plans[key], replayed, queued, explain)  # type: ignore[arg-type]
        with engine.begin() as conn:
            return _commit(conn, monitor, evaluations, states, plans, queued, links)
