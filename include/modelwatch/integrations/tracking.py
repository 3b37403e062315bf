"""MLflow tracking: one experiment per monitor, exactly one run per (monitor, cadence, window_start).

Edge module (talks to MLflow). A window is logged many times: provisional revisions while labels
arrive, task retries, DAG re-runs and backfills. All of them land in the same run, found by its
identity tags; metric history keeps one point per revision (``step`` = revision, ``timestamp`` =
window start, so MLflow's charts read as a time line). A revision older than the run's current
one is a replay of old state and changes nothing.

Only :class:`mlflow.MlflowClient` is used (no fluent ``mlflow.start_run`` global state), so
concurrent tasks in threads or processes do not share an active run. mlflow is imported lazily:
DAG files may import this module at parse time.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from modelwatch.core.config import MonitorConfig, mask_credentials
from modelwatch.core.result import HistoryPoint, WindowResult
from modelwatch.core.stats import ScoreHistogram
from modelwatch.core.windows import as_utc, to_naive_utc
from modelwatch.render import report

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run

log = logging.getLogger(__name__)

TAG_MONITOR = "modelwatch.monitor"
TAG_CADENCE = "modelwatch.cadence"
TAG_WINDOW_START = "modelwatch.window_start"
TAG_REVISION = "modelwatch.revision"
TAG_CONFIG_HASH = "modelwatch.config_hash"
TAG_ARTIFACTS_REVISION = "modelwatch.artifacts_revision"
"""The revision whose report, result and time line the run's artifacts are: a revision's are logged once."""
DEFAULT_UI_URL = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class RunContext:
    """Where a logging call comes from (an Airflow task instance), recorded as run tags."""

    dag_id: str | None = None
    run_id: str | None = None
    try_number: int | None = None
    airflow_url: str | None = None


@dataclass(frozen=True)
class WindowRun:
    """The MLflow run holding one window, and its address in the MLflow UI."""

    run_id: str
    experiment_id: str
    url: str
    airflow_url: str | None = None
    """The Airflow run that last logged the window (its ``airflow.url`` tag), when known."""
    report_url: str = ""
    """The run's ``report.html`` as the tracking server serves it (opens as a page, not a download)."""


ROOT_ENV = "MODELWATCH_ROOT"
UI_URL_ENV = "MODELWATCH_MLFLOW_UI_URL"


def _root() -> Path:
    return Path(os.environ.get(ROOT_ENV) or os.getcwd())


