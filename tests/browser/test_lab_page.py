"""End-to-end tests of the lab page (site/lab.html): simulation, trace replay, cancel,
malformed files, cross-origin isolation on and off, layout, accessibility. Responsiveness
(longest tasks, cancel latency) is measured by benchmarks/bench_page.py, not asserted here.
Fixtures are in conftest.py; every request leaving the local server
and every page or console error fails a test.

Numbers are checked against the CLI / CPython on the same input: the browser runs the same
core with the same seed, so the results must be equal, not close.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pagetools import ROOT, check_fits_screen, new_context, serious_axe_violations, wait_ready

import build

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 120_000
SMALL = ("arrival_rate=0.5&input_tokens=100&output_tokens=50&system_prompt_tokens=200"
         "&think_time_s=20&turns=3")

def open_lab(page, site, fragment: str = "") -> None:
    page.goto(site.url + "lab.html" + (f"#{fragment}" if fragment else ""))
    wait_ready(page)
    page.wait_for_function("document.documentElement.dataset.job === 'idle'")


def start_and_wait(page, selector: str, *, action=None) -> str:
    """Click ``selector`` (or run ``action``), wait for the job to start and end; return
    the final job state (done, error, cancelled)."""
    page.evaluate("document.documentElement.dataset.job = 'starting'")
    if action is None:
        page.click(selector)
    else:
        action()
    page.wait_for_function("!['starting', 'running'].includes(document.documentElement.dataset.job)",
                           timeout=JOB_TIMEOUT_MS)
    return page.evaluate("document.documentElement.dataset.job")


def make_trace(path: Path, seed: int, conversations: int, *, bailian: bool = False) -> Path:
    """A small multi-turn trace (shared system prompt, growing histories)."""
    rng = random.Random(seed)
    block = 16 if bailian else 512
    records = []
    next_id, t, chat = 1000, 0.0, 0
    for _ in range(conversations):
        history, parent = [1, 2, 3], -1
        t += rng.expovariate(2.0)
        ts = t
        for turn in range(1, rng.randint(1, 6) + 1):
            new = rng.randint(1, 8)
            history = history + list(range(next_id, next_id + new))
            next_id += new
            rec = {"timestamp": ts if bailian else int(ts * 1000),
                   "input_length": len(history) * block - rng.randint(0, block - 1),
                   "output_length": rng.randint(1, 300), "hash_ids": history}
            if bailian:
                rec.update(chat_id=chat, parent_chat_id=parent, turn=turn, type="text")
                parent, chat = chat, chat + 1
            records.append((ts, json.dumps(rec)))
            ts += rng.expovariate(1 / 30)
    records.sort(key=lambda r: r[0])
    path.write_text("\n".join(text for _, text in records) + "\n")
    return path


def cli_replay(path: Path, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "kvcache_calculator", "replay", str(path), "--json", *args],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def trace_rows(page) -> dict:
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#trace-rows tr')]
        .map(tr => [tr.dataset.key, {blocks: +tr.dataset.capacityBlocks, token: +tr.dataset.tokenHitRate,
                                     block: +tr.dataset.blockHitRate}]))""")


# ---------------------------------------------------------------------------- simulation

def test_simulate_overlays_the_same_numbers_as_cpython(page, site):
    from kvcache_calculator.present.lab_tasks import memory_tasks
    from kvcache_calculator.scenario import Scenario
    from kvcache_calculator.sim.simulate import simulate

    fragment = SMALL + "&instances=2"
    open_lab(page, site, fragment)
    assert page.evaluate("window.crossOriginIsolated") is False   # as on GitHub Pages
    assert "instances=2" in page.inner_text("#scenario-text")
    back = page.get_attribute("#back-link", "href")
    assert back.startswith("./index.html#")
    assert Scenario.from_fragment(back.split("#", 1)[1]) == Scenario.from_fragment(fragment)
    page.select_option("#sim-conversations", "300")
    page.fill("#sim-seed", "7")
    assert start_and_wait(page, "#simulate") == "done"
    scenario = Scenario.from_fragment(fragment)
    expected = simulate(scenario, conversations=300, seed=7)
    got = float(page.get_attribute("#sim-token_hit_rate", "data-value"))
    assert got == expected.token_hit_rate                      # same seed, same core: equal
    low = float(page.get_attribute("#sim-token_hit_rate", "data-low"))
    high = float(page.get_attribute("#sim-token_hit_rate", "data-high"))
    assert (low, high) == expected.token_hit_rate_ci
    assert float(page.get_attribute("#sim-request_hit_rate", "data-value")) == expected.request_hit_rate
    assert float(page.get_attribute("#an-token_hit_rate", "data-value")) > 0
    assert "points" in page.inner_text("#diff-token_hit_rate")
    # the memory chart: the model's line plus one simulated point per task, with error bars
    sim = page.evaluate("""() => {
        const t = document.getElementById('chart-sim-memory').data.find(d => d.name.startsWith('Simulated'));
        return t && {x: t.x, y: t.y, err: t.error_y.array.length};}""")
    tasks = memory_tasks(scenario, conversations=300, seed=7)
    assert sim is not None and len(sim["x"]) == len(tasks) == sim["err"]
    assert round(100 * expected.token_hit_rate, 4) in sim["y"]

    # policies and routings on one chart (instances = 2, so the routings too)
    assert start_and_wait(page, "#compare") == "done"
    bars = page.evaluate("""() => document.getElementById('chart-compare').data
        .filter(d => d.type === 'bar').map(d => d.x)""")
    assert bars == [["LRU", "FIFO", "LFU"], ["session", "round robin", "random", "least loaded"]]
    # as on the calculator: zoom, pan and reset only (no "Share chart" upload to Plotly Cloud)
    titles = page.eval_on_selector_all(".modebar-btn", "els => els.map(e => e.dataset.title)")
    assert titles and set(titles) == {"Zoom", "Pan", "Reset axes"}, titles


