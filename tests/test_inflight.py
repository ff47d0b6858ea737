"""KV held by running requests: Little's law by hand, saturation, the derived service times,
and what the in-flight KV does to the analytic model and its sweeps."""

from __future__ import annotations

import pytest

from kvcache_calculator.analytic.inflight import (
    FALLBACK_BF16_TFLOPS, FALLBACK_HBM_TB_S, NONE, RATE_KEYS, default_decode_tokens_per_s, default_ttft_s,
    held_tokens, in_flight, in_flight_of, mean_request_prompt_tokens, service_rates,
)
from kvcache_calculator.analytic.model import analyze, analyze_setup, build_terms, capacity_for_hit_rate
from kvcache_calculator.analytic.sweeps import heatmap, hit_vs_memory, tokens_for_hit_rate
from kvcache_calculator.analytic.table import hit_rate_at_tokens, prepare, variant_hit_rate, variant_result
from kvcache_calculator.present.report import RESULT_KEYS, model_notes, results
from kvcache_calculator.scenario import KEYS, Scenario
from kvcache_calculator.setup.capacity import GIB, tokens_for_memory
from kvcache_calculator.setup.resolve import resolve

#: A small pool at 5 requests/s with 300-token outputs (the issue's example).
BUSY = {"arrival_rate": 1, "turns": 5, "think_time_s": 30, "input_tokens": 200, "output_tokens": 300,
        "system_prompt_tokens": 1000, "kv_cache_tokens": 150_000}
#: Service so short that nothing is held: the model as it was before running requests.
INSTANT = {"decode_tokens_per_s": 1e6, "ttft_s": 1e-6}


# -- Little's law by hand -------------------------------------------------------------------


def test_littles_law_by_hand():
    """2 requests/s, 1,000 prompt and 300 output tokens, TTFT 0.5 s, 100 tokens/s: a request
    decodes 3 s and is served 3.5 s, so 7 run at once; each holds 1,000 x 3.5 + 300 x 3 / 2
    + 8 x 3.5 (half a 16-token block) = 3,978 token-seconds: 7,956 tokens."""
    held = in_flight(2.0, 1000, 300, ttft_s=0.5, decode_tokens_per_s=100, max_num_seqs=1024, block_size=16)
    assert held.service_s == pytest.approx(3.5)
    assert held.requests == pytest.approx(7.0)
    assert held.tokens == pytest.approx(2 * 3978)
    assert not held.saturated and held.max_num_seqs == 1024


def test_held_tokens_is_in_flight_without_the_record():
    rates = service_rates(resolve(Scenario.from_dict({"ttft_s": 0.5, "decode_tokens_per_s": 100, "max_num_seqs": 64})))
    for rate in (2.0, 100.0):
        full = in_flight(rate, 1000, 300, ttft_s=0.5, decode_tokens_per_s=100, max_num_seqs=64, block_size=16)
        assert held_tokens(rate, 1000, 300, rates, 16) == (full.tokens, full.service_s)


def test_no_output_holds_the_prompt_for_the_time_to_first_token():
    held = in_flight(4.0, 2000, 0, ttft_s=0.25, decode_tokens_per_s=50, max_num_seqs=256, block_size=16)
    assert held.service_s == 0.25 and held.requests == 1.0
    assert held.tokens == pytest.approx(4 * (2000 + 8) * 0.25)


def test_saturation_caps_the_running_requests_at_max_num_seqs():
    """100 requests/s x 3.5 s = 350 would run; at most 64 do: 64/350 of the held KV."""
    held = in_flight(100.0, 1000, 300, ttft_s=0.5, decode_tokens_per_s=100, max_num_seqs=64, block_size=16)
    assert held.saturated
    assert held.requests == 64.0
    assert held.tokens == pytest.approx(100 * 3978 * 64 / 350)
    assert held.tokens == pytest.approx(64 * 3978 / 3.5)      # 64 requests, each 3,978 / 3.5 tokens
    just = in_flight(64 / 3.5, 1000, 300, ttft_s=0.5, decode_tokens_per_s=100, max_num_seqs=64, block_size=16)
    assert not just.saturated and just.requests == pytest.approx(64.0)


