"""What each monitoring task does inside Airflow: read the run's window from the context, call the library.

The decisions live in their own modules: :mod:`~modelwatch.airflow.connections` (which warehouse),
:mod:`~modelwatch.airflow.window_choice` (which window, as of when), :mod:`~modelwatch.airflow.logging_policy`
(what goes to MLflow), :mod:`~modelwatch.airflow.alert_events` (an alert's log line and links) and
:mod:`~modelwatch.airflow.monitors_folder` (the monitor files). Imported at DAG parse time, so the module
itself imports nothing heavy; each task imports what it uses. XCom carries only window keys and small
summaries.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime
from typing import Any

from modelwatch.airflow.alert_events import alert_links, event_line
from modelwatch.airflow.connections import warehouse_engine
from modelwatch.airflow.logging_policy import mlflow_lock_name, rule_statuses, run_context, windows_to_log
from modelwatch.airflow.monitors_folder import monitor_from_file
from modelwatch.airflow.window_choice import run_window
from modelwatch.core.config import Cadence, MonitorConfig

log = logging.getLogger(__name__)


def _context() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    return dict(get_current_context())


def _keys(raw: list[dict]) -> tuple[list[Any], datetime]:
    from modelwatch.core.windows import WindowRun

    runs = [WindowRun.from_xcom(item) for item in raw]
    return runs, runs[-1].as_of


def _history(engine: Any, monitor: MonitorConfig, own: Any, *, as_of: datetime | None = None) -> list[Any]:
    """The stored metric history the rules of the run's own window look back over."""
    from modelwatch.app.judging import history_start
    from modelwatch.warehouse.results_store import metric_history

    start = history_start(monitor, own)
    return metric_history(
        engine, monitor=monitor.name, cadence=own.cadence, start=start, end=own.window_end, as_of=as_of
    )


def extract_task(source: str, cadence: str) -> list[dict]:
    from modelwatch.app.pipeline import extract
    from modelwatch.warehouse.catalog import validate_schema

    monitor, context = monitor_from_file(source), _context()
    window, as_of = run_window(context, Cadence(cadence), not_before=monitor.start_date)
    engine = warehouse_engine(monitor)
    validate_schema(engine, monitor)
    keys = extract(engine, monitor, window=window, as_of=as_of, progress=log.info)
    log.info(
        "%s: %d window(s) to compute for the %s window %s to %s (labels as of %s)",
        monitor.name, len(keys), cadence, f"{window.start:%Y-%m-%d %H:%M}", f"{window.end:%Y-%m-%d %H:%M}",
        f"{as_of:%Y-%m-%d %H:%M}",
    )  # fmt: skip
    return [key.to_xcom() for key in keys]


def compute_task(source: str, raw_keys: list[dict]) -> list[dict]:
    from modelwatch.app.pipeline import compute

    monitor = monitor_from_file(source)
    keys, _ = _keys(raw_keys)
    for result in compute(warehouse_engine(monitor), monitor, keys):
        metrics = ", ".join(f"{k}={v.value:.4g}" for k, v in result.metrics.items() if v.value is not None)
        verdict = result.root_cause.summary if result.root_cause else "no root cause"
        log.info(
            "%s %s rev %d [%s]: %s | %s",
            monitor.name,
            result.window_start,
            result.revision,
            result.status,
            metrics,
            verdict,
        )
    return raw_keys


def _log_result(engine: Any, monitor: MonitorConfig, result: Any, context: dict[str, Any], **kwargs: Any) -> Any:
    from modelwatch.app.reference_stats import reference_score_histogram
    from modelwatch.integrations.tracking import log_window
    from modelwatch.warehouse.locks import window_lock

    if kwargs.get("artifacts", True):
        kwargs["reference_histogram"] = reference_score_histogram(engine, monitor, result)
    with window_lock(engine, mlflow_lock_name(monitor, result)):
        return log_window(result, monitor=monitor, context=run_context(context) if context else None, **kwargs)


def log_task(source: str, raw_keys: list[dict]) -> list[str]:
    from modelwatch.app.pipeline import load_results

    monitor, context = monitor_from_file(source), _context()
    keys, as_of = _keys(raw_keys)
    engine = warehouse_engine(monitor)
    urls = log_windows(engine, monitor, load_results(engine, monitor, keys), context=context, as_of=as_of)
    context["ti"].xcom_push(key="mlflow_run_url", value=urls[-1])
    log.info("MLflow run for window %s: %s", keys[-1].window.start, urls[-1])
    return urls


def log_windows(
    engine: Any, monitor: MonitorConfig, results: list[Any], *, context: dict[str, Any] | None, as_of: datetime
) -> list[str]:
    """Log a run's windows to MLflow (:func:`~modelwatch.airflow.logging_policy.windows_to_log`), each with
    the full report (rule statuses included; artifacts once per revision), under its window's warehouse
    lock, through one client. Returns the run URLs, own last."""
    from modelwatch.core.corroboration import incident_rows, rule_kind
    from modelwatch.integrations.tracking import client_for

    own = results[-1]
    history = _history(engine, monitor, own)
    client = client_for(monitor)  # one client, server probe and experiment lookup for all the windows
    states = _alert_states(engine, monitor, own.cadence)
    urls = []
    for result in windows_to_log(monitor, results):
        statuses = rule_statuses(monitor, result, as_of=as_of, history=history)
        incidents = incident_rows(states, result.window_start, kind=rule_kind(monitor))
        run = _log_result(
            engine, monitor, result, context, history=history, evaluations=statuses, artifacts=True, client=client,
            incidents=incidents,
        )  # fmt: skip
        urls.append(run.url)
    return urls


