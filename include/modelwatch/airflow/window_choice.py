"""Which window a task run covers, and as of when it counts labels, from the run's Airflow context.

Always a window the schedule would produce:

- a ``window_start`` param wins if it names a complete window of the cadence (else the task fails at once,
  without retries, saying why: a future window, one off the cadence, one before the monitor's start);
- otherwise the run's data interval;
- a manual run without a logical date (no ``data_interval_*`` keys), or whose inferred interval is off the
  cadence (a logical date of 10:37 gives 09:37 - 10:37), evaluates the last complete window before its end
  / ``run_after``.

``as_of`` is the window's end (the labels known then: a re-run reproduces the same numbers), unless a manual
run asks for ``labels_as_of: now`` (the labels known when the run was triggered).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelwatch.core.config import Cadence

log = logging.getLogger(__name__)

LABELS_NOW = "now"
"""``labels_as_of`` of a manual run that re-evaluates a window with the labels known now."""


def run_window(
    context: Mapping[str, Any], cadence: Cadence, *, not_before: datetime | None = None
) -> tuple[Any, datetime]:
    """The (window, as_of) of this run (see the module docstring).

    Args:
        context: The task's Airflow context (``params``, ``dag_run``, ``data_interval_start``/``_end``).
        cadence: The DAG's cadence.
        not_before: The monitor's start: a requested window before it is refused.

    Raises:
        AirflowFailException: the requested ``window_start`` is not a complete window of the cadence.
    """
    from modelwatch.core.windows import last_complete_window, scheduled_window

    params = context.get("params") or {}
    run_after = getattr(context.get("dag_run"), "run_after", None) or datetime.now(UTC)
    if params.get("window_start"):
        return requested_run_window(params, cadence, run_after=run_after, not_before=not_before)
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is not None and end is not None and end > start:
        window = scheduled_window(cadence, start, end)
        if window is not None:
            return window, window.end
        run_after = end
    window = last_complete_window(cadence, run_after)
    log.info(
        "no scheduled data interval on this run: evaluating %s (last complete window before %s)", window, run_after
    )
    return window, window.end


def requested_run_window(
    params: Mapping[str, Any], cadence: Cadence, *, run_after: datetime, not_before: datetime | None = None
) -> tuple[Any, datetime]:
    """The (window, as_of) a manual run's ``window_start`` (and ``labels_as_of``) params ask for.

    Raises:
        AirflowFailException: ``window_start`` is not a complete window of the cadence (no retries: a retry
            would be refused the same way).
    """
    from modelwatch.core.windows import WindowRefused, requested_window, to_naive_utc

    try:
        window = requested_window(cadence, params["window_start"], run_after=run_after, not_before=not_before)
    except WindowRefused as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
    if params.get("labels_as_of") == LABELS_NOW:
        return window, max(window.end, to_naive_utc(run_after))
    return window, window.end
