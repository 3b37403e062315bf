from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORS = REPO / "include" / "monitors"


def _bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(str(REPO / "dags"))


def test_every_monitor_gets_an_hourly_and_a_daily_dag():
    bag = _bag()
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == [
        "modelwatch_churn_daily",
        "modelwatch_churn_hourly",
        "modelwatch_delivery_daily",
        "modelwatch_delivery_hourly",
    ]


@pytest.mark.parametrize("dag_id", ["modelwatch_churn_hourly", "modelwatch_delivery_daily"])
def test_dag_has_tags_retries_docs_and_a_real_window(dag_id):
    dag = _bag().dags[dag_id]
    assert "modelwatch" in dag.tags
    assert dag.doc_md and "Thresholds" in dag.doc_md
    assert dag.max_active_runs >= 1
    assert "window_start" in dag.params
    width = timedelta(hours=1) if dag_id.endswith("hourly") else timedelta(days=1)
    assert dag.timetable.interval == width
    assert [t.task_id for t in dag.topological_sort()] == [
        "extract_and_validate",
        "compute",
        "log_to_mlflow",
        "evaluate_thresholds",
        "notify",
    ]
    for task in dag.tasks:
        assert task.retries >= 2
        assert task.retry_delay > timedelta(0)


def test_broken_yaml_is_reported_and_the_other_dags_still_load(tmp_path, monkeypatch):
    (tmp_path / "churn.yaml").write_text((MONITORS / "churn.yaml").read_text())
    broken = yaml.safe_load((MONITORS / "delivery.yaml").read_text())
    broken["predictions"]["timestamp"] = "not a column!"
    (tmp_path / "delivery.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("MODELWATCH_MONITORS_DIR", str(tmp_path))
    bag = _bag()
    assert bag.import_errors == {}
    assert {"modelwatch_churn_hourly", "modelwatch_churn_daily", "modelwatch_invalid_delivery"} == set(bag.dag_ids)
    assert "predictions.timestamp" in bag.dags["modelwatch_invalid_delivery"].doc_md


def test_parsing_the_dag_file_imports_nothing_heavy():
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]);"
        "heavy = sorted(m for m in ('mlflow', 'sklearn', 'duckdb', 'scipy', 'matplotlib', 'pandas')"
        " if m in sys.modules); print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "modelwatch_dags.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])
