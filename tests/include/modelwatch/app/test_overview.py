from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelwatch.app.overview import MonitorOverview, overall, render_overview, sparkline, summarise
from modelwatch.core.config import load_monitor
from modelwatch.core.result import HistoryPoint, RootCause

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
T0 = datetime(2026, 11, 3)
HOUR = timedelta(hours=1)


def points(values: list[float | None]) -> list[HistoryPoint]:
    return [
        HistoryPoint(T0 + i * HOUR, T0 + (i + 1) * HOUR, {"roc_auc": v}, 300, 400, "final", 3)
        for i, v in enumerate(values)
    ]


def alert(rule: str, state: str, severity: str, *, incident: int = 1, window: datetime | None = None) -> dict:
    return {
        "dedup_key": f"modelwatch/churn/hourly/roc_auc/{rule}",
        "state": state,
        "severity": severity,
        "incident": incident,
        "last_value": 0.7387,
        "first_breach_window": window,
        "last_breach_window": window,
    }


def test_open_incidents_first_with_their_own_windows_verdict_and_links() -> None:
    churn = load_monitor(MONITORS / "churn.yaml")
    incident_window = T0 + 6 * HOUR
    rows = [
        alert("baseline_drop:warning", "resolved", "warning", window=T0 + 2 * HOUR),
        alert("absolute:critical", "open", "critical", window=incident_window),
        alert("never_opened", "resolved", "warning", incident=0),
    ]
    causes = {
        incident_window: RootCause("data_drift", "support_calls shifted (PSI 9.1) in region=EU"),
        T0 + 2 * HOUR: None,
    }
    view = summarise(
        churn, "hourly", alerts=rows, history=points([0.86, 0.85, None, 0.74]), causes=causes,
        links_for=lambda start: {"Report": f"http://mlflow/{start:%H%M}"},
    )  # fmt: skip
    assert view.status == "alerting" and view.open_alerts == 1
    assert [(i.rule, i.state, i.verdict) for i in view.incidents] == [
        ("absolute:critical", "open", "data_drift"),
        ("baseline_drop:warning", "resolved", "not diagnosed"),
    ]
    assert view.incidents[0].links == {"Report": "http://mlflow/0600"}
    assert view.incidents[0].span == "2026-11-03 06:00 .. 2026-11-03 07:00 UTC"
    assert view.links == {"Report": "http://mlflow/0300"}  # the last window's
    assert view.sparkline is not None and view.sparkline.last == "0.7400"
    assert [label for _, _, label in view.sparkline.thresholds] == ["critical 0.8000"]
    assert len(view.sparkline.points.split()) == 3  # the undefined window is a gap, not a 0
    page = render_overview([MonitorOverview("churn", "m", "ml", "", view.status, (view,))], generated_at=T0)
    # Rows are selectable by metric and rule: a row's root cause is its window's and may name another metric.
    assert 'data-state="open" data-metric="roc_auc" data-rule="absolute:critical" data-verdict="data_drift"' in page


def test_an_incident_on_an_undiagnosed_window_shows_its_opening_messages_cause() -> None:
    churn = load_monitor(MONITORS / "churn.yaml")
    early = {**alert("psi:top3:region:critical", "open", "critical", window=T0 + 6 * HOUR), "metric": "feature_drift"}
    early["dedup_key"] = "modelwatch/churn/hourly/feature_drift/psi:top3:region:critical"
    cause = RootCause("data_drift", "support_calls shifted (PSI 7.5) in region=EU")
    view = summarise(
        churn, "hourly", alerts=[early], history=points([0.86]), causes={T0 + 6 * HOUR: None},
        links_for=lambda _: {}, opening_causes={early["dedup_key"]: cause},
    )  # fmt: skip
    summary = [(i.metric, i.verdict, i.summary) for i in view.incidents]
    assert summary == [("feature_drift", "data_drift", cause.summary)]


def test_sparkline_scales_values_and_bounds_together() -> None:
    line = sparkline(points([0.9, 0.7]), "roc_auc", [(0.8, "critical")], width=100)
    assert line is not None
    ((y_bound, colour, _),) = line.thresholds
    ys = [float(p.split(",")[1]) for p in line.points.split()]
    assert ys[0] < y_bound < ys[1]  # 0.9 above the 0.8 line, 0.7 below it (SVG y grows downwards)
    assert colour == "#b42318"
    assert sparkline(points([None, None]), "roc_auc", []) is None


def test_page_escapes_and_lists_every_monitor() -> None:
    churn = load_monitor(MONITORS / "churn.yaml")
    quiet = summarise(churn, "daily", alerts=[], history=[], causes={}, links_for=lambda _: {})
    assert quiet.status == "no data" and overall([quiet]) == "no data"
    hostile = MonitorOverview("churn", "<model>", "ml", "<script>x</script>", "no data", (quiet,))
    page = render_overview([hostile], generated_at=datetime(2026, 11, 4, tzinfo=UTC))
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "&lt;model&gt;" in page
    assert 'id="monitor-churn" data-status="no data"' in page
