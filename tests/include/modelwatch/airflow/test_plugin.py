"""The plugin as Airflow loads it (its ``airflow.plugins`` entry point, a fresh process with its own Airflow
home) and its link logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
RUN_URL = "http://127.0.0.1:5000/#/experiments/3/runs/abc123"


def _entry_point_path(home: Path) -> str:
    """A folder for PYTHONPATH that declares pyproject's ``airflow.plugins`` entry point, unless the installed
    modelwatch distribution already does (an install made before the entry point existed does not)."""
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["airflow.plugins"]
    if any(ep.value == declared["modelwatch"] for ep in entry_points(group="airflow.plugins")):
        return ""
    dist = home / "entrypoint" / "modelwatch_plugin_entrypoint-0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: modelwatch-plugin-entrypoint\nVersion: 0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in declared.items())
    (dist / "entry_points.txt").write_text(f"[airflow.plugins]\n{lines}")
    return str(dist.parent)


def _airflow_env(home: Path) -> dict[str, str]:
    env = os.environ.copy()
    empty_plugins = home / "plugins"
    empty_plugins.mkdir(exist_ok=True)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(empty_plugins),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
            "PYTHONPATH": os.pathsep.join(filter(None, [_entry_point_path(home), str(REPO / "include")])),
        }
    )
    return env


def _run(script: str, home: Path, extra_env: dict[str, str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=_airflow_env(home) | (extra_env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plugin_module():
    from modelwatch.airflow import plugin

    return plugin


def test_airflow_loads_the_plugin_cheaply(tmp_path: Path) -> None:
    out = _run(
        """
        import json, sys
        from airflow import plugins_manager
        links = plugins_manager.get_global_operator_extra_links()
        names = [p.name for p in plugins_manager._get_plugins()[0]]
        heavy = [m for m in ("mlflow", "matplotlib", "pandas", "modelwatch.core.config")
                 if m in sys.modules]
        errors = plugins_manager._get_plugins()[1]
        print(json.dumps({"links": [l.name for l in links], "plugins": names, "heavy": heavy, "errors": errors}))
        """,
        tmp_path,
    )
    assert out == {"links": ["MLflow run"], "plugins": ["modelwatch"], "heavy": [], "errors": {}}


def test_link_only_on_log_to_mlflow(plugin_module, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.taskinstancekey import TaskInstanceKey

    stored = {"log_to_mlflow": json.dumps(RUN_URL), "grp.log_to_mlflow": json.dumps([RUN_URL + "0", RUN_URL])}
    monkeypatch.setattr(plugin_module, "read_xcom", lambda ti_key, key: stored.get(ti_key.task_id))
    link = plugin_module.MLflowRunLink()
    assert link.name == "MLflow run" and link.xcom_key == "mlflow_run_url"

    def key(task_id: str) -> TaskInstanceKey:
        return TaskInstanceKey("modelwatch_churn_hourly", task_id, "scheduled__2026-11-03T07:00:00+00:00", 1)

    assert link.get_link(None, ti_key=key("log_to_mlflow")) == RUN_URL
    assert link.get_link(None, ti_key=key("grp.log_to_mlflow")) == RUN_URL
    assert link.get_link(None, ti_key=key("evaluate")) == ""


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (json.dumps(RUN_URL), RUN_URL),
        (RUN_URL, RUN_URL),
        (json.dumps(RUN_URL).encode(), RUN_URL),
        (None, ""),
        (json.dumps("javascript:alert(1)"), ""),
        (json.dumps({"url": RUN_URL}), ""),
        (json.dumps("not a url"), ""),
    ],
)
def test_as_link(plugin_module, raw: object, expected: str) -> None:
    assert plugin_module.as_link(raw) == expected


LINK_DAG = f"""
from datetime import datetime, timezone

from airflow.sdk import dag, task


@dag(dag_id="mw_link_test", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc))
def pipeline():
    @task
    def log_to_mlflow(ti=None):
        ti.xcom_push(key="mlflow_run_url", value={RUN_URL!r})

    @task
    def evaluate():
        return 1

    log_to_mlflow() >> evaluate()


pipeline()
"""


@pytest.mark.integration
def test_link_on_a_real_dag_run(tmp_path: Path) -> None:
    """A TaskFlow ``log_to_mlflow`` task pushes the URL in a real DAG run; the API server's code path returns it."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "mw_link_test.py").write_text(LINK_DAG)
    env = {"AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags")}
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), "db", "migrate"], env=_airflow_env(tmp_path) | env, check=True, capture_output=True)
    out = _run(
        """
        import json
        from airflow.models.serialized_dag import SerializedDagModel
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from modelwatch.airflow.runner import load_dags, serialize_dags

        serialize_dags()
        run = load_dags()["mw_link_test"].test()
        serialized = SerializedDagModel.get_dag("mw_link_test")
        links = {}
        with create_session() as session:
            for task_id in ("log_to_mlflow", "evaluate"):
                ti = session.scalar(select(TaskInstance).where(
                    TaskInstance.dag_id == "mw_link_test", TaskInstance.run_id == run.run_id,
                    TaskInstance.task_id == task_id))
                operator = serialized.get_task(task_id)
                links[task_id] = {name: operator.get_extra_links(ti, name) for name in operator.extra_links}
        print(json.dumps({"state": str(run.state), "links": links}))
        """,
        tmp_path,
        env,
    )
    assert out["state"] == "success"
    assert out["links"] == {"log_to_mlflow": {"MLflow run": RUN_URL}, "evaluate": {"MLflow run": ""}}
