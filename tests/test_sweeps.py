"""Sweeps: hit rate vs memory, sensitivity curves, tornado, heatmap, memory for a target."""

from __future__ import annotations

import math

import pytest

from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.model import analyze, capacity_for_hit_rate
from kvcache_calculator.analytic.table import hit_rate_at_tokens, prepare, variant_result
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, with_updates
from kvcache_calculator.setup.capacity import fit_memory_gib, memory_for_tokens, tokens_for_memory
from kvcache_calculator.setup.resolve import resolve

DEFAULT = Scenario()
RANDOM4 = Scenario.from_dict({"routing": "random", "instances": 4, "arrival_rate": 4})
FIXED = Scenario.from_dict({"think_dist": "fixed", "turns_dist": "fixed", "turns": 4})
SHAPES = [DEFAULT, RANDOM4, FIXED,
          Scenario.from_dict({"model": "gpt-oss-20b", "routing": "round_robin", "instances": 2}),
          Scenario.from_dict({"model": "qwen3.5-27b", "gpu": "h200", "offload_gib": 200})]


def _prep(s: Scenario):
    return prepare(resolve(s))


@pytest.mark.parametrize("scenario", SHAPES[:3], ids=["default", "random4", "fixed"])
def test_tokens_for_hit_rate_inverts_the_model(scenario):
    prep = _prep(scenario)
    ceiling = prep.result.max_token_hit_rate
    for rate in (0.05, 0.3, 0.5, ceiling - 0.05, ceiling - 0.005):
        if rate <= 0:
            continue
        ours = sweeps.tokens_for_hit_rate(prep, rate)
        theirs, _ = capacity_for_hit_rate(prep.setup, rate)
        assert ours == pytest.approx(theirs, rel=0.01), rate
    assert sweeps.tokens_for_hit_rate(prep, ceiling) is None
    assert sweeps.tokens_for_hit_rate(prep, 1.0) is None


@pytest.mark.parametrize("scenario", SHAPES, ids=["default", "random4", "fixed", "gpt-oss-rr", "qwen35-offload"])
def test_hit_vs_memory_curve(scenario):
    prep = _prep(scenario)
    r = prep.result
    curve = sweeps.hit_vs_memory(prep)
    assert len(curve.memory_gib) == 100
    assert list(curve.memory_gib) == sorted(curve.memory_gib)
    assert all(0 <= h <= curve.ceiling + 1e-9 for h in curve.token_hit_rate)
    assert all(b >= a - 1e-12 for a, b in zip(curve.token_hit_rate, curve.token_hit_rate[1:]))
    assert all(g <= h + 1e-12 for g, h in zip(curve.gpu_only_hit_rate, curve.token_hit_rate))
    assert curve.current_hit_rate == r.token_hit_rate
    assert curve.memory_gib[0] <= curve.current_memory_gib <= curve.memory_gib[-1]
    # the curve passes through the current point (table interpolation, 0.2 point)
    i = min(range(100), key=lambda k: abs(curve.memory_gib[k] - curve.current_memory_gib))
    at = hit_rate_at_tokens(prep, tokens_for_memory(prep.scenario, prep.capacity, curve.current_memory_gib))
    assert at == pytest.approx(r.token_hit_rate, abs=2e-3)
    assert curve.to_dict()["memory_gib"][i] == curve.memory_gib[i]


def test_hit_vs_memory_with_kv_cache_tokens_override():
    s = Scenario.from_dict({"kv_cache_tokens": 200_000})
    prep = _prep(s)
    curve = sweeps.hit_vs_memory(prep)
    assert curve.current_memory_gib == pytest.approx(memory_for_tokens(prep.scenario, prep.capacity, 200_000))
    assert curve.current_memory_gib < prep.setup.gpu.memory_gib


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4], ids=["default", "random4"])
def test_sensitivity_curve_every_key(scenario):
    prep = _prep(scenario)
    keys = sweeps.available_keys(prep)
    assert {"arrival_rate", "think_time_s", "turns", "gpu_memory_gib"} <= set(keys)
    assert "kv_cache_tokens" not in keys                      # not set
    for key in keys:
        c = sweeps.sensitivity_curve(prep, key)
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
        c = sweeps.sensitivity_curve(_prep(DEFAULT), key)
        diffs = [b - a for a, b in zip(c.token_hit_rate, c.token_hit_rate[1:])]
        assert all(sign * d >= -1e-9 for d in diffs), key
        assert sign * (c.token_hit_rate[-1] - c.token_hit_rate[0]) > 0.05, key


def test_exact_key_uses_fewer_points_and_matches_analysis():
    c = sweeps.sensitivity_curve(_prep(DEFAULT), "turns")
    assert c.exact and len(c.values) <= sweeps.EXACT_POINTS + 1
    for v, h in list(zip(c.values, c.token_hit_rate))[::7]:
        assert h == pytest.approx(analyze(with_updates(DEFAULT, turns=float(v))).token_hit_rate, abs=1e-9)


def test_sensitivity_rejects_bad_or_unset_keys():
    with pytest.raises(ScenarioError, match="sensitivity"):
        sweeps.sensitivity_curve(_prep(DEFAULT), "no_such_key")
    with pytest.raises(ScenarioError, match="kv_cache_tokens"):
        sweeps.sensitivity_curve(_prep(DEFAULT), "kv_cache_tokens")
    with pytest.raises(ScenarioError, match="fraction"):
        sweeps.tornado(_prep(DEFAULT), fraction=1.5)


