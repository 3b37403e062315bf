"""Run the monitoring DAGs for real, in-process, against a local Airflow home (demo, tests).

Call :func:`configure` before anything imports airflow: Airflow reads its configuration at import.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
IN_PROCESS_ENV = "MODELWATCH_IN_PROCESS_RUNNER"
"""Tells the tasks that this runner writes the run's note (``modelwatch.airflow.tasks.evaluate_task``)."""


def configure(airflow_home: Path, *, dags_folder: Path | None = None, database_url: str | None = None) -> None:
    """Point Airflow at ``airflow_home`` (its own SQLite metadata DB unless ``database_url`` is given)."""
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder or REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url or f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
    }
    os.environ.update(env)
    include = str(REPO_ROOT / "include")
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if include not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([include, *paths])


def migrate(airflow_home: Path) -> None:
    """``airflow db migrate`` once per Airflow home (a marker file skips it afterwards)."""
    marker = airflow_home / ".migrated"
    if marker.exists():
        return
    airflow = Path(sys.executable).with_name("airflow")
    command = [str(airflow)] if airflow.exists() else [sys.executable, "-m", "airflow"]
    subprocess.run([*command, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    marker.touch()


def serialize_dags() -> list[str]:
    """Parse the dags folder and store the serialized DAGs, as the dag-processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.utils.session import create_session

    manager = DagBundlesManager()
    with create_session() as session:
        manager.sync_bundles_to_db(session=session)
    dag_ids: list[str] = []
    for bundle in manager.get_all_dag_bundles():
        bundle.initialize()
        bag = BundleDagBag(bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")
        with create_session() as session:
            sync_bag_to_db(bag, bundle.name, bundle_version=None, session=session)
        dag_ids.extend(bag.dag_ids)
    return dag_ids


def load_dags() -> dict[str, object]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return dict(bag.dags)


class _TaskLogCapture(logging.Handler):
    """modelwatch's log records of each task, while ``dag.test`` runs the tasks in this process.

    A worker writes each task's log to the file the UI reads; ``dag.test`` only prints it, so the UI said
    "Log file not found" for every demo run. The records are kept per task (the running task is Airflow's
    current context) and written to that task's log file afterwards (:func:`_write_task_logs`); records at
    the console's level still reach the console.
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: dict[tuple[str, int], list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        import json

        from airflow.sdk import get_current_context

        root = logging.getLogger()
        if record.levelno >= root.getEffectiveLevel():
            for handler in root.handlers:
                if record.levelno >= handler.level:
                    handler.handle(record)
        try:
            ti = get_current_context()["ti"]
        except Exception:  # outside a task (parsing, the runner itself)
            return
        line = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        self.lines.setdefault((ti.task_id, ti.map_index), []).append(json.dumps(line))


def _write_task_logs(dag_run: object, capture: _TaskLogCapture) -> None:
    """Append each task's captured lines to the log file Airflow's UI reads for its try."""
    import json

    from airflow.configuration import conf
    from airflow.utils.log.file_task_handler import FileTaskHandler
    from airflow.utils.session import create_session

    base = Path(conf.get("logging", "base_log_folder"))
    handler = FileTaskHandler(str(base))
    with create_session() as session:
        for ti in dag_run.get_task_instances(session=session):  # type: ignore[attr-defined]
            path = base / handler._render_filename(ti, ti.try_number, session=session)
            head = {
                "timestamp": (ti.start_date or datetime.now(UTC)).isoformat(),
                "level": "info",
                "event": f"{ti.task_id} ran in-process (dag.test, the demo's runner); modelwatch's log lines follow",
            }
            lines = [json.dumps(head), *capture.lines.get((ti.task_id, ti.map_index), [])]
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")


def run_dag(dag: object, *, run_after: datetime, run_conf: dict | None = None) -> str:
    """One real DAG run (``dag.test``) whose trigger time is ``run_after``; returns the run's state.

    modelwatch's log lines of each task land in the task's log file, so the Airflow UI shows them.
    """
    from modelwatch.core.windows import as_utc

    when = as_utc(run_after)
    capture = _TaskLogCapture()
    logger = logging.getLogger("modelwatch")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(capture)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the capture forwards what the console would have shown
    os.environ[IN_PROCESS_ENV] = "1"
    try:
        dag_run = dag.test(logical_date=when, run_after=when, run_conf=run_conf)  # type: ignore[attr-defined]
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.propagate = propagate
        os.environ.pop(IN_PROCESS_ENV, None)
    _write_task_logs(dag_run, capture)
    _write_note(dag_run)
    return str(dag_run.state)


def _write_note(dag_run: object) -> None:
    """The run's note from ``evaluate_thresholds``' return value, as the REST API would set it."""
    from airflow.models import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(
            run_id=dag_run.run_id,  # type: ignore[attr-defined]
            key="return_value",
            dag_ids=dag_run.dag_id,  # type: ignore[attr-defined]
            task_ids="evaluate_thresholds",
        )
        summary = session.execute(query).scalars().first()
        value = XComModel.deserialize_value(summary) if summary is not None else None
        if not isinstance(value, dict) or not value.get("note"):
            return
        run = session.query(DagRun).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).one()  # type: ignore[attr-defined]
        run.note = value["note"]
