"""The one cache: answers per key, scoped to a real engine, reused for a bounded time."""

from __future__ import annotations

import gc
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelwatch.warehouse.caching import ExpiringCache


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> int:
        self.calls += 1
        return self.calls


def test_an_answer_is_reused_until_it_expires() -> None:
    cache: ExpiringCache[int] = ExpiringCache(seconds=0.2)
    compute = _Counter()
    assert [cache.get("k", compute), cache.get("k", compute)] == [1, 1]
    assert cache.get("other", compute) == 2  # keyed: another key is asked for
    time.sleep(0.25)
    assert cache.get("k", compute) == 3


def test_without_seconds_an_answer_lasts() -> None:
    cache: ExpiringCache[int] = ExpiringCache(seconds=None)
    compute = _Counter()
    cache.get("k", compute)
    time.sleep(0.01)
    assert cache.get("k", compute) == 1
    cache.clear()
    assert cache.get("k", compute) == 2


def test_answers_belong_to_their_engine_and_go_with_it(tmp_path: Path) -> None:
    cache: ExpiringCache[int] = ExpiringCache()
    compute = _Counter()
    first = sa.create_engine(f"duckdb:///{tmp_path / 'a.duckdb'}")
    second = sa.create_engine(f"duckdb:///{tmp_path / 'b.duckdb'}")
    assert cache.get("tables", compute, engine=first) == 1
    assert cache.get("tables", compute, engine=second) == 2
    assert cache.get("tables", compute, engine=first) == 1
    assert cache.get("tables", compute) == 3  # unscoped is its own space
    first.dispose()
    del first
    gc.collect()
    assert len(cache._by_engine) == 1  # weakly held: the dropped engine's answers are gone


def test_a_failure_is_not_cached() -> None:
    cache: ExpiringCache[int] = ExpiringCache(seconds=None)

    def fail() -> int:
        raise LookupError("warehouse down")

    with pytest.raises(LookupError):
        cache.get("k", fail)
    assert cache.get("k", lambda: 7) == 7
