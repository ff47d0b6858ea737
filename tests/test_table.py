"""The fast hit-rate table and the what-if variants: built on the model's one loop, they give
the model's answers (the table to its interpolation, exact points to 1e-9)."""

from __future__ import annotations

import random

import pytest

from kvcache_calculator.analytic.model import (
    analyze_setup, build_terms, gap_sums, hit_rate_and_ceiling, hits, occupancy,
)
from kvcache_calculator.analytic.table import (
    SERVICE_GAP_KEYS, hit_rate_at_tokens, prepare, table_answers, variant_hit_and_ceiling, variant_hit_rate, variant_result,
)
from kvcache_calculator.scenario import CAPACITY_ONLY_KEYS, IN_FLIGHT_KEYS, KV_BYTES_KEYS, SCALAR_KEYS, Scenario
from kvcache_calculator.setup.resolve import resolve

DEFAULT = Scenario()
RANDOM4 = Scenario.from_dict({"routing": "random", "instances": 4, "arrival_rate": 4})
FIXED = Scenario.from_dict({"think_dist": "fixed", "turns_dist": "fixed", "turns": 4})
SHAPES = [DEFAULT, RANDOM4, FIXED,
          Scenario.from_dict({"model": "gpt-oss-20b", "routing": "round_robin", "instances": 2}),
          Scenario.from_dict({"model": "qwen3.5-27b", "gpu": "h200", "offload_gib": 200})]
SHAPE_IDS = ["default", "random4", "fixed", "gpt-oss-rr", "qwen35-offload"]


def random_scenario(rng: random.Random) -> Scenario:
    """A scenario drawn over models with and without per-sequence state, GPUs, routings,
    turn and think-time laws, block sizes and offload tiers."""
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


