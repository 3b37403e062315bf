"""URL resolution, engine caching, DuckDB file sharing and bulk loading."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.warehouse.engine import load_frame, make_engine, resolve_url


def test_relative_duckdb_path_resolves_against_root(tmp_path: Path) -> None:
    url = resolve_url("duckdb:///.modelwatch/warehouse.duckdb", root=tmp_path)
    assert url == f"duckdb:///{tmp_path}/.modelwatch/warehouse.duckdb"
    assert (tmp_path / ".modelwatch").is_dir()


def test_root_defaults_to_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWATCH_ROOT", str(tmp_path))
    assert resolve_url("duckdb:///w.duckdb") == f"duckdb:///{tmp_path}/w.duckdb"
    absolute = tmp_path / "abs" / "x.duckdb"
    assert resolve_url(f"duckdb:///{absolute}") == f"duckdb:///{absolute}"
    assert resolve_url("duckdb:///:memory:") == "duckdb:///:memory:"


def test_plain_postgres_url_gets_psycopg() -> None:
    assert resolve_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert resolve_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"


def test_engines_are_cached_per_resolved_url(tmp_path: Path) -> None:
    first = make_engine(f"duckdb:///{tmp_path}/a.duckdb")
    assert make_engine(resolve_url("duckdb:///a.duckdb", root=tmp_path)) is first
    assert make_engine(f"duckdb:///{tmp_path}/b.duckdb") is not first


_CHILD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
con.execute("INSERT INTO t VALUES (99, 'child')")
con.close()
"""


def test_duckdb_file_is_released_between_uses(tmp_path: Path) -> None:
    path = tmp_path / "shared.duckdb"
    engine = make_engine(f"duckdb:///{path}")
    load_frame(engine, "t", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 2
    # A separate process (like an Airflow task) can open and write the file once this process closed it.
    child = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == "2"
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar_one() == 3


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.array([1, 2, 3], dtype="int64"),
            "weird name": ["a", None, 'quote"d'],
            "score": [0.5, float("nan"), 1.0],
            "flag": [True, False, True],
            "at": pd.to_datetime(["2026-11-01 10:00", "2026-11-01 11:00", None]).tz_localize("Europe/Berlin"),
        }
    )


def test_load_frame_round_trips_and_appends(warehouse_engine) -> None:
    frame = _frame()
    assert load_frame(warehouse_engine, "loaded", frame) == 3
    assert load_frame(warehouse_engine, "loaded", frame.head(2), replace=False) == 2
    with warehouse_engine.connect() as conn:
        back = pd.DataFrame(
            conn.execute(
                sa.select(
                    sa.table("loaded", sa.column("id"), sa.column("weird name"), sa.column("score"), sa.column("at"))
                )
            ).fetchall()
        )
    assert len(back) == 5
    first = back.iloc[0]
    assert first["weird name"] == "a" and first["score"] == 0.5
    assert first["at"] == datetime(2026, 11, 1, 9, tzinfo=UTC).replace(tzinfo=None)  # stored naive UTC
    assert back["weird name"].isna().sum() == 2 and back["score"].isna().sum() == 2
    assert 'quote"d' in set(back["weird name"])
    assert load_frame(warehouse_engine, "loaded", frame.head(1)) == 1  # replace drops the old rows
    with warehouse_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM loaded")).scalar_one() == 1


def test_load_frame_into_a_schema(duckdb_engine) -> None:
    load_frame(duckdb_engine, "t", pd.DataFrame({"x": [1.5]}), schema="staging")
    with duckdb_engine.connect() as conn:
        assert conn.execute(sa.select(sa.table("t", sa.column("x"), schema="staging"))).scalar_one() == 1.5


def _setting(engine, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT current_setting(:name)"), {"name": name}).scalar_one())


def test_duckdb_connections_get_the_memory_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWATCH_DUCKDB_MEMORY_LIMIT", "300MB")
    monkeypatch.setenv("MODELWATCH_DUCKDB_THREADS", "1")
    engine = make_engine(f"duckdb:///{tmp_path}/settings.duckdb")
    for _ in range(2):  # every new connection (NullPool), not only the first
        assert _setting(engine, "preserve_insertion_order").lower() == "false"
        assert _setting(engine, "threads") == "1"
        # DuckDB reports the limit in its own units (300MB -> "286.1 MiB").
        assert "MiB" in _setting(engine, "memory_limit") and _setting(engine, "memory_limit").startswith("286")


def test_bad_duckdb_settings_are_refused_not_spliced_into_sql(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELWATCH_DUCKDB_MEMORY_LIMIT", "1GB'; DROP TABLE t; --")
    with pytest.raises(ValueError, match="MODELWATCH_DUCKDB_MEMORY_LIMIT"):
        make_engine(f"duckdb:///{tmp_path}/bad.duckdb")
    monkeypatch.setenv("MODELWATCH_DUCKDB_MEMORY_LIMIT", "1GB")
    monkeypatch.setenv("MODELWATCH_DUCKDB_THREADS", "0")
    with pytest.raises(ValueError, match="MODELWATCH_DUCKDB_THREADS"):
        make_engine(f"duckdb:///{tmp_path}/bad2.duckdb")


def _tables_by_schema(engine, prefix: str) -> set[tuple[str, str]]:
    from modelwatch.warehouse.catalog import COLUMNS

    query = sa.select(COLUMNS.c.table_schema, COLUMNS.c.table_name).where(COLUMNS.c.table_name.startswith(prefix))
    with engine.connect() as conn:
        return set(conn.execute(query.distinct()).all())


@pytest.mark.parametrize("kind", ["duckdb", "postgres"])
def test_results_schema_holds_modelwatch_tables_and_leaves_monitored_ones(request, tmp_path: Path, kind: str) -> None:
    """modelwatch's tables go to ``results_schema`` (created); unqualified monitored tables still resolve."""
    from datetime import timedelta

    from modelwatch.warehouse.results_store import ensure_tables, metric_history, upsert_window_result
    from tests.include.modelwatch.warehouse.test_results_store import _result

    if kind == "duckdb":
        url = f"duckdb:///{tmp_path / 'w.duckdb'}"
        default_schema = "main"
    else:
        url = request.getfixturevalue("fresh_database")("results_schema")
        default_schema = "public"
    plain = make_engine(url)
    load_frame(plain, "churn_predictions", _frame())
    engine = make_engine(url, results_schema="mw_results", statement_timeout=timedelta(minutes=1))
    assert make_engine(url, results_schema="mw_results", statement_timeout=timedelta(minutes=1)) is engine
    ensure_tables(engine)
    upsert_window_result(engine, _result(0, 0, 0.9))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).select_from(sa.table("churn_predictions"))).scalar_one()
    assert rows == len(_frame())
    found = _tables_by_schema(engine, "modelwatch_")
    assert found and {schema for schema, _ in found} == {"mw_results"}, found
    assert ("mw_results", "modelwatch_metric_results") in found
    assert _tables_by_schema(engine, "churn_") == {(default_schema, "churn_predictions")}
    start = datetime(2026, 11, 1)
    assert metric_history(engine, monitor="churn", cadence="hourly", start=start, end=start + timedelta(hours=1))


def test_postgres_sessions_get_the_statement_timeout(fresh_database) -> None:
    from datetime import timedelta

    url = fresh_database("timeout")
    engine = make_engine(url, statement_timeout=timedelta(milliseconds=300))
    with engine.connect() as conn:
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "300ms"
        with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
            conn.execute(sa.select(sa.func.pg_sleep(2)))
    with make_engine(url).connect() as conn:  # without a timeout: the role's own setting
        assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "0"
