"""The email and webhook routes end to end: outbox -> Airflow connections -> a real SMTP server (aiosmtpd)
and a real HTTP receiver on 127.0.0.1, with exact counts."""

from __future__ import annotations

import email
import hashlib
import hmac
import json
import socket
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelwatch.app.alerting import record_run
from modelwatch.app.delivery import DeliveryReport, deliver_pending
from modelwatch.core.alerts import evaluate_rules
from modelwatch.core.config import MonitorConfig
from modelwatch.integrations.notify import SIGNATURE_HEADER
from modelwatch.warehouse.alert_store import outbox_rows
from tests.include.modelwatch.core.test_alerts import HOUR, T0, monitor_config, window

pytest.register_assert_rewrite("tests.receivers")
from tests.receivers import Receiver, Reply  # noqa: E402

pytest_plugins = ("tests.receivers",)

SECRET = "webhook-hmac-secret-789"
WARNING_RULE = {"type": "absolute", "min": 0.8, "severity": "warning"}
ROUTES = {
    "email": {"conn_id": "modelwatch_email", "to": ["oncall@example.com", "ml@example.com"]},
    "webhook": {"conn_id": "modelwatch_webhook", "min_severity": "critical"},
}


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    conn = {
        "conn_type": "smtp", "host": "127.0.0.1", "port": port,
        "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "modelwatch@example.com", "timeout": 5},
    }  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_EMAIL", json.dumps(conn))
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch, http_receiver: Receiver) -> Receiver:
    host, port = http_receiver.url.removeprefix("http://").split(":")
    conn = {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "password": SECRET}
    conn["extra"] = {"endpoint": "hooks/modelwatch"}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_WEBHOOK", json.dumps(conn))
    return http_receiver


@pytest.fixture
def monitor() -> MonitorConfig:
    return monitor_config(routes=ROUTES, operational={"traffic_stopped": False, "labels_stalled": False})


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    """The warehouse holding the outbox (a DuckDB file)."""
    warehouse = sa.create_engine(f"duckdb:///{tmp_path / 'outbox.duckdb'}")
    try:
        yield warehouse
    finally:
        warehouse.dispose()


def tick(engine: sa.Engine, monitor: MonitorConfig, hour: int, value: float) -> None:
    as_of = T0 + hour * HOUR
    results = [window(as_of - HOUR, value=value, as_of=as_of)]
    evaluations = evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[])
    record_run(engine, monitor, evaluations, links={"Report": "http://mlflow.example/get-artifact?path=report.html"})


def deliver(engine: sa.Engine, hour: int) -> DeliveryReport:
    return deliver_pending(engine, "churn", now=T0 + hour * HOUR, sleep=lambda _: None)


def test_email_and_webhook_deliver_each_event_exactly_once(
    engine: sa.Engine, monitor: MonitorConfig, smtp_server: Inbox, webhook: Receiver
) -> None:
    tick(engine, monitor, 1, 0.7)  # critical breach: email + webhook
    assert deliver(engine, 1) == DeliveryReport(sent=2, retried=0, pending=0)
    assert len(smtp_server.messages) == 1 and len(webhook.requests) == 1
    sender, recipients, message = smtp_server.messages[0]
    assert sender == "modelwatch@example.com"
    assert recipients == ["oncall@example.com", "ml@example.com"]
    assert message["Subject"].startswith("[modelwatch] churn: roc_auc breached (critical)")
    html = next(part for part in message.walk() if part.get_content_type() == "text/html")
    assert 'href="http://mlflow.example/get-artifact?path=report.html"' in html.get_payload(decode=True).decode()

    request = webhook.requests[0]
    assert request.path == "/hooks/modelwatch"
    expected = "sha256=" + hmac.new(SECRET.encode(), request.raw, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] == expected
    assert request.body["event"] == "trigger" and request.body["metric"] == "roc_auc"
    assert request.body["links"] == {"Report": "http://mlflow.example/get-artifact?path=report.html"}
    forged = hmac.new(b"another secret", request.raw, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER] != "sha256=" + forged

    tick(engine, monitor, 2, 0.6)  # the same breach: nothing new anywhere
    assert deliver(engine, 2).sent == 0
    assert len(smtp_server.messages) == 1 and len(webhook.requests) == 1


def test_webhook_retries_a_server_error_and_email_waits_for_a_server(
    engine: sa.Engine, monitor: MonitorConfig, webhook: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()  # nothing listens: connection refused, the email stays pending
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port, "extra": {"disable_tls": True, "disable_ssl": True}}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_EMAIL", json.dumps(conn))
    webhook.script(503, 200)
    tick(engine, monitor, 1, 0.7)
    report = deliver(engine, 1)
    assert (report.sent, report.pending) == (1, 1)
    assert len(webhook.requests) == 2  # the 503, then the accepted retry
    assert webhook.requests[0].raw == webhook.requests[1].raw
    rows = {row.destination: row for row in outbox_rows(engine, "churn")}
    assert rows["email"].status == "pending" and "SMTP unreachable" in (rows["email"].last_error or "")
    assert rows["webhook"].status == "sent"


def test_warning_events_skip_a_critical_only_webhook(engine: sa.Engine, webhook: Receiver, smtp_server: Inbox) -> None:
    monitor = monitor_config(
        routes=ROUTES,
        operational={"traffic_stopped": False, "labels_stalled": False},
        checks=[{"metric": "roc_auc", "min_samples": 10, "rules": [WARNING_RULE]}],
    )
    tick(engine, monitor, 1, 0.7)
    assert deliver(engine, 1).sent == 1
    assert len(smtp_server.messages) == 1 and webhook.requests == []


def test_a_webhook_answering_late_is_not_retried_in_the_run(
    engine: sa.Engine, monitor: MonitorConfig, webhook: Receiver, smtp_server: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request went out and its answer timed out: the receiver may have it, so once per run, not per try."""
    host, port = webhook.url.removeprefix("http://").split(":")
    conn = {"conn_type": "http", "host": host, "port": int(port), "schema": "http", "password": SECRET}
    conn["extra"] = {"endpoint": "hooks/modelwatch", "timeout": 0.3}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_WEBHOOK", json.dumps(conn))
    webhook.script(Reply(200, delay=1.0), 200)
    tick(engine, monitor, 1, 0.7)
    assert deliver(engine, 1) == DeliveryReport(sent=1, retried=0, pending=1)  # the email went
    assert len(webhook.requests) == 1
    assert {row.destination: row.last_error for row in outbox_rows(engine, "churn")}["webhook"] == (
        "webhook did not answer in time"
    )
    assert deliver(engine, 2).sent == 1 and len(webhook.requests) == 2  # the next run sends it again
