"""Builds ``modelwatch_<monitor>_hourly`` / ``_daily`` DAGs from the monitor YAML files.

Parse-time cost is kept small: only airflow.sdk and the config models are imported here; the warehouse,
metrics, MLflow and provider code is imported inside the tasks (modelwatch.airflow.tasks). A task process
(Airflow's parsing context names its DAG) reads only the file of that DAG's monitor.

A team's DAG file is two lines (Airflow only parses files that mention "airflow" and "dag")::

    from modelwatch.airflow.dag_factory import build_dags  # the Airflow DAGs of the monitors folder
    globals().update(build_dags())  # or build_dags("/path/to/monitors")
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, Param, get_parsing_context, task

from modelwatch.airflow.monitors_folder import MonitorsFolderError, monitors_dir
from modelwatch.core.config import (
    Cadence,
    MonitorConfig,
    MonitorConfigError,
    Retraining,
    load_monitor,
    monitor_files,
)
from modelwatch.core.windows import WINDOW_START_PATTERN, to_naive_utc

log = logging.getLogger(__name__)

_CRON = {Cadence.HOURLY: "0 * * * *", Cadence.DAILY: "0 0 * * *"}
RETRY_DELAY = timedelta(seconds=float(os.environ.get("MODELWATCH_RETRY_DELAY_SECONDS", "120")))
"""Default ``airflow.retry_delay``; demo and tests lower it so a failing task fails the run in seconds."""


def _describe(monitor: MonitorConfig, cadence: Cadence) -> str:
    from modelwatch.render.rule_text import duration_text, rule_summary

    checks = "\n".join(
        f"- **{check.metric}**: "
        + "; ".join(rule_summary(rule, check.metric) for rule in check.rules)
        + f" (needs {check.min_samples} labelled rows; alert on {check.m_of_n[0]} of {check.m_of_n[1]} windows)"
        for check in monitor.checks
    )
    routes = (
        ", ".join(
            name
            for name, route in (("Slack", monitor.routes.slack), ("PagerDuty (critical)", monitor.routes.pagerduty))
            if route
        )
        or "none (alerts recorded in the warehouse and the task log only)"
    )
    cfg = monitor.retraining
    retraining = (
        f"triggers `{cfg.dag_id}` once per incident when a {cfg.min_severity} alert has breached "
        f"{cfg.after_breaches} windows"
        if cfg
        else "not configured"
    )
    return f"""### {monitor.name}: {cadence.value} monitoring of `{monitor.model.name}`

{monitor.description}

Every {cadence.value} window of predictions in `{monitor.predictions.table}` is joined with labels from
`{monitor.labels.table}` on the request id. Task: **{monitor.task.value}**. Labels are expected within
**{duration_text(monitor.label_delay.expected)}**; windows stay *provisional* and are recomputed each run
(look-back {duration_text(monitor.label_delay.lookback)}) until coverage reaches
{monitor.label_delay.coverage_target:.0%} or they are older than the expected delay.

**Thresholds**
{checks or "- none configured"}

**Alert routes:** {routes}

**Retraining:** {retraining}

