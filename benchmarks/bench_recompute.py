"""Benchmark: the median time of one full recompute of the page.

One recompute = the analytic results, every suggestion and every figure dict (hit rate vs
memory with 100 points, one sensitivity curve of 100 points, the tornado, a 30x30 heatmap),
serialised to JSON as the page would. Target: under 30 ms in CPython on a 2-core machine.

Run from the project root: ``python benchmarks/bench_recompute.py [--repeat N]``. Prints,
per scenario, the median of each part and of the whole, two ways: each part resolving the
scenario on its own (how ``report.evaluate`` calls them) and all parts sharing one
``sensitivity.prepare``. Then the cost of the sensitivity curve for every selectable key.
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

from kvcache_calculator.present import figures

from kvcache_calculator.analytic import sensitivity

from kvcache_calculator.analytic import advice as suggestions  # noqa: E402
from kvcache_calculator.analytic.model import analyze  # noqa: E402
from kvcache_calculator.setup.capacity import compute_capacity, resolve_gpu, resolve_model  # noqa: E402
from kvcache_calculator.scenario import Scenario  # noqa: E402

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


def _analysis(scenario):
    arch = resolve_model(scenario)
    return analyze(scenario, compute_capacity(scenario, arch, resolve_gpu(scenario)), arch)


def bench(scenario: Scenario, repeat: int) -> dict:
    """Median milliseconds of each part and of the whole recompute."""
    result = _analysis(scenario)
    key = sensitivity.DEFAULT_KEY
    parts = {
        "analysis": lambda: _analysis(scenario),
        "suggestions": lambda: suggestions.suggest(scenario, result),
        "hit_vs_memory": lambda: figures.hit_vs_memory(scenario, result),
        f"sensitivity({key})": lambda: figures.sensitivity(scenario, key, result=result),
        "tornado": lambda: figures.tornado(scenario, result=result),
        "heatmap 30x30": lambda: figures.heatmap(scenario, result=result),
    }
    out = {name: _median_ms(fn, repeat) for name, fn in parts.items()}

    def separate():
        r = _analysis(scenario)
        doc = {"s": [s.to_dict() for s in suggestions.suggest(scenario, r)],
               "a": figures.hit_vs_memory(scenario, r), "b": figures.sensitivity(scenario, key, result=r),
               "c": figures.tornado(scenario, result=r), "d": figures.heatmap(scenario, result=r)}
        return json.dumps(doc)

    def shared():
        r = _analysis(scenario)
        prep = sensitivity.prepare(scenario, r)
        doc = {"s": [s.to_dict() for s in suggestions.suggest(scenario, r, prep=prep)],
               "a": figures.hit_vs_memory(scenario, prep=prep), "b": figures.sensitivity(scenario, key, prep=prep),
               "c": figures.tornado(scenario, prep=prep), "d": figures.heatmap(scenario, prep=prep)}
        return json.dumps(doc)

    out["TOTAL, parts separate"] = _median_ms(separate, repeat)
    out["TOTAL, one shared prepare"] = _median_ms(shared, repeat)
    return out


def bench_keys(scenario: Scenario, repeat: int) -> dict:
    """Median milliseconds of the sensitivity figure for each selectable key."""
    result = _analysis(scenario)
    prep = sensitivity.prepare(scenario, result)
    return {k: _median_ms(lambda k=k: figures.sensitivity(scenario, k, prep=prep), repeat)
            for k in sensitivity.available_keys(scenario, prep=prep)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="runs per measurement (median)")
    args = parser.parse_args(argv)
    print(f"Python {sys.version.split()[0]}; median of {args.repeat} runs; target {TARGET_MS:g} ms\n")
    worst = 0.0
    for name, params in SCENARIOS.items():
        scenario = Scenario.from_dict(params)
        res = bench(scenario, args.repeat)
        print(name)
        print(f"  {'part':<28} {'wall':>8}    {'cpu':>8}")
        for part, (ms, cpu) in res.items():
            print(f"  {part:<28} {ms:8.2f} ms {cpu:8.2f} ms")
        total = res["TOTAL, parts separate"][0]
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
