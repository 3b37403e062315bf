"""Multiclass metrics from a confusion matrix, vectorised over leading (bootstrap) axes.

Averages follow sklearn with ``zero_division=np.nan``: classes absent from both the labels and the
predictions are left out (sklearn only knows the labels it sees), and a per-class value that is
0/0 is excluded from the macro/weighted average instead of counting as 0.
"""

from __future__ import annotations

import numpy as np

from modelwatch.core.metrics._values import defined, undefined
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import MulticlassStats

NO_LABELS = "no labelled rows"


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _average(per_class: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """NaN-skipping weighted mean over the last axis; NaN when no class has a defined value and weight."""
    usable = ~np.isnan(per_class) & (weights > 0)
    w = np.where(usable, weights, 0.0)
    return _divide(np.sum(np.where(usable, per_class, 0.0) * w, axis=-1), np.sum(w, axis=-1))


def confusion_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and averaged precision/recall/F1 of confusion matrices (rows true, columns predicted).

    Args:
        confusion: Shape (..., K, K).

    Returns:
        Name -> array of shape (...); NaN where undefined. Also ``recall_by_class`` of shape (..., K).
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    seen = (support + predicted) > 0
    per_class = {
        "precision": _divide(hits, predicted),
        "recall": _divide(hits, support),
        "f1": _divide(2 * hits, support + predicted),
    }
    out = {"accuracy": _divide(hits.sum(axis=-1), support.sum(axis=-1))}
    for name, values in per_class.items():
        out[f"{name}_macro"] = _average(values, seen.astype(np.float64))
        out[f"{name}_weighted"] = _average(values, support)
    out["recall_by_class"] = per_class["recall"]
    return out


def multiclass_metrics(stats: MulticlassStats) -> dict[str, MetricValue]:
    """Accuracy, macro/weighted precision/recall/F1, recall per class and (when available) log loss.

    Args:
        stats: Confusion matrix over the configured classes (and optional log-loss sums).

    Returns:
        Metric name -> value; undefined metrics carry None and a reason.
    """
    scores = confusion_scores(stats.confusion)
    names = [f"{m}_{avg}" for m in ("f1", "precision", "recall") for avg in ("macro", "weighted")]
    values: list[MetricValue] = []
    if int(stats.confusion.sum()) == 0:
        values += [undefined(name, NO_LABELS) for name in ("accuracy", *names)]
    else:
        values.append(defined("accuracy", scores["accuracy"], NO_LABELS))
        values += [defined(name, scores[name], f"no class defines {name.split('_')[0]}") for name in names]
    for cls, recall in zip(stats.classes, scores["recall_by_class"], strict=True):
        values.append(defined(f"recall_{cls}", recall, f"no labelled rows of class {cls}"))
    if stats.log_loss_sum is not None:
        if stats.log_loss_n:
            values.append(MetricValue("log_loss", stats.log_loss_sum / stats.log_loss_n))
        else:
            values.append(undefined("log_loss", NO_LABELS))
    return {m.name: m for m in values}