def test_a_fifo_simulation_says_t_is_not_measured(page, site):
    """The simulator measures the characteristic time for LRU only: for FIFO it is not
    'no evictions' (a QA pass found that claim beside a 46 % hit rate)."""
    open_lab(page, site, SMALL + "&policy=fifo")
    page.select_option("#sim-conversations", "300")
    assert start_and_wait(page, "#simulate") == "done"
    assert page.inner_text("#sim-characteristic_time_s") == "not measured (LRU only)"
    assert float(page.get_attribute("#sim-token_hit_rate", "data-value")) > 0


def test_cancel_stops_a_long_simulation(page, site):
    open_lab(page, site)
    page.select_option("#sim-conversations", "20000")
    page.evaluate("document.documentElement.dataset.job = 'starting'")
    page.click("#compare")                                     # FIFO/LFU: tens of seconds
    page.wait_for_function("document.documentElement.dataset.job === 'running'")
    page.wait_for_function("document.getElementById('job-progress').value > 0", timeout=30_000)
    page.click("#cancel")
    page.wait_for_function("document.documentElement.dataset.job !== 'running'")
    assert page.evaluate("document.documentElement.dataset.job") == "cancelled"
    assert "cancelled" in page.inner_text("#job-status")
    assert page.is_enabled("#simulate") and page.is_hidden("#cancel")


# ---------------------------------------------------------------------------- traces

def test_generated_trace_curve_and_policies_match_the_cli(page, site, tmp_path):
    path = make_trace(tmp_path / "generated.jsonl", seed=3, conversations=400)
    open_lab(page, site, "model=llama-3.1-8b&kv_cache_tokens=20480")
    page.set_input_files("#trace-file", str(path))
    page.wait_for_function("document.documentElement.dataset.job !== 'idle'")
    page.wait_for_function("!['running'].includes(document.documentElement.dataset.job)", timeout=JOB_TIMEOUT_MS)
    assert page.evaluate("document.documentElement.dataset.job") == "done", page.inner_text("#trace-error")
    rows = trace_rows(page)
    caps = [rows[k]["blocks"] for k in ("p50", "p90", "p99", "p100", "current")]
    # kv_cache_tokens=20480 is the engine's pool: 20,464 tokens once vLLM's null block is out
    assert rows["current"]["blocks"] == 20464 // 512
    cli = cli_replay(path, "--capacity-blocks", ",".join(str(int(c)) for c in caps))
    curve = cli["lru_curve"]
    for pct in (50, 90, 99):
        assert rows[f"p{pct}"]["blocks"] == curve[f"capacity_blocks_for_{pct}pct_of_token_ceiling"]
    assert rows["p100"]["blocks"] == curve["capacity_blocks_for_ceiling"]
    for i, key in enumerate(("p50", "p90", "p99", "p100", "current")):
        assert rows[key]["token"] == cli["token_hit_rate"][i], key
        assert rows[key]["block"] == cli["block_hit_rate"][i], key
    info = page.locator("#trace-info")
    assert int(info.get_attribute("data-requests")) == cli["requests"]
    assert float(info.get_attribute("data-ceiling")) == cli["infinite_token_hit_rate"]
    # the curve chart, in each unit
    for unit, scale in (("tokens", 512), ("gib", 512 * 131072 / 2 ** 30), ("blocks", 1)):
        page.select_option("#curve-unit", unit)
        page.wait_for_function("([u]) => document.getElementById('chart-trace-curve').layout.xaxis.title.text"
                               ".toLowerCase().includes(u === 'gib' ? 'gib' : u)", arg=[unit])
        current_x = page.evaluate("""() => document.getElementById('chart-trace-curve').data
            .find(d => d.name === 'Current configuration').x[0]""")
        assert current_x == pytest.approx(39 * scale, rel=1e-6)
    # policies at the current capacity
    assert page.input_value("#policy-capacity") == "39"
    assert start_and_wait(page, "#compare-policies") == "done"
    for policy in ("lru", "fifo", "lfu", "belady"):
        expected = cli_replay(path, "--policy", policy, "--capacity-blocks", "39")["token_hit_rate"][0]
        assert float(page.get_attribute("#chart-trace-policies", f"data-{policy}")) == expected, policy
    # the fitted workload goes to the main page, which restores it
    gap = page.locator("#fit-rows tr[data-gap]")
    assert gap.count() >= 1
    href = page.get_attribute("#use-workload", "href")
    assert href.startswith("./index.html#") and "block_size=512" in href and "kv_cache_tokens=20480" in href
    page.click("#use-workload")
    wait_ready(page)
    fitted = dict(part.split("=", 1) for part in href.split("#", 1)[1].split("&"))
    assert page.input_value('#scenario [name="arrival_rate"]') == fitted["arrival_rate"]
    assert page.input_value('#scenario [name="block_size"]') == "512"


