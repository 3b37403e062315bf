"""What each monitoring task does inside Airflow: read the run's window from the context, call the library.

Imported at DAG parse time, so the module itself imports nothing heavy; each task imports what it uses.
XCom carries only window keys and small summaries.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from modelwatch.core.config import Cadence, MonitorConfig, Status, load_monitor

log = logging.getLogger(__name__)


def _monitor(source: str) -> MonitorConfig:
    """The monitor's current definition from its file: re-read when the file changes."""
    path = Path(source)
    return _load_monitor(str(path), path.stat().st_mtime_ns if path.exists() else 0)


@cache
def _load_monitor(path: str, mtime_ns: int) -> MonitorConfig:
    return load_monitor(path)


WAREHOUSE_URL_ENV = "MODELWATCH_WAREHOUSE_URL"


def warehouse_url(monitor: MonitorConfig) -> str:
    """The Airflow connection ``warehouse.conn_id`` when it exists, else env ``MODELWATCH_WAREHOUSE_URL``,
    else ``warehouse.url``. The variable stands in for a missing connection (CLI, tests); it never
    overrides a defined one."""
    if monitor.warehouse.conn_id:
        found = _connection_url(monitor.warehouse.conn_id, os.environ.get(_conn_env(monitor.warehouse.conn_id)))
        if found:
            return found
    override = os.environ.get(WAREHOUSE_URL_ENV)
    if override:
        log.info("%s: no connection %r: using %s", monitor.name, monitor.warehouse.conn_id, WAREHOUSE_URL_ENV)
        return override
    if not monitor.warehouse.url:
        raise LookupError(
            f"monitor {monitor.name!r}: Airflow connection {monitor.warehouse.conn_id!r} not found and no "
            "'warehouse.url' in the monitor file"
        )
    return monitor.warehouse.url


def _conn_env(conn_id: str) -> str:
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@cache
def _connection_url(conn_id: str, env_value: str | None) -> str | None:
    """The SQLAlchemy URL of an Airflow connection, built by the connection's own hook (a Postgres
    connection's ``PostgresHook.sqlalchemy_url``, as its ``get_sqlalchemy_engine`` does), looked up once
    per process (``env_value`` keys the cache so a connection defined or changed through the environment
    is seen). A Generic connection may instead carry a full URL in the extra ``sqlalchemy_url``."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        conn = BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError):
        log.info("connection %r not defined", conn_id)
        return None
    explicit = conn.extra_dejson.get("sqlalchemy_url")
    if explicit:
        return explicit
    hook = conn.get_hook()
    try:
        url = hook.sqlalchemy_url
    except (AttributeError, NotImplementedError):
        if not hasattr(hook, "get_uri"):
            raise TypeError(
                f"connection {conn_id!r} (type {conn.conn_type!r}): its hook builds no SQLAlchemy URL; use a "
                "Postgres connection (or another SQL type) or a Generic one with the extra 'sqlalchemy_url'"
            ) from None
        return hook.get_uri()
    return url.render_as_string(hide_password=False)


def warehouse_engine(monitor: MonitorConfig) -> Any:
    """The monitor's warehouse engine (URL from :func:`warehouse_url`, its results schema and statement
    timeout): the tasks' and the overview page's."""
    from modelwatch.warehouse.engine import make_engine

    warehouse = monitor.warehouse
    return make_engine(
        warehouse_url(monitor), results_schema=warehouse.results_schema, statement_timeout=warehouse.statement_timeout
    )


LABELS_NOW = "now"
"""``labels_as_of`` of a manual run that re-evaluates a window with the labels known now."""


def run_window(
    context: dict[str, Any], cadence: Cadence, *, not_before: datetime | None = None
) -> tuple[Any, datetime]:
    """The (window, as_of) of this run: always a window the schedule would produce.

    A ``window_start`` param wins, if it names a complete window of the cadence (else the task fails
    at once, without retries, saying why); otherwise the data interval; a manual run without a logical
    date (no ``data_interval_*`` keys), or whose inferred interval is off the cadence (a logical date of
    10:37 gives 09:37 - 10:37), evaluates the last complete window before its end / ``run_after``.

    ``as_of`` is the window's end (the labels known then: a re-run reproduces the same numbers), unless a
    manual run asks for ``labels_as_of: now`` (the labels known when the run was triggered).
    """
    from modelwatch.core.windows import (
        WindowRefused,
        last_complete_window,
        requested_window,
        scheduled_window,
        to_naive_utc,
    )

    params = context.get("params") or {}
    dag_run = context.get("dag_run")
    run_after = getattr(dag_run, "run_after", None) or datetime.now(UTC)
    if params.get("window_start"):
        try:
            window = requested_window(cadence, params["window_start"], run_after=run_after, not_before=not_before)
        except WindowRefused as exc:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(str(exc)) from exc
        if params.get("labels_as_of") == LABELS_NOW:
            return window, max(window.end, to_naive_utc(run_after))
        return window, window.end
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        window = scheduled_window(cadence, start, end)
        if window is not None:
            return window, window.end
        run_after = end
    window = last_complete_window(cadence, run_after)
    log.info(
        "no scheduled data interval on this run: evaluating %s (last complete window before %s)", window, run_after
    )
    return window, window.end


def _context() -> dict[str, Any]:
    from airflow.sdk import get_current_context

    return dict(get_current_context())


def extract_task(source: str, cadence: str) -> list[dict]:
    from modelwatch.app.pipeline import extract, validate_schema

    monitor, context = _monitor(source), _context()
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


def _keys(raw: list[dict]) -> tuple[list[Any], datetime]:
    from modelwatch.core.windows import WindowRun

    runs = [WindowRun.from_xcom(item) for item in raw]
    return runs, runs[-1].as_of


def compute_task(source: str, raw_keys: list[dict]) -> list[dict]:
    from modelwatch.app.pipeline import compute

    monitor = _monitor(source)
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


def run_context(context: dict[str, Any]) -> Any:
    from modelwatch.integrations.tracking import RunContext

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    base = os.environ.get("AIRFLOW__API__BASE_URL", "http://localhost:8080").rstrip("/")
    dag_id = getattr(dag_run, "dag_id", None)
    run_id = getattr(dag_run, "run_id", None)
    return RunContext(
        dag_id=dag_id,
        run_id=run_id,
        try_number=getattr(ti, "try_number", None),
        airflow_url=f"{base}/dags/{dag_id}/runs/{run_id}" if dag_id and run_id else None,
    )


def worth_a_run_update(monitor: MonitorConfig, result: Any) -> bool:
    """MLflow gets a window's first, breaching and final revisions; every revision is in the warehouse
    (modelwatch_metric_results). Intermediate recomputations would cost ~80 ms each for no reader."""
    from modelwatch.app.pipeline import breaches_absolute

    return result.revision == 0 or result.status is Status.FINAL or breaches_absolute(monitor, result.metrics)


def rule_statuses(monitor: MonitorConfig, result: Any, *, as_of: datetime, history: list[Any]) -> list[Any]:
    """Every rule judged on ``result`` alone: the report's Status column (breach / healthy / insufficient)."""
    from modelwatch.core.alerts import evaluate_rules

    return evaluate_rules(monitor, cadence=result.cadence, as_of=as_of, results=[result], history=history)