def tracking_uri(monitor: MonitorConfig | None = None) -> str:
    """The MLflow tracking URI to use.

    Order: env ``MLFLOW_TRACKING_URI``, then ``monitor.tracking.tracking_uri``; in a checkout (the demo,
    env ``MODELWATCH_ROOT`` set) then a SQLite store at ``<root>/.modelwatch/mlflow.db`` (directory created).

    Raises:
        ValueError: if no URI is configured outside a checkout (a SQLite file on each worker would be lost
            on restart), or it is Airflow's own metadata database (MLflow would migrate its tables into it).
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (monitor.tracking.tracking_uri if monitor else None)
    if not uri:
        if not os.environ.get(ROOT_ENV):
            where = f"'tracking.tracking_uri' of monitor {monitor.name!r} or " if monitor else ""
            raise ValueError(
                f"no MLflow tracking URI: set {where}env MLFLOW_TRACKING_URI to your tracking server "
                "(e.g. http://mlflow.internal:5000); a local SQLite store is only the demo's (MODELWATCH_ROOT)"
            )
        directory = _root() / ".modelwatch"
        directory.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{(directory / 'mlflow.db').resolve()}"
    airflow_db = os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN")
    if airflow_db and _same_database(uri, airflow_db):
        raise ValueError("the MLflow tracking URI must not be Airflow's metadata database")
    return uri


PROBE_TIMEOUT = 10.0
"""Seconds a tracking server gets to answer ``/health`` before the task fails. MLflow's own client waits
``MLFLOW_HTTP_REQUEST_TIMEOUT`` (120 s) per try over ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` (7) backed-off tries:
minutes per call against a server that is down."""


class TrackingServerUnreachable(ConnectionError):
    """The MLflow tracking server did not answer: fail the task now, Airflow retries it later."""


def check_tracking_server(uri: str, *, timeout: float | None = None) -> None:
    """Fail fast, naming the tracking URI (credentials masked), when an HTTP(S) tracking server is down.

    ``timeout`` defaults to :data:`PROBE_TIMEOUT`. Any HTTP answer counts as up (an auth proxy, an old
    server without ``/health``): MLflow's own errors then say more. Database and file stores are not probed.
    """
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    if not uri.startswith(("http://", "https://")):
        return
    timeout = PROBE_TIMEOUT if timeout is None else timeout
    try:
        with urlopen(f"{uri.rstrip('/')}/health", timeout=timeout):  # http(s) only, checked above
            return
    except HTTPError:
        return
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingServerUnreachable(
            f"MLflow tracking server {mask_credentials(uri)} did not answer within {timeout:g} s ({reason}); "
            "check MLFLOW_TRACKING_URI / the monitor's tracking.tracking_uri and that the server is up"
        ) from exc


def prepare_store(uri: str) -> bool:
    """Create or migrate a database tracking store (opening one migrates its schema); False for a tracking
    server, which migrates its own store."""
    if uri.startswith(("http://", "https://")):
        return False
    from mlflow import MlflowClient

    MlflowClient(uri).search_experiments(max_results=1)
    return True


def _is_local_store(uri: str) -> bool:
    scheme = uri.partition("://")[0].split("+")[0] if "://" in uri else "file"
    return scheme in ("sqlite", "file")


def _same_database(a: str, b: str) -> bool:
    def norm(url: str) -> str:
        scheme, _, rest = url.partition("://")
        return f"{scheme.split('+')[0]}://{rest}".rstrip("/")

    return norm(a) == norm(b)


def _artifact_location(monitor: MonitorConfig, uri: str) -> str | None:
    """``tracking.artifact_root``; else a local folder for a local store, else the server's default (None)."""
    configured = monitor.tracking.artifact_root
    if configured and "://" in configured:
        return configured
    if not configured and not _is_local_store(uri):
        return None
    path = Path(configured) if configured else _root() / ".modelwatch" / "mlartifacts" / monitor.name
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve().as_uri()


def ensure_experiment(client: MlflowClient, monitor: MonitorConfig) -> str:
    """Id of the monitor's experiment, created (with an explicit file:// artifact location) if absent.

    A deleted experiment of the same name is restored: MLflow would refuse to create a new one.
    """
    from mlflow.exceptions import MlflowException

    name = monitor.tracking.experiment or f"modelwatch/{monitor.name}"
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            tags = {"modelwatch.monitor": monitor.name, "modelwatch.model": monitor.model.name}
            return client.create_experiment(
                name, artifact_location=_artifact_location(monitor, client.tracking_uri), tags=tags
            )
        except MlflowException:
            # Another task created it between our lookup and create; use theirs.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def _epoch_ms(moment: datetime) -> int:
    return int(as_utc(moment).timestamp() * 1000)


def _window_runs(client: MlflowClient, experiment_id: str, *, cadence: str, window_start: datetime) -> list[Run]:
    # Tag values are an enum value and an ISO timestamp, never free text, so quoting is safe.
    filter_string = f"tags.`{TAG_CADENCE}` = '{cadence}' and tags.`{TAG_WINDOW_START}` = '{_iso(window_start)}'"
    runs = client.search_runs([experiment_id], filter_string=filter_string, max_results=50)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def find_window_run(client: MlflowClient, experiment_id: str, *, cadence: str, window_start: datetime) -> Run | None:
    """The (oldest active) run of one window in the monitor's experiment, or None."""
    runs = _window_runs(client, experiment_id, cadence=cadence, window_start=window_start)
    return runs[0] if runs else None


def masked_config(monitor: MonitorConfig) -> dict[str, Any]:
    """The monitor config as JSON (``config.json``), URL passwords masked as everywhere it is echoed."""

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: mask(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mask(item) for item in value]
        return mask_credentials(value) if isinstance(value, str) else value

    return mask(monitor.model_dump(mode="json", by_alias=True))


def identity_params(monitor: MonitorConfig) -> dict[str, str]:
    """The few params that identify a monitor in MLflow's run table; the whole config is ``config.json``."""
    params = {
        "monitor": monitor.name,
        "model.name": monitor.model.name,
        "task": str(getattr(monitor.task, "value", monitor.task)),
        "predictions.table": monitor.predictions.table,
        "labels.table": monitor.labels.table,
        "predictions.segments": ",".join(monitor.predictions.segments),
        "config_hash": monitor.config_hash,
    }
    if monitor.model.mlflow_model_uri:
        params["model.mlflow_model_uri"] = monitor.model.mlflow_model_uri
    return {key: mask_credentials(value) for key, value in params.items()}


def _create_window_run(client: MlflowClient, experiment_id: str, result: WindowResult) -> Run:
    identity = {
        TAG_MONITOR: result.monitor,
        TAG_CADENCE: result.cadence,
        TAG_WINDOW_START: _iso(result.window_start),
        "modelwatch.model": result.model,
    }
    run_name = f"{result.cadence} {result.window_start:%Y-%m-%dT%H:%M}"
    return client.create_run(experiment_id, tags=identity, run_name=run_name)


def _ensure_params(client: MlflowClient, run: Run, monitor: MonitorConfig) -> None:
    """Log the flattened config as params once per run (params are immutable in MLflow).

    A later config change is recorded as the ``modelwatch.config_hash`` tag instead.
    """
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    if run.data.params:
        return
    try:
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in identity_params(monitor).items()])
    except MlflowException:
        # Another task logged them concurrently (the insert collided); fine if they are there now.
        if not client.get_run(run.info.run_id).data.params:
            raise
    _link_model(client, run.info.run_id, monitor)


def _link_model(client: MlflowClient, run_id: str, monitor: MonitorConfig) -> None:
    """Link the monitored model to the run as a model input, as MLflow 3 does for a run that uses a model.

    ``models:/<name>/<version>`` resolves through the registry to its logged model, ``models:/m-<id>`` is one.
    A model the tracking server does not know stays a tag (``modelwatch.model_uri``) only.
    """
    from mlflow.entities import LoggedModelInput
    from mlflow.exceptions import MlflowException

    uri = monitor.model.mlflow_model_uri or ""
    try:
        model_id = _logged_model_id(uri)
        parts = uri.removeprefix("models:/").split("/")
        if model_id is None and uri.startswith("models:/") and len(parts) == 2 and parts[1].isdigit():
            version = client.get_model_version(parts[0], parts[1])
            # The registry's SQL store does not return model_id; a version registered from a logged model
            # has it in its source.
            model_id = version.model_id or _logged_model_id(version.source or "")
        if model_id:
            client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
    except MlflowException as exc:
        log.info("model %s not linked to run %s: %s", uri, run_id, exc.message)


def _logged_model_id(uri: str) -> str | None:
    """``m-<id>`` of a ``models:/m-<id>`` URI, else None."""
    rest = uri.removeprefix("models:/")
    return rest if uri.startswith("models:/m-") and "/" not in rest else None


def _converge(client: MlflowClient, experiment_id: str, result: WindowResult, created: Run) -> Run:
    """After creating a run, keep the oldest run of the window and delete the others.

    Two tasks that both found no run both create one; each then sees both and, ordering by
    (start_time, run_id), both keep the same one.
    """
    runs = _window_runs(client, experiment_id, cadence=result.cadence, window_start=result.window_start)
    if not runs:
        return created
    keeper, extra = runs[0], runs[1:]
    for run in extra:
        log.info(
            "deleting duplicate MLflow run %s of window %s (keeping %s)",
            run.info.run_id,
            run.info.run_name,
            keeper.info.run_id,
        )
        client.delete_run(run.info.run_id)
    return keeper if keeper.info.run_id != created.info.run_id else client.get_run(created.info.run_id)


def metric_keys(result: WindowResult, checked: frozenset[str]) -> dict[str, float]:
    """MLflow metric key -> value of one window.

    What the rules judge comes first: the checked metrics and label coverage keep their plain names (MLflow
    lists them in the run's top section); everything else sits in a group of its own, ``other/`` (the
    remaining realised metrics), ``estimated/`` (label-free estimates) and ``count/`` (join health).
    """
    values: dict[str, float | None] = {
        (name if name in checked else f"other/{name}"): m.value for name, m in result.metrics.items()
    }
    values |= {f"estimated/{name}": m.value for name, m in result.estimated.items()}
    counts = result.counts.to_dict()
    values["label_coverage"] = counts.pop("label_coverage")
    values |= {f"count/{name}": value for name, value in counts.items()}
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(float(v))}


def _tags(result: WindowResult, monitor: MonitorConfig, context: RunContext | None) -> dict[str, str]:
    coverage = result.label_coverage
    tags = {
        TAG_MONITOR: result.monitor,
        "modelwatch.model": result.model,
        "modelwatch.model_versions": ",".join(result.stats.model_versions),
        TAG_CADENCE: result.cadence,
        TAG_WINDOW_START: _iso(result.window_start),
        "modelwatch.window_end": _iso(result.window_end),
        "modelwatch.status": result.status,
        TAG_REVISION: str(result.revision),
        "modelwatch.label_coverage": "" if coverage is None else f"{coverage:.6f}",
        TAG_CONFIG_HASH: result.config_hash or monitor.config_hash,
        "modelwatch.as_of": _iso(result.as_of),
    }
    if monitor.model.mlflow_model_uri:
        tags["modelwatch.model_uri"] = monitor.model.mlflow_model_uri
    if result.root_cause is not None:
        tags["modelwatch.root_cause"] = result.root_cause.verdict
    # What MLflow's own UI shows as the run's source and user.
    tags["mlflow.source.type"] = "JOB"
    tags["mlflow.source.name"] = f"airflow:{context.dag_id}" if context and context.dag_id else "modelwatch"
    tags["mlflow.user"] = monitor.owner
    if context is not None:
        optional = {
            "airflow.dag_id": context.dag_id,
            "airflow.run_id": context.run_id,
            "airflow.try_number": context.try_number,
            "airflow.url": context.airflow_url,
        }
        tags |= {k: str(v) for k, v in optional.items() if v is not None}
    return tags


def _segments_csv(result: WindowResult) -> str:
    names = sorted({k for s in result.segments for k in (*s.metrics, *s.reference_metrics)})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    base = ["column", "value", "predictions", "labelled", "share", "reference_share"]
    writer.writerow([*base, "within_contribution", "mix_contribution", *names, *(f"reference_{n}" for n in names)])
    for s in result.segments:
        row = [s.column, s.value, s.predictions, s.labelled, s.share, s.reference_share]
        row += [s.within_contribution, s.mix_contribution]
        row += [s.metrics.get(n) for n in names] + [s.reference_metrics.get(n) for n in names]
        writer.writerow(["" if v is None else v for v in row])
    return buffer.getvalue()


def _log_artifacts(
    client: MlflowClient,
    run_id: str,
    result: WindowResult,
    *,
    monitor: MonitorConfig,
    history: Sequence[HistoryPoint],
    evaluations: Sequence[Any],
    reference_histogram: ScoreHistogram | None = None,
    incidents: Sequence[dict[str, str]] = (),
) -> None:
    png = report.render_timeline_png(report.with_window(history, result), monitor=monitor)
    page = report.render_html(
        result,
        monitor=monitor,
        history=history,
        evaluations=evaluations,
        reference_histogram=reference_histogram,
        timeline_png=png,
        incidents=incidents,
    )
    with tempfile.TemporaryDirectory(prefix="modelwatch-") as tmp:
        directory = Path(tmp)
        (directory / "result.json").write_text(json.dumps(result.to_json_dict(), indent=2, sort_keys=True))
        config = json.dumps(masked_config(monitor), indent=2, sort_keys=True)
        (directory / "config.json").write_text(config)
        (directory / "segments.csv").write_text(_segments_csv(result))
        (directory / "report.html").write_text(page)
        (directory / "timeline.png").write_bytes(png)
        # One call for the files keeps the per-window cost to one artifact-repository round.
        client.log_artifacts(run_id, str(directory))


def _ui_base(tracking_uri: str | None = None) -> str:
    """Where the MLflow UI is: env ``MODELWATCH_MLFLOW_UI_URL``, else an http(s) tracking URI (the server serves
    its UI and artifacts), else the demo's ``make mlflow`` address (127.0.0.1:5000)."""
    served = tracking_uri if tracking_uri and tracking_uri.startswith(("http://", "https://")) else None
    return (os.environ.get(UI_URL_ENV) or served or DEFAULT_UI_URL).rstrip("/")


def run_url(experiment_id: str, run_id: str, *, tracking_uri: str | None = None) -> str:
    """Address of a run in the MLflow UI (base as :func:`_ui_base` says)."""
    return f"{_ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def report_url(run_id: str, artifact: str = "report.html", *, tracking_uri: str | None = None) -> str:
    """Address of one artifact of a run served raw by the MLflow server (``/get-artifact``)."""
    return f"{_ui_base(tracking_uri)}/get-artifact?{urlencode({'path': artifact, 'run_uuid': run_id})}"


def window_run(
    monitor: MonitorConfig, *, cadence: str, window_start: datetime, client: MlflowClient | None = None
) -> WindowRun | None:
    """The MLflow run of one window, found by its identity tags (not by which DAG run logged it).

    An alert is raised by one DAG run about a window that may be earlier than that run's own (a
    recomputed provisional window): its links must open this window's run. None when the window was
    never logged.
    """
    from mlflow import MlflowClient

    window_start = to_naive_utc(window_start)  # identity tags are naive UTC; stored alert rows may be aware
    if client is None:
        uri = tracking_uri(monitor)
        check_tracking_server(uri)
        client = MlflowClient(uri)
    experiment_id = ensure_experiment(client, monitor)
    key = (client.tracking_uri, experiment_id, cadence, _iso(window_start))
    run = _cached_run(client, key) or find_window_run(client, experiment_id, cadence=cadence, window_start=window_start)
    if run is None:
        return None
    _KNOWN_RUNS[key] = run.info.run_id
    return _window_run(client, experiment_id, run.info.run_id, airflow_url=run.data.tags.get("airflow.url"))


def _window_run(client: MlflowClient, experiment_id: str, run_id: str, *, airflow_url: str | None = None) -> WindowRun:
    uri = client.tracking_uri
    return WindowRun(
        run_id,
        experiment_id,
        run_url(experiment_id, run_id, tracking_uri=uri),
        airflow_url=airflow_url,
        report_url=report_url(run_id, tracking_uri=uri),
    )


_KNOWN_RUNS: dict[tuple[str, str, str, str], str] = {}
"""(tracking URI, experiment, cadence, window_start) -> run id this process already resolved: a revision
is then one primary-key read instead of a tag search (the demo logs ~800 revisions)."""


def _cached_run(client: MlflowClient, key: tuple[str, str, str, str]) -> Run | None:
    run_id = _KNOWN_RUNS.get(key)
    if run_id is None:
        return None
    run = client.get_run(run_id)
    if run.info.lifecycle_stage == "deleted":  # merged into a racing task's run: look it up again
        _KNOWN_RUNS.pop(key, None)
        return None
    return run


def _resolve_run(client: MlflowClient, experiment_id: str, result: WindowResult, monitor: MonitorConfig) -> Run:
    key = (client.tracking_uri, experiment_id, result.cadence, _iso(result.window_start))
    cached = _cached_run(client, key)
    if cached is not None:
        return cached
    run = _find_or_create_run(client, experiment_id, result, monitor)
    _KNOWN_RUNS[key] = run.info.run_id
    return run


def _find_or_create_run(client: MlflowClient, experiment_id: str, result: WindowResult, monitor: MonitorConfig) -> Run:
    from mlflow.exceptions import MlflowException

    run = find_window_run(client, experiment_id, cadence=result.cadence, window_start=result.window_start)
    if run is None:
        run = _converge(client, experiment_id, result, _create_window_run(client, experiment_id, result))
    try:
        _ensure_params(client, run, monitor)
    except MlflowException as exc:
        if client.get_run(run.info.run_id).info.lifecycle_stage == "deleted":
            raise _RunDeleted(run.info.run_id) from exc
        raise
    return run


class MlflowTracker:
    """A monitor's MLflow store, in the shape of an Airflow provider hook: ``__init__`` only stores its
    arguments, and the URI and the client are resolved on first use (``cached_property``), the client after
    a bounded probe of a tracking server (:func:`check_tracking_server`). One tracker serves every window a
    task logs, so the probe and the client are paid once per task."""

    def __init__(self, monitor: MonitorConfig, *, uri: str | None = None) -> None:
        self.monitor = monitor
        self._uri = uri

    @cached_property
    def uri(self) -> str:
        """The tracking URI: the one given, else :func:`tracking_uri` of the monitor."""
        return self._uri or tracking_uri(self.monitor)

    @cached_property
    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        check_tracking_server(self.uri)
        return MlflowClient(self.uri)

    def log_window(self, result: WindowResult, **options: Any) -> WindowRun:
        """:func:`log_window` with this tracker's monitor and client."""
        return log_window(result, monitor=self.monitor, client=self.client, **options)


def client_for(monitor: MonitorConfig) -> MlflowClient:
    """An MLflow client for the monitor's :func:`tracking_uri`, after checking that a tracking server answers."""
    return MlflowTracker(monitor).client


def log_window(
    result: WindowResult,
    *,
    monitor: MonitorConfig,
    context: RunContext | None = None,
    history: Sequence[HistoryPoint] = (),
    evaluations: Sequence[Any] = (),
    artifacts: bool = True,
    reference_histogram: ScoreHistogram | None = None,
    client: MlflowClient | None = None,
    incidents: Sequence[dict[str, str]] = (),
) -> WindowRun:
    """Record one window revision in its MLflow run (created on first use, then updated).

    Args:
        result: The computed window.
        monitor: Its monitor config (experiment name, params, thresholds for the report).
        context: The Airflow task instance logging it, recorded as ``airflow.*`` tags.
        history: Past windows for the report's time line.
        evaluations: Rule evaluations shown in the report.
        artifacts: Also store result.json, segments.csv, report.html and timeline.png (once per revision:
            a run whose artifacts are already this revision's keeps them).
        reference_histogram: The reference windows' score histogram, drawn in the report.
        client: An MLflow client (reuse one for the windows of a task); default: :func:`client_for`.
        incidents: The alert incidents the window belongs to, listed in the report.

    Returns:
        The window's run. Logging a revision older than the run's current revision changes nothing; one
        already logged (a retry, a reprocessing backfill) costs two reads and at most one write.
    """
    if client is None:
        client = client_for(monitor)
    experiment_id = ensure_experiment(client, monitor)
    for attempt in range(_ATTEMPTS):
        try:
            return _log_once(
                client, experiment_id, result, monitor=monitor, context=context, history=history,
                evaluations=evaluations, artifacts=artifacts, reference_histogram=reference_histogram,
                incidents=incidents,
            )  # fmt: skip
        except _RunDeleted as exc:
            if attempt == _ATTEMPTS - 1:
                raise RuntimeError(f"window run {exc.run_id} kept being deleted by concurrent tasks") from exc
            # A racing task that saw both new runs kept the other one; log into that one instead.
            log.info("MLflow run %s was merged into a concurrent one; retrying", exc.run_id)
    raise AssertionError("unreachable")


_ATTEMPTS = 3


class _RunDeleted(Exception):
    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id


def _log_once(
    client: MlflowClient,
    experiment_id: str,
    result: WindowResult,
    *,
    monitor: MonitorConfig,
    context: RunContext | None,
    history: Sequence[HistoryPoint],
    evaluations: Sequence[Any],
    artifacts: bool,
    reference_histogram: ScoreHistogram | None = None,
    incidents: Sequence[dict[str, str]] = (),
) -> WindowRun:
    from mlflow.entities import RunTag
    from mlflow.exceptions import MlflowException

    run = _resolve_run(client, experiment_id, result, monitor)
    run_id = run.info.run_id
    window_run = _window_run(client, experiment_id, run_id)
    current = int(run.data.tags.get(TAG_REVISION, "-1"))
    if result.revision < current:
        log.info("window %s: revision %d is older than the logged %d; skipped", run_id, result.revision, current)
        return window_run
    checked = frozenset(check.metric for check in monitor.checks)
    metrics = _new_metrics(result, checked, run.data.metrics if result.revision == current else {})
    tags = _tags(result, monitor, context)
    tags["mlflow.note.content"] = report.verdict_text(result, evaluations)
    if artifacts and run.data.tags.get(TAG_ARTIFACTS_REVISION) != str(result.revision):
        # Before the tag that records them: a task killed in between logs them again, never loses them.
        _log_artifacts(
            client, run_id, result, monitor=monitor, history=history, evaluations=evaluations,
            reference_histogram=reference_histogram, incidents=incidents,
        )  # fmt: skip
        tags[TAG_ARTIFACTS_REVISION] = str(result.revision)
    changed = {k: v for k, v in tags.items() if run.data.tags.get(k) != v}
    if metrics or changed:
        try:
            # Metrics and tags in one request (params were logged once, with the run).
            client.log_batch(run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in changed.items()])
        except MlflowException as exc:
            if client.get_run(run_id).info.lifecycle_stage == "deleted":
                raise _RunDeleted(run_id) from exc
            raise
    # A window run is complete after each revision; a later revision logs into it again (MLflow allows it).
    if run.info.status != "FINISHED":
        client.set_terminated(run_id, status="FINISHED")
    return window_run


def _new_metrics(result: WindowResult, checked: frozenset[str], logged: dict[str, float]) -> list[Metric]:
    """Metric points of this revision, minus those already logged with the same value at this step.

    The SQL store ignores exact duplicates, but other stores (file, REST proxies) append them.
    """
    from mlflow.entities import Metric

    timestamp = _epoch_ms(result.window_start)
    return [
        Metric(key, value, timestamp, result.revision)
        for key, value in metric_keys(result, checked).items()
        if logged.get(key) != value
    ]
