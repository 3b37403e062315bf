"""bench/evaluation_report.py and the pure parts of bench/evaluation_pg.py: ratios, tables, targets."""

from __future__ import annotations

import evaluation_report as report
import pytest
from evaluation_pg import per_prediction, reads_between

SMALL, BIG = 1_000_000, 10_000_000


def _run(rows: int, contestant: str, walls: list[float], peak: float = 500.0) -> dict:
    return {"rows": rows, "contestant": contestant, "wall_seconds": walls, "peak_rss_mb": [peak] * len(walls)}


def _floor(rows: int, statements: list[float]) -> dict:
    run = _run(rows, report.FLOOR, [9.0] * len(statements))
    run["found"] = [{"statement_seconds": s} for s in statements]
    return run


RUNS = [
    _run(SMALL, report.MODELWATCH_KEYS, [2.0, 4.0, 3.0]),
    _floor(SMALL, [0.5, 0.25]),
    _run(SMALL, report.NANNYML, [33.0, 30.0, 36.0]),
    {"rows": SMALL, "contestant": report.EVIDENTLY, "error": "pip install evidently failed"},
    _run(BIG, report.MODELWATCH_KEYS, [12.0], peak=900.0),
    _floor(BIG, [2.0]),
]
STEADY = [
    {"days": 7, "per_prediction": {"total": 3.0}},
    {"days": 28, "per_prediction": {"total": 3.2}},
]


def test_wall_is_the_median_of_rounds_and_the_floor_its_best_statement():
    assert report.wall(RUNS[0]) == 3.0
    assert report.wall(RUNS[1]) == 0.25
    assert report.wall(RUNS[3]) is None and report.peak(RUNS[3]) is None


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"), [(6, 2, 3.0), (None, 2, None), (6, None, None), (6, 0, None)]
)
def test_ratio_is_none_when_it_cannot_be_computed(numerator, denominator, expected):
    assert report.ratio(numerator, denominator) == expected


def test_the_table_compares_rivals_with_modelwatch_and_modelwatch_with_the_floor():
    lines = report.evaluation_table(RUNS).splitlines()
    assert len(lines) == 2 + len(RUNS)
    keys, floor, nanny, evidently = lines[2:6]
    assert "| 3.00 | 500 | 12.0x the floor |" in keys
    assert "| 0.25 |" in floor
    assert "11.00x modelwatch's time" in nanny
    assert "| n/a | n/a | n/a | pip install evidently failed |" in evidently


def test_targets_say_met_only_for_what_was_measured_and_reached():
    found = {t["target"]: t for t in report.targets(RUNS, STEADY, rival_rows=SMALL, big_rows=BIG)}
    assert found["1,000,000 rows: >= 10x faster than NannyML"] == {
        "target": "1,000,000 rows: >= 10x faster than NannyML", "measured": "11.00", "met": True,
    }  # fmt: skip
    assert found["1,000,000 rows: >= 50x faster than Evidently"]["met"] == "n/a"
    assert found["10,000,000 rows with keys: <= 10 s"]["met"] is False
    assert found["10,000,000 rows with keys: <= 1 GB peak RSS (MB)"]["met"] is True
    assert found["10,000,000 rows with keys: within 3x of the floor"]["measured"] == "6.0"
    assert found["rows read per monitored prediction <= 4"]["met"] is True
    constant = "rows read per prediction constant from the shortest to the longest history (within 10%)"
    assert found[constant] == {"target": constant, "measured": "1.07", "met": True}
    none = report.targets([], [], rival_rows=SMALL, big_rows=BIG)
    assert {t["met"] for t in none} == {"n/a"}


def test_rows_read_are_the_difference_of_two_snapshots_split_by_table_kind():
    before = {"preds": 100, "labels": 50, "modelwatch_metric_results": 7}
    after = {"preds": 400, "labels": 50, "modelwatch_metric_results": 17, "modelwatch_alerts": 5}
    reads = reads_between(before, after)
    assert reads == {"preds": 300, "modelwatch_metric_results": 10, "modelwatch_alerts": 5}
    assert per_prediction(reads, 100) == {"total": 3.15, "monitored_tables": 3.0, "modelwatch_tables": 0.15}
