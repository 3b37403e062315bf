"""Which columns a table has, and the schema check of a monitor, on DuckDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from modelwatch.core.config import parse_monitor
from modelwatch.warehouse.catalog import WarehouseSchemaError, table_columns, validate_schema

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
CHURN = yaml.safe_load((MONITORS / "churn.yaml").read_text())


def _tables(engine: sa.Engine, *, label: str = "churned") -> None:
    """The churn monitor's two tables with the columns its schema check asks for."""
    segments = ", ".join(f"{s} TEXT" for s in CHURN["predictions"]["segments"])
    with engine.begin() as conn:
        for table in ("churn_predictions", "churn_labels"):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        conn.execute(
            sa.text(
                "CREATE TABLE churn_predictions (request_id BIGINT, predicted_at TIMESTAMP, model_version TEXT, "
                f"score DOUBLE PRECISION, {segments})"
            )
        )
        conn.execute(sa.text(f"CREATE TABLE churn_labels (request_id BIGINT, labeled_at TIMESTAMP, {label} INTEGER)"))


def test_table_columns_name_each_column_with_its_type(warehouse_engine) -> None:
    with warehouse_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id BIGINT, seen_at TIMESTAMP, note TEXT)"))
    columns = table_columns(warehouse_engine, "t")
    assert set(columns) == {"id", "seen_at", "note"}
    assert columns["id"].upper() == "BIGINT"
    assert table_columns(warehouse_engine, "missing") == {}


def test_a_schema_is_checked_once_per_engine_and_monitor_version(warehouse_engine) -> None:
    monitor = parse_monitor(CHURN)
    _tables(warehouse_engine)
    validate_schema(warehouse_engine, monitor)
    _tables(warehouse_engine, label="other_label")  # the label column disappears...
    validate_schema(warehouse_engine, monitor)  # ...unseen by this engine: validated once
    changed = parse_monitor({**CHURN, "description": "a new version of the file"})
    assert changed.config_hash != monitor.config_hash
    with pytest.raises(WarehouseSchemaError, match=r"table 'churn_labels' has no column\(s\) churned"):
        validate_schema(warehouse_engine, changed)  # a new monitor version is checked afresh