def replay_shared_trace(page, site, shared_dir, name: str) -> Path:
    """Replay ``../shared/traces/<name>`` in the lab (skip when absent); returns its path."""
    path = shared_dir / "traces" / name
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared/traces/ is absent")
    open_lab(page, site)
    assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(path))) == "done"
    return path


def test_shared_conversation_trace_matches_the_cli(page, site, shared_dir):
    path = replay_shared_trace(page, site, shared_dir, "mooncake_conversation_trace.jsonl")
    rows = trace_rows(page)
    keys = ("p50", "p90", "p99", "current")
    cli = cli_replay(path, "--capacity-blocks", ",".join(str(int(rows[k]["blocks"])) for k in keys))
    assert [rows[k]["token"] for k in keys] == cli["token_hit_rate"]
    assert rows["p90"]["blocks"] == cli["lru_curve"]["capacity_blocks_for_90pct_of_token_ceiling"]
    assert page.locator("#trace-info").get_attribute("data-requests") == "12031"


def test_drifting_shared_trace_gets_the_cli_s_drift_warning(page, site, shared_dir):
    # the synthetic trace drifts (docs/validation.md §7.3): the fit's text says so, as the CLI's
    path = replay_shared_trace(page, site, shared_dir, "mooncake_synthetic_trace.jsonl")
    text = page.locator("#fit-text").text_content()
    assert cli_replay(path, "--fit")["fit"]["scenario"]["diagnostics"]["drift"]["drifts"]
    assert "This trace drifts over time" in text and "describe the trace's average" in text


def test_malformed_files_get_a_clear_message(page, site, tmp_path):
    """One page, five files in a row: after each refusal the page is ready for the next."""
    good = make_trace(tmp_path / "good.jsonl", seed=1, conversations=20)
    lines = good.read_text().splitlines()
    lines[2] = '{"timestamp": 5, "input_length": "many"}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    binary = tmp_path / "image.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100)
    drop_binary = """() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array([0, 1, 2, 255, 0])], 'weird.jsonl'));
        document.getElementById('drop-zone').dispatchEvent(
            new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    open_lab(page, site)
    cases = [("bad line", bad, "line 3: input_length: got 'many'"), ("empty", empty, "empty file"),
             ("binary", binary, "binary file"), ("dropped binary", None, "binary file")]
    for name, path, expected in cases:
        if path is None:
            state = start_and_wait(page, None, action=lambda: page.evaluate(drop_binary))
        else:
            state = start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(path)))
        assert state == "error", name
        message = page.inner_text("#trace-error")
        assert page.is_visible("#trace-error") and expected in message, (name, message)
        assert ("Skip malformed lines" in message) == (name == "bad line"), message
        assert page.is_enabled("#simulate") and page.is_enabled("#trace-file")
    # the bad line, skipped on request
    page.check("#skip-bad")
    assert start_and_wait(page, None, action=lambda: page.set_input_files("#trace-file", str(bad))) == "done"
    assert page.inner_text("#trace-error") == ""
    assert page.get_attribute("#trace-info", "data-skipped") == "1"
    assert "Skipped 1 malformed lines (first: line 3" in page.inner_text("#trace-info")


# ---------------------------------------------------------------------------- isolation, layout, a11y

class IsolatedHandler(build.SiteHandler):
    """The site's handler plus the headers that make a page cross-origin isolated."""

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


