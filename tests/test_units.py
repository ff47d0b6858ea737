"""Display formats shared by the page, the lab and the CLI."""

from kvcache_calculator.units import format_bytes, format_count, format_duration, format_percent


def test_formats():
    assert format_percent(0.5536) == "55.4 %" and format_percent(None) == "—"
    assert [format_duration(s) for s in (12.34, 600, 10800, 864000)] == ["12.3 s", "10 min", "3 h", "10 days"]
    assert [format_bytes(b) for b in (512, 131072, 3 * 2 ** 20)] == ["512 B", "128 KiB", "3 MiB"]
    assert format_count(456144) == "456,144" and format_count(0.10523) == "0.105"
