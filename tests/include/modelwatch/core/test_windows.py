from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from modelwatch.core.config import Cadence, LabelDelay, Status
from modelwatch.core.windows import (
    Window,
    WindowRun,
    as_utc,
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
        T0.replace(hour=6), T0.replace(hour=7), "hourly"
    )
    assert last_complete_window("daily", datetime(2026, 11, 3, 7, 42)) == Window(datetime(2026, 11, 2), T0, "daily")


def test_timezone_aware_values_become_naive_utc():
    aware = datetime(2026, 11, 3, 8, tzinfo=UTC).astimezone(tz=None)
    assert to_naive_utc(aware) == T0.replace(hour=8)


def test_revision_counts_cadence_steps_after_the_window_closed():
    window = Window(T0, T0 + timedelta(hours=1), "hourly")
    assert revision_of(window, as_of=window.end) == 0
    assert revision_of(window, as_of=window.end + timedelta(hours=5, minutes=59)) == 5
    assert revision_of(window, as_of=window.start) == 0


def test_maturity_by_coverage_or_age():
    delay = LabelDelay(expected=timedelta(hours=24), coverage_target=0.9)
    assert maturity(label_coverage=0.5, age=timedelta(hours=2), label_delay=delay) == Status.PROVISIONAL
    assert maturity(label_coverage=0.95, age=timedelta(hours=2), label_delay=delay) == Status.FINAL
    assert maturity(label_coverage=0.1, age=timedelta(hours=24), label_delay=delay) == Status.FINAL
    assert maturity(label_coverage=None, age=timedelta(hours=1), label_delay=delay) == Status.PROVISIONAL


def test_windows_to_evaluate_skips_final_windows_and_respects_lookback():
    delay = LabelDelay(lookback=timedelta(hours=4), expected=timedelta(hours=2))
    own = Window(T0.replace(hour=10), T0.replace(hour=11), "hourly")
    finals = [T0.replace(hour=8)]
    got = windows_to_evaluate(own, label_delay=delay, final_starts=finals)
    assert [w.start.hour for w in got] == [9, 10]  # 7 is at revision 3: not due (1, 2, 4, 8, ...)
    assert len(windows_between("hourly", T0, T0 + timedelta(days=1))) == 24


def test_no_window_before_the_monitor_start():
    delay = LabelDelay(lookback=timedelta(hours=24))
    own = Window(T0.replace(hour=2), T0.replace(hour=3), "hourly")
    got = windows_to_evaluate(own, label_delay=delay, final_starts=[], not_before=T0)
    assert [w.start.hour for w in got] == [0, 1, 2]


def test_recompute_backs_off_and_always_runs_the_finalizing_revision():
    assert [r for r in range(30) if is_recompute_due(r, 24)] == [1, 2, 4, 8, 24]
    assert [r for r in range(10) if is_recompute_due(r, 6)] == [1, 2, 6]
    # A daily cadence with a sub-day delay finalizes at revision 0: later windows back off freely.
    assert [r for r in range(1, 10) if is_recompute_due(r, 0)] == [1, 2, 4, 8]


def test_daily_window_stays_reachable_until_final_even_with_a_short_lookback():
    delay = LabelDelay(lookback=timedelta(hours=24), expected=timedelta(hours=6))
    own = Window(datetime(2026, 11, 2), datetime(2026, 11, 3), "daily")
    got = windows_to_evaluate(own, label_delay=delay, final_starts=[])
    assert [w.start.day for w in got] == [1, 2]


def test_requested_window_accepts_aligned_complete_windows_in_any_offset():
    from modelwatch.core.windows import requested_window

    run_after = datetime(2026, 11, 3, 9, 5)
    expected = Window(T0.replace(hour=6), T0.replace(hour=7), "hourly")
    for raw in ("2026-11-03T06:00:00", "2026-11-03T06:00:00Z", "2026-11-03T07:00:00+01:00", "2026-11-03 06:00"):
        assert requested_window("hourly", raw, run_after=run_after) == expected
    assert requested_window("daily", "2026-11-02", run_after=run_after) == Window(datetime(2026, 11, 2), T0, "daily")
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

    assert scheduled_window("hourly", T0, T0 + timedelta(hours=1)) == Window(T0, T0 + timedelta(hours=1), "hourly")
    assert scheduled_window("hourly", T0 + timedelta(minutes=37), T0 + timedelta(hours=1, minutes=37)) is None
    assert scheduled_window("daily", T0, T0 + timedelta(hours=1)) is None