@pytest.fixture(scope="module")
def isolated_site(dist_dir):
    import functools
    import http.server

    handler = type("Handler", (IsolatedHandler,), {"base": "/", "quiet": True})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(dist_dir)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    yield url
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("isolated", [True])
def test_lab_works_with_and_without_cross_origin_isolation(browser, site, isolated_site, isolated, tmp_path):
    """With COOP/COEP headers (a host that sends them); the other tests run without them and
    check ``crossOriginIsolated`` is false there."""
    url = isolated_site if isolated else site.url
    context, watch = new_context(browser, url.rstrip("/"))
    try:
        p = context.new_page()
        p.goto(url + "lab.html#" + SMALL)
        wait_ready(p)
        assert p.evaluate("window.crossOriginIsolated") is isolated
        assert p.evaluate("typeof SharedArrayBuffer !== 'undefined'") is isolated
        p.select_option("#sim-conversations", "300")
        assert start_and_wait(p, "#simulate") == "done"
        assert float(p.get_attribute("#sim-token_hit_rate", "data-value")) > 0
        path = make_trace(tmp_path / "iso.jsonl", seed=2, conversations=50)
        assert start_and_wait(p, None, action=lambda: p.set_input_files("#trace-file", str(path))) == "done"
    finally:
        context.close()
    watch.check()


def test_lab_under_a_sub_path_and_offline_from_the_service_worker(browser, sub_site):
    """As on GitHub Pages (/<repo>/): the lab loads, registers the service worker (the same
    one as the calculator), which caches it; offline, a reload still simulates."""
    context, watch = new_context(browser, sub_site.origin, service_workers="allow")
    try:
        p = context.new_page()
        p.goto(sub_site.url + "lab.html#" + SMALL)
        wait_ready(p)
        p.wait_for_function("""async () => {
            const reg = await navigator.serviceWorker.ready;
            for (const key of await caches.keys()) {
                const cache = await caches.open(key);
                if (await cache.match('lab.html') && await cache.match('lab.py')) return true;
            }
            return false;
        }""", timeout=60_000, polling=500)
        context.set_offline(True)
        p.reload()
        wait_ready(p)
        p.select_option("#sim-conversations", "300")
        assert start_and_wait(p, "#simulate") == "done"
        assert float(p.get_attribute("#sim-token_hit_rate", "data-value")) > 0
        context.set_offline(False)
    finally:
        context.close()
    watch.external.clear()   # offline requests are refused by the browser, not sent elsewhere
    watch.check()


@pytest.mark.parametrize("width,height,name", [(1280, 900, "desktop"), (390, 844, "phone")])
def test_lab_layout_fits_the_screen(shared_context, site, width, height, name, tmp_path):
    context, watch = shared_context
    p = context.new_page()
    try:
        p.set_viewport_size({"width": width, "height": height})
        open_lab(p, site, SMALL + "&instances=2")
        p.select_option("#sim-conversations", "300")
        assert start_and_wait(p, "#simulate") == "done"
        path = make_trace(tmp_path / "layout.jsonl", seed=5, conversations=100)
        assert start_and_wait(p, None, action=lambda: p.set_input_files("#trace-file", str(path))) == "done"
        for chart in ("sim-memory", "trace-curve"):
            p.wait_for_selector(f"#chart-{chart} .main-svg", timeout=10_000)
        check_fits_screen(p, f"lab-{name}")
    finally:
        p.close()
    watch.check()


def test_lab_axe_reports_no_serious_or_critical_violation(browser, site, tmp_path):
    context, watch = new_context(browser, site.origin, bypass_csp=True)
    try:
        p = context.new_page()
        open_lab(p, site, SMALL + "&bogus=1")
        path = make_trace(tmp_path / "axe.jsonl", seed=6, conversations=30)
        assert start_and_wait(p, None, action=lambda: p.set_input_files("#trace-file", str(path))) == "done"
        serious = serious_axe_violations(p)
        assert serious == [], serious
        # keyboard: the main actions are reachable and labelled
        for control in ("#sim-conversations", "#sim-seed", "#simulate", "#trace-file", "#skip-bad", "#curve-unit"):
            p.focus(control)
            assert p.evaluate("document.activeElement.matches(arguments[0])".replace("arguments[0]", repr(control)))
    finally:
        context.close()
    watch.check()
