"""Celery settings for modelwatch's workers: Airflow's own, plus the task code imported once per worker.

A CeleryExecutor worker forks one process per task, and each task then imports Airflow's task runner,
modelwatch, pandas, SQLAlchemy, MLflow and matplotlib again: seconds of CPU per task, more than most
windows' computation. Imported in the worker before its pool forks, they are inherited (copy-on-write)
by every task process. Point Airflow at this module on the workers (README, "Scaling out")::

    [celery]
    celery_config_options = modelwatch.airflow.celery_config.CELERY_CONFIG

Only modules are imported: no connection, thread or file is opened before the fork.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init

log = logging.getLogger(__name__)

CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)
"""Airflow's default Celery configuration (broker, result backend, pool from ``[celery]``), unchanged."""

PRELOADED = (
    "airflow.sdk.execution_time.task_runner",
    "airflow.providers.slack.hooks.slack_webhook",
    "modelwatch.airflow.dag_factory",
    "modelwatch.airflow.tasks",
    "modelwatch.app.pipeline",
    "modelwatch.app.diagnosis",
    "modelwatch.integrations.tracking",
    "modelwatch.render.report",
    "modelwatch.integrations.notify",
    "modelwatch.app.delivery",
    "modelwatch.warehouse.alert_store",
    "modelwatch.warehouse.results_store",
    "modelwatch.warehouse.schema",
    "mlflow",
    "mlflow.tracking",
    # A database tracking store: importing it and configuring its ORM mappers costs ~7 s of CPU per process.
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "psycopg",
    "matplotlib.pyplot",
)
"""What a monitoring task imports; each is imported once in the worker process."""


def preload(names: tuple[str, ...] = PRELOADED) -> list[str]:
    """Import ``names``; those that fail are logged and skipped (a worker without MLflow still starts)."""
    loaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log.warning("modelwatch: not preloading %s: %s", name, exc)
            continue
        loaded.append(name)
    if "sqlalchemy.orm" in sys.modules:
        # Mapper configuration is in-memory work that every process would otherwise repeat on first query.
        sys.modules["sqlalchemy.orm"].configure_mappers()
    return loaded


@worker_init.connect
def _preload_in_worker(**_: Any) -> None:
    loaded = preload()
    log.info("modelwatch: preloaded %d task modules before forking task processes", len(loaded))
