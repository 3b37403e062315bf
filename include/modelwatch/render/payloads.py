"""Message payloads for alert events (pure): Slack Block Kit, PagerDuty Events v2 and a log record.

Payloads are rendered once, when the event is recorded, and stored in the outbox; delivery only
sends them. They carry no secrets: routing keys and webhook URLs are added by ``notify`` at send time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelwatch.core.alerts import CONFIRMED, ESCALATE, NOT_CONFIRMED, RESOLVE, TRIGGER, AlertEvent, RuleEvaluation
from modelwatch.core.windows import to_naive_utc

SLACK_MAX_BLOCKS = 50
SLACK_MAX_TEXT = 3000
SLACK_MAX_HEADER = 150
SLACK_MAX_FIELDS = 10
SLACK_MAX_FIELD_TEXT = 2000
PAGERDUTY_MAX_SUMMARY = 1024
ELLIPSIS = "…"
_SPARK = "▁▂▃▄▅▆▇█"
_EMOJI = {
    TRIGGER: ":rotating_light:",
    ESCALATE: ":fire:",
    RESOLVE: ":white_check_mark:",
    CONFIRMED: ":label:",
    NOT_CONFIRMED: ":grey_question:",
}
_VERB = {
    TRIGGER: "breached",
    ESCALATE: "escalated",
    RESOLVE: "resolved",
    CONFIRMED: "confirmed by labels",
    NOT_CONFIRMED: "not confirmed by labels",
}
_HEAD = {RESOLVE: "RESOLVED", CONFIRMED: "UPDATE", NOT_CONFIRMED: "UPDATE"}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def mrkdwn(text: object) -> str:
    """``text`` safe inside Slack mrkdwn: ``& < >`` escaped as Slack asks, so warehouse values such as a
    segment value ``<!channel>`` or ``<http://x|click>`` show as written instead of pinging or linking."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _code(text: object) -> str:
    """An inline code span that the value cannot close (a backtick in it would end the span)."""
    return "`" + mrkdwn(text).replace("`", "'") + "`"


_CONTROL = {code: " " for code in (*range(32), 127)}


def plain(text: object) -> str:
    """``text`` for PagerDuty's one-line fields: control characters (newlines) become spaces and angle
    brackets become look-alikes, so no integration that forwards the summary (Slack, e-mail) renders
    markup from warehouse values."""
    return str(text).translate(_CONTROL).replace("<", "‹").replace(">", "›")


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _when(moment: datetime | None) -> str:
    return "n/a" if moment is None else moment.strftime("%Y-%m-%d %H:%M")