Trigger with config `{{"window_start": "2026-11-03T06:00:00"}}` to evaluate one specific window with the labels
known at its end (add `"labels_as_of": "now"` for the labels known now); a manual run without a logical date
evaluates the last complete window before it was triggered.
"""


def build_dag(monitor: MonitorConfig, cadence: Cadence, *, source: str | Path | None = None) -> DAG:
    """One monitoring DAG: extract_and_validate -> compute -> log_to_mlflow -> evaluate_thresholds -> notify
    (and -> plan_retraining -> trigger_retraining when the monitor has a ``retraining`` section).

    ``source`` is the monitor's file, which every task re-reads (default: ``<monitors folder>/<name>.yaml``).
    """
    settings = monitor.airflow
    name = str(source or monitors_dir() / f"{monitor.name}.yaml")
    timetable = CronTriggerTimetable(_CRON[cadence], timezone="UTC", interval=cadence.width)
    with DAG(
        dag_id=monitor.dag_id(cadence),
        schedule=timetable,
        start_date=to_naive_utc(monitor.start_date),
        catchup=False,
        max_active_runs=settings.max_active_runs or _default_max_active_runs(monitor, cadence),
        max_active_tasks=4,
        dagrun_timeout=settings.dagrun_timeout,
        deadline=deadline_alerts(monitor, cadence) or None,
        tags=["modelwatch", f"monitor:{monitor.name}", cadence.value, monitor.task.value],
        doc_md=f"{_describe(monitor, cadence)}\n**Monitor file:** `{name}`\n",
        default_args=task_defaults(monitor),
        params=run_params(cadence),
        render_template_as_native_obj=False,
    ) as dag:
        _monitoring_tasks(name, cadence, monitor.retraining)
    return dag


def run_params(cadence: Cadence) -> dict[str, Param]:
    """The params a manual run may set: one window to evaluate, and as of when to count its labels."""
    return {
        "window_start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            pattern=WINDOW_START_PATTERN,
            description=f"UTC start of one complete {cadence.value} window to evaluate, e.g. 2026-11-03T06:00:00",
        ),
        "labels_as_of": Param(
            "window_end",
            type="string",
            enum=["window_end", "now"],
            description="With window_start: count the labels known at the window's end (reproducible) "
            "or those known now (a re-evaluation after late labels)",
        ),
    }


def _monitoring_tasks(name: str, cadence: Cadence, retraining: Retraining | None) -> None:
    """The tasks of one monitoring DAG (inside its ``with DAG``), each reading the monitor file ``name``."""
    from modelwatch.airflow import tasks as steps

    @task(task_id="extract_and_validate")
    def extract_and_validate() -> list[dict]:
        return steps.extract_task(name, cadence.value)

    @task(task_id="compute")
    def compute(keys: list[dict]) -> list[dict]:
        return steps.compute_task(name, keys)

    @task(task_id="log_to_mlflow")
    def log_to_mlflow(keys: list[dict]) -> list[str]:
        return steps.log_task(name, keys)

    @task(task_id="evaluate_thresholds")
    def evaluate_thresholds(keys: list[dict]) -> dict:
        return steps.evaluate_task(name, keys)

    @task(task_id="notify")
    def notify(summary: dict) -> dict:
        return steps.notify_task(name, summary)

    keys = extract_and_validate()
    computed = compute(keys)
    logged = log_to_mlflow(computed)
    summary = evaluate_thresholds(computed)
    logged >> summary
    notify(summary)
    if retraining is not None:
        _retraining_tasks(name, retraining, summary)


def _retraining_tasks(name: str, cfg: Retraining, summary: object) -> None:
    """plan_retraining (skipped unless an alert is a sustained breach) -> trigger_retraining.

    The trigger names its run after the alert incident and skips a run that already exists, so retries
    and later breaching windows of the same incident never start a second retraining.
    """
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from modelwatch.airflow import tasks as steps

    @task(task_id="plan_retraining", multiple_outputs=True)
    def plan_retraining(summary: dict) -> dict:
        return steps.plan_retraining_task(name, summary)

    plan = plan_retraining(summary)
    TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=cfg.dag_id,
        trigger_run_id=plan["run_id"],
        conf=plan["conf"],
        logical_date=None,  # a run of its own, not competing with the target DAG's scheduled intervals
        skip_when_already_exists=True,
        wait_for_completion=False,
    )


def build_error_dag(error: MonitorConfigError) -> DAG:
    """A broken monitor file shows up in the UI as a paused DAG that explains the problem."""
    with DAG(
        dag_id=_error_dag_id(error.path),
        schedule=None,
        tags=["modelwatch", "invalid-config"],
        doc_md=f"### Invalid monitor file\n\n`{error}`\n\nFix the file; the monitor's DAGs appear once it parses.",
        is_paused_upon_creation=True,
        default_args={"owner": "modelwatch", "retries": 0},
    ) as dag:

        @task(task_id="report_config_error")
        def report_config_error() -> None:
            raise ValueError(str(error))

        report_config_error()
    return dag


def duckdb_pool(monitor: MonitorConfig) -> str | None:
    """The default one-slot pool of a monitor whose warehouse is a DuckDB file named by ``url`` alone
    (a DuckDB file takes one writer process: two tasks on it would wait on its lock)."""
    url = monitor.warehouse.url or ""
    if monitor.warehouse.conn_id or not url.startswith("duckdb:///") or url.endswith(":memory:"):
        return None
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(url.removeprefix("duckdb:///")).stem)
    return f"modelwatch_duckdb_{stem}"


def _default_max_active_runs(monitor: MonitorConfig, cadence: Cadence) -> int:
    if duckdb_pool(monitor):
        return 1
    return 4 if cadence is Cadence.HOURLY else 2


def task_defaults(monitor: MonitorConfig) -> dict[str, object]:
    """``default_args`` of the monitor's tasks, from its ``airflow:`` section."""
    settings = monitor.airflow
    defaults: dict[str, object] = {
        "owner": monitor.owner,
        "retries": settings.retries,
        "retry_delay": settings.retry_delay or RETRY_DELAY,
        "execution_timeout": settings.execution_timeout,
        "on_failure_callback": failure_notifiers(monitor),
    }
    pool = settings.pool or duckdb_pool(monitor)
    if pool:
        defaults["pool"] = pool
    if settings.queue:
        defaults["queue"] = settings.queue
    return defaults


