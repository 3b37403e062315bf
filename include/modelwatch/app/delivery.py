"""The outbox delivery loop: send every due row of a monitor, in order, exactly once as the receiver sees it.

Delivery is at-least-once towards the outbox and exactly-once as seen by the receiver as long as
the receiver answers: a row is marked sent only after a 2xx, retryable failures (5xx, 408, 429,
timeouts, refused connections) are retried with bounded exponential backoff inside the run
(``Retry-After`` honoured) and otherwise stay pending for the next run. Later events of the same
alert and destination wait behind an undelivered earlier one, so a resolve never overtakes its trigger.
Each row is claimed (leased, :func:`modelwatch.warehouse.alert_store.claim`) before it is sent, so
overlapping deliveries never send it twice. What can still repeat: a receiver that takes a message and
answers after the client timeout, or a worker killed between the receiver's 2xx and ``mark_sent``.
The senders (Slack, PagerDuty, email, webhook through the Airflow providers) are
:mod:`modelwatch.integrations.notify`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelwatch.core.config import MonitorConfig
from modelwatch.core.outbox import OutboxRow
from modelwatch.core.windows import as_utc
from modelwatch.integrations.notify import DEFAULT_SENDERS, DeliveryError, MissingConnection, Sender
from modelwatch.warehouse.alert_store import claim, mark_attempt_failed, mark_sent, mark_skipped, pending
from modelwatch.warehouse.engine import Engine

log = logging.getLogger(__name__)

MAX_IN_RUN_DELAY = 30.0
"""Longest single wait inside a run; a longer Retry-After defers the row to the next run."""
MAX_NEXT_RUN_DELAY = timedelta(minutes=15)
PERMANENT_FAILURE_DELAY = timedelta(hours=1)
"""A 4xx that is not 408/429 will not pass by retrying at once; try again later, do not drop it."""
LONGEST_DEFERRAL = PERMANENT_FAILURE_DELAY
"""No row is ever deferred longer (a longer Retry-After is cut to it). A row due later than this was queued
by a run whose clock was wrong (e.g. a future window): it is due now, so it cannot block later messages."""
CLAIM_LEASE = timedelta(minutes=10)
"""A claimed row is hidden from overlapping deliveries this long: more than one row's in-run attempts
(5 x (10 s timeout + at most 30 s wait)). After a kill mid-send it is retried once the lease is over."""


@dataclass(frozen=True)
class DeliveryReport:
    sent: int
    """Rows accepted by their receiver in this run."""
    retried: int
    """Extra attempts made inside this run after a retryable failure."""
    pending: int
    """Rows of the monitor still pending after this run."""
    skipped: int = 0
    """Rows skipped because their route has no connection."""


def _attempt(
    row: OutboxRow, sender: Sender, *, max_attempts: int, base_delay: float, sleep: Callable[[float], None]
) -> tuple[DeliveryError | None, int]:
    """Send with in-run retries; returns (last error or None when accepted, retries made)."""
    for attempt in range(max_attempts):
        try:
            sender(row)
            return None, attempt
        except DeliveryError as exc:
            error = exc
        last = attempt == max_attempts - 1
        delay = error.retry_after if error.retry_after is not None else base_delay * 2**attempt
        if not error.retryable or error.maybe_delivered or last or delay > MAX_IN_RUN_DELAY:
            return error, attempt
        log.warning("%s for %s; retry %d in %.1fs", error, row.id, attempt + 1, delay)
        sleep(delay)
    raise AssertionError("unreachable: the loop returns on its last attempt")


def _next_attempt(row: OutboxRow, error: DeliveryError, now: datetime, base_delay: float) -> datetime:
    if not error.retryable:
        return now + PERMANENT_FAILURE_DELAY
    if error.retry_after is not None:
        return now + min(timedelta(seconds=error.retry_after), LONGEST_DEFERRAL)
    return now + min(timedelta(seconds=base_delay * 2 ** min(row.attempts, 20)), MAX_NEXT_RUN_DELAY)


def deliver_pending(
    engine: Engine,
    monitor: str | MonitorConfig,
    *,
    now: datetime | None = None,
    senders: Mapping[str, Sender] | None = None,
    max_attempts: int = 5,
    base_delay: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryReport:
    """Send every due pending outbox row of ``monitor``.

    Args:
        engine: The warehouse holding the outbox.
        monitor: Monitor name or config.
        now: The run's clock (default: the current time); rows due after it wait.
        senders: Destination -> sender; defaults to Slack and PagerDuty through Airflow connections.
        max_attempts: Attempts per row inside this run.
        base_delay: First backoff in seconds (doubles on each retry).
        sleep: Injected for tests.

    Returns:
        Counts of sent, in-run retries, still pending and skipped rows.
    """
    name = monitor if isinstance(monitor, str) else monitor.name
    now = as_utc(now or datetime.now(UTC))
    senders = DEFAULT_SENDERS if senders is None else senders
    sent = retried = skipped = 0
    blocked: set[tuple[str, str]] = set()
    for row in pending(engine, name):
        key = (row.dedup_key, row.destination)
        due = row.next_attempt_at <= now or row.next_attempt_at > now + LONGEST_DEFERRAL
        if key in blocked or not due or row.destination not in senders:
            blocked.add(key)
            continue
        if not claim(engine, row, until=now + CLAIM_LEASE):
            # An overlapping delivery holds (or just sent) it; later rows of this alert wait behind it.
            blocked.add(key)
            continue
        try:
            error, retries = _attempt(
                row, senders[row.destination], max_attempts=max_attempts, base_delay=base_delay, sleep=sleep
            )
        except MissingConnection as exc:
            log.warning("alert %s not sent to %s: %s", row.id, row.destination, exc)
            mark_skipped(engine, row.id, reason=f"skipped: {exc}", at=now)
            skipped += 1
            continue
        retried += retries
        if error is None:
            mark_sent(engine, row.id, at=datetime.now(UTC))
            sent += 1
            continue
        blocked.add(key)
        log.error("alert %s not delivered to %s: %s (stays pending)", row.id, row.destination, error)
        retry_at = _next_attempt(row, error, now, base_delay)
        mark_attempt_failed(engine, row.id, error=str(error), next_attempt_at=retry_at)
    return DeliveryReport(sent=sent, retried=retried, pending=len(pending(engine, name)), skipped=skipped)
