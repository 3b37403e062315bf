"""Small warehouse tables with exact column types (``load_frame`` picks types from pandas dtypes).

The window-case tests need TIMESTAMPTZ, DOUBLE or BOOLEAN labels, NaN/inf values and NULL ids, on DuckDB and
PostgreSQL alike: one typed ``CREATE TABLE`` plus a bound ``INSERT``, the same on both engines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from modelwatch.core.config import MonitorConfig, parse_monitor

ZONED = sa.DateTime(timezone=True)
NAIVE = sa.DateTime()


def create_table(
    engine: Engine, name: str, columns: Mapping[str, sa.types.TypeEngine], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Create ``name`` with ``columns`` (name -> SQLAlchemy type) and insert ``rows`` (bound values)."""
    table = sa.Table(name, sa.MetaData(), *[sa.Column(c, t) for c, t in columns.items()])
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
        if rows:
            conn.execute(table.insert(), [dict(r) for r in rows])


def simple_monitor(task: str = "binary_classification", **extra: Any) -> MonitorConfig:
    """Monitor ``m`` on tables ``preds(id, ts, score | predicted, p_<class>...)`` and ``labels(id, lts, y)``;
    ``predictions={...}`` and ``labels={...}`` override those keys."""
    predictions: dict[str, Any] = {"table": "preds", "request_id": "id", "timestamp": "ts"}
    if task == "multiclass_classification":
        predictions["predicted_label"] = "predicted"
        predictions["class_scores"] = {c: f"p_{c}" for c in extra.get("classes", [])}
    else:
        predictions["score"] = "score"
    predictions.update(extra.pop("predictions", {}))
    labels = {"table": "labels", "request_id": "id", "timestamp": "lts", "label": "y", **extra.pop("labels", {})}
    raw = {
        "name": "m",
        "model": {"name": "m"},
        "task": task,
        "warehouse": {"url": "duckdb:///unused.duckdb"},
        "predictions": predictions,
        "labels": labels,
        "start_date": datetime(2026, 10, 1).isoformat(),
        **extra,
    }
    return parse_monitor(raw)
