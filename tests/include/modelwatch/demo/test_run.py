"""The demo's seeding starts from an empty warehouse, and only inside the demo's home."""

from __future__ import annotations

from pathlib import Path

from modelwatch.demo.run import _start_empty


def test_a_demo_warehouse_under_home_is_deleted_and_nothing_else(tmp_path: Path) -> None:
    home = tmp_path / ".modelwatch"
    home.mkdir()
    mine, wal, elsewhere = home / "churn.duckdb", home / "churn.duckdb.wal", tmp_path / "theirs.duckdb"
    for path in (mine, wal, elsewhere):
        path.write_text("rows of an earlier demo")
    _start_empty(f"duckdb:///{mine}", home)
    _start_empty(f"duckdb:///{elsewhere}", home)
    _start_empty("postgresql+psycopg://postgres@127.0.0.1/test", home)
    assert not mine.exists() and not wal.exists()
    assert elsewhere.read_text() == "rows of an earlier demo"
