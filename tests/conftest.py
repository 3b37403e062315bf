"""Shared fixtures: a real DuckDB file and, when available, a real PostgreSQL schema per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

POSTGRES_URL_ENV = "MODELWATCH_TEST_POSTGRES_URL"


@pytest.fixture
def duckdb_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh DuckDB file in the test's temp directory."""
    from modelwatch.warehouse.engine import make_engine

    engine = make_engine(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    yield engine
    engine.dispose()


def _postgres_url() -> str | None:
    raw = os.environ.get(POSTGRES_URL_ENV)
    if not raw:
        return None
    url = make_url(raw)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture
def postgres_engine() -> Iterator[Engine]:
    """An engine whose search_path is a schema of its own, dropped after the test.

    Skipped when ``MODELWATCH_TEST_POSTGRES_URL`` is unset.
    """
    url = _postgres_url()
    if url is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    schema = f"mw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = sa.create_engine(url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        admin.dispose()


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse_engine(request: pytest.FixtureRequest) -> Engine:
    """Both engines in turn (PostgreSQL skipped without a URL)."""
    return request.getfixturevalue(f"{request.param}_engine")
