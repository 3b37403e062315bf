"""Airflow plugin: an "MLflow run" button on modelwatch's ``log_to_mlflow`` tasks, and the
"Model monitors" page (a FastAPI app mounted by the API server at ``/modelwatch``, shown in the
UI's navigation as an external view) listing every monitor with its status and incidents.

The monitoring tasks are TaskFlow ``@task`` functions, so there is no operator class of ours to
attach a link to; instead the link is registered as a *global* operator extra link, which the
API server evaluates for every task and which returns an empty URL (a disabled button) for tasks
other than ``log_to_mlflow``. The task pushes the window's run URL to XCom under
``mlflow_run_url``; the link reads it back for the task instance being viewed.

Registered as the ``airflow.plugins`` entry point ``modelwatch`` (pyproject.toml), so installing the
package is enough: no file in the plugins folder. Loaded by every Airflow component, so it imports nothing
beyond Airflow's plugin and link bases and FastAPI; the metadata-database access happens only when a link is
requested, and modelwatch itself (warehouse, MLflow) is imported only when the page is requested.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

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


OVERVIEW_PREFIX = "/modelwatch"
overview_app = FastAPI(title="modelwatch overview", docs_url=None, redoc_url=None, openapi_url=None)


async def _signed_in(request: Request) -> Response | None:
    """None for a signed-in Airflow user (JWT from the bearer header or the UI's cookie), else where to go.

    FastAPI plugin apps are not protected by Airflow's auth on their own: the page shows incident
    details, so it asks the API server's auth manager like Airflow's own routes do.
    """
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    try:
        await resolve_user_from_token(token)
    except HTTPException:
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return None


def overview_html() -> str:
    """The page: every monitor of the monitors folder, read from its warehouse and MLflow."""
    from datetime import UTC, datetime

    from modelwatch.airflow.connections import warehouse_engine
    from modelwatch.airflow.monitors_folder import valid_monitors
    from modelwatch.app.overview import load_overview, render_overview

    # The API server resolves what the page reads, as the tasks do (the Airflow connection from the metadata
    # DB or a secrets backend, else MODELWATCH_WAREHOUSE_URL, else ``url``): the overview knows no Airflow.
    overviews = load_overview(valid_monitors(), warehouse_engine)
    return render_overview(overviews, generated_at=datetime.now(UTC))


@overview_app.get("/overview", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    import asyncio

    redirect = await _signed_in(request)
    if redirect is not None:
        return redirect
    # Warehouse and MLflow clients are synchronous: keep them off the API server's event loop.
    return HTMLResponse(await asyncio.to_thread(overview_html))


class ModelwatchPlugin(AirflowPlugin):
    """Registers modelwatch's extra links and its overview page."""

    name = "modelwatch"
    global_operator_extra_links: ClassVar[list[Any]] = [MLflowRunLink()]
    fastapi_apps: ClassVar[list[Any]] = [
        {"app": overview_app, "url_prefix": OVERVIEW_PREFIX, "name": "modelwatch overview"}
    ]
    external_views: ClassVar[list[Any]] = [
        {
            "name": "Model monitors",
            "href": f"{OVERVIEW_PREFIX.lstrip('/')}/overview",
            "url_route": "modelwatch",
            "destination": "nav",
            "category": "browse",
        }
    ]
