"""The plugin as Airflow loads it (a fresh process with its own Airflow home) and its link logic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "plugins"
RUN_URL = "http://127.0.0.1:5000/#/experiments/3/runs/abc123"


def _airflow_env(home: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PLUGINS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
        }
    )
    return env


def _run(script: str, home: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=_airflow_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plugin_module():
    # Imported the way Airflow does it: the plugins folder is on sys.path.
    sys.path.insert(0, str(PLUGINS))
    try:
        import modelwatch_plugin

        yield modelwatch_plugin
    finally:
        sys.path.remove(str(PLUGINS))


def test_airflow_loads_the_plugin_cheaply(tmp_path: Path) -> None:
    out = _run(
        """
        import json, sys
        from airflow import plugins_manager
        links = plugins_manager.get_global_operator_extra_links()
        names = [p.name for p in plugins_manager._get_plugins()[0]]
        heavy = [m for m in ("mlflow", "matplotlib", "pandas", "modelwatch") if m in sys.modules]
        print(json.dumps({"links": [l.name for l in links], "plugins": names, "heavy": heavy}))
        """,
        tmp_path,
    )
    assert out == {"links": ["MLflow run"], "plugins": ["modelwatch"], "heavy": []}


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


@pytest.mark.integration
def test_link_reads_real_xcom_from_metadata_db(tmp_path: Path) -> None:
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        env=_airflow_env(tmp_path),
        check=True,
        capture_output=True,
        timeout=600,
    )
    out = _run(
        f"""
        import json
        from datetime import datetime, timezone
        from airflow import plugins_manager
        from airflow.models.dag import DagModel
        from airflow.models.dagbundle import DagBundleModel
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstancekey import TaskInstanceKey
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from airflow.utils.types import DagRunType

        when = datetime(2026, 11, 3, 7, tzinfo=timezone.utc)
        dag_id, run_id = "modelwatch_churn_hourly", "scheduled__2026-11-03T07:00:00+00:00"
        with create_session() as session:
            session.add(DagBundleModel(name="dags-folder"))
            session.flush()
            session.add(DagModel(dag_id=dag_id, bundle_name="dags-folder"))
            session.flush()
            session.add(DagRun(dag_id=dag_id, run_id=run_id, run_type=DagRunType.SCHEDULED,
                               logical_date=when, run_after=when, state="success"))
            session.flush()
            XComModel.set("mlflow_run_url", {RUN_URL!r}, dag_id=dag_id, task_id="log_to_mlflow",
                          run_id=run_id, session=session)
        [link] = plugins_manager.get_global_operator_extra_links()
        key = lambda task_id, run=run_id: TaskInstanceKey(dag_id, task_id, run, 1)
        print(json.dumps({{
            "own": link.get_link(None, ti_key=key("log_to_mlflow")),
            "other_run": link.get_link(None, ti_key=key("log_to_mlflow", "manual__x")),
        }}))
        """,
        tmp_path,
    )
    assert out == {"own": RUN_URL, "other_run": ""}
