"""Benchmark: the lab page's trace replay and simulation in the browser against CPython.

Run from the project root: ``python benchmarks/bench_lab.py`` (``--mb 30`` for the size of
the generated trace, ``--conversations 4000`` for the simulation). Needs Chromium and
Playwright, and builds the site (or uses ``$KVCALC_DIST``).

Both sides run the same code the same way: ``kvcache_calculator.present.jobs`` jobs driven by
``run_for`` in 40 ms turns, the file read in 2 MiB slices. CPython runs them in this process;
the browser runs them on the lab page (Pyodide, main thread, yielding to the browser between
turns), which reports its own timing (``data-replay-s``, ``data-sim-rate``). Every
measurement is repeated (``--repeat``, default 3) and the fastest kept, on both sides, so a
first run's warm-up and the other processes of a shared machine weigh less. Printed: the
throughput on each side and the ratio browser time / CPython time (target: at most 3).
A last row runs the simulation jobs alone in Pyodide (a bare page loading the vendored
Pyodide and the package zip, no PyScript, the same ``run_for`` turns but no yielding), to separate the interpreter's speed
from the page's overhead. The generated trace is a Mooncake-format file of multi-turn conversations; the shared
``../shared/traces/mooncake_conversation_trace.jsonl`` is replayed too when present.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import build  # noqa: E402

sys.path.insert(0, str(ROOT / "tests" / "browser"))
from kvcache_calculator.present.jobs import SimulationJob, TraceJob, run_for  # noqa: E402
from kvcache_calculator.present.lab_tasks import memory_tasks  # noqa: E402
from kvcache_calculator.scenario import Scenario  # noqa: E402

SHARED_TRACE = ROOT / ".." / "shared" / "traces" / "mooncake_conversation_trace.jsonl"
SLICE = 2 * 2 ** 20
BUDGET_S = 0.04
FRAGMENT = "arrival_rate=2&think_time_s=30"
CONVERSATION_CHOICES = (300, 1000, 4000, 20000)     # the page's select


def generate_trace(path: Path, megabytes: float, seed: int = 1) -> Path:
    """A Mooncake-format trace of multi-turn chats with a shared system prompt, of about
    ``megabytes`` MB."""
    rng = random.Random(seed)
    target = megabytes * 1e6
    written = 0
    next_id = 10_000
    t = 0.0
    open_convs: list = []     # (next time, history)
    with path.open("w") as f:
        while written < target:
            t += rng.expovariate(5.0)
            if not open_convs or rng.random() < 0.35:
                history = list(range(8)) + list(range(next_id, next_id + rng.randint(1, 12)))
                next_id += 20
            else:
                history = open_convs.pop(rng.randrange(len(open_convs)))
                history = history + list(range(next_id, next_id + rng.randint(1, 6)))
                next_id += 10
            if rng.random() < 0.8 and len(history) < 200:
                open_convs.append(history)
            if len(open_convs) > 3000:
                open_convs.pop(0)
            line = json.dumps({"timestamp": int(t * 1000), "input_length": len(history) * 512 - 100,
                               "output_length": rng.randint(10, 500), "hash_ids": history}) + "\n"
            f.write(line)
            written += len(line)
    return path


def cpython_replay(path: Path) -> tuple[float, int]:
    """Seconds and requests of a TraceJob over ``path``, driven as the page drives it."""
    data = path.read_bytes()
    start = time.perf_counter()
    job = TraceJob(len(data))
    position = 0
    while not job.done:
        if not job.input_closed and job.pending_lines < 4000:
            if position >= len(data):
                job.close_input()
            else:
                job.add_bytes(data[position:position + SLICE])
                position += SLICE
        run_for(job, BUDGET_S, time.perf_counter)
    return time.perf_counter() - start, job.requests


def cpython_simulation(conversations: int) -> tuple[float, int]:
    """Seconds and requests of the page's "Simulate" (main run plus memory points)."""
    scenario = Scenario.from_fragment(FRAGMENT)
    tasks = memory_tasks(scenario, conversations=conversations, seed=1)
    start = time.perf_counter()
    job = SimulationJob(tasks)
    while not run_for(job, BUDGET_S, time.perf_counter):
        pass
    return time.perf_counter() - start, job.requests


CORE_CODE = """
import time
from kvcache_calculator.present.jobs import SimulationJob, run_for
from kvcache_calculator.present.lab_tasks import memory_tasks
from kvcache_calculator.scenario import Scenario
scenario = Scenario.from_fragment(FRAGMENT)
tasks = memory_tasks(scenario, conversations=CONVERSATIONS, seed=1)
start = time.perf_counter()
job = SimulationJob(tasks)
while not run_for(job, 0.04, time.perf_counter):
    pass
[time.perf_counter() - start, job.requests]
"""

HARNESS = """<!doctype html><html lang="en"><head><title>loading</title></head><body><script type="module">
import { loadPyodide } from "./vendor/pyodide/pyodide.mjs";
const py = await loadPyodide({indexURL: "./vendor/pyodide/"});
py.unpackArchive(await (await fetch("./kvcache_calculator.zip")).arrayBuffer(), "zip");
window.py = py; document.title = "ready";
</script></body></html>"""


