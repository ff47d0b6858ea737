"""Why is it low (traces/gap.py): the offline optimum, the split, reuse times."""

from __future__ import annotations

import itertools
import random
from functools import lru_cache

import pytest

from kvcache_calculator.traces.gap import (
    PrefixBelady,
    ReuseTimes,
    explain_gap,
    fleet_request_hits,
    measure_characteristic_time_s,
    prefix_belady_hits,
    split_gap,
)
from kvcache_calculator.traces.replay import PolicyReplay, replay_lru_curve
from kvcache_calculator.traces.routing import replay_fleet
from trace_helpers import BS, fitting_capacity, prefix_closed_trace, req

PARTS = ("no_reuse", "capacity", "policy", "routing", "hit")


def optimum_by_search(trace, capacity):
    """The most prefix-hit blocks any policy can get under the engine's rules: a request
    too long for the pool (more than ``capacity - 1`` blocks) is refused; otherwise it hits
    the cached prefix of its lookup range, and then the cache may hold any set of at most
    ``capacity - 1`` blocks among those it held and the request's full blocks."""
    room = capacity - 1

    def shape(r):
        full = min(len(r.hash_ids), r.input_length // BS)
        return full, min(full, (r.input_length - 1) // BS)

    @lru_cache(maxsize=None)
    def best(i, cached):
        if i == len(trace):
            return 0
        r = trace[i]
        if -(-r.input_length // BS) > room:
            return best(i + 1, cached)
        full, look = shape(r)
        ids = r.hash_ids
        k = 0
        while k < look and ids[k] in cached:
            k += 1
        pool = sorted(set(cached) | set(ids[:full]))
        top = 0
        for size in range(min(room, len(pool)) + 1):
            for keep in itertools.combinations(pool, size):
                top = max(top, best(i + 1, frozenset(keep)))
        return k + top

    return best(0, frozenset())


@pytest.mark.parametrize("seed", range(40))
def test_optimum_equals_exhaustive_search_on_tiny_prefix_closed_traces(seed):
    rng = random.Random(seed)
    trace = prefix_closed_trace(rng, rng.randint(3, 7), max_new=2, heads=2)
    for capacity in (2, 3, 4, 5):
        got, _ = prefix_belady_hits(trace, capacity, BS)
        assert got == optimum_by_search(trace, capacity), (seed, capacity)


@pytest.mark.parametrize("seed", range(30))
def test_optimum_is_at_least_every_online_policy_on_random_prefix_closed_traces(seed):
    rng = random.Random(1000 + seed)
    trace = prefix_closed_trace(rng, 200, max_new=rng.randint(1, 6), heads=rng.randint(1, 5))
    # Where every request fits the pool: below, the one-pass curve and FIFO/LFU serve a
    # too-long request in part while the engine (and the optimum) refuse it.
    m = fitting_capacity(trace)
    caps = [m, m + 1, m + 3, 2 * m, 5 * m, 20 * m]
    lru = replay_lru_curve(trace, caps, BS)
    others = [PolicyReplay(p, caps, BS) for p in ("fifo", "lfu")]
    for o in others:
        o.feed(trace)
    for k, cap in enumerate(caps):
        blocks, tokens = prefix_belady_hits(trace, cap, BS)
        assert blocks >= lru.block_hits[k]
        assert all(blocks >= o.result().block_hits[k] for o in others)
        assert tokens <= lru.infinite_token_hits


def test_optimum_bypasses_blocks_never_used_again():
    # Prompts of two whole blocks: only the first can hit (the last token is recomputed).
    # Capacity 3 holds two blocks: LRU lets [9, 10] push out block 1; the optimum keeps it.
    trace = [req([1, 2], length=2 * BS), req([9, 10], length=2 * BS), req([1, 2], length=2 * BS)]
    assert prefix_belady_hits(trace, 3, BS) == (1, BS)
    assert replay_lru_curve(trace, [3], BS).block_hits == (0,)


def test_optimum_follows_the_engine_rules():
    # A request needing more blocks than the pool has is refused: no hit, no change.
    trace = [req([1]), req([5, 6, 7]), req([1])]
    assert PrefixBelady(trace, 3, BS).hits() == [(0, 0), (0, 0), (1, BS)]
    # Only full blocks are cached: a partial block never hits.
    trace = [req([1], length=100), req([1], length=100)]
    assert PrefixBelady(trace, 10, BS).hits() == [(0, 0), (0, 0)]


def test_split_sums_to_one_and_clamps():
    rng = random.Random(7)
    for _ in range(2000):
        ceiling = rng.random()
        optimum = rng.random() * ceiling * 1.2
        lru = rng.random() * ceiling
        fleet = rng.random() * ceiling
        parts, clipped = split_gap(ceiling, optimum, lru, fleet)
        assert sum(parts.values()) == pytest.approx(1, abs=1e-12)
        assert all(v >= 0 for v in parts.values())
        assert parts["hit"] == fleet
        assert bool(clipped) == (optimum < max(lru, fleet) or fleet > lru or optimum > ceiling)
    parts, clipped = split_gap(0.5, 0.4, 0.3, 0.35)
    assert parts == pytest.approx({"no_reuse": 0.5, "capacity": 0.1, "policy": 0.05,
                                   "routing": 0.0, "hit": 0.35})
    assert [c["part"] for c in clipped] == ["routing"]


@pytest.mark.parametrize("routing,instances", [("round_robin", 1), ("random", 3),
                                               ("prefix", 2), ("cache_aware", 4)])
def test_explain_parts_sum_to_one_and_match_the_replays(routing, instances):
    trace = prefix_closed_trace(random.Random(11), 400)
    cap = 20
    ex = explain_gap(trace, cap, BS, instances, routing, seed=2)
    o = ex.overall
    assert sum(o["parts"].values()) == pytest.approx(1, abs=1e-12)
    assert all(v >= 0 for v in o["parts"].values())
    single = replay_lru_curve(trace, [cap * instances], BS)
    assert o["lru"] == single.token_hit_rate[0]
    assert o["ceiling"] == single.infinite_token_hit_rate
    assert o["fleet"] == replay_fleet(trace, routing, instances, [cap], BS, seed=2).token_hit_rate[0]
    assert o["optimum"] == prefix_belady_hits(trace, cap * instances, BS)[1] / o["tokens"]
    if instances == 1:
        assert o["parts"]["routing"] == 0
    assert sum(b["tokens"] for b in ex.buckets) == o["tokens"]
    assert sum(b["requests"] for b in ex.buckets) == len(trace)
    for b in ex.buckets:
        assert sum(b["parts"].values()) == pytest.approx(1, abs=1e-12) or b["tokens"] == 0
        assert all(v >= 0 for v in b["parts"].values())


def test_explain_buckets_by_prompt_length():
    # 513 and 1537 tokens; a trace's tokens are its blocks' (at most 512 each): 512, 1536.
    trace = [req([1]), req([1]), req([1, 2, 3]), req([1, 2, 3])]
    ex = explain_gap(trace, 10, BS, bucket_edges=(1024,))
    short, long_ = ex.buckets
    assert (short["requests"], long_["requests"]) == (2, 2)
    assert short["ceiling"] == pytest.approx(512 / 1024)      # the second [1] hits a block
    assert long_["ceiling"] == pytest.approx((512 + 3 * 512) / 3072)
    assert short["input_tokens_max"] == 1024 and long_["input_tokens_max"] is None


def test_explain_warmup_counts_the_tail_only():
    trace = prefix_closed_trace(random.Random(12), 300)
    ex = explain_gap(trace, 15, BS, warmup_requests=100)
    assert ex.overall["requests"] == 200
    per = fleet_request_hits(trace, [15], BS)
    assert ex.overall["lru"] == sum(per.hits[0][100:]) / sum(per.tokens[100:])


def test_reuse_times_and_characteristic_time():
    trace = [req([1, 2], t=0, length=2 * BS), req([1], t=4), req([1, 3], t=10, length=2 * BS),
             req([2], t=100)]
    reuse = ReuseTimes()
    for r in trace:
        reuse.add(r)
    assert sorted(reuse.times) == [4.0, 6.0, 100.0]
    assert reuse.share_within(6) == pytest.approx(2 / 3)
    assert sum(reuse.to_dict()["counts"]) == 3
    # Capacity 3: the null block and two blocks, touched tail first. At t=10 block 3 evicts
    # block 2 (last used at 0: age 10); at t=100 block 2 evicts block 3 (age 90).
    assert measure_characteristic_time_s(trace, 3, BS) == pytest.approx((10 + 90) / 2)
    assert measure_characteristic_time_s(trace, 100, BS) is None
    ex = explain_gap(trace, 1, BS, characteristic_time_s=5.0)
    assert ex.characteristic_time_s == 5.0 and ex.characteristic_time_source == "given"
    assert ex.share_of_reuses_within_t == pytest.approx(1 / 3)
