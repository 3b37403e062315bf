"""Benchmark: ``fetch_window_profile`` on DuckDB against a single-scan floor (not run by pytest or ``make``).

The window holds N rows (10 numeric features, 3 categorical of 4, 12 and 40 values, 3 segment columns of 5
values each; 2% nulls); another N/4 rows lie outside it, so the window's bounds filter. The edges are fixed
from a 100k-row sample (10 bins per numeric feature, 50 top categories). Each case runs ``--repeats`` times
in this process through ``make_engine`` (a DuckDB engine opens the file for each connection, as in
production) and prints the median wall seconds and the median CPU seconds of this process (DuckDB's threads
included; steadier than wall time on a shared machine). The floor is one aggregate over the same 13 columns
of the same window (``sum`` of each numeric, ``count`` of each categorical). ``--check`` also compares each
profile with ``core.profiles.profile_frame`` of the same rows in pandas.

    .venv/bin/python bench/bench_window_profile.py [--rows 1000000] [--repeats 3] [--check]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# The drift bench's monitor and column names (its score, labels and reference are not used here).
from bench_drift import CATEGORICAL, END, NUMERIC, SEGMENTS, START, _monitor

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT)]


def generate(path: Path, n: int) -> None:
    """``n`` rows in the window and ``n // 4`` the day before, with 2% null numeric and categorical values."""
    import duckdb

    numeric = ", ".join(
        f"CASE WHEN random() < 0.02 THEN NULL ELSE (random() + random() + random() - 1.5) * {i + 1} END AS x{i}"
        for i in range(len(NUMERIC))
    )
    categorical = ", ".join(
        f"CASE WHEN random() < 0.02 THEN NULL ELSE '{name}_' || CAST(floor(random() * {size}) AS INT) END AS {name}"
        for name, size in zip(CATEGORICAL, (4, 12, 40), strict=True)
    )
    segments = ", ".join(f"'{s}_' || (hash(i * {k + 3}) % 5) AS {s}" for k, s in enumerate(SEGMENTS))
    total = n + n // 4
    sql = f"""
    CREATE TABLE preds AS
    SELECT 'r' || i AS request_id,
           TIMESTAMP '{START}' + to_microseconds(CAST((i - {n // 4}) * 86400000000 // {n} AS BIGINT)) AS predicted_at,
           {numeric}, {categorical}, {segments}
    FROM range({total}) t(i)
    """
    with duckdb.connect(str(path)) as con:
        con.execute("SET preserve_insertion_order = false")
        con.execute(sql)
        con.execute("CHECKPOINT")


def _edges(url: str):
    import pandas as pd

    from modelwatch.core.profiles import edges_from_baseline
    from modelwatch.warehouse.engine import make_engine

    columns = ", ".join(NUMERIC + CATEGORICAL)
    with make_engine(url).connect() as conn:
        sample = pd.read_sql(f"SELECT {columns} FROM preds USING SAMPLE 100000 ROWS", conn)
    return edges_from_baseline(sample, numeric=NUMERIC, categorical=CATEGORICAL, bins=10)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process: DuckDB's too
    return usage.ru_utime + usage.ru_stime


def _median_seconds(run: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median CPU seconds of ``repeats`` runs (CPU is steadier on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeats):
        began, began_cpu = time.perf_counter(), _cpu_seconds()
        run()
        wall.append(time.perf_counter() - began)
        cpu.append(_cpu_seconds() - began_cpu)
    return statistics.median(wall), statistics.median(cpu)


def _floor(url: str) -> None:
    from modelwatch.warehouse.engine import make_engine

    aggregates = ", ".join([f"sum({n})" for n in NUMERIC] + [f"count({c})" for c in CATEGORICAL])
    sql = f"SELECT {aggregates} FROM preds WHERE predicted_at >= ? AND predicted_at < ?"
    with make_engine(url).connect() as conn:
        conn.exec_driver_sql(sql, (START, END)).fetchall()


def _check(url: str, edges, profile, segments: list[str]) -> None:
    import pandas as pd

    from modelwatch.core.profiles import profile_frame
    from modelwatch.warehouse.engine import make_engine
    from tests.profile_checks import assert_same_profile

    columns = ", ".join(NUMERIC + CATEGORICAL + SEGMENTS)
    sql = f"SELECT {columns} FROM preds WHERE predicted_at >= ? AND predicted_at < ?"
    with make_engine(url).connect() as conn:
        frame = pd.DataFrame(conn.exec_driver_sql(sql, (START, END)).mappings().all())
    assert_same_profile(profile, profile_frame(frame, edges, segments=segments))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", action="store_true", help="compare with profile_frame in pandas")
    args = parser.parse_args()

    from modelwatch.warehouse.engine import make_engine
    from modelwatch.warehouse.window_profile import fetch_window_profile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        generate(path, args.rows)
        url = f"duckdb:///{path}"
        edges, monitor = _edges(url), _monitor()
        print(f"{args.rows:,} rows, {len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical, median of {args.repeats}")
        print(f"{'case':<34} {'wall s':>7} {'cpu s':>7}")
        wall, cpu = _median_seconds(lambda: _floor(url), args.repeats)
        print(f"{'floor (one aggregate, 13 columns)':<34} {wall:>7.2f} {cpu:>7.2f}")
        for segments in ([], SEGMENTS):

            def profile(segments: list[str] = segments):
                engine = make_engine(url)
                return fetch_window_profile(engine, monitor, edges, start=START, end=END, segments=segments)

            wall, cpu = _median_seconds(profile, args.repeats)
            print(f"{f'fetch_window_profile, {len(segments)} segments':<34} {wall:>7.2f} {cpu:>7.2f}")
            if args.check:
                _check(url, edges, profile(), segments)
                print(f"{'':<34} same as profile_frame")


if __name__ == "__main__":
    main()
