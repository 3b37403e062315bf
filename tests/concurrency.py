"""Real concurrency for the tests: the same function in several processes, released together by a barrier."""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable

WORKERS = 6


def in_processes(target: Callable[..., None], *args: object, workers: int = WORKERS) -> list[str]:
    """Run ``target(barrier, *args)`` in ``workers`` spawned processes at once; the tracebacks of those that failed."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    errors = context.Queue()
    processes = [context.Process(target=_guarded, args=(target, barrier, errors, *args)) for _ in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert all(p.exitcode is not None for p in processes), "a worker hung"
    found = []
    while not errors.empty():
        found.append(errors.get())
    return found


def _guarded(target: Callable[..., None], barrier, errors, *args: object) -> None:
    try:
        target(barrier, *args)
    except BaseException:
        errors.put(traceback.format_exc())
        raise
