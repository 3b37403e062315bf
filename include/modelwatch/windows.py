"""Window arithmetic: which windows a run evaluates, their revision number and label maturity.

All datetimes are naive UTC. A run is identified by ``as_of`` (normally its data interval's end):
labels that arrived after ``as_of`` are invisible to it, so re-running the same interval reproduces the
same numbers, and a window's revision is a pure function of ``as_of``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelwatch.config import Cadence, LabelDelay

PROVISIONAL = "provisional"
FINAL = "final"


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        return self.start.isoformat(timespec="minutes")


def to_naive_utc(value: datetime) -> datetime:
    """Drop the timezone after converting to UTC (naive values are taken as UTC already)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    # Always a plain datetime: Airflow hands out pendulum objects whose arithmetic differs.
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)


def floor_to(cadence: Cadence | str, at: datetime) -> datetime:
    at = to_naive_utc(at)
    if Cadence(cadence) is Cadence.HOURLY:
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def last_complete_window(cadence: Cadence | str, at: datetime) -> Window:
    """The newest window that has fully ended at ``at`` (used for manual runs without a logical date)."""
    end = floor_to(cadence, at)
    return Window(end - Cadence(cadence).width, end)


def windows_between(cadence: Cadence | str, start: datetime, end: datetime) -> list[Window]:
    """Aligned windows covering [start, end); ``start`` is floored to the cadence."""
    width = Cadence(cadence).width
    cursor = floor_to(cadence, start)
    end = to_naive_utc(end)
    out: list[Window] = []
    while cursor < end:
        out.append(Window(cursor, cursor + width))
        cursor += width
    return out


def revision_of(window: Window, *, as_of: datetime, cadence: Cadence | str) -> int:
    """0 for the run that closes the window, then +1 for every later cadence step."""
    steps = (to_naive_utc(as_of) - window.end) // Cadence(cadence).width
    return max(0, int(steps))


def maturity(*, label_coverage: float | None, age: timedelta, label_delay: LabelDelay) -> str:
    """Final once coverage reaches the target or the window is older than the expected delay."""
    if age >= label_delay.expected:
        return FINAL
    if label_coverage is not None and label_coverage >= label_delay.coverage_target:
        return FINAL
    return PROVISIONAL


def windows_to_evaluate(
    cadence: Cadence | str,
    *,
    window: Window,
    label_delay: LabelDelay,
    final_starts: Iterable[datetime],
    not_before: datetime | None = None,
) -> list[Window]:
    """The run's own window plus earlier windows in the look-back that are not final yet.

    Args:
        cadence: the DAG's cadence.
        window: the run's own (newest) window.
        label_delay: gives the look-back.
        final_starts: starts of windows whose latest stored revision is already final.
        not_before: the monitor's start date: no window before it is evaluated.
    """
    final = set(final_starts)
    # A window must still be reachable when it turns final by age, even if the look-back is shorter.
    earliest = window.end - max(label_delay.lookback, Cadence(cadence).width + label_delay.expected)
    if not_before is not None:
        earliest = max(earliest, to_naive_utc(not_before))
    as_of = window.end
    finalizing = label_delay.expected // Cadence(cadence).width
    earlier = [
        w
        for w in windows_between(cadence, earliest, window.start)
        if w.start not in final and is_recompute_due(revision_of(w, as_of=as_of, cadence=cadence), finalizing)
    ]
    return [*earlier, window]


def is_recompute_due(revision: int, finalizing_revision: int) -> bool:
    """Back-off: recompute at revisions 1, 2, 4, 8, ... up to half the expected delay, then once more at
    the revision where the window turns final by age.

    Labels arrive fast at first and slowly later, so doubling the interval keeps the metric fresh while a
    24 h label delay costs 5 recomputations per window (1, 2, 4, 8, 24) instead of 24.
    """
    if revision == finalizing_revision:
        return True
    doubling = revision > 0 and revision & (revision - 1) == 0
    return doubling and (finalizing_revision <= 0 or 2 * revision <= finalizing_revision)
