"""Payloads: Block Kit limits, PagerDuty Events v2 shape (checked against the provider), no secrets."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from airflow.providers.pagerduty.hooks.pagerduty_events import prepare_event_data

from modelwatch.core.alerts import CONFIRMED, NOT_CONFIRMED, RESOLVE, TRIGGER, AlertEvent
from modelwatch.core.result import RootCause
from modelwatch.render.payloads import (
    ELLIPSIS,
    PAGERDUTY_MAX_SUMMARY,
    SLACK_MAX_BLOCKS,
    SLACK_MAX_TEXT,
    log_record,
    pagerduty_event,
    render,
    slack_message,
    sparkline,
    truncate,
)
from tests.include.modelwatch.core.test_alerts import T0, evaluation

LINKS = {"MLflow run": "http://mlflow.local/#/runs/abc", "Airflow": "http://airflow.local/dags/x"}


def event(kind: str = TRIGGER, **changes: object) -> AlertEvent:
    cause = RootCause(
        "data_drift",
        "tenure_months drifted (PSI 0.41)",
        ("tenure_months", "age"),
        "region=EU",
        ("PSI 0.41 on tenure_months",),
    )
    fields: dict[str, object] = {
        "trend": (0.9, 0.88, 0.7),
        "root_cause": cause,
        "labelled": 812,
        "label_coverage": 0.81,
        "window_status": "provisional",
        "model_versions": ("3", "4"),
    }
    e = replace(evaluation("breach", T0), **{**fields, **changes})
    return AlertEvent(kind, e.dedup_key, 2, e.severity, e)


def all_texts(blocks: list[dict]) -> list[str]:
    texts = []
    for block in blocks:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(f["text"] for f in block.get("fields", []))
        texts.extend(el["text"] for el in block.get("elements", []))
    return texts


def test_truncate_adds_ellipsis_only_when_cut() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc" + ELLIPSIS and len(truncate("x" * 5000, 3000)) == 3000


def test_sparkline_spans_low_to_high() -> None:
    assert sparkline((1.0, 2.0, 3.0)) == "▁▅█"
    assert sparkline((2.0, 2.0)) == "▁▁" and sparkline(()) == ""


def test_slack_message_has_facts_root_cause_links_and_key() -> None:
    body = slack_message(event(), links=LINKS)
    text = "\n".join(all_texts(body["blocks"]))
    assert body["blocks"][0]["type"] == "header"
    assert "roc_auc" in body["text"] and "0.7" in body["text"] and "&gt;= 0.8" in body["text"]  # mrkdwn-escaped
    assert "data_drift" in text and "`tenure_months`" in text and "region=EU" in text
    assert "<http://mlflow.local/#/runs/abc|MLflow run>" in text
    assert "incident #2" in text and "modelwatch" not in body["blocks"][0]["text"]["text"]
    assert "3, 4" in text and "81%" in text


def test_slack_resolve_message_says_resolved_without_root_cause() -> None:
    body = slack_message(event(RESOLVE))
    assert body["text"].startswith("[RESOLVED]")
    assert ":white_check_mark:" in body["blocks"][0]["text"]["text"]
    assert "Likely cause" not in "\n".join(all_texts(body["blocks"]))


def test_resolve_messages_give_the_incident_span() -> None:
    from datetime import timedelta

    resolved = replace(
        event(RESOLVE),
        opened_at=T0 - timedelta(hours=6),
        first_breach_window=T0 - timedelta(hours=7),
        last_breach_window=T0 - timedelta(hours=3),
        breach_count=4,
    )
    span = "Incident #2 open 2026-11-09 18:00 to 2026-11-10 00:00 (6 h); windows 2026-11-09 17:00 to 2026-11-09 21:00"
    assert span in "\n".join(all_texts(slack_message(resolved)["blocks"]))
    assert pagerduty_event(resolved)["payload"]["custom_details"]["incident_span"].startswith(span)
    assert "(4 breaches)" in pagerduty_event(resolved)["payload"]["custom_details"]["incident_span"]
    assert pagerduty_event(event())["payload"]["custom_details"]["incident_span"] is None  # a trigger has no span yet
    naive = replace(resolved, opened_at=resolved.opened_at.replace(tzinfo=None))  # as read back from a warehouse
    assert span in pagerduty_event(naive)["payload"]["custom_details"]["incident_span"]


def test_slack_limits_hold_for_huge_content() -> None:
    huge = event(description="d" * 10_000, root_cause=RootCause("unknown", "s" * 9000, evidence=("e" * 50,) * 200))
    many_links = {f"link {i}": f"http://x/{i}" * 50 for i in range(300)}
    body = slack_message(huge, links=many_links)
    assert len(body["blocks"]) <= SLACK_MAX_BLOCKS
    texts = all_texts(body["blocks"])
    assert all(len(t) <= SLACK_MAX_TEXT for t in texts)
    assert any(t.endswith(ELLIPSIS) for t in texts)
    assert len(body["blocks"][0]["text"]["text"]) <= 150
    assert body["blocks"][-1]["type"] == "context"  # the dedup key survives truncation
    links_text = next(t for t in texts if t.startswith("<http://x/0"))
    assert links_text.endswith(">") and links_text.count("<") == links_text.count(">")  # no half links


def test_pagerduty_event_matches_the_provider_shape() -> None:
    data = pagerduty_event(event(), links=LINKS)
    p = data["payload"]
    expected = prepare_event_data(
        summary=p["summary"],
        severity=p["severity"],
        source=p["source"],
        custom_details=p["custom_details"],
        component=p["component"],
        group=p["group"],
        class_type=p["class"],
        action="trigger",
        dedup_key=data["dedup_key"],
        links=data["links"],
    )
    assert data == expected
    assert p["severity"] == "critical" and p["custom_details"]["incident"] == 2
    assert p["custom_details"]["top_features"] == ["tenure_months", "age"]


def test_pagerduty_resolve_uses_the_same_dedup_key() -> None:
    trigger, resolve = pagerduty_event(event()), pagerduty_event(event(RESOLVE))
    assert resolve["action"] == "resolve" and trigger["action"] == "trigger"
    assert resolve["dedup_key"] == trigger["dedup_key"] == "k"


def test_pagerduty_summary_limit() -> None:
    data = pagerduty_event(event(metric="m" * 3000))
    assert len(data["payload"]["summary"]) == PAGERDUTY_MAX_SUMMARY
    assert data["payload"]["summary"].endswith(ELLIPSIS)


@pytest.mark.parametrize("destination", ["slack", "pagerduty", "log"])
def test_rendered_payloads_are_json_and_name_no_connection(destination: str) -> None:
    payload = render(event(), destination, links=LINKS)
    text = json.dumps(payload)
    assert json.loads(text) == payload
    assert "routing_key" not in text and "hooks.slack.com" not in text


def test_log_record_has_summary_and_links() -> None:
    record = log_record(event(), links=LINKS)
    assert record["summary"].startswith("[CRITICAL] churn") and record["links"] == LINKS


HOSTILE = RootCause(
    "data_drift",
    "support_calls shifted in region=<!channel> & <http://evil.example|click here>",
    ("support_calls", "a`b"),
    "region=<!channel>",
    ("PSI 9.3 in region=<@U123>",),
)


def test_warehouse_text_cannot_ping_or_disguise_links_in_slack() -> None:
    body = slack_message(event(root_cause=HOSTILE, model_versions=("v<!here>",)), links=LINKS)
    texts = [body["text"], *all_texts(body["blocks"])]
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<!here>" not in joined and "<@U123>" not in joined
    assert "<http://evil.example" not in joined
    assert "region=&lt;!channel&gt; &amp; &lt;http://evil.example|click here&gt;" in joined
    assert "Top segment: `region=&lt;!channel&gt;`" in joined and "`a'b`" in joined
    assert "v&lt;!here&gt;" in joined
    # Our own links stay links: every remaining '<' opens one of them.
    assert joined.count("<") == len(LINKS) and "<http://mlflow.local/#/runs/abc|MLflow run>" in joined


def test_pagerduty_one_line_fields_carry_no_markup_or_newlines() -> None:
    hostile = event(root_cause=HOSTILE, model="churn <!channel>\nsecond line", metric="roc_auc")
    payload = pagerduty_event(hostile)["payload"]
    for name in ("summary", "component"):
        assert "<" not in payload[name] and ">" not in payload[name] and "\n" not in payload[name]
    assert payload["component"] == "churn ‹!channel› second line"
    assert payload["custom_details"]["root_cause_summary"] == HOSTILE.summary  # structured data, kept as is


def test_every_destination_names_the_owner() -> None:
    slack = render(event(), "slack", links=LINKS, owner="retention-ml")
    assert slack["blocks"][-1]["elements"][0]["text"].startswith("owner retention-ml · incident #")
    assert render(event(), "pagerduty", links=LINKS, owner="retention-ml")["payload"]["custom_details"]["owner"] == (
        "retention-ml"
    )
    assert render(event(), "webhook", links=LINKS, owner="retention-ml")["owner"] == "retention-ml"
    mail = render(event(), "email", links=LINKS, to=("a@example.com",), owner="retention-ml")
    assert '<th align="left">Owner</th><td>retention-ml</td>' in mail["html"] and mail["to"] == ["a@example.com"]
    assert "owner" not in render(event(), "slack", links=LINKS)["blocks"][-1]["elements"][0]["text"]


def test_email_html_is_escaped() -> None:
    hostile = replace(event(), evaluation=replace(event().evaluation, description="<script>alert(1)</script>"))
    mail = render(hostile, "email", links={"<b>": "http://x/?a=1&b=2"})
    assert "<script>" not in mail["html"] and "&lt;script&gt;" in mail["html"]
    assert 'href="http://x/?a=1&amp;b=2"' in mail["html"]


@pytest.mark.parametrize(("kind", "verb"), [(CONFIRMED, "confirmed by labels"), (NOT_CONFIRMED, "not confirmed")])
def test_what_the_labels_said_is_an_update_in_the_incident_and_never_a_page(kind: str, verb: str) -> None:
    from modelwatch.app.alerting import destinations
    from tests.include.modelwatch.core.test_alerts import monitor_config

    update = event(kind)
    message = slack_message(update)
    assert message["text"].startswith("[UPDATE]") and verb in message["text"]
    assert verb in message["blocks"][0]["text"]["text"]
    routed = monitor_config(routes={"slack": {"conn_id": "s"}, "pagerduty": {"conn_id": "p"}})
    assert [d for d, _ in destinations(routed, update)] == ["log", "slack"]
    assert "pagerduty" in [d for d, _ in destinations(routed, event(TRIGGER))]
