"""The one way modelwatch caches an answer it had to ask for: :class:`ExpiringCache`.

An answer that comes from outside the process (a warehouse's catalogue, an Airflow connection) lives in an
``ExpiringCache``:

- keyed on everything that decides it (the tables and columns of a monitor, its ``config_hash``, a
  connection id and the environment variable that may define it);
- scoped to its engine when it comes from a warehouse: entries hang off the :class:`~sqlalchemy.engine.Engine`
  object through a weak reference, so a disposed engine takes its answers with it and a new engine never
  inherits a dead one's (``id(engine)`` can be reused; the object cannot);
- reused for at most ``seconds`` (a long-lived process, the API server or the in-process runner, sees a change
  within that time; a new Airflow task process always asks afresh), or for the engine's / process's life
  with ``seconds=None`` for facts that only this process changes (tables it created, a schema it validated).

A pure computation from a file is cached with :func:`functools.lru_cache` keyed on ``(path, mtime_ns)``
(a changed file is a new key, so nothing expires); nothing else is cached. See docs/caching.md.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

V = TypeVar("V")

CACHE_SECONDS = 60.0
"""Default reuse of an answer: a catalogue query costs DuckDB 20-60 ms, as much as a small window's
statistics, and tables, constraints and connections change rarely."""

_Entries = dict[Hashable, tuple[float, V]]


class ExpiringCache(Generic[V]):
    """Answers by key, each reused for ``seconds`` (None: as long as its engine, or the process, lives).

    Args:
        seconds: How long an answer is reused; None for ever.
    """

    def __init__(self, *, seconds: float | None = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._by_engine: weakref.WeakKeyDictionary[Engine, _Entries] = weakref.WeakKeyDictionary()
        self._unscoped: _Entries = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], V], *, engine: Engine | None = None) -> V:
        """The cached answer for ``key`` (of ``engine``'s warehouse, when given), else ``compute()``'s.

        ``compute`` runs outside the lock (it may query for seconds); an exception it raises is not cached.
        """
        with self._lock:
            entries = self._unscoped if engine is None else self._by_engine.setdefault(engine, {})
            hit = entries.get(key)
        if hit is not None and (self.seconds is None or time.monotonic() - hit[0] < self.seconds):
            return hit[1]
        answer = compute()
        with self._lock:
            entries[key] = (time.monotonic(), answer)
        return answer

    def clear(self) -> None:
        """Forget every answer (tests; a process that knows the warehouse changed)."""
        with self._lock:
            self._by_engine.clear()
            self._unscoped.clear()
