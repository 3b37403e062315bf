"""Stored window profiles and bin edges on DuckDB and PostgreSQL: retry-safe writes, newest revisions, and a
rolling reference merged from the profiles table alone (statements counted)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from modelwatch.core.profiles import BinEdges, WindowProfile, edges_from_baseline, merge_all, profile_frame
from modelwatch.warehouse.profiles_store import (
    PROFILE_EDGES,
    PROFILES,
    EdgesAlreadyFixedError,
    current_edges,
    ensure_tables,
    fix_edges,
    load_edges,
    load_profiles,
    merged_reference,
    save_profile,
)
from modelwatch.warehouse.results_store import count_rows

DAY = timedelta(days=1)
T0 = datetime(2026, 11, 1)


def _rows(seed: int, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(seed / 10, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "x": x,
            "c": rng.choice(["a", "b", "c", "rare1", "rare2", "rare3"], n, p=[0.4, 0.3, 0.2, 0.04, 0.03, 0.03]),
            "region": rng.choice(["eu", "us"], n),
        }
    )


EDGES = edges_from_baseline(_rows(0), numeric=["x"], categorical=["c"], bins=8, top_categories=3, extra_categories=2)


def _profile(seed: int) -> WindowProfile:
    return profile_frame(_rows(seed), EDGES, segments=["region"])


def _save_day(engine, day: int, *, revision: int = 0, profile: WindowProfile | None = None) -> int:
    return save_profile(
        engine,
        monitor="churn",
        cadence="daily",
        window_start=T0 + day * DAY,
        window_end=T0 + (day + 1) * DAY,
        profile=profile or _profile(day),
        revision=revision,
    )


def _select_statements(engine, action):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        result = action()
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return result, statements


def _tables_read(statement: str) -> list[str]:
    return re.findall(r'\b(?:FROM|JOIN)\s+(?:"?\w+"?\.)?"?(\w+)"?', statement)


def test_a_retried_save_writes_the_same_rows_never_a_duplicate(warehouse_engine) -> None:
    profile = _profile(1)
    keys = len(profile.features)  # 2 features x (whole window + 2 regions)
    assert keys == 6
    assert _save_day(warehouse_engine, 1, profile=profile) == keys
    assert _save_day(warehouse_engine, 1, profile=profile) == keys
    assert count_rows(warehouse_engine, "modelwatch_profiles") == keys
    [stored] = load_profiles(
        warehouse_engine, monitor="churn", cadence="daily", start=T0, end=T0 + 10 * DAY, edges_version=EDGES.version
    )
    assert stored.profile == profile
    assert (stored.window_start, stored.window_end, stored.revision) == (T0 + DAY, T0 + 2 * DAY, 0)


def test_the_primary_key_refuses_a_second_row_for_the_same_profile(warehouse_engine) -> None:
    _save_day(warehouse_engine, 1)
    with warehouse_engine.connect() as conn:
        row = conn.execute(sa.select(PROFILES).limit(1)).mappings().one()
    with pytest.raises(sa.exc.IntegrityError), warehouse_engine.begin() as conn:
        conn.execute(sa.insert(PROFILES).values(dict(row)))


def test_the_newest_revision_of_each_window_is_read_on_its_own_edges(warehouse_engine) -> None:
    _save_day(warehouse_engine, 1)
    _save_day(warehouse_engine, 1, revision=1, profile=_profile(11))
    other = BinEdges({"x": (0.0, 1.0)}, {"c": ("a",)}, extra_categories=1)
    _save_day(warehouse_engine, 1, profile=profile_frame(_rows(1), other, segments=["region"]))
    [stored] = load_profiles(
        warehouse_engine, monitor="churn", cadence="daily", start=T0, end=T0 + 3 * DAY, edges_version=EDGES.version
    )
    assert (stored.revision, stored.profile) == (1, _profile(11))
    whole_only = load_profiles(
        warehouse_engine,
        monitor="churn",
        cadence="daily",
        start=T0,
        end=T0 + 3 * DAY,
        edges_version=EDGES.version,
        segments=False,
    )
    assert {key[:2] for key in whole_only[0].profile.features} == {("", "")}


def test_a_zoned_window_start_is_stored_as_naive_utc(warehouse_engine) -> None:
    zoned = datetime(2026, 11, 2, 1, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
    save_profile(
        warehouse_engine,
        monitor="churn",
        cadence="hourly",
        window_start=zoned,
        window_end=zoned + timedelta(hours=1),
        profile=_profile(2),
    )
    [stored] = load_profiles(
        warehouse_engine, monitor="churn", cadence="hourly", start=T0, end=T0 + 3 * DAY, edges_version=EDGES.version
    )
    assert stored.window_start == datetime(2026, 11, 2, 1)


def test_a_seven_day_rolling_reference_is_one_statement_on_the_profiles_table(warehouse_engine) -> None:
    ensure_tables(warehouse_engine)
    frames = {day: _rows(day) for day in range(10)}
    for day, rows in frames.items():
        _save_day(warehouse_engine, day, profile=profile_frame(rows, EDGES, segments=["region"]))
    # The predictions the windows were profiled from, in the warehouse: the reference must not touch them.
    pd.concat(frames.values()).to_sql("predictions", warehouse_engine, index=False)
    start, end = T0 + 2 * DAY, T0 + 9 * DAY

    def reference() -> WindowProfile | None:
        return merged_reference(
            warehouse_engine, monitor="churn", cadence="daily", start=start, end=end, edges_version=EDGES.version
        )

    merged, statements = _select_statements(warehouse_engine, reference)
    assert len(statements) == 1
    assert set(_tables_read(statements[0])) == {"modelwatch_profiles"}
    covered = pd.concat([frames[day] for day in range(2, 9)], ignore_index=True)
    expected = profile_frame(covered, EDGES, segments=["region"])
    assert merged is not None and merged.features.keys() == expected.features.keys()
    for key, counts in expected.features.items():
        found = merged.features[key]
        assert (found.n, found.nulls) == (counts.n, counts.nulls)
        assert getattr(found, "bins", None) == getattr(counts, "bins", None)
        assert getattr(found, "vocabulary", None) == getattr(counts, "vocabulary", None)
    stored, statements = _select_statements(
        warehouse_engine,
        lambda: load_profiles(
            warehouse_engine, monitor="churn", cadence="daily", start=start, end=end, edges_version=EDGES.version
        ),
    )
    # Rows read back: the 7 covered windows' 6 rows each, nothing of the 3 windows outside.
    assert [w.window_start for w in stored] == [T0 + day * DAY for day in range(2, 9)]
    assert sum(len(w.profile.features) for w in stored) == 7 * 6
    assert merge_all(w.profile for w in stored) == merged


def test_edges_are_fixed_once_and_replaced_only_as_a_new_version(warehouse_engine) -> None:
    assert current_edges(warehouse_engine, monitor="churn") is None
    assert fix_edges(warehouse_engine, monitor="churn", edges=EDGES, source="reference 2026-11-01/7d") == EDGES.version
    assert fix_edges(warehouse_engine, monitor="churn", edges=EDGES, source="retry") == EDGES.version
    assert count_rows(warehouse_engine, PROFILE_EDGES.name) == 1
    wider = BinEdges({"x": (-5.0, 0.0, 5.0)}, EDGES.categories, EDGES.extra_categories)
    with pytest.raises(EdgesAlreadyFixedError, match=EDGES.version):
        fix_edges(warehouse_engine, monitor="churn", edges=wider, source="a new baseline")
    assert current_edges(warehouse_engine, monitor="churn") == EDGES
    fix_edges(warehouse_engine, monitor="churn", edges=wider, source="a new baseline", new_version=True)
    assert current_edges(warehouse_engine, monitor="churn") == wider
    assert load_edges(warehouse_engine, monitor="churn", edges_version=EDGES.version) == EDGES
    assert current_edges(warehouse_engine, monitor="other") is None
    with pytest.raises(LookupError):
        load_edges(warehouse_engine, monitor="other", edges_version=EDGES.version)
