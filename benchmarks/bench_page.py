#!/usr/bin/env python3
"""Page speed: time to first result against a bare PyScript page, live-update latency, and
the lab page's responsiveness.

    python benchmarks/bench_page.py [--runs 5] [--updates 60] [--only start|updates|lab]

Builds the site into a temporary directory, adds a bare page beside it (the same vendored
PyScript + Pyodide, printing one line) and serves both from one local server. In one run it
measures, in headless Chromium:

- time to first result: navigation start to ``<html data-state="ready">`` (first results and
  charts drawn) for the page, and to the printed line for the bare page; cold (new browser
  context, empty cache) and warm (same context, second load; service workers blocked for
  both so the HTTP cache is the only cache). Target: page <= 1.3 x bare.
- first contentful paint of the page (it is readable and shows its progress bar long before
  Python is ready);
- live update: from an ``input`` event on a field to updated numbers and all four charts
  redrawn, synchronous part and to the next painted frame (two animation frames), at the top
  of the page and scrolled to the charts (desktop), and on a phone-sized viewport. Target: p95 < 100 ms. The last row checks that no
  chart was left for later (``<html data-charts>`` is not "pending");
- the lab page (``lab.html``), which runs long jobs on the main thread in short turns: the
  longest task the Long Tasks API reports while it simulates (300 and 4,000 conversations), compares
  policies and routings, and replays a trace (the public Mooncake conversation trace when
  ``../shared/traces/`` holds it, else a generated one); how long Cancel takes to stop a
  long comparison; how long a malformed, empty or binary file takes to be refused. Targets:
  no task over 200 ms, cancel within 500 ms, a refusal within 10 s. (These were bounds in the
  browser tests, which failed on a busy machine; the tests now check only what the page does.)

Prints a side-by-side table; ``--json`` prints the figures as JSON too.
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
  const mark = () => {
    if (document.documentElement && document.documentElement.dataset.state === 'ready'
        && window.__readyAt === undefined) window.__readyAt = performance.now();
  };
  new MutationObserver(mark).observe(document, {attributes: true, subtree: true,
                                                attributeFilter: ['data-state']});
})();
"""

UPDATE_JS = """async ([key, text]) => {
  const el = document.querySelector(`#scenario [name="${key}"]`);
  const before = document.getElementById('token_hit_rate').dataset.value;
  const t0 = performance.now();
  el.value = text;
  el.dispatchEvent(new Event('input', {bubbles: true}));
  const t1 = performance.now();
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const t2 = performance.now();
  await new Promise((r) => {
    const check = () => document.documentElement.dataset.charts !== 'pending' ? r() : setTimeout(check, 1);
    check();
  });
  const t3 = performance.now();
  const split = window.kvcalcTiming || {};
  return {sync: t1 - t0, frame: t2 - t0, all: t3 - t0,
          evaluate: split.evaluate_ms, render: split.render_ms,
          changed: document.getElementById('token_hit_rate').dataset.value !== before};
}"""

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
    return timing


def measure_start(browser, site_url: str, runs: int) -> dict:
    out = {"page_cold": [], "bare_cold": [], "page_warm": [], "bare_warm": [], "page_fcp": []}
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
            if name == "page" and cold["fcp"] is not None:
                out["page_fcp"].append(cold["fcp"])
    return out


