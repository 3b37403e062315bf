"""The report as the paged person sees it: opened in a real headless Chromium."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from modelwatch.core.alerts import RuleEvaluation
from modelwatch.core.config import MonitorConfig, load_monitor
from modelwatch.core.result import DriftFinding, MetricValue, RootCause, SegmentRow, WindowResult
from modelwatch.core.stats import JoinCounts, ScoreHistogram, WindowStats, binary_stats_from_arrays
from modelwatch.render.report import render_html

pytest_plugins = ("tests.browser",)

ROOT = Path(__file__).resolve().parents[4]
MONITORS = ROOT / "include" / "monitors"
START = datetime(2026, 11, 3, 6)
EDGES = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def _support_calls(method: str, score: float, threshold: float, *, segment: str | None) -> DriftFinding:
    reference = {"n": 4000, "mean": 2.1, "std": 1.2, "edges": EDGES, "counts": [500, 1200, 1300, 700, 200, 80, 20]}
    current = {"n": 900, "mean": 4.3, "std": 1.4, "edges": EDGES, "counts": [20, 60, 120, 200, 240, 160, 100]}
    return DriftFinding(
        "support_calls", "numeric", method, score, threshold, score >= threshold, segment=segment,
        importance=0.41, reference_summary=reference, current_summary=current,
    )  # fmt: skip


def incident(monitor: MonitorConfig) -> tuple[WindowResult, list[RuleEvaluation], ScoreHistogram]:
    """A window with a concept flip in one segment AND a covariate shift of an important feature."""
    rng = np.random.default_rng(5)
    scores = rng.beta(2, 5, 2676)
    labels = (rng.random(2676) < scores).astype(float)
    stats = WindowStats(
        JoinCounts(predictions=2676, labelled=2676, duplicate_predictions=4, orphan_labels=17),
        binary_stats_from_arrays(scores, labels, threshold=0.5),
        ("3",),
    )
    reference = binary_stats_from_arrays(rng.beta(2, 6, 4000), np.full(4000, np.nan), threshold=0.5).histogram
    methods = (("psi", 7.4, 0.2), ("ks", 0.52, 0.1), ("js", 0.44, 0.1), ("wasserstein", 1.8, 0.1))
    drift = (
        *(_support_calls(m, score, t, segment=segment) for segment in (None, "region=EU") for m, score, t in methods),
        DriftFinding("tenure_months", "numeric", "psi", 0.01, 0.2, False, importance=0.3),
    )
    segments = (
        SegmentRow("plan", "basic", 900, 900, {"roc_auc": 0.80}, {"roc_auc": 0.80}, 0.33, 0.33, -6.469e-07, 1.2e-08),
        SegmentRow("region", "EU", 800, 800, {"roc_auc": 0.61}, {"roc_auc": 0.84}, 0.3, 0.3, -0.0701, -0.0031),
    )
    result = WindowResult(
        monitor="churn", model="churn-classifier", task="binary_classification", cadence="hourly",
        window_start=START, window_end=START + timedelta(hours=1), as_of=START + timedelta(hours=25),
        status="final", revision=24, stats=stats,
        metrics={
            "roc_auc": MetricValue("roc_auc", 0.7544),
            "f1": MetricValue("f1", 0.61),
            "brier": MetricValue("brier", 0.1812),
            "log_loss": MetricValue("log_loss", None, "a score of exactly 0 or 1 with the other label"),
        },
        estimated={"roc_auc": MetricValue("roc_auc", 0.931)},
        drift=drift,
        segments=segments,
        root_cause=RootCause(
            "concept_drift", "concept drift in region=EU, while the inputs that matter are stable",
            ("support_calls",), "region=EU", ("region=EU lost 0.23 roc_auc",),
        ),
    )  # fmt: skip
    base = {
        "monitor": "churn", "model": "churn-classifier", "cadence": "hourly", "as_of": result.as_of,
        "window_start": START, "window_end": result.window_end,
    }  # fmt: skip
    evaluations = [
        RuleEvaluation(
            dedup_key="k1", metric="roc_auc", rule_id="absolute:critical", rule_type="absolute", severity="critical",
            status="breach", value=0.7544, lower=0.8, description="roc_auc must stay >= 0.8", **base,
        ),
        RuleEvaluation(
            dedup_key="k2", metric="f1", rule_id="absolute:warning", rule_type="absolute", severity="warning",
            status="healthy", value=0.61, lower=0.55, description="f1 must stay >= 0.55", **base,
        ),
        RuleEvaluation(
            dedup_key="k3", metric="brier", rule_id="baseline_drop:warning", rule_type="baseline_drop",
            severity="warning", status="insufficient", value=0.1812, description="no baseline windows yet", **base,
        ),
    ]  # fmt: skip
    return replace(result, config_hash="abc"), evaluations, reference


@pytest.fixture(scope="module")
def churn() -> MonitorConfig:
    return load_monitor(MONITORS / "churn.yaml")


def test_report_leads_with_the_verdict_and_explains_it(page, churn: MonitorConfig, tmp_path: Path) -> None:
    result, evaluations, reference = incident(churn)
    html = render_html(result, monitor=churn, evaluations=evaluations, reference_histogram=reference)
    (tmp_path / "report.html").write_text(html)
    page.goto((tmp_path / "report.html").as_uri())

    verdict = page.locator("#verdict")
    assert verdict.get_attribute("data-status") == "breach"
    box = verdict.bounding_box()
    assert box is not None and box["y"] < 120 and box["y"] + box["height"] < 900  # first thing, above the fold
    assert "roc_auc 0.7544 breaches absolute:critical (>= 0.8000)" in page.inner_text("#headline")
    # A concept-drift verdict does not hide the important feature that drifted: it is listed, in plain words.
    assert "stable" not in page.inner_text("#root-cause")  # its own drift table says otherwise
    others = page.inner_text("#other-causes")
    assert "support_calls mean 2.1 -> 4.3 in region=EU (PSI 7.4" in others
    assert "support_calls mean 2.1 -> 4.3 (PSI 7.4; flagged by psi, ks, js, wasserstein)" in others

    rules = page.locator("#rules tbody tr")
    assert [rules.nth(i).locator("td").nth(3).inner_text() for i in range(rules.count())] == [
        "breach", "insufficient data", "ok",
    ]  # fmt: skip
    statuses = page.locator("#metrics tbody tr td:nth-child(3)").all_inner_texts()
    assert len(statuses) == 5 and all(s.strip() for s in statuses)  # 4 metrics + the estimate: never empty
    assert statuses[:4] == ["breach", "ok", "insufficient data", "undefined"]

    text = page.inner_text("body")
    assert not re.search(r"\d[eE][-+]?\d", text), "no scientific notation anywhere"
    assert "2,676" in page.inner_text("#counts") and "2676.0" not in text
    assert "No reference" not in text
    impacts = page.locator("#segments tbody tr td:last-child").all_inner_texts()
    assert impacts == ["0.0732", "0.0000"]  # region=EU first: sorted by impact
    assert page.locator("#feature-charts svg").count() == 2  # support_calls overall and in region=EU
    assert page.locator("#score-distribution rect").count() == 40

    shot = page.screenshot(full_page=False)
    assert shot.startswith(b"\x89PNG")


def test_insufficient_data_is_said_plainly(page, churn: MonitorConfig, tmp_path: Path) -> None:
    result, evaluations, _ = incident(churn)
    waiting = [replace(e, status="insufficient", description="only 120 labelled rows (min 200)") for e in evaluations]
    (tmp_path / "r.html").write_text(render_html(replace(result, root_cause=None), monitor=churn, evaluations=waiting))
    page.goto((tmp_path / "r.html").as_uri())
    assert page.locator("#verdict").get_attribute("data-status") == "insufficient data"
    assert "neither an alert nor a pass" in page.inner_text("#headline")
    assert "No reference window is stored yet" in page.inner_text("body")


def test_data_drift_leads_with_the_named_feature_in_its_segment(page, churn: MonitorConfig, tmp_path: Path) -> None:
    result, evaluations, _ = incident(churn)
    cause = RootCause("data_drift", "support_calls shifted in region=EU", ("support_calls",), "region=EU")
    html = render_html(replace(result, root_cause=cause), monitor=churn, evaluations=evaluations)
    (tmp_path / "d.html").write_text(html)
    page.goto((tmp_path / "d.html").as_uri())
    assert page.inner_text("#root-cause").startswith(
        "Root cause: data_drift Data drift: support_calls mean 2.1 -> 4.3 in region=EU (PSI 7.4"
    )
