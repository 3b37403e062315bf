"""The monitoring steps a DAG run performs, as plain functions (the CLI runs exactly the same code).

extract  -> which windows this run evaluates (its own + provisional ones in the look-back) and their
            sufficient statistics, computed in the warehouse (a daily window is queried as one window);
compute  -> metrics, maturity, drift, segments and root cause, stored as window documents and results;
then modelwatch.integrations.tracking logs each document to MLflow and modelwatch.core.alerts decides what to send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from modelwatch.app.label_free_screen import LabelFreeSignals, label_free_signals
from modelwatch.core.config import Cadence, MonitorConfig, Status, Task
from modelwatch.core.result import WindowResult, result_from_document, result_to_document
from modelwatch.core.rules import judgeable_by_any_check
from modelwatch.core.stats import WindowStats
from modelwatch.core.thresholds import AbsoluteThreshold
from modelwatch.core.windows import (
    Window,
    WindowRun,
    is_recompute_due,
    maturity,
    revision_of,
    to_naive_utc,
    windows_to_evaluate,
)
from modelwatch.warehouse import documents
from modelwatch.warehouse.catalog import validate_schema
from modelwatch.warehouse.engine import Engine

if TYPE_CHECKING:
    from modelwatch.app.diagnosis import Diagnosis

log = logging.getLogger(__name__)

AUC_BOUND_LIMIT = 1e-3
"""Above this histogram error bound the window is re-queried with exact scores."""


def _fetch_stats(
    engine: Engine, monitor: MonitorConfig, window: Window, as_of: datetime, orphans: int | None = None
) -> WindowStats:
    """A window's statistics, hourly or daily alike, re-queried with exact scores when bins are too coarse.

    A daily window is queried as one window rather than merged from its hours' stored statistics: an id
    predicted in two hours of the day is one prediction (the later wins), stored hourly revisions know only
    the labels of their own ``as_of``, and the AUC error bound holds only when checked on the day itself.
    """
    from modelwatch.core.metrics import average_precision_error_bound, roc_auc_error_bound
    from modelwatch.warehouse.window_query import fetch_window_stats

    stats = fetch_window_stats(engine, monitor, start=window.start, end=window.end, as_of=as_of, orphans=orphans)
    task_stats = stats.task_stats
    coarse = (
        monitor.task is Task.BINARY
        and max(
            roc_auc_error_bound(task_stats.histogram),  # type: ignore[union-attr]
            average_precision_error_bound(task_stats.histogram),  # type: ignore[union-attr]
        )
        > AUC_BOUND_LIMIT
    )
    if coarse:
        log.info("window %s: score histogram too coarse for the AUC guarantee, re-querying exact", window.key)
        orphans = stats.counts.orphan_labels
        stats = fetch_window_stats(
            engine, monitor, start=window.start, end=window.end, as_of=as_of, resolution=None, orphans=orphans
        )
    return stats


def _maturity(monitor: MonitorConfig, window: Window, stats: WindowStats, as_of: datetime) -> Status:
    """The window's label maturity with the labels known at ``as_of``."""
    return maturity(label_coverage=stats.counts.label_coverage, age=as_of - window.end, label_delay=monitor.label_delay)


def _save(engine: Engine, monitor: MonitorConfig, run: WindowRun, *, document: dict) -> None:
    if run.status is None:
        raise ValueError(f"window {run.window.key} rev {run.revision}: its status was not decided")
    documents.save_document(
        engine,
        monitor=monitor.name,
        cadence=run.window.cadence,
        window_start=run.window.start,
        window_end=run.window.end,
        revision=run.revision,
        as_of=run.as_of,
        status=run.status,
        document=document,
    )


