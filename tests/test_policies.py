"""Eviction policies: one contract for every policy and both users (the simulator's caches
and trace replay), then each policy's own ordering.

A request here is a sequence of two runs of blocks, a head run (a system prompt, shared)
then a tail run (a conversation's history, growing turn by turn): the shape both users serve.
Block ``i`` of run ``key`` is the block ``(key, i)`` for every cache, so the simulator's
segment LRU and the per-block caches can be compared block by block.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.policies import (
    FIFO, LFU, LRU, POLICY_CLASSES, EvictionLog, SegmentLRU, make_cache, prefix_length,
)
from kvcache_calculator.sim.simulate import Simulation
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import PolicyReplay

POLICIES = sorted(POLICY_CLASSES)


def run_blocks(key, count):
    return [(key, i) for i in range(count)]


def sequence(head, head_blocks, tail, tail_blocks):
    """The blocks of a request: run ``head`` then run ``tail``, head first."""
    return run_blocks(head, head_blocks) + run_blocks(tail, tail_blocks)


class SimulatorUser:
    """Serves requests the way the simulator does: one cache per tier and instance, LRU by
    segments (``SegmentLRU.access_runs``) or per block (``access``)."""

    def __init__(self, policy: str, capacity_blocks: int):
        self.segments = policy == "lru-segments"
        self.cache = SegmentLRU(capacity_blocks) if self.segments else make_cache(policy, capacity_blocks)
        self.now_s = 0.0

    def serve(self, head, head_blocks, tail, tail_blocks) -> int:
        self.now_s += 1.0
        if self.segments:
            return self.cache.access_runs(head, head_blocks, tail, tail_blocks, self.now_s)
        return self.cache.access(sequence(head, head_blocks, tail, tail_blocks))


#: The policies trace replay serves through the family. Its ``engine`` LRU is vLLM's block
#: pool itself (traces/vllm_pool.py, tested against the one-pass curve in test_replay.py).
REPLAY_POLICIES = tuple(p for p in POLICIES if p != "lru")


class ReplayUser:
    """Serves requests the way trace replay does (``engine`` semantics): a PolicyReplay fed
    one request at a time; the hit is the growth of its block hits. Replay adds vLLM's rules
    on top of the family: one block more for the null block, and prompts one token longer
    than their blocks, so that every block is full and may hit (the last token is recomputed)."""

    def __init__(self, policy: str, capacity_blocks: int):
        self.runner = PolicyReplay(policy, [capacity_blocks + 1], 1, "engine")
        self.cache = self.runner.caches[0]

    def serve(self, head, head_blocks, tail, tail_blocks) -> int:
        blocks = sequence(head, head_blocks, tail, tail_blocks)
        before = self.runner.result().block_hits[0]
        self.runner.feed([Request(0.0, len(blocks) + 1, 1, tuple(blocks))])
        return self.runner.result().block_hits[0] - before


@st.composite
def conversations(draw, max_requests=30):
    """Requests ``(head, head_blocks, tail, tail_blocks)``: up to 3 system prompts of 0-3
    blocks, conversations that grow by 0-3 blocks a turn."""
    prompts = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    lengths: dict = {}
    out = []
    for _ in range(draw(st.integers(0, max_requests))):
        conv = draw(st.integers(0, 6))
        p = conv % len(prompts)
        lengths[conv] = lengths.get(conv, 0) + draw(st.integers(0, 3))
        out.append((("s", p), prompts[p], ("c", conv), lengths[conv]))
    return out


class UserContract:
    """What every policy promises, whichever user serves the requests. A subclass says how
    its user is made (``make``); each test runs for every policy that user serves."""

    def make(self, policy: str, capacity_blocks: int):
        raise NotImplementedError

    def test_starts_empty(self, policy):
        user = self.make(policy, 4)
        assert len(user.cache) == 0 and list(user.cache.victims()) == []
        assert ("c", 0) not in user.cache and user.cache.evictions == 0

    def test_caches_a_sequence_that_fits(self, policy):
        user = self.make(policy, 7)
        assert user.serve("s", 3, "a", 2) == 0
        assert set(user.cache) == set(sequence("s", 3, "a", 2)) and len(user.cache) == 5
        assert user.serve("s", 3, "a", 3) == 5            # the next turn reuses all of it
        assert user.serve("s", 3, "b", 1) == 3            # another conversation: the prompt
        assert user.cache.evictions == 0

    def test_long_request_keeps_its_head(self, policy):
        user = self.make(policy, 3)
        user.serve("s", 2, "a", 3)
        assert set(user.cache) == {("s", 0), ("s", 1), ("a", 0)}

    def test_long_request_drops_others_and_its_own_cached_tail(self, policy):
        user = self.make(policy, 3)
        user.serve("s", 0, "b", 1)
        user.serve("s", 0, "a", 2)
        assert user.serve("s", 2, "a", 3) == 0
        assert set(user.cache) == {("s", 0), ("s", 1), ("a", 0)}
        assert user.cache.evictions == 2                  # ("b", 0) and ("a", 1)

    def test_zero_capacity_holds_nothing(self, policy):
        user = self.make(policy, 0)
        assert user.serve("s", 1, "a", 2) == 0 and user.serve("s", 1, "a", 2) == 0
        assert len(user.cache) == 0 and user.cache.evictions == 0

    def test_smallest_unpinned_counterexample(self, policy):
        """Capacity 2, requests [3], [4], [2, 3], [4]: serving [2, 3] must not evict 3,
        a block of the request being served (a per-block FIFO that does not pin evicts it,
        keeps 4, and the last request hits)."""
        user = self.make(policy, 2)
        one = lambda key: (key, 0)   # noqa: E731  a run of one block
        assert user.serve(None, 0, "3", 1) == 0
        assert user.serve(None, 0, "4", 1) == 0
        assert user.serve("2", 1, "3", 1) == 0
        assert set(user.cache) == {one("2"), one("3")}
        assert user.serve(None, 0, "4", 1) == 0

    @settings(max_examples=60, deadline=None)
    @given(capacity=st.integers(0, 10), requests=conversations())
    def test_invariants(self, policy, capacity, requests):
        """The hit is the cached prefix before; afterwards the request's head is cached, the
        capacity holds, and exactly the overflow was evicted, none of it the request's."""
        user = self.make(policy, capacity)
        for head, head_blocks, tail, tail_blocks in requests:
            blocks = sequence(head, head_blocks, tail, tail_blocks)
            before = set(user.cache)
            evictions = user.cache.evictions
            assert user.serve(head, head_blocks, tail, tail_blocks) == prefix_length(before, blocks)
            after = set(user.cache)
            assert len(user.cache) == len(after) <= capacity
            assert set(blocks[:capacity]) <= after <= before | set(blocks)
            if len(before | set(blocks)) > capacity:
                assert len(after) == capacity
            assert user.cache.evictions - evictions == len(before - after)
            assert len(list(user.cache.victims())) == len(after)

    def test_deterministic(self, policy):
        rng = random.Random(7)   # seed 7: 200 requests over 12 conversations, replayed twice
        requests = []
        lengths = [0] * 12
        for _ in range(200):
            c = rng.randrange(12)
            lengths[c] += rng.randint(1, 3)
            requests.append(("s", 2, c, lengths[c]))
        runs = []
        for _ in range(2):
            user = self.make(policy, 12)
            hits = [user.serve(*r) for r in requests]
            runs.append((hits, list(user.cache.victims())))
        assert runs[0] == runs[1]


