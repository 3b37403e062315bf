"""Deliver the alert outbox to Slack (incoming webhook), PagerDuty (Events API v2), email (the SMTP
provider) and a generic signed webhook (the HTTP provider).

Connections are Airflow connections, so they can come from the metadata DB, a secrets backend or
``AIRFLOW_CONN_*`` variables:

* Slack: ``slackwebhook`` connection used through ``SlackWebhookHook``; a password that is a full
  URL is the webhook URL as is, otherwise host + token (the provider's rules).
* PagerDuty: routing key in the password (or extra ``routing_key``); base URL from the host when
  set (``https://events.pagerduty.com`` otherwise); extra ``ca_bundle`` names a CA file that this
  one connection trusts (a private relay). Verification is never switched off, and nothing else in
  the process trusts that CA.
* Email: ``smtp`` connection used through ``SmtpHook`` (host, port, login/password, extra
  ``from_email``, ``disable_tls``/``disable_ssl``); recipients come from the route.
* Webhook: ``http`` connection used through ``HttpHook`` (host is the URL, extra ``endpoint``); the
  JSON body is signed with HMAC-SHA256 keyed by the connection's password, sent as
  ``X-Modelwatch-Signature: sha256=<hex>`` so the receiver can check it came from us unchanged.

Delivery is at-least-once towards the outbox and exactly-once as seen by the receiver as long as
the receiver answers: a row is marked sent only after a 2xx, retryable failures (5xx, 408, 429,
timeouts, refused connections) are retried with bounded exponential backoff inside the run
(``Retry-After`` honoured) and otherwise stay pending for the next run. Later events of the same
alert and destination wait behind an undelivered earlier one, so a resolve never overtakes its trigger.
Each row is claimed (leased, :func:`modelwatch.warehouse.alert_store.claim`) before it is sent, so
overlapping deliveries never send it twice. What can still repeat: a receiver that takes a message and
answers after the client timeout, or a worker killed between the receiver's 2xx and ``mark_sent``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.error import URLError

import pagerduty
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from sqlalchemy.engine import Engine

from modelwatch.core.config import MonitorConfig
from modelwatch.core.windows import as_utc
from modelwatch.warehouse.alert_store import OutboxRow, claim, mark_attempt_failed, mark_sent, mark_skipped, pending

log = logging.getLogger(__name__)

DEFAULT_PAGERDUTY_URL = "https://events.pagerduty.com"
DEFAULT_TIMEOUT = 10
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

# slack_sdk logs the full webhook URL (which holds the token) at DEBUG: give it a logger that never does.
_slack_sdk_log = logging.getLogger("modelwatch.integrations.notify.slack_sdk")
_slack_sdk_log.setLevel(logging.INFO)


class DeliveryError(Exception):
    """A send that the receiver did not accept."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None, maybe_delivered: bool = False
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.maybe_delivered = maybe_delivered
        """The request was sent and its answer timed out: the receiver may have taken it. Not retried
        inside the run, so a slow receiver without dedup (Slack) shows it at most twice, not once per try."""


class MissingConnection(Exception):
    """The route's Airflow connection does not exist or has no secret."""


Sender = Callable[[OutboxRow], None]


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


