"""The lab's real-traffic part in a browser: a built-in trace chosen from the list (curve,
table, gap waterfall, routing chart, from the shipped summary), the same numbers as the core in
CPython, and the upload defects of issue 12 (same file twice, errors clear the old trace, the
workload link, gzip, blank files, out-of-order timestamps), on desktop and phone viewports.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from pagetools import ROOT, check_fits_screen
from test_lab_page import make_trace, open_lab, start_and_wait

from kvcache_calculator.present.real_traffic import summary_curve, summary_gap, summary_routing

pytestmark = pytest.mark.browser

SUMMARY = json.loads((ROOT / "site" / "traces" / "mooncake_conversation_trace.json").read_text())
SHOTS = Path("/tmp/l_shots")


def choose(page, name="mooncake_conversation_trace"):
    page.select_option("#trace-choice", name)
    page.wait_for_function(f"document.documentElement.dataset.trace === '{name}'")
    page.wait_for_selector("#chart-gap .bars .point", timeout=10_000)


@pytest.mark.parametrize("width,height,name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_built_in_trace_waterfall_and_routing(page, site, width, height, name):
    page.set_viewport_size({"width": width, "height": height})
    open_lab(page, site, "kv_cache_tokens=1024000")
    assert page.get_attribute("#use-workload", "hidden") is not None   # no trace yet: no link
    choose(page)
    curve = summary_curve(SUMMARY, 0.0)
    info = page.locator("#trace-info")
    assert int(info.get_attribute("data-requests")) == curve.requests
    assert float(info.get_attribute("data-ceiling")) == curve.infinite_token_hit_rate
    # the table's current configuration: the scenario's capacity per instance in blocks of 512
    # (about 1,024,000 tokens: the calculator keeps room for the requests in flight)
    current = page.locator("#trace-rows tr[data-key=current]")
    blocks = int(current.get_attribute("data-capacity-blocks"))
    assert 1900 <= blocks <= 2000
    assert page.input_value("#gap-capacity") == str(blocks)
    assert float(current.get_attribute("data-token-hit-rate")) == curve.token_hit_rate(blocks)
    gap = summary_gap(SUMMARY, 0.0, blocks)
    div = page.locator("#chart-gap")
    for key, val in gap["overall"]["parts"].items():
        assert float(div.get_attribute("data-" + key.replace("_", "-"))) == pytest.approx(val, abs=1e-12)
    assert page.locator("#gap-rows tr").count() >= 2
    rates = json.loads(page.get_attribute("#chart-routing", "data-rates"))
    assert rates == pytest.approx(summary_routing(SUMMARY, 0.0, blocks)["token_hit_rate"])
    page.wait_for_selector("#chart-routing .main-svg")
    page.wait_for_selector("#chart-reuse .main-svg")
    check_fits_screen(page, f"lab-real-{name}")
    SHOTS.mkdir(exist_ok=True)
    page.locator("#trace").screenshot(path=str(SHOTS / f"real-traffic-{name}.png"))


def test_warmup_and_fleet_change_the_split(page, site):
    open_lab(page, site, "kv_cache_tokens=5120000")
    choose(page)
    page.select_option("#gap-instances", "4")
    page.select_option("#gap-routing", "random")
    blocks = int(page.input_value("#gap-capacity"))
    want = summary_gap(SUMMARY, 0.0, blocks, 4, "random")["overall"]["parts"]
    div = page.locator("#chart-gap")
    page.wait_for_function("Number(document.querySelector('#chart-gap').dataset.routing) > 0")
    assert float(div.get_attribute("data-routing")) == pytest.approx(want["routing"], abs=1e-12)
    page.select_option("#warmup", "0.5")
    page.wait_for_function("document.querySelector('#trace-info').dataset.requests === "
                           f"'{summary_curve(SUMMARY, 0.5).requests}'")


def test_upload_defects(page, site, tmp_path):
    open_lab(page, site)
    path = make_trace(tmp_path / "a.jsonl", seed=3, conversations=60)
    for _ in range(2):      # the same file chosen twice replays twice
        page.evaluate("document.querySelector('#trace-info').dataset.requests = ''")
        assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(path))) == "done"
        assert page.get_attribute("#trace-info", "data-requests")
    assert page.get_attribute("#use-workload", "hidden") is None
    # gzip is read, not called binary
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(gz))) == "done"
    # a blank file: a clear message, and the previous trace's results are gone
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n   \n")
    assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(blank))) == "error"
    text = page.inner_text("#trace-error")
    assert "blank" in text and "bad lines" not in text
    assert page.locator("#trace-rows tr").count() == 0
    assert page.get_attribute("#use-workload", "hidden") is not None
    # out-of-order timestamps are reported
    lines = path.read_text().splitlines()
    lines[1], lines[5] = lines[5], lines[1]
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("\n".join(lines) + "\n")
    assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(shuffled))) == "done"
    assert int(page.get_attribute("#trace-info", "data-out-of-order")) >= 1
    assert "earlier than the one before" in page.inner_text("#trace-info")
    # the gap split of an upload, by replay, after an estimate
    assert page.get_attribute("#explain", "data-estimate-s")
    assert start_and_wait(page, "#explain") == "done"
    page.wait_for_selector("#chart-gap .bars .point")
    assert page.locator("#gap-rows tr").count() >= 2
