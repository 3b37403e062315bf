"""Rule evaluations in words: the ``RuleEvaluation.description`` text, from the thresholds' typed numbers (pure).

The evaluators in :mod:`modelwatch.core.rules` store this text on each evaluation, and the alert store and
every channel quote it as it is, so it is assembled here, in the core, at the point the evaluation is built;
the renderers (:mod:`modelwatch.render.rule_text`) share its number and duration formats.
"""

from __future__ import annotations

from datetime import timedelta

from modelwatch.core.thresholds import (
    AbsoluteBasis,
    BaselineDropBasis,
    BaselineEstimate,
    BoundsBasis,
    IntervalBasis,
    NoBaselineWindows,
    RollingShortfall,
    Shortfall,
    StdBandBasis,
)


def number(value: float) -> str:
    """Four significant digits: 0.8, 0.8123, 8.617."""
    return f"{value:.4g}"


def duration_text(span: timedelta) -> str:
    """'7d', '24h' or '90m' (never Python's '1 day, 0:00:00')."""
    minutes = int(span.total_seconds() // 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


def _baseline_label(found: BaselineEstimate) -> str:
    if found.source == "fixed":
        return "fixed baseline"
    if found.source == "rolling":
        return f"mean of the {found.windows} windows in the {found.rolling} before the window"
    return f"mean of {found.windows} windows {found.start:%Y-%m-%d %H:%M}..{found.end:%Y-%m-%d %H:%M}"


def _absolute_text(basis: AbsoluteBasis) -> str:
    parts = []
    if basis.min is not None:
        parts.append(f">= {number(basis.min)}")
    if basis.max is not None:
        parts.append(f"<= {number(basis.max)}")
    return f"{basis.metric} must be " + " and ".join(parts)


def _baseline_drop_text(basis: BaselineDropBasis) -> str:
    allowed = f"{basis.max_drop:.0%}" if basis.relative else number(basis.max_drop)
    baseline, label = number(basis.baseline.value), _baseline_label(basis.baseline)
    if basis.lower_is_better:
        return f"{basis.metric} may rise at most {allowed} above {baseline} ({label}): <= {number(basis.bound)}"
    return f"{basis.metric} may drop at most {allowed} below {baseline} ({label}): >= {number(basis.bound)}"


def _std_band_text(basis: StdBandBasis) -> str:
    return (
        f"{basis.metric} within mean {number(basis.mean)} +- {basis.k:g} x std {number(basis.std)} "
        f"of the last {basis.windows} windows"
    )


def _interval_text(basis: IntervalBasis) -> str:
    allowed_low = number(basis.min) if basis.min is not None else "-inf"
    allowed_high = number(basis.max) if basis.max is not None else "inf"
    return (
        f"{basis.confidence:.0%} interval [{number(basis.low)}, {number(basis.high)}] of {basis.metric} must overlap "
        f"[{allowed_low}, {allowed_high}]"
    )


def bounds_text(basis: BoundsBasis | None) -> str:
    """How a threshold derived its bounds, e.g. 'roc_auc must be >= 0.8' ('' without a basis)."""
    if isinstance(basis, AbsoluteBasis):
        return _absolute_text(basis)
    if isinstance(basis, BaselineDropBasis):
        return _baseline_drop_text(basis)
    if isinstance(basis, StdBandBasis):
        return _std_band_text(basis)
    if isinstance(basis, IntervalBasis):
        return _interval_text(basis)
    return ""


def shortfall_text(shortfall: Shortfall) -> str:
    """Why a threshold cannot compute its bounds yet."""
    if isinstance(shortfall, RollingShortfall):
        return (
            f"no baseline rule yet: the rolling {duration_text(shortfall.rolling)} baseline needs >= "
            f"{shortfall.needed} windows outside open incidents, has {shortfall.has}"
        )
    if isinstance(shortfall, NoBaselineWindows):
        return "no stored window in the baseline period"
    return f"no band yet: needs >= {shortfall.needed} earlier windows outside open incidents"
