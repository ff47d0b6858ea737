"""SHARDS-sampled replay (traces/sampling.py) and the trace generator (traces/synthetic.py)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.hashing import stable_hash64
from kvcache_calculator.traces.readers import read_trace
from kvcache_calculator.traces.replay import (
    LRUCurveReplay,
    PolicyReplay,
    last_block_tokens,
    replay_lru_curve,
)
from kvcache_calculator.traces.routing import replay_fleet
from kvcache_calculator.traces.sampling import (
    SAMPLE_FLOOR,
    SAMPLE_SALT,
    SampledReplay,
    kept_ids,
    ladder_rates,
    rate_for_capacity,
    replay_sampled,
    sample_request,
    sample_requests,
    sample_threshold,
)
from kvcache_calculator.traces.synthetic import generate_requests
from kvcache_calculator.traces.warmup import WarmupReplay
from trace_helpers import BS, prefix_closed_trace, req

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"


def test_kept_ids_is_the_hash_under_the_threshold():
    ids = list(range(-50, 3000)) + [2 ** 70 + 5]
    th = sample_threshold(0.3)
    assert kept_ids(ids, th) == [b for b in ids if stable_hash64(b, SAMPLE_SALT) < th]


def test_kept_share_is_the_rate():
    # 100,000 ids at rate 0.1: binomial sd 95; 5 sd is a failure probability below 1e-6.
    kept = len(kept_ids(range(100_000), sample_threshold(0.1)))
    assert abs(kept - 10_000) < 5 * math.sqrt(100_000 * 0.1 * 0.9)


def test_sampled_request_keeps_the_token_counts():
    th = sample_threshold(0.5)
    ids = list(range(40))
    keep = kept_ids(ids, th)
    r = req(ids, length=39 * BS + 100)
    s = sample_request(r, th, BS)
    assert list(s.hash_ids) == keep
    if keep[-1] == ids[-1]:
        assert s.input_length == (len(keep) - 1) * BS + 100
    else:
        assert s.input_length == len(keep) * BS + 1
    # The last block kept: its own tokens.
    last_kept = next(b for b in range(1000, 2000) if stable_hash64(b, SAMPLE_SALT) < th)
    s = sample_request(req([last_kept], length=100), th, BS)
    assert s.input_length == 100
    # Nothing kept: dropped.
    dropped = next(b for b in range(1000, 2000) if stable_hash64(b, SAMPLE_SALT) >= th)
    assert sample_request(req([dropped]), th, BS) is None


@pytest.mark.parametrize("semantics", ["engine", "independent"])
def test_rate_one_is_exact(semantics):
    trace = prefix_closed_trace(random.Random(2), 500)
    exact = replay_lru_curve(trace, None, BS, semantics)
    approx = replay_sampled(trace, 1.0, BS, semantics)
    for cap in (0, 1, 3, 10, 40, 200, 10_000):
        assert approx.block_hits(cap) == exact.block_hits(cap)
        assert approx.token_hits(cap) == exact.token_hits(cap)
    assert approx.infinite_token_hit_rate == exact.infinite_token_hit_rate
    assert approx.distinct_blocks == exact.distinct_blocks
    assert approx.to_dict()["approximate"] is True


def test_capacity_is_scaled_by_the_rate():
    trace = prefix_closed_trace(random.Random(4), 400)
    approx = replay_sampled(trace, 0.25, BS, max_rate=0.25)     # no ladder: the main rate only
    for cap in (4, 10, 41, 100):
        c = math.floor(0.25 * cap)
        want = min(approx.total_blocks,
                   max(0.0, (approx.sample.block_hits(c) + approx.adjust_blocks) / 0.25))
        assert approx.block_hits(cap) == (want if c >= 1 else 0.0)
    assert approx.block_hits(3) == 0.0          # floor(0.25 * 3) = 0: nothing fits


def test_adjustment_restores_the_expected_reference_count():
    """SHARDS_adj: estimated references and the ceiling's hits count the missing (or extra)
    sampled references as hits at the smallest distance."""
    trace = prefix_closed_trace(random.Random(6), 600)
    approx = replay_sampled(trace, 0.2, BS)
    assert approx.adjust_blocks == pytest.approx(0.2 * approx.total_blocks
                                                 - approx.sample.total_blocks)
    assert approx.infinite_block_hits == pytest.approx(
        min(approx.total_blocks, max(0, (approx.sample.infinite_block_hits
                                         + approx.adjust_blocks) / 0.2)))


def test_sampled_fleet_at_rate_one_is_exact():
    trace = prefix_closed_trace(random.Random(7), 300)
    for routing in ("round_robin", "cache_aware"):
        exact = replay_fleet(trace, routing, 2, [5, 30], BS)
        approx = replay_fleet(trace, routing, 2, [5, 30], BS, sample_rate=1.0)
        assert approx.block_hits == exact.block_hits
        assert approx.approximate and not exact.approximate


def test_sampled_warmup_at_rate_one_is_exact():
    trace = prefix_closed_trace(random.Random(8), 300)
    a = WarmupReplay(SampledReplay(BS, 1.0), 100)
    b = WarmupReplay(LRUCurveReplay(BS), 100)
    a.feed(trace)
    b.feed(trace)
    a, b = a.result(), b.result()
    assert a.requests == b.requests == 200
    for cap in (1, 7, 50, 500):
        assert a.token_hits(cap) == b.token_hits(cap)


def test_error_on_a_generated_trace():
    """Deterministic (seeded trace, fixed salt): at rate 0.1 on 20,000 generated requests the
    token hit rate is within 1.5 points of exact replay wherever the sample holds at least
    100 blocks (R * C >= 100); measured 0.9 points at most."""
    trace = list(generate_requests(20_000, 3))
    exact = replay_lru_curve(trace)
    approx = replay_sampled(trace, 0.1)
    for cap in (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000):
        assert abs(approx.token_hit_rate(cap) - exact.token_hit_rate(cap)) < 0.015, cap


@pytest.mark.parametrize("name", ["mooncake_conversation_trace", "mooncake_synthetic_trace"])
def test_error_on_the_shared_traces(name):
    """At rate 0.1 the shared traces are within 1 point everywhere R * C >= 100 (measured
    0.6 points at most)."""
    path = TRACES / f"{name}.jsonl"
    if not path.exists():
        pytest.skip(f"shared trace not found: {path} is absent")
    with open(path) as f:
        trace = list(read_trace(f))
    exact = replay_lru_curve(trace)
    approx = replay_sampled(trace, 0.1)
    for cap in (1_000, 3_000, 10_000, 30_000, 100_000):
        assert abs(approx.token_hit_rate(cap) - exact.token_hit_rate(cap)) < 0.01, cap


def test_bad_rates():
    for rate in (0, -0.1, 1.5, "0.1", True, float("nan")):
        with pytest.raises(ScenarioError) as err:
            SampledReplay(BS, rate)
        assert err.value.key == "sample"


def test_generator_is_seeded_and_prefix_closed():
    a = list(generate_requests(2_000, 5))
    b = list(generate_requests(2_000, 5))
    assert a == b and a != list(generate_requests(2_000, 6))
    parent = {}
    for r in a:
        assert (r.input_length - 1) // BS == len(r.hash_ids) - 1     # last block partial
        for i, h in enumerate(r.hash_ids):
            assert parent.setdefault(h, r.hash_ids[:i]) == r.hash_ids[:i]
    times = [r.timestamp_s for r in a]
    assert times == sorted(times)
    # In the steady state (after the first follow-ups, about a think time in), about
    # request_rate = 50 requests per second, less the conversations cut by their length:
    # measured 44.9 on the second half of 20,000 requests.
    late = list(generate_requests(20_000, 5))[10_000:]
    assert 40 < len(late) / (late[-1].timestamp_s - late[0].timestamp_s) < 55


def test_generator_rejects_bad_parameters():
    with pytest.raises(ScenarioError) as err:
        list(generate_requests(0))
    assert err.value.key == "requests"
    with pytest.raises(ScenarioError) as err:
        list(generate_requests(10, mean_turns=0.5))
    assert err.value.key == "mean_turns"


def test_rate_ladder_and_rate_per_capacity():
    """The ladder is R and 16R (at most 1); a capacity is estimated at the lowest rate whose
    sample holds SAMPLE_FLOOR (100) blocks there, else at the highest."""
    assert ladder_rates(0.01) == pytest.approx((0.01, 0.16))
    assert ladder_rates(0.1) == pytest.approx((0.1, 1.0))
    assert ladder_rates(0.5) == pytest.approx((0.5, 1.0))
    assert ladder_rates(0.001, 0.1) == pytest.approx((0.001, 0.016, 0.1))
    assert ladder_rates(0.01, 0.01) == (0.01,) and ladder_rates(1.0) == (1.0,)
    rates = ladder_rates(0.01)
    assert SAMPLE_FLOOR == 100
    for cap, want in ((100_000, 0.01), (10_000, 0.01), (9_999, 0.16), (1_000, 0.16),
                      (625, 0.16), (10, 0.16)):
        assert rate_for_capacity(rates, cap) == pytest.approx(want), cap
    curve = replay_sampled(prefix_closed_trace(random.Random(8), 300), 0.01, BS)
    assert curve.rates == pytest.approx(rates)
    assert curve.min_reliable_capacity_blocks == 625          # ceil(100 / 0.16)
    bands = curve.to_dict()["sample_rate_bands"]
    assert [b["min_capacity_blocks"] for b in bands] == [10_000, 0]


def test_small_capacities_are_a_plain_lru_on_the_higher_rates_sample():
    """Below the main rate's floor, the estimate is SHARDS_adj at the ladder's rate r(C): the
    hits of a fixed-capacity LRU (PolicyReplay, engine semantics) of floor(r * C) blocks fed
    the blocks kept at r, scaled by 1 / r. The ladder's replay keeps only its most recent
    blocks (16 * floor + 2 to 2x that) and still equals it."""
    trace = list(generate_requests(3_000, 5))
    rate = 0.02
    approx = replay_sampled(trace, rate, 512)
    assert approx.rates == pytest.approx((0.02, 0.32))
    checked = set()
    for cap in (400, 1_000, 1_500, 2_500, 3_000, 4_000, 6_000, 9_000):
        r = approx.rate_at(cap)
        c = math.floor(r * cap + 1e-9)
        sample = list(sample_requests(trace, r, 512))
        lru = PolicyReplay("lru", [c], 512)
        lru.feed(sample)
        got = lru.result()
        adjust_b = r * approx.total_blocks - sum(len(s.hash_ids) for s in sample)
        want_b = min(approx.total_blocks, max(0.0, (got.block_hits[0] + adjust_b) / r))
        assert approx.block_hits(cap) == pytest.approx(want_b, rel=1e-12), cap
        exact_tokens = sum(last_block_tokens(s.input_length, len(s.hash_ids), 512)
                           + 512 * (len(s.hash_ids) - 1) for s in sample)
        want_t = min(approx.total_tokens,
                     max(0.0, (got.token_hits[0] + r * approx.total_tokens - exact_tokens) / r))
        assert approx.token_hits(cap) == pytest.approx(want_t, rel=1e-12), cap
        checked.add(r)
    assert len(checked) == 2        # the main rate and the ladder's


def test_forget_beyond_keeps_the_curve_up_to_its_depth():
    trace = prefix_closed_trace(random.Random(9), 2_000)
    full = LRUCurveReplay(BS)
    small = LRUCurveReplay(BS)
    for i in range(0, len(trace), 100):
        full.feed(trace[i:i + 100])
        small.feed(trace[i:i + 100])
        small.forget_beyond(12)
    a, b = full.result(), small.result()
    assert b.distinct_blocks <= 12 + 100 * 5 and a.distinct_blocks > b.distinct_blocks
    for cap in range(13):
        assert (a.block_hits(cap), a.token_hits(cap)) == (b.block_hits(cap), b.token_hits(cap))
    assert b.block_hits(40) < a.block_hits(40)
