"""Real traffic on the lab page: the built-in traces' summaries read as curves, gap splits and
routing tables, with no replay.

A built-in trace ships as a summary (:mod:`kvcache_calculator.traces.summary`, one JSON file in
``site/traces/``). From it:

- :func:`summary_curve`: the exact LRU curve at every capacity;
- :func:`summary_gap`: the split of the gap to 100 % (:func:`kvcache_calculator.traces.gap.split_gap`)
  at the grid capacity nearest the one asked, overall and per prompt-length bucket, with the
  reuse-time histogram, the measured characteristic time ``T`` and the share of reuses within
  it; the same dict as :meth:`kvcache_calculator.traces.gap.GapResult.to_dict` (plus the
  capacity asked), so the page draws a summary's split and a replayed one alike;
- :func:`summary_routing`: fleet token hit rate for 1, 2, 4 and 8 instances under each routing
  at a grid capacity per instance.

Capacities are snapped to the summary's 1-2-5 grid (:func:`grid_index`, nearest on a log
scale); the result says which grid capacity it used.
"""

from __future__ import annotations

import bisect
import math
from typing import Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.gap import fleet_request_hits_steps, split_gap
from kvcache_calculator.traces.replay import LRUCurve
from kvcache_calculator.traces.routing import check_instances
from kvcache_calculator.traces.summary import curve_from_view

__all__ = ["FLEET_SIZES", "summary_view", "summary_curve", "grid_index", "share_within",
           "summary_gap", "summary_routing", "ideal_speedup", "routing_table", "routing_steps",
           "routing_passes"]

#: Instance counts of the routing chart.
FLEET_SIZES = (1, 2, 4, 8)


def summary_view(summary: dict, warmup: float) -> dict:
    """The view of ``summary`` for the warm-up fraction ``warmup`` (0 or 0.5)."""
    for view in summary["views"]:
        if abs(view["warmup"] - warmup) < 1e-9:
            return view
    offered = ", ".join(f"{v['warmup']:g}" for v in summary["views"])
    raise ScenarioError("warmup", warmup, f"this built-in trace offers warm-ups {offered}")


def summary_curve(summary: dict, warmup: float = 0.0) -> LRUCurve:
    """The exact LRU curve of a built-in trace (:func:`~kvcache_calculator.traces.summary.curve_from_view`)."""
    return curve_from_view(summary_view(summary, warmup), summary["block_size"])


def grid_index(grid: Sequence[int], capacity_blocks: float) -> int:
    """Index of the grid capacity nearest ``capacity_blocks`` on a log scale (the smallest for
    capacities below 1 block)."""
    if not grid:
        raise ScenarioError("capacity_blocks", capacity_blocks, "the summary has no capacity grid")
    if capacity_blocks < 1:
        return 0
    x = math.log(capacity_blocks)
    return min(range(len(grid)), key=lambda k: (abs(math.log(grid[k]) - x), k))


def share_within(histogram: dict, seconds: float | None) -> float | None:
    """The share of reuses coming back within ``seconds``, read off a reuse-time histogram
    (``upper_edges_s``, ``counts``; the bin holding ``seconds`` counted in proportion on a log
    scale, so within a bin's width of the exact share). None without reuses or ``seconds``."""
    edges, counts = histogram["upper_edges_s"], histogram["counts"]
    total = sum(counts)
    if not total or seconds is None:
        return None
    k = bisect.bisect_left(edges, seconds)
    below = sum(counts[:k])
    if k < len(edges) and counts[k]:
        low = edges[k - 1] if k > 0 else edges[0] / 10 ** 0.2
        if seconds > low > 0:
            below += counts[k] * min(1.0, math.log(seconds / low) / math.log(edges[k] / low))
    return min(1.0, below / total)


def _entry(tokens: int, requests: int, hits: dict) -> dict:
    rates = {k: (hits[k] / tokens if tokens else 0.0) for k in ("ceiling", "optimum", "lru", "fleet")}
    parts, clipped = split_gap(**rates)
    return {"requests": requests, "tokens": tokens, **rates, "parts": parts, "clipped": clipped}


def _characteristic_time(summary: dict, capacity_blocks: int) -> float | None:
    table = summary.get("characteristic_time_s") or {}
    caps = table.get("capacity_blocks") or []
    if capacity_blocks in caps:
        return table["seconds"][caps.index(capacity_blocks)]
    return None