def sparkline(values: tuple[float, ...]) -> str:
    """A one-line text chart of ``values`` (empty for no values)."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    return "".join(_SPARK[0 if span == 0 else round((v - low) / span * (len(_SPARK) - 1))] for v in values)


def bounds_text(evaluation: RuleEvaluation) -> str:
    """'>= 0.8', '<= 8', '[0.7, 0.9]' or 'n/a'."""
    lower, upper = evaluation.lower, evaluation.upper
    if lower is not None and upper is not None:
        return f"[{_num(lower)}, {_num(upper)}]"
    if lower is not None:
        return f">= {_num(lower)}"
    return f"<= {_num(upper)}" if upper is not None else "n/a"


def summary(event: AlertEvent) -> str:
    """One line naming monitor, metric, value, bounds and window (the PagerDuty summary, Slack fallback)."""
    e = event.evaluation
    head = _HEAD.get(event.kind, event.severity.upper())
    return (
        f"[{head}] {e.monitor} ({e.model}, {e.cadence}): {e.metric} {_VERB[event.kind]} - "
        f"{_num(e.value)} vs {bounds_text(e)} for window {_when(e.window_start)}..{_when(e.window_end)}"
        f"{_staleness(e)}"
    )


def _staleness(evaluation: RuleEvaluation) -> str:
    """' (revision 4, 4.0 h old)': how old the judged window is, in every message."""
    if evaluation.window_age_hours is None:
        return ""
    revision = f"revision {evaluation.revision}, " if evaluation.revision is not None else ""
    return f" ({revision}{evaluation.window_age_hours:.1f} h old)"


def incident_span(event: AlertEvent) -> str | None:
    """RESOLVE: how long the incident lasted and which windows breached, in one sentence."""
    if event.kind != RESOLVE or event.opened_at is None:
        return None
    resolved = event.evaluation.as_of
    # Alert rows read back from a warehouse are naive UTC, a run's as_of is aware: compare in one form.
    hours = (to_naive_utc(resolved) - to_naive_utc(event.opened_at)).total_seconds() / 3600
    windows = ""
    if event.first_breach_window is not None:
        last = event.last_breach_window or event.first_breach_window
        windows = f"; windows {_when(event.first_breach_window)} to {_when(last)} breached"
        windows += f" ({event.breach_count} breach{'es' if event.breach_count != 1 else ''})"
    return f"Incident #{event.incident} open {_when(event.opened_at)} to {_when(resolved)} ({hours:.0f} h){windows}"


def details(event: AlertEvent) -> dict[str, Any]:
    """Flat, JSON-safe facts about the event (PagerDuty custom_details and the log record)."""
    e = event.evaluation
    cause = e.root_cause
    return {
        "event": event.kind,
        "incident": event.incident,
        "dedup_key": event.dedup_key,
        "monitor": e.monitor,
        "model": e.model,
        "cadence": e.cadence,
        "metric": e.metric,
        "rule": e.rule_id,
        "severity": event.severity,
        "value": e.value,
        "lower": e.lower,
        "upper": e.upper,
        "baseline": e.baseline,
        "rule_description": e.description,
        "as_of": e.as_of.isoformat(),
        "window_start": e.window_start.isoformat() if e.window_start else None,
        "window_end": e.window_end.isoformat() if e.window_end else None,
        "window_status": e.window_status,
        "revision": e.revision,
        "window_age_hours": e.window_age_hours,
        "reopen": event.reopen,
        "labelled": e.labelled,
        "label_coverage": e.label_coverage,
        "model_versions": list(e.model_versions),
        "trend": list(e.trend),
        "root_cause": cause.verdict if cause else None,
        "root_cause_summary": cause.summary if cause else None,
        "top_features": list(cause.top_features) if cause else [],
        "top_segment": cause.top_segment if cause else None,
        "incident_span": incident_span(event),
    }


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SLACK_MAX_TEXT)}}


def _facts(event: AlertEvent) -> dict[str, Any]:
    e = event.evaluation
    coverage = "n/a" if e.label_coverage is None else f"{e.label_coverage:.0%}"
    facts = [
        f"*Value*\n{_num(e.value)}",
        f"*Bounds*\n{bounds_text(e)}",
        f"*Baseline*\n{_num(e.baseline)}",
        f"*Window*\n{_when(e.window_start)} .. {_when(e.window_end)} ({mrkdwn(e.window_status or 'n/a')})",
        f"*Labelled*\n{e.labelled if e.labelled is not None else 'n/a'} (coverage {coverage})",
        f"*Model versions*\n{mrkdwn(', '.join(e.model_versions) or 'n/a')}",
    ]
    fields = [{"type": "mrkdwn", "text": truncate(f, SLACK_MAX_FIELD_TEXT)} for f in facts[:SLACK_MAX_FIELDS]]
    return {"type": "section", "fields": fields}


def _root_cause_block(event: AlertEvent) -> dict[str, Any] | None:
    cause = event.evaluation.root_cause
    if cause is None:
        return None
    lines = [f"*Likely cause: {mrkdwn(cause.verdict)}* - {mrkdwn(cause.summary)}"]
    if cause.top_features:
        lines.append("Top features: " + ", ".join(_code(f) for f in cause.top_features))
    if cause.top_segment:
        lines.append(f"Top segment: {_code(cause.top_segment)}")
    lines.extend(f"• {mrkdwn(item)}" for item in cause.evidence)
    return _section("\n".join(lines))


def _links_text(links: Mapping[str, str]) -> str:
    # Whole links only: a link cut in half renders as broken markup.
    text = ""
    for name, url in links.items():
        item = f"<{mrkdwn(url)}|{mrkdwn(name).replace('|', '/')}>"
        candidate = f"{text} | {item}" if text else item
        if len(candidate) > SLACK_MAX_TEXT:
            break
        text = candidate
    return text or truncate(mrkdwn(next(iter(links))), SLACK_MAX_TEXT)


def slack_message(event: AlertEvent, *, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` fallback + Block Kit ``blocks``) within Slack's limits."""
    e = event.evaluation
    title = f"{_EMOJI[event.kind]} {e.monitor}: {e.metric} {_VERB[event.kind]} ({event.severity})"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, SLACK_MAX_HEADER), "emoji": True}},
        _section(f"*{mrkdwn(summary(event))}*\n{mrkdwn(e.description)}"),
        _facts(event),
    ]
    if e.trend:
        span = f"{_num(e.trend[0])} → {_num(e.trend[-1])}"
        trend = f"*Trend* (last {len(e.trend)} windows): `{sparkline(e.trend)}` {span}"
        blocks.append(_section(trend))
    cause = _root_cause_block(event)
    if cause is not None and event.kind != RESOLVE:
        blocks.append(cause)
    span = incident_span(event)
    if span is not None:
        blocks.append(_section(mrkdwn(span)))
    if links:
        blocks.append(_section(_links_text(links)))
    context = f"incident #{event.incident} · {_code(event.dedup_key)} · as of {_when(e.as_of)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(context, SLACK_MAX_TEXT)}]})
    if len(blocks) > SLACK_MAX_BLOCKS:
        # Keep the header and the closing context; the middle is what can be dropped.
        blocks = [*blocks[: SLACK_MAX_BLOCKS - 1], blocks[-1]]
    return {"text": truncate(mrkdwn(summary(event)), SLACK_MAX_TEXT), "blocks": blocks}


