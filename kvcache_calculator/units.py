"""Numbers for people: the text the page, the lab and the CLI show next to each value.

Every number the project prints or shows goes through one of these functions, so a value
reads the same wherever it appears. Rates are 0-1 fractions everywhere in the core; only here
do they become "55.4 %". ``None`` (no value: e.g. no eviction ever, so no characteristic time)
shows as ``none``: "—" on the pages, "-" in the CLI's plain-text tables (:data:`NONE_ASCII`).
"""

from __future__ import annotations

NONE = "—"
NONE_ASCII = "-"


def format_percent(rate: float | None, digits: int = 1, *, unit: str = " %", none: str = NONE) -> str:
    """A 0-1 rate as a percentage: ``0.5536 -> '55.4 %'``; ``unit=""`` for a bare number
    inside a range or under a header that names the unit (``'55.36'`` with ``digits=2``)."""
    return none if rate is None else f"{rate * 100:.{digits}f}{unit}"


def format_points(delta: float, digits: int = 1) -> str:
    """A difference of two 0-1 rates in percentage points, always signed: ``-0.012 -> '-1.2'``."""
    return f"{delta * 100:+.{digits}f}"


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


def format_fixed(value: float | None, digits: int = 0, *, none: str = NONE) -> str:
    """A number with thousands separators and ``digits`` decimals: ``1234.5, 2 -> '1,234.50'``."""
    return none if value is None else f"{value:,.{digits}f}"


def format_number(value, *, whole_floats: bool = True, none: str = NONE) -> str:
    """A value in a table of mixed results: integers with separators, other numbers with one
    decimal from 100 up and four significant digits below; a bool or a string as it is.

    ``whole_floats``: a float without a fraction from 1000 up drops its ".0" like an integer
    (the analytic results); False keeps it (the simulator's measured floats).
    """
    if value is None:
        return none
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int) or (whole_floats and value.is_integer() and abs(value) >= 1000):
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"
