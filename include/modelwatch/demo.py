"""``modelwatch demo``: seed the embedded warehouse, run the real DAGs hour by hour, print what they found."""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from modelwatch.airflow_runner import REPO_ROOT, configure, load_dags, migrate, run_dag, serialize_dags


def _progress(done: int, total: int, label: str, started: float) -> None:
    width = 30
    filled = int(width * done / total)
    elapsed = time.monotonic() - started
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} runs  {elapsed:5.0f}s  {label:<42.42s}")
    sys.stderr.flush()


def _seed(spec: object, url: str) -> dict[str, int]:
    from modelwatch.demo_data import demo_frames
    from modelwatch.warehouse.engine import load_frame, make_engine

    engine = make_engine(url)
    return {table: load_frame(engine, table, frame) for table, frame in demo_frames(spec).items()}  # type: ignore[arg-type]


def _schedule(start: datetime, days: int, dag_ids: list[str]) -> list[tuple[datetime, str]]:
    """Every hourly run in time order; each daily run right after the hourly run of the same instant."""
    ticks: list[tuple[datetime, str]] = []
    for hour in range(1, days * 24 + 1):
        at = start + timedelta(hours=hour)
        ticks += [(at, d) for d in dag_ids if d.endswith("_hourly")]
        if at.hour == 0:
            ticks += [(at, d) for d in dag_ids if d.endswith("_daily")]
    return ticks


def run_demo(*, seed: int = 7, days: int = 3, rows_per_hour: int = 5000, home: Path = Path(".modelwatch")) -> int:
    """Seed, run every DAG run of the demo's days in order, and print the summary. Returns an exit code."""
    started = time.monotonic()
    root = Path.cwd()
    home = (root / home).resolve()
    os.environ.setdefault("MODELWATCH_ROOT", str(root))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    os.environ.setdefault("MODELWATCH_RETRY_DELAY_SECONDS", "1")
    os.environ.setdefault("MODELWATCH_DUCKDB_KEEP_OPEN", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MODELWATCH_WAREHOUSE_URL"] = f"duckdb:///{home / 'warehouse.duckdb'}"
    configure(home / "airflow", dags_folder=REPO_ROOT / "dags")

    from modelwatch.demo_data import DemoSpec

    spec = DemoSpec(days=days, rows_per_hour=rows_per_hour, seed=seed)
    print(f"modelwatch demo: seeding {os.environ['MODELWATCH_WAREHOUSE_URL']} (seed {seed}, {days} days)")
    for table, rows in _seed(spec, os.environ["MODELWATCH_WAREHOUSE_URL"]).items():
        print(f"  {table:24s} {rows:>9,d} rows")
    print("preparing Airflow metadata DB and serializing DAGs ...")
    migrate(home / "airflow")
    dag_ids = sorted(serialize_dags())
    dags = load_dags()
    schedule = _schedule(spec.start, days, [d for d in dag_ids if d.startswith("modelwatch_") and "invalid" not in d])
    failed: list[str] = []
    run_started = time.monotonic()
    for done, (at, dag_id) in enumerate(schedule, start=1):
        state = run_dag(dags[dag_id], run_after=at)
        if state != "success":
            failed.append(f"{dag_id} @ {at}: {state}")
        _progress(done, len(schedule), f"{dag_id} {at:%m-%d %H:%M}", run_started)
    sys.stderr.write("\n")
    from modelwatch.demo_summary import print_summary

    print_summary(os.environ["MODELWATCH_WAREHOUSE_URL"], home=home, seconds=time.monotonic() - started)
    if failed:
        print(f"\n{len(failed)} DAG run(s) failed:", *failed, sep="\n  ")
        return 1
    return 0