def test_a_window_round_trips_through_xcom_with_the_same_keys_as_before():
    run = WindowRun(Window(T0, T0 + timedelta(hours=1), "hourly"), 3, T0 + timedelta(hours=4))
    raw = run.to_xcom()
    # The XCom shape downstream tasks (and runs queued before an upgrade) read: keys, order and text.
    assert raw == {
        "cadence": "hourly",
        "window_start": "2026-11-03T00:00:00",
        "window_end": "2026-11-03T01:00:00",
        "revision": 3,
        "as_of": "2026-11-03T04:00:00",
    }
    assert list(raw) == ["cadence", "window_start", "window_end", "revision", "as_of"]
    assert all(type(v) in (str, int) for v in raw.values())  # plain JSON, no enum objects
    back = WindowRun.from_xcom(raw)
    assert back == run and back.window.cadence is Cadence.HOURLY
    assert Window.from_xcom(run.window.to_xcom()) == run.window


def test_a_window_run_carries_its_status_through_xcom_and_old_payloads_still_load():
    window = Window(T0, T0 + timedelta(hours=1), "hourly")
    run = WindowRun.of(window, as_of=T0 + timedelta(hours=2), status=Status.PROVISIONAL)
    raw = run.to_xcom()
    assert list(raw) == ["cadence", "window_start", "window_end", "revision", "as_of", "status"]
    assert raw["status"] == "provisional" and type(raw["status"]) is str
    back = WindowRun.from_xcom(raw)
    assert back == run and back.status is Status.PROVISIONAL
    queued = {k: v for k, v in raw.items() if k != "status"}  # queued before the status was carried
    loaded = WindowRun.from_xcom(queued)
    assert loaded == WindowRun(window, 1, T0 + timedelta(hours=2)) and loaded.status is None
    with pytest.raises(ValueError, match="ripe"):
        WindowRun.from_xcom({**raw, "status": "ripe"})


def test_window_run_derives_its_revision_from_as_of():
    day = Window(datetime(2026, 11, 2), T0, Cadence.DAILY)
    assert WindowRun.of(day, as_of=T0 + timedelta(days=2, hours=3)).revision == 2


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 3, 8),
        datetime(2026, 11, 3, 8, tzinfo=UTC),
        datetime(2026, 11, 3, 9, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 3, 3, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["naive", "utc", "plus-one", "minus-five"],
)
def test_naive_aware_and_other_zone_values_normalise_to_the_same_instant(moment):
    naive = to_naive_utc(moment)
    assert naive == datetime(2026, 11, 3, 8) and naive.tzinfo is None and type(naive) is datetime
    assert as_utc(moment) == datetime(2026, 11, 3, 8, tzinfo=UTC) and as_utc(moment).tzinfo is UTC
    window = Window(moment, moment + timedelta(hours=1), "hourly")
    assert (window.start, window.end) == (datetime(2026, 11, 3, 8), datetime(2026, 11, 3, 9))
    assert window == Window(datetime(2026, 11, 3, 8), datetime(2026, 11, 3, 9), Cadence.HOURLY)
    assert WindowRun(window, 0, moment).as_of == datetime(2026, 11, 3, 8)


def test_a_window_parses_its_cadence_and_refuses_unknown_cadences_and_empty_spans():
    assert Window(T0, T0 + timedelta(days=1), "daily").cadence is Cadence.DAILY
    assert Window.starting("hourly", T0) == Window(T0, T0 + timedelta(hours=1), Cadence.HOURLY)
    with pytest.raises(ValueError, match="weekly"):
        Window(T0, T0 + timedelta(days=7), "weekly")
    with pytest.raises(ValueError, match="is not after its start"):
        Window(T0, T0, "hourly")
    with pytest.raises(ValueError, match="weekly"):
        WindowRun.from_xcom({"cadence": "weekly", "window_start": "2026-11-03", "window_end": "2026-11-04",
                             "revision": 0, "as_of": "2026-11-04"})  # fmt: skip
