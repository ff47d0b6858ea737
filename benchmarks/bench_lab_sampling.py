"""Benchmark: the lab page's Python path for a large upload, in CPython: a generated trace written as
``.jsonl.gz``, read in 1 MiB slices into :class:`~kvcache_calculator.present.jobs.TraceJob` with
SHARDS sampling (the page's path above 100 MB, 20 MB compressed, without a worker), beside the exact
job on the same bytes when ``--exact`` is given.

    python benchmarks/bench_lab_sampling.py --requests 1000000 [--rate 0.01] [--exact]

Prints the file size, the time and peak resident memory of each job (each in a child process,
so the peaks are its own) and, with ``--exact``, the error in points of token hit rate at a
range of capacities. The page now reads a sampled upload in a Web Worker instead
(``benchmarks/bench_lab_worker.py`` measures that path in Chromium); this Python path remains
for browsers without workers.
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.present.jobs import TraceJob, run_for  # noqa: E402
from kvcache_calculator.traces.synthetic import generate_requests  # noqa: E402

SLICE = 2 ** 20
CAPACITIES = (1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000)


def write_trace(path: Path, requests: int) -> None:
    """The generated trace (seed 1) as gzip JSON lines (``json.dumps``'s text, written by hand:
    ten million lines take minutes, not a quarter of an hour)."""
    with gzip.open(path, "wt", compresslevel=3) as out:
        lines = []
        for r in generate_requests(requests, 1):
            lines.append(f'{{"timestamp": {round(r.timestamp_s * 1000)}, "input_length": {r.input_length}, '
                         f'"output_length": {r.output_length}, "hash_ids": [{", ".join(map(str, r.hash_ids))}]}}\n')
            if len(lines) == 10_000:
                out.write("".join(lines))
                lines = []
        out.write("".join(lines))


def run_job(path: str, rate: float | None) -> dict:
    """Feed the file to a TraceJob as the page does; time, peak memory and the curve."""
    size = Path(path).stat().st_size
    job = TraceJob(size, sample_rate=rate)
    started = time.perf_counter()
    with open(path, "rb") as f:
        while True:
            while job.pending_lines < 4000 and not job.input_closed:
                data = f.read(SLICE)
                if data:
                    job.add_bytes(data)
                else:
                    job.close_input()
            if run_for(job, 0.025, time.perf_counter):
                break
    elapsed = time.perf_counter() - started
    curve = job.curve
    return {"seconds": elapsed, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "requests": curve.requests, "rates": [curve.token_hit_rate(c) for c in CAPACITIES],
            "ceiling": curve.infinite_token_hit_rate}


def child(path: str, rate: float | None) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", path, "--rate", str(rate or 0)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--rate", type=float, default=0.01)
    ap.add_argument("--exact", action="store_true", help="also run the exact job (memory grows with the trace)")
    ap.add_argument("--file", default="/tmp/kvcalc_bench_trace.jsonl.gz")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_job(args.child, args.rate or None)))
        return
    path = Path(args.file)
    t0 = time.perf_counter()
    write_trace(path, args.requests)
    print(f"generated {args.requests:,} requests in {time.perf_counter() - t0:.1f} s: "
          f"{path.stat().st_size / 2 ** 20:.1f} MiB gzip")
    sampled = child(str(path), args.rate)
    print(f"sampled job (rate {args.rate:g}): {sampled['seconds']:.1f} s, "
          f"{sampled['requests'] / sampled['seconds']:,.0f} requests/s, peak RSS {sampled['peak_rss_mib']:.0f} MiB")
    if args.exact:
        exact = child(str(path), None)
        print(f"exact job: {exact['seconds']:.1f} s, {exact['requests'] / exact['seconds']:,.0f} requests/s, "
              f"peak RSS {exact['peak_rss_mib']:.0f} MiB; speedup {exact['seconds'] / sampled['seconds']:.1f}x")
        print("  capacity_blocks  exact %  sampled %  error (points)")
        for c, e, s in zip(CAPACITIES, exact["rates"], sampled["rates"]):
            print(f"  {c:>15,}  {100 * e:7.2f}  {100 * s:9.2f}  {100 * (s - e):+7.2f}")
        print(f"  {'infinite':>15}  {100 * exact['ceiling']:7.2f}  {100 * sampled['ceiling']:9.2f}  "
              f"{100 * (sampled['ceiling'] - exact['ceiling']):+7.2f}")


if __name__ == "__main__":
    main()
