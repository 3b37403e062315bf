"""Benchmark: where modelwatch stands on a whole day-window evaluation (issue 16), in one run on the same rows.

Run by ``make bench`` (not by pytest). One DuckDB file per size holds a day window of N predictions and
its 1M-row reference day (10 numeric + 3 categorical features, 3 segment columns, 90% labelled, made with
numpy from ``--seed``: ``bench/evaluation_data.py``). Every contestant is a fresh process, timed whole
from outside (interpreter start and imports included); its peak RSS is its own ``VmHWM``
(``bench/run_measured.py``):

1. modelwatch: ``python -m modelwatch evaluate --cadence daily --json`` (metrics, drift, segments, root
   cause), on plain tables and on a copy with PRIMARY KEYs declared, at each of ``--sizes``;
2. at ``--rival-rows``: pandas + scikit-learn + scipy (this venv), NannyML (realized performance +
   univariate drift) and Evidently (DataDriftPreset + ClassificationPreset), each in a virtualenv this
   benchmark creates under ``.modelwatch/bench-venvs/`` with the pinned versions below; a tool that cannot
   be installed or fails is reported with the reason, never with a number;
3. a one-scan floor: one DuckDB aggregate over the window's monitored columns (statement time only);
4. on PostgreSQL, warehouse rows read per monitored prediction in steady state after each of
   ``--pg-days`` days of hourly + daily runs (``bench/evaluation_pg.py``).

The table is printed and written to ``.modelwatch/bench/evaluation.json``.

    python bench/bench_evaluation.py [--sizes 1000000,10000000] [--rival-rows 1000000] [--repeat 1]
        [--pg-days 7,28] [--pg-rows-per-hour 500] [--no-venvs] [--no-postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import evaluation_report as report
import yaml
from bench_drift import START as WINDOW_START
from bench_drift import add_primary_keys
from evaluation_data import CATEGORICAL, NUMERIC, SEGMENTS, chunked, generate_rows, monitor_document
from evaluation_data import window_and_reference as day_ranges

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = ROOT / ".modelwatch" / "bench" / "evaluation.json"
VENVS = ROOT / ".modelwatch" / "bench-venvs"
AS_OF = WINDOW_START + timedelta(days=3)
"""Two days after the window ends: every label the generator makes has arrived, barring a ~0.05% tail."""
RIVAL_PINS = {
    report.NANNYML: ["nannyml==0.13.1", "pandas==2.3.3", "duckdb==2.0.0", "statsmodels==0.15.0"],
    report.EVIDENTLY: ["evidently==0.7.23", "pandas==2.3.3", "duckdb==2.0.0"],
}
"""pandas < 3 for both (Evidently needs it; NannyML 0.13 predates pandas 3); duckdb as in this venv, to
read the same file; statsmodels, which NannyML 0.13.1 imports (its plots) without declaring it."""
CHILD_TIMEOUT = 1200
"""Seconds one contestant may take before it is reported as not finished."""
REPORTED_PACKAGES = ("nannyml", "evidently", "pandas", "numpy", "scipy", "scikit-learn", "duckdb")


def write_duckdb(path: Path, rows: int, reference_rows: int, *, seed: int, chunk_rows: int = 1_000_000) -> None:
    """The window and its reference day, generated in chunks (10M rows never sit in memory at once)."""
    import duckdb

    window, reference = day_ranges(rows, reference_rows, window_start=WINDOW_START)
    text = [f"CAST({c} AS VARCHAR) AS {c}" for c in (*CATEGORICAL, *SEGMENTS)]
    select = ", ".join(["request_id", "predicted_at", "score", *NUMERIC, *text])
    with duckdb.connect(str(path)) as con:
        con.execute("SET preserve_insertion_order = false")
        created = False
        for part in [*chunked(reference, chunk_rows=chunk_rows), *chunked(window, chunk_rows=chunk_rows)]:
            predictions, labels = generate_rows(part, seed=seed)
            con.register("chunk_predictions", predictions)
            con.register("chunk_labels", labels)
            verb = "INSERT INTO {} " if created else "CREATE TABLE {} AS "
            con.execute(verb.format("preds") + f"SELECT {select} FROM chunk_predictions")
            con.execute(verb.format("labels") + "SELECT * FROM chunk_labels")
            con.unregister("chunk_predictions")
            con.unregister("chunk_labels")
            created = True
        con.execute("CHECKPOINT")


def measure(python: Path | str, target: list[str], *, rows: int, contestant: str) -> dict:
    """Run ``target`` once under ``bench/run_measured.py``: wall seconds, peak RSS, and its JSON output."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(ROOT / "include")])}
    with tempfile.NamedTemporaryFile(suffix=".json") as rss:
        began = time.perf_counter()
        try:
            done = subprocess.run(
                [str(python), str(BENCH / "run_measured.py"), rss.name, *target],
                capture_output=True, text=True, check=False, env=env, cwd=ROOT, timeout=CHILD_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return {"rows": rows, "contestant": contestant, "error": f"did not finish in {CHILD_TIMEOUT} s"}
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            tail = " / ".join(done.stderr.strip().splitlines()[-3:])[-600:]
            return {"rows": rows, "contestant": contestant, "error": f"failed (exit {done.returncode}): {tail}"}
        peak = json.loads(Path(rss.name).read_text())["peak_rss_mb"]
    out = done.stdout.strip()
    found = json.loads(out) if out.startswith("{\n") else json.loads(out.splitlines()[-1])
    return {"rows": rows, "contestant": contestant, "wall_seconds": seconds, "peak_rss_mb": peak, "found": found}


def modelwatch_summary(found: dict) -> str:
    cause = found.get("root_cause") or {}
    auc = found["metrics"].get("roc_auc")
    return (
        f"roc_auc {report.fmt(auc, '.4f')}; {len(found['drift'])} drift findings, "
        f"{len(found['segments'])} segment rows; root cause: {cause.get('verdict')} "
        f"({cause.get('top_segment')}, {', '.join(cause.get('top_features', [])[:3])})"
    )


def rival_summary(contestant: str, found: dict) -> str:
    if contestant == report.FLOOR:
        return f"{found['rows']:,} rows x {found['columns']} columns, statement only (best of 3)"
    if contestant == report.IMPORTS:
        return f"interpreter start + {found['modules']} modules imported, whole process"
    auc = found.get("roc_auc")
    shown = {k: v for k, v in found.items() if k != "roc_auc"}
    return f"roc_auc {auc:.4f}; {shown}" if isinstance(auc, float) else f"{found}"


def rival_python(contestant: str, log: Callable[[str], None]) -> tuple[Path | None, dict[str, str] | str]:
    """The contestant's virtualenv (created, or reused when its pins are unchanged) and its versions, or the
    reason it could not be installed."""
    pins = RIVAL_PINS[contestant]
    venv = VENVS / contestant.lower()
    python, stamp = venv / "bin" / "python", venv / "pins.txt"
    if not (python.exists() and stamp.exists() and stamp.read_text() == "\n".join(pins)):
        shutil.rmtree(venv, ignore_errors=True)
        log(f"creating {venv} with {' '.join(pins)} ...")
        for command in (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        ):
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
            if done.returncode != 0:
                tail = " / ".join(done.stderr.strip().splitlines()[-4:])[-800:]
                return None, f"{' '.join(command[2:5])}... failed (exit {done.returncode}): {tail}"
        stamp.write_text("\n".join(pins))
    return python, installed_versions(python)


def installed_versions(python: Path | str) -> dict[str, str]:
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try: out[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([str(python), "-c", probe, *REPORTED_PACKAGES], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def contestants(path: Path, keyed: Path, rivals: dict[str, Path] | None) -> list[tuple[str, Path | str, list]]:
    """(name, interpreter, target) of every contestant at this size, in the order each round runs them;
    ``rivals`` (the venv tools' interpreters) is None at sizes the rivals do not run at."""
    start, end = WINDOW_START.isoformat(), (WINDOW_START + timedelta(days=1)).isoformat()

    def evaluate(file: Path) -> list[str]:
        config = file.parent / "bench_evaluation.yaml"
        return ["-m", "modelwatch", "evaluate", "--config", str(config), "--start", start, "--end", end,
                "--as-of", AS_OF.isoformat(), "--cadence", "daily", "--json", "--url", f"duckdb:///{file}"]  # fmt: skip

    def job(kind: str) -> list[str]:
        return [str(BENCH / "evaluation_jobs.py"), kind, str(path), start]

    out: list[tuple[str, Path | str, list]] = [
        (report.MODELWATCH_PLAIN, sys.executable, evaluate(path)),
        (report.MODELWATCH_KEYS, sys.executable, evaluate(keyed)),
        (report.IMPORTS, sys.executable, job("imports")),
        (report.FLOOR, sys.executable, job("floor")),
    ]
    if rivals is not None:
        out.append((report.PANDAS, sys.executable, job("pandas")))
        out += [(name, python, job(name.lower())) for name, python in rivals.items()]
    return out


def bench_size(tmp: Path, rows: int, args: argparse.Namespace, rivals: dict[str, Path], log) -> list[dict]:
    # A monitor file is named after its monitor: one folder per copy of the tables.
    path, keyed = tmp / "plain" / f"window_{rows}.duckdb", tmp / "keys" / f"window_{rows}.duckdb"
    path.parent.mkdir(exist_ok=True)
    keyed.parent.mkdir(exist_ok=True)
    began = time.perf_counter()
    write_duckdb(path, rows, args.reference_rows, seed=args.seed)
    shutil.copyfile(path, keyed)
    add_primary_keys(keyed)
    reference = {
        "kind": "fixed",
        "start": (WINDOW_START - timedelta(days=1)).isoformat(),
        "end": WINDOW_START.isoformat(),
    }
    for file in (path, keyed):
        document = monitor_document(url=f"duckdb:///{file}", reference=reference, start_date=WINDOW_START)
        (file.parent / "bench_evaluation.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    log(f"{rows:,} window rows + {args.reference_rows:,} reference rows written in {time.perf_counter() - began:.0f} s")
    runs: dict[str, dict] = {}
    for round_ in range(args.repeat):
        for name, python, target in contestants(path, keyed, rivals if rows == args.rival_rows else None):
            one = measure(python, target, rows=rows, contestant=name)
            shown = one.get("error") or f"{one['wall_seconds']:.2f} s, {one['peak_rss_mb']:.0f} MB"
            log(f"  {rows:>11,} {name:<36} round {round_ + 1}: {shown}")
            run = runs.setdefault(name, {"rows": rows, "contestant": name, "wall_seconds": [], "peak_rss_mb": []})
            if "error" in one or "error" in run:
                run["error"] = run.get("error") or one["error"]
                continue
            run["wall_seconds"].append(one["wall_seconds"])
            run["peak_rss_mb"].append(one["peak_rss_mb"])
            run.setdefault("found", []).append(one["found"])
    for name, run in runs.items():
        if "error" not in run:
            found = run["found"][-1]
            evaluated = name in (report.MODELWATCH_KEYS, report.MODELWATCH_PLAIN)
            run["summary"] = modelwatch_summary(found) if evaluated else rival_summary(name, found)
            if evaluated:  # the whole result is ~100 kB; the JSON keeps what the summary is made of
                run["found"] = [
                    {"metrics": f["metrics"], "counts": f["counts"], "root_cause": f["root_cause"],
                     "drift_findings": len(f["drift"]), "segment_rows": len(f["segments"])}
                    for f in run["found"]
                ]  # fmt: skip
    for file in (path, keyed):
        file.unlink()
    return list(runs.values())


def postgres_part(args: argparse.Namespace, log) -> list[dict] | str:
    import sqlalchemy as sa
    from evaluation_pg import steady_state

    url = os.environ.get("MODELWATCH_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        sa.create_engine(url, poolclass=sa.pool.NullPool).connect().close()
    except sa.exc.OperationalError as exc:
        return f"PostgreSQL at {sa.engine.make_url(url).render_as_string()} unreachable: {str(exc.orig).strip()}"
    out = []
    for days in (int(d) for d in args.pg_days.split(",")):
        began = time.perf_counter()
        found = steady_state(url, days=days, rows_per_hour=args.pg_rows_per_hour, seed=args.seed, progress=log)
        per = found["per_prediction"]["total"]
        log(f"  PostgreSQL {days} days: {per:,.1f} rows read per prediction ({time.perf_counter() - began:.0f} s)")
        out.append(found)
    return out


def _machine() -> dict[str, object]:
    import psutil

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000", help='window rows, comma-separated ("": none)')
    parser.add_argument("--reference-rows", type=int, default=1_000_000)
    parser.add_argument("--rival-rows", type=int, default=1_000_000, help="the size NannyML & co. run at")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per size (the table shows medians)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--pg-days", default="7,28", help="days of history, comma-separated")
    parser.add_argument("--pg-rows-per-hour", type=int, default=500)
    parser.add_argument("--no-venvs", action="store_true", help="skip NannyML and Evidently (no virtualenvs)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",") if s]
    return args


def _log(line: str) -> None:
    print(line, flush=True)


def _rivals(args: argparse.Namespace, results: dict) -> dict[str, Path]:
    """The venv tools that installed (their versions go to ``results``; the others' reasons to not_run)."""
    rivals: dict[str, Path] = {}
    for name in () if args.no_venvs or args.rival_rows not in args.sizes else RIVAL_PINS:
        python, versions = rival_python(name, _log)
        if python is None:
            _log(f"{name} not run: {versions}")
            results["not_run"].append(f"{name}: {versions}")
        else:
            rivals[name] = python
            results["versions"][name] = versions
    return rivals


def _print(results: dict, args: argparse.Namespace) -> None:
    if results["runs"]:
        print(f"\nWhole evaluation of one day window (wall: whole process, median of {args.repeat})\n")
        print(report.evaluation_table(results["runs"]))
    if results["postgres"]:
        print("\nPostgreSQL: warehouse rows read per monitored prediction, steady state (the last day)\n")
        print(report.postgres_table(results["postgres"]))
    print("\n" + report.targets_table(results["targets"]))
    for line in results["not_run"]:
        print(f"not run: {line}")
    print(f"\nversions: {json.dumps(results['versions'])}\nwritten to {args.out}")


def main() -> None:
    args = _arguments()
    results: dict = {"date": datetime.now(UTC).isoformat(timespec="minutes"), "machine": _machine()}
    results["load_average_at_start"] = os.getloadavg()
    results["versions"] = {"modelwatch venv": installed_versions(sys.executable)}
    results["not_run"] = []
    rivals = _rivals(args, results)
    results["runs"] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-eval-", dir=args.out.parent) as tmp:
        for rows in args.sizes:
            results["runs"] += bench_size(Path(tmp), rows, args, rivals, _log)
    steady = [] if args.no_postgres else postgres_part(args, _log)
    if isinstance(steady, str):
        results["not_run"].append(steady)
        steady = []
    results["postgres"] = steady
    big = max(args.sizes, default=0)
    results["targets"] = report.targets(results["runs"], steady, rival_rows=args.rival_rows, big_rows=big)
    results["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(results, indent=2, default=str))
    _print(results, args)


if __name__ == "__main__":
    main()