def extract(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    window: Window,
    as_of: datetime,
    progress: Callable[[str], None] | None = None,
) -> list[WindowRun]:
    """Compute and store the statistics of every window this run evaluates (``window`` and the earlier
    windows still due); return what the compute step needs of each, its maturity decided here."""
    cadence = window.cadence
    as_of = to_naive_utc(as_of)
    documents.ensure_documents_table(engine)
    scope = {"monitor": monitor.name, "cadence": cadence, "start": window.end - monitor.label_delay.lookback}
    statuses = documents.latest_statuses(engine, **scope, end=window.start, before=as_of)
    finals = [start for start, (_, status) in statuses.items() if status == Status.FINAL]
    # A revision after its window closed carries the orphan-label count (its label range is closed) instead
    # of anti-joining the look-back's predictions again: that anti-join was most of the rows a revision read.
    closed = documents.closed_orphan_counts(engine, **scope, end=window.end, before=as_of)
    runs: list[WindowRun] = []
    targets = windows_to_evaluate(
        window, label_delay=monitor.label_delay, final_starts=finals, not_before=monitor.start_date
    )
    for target in targets:
        stats = _fetch_stats(engine, monitor, target, as_of, orphans=closed.get(target.start))
        status = _maturity(monitor, target, stats, as_of)
        if status is Status.FINAL and target != window and _final_at_last_recompute(engine, monitor, target, window):
            continue  # a run one by one would have found it final already: not judged again
        run = WindowRun.of(target, as_of=as_of, status=status)
        _save(engine, monitor, run, document={"stats": stats.to_dict()})
        runs.append(run)
        if progress:
            progress(f"{monitor.name} {cadence} {target.key} rev {run.revision}: {stats.counts.predictions} rows")
    return runs


def _final_at_last_recompute(engine: Engine, monitor: MonitorConfig, target: Window, window: Window) -> bool:
    """Was ``target`` final at the last earlier run that recomputed it (``windows.is_recompute_due``)?

    A run skips windows already stored as final. In a concurrent backfill the earlier run that found
    ``target`` final may not have finished yet: its stored revision is read when there, else its status is
    computed as it would have been, so the windows a run judges do not depend on which runs finished first.
    """
    width = target.cadence.width
    finalizing = monitor.label_delay.expected // width
    step = revision_of(target, as_of=window.end) - 1
    while step > 0 and not is_recompute_due(step, finalizing):
        step -= 1
    if step < 0:
        return False
    earlier = target.end + step * width
    if earlier - target.end >= monitor.label_delay.expected:
        return True
    document = documents.load_document(
        engine, monitor=monitor.name, cadence=target.cadence, window_start=target.start, revision=step
    )
    stats = WindowStats.from_dict(document["stats"]) if document else _fetch_stats(engine, monitor, target, earlier)
    return _maturity(monitor, target, stats, earlier) is Status.FINAL


def _findings(monitor: MonitorConfig, stats: WindowStats, *, age_hours: float, status: Status) -> tuple[str, ...]:
    counts = stats.counts
    coverage = counts.label_coverage
    delay = monitor.label_delay
    out: list[str] = []
    if counts.predictions == 0:
        out.append("traffic stopped: no predictions in the window")
    out += _bad_row_findings(monitor, stats)
    # Labels that arrived but match no class did not stall: the finding above says what they are.
    arrived = (counts.labelled + counts.labels_out_of_domain) / counts.predictions if counts.predictions else None
    if coverage is not None and age_hours >= delay.expected.total_seconds() / 3600:
        if coverage < delay.stalled_coverage and (arrived or 0.0) < delay.stalled_coverage:
            out.append(f"labels stalled: coverage {coverage:.1%} after {age_hours:.0f} h")
        elif status is Status.FINAL and coverage < delay.coverage_target:
            out.append(f"labels incomplete: final with coverage {coverage:.1%} < target {delay.coverage_target:.0%}")
    return tuple(out)


def _bad_row_findings(monitor: MonitorConfig, stats: WindowStats) -> list[str]:
    """One sentence per kind of excluded row that would otherwise only show as lower coverage."""
    counts = stats.counts
    out: list[str] = []
    if counts.labels_out_of_domain:
        found = "/".join(stats.out_of_domain_labels) or "?"
        expected = "/".join(monitor.classes or ("0", "1"))
        out.append(
            f"labels out of domain: found {found}, expected {expected} ({counts.labels_out_of_domain} labels excluded)"
        )
    if counts.null_request_ids:
        out.append(f"null request ids: {counts.null_request_ids} prediction rows without a request id excluded")
    if monitor.task is Task.REGRESSION and counts.scores_out_of_range:
        out.append(f"non-finite predictions: {counts.scores_out_of_range} NaN or infinite predictions excluded")
    if counts.class_scores_out_of_range:
        out.append(
            f"class scores out of range: {counts.class_scores_out_of_range} predictions with a class score "
            "outside [0, 1] left out of log_loss"
        )
    return out


