"""Tests for the demo traffic generator: shape, realism and the planted incident."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score

from modelwatch.core.config import MonitorConfig, load_monitor
from modelwatch.demo.data import DemoSpec, churn_frames, demo_frames, hourly_profile

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
SMALL = DemoSpec(rows_per_hour=2000)
INCIDENT_START = datetime(2026, 11, 3, 6)
INCIDENT_END = datetime(2026, 11, 3, 14)


@pytest.fixture(scope="module")
def small() -> dict[str, pd.DataFrame]:
    return demo_frames(SMALL)


@pytest.fixture(scope="module")
def full() -> tuple[dict[str, pd.DataFrame], float]:
    started = time.perf_counter()
    frames = demo_frames(DemoSpec())
    return frames, time.perf_counter() - started


def _joined(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """First prediction row and first label per request, with the prediction's hour."""
    first_labels = labels.drop_duplicates("request_id", keep="first")
    joined = predictions.drop_duplicates("request_id", keep="first").merge(first_labels, on="request_id")
    return joined.assign(hour=joined["predicted_at"].dt.floor("h"))


def _in_incident(hours: pd.Series | pd.Index) -> np.ndarray:
    return np.asarray((hours >= INCIDENT_START) & (hours < INCIDENT_END))


def _psi(expected: pd.Series, actual: pd.Series) -> float:
    """Population stability index; deciles of ``expected`` for numbers, categories for text."""
    if pd.api.types.is_numeric_dtype(expected):
        edges = np.unique(np.quantile(expected, np.linspace(0, 1, 11))[1:-1])
        e_counts = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=edges.size + 1)
        a_counts = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=edges.size + 1)
    else:
        e_by_category, a_by_category = expected.value_counts().align(actual.value_counts(), fill_value=0)
        e_counts, a_counts = e_by_category.to_numpy(), a_by_category.to_numpy()
    e_share = np.maximum(e_counts / e_counts.sum(), 1e-4)
    a_share = np.maximum(a_counts / a_counts.sum(), 1e-4)
    return float(np.sum((a_share - e_share) * np.log(a_share / e_share)))


def _monitor(name: str) -> MonitorConfig:
    return load_monitor(MONITORS / f"{name}.yaml")


def test_same_spec_gives_identical_frames_and_seeds_differ() -> None:
    spec = DemoSpec(days=1, rows_per_hour=200, incident_day=1)
    first, again = demo_frames(spec), demo_frames(spec)
    assert set(first) == {"churn_predictions", "churn_labels", "delivery_predictions", "delivery_labels"}
    for name, frame in first.items():
        pd.testing.assert_frame_equal(frame, again[name])
    other = churn_frames(DemoSpec(days=1, rows_per_hour=200, incident_day=1, seed=8))[0]
    assert not np.array_equal(other["score"].to_numpy()[:100], first["churn_predictions"]["score"].to_numpy()[:100])


@pytest.mark.parametrize("name", ["churn", "delivery"])
def test_columns_and_dtypes_match_the_monitor_yaml(small: dict[str, pd.DataFrame], name: str) -> None:
    config = _monitor(name)
    p, lab = config.predictions, config.labels
    predictions, labels = small[p.table], small[lab.table]
    numeric = [f.name for f in p.features if f.kind == "numeric"]
    text = [f.name for f in p.features if f.kind == "categorical"] + list(p.segments)
    expected = [*p.request_id, p.timestamp, p.model_version, p.score, *numeric, *text]
    assert sorted(predictions.columns) == sorted(expected)
    assert sorted(labels.columns) == sorted([*lab.request_id, lab.timestamp, lab.label])
    for frame, column in [(predictions, p.timestamp), (labels, lab.timestamp)]:
        assert frame[column].dtype == np.dtype("datetime64[us]")
    for column in [*p.request_id, p.model_version, *text]:
        assert pd.api.types.is_string_dtype(predictions[column]), column
    assert pd.api.types.is_string_dtype(labels[lab.request_id[0]])
    for column in [p.score, *numeric]:
        assert pd.api.types.is_numeric_dtype(predictions[column]), column
    assert not predictions.isna().any().any() and not labels.isna().any().any()
    assert predictions[p.timestamp].is_monotonic_increasing


def test_churn_labels_are_declared_classes_and_scores_are_probabilities(small: dict[str, pd.DataFrame]) -> None:
    config = _monitor("churn")
    labels = small["churn_labels"]["churned"]
    assert pd.api.types.is_integer_dtype(labels)
    assert set(labels.astype(str)) == set(config.classes)
    assert 0.25 <= labels.mean() <= 0.32
    scores = small["churn_predictions"]["score"]
    assert scores.between(0, 1).all()


