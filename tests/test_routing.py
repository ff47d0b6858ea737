"""Fleet replay (traces/routing.py): each routing on hand-made traces with known answers, and
the fleet against per-instance replays."""

from __future__ import annotations

import random

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.hashing import stable_hash64
from kvcache_calculator.traces.replay import PolicyReplay, replay_lru_curve
from kvcache_calculator.traces.routing import (
    ROUTINGS,
    CacheAwareReplay,
    CacheAwareRouter,
    FleetCurveReplay,
    Router,
    replay_fleet,
)
from kvcache_calculator.traces.warmup import WarmupReplay
from trace_helpers import BS, fitting_capacity, prefix_closed_trace, req


def assignment(routing, requests, n, seed=0, capacity=None):
    """The instance of each request (``capacity``: the cache-aware router's index size)."""
    router = (CacheAwareRouter(n, capacity, BS) if routing == "cache_aware"
              else Router(routing, n, seed))
    return [router.route(r) for r in requests]


def test_stable_hash_is_splitmix64():
    # The first output of SplitMix64 seeded with 0 (Steele, Lea and Flood 2014).
    assert stable_hash64(0) == 0xE220A8397B1DCDAF
    assert stable_hash64(-1) == stable_hash64(2 ** 64 - 1)


def test_round_robin_alternates_and_counts_hits_per_instance():
    trace = [req([7]) for _ in range(4)]
    assert assignment("round_robin", trace, 2) == [0, 1, 0, 1]
    res = replay_fleet(trace, "round_robin", 2, [3, 10], BS)
    # Each instance sees [7], [7]: one miss then one hit (3 blocks: the null block, the
    # request's full block and its last token's partial block).
    assert res.block_hits == (2, 2)
    assert res.block_hit_rate == [0.5, 0.5]
    assert [inst["requests"] for inst in res.instance_figures()] == [[2, 2], [2, 2]]
    assert res.infinite_block_hit_rate == 0.5


def test_random_follows_the_seeded_generator():
    trace = [req([i % 3]) for i in range(50)]
    rng = random.Random(11)
    assert assignment("random", trace, 4, seed=11) == [rng.randrange(4) for _ in trace]
    assert assignment("random", trace, 4, seed=11) != assignment("random", trace, 4, seed=12)


def test_prefix_routes_by_the_hash_of_the_first_block():
    trace = [req([5, 100]), req([9, 101]), req([5, 100, 102]), req([9, 103]), req([])]
    got = assignment("prefix", trace, 3)
    assert got[:4] == [stable_hash64(5) % 3, stable_hash64(9) % 3,
                       stable_hash64(5) % 3, stable_hash64(9) % 3]
    assert got[4] == 0                     # no blocks: instance 0


def test_prefix_keeps_shared_prefixes_together():
    # Two conversations alternate; with room for one request per instance, round robin
    # misses their second turns' heads while prefix routing finds them (the heads hash apart).
    a, b = 1, 2
    assert stable_hash64(a) % 2 != stable_hash64(b) % 2
    trace = [req([a]), req([b]), req([b]), req([a])]
    prefix = replay_fleet(trace, "prefix", 2, [3], BS)
    rr = replay_fleet(trace, "round_robin", 2, [3], BS)
    assert prefix.block_hits == (2,)
    assert rr.block_hits == (0,)


def test_cache_aware_known_answer():
    trace = [req([1, 2]), req([3]), req([1, 2, 5]), req([3, 4]), req([9])]
    # r0: no cache anywhere, tie -> instance 0. r1: no prefix, instance 1 has fewer requests.
    # r2: instance 0 holds [1, 2]. r3: instance 1 holds [3]. r4: tie 2-2 -> lowest index.
    assert assignment("cache_aware", trace, 2) == [0, 1, 0, 1, 0]
    res = replay_fleet(trace, "cache_aware", 2, [100], BS)
    assert res.block_hits == (3,)
    assert res.total_blocks == 9
    assert res.token_hits == (3 * BS,)


def test_cache_aware_sees_only_what_its_index_holds():
    # Capacity 3 per instance: the null block and room for two blocks. Instance 0 serves
    # [1], [3], [7] and evicts 1, so the last [1] finds no cached prefix and goes to the
    # less loaded instance; unbounded, instance 0 still holds it; with no index (too small
    # for any request), only the load counts.
    trace = [req([1]), req([2]), req([3]), req([5]), req([7]), req([1])]
    assert assignment("cache_aware", trace, 2, capacity=3) == [0, 1, 0, 1, 0, 1]
    assert assignment("cache_aware", trace, 2, capacity=None) == [0, 1, 0, 1, 0, 0]
    assert assignment("cache_aware", trace, 2, capacity=1) == [0, 1, 0, 1, 0, 1]


