#!/usr/bin/env python3
"""The lab page never freezes: the longest main-thread task during a costly simulation and a
large replay, and how well the simulation's time estimate holds (issue 12, defect 9).

    python benchmarks/bench_lab_tasks.py [--seconds 60] [--mb 50] [--baseline OTHER/dist] [--replay-only]

Builds the site (or takes ``$KVCALC_DIST``) and, in headless Chromium with the Long Tasks API
watching (every task over 50 ms, with its duration), on the lab page:

- a costly simulation: FIFO on 4 instances with random routing, 20,000 measured conversations
  (the case of the issue: 562 s, one 4.4 s task). It runs for ``--seconds``, then Cancel is
  pressed (``--repeat`` times per site, the sites taking turns): printed are the longest task, the tasks over 200 ms, the estimate the page showed
  before its work began (``<html data-sim-estimate-s>``), the progress bar's samples (one a
  second; they must not go down) and how long Cancel took;
- a short simulation run to its end (the default scenario, 1,000 conversations): the estimate
  shown at the start against the time it took;
- the replay of a generated ``--mb`` MB Mooncake-format trace (``bench_lab.generate_trace``),
  to its end.

With ``--replay-only`` only the replay is measured (``--repeat`` times per site, in turns).
With ``--baseline`` the same is measured on another checkout's built site (for example one
built from ``main``), one site after the other in the same run, for a before/after table.
Target: no task over 200 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import build  # noqa: E402
from bench_lab import built_site, generate_trace  # noqa: E402
from bench_page import CHROMIUM_ARGS, WATCH_LONG_TASKS, open_lab  # noqa: E402

COSTLY = "policy=fifo&instances=4&routing=random"
LONG_TASK_TARGET_MS = 200
LONG_TASK_MS = 50          # what the Long Tasks API reports
JOB_TIMEOUT_MS = 1_800_000


def progress_samples(page, seconds: float) -> list:
    """The job's progress bar (0-1000) once a second for ``seconds``, or until the job ends."""
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        samples.append(int(page.evaluate("document.getElementById('job-progress').value")))
        if page.evaluate("document.documentElement.dataset.job") != "running":
            break
        page.wait_for_timeout(1000)
    return samples


def estimate_shown(page) -> float | None:
    raw = page.evaluate("document.documentElement.dataset.simEstimateS")
    return float(raw) if raw else None


def costly_simulation(page, url: str, seconds: float) -> dict:
    open_lab(page, url + "#" + COSTLY)
    page.select_option("#sim-conversations", "20000")
    page.evaluate(WATCH_LONG_TASKS)
    t0 = time.perf_counter()
    page.click("#simulate")
    page.wait_for_function("document.documentElement.dataset.job === 'running'")
    # this page's estimate waits for "Run it" on a long run (a page without one just runs)
    page.wait_for_function("document.documentElement.dataset.simConfirm === 'waiting' || "
                           "document.getElementById('job-progress').value > 0", timeout=60_000)
    estimate = estimate_shown(page)
    shown_after = time.perf_counter() - t0 if estimate is not None else None
    if page.evaluate("document.documentElement.dataset.simConfirm") == "waiting":
        page.click("#job-go")
    samples = progress_samples(page, seconds)
    status = page.inner_text("#job-status")
    t0 = time.perf_counter()
    page.click("#cancel")
    page.wait_for_function("document.documentElement.dataset.job !== 'running'", timeout=60_000)
    cancel_s = time.perf_counter() - t0
    tasks = page.evaluate("window.__longTasks")
    return {"tasks": tasks, "samples": samples, "estimate_s": estimate, "shown_after": shown_after, "status": status,
            "cancel_s": cancel_s, "state": page.evaluate("document.documentElement.dataset.job")}


def finished_job(page, start) -> dict:
    page.evaluate(WATCH_LONG_TASKS)
    page.evaluate("document.documentElement.dataset.job = 'starting'")
    t0 = time.perf_counter()
    start()
    page.wait_for_function("!['starting', 'running'].includes(document.documentElement.dataset.job)",
                           timeout=JOB_TIMEOUT_MS)
    return {"tasks": page.evaluate("window.__longTasks"), "seconds": time.perf_counter() - t0,
            "state": page.evaluate("document.documentElement.dataset.job"),
            "estimate_s": estimate_shown(page)}


