"""The Airflow run's note: its text, its length limit, the API address from a connection."""

from __future__ import annotations

from types import SimpleNamespace

from modelwatch.airflow.run_notes import NOTE_MAX_CHARS, _base_url, post_note, run_note


def test_the_note_is_the_verdict_then_one_line_per_event() -> None:
    assert run_note("**ok**: hourly window", []) == "**ok**: hourly window"
    note = run_note("**breach**: hourly window", ["trigger critical alert #1 churn/hourly roc_auc"])
    assert note.splitlines() == [
        "**breach**: hourly window", "", "1 alert event(s):", "- trigger critical alert #1 churn/hourly roc_auc",
    ]  # fmt: skip


def test_a_long_note_is_cut_to_what_airflow_stores() -> None:
    note = run_note("v" * 900, ["e" * 300])
    assert len(note) == NOTE_MAX_CHARS and note.endswith("…")


def test_the_api_address_comes_from_the_connection() -> None:
    assert _base_url(SimpleNamespace(host="127.0.0.1", schema=None, port=8080)) == "http://127.0.0.1:8080"
    assert _base_url(SimpleNamespace(host="https://airflow.example/", schema=None, port=None)) == (
        "https://airflow.example"
    )


def test_without_the_connection_no_note_is_sent(monkeypatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MODELWATCH_AIRFLOW_API", raising=False)
    assert post_note("d", "r", "note") is False


def test_a_refused_login_is_a_warning_not_a_failure(monkeypatch, caplog) -> None:
    from tests.receivers import Receiver

    api = Receiver(default_status=401)
    api.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_MODELWATCH_AIRFLOW_API", f"http://u:wrong@127.0.0.1:{api.port}")
        assert post_note("modelwatch_churn_hourly", "scheduled__2026-11-01T01:00:00+00:00", "note") is False
    finally:
        api.stop()
    assert [r.path for r in api.requests] == ["/auth/token"]  # no note without a token
    assert "could not set the note" in caplog.text
