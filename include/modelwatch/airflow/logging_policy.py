"""What a run sends to MLflow: which windows get a run update, what each carries, under which lock.

A run logs its own window (the last) and, of the earlier windows it recomputed, those
:func:`worth_a_run_update`: a window's first, breaching and final revisions. Every revision is in the
warehouse (``modelwatch_metric_results``); intermediate recomputations would cost ~80 ms each for no
reader. Each run carries the rule statuses of its window (:func:`rule_statuses`) and the Airflow run that
logged it (:func:`run_context`), and is written under its window's lock (:func:`mlflow_lock_name`) so two
runs recomputing one window never create two MLflow runs for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from modelwatch.core.config import MonitorConfig, Status

AIRFLOW_BASE_URL_ENV = "AIRFLOW__API__BASE_URL"
DEFAULT_AIRFLOW_BASE_URL = "http://localhost:8080"


def worth_a_run_update(monitor: MonitorConfig, result: Any) -> bool:
    """True for a window's first, breaching or final revision (see the module docstring)."""
    from modelwatch.app.pipeline import breaches_absolute

    return result.revision == 0 or result.status is Status.FINAL or breaches_absolute(monitor, result.metrics)


def windows_to_log(monitor: MonitorConfig, results: Sequence[Any]) -> list[Any]:
    """The results a run logs to MLflow, in order: the earlier ones :func:`worth_a_run_update`, and its own
    (the last) whatever its revision."""
    own = results[-1]
    return [result for result in results if result is own or worth_a_run_update(monitor, result)]


def rule_statuses(monitor: MonitorConfig, result: Any, *, as_of: datetime, history: list[Any]) -> list[Any]:
    """Every rule judged on ``result`` alone: the report's Status column (breach / healthy / insufficient)."""
    from modelwatch.core.alerts import evaluate_rules

    return evaluate_rules(monitor, cadence=result.cadence, as_of=as_of, results=[result], history=history)


def mlflow_lock_name(monitor: MonitorConfig, result: Any) -> str:
    """The warehouse lock a window's MLflow run is written under: one per monitor, cadence and window."""
    return f"mlflow:{monitor.name}:{result.cadence}:{result.window_start.isoformat()}"


def run_context(context: Mapping[str, Any]) -> Any:
    """The Airflow run an MLflow run records (DAG, run, try and the run's page in the Airflow UI)."""
    from modelwatch.integrations.tracking import RunContext

    ti = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    base = os.environ.get(AIRFLOW_BASE_URL_ENV, DEFAULT_AIRFLOW_BASE_URL).rstrip("/")
    dag_id = getattr(dag_run, "dag_id", None)
    run_id = getattr(dag_run, "run_id", None)
    return RunContext(
        dag_id=dag_id,
        run_id=run_id,
        try_number=getattr(ti, "try_number", None),
        airflow_url=f"{base}/dags/{dag_id}/runs/{run_id}" if dag_id and run_id else None,
    )
