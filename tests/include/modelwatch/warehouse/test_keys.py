"""Unique-id detection from the warehouse's own constraints, on DuckDB and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from modelwatch.warehouse.keys import table_has_unique_ids

IDS = ("tenant", "request_no")


@pytest.mark.parametrize(
    ("constraint", "unique"),
    [
        ("PRIMARY KEY (tenant, request_no)", True),
        ("PRIMARY KEY (request_no)", True),  # unique on a subset: unique on all id columns too
        ("UNIQUE (tenant, request_no)", False),  # nullable columns: several NULL ids may coexist
        ("PRIMARY KEY (tenant, request_no, predicted_at)", False),  # one id may have several timestamps
        ("CHECK (request_no >= 0)", False),
    ],
)
def test_constraints_that_prove_one_row_per_id(warehouse_engine, constraint: str, unique: bool) -> None:
    with warehouse_engine.begin() as conn:
        conn.execute(
            sa.text(f"CREATE TABLE preds (tenant TEXT, request_no BIGINT, predicted_at TIMESTAMP, {constraint})")
        )
        assert table_has_unique_ids(conn, "preds", None, IDS) is unique


def test_unique_over_not_null_columns_counts(warehouse_engine) -> None:
    with warehouse_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE labels (req BIGINT NOT NULL UNIQUE, y INTEGER)"))
        conn.execute(sa.text("CREATE TABLE plain (req BIGINT, y INTEGER)"))
        assert table_has_unique_ids(conn, "labels", None, ("req",))
        assert not table_has_unique_ids(conn, "plain", None, ("req",))
        assert not table_has_unique_ids(conn, "missing_table", None, ("req",))


def test_the_answer_is_reused_per_engine_and_a_new_engine_asks_afresh(tmp_path) -> None:
    """Per-engine caching (modelwatch.warehouse.caching): a constraint added later is seen by a new engine."""
    from pathlib import Path

    import yaml

    from modelwatch.core.config import parse_monitor
    from modelwatch.warehouse.keys import unique_ids

    churn = yaml.safe_load((Path(__file__).resolve().parents[4] / "include" / "monitors" / "churn.yaml").read_text())
    monitor = parse_monitor(churn)
    url = f"duckdb:///{tmp_path / 'keys.duckdb'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE churn_predictions (request_id BIGINT)"))
        conn.execute(sa.text("CREATE TABLE churn_labels (request_id BIGINT PRIMARY KEY)"))
        assert (unique_ids(conn, monitor).predictions, unique_ids(conn, monitor).labels) == (False, True)
        conn.execute(sa.text("DROP TABLE churn_predictions"))
        conn.execute(sa.text("CREATE TABLE churn_predictions (request_id BIGINT PRIMARY KEY)"))
        assert unique_ids(conn, monitor).predictions is False  # reused within CACHE_SECONDS
    engine.dispose()
    fresh = sa.create_engine(url)
    with fresh.connect() as conn:
        assert unique_ids(conn, monitor).predictions is True
    fresh.dispose()
