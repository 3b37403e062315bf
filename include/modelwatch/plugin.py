"""Airflow plugin: an "MLflow run" button on modelwatch's ``log_to_mlflow`` tasks.

The monitoring tasks are TaskFlow ``@task`` functions, so there is no operator class of ours to
attach a link to; instead the link is registered as a *global* operator extra link, which the
API server evaluates for every task and which returns an empty URL (a disabled button) for tasks
other than ``log_to_mlflow``. The task pushes the window's run URL to XCom under
``mlflow_run_url``; the link reads it back for the task instance being viewed.

Registered as the ``airflow.plugins`` entry point ``modelwatch`` (pyproject.toml), so installing the
package is enough: no file in the plugins folder. Loaded by every Airflow component, so it imports nothing
beyond Airflow's plugin and link bases; the metadata-database access happens only when a link is requested.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk.types import TaskInstanceKey

MLFLOW_RUN_URL_KEY = "mlflow_run_url"
LINKED_TASK_IDS = ("log_to_mlflow",)


def read_xcom(ti_key: TaskInstanceKey, key: str) -> Any:
    """The raw stored XCom value of ``key`` for one task instance, or None.

    Runs in the API server, which has the metadata database but no task-SDK supervisor, so it
    queries the XCom table directly as Airflow's own ``XComOperatorLink`` does.
    """
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=key,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    return None if row is None else row.value


def as_link(raw: Any) -> str:
    """The URL in a stored XCom value, or "" when it is missing or not an http(s) URL.

    Values are stored JSON-encoded; anything else (a ``javascript:`` URL, a dict) is refused
    because the UI renders the result as a clickable link.
    """
    value = raw
    if isinstance(raw, str | bytes):
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.decode() if isinstance(raw, bytes) else raw
    if isinstance(value, list) and value:
        value = value[-1]  # a task logging several windows: the last is its own window
    if not isinstance(value, str):
        return ""
    parts = urlsplit(value.strip())
    return value.strip() if parts.scheme in ("http", "https") and parts.netloc else ""


class MLflowRunLink(BaseOperatorLink):
    """Opens the MLflow run of the window a ``log_to_mlflow`` task instance logged."""

    name = "MLflow run"
    task_ids: ClassVar[tuple[str, ...]] = LINKED_TASK_IDS

    @property
    def xcom_key(self) -> str:
        return MLFLOW_RUN_URL_KEY

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        # Task ids inside a task group are prefixed with the group id ("monitor.log_to_mlflow").
        if ti_key.task_id.rsplit(".", 1)[-1] not in self.task_ids:
            return ""
        return as_link(read_xcom(ti_key, self.xcom_key))


class ModelwatchPlugin(AirflowPlugin):
    """Registers modelwatch's extra links."""

    name = "modelwatch"
    global_operator_extra_links: ClassVar[list[Any]] = [MLflowRunLink()]
