"""Benchmark: simulated requests per second of CPython time.

Run from the project root: ``python benchmarks/bench_simulate.py`` (``--quick`` for fewer
conversations). The target (the simulation issue) is at least 100,000 requests/s on the
default scenario with one instance and 16-token blocks, LRU, running requests holding their
KV (an end event per request). Also printed, side by side from the same run: requests served
instantly (``in_flight=False``, the simulator before running requests were modelled), the
per-block engine on the same scenario (what a one-operation-per-block
simulator costs), FIFO and LFU (per-block engine), random routing over 4 instances and an
offload tier. Process time (``time.process_time``) is measured, so other jobs on the machine
matter less.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.setup.resolve import resolve  # noqa: E402
from kvcache_calculator.scenario import Scenario  # noqa: E402
from kvcache_calculator.sim.simulate import Simulation  # noqa: E402

TARGET = 100_000


def measure(scenario: Scenario, conversations: int, engine: str = "auto", repeat: int = 3,
            in_flight: bool = True) -> tuple[float, int, float]:
    """Best of ``repeat`` runs: (requests/s of process time, requests simulated, token hit rate)."""
    best = 0.0
    for _ in range(repeat):
        sim = Simulation(scenario, conversations=conversations, seed=1, engine=engine, in_flight=in_flight)
        start = time.process_time()
        sim.run()
        elapsed = time.process_time() - start
        best = max(best, sim.requests_done / elapsed)
    return best, sim.requests_done, sim.result().token_hit_rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer conversations")
    args = parser.parse_args()
    n = 4_000 if args.quick else 20_000
    default = Scenario.from_dict({})
    capacity = resolve(default).capacity
    print(f"default scenario: {default.model} on {default.gpu}, block_size {default.block_size}, "
          f"capacity {capacity.capacity_tokens:,} tokens, arrival_rate {default.arrival_rate:g}/s, "
          f"turns {default.turns:g}, think {default.think_time_s:g} s")
    rows = [
        ("default, LRU segments (target)", default, n, "segments"),
        ("default, LRU segments, instant", default, n, "segments"),
        ("default, LRU per block", default, max(200, n // 20), "blocks"),
        ("default, FIFO per block", default.replace(policy="fifo"), max(200, n // 20), "auto"),
        ("default, LFU per block", default.replace(policy="lfu"), max(200, n // 20), "auto"),
        ("4 instances, random routing", default.replace(instances=4, routing="random", arrival_rate=4), n, "auto"),
        ("offload_gib=64", default.replace(offload_gib=64), n, "auto"),
    ]
    print(f"{'case':<34} {'requests':>9} {'requests/s':>11} {'token hit':>9}")
    results = {}
    for label, scenario, conversations, engine in rows:
        rate, requests, thr = measure(scenario, conversations, engine, repeat=1 if engine == "blocks" or
                                      scenario.policy != "lru" else 3, in_flight="instant" not in label)
        results[label] = rate
        print(f"{label:<34} {requests:>9,} {rate:>11,.0f} {100 * thr:>8.2f}%")
    fast = results["default, LRU segments (target)"]
    slow = results["default, LRU per block"]
    print(f"segments / per block: {fast / slow:.0f}x")
    ok = fast >= TARGET
    print(f"target {TARGET:,} requests/s: {'met' if ok else 'NOT met'} ({fast / TARGET:.2f}x)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
