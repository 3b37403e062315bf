"""One page for every monitor: status, open alerts and incidents with their verdict, a sparkline of the
main metric with its thresholds, and links to the reports, MLflow runs and Airflow runs.

:func:`summarise` is pure (stored rows in, typed overview out); :func:`load_overview` reads the
warehouse and MLflow; :func:`render_overview` renders the typed overview with Jinja2 (autoescaped).
The Airflow plugin (:mod:`modelwatch.airflow.plugin`) serves the page inside the Airflow UI: it finds the
monitors and each one's warehouse engine, and passes them in (this module imports nothing of Airflow).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelwatch.core.config import Cadence, MonitorConfig, Severity
from modelwatch.core.result import HistoryPoint, RootCause
from modelwatch.render.formatting import fmt_number
from modelwatch.render.report import render_template

SPARK_WINDOWS = {Cadence.HOURLY: 72, Cadence.DAILY: 30}


@dataclass(frozen=True)
class Sparkline:
    metric: str
    points: str
    """SVG polyline points."""
    thresholds: tuple[tuple[float, str, str], ...]
    """(y, colour, label) of each absolute bound."""
    last: str
    span: str
    width: int = 220
    height: int = 44


@dataclass(frozen=True)
class Incident:
    metric: str
    rule: str
    severity: str
    state: str
    """'open' or 'resolved'."""
    number: int
    span: str
    last_value: str
    verdict: str
    summary: str
    links: dict[str, str]


@dataclass(frozen=True)
class CadenceOverview:
    cadence: str
    dag_id: str
    status: str
    """'alerting', 'healthy' or 'no data'."""
    open_alerts: int
    incidents: tuple[Incident, ...]
    last_window: str
    last_verdict: str
    sparkline: Sparkline | None
    links: dict[str, str]


@dataclass(frozen=True)
class MonitorOverview:
    name: str
    model: str
    owner: str
    description: str
    status: str
    cadences: tuple[CadenceOverview, ...]


def sparkline(
    points: Sequence[HistoryPoint], metric: str, bounds: Sequence[tuple[float, str]], *, width: int = 220
) -> Sparkline | None:
    """A polyline of ``metric`` over ``points`` (oldest first) with the bounds drawn as lines."""
    values = [(i, p.metrics.get(metric)) for i, p in enumerate(points)]
    defined = [(i, float(v)) for i, v in values if v is not None]
    if not defined:
        return None
    height, pad = 44, 4
    ys = [v for _, v in defined] + [b for b, _ in bounds]
    low, high = min(ys), max(ys)
    span = (high - low) or 1.0

    def y(value: float) -> float:
        return round(pad + (height - 2 * pad) * (high - value) / span, 1)

    step = (width - 2 * pad) / max(len(points) - 1, 1)
    line = " ".join(f"{round(pad + i * step, 1)},{y(v)}" for i, v in defined)
    colours = {"critical": "#b42318", "warning": "#dc6803"}
    lines = tuple((y(b), colours.get(sev, "#52606d"), f"{sev} {fmt_number(b)}") for b, sev in bounds)
    first, last = points[0].window_start, points[-1].window_start
    return Sparkline(
        metric=metric,
        points=line,
        thresholds=lines,
        last=fmt_number(defined[-1][1]),
        span=f"{first:%m-%d %H:%M} .. {last:%m-%d %H:%M}",
        width=width,
    )


def absolute_bounds(monitor: MonitorConfig, metric: str) -> list[tuple[float, str]]:
    return [
        (bound, rule.severity)
        for check in monitor.checks
        if check.metric == metric
        for rule in check.rules
        if rule.type == "absolute"
        for bound in (rule.min, rule.max)
        if bound is not None
    ]


def _span(alert: Mapping[str, Any], width: timedelta) -> str:
    first, last = alert.get("first_breach_window"), alert.get("last_breach_window")
    if first is None:
        return "n/a"
    end = (last or first) + width
    return f"{first:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"


def _verdict(cause: RootCause | None) -> tuple[str, str]:
    return (cause.verdict, cause.summary) if cause is not None else ("not diagnosed", "")


def _incidents(
    alerts: Sequence[Mapping[str, Any]],
    width: timedelta,
    *,
    causes: Mapping[datetime, RootCause | None],
    links_for: Callable[[datetime], dict[str, str]],
    opening_causes: Mapping[str, RootCause],
) -> list[Incident]:
    """The incidents among ``alerts``, open first and most severe first (see :func:`summarise`)."""
    incidents = []
    for alert in sorted(alerts, key=lambda a: (a["state"] != "open", -Severity(a["severity"]).rank)):
        if not alert.get("incident"):
            continue
        window = alert.get("last_breach_window")
        cause = (causes.get(window) if window else None) or opening_causes.get(alert["dedup_key"])
        verdict, summary = _verdict(cause)
        metric, rule = alert["dedup_key"].split("/")[-2:]
        incidents.append(
            Incident(
                metric=metric,
                rule=rule,
                severity=alert["severity"],
                state=alert["state"],
                number=int(alert["incident"]),
                span=_span(alert, width),
                last_value=fmt_number(alert.get("last_value")),
                verdict=verdict,
                summary=summary,
                links=links_for(window) if window else {},
            )
        )
    return incidents


def summarise(
    monitor: MonitorConfig,
    cadence: str,
    *,
    alerts: Sequence[Mapping[str, Any]],
    history: Sequence[HistoryPoint],
    causes: Mapping[datetime, RootCause | None],
    links_for: Callable[[datetime], dict[str, str]],
    opening_causes: Mapping[str, RootCause] | None = None,
) -> CadenceOverview:
    """One cadence of one monitor from its stored rows (pure).

    Args:
        monitor: The monitor.
        cadence: The cadence of the rows.
        alerts: Its alert rows (``alert_store.alert_rows``) of this cadence.
        history: Its latest window revisions, oldest first.
        causes: window_start -> root cause of the windows that incidents and the last window point at.
        links_for: window_start -> links (report, MLflow run, Airflow run) of that window.
        opening_causes: dedup_key -> the root cause the incident's opening message quoted, shown when the
            breaching window's own result carries none (label-free rules judge undiagnosed fresh windows).
    """
    width = Cadence(cadence).width
    incidents = _incidents(alerts, width, causes=causes, links_for=links_for, opening_causes=opening_causes or {})
    open_alerts = sum(1 for i in incidents if i.state == "open")
    last = history[-1] if history else None
    main = next((c.metric for c in monitor.checks), "predictions")
    spark = sparkline(list(history), main, absolute_bounds(monitor, main)) if history else None
    last_verdict = _verdict(causes.get(last.window_start))[0] if last else "no data"
    return CadenceOverview(
        cadence=cadence,
        dag_id=monitor.dag_id(cadence),
        status="alerting" if open_alerts else ("healthy" if last else "no data"),
        open_alerts=open_alerts,
        incidents=tuple(incidents),
        last_window=f"{last.window_start:%Y-%m-%d %H:%M} ({last.status}, rev {last.revision})" if last else "none",
        last_verdict=last_verdict,
        sparkline=spark,
        links=links_for(last.window_start) if last else {},
    )


def overall(cadences: Sequence[CadenceOverview]) -> str:
    statuses = {c.status for c in cadences}
    return next((s for s in ("alerting", "healthy") if s in statuses), "no data")


# --- I/O ----------------------------------------------------------------------------------------


def _airflow_base() -> str:
    return (os.environ.get("AIRFLOW__API__BASE_URL") or "http://localhost:8080").rstrip("/")


def _window_links(monitor: MonitorConfig, cadence: str) -> Callable[[datetime], dict[str, str]]:
    from modelwatch.integrations.tracking import window_run

    def links(window_start: datetime) -> dict[str, str]:
        out: dict[str, str] = {}
        run = window_run(monitor, cadence=cadence, window_start=window_start)
        if run is not None:
            out |= {"Report": run.report_url, "MLflow run": run.url}
            if run.airflow_url:
                out["Airflow run"] = run.airflow_url
        out["Airflow DAG"] = f"{_airflow_base()}/dags/{monitor.dag_id(cadence)}"
        return out

    return links


def _causes(engine: Any, monitor: MonitorConfig, cadence: str, starts: set[datetime]) -> dict[datetime, Any]:
    from modelwatch.core.result import result_from_document
    from modelwatch.warehouse.documents import latest_documents

    width = Cadence(cadence).width
    causes: dict[datetime, Any] = {}
    for start in starts:
        docs = latest_documents(engine, monitor=monitor.name, cadence=cadence, start=start, end=start + width)
        causes[start] = result_from_document(docs[-1]).root_cause if docs and "result" in docs[-1] else None
    return causes


def _recent_history(engine: Any, monitor: MonitorConfig, cadence: str) -> list[HistoryPoint]:
    """The latest revision of the last ``SPARK_WINDOWS`` windows, oldest first."""
    from modelwatch.warehouse.results_store import metric_history, newest_window_start

    newest = newest_window_start(engine, monitor=monitor.name, cadence=cadence)
    if newest is None:
        return []
    width = Cadence(cadence).width
    start = newest - width * (SPARK_WINDOWS.get(cadence, 48) - 1)
    return metric_history(engine, monitor=monitor.name, cadence=cadence, start=start, end=newest + width)


def load_overview(
    monitors: Sequence[MonitorConfig], engine_for: Callable[[MonitorConfig], Any]
) -> list[MonitorOverview]:
    """Every monitor's overview from its warehouse (``engine_for``) and MLflow."""
    from modelwatch.warehouse.alert_store import alert_rows, opening_root_causes

    out = []
    for monitor in monitors:
        engine = engine_for(monitor)
        rows = alert_rows(engine, monitor.name)
        cadences = []
        for cadence in (str(getattr(c, "value", c)) for c in monitor.cadences):
            alerts = [r for r in rows if r["dedup_key"].split("/")[2] == cadence]
            history = _recent_history(engine, monitor, cadence)
            starts = {a["last_breach_window"] for a in alerts if a.get("last_breach_window")}
            if history:
                starts.add(history[-1].window_start)
            cadences.append(
                summarise(
                    monitor,
                    cadence,
                    alerts=alerts,
                    history=history,
                    causes=_causes(engine, monitor, cadence, starts),
                    links_for=_window_links(monitor, cadence),
                    opening_causes=opening_root_causes(engine, alerts),
                )
            )
        out.append(
            MonitorOverview(
                name=monitor.name,
                model=monitor.model.name,
                owner=monitor.owner,
                description=monitor.description or "",
                status=overall(cadences),
                cadences=tuple(cadences),
            )
        )
    return out


def render_overview(overviews: Sequence[MonitorOverview], *, generated_at: datetime) -> str:
    """The overview page (self-contained HTML: inline CSS and SVG)."""
    return render_template("overview.html.j2", monitors=overviews, generated_at=f"{generated_at:%Y-%m-%d %H:%M} UTC")
