"""Numbers for people: the text the page, the lab and the CLI show next to each value.

Rates are 0-1 fractions everywhere in the core; only here do they become "55.4 %".
``None`` (no value: e.g. no eviction ever, so no characteristic time) shows as "—".
"""

from __future__ import annotations

NONE = "—"


def format_percent(value: float | None) -> str:
    """A 0-1 rate as a percentage with one decimal: ``0.5536 -> '55.4 %'``."""
    return NONE if value is None else f"{value * 100:.1f} %"


def format_duration(seconds: float | None) -> str:
    """Seconds in the largest unit that keeps the number readable (s, min, h, days)."""
    if seconds is None:
        return NONE
    if seconds < 120:
        return f"{seconds:,.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:,.3g} min"
    if seconds < 172800:
        return f"{seconds / 3600:,.3g} h"
    return f"{seconds / 86400:,.3g} days"


def format_bytes(value: float | None) -> str:
    """Bytes in B, KiB or MiB (binary units, as everywhere in this project)."""
    if value is None:
        return NONE
    if value >= 2 ** 20:
        return f"{value / 2 ** 20:,.3g} MiB"
    if value >= 1024:
        return f"{value / 1024:,.4g} KiB"
    return f"{value:,.0f} B"


def format_count(value: float | None, digits: int = 3) -> str:
    """A plain number: whole with separators from 100 up, else ``digits`` significant ones."""
    if value is None:
        return NONE
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}g}"
