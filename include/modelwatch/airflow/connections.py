"""Which warehouse a monitor's tasks (and the overview page) use: an Airflow connection, else fallbacks.

Order: the Airflow connection ``warehouse.conn_id`` when it exists (built by the connection's own hook),
else env ``MODELWATCH_WAREHOUSE_URL``, else the monitor file's ``warehouse.url``. The variable stands in
for a missing connection (CLI, tests); it never overrides a defined one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from modelwatch.core.config import MonitorConfig
from modelwatch.warehouse.caching import ExpiringCache

log = logging.getLogger(__name__)

WAREHOUSE_URL_ENV = "MODELWATCH_WAREHOUSE_URL"


def warehouse_url(monitor: MonitorConfig) -> str:
    """The SQLAlchemy URL of the monitor's warehouse (see the module docstring for the order).

    Raises:
        LookupError: no connection, no ``MODELWATCH_WAREHOUSE_URL`` and no ``warehouse.url``.
        TypeError: the connection's hook builds no SQLAlchemy URL.
    """
    conn_id = monitor.warehouse.conn_id
    if conn_id:
        found = connection_url(conn_id)
        if found:
            return found
    override = os.environ.get(WAREHOUSE_URL_ENV)
    if override:
        log.info("%s: no connection %r: using %s", monitor.name, conn_id, WAREHOUSE_URL_ENV)
        return override
    if not monitor.warehouse.url:
        raise LookupError(
            f"monitor {monitor.name!r}: Airflow connection {conn_id!r} not found and no "
            "'warehouse.url' in the monitor file"
        )
    return monitor.warehouse.url


def conn_env(conn_id: str) -> str:
    """The environment variable that may define the connection ``conn_id``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


_CONNECTION_URLS: ExpiringCache[str | None] = ExpiringCache()
"""Looked up once per process and minute (the env variable's value is part of the key, so a connection
defined or changed through the environment is seen at once)."""


def connection_url(conn_id: str) -> str | None:
    """The SQLAlchemy URL of the Airflow connection ``conn_id``, or None when it is not defined (cached:
    see :data:`_CONNECTION_URLS`).

    Built by the connection's own hook (a Postgres connection's ``PostgresHook.sqlalchemy_url``, as its
    ``get_sqlalchemy_engine`` does); a Generic connection may instead carry a full URL in the extra
    ``sqlalchemy_url``.

    Raises:
        TypeError: the connection's hook builds no SQLAlchemy URL (a Slack webhook, say).
    """
    key = (conn_id, os.environ.get(conn_env(conn_id)))
    return _CONNECTION_URLS.get(key, lambda: _hook_url(conn_id))


def _hook_url(conn_id: str) -> str | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        conn = BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError):
        log.info("connection %r not defined", conn_id)
        return None
    explicit = conn.extra_dejson.get("sqlalchemy_url")
    if explicit:
        return explicit
    hook = conn.get_hook()
    try:
        url = hook.sqlalchemy_url
    except (AttributeError, NotImplementedError):
        if not hasattr(hook, "get_uri"):
            raise TypeError(
                f"connection {conn_id!r} (type {conn.conn_type!r}): its hook builds no SQLAlchemy URL; use a "
                "Postgres connection (or another SQL type) or a Generic one with the extra 'sqlalchemy_url'"
            ) from None
        return hook.get_uri()
    return url.render_as_string(hide_password=False)


def warehouse_engine(monitor: MonitorConfig) -> Any:
    """The monitor's warehouse engine (URL from :func:`warehouse_url`, its results schema and statement
    timeout): the tasks' and the overview page's (``make_engine`` keeps one engine per URL and settings)."""
    from modelwatch.warehouse.engine import make_engine

    warehouse = monitor.warehouse
    return make_engine(
        warehouse_url(monitor), results_schema=warehouse.results_schema, statement_timeout=warehouse.statement_timeout
    )
