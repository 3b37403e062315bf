"""SQL feature profiles against the in-memory definitions on the same rows (DuckDB, and PostgreSQL when available)."""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.core.config import MonitorConfig, parse_monitor
from modelwatch.core.drift import categorical_profile_from_arrays, compare_profiles, numeric_profile_from_arrays
from modelwatch.warehouse import profile as profile_module
from modelwatch.warehouse.profile import fetch_current_profile, fetch_reference_profile

T0 = datetime(2026, 5, 1)
RANGES = [(T0, T0 + timedelta(hours=6)), (T0 + timedelta(days=1), T0 + timedelta(days=1, hours=6))]
CURRENT = (T0 + timedelta(days=2), T0 + timedelta(days=2, hours=6))


def _rows(seed: int = 11, n: int = 6000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, 3 * 86400, size=n)
    x = rng.normal(size=n)
    calls = rng.poisson(1.5, size=n).astype(float)
    x[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "ts": T0 + pd.to_timedelta(offsets, unit="s"),
            "x": x,
            "calls": calls,
            "plan": rng.choice(["basic", "pro", "max", None], size=n, p=[0.5, 0.3, 0.15, 0.05]),
            "region": rng.choice(["EU", "US"], size=n),
            "as_text": rng.choice(["1", "2"], size=n),
        }
    )
    frame["score"] = 1 / (1 + np.exp(-(np.nan_to_num(frame["x"]) + 0.5 * (frame["plan"] == "pro"))))
    # The current day drifts, so bins and out-of-range counts are not trivially equal.
    current = frame["ts"] >= CURRENT[0]
    frame.loc[current, "x"] = frame.loc[current, "x"] * 2 + 0.5
    return frame


def _monitor(schema: str | None = None, *, extra: tuple[tuple[str, str], ...] = ()) -> MonitorConfig:
    features = [("x", "numeric"), ("calls", "numeric"), ("plan", "categorical"), *extra]
    return parse_monitor(
        {
            "name": "profiled",
            "model": {"name": "m"},
            "task": "binary_classification",
            "warehouse": {"url": "duckdb:///:memory:"},
            "predictions": {
                "table": "preds",
                "schema": schema,
                "request_id": "request_id",
                "timestamp": "ts",
                "score": "score",
                "features": [{"name": n, "kind": k} for n, k in features],
                "segments": ["region"],
            },
            "labels": {"table": "labels", "request_id": "request_id", "timestamp": "ts", "label": "y"},
        }
    )


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return _rows()


@pytest.fixture(scope="module")
def duck(tmp_path_factory, rows) -> sa.Engine:
    path = tmp_path_factory.mktemp("profile") / "w.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE preds AS SELECT * FROM rows")
    return sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool)


@pytest.fixture(scope="module")
def postgres(rows):
    url = os.environ.get("MODELWATCH_TEST_POSTGRES_URL")
    if not url or url == "off":
        pytest.skip("MODELWATCH_TEST_POSTGRES_URL is not set")
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    schema = f"profile_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    rows.to_sql("preds", engine, schema=schema, index=False)
    yield engine, schema
    with engine.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True))
    engine.dispose()


def _select(rows: pd.DataFrame, ranges, segment=None) -> pd.DataFrame:
    mask = np.zeros(len(rows), dtype=bool)
    for start, end in ranges:
        mask |= (rows["ts"] >= start) & (rows["ts"] < end)
    if segment is not None:
        mask &= rows[segment[0]] == segment[1]
    return rows[mask]


