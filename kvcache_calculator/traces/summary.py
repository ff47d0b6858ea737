"""Compact summaries of a trace: what the page needs to draw a built-in trace without it.

A summary (plain JSON, well under 200 KB for the public traces) holds, for each warm-up
fraction in ``warmups`` (0 and 0.5: the page offers both), a *view*:

- ``lru_curve``: the exact LRU curve at every capacity (``engine`` semantics, from
  :class:`~kvcache_calculator.traces.replay.LRUCurveReplay`), stored as the sparse histogram of
  its stack distances: for the ``K`` distinct distances, ``distance_gaps[k]`` (the ``k``-th
  distance minus the previous one), ``block_counts[k]`` (block hits at that distance), and
  ``token_deficits``, ``(k, d)`` pairs only where the hits at distance ``k`` count ``d`` tokens
  fewer than ``block_size`` per block (partial last blocks). Block hits at capacity ``C`` are
  the sum of ``block_counts`` over distances ``<= C``. As plain JSON arrays this is over
  100 KB for the conversation trace, so ``histogram`` holds them as unsigned LEB128 varints
  (``K``, the gaps, the counts, the number of pairs, the pairs), zlib-compressed and base64
  encoded (about 10 KB); :func:`decode_histogram` reads it and :func:`curve_from_view`
  rebuilds the :class:`~kvcache_calculator.traces.replay.LRUCurve`. ``points`` are
  ``[capacity_blocks, block_hit_rate, token_hit_rate]`` at log-spaced capacities, for a quick
  plot;
- ``ceiling``: block and token hit rates of an unbounded cache;
- ``reuse_time_histogram``: time between successive uses of a block (:class:`ReuseTimes`);
- ``prompt_buckets``: per prompt-length bucket, requests, prompt tokens and ceiling token hits;
- ``grid``: at ``capacity_blocks`` (a 1-2-5 series), token hits per bucket of LRU and of the
  offline optimum (:class:`~kvcache_calculator.traces.gap.PrefixBelady`), and the block and
  token hit rates of LRU, FIFO and the optimum;
- ``routing``: for each routing and ``instances`` in 2, 4, 8, fleet token hits per bucket at
  each grid capacity (per instance) (:func:`~kvcache_calculator.traces.gap.fleet_bucket_hits`);
- ``pooled``: the offline optimum's token hits per bucket of one cache holding the memory of
  ``instances`` caches of each grid capacity (``n * C`` blocks, ``n`` in 2, 4, 8), which the gap
  split of a fleet compares with (:func:`~kvcache_calculator.traces.gap.explain_gap`), and the
  LRU token hits per bucket of that pooled cache.

Beside the views, ``characteristic_time_s`` holds the measured characteristic time of an LRU
cache (:func:`~kvcache_calculator.traces.gap.measure_characteristic_time_s`, over the whole
trace) at every grid and pooled capacity.

With these the page draws the curve at any capacity, and the gap split
(:mod:`kvcache_calculator.traces.gap`) at any grid capacity, instance count and routing.
``provenance`` names the source file, its sha256 and size, its licence and where it comes
from.
"""

from __future__ import annotations

import base64
import zlib
from typing import Iterable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.gap import (
    PROMPT_BUCKET_EDGES,
    ReuseTimes,
    fleet_request_hits,
    measure_characteristic_time_s,
    optimum_request_hits,
    sum_by_bucket,
)
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import LRUCurve, LRUCurveReplay, PolicyReplay
from kvcache_calculator.traces.routing import STATE_FREE_ROUTINGS
from kvcache_calculator.traces.warmup import WarmupReplay, warmup_requests

__all__ = [
    "SUMMARY_VERSION",
    "WARMUPS",
    "ROUTING_INSTANCES",
    "grid_capacities",
    "encode_curve",
    "decode_histogram",
    "curve_from_view",
    "summarize",
]

SUMMARY_VERSION = 2
WARMUPS = (0.0, 0.5)
ROUTING_INSTANCES = (2, 4, 8)
_POINTS = 120


def grid_capacities(distinct_blocks: int, smallest: int = 100) -> list:
    """The 1-2-5 series of capacities (blocks) from ``smallest`` to the first at or above
    ``distinct_blocks`` (where every cache holds the whole trace)."""
    out = []
    decade = smallest
    while True:
        for m in (1, 2, 5):
            c = m * decade
            out.append(c)
            if c >= distinct_blocks:
                return out
        decade *= 10


