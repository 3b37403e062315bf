"""Window arithmetic: which windows a run evaluates, their revision number and label maturity.

All datetimes are naive UTC: :func:`to_naive_utc` is the one conversion (aware values of any zone are
converted, naive values are taken as UTC already, pendulum objects become plain datetimes) and
:func:`as_utc` its aware twin, for comparing with aware clocks. A run is identified by ``as_of``
(normally its data interval's end): labels that arrived after ``as_of`` are invisible to it, so re-running
the same interval reproduces the same numbers, and a window's revision is a pure function of ``as_of``.

One value names a window: :class:`Window` (start, end, cadence), normalised to naive UTC when built;
:class:`WindowRun` is one revision of it as a run evaluates it (``revision``, ``as_of``) and is what
crosses XCom. The naming law: a function about *a window of the schedule* takes a ``Window`` (or a
``WindowRun`` when it needs the revision or the label cut-off); a function about *an arbitrary time
range* - a history span, reference ranges, the bounds of a SQL statement - keeps ``start``/``end``
(and ``as_of``) datetimes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from modelwatch.core.config import Cadence, LabelDelay, Status

Ranges = Sequence[tuple[datetime, datetime]]
"""Arbitrary ``[start, end)`` time ranges (reference spans, history), naive UTC."""


def to_naive_utc(value: datetime) -> datetime:
    """Drop the timezone after converting to UTC (naive values are taken as UTC already)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    # Always a plain datetime: Airflow hands out pendulum objects whose arithmetic differs.
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive values are taken as UTC already)."""
    return to_naive_utc(value).replace(tzinfo=UTC)


@dataclass(frozen=True, order=True)
class Window:
    """``[start, end)`` of one cadence, naive UTC; a string cadence is parsed (ValueError if unknown).

    Alignment to the schedule is not checked here (:func:`scheduled_window` and :func:`requested_window`
    decide which windows a run may evaluate).
    """

    start: datetime
    end: datetime
    cadence: Cadence

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", to_naive_utc(self.start))
        object.__setattr__(self, "end", to_naive_utc(self.end))
        object.__setattr__(self, "cadence", Cadence(self.cadence))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after its start {self.start.isoformat()}")

    @classmethod
    def starting(cls, cadence: Cadence | str, start: datetime) -> Window:
        """The window of ``cadence`` that starts at ``start``."""
        return cls(start, to_naive_utc(start) + Cadence(cadence).width, Cadence(cadence))

    @property
    def key(self) -> str:
        return self.start.isoformat(timespec="minutes")

    def to_xcom(self) -> dict[str, object]:
        return {
            "cadence": self.cadence.value,
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
        }

    @classmethod
    def from_xcom(cls, raw: dict[str, object]) -> Window:
        return cls(
            datetime.fromisoformat(str(raw["window_start"])),
            datetime.fromisoformat(str(raw["window_end"])),
            Cadence(str(raw["cadence"])),
        )


@dataclass(frozen=True)
class WindowRun:
    """One revision of a window as a run evaluates it: small and XCom-safe."""

    window: Window
    revision: int
    as_of: datetime
    """Labels that arrived after this instant are not counted."""
    status: Status | None = None
    """The window's label maturity at ``as_of`` (:func:`maturity`), decided once where its statistics are
    fetched and carried to the compute step; None until decided (and in XComs queued before it was carried)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "as_of", to_naive_utc(self.as_of))
        if self.status is not None:
            object.__setattr__(self, "status", Status(self.status))

    @classmethod
    def of(cls, window: Window, *, as_of: datetime, status: Status | None = None) -> WindowRun:
        """``window`` evaluated with the labels known at ``as_of``, its revision derived from it."""
        return cls(window, revision_of(window, as_of=as_of), as_of, status)

    def to_xcom(self) -> dict[str, object]:
        raw: dict[str, object] = {**self.window.to_xcom(), "revision": self.revision, "as_of": self.as_of.isoformat()}
        if self.status is not None:
            raw["status"] = self.status.value
        return raw

    @classmethod
    def from_xcom(cls, raw: dict[str, object]) -> WindowRun:
        status = raw.get("status")
        return cls(
            Window.from_xcom(raw),
            int(raw["revision"]),  # type: ignore[call-overload]
            datetime.fromisoformat(str(raw["as_of"])),
            Status(str(status)) if status is not None else None,
        )


def floor_to(cadence: Cadence | str, at: datetime) -> datetime:
    at = to_naive_utc(at)
    if Cadence(cadence) is Cadence.HOURLY:
        return at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def last_complete_window(cadence: Cadence | str, at: datetime) -> Window:
    """The newest window that has fully ended at ``at`` (used for manual runs without a logical date)."""
    end = floor_to(cadence, at)
    return Window(end - Cadence(cadence).width, end, Cadence(cadence))


