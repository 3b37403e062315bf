"""The contestants of ``bench/bench_evaluation.py`` other than modelwatch, one per child process.

    python bench/evaluation_jobs.py imports|floor|pandas|nannyml|evidently DUCKDB_FILE WINDOW_START

Each prints one JSON line: what it found (window ROC AUC and a count of its drift results) so the table
can show the tools looked at the same rows. NannyML and Evidently run in their own virtualenvs
(``.modelwatch/bench-venvs/``), with duckdb, pandas < 3 and the tool; the floor and pandas jobs run in
the project's venv. All read the window and its reference day from the same DuckDB file, through DuckDB's
DataFrame export (the fastest way pandas gets rows), labels joined in the same statement.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta

from evaluation_data import CATEGORICAL, NUMERIC, SEGMENTS

DAY = timedelta(days=1)
METRICS = ("roc_auc", "average_precision", "f1", "precision", "recall", "accuracy")


def read_window_and_reference(path: str, window_start: datetime):
    """(reference, window) frames: each prediction with its label (NaN when none), as the tools expect."""
    import duckdb

    with duckdb.connect(path, read_only=True) as con:
        frame = con.execute(
            "SELECT p.*, l.y FROM preds p LEFT JOIN labels l USING (request_id) "
            "WHERE p.predicted_at >= ? AND p.predicted_at < ?",
            [window_start - DAY, window_start + DAY],
        ).df()
    frame["y"] = frame["y"].astype("float64")  # NaN, not pd.NA, for an unlabelled row: what both tools take
    current = frame["predicted_at"] >= window_start
    return frame[~current].reset_index(drop=True), frame[current].reset_index(drop=True)


def run_floor(path: str, window_start: datetime) -> dict:
    """One aggregate statement over the window's monitored columns: the physical reference.

    Count, sum, min and max of the score and each numeric feature, and the counts per value of each
    categorical feature and segment column (``histogram``), in one scan. Best of 3 in a warm process; the
    labels are not read, so it is a lower bound for any evaluation.
    """
    import duckdb

    numeric = ["score", *NUMERIC]
    parts = ["count(*)"] + [f"sum({c}), min({c}), max({c})" for c in numeric]
    parts += [f"histogram({c})" for c in (*CATEGORICAL, *SEGMENTS)]
    sql = f"SELECT {', '.join(parts)} FROM preds WHERE predicted_at >= ? AND predicted_at < ?"
    best = float("inf")
    with duckdb.connect(path, read_only=True) as con:
        for _ in range(3):
            began = time.perf_counter()
            row = con.execute(sql, [window_start, window_start + DAY]).fetchone()
            best = min(best, time.perf_counter() - began)
    return {"statement_seconds": best, "rows": row[0], "columns": len(numeric) + len(CATEGORICAL) + len(SEGMENTS)}


def run_imports(path: str, window_start: datetime) -> dict:
    """What ``modelwatch evaluate`` imports before it reads a row, and nothing else: its fixed cost."""
    import modelwatch.app.diagnosis
    import modelwatch.app.pipeline
    import modelwatch.cli
    import modelwatch.core.metrics
    import modelwatch.warehouse.engine
    import modelwatch.warehouse.window_query  # noqa: F401

    return {"modules": len(sys.modules)}


def run_pandas(path: str, window_start: datetime) -> dict:
    """pandas + scikit-learn + scipy: metrics, per-feature drift, per-segment AUC, drift in the worst segment
    (``bench_drift.run_pandas``, the baseline of the drift benchmark, on this file)."""
    import bench_drift

    if window_start != bench_drift.START:
        raise ValueError(f"bench_drift's window starts {bench_drift.START}, this benchmark's {window_start}")
    found = bench_drift.run_pandas(f"duckdb:///{path}")
    return {"roc_auc": found["roc_auc"], "worst_segment": found["segment"], "x0_psi": found["x0_psi"]}


def run_nannyml(path: str, window_start: datetime) -> dict:
    """NannyML: realized performance and univariate drift, the reference day fitted, the window one chunk."""
    import os

    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
    import nannyml as nml

    reference, window = read_window_and_reference(path, window_start)
    for frame in (reference, window):
        frame["y_pred"] = (frame["score"] >= 0.5).astype("int64")
    performance = nml.PerformanceCalculator(
        y_pred_proba="score",
        y_pred="y_pred",
        y_true="y",
        timestamp_column_name="predicted_at",
        problem_type="classification_binary",
        metrics=list(METRICS),
        chunk_period="D",
    )
    realized = performance.fit(reference).calculate(window).filter(period="analysis").to_df()
    drift = nml.UnivariateDriftCalculator(
        column_names=[*NUMERIC, *CATEGORICAL, "score"],
        treat_as_categorical=list(CATEGORICAL),
        timestamp_column_name="predicted_at",
        continuous_methods=["kolmogorov_smirnov", "jensen_shannon", "wasserstein"],
        categorical_methods=["chi2", "jensen_shannon"],
        chunk_period="D",
    )
    drifted = drift.fit(reference).calculate(window).filter(period="analysis").to_df()
    alerts = [c for c in drifted.columns if c[-1] == "alert"]
    return {
        "roc_auc": float(realized[("roc_auc", "value")].iloc[0]),
        "chunks": len(realized),
        "drift_alerts": int(drifted[alerts].to_numpy().sum()),
        "drift_results": len(alerts),
    }


def run_evidently(path: str, window_start: datetime) -> dict:
    """Evidently: DataDriftPreset on the features and score, ClassificationPreset on the labelled window."""
    import os

    os.environ["DO_NOT_TRACK"] = "1"
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset, DataDriftPreset

    reference, window = read_window_and_reference(path, window_start)
    columns = [*NUMERIC, *CATEGORICAL, "score"]
    features = DataDefinition(numerical_columns=[*NUMERIC, "score"], categorical_columns=list(CATEGORICAL))
    drift = Report([DataDriftPreset()]).run(
        Dataset.from_pandas(window[columns], data_definition=features),
        Dataset.from_pandas(reference[columns], data_definition=features),
    )
    labelled = window.loc[window["y"].notna(), ["y", "score"]].astype({"y": "int64"})
    task = DataDefinition(
        classification=[BinaryClassification(target="y", prediction_probas="score", pos_label=1)],
        numerical_columns=["score"],
        categorical_columns=["y"],
    )
    quality = Report([ClassificationPreset()]).run(Dataset.from_pandas(labelled, data_definition=task), None)
    return {"roc_auc": _evidently_value(quality.dict(), "RocAuc"), "drift": _evidently_value(drift.dict(), "Drifted")}


def _evidently_value(snapshot: dict, metric: str) -> object:
    """The value of the first metric whose name holds ``metric`` (an Evidently 0.7 snapshot's ``dict()``:
    ``{"metrics": [{"id", "metric_name": "RocAuc(...)", "config", "value"}]}``)."""
    for item in snapshot.get("metrics", []):
        if metric in str(item.get("metric_name")):
            return item.get("value")
    return None


JOBS = {
    "imports": run_imports,
    "floor": run_floor,
    "pandas": run_pandas,
    "nannyml": run_nannyml,
    "evidently": run_evidently,
}


def main() -> None:
    kind, path, window_start = sys.argv[1], sys.argv[2], datetime.fromisoformat(sys.argv[3])
    print(json.dumps(JOBS[kind](path, window_start), default=str))


if __name__ == "__main__":
    main()
