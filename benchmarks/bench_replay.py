"""Benchmark: one-pass LRU curve against 100 plain per-capacity replays (vLLM's block pool for
engine semantics, a plain LRU for independent), and the memory of a replay over a generated
1,000,000-request trace.

Run from the project root: ``python benchmarks/bench_replay.py`` (``--quick`` for a smaller
memory run; the full one replays 1,000,000 requests under tracemalloc, which slows Python
down many times: about 7 minutes on a busy 2-core machine). Reads ``../shared/traces/mooncake_conversation_trace.jsonl``; skips the speed
part with a message when it is absent. Prints both timings, their ratio, and whether the
numbers agree exactly.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.traces.replay import LRUCurveReplay, last_block_tokens  # noqa: E402
from kvcache_calculator.traces.readers import Request, read_trace  # noqa: E402
from kvcache_calculator.traces.vllm_pool import replay_vllm  # noqa: E402

TRACE = ROOT / ".." / "shared" / "traces" / "mooncake_conversation_trace.jsonl"
BLOCK_SIZE = 512


def plain_lru(requests, capacity_blocks: int) -> tuple:
    """The plain way for ``independent`` semantics: one OrderedDict LRU at one capacity, every
    block on its own; returns (block hits, token hits)."""
    cache: OrderedDict = OrderedDict()
    bs = BLOCK_SIZE
    block_hits = token_hits = 0
    for req in requests:
        ids = req.hash_ids
        n = len(ids)
        lastt = last_block_tokens(req.input_length, n, bs)
        for i, b in enumerate(ids):
            if b in cache:
                cache.move_to_end(b)
                block_hits += 1
                token_hits += bs if i < n - 1 else lastt
            else:
                cache[b] = None
                if len(cache) > capacity_blocks:
                    cache.popitem(last=False)
    return block_hits, token_hits


def plain_pool(requests, capacity_blocks: int) -> tuple:
    """The plain way for ``engine`` semantics: vLLM's block pool at one capacity, block for
    block (:class:`~kvcache_calculator.traces.vllm_pool.VLLMBlockPool`, the reference the
    one-pass curve follows); returns (block hits, token hits)."""
    stats = replay_vllm(requests, capacity_blocks, BLOCK_SIZE)
    return stats.hit_blocks, stats.hit_tokens


def bench_speed(semantics: str, num_capacities: int = 100) -> None:
    with TRACE.open() as f:
        requests = list(read_trace(f, "mooncake"))
    refs = sum(len(r.hash_ids) for r in requests)
    distinct = len({b for r in requests for b in r.hash_ids})
    # 100 capacities spread on a log scale up to the distinct-block count, from 10 blocks; for
    # engine semantics from the smallest pool that holds every request (vLLM refuses a prompt
    # longer than its pool, which the one-pass curve does not model).
    low = 10
    if semantics == "engine":
        low = max(low, 1 + max(-(-r.input_length // BLOCK_SIZE) for r in requests))
    caps = sorted({max(1, round(low * (distinct / low) ** (k / (num_capacities - 1))))
                   for k in range(num_capacities)})
    plain_run = plain_pool if semantics == "engine" else plain_lru
    baseline = "vLLM block pools" if semantics == "engine" else "plain OrderedDict LRUs"
    times = []
    for _ in range(3):  # the one-pass run is short, so time it 3 times and keep the median
        t0 = time.perf_counter()
        runner = LRUCurveReplay(BLOCK_SIZE, semantics)
        runner.feed(requests)
        curve = runner.result()
        times.append(time.perf_counter() - t0)
    t_one = sorted(times)[1]
    t0 = time.perf_counter()
    plain = [plain_run(requests, c) for c in caps]
    t_plain = time.perf_counter() - t0
    same = all(curve.block_hits(c) == b and curve.token_hits(c) == t
               for c, (b, t) in zip(caps, plain))
    print(f"[{semantics}] {len(requests)} requests, {refs} block references, "
          f"{len(caps)} capacities")
    print(f"  one-pass LRU curve:          {t_one:8.3f} s (median of 3; "
          f"min {min(times):.3f} s, max {max(times):.3f} s)")
    print(f"  {len(caps)} {baseline}: {t_plain:8.3f} s")
    print(f"  ratio: {t_plain / t_one:6.1f}x   same numbers at every capacity: {same}")


def generated_trace(num_requests: int, seed: int):
    """Mooncake-like multi-turn chat: a 2-block system prompt shared by all, conversations of
    geometric length (mean 4 turns) each adding one block of history per turn, about 50
    conversations open at a time, Poisson arrivals at 10 requests/s."""
    rng = random.Random(seed)
    next_id = 2
    live: list = []
    t = 0.0
    for _ in range(num_requests):
        t += rng.expovariate(10.0)
        if not live or rng.random() < 0.25:
            live.append([0, 1])
        k = rng.randrange(len(live))
        ids = live[k]
        ids.append(next_id)
        next_id += 1
        yield Request(t, len(ids) * BLOCK_SIZE - 100, 200, tuple(ids))
        if rng.random() < 0.25:
            live[k] = live[-1]
            live.pop()
        if len(live) > 50:
            live.pop(0)


def bench_memory(num_requests: int) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    runner = LRUCurveReplay(BLOCK_SIZE, "engine")
    runner.feed(generated_trace(num_requests, seed=1))
    curve = runner.result()
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"[memory] generated trace, {num_requests} requests, {curve.total_blocks} block "
          f"references, {curve.distinct_blocks} distinct blocks (seed 1)")
    print(f"  peak traced memory: {peak / 2**20:8.1f} MiB ({peak / 2**30:.3f} GiB; "
          f"limit 1 GiB)   time under tracemalloc: {elapsed:.1f} s")
    print(f"  infinite block hit rate {curve.infinite_block_hit_rate:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="memory run on 100,000 requests")
    args = parser.parse_args()
    if TRACE.exists():
        for semantics in ("engine", "independent"):
            bench_speed(semantics)
    else:
        print(f"speed: skipped, {TRACE} not found (../shared/traces/ is absent)")
    bench_memory(100_000 if args.quick else 1_000_000)


if __name__ == "__main__":
    main()
