"""Sufficient statistics of a window: what the warehouse computes so metrics never need raw rows.

Every statistic here is *mergeable*: ``a.merge(b)`` equals the statistic of the union of the rows,
which is how a daily window is rolled up from its 24 hourly windows without rescanning. The
``*_from_arrays`` builders are the in-memory definitions; the SQL in ``modelwatch.warehouse`` must
produce exactly the same objects (tests compare the two).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

DEFAULT_RESOLUTION = 1e-4
"""Score bin width: bin key = floor(score / resolution) * resolution, scores of 1.0 go to the top bin."""

LOG_EPS = float(np.finfo(np.float64).eps)
"""Probabilities are clipped to [LOG_EPS, 1 - LOG_EPS] before taking logs (scikit-learn's machine epsilon)."""

BIN_NUDGE = 1e-12
"""Added to a score before flooring it into a bin (the warehouse SQL does the same)."""

APE_EPS = 1e-9
"""Regression rows with |y| <= APE_EPS are left out of MAPE (it is undefined there)."""


def _bin_index(scores: np.ndarray, resolution: float | None) -> np.ndarray:
    if resolution is None:
        return scores
    top = round(1.0 / resolution) - 1
    # The nudge keeps grid scores (0.15 at 1e-4 is 1499.999...) in the bin they sit on at every resolution.
    return np.clip(np.floor((scores + BIN_NUDGE) / resolution), 0, top) * resolution


def histogram_keys(keys: np.ndarray, resolution: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct histogram keys and each key's position among them (``np.unique(..., return_inverse)``).

    Bin edges are multiples of ``resolution`` computed in floating point, so they are compared rounded to
    12 decimals; exact scores (``resolution`` None) are compared as they are: rounding them would tie
    distinct scores (1e-14 and 2e-14, or 0.3 and 0.1 + 0.2) and break the AUC guarantee.
    """
    keys = np.asarray(keys, dtype=np.float64)
    return np.unique(keys if resolution is None else np.round(keys, 12), return_inverse=True)


@dataclass(frozen=True)
class ScoreHistogram:
    """Row counts and score sums per score bin, split by label state.

    ``keys`` are sorted ascending: the lower edge of each bin (``resolution`` set) or the exact
    score (``resolution`` None). Bins with no rows are absent.
    """

    resolution: float | None
    keys: np.ndarray
    pos: np.ndarray
    neg: np.ndarray
    unlabelled: np.ndarray
    score_sum_labelled: np.ndarray
    score_sum_unlabelled: np.ndarray

    @classmethod
    def empty(cls, resolution: float | None = DEFAULT_RESOLUTION) -> ScoreHistogram:
        z = np.zeros(0)
        zi = np.zeros(0, dtype=np.int64)
        return cls(resolution, z, zi, zi, zi, z, z)

    def merge(self, other: ScoreHistogram) -> ScoreHistogram:
        a, b = self, other
        if a.resolution != b.resolution:
            coarse = max(r for r in (a.resolution, b.resolution) if r is not None)
            a, b = a.coarsen(coarse), b.coarsen(coarse)
        uniq, inverse = histogram_keys(np.concatenate([a.keys, b.keys]), a.resolution)

        def add(name: str, dtype: Any) -> np.ndarray:
            out = np.zeros(len(uniq), dtype=dtype)
            np.add.at(out, inverse, np.concatenate([getattr(a, name), getattr(b, name)]))
            return out

        return ScoreHistogram(
            a.resolution,
            uniq,
            add("pos", np.int64),
            add("neg", np.int64),
            add("unlabelled", np.int64),
            add("score_sum_labelled", np.float64),
            add("score_sum_unlabelled", np.float64),
        )

    def coarsen(self, resolution: float) -> ScoreHistogram:
        """Re-bin to a wider ``resolution`` (exact histograms become binned)."""
        if self.resolution == resolution:
            return self
        empty = ScoreHistogram.empty(resolution)
        rebinned = replace(self, resolution=resolution, keys=_bin_index(self.keys, resolution))
        return empty.merge(replace(rebinned, resolution=resolution)) if len(self.keys) else empty

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "resolution": self.resolution,
            **{f.name: getattr(self, f.name).tolist() for f in fields(self) if f.name not in ("resolution", "keys")},
        }
        if self.resolution is None:
            out["keys"] = self.keys.tolist()
        else:  # bin indices: a third of the JSON of the float edges, and exact
            out["bins"] = np.rint(self.keys / self.resolution).astype(np.int64).tolist()
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ScoreHistogram:
        ints = {"pos", "neg", "unlabelled"}
        resolution = raw["resolution"]
        if "bins" in raw:
            keys = np.asarray(raw["bins"], dtype=np.int64) * resolution
        else:
            keys = np.asarray(raw["keys"], dtype=np.float64)
        return cls(
            resolution,
            keys,
            **{
                f.name: np.asarray(raw[f.name], dtype=np.int64 if f.name in ints else np.float64)
                for f in fields(cls)
                if f.name not in ("resolution", "keys")
            },
        )


@dataclass(frozen=True)
class JoinCounts:
    """Join health of one window. All counts are additive across windows."""

    predictions: int = 0
    """Distinct request ids predicted in the window (after de-duplication)."""
    labelled: int = 0
    """Of those, how many have a usable label (as of the evaluation time)."""
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    orphan_labels: int = 0
    labels_before_prediction: int = 0
    null_scores: int = 0
    scores_out_of_range: int = 0
    labels_out_of_domain: int = 0
    null_labels: int = 0
    null_request_ids: int = 0
    """Prediction rows in the window with a NULL request-id column: excluded (no id to join or de-duplicate)."""
    class_scores_out_of_range: int = 0
    """Multiclass predictions with a class score outside [0, 1] (or NaN): excluded from log_loss, not clipped."""

    @property
    def label_coverage(self) -> float | None:
        return self.labelled / self.predictions if self.predictions else None

    def merge(self, other: JoinCounts) -> JoinCounts:
        return JoinCounts(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["label_coverage"] = self.label_coverage
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JoinCounts:
        return cls(**{f.name: int(raw.get(f.name, 0)) for f in fields(cls)})


@dataclass(frozen=True)
class BinaryStats:
    """Binary classification. Labelled rows are those with a valid score and label."""

    threshold: float
    histogram: ScoreHistogram
    tp: int = 0
    fp: int = 0
    tn: int = 0
    fn: int = 0
    log_loss_sum: float = 0.0
    brier_sum: float = 0.0
    predicted_positive_all: int = 0
    """Rows (labelled or not) with score >= threshold."""
    scored_all: int = 0
    score_sum_all: float = 0.0

    def merge(self, other: BinaryStats) -> BinaryStats:
        if self.threshold != other.threshold:
            raise ValueError("cannot merge statistics computed at different decision thresholds")
        sums = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("threshold", "histogram")
        }
        return BinaryStats(self.threshold, self.histogram.merge(other.histogram), **sums)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "histogram"}
        return {"kind": "binary", **out, "histogram": self.histogram.to_dict()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BinaryStats:
        scalars = {k: v for k, v in raw.items() if k not in ("kind", "histogram")}
        return cls(histogram=ScoreHistogram.from_dict(raw["histogram"]), **scalars)


@dataclass(frozen=True)
class RegressionStats:
    """Regression; error = prediction - label."""

    n: int = 0
    sum_error: float = 0.0
    sum_abs_error: float = 0.0
    sum_sq_error: float = 0.0
    sum_y: float = 0.0
    sum_y2: float = 0.0
    sum_ape: float = 0.0
    n_ape: int = 0
    scored_all: int = 0
    sum_prediction_all: float = 0.0

    def merge(self, other: RegressionStats) -> RegressionStats:
        return RegressionStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "regression", **{f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RegressionStats:
        return cls(**{k: v for k, v in raw.items() if k != "kind"})


@dataclass(frozen=True)
class MulticlassStats:
    """Multiclass: confusion matrix (rows = true class, columns = predicted) over ``classes``."""

    classes: tuple[str, ...]
    confusion: np.ndarray
    log_loss_sum: float | None = None
    """Sum of -log p(true class); None when the config names no per-class score columns."""
    log_loss_n: int = 0

    def merge(self, other: MulticlassStats) -> MulticlassStats:
        if self.classes != other.classes:
            raise ValueError("cannot merge multiclass statistics over different classes")
        both = self.log_loss_sum is not None and other.log_loss_sum is not None
        return MulticlassStats(
            self.classes,
            self.confusion + other.confusion,
            (self.log_loss_sum + other.log_loss_sum) if both else None,  # type: ignore[operator]
            self.log_loss_n + other.log_loss_n,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "multiclass",
            "classes": list(self.classes),
            "confusion": self.confusion.tolist(),
            "log_loss_sum": self.log_loss_sum,
            "log_loss_n": self.log_loss_n,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> MulticlassStats:
        return cls(
            tuple(raw["classes"]),
            np.asarray(raw["confusion"], dtype=np.int64),
            raw["log_loss_sum"],
            raw["log_loss_n"],
        )


TaskStats = BinaryStats | RegressionStats | MulticlassStats


def stats_from_dict(raw: dict[str, Any]) -> TaskStats:
    kinds = {"binary": BinaryStats, "regression": RegressionStats, "multiclass": MulticlassStats}
    return kinds[raw["kind"]].from_dict(raw)


@dataclass(frozen=True)
class WindowStats:
    """Everything the warehouse returns for one window: join health plus the task statistics."""

    counts: JoinCounts
    task_stats: TaskStats
    model_versions: tuple[str, ...] = field(default_factory=tuple)
    out_of_domain_labels: tuple[str, ...] = field(default_factory=tuple)
    """A few distinct out-of-domain label values as text (smallest first), for the window's finding."""

    def merge(self, other: WindowStats) -> WindowStats:
        examples = sorted(set(self.out_of_domain_labels) | set(other.out_of_domain_labels))
        return WindowStats(
            self.counts.merge(other.counts),
            self.task_stats.merge(other.task_stats),  # type: ignore[arg-type]
            tuple(sorted(set(self.model_versions) | set(other.model_versions))),
            tuple(examples[: max(len(self.out_of_domain_labels), len(other.out_of_domain_labels))]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts.to_dict(),
            "task_stats": self.task_stats.to_dict(),
            "model_versions": list(self.model_versions),
            "out_of_domain_labels": list(self.out_of_domain_labels),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WindowStats:
        return cls(
            JoinCounts.from_dict(raw["counts"]),
            stats_from_dict(raw["task_stats"]),
            tuple(raw.get("model_versions", ())),
            tuple(raw.get("out_of_domain_labels", ())),
        )


# --- in-memory definitions (the oracle for the SQL) -------------------------------------------


def binary_stats_from_arrays(
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    threshold: float,
    resolution: float | None = DEFAULT_RESOLUTION,
) -> BinaryStats:
    """Statistics of valid rows: ``scores`` in [0, 1]; ``labels`` 1, 0, or NaN for unlabelled."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    labelled = ~np.isnan(labels)
    y = labels[labelled]
    s = scores[labelled]
    uniq, inverse = histogram_keys(_bin_index(scores, resolution), resolution)

    def per_bin(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = mask.astype(np.float64) if weights is None else np.where(mask, weights, 0.0)
        return np.bincount(inverse, weights=w, minlength=len(uniq))

    is_pos = labelled & (labels == 1)
    is_neg = labelled & (labels == 0)
    clipped = np.clip(s, LOG_EPS, 1 - LOG_EPS)
    hist = ScoreHistogram(
        resolution,
        uniq,
        per_bin(is_pos).astype(np.int64),
        per_bin(is_neg).astype(np.int64),
        per_bin(~labelled).astype(np.int64),
        per_bin(labelled, scores),
        per_bin(~labelled, scores),
    )
    predicted = s >= threshold
    return BinaryStats(
        threshold=threshold,
        histogram=hist,
        tp=int(np.sum(predicted & (y == 1))),
        fp=int(np.sum(predicted & (y == 0))),
        tn=int(np.sum(~predicted & (y == 0))),
        fn=int(np.sum(~predicted & (y == 1))),
        log_loss_sum=float(-np.sum(np.where(y == 1, np.log(clipped), np.log(1 - clipped)))),
        brier_sum=float(np.sum((s - y) ** 2)),
        predicted_positive_all=int(np.sum(scores >= threshold)),
        scored_all=len(scores),
        score_sum_all=float(np.sum(scores)),
    )


def regression_stats_from_arrays(predictions: np.ndarray, labels: np.ndarray) -> RegressionStats:
    """Statistics of valid rows; ``labels`` NaN marks unlabelled rows."""
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    labelled = ~np.isnan(labels)
    p, y = predictions[labelled], labels[labelled]
    err = p - y
    ape_rows = np.abs(y) > APE_EPS
    return RegressionStats(
        n=int(labelled.sum()),
        sum_error=float(err.sum()),
        sum_abs_error=float(np.abs(err).sum()),
        sum_sq_error=float((err**2).sum()),
        sum_y=float(y.sum()),
        sum_y2=float((y**2).sum()),
        sum_ape=float(np.sum(np.abs(err[ape_rows]) / np.abs(y[ape_rows]))),
        n_ape=int(ape_rows.sum()),
        scored_all=len(predictions),
        sum_prediction_all=float(predictions.sum()),
    )


def multiclass_stats_from_arrays(
    predicted: np.ndarray,
    labels: np.ndarray,
    *,
    classes: tuple[str, ...],
    true_class_proba: np.ndarray | None = None,
) -> MulticlassStats:
    """Statistics of labelled rows (both arrays hold class labels as text)."""
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(labels, predicted, strict=True):
        confusion[index[str(t)], index[str(p)]] += 1
    log_loss_sum = None
    if true_class_proba is not None:
        log_loss_sum = float(-np.sum(np.log(np.clip(true_class_proba, LOG_EPS, 1 - LOG_EPS))))
    return MulticlassStats(classes, confusion, log_loss_sum, len(labels) if true_class_proba is not None else 0)
