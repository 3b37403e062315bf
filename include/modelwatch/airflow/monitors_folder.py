"""Where the monitor files are, and a monitor's current definition from its file.

Its own module (not the DAG factory's) so that the task adapters, the plugin and the CLI can ask for the
configuration without importing the DAG factory, and the DAG factory can import the tasks without a cycle.
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

from modelwatch.core.config import MonitorConfig, load_monitor, load_monitors

log = logging.getLogger(__name__)

MONITORS_DIR_ENV = "MODELWATCH_MONITORS_DIR"
_CHECKOUT_MONITORS = Path(__file__).resolve().parents[2] / "monitors"
"""``include/monitors`` of a source checkout (the demo's); an installed package has none."""


class MonitorsFolderError(RuntimeError):
    """No usable monitors folder: raised while the DAG file is parsed, so Airflow shows an import error."""


def monitors_dir(directory: str | Path | None = None) -> Path:
    """The monitors folder: ``directory``, else Airflow's ``[modelwatch] monitors_dir`` (env
    ``AIRFLOW__MODELWATCH__MONITORS_DIR``), else env ``MODELWATCH_MONITORS_DIR``, else a checkout's
    ``include/monitors``.

    Raises:
        MonitorsFolderError: none of them is set (an installed package ships no monitors).
    """
    if directory is not None:
        return Path(directory)
    from airflow.sdk.configuration import conf

    configured = conf.get("modelwatch", "monitors_dir", fallback=None) or os.environ.get(MONITORS_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    if _CHECKOUT_MONITORS.is_dir():
        return _CHECKOUT_MONITORS
    raise MonitorsFolderError(
        "modelwatch: no monitors folder configured: set [modelwatch] monitors_dir in airflow.cfg (or env "
        'AIRFLOW__MODELWATCH__MONITORS_DIR), or pass it to build_dags("/path/to/monitors")'
    )


def valid_monitors(directory: str | Path | None = None) -> list[MonitorConfig]:
    """Every valid monitor of the monitors folder (:func:`monitors_dir`); an invalid file is logged and
    skipped (it has its own paused DAG carrying the message)."""
    monitors, errors = load_monitors(monitors_dir(directory))
    for error in errors:
        log.warning("skipped %s", error)
    return monitors


def monitor_from_file(source: str | Path) -> MonitorConfig:
    """The monitor's current definition from its file: parsed again only when the file changes."""
    path = Path(source)
    return _parsed_monitor(str(path), path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=128)
def _parsed_monitor(path: str, mtime_ns: int) -> MonitorConfig:
    """A pure parse keyed by (path, mtime): see docs/caching.md."""
    return load_monitor(path)
