"""Builds ``modelwatch_<monitor>_hourly`` / ``_daily`` DAGs from the monitor YAML files.

Parse-time cost is kept small: only airflow.sdk and the config models are imported here; the warehouse,
metrics, MLflow and provider code is imported inside the tasks (modelwatch.airflow_tasks).
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from modelwatch.config import Cadence, MonitorConfig, MonitorConfigError, Retraining, load_monitors
from modelwatch.windows import WINDOW_START_PATTERN

log = logging.getLogger(__name__)

_CRON = {Cadence.HOURLY: "0 * * * *", Cadence.DAILY: "0 0 * * *"}
RETRIES = 2
RETRY_DELAY = timedelta(seconds=float(os.environ.get("MODELWATCH_RETRY_DELAY_SECONDS", "120")))
"""Demo and tests lower it so a failing task fails the run in seconds instead of minutes."""


def _describe(monitor: MonitorConfig, cadence: Cadence) -> str:
    checks = "\n".join(
        f"- **{check.metric}**: "
        + "; ".join(
            f"{rule.type} {'min ' + str(rule.min) if rule.min is not None else ''}"
            f"{' max ' + str(rule.max) if rule.max is not None else ''}"
            f"{' drop > ' + str(rule.max_drop) if rule.max_drop else ''} -> {rule.severity}"
            for rule in check.rules
        )
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
        f"triggers `{cfg.dag_id}` once per incident when a {cfg.min_severity.value} alert has breached "
        f"{cfg.after_breaches} windows"
        if cfg
        else "not configured"
    )
    return f"""### {monitor.name}: {cadence.value} monitoring of `{monitor.model.name}`

{monitor.description}

Every {cadence.value} window of predictions in `{monitor.predictions.table}` is joined with labels from
`{monitor.labels.table}` on the request id. Task: **{monitor.task.value}**. Labels are expected within
**{monitor.label_delay.expected}**; windows stay *provisional* and are recomputed each run (look-back
{monitor.label_delay.lookback}) until coverage reaches {monitor.label_delay.coverage_target:.0%} or they are
older than the expected delay.

**Thresholds**
{checks or "- none configured"}

**Alert routes:** {routes}

**Retraining:** {retraining}

Trigger with config `{{"window_start": "2026-11-03T06:00:00"}}` to evaluate one specific window; a manual
run without a logical date evaluates the last complete window before it was triggered.
"""


def build_dag(monitor: MonitorConfig, cadence: Cadence) -> DAG:
    """One monitoring DAG: extract_and_validate -> compute -> log_to_mlflow -> evaluate_thresholds -> notify
    (and -> plan_retraining -> trigger_retraining when the monitor has a ``retraining`` section)."""
    from modelwatch import airflow_tasks as steps

    timetable = CronTriggerTimetable(_CRON[cadence], timezone="UTC", interval=cadence.width)
    with DAG(
        dag_id=monitor.dag_id(cadence),
        schedule=timetable,
        start_date=monitor.start_date.replace(tzinfo=None),
        catchup=False,
        max_active_runs=4 if cadence is Cadence.HOURLY else 2,
        max_active_tasks=4,
        tags=["modelwatch", f"monitor:{monitor.name}", cadence.value, monitor.task.value],
        doc_md=_describe(monitor, cadence),
        default_args={"owner": monitor.owner, "retries": RETRIES, "retry_delay": RETRY_DELAY},
        params={
            "window_start": Param(
                None,
                type=["null", "string"],
                format="date-time",
                pattern=WINDOW_START_PATTERN,
                description=f"UTC start of one complete {cadence.value} window to evaluate, e.g. 2026-11-03T06:00:00",
            ),
        },
        render_template_as_native_obj=False,
    ) as dag:
        name = monitor.name

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
        if monitor.retraining is not None:
            _retraining_tasks(name, monitor.retraining, summary)
    return dag


def _retraining_tasks(name: str, cfg: Retraining, summary: object) -> None:
    """plan_retraining (skipped unless an alert is a sustained breach) -> trigger_retraining.

    The trigger names its run after the alert incident and skips a run that already exists, so retries
    and later breaching windows of the same incident never start a second retraining.
    """
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

    from modelwatch import airflow_tasks as steps

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
    stem = Path(error.path).stem.replace("-", "_")
    with DAG(
        dag_id=f"modelwatch_invalid_{stem}",
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


def monitors_dir() -> Path:
    default = Path(__file__).resolve().parents[1] / "monitors"
    return Path(os.environ.get("MODELWATCH_MONITORS_DIR", default))


def build_dags(directory: str | Path | None = None) -> dict[str, DAG]:
    """All DAGs for the monitor files in ``directory``; a bad file yields its error DAG, not an exception."""
    monitors, errors = load_monitors(directory or monitors_dir())
    dags: dict[str, DAG] = {}
    for error in errors:
        log.error("modelwatch: skipping monitor file: %s", error)
        dags[f"modelwatch_invalid_{Path(error.path).stem}"] = build_error_dag(error)
    for monitor in monitors:
        for cadence in monitor.cadences:
            dags[monitor.dag_id(cadence)] = build_dag(monitor, cadence)
    return dags