def windows_between(cadence: Cadence | str, start: datetime, end: datetime) -> list[Window]:
    """Aligned windows covering [start, end); ``start`` is floored to the cadence."""
    cadence = Cadence(cadence)
    width = cadence.width
    cursor = floor_to(cadence, start)
    end = to_naive_utc(end)
    out: list[Window] = []
    while cursor < end:
        out.append(Window(cursor, cursor + width, cadence))
        cursor += width
    return out


def revision_of(window: Window, *, as_of: datetime) -> int:
    """0 for the run that closes the window, then +1 for every later cadence step."""
    steps = (to_naive_utc(as_of) - window.end) // window.cadence.width
    return max(0, int(steps))


def maturity(*, label_coverage: float | None, age: timedelta, label_delay: LabelDelay) -> Status:
    """Final once coverage reaches the target or the window is older than the expected delay."""
    if age >= label_delay.expected:
        return Status.FINAL
    if label_coverage is not None and label_coverage >= label_delay.coverage_target:
        return Status.FINAL
    return Status.PROVISIONAL


def windows_to_evaluate(
    window: Window,
    *,
    label_delay: LabelDelay,
    final_starts: Iterable[datetime],
    not_before: datetime | None = None,
) -> list[Window]:
    """The run's own window plus earlier windows in the look-back that are not final yet.

    Args:
        window: the run's own (newest) window, of the DAG's cadence.
        label_delay: gives the look-back.
        final_starts: starts of windows whose latest stored revision is already final.
        not_before: the monitor's start date: no window before it is evaluated.
    """
    final = set(final_starts)
    # A window must still be reachable when it turns final by age, even if the look-back is shorter.
    cadence = window.cadence
    earliest = window.end - max(label_delay.lookback, cadence.width + label_delay.expected)
    if not_before is not None:
        earliest = max(earliest, to_naive_utc(not_before))
    as_of = window.end
    finalizing = label_delay.expected // cadence.width
    earlier = [
        w
        for w in windows_between(cadence, earliest, window.start)
        if w.start not in final and is_recompute_due(revision_of(w, as_of=as_of), finalizing)
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


class WindowRefused(ValueError):
    """A requested window the schedule would never produce: unparseable, off the cadence, in the future."""


WINDOW_START_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"([T ]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?(Z|[+-]([01]\d|2[0-3]):?[0-5]\d)?)?$"
)
"""What the ``window_start`` Param accepts at trigger time: an ISO 8601 date or date-time (offset optional,
naive = UTC). The task still checks the calendar (2026-02-30), the cadence alignment and the clock."""


def requested_window(
    cadence: Cadence | str, raw: object, *, run_after: datetime, not_before: datetime | None = None
) -> Window:
    """The window a ``window_start`` Param asks for, if the schedule would produce it.

    Args:
        cadence: the DAG's cadence.
        raw: the Param as given ('2026-11-03T06:00:00', '2026-11-03T06:00:00+01:00', '2026-11-03').
        run_after: when the run was triggered; the window must have ended by then.
        not_before: the monitor's start date; no scheduled run evaluates a window before it.

    Raises:
        WindowRefused: the value is not an ISO date-time, is not aligned to the cadence, lies before the
            start date or has not ended at ``run_after`` (its run would move every alert's clock past the
            scheduled runs still to come, which would then be ignored as replays).
    """
    cadence = Cadence(cadence)
    text = str(raw)
    try:
        start = to_naive_utc(datetime.fromisoformat(text))
    except ValueError as exc:
        raise WindowRefused(
            f"window_start {text!r} is not an ISO 8601 date-time (e.g. '2026-11-03T06:00:00', UTC)"
        ) from exc
    aligned = floor_to(cadence, start)
    if aligned != start:
        raise WindowRefused(
            f"window_start {text!r} is not the start of a {cadence.value} window: "
            f"the {cadence.value} schedule produces {aligned.isoformat()} and "
            f"{(aligned + cadence.width).isoformat()}"
        )
    window = Window.starting(cadence, start)
    now = to_naive_utc(run_after)
    if window.end > now:
        raise WindowRefused(
            f"window_start {text!r}: the window {window.start.isoformat()} - {window.end.isoformat()} "
            f"has not ended at {now.isoformat()} (when the run was triggered); the last complete "
            f"{cadence.value} window starts at {last_complete_window(cadence, now).start.isoformat()}"
        )
    if not_before is not None and window.start < floor_to(cadence, not_before):
        raise WindowRefused(
            f"window_start {text!r} is before the monitor's start_date {to_naive_utc(not_before).isoformat()}"
        )
    return window


def scheduled_window(cadence: Cadence | str, start: datetime, end: datetime) -> Window | None:
    """``[start, end)`` when it is one window of the cadence's schedule, else None (an off-hour data
    interval, e.g. a manual run with a logical date of 10:37 gets 09:37 - 10:37)."""
    window = Window(start, end, Cadence(cadence))
    cadence = window.cadence
    if floor_to(cadence, window.start) != window.start or window.end - window.start != cadence.width:
        return None
    return window