def test_session_follows_chains_to_the_first_turn():
    trace = [req([1], chat=10, parent=-1), req([1, 2], chat=11, parent=10),
             req([5], chat=20, parent=-1), req([1, 2, 3], chat=12, parent=11),
             req([7], chat=30, parent=99)]          # parent outside the trace: its own root
    got = assignment("session", trace, 5)
    want = [stable_hash64(c) % 5 for c in (10, 10, 20, 10, 99)]
    assert got == want


def test_session_is_refused_without_session_ids():
    with pytest.raises(ScenarioError) as err:
        replay_fleet([req([1])], "session", 2, [10], BS)
    assert err.value.key == "routing" and "chat_id" in str(err.value)


@pytest.mark.parametrize("routing", [r for r in ROUTINGS if r != "session"])
@pytest.mark.parametrize("semantics", ["engine", "independent"])
def test_one_instance_equals_one_cache(routing, semantics):
    trace = prefix_closed_trace(random.Random(3), 300)
    caps = [0, 1, 5, 20, 80, 400]
    single = replay_lru_curve(trace, caps, BS, semantics)
    fleet = replay_fleet(trace, routing, 1, caps, BS, semantics)
    assert fleet.block_hits == single.block_hits
    assert fleet.token_hits == single.token_hits
    assert fleet.infinite_token_hit_rate == pytest.approx(single.infinite_token_hit_rate)


@pytest.mark.parametrize("routing", ["round_robin", "random", "prefix", "cache_aware"])
def test_fleet_equals_per_instance_replays(routing):
    """The fleet's hits are the sums of plain per-capacity LRU replays of each instance's
    requests (the partition taken from the router), at capacities that fit every request
    (where the fixed-capacity replay equals the one-pass curve)."""
    trace = prefix_closed_trace(random.Random(5), 400)
    m = fitting_capacity(trace)
    caps = [m, 3 * m, 10 * m]
    res = replay_fleet(trace, routing, 3, caps, BS, seed=7)
    for k, cap in enumerate(caps):
        parts = [[], [], []]
        for r, j in zip(trace, assignment(routing, trace, 3, seed=7, capacity=cap)):
            parts[j].append(r)
        hits = [PolicyReplay("lru", [cap], BS) for _ in parts]
        for runner, part in zip(hits, parts):
            runner.feed(part)
        assert res.block_hits[k] == sum(h.result().block_hits[0] for h in hits)
        assert res.token_hits[k] == sum(h.result().token_hits[0] for h in hits)
        assert [row.requests for row in res.per_capacity[k]] == [len(p) for p in parts]


def test_fleet_curve_is_exact_at_every_capacity():
    trace = prefix_closed_trace(random.Random(8), 300)
    runner = FleetCurveReplay("random", 2, BS, seed=1)
    runner.feed(trace)
    curve = runner.result()
    for cap in range(0, 200, 7):
        assert curve.block_hits(cap) == replay_fleet(trace, "random", 2, [cap], BS,
                                                     seed=1).block_hits[0]


@pytest.mark.parametrize("routing", ["round_robin", "cache_aware"])
def test_fleet_warmup_counts_only_the_tail(routing):
    trace = prefix_closed_trace(random.Random(9), 200)
    w, caps = 120, [10, 50]
    if routing == "cache_aware":
        counted = WarmupReplay(CacheAwareReplay(2, caps, BS), w)
    else:
        counted = WarmupReplay(FleetCurveReplay(routing, 2, BS), w)
    counted.feed(trace[:77])                                   # the boundary in a later chunk
    counted.feed(trace[77:])
    res = counted.result()
    if routing != "cache_aware":
        res = res.at(caps)
    full = replay_fleet(trace, routing, 2, caps, BS)
    head = replay_fleet(trace[:w], routing, 2, caps, BS)      # replays are causal
    assert res.requests == len(trace) - w
    assert res.block_hits == tuple(a - b for a, b in zip(full.block_hits, head.block_hits))
    assert res.token_hits == tuple(a - b for a, b in zip(full.token_hits, head.token_hits))


def test_bad_arguments():
    with pytest.raises(ScenarioError) as err:
        Router("round_robin", 0)
    assert err.value.key == "instances"
    with pytest.raises(ScenarioError) as err:
        replay_fleet([req([1])], "sticky", 2, [1], BS)
    assert err.value.key == "routing"
    with pytest.raises(ScenarioError):
        Router("cache_aware", 2)