FAILED_TEXT = (
    "modelwatch: task {{ ti.task_id }} of {{ dag.dag_id }} failed in run {{ run_id }} (out of retries or past its "
    "execution_timeout): the monitor itself needs a look"
)


def failure_notifiers(monitor: MonitorConfig, text: str = FAILED_TEXT) -> list[object]:
    """The providers' Slack and PagerDuty notifiers on the monitor's routes, sending ``text`` (a template)."""
    return [notifier(**kwargs) for notifier, kwargs in _route_notifiers(monitor, text)]


def _route_notifiers(monitor: MonitorConfig, text: str) -> list[tuple[type, dict[str, str]]]:
    routes = []
    if monitor.routes.slack:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        routes.append((SlackWebhookNotifier, {"slack_webhook_conn_id": monitor.routes.slack.conn_id, "text": text}))
    if monitor.routes.pagerduty:
        from airflow.providers.pagerduty.notifications.pagerduty import PagerdutyNotifier

        pagerduty = {
            "pagerduty_events_conn_id": monitor.routes.pagerduty.conn_id,
            "summary": text,
            "severity": "error",
            "source": f"modelwatch/{monitor.name}",
        }
        routes.append((PagerdutyNotifier, pagerduty))
    return routes


def deadline_alerts(monitor: MonitorConfig, cadence: Cadence) -> list[object]:
    """One Airflow deadline alert per route: a run still not done ``airflow.deadline`` after it was queued.

    Opt-in: ``dag.test()`` of Airflow 3.3.2 passes the serialized alerts where it expects their ids and fails
    every successful run of a DAG with a deadline (the demo and the tests run DAGs that way).
    """
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    interval = monitor.airflow.deadline
    if interval is None:
        return []
    text = f"modelwatch: a run of {monitor.dag_id(cadence)} is not done {interval} after it was queued"
    return [
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=interval,
            callback=AsyncCallback(notifier, kwargs=kwargs),
        )
        for notifier, kwargs in _route_notifiers(monitor, text)
    ]


def _parsed_monitor_file(files: list[Path]) -> list[Path]:
    """The one file a task process needs (Airflow names the DAG it runs), else all of them."""
    dag_id = get_parsing_context().dag_id
    if not dag_id:
        return files
    for path in files:
        ids = {f"modelwatch_{path.stem}_{c.value}" for c in Cadence} | {_error_dag_id(path)}
        if dag_id in ids:
            return [path]
    return files


def _error_dag_id(path: str | Path) -> str:
    return f"modelwatch_invalid_{Path(path).stem.replace('-', '_')}"


def build_dags(directory: str | Path | None = None) -> dict[str, DAG]:
    """All DAGs for the monitor files in ``directory`` (see :func:`monitors_dir`); a bad file yields its
    error DAG, not an exception.

    Raises:
        MonitorsFolderError: the folder is missing or holds no ``*.yaml``/``*.yml`` file (Airflow shows it
            as the DAG file's import error instead of silently loading no DAG).
    """
    folder = monitors_dir(directory)
    if not folder.is_dir():
        raise MonitorsFolderError(f"modelwatch: monitors folder {str(folder)!r} does not exist (or is not a folder)")
    files = monitor_files(folder)
    if not files:
        raise MonitorsFolderError(f"modelwatch: monitors folder {str(folder)!r} holds no *.yaml or *.yml file")
    dags: dict[str, DAG] = {}
    for path in _parsed_monitor_file(files):
        try:
            monitor = load_monitor(path)
        except MonitorConfigError as error:
            log.error("modelwatch: skipping monitor file: %s", error)
            dags[_error_dag_id(path)] = build_error_dag(error)
            continue
        for cadence in monitor.cadences:
            dags[monitor.dag_id(cadence)] = build_dag(monitor, cadence, source=path.resolve())
    return dags
