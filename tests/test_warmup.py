"""Warm-up (traces/warmup.py): the counted part of a replay equals counting request by request."""

from __future__ import annotations

import random

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.replay import (
    BeladyReplay,
    LRUCurveReplay,
    PolicyReplay,
    replay_lru_curve,
)
from kvcache_calculator.traces.warmup import (
    BeladyWarmupReplay,
    WarmupReplay,
    curve_minus,
    warmup_requests,
)
from trace_helpers import BS, fitting_capacity, prefix_closed_trace


def counted_by_hand(trace, policy, caps, w, semantics="engine"):
    """Token hits of requests w.. at each capacity, from per-request deltas."""
    runner = PolicyReplay(policy, caps, BS, semantics)
    before = None
    for i, r in enumerate(trace):
        if i == w:
            before = runner.result().token_hits
        runner.feed([r])
    after = runner.result().token_hits
    before = before if before is not None else after
    return tuple(a - b for a, b in zip(after, before))


@pytest.mark.parametrize("semantics", ["engine", "independent"])
@pytest.mark.parametrize("w", [0, 1, 150, 299, 300, 500])
def test_lru_curve_warmup_equals_request_by_request(semantics, w):
    trace = prefix_closed_trace(random.Random(w + 1), 300)
    m = fitting_capacity(trace)     # where the fixed-capacity replay equals the curve
    caps = [m, 2 * m, 8 * m, 4096]
    runner = WarmupReplay(LRUCurveReplay(BS, semantics), w)
    for i in range(0, len(trace), 37):                     # boundary inside a chunk
        runner.feed(trace[i:i + 37])
    curve = runner.result()
    assert curve.requests == max(0, len(trace) - w)
    assert tuple(curve.token_hits(c) for c in caps) == counted_by_hand(trace, "lru", caps, w,
                                                                      semantics)


@pytest.mark.parametrize("policy", ["fifo", "lfu"])
def test_policy_warmup(policy):
    trace = prefix_closed_trace(random.Random(3), 250)
    caps = [2, 10, 50, 200]
    runner = WarmupReplay(PolicyReplay(policy, caps, BS), 100)
    runner.feed(trace)
    assert runner.result().token_hits == counted_by_hand(trace, policy, caps, 100)


def test_belady_warmup_splits_the_full_run():
    trace = prefix_closed_trace(random.Random(4), 250)
    caps = [3, 20]
    full = BeladyReplay(caps, BS)
    full.feed(trace)
    full = full.result()
    zero = BeladyWarmupReplay(caps, BS, warmup_requests=0)
    zero.feed(trace)
    assert zero.result() == full
    tail = BeladyWarmupReplay(caps, BS, warmup_requests=100)
    tail.feed(trace)
    tail = tail.result()
    assert tail.requests == 150
    assert all(0 <= t <= f for t, f in zip(tail.token_hits, full.token_hits))
    assert tail.total_blocks == sum(len(r.hash_ids) for r in trace[100:])
    everything = BeladyWarmupReplay(caps, BS, warmup_requests=1000)
    everything.feed(trace)
    assert everything.result().block_hits == (0, 0)


def test_curve_minus_of_itself_is_empty():
    curve = replay_lru_curve(prefix_closed_trace(random.Random(5), 100))
    empty = curve_minus(curve, curve)
    assert empty.distances == () and empty.requests == 0 and empty.block_hits(10 ** 6) == 0


def test_warmup_fraction():
    assert warmup_requests(0.5, 11) == 5
    assert warmup_requests(0, 11) == 0
    for bad in (1, -0.1, 1.5, "0.5", None):
        with pytest.raises(ScenarioError) as err:
            warmup_requests(bad, 10)
        assert err.value.key == "warmup"