def _earlier_revision(
    engine: Engine, monitor: MonitorConfig, run: WindowRun, stats: WindowStats
) -> WindowResult | None:
    """The window's previous computed revision, loaded only for a breaching hourly revision (the only one
    that reuses an earlier diagnosis): the metric check is cheap, the document load is not."""
    window = run.window
    if run.revision == 0 or window.cadence is not Cadence.HOURLY:
        return None
    if not breaches_absolute(monitor, _quick_metrics(monitor, stats)):
        return None
    raw = documents.previous_result(
        engine, monitor=monitor.name, cadence=window.cadence, window_start=window.start, before_revision=run.revision
    )
    return result_from_document(raw) if raw else None


def _quick_metrics(monitor: MonitorConfig, stats: WindowStats) -> dict:
    from modelwatch.core.metrics import compute_metrics

    return compute_metrics(stats, task=monitor.task)


def breaches_absolute(monitor: MonitorConfig, metrics: dict) -> bool:
    """True when a check with enough labelled rows is outside one of its ``absolute`` rules' bounds."""
    for check in monitor.checks:
        value = metrics.get(check.metric)
        labelled = metrics.get("labelled")
        if value is None or value.value is None or labelled is None or (labelled.value or 0) < check.min_samples:
            continue
        for rule in check.rules:
            if rule.type == "absolute" and AbsoluteThreshold(check.metric, rule.min, rule.max).breached_by(value.value):
                return True
    return False


def _diagnosed_judgeable(monitor: MonitorConfig, result: WindowResult) -> bool:
    """Diagnosed on enough labels to be quoted later (as the alert rules would judge the window)."""
    return judgeable_by_any_check(monitor, result.status, result.label_coverage)


def _carried_diagnosis(carried: WindowResult) -> WindowResult:
    cause = carried.root_cause
    if cause is None or "(diagnosed at revision" in cause.summary:
        return carried
    coverage = carried.label_coverage or 0.0
    note = f" (diagnosed at revision {carried.revision}, {coverage:.0%} labelled)"
    return replace(carried, root_cause=replace(cause, summary=cause.summary + note))


def _window_diagnosis(
    engine: Engine,
    monitor: MonitorConfig,
    run: WindowRun,
    *,
    stats: WindowStats,
    diagnose: bool,
    carried: WindowResult | None,
    screen: bool,
) -> WindowResult | Diagnosis | None:
    """The window's root-cause analysis when it is diagnosed (the previous revision's, else computed now),
    else its screening profile when ``screen``."""
    if diagnose and carried is not None and carried.root_cause is not None and _diagnosed_judgeable(monitor, carried):
        # Drift does not depend on labels: a later breaching revision reuses the first one's diagnosis,
        # saying so, since its metric figures are those of that revision.
        return _carried_diagnosis(carried)
    if diagnose and monitor.predictions.features:
        from modelwatch.app.diagnosis import diagnose_window

        return diagnose_window(engine, monitor, run, stats=stats)
    if screen and monitor.predictions.features and stats.counts.predictions:
        from modelwatch.app.diagnosis import screen_window

        return screen_window(engine, monitor, run)
    return None


def compute_window(
    engine: Engine,
    monitor: MonitorConfig,
    run: WindowRun,
    *,
    stats: WindowStats,
    diagnose: bool | None = True,
    carried: WindowResult | None = None,
    screen: bool = False,
) -> WindowResult:
    """Metrics, maturity, drift, segments and root cause of one window, from its statistics.

    ``diagnose=None`` lets the window decide: drift, segments and root cause are computed for every
    daily window and for hourly revisions that breach an absolute bound with enough label coverage for
    the alert rules to judge them (what an alert quotes), not
    for every hourly recomputation (each diagnosis costs a dozen warehouse queries). ``carried`` is the
    window's previous revision: when it was diagnosed, a breaching revision reuses that diagnosis.
    ``screen`` profiles a window that is not diagnosed (drift and data quality, no labels needed): the
    data-quality rules judge the run's fresh window on it. The window's maturity is ``run.status``, decided
    where its statistics were fetched (ValueError when it was not).
    """
    from modelwatch.core.metrics import compute_metrics, estimate_metrics

    window, as_of, status = run.window, run.as_of, run.status
    if status is None:
        raise ValueError(f"window {window.key} rev {run.revision}: compute_window needs the run's status")
    metrics = compute_metrics(stats, task=monitor.task)
    estimated = estimate_metrics(stats.task_stats) if monitor.task is Task.BINARY else {}  # type: ignore[arg-type]
    age = as_of - window.end
    if diagnose is None:
        judgeable = judgeable_by_any_check(monitor, status, stats.counts.label_coverage)
        diagnose = window.cadence is Cadence.DAILY or (judgeable and breaches_absolute(monitor, metrics))
    diagnosis = _window_diagnosis(engine, monitor, run, stats=stats, diagnose=diagnose, carried=carried, screen=screen)
    signals = LabelFreeSignals(estimated=estimated)
    if screen and monitor.label_free and stats.counts.predictions:
        signals = label_free_signals(engine, monitor, run, stats=stats, diagnosis=diagnosis)
    return WindowResult(
        monitor=monitor.name,
        model=monitor.model.name,
        task=monitor.task,
        cadence=window.cadence,
        window_start=window.start,
        window_end=window.end,
        as_of=as_of,
        status=status,
        revision=run.revision,
        stats=stats,
        metrics=metrics,
        estimated=signals.estimated,
        estimated_bands=signals.bands,
        calibration=signals.calibration,
        signals=signals.signals,
        drift=signals.drift if signals.drift is not None else (diagnosis.drift if diagnosis else ()),
        quality=diagnosis.quality if diagnosis else (),
        segments=diagnosis.segments if diagnosis else (),
        root_cause=diagnosis.root_cause if diagnosis else None,
        findings=_findings(monitor, stats, age_hours=age.total_seconds() / 3600, status=status),
        config_hash=monitor.config_hash,
    )


