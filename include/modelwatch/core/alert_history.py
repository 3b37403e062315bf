"""An alert's state as a fold over its ticks in ``as_of`` order, whatever order the runs finished in (pure).

:func:`modelwatch.core.alerts.advance` moves one alert by one tick and ignores a tick at or before the last one
it saw, so on its own the state depends on which run finished first: a backfill run concurrently on
several workers would count breaches, M-of-N and resolutions differently from the same windows run one by
one. The store therefore keeps every tick (the rule's evaluation and the state after it, JSON below) and
applies a late tick by folding it and every later tick again, in ``as_of`` order, from the state stored
after the tick just before it (:func:`replay`). The result is the state a sequential run gives; the
events of the fold that were not queued yet are queued then (the outbox's ids make the others no-ops).

Each tick's evaluation is a function of its window and ``as_of`` alone, not of which runs finished
first: a run judges the windows a run one by one would judge (``pipeline.extract`` skips only the windows
that were final at an earlier run) on the revisions and history computed as of its own end
(``judging.judge``). What a fold cannot undo: an event already queued from the earlier, out-of-order state
stays queued; a message cannot be recalled. And a rolling baseline over windows older than the look-back
reads those windows once their own runs stored them: in a backfill run newest first, a tick judged before
them finds them missing (its evaluation is not recomputed when they land).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from modelwatch.core.alerts import AlertEvent, AlertState, advance
from modelwatch.core.config import AlertPolicy
from modelwatch.core.result import RootCause, root_cause_from_dict
from modelwatch.core.rules import Judgement, RuleEvaluation
from modelwatch.core.windows import as_utc


@dataclass(frozen=True)
class Tick:
    """One run's evaluation of one alert's rule, and the alert's state right after it."""

    evaluation: RuleEvaluation
    state_after: AlertState | None


@dataclass(frozen=True)
class Replayed:
    """The fold of one or more ticks: the new final state, each tick's state after it, and the events."""

    state: AlertState | None
    ticks: tuple[Tick, ...]
    events: tuple[tuple[int, AlertEvent], ...]
    """(index into ``ticks``, event): the tick whose evaluation the event came from."""


def replay(
    checkpoint: AlertState | None, evaluations: Sequence[RuleEvaluation], *, check: AlertPolicy | None
) -> Replayed:
    """Fold ``evaluations`` (any order; sorted here by ``as_of``) onto ``checkpoint``.

    ``checkpoint`` is the state after the last tick before the earliest of them (None: the alert had
    no tick before). Equal ``as_of`` keep their given order; the later one is ignored by ``advance``.
    """
    state = checkpoint
    ticks: list[Tick] = []
    events: list[tuple[int, AlertEvent]] = []
    for index, evaluation in enumerate(sorted(evaluations, key=lambda e: as_utc(e.as_of))):
        state, new_events = advance(state, evaluation, check=check)
        ticks.append(Tick(evaluation, state))
        events.extend((index, event) for event in new_events)
    return Replayed(state, tuple(ticks), tuple(events))


def is_late(state: AlertState | None, evaluation: RuleEvaluation) -> bool:
    """The tick is older than the newest one the alert has seen: it needs a :func:`replay`."""
    return state is not None and state.last_as_of is not None and as_utc(evaluation.as_of) < as_utc(state.last_as_of)


# JSON: datetimes as ISO strings (naive stays naive), tuples as lists, nested dataclasses as objects.


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _encode(getattr(value, f.name)) for f in fields(value)}
    return value


def _dt(raw: Any) -> datetime | None:
    return None if raw is None else datetime.fromisoformat(raw["$dt"])


_EVALUATION_TIMES = ("as_of", "window_start", "window_end")


def _evaluation(raw: dict[str, Any]) -> RuleEvaluation:
    values = dict(raw)
    for name in _EVALUATION_TIMES:
        values[name] = _dt(values.get(name))
    values["model_versions"] = tuple(values.get("model_versions", ()))
    values["trend"] = tuple(values.get("trend", ()))
    values["root_cause"] = root_cause_from_dict(values.get("root_cause"))
    values["judgements"] = tuple(
        Judgement(_dt(j["window_start"]), j["revision"], j["status"], j.get("clear", True))  # type: ignore[arg-type]
        for j in values.get("judgements", ())
    )
    recovery = values.get("recovery")
    values["recovery"] = None if recovery is None else _evaluation(recovery)
    return RuleEvaluation(**values)


_STATE_TIMES = ("opened_at", "last_as_of", "first_breach_window", "last_breach_window")
_STATE_LATER_TIMES = ("counted_after", "last_breach_as_of", "resolved_at", "first_signal_at")


def _state(raw: dict[str, Any] | None) -> AlertState | None:
    if raw is None:
        return None
    values = dict(raw)
    for name in _STATE_TIMES + _STATE_LATER_TIMES:
        values[name] = _dt(values.get(name))
    values["recent_statuses"] = tuple(values.get("recent_statuses", ()))
    values["windows"] = tuple((_dt(w), int(r), str(s)) for w, r, s in values.get("windows", ()))
    return AlertState(**values)


def tick_to_json(tick: Tick) -> tuple[str, str]:
    """(evaluation JSON, state-after JSON) of a stored tick."""
    return json.dumps(_encode(tick.evaluation)), json.dumps(_encode(tick.state_after))


def tick_from_json(evaluation: str, state_after: str) -> Tick:
    """Inverse of :func:`tick_to_json`."""
    return Tick(_evaluation(json.loads(evaluation)), _state(json.loads(state_after)))


def with_root_cause(tick: Tick, event: AlertEvent, root_cause: RootCause) -> Tick:
    """``tick`` whose evaluation quoted by ``event`` (its own or its recovery view) carries ``root_cause``."""
    evaluation = tick.evaluation
    if evaluation.recovery is not None and event.evaluation is evaluation.recovery:
        return replace(
            tick, evaluation=replace(evaluation, recovery=replace(evaluation.recovery, root_cause=root_cause))
        )
    return replace(tick, evaluation=replace(evaluation, root_cause=root_cause))