def test_none_holds_nothing():
    assert NONE.tokens == NONE.requests == NONE.service_s == 0.0 and not NONE.saturated
    assert set(NONE.to_dict()) >= {"requests", "tokens", "service_s", "ttft_s", "decode_tokens_per_s", "saturated"}


# -- the derived service times --------------------------------------------------------------


def test_default_decode_reads_the_weights_at_60_percent_of_the_bandwidth():
    assert default_decode_tokens_per_s(16e9, 3.35) == pytest.approx(0.6 * 3.35e12 / 16e9)   # 125.6
    assert default_decode_tokens_per_s(8e9, 3.35) == pytest.approx(2 * default_decode_tokens_per_s(16e9, 3.35))


def test_default_ttft_is_the_prefill_at_the_mfu_plus_20_ms():
    assert default_ttft_s(1000, 8.0, 1, 989.4) == pytest.approx(0.02 + 2 * 8e9 * 1000 / (0.4 * 989.4e12))
    assert default_ttft_s(1000, 8.0, 2, 989.4, mfu=0.8) - 0.02 == pytest.approx(
        (default_ttft_s(1000, 8.0, 1, 989.4) - 0.02) / 4)


@pytest.mark.parametrize("changes", [{}, {"turns": 1}, {"turns": 3, "turns_dist": "fixed"},
                                     {"turns": 7.5, "output_tokens": 0, "system_prompt_tokens": 0}])
def test_mean_request_prompt_is_the_models(changes):
    """The closed form the simulator uses equals the model's sums over turns."""
    s = Scenario.from_dict(changes)
    terms = build_terms(resolve(s))
    assert mean_request_prompt_tokens(s) == pytest.approx(terms.prompt_tokens / terms.mean_turns, rel=1e-9)


def test_service_rates_derive_what_is_not_given():
    setup = resolve(Scenario())          # llama-3.1-8b, bf16, one H100 SXM
    rates = service_rates(setup)
    assert rates.derived == ("ttft_s", "decode_tokens_per_s")
    assert rates.decode_tokens_per_s == pytest.approx(0.6 * 3.35e12 / (setup.capacity.weights_gib_per_gpu * GIB))
    prompt = mean_request_prompt_tokens(setup.scenario)          # 2,000 + 500 + 800 x 4
    assert prompt == 5700
    assert rates.ttft_s == pytest.approx(default_ttft_s(prompt, setup.arch.active_params_b, 1, 989.4))
    assert rates.max_num_seqs == 1024 == setup.capacity.memory.max_num_seqs
    given = service_rates(resolve(Scenario.from_dict({"ttft_s": 0.3, "decode_tokens_per_s": 40, "max_num_seqs": 8})))
    assert (given.ttft_s, given.decode_tokens_per_s, given.max_num_seqs, given.derived) == (0.3, 40, 8, ())


def test_service_rates_by_gpu_engine_and_parallelism():
    h100 = service_rates(resolve(Scenario()))
    tp2 = service_rates(resolve(Scenario.from_dict({"num_gpus": 2})))
    assert tp2.decode_tokens_per_s == pytest.approx(2 * h100.decode_tokens_per_s, rel=0.01)   # half the weights
    assert tp2.ttft_s - 0.02 == pytest.approx((h100.ttft_s - 0.02) / 2)
    assert service_rates(resolve(Scenario.from_dict({"gpu": "a100-80gb"}))).max_num_seqs == 256
    # SGLang and manual accounting: vLLM's default sequences for the GPU; kv_cache_tokens too
    assert service_rates(resolve(Scenario.from_dict({"engine": "sglang"}))).max_num_seqs == 1024
    assert service_rates(resolve(Scenario.from_dict({"kv_cache_tokens": 100000, "gpu": "l40s"}))).max_num_seqs == 256
    custom = resolve(Scenario.from_dict({"gpu": "custom", "gpu_memory_gib": 80}))
    rates = service_rates(custom)
    assert rates.decode_tokens_per_s == pytest.approx(
        default_decode_tokens_per_s(custom.capacity.weights_gib_per_gpu * GIB, FALLBACK_HBM_TB_S))
    assert rates.ttft_s == pytest.approx(default_ttft_s(5700, custom.arch.active_params_b, 1, FALLBACK_BF16_TFLOPS))