def compute(
    engine: Engine,
    monitor: MonitorConfig,
    runs: Sequence[WindowRun],
    *,
    diagnose: bool | None = None,
) -> list[WindowResult]:
    """Compute every extracted window, store its document and its rows in the results table."""
    from modelwatch.warehouse.results_store import ensure_tables, fresh_estimates, upsert_window_result

    ensure_tables(engine)
    results: list[WindowResult] = []
    newest = max((run.window.start for run in runs), default=None)
    # Later revisions keep the calibrated estimate their window got when it was fresh (one query).
    carried_estimates = (
        fresh_estimates(
            engine,
            monitor=monitor.name,
            cadence=runs[0].window.cadence,
            window_starts=[r.window.start for r in runs if r.revision > 0],
        )
        if monitor.label_free and runs
        else {}
    )
    for run in runs:
        window = run.window
        document = documents.load_document(
            engine, monitor=monitor.name, cadence=window.cadence, window_start=window.start, revision=run.revision
        )
        if document is None:
            raise LookupError(f"no extracted statistics for {monitor.name} {window.cadence} {window.start}")
        stats = WindowStats.from_dict(document["stats"])
        if run.status is None:
            # An XCom queued before the extract step carried the status: decided as that step would have.
            run = replace(run, status=_maturity(monitor, window, stats, run.as_of))
        previous = _earlier_revision(engine, monitor, run, stats) if diagnose is None else None
        # The data-quality and label-free rules judge the run's own window without waiting for its labels.
        screen = (monitor.operational.data_quality.enabled or bool(monitor.label_free)) and window.start == newest
        result = compute_window(engine, monitor, run, stats=stats, diagnose=diagnose, carried=previous, screen=screen)
        if window.start in carried_estimates and not screen:
            estimated, bands = carried_estimates[window.start]
            result = replace(result, estimated=estimated, estimated_bands=bands)
        _save(engine, monitor, run, document=result_to_document(result))
        upsert_window_result(engine, result)
        results.append(result)
    return results


def load_results(engine: Engine, monitor: MonitorConfig, runs: Sequence[WindowRun]) -> list[WindowResult]:
    """The computed results of ``runs`` (downstream tasks read, they never recompute)."""
    out = []
    for run in runs:
        window = run.window
        document = documents.load_document(
            engine, monitor=monitor.name, cadence=window.cadence, window_start=window.start, revision=run.revision
        )
        if document is None or "result" not in document:
            raise LookupError(f"window {window.start} of {monitor.name} was not computed yet")
        out.append(result_from_document(document))
    return out


def evaluate_window(
    engine: Engine,
    monitor: MonitorConfig,
    *,
    window: Window,
    as_of: datetime | None = None,
    diagnose: bool = True,
) -> WindowResult:
    """One window, outside Airflow (``modelwatch evaluate``): same statistics and computation as a DAG run."""
    as_of = to_naive_utc(as_of if as_of is not None else window.end)
    validate_schema(engine, monitor)
    stats = _fetch_stats(engine, monitor, window, as_of)
    run = WindowRun.of(window, as_of=as_of, status=_maturity(monitor, window, stats, as_of))
    return compute_window(engine, monitor, run, stats=stats, diagnose=diagnose)
