from __future__ import annotations

import base64
import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelwatch.core.config import MonitorConfig, load_monitor
from modelwatch.core.result import (
    DriftFinding,
    FeatureQuality,
    HistoryPoint,
    MetricValue,
    RootCause,
    SegmentRow,
    WindowResult,
)
from modelwatch.core.rules import RuleEvaluation
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays, regression_stats_from_arrays
from modelwatch.render.report import history_point, render_html, render_timeline_png, threshold_text, with_window

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
START = datetime(2026, 11, 3, 6)


@pytest.fixture(scope="module")
def churn() -> MonitorConfig:
    return load_monitor(MONITORS / "churn.yaml")


def make_result(*, auc: float | None = 0.8765, revision: int = 1, status: str = "final") -> WindowResult:
    rng = np.random.default_rng(7)
    scores = rng.random(400)
    labels = (rng.random(400) < scores).astype(float)
    labels[:40] = np.nan
    stats = WindowStats(
        JoinCounts(predictions=400, labelled=360, duplicate_predictions=3, orphan_labels=11),
        binary_stats_from_arrays(scores, labels, threshold=0.5),
        ("3", "4"),
    )
    return WindowResult(
        monitor="churn",
        model="churn-classifier",
        task="binary_classification",
        cadence="hourly",
        window_start=START,
        window_end=START + timedelta(hours=1),
        as_of=START + timedelta(hours=30),
        status=status,
        revision=revision,
        stats=stats,
        metrics={
            "roc_auc": MetricValue("roc_auc", auc, None if auc is not None else "one class only"),
            "f1": MetricValue("f1", None, "no <positive> labels & none predicted"),
        },
        estimated={"roc_auc": MetricValue("roc_auc", 0.8312)},
        drift=(DriftFinding("age", "numeric", "psi", 0.4123, 0.2, True, importance=0.6),),
        quality=(FeatureQuality("device", 0.12, 0.01, None, new_categories=("<script>",), issue="null rate up"),),
        segments=(SegmentRow("region", "<eu> & co", 120, 100, {"roc_auc": 0.7011}, {"roc_auc": 0.85}, 0.2, 0.3),),
        root_cause=RootCause("data_drift", "age <drifted>", ("age",), "region=<eu>", ("psi 0.41 > 0.2",)),
        findings=("labels <stalled>",),
        config_hash="abc123",
    )


def Evaluation(
    metric: str, rule_id: str, status: str, value: float | None, lower: float | None, upper: float | None
) -> RuleEvaluation:
    """A real rule evaluation with what the report reads filled in."""
    return RuleEvaluation(
        dedup_key=f"churn:{rule_id}",
        monitor="churn",
        model="churn-classifier",
        cadence="hourly",
        metric=metric,
        rule_id=rule_id,
        rule_type=rule_id.split(":")[0],
        severity="critical",
        status=status,
        as_of=START,
        value=value,
        lower=lower,
        upper=upper,
    )


def history(n: int, *, start: datetime = START) -> list[HistoryPoint]:
    return [
        HistoryPoint(
            start - timedelta(hours=i),
            start - timedelta(hours=i - 1),
            {"roc_auc": 0.82 + 0.02 * np.sin(i), "f1": None if i % 5 == 0 else 0.6},
            300,
            400,
            "final" if i > 24 else "provisional",
            0,
        )
        for i in range(n, 0, -1)
    ]


def test_html_shows_key_numbers_and_thresholds(churn: MonitorConfig) -> None:
    page = render_html(make_result(), monitor=churn, history=history(10))
    assert "0.8765" in page  # roc_auc
    assert ">90.0%<" in page  # label coverage 360 / 400
    assert ">400<" in page and ">360<" in page and ">11<" in page  # predictions, labelled, orphan labels
    assert "0.8312" in page  # estimated AUC
    assert "absolute:critical &gt;= 0.8" in page
    assert "baseline_drop:warning drop &lt;= 0.05" in page
    assert "3, 4" in page  # model versions
    assert "0.4123" in page and "data_drift" in page
    assert "0.7011" in page and "Within contrib." in page  # segment table
    assert "Data quality" in page and "null rate up" in page


def test_html_escapes_every_text(churn: MonitorConfig) -> None:
    page = render_html(make_result(), monitor=churn)
    for raw in ("<eu>", "<drifted>", "<stalled>", "<positive>", "<script>"):
        assert raw not in page
    assert "&lt;eu&gt; &amp; co" in page
    assert "labels &lt;stalled&gt;" in page
    assert "no &lt;positive&gt; labels &amp; none predicted" in page


def test_undefined_metric_is_not_shown_as_zero(churn: MonitorConfig) -> None:
    page = render_html(make_result(auc=None), monitor=churn)
    row = re.search(r"<tr><td>roc_auc</td>(.*?)</tr>", page)
    assert row is not None
    assert "n/a" in row.group(1) and "one class only" in row.group(1)
    assert "0.0000" not in row.group(1)


def test_html_is_self_contained_with_embedded_png(churn: MonitorConfig) -> None:
    page = render_html(make_result(), monitor=churn, history=history(5))
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1
    assert base64.b64decode(images[0]).startswith(PNG_MAGIC)
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>")


