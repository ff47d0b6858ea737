"""Benchmark: SHARDS-sampled LRU replay against exact replay, error and speed side by side.

Run from the project root:

    python benchmarks/bench_sampling.py                  # 100k and 1M generated requests, shared traces
    python benchmarks/bench_sampling.py --sizes 10000000 # the issue's 10-million-request target
    python benchmarks/bench_sampling.py --memory 10000000   # peak memory of the sampled replay alone

For each size, one pass generates the trace (``traces/synthetic.py``, seed 1) and feeds every
chunk to the exact one-pass LRU replay, to the sampled one with its rate ladder (the default:
rates R..16R, each capacity estimated at the lowest rate whose sample holds 100 blocks there)
and to the sampled one at the main rate alone (``max_rate=R``, as before the ladder), timing
each separately; then it prints the token hit rate of all three at a range of capacities
with the rate used, and the largest errors, over all capacities and over those the ladder
holds reliable (``C >= 100 / 16R``) and where the main rate's sample holds 100 blocks.
The shared Mooncake traces (``../shared/traces/``, skipped with a message when absent) are
measured at rates 0.1 and 0.01. ``--memory N`` runs the sampled replay alone on ``N``
generated requests in a child process and prints its peak resident memory. ``--worker FILE``
times the page's reader (``site/trace-sampler.js`` in node, ``tests/js/run_sampler.js``) on a
trace file with the ladder's higher rate and without it, side by side (the page's worker
replays that rate itself; Python's share of the page is unchanged).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.traces.readers import read_trace  # noqa: E402
from kvcache_calculator.traces.replay import LRUCurveReplay  # noqa: E402
from kvcache_calculator.traces.sampling import SampledReplay  # noqa: E402
from kvcache_calculator.traces.synthetic import generate_requests  # noqa: E402

TRACES = ROOT / ".." / "shared" / "traces"
CAPACITIES = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000, 3_000_000)
CHUNK = 20_000


def log_grid(top: int, points: int = 200) -> list:
    """Log-spaced capacities from 1 to ``top``."""
    return sorted({max(1, round(top ** (k / (points - 1)))) for k in range(points)})


def compare(exact, sampled, plain, rate: float, label: str, times: dict, refs: int) -> None:
    """Print the curves at CAPACITIES (exact, the ladder's estimate and the main rate's alone)
    and the largest errors (points of token hit rate)."""
    caps = [c for c in CAPACITIES if c <= 3 * exact.capacity_for_ceiling] or list(CAPACITIES[:3])
    print(f"\n{label}: {exact.requests:,} requests, {refs:,} block references, "
          f"{exact.distinct_blocks:,} distinct blocks; rate {rate:g}, ladder "
          + ", ".join(f"{r:g}" for r in sampled.rates))
    t_exact = times.get("exact")
    print("  time: " + "; ".join(f"{k} {t:.1f} s ({refs / t / 1e6:.2f} M refs/s)"
                                 for k, t in times.items() if t)
          + f"; ladder / main rate alone {times['ladder'] / times['main rate'] :.2f}x"
          + (f"; exact / ladder {t_exact / times['ladder']:.1f}x" if t_exact else ""))
    print("  capacity_blocks  exact %  ladder %  error  rate   main-rate-only %  error")
    for c in caps:
        e, s, p = exact.token_hit_rate(c), sampled.token_hit_rate(c), plain.token_hit_rate(c)
        print(f"  {c:>15,}  {100 * e:7.2f}  {100 * s:8.2f}  {100 * (s - e):+6.2f}  "
              f"{sampled.rate_at(c):<5g}  {100 * p:16.2f}  {100 * (p - e):+6.2f}")
    e, s = exact.infinite_token_hit_rate, sampled.infinite_token_hit_rate
    print(f"  {'infinite':>15}  {100 * e:7.2f}  {100 * s:8.2f}  {100 * (s - e):+6.2f}")
    grid = log_grid(max(2, exact.capacity_for_ceiling))
    for name, curve in (("ladder", sampled), ("main rate alone", plain)):
        errs = [(abs(curve.token_hit_rate(c) - exact.token_hit_rate(c)), c) for c in grid]
        worst, at = max(errs)
        line = (f"  {name}: largest error over {len(grid)} log-spaced capacities "
                f"{100 * worst:.2f} points (at {at:,} blocks)")
        for lo in (sampled.min_reliable_capacity_blocks, math.ceil(100 / rate)):
            big = [(err, c) for err, c in errs if c >= lo]
            if big:
                w, a = max(big)
                line += f"; C >= {lo:,}: {100 * w:.2f} (at {a:,})"
        print(line)


def generated(requests: int, rate: float, exact: bool) -> None:
    """One pass over ``requests`` generated requests, feeding both replays."""
    runners = {"exact": LRUCurveReplay(512) if exact else None,
               "ladder": SampledReplay(512, rate), "main rate": SampledReplay(512, rate, max_rate=rate)}
    times = dict.fromkeys(runners, 0.0)
    refs = 0
    chunk = []
    t0 = time.perf_counter()

    def feed(batch):
        for k, run in runners.items():
            if run is not None:
                t = time.perf_counter()
                run.feed(batch)
                times[k] += time.perf_counter() - t

    for r in generate_requests(requests, 1):
        chunk.append(r)
        refs += len(r.hash_ids)
        if len(chunk) >= CHUNK:
            feed(chunk)
            chunk = []
    if chunk:
        feed(chunk)
    curves = {}
    for k, run in runners.items():
        if run is not None:
            t = time.perf_counter()
            curves[k] = run.result()
            times[k] += time.perf_counter() - t
    total = time.perf_counter() - t0
    if not exact:
        print(f"\ngenerated {requests:,}: sampled only, ladder {times['ladder']:.1f} s "
              f"({refs / times['ladder'] / 1e6:.2f} M refs/s), main rate alone "
              f"{times['main rate']:.1f} s ({times['ladder'] / times['main rate']:.2f}x); "
              f"ceiling {100 * curves['ladder'].infinite_token_hit_rate:.2f} %; token hit rate "
              + ", ".join(f"{100 * curves['ladder'].token_hit_rate(c):.2f} % at {c:,} "
                          f"(rate {curves['ladder'].rate_at(c):g})" for c in CAPACITIES[:5]))
        return
    compare(curves["exact"], curves["ladder"], curves["main rate"], rate,
            f"generated {requests:,}", times, refs)
    print(f"  (wall time with generation: {total:.0f} s)")


def shared(rates) -> None:
    """The shared Mooncake traces at each rate."""
    for name in ("mooncake_conversation_trace", "mooncake_synthetic_trace"):
        path = TRACES / f"{name}.jsonl"
        if not path.exists():
            print(f"\n{name}: skipped, {path} not found (the shared traces are absent)")
            continue
        with open(path) as f:
            reqs = list(read_trace(f))
        refs = sum(len(r.hash_ids) for r in reqs)
        t = time.perf_counter()
        ex = LRUCurveReplay(512)
        ex.feed(reqs)
        exact = ex.result()
        t_ex = time.perf_counter() - t
        for rate in rates:
            times = {"exact": t_ex}
            curves = {}
            for k, top in (("ladder", None), ("main rate", rate)):
                t = time.perf_counter()
                sm = SampledReplay(512, rate, max_rate=top)
                sm.feed(reqs)
                curves[k] = sm.result()
                times[k] = time.perf_counter() - t
            compare(exact, curves["ladder"], curves["main rate"], rate, name, times, refs)


def memory(requests: int, rate: float) -> None:
    """Peak resident memory of the sampled replay alone, in a child process."""
    code = ("import resource, sys; sys.path.insert(0, %r)\n"
            "from kvcache_calculator.traces.sampling import SampledReplay\n"
            "from kvcache_calculator.traces.synthetic import generate_requests\n"
            "sm = SampledReplay(512, %r)\n"
            "chunk = []\n"
            "for r in generate_requests(%d, 1):\n"
            "    chunk.append(r)\n"
            "    if len(chunk) >= %d:\n"
            "        sm.feed(chunk); chunk = []\n"
            "sm.feed(chunk); s = sm.result()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, s.sample.distinct_blocks)\n"
            % (str(ROOT), rate, requests, CHUNK))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kib, distinct = out.stdout.split()
    print(f"\nmemory: sampled replay of {requests:,} generated requests at rate {rate:g}: "
          f"peak RSS {int(kib) / 1024:,.0f} MiB ({int(distinct):,} sampled distinct blocks), "
          f"{time.perf_counter() - t:.0f} s with generation")


def worker(path: str, rate: float, repeats: int = 2) -> None:
    """The page's reader in node on ``path``, with and without the ladder's replay."""
    from kvcache_calculator.present.upload_sample import SampledUploadJob
    msg = SampledUploadJob(None, rate).worker_message()
    times: dict = {}
    for _ in range(repeats):
        for name, m in (("main rate alone", {**msg, "levels": []}), ("ladder", msg)):
            out = subprocess.run(["node", str(ROOT / "tests" / "js" / "run_sampler.js"), path,
                                  json.dumps(m), "--timing"], capture_output=True, text=True,
                                 check=True)
            data = json.loads(out.stdout)
            times.setdefault(name, []).append((data["seconds"], data["rssMiB"]))
    best = {k: min(v) for k, v in times.items()}
    print(f"\nworker (node) on {path}, rate {rate:g}, best of {repeats}: "
          + "; ".join(f"{k} {t:.1f} s (RSS {m:.0f} MiB)" for k, (t, m) in best.items())
          + f"; ladder / main rate alone {best['ladder'][0] / best['main rate alone'][0]:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100000,1000000",
                   help="generated trace sizes, comma-separated (default 100000,1000000)")
    p.add_argument("--rate", type=float, default=0.01, help="sampling rate (default 0.01)")
    p.add_argument("--sampled-only", action="store_true",
                   help="skip the exact replay (speed of the sampled one only)")
    p.add_argument("--memory", type=int, default=0, metavar="N",
                   help="also measure peak memory of the sampled replay on N requests")
    p.add_argument("--no-shared", action="store_true", help="skip the shared traces")
    p.add_argument("--worker", default=None, metavar="FILE",
                   help="time the page's reader in node on FILE, with and without the ladder")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}")
    if not args.no_shared:
        shared((0.1, 0.01))
    for n in (int(x) for x in args.sizes.split(",") if x):
        generated(n, args.rate, not args.sampled_only)
    if args.memory:
        memory(args.memory, args.rate)
    if args.worker:
        worker(args.worker, args.rate)
    print(f"\npeak RSS of this process: "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