@pytest.mark.parametrize("scenario", SHAPES, ids=SHAPE_IDS)
def test_table_points_equal_the_model(scenario):
    """Every grid point of the table reproduces the model's occupancy and hits (rel. 1e-9)."""
    a = prepare(resolve(scenario))
    traffic = a.terms.traffic
    theta = traffic.gap_mean_s
    t = a.table
    for i, x in enumerate(t.xs):
        occ, hit = t.point(x, t.a[i], t.g1[i], t.g2[i], traffic)
        assert occ == pytest.approx(occupancy(a.terms, x * theta), rel=1e-9, abs=1e-9)
        assert hit == pytest.approx(hits(a.terms, x * theta)[0], rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("scenario", SHAPES, ids=SHAPE_IDS)
def test_the_curve_is_the_table_at_every_point(scenario):
    """occupancy_curve inlines point(): the same numbers, for the setup's traffic and another."""
    a = prepare(resolve(scenario))
    t = a.table
    for traffic in (a.terms.traffic, a.traffic(scenario.replace(arrival_rate=7.0, num_system_prompts=3))):
        occ, rate = t.occupancy_curve(traffic)
        for i, x in enumerate(t.xs):
            o, h = t.point(x, t.a[i], t.g1[i], t.g2[i], traffic)
            assert occ[i] == o
            assert rate[i] == min(1.0, max(0.0, h / a.terms.prompt_tokens))


@pytest.mark.parametrize("scenario", SHAPES, ids=SHAPE_IDS)
def test_the_loops_early_stop_changes_the_sums_by_less_than_its_tail(scenario):
    terms = prepare(resolve(scenario)).terms
    theta = terms.traffic.gap_mean_s
    for x in (1e-3, 0.1, 0.7, 1.0, 3.0, 10.0, 80.0, 400.0):
        full = gap_sums(terms, x * theta, theta, 37.0)
        fast = gap_sums(terms, x * theta, theta, 37.0, 1e-13)
        for f, g in zip(full, fast):
            assert g == pytest.approx(f, rel=1e-11, abs=1e-9), x


def test_exact_points_equal_analyze():
    """hit_rate_and_ceiling gives analyze's token hit rate and ceiling: exactly without the
    loop's early stop, to 1e-9 with it, over 120 scenarios (seed 11)."""
    rng = random.Random(11)
    for _ in range(120):
        setup = resolve(random_scenario(rng))
        r = analyze_setup(setup)
        assert hit_rate_and_ceiling(setup) == (r.token_hit_rate, r.max_token_hit_rate), setup.scenario.changed()
        hit, ceiling = hit_rate_and_ceiling(setup, 1e-13)
        assert hit == pytest.approx(r.token_hit_rate, abs=1e-9), setup.scenario.changed()
        assert ceiling == pytest.approx(r.max_token_hit_rate, abs=1e-9), setup.scenario.changed()


TABLE_VARIANTS = {
    "arrival_rate": [0.05, 0.3, 3.0, 20.0], "think_time_s": [3.0, 30.0, 300.0, 3000.0],
    "num_system_prompts": [2, 10], "gpu_memory_gib": [20.0, 30.0, 50.0, 120.0], "gpu_mem_util": [0.6, 0.95],
    "activation_reserve_gib": [0.0, 10.0], "params_b": [4.0, 20.0], "kv_dtype": ["fp8", "fp32"],
    "offload_gib": [20.0, 300.0], "num_gpus": [2, 4], "weight_dtype": ["fp8"],
    "engine": ["sglang", "manual"], "engine_version": ["0.19"], "max_num_seqs": [64], "max_num_batched_tokens": [2048],
    "max_model_len": [4096], "cuda_graphs": ["off"],
    # the service time only moves the KV running requests hold
    "decode_tokens_per_s": [20.0, 1000.0], "ttft_s": [0.05, 5.0], "mfu": [0.1],
}


@pytest.mark.parametrize("scenario", SHAPES[:3], ids=SHAPE_IDS[:3])
def test_table_variants_agree_with_exact_analysis(scenario):
    """Inputs answered from the table agree with a full analysis within 0.1 point."""
    a = prepare(resolve(scenario))
    for key, values in TABLE_VARIANTS.items():
        # a fixed-gap table is smoothed at its own conversations per instance and think time;
        # under spread turns a table holds the service time in mean gaps (model.md §6.2)
        fixed = scenario.think_dist == "fixed" and key in ("arrival_rate", "think_time_s")
        served_elsewhere = a.terms.service_gaps > 0 and key in SERVICE_GAP_KEYS
        assert table_answers(a, (key,)) == (not fixed and not served_elsewhere), key
        for v in values:
            fast = variant_hit_rate(a, **{key: v})
            exact = variant_result(a, **{key: v}).token_hit_rate
            assert fast == pytest.approx(exact, abs=1e-3), (key, v)
    if scenario.routing == "session":
        for inst in (2, 5):
            assert variant_hit_rate(a, instances=inst) == pytest.approx(
                variant_result(a, instances=inst).token_hit_rate, abs=1e-3)


def test_which_changes_the_table_answers():
    a = prepare(resolve(DEFAULT))
    assert table_answers(a, ("arrival_rate", "gpu_memory_gib", "kv_dtype", "instances"))
    assert not table_answers(a, ("turns",)) and not table_answers(a, ("block_size",))
    assert not table_answers(a, ("attention",))
    assert not table_answers(prepare(resolve(RANDOM4)), ("instances",))       # spreads the turns
    # ... and holds the service time in mean gaps, which these change
    assert not table_answers(prepare(resolve(RANDOM4)), ("think_time_s",))
    assert not table_answers(prepare(resolve(RANDOM4)), ("decode_tokens_per_s",))
    assert table_answers(prepare(resolve(RANDOM4)), ("arrival_rate", "gpu_memory_gib"))
    sliding = prepare(resolve(Scenario.from_dict({"model": "gpt-oss-20b"})))
    assert sliding.capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    assert table_answers(sliding, ("gpu_memory_gib",)) and not table_answers(sliding, ("kv_dtype",))


@pytest.mark.parametrize("scenario", SHAPES, ids=SHAPE_IDS)
def test_exact_variants_are_the_analysis_of_the_changed_scenario(scenario):
    a = prepare(resolve(scenario))
    for changes in ({"turns": 3.0}, {"input_tokens": 200}, {"block_size": 32}):
        r = analyze_setup(resolve(scenario.replace(**changes)))
        assert variant_result(a, **changes) == r
        hit, ceiling = variant_hit_and_ceiling(a, **changes)
        assert hit == pytest.approx(r.token_hit_rate, abs=1e-9)
        assert ceiling == pytest.approx(r.max_token_hit_rate, abs=1e-9)
        assert variant_hit_rate(a, **changes) == pytest.approx(r.token_hit_rate, abs=1e-9)


def test_a_variant_resolves_only_what_its_keys_feed():
    setup = resolve(DEFAULT)
    same = setup.variant(arrival_rate=3.0)
    assert same.arch is setup.arch and same.gpu is setup.gpu and same.capacity is setup.capacity
    more = setup.variant(gpu_memory_gib=120.0)
    assert more.arch is setup.arch and more.gpu.memory_gib == 120.0
    assert more.capacity == resolve(DEFAULT.replace(gpu_memory_gib=120.0)).capacity
    heads = setup.variant(num_kv_heads=4)
    assert heads.arch == resolve(DEFAULT.replace(num_kv_heads=4)).arch


def test_table_agrees_with_analysis_over_random_scenarios():
    """The table's answer at the current capacity and at 1/10 and 10x the arrival rate agrees
    with a full analysis within 0.2 point over 80 scenarios (seed 5)."""
    rng = random.Random(5)
    extra = [Scenario.from_dict({"arrival_rate": 0.004, "turns": 1, "think_time_s": 1, "input_tokens": 5,
                                 "output_tokens": 0})]
    for s in extra + [random_scenario(rng) for _ in range(80)]:
        a = prepare(resolve(s))
        if not a.result.fits:
            continue
        assert hit_rate_at_tokens(a, a.capacity.capacity_tokens) == pytest.approx(
            a.result.token_hit_rate, abs=2e-3), s.changed()
        for f in (0.1, 10.0):
            lam = s.arrival_rate * f
            assert variant_hit_rate(a, arrival_rate=lam) == pytest.approx(
                variant_result(a, arrival_rate=lam).token_hit_rate, abs=2e-3), (s.changed(), f)


def test_past_the_grid_the_table_solves_exactly():
    """A capacity beyond the table's last point is solved on the table's parts: the model's
    answer, and the ceiling once everything fits."""
    a = prepare(resolve(RANDOM4))
    traffic = a.terms.traffic
    occ = a.curve[0]
    beyond = 3 * occ[-1]
    setup = resolve(RANDOM4.replace(kv_cache_tokens=int(beyond) // 16 * 16))
    assert a.table.token_hit_rate(beyond, traffic) == pytest.approx(analyze_setup(setup).token_hit_rate, abs=1e-6)
    assert a.table.token_hit_rate(1e30, traffic) == pytest.approx(a.result.max_token_hit_rate, abs=1e-12)


def test_what_the_table_assumes_of_the_keys_holds():
    """A change of a scalar or capacity-only key (and of a KV-bytes key, for a model without
    per-sequence state) leaves the model's sums over turns as they are: what lets the table
    answer it (scenario.Field.effect)."""
    def sums(s: Scenario) -> tuple:
        t = build_terms(resolve(s))
        return t.hit_sums, t.turn_sums, t.cost_sums, t.cost_last, t.prompt_tokens, t.sys_hit_tokens

    custom = Scenario.from_dict({"model": "custom", "num_layers": 32, "num_kv_heads": 8, "head_dim": 128,
                                 "params_b": 8.0, "routing": "random", "instances": 3})
    changes = {"arrival_rate": 3.0, "think_time_s": 9.0, "num_system_prompts": 4, "system_prompt_zipf": 1.0,
               "gpu_memory_gib": 120.0,
               "gpu_mem_util": 0.7, "activation_reserve_gib": 3.0, "params_b": 4.0, "active_params_b": 2.0,
               "weight_dtype": "fp8", "kv_cache_tokens": 90000, "offload_gib": 40.0, "num_layers": 16,
               "num_kv_heads": 4, "head_dim": 64, "num_gpus": 2, "kv_dtype": "fp8",
               # the engine and its start-up knobs only move the memory left for the KV cache
               "engine": "sglang", "engine_version": "0.19", "max_num_seqs": 64, "max_num_batched_tokens": 2048,
               "max_model_len": 4096, "cuda_graphs": "off",
               # the service time: only the KV held by running requests
               "decode_tokens_per_s": 30.0, "ttft_s": 2.0, "mfu": 0.2}
    assert set(changes) == (set(SCALAR_KEYS + CAPACITY_ONLY_KEYS + KV_BYTES_KEYS + IN_FLIGHT_KEYS)
                            - {"kv_lora_rank", "qk_rope_head_dim"})
    for key, value in changes.items():
        assert sums(custom.replace(**{key: value})) == sums(custom), key
