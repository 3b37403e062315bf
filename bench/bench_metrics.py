"""Benchmark: one window evaluation by modelwatch vs pandas + scikit-learn on the same rows.

Run by ``make bench`` (not by pytest). Generates binary-classification windows of 100k, 1M and 10M
predictions (90% labelled, a few late labels) inside DuckDB with SQL, plus 1M in PostgreSQL when
``MODELWATCH_TEST_POSTGRES_URL`` is set; each size twice: tables whose request id is the PRIMARY KEY, and
plain tables with 1% duplicated ids. Each measurement runs in a fresh subprocess that
reports its wall seconds (evaluation only, imports excluded) and its peak RSS (``VmHWM``, imports
included). Results are printed and written to ``docs/benchmarks.md``.

    python bench/bench_metrics.py [--sizes 100000,1000000,10000000] [--no-write] [--small-only]

It also times the product demo's case: one hourly window (~5k rows) of the demo churn table (~360k rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from peak_rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

START = datetime(2026, 11, 1)
END = START + timedelta(days=1)
AS_OF = END + timedelta(days=2)
SCHEMA = "modelwatch_bench"
NOTES_MARKER = "## Notes"


def _monitor(schema: str | None):
    from modelwatch.core.config import parse_monitor

    where = {"schema": schema} if schema else {}
    return parse_monitor(
        {
            "name": "bench",
            "model": {"name": "bench"},
            "task": "binary_classification",
            "warehouse": {"url": "duckdb:///unused.duckdb"},
            "predictions": {
                "table": "bench_predictions",
                "request_id": "request_id",
                "timestamp": "predicted_at",
                "model_version": "model_version",
                "score": "score",
                **where,
            },
            "labels": {
                "table": "bench_labels",
                "request_id": "request_id",
                "timestamp": "labeled_at",
                "label": "churned",
                **where,
            },
            "classes": ["0", "1"],
        }
    )


# --- data generation (inside the database) -------------------------------------------------------

_DUCKDB_GEN = [
    """CREATE OR REPLACE TABLE bench_predictions AS
       SELECT i AS request_id,
              TIMESTAMP '2026-11-01' + to_microseconds((i * 86400000000 // $n)::BIGINT) AS predicted_at,
              'v' || (i % 2)::VARCHAR AS model_version, random() AS score
       FROM range($n) t(i)""",
    # 90% labelled, 3h to 63h after the prediction (some arrive after as_of = window end + 48h).
    """CREATE OR REPLACE TABLE bench_labels AS
       SELECT request_id, predicted_at + to_microseconds(((request_id * 7919) % 216000 + 10800) * 1000000)
              AS labeled_at, (random() < score)::INTEGER AS churned
       FROM bench_predictions WHERE request_id % 10 <> 0""",
    # 1% duplicated ids, predicted a second earlier (the later row wins).
    """INSERT INTO bench_predictions
       SELECT request_id, predicted_at - INTERVAL 1 SECOND, 'v0', random() FROM bench_predictions
       WHERE request_id % 100 = 0""",
]

_DUCKDB_KEYS = [
    "ALTER TABLE bench_predictions ADD PRIMARY KEY (request_id)",
    "ALTER TABLE bench_labels ADD PRIMARY KEY (request_id)",
]

_POSTGRES_GEN = [
    "DROP SCHEMA IF EXISTS modelwatch_bench CASCADE",
    "CREATE SCHEMA modelwatch_bench",
    """CREATE TABLE modelwatch_bench.bench_predictions AS
       SELECT i::bigint AS request_id,
              TIMESTAMP '2026-11-01' + make_interval(secs => i * 86400.0 / %(n)s) AS predicted_at,
              'v' || (i %% 2) AS model_version, random() AS score
       FROM generate_series(0, %(n)s - 1) AS i
       UNION ALL
       SELECT i, TIMESTAMP '2026-11-01' + make_interval(secs => i * 86400.0 / %(n)s - 1), 'v0', random()
       FROM generate_series(0, %(n)s - 1, 100) AS i""",
    """CREATE TABLE modelwatch_bench.bench_labels AS
       SELECT DISTINCT ON (request_id) request_id,
              predicted_at + make_interval(secs => (request_id * 7919) %% 216000 + 10800) AS labeled_at,
              (random() < score)::int AS churned
       FROM modelwatch_bench.bench_predictions WHERE request_id %% 10 <> 0
       ORDER BY request_id, predicted_at DESC""",
    "ANALYZE modelwatch_bench.bench_predictions",
    "ANALYZE modelwatch_bench.bench_labels",
]


UNIQUE = "PRIMARY KEY"
DUPLICATED = "1% duplicated"
"""The two id regimes: tables declaring their request id as PRIMARY KEY (no duplicates possible, read as
they are) and plain tables with 1% duplicated prediction ids (de-duplicated per window)."""


def generate_duckdb(path: Path, n: int, ids: str = DUPLICATED) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        statements = _DUCKDB_GEN if ids == DUPLICATED else [*_DUCKDB_GEN[:2], *_DUCKDB_KEYS]
        for statement in statements:
            con.execute(statement.replace("$n", str(int(n))))
        con.execute("CHECKPOINT")
    finally:
        con.close()


def generate_postgres(url: str, n: int, ids: str = DUPLICATED) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        for statement in _POSTGRES_GEN:
            conn.execute(statement, {"n": int(n)})
        if ids == UNIQUE:
            conn.execute(
                "DELETE FROM modelwatch_bench.bench_predictions a USING modelwatch_bench.bench_predictions b "
                "WHERE a.request_id = b.request_id AND a.predicted_at < b.predicted_at"
            )
            conn.execute("ALTER TABLE modelwatch_bench.bench_predictions ADD PRIMARY KEY (request_id)")
            conn.execute("ALTER TABLE modelwatch_bench.bench_labels ADD PRIMARY KEY (request_id)")
            conn.execute("ANALYZE modelwatch_bench.bench_predictions")


# --- the two contestants (each runs in a fresh child process) -----------------------------------


def run_modelwatch(url: str, schema: str | None) -> dict:
    # Imported before the clock starts (scipy alone takes ~0.7 s): the table times evaluation, not imports.
    from modelwatch.core.metrics import compute_metrics
    from modelwatch.warehouse.engine import make_engine
    from modelwatch.warehouse.window_query import fetch_window_stats

    monitor = _monitor(schema)
    engine = make_engine(url)
    began = time.perf_counter()
    stats = fetch_window_stats(engine, monitor, start=START, end=END, as_of=AS_OF)
    stats_seconds = time.perf_counter() - began
    metrics = {k: v.value for k, v in compute_metrics(stats, task=monitor.task).items()}
    note = "fetch_window_stats + compute_metrics"
    seconds = time.perf_counter() - began
    rows = stats.counts.predictions
    return {"seconds": seconds, "stats_seconds": stats_seconds, "rows": rows, "metrics": metrics, "note": note}


def _read_frames(url: str, schema: str | None):
    import pandas as pd

    prefix = f"{schema}." if schema else ""
    preds_sql = (
        f"SELECT request_id, predicted_at, score FROM {prefix}bench_predictions "
        f"WHERE predicted_at >= '{START}' AND predicted_at < '{END}'"
    )
    labels_sql = f"SELECT request_id, labeled_at, churned FROM {prefix}bench_labels WHERE labeled_at < '{AS_OF}'"
    if url.startswith("duckdb"):
        import duckdb

        con = duckdb.connect(url.removeprefix("duckdb:///"), read_only=True)
        try:  # DuckDB's native DataFrame export: the fastest way pandas can get the rows
            return con.execute(preds_sql).df(), con.execute(labels_sql).df()
        finally:
            con.close()
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        return pd.read_sql(sa.text(preds_sql), conn), pd.read_sql(sa.text(labels_sql), conn)


def run_pandas(url: str, schema: str | None, ids: str) -> dict:
    import numpy as np
    from sklearn import metrics as skm

    began = time.perf_counter()
    preds, labels = _read_frames(url, schema)
    if ids == DUPLICATED:  # with a PRIMARY KEY the baseline, like modelwatch, knows there is nothing to drop
        preds = preds.sort_values("predicted_at").drop_duplicates("request_id", keep="last")
        labels = labels.sort_values("labeled_at").drop_duplicates("request_id", keep="last")
    joined = preds.merge(labels, on="request_id", how="left")
    ok = joined["churned"].notna() & (joined["labeled_at"] >= joined["predicted_at"])
    ok &= joined["score"].between(0, 1)
    y = joined.loc[ok, "churned"].to_numpy(dtype=np.int64)
    s = joined.loc[ok, "score"].to_numpy(dtype=np.float64)
    predicted = s >= 0.5
    metrics = {
        "roc_auc": skm.roc_auc_score(y, s),
        "average_precision": skm.average_precision_score(y, s),
        "f1": skm.f1_score(y, predicted),
        "precision": skm.precision_score(y, predicted),
        "recall": skm.recall_score(y, predicted),
        "accuracy": skm.accuracy_score(y, predicted),
        "log_loss": skm.log_loss(y, s),
        "brier": skm.brier_score_loss(y, s),
    }
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": len(preds), "metrics": metrics, "note": "pandas + scikit-learn"}


def child_main(kind: str, url: str, schema: str | None, ids: str) -> None:
    result = run_modelwatch(url, schema) if kind == "modelwatch" else run_pandas(url, schema, ids)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result, default=float))


def measure(kind: str, url: str, schema: str | None, ids: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--url", url, "--ids", ids]
    if schema:
        command += ["--schema", schema]
    return json.loads(_child_json(command))


def _child_json(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    if done.returncode != 0:
        raise RuntimeError(f"child {command[2:]} failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def small_window(repeats: int = 15) -> dict:
    """Median milliseconds of one hourly window (~5k rows) of the demo churn table (~360k rows).

    The demo keeps its DuckDB file open (``MODELWATCH_DUCKDB_KEEP_OPEN=1``), so this does too.
    """
    import statistics

    os.environ["MODELWATCH_DUCKDB_KEEP_OPEN"] = "1"
    from modelwatch.core.config import load_monitor
    from modelwatch.demo.data import DemoSpec, churn_frames
    from modelwatch.warehouse.engine import load_frame, make_engine
    from modelwatch.warehouse.window_query import fetch_segments_stats, fetch_window_stats

    monitor = load_monitor(ROOT / "include" / "monitors" / "churn.yaml")
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-") as tmp:
        engine = make_engine(f"duckdb:///{Path(tmp) / 'demo.duckdb'}")
        predictions, labels = churn_frames(DemoSpec())
        load_frame(engine, "churn_predictions", predictions)
        load_frame(engine, "churn_labels", labels)
        start = datetime(2026, 11, 3, 12)
        window = {"start": start, "end": start + timedelta(hours=1), "as_of": start + timedelta(hours=25)}

        def median_ms(call) -> float:
            call()  # warm-up: first statement compile and file open
            seconds = []
            for _ in range(repeats):
                began = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - began)
            return statistics.median(seconds) * 1000

        out = {
            "table_rows": len(predictions),
            "window_rows": fetch_window_stats(engine, monitor, **window).counts.predictions,
            "window_ms": median_ms(lambda: fetch_window_stats(engine, monitor, **window)),
            "segment_ms": median_ms(lambda: fetch_segments_stats(engine, monitor, columns=["region"], **window)),
        }
        engine.dispose()
    return out


# --- driver ----------------------------------------------------------------------------------------


def _machine() -> str:
    import psutil

    memory = psutil.virtual_memory().total / 2**30
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}"


def _versions() -> str:
    import duckdb
    import pandas
    import sklearn

    return (
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, pandas {pandas.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )


def _table(rows: list[dict]) -> str:
    lines = [
        "| engine | request ids | rows | modelwatch s | modelwatch peak RSS MB | pandas+sklearn s | pandas peak RSS MB "
        "| speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mw, pdk = r["modelwatch"], r["pandas"]
        lines.append(
            f"| {r['engine']} | {r['ids']} | {r['rows']:,} | {mw['seconds']:.3f} | {mw['peak_rss_mb']:.0f} | "
            f"{pdk['seconds']:.3f} | {pdk['peak_rss_mb']:.0f} | {pdk['seconds'] / mw['seconds']:.1f}x |"
        )
    return "\n".join(lines)


def _agreement(row: dict) -> str:
    mw, pdk = row["modelwatch"]["metrics"], row["pandas"]["metrics"]
    shared = {k: abs(mw[k] - v) for k, v in pdk.items() if mw.get(k) is not None}
    worst = max(shared.values(), default=float("nan"))
    return (
        f"{row['engine']} {row['ids']} {row['rows']:,}: max |modelwatch - sklearn| over {sorted(shared)}: {worst:.1e}"
    )


def _load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"Load average at the end (1/5/15 min): {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def _small_line(small: dict) -> str:
    return (
        f"Small window (demo churn table, {small['table_rows']:,} rows; one hour = {small['window_rows']:,} "
        f"predictions; DuckDB file kept open as in the demo): fetch_window_stats {small['window_ms']:.1f} ms, "
        f"fetch_segments_stats([region]) {small['segment_ms']:.1f} ms (median of 15)"
    )


def _write(rows: list[dict], notes: list[str]) -> None:
    header = """# Metrics benchmark

`make bench` runs `bench/bench_metrics.py`: one daily window of binary-classification predictions
(90% labelled, some labels after `as_of`) in two id regimes:

* **PRIMARY KEY**: both tables declare the request id as their primary key, so no id can repeat and
  modelwatch reads the rows as they are (`modelwatch.warehouse.keys`); the baseline skips its
  `drop_duplicates` too;
* **1% duplicated**: plain tables, 1% of prediction ids logged twice; both sides de-duplicate per id.

Each is evaluated

* by **modelwatch**: `fetch_window_stats` (de-duplication when needed, join and sufficient statistics
  computed in the warehouse; only a 10k-bin histogram and a few scalars leave it) + `compute_metrics`;
* by **pandas + scikit-learn**: rows pulled into pandas (DuckDB's native DataFrame export, `read_sql` for
  PostgreSQL), de-duplicated and joined in pandas, metrics by `sklearn.metrics`.

Each run is a fresh subprocess; seconds cover the evaluation only (imports excluded); peak RSS is the
child's own `VmHWM` (imports included; not `ru_maxrss`, which Linux carries over from the driver).

"""
    facts = [
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"Machine: {_machine()}",
        f"Software: {_versions()}",
        *notes,
    ]
    text = header + _table(rows) + "\n\n" + "".join(f"- {fact}\n" for fact in facts)
    target = ROOT / "docs" / "benchmarks.md"
    target.parent.mkdir(exist_ok=True)
    # Hand-written analysis below the NOTES_MARKER heading survives a re-run; the table above is regenerated.
    previous = target.read_text() if target.exists() else ""
    if NOTES_MARKER in previous:
        text += "\n" + previous[previous.index(NOTES_MARKER) :]
    target.write_text(text)


def _bench(engine: str, url: str, schema: str | None, rows: int, ids: str) -> dict:
    result: dict = {"engine": engine, "rows": rows, "ids": ids}
    for kind in ("modelwatch", "pandas"):
        result[kind] = measure(kind, url, schema, ids)
        seconds, rss = result[kind]["seconds"], result[kind]["peak_rss_mb"]
        print(f"  {engine:<10} {ids:<13} {rows:>12,} {kind:<10} {seconds:8.3f} s {rss:7.0f} MB", flush=True)
    return result


def _run_duckdb(sizes: list[int]) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory(prefix="modelwatch-bench-") as tmp:
        for n in sizes:
            for ids in (UNIQUE, DUPLICATED):
                path = Path(tmp) / f"bench_{n}.duckdb"
                began = time.perf_counter()
                generate_duckdb(path, n, ids)
                print(
                    f"generated {n:,} predictions ({ids}) in DuckDB in {time.perf_counter() - began:.1f} s", flush=True
                )
                results.append(_bench("DuckDB", f"duckdb:///{path}", None, n, ids))
                path.unlink()
    return results


def _run_postgres(url: str, n: int) -> list[dict]:
    results = []
    for ids in (UNIQUE, DUPLICATED):
        began = time.perf_counter()
        generate_postgres(url, n, ids)
        print(f"generated {n:,} predictions ({ids}) in PostgreSQL in {time.perf_counter() - began:.1f} s", flush=True)
        try:
            results.append(_bench("PostgreSQL", url, SCHEMA, n, ids))
        finally:
            drop_postgres(url)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", choices=["modelwatch", "pandas"])
    parser.add_argument("--url")
    parser.add_argument("--schema")
    parser.add_argument("--ids", choices=[UNIQUE, DUPLICATED], default=DUPLICATED)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--postgres-size", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true", help="print only, do not write docs/benchmarks.md")
    parser.add_argument("--small-only", action="store_true", help="only the small-window latency, nothing written")
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.url, args.schema, args.ids)
        return
    if args.small_only:
        print(json.dumps(small_window()))
        return
    small = json.loads(_child_json([sys.executable, __file__, "--small-only"]))
    results = _run_duckdb([int(s) for s in args.sizes.split(",")])
    notes = []
    postgres = os.environ.get("MODELWATCH_TEST_POSTGRES_URL")
    if postgres:
        results += _run_postgres(postgres.replace("postgresql://", "postgresql+psycopg://", 1), args.postgres_size)
    else:
        notes.append("PostgreSQL skipped (MODELWATCH_TEST_POSTGRES_URL not set).")
    notes += [_small_line(small), _load_average()]
    notes += [_agreement(r) for r in results]
    notes += sorted({f"modelwatch timed: {r['modelwatch']['note']}" for r in results})
    print(_table(results))
    print("\n".join(notes))
    if not args.no_write:
        _write(results, notes)


def drop_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS modelwatch_bench CASCADE")


if __name__ == "__main__":
    main()
