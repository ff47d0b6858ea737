"""Sweeps and sensitivity: the table against the exact model, curves, tornado, heatmap."""

from __future__ import annotations

import ast
import math
import random
import sys
from pathlib import Path

import pytest

from kvcache_calculator.analytic import sensitivity as sens
from kvcache_calculator.analytic.model import analyze, capacity_for_hit_rate, hits, occupancy
from kvcache_calculator.setup.capacity import compute_capacity, resolve_gpu, resolve_model
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, with_updates

DEFAULT = Scenario()
RANDOM4 = Scenario.from_dict({"routing": "random", "instances": 4, "arrival_rate": 4})
FIXED = Scenario.from_dict({"think_dist": "fixed", "turns_dist": "fixed", "turns": 4})
SHAPES = [DEFAULT, RANDOM4, FIXED,
          Scenario.from_dict({"model": "gpt-oss-20b", "routing": "round_robin", "instances": 2}),
          Scenario.from_dict({"model": "qwen3.5-27b", "gpu": "h200", "offload_gib": 200})]


def _analysis(s: Scenario):
    arch = resolve_model(s)
    return analyze(s, compute_capacity(s, arch, resolve_gpu(s)), arch)


def _random_scenario(rng: random.Random) -> Scenario:
    return Scenario.from_dict(dict(
        model=rng.choice(["llama-3.1-8b", "qwen3-8b", "gpt-oss-20b", "qwen3.5-27b", "llama-3.2-1b"]),
        gpu=rng.choice(["h100-sxm", "l40s", "h200"]),
        arrival_rate=10 ** rng.uniform(-2, 1.5), turns=float(rng.choice([1, 2, 3, 5, 8, 20])),
        turns_dist=rng.choice(["geometric", "fixed"]), think_time_s=10 ** rng.uniform(0, 3),
        think_dist=rng.choice(["exponential", "fixed"]), input_tokens=rng.choice([10, 100, 500, 3000]),
        output_tokens=rng.choice([0, 50, 300, 1000]), system_prompt_tokens=rng.choice([0, 15, 2000, 10000]),
        num_system_prompts=rng.choice([1, 1, 3]), instances=rng.choice([1, 2, 4, 16]),
        routing=rng.choice(["session", "random"]), offload_gib=rng.choice([0.0, 0.0, 50.0]),
        block_size=rng.choice([1, 16, 64])))


@pytest.mark.parametrize("scenario", SHAPES, ids=["default", "random4", "fixed", "gpt-oss-rr", "qwen35-offload"])
def test_table_points_equal_the_model(scenario):
    """Every grid point of the table reproduces analytic.occupancy and hits (rel. 1e-9)."""
    prep = sens.prepare(scenario)
    conv, shared, rate, theta = sens._table_scalars(scenario, prep.terms)
    for i, x in enumerate(prep.table.xs):
        occ, hit = prep.table._point(i, conv, shared, rate, theta)
        assert occ == pytest.approx(occupancy(prep.terms, x * theta), rel=1e-9, abs=1e-9)
        assert hit == pytest.approx(hits(prep.terms, x * theta)[0], rel=1e-9, abs=1e-9)


def test_exact_hit_rate_equals_analyze():
    """exact_hit_rate gives analyze's token hit rate and ceiling over 120 scenarios (seed 11, 1e-9)."""
    rng = random.Random(11)
    for _ in range(120):
        s = _random_scenario(rng)
        arch = resolve_model(s)
        cap = compute_capacity(s, arch, resolve_gpu(s))
        r = analyze(s, cap, arch)
        hit, ceiling = sens.exact_hit_rate(s, cap, arch)
        assert hit == pytest.approx(r.token_hit_rate, abs=1e-9), s.changed()
        assert ceiling == pytest.approx(r.max_token_hit_rate, abs=1e-9), s.changed()


TABLE_VARIANTS = {
    "arrival_rate": [0.05, 0.3, 3.0, 20.0], "think_time_s": [3.0, 30.0, 300.0, 3000.0],
    "num_system_prompts": [2, 10], "gpu_memory_gib": [20.0, 30.0, 50.0, 120.0], "gpu_mem_util": [0.6, 0.95],
    "activation_reserve_gib": [0.0, 10.0], "params_b": [4.0, 20.0], "kv_dtype": ["fp8", "fp32"],
    "offload_gib": [20.0, 300.0], "num_gpus": [2, 4], "weight_dtype": ["fp8"],
}


