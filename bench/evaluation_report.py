"""Tables and targets of ``bench/bench_evaluation.py``: pure functions over its JSON-able results.

A run is ``{"rows", "contestant", "wall_seconds": [...], "peak_rss_mb": [...], "found": {...}}`` (one entry
per repetition) or ``{"rows", "contestant", "error": "..."}`` when the contestant could not run.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

MODELWATCH_KEYS = "modelwatch, PRIMARY KEY"
MODELWATCH_PLAIN = "modelwatch, no key declared"
IMPORTS = "modelwatch imports alone (no evaluation)"
FLOOR = "one-scan floor (DuckDB aggregate)"
PANDAS = "pandas + scikit-learn + scipy"
NANNYML = "NannyML"
EVIDENTLY = "Evidently"

Run = Mapping[str, object]


def wall(run: Run) -> float | None:
    """Median wall seconds of a run's repetitions; for the floor, its statement's best time."""
    if run.get("error"):
        return None
    if run["contestant"] == FLOOR:
        return min(float(r["statement_seconds"]) for r in run["found"])  # type: ignore[index, union-attr]
    return statistics.median(run["wall_seconds"])  # type: ignore[arg-type]


def peak(run: Run) -> float | None:
    return None if run.get("error") else max(run["peak_rss_mb"])  # type: ignore[arg-type]


def find(runs: Sequence[Run], rows: int, contestant: str) -> Run | None:
    return next((r for r in runs if r["rows"] == rows and r["contestant"] == contestant), None)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{suffix}"


def _compared(runs: Sequence[Run], run: Run) -> str:
    """The ratio column: a rival's time over modelwatch's (keys), modelwatch's time over the floor's."""
    rows, contestant = int(run["rows"]), str(run["contestant"])  # type: ignore[call-overload]
    keys = find(runs, rows, MODELWATCH_KEYS)
    if contestant in (MODELWATCH_KEYS, MODELWATCH_PLAIN):
        floor = find(runs, rows, FLOOR)
        return fmt(ratio(wall(run), wall(floor) if floor else None), ".1f", "x the floor")
    if contestant in (FLOOR, IMPORTS):
        return ""
    return fmt(ratio(wall(run), wall(keys) if keys else None), ".2f", "x modelwatch's time")


def evaluation_table(runs: Sequence[Run]) -> str:
    """Markdown table of the whole-evaluation runs, in the order they were given."""
    lines = [
        "| window rows | contestant | wall s | peak RSS MB | compared | found |",
        "|---:|---|---:|---:|---|---|",
    ]
    for run in runs:
        found = run.get("error") or run.get("summary", "")
        lines.append(
            f"| {int(run['rows']):,} | {run['contestant']} | {fmt(wall(run), '.2f')} | {fmt(peak(run), '.0f')} "  # type: ignore[call-overload]
            f"| {_compared(runs, run)} | {found} |"
        )
    return "\n".join(lines)


def postgres_table(steady: Sequence[Mapping[str, object]]) -> str:
    """Markdown table of rows read per monitored prediction, one line per history length."""
    lines = [
        "| days of history | rows/hour | predictions monitored (last day) | runs | rows read per prediction "
        "| of which monitored tables | of which modelwatch's tables | seconds |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in steady:
        per = s["per_prediction"]
        lines.append(
            f"| {s['days']} | {s['rows_per_hour']} | {s['predictions_monitored']:,} | {s['runs_measured']} "
            f"| {per['total']:,.1f} | {per['monitored_tables']:,.1f} | {per['modelwatch_tables']:,.1f} "  # type: ignore[index]
            f"| {s['seconds_measured']:.0f} |"
        )
    return "\n".join(lines)


def _target(name: str, measured: float | None, spec: str, met: bool | None) -> dict[str, object]:
    shown = "not measured" if measured is None else format(measured, spec)
    return {"target": name, "measured": shown, "met": "n/a" if met is None or measured is None else met}


def targets(runs: Sequence[Run], steady: Sequence[Mapping[str, object]], *, rival_rows: int, big_rows: int) -> list:
    """Issue 16's targets next to the measured figures (met: True/False, or "n/a" when not measured)."""

    def timed(rows: int, contestant: str) -> float | None:
        run = find(runs, rows, contestant)
        return wall(run) if run else None

    keys_small, keys_big = timed(rival_rows, MODELWATCH_KEYS), timed(big_rows, MODELWATCH_KEYS)
    nanny = ratio(timed(rival_rows, NANNYML), keys_small)
    evidently = ratio(timed(rival_rows, EVIDENTLY), keys_small)
    big = find(runs, big_rows, MODELWATCH_KEYS)
    big_peak = peak(big) if big else None
    floor = ratio(keys_big, timed(big_rows, FLOOR))
    out = [
        _target(f"{rival_rows:,} rows: >= 10x faster than NannyML", nanny, ".2f", nanny is not None and nanny >= 10),
        _target(
            f"{rival_rows:,} rows: >= 50x faster than Evidently",
            evidently,
            ".2f",
            evidently is not None and evidently >= 50,
        ),
        _target(f"{big_rows:,} rows with keys: <= 10 s", keys_big, ".2f", keys_big is not None and keys_big <= 10),
        _target(f"{big_rows:,} rows with keys: <= 1 GB peak RSS (MB)", big_peak, ".0f", (big_peak or 0) <= 1024),
        _target(f"{big_rows:,} rows with keys: within 3x of the floor", floor, ".1f", floor is not None and floor <= 3),
    ]
    per = [float(s["per_prediction"]["total"]) for s in steady]  # type: ignore[index]
    worst = max(per, default=None)
    out.append(_target("rows read per monitored prediction <= 4", worst, ",.1f", worst is not None and worst <= 4))
    growth = ratio(per[-1], per[0]) if len(per) > 1 else None
    out.append(
        _target(
            "rows read per prediction constant from the shortest to the longest history (within 10%)",
            growth,
            ".2f",
            growth is not None and abs(growth - 1) <= 0.1,
        )
    )
    return out


def targets_table(rows: Sequence[Mapping[str, object]]) -> str:
    lines = ["| target (issue 16) | measured | met |", "|---|---:|---|"]
    lines += [f"| {r['target']} | {r['measured']} | {r['met']} |" for r in rows]
    return "\n".join(lines)
