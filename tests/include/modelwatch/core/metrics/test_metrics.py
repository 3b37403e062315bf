"""Metrics from sufficient statistics, checked against scikit-learn on the same rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata
from sklearn import metrics as skm

from modelwatch.core.metrics import (
    average_precision_error_bound,
    bootstrap_interval,
    compute_metrics,
    estimate_metrics,
    roc_auc_error_bound,
)
from modelwatch.core.stats import (
    APE_EPS,
    BinaryStats,
    JoinCounts,
    RegressionStats,
    WindowStats,
    binary_stats_from_arrays,
    multiclass_stats_from_arrays,
    regression_stats_from_arrays,
)

BINARY = "binary_classification"
MULTICLASS = "multiclass_classification"
REGRESSION = "regression"
CLASSES = ("cat", "dog", "eel", "fox")


def _binary_rows(n: int = 4000, seed: int = 0, unlabelled: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float64)
    scores = rng.beta(2 + 2 * y, 4 - 2 * y)
    labels = np.where(rng.random(n) < unlabelled, np.nan, y)
    return scores, labels


def _window(task_stats, predictions: int, labelled: int) -> WindowStats:
    return WindowStats(JoinCounts(predictions=predictions, labelled=labelled), task_stats)


def _binary_metrics(scores, labels, *, threshold=0.5, resolution=1e-4):
    stats = binary_stats_from_arrays(scores, labels, threshold=threshold, resolution=resolution)
    labelled = int(np.sum(~np.isnan(np.asarray(labels, dtype=float))))
    return compute_metrics(_window(stats, len(scores), labelled), task=BINARY)


def _values(metrics) -> dict[str, float | None]:
    return {name: m.value for name, m in metrics.items()}


def _ece_oracle(scores: np.ndarray, y: np.ndarray) -> float:
    bins = np.clip(np.floor(scores * 10), 0, 9)
    return sum(abs(scores[bins == k].sum() - y[bins == k].sum()) for k in range(10)) / len(y)


# --- binary ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [1e-4, None])
def test_binary_metrics_match_sklearn(resolution):
    scores, labels = _binary_rows()
    m = _values(_binary_metrics(scores, labels, threshold=0.45, resolution=resolution))
    keep = ~np.isnan(labels)
    s, y = scores[keep], labels[keep]
    pred = (s >= 0.45).astype(int)
    exact = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "specificity": skm.recall_score(y, pred, pos_label=0),
        "prevalence": y.mean(),
        "positive_rate": np.mean(scores >= 0.45),
        "mean_score": scores.mean(),
        "predictions": len(scores),
        "labelled": keep.sum(),
        "label_coverage": keep.mean(),
    }
    for name, expected in exact.items():
        assert m[name] == pytest.approx(expected, abs=1e-12), name
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, s), abs=1e-9)
    assert m["brier"] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-9)
    assert m["ece"] == pytest.approx(_ece_oracle(s, y), abs=1e-9)
    ranking_tolerance = 1e-3 if resolution else 1e-12
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=ranking_tolerance)
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(y, s), abs=ranking_tolerance)


def test_exact_histogram_treats_tied_scores_like_sklearn():
    scores, labels = _binary_rows(n=3000, unlabelled=0.0)
    scores = np.round(scores, 2)  # many ties
    m = _values(_binary_metrics(scores, labels, resolution=None))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
    assert m["average_precision"] == pytest.approx(skm.average_precision_score(labels, scores), abs=1e-12)


def test_binned_ranking_metrics_are_within_their_bounds_and_1e3_on_realistic_data():
    scores, labels = _binary_rows(n=50_000, seed=3, unlabelled=0.0)
    stats = binary_stats_from_arrays(scores, labels, threshold=0.5)
    m = _values(compute_metrics(_window(stats, len(scores), len(scores)), task=BINARY))
    auc_error = abs(m["roc_auc"] - skm.roc_auc_score(labels, scores))
    ap_error = abs(m["average_precision"] - skm.average_precision_score(labels, scores))
    assert auc_error <= roc_auc_error_bound(stats.histogram) <= 1e-3
    assert ap_error <= average_precision_error_bound(stats.histogram) <= 1e-3
    exact = binary_stats_from_arrays(scores, labels, threshold=0.5, resolution=None)
    assert roc_auc_error_bound(exact.histogram) == 0.0
    assert average_precision_error_bound(exact.histogram) == 0.0


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.one_of(st.floats(0, 1), st.integers(0, 8).map(lambda k: k / 8)), st.booleans()),
        min_size=2,
        max_size=40,
    ),
    resolution=st.sampled_from([0.5, 0.25, 0.1, 0.01]),
)
def test_error_bounds_hold_for_any_rows(rows, resolution):
    scores = np.array([s for s, _ in rows])
    y = np.array([float(p) for _, p in rows])
    hist = binary_stats_from_arrays(scores, y, threshold=0.5, resolution=resolution).histogram
    m = _values(_binary_metrics(scores, y, resolution=resolution))
    if 0 < y.sum() < len(y):
        assert abs(m["roc_auc"] - skm.roc_auc_score(y, scores)) <= roc_auc_error_bound(hist) + 1e-12
    if y.sum() > 0:
        exact_ap = skm.average_precision_score(y, scores)
        assert abs(m["average_precision"] - exact_ap) <= average_precision_error_bound(hist) + 1e-12


def test_binary_metrics_do_not_depend_on_row_order():
    scores, labels = _binary_rows(n=2000, seed=5)
    order = np.random.default_rng(9).permutation(len(scores))
    before = _values(_binary_metrics(scores, labels))
    after = _values(_binary_metrics(scores[order], labels[order]))
    assert before.keys() == after.keys()
    for name, value in before.items():
        # Float sums may differ in the last bit with the summation order; counts are identical.
        assert after[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


@pytest.mark.parametrize(
    ("scores", "labels", "expected"),
    [
        ([], [], {"roc_auc": "no labelled rows", "accuracy": "no labelled rows", "positive_rate": "no scored"}),
        ([0.2, 0.7], [np.nan, np.nan], {"roc_auc": "no labelled rows", "log_loss": "no labelled rows"}),
        ([0.2, 0.7, 0.9], [1, 1, 1], {"roc_auc": "only one class", "specificity": "no negative"}),
        ([0.2, 0.7, 0.9], [0, 0, 0], {"roc_auc": "only one class", "average_precision": "no positive"}),
        ([0.1, 0.2, 0.3], [0, 0, 0], {"recall": "no positive", "precision": "no predicted positives"}),
        ([0.1, 0.2], [0, 0], {"f1": "no positive labels and no predicted positives"}),
    ],
)
def test_undefined_binary_metrics_are_none_with_reason(scores, labels, expected):
    m = _binary_metrics(np.array(scores, dtype=float), np.array(labels, dtype=float))
    for name, reason in expected.items():
        assert m[name].value is None, name
        assert reason in m[name].reason, name
    assert all(v.value is None or np.isfinite(v.value) for v in m.values())


def test_defined_values_are_kept_where_sklearn_has_them():
    # One positive missed entirely: precision is undefined but F1 is a real 0 (sklearn agrees).
    m = _values(_binary_metrics(np.array([0.1, 0.2, 0.9]), np.array([1.0, 0.0, 0.0])))
    assert m["precision"] == 0.0 and m["f1"] == 0.0 and m["recall"] == 0.0
    m = _values(_binary_metrics(np.array([0.1, 0.2]), np.array([1.0, 1.0])))
    assert m["log_loss"] == pytest.approx(skm.log_loss([1, 1], [0.1, 0.2], labels=[0, 1]), abs=1e-9)
    assert m["average_precision"] == 1.0


def test_no_predictions_gives_no_coverage():
    empty = binary_stats_from_arrays(np.array([]), np.array([]), threshold=0.5)
    m = compute_metrics(_window(empty, 0, 0), task=BINARY)
    assert m["label_coverage"].value is None and m["label_coverage"].reason == "no predictions"
    assert m["predictions"].value == 0.0


def test_compute_metrics_rejects_wrong_task():
    stats = regression_stats_from_arrays(np.array([1.0]), np.array([1.0]))
    with pytest.raises(ValueError, match="needs BinaryStats"):
        compute_metrics(_window(stats, 1, 1), task=BINARY)
    with pytest.raises(ValueError, match="unknown task"):
        compute_metrics(_window(stats, 1, 1), task="ranking")


# --- multiclass -----------------------------------------------------------------------------------


def _multiclass_rows(n: int = 3000, seed: int = 0):
    rng = np.random.default_rng(seed)
    proba = rng.dirichlet([1.0, 1.0, 1.0, 1.0], size=n)
    proba[:, 2] *= 0.05  # 'eel' is rare
    proba /= proba.sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(4, p=p) for p in proba])
    labels = np.array(CLASSES)[truth]
    predicted = np.array(CLASSES)[proba.argmax(axis=1)]
    return predicted, labels, proba


def test_multiclass_metrics_match_sklearn():
    predicted, labels, proba = _multiclass_rows()
    true_proba = proba[np.arange(len(labels)), [CLASSES.index(c) for c in labels]]
    stats = multiclass_stats_from_arrays(predicted, labels, classes=CLASSES, true_class_proba=true_proba)
    m = _values(compute_metrics(_window(stats, len(labels), len(labels)), task=MULTICLASS))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(labels, predicted), abs=1e-12)
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        for avg in ("macro", "weighted"):
            expected = fn(labels, predicted, average=avg, zero_division=np.nan)
            assert m[f"{name}_{avg}"] == pytest.approx(expected, abs=1e-12), f"{name}_{avg}"
    per_class = skm.recall_score(labels, predicted, labels=list(CLASSES), average=None)
    for cls, expected in zip(CLASSES, per_class, strict=True):
        assert m[f"recall_{cls}"] == pytest.approx(expected, abs=1e-12)
    assert m["log_loss"] == pytest.approx(skm.log_loss(labels, proba, labels=list(CLASSES)), abs=1e-9)


def test_multiclass_absent_and_prediction_only_classes_follow_sklearn_nan_convention():
    labels = np.array(["cat", "cat", "dog", "dog", "dog"])
    predicted = np.array(["cat", "fox", "dog", "cat", "dog"])  # 'fox' only predicted, 'eel' absent
    stats = multiclass_stats_from_arrays(predicted, labels, classes=CLASSES)
    m = compute_metrics(_window(stats, 5, 5), task=MULTICLASS)
    for name, fn in (("f1", skm.f1_score), ("precision", skm.precision_score), ("recall", skm.recall_score)):
        for avg in ("macro", "weighted"):
            expected = fn(labels, predicted, average=avg, zero_division=np.nan)
            assert m[f"{name}_{avg}"].value == pytest.approx(expected, abs=1e-12), f"{name}_{avg}"
    assert m["recall_fox"].value is None and "class fox" in m["recall_fox"].reason
    assert m["recall_eel"].value is None
    assert "log_loss" not in m  # no class scores configured


def test_multiclass_without_labels_is_undefined():
    stats = multiclass_stats_from_arrays(np.array([]), np.array([]), classes=CLASSES, true_class_proba=np.array([]))
    m = compute_metrics(_window(stats, 10, 0), task=MULTICLASS)
    assert m["accuracy"].value is None and m["f1_macro"].reason == "no labelled rows"
    assert m["log_loss"].value is None
    assert m["label_coverage"].value == 0.0


# --- regression -----------------------------------------------------------------------------------


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(4)
    y = rng.normal(50, 10, 3000)
    y[:30] = 0.0  # left out of MAPE
    pred = y + rng.normal(1.0, 4.0, 3000)
    labels = np.where(rng.random(3000) < 0.1, np.nan, y)
    stats = regression_stats_from_arrays(pred, labels)
    m = _values(compute_metrics(_window(stats, 3000, int(np.sum(~np.isnan(labels)))), task=REGRESSION))
    keep = ~np.isnan(labels)
    yy, pp = labels[keep], pred[keep]
    assert m["mae"] == pytest.approx(skm.mean_absolute_error(yy, pp), abs=1e-12)
    assert m["mse"] == pytest.approx(skm.mean_squared_error(yy, pp), abs=1e-12)
    assert m["rmse"] == pytest.approx(skm.root_mean_squared_error(yy, pp), abs=1e-12)
    assert m["mean_error"] == pytest.approx(np.mean(pp - yy), abs=1e-12)
    assert m["r2"] == pytest.approx(skm.r2_score(yy, pp), abs=1e-9)
    nz = np.abs(yy) > APE_EPS
    assert m["mape"] == pytest.approx(skm.mean_absolute_percentage_error(yy[nz], pp[nz]), abs=1e-9)


@pytest.mark.parametrize(
    ("pred", "labels", "expected"),
    [
        ([1.0, 2.0], [np.nan, np.nan], {"mae": "no labelled rows", "r2": "no labelled rows", "mape": "no labelled"}),
        ([1.0, 2.0], [3.3, 3.3], {"r2": "constant"}),
        ([1.0], [2.0], {"r2": "fewer than two"}),
        ([1.0, 2.0], [0.0, 0.0], {"mape": "|label| >"}),
    ],
)
def test_undefined_regression_metrics_are_none_with_reason(pred, labels, expected):
    stats = regression_stats_from_arrays(np.array(pred), np.array(labels))
    m = compute_metrics(_window(stats, len(pred), stats.n), task=REGRESSION)
    for name, reason in expected.items():
        assert m[name].value is None and reason in m[name].reason, name


# --- estimation (CBPE) ----------------------------------------------------------------------------


def test_estimated_metrics_track_realised_metrics_for_calibrated_scores():
    rng = np.random.default_rng(11)
    scores = rng.beta(1.5, 3.0, 50_000)
    y = (rng.random(50_000) < scores).astype(np.float64)  # calibrated by construction
    stats = binary_stats_from_arrays(scores, np.full_like(y, np.nan), threshold=0.4)  # no labels needed
    estimated = estimate_metrics(stats)
    pred = scores >= 0.4
    realised = {
        "roc_auc": skm.roc_auc_score(y, scores),
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
    }
    for name, value in realised.items():
        assert estimated[name].value == pytest.approx(value, abs=0.02), name


def test_estimation_is_undefined_without_rows_or_with_degenerate_scores():
    empty = estimate_metrics(binary_stats_from_arrays(np.array([]), np.array([]), threshold=0.5))
    assert all(m.value is None and m.reason == "no scored predictions" for m in empty.values())
    zeros = estimate_metrics(binary_stats_from_arrays(np.zeros(5), np.full(5, np.nan), threshold=0.5))
    assert zeros["roc_auc"].value is None and zeros["accuracy"].value == 1.0


# --- bootstrap ------------------------------------------------------------------------------------


def _binary_stats(n: int = 20_000, seed: int = 2) -> BinaryStats:
    scores, labels = _binary_rows(n=n, seed=seed, unlabelled=0.0)
    return binary_stats_from_arrays(scores, labels, threshold=0.5)


@pytest.mark.parametrize(
    "metric", ["roc_auc", "average_precision", "ece", "log_loss", "brier", "f1", "positive_rate", "mean_score"]
)
def test_binary_bootstrap_brackets_the_value_and_is_deterministic(metric):
    stats = _binary_stats()
    value = compute_metrics(_window(stats, 1, 1), task=BINARY)[metric].value
    low, high = bootstrap_interval(stats, metric, seed=7)
    assert low < value < high
    assert high - low < 0.1
    assert bootstrap_interval(stats, metric, seed=7) == (low, high)
    assert bootstrap_interval(stats, metric, seed=8) != (low, high)


def test_bootstrap_width_matches_analytic_standard_errors():
    stats = _binary_stats()
    n = stats.tp + stats.fp + stats.tn + stats.fn
    accuracy = (stats.tp + stats.tn) / n
    low, high = bootstrap_interval(stats, "accuracy", n_boot=400)
    assert (high - low) == pytest.approx(2 * 1.96 * np.sqrt(accuracy * (1 - accuracy) / n), rel=0.2)
    low, high = bootstrap_interval(stats, "roc_auc", n_boot=400)
    assert (high - low) == pytest.approx(2 * 1.96 * _delong_standard_error(seed=2), rel=0.15)


def _delong_standard_error(seed: int) -> float:
    """DeLong et al. (1988) standard error of the AUC from the raw rows (placement values)."""
    scores, labels = _binary_rows(n=20_000, seed=seed, unlabelled=0.0)
    pos, neg = scores[labels == 1], scores[labels == 0]
    ranks_all = rankdata(np.concatenate([pos, neg]))
    positive_placement = (ranks_all[: len(pos)] - rankdata(pos)) / len(neg)
    negative_placement = 1 - (ranks_all[len(pos) :] - rankdata(neg)) / len(pos)
    return float(np.sqrt(positive_placement.var(ddof=1) / len(pos) + negative_placement.var(ddof=1) / len(neg)))


def test_bootstrap_on_a_10k_bin_histogram_brackets_the_auc():
    """A large histogram (its speed is measured by ``make bench``, not here)."""
    stats = _binary_stats(n=60_000)
    assert len(stats.histogram.keys) >= 9000
    low, high = bootstrap_interval(stats, "roc_auc", n_boot=200)
    point = compute_metrics(_window(stats, 60_000, 60_000), task=BINARY)["roc_auc"].value
    assert low < point < high


def test_multiclass_bootstrap():
    predicted, labels, _ = _multiclass_rows(n=2000)
    stats = multiclass_stats_from_arrays(predicted, labels, classes=CLASSES)
    accuracy = skm.accuracy_score(labels, predicted)
    low, high = bootstrap_interval(stats, "accuracy", n_boot=400)
    assert (high - low) == pytest.approx(2 * 1.96 * np.sqrt(accuracy * (1 - accuracy) / 2000), rel=0.2)
    low, high = bootstrap_interval(stats, "recall_dog")
    assert low < skm.recall_score(labels, predicted, labels=["dog"], average=None)[0] < high
    assert bootstrap_interval(stats, "f1_macro") is not None


def test_regression_normal_intervals_agree_with_a_row_bootstrap():
    rng = np.random.default_rng(6)
    y = rng.normal(10, 3, 2000)
    pred = y + rng.normal(0.5, 2.0, 2000)
    stats = regression_stats_from_arrays(pred, y)
    index = rng.integers(0, 2000, size=(1000, 2000))
    err = pred[index] - y[index]
    sst = ((y[index] - y[index].mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    by_rows = {
        "mae": np.abs(err).mean(axis=1),
        "mean_error": err.mean(axis=1),
        "mse": (err**2).mean(axis=1),
        "rmse": np.sqrt((err**2).mean(axis=1)),
        "r2": 1 - (err**2).sum(axis=1) / sst,
    }
    for metric, samples in by_rows.items():
        low, high = bootstrap_interval(stats, metric)
        q_low, q_high = np.quantile(samples, [0.025, 0.975])
        assert low == pytest.approx(q_low, abs=0.25 * (q_high - q_low)), metric
        assert high == pytest.approx(q_high, abs=0.25 * (q_high - q_low)), metric


def test_bootstrap_is_none_when_undefined_and_rejects_unknown_metrics():
    one_class = binary_stats_from_arrays(np.array([0.2, 0.8]), np.array([1.0, 1.0]), threshold=0.5)
    assert bootstrap_interval(one_class, "roc_auc") is None
    assert bootstrap_interval(RegressionStats(), "mae") is None
    assert bootstrap_interval(regression_stats_from_arrays(np.ones(5), np.arange(5.0) + 1), "mape") is None
    with pytest.raises(ValueError, match="not a BinaryStats metric"):
        bootstrap_interval(one_class, "r2")


def test_bootstrap_accepts_a_whole_window():
    stats = _binary_stats(n=2000)
    window = _window(stats, 2000, 2000)
    assert bootstrap_interval(window, "recall", seed=3) == bootstrap_interval(stats, "recall", seed=3)