def pagerduty_event(event: AlertEvent, *, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``pagerduty.EventsApiV2Client.send_event`` (without the routing key).

    The shape mirrors the provider's ``prepare_event_data(..., action_key_name="action")``.
    """
    e = event.evaluation
    action = "resolve" if event.kind == RESOLVE else "trigger"
    data: dict[str, Any] = {
        "action": action,
        "dedup_key": event.dedup_key,
        "payload": {
            "summary": truncate(plain(summary(event)), PAGERDUTY_MAX_SUMMARY),
            # PagerDuty severities are info/warning/error/critical: ours map one to one.
            "severity": event.severity,
            "source": plain(f"modelwatch/{e.monitor}"),
            "component": plain(e.model),
            "group": plain(e.monitor),
            "class": plain(e.metric),
            "custom_details": details(event),
        },
    }
    if links:
        data["links"] = [{"href": url, "text": name} for name, url in links.items()]
    return data


def log_record(event: AlertEvent, *, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The record written to the task log for every event."""
    return {"summary": summary(event), **details(event), "links": dict(links or {})}


_EMAIL_HTML = """<!DOCTYPE html><html><body style="font-family:sans-serif">
<h2>{{ title }}</h2><p><strong>{{ summary }}</strong></p><p>{{ description }}</p>
<table cellpadding="4">{% for name, value in facts %}
<tr><th align="left">{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
{% if cause %}<p><strong>Likely cause: {{ cause.verdict }}</strong>: {{ cause.summary }}</p>
<ul>{% for item in cause.evidence %}<li>{{ item }}</li>{% endfor %}</ul>{% endif %}
{% if links %}<p>{% for name, url in links.items() %}<a href="{{ url }}">{{ name }}</a> {% endfor %}</p>{% endif %}
<p style="color:#829ab1">incident #{{ incident }} &middot; {{ dedup_key }}</p></body></html>"""


def email_message(
    event: AlertEvent, *, links: Mapping[str, str] | None = None, to: tuple[str, ...] = (), owner: str | None = None
) -> dict:
    """Subject, plain text and HTML (Jinja2, autoescaped) of the alert email; ``to`` from the route."""
    import jinja2

    e = event.evaluation
    title = f"{e.monitor}: {e.metric} {_VERB[event.kind]} ({event.severity})"
    facts = [
        ("Value", _num(e.value)),
        ("Bounds", bounds_text(e)),
        ("Baseline", _num(e.baseline)),
        ("Window", f"{_when(e.window_start)} .. {_when(e.window_end)} ({e.window_status or 'n/a'})"),
        ("Labelled", "n/a" if e.labelled is None else str(e.labelled)),
        ("Owner", owner or "n/a"),
    ]
    span = incident_span(event)
    if span is not None:
        facts.append(("Incident", span))
    cause = e.root_cause if event.kind != RESOLVE else None
    page = jinja2.Environment(autoescape=True).from_string(_EMAIL_HTML)
    html = page.render(
        title=title, summary=summary(event), description=e.description, facts=facts, cause=cause,
        links=dict(links or {}), incident=event.incident, dedup_key=event.dedup_key,
    )  # fmt: skip
    text = "\n".join(
        [summary(event), e.description, *([span] if span else []), *(f"{k}: {v}" for k, v in (links or {}).items())]
    )
    return {"to": list(to), "subject": truncate(f"[modelwatch] {title}", 200), "html": html, "text": text}


def webhook_body(event: AlertEvent, *, links: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The generic webhook's JSON body: the summary, every fact and the links (signed at send time)."""
    return {"summary": summary(event), **details(event), "links": dict(links or {})}


def render(
    event: AlertEvent,
    destination: str,
    *,
    links: Mapping[str, str] | None = None,
    to: tuple[str, ...] = (),
    owner: str | None = None,
) -> dict[str, Any]:
    """The payload of ``event`` for ``destination`` ('slack', 'pagerduty', 'email', 'webhook' or 'log').

    ``owner`` (the monitor's team) is named in every message; a runbook is one of the ``links``.
    """
    if destination == "email":
        payload = email_message(event, links=links, to=to, owner=owner)
    else:
        builders = {"slack": slack_message, "pagerduty": pagerduty_event, "webhook": webhook_body, "log": log_record}
        payload = builders[destination](event, links=links)
    if owner is None:
        return payload
    if destination == "slack":
        context = payload["blocks"][-1]["elements"][0]
        context["text"] = truncate(f"owner {owner} · {context['text']}", SLACK_MAX_TEXT)
    elif destination == "pagerduty":
        payload["payload"]["custom_details"]["owner"] = owner
    elif destination in ("webhook", "log"):
        payload["owner"] = owner
    return payload
