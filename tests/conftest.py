"""Shared fixtures: a real DuckDB file and, when available, a real PostgreSQL schema per test."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

POSTGRES_URL_ENV = "MODELWATCH_TEST_POSTGRES_URL"
# The machine's own PostgreSQL, used when the variable is unset and the port answers; set the variable to
# "off" to skip the PostgreSQL variants.
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TIMEZONE_ENV = "MODELWATCH_TEST_TIMEZONE"
"""Run the whole suite with this session time zone (e.g. America/New_York): the process's ``TZ`` (which
DuckDB's ``TimeZone`` follows) and PostgreSQL's ``timezone`` of every test connection. Windows must not move."""
ZONED = "America/New_York"
"""The session time zone of the ``zoned_engine`` variants (UTC-5/-4: a shifted window is visible)."""


def _postgres_reachable(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pytest_configure(config: pytest.Config) -> None:
    """Run the PostgreSQL variants whenever a local PostgreSQL answers, not only when CI sets the URL.

    The URL is put into the environment so that every test, helper and subprocess sees the same one.
    """
    if POSTGRES_URL_ENV not in os.environ and _postgres_reachable():
        os.environ[POSTGRES_URL_ENV] = DEFAULT_POSTGRES_URL
    if os.environ.get(TIMEZONE_ENV):
        os.environ["TZ"] = os.environ[TIMEZONE_ENV]
        time.tzset()


@pytest.fixture
def duckdb_engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on a fresh DuckDB file in the test's temp directory."""
    from modelwatch.warehouse.engine import make_engine

    engine = make_engine(f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    yield engine
    engine.dispose()


def _postgres_url() -> str | None:
    raw = os.environ.get(POSTGRES_URL_ENV)
    if not raw or raw == "off":
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
    yield from _postgres_engine(os.environ.get(TIMEZONE_ENV))


def _postgres_engine(timezone: str | None) -> Iterator[Engine]:
    url = _postgres_url()
    if url is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    schema = f"mw_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    options = f"-csearch_path={schema}" + (f" -ctimezone={timezone}" if timezone else "")
    engine = sa.create_engine(url, connect_args={"options": options})
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


@pytest.fixture(params=["duckdb", "postgres"])
def zoned_engine(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    """Both engines in turn with the session time zone :data:`ZONED` (DuckDB through ``TZ``)."""
    if request.param == "postgres":
        yield from _postgres_engine(ZONED)
        return
    monkeypatch.setenv("TZ", ZONED)
    time.tzset()
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'zoned.duckdb'}")
    try:
        yield engine
    finally:
        engine.dispose()
        monkeypatch.undo()
        time.tzset()


@contextmanager
def database_factory() -> Iterator[Callable[[str], str]]:
    """``create("warehouse")`` makes an empty PostgreSQL database and returns its URL; all dropped at the end.

    Skips the calling test (or module) without ``MODELWATCH_TEST_POSTGRES_URL``.
    """
    admin_url = _postgres_url()
    if admin_url is None:
        pytest.skip(f"{POSTGRES_URL_ENV} is not set")
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    preparer = admin.dialect.identifier_preparer
    created: list[str] = []

    def create(purpose: str) -> str:
        name = f"mw_{purpose}_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            # DDL takes no bound parameters; the name is ours and quoted by the dialect.
            conn.execute(sa.text(f"CREATE DATABASE {preparer.quote(name)}"))
        created.append(name)
        return make_url(admin_url).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS {preparer.quote(name)} WITH (FORCE)"))
        admin.dispose()


@pytest.fixture
def fresh_database() -> Iterator[Callable[[str], str]]:
    """Factory: ``fresh_database("warehouse")`` creates an empty database and returns its SQLAlchemy URL.

    Skipped without ``MODELWATCH_TEST_POSTGRES_URL``; every database created is dropped at teardown.
    """
    with database_factory() as create:
        yield create


@pytest.fixture
def postgres_schema() -> Iterator[tuple[str, str]]:
    """(URL, name) of a results schema that does not exist yet; dropped after the test."""
    url = _postgres_url()
    if url is None:
        pytest.skip("MODELWATCH_TEST_POSTGRES_URL is not set")
    schema = f"mw_schema_{uuid.uuid4().hex[:10]}"
    yield url, schema
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True, if_exists=True))
    admin.dispose()
