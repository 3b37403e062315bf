"""Which warehouse a monitor's tasks use: the Airflow connection through its own hook, else the fallbacks.

Connections are real ``AIRFLOW_CONN_*`` variables read by Airflow's own ``BaseHook.get_connection``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from modelwatch.airflow import connections
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
    resolved = connections.warehouse_url(monitor)
    assert sa.engine.make_url(resolved).drivername == "postgresql+psycopg"
    assert "cursor" not in resolved
    engine = connections.warehouse_engine(monitor)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.current_database())).scalar_one() == sa.engine.make_url(url).database
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "10min"


def test_without_a_connection_the_env_then_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monitor = _monitor(conn_id="mw_test_warehouse", url=f"duckdb:///{tmp_path / 'fallback.duckdb'}")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'fallback.duckdb'}"
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'env.duckdb'}")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'env.duckdb'}"
    monkeypatch.delenv("MODELWATCH_WAREHOUSE_URL")
    with pytest.raises(LookupError, match="connection 'mw_test_warehouse' not found"):
        connections.warehouse_url(_monitor(conn_id="mw_test_warehouse"))


def test_a_generic_connection_may_carry_a_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'generic.duckdb'}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MW_TEST_WAREHOUSE", json.dumps({"conn_type": "generic", "extra": {"sqlalchemy_url": url}})
    )
    assert connections.warehouse_url(_monitor(conn_id="mw_test_warehouse")) == url


def test_a_connection_without_a_sql_hook_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE", json.dumps({"conn_type": "slackwebhook", "password": "x"}))
    with pytest.raises(TypeError, match="builds no SQLAlchemy URL"):
        connections.warehouse_url(_monitor(conn_id="mw_test_warehouse"))


def test_a_connection_defined_or_changed_through_the_environment_is_seen_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The lookup is cached, but keyed on the variable's value: a new value is a new answer."""
    monitor = _monitor(conn_id="mw_test_warehouse", url=f"duckdb:///{tmp_path / 'file.duckdb'}")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'file.duckdb'}"
    for name in ("first", "second"):
        url = f"duckdb:///{tmp_path / name}.duckdb"
        extra = {"conn_type": "generic", "extra": {"sqlalchemy_url": url}}
        monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE", json.dumps(extra))
        assert connections.warehouse_url(monitor) == url
    monkeypatch.delenv("AIRFLOW_CONN_MW_TEST_WAREHOUSE")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'file.duckdb'}"


def test_the_connection_variable_is_named_after_the_conn_id() -> None:
    assert connections.conn_env("mw_test_warehouse") == "AIRFLOW_CONN_MW_TEST_WAREHOUSE"


def test_without_a_conn_id_the_env_then_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monitor = _monitor(url=f"duckdb:///{tmp_path / 'own.duckdb'}")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'own.duckdb'}"
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"duckdb:///{tmp_path / 'env.duckdb'}")
    assert connections.warehouse_url(monitor) == f"duckdb:///{tmp_path / 'env.duckdb'}"


def test_the_engine_of_a_duckdb_url_is_shared_and_works(tmp_path: Path) -> None:
    """One engine per URL and settings (the per-engine caches depend on it), on a real DuckDB file."""
    monitor = _monitor(url=f"duckdb:///{tmp_path / 'wh.duckdb'}")
    engine = connections.warehouse_engine(monitor)
    assert connections.warehouse_engine(monitor) is engine
    assert engine.url.database == str(tmp_path / "wh.duckdb")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT 41 + 1")).scalar_one() == 42
    other = connections.warehouse_engine(_monitor(url=f"duckdb:///{tmp_path / 'other.duckdb'}"))
    assert other is not engine