def test_service_rates_read_only_their_keys():
    """Every scenario key outside RATE_KEYS leaves the service rates as they are (what lets
    the sweeps reuse them), on engines, GPUs and capacities that take different paths."""
    others = {"gpu_mem_util": 0.7, "max_num_batched_tokens": 2048, "max_model_len": 4096,
              "cuda_graphs": "off",
              "activation_reserve_gib": 3.0, "kv_dtype": "fp8", "block_size": 32, "kv_cache_tokens": 50_000,
              "offload_gib": 40.0, "instances": 3, "routing": "random", "policy": "lfu", "arrival_rate": 7.0,
              "think_time_s": 5.0, "think_dist": "fixed", "num_system_prompts": 4, "target_hit_rate": 0.3,
              "think_sigma": 2.0, "system_prompt_zipf": 1.0, "document_zipf": 0.5, "length_dist": "exponential",
              "think_shape": "0,1,3"}
    assert set(others) == set(KEYS) - RATE_KEYS
    for base in ({}, {"engine": "sglang"}, {"engine": "manual"}, {"kv_cache_tokens": 90_000},
                 {"gpu": "a100-40gb", "model": "llama-3.2-1b"}, {"gpu": "custom", "gpu_memory_gib": 48}):
        s = Scenario.from_dict(base)
        rates = service_rates(resolve(s))
        for key, value in others.items():
            assert service_rates(resolve(s.replace(**{key: value}))) == rates, (base, key)


def test_in_flight_of_counts_the_shared_prompt_once():
    """The shared prompt's blocks are counted by the cache; a request holds the rest."""
    setup = resolve(Scenario.from_dict({**BUSY, **{"ttft_s": 0.5, "decode_tokens_per_s": 100}}))
    held = in_flight_of(setup, 3200, 992, 5)
    # 5 requests/s; private prompt 3,200 - 992; service 0.5 + 3 s
    assert held.tokens == pytest.approx(5 * ((3200 - 992) * 3.5 + 300 * 3 / 2 + 8 * 3.5))


# -- the analytic model -----------------------------------------------------------------------


def test_in_flight_lowers_the_hit_rate():
    s = Scenario.from_dict(BUSY)
    held, instant = analyze(s), analyze(s, in_flight=False)
    assert 0.15 < held.in_flight_share < 0.3
    assert held.in_flight_tokens == pytest.approx(held.in_flight_share * held.capacity_tokens)
    assert held.token_hit_rate < instant.token_hit_rate - 0.02
    assert held.characteristic_time_s < instant.characteristic_time_s
    assert held.max_token_hit_rate == instant.max_token_hit_rate       # the ceiling does not move
    assert instant.in_flight_tokens == 0 and instant.service_s == 0


def test_longer_outputs_and_slower_decoding_hold_more():
    """Longer outputs and slower decoding keep requests running longer: more KV held, a
    larger drop of the hit rate against the model without running requests."""
    def drop(**changes) -> tuple[float, float]:
        s = Scenario.from_dict({**BUSY, **changes})
        held, instant = analyze(s), analyze(s, in_flight=False)
        return held.in_flight_tokens, instant.token_hit_rate - held.token_hit_rate

    short, longer = drop(output_tokens=100), drop(output_tokens=600)
    assert longer[0] > 2 * short[0] and longer[1] > short[1] > 0
    fast, slow = drop(decode_tokens_per_s=200), drop(decode_tokens_per_s=50)
    assert slow[0] > 3 * fast[0] and slow[1] > fast[1] > 0


def test_instant_service_is_the_model_without_running_requests():
    s = Scenario.from_dict({**BUSY, **INSTANT})
    held, instant = analyze(s), analyze(s, in_flight=False)
    assert held.in_flight_tokens < 5             # 5 requests/s x 0.3 ms x 2,300 tokens, of 150,000
    assert held.token_hit_rate == pytest.approx(instant.token_hit_rate, abs=1e-5)


def test_a_pool_full_of_running_requests_hits_only_the_shared_prompt():
    s = Scenario.from_dict({**BUSY, "decode_tokens_per_s": 10})
    r = analyze(s)
    assert r.in_flight_share > 1 and r.characteristic_time_s == 0.0
    terms = build_terms(resolve(s))
    assert r.token_hit_rate == pytest.approx(terms.mean_turns * 992 / terms.prompt_tokens)
    notes = model_notes(s, results(s))
    assert any("running requests alone hold the whole cache" in n for n in notes)


