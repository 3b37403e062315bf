from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from modelwatch.core.config import MonitorConfigError, load_monitor, load_monitors

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"


def _write(tmp_path: Path, name: str, raw: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _churn() -> dict:
    return yaml.safe_load((MONITORS / "churn.yaml").read_text())


def test_shipped_monitors_parse():
    monitors, errors = load_monitors(MONITORS)
    assert errors == []
    assert {m.name for m in monitors} == {"churn", "delivery"}
    churn = next(m for m in monitors if m.name == "churn")
    assert churn.label_delay.expected == timedelta(hours=24)
    assert churn.predictions.request_id == ("request_id",)
    assert churn.positive_class == "1"
    assert churn.dag_id("hourly") == "modelwatch_churn_hourly"


@pytest.mark.parametrize(
    ("mutate", "key", "expected"),
    [
        (lambda raw: raw["predictions"].update(table="churn; DROP TABLE x"), "predictions.table", "SQL identifier"),
        (lambda raw: raw["predictions"].pop("timestamp"), "predictions.timestamp", "required"),
        (lambda raw: raw.update(task="clustering"), "task", "binary_classification"),
        (lambda raw: raw["label_delay"].update(expected="soon"), "label_delay.expected", "duration"),
        (lambda raw: raw["checks"][0]["rules"][0].pop("min"), "checks.0.rules.0", "needs 'min' and/or 'max'"),
        (lambda raw: raw.update(colour="blue"), "colour", "not a known key"),
        (lambda raw: raw["checks"][0].update(m_of_n=[3, 2]), "checks.0.m_of_n", "1 <= M <= N"),
    ],
)
def test_bad_file_names_file_key_and_expectation(tmp_path, mutate, key, expected):
    raw = _churn()
    mutate(raw)
    path = _write(tmp_path, "churn", raw)
    with pytest.raises(MonitorConfigError) as info:
        load_monitor(path)
    message = str(info.value)
    assert str(path) in message
    assert f"key '{key}'" in message
    assert expected in message


def test_invalid_yaml_reports_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nmodel: [unclosed\n")
    with pytest.raises(MonitorConfigError, match=r"broken.yaml: key '<file>': is not valid YAML at line"):
        load_monitor(path)


def test_name_must_match_file_stem(tmp_path):
    path = _write(tmp_path, "other", _churn())
    with pytest.raises(MonitorConfigError, match="key 'name'"):
        load_monitor(path)


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    _write(tmp_path, "churn", _churn())
    bad = _churn()
    bad["name"] = "bad"
    bad["task"] = "nope"
    _write(tmp_path, "bad", bad)
    monitors, errors = load_monitors(tmp_path)
    assert [m.name for m in monitors] == ["churn"]
    assert len(errors) == 1 and errors[0].key == "task"


def test_config_hash_changes_with_thresholds():
    raw = _churn()
    a = load_monitor(MONITORS / "churn.yaml")
    raw["checks"][0]["rules"][0]["min"] = 0.5
    from modelwatch.core.config import parse_monitor

    b = parse_monitor(raw)
    assert a.config_hash != b.config_hash
    assert a.config_hash == load_monitor(MONITORS / "churn.yaml").config_hash


def test_a_key_given_twice_is_refused_naming_the_key_and_lines(tmp_path):
    text = (MONITORS / "churn.yaml").read_text()
    assert "\n  timestamp: predicted_at" in text
    path = tmp_path / "churn.yaml"
    path.write_text(
        text.replace("\n  timestamp: predicted_at", "\n  timestamp: predicted_at\n  timestamp: logged_at", 1)
    )
    line = text[: text.index("\n  timestamp: predicted_at")].count("\n") + 2
    with pytest.raises(MonitorConfigError) as info:
        load_monitor(path)
    assert str(info.value) == f"{path}: key '<file>': duplicate key 'timestamp' at lines {line} and {line + 1}"


def test_an_identifier_with_a_trailing_newline_is_refused(tmp_path):
    raw = _churn()
    raw["predictions"]["table"] = "churn_predictions\n"
    with pytest.raises(MonitorConfigError, match=r"key 'predictions.table': expected an SQL identifier"):
        load_monitor(_write(tmp_path, "churn", raw))


def test_mask_credentials_hides_url_passwords_and_secret_query_values():
    from modelwatch.core.config import mask_credentials

    assert mask_credentials("postgresql+psycopg://bob:s3cr%40t@db:5432/w") == "postgresql+psycopg://bob:***@db:5432/w"
    assert (
        mask_credentials("snowflake://bob@acct/db?password=s3cret&role=x")
        == "snowflake://bob@acct/db?password=***&role=x"
    )
    assert mask_credentials("duckdb:///.modelwatch/warehouse.duckdb") == "duckdb:///.modelwatch/warehouse.duckdb"
    assert (
        mask_credentials("error at http://u:p@h/x and https://v:q@k/")
        == "error at http://u:***@h/x and https://v:***@k/"
    )