def test_volume_follows_a_daily_cycle(small: dict[str, pd.DataFrame]) -> None:
    for table in ["churn_predictions", "delivery_predictions"]:
        per_hour = small[table]["predicted_at"].dt.floor("h").value_counts().sort_index()
        assert len(per_hour) == SMALL.days * 24
        assert per_hour.mean() == pytest.approx(SMALL.rows_per_hour, rel=0.03)
        by_hour_of_day = per_hour.groupby(per_hour.index.hour).mean()
        assert by_hour_of_day.idxmax() in (18, 19, 20) and by_hour_of_day.idxmin() in (3, 4, 5)
        assert 2.6 <= by_hour_of_day[19] / by_hour_of_day[4] <= 3.4
    assert hourly_profile(np.array([4.0, 19.0])) == pytest.approx([0.5, 1.5])


def test_canary_serves_a_tenth_of_traffic_from_day_two(small: dict[str, pd.DataFrame]) -> None:
    predictions = small["churn_predictions"]
    day = (predictions["predicted_at"] - pd.Timestamp(SMALL.start)).dt.days
    canary = predictions["model_version"] == "v4"
    assert not canary[day == 0].any()
    assert canary[day >= 1].mean() == pytest.approx(0.10, abs=0.01)
    assert set(predictions["model_version"]) == {"v3", "v4"}


def test_label_delays(small: dict[str, pd.DataFrame]) -> None:
    churn = _joined(small["churn_predictions"], small["churn_labels"])
    hours = (churn["labeled_at"] - churn["predicted_at"]).dt.total_seconds() / 3600
    assert 2.6 <= hours.median() <= 3.4
    assert 0.82 <= (hours <= 24).mean() <= 0.88
    assert hours.min() > 0 and hours.max() <= 72 and (hours > 48).mean() > 0.01
    # Capped by redrawing, not clipping: no pile-up at exactly 72 h.
    assert (hours > 71.9).mean() < 0.002
    delivery = _joined(small["delivery_predictions"], small["delivery_labels"])
    minutes = (delivery["delivered_at"] - delivery["predicted_at"]).dt.total_seconds() / 60
    assert 38 <= minutes.median() <= 52
    assert (minutes <= 360).mean() >= 0.94
    assert (minutes >= delivery["actual_minutes"] - 0.1).all()


@pytest.mark.parametrize("name", ["churn", "delivery"])
def test_missing_and_duplicated_labels_and_predictions(small: dict[str, pd.DataFrame], name: str) -> None:
    config = _monitor(name)
    predictions, labels = small[config.predictions.table], small[config.labels.table]
    label, stamp = config.labels.label, config.labels.timestamp
    requests = predictions["request_id"].nunique()
    never = 1 - labels["request_id"].nunique() / requests
    assert 0.02 <= never <= 0.04
    twice = labels[labels.duplicated("request_id", keep=False)].sort_values(["request_id", stamp])
    assert 0.006 <= twice["request_id"].nunique() / labels["request_id"].nunique() <= 0.014
    grouped = twice.groupby("request_id")
    assert (grouped[stamp].diff().dropna() > pd.Timedelta(0)).all()
    changed = (grouped[label].nunique() > 1).mean()
    assert changed == 0 if name == "churn" else 0.2 <= changed <= 0.7
    retried = predictions[predictions.duplicated("request_id", keep=False)]
    assert 0.0004 <= retried["request_id"].nunique() / requests <= 0.002
    gaps = retried.groupby("request_id")[config.predictions.timestamp].agg(lambda s: s.max() - s.min())
    assert gaps.between(pd.Timedelta(seconds=1), pd.Timedelta(seconds=10)).all()
    assert (retried.groupby("request_id")[config.predictions.score].nunique() == 1).all()


def test_churn_incident_drops_hourly_auc_only_in_its_window(full: tuple[dict[str, pd.DataFrame], float]) -> None:
    frames, _ = full
    joined = _joined(frames["churn_predictions"], frames["churn_labels"])
    auc = joined.groupby("hour").apply(lambda g: roc_auc_score(g["churned"], g["score"]))
    inside = _in_incident(auc.index)
    assert inside.sum() == 8
    assert auc[~inside].min() >= 0.83
    assert auc[inside].max() < 0.79 and auc[inside].min() > 0.68
    assert (
        roc_auc_score(joined["churned"][~_in_incident(joined["hour"])], joined["score"][~_in_incident(joined["hour"])])
        >= 0.85
    )
    eu = joined[_in_incident(joined["hour"]) & (joined["region"] == "EU")]
    assert roc_auc_score(eu["churned"], eu["score"]) < 0.66


