"""Deterministic, realistic demo traffic for the two example monitors (churn and delivery).

The frames match ``include/monitors/churn.yaml`` and ``delivery.yaml`` column for column. Traffic
follows a daily cycle, a ``v4`` canary takes ~10% of requests from day 2, labels arrive late (some
never, some twice) and a few predictions are logged twice, as real pipelines do. One incident is
planted on ``DemoSpec.incident_day`` inside ``incident_region``: a feature shift plus a genuine
performance drop for both models, strong enough that the hourly checks must fire, while every other
hour stays healthy and the same hour of different days looks alike.

Pure module: numpy and pandas only. Writing the frames to a warehouse is an edge module's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

_US_PER_HOUR = 3_600_000_000
_US_PER_MINUTE = 60_000_000

REGIONS = {"EU": 0.35, "NA": 0.30, "APAC": 0.22, "LATAM": 0.13}
PLANS = {"basic": 0.50, "standard": 0.35, "premium": 0.15}
CONTRACTS = {"month_to_month": 0.55, "one_year": 0.25, "two_year": 0.20}
PAYMENTS = {"electronic_check": 0.33, "credit_card": 0.30, "bank_transfer": 0.25, "mailed_check": 0.12}
DEVICES = {"android": 0.42, "ios": 0.38, "desktop": 0.20}
RESTAURANTS = {"fast_food": 0.35, "casual": 0.30, "grocery": 0.20, "fine_dining": 0.15}
CITY_TIERS = {"tier1": 0.55, "tier2": 0.30, "tier3": 0.15}
WEATHER = {"clear": 0.55, "cloudy": 0.25, "rain": 0.15, "fog": 0.05}

NEVER_LABELLED_SHARE = 0.03
DUPLICATE_LABEL_SHARE = 0.01
DUPLICATE_PREDICTION_SHARE = 0.001
CANARY_SHARE = 0.10


@dataclass(frozen=True)
class DemoSpec:
    """What to generate. Timestamps are naive UTC.

    Set ``incident_day`` to 0 (or past ``days``) for incident-free traffic.
    """

    start: datetime = datetime(2026, 11, 1)
    days: int = 3
    rows_per_hour: int = 5000
    seed: int = 7
    incident_day: int = 3
    """1-based day that carries the incident."""
    incident_hours: tuple[int, int] = (6, 14)
    """``[from, to)`` hours of that day."""
    incident_region: str = "EU"

    def __post_init__(self) -> None:
        lo, hi = self.incident_hours
        if self.days < 1 or self.rows_per_hour < 1 or not 0 <= lo < hi <= 24:
            raise ValueError(f"expected days >= 1, rows_per_hour >= 1 and 0 <= from < to <= 24, got {self}")


@dataclass(frozen=True)
class _Traffic:
    """Request times shared by the feature generators of one model."""

    predicted_at: np.ndarray  # datetime64[us], sorted
    hour_of_day: np.ndarray  # fractional hour 0..24, drives the daily cycles
    day: np.ndarray  # 0-based day index
    region: np.ndarray
    incident: np.ndarray  # bool: inside the incident window AND region


def hourly_profile(hour: np.ndarray) -> np.ndarray:
    """Traffic multiplier by hour of day: trough 0.5 at 04:00, peak 1.5 at 19:00, mean ~1.

    A half-cosine rises over the 15 hours from 04:00 to 19:00 and another falls over the 9 hours
    back to 04:00, so each half averages exactly 1.
    """
    since_trough = (np.asarray(hour, dtype=float) - 4.0) % 24.0
    phase = np.where(since_trough < 15.0, since_trough / 15.0, 1.0 + (since_trough - 15.0) / 9.0)
    return 1.0 - 0.5 * np.cos(np.pi * phase)


def _pick(rng: np.random.Generator, options: dict[str, float], n: int) -> np.ndarray:
    names = np.array(list(options), dtype=object)
    return names[rng.choice(len(names), size=n, p=np.array(list(options.values())))]


def _pick_rowwise(rng: np.random.Generator, names: list[str], probs: np.ndarray) -> np.ndarray:
    """One draw per row from row-specific probabilities (``probs`` is n x k, rows sum to 1)."""
    cumulative = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    index = (rng.random(len(probs))[:, None] > cumulative[:, :-1]).sum(axis=1)
    return np.array(names, dtype=object)[index]


def _traffic(rng: np.random.Generator, spec: DemoSpec) -> _Traffic:
    hours = spec.days * 24
    hour_starts = np.arange(hours)
    profile = hourly_profile(hour_starts % 24)
    counts = rng.poisson(spec.rows_per_hour * profile / hourly_profile(np.arange(24)).mean())
    hour_index = np.repeat(hour_starts, counts)
    offset_us = np.sort(hour_index * _US_PER_HOUR + rng.integers(0, _US_PER_HOUR, size=hour_index.size))
    predicted_at = np.datetime64(spec.start, "us") + offset_us.astype("timedelta64[us]")
    day = offset_us // (24 * _US_PER_HOUR)
    region = _pick(rng, REGIONS, offset_us.size)
    hour_in_day = (offset_us % (24 * _US_PER_HOUR)) // _US_PER_HOUR
    lo, hi = spec.incident_hours
    incident = (day == spec.incident_day - 1) & (hour_in_day >= lo) & (hour_in_day < hi)
    incident &= region == spec.incident_region
    hour_of_day = (offset_us % (24 * _US_PER_HOUR)) / _US_PER_HOUR
    return _Traffic(predicted_at, hour_of_day, day, region, incident)


def _model_version(rng: np.random.Generator, traffic: _Traffic) -> np.ndarray:
    canary = (traffic.day >= 1) & (rng.random(traffic.day.size) < CANARY_SHARE)
    return np.where(canary, "v4", "v3").astype(object)


def _request_ids(prefix: str, n: int) -> np.ndarray:
    return pd.Series(np.arange(n)).map(f"{prefix}-{{:08d}}".format).to_numpy(dtype=object)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _churn_features(rng: np.random.Generator, traffic: _Traffic) -> dict[str, np.ndarray]:
    n = traffic.day.size
    hour = traffic.hour_of_day
    plan = _pick(rng, PLANS, n)
    contract = _pick(rng, CONTRACTS, n)
    tenure_scale = np.select([contract == "one_year", contract == "two_year"], [22.0, 34.0], 9.0)
    tenure = np.clip(np.rint(1 + rng.gamma(1.4, tenure_scale)), 1, 72).astype(np.int64)
    product_p = np.select([plan == "standard", plan == "premium"], [0.30, 0.50], 0.15)
    num_products = 1 + rng.binomial(3, product_p)
    base_charge = np.select([plan == "standard", plan == "premium"], [59.0, 99.0], 29.0)
    charges = np.round(np.maximum(10.0, base_charge + 9.0 * (num_products - 1) + rng.normal(0, 6, n)), 2)
    age = np.clip(np.rint(rng.normal(44, 14, n)), 18, 85).astype(np.int64)
    # Unobserved dissatisfaction drives both support calls and absence: a correlated pair.
    unhappy = rng.normal(0, 1, n)
    support_calls = np.minimum(rng.poisson(np.exp(-0.2 + 0.55 * unhappy)), 15).astype(np.int64)
    days_since_login = np.minimum(np.rint(rng.gamma(1.5, np.exp(1.2 + 0.45 * unhappy))), 180).astype(np.int64)
    usage_scale = np.log(np.select([plan == "standard", plan == "premium"], [12.0, 25.0], 6.0))
    usage = np.round(np.exp(usage_scale - (age - 44) / 60 + rng.normal(0, 0.6, n)), 2)
    older = np.clip((age - 30) / 50, 0, 1)
    payment_probs = np.column_stack([np.full(n, 0.33), np.full(n, 0.30), np.full(n, 0.25), 0.02 + 0.25 * older])
    # Stores are open 09:00-21:00 and the app dominates in the evening: a stable daily mix.
    open_hours = (hour >= 9) & (hour < 21)
    evening = np.exp(-(((hour - 20) / 3) ** 2))
    channel_probs = np.column_stack([0.50 - 0.15 * evening, 0.35 + 0.15 * evening, np.where(open_hours, 0.20, 0.0)])
    return {
        "tenure_months": tenure,
        "monthly_charges": charges,
        "support_calls": support_calls,
        "data_usage_gb": usage,
        "days_since_login": days_since_login,
        "num_products": num_products.astype(np.int64),
        "age": age,
        "contract_type": contract,
        "payment_method": _pick_rowwise(rng, list(PAYMENTS), payment_probs),
        "device": _pick(rng, DEVICES, n),
        "region": traffic.region,
        "plan": plan,
        "channel": _pick_rowwise(rng, ["web", "app", "store"], channel_probs),
    }


def _churn_logit(f: dict[str, np.ndarray]) -> np.ndarray:
    """True log-odds of churning within 30 days."""
    return (
        -3.0
        + 2.3 * (f["contract_type"] == "month_to_month")
        - 1.45 * (f["contract_type"] == "two_year")
        - 0.08 * f["tenure_months"]
        + 0.032 * (f["monthly_charges"] - 50)
        + 1.0 * f["support_calls"]
        + 0.11 * f["days_since_login"]
        - 0.55 * (f["num_products"] - 1)
        + 0.8 * (f["payment_method"] == "electronic_check")
        - 0.022 * (f["age"] - 44)
    )


def _delivery_features(rng: np.random.Generator, traffic: _Traffic) -> dict[str, np.ndarray]:
    n = traffic.day.size
    hour = traffic.hour_of_day
    restaurant = _pick(rng, RESTAURANTS, n)
    is_type = {name: restaurant == name for name in RESTAURANTS}
    items = 1 + rng.poisson(
        np.select([is_type["casual"], is_type["grocery"], is_type["fine_dining"]], [1.8, 5.0, 2.0], 1.2)
    )
    prep_base = np.select([is_type["casual"], is_type["grocery"], is_type["fine_dining"]], [14.0, 9.0, 24.0], 7.0)
    prep = np.round(prep_base + 0.8 * items + rng.gamma(2.0, 2.0, n), 1)
    distance = np.round(np.clip(rng.lognormal(np.log(3.2), 0.55, n), 0.3, 25.0), 2)
    long_trip = np.clip((distance - 1.5) / 6, 0, 1)
    vehicle_probs = np.column_stack([0.6 * (1 - long_trip) + 0.02, np.full(n, 0.35), 0.05 + 0.6 * long_trip])
    tier = _pick(rng, CITY_TIERS, n)
    rush = np.exp(-(((hour - 8.5) / 1.5) ** 2)) + 1.2 * np.exp(-(((hour - 18.0) / 2.0) ** 2))
    tier_bump = np.select([tier == "tier1", tier == "tier2"], [1.0, 0.4], 0.0)
    traffic_index = np.round(np.maximum(0.0, 2.5 + 2.5 * rush + tier_bump + rng.normal(0, 0.8, n)), 2)
    courier_load = np.round(np.maximum(0.1, 0.9 * hourly_profile(hour) + rng.normal(0, 0.2, n)), 2)
    region_temp = np.select(
        [traffic.region == "EU", traffic.region == "NA", traffic.region == "APAC"], [9.0, 12.0, 24.0], 21.0
    )
    temperature = np.round(region_temp + 4.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 3, n), 1)
    weather = _pick(rng, WEATHER, n)
    weather = np.where((weather == "rain") & (temperature < 1.0), "snow", weather).astype(object)
    unit_price = np.select([is_type["casual"], is_type["grocery"], is_type["fine_dining"]], [14.0, 6.0, 32.0], 9.0)
    order_value = np.round(items * unit_price * rng.lognormal(0, 0.25, n), 2)
    return {
        "distance_km": distance,
        "items": items.astype(np.int64),
        "prep_time_min": prep,
        "courier_load": courier_load,
        "traffic_index": traffic_index,
        "temperature_c": temperature,
        "order_value": order_value,
        "weather": weather,
        "vehicle": _pick_rowwise(rng, ["bike", "scooter", "car"], vehicle_probs),
        "restaurant_type": restaurant,
        "region": traffic.region,
        "city_tier": tier,
    }


def _delivery_minutes(f: dict[str, np.ndarray]) -> np.ndarray:
    """Expected minutes from order to doorstep."""
    pace = np.select([f["vehicle"] == "bike", f["vehicle"] == "scooter"], [4.0, 2.8], 2.3)
    weather_delay = np.select([f["weather"] == "rain", f["weather"] == "snow", f["weather"] == "fog"], [4.0, 9.0, 2.0])
    return (
        2.0
        + f["prep_time_min"]
        + f["distance_km"] * pace * (1 + 0.08 * f["traffic_index"])
        + 6.0 * (f["courier_load"] - 0.9)
        + weather_delay
        + 0.3 * f["items"]
    )


def _truncated_lognormal(rng: np.random.Generator, median: float, sigma: float, cap: float, n: int) -> np.ndarray:
    values = rng.lognormal(np.log(median), sigma, n)
    # Redraw past the cap instead of clipping, so there is a tail but no spike at the cap.
    while (over := values > cap).any():
        values[over] = rng.lognormal(np.log(median), sigma, int(over.sum()))
    return values


def _churn_delay_us(rng: np.random.Generator, n: int) -> np.ndarray:
    # Parameters solved so the 72 h-truncated law has median 3 h and 85% within 24 h.
    hours = _truncated_lognormal(rng, 5.92, 2.84, 72.0, n)
    return (hours * _US_PER_HOUR).astype(np.int64)


def _labels(
    rng: np.random.Generator,
    predictions: pd.DataFrame,
    delay_us: np.ndarray,
    values: np.ndarray,
    duplicate_values: np.ndarray,
    columns: tuple[str, str, str],
) -> pd.DataFrame:
    """Late labels: ~3% never arrive, ~1% arrive twice (the second later, carrying ``duplicate_values``)."""
    n = len(predictions)
    arrives = rng.random(n) >= NEVER_LABELLED_SHARE
    twice = arrives & (rng.random(n) < DUPLICATE_LABEL_SHARE)
    labelled_at = predictions["predicted_at"].to_numpy() + delay_us.astype("timedelta64[us]")
    resent_after = (rng.lognormal(np.log(2.0), 1.0, n) * _US_PER_HOUR).astype("timedelta64[us]")
    id_column, time_column, value_column = columns
    ids = predictions["request_id"].to_numpy()
    frame = pd.DataFrame(
        {
            id_column: np.concatenate([ids[arrives], ids[twice]]),
            time_column: np.concatenate([labelled_at[arrives], (labelled_at + resent_after)[twice]]),
            value_column: np.concatenate([values[arrives], duplicate_values[twice]]),
        }
    )
    return frame.sort_values(time_column, kind="stable").reset_index(drop=True)


def _with_duplicate_predictions(rng: np.random.Generator, frame: pd.DataFrame) -> pd.DataFrame:
    """Log ~0.1% of requests twice, a few seconds apart (a client retry)."""
    retried = rng.random(len(frame)) < DUPLICATE_PREDICTION_SHARE
    copies = frame[retried].copy()
    copies["predicted_at"] += pd.to_timedelta(rng.integers(1_000_000, 10_000_000, int(retried.sum())), unit="us")
    both = pd.concat([frame, copies], ignore_index=True)
    return both.sort_values("predicted_at", kind="stable").reset_index(drop=True)


def _rng(spec: DemoSpec, stream: int) -> np.random.Generator:
    # One stream per model, so changing one generator does not reshuffle the other's data.
    return np.random.default_rng(np.random.SeedSequence(spec.seed).spawn(stream + 1)[stream])


def churn_frames(spec: DemoSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Churn predictions and late labels (``churn_predictions``, ``churn_labels``).

    During the incident the logged ``support_calls`` jump by 4 in the incident region (a pipeline
    bug) and the model, fed the broken feature, ranks customers there little better than chance.

    Args:
        spec: What to generate.

    Returns:
        ``(predictions, labels)`` with the columns of ``include/monitors/churn.yaml``.
    """
    rng = _rng(spec, 0)
    traffic = _traffic(rng, spec)
    features = _churn_features(rng, traffic)
    n = traffic.day.size
    true_logit = _churn_logit(features)
    churned = (rng.random(n) < _sigmoid(true_logit)).astype(np.int64)
    version = _model_version(rng, traffic)
    model_logit = true_logit + rng.normal(0, 1, n) * np.where(version == "v4", 1.25, 1.3)
    # Fed four phantom support calls, the model inflates every score there (+2 logits) and its
    # ranking drowns in noise: EU AUC ~0.6, overall hourly AUC ~0.75 while the window lasts.
    broken_logit = 0.15 * true_logit + 2.0 + rng.normal(0, 1.6, n)
    model_logit = np.where(traffic.incident, broken_logit, model_logit)
    features["support_calls"] = np.where(traffic.incident, features["support_calls"] + 4, features["support_calls"])
    head = {
        "request_id": _request_ids("chn", n),
        "predicted_at": traffic.predicted_at,
        "model_version": version,
        "score": np.round(_sigmoid(model_logit), 6),
    }
    predictions = pd.DataFrame(head | features)
    labels = _labels(
        rng, predictions, _churn_delay_us(rng, n), churned, churned, ("request_id", "labeled_at", "churned")
    )
    return _with_duplicate_predictions(rng, predictions), labels