def measure(browser, site: Path, trace: Path | None, seconds: float, replay_only: bool = False) -> dict:
    """One costly simulation, then (with ``trace``) the short simulation and the replay;
    ``replay_only``: the replay alone."""
    server = build.start_server(site)
    context = browser.new_context(service_workers="block", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        url = server.url + "lab.html"
        if replay_only:
            open_lab(page, url)
            return {"replay": finished_job(page, lambda: page.set_input_files("#trace-file", str(trace)))}
        out = {"costly": costly_simulation(page, url, seconds)}
        if trace is not None:
            open_lab(page, url)
            page.select_option("#sim-conversations", "1000")
            out["short"] = finished_job(page, lambda: page.click("#simulate"))
            open_lab(page, url)
            out["replay"] = finished_job(page, lambda: page.set_input_files("#trace-file", str(trace)))
    finally:
        context.close()
        server.shutdown()
    return out


def line(label: str, got: dict) -> str:
    tasks = got["tasks"]
    over = sum(1 for t in tasks if t > LONG_TASK_TARGET_MS)
    longest = max(tasks, default=0.0)
    ok = "ok" if longest <= LONG_TASK_TARGET_MS else "MISSED"
    return (f"  {label:34} longest {longest:7.0f} ms, {over:3d} over {LONG_TASK_TARGET_MS} ms ({ok}), "
            f"{len(tasks):4d} over {LONG_TASK_MS} ms")


def report(name: str, runs: list, seconds: float) -> None:
    print(f"\n{name}")
    if "costly" not in runs[0]:
        for n, got in enumerate(runs, 1):
            replay = got["replay"]
            print(line(f"replay of the generated trace (run {n})", replay)
                  + f", {replay['seconds']:.1f} s, {replay['state']}")
        return
    for n, got in enumerate(runs, 1):
        costly = got["costly"]
        print(line(f"FIFO x4 random, 20,000 conv., {seconds:.0f} s (run {n})", costly))
        samples = costly["samples"]
        monotone = all(b >= a for a, b in zip(samples, samples[1:]))
        est = costly["estimate_s"]
        shown = "none" if est is None else f"{est:,.0f} s, shown {costly['shown_after']:.1f} s after the click"
        print(f"    estimate before the run: {shown}; progress {samples[0] / 10:.2f} % -> {samples[-1] / 10:.2f} % "
              f"({'never down' if monotone else 'WENT DOWN'}); cancel took {costly['cancel_s'] * 1000:.0f} ms, "
              f"state {costly['state']}")
        print(f"    status when cancelled: {costly['status']}")
    short = runs[0]["short"]
    print(line("default scenario, 1,000 conv.", short))
    est = short["estimate_s"]
    print(f"    took {short['seconds']:.1f} s; estimated {'none' if est is None else f'{est:.1f} s'}")
    replay = runs[0]["replay"]
    print(line("replay of the generated trace", replay) + f", {replay['seconds']:.1f} s, {replay['state']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the costly simulation runs (s)")
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated trace (MB, default 50)")
    parser.add_argument("--baseline", type=Path, help="another built site (its dist/) measured the same way")
    parser.add_argument("--replay-only", action="store_true", help="measure the replay alone")
    parser.add_argument("--repeat", type=int, default=2,
                        help="costly simulations per site, the sites taking turns (default 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dist = built_site(tmp)
        trace = generate_trace(tmp / "generated.jsonl", args.mb)
        print(f"generated trace: {trace.stat().st_size / 1e6:.0f} MB")
        from playwright.sync_api import sync_playwright

        from conftest import system_chromium  # noqa: PLC0415 (tests/browser, on the path below)

        sites = [("this checkout", dist)] + ([("baseline " + str(args.baseline), args.baseline)]
                                             if args.baseline else [])
        results: dict = {name: [] for name, _ in sites}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=system_chromium() or p.chromium.executable_path,
                                        args=CHROMIUM_ARGS)
            try:
                for n in range(args.repeat):          # the sites take turns: both see the same load
                    for name, site in sites:
                        if args.replay_only:
                            results[name].append(measure(browser, site, trace, args.seconds, True))
                        else:
                            results[name].append(measure(browser, site, trace if n == 0 else None, args.seconds))
            finally:
                browser.close()
    for name, runs in results.items():
        report(name, runs, args.seconds)
    print(f"\ntarget: no task over {LONG_TASK_TARGET_MS} ms")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    main()