def test_custom_model_sweeps_its_architecture():
    s = Scenario.from_dict({"model": "custom", "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                            "params_b": 8.03})
    keys = sweeps.available_keys(_prep(s))
    assert {"num_layers", "num_kv_heads", "head_dim"} <= set(keys)
    c = sweeps.sensitivity_curve(_prep(s), "num_kv_heads")
    assert c.token_hit_rate[0] > c.token_hit_rate[-1]          # more KV heads, fewer tokens fit


def test_memory_axis_includes_the_current_memory_when_the_model_does_not_fit():
    s = Scenario.from_dict({"model": "gpt-oss-120b", "gpu": "h100-sxm"})
    prep = _prep(s)
    assert not prep.result.fits
    fit = fit_memory_gib(prep.scenario, prep.capacity)
    assert fit > 240
    h = sweeps.heatmap(prep)
    assert h.memory_gib[0] == pytest.approx(79.6) and h.current_memory_gib == pytest.approx(79.6)
    assert h.memory_gib[-1] > fit
    # the columns where it does not fit are 0 %, those where it fits are not
    for row in h.token_hit_rate:
        assert all(v == 0.0 for m, v in zip(h.memory_gib, row) if m < fit)
    assert any(v > 0 for m, v in zip(h.memory_gib, h.token_hit_rate[0]) if m > fit)
    curve = sweeps.hit_vs_memory(prep)
    assert curve.memory_gib[0] <= curve.current_memory_gib <= curve.memory_gib[-1]
    assert all(v == 0.0 for m, v in zip(curve.memory_gib, curve.token_hit_rate) if m < fit)
    # when it fits, the axis still starts where it fits
    prep = _prep(DEFAULT)
    assert sweeps.memory_range(prep)[0] == pytest.approx(fit_memory_gib(prep.scenario, prep.capacity))


def test_gpu_and_head_sweeps_hold_only_counts_that_split_the_heads():
    c = sweeps.sensitivity_curve(_prep(Scenario.from_dict({"num_gpus": 2})), "num_gpus")
    assert list(c.values) == [1, 2, 4, 8]                      # not 3, 5, 6, 7 for 8 KV heads
    assert all(h > 0 for h in c.token_hit_rate)
    s = Scenario.from_dict({"model": "custom", "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                            "params_b": 8.03, "num_gpus": 4})
    c = sweeps.sensitivity_curve(_prep(s), "num_kv_heads")
    assert c.values and all(v % 4 == 0 or 4 % v == 0 for v in c.values)
    assert all(h > 0 for h in c.token_hit_rate)
    # the tornado's -/+20% of 8 GPUs (6, 10) cannot split 8 heads: no bar rather than a wrong one
    t = sweeps.tornado(_prep(Scenario.from_dict({"model": "llama-3.1-70b", "num_gpus": 8})))
    assert "num_gpus" not in {b.key for b in t.bars}


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4, FIXED], ids=["default", "random4", "fixed"])
def test_tornado(scenario):
    prep = _prep(scenario)
    r = prep.result
    t = sweeps.tornado(prep, 0.2)
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
                exact = variant_result(prep, **{b.key: v}).token_hit_rate
                assert h == pytest.approx(exact, abs=1e-3), (b.key, v)
    arrival = next(b for b in t.bars if b.key == "arrival_rate")
    assert arrival.low_hit_rate >= t.base_hit_rate >= arrival.high_hit_rate
    assert arrival.low_hit_rate > arrival.high_hit_rate


def test_tornado_skips_inputs_without_effect():
    t = sweeps.tornado(_prep(DEFAULT))
    keys = {b.key for b in t.bars}
    assert "instances" not in keys        # 1 +/- 20% rounds to 1
    assert "offload_gib" not in keys      # 0 +/- 20% is 0


@pytest.mark.parametrize("scenario", [DEFAULT, RANDOM4, FIXED], ids=["default", "random4", "fixed"])
def test_heatmap(scenario):
    h = sweeps.heatmap(_prep(scenario), 30, 30)
    assert len(h.token_hit_rate) == 30 and all(len(row) == 30 for row in h.token_hit_rate)
    assert h.arrival_rate[0] == pytest.approx(scenario.arrival_rate / 10)
    assert h.arrival_rate[-1] == pytest.approx(scenario.arrival_rate * 10)
    for row in h.token_hit_rate:        # more memory never lowers the hit rate
        assert all(b >= a - 1e-12 for a, b in zip(row, row[1:]))
    for j in range(30):                 # more traffic never raises it (table interpolation: 1e-5)
        col = [row[j] for row in h.token_hit_rate]
        assert all(b <= a + 1e-5 for a, b in zip(col, col[1:]))
    # a cell against a full analysis (0.2 point: table interpolation)
    prep = _prep(scenario)
    i, j = 20, 15
    mem, lam = h.memory_gib[j], h.arrival_rate[i]
    exact = variant_result(prep, gpu_memory_gib=mem, arrival_rate=lam).token_hit_rate
    assert h.token_hit_rate[i][j] == pytest.approx(exact, abs=2e-3)


def test_results_are_plain_json():
    import json
    s = DEFAULT
    a = _prep(s)
    for obj in (sweeps.hit_vs_memory(a), sweeps.sensitivity_curve(a, "turns"), sweeps.tornado(a), sweeps.heatmap(a, 5, 5)):
        json.dumps(obj.to_dict(), allow_nan=False)
