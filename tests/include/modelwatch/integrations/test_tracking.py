from __future__ import annotations

import csv
import io
import json
import shutil
import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from modelwatch.core.config import ModelRef, MonitorConfig, Tracking, load_monitor
from modelwatch.core.result import MetricValue, SegmentRow, WindowResult
from modelwatch.core.stats import JoinCounts, WindowStats, binary_stats_from_arrays
from modelwatch.integrations import tracking
from modelwatch.integrations.tracking import RunContext, find_window_run, log_window

MONITORS = Path(__file__).resolve().parents[4] / "include" / "monitors"
START = datetime(2026, 11, 3, 6)
START_MS = int(START.replace(tzinfo=UTC).timestamp() * 1000)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    """One real SQLite store per module (tests use their own experiments).

    Running MLflow's schema migrations takes seconds, so an empty migrated database is kept in
    pytest's cache (per MLflow version) and copied.
    """
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    folder = cache.mkdir(f"modelwatch-mlflow-{mlflow.__version__}") if cache else tmp_path_factory.mktemp("tpl")
    template = folder / "empty.db"
    if not template.exists():
        scratch = tmp_path_factory.mktemp("mlflow-template") / "empty.db"
        MlflowClient(f"sqlite:///{scratch}").search_experiments()
        shutil.copyfile(scratch, template)
    directory = tmp_path_factory.mktemp("mlflow")
    shutil.copyfile(template, directory / "mlflow.db")
    return directory


@pytest.fixture(scope="module")
def client(store: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{store}/mlflow.db")


@pytest.fixture
def monitor(store: Path) -> MonitorConfig:
    base = load_monitor(MONITORS / "churn.yaml")
    experiment = f"test/{uuid.uuid4().hex[:10]}"
    return base.model_copy(update={"tracking": Tracking(experiment=experiment, artifact_root=str(store / experiment))})


def make_result(
    *, revision: int = 0, auc: float | None = 0.81, coverage: int = 300, start: datetime = START
) -> WindowResult:
    rng = np.random.default_rng(3)
    scores = rng.random(400)
    labels = (rng.random(400) < scores).astype(float)
    labels[coverage:] = np.nan
    stats = WindowStats(
        JoinCounts(predictions=400, labelled=coverage, orphan_labels=2),
        binary_stats_from_arrays(scores, labels, threshold=0.5),
        ("7",),
    )
    return WindowResult(
        monitor="churn",
        model="churn-classifier",
        task="binary_classification",
        cadence="hourly",
        window_start=start,
        window_end=start + timedelta(hours=1),
        as_of=start + timedelta(hours=2 + revision),
        status="final" if revision >= 2 else "provisional",
        revision=revision,
        stats=stats,
        metrics={"roc_auc": MetricValue("roc_auc", auc), "f1": MetricValue("f1", None, "no positives")},
        estimated={"roc_auc": MetricValue("roc_auc", 0.8)},
        segments=(SegmentRow("region", "eu", 100, 80, {"roc_auc": 0.7}, {"roc_auc": 0.8}, 0.25, 0.2),),
        config_hash="hash0",
    )


def active_runs(client: MlflowClient, monitor: MonitorConfig) -> list:
    experiment = client.get_experiment_by_name(monitor.tracking.experiment)
    return client.search_runs([experiment.experiment_id], run_view_type=ViewType.ACTIVE_ONLY)


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, monitor: MonitorConfig) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MODELWATCH_ROOT", str(tmp_path))
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path}/.modelwatch/mlflow.db"
    assert (tmp_path / ".modelwatch").is_dir()
    configured = monitor.model_copy(update={"tracking": Tracking(tracking_uri="sqlite:///x.db")})
    assert tracking.tracking_uri(configured) == "sqlite:///x.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.tracking_uri(configured) == "http://mlflow:5000"
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2://a@db/airflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://a@db/airflow")
    with pytest.raises(ValueError, match="metadata database"):
        tracking.tracking_uri()


