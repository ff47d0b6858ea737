"""The lab's reader of large uploads in Chromium: site/trace-sampler.js in a Web Worker parses
and samples the file, Python replays the sample. Forced on a small file with ``?sample=RATE``,
its curve must be the CLI's ``replay --sample RATE`` exactly (same selection, same replay)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from pagetools import check_fits_screen, new_context, wait_ready
from test_lab_page import JOB_TIMEOUT_MS, cli_replay, start_and_wait, trace_rows

from kvcache_calculator.traces.synthetic import generate_requests, mooncake_lines

pytestmark = pytest.mark.browser

SCENARIO = "model=llama-3.1-8b&kv_cache_tokens=2048000"


def open_sampled_lab(page, site, rate: float) -> None:
    page.goto(f"{site.url}lab.html?sample={rate}#{SCENARIO}")
    wait_ready(page)
    page.wait_for_function("document.documentElement.dataset.job === 'idle'")


def write_trace(path: Path, requests: int, seed: int, extra: dict | None = None) -> Path:
    lines = mooncake_lines(generate_requests(requests, seed))
    for at, text in sorted((extra or {}).items(), reverse=True):
        lines.insert(at, text)
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def test_worker_sampled_curve_is_the_clis(page, site, tmp_path):
    # 25,000 requests: past the 20,000 lines Python reads itself, so most go through the worker
    # (a line only Python reads, such as an id beyond 2**53, would keep the worker's curve at the
    # main rate alone: tests/test_trace_sampler.py checks that case)
    path = write_trace(tmp_path / "generated.jsonl.gz", 25_000, 7,
                       {21_000: "not json", 22_000: '{"timestamp": 1, "input_length": 9, "output_length": 1, '
                                                   '"hash_ids": [-5, 36028797]}'})
    open_sampled_lab(page, site, 0.05)
    page.check("#skip-bad")
    state = start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(path)))
    assert state == "done", page.inner_text("#trace-error")
    root = page.locator("html")
    assert root.get_attribute("data-reader") == "worker"
    info = page.locator("#trace-info")
    assert info.get_attribute("data-approximate") == "true"
    assert "Approximate: replayed on a 5% sample" in info.inner_text()
    assert "80% below 2,000 blocks" in info.inner_text()     # the ladder: rate per capacity
    assert "Skipped 1 malformed lines" in info.inner_text()
    rows = trace_rows(page)
    caps = [int(rows[k]["blocks"]) for k in ("p50", "p90", "p99", "p100", "current")]
    cli = cli_replay(path, "--sample", "0.05", "--skip-bad-lines",
                     "--capacity-blocks", ",".join(str(c) for c in caps))
    assert cli["approximate"] is True
    for i, key in enumerate(("p50", "p90", "p99", "p100", "current")):
        assert rows[key]["token"] == pytest.approx(cli["token_hit_rate"][i], abs=1e-12), key
        assert rows[key]["block"] == pytest.approx(cli["block_hit_rate"][i], abs=1e-12), key
    assert int(info.get_attribute("data-requests")) == cli["requests"] == 25_001
    assert float(info.get_attribute("data-ceiling")) == pytest.approx(cli["infinite_token_hit_rate"], abs=1e-12)
    assert "fitted on the first" in page.inner_text("#fit-text")
    # the gap split needs the requests in memory: the page says so for a sampled file
    assert "too large" in page.inner_text("#explain-help")


def test_worker_reports_a_bad_line_with_its_number(page, site, tmp_path):
    path = write_trace(tmp_path / "bad.jsonl", 21_000, 8, {20_500: '{"timestamp": 1, "hash_ids": [1]}'})
    open_sampled_lab(page, site, 0.1)
    state = start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(path)))
    assert state == "error"
    assert "line 20501: input_length" in page.inner_text("#trace-error")


@pytest.mark.parametrize("width, height, name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_sampled_upload_layout(browser, site, tmp_path, width, height, name):
    path = write_trace(tmp_path / "s.jsonl", 2_000, 9)
    context, watch = new_context(browser, site.origin, viewport={"width": width, "height": height})
    try:
        p = context.new_page()
        open_sampled_lab(p, site, 0.1)
        assert start_and_wait(p, None, action=lambda: p.set_input_files("#trace-file", str(path))) == "done"
        p.wait_for_selector("#chart-trace-curve .main-svg", timeout=JOB_TIMEOUT_MS)
        check_fits_screen(p, name)
        p.locator("#trace-info").scroll_into_view_if_needed()
        p.screenshot(path=str(Path("/tmp") / f"lab-sampled-{name}.png"))
        watch.check()
    finally:
        context.close()
