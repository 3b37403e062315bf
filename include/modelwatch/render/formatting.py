"""One number format for every page and message: counts as integers, others with fixed decimals,
shares as percentages, 'n/a' for undefined values (never 0, never scientific notation)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def fmt_number(value: Any, *, digits: int = 4) -> str:
    """One format for every number: counts as integers, others with ``digits`` decimals, 'n/a' for undefined.

    Tiny values print as 0 (a contribution of -6.5e-07 is no contribution), large ones with separators.
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return "n/a"
    if abs(number) >= 1000 and number.is_integer():
        return f"{int(number):,}"  # a count stored as a float (predictions, labelled)
    if abs(number) >= 1000:
        return f"{number:,.1f}"
    if abs(number) < 0.5 * 10**-digits:
        return f"{0:.{digits}f}"
    return f"{number:.{digits}f}"


def fmt_share(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}%"


def fmt_short(value: float | None) -> str:
    """Three significant digits for prose ('2.1 -> 4.3', 'PSI 7.4')."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
