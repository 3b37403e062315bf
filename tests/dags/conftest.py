"""A throw-away Airflow home for DAG tests, configured before anything imports airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="modelwatch-airflow-"))
os.environ.setdefault("MODELWATCH_RETRY_DELAY_SECONDS", "1")

from modelwatch.airflow import runner as airflow_runner  # noqa: E402

airflow_runner.configure(_HOME)


@pytest.fixture(scope="session")
def airflow_home() -> Path:
    """Migrated once per session (about 3 s); DAGs are serialized by the tests that run them."""
    airflow_runner.migrate(_HOME)
    return _HOME
