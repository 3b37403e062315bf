"""Installed as a team would: the wheel in a fresh virtualenv, a two-line DAG file in a dags folder outside the
repository, the warehouse as a ``postgres`` connection from the environment, results in their own schema.

Nothing of the repository is on the path of the Airflow process: it sees only what the wheel installs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelwatch.demo.data import DemoSpec, churn_frames
from modelwatch.warehouse.engine import load_frame, make_engine
from tests.monitor_setup import postgres_connection, write_breaching_churn_monitor

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 1)
SPEC = DemoSpec(start=T0, days=1, rows_per_hour=300, seed=5, incident_day=0)
RESULTS_SCHEMA = "modelwatch_results"

DAG_FILE = """\
from modelwatch.airflow.dag_factory import build_dags  # the Airflow DAGs of the monitors folder
globals().update(build_dags())
"""

RUN_HOURS = """
import json, sys
from datetime import datetime
from pathlib import Path
from airflow import plugins_manager
import modelwatch
from modelwatch.airflow import runner as airflow_runner

airflow_runner.migrate(Path(sys.argv[1]))
dag_ids = airflow_runner.serialize_dags()
dag = airflow_runner.load_dags()["modelwatch_churn_hourly"]
states = [airflow_runner.run_dag(dag, run_after=datetime(2026, 11, 1, hour)) for hour in (1, 2)]
plugins = [p.name for p in plugins_manager._get_plugins()[0]]
print(json.dumps({"dag_ids": sorted(dag_ids), "states": states, "plugins": plugins, "module": modelwatch.__file__}))
"""

IMPORT_ERRORS = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
print(json.dumps({"dag_ids": sorted(bag.dag_ids), "errors": [str(e) for e in bag.import_errors.values()]}))
"""


def _run(command: list[str], *, env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command[:3])} exited {done.returncode}:\n{done.stderr[-5000:]}"
    return done.stdout


def _fresh_install(tmp_path: Path) -> Path:
    """Build the wheel from a copy of the sources, install it with Airflow into a new virtualenv; its python."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "include" / "modelwatch", source / "include" / "modelwatch")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)], env=env,
         cwd=tmp_path, timeout=300)  # fmt: skip
    (wheel,) = wheels.glob("modelwatch-*.whl")
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], env=env, cwd=tmp_path, timeout=120)
    python = venv / "bin" / "python"
    # A deployment's Airflow, its own constraints (here the demo's), and the package with its postgres extra.
    install = ["-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), "apache-airflow", "mlflow"]
    _run([str(python), *install, f"{wheel}[postgres]"], env=env, cwd=tmp_path, timeout=900)
    return python


def _deployment_env(tmp_path: Path, monitors: Path, warehouse_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWATCH_", "AIRFLOW", "MLFLOW_"))}
    env.pop("PYTHONPATH", None)
    (tmp_path / "plugins").mkdir()
    return env | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(tmp_path / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW__MODELWATCH__MONITORS_DIR": str(monitors),
        # An ordinary Postgres extra (cursor) is for the hook, never passed to the driver.
        "AIRFLOW_CONN_MW_WAREHOUSE": postgres_connection(warehouse_url, cursor="dictcursor"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }


@pytest.mark.integration
@pytest.mark.postgres
@pytest.mark.timeout(1500)
def test_the_wheel_runs_in_a_fresh_airflow(tmp_path: Path, fresh_database) -> None:
    python = _fresh_install(tmp_path)
    warehouse_url = fresh_database("install")
    warehouse = make_engine(warehouse_url)
    predictions, labels = churn_frames(SPEC)
    load_frame(warehouse, "churn_predictions", predictions)
    load_frame(warehouse, "churn_labels", labels)

    monitors = tmp_path / "monitors"
    monitors.mkdir()
    written = write_breaching_churn_monitor(
        monitors,
        start=T0,
        min_samples=20,
        traffic_stopped=False,
        warehouse={"conn_id": "mw_warehouse", "results_schema": RESULTS_SCHEMA},
        routes={},
        airflow={"retries": 0, "execution_timeout": "10m"},
    )
    written.rename(written.with_suffix(".yml"))
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "modelwatch.py").write_text(DAG_FILE)
    env = _deployment_env(tmp_path, monitors, warehouse_url)

    out = json.loads(_run([str(python), "-c", RUN_HOURS, env["AIRFLOW_HOME"]], env=env, cwd=tmp_path,
                          timeout=900).splitlines()[-1])  # fmt: skip
    assert out["module"].startswith(str(tmp_path / "venv")), out["module"]  # the wheel's copy, not the repo's
    assert out["dag_ids"] == ["modelwatch_churn_hourly"]
    assert out["states"] == ["success", "success"]
    assert "modelwatch" in out["plugins"]  # the entry point; the plugins folder is empty

    with warehouse.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT table_schema, table_name FROM information_schema.tables WHERE table_name LIKE :p"),
            {"p": "modelwatch%"},
        ).all()
        windows = conn.execute(
            sa.text(f"SELECT count(DISTINCT window_start) FROM {RESULTS_SCHEMA}.modelwatch_metric_results")
        ).scalar_one()
    assert tables and {schema for schema, _ in tables} == {RESULTS_SCHEMA}, tables
    assert windows == 2

    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("modelwatch/churn").experiment_id])
    assert len(runs) == 2
    assert {run.info.status for run in runs} == {"FINISHED"}
    assert {run.data.tags["mlflow.source.name"] for run in runs} == {"airflow:modelwatch_churn_hourly"}

    empty = tmp_path / "empty"
    empty.mkdir()
    bag = json.loads(
        _run([str(python), "-c", textwrap.dedent(IMPORT_ERRORS), str(dags)],
             env=env | {"AIRFLOW__MODELWATCH__MONITORS_DIR": str(empty)}, cwd=tmp_path, timeout=300).splitlines()[-1]
    )  # fmt: skip
    assert bag["dag_ids"] == []
    assert len(bag["errors"]) == 1 and "holds no *.yaml or *.yml file" in bag["errors"][0], bag