@pytest.mark.parametrize("policy", ["lru-segments", *POLICIES])
class TestSimulatorUser(UserContract):
    """The contract as the simulator serves requests."""

    def make(self, policy, capacity_blocks):
        return SimulatorUser(policy, capacity_blocks)


@pytest.mark.parametrize("policy", REPLAY_POLICIES)
class TestReplayUser(UserContract):
    """The contract as trace replay (engine semantics) serves requests."""

    def make(self, policy, capacity_blocks):
        return ReplayUser(policy, capacity_blocks)


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=80, deadline=None)
@given(capacity=st.integers(0, 12), requests=conversations(max_requests=40))
def test_both_users_serve_alike(policy, capacity, requests):
    """The simulator's cache and replay's give the same hits and the same eviction order;
    for LRU, the segment LRU too."""
    users = [SimulatorUser(policy, capacity)]
    if policy == "lru":
        users.append(SimulatorUser("lru-segments", capacity))
    else:
        users.append(ReplayUser(policy, capacity))
    for request in requests:
        hits = {user.serve(*request) for user in users}
        assert len(hits) == 1
        assert len({tuple(user.cache.victims()) for user in users}) == 1
    assert len({user.cache.evictions for user in users}) == 1


@pytest.mark.parametrize("policy, engine", [(p, "blocks") for p in REPLAY_POLICIES])
def test_simulator_and_replay_agree_on_a_simulated_run(policy, engine):
    """Seed 2: the requests a simulation served, replayed per instance through PolicyReplay
    (engine semantics), hit the very same blocks (capped at the reusable prefix)."""
    s = Scenario.from_dict({"arrival_rate": 0.5, "turns": 4, "think_time_s": 20, "input_tokens": 37,
                            "output_tokens": 21, "system_prompt_tokens": 70, "block_size": 8,
                            "num_system_prompts": 2, "instances": 2, "routing": "random",
                            "policy": policy})
    # replay serves each request instantly: so does this simulation
    sim = Simulation(s, capacity_tokens=600, conversations=60, seed=2, engine=engine, record=True, in_flight=False)
    sim.run()
    B, S, D = s.block_size, s.system_prompt_tokens, s.input_tokens + s.output_tokens
    ns = S // B
    runners = [PolicyReplay(policy, [600 // B + 1], 1, "engine") for _ in range(s.instances)]
    for _t, cid, k, p, inst, hit, _ohit in sim.records:
        blocks = tuple(("s", p, i) for i in range(ns)) + tuple(("c", cid, i) for i in range(ns, (S + k * D) // B))
        before = runners[inst].result().block_hits[0]
        runners[inst].feed([Request(0.0, len(blocks) + 1, 1, blocks)])
        reusable = (S + (k - 1) * D + s.input_tokens - 1) // B
        assert min(runners[inst].result().block_hits[0] - before, reusable) == hit
    assert sum(r.result().block_hits[0] for r in runners) > 0


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(0, 6), blocks=st.lists(st.integers(0, 9), max_size=40))
def test_touch_is_the_one_block_request(policy, capacity, blocks):
    """``touch(b)`` (independent replay) is ``access([b])``: same hits, order, evictions."""
    by_touch, by_access = make_cache(policy, capacity), make_cache(policy, capacity)
    for b in blocks:
        assert by_touch.touch(b) == bool(by_access.access([b]))
        assert list(by_touch.victims()) == list(by_access.victims())
    assert by_touch.evictions == by_access.evictions


@pytest.mark.parametrize("policy", POLICIES)
@settings(max_examples=60, deadline=None)
@given(capacity=st.integers(0, 6), requests=st.lists(st.lists(st.integers(0, 9), max_size=8), max_size=30))
def test_repeated_blocks_in_a_request(policy, capacity, requests):
    """A request listing a block twice keeps its first ``capacity`` distinct blocks."""
    cache = make_cache(policy, capacity)
    for blocks in requests:
        before = set(cache)
        cache.access(blocks)
        head = list(dict.fromkeys(blocks))[:capacity]
        assert set(head) <= set(cache) <= before | set(blocks) and len(cache) <= capacity


def test_bad_capacity_and_policy():
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        LRU(-1)
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        FIFO(2.5)
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        SegmentLRU(-3)
    with pytest.raises(ScenarioError, match="policy: got 'mru'"):
        make_cache("mru", 3)


def test_access_returns_the_cached_run_from_start():
    cache = LRU(10)
    cache.access([1, 2, 3])
    assert cache.access([1, 2, 3, 4]) == 3
    assert cache.access([9, 2, 3, 4, 5], start=1) == 4
    assert prefix_length(cache, [1, 7, 3]) == 1 and prefix_length(cache, [1, 2], start=2) == 2


# -- each policy's own ordering ------------------------------------------------------------


def test_lru_tail_first_order():
    cache = LRU(10)
    cache.access([1, 2, 3])
    assert list(cache.victims()) == [3, 2, 1]      # head most recent
    cache.access([4])
    cache.access([1, 2])
    assert list(cache.victims()) == [3, 4, 2, 1]


def test_lru_partial_history_gives_partial_prefix():
    cache = LRU(5)
    cache.access(["s", "a1", "a2", "a3"])           # conversation a
    cache.access(["s", "b1", "b2"])                 # b evicts a's tail
    assert list(cache) == ["a2", "a1", "b2", "b1", "s"]
    assert prefix_length(cache, ["s", "a1", "a2", "a3", "a4"]) == 3


def test_lru_touch_refreshes():
    cache = LRU(2)
    assert [cache.touch(b) for b in "aba"] == [False, False, True]
    cache.touch("c")                                # evicts b, the least recent
    assert list(cache) == ["a", "c"] and cache.evictions == 1


def test_segment_lru_trims_the_least_recent_run_from_its_tail():
    log = EvictionLog()
    cache = SegmentLRU(6, log)
    cache.access_runs("s", 2, "a", 3, now_s=1.0)
    assert list(cache) == [("a", 2), ("a", 1), ("a", 0), ("s", 1), ("s", 0)]
    log.active = True
    assert cache.access_runs("s", 2, "b", 2, now_s=4.0) == 2
    assert cache.cached_blocks("a") == 2 and cache.cached_blocks("b") == 2 and len(cache) == 6
    assert (log.blocks, log.idle_block_s, log.mean_idle_s) == (1, 3.0, 3.0)
    assert cache.access_runs("s", 2, "a", 4, now_s=5.0, start=2) == 4   # a's blocks 0-1
    assert cache.cached_blocks("b") == 0 and log.blocks == 3


def test_fifo_hits_do_not_refresh():
    cache = FIFO(3)
    cache.access([1, 2])                  # inserted tail first: 2 then 1
    assert list(cache.victims()) == [2, 1]
    cache.access([1, 2])                  # hits: order unchanged
    cache.access([3])
    assert list(cache.victims()) == [2, 1, 3]
    cache.access([4])
    assert set(cache) == {1, 3, 4}


def test_fifo_pins_the_running_sequence():
    cache = FIFO(3)
    cache.access([7])                     # 7 is the oldest
    cache.access([8, 9])
    cache.access([7, 10])                 # 7 is pinned: 9, the oldest unpinned, goes
    assert set(cache) == {7, 8, 10}


def test_fifo_touch_does_not_refresh():
    cache = FIFO(2)
    assert [cache.touch(b) for b in "aba"] == [False, False, True]
    cache.touch("c")                      # evicts a, the first in
    assert list(cache) == ["b", "c"]


def test_lfu_counts_and_ties():
    cache = LFU(3)
    cache.access([1, 2])
    cache.access([1])
    assert cache.count(1) == 2 and cache.count(2) == 1
    cache.access([3])                     # 2 and 3 have one access; 2 is older
    cache.access([4])
    assert set(cache) == {1, 3, 4}
    assert list(cache.victims()) == [3, 4, 1]
    cache.access([3, 4])
    cache.access([3, 4])
    cache.access([5])                     # 1 has the fewest accesses (2 vs 3)
    assert set(cache) == {3, 4, 5}
    assert cache.count(5) == 1


def test_lfu_pins_the_running_sequence():
    cache = LFU(3)
    cache.access([1])
    cache.access([1, 2])                  # 1: two accesses, 2: one
    cache.access([3])
    cache.access([2, 4])                  # 2 and 4 pinned: 3 (one access) goes, not 1
    assert set(cache) == {1, 2, 4}


def test_lfu_touch_counts():
    cache = LFU(2)
    for b in "aab":
        cache.touch(b)
    cache.touch("c")                      # b has the lowest count
    assert set(cache) == {"a", "c"}
    cache.touch("c")
    cache.touch("c")
    cache.touch("d")                      # a (2) is less frequent than c (3)
    assert set(cache) == {"c", "d"}


def test_lfu_recached_block_starts_at_one():
    cache = LFU(1)
    cache.access([1])
    cache.access([1])
    cache.access([2])
    cache.access([1])
    assert cache.count(1) == 1
