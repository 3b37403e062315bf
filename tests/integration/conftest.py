"""Real Airflow components as subprocesses, on fresh PostgreSQL databases, for scheduler-level tests.

Airflow refuses SQLite with the LocalExecutor and DuckDB allows one writer process, so both the metadata
DB and the warehouse are fresh PostgreSQL databases (created here, dropped at teardown). Every process
started here is stopped at teardown (terminate, then kill), whatever the test did.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW = Path(sys.executable).with_name("airflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class AirflowProcesses:
    """The Airflow home, its environment and the long-running components started in it."""

    home: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 120) -> str:
        """Run ``airflow <args>`` to completion; its stdout, or an assertion error with its output."""
        done = subprocess.run(
            [str(AIRFLOW), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done.stdout

    def run(self, *argv: str, timeout: float = 300) -> str:
        """Run any command in this stack's environment to completion; its stdout, or an assertion error."""
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-4000:]}"
        return done.stdout

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """Start ``airflow <args>`` in the background (its own process group), with ``env`` added to ``self.env``."""
        out = (self.home / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            [str(AIRFLOW), *args],
            env={**self.env, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"airflow {name} exited {process.returncode}:\n{self.log_tail(name)}"

    def wait_for(self, what: str, condition: Callable[[], Any], deadline: float, *, every: float = 1.0,
                 fail: bool = True) -> Any:  # fmt: skip
        """Poll ``condition`` until it returns something truthy; at ``deadline`` fail with the components'
        logs (or return None when ``fail`` is False). A component that exited fails at once."""
        while time.monotonic() < deadline:
            self.assert_alive()
            value = condition()
            if value:
                return value
            time.sleep(every)
        if not fail:
            return None
        logs = "\n".join(f"--- {name}\n{self.log_tail(name)}" for name in self.processes)
        pytest.fail(f"timed out waiting for {what}\n{logs}\n{self.task_log_tail()}")

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def task_log_tail(self, chars: int = 6000) -> str:
        """The end of every task log, to explain a failed run."""
        logs = sorted((self.home / "logs").rglob("*.log"))
        return "\n".join(f"== {p.relative_to(self.home)}\n{p.read_text(errors='replace')[-chars:]}" for p in logs[-6:])

    def stop(self) -> None:
        """Terminate each component's process group, then kill what is still running after 20 s."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, 15)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=10)


def airflow_environment(home: Path, metadata_url: str, *, executor: str = "LocalExecutor") -> dict[str, str]:
    """The variables every component of one test's Airflow gets (the same on each: JWT secret, API URL)."""
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": executor,
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        # Airflow would derive an asyncpg URL (not installed); psycopg 3 has an async mode of its own.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url,
        # Tasks report to the Execution API; scheduler and API server must sign and check the same tokens.
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        # Only the runs the test creates: no cron-driven run may land between two snapshots.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "include"), os.environ.get("PYTHONPATH")])),
    }
    env.pop("AIRFLOW_CONFIG", None)
    return env


@pytest.fixture
def airflow_processes(tmp_path: Path, fresh_database: Callable[[str], str]) -> Iterator[AirflowProcesses]:
    """A migrated Airflow home on its own PostgreSQL metadata DB, LocalExecutor; components started by the test.

    The test adds its own variables (warehouse, MLflow, monitors) to ``env`` before starting components.
    """
    if not AIRFLOW.exists():
        pytest.skip(f"no airflow executable next to {sys.executable}")
    home = tmp_path / "airflow"
    home.mkdir()
    stack = AirflowProcesses(home=home, env=airflow_environment(home, fresh_database("airflow")))
    stack.cli("db", "migrate", timeout=300)
    try:
        yield stack
    finally:
        stack.stop()