def _log_result(engine: Any, monitor: MonitorConfig, result: Any, context: dict[str, Any], **kwargs: Any) -> Any:
    from modelwatch.app.reference_stats import reference_score_histogram
    from modelwatch.integrations.tracking import log_window
    from modelwatch.warehouse.locks import window_lock

    if kwargs.get("artifacts", True):
        kwargs["reference_histogram"] = reference_score_histogram(engine, monitor, result)
    lock_name = f"mlflow:{monitor.name}:{result.cadence}:{result.window_start.isoformat()}"
    with window_lock(engine, lock_name):
        return log_window(result, monitor=monitor, context=run_context(context) if context else None, **kwargs)


def log_task(source: str, raw_keys: list[dict]) -> list[str]:
    from modelwatch.app.pipeline import load_results

    monitor, context = _monitor(source), _context()
    keys, as_of = _keys(raw_keys)
    engine = warehouse_engine(monitor)
    urls = log_windows(engine, monitor, load_results(engine, monitor, keys), context=context, as_of=as_of)
    context["ti"].xcom_push(key="mlflow_run_url", value=urls[-1])
    log.info("MLflow run for window %s: %s", keys[-1].window.start, urls[-1])
    return urls


def log_windows(
    engine: Any, monitor: MonitorConfig, results: list[Any], *, context: dict[str, Any] | None, as_of: datetime
) -> list[str]:
    """Log a run's windows to MLflow: its own (the last) and the recomputed earlier ones
    :func:`worth_a_run_update`, each with the full report (rule statuses included; artifacts once per
    revision), under its window's warehouse lock, through one client. Returns the run URLs, own last."""
    from modelwatch.app.judging import history_start
    from modelwatch.core.corroboration import incident_rows, rule_kind
    from modelwatch.integrations.tracking import client_for
    from modelwatch.warehouse.results_store import metric_history

    own = results[-1]
    history = metric_history(
        engine, monitor=monitor.name, cadence=own.cadence, start=history_start(monitor, own), end=own.window_end
    )
    client = client_for(monitor)  # one client, server probe and experiment lookup for all the windows
    states = _alert_states(engine, monitor, own.cadence)
    urls = []
    for result in results:
        if not (result is own or worth_a_run_update(monitor, result)):
            continue
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


