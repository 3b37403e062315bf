"""Delivery end to end: outbox -> Airflow connections -> real HTTP (Slack) and HTTPS (PagerDuty) receivers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modelwatch.app.alerting import record_run
from modelwatch.app.delivery import DeliveryReport, deliver_pending
from modelwatch.core.alerts import evaluate_rules
from modelwatch.core.config import MonitorConfig
from modelwatch.integrations.notify import DeliveryError, check_status
from modelwatch.warehouse.alert_store import outbox_table
from tests.include.modelwatch.core.test_alerts import HOUR, T0, monitor_config, window

pytest.register_assert_rewrite("tests.receivers")  # before the import below: it is also this module's plugin
from tests.receivers import Receiver, Reply  # noqa: E402

pytest_plugins = ("tests.receivers",)

SLACK_TOKEN = "T000/B000/SlackSecretToken123"
ROUTING_KEY = "R0UTINGKEY-secret-456"
ROUTES = {"slack": {"conn_id": "modelwatch_slack"}, "pagerduty": {"conn_id": "modelwatch_pagerduty"}}


class Sleeps(list):
    """A fake ``sleep`` that records the delays asked for."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine("duckdb:///" + str(tmp_path / "w.duckdb"))
    yield engine
    engine.dispose()


@pytest.fixture
def monitor() -> MonitorConfig:
    return monitor_config(
        routes=ROUTES,
        operational={"traffic_stopped": False, "labels_stalled": False, "data_quality": {"enabled": False}},
    )


