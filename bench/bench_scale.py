"""Benchmark: DAG parse time at 10/40/100 monitors, and windows per minute per Celery worker slot.

Run by ``make bench`` (not by pytest).

Parse time: N copies of the shipped churn monitor in a temp folder (``AIRFLOW__MODELWATCH__MONITORS_DIR``);
each measurement is a fresh interpreter that imports ``dags/modelwatch_dags.py`` as Airflow's DAG processor
does (imports included, interpreter start excluded), and once more as a task process, whose parsing
context names one DAG (it reads only that monitor's file). Best of ``--repeat`` runs.

Windows per minute per slot: ``tests/integration/test_celery.py`` (the CeleryExecutor stack with two
workers, ``--monitors`` monitors backfilling ``--windows`` hourly windows) prints its throughput; run with
``--celery`` (needs PostgreSQL and Redis on this machine; several minutes).

    python bench/bench_scale.py [--sizes 10,40,100] [--repeat 3] [--celery] [--monitors 6] [--windows 24]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHURN = ROOT / "include" / "monitors" / "churn.yaml"
DAG_FILE = ROOT / "dags" / "modelwatch_dags.py"

_PARSE = """
import runpy, sys, time
started = time.perf_counter()
import modelwatch.airflow.dag_factory  # airflow.sdk and the config models: what any parse of the file imports first
imported = time.perf_counter()
dags = [v for v in runpy.run_path(sys.argv[1]).values() if type(v).__name__ == "DAG"]
print(f"{imported - started:.4f} {time.perf_counter() - imported:.4f} {len(dags)}")
"""


def write_monitors(directory: Path, count: int) -> None:
    text = CHURN.read_text()
    for i in range(count):
        (directory / f"churn_{i:03d}.yaml").write_text(text.replace("\nname: churn\n", f"\nname: churn_{i:03d}\n", 1))


def parse_seconds(directory: Path, *, task_dag: str | None, repeat: int) -> tuple[float, float, int]:
    """Best wall seconds of ``repeat`` fresh-interpreter runs: (imports, parse after them, DAGs built)."""
    env = {
        **os.environ,
        "AIRFLOW__MODELWATCH__MONITORS_DIR": str(directory),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "include"), os.environ.get("PYTHONPATH")])),
    }
    if task_dag:
        # What Airflow's task runner sets before it parses the DAG file (airflow.sdk get_parsing_context()).
        env["_AIRFLOW_PARSING_CONTEXT_DAG_ID"] = task_dag
        env["_AIRFLOW_PARSING_CONTEXT_TASK_ID"] = "compute"
    imports, parse, dags = float("inf"), float("inf"), "0"
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-c", _PARSE, str(DAG_FILE)], env=env, capture_output=True, text=True, check=True
        )
        imported, parsed, dags = done.stdout.split()[-3:]
        imports, parse = min(imports, float(imported)), min(parse, float(parsed))
    return imports, parse, int(dags)


def celery_throughput(monitors: int, windows: int) -> str:
    env = {**os.environ, "MODELWATCH_CELERY_MONITORS": str(monitors), "MODELWATCH_CELERY_WINDOWS": str(windows)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-m", "celery", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "integration" / "test_celery.py")],
        env=env, capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    found = re.findall(r"^\[celery\] .*(?:windows/min/slot|wall time).*$", done.stdout, re.MULTILINE)
    return "\n".join(found) or f"no throughput line (exit {done.returncode}):\n{done.stdout[-2000:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,40,100")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--celery", action="store_true", help="also run the Celery stack for windows/min/slot")
    parser.add_argument("--monitors", type=int, default=6)
    parser.add_argument("--windows", type=int, default=24)
    args = parser.parse_args()
    print(f"DAG file parse time in a fresh interpreter (best of {args.repeat}; the imports it needs first apart)")
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="modelwatch-bench-parse-") as tmp:
            write_monitors(Path(tmp), size)
            imports, full, dags = parse_seconds(Path(tmp), task_dag=None, repeat=args.repeat)
            _, task, task_dags = parse_seconds(Path(tmp), task_dag="modelwatch_churn_000_hourly", repeat=args.repeat)
        print(
            f"  {size:4d} monitors: all DAGs {full:6.2f} s ({dags} DAGs); a task process {task:5.3f} s "
            f"({task_dags} DAGs); imports first {imports:.2f} s"
        )
    if args.celery:
        print(f"Celery: {args.monitors} monitors x {args.windows} hourly windows, 2 workers")
        print(celery_throughput(args.monitors, args.windows))


if __name__ == "__main__":
    main()