def _retry_after(headers: Mapping[str, Any]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            raw = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(float(raw), 0.0)
            except (TypeError, ValueError):
                return None  # an HTTP-date: fall back to our own backoff
    return None


def check_status(status: int, headers: Mapping[str, Any], *, what: str) -> None:
    """Raise :class:`DeliveryError` unless ``status`` is a 2xx; 5xx, 408 and 429 are retryable."""
    if 200 <= status < 300:
        return
    retryable = status >= 500 or status in (408, 429)
    retry_after = _retry_after(headers) if status in (429, 503) else None
    raise DeliveryError(f"{what} answered HTTP {status}", retryable=retryable, retry_after=retry_after)


def _redact(message: str, secrets: tuple[str | None, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message


def send_slack(row: OutboxRow, *, timeout: int | None = None) -> None:
    """Post one outbox row's Block Kit body to its Slack incoming-webhook connection.

    ``timeout`` None uses the connection's extra ``timeout`` (slack_sdk's default otherwise).
    """
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    # No slack_sdk retry handlers: retries and backoff belong to deliver_pending, which records them.
    hook = SlackWebhookHook(
        slack_webhook_conn_id=row.conn_id or "", timeout=timeout, retry_handlers=[], logger=_slack_sdk_log
    )
    try:
        client = hook.client
    except AirflowNotFoundException as exc:
        raise MissingConnection(f"no usable connection {row.conn_id!r}") from exc
    try:
        # The client (not hook.send_dict) so the status and Retry-After of a refusal stay readable.
        response = client.send_dict(row.payload)
    except TimeoutError as exc:
        # Raised bare while reading the answer (a connect timeout comes wrapped in a URLError).
        message = _redact(f"Slack did not answer in time: {exc}", (client.url,))
        raise DeliveryError(message, retryable=True, maybe_delivered=True) from exc
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(_redact(f"Slack unreachable: {reason}", (client.url,)), retryable=True) from exc
    check_status(response.status_code, response.headers or {}, what="Slack")


class _SingleAttemptEventsClient(pagerduty.EventsApiV2Client):
    """The provider's client library, minus its own sleeping retry loop (deliver_pending owns retries)."""

    max_network_attempts = 0

    def postprocess(self, response: Any) -> None:
        super().postprocess(response)
        check_status(response.status_code, response.headers, what="PagerDuty")


def _pagerduty_base_url(conn: Any) -> str:
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_PAGERDUTY_URL
    if "://" not in host:
        host = f"{conn.schema or 'https'}://{host}" + (f":{conn.port}" if conn.port else "")
    return host.rstrip("/")


def pagerduty_client(conn_id: str, *, timeout: float = DEFAULT_TIMEOUT) -> pagerduty.EventsApiV2Client:
    """An Events API v2 client configured from an Airflow connection (see the module docstring)."""
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as exc:
        raise MissingConnection(f"no connection {conn_id!r}") from exc
    extra = conn.extra_dejson
    routing_key = conn.password or extra.get("routing_key")
    if not routing_key:
        raise MissingConnection(f"connection {conn_id!r} has no routing key")
    kwargs: dict[str, Any] = {}
    if extra.get("ca_bundle"):
        # Adds trust in one private CA for this client only; hostname and chain checks stay on.
        kwargs["verify"] = ssl.create_default_context(cafile=extra["ca_bundle"])
    client = _SingleAttemptEventsClient(routing_key, base_url=_pagerduty_base_url(conn), **kwargs)
    client.timeout = float(extra.get("timeout", timeout))
    return client


def send_pagerduty(row: OutboxRow, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Send one outbox row (trigger or resolve, same dedup_key) to PagerDuty Events API v2."""
    try:
        client = pagerduty_client(row.conn_id or "", timeout=timeout)
    except pagerduty.UrlError as exc:
        raise DeliveryError(f"PagerDuty connection {row.conn_id!r}: {exc}", retryable=False) from exc
    secret = client.auth_method.secret
    try:
        client.send_event(**row.payload)
    except DeliveryError:
        raise
    except pagerduty.HttpError as exc:
        check_status(exc.response.status_code, exc.response.headers, what="PagerDuty")
        raise DeliveryError(_redact(f"PagerDuty: {exc}", (secret,)), retryable=False) from exc
    except pagerduty.Error as exc:
        cause = exc.__cause__ or exc
        message = _redact(f"PagerDuty unreachable: {type(cause).__name__}: {cause}", (secret,))
        raise DeliveryError(message, retryable=True) from exc
    finally:
        client.close()


def send_email(row: OutboxRow) -> None:
    """Send one outbox row as an email through the Airflow SMTP provider's ``SmtpHook``.

    A 4xx SMTP reply, a refused or dropped connection and a timeout are retryable; a 5xx (e.g. every
    recipient refused) is not. The sender is the connection's extra ``from_email``.
    """
    import smtplib

    from airflow.providers.smtp.hooks.smtp import SmtpHook
    from airflow.sdk.exceptions import AirflowException

    message = row.payload
    hook = SmtpHook(smtp_conn_id=row.conn_id or "")
    try:
        with hook as smtp:
            smtp.send_email_smtp(
                to=message["to"],
                subject=message["subject"],
                html_content=message["html"],
                from_email=smtp.from_email or "modelwatch@localhost",
                custom_headers={"X-Modelwatch-Outbox-Id": row.id},
            )
    except AirflowNotFoundException as exc:
        raise MissingConnection(f"no connection {row.conn_id!r}") from exc
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP answered {exc.smtp_code}", retryable=exc.smtp_code < 500) from exc
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError("SMTP refused every recipient", retryable=False) from exc
    except (smtplib.SMTPException, OSError, AirflowException) as exc:
        raise DeliveryError(f"SMTP unreachable: {type(exc).__name__}: {exc}", retryable=True) from exc


SIGNATURE_HEADER = "X-Modelwatch-Signature"


def webhook_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the exact body bytes>``, the value of :data:`SIGNATURE_HEADER`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(row: OutboxRow, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """POST one outbox row's JSON body to an Airflow ``http`` connection, signed with its password."""
    import requests
    from airflow.providers.http.hooks.http import HttpHook

    try:
        conn = BaseHook.get_connection(row.conn_id or "")
    except AirflowNotFoundException as exc:
        raise MissingConnection(f"no connection {row.conn_id!r}") from exc
    secret = conn.password or ""
    if not secret:
        raise MissingConnection(f"connection {row.conn_id!r} has no HMAC secret (its password)")
    body = json.dumps(row.payload, sort_keys=True, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: webhook_signature(secret, body),
        "X-Modelwatch-Outbox-Id": row.id,
    }
    hook = HttpHook(method="POST", http_conn_id=row.conn_id or "")
    try:
        response = hook.run(
            endpoint=conn.extra_dejson.get("endpoint"),
            data=body,
            headers=headers,
            extra_options={"check_response": False, "timeout": float(conn.extra_dejson.get("timeout", timeout))},
        )
    except requests.ReadTimeout as exc:
        # Sent, and the answer is late: the receiver may have it, so no in-run retry (as for Slack).
        raise DeliveryError("webhook did not answer in time", retryable=True, maybe_delivered=True) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise DeliveryError(f"webhook unreachable: {type(exc).__name__}", retryable=True) from exc
    check_status(response.status_code, response.headers or {}, what="webhook")


DEFAULT_SENDERS: dict[str, Sender] = {
    "slack": send_slack,
    "pagerduty": send_pagerduty,
    "email": send_email,
    "webhook": send_webhook,
}


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
