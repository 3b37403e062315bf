"""The Airflow run's note: the window's verdict where the grid and the run's page show it (Airflow edge).

Airflow shows a DAG run's note in the grid's tooltip and on the run's page, so an incident hour reads
"**breach**: roc_auc 0.71 ..." instead of looking like every other green run. A task cannot write its
own run's note through the Execution API, so:

- in a deployment, the ``evaluate_thresholds`` task sets it through Airflow's public REST API when the
  connection :data:`NOTE_CONN_ID` exists (an HTTP connection: host = the API server's base URL, login and
  password of a user allowed to edit DAG runs); without it nothing is sent (the verdict stays in the task
  log, the task's return value, MLflow and the report);
- the in-process runner (``make demo``, tests) writes it into the metadata DB itself
  (:func:`modelwatch.airflow.runner.run_dag`).

Setting a note never fails the task: a refused or unreachable API is logged as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

NOTE_CONN_ID = "modelwatch_airflow_api"
NOTE_MAX_CHARS = 1000
"""Airflow's ``dag_run_note.content`` column holds at most 1000 characters."""
TIMEOUT_SECONDS = 10


def run_note(verdict: str, event_lines: Sequence[str]) -> str:
    """The note: the run's verdict, then one line per alert event it raised (cut to Airflow's limit)."""
    lines = [verdict]
    if event_lines:
        lines += ["", f"{len(event_lines)} alert event(s):", *(f"- {line}" for line in event_lines)]
    text = "\n".join(lines)
    return text if len(text) <= NOTE_MAX_CHARS else text[: NOTE_MAX_CHARS - 1] + "…"


def _base_url(conn: Any) -> str:
    host = (conn.host or "").rstrip("/")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    if conn.port and host.count(":") < 2:
        host = f"{host}:{conn.port}"
    return host


def post_note(dag_id: str, run_id: str, note: str, *, conn_id: str = NOTE_CONN_ID) -> bool:
    """Set the run's note through the public REST API; False when not configured or refused."""
    import httpx
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException, AirflowRuntimeError

    try:
        conn = BaseHook.get_connection(conn_id)
    except (AirflowNotFoundException, AirflowRuntimeError):
        log.debug("no connection %r: the run's note is not set", conn_id)
        return False
    base = _base_url(conn)
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT_SECONDS) as client:
            token = client.post("/auth/token", json={"username": conn.login, "password": conn.password})
            token.raise_for_status()
            headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
            path = f"/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}"
            response = client.patch(path, params={"update_mask": "note"}, json={"note": note}, headers=headers)
            response.raise_for_status()
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        log.warning("could not set the note of run %s of %s through %s: %s", run_id, dag_id, base, exc)
        return False
    log.info("run %s of %s: note set (%d characters)", run_id, dag_id, len(note))
    return True