@pytest.mark.parametrize("scenario", SHAPES[:3], ids=["default", "random4", "fixed"])
def test_table_variants_agree_with_exact_analysis(scenario):
    """Inputs answered from the table agree with a full analysis within 0.1 point."""
    prep = sens.prepare(scenario)
    for key, values in TABLE_VARIANTS.items():
        for v in values:
            fast = sens.variant_hit_rate(prep, **{key: v})
            exact = sens.variant_result(prep, **{key: v}).token_hit_rate
            assert fast == pytest.approx(exact, abs=1e-3), (key, v)
    if scenario.routing == "session":
        for inst in (2, 5):
            assert sens.variant_hit_rate(prep, instances=inst) == pytest.approx(
                sens.variant_result(prep, instances=inst).token_hit_rate, abs=1e-3)


@pytest.mark.parametrize("scenario", SHAPES[:3], ids=["default", "random4", "fixed"])
def test_tokens_for_hit_rate_inverts_the_model(scenario):
    prep = sens.prepare(scenario)
    ceiling = prep.result.max_token_hit_rate
    for rate in (0.05, 0.3, 0.5, ceiling - 0.05, ceiling - 0.005):
        if rate <= 0:
            continue
        ours = sens.tokens_for_hit_rate(prep, rate)
        theirs, _ = capacity_for_hit_rate(scenario, rate, prep.capacity, prep.arch)
        assert ours == pytest.approx(theirs, rel=0.01), rate
    assert sens.tokens_for_hit_rate(prep, ceiling) is None
    assert sens.tokens_for_hit_rate(prep, 1.0) is None


def test_memory_and_tokens_are_inverse():
    prep = sens.prepare(DEFAULT)
    cap = prep.capacity
    assert sens.tokens_for_memory(prep, prep.gpu_memory_gib) == cap.capacity_tokens
    mem = sens.memory_for_tokens(prep, cap.capacity_tokens)
    one_block_gib = DEFAULT.block_size * cap.kv_bytes_per_token_per_gpu / 2**30 / DEFAULT.gpu_mem_util
    assert prep.gpu_memory_gib - one_block_gib <= mem <= prep.gpu_memory_gib   # capacity is whole blocks
    assert sens.tokens_for_memory(prep, sens.fit_memory_gib(prep) - 0.1) == 0


@pytest.mark.parametrize("scenario", SHAPES, ids=["default", "random4", "fixed", "gpt-oss-rr", "qwen35-offload"])
def test_hit_vs_memory_curve(scenario):
    r = _analysis(scenario)
    curve = sens.hit_vs_memory(scenario, r)
    assert len(curve.memory_gib) == 100
    assert list(curve.memory_gib) == sorted(curve.memory_gib)
    assert all(0 <= h <= curve.ceiling + 1e-9 for h in curve.token_hit_rate)
    assert all(b >= a - 1e-12 for a, b in zip(curve.token_hit_rate, curve.token_hit_rate[1:]))
    assert all(g <= h + 1e-12 for g, h in zip(curve.gpu_only_hit_rate, curve.token_hit_rate))
    assert curve.current_hit_rate == r.token_hit_rate
    assert curve.memory_gib[0] <= curve.current_memory_gib <= curve.memory_gib[-1]
    # the curve passes through the current point (table interpolation, 0.2 point)
    i = min(range(100), key=lambda k: abs(curve.memory_gib[k] - curve.current_memory_gib))
    prep = sens.prepare(scenario, r)
    at = sens.hit_rate_at_tokens(prep, sens.tokens_for_memory(prep, curve.current_memory_gib))
    assert at == pytest.approx(r.token_hit_rate, abs=2e-3)
    assert curve.to_dict()["memory_gib"][i] == curve.memory_gib[i]


def test_hit_vs_memory_with_kv_cache_tokens_override():
    s = Scenario.from_dict({"kv_cache_tokens": 200_000})
    curve = sens.hit_vs_memory(s)
    prep = sens.prepare(s)
    assert curve.current_memory_gib == pytest.approx(sens.memory_for_tokens(prep, 200_000))
    assert curve.current_memory_gib < prep.gpu_memory_gib


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4], ids=["default", "random4"])
def test_sensitivity_curve_every_key(scenario):
    prep = sens.prepare(scenario)
    keys = sens.available_keys(scenario, prep=prep)
    assert {"arrival_rate", "think_time_s", "turns", "gpu_memory_gib"} <= set(keys)
    assert "kv_cache_tokens" not in keys                      # not set
    for key in keys:
        c = sens.sensitivity_curve(scenario, key, prep=prep)
        f = FIELD_BY_KEY[key]
        assert list(c.values) == sorted(set(c.values)), key
        assert c.current_value in c.values, key
        assert len(c.values) <= 101
        if f.kind == "int":
            assert all(isinstance(v, int) for v in c.values), key
        lo = f.minimum if f.minimum is not None else -math.inf
        assert all(lo <= v <= (f.maximum or math.inf) for v in c.values), key
        assert all(0.0 <= h <= 1.0 for h in c.token_hit_rate), key
        assert all(h <= cl + 1e-9 for h, cl in zip(c.token_hit_rate, c.ceiling)), key
        at_current = c.token_hit_rate[c.values.index(c.current_value)]
        assert at_current == pytest.approx(prep.result.token_hit_rate, abs=2e-3), key


