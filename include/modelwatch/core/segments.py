"""Per-segment performance and the mix/within decomposition of the window's metric change (pure).

The window's metric is approximated as the label-weighted mean of segment metrics, M = sum(w_s m_s),
with w_s the segment's share of labelled rows. Its change against the reference splits exactly into

    M' - M = sum_s (w'_s - w_s) (m_s - M)    mix: traffic moved between segments
           + sum_s w'_s (m'_s - m_s)          within: segments themselves got better or worse

The mix term is centred on the reference mean M: since the shares sum to 1 on both sides,
sum_s (w'_s - w_s) M = 0, so the totals are those of ``(w' - w) * m_ref``, but a segment that gained
traffic and is weaker than average now carries a negative mix contribution (the uncentred form
would credit it positively, hiding exactly the segment to blame).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from modelwatch.core.result import SegmentRow
from modelwatch.core.stats import WindowStats

MIX_SHARE_OF_CHANGE = 0.5
"""A mix shift must explain at least this share of the window's real metric change."""


def _labelled(stats: WindowStats | None) -> int:
    return stats.counts.labelled if stats is not None else 0


def _metric(stats: WindowStats | None, metric_fn: Callable[[WindowStats], float | None]) -> float | None:
    if stats is None or stats.counts.labelled == 0:
        return None
    value = metric_fn(stats)
    return None if value is None or value != value else float(value)


def mean_prediction(stats: WindowStats | None) -> float | None:
    """Mean score (binary) or prediction (regression) over all the window's rows, labelled or not."""
    task = getattr(stats, "task_stats", None)
    scored = getattr(task, "scored_all", 0)
    total = getattr(task, "score_sum_all", None)
    if total is None:
        total = getattr(task, "sum_prediction_all", None)
    return None if not scored or total is None else float(total) / scored


def _shares(labelled: Mapping[str, int], keys: Sequence[str]) -> dict[str, float]:
    total = sum(labelled[k] for k in keys)
    return {k: labelled[k] / total for k in keys} if total else {}


def _score_shift(now: WindowStats | None, before: WindowStats | None) -> float | None:
    """The change of the mean prediction, None when either side has none."""
    score_now, score_before = mean_prediction(now), mean_prediction(before)
    return None if score_now is None or score_before is None else score_now - score_before


def segment_rows(
    current: Mapping[str, WindowStats],
    reference: Mapping[str, WindowStats],
    *,
    column: str,
    metric_fn: Callable[[WindowStats], float | None],
    higher_is_better: bool,
    metric: str = "metric",
) -> list[SegmentRow]:
    """One row per segment value with its metric now and in the reference, and its contributions.

    Args:
        current: Window statistics per segment value in the evaluated window.
        reference: The same over the reference rows.
        column: The segment column (for the row labels).
        metric_fn: The primary metric of a window's statistics (None when undefined).
        higher_is_better: Direction of the metric (only used for ordering: worst contribution first).
        metric: Name under which the metric is stored in ``SegmentRow.metrics``.

    Returns:
        Rows sorted so the segment contributing most to a deterioration comes first. Contributions
        are None for segments whose metric is undefined now or in the reference; over the others
        (with shares renormalised to them) mix + within sum to the approximated total change.
    """
    values = sorted(set(current) | set(reference))
    now = {v: _metric(current.get(v), metric_fn) for v in values}
    before = {v: _metric(reference.get(v), metric_fn) for v in values}
    labelled_now = {v: _labelled(current.get(v)) for v in values}
    labelled_before = {v: _labelled(reference.get(v)) for v in values}
    share_now, share_before = _shares(labelled_now, values), _shares(labelled_before, values)

    defined = [v for v in values if now[v] is not None and before[v] is not None]
    w_now, w_before = _shares(labelled_now, defined), _shares(labelled_before, defined)
    mean_before = sum(w_before[v] * before[v] for v in defined) if w_before else None  # type: ignore[operator]

    rows = []
    for v in values:
        within = mix = None
        if v in w_now and v in w_before and mean_before is not None:
            within = w_now[v] * (now[v] - before[v])  # type: ignore[operator]
            mix = (w_now[v] - w_before[v]) * (before[v] - mean_before)  # type: ignore[operator]
        stats = current.get(v)
        rows.append(
            SegmentRow(
                column=column,
                value=v,
                predictions=stats.counts.predictions if stats is not None else 0,
                labelled=labelled_now[v],
                metrics={metric: now[v]},
                reference_metrics={metric: before[v]},
                reference_share=share_before.get(v),
                share=share_now.get(v),
                within_contribution=within,
                mix_contribution=mix,
                score_shift=_score_shift(stats, reference.get(v)),
            )
        )
    sign = 1.0 if higher_is_better else -1.0
    return sorted(rows, key=lambda r: (sign * (total_contribution(r) or 0.0), r.value))