def delivery_frames(spec: DemoSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delivery-time predictions and actual minutes (``delivery_predictions``, ``delivery_labels``).

    During the incident ``traffic_index`` jumps in the incident region and real gridlock adds
    ~20 minutes the model does not foresee, so its estimates there are badly biased.

    Args:
        spec: What to generate.

    Returns:
        ``(predictions, labels)`` with the columns of ``include/monitors/delivery.yaml``.
    """
    rng = _rng(spec, 1)
    traffic = _traffic(rng, spec)
    features = _delivery_features(rng, traffic)
    n = traffic.day.size
    features["traffic_index"] = np.where(traffic.incident, features["traffic_index"] + 4.5, features["traffic_index"])
    expected = _delivery_minutes(features)
    gridlock = np.where(traffic.incident, rng.gamma(4.0, 5.0, n), 0.0)
    actual = np.round(np.maximum(4.0, expected + gridlock + rng.normal(0, 3.6, n)), 1)
    version = _model_version(rng, traffic)
    predicted = np.round(np.maximum(5.0, expected + rng.normal(0, 1, n) * np.where(version == "v4", 3.6, 3.8)), 1)
    # A courier app's correction of the delivered time, sent with the duplicate label row.
    corrected = np.where(rng.random(n) < 0.5, actual, np.round(np.maximum(4.0, actual + rng.normal(0, 2, n)), 1))
    head = {
        "request_id": _request_ids("dlv", n),
        "predicted_at": traffic.predicted_at,
        "model_version": version,
        "predicted_minutes": predicted,
    }
    predictions = pd.DataFrame(head | features)
    # The label lands when the order is delivered plus an ingestion lag with a long tail.
    lag_minutes = actual + _truncated_lognormal(rng, 4.0, 2.3, 48 * 60.0, n)
    delay_us = (lag_minutes * _US_PER_MINUTE).astype(np.int64)
    labels = _labels(rng, predictions, delay_us, actual, corrected, ("request_id", "delivered_at", "actual_minutes"))
    return _with_duplicate_predictions(rng, predictions), labels


def demo_frames(spec: DemoSpec) -> dict[str, pd.DataFrame]:
    """All four demo tables, keyed by the table names the example monitors read.

    Args:
        spec: What to generate.

    Returns:
        ``churn_predictions``, ``churn_labels``, ``delivery_predictions``, ``delivery_labels``.
    """
    churn_predictions, churn_labels = churn_frames(spec)
    delivery_predictions, delivery_labels = delivery_frames(spec)
    return {
        "churn_predictions": churn_predictions,
        "churn_labels": churn_labels,
        "delivery_predictions": delivery_predictions,
        "delivery_labels": delivery_labels,
    }
