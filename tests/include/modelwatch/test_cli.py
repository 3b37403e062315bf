"""The command line as a user runs it: a subprocess, its exit code and everything it prints."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
CHURN = REPO / "include" / "monitors" / "churn.yaml"


def _modelwatch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "include"), **(env or {})}
    env.pop("MODELWATCH_WAREHOUSE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "modelwatch", *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_evaluate_against_an_unreachable_warehouse_prints_one_line_without_the_password():
    port = _closed_port()
    url = f"postgresql+psycopg://mw:s3cret@127.0.0.1:{port}/warehouse"
    done = _modelwatch(
        "evaluate", "--config", str(CHURN), "--start", "2026-11-03T08:00", "--end", "2026-11-03T09:00", "--url", url
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: warehouse postgresql+psycopg://mw:***@127.0.0.1:{port}/warehouse unreachable: ")
    assert "Connection refused" in lines[0] and "s3cret" not in done.stderr


def test_validate_refuses_a_duplicate_key_and_a_trailing_newline_identifier(tmp_path):
    text = CHURN.read_text()
    duplicated = tmp_path / "dup" / "churn.yaml"
    duplicated.parent.mkdir()
    duplicated.write_text(text.replace("\nname: churn\n", "\nname: churn\nname: churn\n", 1))
    newline = tmp_path / "nl" / "churn.yaml"
    newline.parent.mkdir()
    newline.write_text(text.replace("table: churn_predictions", 'table: "churn_predictions\\n"', 1))
    done = _modelwatch("validate", str(duplicated), str(newline))
    assert done.returncode == 1
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith(f"INVALID {duplicated}: key '<file>': duplicate key 'name' at lines ")
    assert errors[1].startswith(f"INVALID {newline}: key 'predictions.table': expected an SQL identifier")


def _monitor_file(directory: Path, name: str, warehouse: dict) -> Path:
    import yaml

    raw = yaml.safe_load(CHURN.read_text())
    raw["name"], raw["warehouse"] = name, warehouse
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_db_migrate_creates_every_warehouse_once_and_mlflow_schema(tmp_path, postgres_schema):
    import sqlalchemy as sa

    url, schema = postgres_schema
    monitors = tmp_path / "monitors"
    monitors.mkdir()
    _monitor_file(monitors, "churn", {"url": url, "results_schema": schema})
    _monitor_file(monitors, "churn_eu", {"url": url, "results_schema": schema})
    _monitor_file(monitors, "delivery", {"url": f"duckdb:///{tmp_path / 'delivery.duckdb'}"})
    mlflow_db = tmp_path / "mlflow.db"
    env = {
        "AIRFLOW__MODELWATCH__MONITORS_DIR": str(monitors),
        "MODELWATCH_MONITORS_DIR": str(monitors),
        "MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_db}",
    }
    first = _modelwatch("db", "migrate", env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert lines == [
        f"warehouse {url} schema {schema} (churn, churn_eu): 8 tables ready",
        f"warehouse duckdb:///{tmp_path / 'delivery.duckdb'} (delivery): 8 tables ready",
        f"mlflow sqlite:///{mlflow_db}: schema ready",
    ]
    engine = sa.create_engine(url)
    tables = set(sa.inspect(engine).get_table_names(schema=schema))
    engine.dispose()
    assert {"modelwatch_alerts", "modelwatch_alert_outbox", "modelwatch_metric_results"} <= tables
    mlflow = sa.create_engine(f"sqlite:///{mlflow_db}")
    assert {"experiments", "runs", "alembic_version"} <= set(sa.inspect(mlflow).get_table_names())
    mlflow.dispose()
    again = _modelwatch("db", "migrate", env=env)
    assert (again.returncode, again.stdout) == (0, first.stdout), again.stderr