def summary_gap(summary: dict, warmup: float, capacity_blocks: int, instances: int = 1,
                routing: str = "round_robin") -> dict:
    """The gap split of a built-in trace at the grid capacity nearest ``capacity_blocks`` per
    instance, over ``instances`` (1, 2, 4 or 8) under ``routing`` (one the summary holds);
    the dict of :meth:`~kvcache_calculator.traces.gap.GapResult.to_dict` plus
    ``requested_capacity_blocks``. The optimum and LRU are of one cache of the pooled memory."""
    check_instances(instances)
    view = summary_view(summary, warmup)
    grid = view["grid"]["capacity_blocks"]
    k = grid_index(grid, capacity_blocks)
    cap = grid[k]
    buckets = view["prompt_buckets"]
    if instances == 1:
        lru = view["grid"]["lru_bucket_token_hits"][k]
        opt = view["grid"]["optimum_bucket_token_hits"][k]
        fleet = lru
    else:
        pooled = view.get("pooled")
        sizes = pooled["instances"] if pooled else []
        if instances not in sizes:
            raise ScenarioError("instances", instances, "this built-in trace has fleets of "
                                + ", ".join(str(n) for n in (1, *sizes)) + " instances")
        if routing not in view["routing"]:
            raise ScenarioError("routing", routing, "this built-in trace has the routings "
                                + ", ".join(view["routing"]))
        n = sizes.index(instances)
        lru = pooled["lru_bucket_token_hits"][n][k]
        opt = pooled["optimum_bucket_token_hits"][n][k]
        fleet = view["routing"][routing]["bucket_token_hits"][n][k]
    rows = []
    for b, tokens in enumerate(buckets["tokens"]):
        entry = _entry(tokens, buckets["requests"][b], {
            "ceiling": buckets["ceiling_token_hits"][b], "optimum": opt[b], "lru": lru[b],
            "fleet": fleet[b]})
        entry["input_tokens_min"] = buckets["input_tokens_min"][b]
        entry["input_tokens_max"] = buckets["input_tokens_max"][b]
        rows.append(entry)
    overall = _entry(sum(buckets["tokens"]), sum(buckets["requests"]), {
        "ceiling": sum(buckets["ceiling_token_hits"]), "optimum": sum(opt), "lru": sum(lru),
        "fleet": sum(fleet)})
    t_char = _characteristic_time(summary, cap * instances)
    reuse = view["reuse_time_histogram"]
    bs = summary["block_size"]
    return {
        "capacity_blocks": cap, "capacity_tokens": cap * bs, "requested_capacity_blocks": capacity_blocks,
        "instances": instances, "routing": routing if instances > 1 else "one cache", "seed": 0,
        "semantics": view["semantics"], "block_size": bs, "warmup_requests": view["warmup_requests"],
        "pooled_capacity_blocks": cap * instances, "overall": overall, "buckets": rows,
        "reuse_time_histogram": reuse, "characteristic_time_s": t_char,
        "characteristic_time_source": (f"measured: mean age at eviction of an LRU cache of "
                                       f"{cap * instances:,} blocks on this trace"),
        "share_of_reuses_within_characteristic_time": share_within(reuse, t_char),
        "notes": [],
    }


def summary_routing(summary: dict, warmup: float, capacity_blocks: int) -> dict:
    """Fleet token hit rates at the grid capacity nearest ``capacity_blocks`` per instance:
    ``{"capacity_blocks", "instances": [1, 2, 4, 8], "token_hit_rate": {routing: [rate per
    fleet size]}}`` (one instance: the single cache, the same for every routing)."""
    view = summary_view(summary, warmup)
    grid = view["grid"]["capacity_blocks"]
    k = grid_index(grid, capacity_blocks)
    tokens = view["total_tokens"]
    one = sum(view["grid"]["lru_bucket_token_hits"][k]) / tokens if tokens else 0.0
    sizes = view["routing"][next(iter(view["routing"]))]["instances"] if view["routing"] else []
    rates = {name: [one] + [sum(rows[n][k]) / tokens if tokens else 0.0 for n in range(len(sizes))]
             for name, rows in ((name, r["bucket_token_hits"]) for name, r in view["routing"].items())}
    return {"capacity_blocks": grid[k], "requested_capacity_blocks": capacity_blocks,
            "instances": [1, *sizes], "token_hit_rate": rates}


def ideal_speedup(hit_rate: float | None) -> float | None:
    """The ideal prefill speedup ``1 / (1 - h)`` of a token hit rate ``h`` (None at h >= 1)."""
    if hit_rate is None or hit_rate >= 1:
        return None
    return 1 / (1 - hit_rate)


def routing_table(rates: dict) -> list:
    """Rows ``{routing, rates, speedups}`` of a routing result (``token_hit_rate``) for a table."""
    return [{"routing": name, "rates": list(r), "speedups": [ideal_speedup(h) for h in r]}
            for name, r in rates["token_hit_rate"].items()]


def routing_passes(routings: Sequence[str], sizes: Sequence[int] = FLEET_SIZES) -> int:
    """Passes over the requests :func:`routing_steps` makes (for progress)."""
    return 1 + len(routings) * sum(1 for n in sizes if n > 1)


def routing_steps(requests: Sequence, capacity_blocks: int, block_size: int,
                  routings: Sequence[str], warmup_requests: int = 0,
                  sizes: Sequence[int] = FLEET_SIZES):
    """The routing table of a replayed trace in steps (yields once per request of each fleet
    replay, :func:`~kvcache_calculator.traces.gap.fleet_request_hits_steps`), returning the
    dict of :func:`summary_routing` at exactly ``capacity_blocks`` per instance."""
    counted = requests[warmup_requests:]
    tokens = None
    rates: dict = {}
    one = None
    for name in routings:
        row = []
        for n in sizes:
            if n == 1 and one is not None:
                row.append(one)
                continue
            hits = yield from fleet_request_hits_steps(requests, [capacity_blocks], block_size, n,
                                                       name)
            if tokens is None:
                tokens = sum(hits.tokens[warmup_requests:])
            rate = sum(hits.hits[0][warmup_requests:]) / tokens if tokens else 0.0
            if n == 1:
                one = rate
            row.append(rate)
        rates[name] = row
    return {"capacity_blocks": capacity_blocks, "requested_capacity_blocks": capacity_blocks,
            "instances": list(sizes), "token_hit_rate": rates, "requests": len(counted)}
