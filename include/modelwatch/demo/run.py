"""``modelwatch demo``: seed the embedded warehouses, run the real DAGs hour by hour, print what they found.

Each monitor's DAG runs go to one worker process (its own DuckDB file: DuckDB takes one writer process
per file), so the two demo monitors use both cores; they share the Airflow metadata DB and MLflow store.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from modelwatch.airflow.runner import REPO_ROOT, configure, load_dags, migrate, run_dag, serialize_dags

_ENV_DEFAULTS = {
    "MODELWATCH_RETRY_DELAY_SECONDS": "1",
    "MODELWATCH_DUCKDB_KEEP_OPEN": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def _progress(done: int, total: int, label: str, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    elapsed = time.monotonic() - started
    bar = "#" * filled + "-" * (width - filled)
    sys.stderr.write(f"\r[{bar}] {done}/{total} DAG runs  {elapsed:4.0f}s  {label:<40.40s}")
    sys.stderr.flush()


def _start_empty(url: str, home: Path) -> None:
    """Delete a demo warehouse file that lives under ``home``: a second ``make demo`` then starts from the same
    empty state as the first, modelwatch's own tables (results, alerts, outbox, profiles) included. Files
    anywhere else, and other warehouses, are never touched."""
    if not url.startswith("duckdb:///"):
        return
    path = Path(url.removeprefix("duckdb:///").split("?", 1)[0]).resolve()
    if home.resolve() in path.parents:
        for leftover in (path, path.with_name(path.name + ".wal")):
            leftover.unlink(missing_ok=True)


def _seed(spec: object, home: Path) -> dict[str, int]:
    """Write each monitor's tables into its own warehouse (the monitor YAML's url), emptied first."""
    from modelwatch.airflow.monitors_folder import monitors_dir
    from modelwatch.core.config import load_monitors
    from modelwatch.demo.data import demo_frames
    from modelwatch.warehouse.engine import load_frame, make_engine, resolve_url

    frames = demo_frames(spec)  # type: ignore[arg-type]
    monitors, _ = load_monitors(monitors_dir())
    for monitor in monitors:
        _start_empty(resolve_url(monitor.warehouse.url or ""), home)
    written: dict[str, int] = {}
    for monitor in monitors:
        engine = make_engine(resolve_url(monitor.warehouse.url or ""))
        for table in (monitor.predictions.table, monitor.labels.table):
            if table in frames:
                written[table] = load_frame(engine, table, frames[table])
        engine.dispose()
    return written


def _create_mlflow_store() -> None:
    from modelwatch.integrations.tracking import prepare_store

    prepare_store(os.environ["MLFLOW_TRACKING_URI"])


def schedule(start: datetime, days: int, dag_ids: list[str]) -> list[tuple[datetime, str]]:
    """Every hourly run in time order; each daily run right after the hourly run of the same instant."""
    ticks: list[tuple[datetime, str]] = []
    for hour in range(1, days * 24 + 1):
        at = start + timedelta(hours=hour)
        ticks += [(at, d) for d in dag_ids if d.endswith("_hourly")]
        if at.hour == 0:
            ticks += [(at, d) for d in dag_ids if d.endswith("_daily")]
    return ticks


def run_worker(monitor: str, start: str, days: int, progress_file: str) -> int:
    """One monitor's DAG runs, in time order (a child process of ``run_demo``).

    Started while the parent still seeds: the imports overlap, then it waits for the ready marker.
    """
    import modelwatch.app.pipeline
    import modelwatch.integrations.tracking  # noqa: F401

    ready = Path(progress_file).with_suffix(".ready")
    while not ready.exists():
        time.sleep(0.2)
    dags = load_dags()
    ids = [d for d in dags if d.startswith(f"modelwatch_{monitor}_")]
    failures = 0
    with open(progress_file, "a", buffering=1) as out:
        for at, dag_id in schedule(datetime.fromisoformat(start), days, ids):
            state = run_dag(dags[dag_id], run_after=at)
            failures += state != "success"
            out.write(f"{state} {dag_id} {at:%m-%d %H:%M}\n")
    return 1 if failures else 0


def _spawn_workers(monitors: list[str], start: datetime, days: int, home: Path) -> list[tuple[subprocess.Popen, Path]]:
    workers = []
    for name in monitors:
        progress = home / f"demo-{name}.progress"
        progress.write_text("")
        progress.with_suffix(".ready").unlink(missing_ok=True)
        code = (
            "import sys; from modelwatch.demo.run import run_worker; "
            f"sys.exit(run_worker({name!r}, {start.isoformat()!r}, {days}, {str(progress)!r}))"
        )
        log = open(home / f"demo-{name}.log", "w")  # noqa: SIM115 - closed when the process ends
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT, env=os.environ)
        workers.append((proc, progress))
    return workers


def _watch(workers: list[tuple[subprocess.Popen, Path]], total: int) -> list[str]:
    started = time.monotonic()
    while True:
        lines = [line for _, path in workers for line in path.read_text().splitlines()]
        _progress(len(lines), total, lines[-1].split(" ", 1)[1] if lines else "starting", started)
        if all(proc.poll() is not None for proc, _ in workers):
            sys.stderr.write("\n")
            return [line for line in lines if not line.startswith("success")]
        time.sleep(0.5)


def run_demo(*, seed: int = 7, days: int = 3, rows_per_hour: int = 5000, home: Path = Path(".modelwatch")) -> int:
    """Seed, run every DAG run of the demo's days, and print the summary. Returns an exit code."""
    started = time.monotonic()
    root = Path.cwd()
    home = (root / home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MODELWATCH_ROOT", str(root))
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.pop("MODELWATCH_WAREHOUSE_URL", None)  # each monitor uses its own embedded warehouse
    configure(home / "airflow", dags_folder=REPO_ROOT / "dags")

    from modelwatch.demo.data import DemoSpec

    spec = DemoSpec(days=days, rows_per_hour=rows_per_hour, seed=seed)
    from concurrent.futures import ThreadPoolExecutor

    from modelwatch.airflow.monitors_folder import monitors_dir
    from modelwatch.core.config import load_monitors

    monitors = sorted(m.name for m in load_monitors(monitors_dir())[0])
    workers = _spawn_workers(monitors, spec.start, days, home)  # they import while we seed
    with ThreadPoolExecutor(2) as pool:
        migrating = pool.submit(migrate, home / "airflow")  # a subprocess: runs beside the seeding
        tracking = pool.submit(_create_mlflow_store)  # once, here: two workers creating it would race
        print(f"modelwatch demo: seeding the embedded DuckDB warehouses in {home} (seed {seed}, {days} days)")
        for table, rows in _seed(spec, home).items():
            print(f"  {table:24s} {rows:>9,d} rows")
        print("preparing the Airflow metadata DB and serializing the DAGs ...")
        migrating.result()
        tracking.result()
    dag_ids = sorted(d for d in serialize_dags() if "invalid" not in d)
    total = len(schedule(spec.start, days, [d for d in dag_ids if any(f"_{m}_" in d for m in monitors)]))
    print(f"running {total} DAG runs ({', '.join(monitors)}; one worker process per monitor) ...")
    for _, progress in workers:
        progress.with_suffix(".ready").touch()
    failed = _watch(workers, total)

    from modelwatch.demo.summary import print_summary

    print_summary(home=home, seconds=time.monotonic() - started)
    if failed:
        print(f"\n{len(failed)} DAG run(s) failed (logs: {home}/demo-<monitor>.log):", *failed[:20], sep="\n  ")
        return 1
    return 0