def set_slack(monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    conn = {"conn_type": "slackwebhook", "password": f"{receiver.url}/services/{SLACK_TOKEN}"}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_SLACK", json.dumps(conn))


def set_pagerduty(monkeypatch: pytest.MonkeyPatch, receiver: Receiver, **extra: Any) -> None:
    conn = {
        "conn_type": "pagerduty_events",
        "host": receiver.url,
        "password": ROUTING_KEY,
        "extra": {"ca_bundle": str(receiver.ca_file), **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_PAGERDUTY", json.dumps(conn))


@pytest.fixture
def receivers(
    monkeypatch: pytest.MonkeyPatch, http_receiver: Receiver, https_receiver: Receiver
) -> tuple[Receiver, Receiver]:
    set_slack(monkeypatch, http_receiver)
    set_pagerduty(monkeypatch, https_receiver)
    return http_receiver, https_receiver


def tick(engine: sa.Engine, monitor: MonitorConfig, hour: int, value: float) -> None:
    as_of = T0 + hour * HOUR
    results = [window(as_of - HOUR, value=value, as_of=as_of)]
    record_run(engine, monitor, evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[]))


def deliver(engine: sa.Engine, hour: int, **kwargs: Any) -> DeliveryReport:
    kwargs.setdefault("sleep", Sleeps())
    return deliver_pending(engine, "churn", now=T0 + hour * HOUR, **kwargs)


def outbox(engine: sa.Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["destination"] + ":" + r["kind"]: dict(r) for r in conn.execute(sa.select(outbox_table)).mappings()}


def test_lifecycle_sends_exact_requests(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    slack, pagerduty = receivers
    tick(engine, monitor, 1, 0.7)
    assert deliver(engine, 1) == DeliveryReport(sent=2, retried=0, pending=0)
    assert len(slack.requests) == 1 and len(pagerduty.requests) == 1
    assert slack.requests[0].path == f"/services/{SLACK_TOKEN}"
    assert slack.requests[0].body["blocks"][0]["type"] == "header"
    trigger = pagerduty.requests[0]
    assert trigger.path == "/v2/enqueue" and trigger.body["event_action"] == "trigger"
    assert trigger.body["routing_key"] == ROUTING_KEY and trigger.body["payload"]["severity"] == "critical"

    tick(engine, monitor, 2, 0.6)  # same breach: nothing new
    assert deliver(engine, 2) == DeliveryReport(sent=0, retried=0, pending=0)
    assert len(slack.requests) == 1 and len(pagerduty.requests) == 1

    tick(engine, monitor, 3, 0.9)
    tick(engine, monitor, 4, 0.9)  # second healthy tick resolves
    assert deliver(engine, 4).sent == 2
    assert len(slack.requests) == 2 and len(pagerduty.requests) == 2
    assert slack.requests[1].body["text"].startswith("[RESOLVED]")
    resolve = pagerduty.requests[1].body
    assert resolve["event_action"] == "resolve" and resolve["dedup_key"] == trigger.body["dedup_key"]
    assert deliver(engine, 5).sent == 0 and len(slack.requests) == 2


def test_server_error_then_success_delivers_exactly_once(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    slack, pagerduty = receivers
    slack.script(500, 200)
    pagerduty.script(Reply(502), Reply(503))
    tick(engine, monitor, 1, 0.7)
    sleeps = Sleeps()
    report = deliver(engine, 1, base_delay=0.5, sleep=sleeps)
    assert report == DeliveryReport(sent=2, retried=3, pending=0)
    assert sleeps == [0.5, 1.0, 0.5]  # pagerduty's two retries (exponential), then slack's one (row id order)
    assert len(slack.requests) == 2 and len(pagerduty.requests) == 3
    assert deliver(engine, 2).sent == 0 and len(slack.requests) == 2 and len(pagerduty.requests) == 3
    assert outbox(engine)["slack:trigger"]["status"] == "sent"


def test_rate_limit_honours_retry_after(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    slack, pagerduty = receivers
    slack.script(Reply(429, {"Retry-After": "1"}), 200)
    pagerduty.script(Reply(429, {"Retry-After": "7"}))
    tick(engine, monitor, 1, 0.7)
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        if seconds < 5:
            time.sleep(seconds)  # slack's wait is real, so it can be measured at the receiver

    report = deliver(engine, 1, sleep=sleep, base_delay=0.01)
    assert report.sent == 2 and sleeps == [7.0, 1.0]  # pagerduty's row id sorts first
    waited = slack.requests[1].at - slack.requests[0].at
    assert 1.0 <= waited < 5.0  # honours Retry-After (1 s) without waiting much longer


def test_receiver_down_for_a_whole_run_is_delivered_next_run(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    slack, pagerduty = receivers
    slack.stop()
    tick(engine, monitor, 1, 0.7)
    tick(engine, monitor, 2, 0.9)
    tick(engine, monitor, 3, 0.9)  # trigger and resolve both queued while Slack is down
    sleeps = Sleeps()
    with caplog.at_level(logging.DEBUG):
        report = deliver(engine, 3, max_attempts=3, sleep=sleeps)
    assert report == DeliveryReport(sent=2, retried=2, pending=2)  # pagerduty both; slack trigger + resolve left
    assert sleeps == [1.0, 2.0]  # only the trigger was tried: the resolve waits behind it
    row = outbox(engine)["slack:trigger"]
    assert row["status"] == "pending" and row["attempts"] == 1 and "refused" in row["last_error"].lower()
    assert SLACK_TOKEN not in caplog.text and ROUTING_KEY not in caplog.text
    assert SLACK_TOKEN not in row["last_error"]

    slack.start()
    assert deliver(engine, 3).sent == 0  # backoff: not due yet at the same instant
    report = deliver(engine, 4)
    assert report == DeliveryReport(sent=2, retried=0, pending=0)
    assert [r.body["text"][:10] for r in slack.requests] == ["[CRITICAL]", "[RESOLVED]"]
    assert len(pagerduty.requests) == 2


def test_missing_connection_is_skipped_once(
    engine: sa.Engine,
    monitor: MonitorConfig,
    http_receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    set_slack(monkeypatch, http_receiver)
    monkeypatch.delenv("AIRFLOW_CONN_MODELWATCH_PAGERDUTY", raising=False)
    tick(engine, monitor, 1, 0.7)
    with caplog.at_level(logging.WARNING):
        assert deliver(engine, 1) == DeliveryReport(sent=1, retried=0, pending=0, skipped=1)
    assert "modelwatch_pagerduty" in caplog.text
    row = outbox(engine)["pagerduty:trigger"]
    assert row["status"] == "skipped" and "no connection" in row["last_error"]
    assert deliver(engine, 2) == DeliveryReport(sent=0, retried=0, pending=0, skipped=0)


def test_pagerduty_tls_is_verified_without_the_ca(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pagerduty = receivers
    conn = {"conn_type": "pagerduty_events", "host": pagerduty.url, "password": ROUTING_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_PAGERDUTY", json.dumps(conn))
    tick(engine, monitor, 1, 0.7)
    report = deliver(engine, 1, max_attempts=1)
    assert report.pending == 1 and pagerduty.requests == []
    assert "CERTIFICATE_VERIFY_FAILED" in outbox(engine)["pagerduty:trigger"]["last_error"]


def test_pagerduty_timeout_stays_pending(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pagerduty = receivers
    set_pagerduty(monkeypatch, pagerduty, timeout=0.3)
    pagerduty.script(Reply(202, delay=1.0))
    tick(engine, monitor, 1, 0.7)
    report = deliver(engine, 1, max_attempts=1)
    assert report.pending == 1 and report.sent == 1  # slack went through
    assert "Timeout" in outbox(engine)["pagerduty:trigger"]["last_error"]


def test_client_errors_are_not_retried_in_run_but_kept(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    slack, _ = receivers
    slack.script(400)
    tick(engine, monitor, 1, 0.7)
    sleeps = Sleeps()
    report = deliver(engine, 1, sleep=sleeps)
    assert report.pending == 1 and sleeps == [] and len(slack.requests) == 1
    row = outbox(engine)["slack:trigger"]
    assert row["status"] == "pending" and row["last_error"] == "Slack answered HTTP 400"
    assert deliver(engine, 3).sent == 1  # retried an hour later


def test_check_status_classifies() -> None:
    check_status(202, {}, what="x")
    with pytest.raises(DeliveryError) as server:
        check_status(503, {"retry-after": "4"}, what="x")
    assert server.value.retryable and server.value.retry_after == 4.0
    with pytest.raises(DeliveryError) as client:
        check_status(404, {}, what="x")
    assert not client.value.retryable
    with pytest.raises(DeliveryError) as dated:
        check_status(429, {"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, what="x")
    assert dated.value.retryable and dated.value.retry_after is None


def test_custom_senders_and_unknown_destination_wait(engine: sa.Engine, monitor: MonitorConfig) -> None:
    seen: list[str] = []
    tick(engine, monitor, 1, 0.7)
    senders = {"slack": lambda row: seen.append(row.id)}
    report = deliver_pending(engine, monitor, now=T0 + timedelta(hours=1), senders=senders)
    assert report == DeliveryReport(sent=1, retried=0, pending=1)
    assert seen == ["modelwatch/churn/hourly/roc_auc/absolute:critical#1#trigger#slack"]


def test_overlapping_deliveries_send_each_message_once(
    warehouse_engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    """Two notify tasks at once (overlapping hourly runs) against a slow Slack: claimed rows are sent once."""
    import threading

    slack, pagerduty = receivers
    slack.script(Reply(200, delay=0.5))
    tick(warehouse_engine, monitor, 1, 0.7)
    reports: list[DeliveryReport] = []
    threads = [threading.Thread(target=lambda: reports.append(deliver(warehouse_engine, 1))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(slack.requests) == 1 and len(pagerduty.requests) == 1
    assert sorted(r.sent for r in reports) in ([0, 2], [1, 1])
    assert deliver(warehouse_engine, 2) == DeliveryReport(sent=0, retried=0, pending=0)
    assert {k: r["status"] for k, r in outbox(warehouse_engine).items()} == {
        "log:trigger": "sent",
        "slack:trigger": "sent",
        "pagerduty:trigger": "sent",
    }


def test_a_delivery_killed_after_its_claim_is_retried_after_the_lease(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    from modelwatch.app.delivery import CLAIM_LEASE
    from modelwatch.warehouse.alert_store import claim, pending

    slack, _ = receivers
    tick(engine, monitor, 1, 0.7)
    now = T0 + HOUR
    row = next(r for r in pending(engine, "churn") if r.destination == "slack")
    assert claim(engine, row, until=now + CLAIM_LEASE)  # ... and the task is killed before sending
    assert not claim(engine, row, until=now + CLAIM_LEASE)  # the row as read is taken
    assert deliver(engine, 1).sent == 1 and slack.requests == []  # pagerduty only: slack is leased
    later = deliver_pending(engine, "churn", now=now + CLAIM_LEASE, sleep=Sleeps())
    assert later == DeliveryReport(sent=1, retried=0, pending=0) and len(slack.requests) == 1


def test_a_slow_slack_is_not_retried_inside_the_run(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer comes after the client timeout: the message may have landed, so one try per run."""
    slack, _ = receivers
    conn = {"conn_type": "slackwebhook", "password": f"{slack.url}/services/{SLACK_TOKEN}", "extra": {"timeout": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_SLACK", json.dumps(conn))
    slack.script(Reply(200, delay=1.5))
    tick(engine, monitor, 1, 0.7)
    sleeps = Sleeps()
    report = deliver(engine, 1, sleep=sleeps)
    assert report == DeliveryReport(sent=1, retried=0, pending=1) and sleeps == []
    assert len(slack.requests) == 1  # not five
    row = outbox(engine)["slack:trigger"]
    assert "did not answer in time" in row["last_error"] and SLACK_TOKEN not in row["last_error"]
    time.sleep(0.6)  # let the slow answer finish before the retry
    assert deliver(engine, 2).sent == 1 and len(slack.requests) == 2  # the one duplicate that can remain


def test_a_message_queued_for_the_future_does_not_block_later_ones(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    """A run with a wrong clock (a window of 2999) queued a trigger due in 2999; the resolve after it and
    the trigger itself go out in the next real run, in order."""
    slack, _ = receivers
    tick(engine, monitor, 1, 0.7)
    with engine.begin() as conn:
        conn.execute(outbox_table.update().values(next_attempt_at=T0.replace(year=2999)))
    tick(engine, monitor, 2, 0.9)
    tick(engine, monitor, 3, 0.9)  # resolves
    assert deliver(engine, 3) == DeliveryReport(sent=4, retried=0, pending=0)
    assert [r.body["text"][:10] for r in slack.requests] == ["[CRITICAL]", "[RESOLVED]"]


def test_a_long_retry_after_defers_at_most_an_hour(
    engine: sa.Engine, monitor: MonitorConfig, receivers: tuple[Receiver, Receiver]
) -> None:
    slack, _ = receivers
    slack.script(Reply(429, {"Retry-After": "86400"}))
    tick(engine, monitor, 1, 0.7)
    assert deliver(engine, 1).pending == 1
    assert outbox(engine)["slack:trigger"]["next_attempt_at"] == (T0 + 2 * HOUR).replace(tzinfo=None)
    assert deliver(engine, 2).sent == 1 and len(slack.requests) == 2
