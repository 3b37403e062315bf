"""The table ``modelwatch demo`` prints: windows, metric ranges, alerts and where to look next."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from modelwatch.airflow.monitors_folder import monitors_dir
from modelwatch.core.config import Status, load_monitors
from modelwatch.warehouse import documents

_EPOCH, _FAR = datetime(1970, 1, 1), datetime(2999, 1, 1)


def _range(values: list[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}" if values else "n/a"


def _values(results: list[dict], metric: str) -> list[float]:
    return [r["metrics"][metric] for r in results if r["metrics"].get(metric) is not None]


def _engine(monitor):
    from modelwatch.warehouse.engine import make_engine, resolve_url

    return make_engine(resolve_url(os.environ.get("MODELWATCH_WAREHOUSE_URL") or monitor.warehouse.url or ""))


def _window_table(monitors) -> list[str]:
    lines = [
        f"{'monitor':10s} {'cadence':8s} {'windows':>7s} {'final':>5s} {'revs':>5s}  metric ranges (latest revision)"
    ]
    for monitor in monitors:
        engine = _engine(monitor)
        for cadence in monitor.cadences:
            docs = documents.latest_documents(
                engine, monitor=monitor.name, cadence=cadence.value, start=_EPOCH, end=_FAR
            )
            results = [d["result"] for d in docs if "result" in d]
            finals = sum(1 for r in results if r["status"] == Status.FINAL)
            revisions = documents.revision_count(engine, monitor=monitor.name, cadence=cadence.value)
            ranges = ", ".join(f"{check.metric} {_range(_values(results, check.metric))}" for check in monitor.checks)
            lines.append(
                f"{monitor.name:10s} {cadence.value:8s} {len(results):7d} {finals:5d} {revisions:5d}  {ranges}"
            )
    return lines


def _alert_lines(engine) -> list[str]:
    from modelwatch.warehouse.alert_store import alert_rows, outbox_rows

    lines: list[str] = []
    for row in (r for r in alert_rows(engine) if r["incident"] > 0):
        lines.append(
            f"  [{row['severity']}] {row['dedup_key']}: {row['state']} (incident {row['incident']}, opened "
            f"{row['opened_at']:%m-%d %H:%M}, "
            f"{row['breach_count']} breaching run(s), last value {row['last_value']})"
        )
    deliveries: dict[tuple[str, str], int] = {}
    messages: list[str] = []
    for row in outbox_rows(engine):
        deliveries[(row.destination, row.status)] = deliveries.get((row.destination, row.status), 0) + 1
        if row.destination == "log":
            cause = row.payload.get("root_cause_summary") or row.payload.get("root_cause") or ""
            text = f"  - {row.payload.get('summary', row.kind)}"
            messages.append(text + (f"\n      cause: {cause}" if cause else ""))
    summary = ", ".join(f"{dest} {status}: {n}" for (dest, status), n in sorted(deliveries.items()))
    return [
        *(lines or ["  none"]),
        "",
        "Alert messages:",
        *(messages or ["  none"]),
        "",
        f"Deliveries: {summary or 'none'}",
    ]


def print_summary(*, home: Path, seconds: float) -> None:
    monitors, _ = load_monitors(monitors_dir())
    print()
    print("\n".join(_window_table(monitors)))
    for monitor in monitors:
        print(f"\nAlerts of {monitor.name}:")
        print("\n".join(_alert_lines(_engine(monitor))))
    if not (os.environ.get("AIRFLOW_CONN_MODELWATCH_SLACK") or os.environ.get("AIRFLOW_CONN_MODELWATCH_PAGERDUTY")):
        print(
            "\nNo Slack/PagerDuty connection is set, so alerts went to the warehouse tables modelwatch_alerts and "
            "modelwatch_alert_outbox and to the task log.\nSet AIRFLOW_CONN_MODELWATCH_SLACK / "
            "AIRFLOW_CONN_MODELWATCH_PAGERDUTY to deliver them (see README)."
        )
    print(f"\nDone in {seconds:.0f} s.")
    print(
        f"  MLflow UI:  make mlflow   (= mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}) -> http://127.0.0.1:5000"
    )
    print("  Airflow UI: make airflow  (airflow standalone on the demo's metadata DB) -> http://localhost:8080")
    print(f"  Reports:    {home / 'mlartifacts'}/<monitor>/<run>/artifacts/report.html")