def test_delivery_incident_raises_hourly_mae_only_in_its_window(full: tuple[dict[str, pd.DataFrame], float]) -> None:
    frames, _ = full
    joined = _joined(frames["delivery_predictions"], frames["delivery_labels"])
    mae = joined.groupby("hour").apply(lambda g: mean_absolute_error(g["actual_minutes"], g["predicted_minutes"]))
    inside = _in_incident(mae.index)
    assert mae[~inside].max() <= 5.0 and mae[~inside].min() >= 3.5
    assert mae[inside].min() > 8.5


@pytest.mark.parametrize(
    ("table", "feature", "jump"),
    [("churn_predictions", "support_calls", 4.0), ("delivery_predictions", "traffic_index", 4.5)],
)
def test_feature_shift_only_in_incident_region_and_hours(
    small: dict[str, pd.DataFrame], table: str, feature: str, jump: float
) -> None:
    predictions = small[table]
    stamp = predictions["predicted_at"]
    hour_of_day = (stamp.dt.hour >= 6) & (stamp.dt.hour < 14)
    on_day = {day: stamp.dt.day == day for day in (1, 2, 3)}
    eu = predictions["region"] == "EU"

    def mean(mask: pd.Series) -> float:
        return float(predictions.loc[mask, feature].mean())

    assert mean(on_day[3] & hour_of_day & eu) - mean(on_day[2] & hour_of_day & eu) == pytest.approx(jump, abs=0.3)
    assert abs(mean(on_day[3] & hour_of_day & ~eu) - mean(on_day[2] & hour_of_day & ~eu)) < 0.15
    assert abs(mean(on_day[3] & ~hour_of_day & eu) - mean(on_day[2] & ~hour_of_day & eu)) < 0.15


def test_incident_follows_the_spec() -> None:
    spec = DemoSpec(days=1, rows_per_hour=400, incident_day=1, incident_hours=(2, 5), incident_region="APAC")
    predictions, _ = churn_frames(spec)
    baseline, _ = churn_frames(DemoSpec(days=1, rows_per_hour=400, incident_day=0))
    assert (predictions["request_id"] == baseline["request_id"]).all()
    # Same seed and the same draws: only the incident rows differ, by exactly the phantom calls.
    moved = predictions["support_calls"] - baseline["support_calls"]
    hour = predictions["predicted_at"].dt.hour
    expected = (predictions["region"] == "APAC") & (hour >= 2) & (hour < 5)
    assert expected.sum() > 100
    assert set(moved[expected]) == {4} and set(moved[~expected]) == {0}


def test_same_hour_of_different_days_looks_alike(small: dict[str, pd.DataFrame]) -> None:
    worst: dict[str, float] = {}
    for name in ["churn", "delivery"]:
        config = _monitor(name)
        predictions = small[config.predictions.table]
        stamp = predictions["predicted_at"]
        columns = [f.name for f in config.predictions.features]
        columns += [*config.predictions.segments, config.predictions.score]
        day1 = dict(list(predictions[stamp.dt.day == 1].groupby(stamp.dt.hour)))
        day2 = dict(list(predictions[stamp.dt.day == 2].groupby(stamp.dt.hour)))
        assert sorted(day1) == sorted(day2) == list(range(24))
        for hour, rows in day1.items():
            for column in columns:
                worst[column] = max(worst.get(column, 0.0), _psi(rows[column], day2[hour][column]))
    assert max(worst.values()) < 0.1, worst
    # The helper can fail: the incident hours are far from the same hours of day 1.
    churn = small["churn_predictions"]
    stamp = churn["predicted_at"]
    incident = churn[(stamp.dt.day == 3) & (stamp.dt.hour == 9) & (churn["region"] == "EU")]
    normal = churn[(stamp.dt.day == 1) & (stamp.dt.hour == 9) & (churn["region"] == "EU")]
    assert _psi(normal["support_calls"], incident["support_calls"]) > 1.0


def test_full_spec_volume(full: tuple[dict[str, pd.DataFrame], float]) -> None:
    frames, _ = full  # generation time (~2-3 s) is reported by make bench, not asserted here
    assert 300_000 < len(frames["churn_predictions"]) < 420_000
    assert 300_000 < len(frames["delivery_predictions"]) < 420_000


@pytest.mark.parametrize(
    "bad", [{"days": 0}, {"rows_per_hour": 0}, {"incident_hours": (14, 6)}, {"incident_hours": (0, 25)}]
)
def test_spec_rejects_impossible_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="expected days"):
        DemoSpec(**bad)