def test_evaluations_and_distribution(churn: MonitorConfig) -> None:
    result = make_result()
    evaluations = [Evaluation("roc_auc", "absolute:critical", "breach", 0.7, 0.8, None)]
    page = render_html(
        result, monitor=churn, evaluations=evaluations, reference_histogram=result.stats.task_stats.histogram
    )
    assert '<section class="verdict breach" id="verdict" data-status="breach">' in page
    assert "roc_auc 0.7000 breaches absolute:critical (&gt;= 0.8000)" in page
    assert "<svg" in page and "reference" in page
    assert page.count("<rect") == 40  # 20 current + 20 reference bars (the drift finding has no bins)
    plain = render_html(result, monitor=churn)
    assert 'data-status="insufficient data"' in plain and "No rule was evaluated" in plain


def test_regression_has_no_score_distribution() -> None:
    delivery = load_monitor(MONITORS / "delivery.yaml")
    rng = np.random.default_rng(1)
    y = rng.normal(30, 5, 50)
    stats = WindowStats(JoinCounts(predictions=50, labelled=50), regression_stats_from_arrays(y + 1, y))
    result = replace(make_result(), task="regression", stats=stats, metrics={"mae": MetricValue("mae", 1.0)})
    page = render_html(result, monitor=delivery)
    assert "<svg" not in page and "mae" in page
    assert "absolute:critical &lt;= 8" in page


def test_threshold_text_lists_only_the_metric_rules(churn: MonitorConfig) -> None:
    assert threshold_text(churn, "f1") == ["absolute:warning >= 0.55"]
    assert threshold_text(churn, "brier") == []


def test_timeline_png_magic(churn: MonitorConfig) -> None:
    points = history(100)
    first = render_timeline_png(points, monitor=churn)
    assert first.startswith(PNG_MAGIC) and len(first) > 2000


def test_timeline_last_n_and_content_dependence(churn: MonitorConfig) -> None:
    points = history(100)
    assert render_timeline_png(points, monitor=churn, last_n=72) == render_timeline_png(points[-72:], monitor=churn)
    assert render_timeline_png(points, monitor=churn) != render_timeline_png(points[:-1], monitor=churn)
    single = render_timeline_png([], monitor=churn, metrics=["roc_auc"])
    assert single.startswith(PNG_MAGIC)


def test_with_window_replaces_older_revision() -> None:
    result = make_result(revision=2)
    old = replace(history_point(result), revision=1, metrics={"roc_auc": 0.5})
    merged = with_window([*history(3), old], result)
    assert [p.window_start for p in merged] == sorted(p.window_start for p in merged)
    mine = [p for p in merged if p.window_start == START]
    assert len(mine) == 1 and mine[0].revision == 2 and mine[0].metrics["roc_auc"] == pytest.approx(0.8765)


def test_one_number_format() -> None:
    from modelwatch.render.formatting import fmt_number, fmt_share

    assert fmt_number(2676) == "2,676" and fmt_number(2676.0) == "2,676"  # counts are integers
    assert fmt_number(-6.469e-07) == "0.0000" and fmt_number(0.75444) == "0.7544"  # never scientific
    assert fmt_number(12345.678) == "12,345.7" and fmt_number(None) == "n/a" and fmt_number(float("nan")) == "n/a"
    assert fmt_share(0.9) == "90.0%" and fmt_share(None) == "n/a"


def test_timeline_draws_the_estimate_and_its_band_and_the_report_says_what_it_sees(churn: MonitorConfig) -> None:
    plain_points = history(30)
    estimated = [
        replace(
            p,
            metrics={
                **p.metrics,
                "estimated_roc_auc": 0.85,
                "estimated_roc_auc_band_low": 0.83,
                "estimated_roc_auc_band_high": 0.87,
            },
        )
        for p in plain_points
    ]
    before = render_timeline_png(plain_points, monitor=churn)
    assert render_timeline_png(estimated, monitor=churn) != before
    uncalibrated = [replace(p, metrics={**p.metrics, "estimated_roc_auc": 0.95}) for p in plain_points]
    assert render_timeline_png(uncalibrated, monitor=churn) == before  # no band: not drawn
    assert render_timeline_png(plain_points, monitor=churn) == before  # the cached figure keeps no band
    banded = replace(make_result(), estimated_bands={"roc_auc": (0.81, 0.85)})
    page = render_html(banded, monitor=churn, history=history(10))
    assert "0.8312 [0.8100, 0.8500]" in page and "not concept drift" in page
    assert "the band must reach &gt;= 0.8000 (warning)" in page
    assert "read as probabilities" in render_html(make_result(), monitor=churn, history=history(10))


def test_the_report_lists_the_window_s_incidents_escaped(churn: MonitorConfig) -> None:
    row = {
        "alert": "feature_drift/psi:top3:region:critical",
        "signal": "label-free",
        "state": "open",
        "opened": "2026-11-03 07:00",
        "evidence": "confirmed by labels: <roc_auc> breached",
    }
    page = render_html(make_result(), monitor=churn, history=history(5), incidents=[row])
    assert "Incidents of this window" in page and "confirmed by labels: &lt;roc_auc&gt; breached" in page
    assert "Incidents of this window" not in render_html(make_result(), monitor=churn, history=history(5))


def test_segment_columns_show_the_task_s_primary_metric_when_the_first_check_is_f1(churn: MonitorConfig) -> None:
    f1_first = churn.model_copy(update={"checks": (churn.checks[0].model_copy(update={"metric": "f1"}), *churn.checks)})
    assert f1_first.checks[0].metric == "f1"
    page = render_html(make_result(), monitor=f1_first)
    segments = page[page.index('<table id="segments">') :]
    segments = segments[: segments.index("</table>")]
    assert "<th>roc_auc</th><th>ref. roc_auc</th>" in segments
    assert "0.7011" in segments and "0.85" in segments  # the segment's primary metric, not an empty cell
