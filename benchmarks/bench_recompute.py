"""Benchmark: the median time of one full recompute of the page.

One recompute = the scenario resolved once (``resolve``), analysed with its hit-rate table
(``table.prepare``), every suggestion and every figure dict (hit rate vs memory with 100
points, one sensitivity curve of 100 points, the tornado, a 30x30 heatmap), serialised to
JSON as the page would; ``evaluate()`` is the page's whole call (link parsing, results,
notes, suggestions, figures). Target: under 30 ms in CPython on a 2-core machine.

Run from the project root: ``python benchmarks/bench_recompute.py [--repeat N]``. Prints,
per scenario, the median of each part (each given the one shared analysis) and of the
whole, wall and CPU time (CPU time is less disturbed by other processes on a shared
machine). Then the cost of the sensitivity curve for every selectable key.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.analytic import advice as suggestions  # noqa: E402
from kvcache_calculator.analytic import sweeps  # noqa: E402
from kvcache_calculator.analytic.model import analyze_setup  # noqa: E402
from kvcache_calculator.analytic.table import prepare  # noqa: E402
from kvcache_calculator.present import figures  # noqa: E402
from kvcache_calculator.present.report import evaluate  # noqa: E402
from kvcache_calculator.scenario import Scenario  # noqa: E402
from kvcache_calculator.setup.resolve import resolve  # noqa: E402

TARGET_MS = 30.0
SCENARIOS = {
    "default (llama-3.1-8b, h100-sxm, session)": {},
    "random routing, 4 instances": {"routing": "random", "instances": "4", "arrival_rate": "4"},
    "llama-3.1-70b on 4 GPUs, 8 instances": {"model": "llama-3.1-70b", "num_gpus": "4", "instances": "8",
                                             "arrival_rate": "5", "turns": "8"},
    "fixed think time, fixed turns": {"think_dist": "fixed", "turns_dist": "fixed", "turns": "6"},
    "model does not fit": {"model": "llama-3.1-70b"},
}


def _median_ms(fn, repeat: int) -> tuple[float, float]:
    """Median (wall, CPU) milliseconds of ``fn()``; CPU time is less disturbed by other
    processes on a shared machine."""
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * statistics.median(wall), 1e3 * statistics.median(cpu)


def bench(scenario: Scenario, params: dict, repeat: int) -> dict:
    """Median milliseconds of each part and of the whole recompute."""
    analysis = prepare(resolve(scenario))
    key = sweeps.DEFAULT_KEY
    parts = {
        "resolve": lambda: resolve(scenario),
        "analysis": lambda: analyze_setup(resolve(scenario)),
        "prepare (analysis + table)": lambda: prepare(resolve(scenario)),
        "suggestions": lambda: suggestions.suggest(analysis),
        "hit_vs_memory": lambda: figures.hit_vs_memory(analysis),
        f"sensitivity({key})": lambda: figures.sensitivity(analysis, key),
        "tornado": lambda: figures.tornado(analysis),
        "heatmap 30x30": lambda: figures.heatmap(analysis),
    }
    out = {name: _median_ms(fn, repeat) for name, fn in parts.items()}

    def whole():
        a = prepare(resolve(scenario))
        doc = {"s": [s.to_dict() for s in suggestions.suggest(a)], "f": figures.all_figures(a, key)}
        return json.dumps(doc)

    out["TOTAL"] = _median_ms(whole, repeat)
    out["evaluate()"] = _median_ms(lambda: json.dumps(evaluate(params)), repeat)
    return out


def bench_keys(scenario: Scenario, repeat: int) -> dict:
    """Median milliseconds of the sensitivity figure for each selectable key."""
    analysis = prepare(resolve(scenario))
    return {k: _median_ms(lambda k=k: figures.sensitivity(analysis, k), repeat)
            for k in sweeps.available_keys(analysis)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per measurement (median)")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; median of {args.repeat} runs; target {TARGET_MS:g} ms\n")
    worst = 0.0
    for name, params in SCENARIOS.items():
        scenario = Scenario.from_dict(params)
        res = bench(scenario, params, args.repeat)
        print(name)
        print(f"  {'part':<28} {'wall':>8}    {'cpu':>8}")
        for part, (ms, cpu) in res.items():
            print(f"  {part:<28} {ms:8.2f} ms {cpu:8.2f} ms")
        total = res["evaluate()"][0]
        worst = max(worst, total)
        print(f"  {'target':<28} {TARGET_MS:8.2f} ms  ({'met' if total < TARGET_MS else 'MISSED'}; "
              f"wall ratio {total / TARGET_MS:.2f})\n")
    scenario = Scenario()
    print("sensitivity figure per key, default scenario (the page shows one at a time):")
    for key, (ms, cpu) in bench_keys(scenario, max(3, args.repeat // 4)).items():
        print(f"  {key:<28} {ms:8.2f} ms {cpu:8.2f} ms")
    scenario = Scenario.from_dict(SCENARIOS["random routing, 4 instances"])
    print("\nsensitivity figure per key, random routing over 4 instances:")
    for key, (ms, cpu) in bench_keys(scenario, max(3, args.repeat // 4)).items():
        print(f"  {key:<28} {ms:8.2f} ms {cpu:8.2f} ms")
    print(f"\nworst full recompute over the scenarios above: {worst:.2f} ms (target {TARGET_MS:g} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