def _check_against_memory(engine, monitor, rows, *, exact_edges: bool, segment=None) -> None:
    ref_rows, cur_rows = _select(rows, RANGES, segment), _select(rows, [CURRENT], segment)
    ref = fetch_reference_profile(engine, monitor, ranges=RANGES, bins=10, segment=segment)
    cur = fetch_current_profile(engine, monitor, ref, start=CURRENT[0], end=CURRENT[1], segment=segment)
    score_ref = ref_rows["score"].to_numpy()
    for name in ("x", "calls"):
        memory = numeric_profile_from_arrays(name, ref_rows[name].to_numpy(), bins=10, score=score_ref)
        sql = ref[name]
        assert (sql.n, sql.nulls) == (memory.n, memory.nulls) == (len(ref_rows), int(ref_rows[name].isna().sum()))
        for attribute in ("min", "max", "mean", "std", "importance"):
            assert getattr(sql, attribute) == pytest.approx(getattr(memory, attribute), rel=1e-9, abs=1e-12)
        if exact_edges:
            assert sql.edges == pytest.approx(memory.edges, rel=1e-9)
        else:
            # Sampled quantiles (a few hundred rows here): each edge within five percentiles of the exact one.
            values = ref_rows[name].dropna().to_numpy()
            ranks = [np.mean(values <= e) for e in sql.edges]
            assert all(abs(r - round(r * 10) / 10) <= 0.05 for r in ranks if name == "x")
        # Bins counted in SQL equal counting the same rows on the same edges in memory.
        assert sql.bin_counts == numeric_profile_from_arrays(name, ref_rows[name].to_numpy(), reference=sql).bin_counts
        current_memory = numeric_profile_from_arrays(name, cur_rows[name].to_numpy(), reference=sql)
        assert cur[name].bin_counts == current_memory.bin_counts
        assert cur[name].out_of_range == current_memory.out_of_range
        assert cur[name].n == len(cur_rows)
    plan = categorical_profile_from_arrays("plan", ref_rows["plan"].tolist(), score=score_ref)
    assert ref["plan"].categories == plan.categories
    assert ref["plan"].nulls == plan.nulls
    assert ref["plan"].importance == pytest.approx(plan.importance, rel=1e-9)
    assert cur["plan"].categories == categorical_profile_from_arrays("plan", cur_rows["plan"].tolist()).categories
    assert cur["x"].out_of_range > 0


def test_duckdb_profiles_equal_memory(duck, rows):
    # Fewer reference rows than EDGE_SAMPLE_ROWS: the edges are the exact quantiles of all of them.
    _check_against_memory(duck, _monitor(), rows, exact_edges=True)


def test_duckdb_segment_restriction(duck, rows):
    _check_against_memory(duck, _monitor(), rows, exact_edges=True, segment=("region", "EU"))


def test_duckdb_edges_of_a_large_reference_come_from_a_deterministic_sample(duck, rows, monkeypatch):
    monkeypatch.setattr(profile_module, "EDGE_SAMPLE_ROWS", 400)
    _check_against_memory(duck, _monitor(), rows, exact_edges=False)
    first = fetch_reference_profile(duck, _monitor(), ranges=RANGES, bins=10)
    again = fetch_reference_profile(duck, _monitor(), ranges=RANGES, bins=10)
    exact = numeric_profile_from_arrays("x", _select(rows, RANGES)["x"].to_numpy(), bins=10)
    assert first["x"].edges == again["x"].edges != exact.edges


@pytest.mark.postgres
def test_postgres_profiles_equal_memory(postgres, rows):
    engine, schema = postgres
    _check_against_memory(engine, _monitor(schema), rows, exact_edges=True)
    _check_against_memory(engine, _monitor(schema), rows, exact_edges=True, segment=("region", "US"))


def test_missing_and_retyped_columns_are_flagged_not_raised(duck):
    monitor = _monitor(extra=(("gone", "numeric"), ("as_text", "numeric")))
    ref = fetch_reference_profile(duck, monitor, ranges=RANGES, bins=10)
    cur = fetch_current_profile(duck, monitor, ref, start=CURRENT[0], end=CURRENT[1])
    assert ref["gone"].missing and cur["gone"].missing
    assert ref["as_text"].type_changed and not ref["as_text"].missing
    assert cur["gone"].n == cur["x"].n > 0
    _, quality = compare_profiles(ref, cur, monitor.drift)
    flagged = {q.feature: q.issue for q in quality if q.type_changed}
    assert flagged == {"gone": "gone is missing from the table", "as_text": "as_text is no longer numeric"}


