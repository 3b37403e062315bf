"""The Celery worker settings: Airflow's own, and a preload that a missing module does not break."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("airflow.providers.celery")

REPO = Path(__file__).resolve().parents[4]


def test_settings_are_airflows_and_preloading_skips_what_is_missing(caplog):
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

    from modelwatch.airflow import celery_config

    assert celery_config.CELERY_CONFIG == DEFAULT_CELERY_CONFIG
    assert celery_config.preload(("json", "modelwatch_no_such_module")) == ["json"]
    assert "not preloading modelwatch_no_such_module" in caplog.text


def test_a_worker_preloads_every_task_module_in_a_fresh_process():
    """What the worker_init signal runs: every listed module imports in a process that has none of them."""
    code = (
        "import sys; from modelwatch.airflow import celery_config as c; loaded = c.preload(); "
        "print(len(loaded), len(c.PRELOADED), 'mlflow.store.tracking.sqlalchemy_store' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "include"), "MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    loaded, listed, store = done.stdout.split()[-3:]
    assert (loaded, store) == (listed, "True"), done.stderr[-2000:]
