"""Shared setup of the tests that run real DAGs: a churn monitor that alerts, and receiver connections."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

CHURN_YAML = Path(__file__).resolve().parents[1] / "include" / "monitors" / "churn.yaml"


def write_breaching_churn_monitor(
    directory: Path, *, start: datetime, min_samples: int, traffic_stopped: bool, **overrides: Any
) -> Path:
    """The shipped churn monitor, hourly only, from ``start``, with one critical rule every window breaks.

    Demo scores reach an AUC of about 0.85, so a 0.99 floor breaches in every judged window: alerts exist.
    ``overrides`` replace top-level keys (e.g. ``cadences``, ``retraining``).
    """
    raw = yaml.safe_load(CHURN_YAML.read_text())
    raw["start_date"] = start.isoformat()
    raw["cadences"] = ["hourly"]
    rule = {"type": "absolute", "min": 0.99, "severity": "critical"}
    raw["checks"] = [{"metric": "roc_auc", "min_samples": min_samples, "min_coverage": 0.0, "rules": [rule]}]
    raw["operational"] = {"traffic_stopped": traffic_stopped, "labels_stalled": False}
    raw.update(overrides)
    path = directory / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def receiver_connections(slack: Any, pagerduty: Any, *, routing_key: str) -> dict[str, str]:
    """AIRFLOW_CONN_* variables pointing the monitor's Slack and PagerDuty routes at local receivers."""
    slack_conn = {"conn_type": "slackwebhook", "password": f"{slack.url}/services/T0/B0/secret"}
    pagerduty_conn = {
        "conn_type": "pagerduty_events",
        "host": pagerduty.url,
        "password": routing_key,
        "extra": {"ca_bundle": str(pagerduty.ca_file)},
    }
    return {
        "AIRFLOW_CONN_MODELWATCH_SLACK": json.dumps(slack_conn),
        "AIRFLOW_CONN_MODELWATCH_PAGERDUTY": json.dumps(pagerduty_conn),
    }


def postgres_connection(url: str, **extra: Any) -> str:
    """A ``postgres``-type Airflow connection (as JSON for ``AIRFLOW_CONN_*``) to the database at ``url``."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    connection = {
        "conn_type": "postgres",
        "host": parsed.host,
        "port": parsed.port or 5432,
        "login": parsed.username,
        "password": parsed.password or "",
        "schema": parsed.database,
        "extra": extra,
    }
    return json.dumps(connection)