def measure_updates(browser, site_url: str, count: int, scroll_to: str | None = None,
                    viewport: dict | None = None) -> dict:
    context = browser.new_context(service_workers="block",
                                  viewport=viewport or {"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site_url)
    page.wait_for_function("document.documentElement.dataset.state === 'ready'", timeout=120_000)
    page.evaluate("document.getElementById('arch-details').open = true")
    if scroll_to:
        page.evaluate("(sel) => document.querySelector(sel).scrollIntoView()", scroll_to)
        page.wait_for_timeout(300)
    sync, frame, all_drawn, evaluate_ms, render_ms, unchanged = [], [], [], [], [], 0
    for i in range(count + 5):
        key, text = EDITS[i % len(EDITS)]
        got = page.evaluate(UPDATE_JS, [key, text])
        if i < 5:
            continue  # warm-up: first calls compile code paths
        sync.append(got["sync"])
        frame.append(got["frame"])
        all_drawn.append(got["all"])
        if got.get("evaluate") is not None:
            evaluate_ms.append(got["evaluate"])
            render_ms.append(got["render"])
        unchanged += not got["changed"]
    context.close()
    if errors:
        raise SystemExit(f"page errors during updates: {errors}")
    return {"sync": sync, "frame": frame, "all": all_drawn, "evaluate": evaluate_ms, "render": render_ms,
            "unchanged": unchanged}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="cold/warm start pairs per page")
    parser.add_argument("--updates", type=int, default=60, help="live updates to time")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    parser.add_argument("--only", choices=("start", "updates", "lab"), help="run one part only")
    parser.add_argument("--cancels", type=int, default=3, help="lab: long comparisons to cancel")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        dist = build.build(Path(tmp) / "dist")
        (dist / "bare.html").write_text(BARE_HTML, encoding="utf-8")
        (dist / "bare.json").write_text(json.dumps(BARE_CONFIG), encoding="utf-8")
        server = build.start_server(dist)
        try:
            with sync_playwright() as p:
                browser = launch(p)
                start = (measure_start(browser, server.url, args.runs)
                         if args.only in (None, "start") else None)
                updates = None
                if args.only in (None, "updates"):
                    updates = {
                        "top of the page (results in view)":
                            measure_updates(browser, server.url, args.updates),
                        "scrolled to the charts":
                            measure_updates(browser, server.url, args.updates, "#charts"),
                        "phone, 390 x 844 px, scrolled to the charts":
                            measure_updates(browser, server.url, args.updates, "#charts",
                                            {"width": 390, "height": 844}),
                    }
                lab = (measure_lab(browser, server.url, Path(tmp), args.cancels)
                       if args.only in (None, "lab") else None)
                browser.close()
        finally:
            server.shutdown()
            server.server_close()

    if start is not None:
        report_start(start, args.runs)
    for where, figures in (updates or {}).items():
        report_updates(where, figures)
    if lab is not None:
        report_lab(lab)
    if args.json:
        print(json.dumps({"start_ms": start, "updates_ms": updates, "lab": lab}, indent=1))


def report_start(start: dict, runs: int) -> None:
    med = {k: statistics.median(v) for k, v in start.items() if v}
    print(f"\nTime to first result (ms, median of {runs}; min..max)")
    print(f"{'':8} {'page':>22} {'bare PyScript':>22} {'ratio':>7}  target")
    for kind in ("cold", "warm"):
        page_v, bare_v = start[f"page_{kind}"], start[f"bare_{kind}"]
        ratio = med[f"page_{kind}"] / med[f"bare_{kind}"]
        print(f"{kind:8} {med[f'page_{kind}']:8.0f} ({min(page_v):5.0f}..{max(page_v):5.0f})"
              f" {med[f'bare_{kind}']:8.0f} ({min(bare_v):5.0f}..{max(bare_v):5.0f})"
              f" {ratio:7.2f}  <= 1.30 {'ok' if ratio <= 1.3 else 'MISSED'}")
    if start["page_fcp"]:
        print(f"page first contentful paint (cold): {med['page_fcp']:.0f} ms "
              f"(form and progress bar visible; Python ready at {med['page_cold']:.0f} ms)")


def report_updates(where: str, updates: dict) -> None:
    rows = [("input -> numbers + 4 charts (sync)", "sync"),
            ("  of which Python evaluate()", "evaluate"),
            ("  of which results, links, 4 charts", "render"),
            ("... to the next painted frame", "frame"),
            ("... until no chart is pending", "all")]
    print(f"\nLive update, {where}: {len(updates['sync'])} edits (ms)")
    print(f"{'':36} {'p50':>7} {'p95':>7} {'max':>7}  target")
    for label, key in rows:
        v = updates.get(key) or []
        if not v:
            continue
        p95 = percentile(v, .95)
        target = f"  p95 < 100 {'ok' if p95 < 100 else 'MISSED'}" if key in ("frame", "all") else ""
        print(f"{label:36} {percentile(v, .5):7.1f} {p95:7.1f} {max(v):7.1f}{target}")


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
