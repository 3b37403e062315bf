"""Benchmark: the ``log_to_mlflow`` task's work per DAG run, against a real MLflow store.

Run by ``make bench`` (not by pytest). A DuckDB warehouse gets the demo's churn traffic; the churn monitor
(labels judged within 2 h, look-back 3 h, so a run recomputes up to three windows and some become final)
runs ``extract`` + ``compute`` for each hourly window in order, untimed; then the task's own code,
``airflow_tasks.log_windows`` (what ``log_to_mlflow`` calls: the own window with its artifacts, and the
first, breaching and final revisions of the recomputed ones), is timed. A second pass re-logs the same
revisions, as a retried task or a reprocessing backfill does. Prints seconds per run (median, mean) for both.

    python bench/bench_tracking.py [--windows 12] [--rows-per-hour 2000] [--store sqlite|URL]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

T0 = datetime(2026, 11, 1)


def _monitor(directory: Path, warehouse: Path):
    import yaml

    from modelwatch.core.config import load_monitor

    raw = yaml.safe_load((ROOT / "include" / "monitors" / "churn.yaml").read_text())
    raw.update(
        start_date=T0.isoformat(),
        cadences=["hourly"],
        warehouse={"url": f"duckdb:///{warehouse}"},
        label_delay={"expected": "2h", "coverage_target": 0.9, "lookback": "3h"},
        tracking={"artifact_root": str(directory / "artifacts")},
    )
    path = directory / "churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_monitor(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=12)
    parser.add_argument("--rows-per-hour", type=int, default=2000)
    parser.add_argument("--store", default="sqlite", help="'sqlite' (a temp file) or an MLflow tracking URI")
    args = parser.parse_args()

    from modelwatch.airflow import tasks as airflow_tasks
    from modelwatch.app.pipeline import compute, extract, load_results
    from modelwatch.core.windows import Window
    from modelwatch.demo.data import DemoSpec, churn_frames
    from modelwatch.warehouse.engine import load_frame, make_engine

    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-tracking-") as tmp:
        directory = Path(tmp)
        if args.store == "sqlite":
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
        else:
            os.environ["MLFLOW_TRACKING_URI"] = args.store
        engine = make_engine(f"duckdb:///{directory / 'warehouse.duckdb'}")
        predictions, labels = churn_frames(DemoSpec(start=T0, days=1, rows_per_hour=args.rows_per_hour, seed=3))
        load_frame(engine, "churn_predictions", predictions)
        load_frame(engine, "churn_labels", labels)
        monitor = _monitor(directory, directory / "warehouse.duckdb")
        from mlflow import MlflowClient

        MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()  # the store's schema, untimed
        runs = []
        for hour in range(args.windows):
            window = Window(T0 + timedelta(hours=hour), T0 + timedelta(hours=hour + 1), "hourly")
            keys = extract(engine, monitor, window=window, as_of=window.end)
            compute(engine, monitor, keys)
            runs.append(load_results(engine, monitor, keys))
        timings: dict[str, list[float]] = {"first pass": [], "re-logging the same revisions": []}
        for seconds in timings.values():
            for results in runs:
                started = time.perf_counter()
                airflow_tasks.log_windows(engine, monitor, results, context=None, as_of=results[-1].as_of)
                seconds.append(time.perf_counter() - started)
        engine.dispose()
    windows = sum(len(r) for r in runs)
    print(f"log_to_mlflow work, {args.windows} runs ({windows} windows logged or skipped), store {args.store}:")
    for label, seconds in timings.items():
        print(
            f"  {label:32s} median {statistics.median(seconds):.3f} s/run, mean {statistics.mean(seconds):.3f} s/run,"
            f" total {sum(seconds):.1f} s"
        )


if __name__ == "__main__":
    main()
