"""Which warehouse a monitor's tasks use: the Airflow connection through its own hook, else the fallbacks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from modelwatch.airflow import tasks as airflow_tasks
from modelwatch.core.config import parse_monitor
from tests.monitor_setup import postgres_connection

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
CHURN = yaml.safe_load((MONITORS / "churn.yaml").read_text())


def _monitor(**warehouse: object):
    return parse_monitor({**CHURN, "warehouse": warehouse})


@pytest.fixture(autouse=True)
def _no_warehouse_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE", raising=False)


def test_a_postgres_connection_is_used_through_its_hook(monkeypatch: pytest.MonkeyPatch, fresh_database) -> None:
    """A UI-style Postgres connection with ordinary hook extras (``cursor``) yields a working engine."""
    url = fresh_database("conn")
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE", postgres_connection(url, cursor="dictcursor"))
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", "duckdb:///never-used.duckdb")  # never beats a connection
    monitor = _monitor(conn_id="mw_test_warehouse", url="duckdb:///never-used.duckdb", results_schema="mw_out")
    resolved = airflow_tasks.warehouse_url(monitor)
    assert sa.engine.make_url(resolved).drivername == "postgresql+psycopg"
    assert "cursor" not in resolved
    engine = airflow_tasks.warehouse_engine(monitor)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.current_database())).scalar_one() == sa.engine.make_url(url).database
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "10min"


def test_without_a_connection_the_env_then_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monitor = _monitor(conn_id="mw_test_warehouse", url=f"duckdb:///{tmp_path / 'fallback.duckdb'}")
    assert airflow_tasks.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'fallback.duckdb'}"
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'env.duckdb'}")
    assert airflow_tasks.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'env.duckdb'}"
    monkeypatch.delenv("MODELWATCH_WAREHOUSE_URL")
    with pytest.raises(LookupError, match="connection 'mw_test_warehouse' not found"):
        airflow_tasks.warehouse_url(_monitor(conn_id="mw_test_warehouse"))


def test_a_generic_connection_may_carry_a_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'generic.duckdb'}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MW_TEST_WAREHOUSE", json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": url}})
    )
    assert airflow_tasks.warehouse_url(_monitor(conn_id="mw_test_warehouse")) == url


def test_a_connection_without_a_sql_hook_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE", json.dumps({"conn_type": "slackwebhook", "password": "x"}))
    with pytest.raises(TypeError, match="builds no SQLAlchemy URL"):
        airflow_tasks.warehouse_url(_monitor(conn_id="mw_test_warehouse"))


# run_window: which window a run evaluates, and as of when.


class _DagRun:
    def __init__(self, run_after: datetime) -> None:
        self.run_after = run_after


def test_a_scheduled_run_evaluates_its_data_interval_as_of_its_end() -> None:
    from modelwatch.airflow.tasks import run_window
    from modelwatch.core.config import Cadence

    start = datetime(2026, 11, 3, 6, tzinfo=UTC)
    window, as_of = run_window(
        {"data_interval_start": start, "data_interval_end": start + timedelta(hours=1)}, Cadence.HOURLY
    )
    assert (window.start, window.end, as_of) == (
        datetime(2026, 11, 3, 6),
        datetime(2026, 11, 3, 7),
        datetime(2026, 11, 3, 7),
    )


def test_a_manual_run_without_interval_evaluates_the_last_complete_window() -> None:
    from modelwatch.airflow.tasks import run_window
    from modelwatch.core.config import Cadence

    window, as_of = run_window({"dag_run": _DagRun(datetime(2026, 11, 3, 10, 37, tzinfo=UTC))}, Cadence.HOURLY)
    assert (window.start, as_of) == (datetime(2026, 11, 3, 9), datetime(2026, 11, 3, 10))


@pytest.mark.parametrize(
    ("labels_as_of", "expected"),
    [
        (None, datetime(2026, 11, 3, 7)),
        ("window_end", datetime(2026, 11, 3, 7)),
        ("now", datetime(2026, 11, 5, 12, 30)),
    ],
)
def test_a_requested_window_counts_labels_as_of_its_end_or_now(labels_as_of: str | None, expected: datetime) -> None:
    from modelwatch.airflow.tasks import run_window
    from modelwatch.core.config import Cadence

    params = {"window_start": "2026-11-03T06:00:00", "labels_as_of": labels_as_of}
    context = {"params": params, "dag_run": _DagRun(datetime(2026, 11, 5, 12, 30, tzinfo=UTC))}
    window, as_of = run_window(context, Cadence.HOURLY)
    assert window.start == datetime(2026, 11, 3, 6) and as_of == expected