def _varints(values: Iterable[int]) -> bytearray:
    out = bytearray()
    for x in values:
        if x < 0:
            raise ScenarioError("histogram", x, "holds counts >= 0 only")
        while x >= 0x80:
            out.append((x & 0x7F) | 0x80)
            x >>= 7
        out.append(x)
    return out


def _read_varints(data: bytes) -> Iterable[int]:
    x = shift = 0
    for byte in data:
        x |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            yield x
            x = shift = 0


def encode_curve(curve: LRUCurve) -> dict:
    """The sparse stack-distance histogram of ``curve``: ``{"histogram": text, "distances":
    K}`` (see the module docstring for the encoding)."""
    gaps, counts, deficits = [], [], []
    prev_d = prev_b = prev_t = 0
    bs = curve.block_size
    for k, (d, cb, ct) in enumerate(zip(curve.distances, curve.cum_block_hits,
                                        curve.cum_token_hits)):
        nb, nt = cb - prev_b, ct - prev_t
        gaps.append(d - prev_d)
        counts.append(nb)
        if nt != nb * bs:
            deficits += [k, nb * bs - nt]
        prev_d, prev_b, prev_t = d, cb, ct
    raw = _varints([len(gaps), *gaps, *counts, len(deficits) // 2, *deficits])
    return {"histogram": base64.b64encode(zlib.compress(bytes(raw), 9)).decode("ascii"),
            "distances": len(gaps)}


def decode_histogram(text: str) -> tuple:
    """``(distance_gaps, block_counts, token_deficits)`` of an encoded histogram;
    ``token_deficits`` maps a distance index to its token deficit."""
    values = list(_read_varints(zlib.decompress(base64.b64decode(text))))
    k = values[0]
    gaps = values[1:1 + k]
    counts = values[1 + k:1 + 2 * k]
    pairs = values[2 + 2 * k:]
    if len(gaps) != k or len(counts) != k or len(pairs) != 2 * values[1 + 2 * k]:
        raise ScenarioError("histogram", text[:40], "is not a valid encoded histogram")
    return gaps, counts, dict(zip(pairs[0::2], pairs[1::2]))


def curve_from_view(view: dict, block_size: int) -> LRUCurve:
    """The exact :class:`LRUCurve` of a summary view (its ``lru_curve`` and totals)."""
    gaps, counts, deficits = decode_histogram(view["lru_curve"]["histogram"])
    distances, cum_b, cum_t = [], [], []
    d = sb = st = 0
    for k, (gap, nb) in enumerate(zip(gaps, counts)):
        d += gap
        sb += nb
        st += nb * block_size - deficits.get(k, 0)
        distances.append(d)
        cum_b.append(sb)
        cum_t.append(st)
    return LRUCurve(semantics=view["semantics"], block_size=block_size,
                    requests=view["requests"], total_blocks=view["total_blocks"],
                    total_tokens=view["total_tokens"], distinct_blocks=view["distinct_blocks"],
                    distances=tuple(distances), cum_block_hits=tuple(cum_b),
                    cum_token_hits=tuple(cum_t))


def _rates(hits: Sequence, total: int) -> list:
    return [h / total if total else 0.0 for h in hits]


def _view(requests: list, warmup: float, block_size: int, grid: list, single, optimum: dict,
          fleets: dict, edges: tuple) -> dict:
    """One warm-up view; ``single``, ``optimum`` (capacity -> per-request hits, grid and
    pooled capacities) and ``fleets`` are per-request hits (the same for every warm-up: only
    what is counted changes)."""
    w = warmup_requests(warmup, len(requests))
    runner = WarmupReplay(LRUCurveReplay(block_size, "engine"), w)
    fifo = WarmupReplay(PolicyReplay("fifo", grid, block_size, "engine"), w)
    reuse = ReuseTimes()
    for i, r in enumerate(requests):
        reuse.add(r, i >= w)
    runner.feed(requests)
    fifo.feed(requests)
    curve = runner.result()
    fifo_res = fifo.result()
    buckets = single.by_bucket(requests, w, edges)
    lru_at = dict(zip(single.capacity_blocks, buckets.hits))
    opt = sum_by_bucket(requests, [optimum[c] for c in grid], w, edges)
    pooled_opt = [[list(row) for row in sum_by_bucket(requests, [optimum[n * c] for c in grid], w,
                                                      edges)] for n in ROUTING_INSTANCES]
    pooled_lru = [[list(lru_at[n * c]) for c in grid] for n in ROUTING_INSTANCES]
    top = max(1, curve.capacity_for_ceiling)
    caps = sorted({max(1, round(top ** (k / (_POINTS - 1)))) for k in range(_POINTS)})
    total_t = curve.total_tokens
    routing = {}
    for name, per_n in fleets.items():
        rows = [[list(row) for row in f.by_bucket(requests, w, edges).hits] for f in per_n]
        routing[name] = {"instances": list(ROUTING_INSTANCES), "seed": 0,
                         "bucket_token_hits": rows,
                         "token_hit_rate": [[sum(row) / total_t if total_t else 0.0
                                             for row in r] for r in rows]}
    return {
        "warmup": warmup, "warmup_requests": w, "semantics": curve.semantics,
        "requests": curve.requests, "total_blocks": curve.total_blocks,
        "total_tokens": total_t, "distinct_blocks": curve.distinct_blocks,
        "ceiling": {"block_hit_rate": curve.infinite_block_hit_rate,
                    "token_hit_rate": curve.infinite_token_hit_rate},
        "lru_curve": {**encode_curve(curve),
                      "points": [[c, round(curve.block_hit_rate(c), 6),
                                  round(curve.token_hit_rate(c), 6)] for c in caps]},
        "reuse_time_histogram": reuse.to_dict(),
        "prompt_buckets": {"input_tokens_min": [0, *edges],
                           "input_tokens_max": [*edges, None],
                           "requests": list(buckets.requests), "tokens": list(buckets.tokens),
                           "ceiling_token_hits": list(buckets.ceiling)},
        "grid": {
            "capacity_blocks": grid,
            "lru_bucket_token_hits": [list(lru_at[c]) for c in grid],
            "optimum_bucket_token_hits": [list(row) for row in opt],
            "lru": {"block_hit_rate": [curve.block_hit_rate(c) for c in grid],
                    "token_hit_rate": [curve.token_hit_rate(c) for c in grid]},
            "fifo": {"block_hit_rate": fifo_res.block_hit_rate,
                     "token_hit_rate": fifo_res.token_hit_rate},
            "optimum": {"token_hit_rate": _rates([sum(row) for row in opt], total_t)},
        },
        "routing": routing,
        "pooled": {"instances": list(ROUTING_INSTANCES), "optimum_bucket_token_hits": pooled_opt,
                   "lru_bucket_token_hits": pooled_lru},
    }


def summarize(requests: Iterable[Request], *, name: str, block_size: int, trace_format: str,
              source_file: str, sha256: str, size_bytes: int, licence: str, origin: str = "",
              warmups: Sequence[float] = WARMUPS,
              bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> dict:
    """The summary of a trace (see the module docstring) as plain JSON types.

    The caller reads the file and passes its name, sha256, size and licence statement: the
    core reads no files. Session routing is included when the requests carry ``chat_id``.
    """
    requests = list(requests)
    if not requests:
        raise ScenarioError("trace", name, "holds no request to summarise")
    if not licence:
        raise ScenarioError("licence", licence, "a summary must state the trace's licence")
    distinct = len({b for r in requests for b in r.hash_ids})
    grid = grid_capacities(distinct)
    routings = [r for r in STATE_FREE_ROUTINGS if r != "session"] + ["cache_aware"]
    if requests[0].chat_id is not None:
        routings.append("session")
    times = [r.timestamp_s for r in requests]
    edges = tuple(bucket_edges)
    all_caps = sorted({n * c for n in (1, *ROUTING_INSTANCES) for c in grid})
    single = fleet_request_hits(requests, all_caps, block_size)
    optimum = dict(zip(all_caps, optimum_request_hits(requests, all_caps, block_size)))
    fleets = {name: [fleet_request_hits(requests, grid, block_size, n, name)
                     for n in ROUTING_INSTANCES] for name in routings}
    return {
        "summary_version": SUMMARY_VERSION,
        "name": name,
        "format": trace_format,
        "block_size": block_size,
        "duration_s": max(times) - min(times),
        "provenance": {"source_file": source_file, "sha256": sha256, "bytes": size_bytes,
                       "licence": licence, "origin": origin},
        "bucket_edges_tokens": list(bucket_edges),
        "views": [_view(requests, w, block_size, grid, single, optimum, fleets, edges)
                  for w in warmups],
        "characteristic_time_s": {
            "capacity_blocks": all_caps,
            "seconds": [measure_characteristic_time_s(requests, c, block_size) for c in all_caps]},
        "notes": ("LRU, FIFO and the optimum use engine semantics (longest cached prefix); "
                  "the optimum is the prefix-aware Belady with bypass of traces/gap.py; "
                  "routing capacities are per instance; rates are 0-1 fractions; "
                  "LRU block hits at capacity C = sum of block_counts at distances <= C "
                  "(distances are running sums of distance_gaps)"),
    }