def total_contribution(row: SegmentRow) -> float | None:
    """Mix + within contribution of one segment (None when its metric is undefined)."""
    if row.within_contribution is None or row.mix_contribution is None:
        return None
    return row.within_contribution + row.mix_contribution


def top_segment(rows: Sequence[SegmentRow], *, higher_is_better: bool = True) -> SegmentRow | None:
    """The segment contributing most to a deterioration of the metric, or None if none deteriorated.

    Args:
        rows: Segment rows, possibly of several segment columns.
        higher_is_better: Direction of the metric; for an error metric a deterioration is a rise.
    """
    sign = 1.0 if higher_is_better else -1.0
    worst, worst_loss = None, 0.0
    for row in rows:
        contribution = total_contribution(row)
        if contribution is not None and -sign * contribution > worst_loss:
            worst, worst_loss = row, -sign * contribution
    return worst


def worst_per_column(rows: Sequence[SegmentRow], *, higher_is_better: bool = True) -> list[SegmentRow]:
    """The segment of each column contributing most to a deterioration, worst column first.

    Every column splits the same change, so each names its own suspect: a shift inside ``country=DE``
    must be looked at even when ``tier=plus`` lost more for other reasons.
    """
    sign = 1.0 if higher_is_better else -1.0
    columns = sorted({row.column for row in rows})
    found = [top_segment([r for r in rows if r.column == c], higher_is_better=higher_is_better) for c in columns]
    worst = [row for row in found if row is not None]
    return sorted(worst, key=lambda r: (sign * (total_contribution(r) or 0.0), r.column))


def suspects_per_column(rows: Sequence[SegmentRow], *, higher_is_better: bool = True) -> list[SegmentRow]:
    """Segments whose own drift is worth measuring: per column the one that lost most and the one whose
    predictions moved most. An input shift inside one segment need not lose metric there (a shift that
    keeps the segment's own ranking moves its rows against the others), but it moves its predictions."""
    found = list(worst_per_column(rows, higher_is_better=higher_is_better))
    for column in sorted({row.column for row in rows}):
        moved = [r for r in rows if r.column == column and r.score_shift is not None]
        if moved:
            most = max(moved, key=lambda r: (abs(r.score_shift), r.value))  # type: ignore[arg-type]
            if all((r.column, r.value) != (most.column, most.value) for r in found):
                found.append(most)
    return found


def mix_shift(
    rows: Sequence[SegmentRow], *, higher_is_better: bool = True, change: float | None = None
) -> SegmentRow | None:
    """The segment to blame when traffic mix, not the segments themselves, explains the change.

    Decided over every column: a column whose summed mix contribution is a loss larger than its summed
    within-segment change is mix-dominated; of those, the one with the largest mix loss names the segment
    that gained traffic and whose own mix contribution lost most. With ``change`` (the metric's real
    change), the mix loss must also explain at least ``MIX_SHARE_OF_CHANGE`` of it: segment metrics
    that all held while the whole fell (a shift moving one segment's rows against the others) are no
    mix shift. None when no column is mix-dominated.
    """
    sign = 1.0 if higher_is_better else -1.0
    best: tuple[float, SegmentRow] | None = None
    for column in sorted({row.column for row in rows}):
        defined = [r for r in rows if r.column == column and r.mix_contribution is not None]
        mix = sum(r.mix_contribution for r in defined)  # type: ignore[misc]
        within = sum(r.within_contribution for r in defined if r.within_contribution is not None)
        loss = -sign * mix
        if not defined or loss <= 0 or abs(mix) <= abs(within):
            continue
        if change is not None and loss < MIX_SHARE_OF_CHANGE * abs(change):
            continue  # shares jitter: a mix that explains little of the real change blames nothing
        # Traffic moved TO the blamed segment: of those that gained share, the one whose mix lost most.
        gained = [r for r in defined if (r.share or 0.0) > (r.reference_share or 0.0)] or defined
        blamed = min(gained, key=lambda r: (sign * r.mix_contribution, r.value))  # type: ignore[operator]
        if best is None or loss > best[0]:
            best = (loss, blamed)
    return best[1] if best else None
