"""Binary classification metrics from :class:`~modelwatch.core.stats.BinaryStats`."""

from __future__ import annotations

from modelwatch.core.metrics._values import defined, ratio, undefined
from modelwatch.core.metrics.ranking import (
    auc_from_counts,
    average_precision_from_counts,
    ece_bin_index,
    ece_from_counts,
)
from modelwatch.core.result import MetricValue
from modelwatch.core.stats import BinaryStats

NO_LABELS = "no labelled rows"
ONE_CLASS = "only one class among labelled rows"
NO_POSITIVES = "no positive labels"
NO_NEGATIVES = "no negative labels"
NO_PREDICTED_POSITIVES = "no predicted positives among labelled rows"
NO_SCORED = "no scored predictions"
NOTHING_TO_SCORE = "no positive labels and no predicted positives"


def _ranking_metrics(stats: BinaryStats) -> list[MetricValue]:
    hist = stats.histogram
    n_pos, n_neg = int(hist.pos.sum()), int(hist.neg.sum())
    if n_pos + n_neg == 0:
        return [undefined("roc_auc", NO_LABELS), undefined("average_precision", NO_LABELS)]
    if n_pos == 0 or n_neg == 0:
        roc_auc = undefined("roc_auc", ONE_CLASS)
    else:
        roc_auc = defined("roc_auc", auc_from_counts(hist.pos, hist.neg), ONE_CLASS)
    if n_pos == 0:
        average_precision = undefined("average_precision", NO_POSITIVES)
    else:
        average_precision = defined(
            "average_precision", average_precision_from_counts(hist.pos, hist.neg), NO_POSITIVES
        )
    return [roc_auc, average_precision]


def _probability_metrics(stats: BinaryStats) -> list[MetricValue]:
    hist = stats.histogram
    labelled = hist.pos + hist.neg
    n = int(labelled.sum())
    if n == 0:
        return [undefined(name, NO_LABELS) for name in ("log_loss", "brier", "ece")]
    ece = ece_from_counts(hist.pos, labelled, hist.score_sum_labelled, ece_bin_index(hist))
    return [
        MetricValue("log_loss", stats.log_loss_sum / n),
        MetricValue("brier", stats.brier_sum / n),
        defined("ece", ece, NO_LABELS),
    ]


def _confusion_metrics(stats: BinaryStats) -> list[MetricValue]:
    tp, fp, tn, fn = stats.tp, stats.fp, stats.tn, stats.fn
    n = tp + fp + tn + fn
    if n == 0:
        names = ("accuracy", "precision", "recall", "f1", "specificity", "prevalence")
        return [undefined(name, NO_LABELS) for name in names]
    return [
        ratio("accuracy", tp + tn, n, NO_LABELS),
        ratio("precision", tp, tp + fp, NO_PREDICTED_POSITIVES),
        ratio("recall", tp, tp + fn, NO_POSITIVES),
        # sklearn's F1 is 2TP / (2TP + FP + FN): 0 (not undefined) when there are positives or
        # predicted positives but no hits; only an all-true-negative window leaves it undefined.
        ratio("f1", 2 * tp, 2 * tp + fp + fn, NOTHING_TO_SCORE),
        ratio("specificity", tn, tn + fp, NO_NEGATIVES),
        ratio("prevalence", tp + fn, n, NO_LABELS),
    ]


def _traffic_metrics(stats: BinaryStats) -> list[MetricValue]:
    return [
        ratio("positive_rate", stats.predicted_positive_all, stats.scored_all, NO_SCORED),
        ratio("mean_score", stats.score_sum_all, stats.scored_all, NO_SCORED),
    ]


def binary_metrics(stats: BinaryStats) -> dict[str, MetricValue]:
    """All binary metrics: ranking (histogram), probability quality, confusion (at the threshold), traffic.

    Args:
        stats: Sufficient statistics of the window.

    Returns:
        Metric name -> value; undefined metrics carry None and a reason.
    """
    values = [
        *_ranking_metrics(stats),
        *_probability_metrics(stats),
        *_confusion_metrics(stats),
        *_traffic_metrics(stats),
    ]
    return {m.name: m for m in values}