def test_sensitivity_directions():
    """More traffic lowers the hit rate; a longer think time lowers it; more memory raises it."""
    for key, sign in (("arrival_rate", -1), ("think_time_s", -1), ("gpu_memory_gib", 1), ("instances", 1)):
        c = sens.sensitivity_curve(DEFAULT, key)
        diffs = [b - a for a, b in zip(c.token_hit_rate, c.token_hit_rate[1:])]
        assert all(sign * d >= -1e-9 for d in diffs), key
        assert sign * (c.token_hit_rate[-1] - c.token_hit_rate[0]) > 0.05, key


def test_exact_key_uses_fewer_points_and_matches_analysis():
    c = sens.sensitivity_curve(DEFAULT, "turns")
    assert c.exact and len(c.values) <= sens.EXACT_POINTS + 1
    for v, h in list(zip(c.values, c.token_hit_rate))[::7]:
        assert h == pytest.approx(_analysis(with_updates(DEFAULT, turns=float(v))).token_hit_rate, abs=1e-9)


def test_sensitivity_rejects_bad_or_unset_keys():
    with pytest.raises(ScenarioError, match="sensitivity"):
        sens.sensitivity_curve(DEFAULT, "no_such_key")
    with pytest.raises(ScenarioError, match="kv_cache_tokens"):
        sens.sensitivity_curve(DEFAULT, "kv_cache_tokens")
    with pytest.raises(ScenarioError, match="fraction"):
        sens.tornado(DEFAULT, fraction=1.5)