def alert_links(monitor: MonitorConfig, airflow_url: str | None) -> Any:
    """Links of one alert event: its OWN window's MLflow run and report (not the run that raised it,
    which may have recomputed an earlier window) and the Airflow run that raised it."""
    from modelwatch.integrations.tracking import window_run

    def links(event: Any) -> dict[str, str]:
        evaluation = event.evaluation
        out: dict[str, str] = {}
        if evaluation.window_start is not None:
            run = window_run(monitor, cadence=evaluation.cadence, window_start=evaluation.window_start)
            if run is not None:
                out |= {"MLflow run": run.url, "Report": run.report_url}
        if airflow_url:
            out["Airflow run"] = airflow_url
        return out

    return links


def evaluate_task(source: str, raw_keys: list[dict]) -> dict:
    from modelwatch.airflow.run_notes import post_note, run_note
    from modelwatch.airflow.runner import IN_PROCESS_ENV  # that runner writes the note into the DB itself
    from modelwatch.app.judging import history_start, judge
    from modelwatch.app.pipeline import load_results
    from modelwatch.core.alerts import ESCALATE, TRIGGER
    from modelwatch.render.report import verdict_text
    from modelwatch.warehouse.results_store import metric_history

    monitor, context = _monitor(source), _context()
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
    by_window = {result.window_start: result for result in results}
    reported = set()
    start = history_start(monitor, own)
    history = metric_history(
        engine, monitor=monitor.name, cadence=own.cadence, start=start, end=own.window_end, as_of=as_of
    )
    for event in events:
        log.warning("ALERT %s", event_line(event))
        window = event.evaluation.window_start
        if event.kind in (TRIGGER, ESCALATE) and window in by_window and window not in reported:
            # The page the alert links to must exist and explain this window, whatever its revision.
            result = by_window[window]
            statuses = rule_statuses(monitor, result, as_of=as_of, history=history)
            _log_result(engine, monitor, result, context, history=history, evaluations=statuses)
            reported.add(window)
    note = run_note(verdict_text(own, rule_statuses(monitor, own, as_of=as_of, history=history)),
                    [event_line(e) for e in events])  # fmt: skip
    log.info("verdict of the run's window: %s", note.splitlines()[0])
    dag_run = context.get("dag_run")
    if dag_run is not None and os.environ.get(IN_PROCESS_ENV) != "1":
        post_note(dag_run.dag_id, dag_run.run_id, note)
    return {"events": len(events), "as_of": as_of.isoformat(), "cadence": own.cadence, "note": note}


def event_line(event: Any) -> str:
    """One readable sentence for the task log (no reprs)."""
    e = event.evaluation
    window = e.window_start.strftime("%Y-%m-%d %H:%M") if e.window_start else "no window"
    value = "n/a" if e.value is None else f"{e.value:.4g}"
    return (
        f"{event.kind} {event.severity} alert #{event.incident} {e.monitor}/{e.cadence} {e.metric} "
        f"({e.rule_id}): {value} for window {window} [{event.dedup_key}]"
    )


def plan_retraining_task(source: str, summary: dict) -> dict:
    """The retraining run a sustained breach asks for; skips the trigger task when there is none."""
    from airflow.sdk.exceptions import AirflowSkipException

    from modelwatch.core.retraining import plan_retraining, watched_alerts
    from modelwatch.warehouse.alert_store import alert_states

    monitor = _monitor(source)
    cadence = summary["cadence"]
    states = alert_states(warehouse_engine(monitor), list(watched_alerts(monitor, cadence)))
    request = plan_retraining(monitor, cadence, states, as_of=datetime.fromisoformat(summary["as_of"]))
    if request is None:
        raise AirflowSkipException("no alert of this monitor is a sustained breach: nothing to retrain")
    log.warning("RETRAIN %s: triggering %s as run %s", monitor.name, request.dag_id, request.run_id)
    return {"run_id": request.run_id, "conf": request.conf}


def notify_task(source: str, summary: dict) -> dict:
    from modelwatch.integrations.notify import deliver_pending

    monitor = _monitor(source)
    report = deliver_pending(warehouse_engine(monitor), monitor)
    log.info("delivery for %s: %s", monitor.name, report)
    return {"events": summary.get("events", 0), "delivery": str(report)}
