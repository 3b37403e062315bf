"""Which sustained breaches ask for a retraining run, and that the run id makes the trigger idempotent."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from modelwatch.core.alerts import OPEN, RESOLVED, TRAFFIC_STOPPED, AlertState, dedup_key
from modelwatch.core.config import MonitorConfigError
from modelwatch.core.retraining import plan_retraining
from tests.include.modelwatch.core.test_alerts import HOUR, T0, monitor_config

RETRAIN = {"dag_id": "retrain_churn", "after_breaches": 3, "conf": {"training_days": 14}}
ROC = dedup_key("churn", "hourly", "roc_auc", "absolute:critical")
AIRFLOW_RUN_ID = re.compile(r"^[A-Za-z0-9_.~:+-]+$")  # Airflow's default allowed_run_id_pattern


def _open(key: str = ROC, *, breaches: int = 3, severity: str = "critical", incident: int = 1) -> AlertState:
    return AlertState(
        dedup_key=key,
        state=OPEN,
        severity=severity,
        incident=incident,
        opened_at=T0,
        breach_count=breaches,
        last_value=0.61,
        first_breach_window=T0 - 3 * HOUR,
        last_breach_window=T0 - HOUR,
    )


def test_a_sustained_critical_breach_asks_for_one_run_with_the_evidence_in_its_conf() -> None:
    monitor = monitor_config(retraining=RETRAIN)
    request = plan_retraining(monitor, "hourly", [_open()], as_of=T0)
    assert request is not None and request.dag_id == "retrain_churn"
    assert AIRFLOW_RUN_ID.match(request.run_id) and request.run_id.startswith("modelwatch_retrain__churn__1__")
    assert request.conf["training_days"] == 14
    evidence = request.conf["modelwatch"]
    assert evidence["metric"] == "roc_auc" and evidence["alert"] == ROC and evidence["breaching_windows"] == 3
    assert evidence["last_value"] == 0.61 and evidence["first_breach_window"] == (T0 - 3 * HOUR).isoformat()


def test_the_run_id_is_stable_within_an_incident_and_new_for_the_next() -> None:
    monitor = monitor_config(retraining=RETRAIN)
    first = plan_retraining(monitor, "hourly", [_open(breaches=3)], as_of=T0)
    later = plan_retraining(monitor, "hourly", [_open(breaches=7)], as_of=T0 + 4 * HOUR)
    reopened = plan_retraining(monitor, "hourly", [_open(incident=2)], as_of=T0 + 30 * HOUR)
    assert first is not None and later is not None and reopened is not None
    assert first.run_id == later.run_id != reopened.run_id


@pytest.mark.parametrize(
    ("state", "retraining"),
    [
        (_open(breaches=2), RETRAIN),  # not sustained yet
        (replace(_open(), state=RESOLVED), RETRAIN),
        (_open(severity="warning"), RETRAIN),  # min_severity defaults to critical
        (_open(key=dedup_key("churn", "hourly", TRAFFIC_STOPPED, TRAFFIC_STOPPED)), RETRAIN),  # not a metric
        (_open(key=dedup_key("other", "hourly", "roc_auc", "absolute:critical")), RETRAIN),  # another monitor
        (_open(), {**RETRAIN, "cadences": ["daily"]}),
        (_open(), None),
    ],
)
def test_no_run_without_a_sustained_breach_of_a_watched_alert(state: AlertState, retraining) -> None:
    monitor = monitor_config(retraining=retraining) if retraining else monitor_config()
    assert plan_retraining(monitor, "hourly", [state], as_of=T0) is None


def test_warnings_count_when_asked_and_the_longest_open_alert_is_named() -> None:
    checks = [
        {"metric": "roc_auc", "rules": [{"type": "absolute", "min": 0.8, "severity": "warning"}]},
        {"metric": "f1", "rules": [{"type": "absolute", "min": 0.5, "severity": "warning"}]},
    ]
    monitor = monitor_config(checks=checks, retraining={**RETRAIN, "min_severity": "warning"})
    roc = _open(dedup_key("churn", "hourly", "roc_auc", "absolute:warning"), severity="warning")
    f1 = replace(_open(dedup_key("churn", "hourly", "f1", "absolute:warning"), severity="warning"), opened_at=T0 - HOUR)
    request = plan_retraining(monitor, "hourly", [roc, f1], as_of=T0)
    assert request is not None and request.conf["modelwatch"]["metric"] == "f1"
    only_roc = monitor_config(checks=checks, retraining={**RETRAIN, "min_severity": "warning", "metrics": ["roc_auc"]})
    assert plan_retraining(only_roc, "hourly", [roc, f1], as_of=T0).conf["modelwatch"]["metric"] == "roc_auc"


def test_retraining_on_an_unchecked_metric_is_a_config_error_naming_it() -> None:
    with pytest.raises(MonitorConfigError, match=r"retraining\.metrics.*mae"):
        monitor_config(retraining={**RETRAIN, "metrics": ["mae"]})
    with pytest.raises(MonitorConfigError, match=r"retraining\.after_breaches"):
        monitor_config(retraining={**RETRAIN, "after_breaches": 0})
