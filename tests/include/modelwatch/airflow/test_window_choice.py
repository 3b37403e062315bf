"""Which window a task run covers, and as of when, from real Airflow-style contexts (plain dicts with the
keys Airflow puts there, a DAG-run object with ``run_after``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from airflow.sdk.exceptions import AirflowFailException

from modelwatch.airflow.window_choice import LABELS_NOW, run_window
from modelwatch.core.config import Cadence

# run_window: which window a run evaluates, and as of when.


class _DagRun:
    def __init__(self, run_after: datetime) -> None:
        self.run_after = run_after


def test_a_scheduled_run_evaluates_its_data_interval_as_of_its_end() -> None:
    start = datetime(2026, 11, 3, 6, tzinfo=UTC)
    window, as_of = run_window(
        {"data_interval_start": start, "data_interval_end": start + timedelta(hours=1)}, Cadence.HOURLY
    )
    assert (window.start, window.end, as_of) == (
        datetime(2026, 11, 3, 6),
        datetime(2026, 11, 3, 7),
        datetime(2026, 11, 3, 7),
    )


def test_a_manual_run_without_interval_evaluates_the_last_complete_window() -> None:
    window, as_of = run_window({"dag_run": _DagRun(datetime(2026, 11, 3, 10, 37, tzinfo=UTC))}, Cadence.HOURLY)
    assert (window.start, as_of) == (datetime(2026, 11, 3, 9), datetime(2026, 11, 3, 10))


@pytest.mark.parametrize(
    ("labels_as_of", "expected"),
    [
        (None, datetime(2026, 11, 3, 7)),
        ("window_end", datetime(2026, 11, 3, 7)),
        ("now", datetime(2026, 11, 5, 12, 30)),
    ],
)
def test_a_requested_window_counts_labels_as_of_its_end_or_now(labels_as_of: str | None, expected: datetime) -> None:
    params = {"window_start": "2026-11-03T06:00:00", "labels_as_of": labels_as_of}
    context = {"params": params, "dag_run": _DagRun(datetime(2026, 11, 5, 12, 30, tzinfo=UTC))}
    window, as_of = run_window(context, Cadence.HOURLY)
    assert window.start == datetime(2026, 11, 3, 6) and as_of == expected


def test_labels_now_is_the_param_value_the_dag_offers() -> None:
    from modelwatch.airflow.dag_factory import run_params

    assert LABELS_NOW in run_params(Cadence.HOURLY)["labels_as_of"].schema["enum"]


def test_an_off_cadence_data_interval_evaluates_the_last_complete_window_before_its_end() -> None:
    """A manual run with a logical date of 10:37 gets the interval 09:37 - 10:37: not a scheduled window."""
    end = datetime(2026, 11, 3, 10, 37, tzinfo=UTC)
    context = {"data_interval_start": end - timedelta(hours=1), "data_interval_end": end}
    window, as_of = run_window(context, Cadence.HOURLY)
    assert (window.start, window.end, as_of) == (datetime(2026, 11, 3, 9), datetime(2026, 11, 3, 10), window.end)


def test_an_empty_data_interval_counts_as_none() -> None:
    """``data_interval_start == data_interval_end`` (a run without a logical date in some callers)."""
    moment = datetime(2026, 11, 3, 10, tzinfo=UTC)
    context = {"data_interval_start": moment, "data_interval_end": moment, "dag_run": _DagRun(moment)}
    window, _ = run_window(context, Cadence.HOURLY)
    assert window.start == datetime(2026, 11, 3, 9)


def test_a_daily_run_evaluates_its_day() -> None:
    start = datetime(2026, 11, 3, tzinfo=UTC)
    context = {"data_interval_start": start, "data_interval_end": start + timedelta(days=1)}
    window, as_of = run_window(context, Cadence.DAILY)
    assert (window.start, as_of) == (datetime(2026, 11, 3), datetime(2026, 11, 4))


def test_a_requested_window_beats_the_data_interval() -> None:
    start = datetime(2026, 11, 5, 6, tzinfo=UTC)
    context = {
        "params": {"window_start": "2026-11-03T06:00:00"},
        "data_interval_start": start,
        "data_interval_end": start + timedelta(hours=1),
        "dag_run": _DagRun(datetime(2026, 11, 5, 12, tzinfo=UTC)),
    }
    window, as_of = run_window(context, Cadence.HOURLY)
    assert (window.start, as_of) == (datetime(2026, 11, 3, 6), datetime(2026, 11, 3, 7))


@pytest.mark.parametrize(
    ("window_start", "message"),
    [
        ("2026-11-05T12:00:00", "has not ended at 2026-11-05T12:30:00"),  # a future (unfinished) window
        ("2026-11-03T06:30:00", "is not the start of a hourly window"),  # off the cadence
        ("yesterday", "is not an ISO 8601 date-time"),
        ("2026-10-01T06:00:00", "before"),  # before the monitor's start date
    ],
)
def test_a_requested_window_the_schedule_would_not_produce_fails_the_task_without_retries(
    window_start: str, message: str
) -> None:
    context = {"params": {"window_start": window_start}, "dag_run": _DagRun(datetime(2026, 11, 5, 12, 30, tzinfo=UTC))}
    with pytest.raises(AirflowFailException, match=message):
        run_window(context, Cadence.HOURLY, not_before=datetime(2026, 11, 1, tzinfo=UTC))


def test_a_requested_window_of_a_daily_dag_must_be_a_day() -> None:
    context = {"params": {"window_start": "2026-11-03T06:00:00"}, "dag_run": _DagRun(datetime(2026, 11, 5, tzinfo=UTC))}
    with pytest.raises(AirflowFailException, match="daily window"):
        run_window(context, Cadence.DAILY)
