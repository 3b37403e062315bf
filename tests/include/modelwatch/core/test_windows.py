from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from modelwatch.core.config import LabelDelay
from modelwatch.core.windows import (
    FINAL,
    PROVISIONAL,
    Window,
    is_recompute_due,
    last_complete_window,
    maturity,
    revision_of,
    to_naive_utc,
    windows_between,
    windows_to_evaluate,
)

T0 = datetime(2026, 11, 3)


def test_last_complete_window_for_manual_runs():
    assert last_complete_window("hourly", datetime(2026, 11, 3, 7, 42)) == Window(
        T0.replace(hour=6), T0.replace(hour=7)
    )
    assert last_complete_window("daily", datetime(2026, 11, 3, 7, 42)) == Window(datetime(2026, 11, 2), T0)


def test_timezone_aware_values_become_naive_utc():
    aware = datetime(2026, 11, 3, 8, tzinfo=UTC).astimezone(tz=None)
    assert to_naive_utc(aware) == T0.replace(hour=8)


def test_revision_counts_cadence_steps_after_the_window_closed():
    window = Window(T0, T0 + timedelta(hours=1))
    assert revision_of(window, as_of=window.end, cadence="hourly") == 0
    assert revision_of(window, as_of=window.end + timedelta(hours=5, minutes=59), cadence="hourly") == 5
    assert revision_of(window, as_of=window.start, cadence="hourly") == 0


def test_maturity_by_coverage_or_age():
    delay = LabelDelay(expected=timedelta(hours=24), coverage_target=0.9)
    assert maturity(label_coverage=0.5, age=timedelta(hours=2), label_delay=delay) == PROVISIONAL
    assert maturity(label_coverage=0.95, age=timedelta(hours=2), label_delay=delay) == FINAL
    assert maturity(label_coverage=0.1, age=timedelta(hours=24), label_delay=delay) == FINAL
    assert maturity(label_coverage=None, age=timedelta(hours=1), label_delay=delay) == PROVISIONAL


def test_windows_to_evaluate_skips_final_windows_and_respects_lookback():
    delay = LabelDelay(lookback=timedelta(hours=4), expected=timedelta(hours=2))
    own = Window(T0.replace(hour=10), T0.replace(hour=11))
    finals = [T0.replace(hour=8)]
    got = windows_to_evaluate("hourly", window=own, label_delay=delay, final_starts=finals)
    assert [w.start.hour for w in got] == [9, 10]  # 7 is at revision 3: not due (1, 2, 4, 8, ...)
    assert len(windows_between("hourly", T0, T0 + timedelta(days=1))) == 24


def test_no_window_before_the_monitor_start():
    delay = LabelDelay(lookback=timedelta(hours=24))
    own = Window(T0.replace(hour=2), T0.replace(hour=3))
    got = windows_to_evaluate("hourly", window=own, label_delay=delay, final_starts=[], not_before=T0)
    assert [w.start.hour for w in got] == [0, 1, 2]


def test_recompute_backs_off_and_always_runs_the_finalizing_revision():
    assert [r for r in range(30) if is_recompute_due(r, 24)] == [1, 2, 4, 8, 24]
    assert [r for r in range(10) if is_recompute_due(r, 6)] == [1, 2, 6]
    # A daily cadence with a sub-day delay finalizes at revision 0: later windows back off freely.
    assert [r for r in range(1, 10) if is_recompute_due(r, 0)] == [1, 2, 4, 8]


def test_daily_window_stays_reachable_until_final_even_with_a_short_lookback():
    delay = LabelDelay(lookback=timedelta(hours=24), expected=timedelta(hours=6))
    own = Window(datetime(2026, 11, 2), datetime(2026, 11, 3))
    got = windows_to_evaluate("daily", window=own, label_delay=delay, final_starts=[])
    assert [w.start.day for w in got] == [1, 2]


def test_requested_window_accepts_aligned_complete_windows_in_any_offset():
    from modelwatch.core.windows import requested_window

    run_after = datetime(2026, 11, 3, 9, 5)
    expected = Window(T0.replace(hour=6), T0.replace(hour=7))
    for raw in ("2026-11-03T06:00:00", "2026-11-03T06:00:00Z", "2026-11-03T07:00:00+01:00", "2026-11-03 06:00"):
        assert requested_window("hourly", raw, run_after=run_after) == expected
    assert requested_window("daily", "2026-11-02", run_after=run_after) == Window(datetime(2026, 11, 2), T0)
    assert requested_window("hourly", "2026-11-03T08:00:00", run_after=run_after).end == T0.replace(hour=9)


@pytest.mark.parametrize(
    ("cadence", "raw", "message"),
    [
        ("hourly", "2027-11-03T06:00:00", "has not ended at 2026-11-03T09:05:00"),
        ("hourly", "2026-11-03T09:00:00", "the last complete hourly window starts at 2026-11-03T08:00:00"),
        ("hourly", "2026-11-03T02:30:00", "the hourly schedule produces 2026-11-03T02:00:00 and 2026-11-03T03:00:00"),
        ("daily", "2026-11-02T06:00:00", "is not the start of a daily window"),
        ("daily", "2026-11-03", "has not ended"),
        ("hourly", "yesterday", "is not an ISO 8601 date-time"),
        ("hourly", "2026-13-45", "is not an ISO 8601 date-time"),
        ("hourly", "2026-11-01T00:00:00", "before the monitor's start_date 2026-11-02T00:00:00"),
    ],
)
def test_requested_window_refuses_what_the_schedule_would_not_produce(cadence, raw, message):
    from modelwatch.core.windows import WindowRefused, requested_window

    with pytest.raises(WindowRefused, match=re.escape(message)) as refused:
        requested_window(cadence, raw, run_after=datetime(2026, 11, 3, 9, 5), not_before=datetime(2026, 11, 2))
    assert repr(raw) in str(refused.value)


def test_scheduled_window_rejects_off_cadence_intervals():
    from modelwatch.core.windows import scheduled_window

    assert scheduled_window("hourly", T0, T0 + timedelta(hours=1)) == Window(T0, T0 + timedelta(hours=1))
    assert scheduled_window("hourly", T0 + timedelta(minutes=37), T0 + timedelta(hours=1, minutes=37)) is None
    assert scheduled_window("daily", T0, T0 + timedelta(hours=1)) is None