def test_experiment_has_explicit_file_artifact_location(client: MlflowClient, monitor: MonitorConfig) -> None:
    experiment_id = tracking.ensure_experiment(client, monitor)
    assert tracking.ensure_experiment(client, monitor) == experiment_id
    location = client.get_experiment(experiment_id).artifact_location
    assert location == Path(monitor.tracking.artifact_root).resolve().as_uri()
    client.delete_experiment(experiment_id)
    assert tracking.ensure_experiment(client, monitor) == experiment_id  # restored, not recreated
    default = monitor.model_copy(update={"tracking": Tracking()})
    assert client.get_experiment(tracking.ensure_experiment(client, default)).name == "modelwatch/churn"


def test_same_window_three_times_is_one_run(
    client: MlflowClient, monitor: MonitorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELWATCH_MLFLOW_UI_URL", "http://mlflow.example:8080/")
    runs = [
        log_window(
            make_result(), monitor=monitor, context=RunContext("d", "r", try_number=n), client=client, artifacts=False
        )
        for n in (1, 2, 3)
    ]
    assert len({r.run_id for r in runs}) == 1
    assert runs[0].url == f"http://mlflow.example:8080/#/experiments/{runs[0].experiment_id}/runs/{runs[0].run_id}"
    [run] = active_runs(client, monitor)
    assert run.info.run_name == "hourly 2026-11-03T06:00"
    assert run.data.tags["airflow.try_number"] == "3"
    assert run.data.tags["modelwatch.window_start"] == "2026-11-03T06:00:00"
    assert run.data.tags["modelwatch.label_coverage"] == "0.750000"
    assert run.data.tags["modelwatch.model_versions"] == "7"
    assert run.data.metrics["roc_auc"] == pytest.approx(0.81)
    assert run.data.metrics["estimated/roc_auc"] == pytest.approx(0.8)
    assert run.data.metrics["count/predictions"] == 400 and run.data.metrics["label_coverage"] == 0.75
    assert "f1" not in run.data.metrics and "other/f1" not in run.data.metrics  # undefined: not logged as 0
    # What the rules judge sorts first: plain names for checked metrics, groups for everything else.
    assert all(k in ("roc_auc", "f1", "label_coverage") or "/" in k for k in run.data.metrics)
    history = client.get_metric_history(run.info.run_id, "roc_auc")
    assert [(m.step, m.timestamp) for m in history] == [(0, START_MS)]
    assert run.data.params["model.name"] == "churn-classifier"
    assert run.data.params["predictions.segments"] == "region,plan,channel"
    assert set(run.data.params) == {
        "monitor", "model.name", "task", "predictions.table", "labels.table", "predictions.segments", "config_hash",
    }  # fmt: skip
    assert run.data.tags["mlflow.note.content"].startswith("**not evaluated**: hourly window 2026-11-03 06:00 UTC")


def test_revisions_are_metric_steps_and_old_replay_is_ignored(client: MlflowClient, monitor: MonitorConfig) -> None:
    for revision, auc in enumerate((0.70, 0.75, 0.80)):
        log_window(make_result(revision=revision, auc=auc), monitor=monitor, client=client, artifacts=False)
    log_window(make_result(revision=2, auc=0.80), monitor=monitor, client=client, artifacts=False)  # retry
    stale = log_window(make_result(revision=1, auc=0.10, coverage=100), monitor=monitor, client=client, artifacts=False)
    [run] = active_runs(client, monitor)
    assert stale.run_id == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "roc_auc")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.70), (1, 0.75), (2, pytest.approx(0.80))]
    assert {m.timestamp for m in history} == {START_MS}
    assert run.data.tags["modelwatch.revision"] == "2"
    assert run.data.tags["modelwatch.status"] == "final"
    assert run.data.metrics["roc_auc"] == pytest.approx(0.80)
    assert len(client.get_metric_history(run.info.run_id, "count/labelled")) == 3  # one point per revision