def test_saturated_engine_is_said():
    s = Scenario.from_dict({**BUSY, "max_num_seqs": 4})
    res = results(s)
    assert res["in_flight_saturated"] and res["in_flight_requests"] == 4
    assert any("max_num_seqs" in n for n in model_notes(s, res))
    assert not results(Scenario.from_dict(BUSY))["in_flight_saturated"]


def test_results_show_the_in_flight_keys():
    res = results(Scenario.from_dict(BUSY))
    for key in ("in_flight_requests", "in_flight_tokens", "in_flight_share", "decode_tokens_per_s_used",
                "ttft_s_used", "service_s"):
        assert key in RESULT_KEYS and res[key] > 0, key
    assert res["service_s"] == pytest.approx(res["ttft_s_used"] + 300 / res["decode_tokens_per_s_used"])
    assert res["in_flight_requests"] == pytest.approx(5 * res["service_s"])


def test_the_capacity_for_a_target_includes_the_running_requests():
    setup = resolve(Scenario.from_dict(BUSY))
    with_held, _ = capacity_for_hit_rate(setup, 0.4)
    without, _ = capacity_for_hit_rate(setup, 0.4, in_flight=False)
    assert with_held - without == pytest.approx(analyze_setup(setup).in_flight_tokens)
    a = prepare(setup)
    assert tokens_for_hit_rate(a, 0.4) == pytest.approx(with_held, rel=0.01)
    exact = analyze_setup(resolve(Scenario.from_dict({**BUSY, "kv_cache_tokens": int(with_held) + 32})))
    assert exact.token_hit_rate == pytest.approx(0.4, abs=2e-3)


# -- the sweeps answer as the analysis ---------------------------------------------------------


@pytest.mark.parametrize("changes", [
    {"arrival_rate": 0.4}, {"arrival_rate": 2.5}, {"decode_tokens_per_s": 40.0}, {"decode_tokens_per_s": 400.0},
    {"ttft_s": 2.0}, {"mfu": 0.1}, {"max_num_seqs": 6}, {"params_b": 30.0}, {"weight_dtype": "fp8"},
    {"num_gpus": 2}, {"instances": 3}, {"kv_cache_tokens": 60_000},
])
def test_table_variants_subtract_the_variants_in_flight(changes):
    """Every input the table answers moves the in-flight KV of the variant (rate, model,
    GPUs, engine, service time): the table agrees with the full analysis."""
    a = prepare(resolve(Scenario.from_dict(BUSY)))
    exact = variant_result(a, **changes)
    assert variant_hit_rate(a, **changes) == pytest.approx(exact.token_hit_rate, abs=1e-3), exact.in_flight_share


def test_memory_curve_and_heatmap_agree_with_the_analysis():
    """The memory curve and the heatmap take the running requests' KV off every capacity:
    each point is the analysis at that capacity (as kv_cache_tokens) and arrival rate."""
    s = Scenario.from_dict({k: v for k, v in BUSY.items() if k != "kv_cache_tokens"} | {"arrival_rate": 20})
    a = prepare(resolve(s))
    assert a.result.in_flight_share > 0.1
    assert hit_rate_at_tokens(a, a.capacity.capacity_tokens) == pytest.approx(a.result.token_hit_rate, abs=2e-3)

    def exact(tokens: int, **changes) -> float:
        # kv_cache_tokens loses vLLM's null block: give it one more
        return analyze(s.replace(kv_cache_tokens=tokens + s.block_size, **changes)).token_hit_rate

    curve = hit_vs_memory(a, points=30)
    checked = 0
    for tokens, rate in zip(curve.capacity_tokens, curve.token_hit_rate):
        if tokens > 0:
            assert rate == pytest.approx(exact(tokens), abs=3e-3), tokens
            checked += 1
    assert checked > 20
    grid = heatmap(a, rows=4, cols=6)
    for i, lam in enumerate(grid.arrival_rate):
        for j, mem in enumerate(grid.memory_gib):
            tokens = tokens_for_memory(s, a.capacity, mem)
            if tokens > 0:
                assert grid.token_hit_rate[i][j] == pytest.approx(exact(tokens, arrival_rate=lam), abs=3e-3), (lam, mem)