def test_custom_model_sweeps_its_architecture():
    s = Scenario.from_dict({"model": "custom", "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                            "params_b": 8.03})
    keys = sens.available_keys(s)
    assert {"num_layers", "num_kv_heads", "head_dim"} <= set(keys)
    c = sens.sensitivity_curve(s, "num_kv_heads")
    assert c.token_hit_rate[0] > c.token_hit_rate[-1]          # more KV heads, fewer tokens fit


def test_memory_axis_includes_the_current_memory_when_the_model_does_not_fit():
    s = Scenario.from_dict({"model": "gpt-oss-120b", "gpu": "h100-sxm"})
    prep = sens.prepare(s)
    assert not prep.result.fits
    fit = sens.fit_memory_gib(prep)
    assert fit > 240
    h = sens.heatmap(s, prep=prep)
    assert h.memory_gib[0] == pytest.approx(79.6) and h.current_memory_gib == pytest.approx(79.6)
    assert h.memory_gib[-1] > fit
    # the columns where it does not fit are 0 %, those where it fits are not
    for row in h.token_hit_rate:
        assert all(v == 0.0 for m, v in zip(h.memory_gib, row) if m < fit)
    assert any(v > 0 for m, v in zip(h.memory_gib, h.token_hit_rate[0]) if m > fit)
    curve = sens.hit_vs_memory(s, prep=prep)
    assert curve.memory_gib[0] <= curve.current_memory_gib <= curve.memory_gib[-1]
    assert all(v == 0.0 for m, v in zip(curve.memory_gib, curve.token_hit_rate) if m < fit)
    # when it fits, the axis still starts where it fits
    prep = sens.prepare(DEFAULT)
    assert sens.memory_range(prep)[0] == pytest.approx(sens.fit_memory_gib(prep))


def test_gpu_and_head_sweeps_hold_only_counts_that_split_the_heads():
    c = sens.sensitivity_curve(Scenario.from_dict({"num_gpus": 2}), "num_gpus")
    assert list(c.values) == [1, 2, 4, 8]                      # not 3, 5, 6, 7 for 8 KV heads
    assert all(h > 0 for h in c.token_hit_rate)
    s = Scenario.from_dict({"model": "custom", "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                            "params_b": 8.03, "num_gpus": 4})
    c = sens.sensitivity_curve(s, "num_kv_heads")
    assert c.values and all(v % 4 == 0 or 4 % v == 0 for v in c.values)
    assert all(h > 0 for h in c.token_hit_rate)
    # the tornado's -/+20% of 8 GPUs (6, 10) cannot split 8 heads: no bar rather than a wrong one
    t = sens.tornado(Scenario.from_dict({"model": "llama-3.1-70b", "num_gpus": 8}))
    assert "num_gpus" not in {b.key for b in t.bars}


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4, FIXED], ids=["default", "random4", "fixed"])
def test_tornado(scenario):
    r = _analysis(scenario)
    t = sens.tornado(scenario, 0.2, result=r)
    assert t.base_hit_rate == r.token_hit_rate
    keys = [b.key for b in t.bars]
    assert len(keys) == len(set(keys)) and "arrival_rate" in keys
    assert "mfu" not in keys and "target_hit_rate" not in keys
    dev = [max(abs(b.low_hit_rate - t.base_hit_rate), abs(b.high_hit_rate - t.base_hit_rate)) for b in t.bars]
    order = [max(b.swing, d) for b, d in zip(t.bars, dev)]
    assert order == sorted(order, reverse=True)
    assert all(d > 1e-6 for d in dev)
    for b in t.bars:
        f = FIELD_BY_KEY[b.key]
        assert b.low_value <= b.base_value <= b.high_value
        if f.kind == "int":
            assert isinstance(b.low_value, int) and isinstance(b.high_value, int)
        else:
            assert b.low_value == pytest.approx(max(f.minimum, b.base_value * 0.8)) or b.key == "turns"
        # each side is the exact hit rate of that change (table within 0.1 point)
        for v, h in ((b.low_value, b.low_hit_rate), (b.high_value, b.high_hit_rate)):
            if v != b.base_value:
                exact = sens.variant_result(sens.prepare(scenario, r), **{b.key: v}).token_hit_rate
                assert h == pytest.approx(exact, abs=1e-3), (b.key, v)
    arrival = next(b for b in t.bars if b.key == "arrival_rate")
    assert arrival.low_hit_rate >= t.base_hit_rate >= arrival.high_hit_rate
    assert arrival.low_hit_rate > arrival.high_hit_rate


def test_tornado_skips_inputs_without_effect():
    t = sens.tornado(DEFAULT)
    keys = {b.key for b in t.bars}
    assert "instances" not in keys        # 1 +/- 20% rounds to 1
    assert "offload_gib" not in keys      # 0 +/- 20% is 0


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4, FIXED], ids=["default", "random4", "fixed"])
def test_heatmap(scenario):
    h = sens.heatmap(scenario, 30, 30)
    assert len(h.token_hit_rate) == 30 and all(len(row) == 30 for row in h.token_hit_rate)
    assert h.arrival_rate[0] == pytest.approx(scenario.arrival_rate / 10)
    assert h.arrival_rate[-1] == pytest.approx(scenario.arrival_rate * 10)
    for row in h.token_hit_rate:        # more memory never lowers the hit rate
        assert all(b >= a - 1e-12 for a, b in zip(row, row[1:]))
    for j in range(30):                 # more traffic never raises it (table interpolation: 1e-5)
        col = [row[j] for row in h.token_hit_rate]
        assert all(b <= a + 1e-5 for a, b in zip(col, col[1:]))
    # a cell against a full analysis (0.2 point: table interpolation)
    prep = sens.prepare(scenario)
    i, j = 20, 15
    mem, lam = h.memory_gib[j], h.arrival_rate[i]
    exact = sens.variant_result(prep, gpu_memory_gib=mem, arrival_rate=lam).token_hit_rate
    assert h.token_hit_rate[i][j] == pytest.approx(exact, abs=2e-3)


def test_results_are_plain_json():
    import json
    s = DEFAULT
    for obj in (sens.hit_vs_memory(s), sens.sensitivity_curve(s, "turns"), sens.tornado(s), sens.heatmap(s, 5, 5)):
        json.dumps(obj.to_dict(), allow_nan=False)


def test_table_agrees_with_analysis_over_random_scenarios():
    """The table's answer at the current capacity and at 1/10 and 10x the arrival rate agrees
    with a full analysis within 0.2 point over 80 scenarios (seed 5)."""
    rng = random.Random(5)
    extra = [Scenario.from_dict({"arrival_rate": 0.004, "turns": 1, "think_time_s": 1, "input_tokens": 5,
                                 "output_tokens": 0})]
    for s in extra + [_random_scenario(rng) for _ in range(80)]:
        prep = sens.prepare(s)
        if not prep.result.fits:
            continue
        assert sens.hit_rate_at_tokens(prep, prep.capacity.capacity_tokens) == pytest.approx(
            prep.result.token_hit_rate, abs=2e-3), s.changed()
        for f in (0.1, 10.0):
            lam = s.arrival_rate * f
            assert sens.variant_hit_rate(prep, arrival_rate=lam) == pytest.approx(
                sens.variant_result(prep, arrival_rate=lam).token_hit_rate, abs=2e-3), (s.changed(), f)
