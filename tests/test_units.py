"""Display formats shared by the page, the lab and the CLI (kvcache_calculator.units)."""

from kvcache_calculator.units import (NONE, NONE_ASCII, format_bytes, format_count, format_duration, format_fixed,
                                      format_number, format_percent, format_points)


def test_formats():
    assert format_percent(0.5536) == "55.4 %" and format_percent(None) == "—"
    assert [format_duration(s) for s in (12.34, 600, 10800, 864000)] == ["12.3 s", "10 min", "3 h", "10 days"]
    assert [format_bytes(b) for b in (512, 131072, 3 * 2 ** 20)] == ["512 B", "128 KiB", "3 MiB"]
    assert format_count(456144) == "456,144" and format_count(0.10523) == "0.105"


def test_percent_points_and_fixed():
    assert format_percent(0.55364, 2) == "55.36 %"
    assert format_percent(0.55364, unit="") == "55.4" and format_percent(0.5, unit="%") == "50.0%"
    assert format_percent(None, 2, none=NONE_ASCII) == "-"
    assert [format_points(d) for d in (0.0123, -0.012, 0.0)] == ["+1.2", "-1.2", "+0.0"]
    assert format_fixed(1234.5, 2) == "1,234.50" and format_fixed(456144) == "456,144"
    assert format_fixed(None) == NONE


def test_number_in_a_table_of_mixed_results():
    """The CLI's rule: integers with separators, one decimal from 100, four digits below."""
    cases = [(456144, "456,144"), (2048.0, "2,048"), (999.0, "999.0"), (123.456, "123.5"),
             (0.0123456, "0.01235"), (42, "42"), (True, "True"), ("lru", "lru"), (None, "—")]
    assert [format_number(v) for v, _ in cases] == [text for _, text in cases]
    # the simulator's measured floats keep their decimal even when whole
    assert format_number(2048.0, whole_floats=False) == "2,048.0"
    assert format_number(7, whole_floats=False) == "7" and format_number(None, none=NONE_ASCII) == "-"