class Browser:
    """The lab page and a bare Pyodide page, open side by side in one Chromium."""

    def __init__(self, playwright, dist: Path, tmp: Path, conversations: int):
        from conftest import CHROMIUM_ARGS, system_chromium  # noqa: PLC0415

        site = tmp / "site"
        shutil.copytree(dist, site)
        (site / "harness.html").write_text(HARNESS)
        self.server = build.start_server(site)
        self.browser = playwright.chromium.launch(
            executable_path=system_chromium() or playwright.chromium.executable_path, args=CHROMIUM_ARGS)
        self.lab = self.browser.new_page()
        self.lab.goto(self.server.url + "lab.html#" + FRAGMENT)
        self.lab.wait_for_function("document.documentElement.dataset.state === 'ready'", timeout=120_000)
        self.lab.select_option("#sim-conversations", str(conversations))
        self.core = self.browser.new_page()
        self.core.goto(self.server.url + "harness.html")
        self.core.wait_for_function("document.title === 'ready'", timeout=120_000)
        self.code = CORE_CODE.replace("FRAGMENT", repr(FRAGMENT)).replace("CONVERSATIONS", str(conversations))

    def _run(self, action) -> None:
        page = self.lab
        page.evaluate("document.documentElement.dataset.job = 'starting'")
        action()
        page.wait_for_function("!['starting', 'running'].includes(document.documentElement.dataset.job)",
                               timeout=900_000)
        state = page.evaluate("document.documentElement.dataset.job")
        if state != "done":
            raise RuntimeError(f"the lab page ended in state {state}: {page.inner_text('#trace-error')}")

    def simulate(self) -> tuple[float, int]:
        """The page's "Simulate this scenario": (seconds, requests)."""
        self._run(lambda: self.lab.click("#simulate"))
        rate = float(self.lab.get_attribute("html", "data-sim-rate"))
        requests = int(self.lab.get_attribute("html", "data-sim-requests"))
        return requests / rate, requests

    def replay(self, path: Path) -> tuple[float, int]:
        """The page's replay of an uploaded file: (seconds, requests)."""
        self.lab.set_input_files("#trace-file", [])
        self._run(lambda: self.lab.set_input_files("#trace-file", str(path)))
        return (float(self.lab.get_attribute("html", "data-replay-s")),
                int(self.lab.get_attribute("#trace-info", "data-requests")))

    def core_simulation(self) -> tuple[float, int]:
        """The same simulation jobs in bare Pyodide, in ``run_for`` turns without yielding."""
        seconds, requests = self.core.evaluate("(c) => window.py.runPython(c).toJs()", self.code)
        return seconds, requests

    def close(self) -> None:
        self.browser.close()
        self.server.shutdown()


def built_site(tmp: Path) -> Path:
    """The built site: ``$KVCALC_DIST`` when it holds one, else a fresh build under ``tmp``."""
    given = os.environ.get("KVCALC_DIST")
    return Path(given) if given and (Path(given) / "lab.html").exists() else build.build(tmp / "dist")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=30.0, help="size of the generated trace (MB, default 30)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the fastest is kept")
    parser.add_argument("--conversations", type=int, default=4000, choices=CONVERSATION_CHOICES,
                        help="measured conversations per simulation run (the page's choices)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dist = built_site(tmp)
        generated = generate_trace(tmp / "generated.jsonl", args.mb)
        traces = [(f"replay, generated {generated.stat().st_size / 1e6:.0f} MB trace", generated)]
        if SHARED_TRACE.exists():
            traces.insert(0, ("replay, Mooncake conversation trace (3 MB)", SHARED_TRACE))
        else:
            print(f"note: {SHARED_TRACE} not found: ../shared/traces/ is absent, replaying the generated trace only")

        from playwright.sync_api import sync_playwright

        runs: dict = {}      # (side, workload) -> [(seconds, requests)], the sides interleaved

        def record(side, name, result):
            runs.setdefault((side, name), []).append(result)

        with sync_playwright() as p:
            browser = Browser(p, dist, tmp, args.conversations)
            try:
                for _ in range(args.repeat):
                    record("cpython", "simulation", cpython_simulation(args.conversations))
                    record("browser", "simulation", browser.simulate())
                    record("core", "simulation", browser.core_simulation())
                    for name, path in traces:
                        record("cpython", name, cpython_replay(path))
                        record("browser", name, browser.replay(path))
            finally:
                browser.close()
        best = {key: min(values) for key, values in runs.items()}
        cpython = {name: best["cpython", name] for side, name in best if side == "cpython"}
        browser = {name: best["browser", name] for side, name in best if side == "browser"}
        core = best["core", "simulation"]
        sizes = {name: path.stat().st_size for name, path in traces}

    print(f"{'workload':<44} {'CPython':>22} {'browser (lab page)':>22} {'browser/CPython':>16}")
    for name in cpython:
        (c_s, c_n), (b_s, b_n) = cpython[name], browser[name]
        if name in sizes:
            unit = lambda s: f"{sizes[name] / 2 ** 20 / s:7.2f} MiB/s {c_n / s:8,.0f} r/s"  # noqa: E731
        else:
            unit = lambda s: f"{c_n / s:12,.0f} requests/s"  # noqa: E731
        same = "" if c_n == b_n else f"  (requests differ: {c_n} vs {b_n})"
        print(f"{name:<44} {unit(c_s):>22} {unit(b_s):>22} {b_s / c_s:15.2f}x{same}")
    c_s, c_n = cpython["simulation"]
    p_s, p_n = core
    print(f"{'simulation core alone (bare Pyodide, no page)':<44} {c_n / c_s:12,.0f} requests/s "
          f"{p_n / p_s:12,.0f} requests/s {p_s / c_s:15.2f}x")
    print("target: browser/CPython at most 3x")


if __name__ == "__main__":
    main()
