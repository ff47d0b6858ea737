#!/usr/bin/env python3
"""Page speed: time to first result against a bare PyScript page, the page's updates on a
desktop and on a phone with a slow CPU, and the lab page's responsiveness.

    python benchmarks/bench_page.py [--runs 5] [--updates 60] [--only start|updates|lab]
                                    [--conditions desktop,phone,phone4x] [--baseline OTHER/dist]

Builds the site into a temporary directory, adds a bare page beside it (the same vendored
PyScript + Pyodide, printing one line) and serves both from one local server. In one run it
measures, in headless Chromium:

- time to the first correct number (issue 12): navigation start to the first frame that shows
  the headline number for the page's scenario (the build's prerendered numbers, or Python's:
  ``<html data-numbers>`` is "prerendered" or "python"; checked against Python's number once
  it is ready), against the bare page's start (to its printed line); cold (new browser
  context, empty cache) and warm (same context, second load; service workers blocked for
  both so the HTTP cache is the only cache). Target: <= 0.25 x the bare page.
- time to Python's first result: navigation start to ``<html data-state="ready">`` for the
  page, against the same bare page. Target: page <= 1.3 x bare.
- first contentful paint of the page (it is readable and shows its progress bar long before
  Python is ready);
- the page's updates (issue 14), one column per condition: a 1280 x 900 desktop, a 390 x 844
  phone, and that phone with the CPU throttled 4x (the DevTools protocol's
  ``Emulation.setCPUThrottlingRate``, a mid-range phone):
  - first number: a cold load to the first correct number (the prerendered one; target under
    1 s at 4x), and to Python's first numbers (``<html data-state="ready">``) with the part of
    it from the first line of main.py (the package's imports, then the first numbers); the
    runs alternate between the sites;
  - numbers after an edit: from an ``input`` event on a field (at the top of the page) to the
    next frame with the new numbers, its style and layout done (the page draws suggestions
    and charts in later tasks, after that frame). Target p95: 50 ms, 200 ms at 4x;
    with the task that evaluates it (charts.js's ``counts.evaluate_ms``, where the page has it);
  - charts in view after an edit: scrolled to the charts, a discrete edit (``input`` then
    ``change``, as a select or a committed value sends them), from the ``input`` event until
    every chart in the viewport shows the edit (its ``data-state`` is "drawn"), then the next
    frame as above. Target p95: 100 ms, 400 ms at 4x;
    and the charts in view, computed and drawn (``counts.drawn``) per edit until then. The
    charts in view are those in the viewport as the edit lays the page out (its numbers and
    the charts drawn first move the charts below them); the measure before this one, the
    charts in view *before* the edit, is printed beside it: it waited for a chart pushed out
    of view, which the page draws 400 ms later (charts.js's QUIET_MS). The edits over the
    target are listed with where each plot was, when each one showed the edit, the long
    animation frames, Python's garbage collections and the page's own steps (charts.js's
    ``counts.steps``: each chart computed and drawn, the later parts) in between;
  - longest task while typing: the Long Tasks API's longest task while values are typed key
    by key (100 ms apart) into the arrival-rate field, from the first key to the last key's
    numbers; and the charts redrawn per value typed. Target: none over 50 ms.
  ``--baseline`` measures another checkout's built site too, condition by condition in turn
  (on a busy machine both see the same load), for a before/after table.
- the lab page (``lab.html``), which runs long jobs on the main thread in short turns: the
  longest task the Long Tasks API reports while it simulates (300 and 4,000 conversations), compares
  policies and routings, and replays a trace (the public Mooncake conversation trace when
  ``../shared/traces/`` holds it, else a generated one); how long Cancel takes to stop a
  long comparison; how long a malformed, empty or binary file takes to be refused. Targets:
  no task over 200 ms, cancel within 500 ms, a refusal within 10 s. (These were bounds in the
  browser tests, which failed on a busy machine; the tests now check only what the page does.)

Prints side-by-side tables; ``--json`` prints the figures as JSON too.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402

SHARED_TRACE = ROOT / ".." / "shared" / "traces" / "mooncake_conversation_trace.jsonl"
LAB_FRAGMENT = ("arrival_rate=0.5&input_tokens=100&output_tokens=50&system_prompt_tokens=200"
                "&think_time_s=20&turns=3&instances=2")
LONG_TASK_TARGET_MS = 200
CANCEL_TARGET_MS = 500
REFUSAL_TARGET_S = 10
JOB_TIMEOUT_MS = 300_000

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-dev-shm-usage"]

BARE_HTML = """<!doctype html>
<html lang="en" data-state="loading">
<head><meta charset="utf-8"><title>bare PyScript</title>
<script type="module" src="./vendor/pyscript/core.js"></script></head>
<body><p>bare page</p>
<script type="py" config="./bare.json">
from pyscript import document
print("hello from Python")
document.documentElement.dataset.state = "ready"
</script>
</body></html>
"""
BARE_CONFIG = {"interpreter": "./vendor/pyodide/pyodide.mjs"}

READY_PROBE = """
(() => {
  const NONE = '\u2014';
  const first = () => {
    const root = document.documentElement;
    const el = document.getElementById('token_hit_rate');
    if (el && ['prerendered', 'python'].includes(root.dataset.numbers) && el.textContent !== NONE
        && getComputedStyle(el).visibility === 'visible') {
      window.__firstNumberAt = performance.now();
      window.__firstNumber = el.textContent;
      return;
    }
    requestAnimationFrame(first);
  };
  requestAnimationFrame(first);
  const mark = () => {
    if (document.documentElement && document.documentElement.dataset.state === 'ready'
        && window.__readyAt === undefined) window.__readyAt = performance.now();
  };
  new MutationObserver(mark).observe(document, {attributes: true, subtree: true,
                                                attributeFilter: ['data-state']});
})();
"""

# The numbers after an edit: from the input event to the next frame, with its style and layout
# done (a requestAnimationFrame callback that forces layout; what is left of the frame is paint
# and composite). The page schedules its later work after that frame is painted, so it is not
# counted here.
# A page that evaluates an edit in a later task (<html data-edit="pending" after the input
# event) writes its numbers in an animation frame and then fires "kvcalc:numbers" in that frame:
# the layout is forced there.
NUMBERS_JS = """async ([key, text]) => {
  const el = document.querySelector(`#scenario [name="${key}"]`);
  const before = document.getElementById('token_hit_rate').dataset.value;
  const tasks = () => (window.kvcalcCharts && window.kvcalcCharts.counts.evaluate_ms);
  const task0 = tasks();
  const t0 = performance.now();
  el.value = text;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  const t1 = performance.now();
  await new Promise((r) => {
    if (document.documentElement.dataset.edit === 'pending') {
      document.addEventListener('kvcalc:numbers', () => { void document.body.offsetHeight; r(); }, {once: true});
    } else {
      requestAnimationFrame(() => { void document.body.offsetHeight; r(); });
    }
  });
  const t2 = performance.now();
  const split = window.kvcalcTiming || {};
  return {sync: t1 - t0, numbers: t2 - t0, evaluate: split.evaluate_ms, python: split.evaluate_ms + split.render_ms,
          task: task0 === undefined ? null : tasks() - task0,
          changed: document.getElementById('token_hit_rate').dataset.value !== before};
}"""

# The charts in view after a discrete edit (an input event and its change event, as a select
# or a committed value sends them; typing is measured apart): from the input event until every
# chart that intersects the viewport shows the edit (its data-state is "drawn"; a page without
# data-state draws every chart in the input event's task, so <html data-charts> not
# "pending"), then the next frame as above. A page that evaluates the edit in a later task
# marks its charts stale there: its numbers are waited for first. Also counts the charts the
# page computed for the edit.
CHARTS_JS = """async ([key, text]) => {
  const root = document.documentElement;
  const el = document.querySelector(`#scenario [name="${key}"]`);
  const counts = () => (window.kvcalcCharts && window.kvcalcCharts.counts) || {};
  const c0 = JSON.parse(JSON.stringify(counts()));
  const inView = () => [...document.querySelectorAll('#charts .plot')].filter((p) => {
    const r = p.getBoundingClientRect();
    return r.bottom > 0 && r.top < window.innerHeight;
  });
  const shows = (p) => (p.dataset.state === undefined ? root.dataset.charts !== 'pending' : p.dataset.state === 'drawn');
  const plots = inView();
  // the charts in view as the edit lays the page out: its numbers and the charts drawn before
  // move the charts below them (a note appears, a legend wraps), so a chart in view before
  // the edit may be out of view after it (the page then draws it later, as any chart out of view)
  const done = () => inView().every(shows);
  const doneBefore = () => plots.every(shows);
  const until = (check) => new Promise((r) => {
    if (check()) { r(); return; }
    const watch = new MutationObserver(() => { if (check()) { watch.disconnect(); r(); } });
    watch.observe(root, {attributes: true, subtree: true, attributeFilter: ['data-state', 'data-charts']});
  });
  const frame = () => new Promise((r) => requestAnimationFrame(() => { void document.body.offsetHeight; r(); }));
  // the breakdown of each edit (printed for the slow ones): where each plot was, when it
  // showed the edit, the frames and Python's garbage collections in between
  const box = () => Object.fromEntries([...document.querySelectorAll('#charts .plot')].map((p) => {
    const r = p.getBoundingClientRect();
    return [p.id, [Math.round(r.top), Math.round(r.bottom)]];
  }));
  const rects0 = box();
  const drawnAt = {};
  const t0 = performance.now();
  const stamp = new MutationObserver((records) => {
    for (const m of records) {
      if (m.target.classList && m.target.classList.contains('plot') && m.target.dataset.state === 'drawn'
          && !(m.target.id in drawnAt)) drawnAt[m.target.id] = Math.round(performance.now() - t0);
    }
  });
  stamp.observe(document.getElementById('charts'), {attributes: true, subtree: true, attributeFilter: ['data-state']});
  el.value = text;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  el.dispatchEvent(new Event('change', {bubbles: true}));
  if (root.dataset.edit === 'pending') {
    await new Promise((r) => document.addEventListener('kvcalc:numbers', r, {once: true}));
  }
  const numbersAt = performance.now() - t0;
  const rects1 = box();
  await until(done);
  await frame();
  const t1 = performance.now();
  const after = inView().map((p) => p.id);
  // the measure before this one: the charts that were in view before the edit
  if (!doneBefore()) { await until(doneBefore); await frame(); }
  const t2 = performance.now();
  stamp.disconnect();
  const c1 = counts();
  const byName = {};
  for (const [k, v] of Object.entries(c1.drawn_by_name || {})) {
    const d = v - ((c0.drawn_by_name || {})[k] || 0);
    if (d) byName[k] = d;
  }
  const within = (list) => (list || []).filter((e) => e[0] + e[1] >= t0 && e[0] <= t1)
    .map((e) => [Math.round(e[0] - t0), ...e.slice(1)]);
  const gcLog = window.kvcalcGcLog ? JSON.parse(window.kvcalcGcLog()) : null;
  // charts.js's steps (computing, drawing, the later parts) in between, where the page logs them
  const steps = (c1.steps || []).filter((e) => e[1] + e[2] >= t0 && e[1] <= t1)
    .map((e) => [e[0], Math.round(e[1] - t0), Math.round(e[2])]);
  return {charts: t1 - t0, charts_before_set: t2 - t0, in_view: after.length, computed: (c1.computed || 0) - (c0.computed || 0),
          drawn: (c1.drawn || 0) - (c0.drawn || 0),
          compute_ms: (c1.compute_ms || 0) - (c0.compute_ms || 0),
          draw_ms: (c1.draw_ms || 0) - (c0.draw_ms || 0),
          detail: {in_view_before: plots.map((p) => p.id), in_view_after: after, numbers_at: Math.round(numbersAt), drawn_at: drawnAt,
                   drawn_by_name: byName, rects_before: rects0, rects_after_numbers: rects1,
                   viewport: window.innerHeight, frames: within(window.__frames),
                   gc: gcLog === null ? null : within(gcLog), steps: c1.steps ? steps : null}};
}"""

# Wait until the page has nothing left to do for the last edit: no chart near the viewport
# pending, then a frame and a short pause (the suggestions, a scroll's charts).
SETTLE_JS = """() => new Promise((r) => {
  const root = document.documentElement;
  const check = () => root.dataset.charts === 'pending' || root.dataset.edit === 'pending'
    ? setTimeout(check, 5) : requestAnimationFrame(() => setTimeout(r, 50));
  check();
})"""

# Long tasks (Long Tasks API), with their start times.
WATCH_TASKS_JS = """() => {
  window.__tasks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__tasks.push([e.startTime, e.duration]);
  }).observe({type: 'longtask'});
}"""

# Long animation frames (over 50 ms), with their start, duration and the scripts that ran
# longest in them (where they come from: Python's glue runs as pyodide's, Plotly.js as its own).
WATCH_FRAMES_JS = """() => {
  window.__frames = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      window.__frames.push([e.startTime, Math.round(e.duration), Math.round(e.renderStart ? e.startTime + e.duration - e.renderStart : 0),
        e.scripts.filter((s) => s.duration >= 5).map((s) => [(s.sourceURL || '').split('/').pop(),
          s.sourceFunctionName || s.invoker, Math.round(s.duration)])]);
    }
  }).observe({type: 'long-animation-frame'});
}"""
# Asks site/main.py to log Python's garbage collections (window.kvcalcGcLog: [start, ms,
# generation, collected]); set before the page loads, read by CHARTS_JS.
DEBUG_GC_JS = "window.kvcalcDebugGc = true;"

# Inputs cycled through for the live-update measurement (each a real change).
EDITS = [("arrival_rate", v) for v in ("0.5", "2", "4", "8", "1")] + \
        [("think_time_s", v) for v in ("30", "120", "300", "60")] + \
        [("turns", v) for v in ("3", "8", "12", "5")] + \
        [("system_prompt_tokens", v) for v in ("500", "4000", "2000")] + \
        [("gpu_mem_util", v) for v in ("0.8", "0.95", "0.9")] + \
        [("model", v) for v in ("qwen3-32b", "llama-3.1-70b", "llama-3.1-8b")] + \
        [("kv_dtype", v) for v in ("fp8", "bf16")] + \
        [("num_gpus", v) for v in ("2", "4", "1")]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def launch(playwright):
    executable = None
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            executable = candidate
            break
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


def load(context, url: str) -> dict:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(READY_PROBE)
    page.goto(url)
    page.wait_for_function("window.__readyAt !== undefined", timeout=120_000)
    timing = page.evaluate("""() => ({
        ready: window.__readyAt,
        first: window.__firstNumberAt ?? null,
        first_text: window.__firstNumber ?? null,
        final_text: (document.getElementById('token_hit_rate') || {}).textContent ?? null,
        fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime ?? null,
        progress: !!document.getElementById('load-progress'),
        marks: Object.fromEntries(performance.getEntriesByType('mark')
            .filter((m) => m.name.startsWith('kvcalc:')).map((m) => [m.name.slice(7), m.startTime])),
        resources: Object.fromEntries(performance.getEntriesByType('resource')
            .map((r) => [r.name.split('/').pop(), r.responseEnd])),
    })""")
    page.close()
    if errors:
        raise SystemExit(f"page errors on {url}: {errors}")
    check_first_number(url, timing)
    return timing


def check_first_number(url: str, timing: dict) -> None:
    """The first number shown is the one Python computes for the page (when it has one)."""
    if timing.get("first") is not None and timing["first_text"] != timing["final_text"]:
        raise SystemExit(f"{url}: the first number shown, {timing['first_text']!r}, is not "
                         f"Python's {timing['final_text']!r}")


def measure_start(browser, site_url: str, runs: int) -> dict:
    out = {"page_cold": [], "bare_cold": [], "page_warm": [], "bare_warm": [], "page_fcp": [],
           "first_cold": [], "first_warm": []}
    targets = (("page", site_url + "index.html"), ("bare", site_url + "bare.html"))
    for run in range(runs):
        order = targets if run % 2 == 0 else targets[::-1]
        for name, url in order:
            context = browser.new_context(service_workers="block")
            cold = load(context, url)
            warm = load(context, url)
            context.close()
            out[f"{name}_cold"].append(cold["ready"])
            out[f"{name}_warm"].append(warm["ready"])
            if name == "page":
                out["first_cold"].append(cold["first"])
                out["first_warm"].append(warm["first"])
            if name == "page" and cold["fcp"] is not None:
                out["page_fcp"].append(cold["fcp"])
    return out


#: The side-by-side table's columns: label, viewport, CPU slow-down (1: none; 4: a mid-range
#: phone, by the DevTools protocol's Emulation.setCPUThrottlingRate).
CONDITIONS = {
    "desktop": ("desktop", {"width": 1280, "height": 900}, 1),
    "phone": ("phone", {"width": 390, "height": 844}, 1),
    "phone4x": ("phone, CPU/4", {"width": 390, "height": 844}, 4),
}
#: Values typed, key by key, into the arrival-rate field (Control+A first), and the pause
#: between keys: a fast typist.
TYPED = ("0.75", "12.5", "3", "1.25", "40", "2")
KEY_DELAY_MS = 100
#: Targets (issue 14), unthrottled and at 4x: numbers p95, charts in view p95, longest task;
#: the first number (median of the cold loads; issue 14 sets it at 4x only).
TARGETS = {"numbers": (50, 200), "charts": (100, 400), "typing": (50, 50), "first_number": (1000, 1000)}
#: The first correct number against the bare PyScript page's start (issue 12).
FIRST_RATIO_TARGET = 0.25


def throttled_page(context, rate: int):
    """A new page of ``context`` whose CPU runs ``rate`` times slower (1: not throttled)."""
    page = context.new_page()
    if rate != 1:
        context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": rate})
    return page


def open_page(browser, site_url: str, viewport: dict, rate: int):
    context = browser.new_context(service_workers="block", viewport=viewport)
    page = throttled_page(context, rate)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(DEBUG_GC_JS)
    page.goto(site_url)
    page.wait_for_function("document.documentElement.dataset.state === 'ready'", timeout=300_000)
    page.evaluate("document.getElementById('arch-details').open = true")
    page.evaluate(WATCH_FRAMES_JS)
    page.evaluate(SETTLE_JS)
    return context, page, errors


def first_number(browser, site_url: str, viewport: dict, rate: int) -> tuple[float, float, float]:
    """A cold load: navigation start to the first correct number (prerendered), to Python's
    first numbers (``<html data-state="ready">``), and the part of the latter from main.py's
    start (its first line) to those numbers."""
    context = browser.new_context(service_workers="block", viewport=viewport)
    page = throttled_page(context, rate)
    page.add_init_script(READY_PROBE)
    page.goto(site_url)
    page.wait_for_function("window.__readyAt !== undefined", timeout=300_000)
    ready, main_start, first = page.evaluate("""() => [window.__readyAt,
        performance.getEntriesByName('kvcalc:main-start')[0].startTime, window.__firstNumberAt ?? null]""")
    check_first_number(site_url, page.evaluate("""() => ({first: window.__firstNumberAt ?? null,
        first_text: window.__firstNumber, final_text: document.getElementById('token_hit_rate').textContent})"""))
    context.close()
    return (ready if first is None else first), ready, ready - main_start


def edits(count: int, script: str, page) -> list[dict]:
    """``count`` edits (after 5 to warm up) timed by ``script``, the page settled between."""
    got = []
    for i in range(count + 5):
        key, text = EDITS[i % len(EDITS)]
        result = {"edit": f"{key}={text}", **page.evaluate(script, [key, text])}
        page.evaluate(SETTLE_JS)
        if i >= 5:
            got.append(result)
    return got


LAST_NUMBERS_JS = """() => new Promise((r) => {
  const check = () => document.documentElement.dataset.edit === 'pending'
    ? setTimeout(check, 5) : requestAnimationFrame(() => r(performance.now()));
  check();
})"""
DRAWN_JS = "() => (window.kvcalcCharts && window.kvcalcCharts.counts.drawn) || 0"


def typing(page) -> dict:
    """Type :data:`TYPED` into the arrival-rate field, key by key: the long tasks that start
    while typing (from the first key to the last key's numbers), and the charts redrawn per
    value typed (until the page is settled after it)."""
    page.evaluate(WATCH_TASKS_JS)
    field = page.locator('#scenario [name="arrival_rate"]')
    during, redraws = [], []
    for text in TYPED:
        field.focus()
        page.keyboard.press("Control+A")
        page.evaluate(SETTLE_JS)
        t0, drawn = page.evaluate("performance.now()"), page.evaluate(DRAWN_JS)
        page.keyboard.type(text, delay=KEY_DELAY_MS)
        t1 = page.evaluate(LAST_NUMBERS_JS)
        during += [d for start, d in page.evaluate("window.__tasks") if t0 <= start <= t1]
        page.evaluate(SETTLE_JS)
        redraws.append(page.evaluate(DRAWN_JS) - drawn)
    return {"longest": max(during, default=0.0), "over_50": len(during), "keys": sum(map(len, TYPED)),
            "redraws": statistics.mean(redraws)}


def measure_condition(browser, site_url: str, viewport: dict, rate: int, updates: int) -> dict:
    """One column of the table, but the first number: numbers and charts after an edit, typing."""
    out = {}
    context, page, errors = open_page(browser, site_url, viewport, rate)
    numbers = edits(updates, NUMBERS_JS, page)
    out["numbers"] = [r["numbers"] for r in numbers]
    out["sync"] = [r["sync"] for r in numbers]
    out["evaluate"] = [r["evaluate"] for r in numbers if r.get("evaluate") is not None]
    out["python"] = [r["python"] for r in numbers if r.get("python") is not None]
    out["task"] = [r["task"] for r in numbers if r.get("task") is not None]
    out["unchanged"] = sum(not r["changed"] for r in numbers)
    out["typing"] = typing(page)
    page.evaluate("document.getElementById('charts').scrollIntoView()")
    page.evaluate(SETTLE_JS)
    charts = edits(updates, CHARTS_JS, page)
    out["charts"] = [r["charts"] for r in charts]
    out["charts_before_set"] = [r["charts_before_set"] for r in charts]
    for key in ("in_view", "computed", "drawn", "compute_ms", "draw_ms"):
        out[f"charts_{key}"] = statistics.mean(r[key] for r in charts)
    limit = TARGETS["charts"][rate != 1]
    out["slow_edits"] = [{"edit": r["edit"], "charts": round(r["charts"]),
                          "charts_before_set": round(r["charts_before_set"]), **r["detail"]}
                         for r in charts if max(r["charts"], r["charts_before_set"]) > limit]
    gcs = [r["detail"]["gc"] for r in charts if r["detail"]["gc"] is not None]
    out["gc_per_edit"] = statistics.mean(len(g) for g in gcs) if gcs else None
    state = page.evaluate("window.kvcalcGcState ? JSON.parse(window.kvcalcGcState()) : null")
    # Python's collections by generation from main.py's start() to the end of the edits
    out["gc_collections"] = None if state is None else [
        now["collections"] - then["collections"] for now, then in zip(state["stats"], state["stats_at_start"])]
    context.close()
    if errors:
        raise SystemExit(f"page errors during updates: {errors}")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold/warm start pairs per page")
    parser.add_argument("--updates", type=int, default=60, help="live updates to time")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--only", help="run these parts only (comma-separated: start, updates, lab)")
    parser.add_argument("--cancels", type=int, default=3, help="lab: long comparisons to cancel")
    parser.add_argument("--conditions", default="desktop,phone,phone4x",
                        help="updates: the table's columns, of " + ", ".join(CONDITIONS))
    parser.add_argument("--first-runs", type=int, default=3, help="updates: cold loads per column")
    parser.add_argument("--baseline", type=Path,
                        help="updates: also measure this built site (another checkout's dist/), "
                             "condition by condition beside this one")
    args = parser.parse_args(argv)
    parts = set((args.only or "start,updates,lab").split(","))
    if not parts <= {"start", "updates", "lab"}:
        parser.error(f"--only: unknown part(s) {sorted(parts - {'start', 'updates', 'lab'})}")

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        dist = build.build(Path(tmp) / "dist")
        (dist / "bare.html").write_text(BARE_HTML, encoding="utf-8")
        (dist / "bare.json").write_text(json.dumps(BARE_CONFIG), encoding="utf-8")
        server = build.start_server(dist)
        sites = {"this checkout": server.url}
        base_server = None
        if args.baseline and "updates" in parts:
            base_server = build.start_server(args.baseline)
            sites["baseline"] = base_server.url
        try:
            with sync_playwright() as p:
                browser = launch(p)
                start = (measure_start(browser, server.url, args.runs)
                         if "start" in parts else None)
                updates = None
                if "updates" in parts:
                    updates = {}
                    # condition by condition, the sites in turn (cold loads alternating): a
                    # busy machine weighs on both
                    for name in args.conditions.split(","):
                        _label, viewport, rate = CONDITIONS[name]
                        print(f"measuring: {name}", file=sys.stderr, flush=True)
                        firsts = {site: [] for site in sites}
                        for run in range(args.first_runs):
                            for site in (list(sites) if run % 2 == 0 else list(sites)[::-1]):
                                firsts[site].append(first_number(browser, sites[site], viewport, rate))
                        for site, url in sites.items():
                            updates[f"{name}|{site}"] = {
                                "first_number": [first for first, _, _ in firsts[site]],
                                "python_ready": [ready for _, ready, _ in firsts[site]],
                                "main_py": [part for _, _, part in firsts[site]],
                                **measure_condition(browser, url, viewport, rate, args.updates)}
                lab = (measure_lab(browser, server.url, Path(tmp), args.cancels)
                       if "lab" in parts else None)
                browser.close()
        finally:
            for running in (server, base_server):
                if running is not None:
                    running.shutdown()
                    running.server_close()

    if start is not None:
        report_start(start, args.runs)
    if updates:
        report_updates(updates)
    if lab is not None:
        report_lab(lab)
    if args.json:
        print(json.dumps({"start_ms": start, "updates_ms": updates, "lab": lab}, indent=1))


def report_start(start: dict, runs: int) -> None:
    med = {k: statistics.median(v) for k, v in start.items() if v}
    print(f"\nTime to Python's first result (ms, median of {runs}; min..max)")
    print(f"{'':8} {'page':>22} {'bare PyScript':>22} {'ratio':>7}  target")
    for kind in ("cold", "warm"):
        page_v, bare_v = start[f"page_{kind}"], start[f"bare_{kind}"]
        ratio = med[f"page_{kind}"] / med[f"bare_{kind}"]
        print(f"{kind:8} {med[f'page_{kind}']:8.0f} ({min(page_v):5.0f}..{max(page_v):5.0f})"
              f" {med[f'bare_{kind}']:8.0f} ({min(bare_v):5.0f}..{max(bare_v):5.0f})"
              f" {ratio:7.2f}  <= 1.30 {'ok' if ratio <= 1.3 else 'MISSED'}")
    print(f"\nFirst correct number (prerendered) against the bare page's start (ms, median of {runs})")
    for kind in ("cold", "warm"):
        firsts = [v for v in start[f"first_{kind}"] if v is not None]
        if not firsts:
            print(f"{kind:8} no prerendered number seen")
            continue
        ratio = statistics.median(firsts) / med[f"bare_{kind}"]
        print(f"{kind:8} {statistics.median(firsts):8.0f} ({min(firsts):5.0f}..{max(firsts):5.0f})"
              f" {med[f'bare_{kind}']:8.0f} {ratio:7.2f}  <= {FIRST_RATIO_TARGET:.2f} "
              f"{'ok' if ratio <= FIRST_RATIO_TARGET else 'MISSED'}")
    if start["page_fcp"]:
        print(f"page first contentful paint (cold): {med['page_fcp']:.0f} ms "
              f"(form and progress bar visible; Python ready at {med['page_cold']:.0f} ms)")


def report_updates(updates: dict) -> None:
    """The side-by-side table: a column per condition (and site, with a baseline)."""
    columns = list(updates)
    sites = list(dict.fromkeys(c.split("|")[1] for c in columns))
    width = 17

    def cond(column: str) -> str:
        return column.split("|")[0]

    def cell(column: str, key: str) -> str:
        v = updates[column].get(key) or []
        return f"{percentile(v, .5):.0f} / {percentile(v, .95):.0f}" if v else "-"

    def verdict(key: str, p95: dict) -> str:
        """Against the targets, for this checkout's columns."""
        mine = [c for c in columns if c.endswith("|" + sites[0])]
        limit = {c: TARGETS[key][CONDITIONS[cond(c)][2] != 1] for c in mine}
        ok = all(p95[c] <= limit[c] for c in mine)
        return f"{' / '.join(dict.fromkeys(str(v) for v in limit.values()))} {'ok' if ok else 'MISSED'}"

    first = updates[columns[0]]
    print(f"\nPage speed (ms; p50 / p95 over {len(first['numbers'])} edits; first number: median of "
          f"{len(first['first_number'])} cold loads; throttled with Emulation.setCPUThrottlingRate)")
    print(f"{'':44}" + "".join(f"{CONDITIONS[cond(c)][0]:>{width}}" for c in columns))
    if len(sites) > 1:
        print(f"{'':44}" + "".join(f"{c.split('|')[1]:>{width}}" for c in columns))
    for label, key in (("first number (cold load, median)", "first_number"),
                       ("Python's first numbers (cold load, median)", "python_ready"),
                       ("  of which main.py: imports to numbers", "main_py")):
        row = f"{label:44}" + "".join(f"{statistics.median(updates[c][key]):>{width}.0f}" for c in columns)
        if key == "first_number":
            row += "   target " + verdict(key, {c: statistics.median(updates[c][key]) for c in columns})
        print(row)
    for label, key, target in (("numbers after an edit", "numbers", "numbers"),
                               ("  input event task (sync)", "sync", None),
                               ("  evaluation task (one per edit)", "task", None),
                               ("  Python: evaluate + render", "python", None),
                               ("    of which evaluate", "evaluate", None),
                               ("charts in view after an edit", "charts", "charts"),
                               ("  the charts in view before it (old measure)", "charts_before_set", None)):
        row = f"{label:44}" + "".join(f"{cell(c, key):>{width}}" for c in columns)
        if target:
            row += "   target p95 " + verdict(target, {c: percentile(updates[c][key], .95) for c in columns})
        print(row)
    print(f"{'  charts in view / computed / drawn per edit':44}" + "".join(
        f"{updates[c]['charts_in_view']:>{width - 12}.1f} / {updates[c]['charts_computed']:.1f} / "
        f"{updates[c].get('charts_drawn', 0):<3.1f}" for c in columns))
    print(f"{'  per chart: Python / Plotly.js (mean)':44}" + "".join(
        (f"{updates[c]['charts_compute_ms'] / updates[c]['charts_computed']:>{width - 6}.1f} / "
         f"{updates[c]['charts_draw_ms'] / updates[c]['charts_computed']:<3.0f}")
        if updates[c]["charts_computed"] else f"{'-':>{width}}" for c in columns))
    typed = {c: updates[c]["typing"] for c in columns}
    print(f"{'longest task while typing (tasks > 50 ms)':44}" + "".join(
        f"{typed[c]['longest']:>{width - 5}.0f} ({typed[c]['over_50']:>2})" for c in columns)
        + "   target " + verdict("typing", {c: typed[c]["longest"] for c in columns}))
    print(f"{'  charts redrawn per value typed (mean)':44}" + "".join(
        f"{typed[c].get('redraws', 0):>{width}.1f}" for c in columns))
    for c in columns:
        slow = updates[c].get("slow_edits") or []
        gc_rate = updates[c].get("gc_per_edit")
        print(f"\n{c}: {len(slow)} of {len(updates[c]['charts'])} edits over the charts target by either measure"
              + ("" if gc_rate is None else f"; Python garbage collections per timed edit (mean) {gc_rate:.2f},"
                 f" by generation from start-up to the last edit {updates[c]['gc_collections']}"))
        for r in slow:
            print(f"  {r['edit']}: {r['charts']} ms ({r['charts_before_set']} ms for the charts in view before it);"
                  f" numbers at {r['numbers_at']}; in view before {r['in_view_before']}, after {r['in_view_after']};"
                  f" drawn at {r['drawn_at']} ({r['drawn_by_name']}); viewport {r['viewport']}")
            print(f"    plots before {r['rects_before']}\n    after numbers {r['rects_after_numbers']}")
            print(f"    long frames [start, ms, render ms, scripts] {r['frames']}; gc {r['gc']}")
            if r.get("steps") is not None:
                print(f"    page steps [what, start, ms] {r['steps']}")
    unchanged = {c: updates[c]["unchanged"] for c in columns if updates[c]["unchanged"]}
    if unchanged:
        print(f"note: edits that left the token hit rate unchanged: {unchanged}")


# ---------------------------------------------------------------------------- the lab page

WATCH_LONG_TASKS = """() => {
    window.__longTasks = [];
    new PerformanceObserver((list) => {
        for (const e of list.getEntries()) window.__longTasks.push(e.duration);
    }).observe({type: 'longtask'});
}"""

CANCEL_JS = """() => new Promise((resolve) => {
    const root = document.documentElement;
    const t0 = performance.now();
    new MutationObserver(() => {
        if (root.dataset.job !== 'running') resolve(performance.now() - t0);
    }).observe(root, {attributes: true, attributeFilter: ['data-job']});
    document.getElementById('cancel').click();
})"""


def generate_trace(path: Path, conversations: int = 3000, seed: int = 3) -> Path:
    """A Mooncake-format trace of multi-turn chats sharing a 3-block system prompt."""
    rng = random.Random(seed)
    records, next_id, t = [], 1000, 0.0
    for _ in range(conversations):
        history = [1, 2, 3]
        t += rng.expovariate(2.0)
        ts = t
        for _turn in range(rng.randint(1, 6)):
            new = rng.randint(1, 8)
            history = history + list(range(next_id, next_id + new))
            next_id += new
            records.append((ts, json.dumps({"timestamp": int(ts * 1000),
                                            "input_length": len(history) * 512 - rng.randint(0, 511),
                                            "output_length": rng.randint(1, 300), "hash_ids": history})))
            ts += rng.expovariate(1 / 30)
    records.sort(key=lambda r: r[0])
    path.write_text("\n".join(text for _, text in records) + "\n")
    return path


def open_lab(page, url: str) -> None:
    page.goto(url)
    page.wait_for_function("document.documentElement.dataset.state !== 'loading'", timeout=120_000)
    page.wait_for_function("document.documentElement.dataset.job === 'idle'")


def run_job(page, start) -> tuple[str, float]:
    """Start a job with ``start()`` and wait for its end: (final state, wall seconds)."""
    page.evaluate("document.documentElement.dataset.job = 'starting'")
    t0 = time.perf_counter()
    start()
    page.wait_for_function("!['starting', 'running'].includes(document.documentElement.dataset.job)",
                           timeout=JOB_TIMEOUT_MS)
    return page.evaluate("document.documentElement.dataset.job"), time.perf_counter() - t0


def longest_task(page, start) -> dict:
    """Run one job while the Long Tasks API watches: the longest main-thread task (ms)."""
    page.evaluate(WATCH_LONG_TASKS)
    state, seconds = run_job(page, start)
    tasks = page.evaluate("window.__longTasks")
    return {"state": state, "seconds": seconds, "max_ms": max(tasks, default=0.0), "count": len(tasks)}


def measure_lab(browser, site_url: str, workdir: Path, cancels: int) -> dict:
    """The lab's responsiveness: longest tasks per job, cancel latency, time to refuse bad files."""
    context = browser.new_context(service_workers="block", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    lab_url = site_url + "lab.html"
    out: dict = {"long_tasks": {}, "cancel_ms": [], "refusal_s": {}}

    open_lab(page, lab_url + "#" + LAB_FRAGMENT)
    page.select_option("#sim-conversations", "300")
    page.fill("#sim-seed", "7")
    out["long_tasks"]["simulate (300 conversations, 2 instances)"] = longest_task(
        page, lambda: page.click("#simulate"))
    out["long_tasks"]["compare policies and routings"] = longest_task(page, lambda: page.click("#compare"))
    open_lab(page, lab_url)
    page.select_option("#sim-conversations", "4000")
    out["long_tasks"]["simulate (default scenario, 4,000 conversations)"] = longest_task(
        page, lambda: page.click("#simulate"))

    if SHARED_TRACE.is_file():
        trace, label = SHARED_TRACE, "replay the Mooncake conversation trace"
    else:
        print(f"note: {SHARED_TRACE} not found: ../shared/traces/ is absent, replaying a generated trace")
        trace, label = generate_trace(workdir / "generated.jsonl"), "replay a generated trace"
    open_lab(page, lab_url)
    out["long_tasks"][label] = longest_task(page, lambda: page.set_input_files("#trace-file", str(trace)))

    for _ in range(cancels):
        open_lab(page, lab_url)
        page.select_option("#sim-conversations", "20000")
        page.evaluate("document.documentElement.dataset.job = 'starting'")
        page.click("#compare")                                   # FIFO/LFU: tens of seconds
        page.wait_for_function("document.documentElement.dataset.job === 'running'")
        page.wait_for_function("document.getElementById('job-progress').value > 0", timeout=60_000)
        out["cancel_ms"].append(page.evaluate(CANCEL_JS))
        if page.evaluate("document.documentElement.dataset.job") != "cancelled":
            raise SystemExit("the lab did not report a cancelled job")

    good = generate_trace(workdir / "good.jsonl", conversations=20, seed=1).read_text().splitlines()
    good[2] = '{"timestamp": 5, "input_length": "many"}'
    bad = workdir / "bad.jsonl"
    bad.write_text("\n".join(good) + "\n")
    empty = workdir / "empty.jsonl"
    empty.write_bytes(b"")
    binary = workdir / "image.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100)
    open_lab(page, lab_url)
    for name, path in (("a malformed line", bad), ("an empty file", empty), ("a binary file", binary)):
        state, seconds = run_job(page, lambda: page.set_input_files("#trace-file", str(path)))
        if state != "error":
            raise SystemExit(f"the lab accepted the {name}")
        out["refusal_s"][name] = seconds
    context.close()
    if errors:
        raise SystemExit(f"page errors on the lab: {errors}")
    return out


def report_lab(lab: dict) -> None:
    print("\nLab page responsiveness")
    print(f"{'':52} {'longest task':>12} {'tasks > 50 ms':>13} {'job':>8}  target")
    for label, got in lab["long_tasks"].items():
        ok = "ok" if got["max_ms"] <= LONG_TASK_TARGET_MS else "MISSED"
        print(f"{label:52} {got['max_ms']:9.0f} ms {got['count']:13d} {got['seconds']:6.1f} s"
              f"  <= {LONG_TASK_TARGET_MS} ms {ok}")
    if lab["cancel_ms"]:
        worst = max(lab["cancel_ms"])
        print(f"{'cancel a long comparison (median / max of ' + str(len(lab['cancel_ms'])) + ')':52} "
              f"{statistics.median(lab['cancel_ms']):6.0f} / {worst:.0f} ms"
              f"  <= {CANCEL_TARGET_MS} ms {'ok' if worst <= CANCEL_TARGET_MS else 'MISSED'}")
    for name, seconds in lab["refusal_s"].items():
        print(f"{'refuse ' + name:52} {seconds:9.2f} s"
              f"  <= {REFUSAL_TARGET_S} s {'ok' if seconds <= REFUSAL_TARGET_S else 'MISSED'}")


if __name__ == "__main__":
    main()
