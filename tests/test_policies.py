"""Eviction policies: one contract test for every policy, then each policy's own ordering."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.sim.policies import FIFO, LFU, LRU, POLICY_CLASSES, make_cache, prefix_length

ALL = sorted(POLICY_CLASSES)

sequences = st.lists(st.lists(st.integers(0, 30), min_size=0, max_size=12, unique=True), max_size=40)


@pytest.mark.parametrize("policy", ALL)
class TestContract:
    """What every policy promises (the interface of kvcache_calculator.sim.policies)."""

    def test_empty(self, policy):
        cache = make_cache(policy, 4)
        assert len(cache) == 0 and 7 not in cache and list(cache) == []
        assert cache.name == policy

    def test_caches_a_sequence_that_fits(self, policy):
        cache = make_cache(policy, 4)
        cache.access(["a", "b", "c"])
        assert set(cache) == {"a", "b", "c"} and len(cache) == 3 and cache.evictions == 0

    def test_long_sequence_keeps_its_head(self, policy):
        cache = make_cache(policy, 3)
        cache.access([1, 2, 3, 4, 5])
        assert set(cache) == {1, 2, 3}

    def test_long_sequence_drops_its_own_cached_tail(self, policy):
        cache = make_cache(policy, 3)
        cache.access([4, 5])
        cache.access([1, 2, 3, 4, 5])
        assert set(cache) == {1, 2, 3}
        assert cache.evictions == 2

    def test_zero_capacity_holds_nothing(self, policy):
        cache = make_cache(policy, 0)
        cache.access([1, 2])
        assert len(cache) == 0 and cache.evictions == 0

    @settings(max_examples=60, deadline=None)
    @given(capacity=st.integers(0, 10), accesses=sequences)
    def test_invariants(self, policy, capacity, accesses):
        """Capacity holds; the accessed head is cached; evictions are exactly the overflow."""
        cache = make_cache(policy, capacity)
        for blocks in accesses:
            before = set(cache)
            evictions = cache.evictions
            cache.access(blocks)
            after = set(cache)
            assert len(cache) == len(after) <= capacity
            assert set(blocks[:capacity]) <= after
            assert after <= before | set(blocks)
            assert cache.evictions - evictions == len(before - after)
            assert len(list(cache.victims())) == len(cache)

    def test_deterministic(self, policy):
        rng = random.Random(7)   # seed 7: 200 random accesses, replayed twice
        accesses = [rng.sample(range(40), rng.randint(1, 8)) for _ in range(200)]
        runs = []
        for _ in range(2):
            cache = make_cache(policy, 12)
            for blocks in accesses:
                cache.access(blocks)
            runs.append(list(cache))
        assert runs[0] == runs[1]

    def test_prefix_length(self, policy):
        cache = make_cache(policy, 10)
        cache.access([1, 2, 3])
        assert prefix_length(cache, [1, 2, 3, 4]) == 3
        assert prefix_length(cache, [1, 9, 3]) == 1
        assert prefix_length(cache, [9, 1]) == 0
        assert prefix_length(cache, [1, 2, 3, 4], start=1) == 3
        assert prefix_length(cache, []) == 0


def test_bad_capacity_and_policy():
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        LRU(-1)
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        FIFO(2.5)
    with pytest.raises(ScenarioError, match="policy: got 'mru'"):
        make_cache("mru", 3)


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


def test_lru_pins_the_running_sequence():
    cache = LRU(3)
    cache.access([1, 2, 3])
    cache.access([1, 4])                           # 3, the least recent, goes
    assert set(cache) == {1, 2, 4}


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


def test_lfu_recached_block_starts_at_one():
    cache = LFU(1)
    cache.access([1])
    cache.access([1])
    cache.access([2])
    cache.access([1])
    assert cache.count(1) == 1
