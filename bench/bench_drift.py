"""Benchmark: one window's whole evaluation with root cause, in DuckDB, vs pandas + scipy in memory.

Run by ``make bench`` (not by pytest). The window has N predictions (13 features: 10 numeric and 3
categorical; 3 segment columns; 90% labelled); the reference is a fixed range holding another N rows, so
the table holds 2N rows. modelwatch runs ``fetch_window_stats`` + ``compute_metrics`` +
``diagnose_window``; the baseline pulls the same rows into pandas and computes the same profiles,
distances and per-segment metrics with numpy/scipy/scikit-learn. modelwatch runs twice on the same rows:
on plain tables (it must de-duplicate per id) and after PRIMARY KEYs are declared (it reads rows as they
are; ``modelwatch.warehouse.keys``). Each measurement is a fresh subprocess
reporting wall seconds (evaluation only, imports excluded) and peak RSS (``VmHWM``, imports included).
Results are printed and appended to ``docs/benchmarks-drift.md``.

    python bench/bench_drift.py [--sizes 1000000,10000000] [--pandas-sizes 1000000] [--no-write]
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
from datetime import datetime, timedelta
from pathlib import Path

from peak_rss import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "include"))

REF_START = datetime(2026, 11, 1)
START = datetime(2026, 11, 8)
END = START + timedelta(days=1)
AS_OF = END + timedelta(days=2)
NUMERIC = [f"x{i}" for i in range(10)]
CATEGORICAL = ["cat0", "cat1", "cat2"]
SEGMENTS = ["seg0", "seg1", "seg2"]


def _monitor():
    from modelwatch.core.config import parse_monitor

    features = [{"name": n, "kind": "numeric"} for n in NUMERIC]
    features += [{"name": n, "kind": "categorical"} for n in CATEGORICAL]
    return parse_monitor(
        {
            "name": "bench",
            "model": {"name": "bench"},
            "task": "binary_classification",
            "warehouse": {"url": "duckdb:///unused.duckdb"},
            "predictions": {
                "table": "preds",
                "request_id": "request_id",
                "timestamp": "predicted_at",
                "score": "score",
                "features": features,
                "segments": SEGMENTS,
            },
            "labels": {"table": "labels", "request_id": "request_id", "timestamp": "labeled_at", "label": "y"},
            "classes": ["0", "1"],
            "reference": {"kind": "fixed", "start": REF_START.isoformat(), "end": START.isoformat()},
        }
    )


def generate(path: Path, n: int) -> None:
    """2N rows in SQL: N over the 7 reference days, N in the window (x0 drifts in segment seg0 = 's0_1')."""
    import duckdb

    numeric = ",\n".join(
        f"(random() + random() + random() - 1.5) * {i + 1} + CASE WHEN current AND {i} = 0 AND seg0 = 's0_1' "
        f"THEN 1 ELSE 0 END AS x{i}"
        for i in range(10)
    )
    sql = f"""
    CREATE TABLE preds AS
    WITH base AS (
        SELECT i, i >= {n} AS current,
               's0_' || (i % 5) AS seg0, 's1_' || (hash(i) % 10) AS seg1, 's2_' || (hash(i * 7) % 20) AS seg2
        FROM range({2 * n}) t(i)
    ), feats AS (
        SELECT i, current, seg0, seg1, seg2, {numeric},
               'c' || CAST(floor(random() * 4) AS INT) AS cat0,
               'd' || CAST(floor(random() * 12) AS INT) AS cat1,
               'e' || CAST(floor(random() * 40) AS INT) AS cat2
        FROM base
    )
    SELECT 'r' || i AS request_id,
           CASE WHEN current THEN TIMESTAMP '{START}' + to_microseconds(CAST((i - {n}) * 86400000000 // {n} AS BIGINT))
                ELSE TIMESTAMP '{REF_START}' + to_microseconds(CAST(i * 7 * 86400000000 // {n} AS BIGINT)) END
               AS predicted_at,
           1 / (1 + exp(-(x0 + 0.5 * x1 - 0.3 * x2 + CASE WHEN cat0 = 'c1' THEN 0.5 ELSE 0 END))) AS score,
           {", ".join(NUMERIC + CATEGORICAL + SEGMENTS)}
    FROM feats
    """
    with duckdb.connect(str(path)) as con:
        con.execute("SET preserve_insertion_order = false")
        con.execute(sql)
        con.execute(
            "CREATE TABLE labels AS SELECT request_id, predicted_at + INTERVAL 1 HOUR AS labeled_at, "
            "CAST(random() < score AS INT) AS y FROM preds WHERE random() < 0.9"
        )


def add_primary_keys(path: Path) -> None:
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute("ALTER TABLE preds ADD PRIMARY KEY (request_id)")
        con.execute("ALTER TABLE labels ADD PRIMARY KEY (request_id)")
        con.execute("CHECKPOINT")


def run_modelwatch(url: str) -> dict:
    from modelwatch.app.diagnosis import diagnose_window
    from modelwatch.core.metrics import compute_metrics
    from modelwatch.core.windows import Window, WindowRun
    from modelwatch.warehouse.engine import make_engine
    from modelwatch.warehouse.window_query import fetch_window_stats

    monitor = _monitor()
    # make_engine, as production does: its DuckDB connections get the memory_limit and other settings.
    engine = make_engine(url)
    began = time.perf_counter()
    window = fetch_window_stats(engine, monitor, start=START, end=END, as_of=AS_OF)
    metrics = compute_metrics(window, task=monitor.task)
    diagnosis = diagnose_window(engine, monitor, WindowRun.of(Window(START, END, "daily"), as_of=AS_OF), stats=window)
    seconds = time.perf_counter() - began
    cause = diagnosis.root_cause
    return {
        "seconds": seconds,
        "roc_auc": metrics["roc_auc"].value,
        "verdict": cause.verdict if cause else None,
        "summary": cause.summary if cause else None,
        "x0_psi": next((f.score for f in diagnosis.drift if f.feature == "x0" and f.method == "psi"), None),
    }


def _pandas_profiles(ref, cur) -> dict[str, float]:
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    from modelwatch.core.drift import psi

    out = {}
    for name in NUMERIC:
        r, c = ref[name].dropna().to_numpy(), cur[name].dropna().to_numpy()
        edges = np.unique(np.quantile(r, np.arange(1, 10) / 10))
        p = np.bincount(np.searchsorted(edges, r, side="right"), minlength=len(edges) + 1)
        q = np.bincount(np.searchsorted(edges, c, side="right"), minlength=len(edges) + 1)
        out[f"{name}_psi"] = psi(p, q)
        out[f"{name}_ks"] = stats.ks_2samp(r, c).statistic
        out[f"{name}_js"] = float(distance.jensenshannon(p, q, base=2))
        out[f"{name}_w"] = stats.wasserstein_distance(r, c) / r.std()
        out[f"{name}_corr"] = float(np.corrcoef(ref[name], ref["score"])[0, 1])
    for name in CATEGORICAL:
        counts = np.vstack([ref[name].value_counts().sort_index(), cur[name].value_counts().sort_index()])
        out[f"{name}_psi"] = psi(counts[0], counts[1])
        out[f"{name}_chi2"] = stats.chi2_contingency(counts).pvalue
        out[f"{name}_js"] = float(distance.jensenshannon(counts[0], counts[1], base=2))
    return out


def _segment_auc(frame, column):
    from sklearn.metrics import roc_auc_score

    labelled = frame.dropna(subset=["y"])
    return {value: roc_auc_score(g["y"], g["score"]) for value, g in labelled.groupby(column) if g["y"].nunique() == 2}


def run_pandas(url: str) -> dict:
    import duckdb
    from sklearn.metrics import roc_auc_score

    path = url.removeprefix("duckdb:///")
    began = time.perf_counter()
    with duckdb.connect(path, read_only=True) as con:
        frame = con.execute(
            "SELECT p.*, l.y FROM preds p LEFT JOIN labels l USING (request_id) WHERE p.predicted_at < ?", [END]
        ).df()
    cur, ref = frame[frame["predicted_at"] >= START], frame[frame["predicted_at"] < START]
    labelled = cur.dropna(subset=["y"])
    auc = roc_auc_score(labelled["y"], labelled["score"])
    whole = _pandas_profiles(ref, cur)
    worst = None
    for column in SEGMENTS:
        now, before = _segment_auc(cur, column), _segment_auc(ref, column)
        for value, m in now.items():
            loss = before.get(value, m) - m
            if worst is None or loss > worst[0]:
                worst = (loss, column, value)
    _, column, value = worst
    drift = _pandas_profiles(ref[ref[column] == value], cur[cur[column] == value])
    return {
        "seconds": time.perf_counter() - began,
        "roc_auc": auc,
        "segment": f"{column}={value}",
        "x0_psi": whole["x0_psi"],  # the whole window's, like modelwatch's column
        "x0_psi_in_segment": drift["x0_psi"],
    }


def child_main(kind: str, url: str) -> None:
    result = run_modelwatch(url) if kind == "modelwatch" else run_pandas(url)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def measure(kind: str, url: str) -> dict:
    command = [sys.executable, __file__, "--child", kind, url]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    if done.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write(lines: list[str]) -> None:
    path = ROOT / "docs" / "benchmarks-drift.md"
    if not path.exists():
        path.write_text(
            "# Drift and root-cause benchmark\n\n"
            "Generated by `bench/bench_drift.py` (`make bench`). Each run is a fresh subprocess; seconds cover "
            "the evaluation only (window stats + metrics + diagnose_window; imports excluded); peak RSS is the "
            "child's own `VmHWM`. N = rows in the window; the table holds 2N (N in a fixed reference).\n"
            "Targets: 10M <= 5 s and <= 1 GB peak; 1M >= 10x faster than pandas + scipy.\n"
        )
    with path.open("a") as out:
        out.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--pandas-sizes", default="1000000")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    pandas_sizes = {int(s) for s in args.pandas_sizes.split(",") if s}
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"\n## {stamp} ({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f} at start)\n",
        "| N (window rows) | engine | seconds | peak RSS MB | roc_auc | verdict / worst segment | x0 PSI |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"bench_{n}.duckdb"
            generate(path, n)
            url = f"duckdb:///{path}"
            # The ids are unique either way; first measured as plain tables (modelwatch must de-duplicate),
            # then with PRIMARY KEYs declared (modelwatch reads the rows as they are). pandas never de-duplicates.
            results = {"modelwatch, no key declared": measure("modelwatch", url)}
            add_primary_keys(path)
            results["modelwatch, PRIMARY KEY"] = measure("modelwatch", url)
            if n in pandas_sizes:
                results["pandas+scipy"] = measure("pandas", url)
            added = len(lines)
            for kind, r in results.items():
                what = r.get("verdict") or r.get("segment")
                lines.append(
                    f"| {n:,} | {kind} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['roc_auc']:.4f} | "
                    f"{what} | {r['x0_psi'] or 0:.3f} |"
                )
            if "pandas+scipy" in results:
                for kind in ("modelwatch, no key declared", "modelwatch, PRIMARY KEY"):
                    speedup = results["pandas+scipy"]["seconds"] / results[kind]["seconds"]
                    lines.append(f"| {n:,} | speed-up ({kind.removeprefix('modelwatch, ')}) | {speedup:.1f}x | | | | |")
            path.unlink()
            print("\n".join(lines[added:]), flush=True)
    print("\n".join(lines))
    if not args.no_write:
        _write(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3])
    else:
        main()