def _alert_states(engine: Any, monitor: MonitorConfig, cadence: str) -> list[Any]:
    """The stored states of the monitor's label-free and metric alerts of ``cadence`` (for the reports)."""
    from modelwatch.core.alerts import dedup_key
    from modelwatch.warehouse.alert_store import alert_states

    keys = [dedup_key(monitor.name, cadence, r.signal, r.rule_id) for r in monitor.label_free]
    if not keys:
        return []  # without label-free rules there is nothing to join up
    keys += [dedup_key(monitor.name, cadence, c.metric, r.rule_id) for c in monitor.checks for r in c.rules]
    return alert_states(engine, keys)


def evaluate_task(source: str, raw_keys: list[dict]) -> dict:
    from modelwatch.app.judging import judge
    from modelwatch.app.pipeline import load_results

    monitor, context = monitor_from_file(source), _context()
    keys, as_of = _keys(raw_keys)
    engine = warehouse_engine(monitor)
    results = load_results(engine, monitor, keys)
    own = results[-1]
    events = judge(engine, monitor, results, as_of=as_of, links=alert_links(monitor, run_context(context).airflow_url))
    if not events:
        # Retries, re-runs and backfills of an already processed run are no-ops by design: say so.
        log.info(
            "%s %s as of %s: no alert opened, escalated or resolved (a re-run of an already processed run "
            "changes nothing)",
            monitor.name, own.cadence, f"{as_of:%Y-%m-%d %H:%M}",
        )  # fmt: skip
    history = _history(engine, monitor, own, as_of=as_of)
    _report_alerting_windows(engine, monitor, results, events, context=context, as_of=as_of, history=history)
    note = _post_run_note(monitor, own, events, context=context, as_of=as_of, history=history)
    return {"events": len(events), "as_of": as_of.isoformat(), "cadence": own.cadence, "note": note}


def _report_alerting_windows(
    engine: Any,
    monitor: MonitorConfig,
    results: list[Any],
    events: list[Any],
    *,
    context: dict[str, Any],
    as_of: datetime,
    history: list[Any],
) -> None:
    """Log each event; the page a trigger or escalation links to must exist and explain its window,
    whatever its revision: log that window's report (once) when the run holds it."""
    from modelwatch.core.alerts import ESCALATE, TRIGGER

    by_window = {result.window_start: result for result in results}
    reported = set()
    for event in events:
        log.warning("ALERT %s", event_line(event))
        window = event.evaluation.window_start
        if event.kind in (TRIGGER, ESCALATE) and window in by_window and window not in reported:
            result = by_window[window]
            statuses = rule_statuses(monitor, result, as_of=as_of, history=history)
            _log_result(engine, monitor, result, context, history=history, evaluations=statuses)
            reported.add(window)


def _post_run_note(
    monitor: MonitorConfig, own: Any, events: list[Any], *, context: dict[str, Any], as_of: datetime, history: list[Any]
) -> str:
    """The DAG run's note: the verdict of its own window and its alert events (posted unless the
    in-process runner, which writes it into the DB itself, runs the task)."""
    from modelwatch.airflow.run_notes import post_note, run_note
    from modelwatch.airflow.runner import IN_PROCESS_ENV
    from modelwatch.render.report import verdict_text

    note = run_note(verdict_text(own, rule_statuses(monitor, own, as_of=as_of, history=history)),
                    [event_line(e) for e in events])  # fmt: skip
    log.info("verdict of the run's window: %s", note.splitlines()[0])
    dag_run = context.get("dag_run")
    if dag_run is not None and os.environ.get(IN_PROCESS_ENV) != "1":
        post_note(dag_run.dag_id, dag_run.run_id, note)
    return note


def plan_retraining_task(source: str, summary: dict) -> dict:
    """The retraining run a sustained breach asks for; skips the trigger task when there is none."""
    from airflow.sdk.exceptions import AirflowSkipException

    from modelwatch.core.retraining import plan_retraining, watched_alerts
    from modelwatch.warehouse.alert_store import alert_states

    monitor = monitor_from_file(source)
    cadence = summary["cadence"]
    states = alert_states(warehouse_engine(monitor), list(watched_alerts(monitor, cadence)))
    request = plan_retraining(monitor, cadence, states, as_of=datetime.fromisoformat(summary["as_of"]))
    if request is None:
        raise AirflowSkipException("no alert of this monitor is a sustained breach: nothing to retrain")
    log.warning("RETRAIN %s: triggering %s as run %s", monitor.name, request.dag_id, request.run_id)
    return {"run_id": request.run_id, "conf": request.conf}


def notify_task(source: str, summary: dict) -> dict:
    from modelwatch.app.delivery import deliver_pending

    monitor = monitor_from_file(source)
    report = deliver_pending(warehouse_engine(monitor), monitor)
    log.info("delivery for %s: %s", monitor.name, report)
    return {"events": summary.get("events", 0), "delivery": str(report)}
