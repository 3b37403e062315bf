"""Where the monitor files are, and a monitor's definition re-read when (and only when) its file changes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from modelwatch.airflow import monitors_folder
from modelwatch.airflow.monitors_folder import MonitorsFolderError, monitor_from_file, monitors_dir, valid_monitors

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
CHURN = yaml.safe_load((MONITORS / "churn.yaml").read_text())


@pytest.fixture(autouse=True)
def _no_folder_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_MONITORS_DIR", raising=False)
    monkeypatch.delenv("AIRFLOW__MODELWATCH__MONITORS_DIR", raising=False)


def test_folder_from_argument_then_airflow_config_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert monitors_dir() == MONITORS  # a checkout's own folder
    monkeypatch.setenv("MODELWATCH_MONITORS_DIR", str(tmp_path / "env"))
    assert monitors_dir() == tmp_path / "env"
    monkeypatch.setenv("AIRFLOW__MODELWATCH__MONITORS_DIR", str(tmp_path / "cfg"))
    assert monitors_dir() == tmp_path / "cfg"
    assert monitors_dir(tmp_path / "arg") == tmp_path / "arg"


def test_an_installed_package_without_a_setting_says_how_to_set_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(monitors_folder, "_CHECKOUT_MONITORS", tmp_path / "not-shipped")
    with pytest.raises(MonitorsFolderError, match=r"set \[modelwatch\] monitors_dir"):
        monitors_dir()


def test_a_monitor_file_is_parsed_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump({**CHURN, "owner": "first-team"}))
    first = monitor_from_file(path)
    assert first.owner == "first-team"
    assert monitor_from_file(str(path)) is first  # same (path, mtime): the parsed object is reused
    path.write_text(yaml.safe_dump({**CHURN, "owner": "second-team"}))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a new mtime even on coarse clocks
    assert monitor_from_file(path).owner == "second-team"


def test_valid_monitors_skip_an_invalid_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "churn.yaml").write_text(yaml.safe_dump(CHURN))
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump({**CHURN, "name": "broken", "cadences": ["weekly"]}))
    monitors = valid_monitors(tmp_path)
    assert [m.name for m in monitors] == ["churn"]
    assert "broken.yaml" in caplog.text