def test_empty_ranges_give_empty_profiles(duck):
    empty = [(T0 - timedelta(days=30), T0 - timedelta(days=29))]
    ref = fetch_reference_profile(duck, _monitor(), ranges=empty, bins=10)
    assert all(p.n == 0 for p in ref.values())
    assert ref["x"].edges == () and ref["x"].mean is None
    cur = fetch_current_profile(duck, _monitor(), ref, start=CURRENT[0], end=CURRENT[1])
    assert cur["x"].bin_counts == (cur["x"].non_null,)


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_nan_values_count_as_nulls_and_the_rest_is_profiled(backend, rows, tmp_path, request):
    """5 % of a numeric column 'nan' (not NULL): the profiles equal the in-memory ones with NaN as null."""
    nan_rows = rows.copy()
    nan_rows.loc[nan_rows.index % 20 == 3, "calls"] = np.nan
    if backend == "duckdb":
        path = tmp_path / "nan.duckdb"
        with duckdb.connect(str(path)) as con:
            con.execute("CREATE TABLE preds AS SELECT * FROM rows")
            # pandas NaN would load as NULL; a real NaN is written by SQL.
            con.execute(
                "UPDATE preds SET calls = 'nan'::DOUBLE"
                " WHERE request_id IN (SELECT request_id FROM nan_rows WHERE calls IS NULL)"
            )
            assert con.execute("SELECT count(*) FROM preds WHERE isnan(calls)").fetchone()[0] == 300
        engine, monitor = sa.create_engine(f"duckdb:///{path}", poolclass=sa.pool.NullPool), _monitor()
    else:
        engine, schema = request.getfixturevalue("postgres")
        table = f"nan_{uuid.uuid4().hex[:8]}"
        nan_rows.to_sql(table, engine, schema=schema, index=False)
        with engine.begin() as conn:
            # Our own names (uuid-suffixed), quoted by the dialect.
            quoted = f"{engine.dialect.identifier_preparer.quote(schema)}.{table}"
            conn.execute(sa.text(f"UPDATE {quoted} SET calls = 'NaN' WHERE calls IS NULL"))
        monitor = _monitor(schema)
        monitor = monitor.model_copy(update={"predictions": monitor.predictions.model_copy(update={"table": table})})
    ref = fetch_reference_profile(engine, monitor, ranges=RANGES, bins=10)
    cur = fetch_current_profile(engine, monitor, ref, start=CURRENT[0], end=CURRENT[1])
    ref_rows, cur_rows = _select(nan_rows, RANGES), _select(nan_rows, [CURRENT])
    memory = numeric_profile_from_arrays("calls", ref_rows["calls"].to_numpy(), bins=10)
    assert (ref["calls"].nulls, ref["calls"].max) == (memory.nulls, memory.max)
    assert memory.nulls == int(ref_rows.calls.isna().sum()) > 0 and np.isfinite(memory.max)
    assert ref["calls"].bin_counts == memory.bin_counts
    current_memory = numeric_profile_from_arrays("calls", cur_rows.calls.to_numpy(), reference=ref["calls"])
    assert cur["calls"].bin_counts == current_memory.bin_counts
    findings, quality = compare_profiles(ref, cur, monitor.drift)
    assert {f.feature for f in findings} == {"x", "calls", "plan"}
    calls = next(q for q in quality if q.feature == "calls")
    assert calls.null_rate == pytest.approx(cur_rows.calls.isna().mean())


@pytest.mark.parametrize("backend", ["duck", "postgres"])
def test_feature_sample_is_bounded_deterministic_and_keeps_nulls(backend, rows, request):
    from modelwatch.warehouse.profile import fetch_feature_sample, fetch_segment_values

    found = request.getfixturevalue(backend)
    engine, schema = (found, None) if backend == "duck" else found
    monitor = _monitor(schema)
    picked = _select(rows, RANGES)
    sample = fetch_feature_sample(engine, monitor, ranges=RANGES, names=["x", "calls"], limit=300)
    again = fetch_feature_sample(engine, monitor, ranges=RANGES, names=["x", "calls"], limit=300)
    assert sample.shape[1] == 2 and 100 <= len(sample) <= 300
    np.testing.assert_array_equal(sample, again)
    assert np.isnan(sample[:, 0]).any() and not np.isnan(sample[:, 1]).any()
    assert set(sample[:, 1]) <= set(picked["calls"])
    everything = fetch_feature_sample(engine, monitor, ranges=RANGES, names=["x", "calls"], limit=10_000)
    assert len(everything) == len(picked)
    values = fetch_segment_values(engine, monitor, column="plan", start=CURRENT[0], end=CURRENT[1], limit=2)
    assert values == list(_select(rows, [CURRENT])["plan"].value_counts().index[:2])
