"""The loss chart's y-axis: a few round values across the chart's loss range."""

from __future__ import annotations

import math
from typing import Any


def y_ticks(chart: Any, *, most: int = 5) -> list[tuple[float, str]]:
    """(y in the chart's SVG units, label) for round loss values inside [low, high]."""
    low, high, height = float(chart.low), float(chart.high), float(chart.height)
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return []
    raw = span / most
    magnitude = 10 ** math.floor(math.log10(raw))
    # The finest round step that gives at most one tick more than asked for.
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= most + 1)
    decimals = max(0, -math.floor(math.log10(step)) + (1 if step / magnitude == 2.5 else 0))
    out = []
    value = math.ceil(low / step) * step
    while value <= high + step * 1e-9:
        y = round(height - (value - low) / span * height, 1)
        out.append((y, f"{value:.{decimals}f}"))
        value += step
    return out
