"""alert_history: the tick codec round-trips, and a fold in any order equals the sequential advance."""

from __future__ import annotations

from dataclasses import replace

from modelwatch.core.alert_history import Tick, is_late, replay, tick_from_json, tick_to_json, with_root_cause
from modelwatch.core.alerts import advance, evaluate_rules
from modelwatch.core.config import Severity
from modelwatch.core.result import RootCause
from tests.include.modelwatch.core.test_alerts import HOUR, T0, monitor_config, window

CAUSE = RootCause("data_drift", "support_calls shifted", ("support_calls",), "region=EU", ("PSI 7.3",))


def _evaluation(hour: int, value: float):
    monitor = monitor_config()
    as_of = T0 + hour * HOUR
    results = [window(as_of - HOUR, value=value, as_of=as_of)]
    return evaluate_rules(monitor, cadence="hourly", as_of=as_of, results=results, history=[])[0]


def test_a_tick_round_trips_through_json() -> None:
    evaluation = replace(_evaluation(3, 0.7), root_cause=CAUSE, recovery=replace(_evaluation(2, 0.9), trend=(0.9,)))
    state, _ = advance(None, evaluation, check=None)
    tick = Tick(evaluation, state)
    assert tick_from_json(*tick_to_json(tick)) == tick
    assert tick_from_json(*tick_to_json(Tick(evaluation, None))).state_after is None


def test_severity_is_the_enum_in_memory_and_the_plain_string_in_a_stored_tick() -> None:
    evaluation = _evaluation(3, 0.7)
    state, events = advance(None, evaluation, check=None)
    assert evaluation.severity is Severity.CRITICAL and events[0].severity is Severity.CRITICAL
    stored_evaluation, stored_state = tick_to_json(Tick(evaluation, state))
    assert '"severity": "critical"' in stored_evaluation and '"severity": "critical"' in stored_state
    back = tick_from_json(stored_evaluation, stored_state)
    assert back.evaluation.severity is Severity.CRITICAL and back.state_after.severity is Severity.CRITICAL


def test_replay_in_any_order_equals_advancing_in_as_of_order() -> None:
    evaluations = [_evaluation(h, v) for h, v in enumerate([0.9, 0.7, 0.7, 0.9, 0.6, 0.9], start=1)]
    state, events = None, []
    for evaluation in evaluations:
        state, new = advance(state, evaluation, check=None)
        events.extend(new)
    replayed = replay(None, list(reversed(evaluations)), check=None)
    assert replayed.state == state
    assert [event for _, event in replayed.events] == events
    assert [t.state_after for t in replayed.ticks][-1] == state


def test_only_a_tick_before_the_newest_is_late() -> None:
    state, _ = advance(None, _evaluation(3, 0.9), check=None)
    assert is_late(state, _evaluation(2, 0.9))
    assert not is_late(state, _evaluation(4, 0.9)) and not is_late(None, _evaluation(1, 0.9))


def test_the_root_cause_goes_to_the_view_the_event_quotes() -> None:
    breach = _evaluation(3, 0.7)
    healthy = _evaluation(2, 0.9)
    tick = Tick(replace(breach, recovery=healthy), None)
    own = replay(None, [breach], check=None).events[0][1]
    assert with_root_cause(tick, own, CAUSE).evaluation.root_cause == CAUSE
    quoting_recovery = replace(own, evaluation=tick.evaluation.recovery)
    patched = with_root_cause(tick, quoting_recovery, CAUSE).evaluation
    assert patched.recovery.root_cause == CAUSE and patched.root_cause is None