def test_config_change_is_a_tag_params_stay(client: MlflowClient, monitor: MonitorConfig) -> None:
    log_window(make_result(), monitor=monitor, client=client, artifacts=False)
    changed = monitor.model_copy(
        update={"model": ModelRef(name="churn-classifier", mlflow_model_uri="models:/churn/3")}
    )
    log_window(
        replace(make_result(revision=1), config_hash=changed.config_hash),
        monitor=changed,
        client=client,
        artifacts=False,
    )
    [run] = active_runs(client, monitor)
    assert run.data.params["config_hash"] == monitor.config_hash
    assert run.data.tags["modelwatch.config_hash"] == changed.config_hash != monitor.config_hash
    assert run.data.tags["modelwatch.model_uri"] == "models:/churn/3"


def test_race_between_two_clients_converges(
    store: Path, monitor: MonitorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = [MlflowClient(f"sqlite:///{store}/mlflow.db") for _ in range(2)]
    tracking.ensure_experiment(clients[0], monitor)
    barrier = threading.Barrier(2, timeout=20)
    original = tracking.find_window_run

    first_calls = threading.Semaphore(2)

    def find_then_wait(*args, **kwargs):
        found = original(*args, **kwargs)
        if first_calls.acquire(blocking=False):
            barrier.wait()  # both tasks have looked and found nothing before either creates
        return found

    monkeypatch.setattr(tracking, "find_window_run", find_then_wait)
    results: list = [None, None]

    def worker(i: int) -> None:
        results[i] = log_window(make_result(), monitor=monitor, client=clients[i], artifacts=False)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results[0] is not None and results[1] is not None
    assert results[0].run_id == results[1].run_id
    [run] = active_runs(clients[0], monitor)
    assert run.info.run_id == results[0].run_id
    experiment_id = results[0].experiment_id
    every = clients[0].search_runs([experiment_id], run_view_type=ViewType.ALL)
    assert len(every) == 2  # the loser was created, then deleted
    monkeypatch.setattr(tracking, "find_window_run", original)
    assert (
        find_window_run(clients[1], experiment_id, cadence="hourly", window_start=START).info.run_id == run.info.run_id
    )


def test_artifacts(client: MlflowClient, monitor: MonitorConfig) -> None:
    result = make_result(revision=1)
    window_run = log_window(result, monitor=monitor, client=client)
    names = {a.path for a in client.list_artifacts(window_run.run_id)}
    assert names == {"result.json", "config.json", "segments.csv", "report.html", "timeline.png"}
    root = Path(client.download_artifacts(window_run.run_id, ""))
    assert json.loads((root / "result.json").read_text()) == json.loads(json.dumps(result.to_json_dict()))
    rows = list(csv.DictReader(io.StringIO((root / "segments.csv").read_text())))
    assert rows == [
        {
            "column": "region",
            "value": "eu",
            "predictions": "100",
            "labelled": "80",
            "share": "0.2",
            "reference_share": "0.25",
            "within_contribution": "",
            "mix_contribution": "",
            "roc_auc": "0.7",
            "reference_roc_auc": "0.8",
        }
    ]
    assert "0.8100" in (root / "report.html").read_text()
    assert json.loads((root / "config.json").read_text())["checks"][0]["rules"][0]["min"] == 0.8
    assert (root / "timeline.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    artifact_dir = Path(monitor.tracking.artifact_root)
    assert (artifact_dir / window_run.run_id / "artifacts" / "result.json").is_file()


def test_logging_into_a_run_deleted_by_a_racing_task_retries(
    client: MlflowClient, monitor: MonitorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment_id = tracking.ensure_experiment(client, monitor)
    loser = tracking._create_window_run(client, experiment_id, make_result())
    client.delete_run(loser.info.run_id)  # what the other task's convergence does after our lookup
    original = tracking._resolve_run
    calls = []

    def stale_then_real(*args):
        calls.append(1)
        return client.get_run(loser.info.run_id) if len(calls) == 1 else original(*args)

    monkeypatch.setattr(tracking, "_resolve_run", stale_then_real)
    window_run = log_window(make_result(), monitor=monitor, client=client, artifacts=False)
    assert len(calls) == 2 and window_run.run_id != loser.info.run_id
    [run] = active_runs(client, monitor)
    assert run.info.run_id == window_run.run_id and run.data.metrics["roc_auc"] == pytest.approx(0.81)
    assert client.get_run(loser.info.run_id).data.metrics == {}


def test_a_password_in_the_warehouse_url_is_masked_in_the_mlflow_params_and_config(
    client: MlflowClient, monitor: MonitorConfig
) -> None:
    from modelwatch.core.config import Warehouse

    secret = monitor.model_copy(update={"warehouse": Warehouse(url="postgresql+psycopg://mw:s3cret@db:5432/w")})
    run = log_window(make_result(), monitor=secret, client=client)
    params = client.get_run(run.run_id).data.params
    assert params["monitor"] == secret.name and not [k for k, v in params.items() if "s3cret" in v]
    config = (Path(client.download_artifacts(run.run_id, "")) / "config.json").read_text()
    assert json.loads(config)["warehouse"]["url"] == "postgresql+psycopg://mw:***@db:5432/w"
    assert "s3cret" not in config


def test_a_tracking_server_that_is_down_fails_fast_naming_the_uri(
    monkeypatch: pytest.MonkeyPatch, monitor: MonitorConfig
) -> None:
    """A port that accepts connections and never answers (a hung server) and a closed port: both fail within
    the probe timeout, not after MLflow's ~250 s of retries, and no run is created anywhere."""
    import socket
    import time

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setattr(tracking, "PROBE_TIMEOUT", 1.0)
    try:
        for port in (hung.getsockname()[1], closed_port):
            uri = f"http://mlflow:pw@127.0.0.1:{port}"
            monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
            started = time.monotonic()
            with pytest.raises(tracking.TrackingServerUnreachable) as info:
                log_window(make_result(), monitor=monitor, artifacts=False)
            assert time.monotonic() - started < 5
            assert f"MLflow tracking server http://mlflow:***@127.0.0.1:{port} did not answer within 1 s" in str(
                info.value
            )
            assert "pw@" not in str(info.value)
    finally:
        hung.close()


def test_outside_a_checkout_a_tracking_uri_is_required(monkeypatch: pytest.MonkeyPatch, monitor: MonitorConfig) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MODELWATCH_ROOT", raising=False)
    with pytest.raises(ValueError, match=r"'tracking.tracking_uri' of monitor 'churn' or env MLFLOW_TRACKING_URI"):
        tracking.tracking_uri(monitor)
    served = monitor.model_copy(update={"tracking": Tracking(tracking_uri="https://mlflow.internal")})
    assert tracking.tracking_uri(served) == "https://mlflow.internal"


def test_run_links_follow_the_tracking_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELWATCH_MLFLOW_UI_URL", raising=False)
    assert tracking.run_url("1", "r", tracking_uri="https://mlflow.internal/") == (
        "https://mlflow.internal/#/experiments/1/runs/r"
    )
    assert tracking.run_url("1", "r", tracking_uri="sqlite:///m.db").startswith("http://127.0.0.1:5000/#/")
    monkeypatch.setenv("MODELWATCH_MLFLOW_UI_URL", "https://ui.example/mlflow")
    assert tracking.run_url("1", "r", tracking_uri="https://mlflow.internal").startswith("https://ui.example/mlflow/#/")


def test_artifacts_stay_on_the_server_unless_configured(monitor: MonitorConfig) -> None:
    default = monitor.model_copy(update={"tracking": Tracking()})
    assert tracking._artifact_location(default, "https://mlflow.internal") is None
    assert tracking._artifact_location(default, "sqlite:///m.db").startswith("file://")
    assert (
        tracking._artifact_location(monitor, "https://mlflow.internal")
        == Path(monitor.tracking.artifact_root).resolve().as_uri()
    )


def test_window_runs_are_finished_with_source_user_and_model(
    client: MlflowClient, monitor: MonitorConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each revision leaves its run FINISHED (a later revision still logs into it); MLflow's own source and
    user tags are set; a registered model version is linked to the run as its logged model."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", client.tracking_uri)  # the registry resolves models globally
    experiment_id = tracking.ensure_experiment(client, monitor)
    name = f"churn-{uuid.uuid4().hex[:6]}"
    logged = client.create_logged_model(experiment_id, name="churn-model")
    client.create_registered_model(name)
    version = client.create_model_version(name, source=f"models:/{logged.model_id}", model_id=logged.model_id)
    linked = monitor.model_copy(
        update={"model": ModelRef(name="churn-classifier", mlflow_model_uri=f"models:/{name}/{version.version}")}
    )
    context = RunContext("modelwatch_churn_hourly", "r1", try_number=1)
    first = log_window(make_result(), monitor=linked, context=context, client=client, artifacts=False)
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time
    assert run.data.tags["mlflow.source.type"] == "JOB"
    assert run.data.tags["mlflow.source.name"] == "airflow:modelwatch_churn_hourly"
    assert run.data.tags["mlflow.user"] == monitor.owner
    assert [m.model_id for m in run.inputs.model_inputs] == [logged.model_id]
    second = log_window(
        make_result(revision=1, auc=0.7), monitor=linked, context=context, client=client, artifacts=False
    )
    run = client.get_run(second.run_id)
    assert second.run_id == first.run_id and run.info.status == "FINISHED"
    assert run.data.metrics["roc_auc"] == pytest.approx(0.7)


def test_alert_links_open_the_alert_windows_own_run_not_the_raising_runs(
    client: MlflowClient, monitor: MonitorConfig, monkeypatch: pytest.MonkeyPatch, store: Path
) -> None:
    """A run at 11:00 recomputes 06:00 and alerts on it: the links must open 06:00's run and report."""
    from modelwatch.airflow.alert_events import alert_links
    from modelwatch.core.alerts import TRIGGER, AlertEvent, RuleEvaluation

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}/mlflow.db")
    monkeypatch.setenv("MODELWATCH_MLFLOW_UI_URL", "http://mlflow.example:5000")
    early = log_window(make_result(start=START), monitor=monitor, client=client, artifacts=False)
    late = log_window(make_result(start=START + timedelta(hours=4)), monitor=monitor, client=client, artifacts=False)
    assert early.run_id != late.run_id
    tracking._KNOWN_RUNS.clear()  # the evaluate task runs in another process: resolve by tags, not by cache
    evaluation = RuleEvaluation(
        dedup_key="modelwatch/churn/hourly/roc_auc/absolute:critical",
        monitor="churn", model="churn-classifier", cadence="hourly", metric="roc_auc",
        rule_id="absolute:critical", rule_type="absolute", severity="critical", status="breach",
        as_of=START + timedelta(hours=5), window_start=START, window_end=START + timedelta(hours=1),
    )  # fmt: skip
    event = AlertEvent(TRIGGER, evaluation.dedup_key, 1, "critical", evaluation)
    links = alert_links(monitor, "http://airflow.example/dags/d/runs/r11")(event)
    assert links["MLflow run"] == f"http://mlflow.example:5000/#/experiments/{early.experiment_id}/runs/{early.run_id}"
    assert links["Report"] == f"http://mlflow.example:5000/get-artifact?path=report.html&run_uuid={early.run_id}"
    assert links["Airflow run"] == "http://airflow.example/dags/d/runs/r11"
    unlogged = replace(evaluation, window_start=START - timedelta(hours=1))
    assert set(alert_links(monitor, None)(AlertEvent(TRIGGER, "k", 1, "critical", unlogged))) == set()
    aware = START.replace(tzinfo=UTC)  # as alert rows read back from the warehouse
    assert tracking.window_run(monitor, cadence="hourly", window_start=aware, client=client).run_id == early.run_id


def test_run_description_carries_the_verdict(client: MlflowClient, monitor: MonitorConfig) -> None:
    from modelwatch.core.alerts import RuleEvaluation
    from modelwatch.core.result import RootCause

    result = replace(make_result(revision=1), root_cause=RootCause("data_drift", "support_calls shifted in region=EU"))
    breach = RuleEvaluation(
        dedup_key="k", monitor="churn", model="m", cadence="hourly", metric="roc_auc", rule_id="absolute:critical",
        rule_type="absolute", severity="critical", status="breach", as_of=result.as_of, value=0.7387, lower=0.8,
    )  # fmt: skip
    run = log_window(result, monitor=monitor, client=client, evaluations=[breach], artifacts=False)
    note = client.get_run(run.run_id).data.tags["mlflow.note.content"]
    first = "**breach**: hourly window 2026-11-03 06:00 UTC (provisional, revision 1, 75.0% labelled)"
    assert note.splitlines()[0] == first
    assert "roc_auc 0.7387 breaches absolute:critical (>= 0.8000)" in note
    assert "Root cause: **data_drift**: support_calls shifted in region=EU" in note


def test_a_revisions_artifacts_are_logged_once_and_a_replay_writes_nothing(
    client: MlflowClient, monitor: MonitorConfig
) -> None:
    first = log_window(make_result(revision=1), monitor=monitor, client=client)
    report = Path(monitor.tracking.artifact_root) / first.run_id / "artifacts" / "report.html"
    written = report.stat().st_mtime_ns
    before = client.get_run(first.run_id)
    assert before.data.tags[tracking.TAG_ARTIFACTS_REVISION] == "1"
    again = log_window(make_result(revision=1), monitor=monitor, client=client)  # a retry of the same revision
    after = client.get_run(again.run_id)
    assert again.run_id == first.run_id
    assert report.stat().st_mtime_ns == written, "the artifacts of revision 1 were rendered and stored again"
    assert (after.info.end_time, after.data.tags, after.data.metrics) == (
        before.info.end_time, before.data.tags, before.data.metrics,
    )  # fmt: skip
    log_window(make_result(revision=2, auc=0.7), monitor=monitor, client=client)
    newest = client.get_run(first.run_id)
    assert newest.data.tags[tracking.TAG_ARTIFACTS_REVISION] == "2"
    assert report.stat().st_mtime_ns > written
    assert newest.info.status == "FINISHED"


def test_a_tracker_does_no_io_until_its_client_is_used(
    monkeypatch: pytest.MonkeyPatch, store: Path, monitor: MonitorConfig
) -> None:
    """Like a provider hook: building a tracker on a closed port is free; the first use of the client
    probes the server and fails naming it; a tracker on a real store logs the window into one run."""
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    monkeypatch.setattr(tracking, "PROBE_TIMEOUT", 1.0)
    down = tracking.MlflowTracker(monitor, uri=f"http://127.0.0.1:{port}")
    assert down.uri == f"http://127.0.0.1:{port}"
    with pytest.raises(tracking.TrackingServerUnreachable, match=str(port)):
        down.client  # noqa: B018 - the property is the I/O under test

    tracker = tracking.MlflowTracker(monitor, uri=f"sqlite:///{store}/mlflow.db")
    first = tracker.log_window(make_result(), artifacts=False)
    again = tracker.log_window(make_result(), artifacts=False)
    assert first.run_id == again.run_id and tracker.client is tracker.client
