"""Property tests over the whole input space (Hypothesis, derandomized so CI is repeatable)."""

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvcache_calculator import ScenarioError

from kvcache_calculator.setup import presets
from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.present.report import evaluate, results
from kvcache_calculator.scenario import FIELDS, Scenario

MODEL_IDS = [m["id"] for m in presets.list_models()]
GPU_IDS = [g["id"] for g in presets.list_gpus()]
RATES = {"token_hit_rate", "request_hit_rate", "max_token_hit_rate", "max_request_hit_rate",
         "gpu_token_hit_rate", "offload_token_hit_rate", "target_hit_rate"}

workloads = st.fixed_dictionaries({
    "model": st.sampled_from(MODEL_IDS),
    "gpu": st.sampled_from(GPU_IDS),
    "num_gpus": st.sampled_from([1, 2, 4, 8, 16]),
    "kv_dtype": st.sampled_from(["bf16", "fp8", "fp4", "fp32"]),
    "weight_dtype": st.sampled_from(["bf16", "fp8", "int4"]),
    "block_size": st.sampled_from([1, 16, 64, 512]),
    "instances": st.integers(1, 16),
    "routing": st.sampled_from(["session", "round_robin", "random", "least_loaded"]),
    "arrival_rate": st.floats(1e-3, 1e3),
    "turns": st.floats(1, 50),
    "turns_dist": st.just("geometric"),
    "think_time_s": st.floats(0.1, 3600),
    "think_dist": st.sampled_from(["exponential", "fixed"]),
    "input_tokens": st.integers(1, 20000),
    "output_tokens": st.integers(0, 5000),
    "system_prompt_tokens": st.integers(0, 20000),
    "num_system_prompts": st.integers(1, 100),
    "offload_gib": st.sampled_from([0.0, 64.0, 1024.0]),
})


def _check_numbers(res: dict):
    for key, value in res.items():
        if isinstance(value, float):
            assert math.isfinite(value), key
        if key in RATES and value is not None:
            assert 0.0 <= value <= 1.0, (key, value)
    assert res["token_hit_rate"] <= res["max_token_hit_rate"] + 1e-9
    assert res["request_hit_rate"] <= res["max_request_hit_rate"] + 1e-9


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(workloads)
def test_results_are_finite_rates_in_range(values):
    s = Scenario.from_dict(values)
    _check_numbers(results(s))


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(workloads, st.lists(st.floats(1, 4000), min_size=2, max_size=6))
def test_lru_hit_rate_never_falls_as_memory_grows(values, memories):
    s = Scenario.from_dict({**values, "gpu": "custom", "gpu_memory_gib": 80.0})
    previous = -1.0
    for memory in sorted(memories):
        r = analyze(s.replace(gpu_memory_gib=memory))
        assert r.token_hit_rate >= previous - 1e-9
        previous = r.token_hit_rate


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([f.key for f in FIELDS] + ["bogus"]), st.deferred(lambda: st.text(max_size=12)
       | st.floats(allow_nan=True).map(str) | st.integers(-10**9, 10**9).map(str)), max_size=8))
def test_any_link_evaluates_without_an_exception(params):
    out = evaluate(params)
    _check_numbers(out["results"])
    assert set(out["field_errors"]) <= set(params) | {"params_b", "num_layers", "num_kv_heads", "head_dim",
                                                      "kv_lora_rank", "gpu_memory_gib", "sliding_window"}


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from([f.key for f in FIELDS]), st.text(max_size=10), max_size=6))
def test_strict_parsing_raises_only_scenario_errors(params):
    try:
        s = Scenario.from_dict(params)
    except ScenarioError as err:
        assert err.key in params or err.key in {f.key for f in FIELDS}
        return
    try:
        _check_numbers(results(s))
    except ScenarioError:
        pass  # e.g. model=custom without its architecture
