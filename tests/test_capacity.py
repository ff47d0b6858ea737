"""Capacity: published weight formats in the not-fit message, tensor-parallel head splits."""

from __future__ import annotations

import re

import pytest

from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.setup.architecture import ModelArch, LayerGroup, check_tensor_parallel, valid_tensor_parallel
from kvcache_calculator.setup.capacity import (
    GIB, Capacity, compute_capacity, fit_memory_gib, memory_for_tokens, tokens_for_memory,
)
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.presets import MODELS, get_model
from kvcache_calculator.present.report import evaluate
from kvcache_calculator.scenario import FIELDS, SIZING_KEYS, Scenario


def _capacity(s: Scenario) -> Capacity:
    """The capacity of ``s`` resolved (model and GPU from the presets)."""
    return resolve(s).capacity


def _left(message: str) -> float:
    return float(re.search(r"fits with ([0-9.]+) GiB per GPU left", message).group(1))


# -- published weight formats --------------------------------------------------------------


def test_gpt_oss_120b_on_one_h100_fits_at_its_published_mxfp4_checkpoint():
    s = Scenario.from_dict({"model": "gpt-oss-120b", "gpu": "h100-sxm"})
    assert s.weight_dtype is None                          # the default: the published format
    cap = _capacity(s)
    assert cap.fits and cap.weight_dtype == "fp4"
    # MXFP4 experts (padded to 3,072 wide) and bf16 for the rest: 64.9 GiB, as vLLM loads 64.4
    assert cap.weights_gib_per_gpu == pytest.approx(64.9, abs=0.1)
    at_bf16 = _capacity(s.replace(weight_dtype="bf16"))
    assert not at_bf16.fits
    assert "The published checkpoint is MXFP4: weight_dtype=fp4" in at_bf16.message
    assert _left(at_bf16.message) == pytest.approx(cap.kv_budget_gib_per_gpu, abs=0.05)


def test_deepseek_v3_on_8_h200_fits_at_its_published_fp8_checkpoint():
    s = Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 8})
    cap = _capacity(s)
    assert cap.fits and cap.weight_dtype == "fp8"
    at_bf16 = _capacity(s.replace(weight_dtype="bf16"))
    assert not at_bf16.fits
    assert "The published checkpoint is FP8: weight_dtype=fp8 fits with" in at_bf16.message
    assert _left(at_bf16.message) == pytest.approx(cap.kv_budget_gib_per_gpu, abs=0.05)


def test_a_smaller_weight_dtype_is_offered_for_any_model_that_it_makes_fit():
    s = Scenario.from_dict({"model": "llama-3.1-70b", "gpu_mem_util": 0.95})   # bf16 checkpoint, 131 GiB
    cap = _capacity(s)
    assert "published" not in cap.message
    assert "At weight_dtype=fp8 it fits with" in cap.message
    # the published fp8 does not fit on 4 H200 (140 GiB a GPU), int4 does
    cap = _capacity(Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 4}))
    assert not cap.fits and "published" not in cap.message and "At weight_dtype=int4 it fits" in cap.message
    # nothing fits: no hint
    cap = _capacity(Scenario.from_dict({"model": "deepseek-v3", "gpu": "l4"}))
    assert "weight_dtype=" not in cap.message


def test_no_hint_when_the_weights_are_already_at_the_published_format_or_smaller():
    s = Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 4, "weight_dtype": "fp8"})
    cap = _capacity(s)
    assert not cap.fits and "published" not in cap.message and "At weight_dtype=int4" in cap.message
    cap = _capacity(s.replace(weight_dtype="int4", num_gpus=1))
    assert not cap.fits and "weight_dtype=" not in cap.message


def test_overridden_presets_keep_their_published_format():
    s = Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 8, "params_b": 680,
                            "weight_dtype": "bf16"})
    assert "published checkpoint is FP8" in _capacity(s).message
    s = Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 8, "num_layers": 60,
                            "weight_dtype": "bf16"})
    assert "published checkpoint is FP8" in _capacity(s).message
    assert _capacity(s.replace(weight_dtype=None)).weight_dtype == "fp8"


# -- tensor parallelism must split the KV heads ---------------------------------------------


def test_num_gpus_that_cannot_split_the_kv_heads_is_refused():
    s = Scenario.from_dict({"model": "llama-3.1-8b", "num_gpus": 3})
    with pytest.raises(ScenarioError) as err:
        _capacity(s)
    assert err.value.key == "num_gpus" and err.value.value == 3
    # the valid counts also divide the 32 attention heads, so the list is complete
    assert "llama-3.1-8b has 8 KV heads: num_gpus must divide 8 or be a multiple of 8 (1, 2, 4, 8, 16, 32)" \
        in str(err.value)
    with pytest.raises(ScenarioError):
        analyze(s)
    for tp in (12, 20):                                   # more GPUs than heads: a multiple of 8
        with pytest.raises(ScenarioError):
            _capacity(s.replace(num_gpus=tp))
    for tp in (1, 2, 4, 8, 16, 32):                   # 24 would not split the 32 attention heads
        _capacity(s.replace(num_gpus=tp))


def test_the_rule_of_vllm_for_every_count():
    for heads in (1, 2, 4, 6, 8, 12, 64):
        arch = ModelArch("m", (LayerGroup("full", 2, heads, 64, 64),), 1.0)
        for tp in range(1, 130):
            ok = heads % tp == 0 if tp <= heads else tp % heads == 0
            assert valid_tensor_parallel(arch, tp) == ok, (heads, tp)


def test_mla_and_linear_state_impose_no_rule_of_their_own():
    # DeepSeek-V3: the latent is replicated; only its 128 attention heads must split evenly
    assert [tp for tp in range(1, 129) if valid_tensor_parallel(get_model("deepseek-v3"), tp)] == \
        [1, 2, 4, 8, 16, 32, 64, 128]
    # Qwen3.5-27B: 4 KV heads on its full-attention layers; the linear layers add no rule
    _capacity(Scenario.from_dict({"model": "qwen3.5-27b", "num_gpus": 2}))
    with pytest.raises(ScenarioError, match="4 KV heads"):
        _capacity(Scenario.from_dict({"model": "qwen3.5-27b", "num_gpus": 3}))


def test_mixed_head_counts_must_all_split():
    # Gemma 4: 8 KV heads on sliding layers, 2 on global ones
    arch = get_model("gemma-4-26b-a4b")
    with pytest.raises(ScenarioError) as err:
        check_tensor_parallel(arch, 3, "gemma-4-26b-a4b")
    assert "8 and 2 KV heads" in str(err.value) and "(1, 2, 4, 8, 16)" in str(err.value)


def test_custom_and_overridden_models_are_named_in_the_message():
    s = Scenario.from_dict({"model": "custom", "num_layers": 4, "num_kv_heads": 6, "head_dim": 64,
                            "params_b": 1, "num_gpus": 4})
    with pytest.raises(ScenarioError, match=r"the custom model has 6 KV heads.*\(1, 2, 3, 6, 12, \.\.\.\)"):
        _capacity(s)
    s = Scenario.from_dict({"model": "llama-3.1-8b", "num_kv_heads": 4, "num_gpus": 8})
    _capacity(s)                                    # 8 is a multiple of 4
    with pytest.raises(ScenarioError, match=r"llama-3.1-8b \(modified\) has 4 KV heads"):
        _capacity(s.replace(num_gpus=3))


def test_every_preset_accepts_the_power_of_two_gpu_counts_its_attention_heads_allow():
    for model_id, arch in MODELS.items():
        heads = arch.shape.num_attention_heads
        for tp in (1, 2, 4, 8, 16):
            if heads % tp == 0:
                _capacity(Scenario.from_dict({"model": model_id, "gpu": "b200", "num_gpus": tp}))
    with pytest.raises(ScenarioError, match="24 attention heads"):     # Llama-3.2-3B
        _capacity(Scenario.from_dict({"model": "llama-3.2-3b", "num_gpus": 16}))


def test_a_link_with_a_bad_gpu_count_falls_back_and_names_it():
    out = evaluate({"model": "llama-3.1-8b", "num_gpus": "3"})
    assert "num_gpus" in out["field_errors"] and "8 KV heads" in out["field_errors"]["num_gpus"]["allowed"]
    assert out["scenario"]["num_gpus"] == 1


def test_compute_capacity_reads_the_model_and_gpu_it_is_given():
    s = Scenario()
    setup = resolve(s)
    assert compute_capacity(s, setup.arch, setup.gpu) == setup.capacity
    bigger = compute_capacity(s, setup.arch, resolve(s.replace(gpu="h200")).gpu)
    assert bigger.capacity_tokens > setup.capacity.capacity_tokens


def test_memory_and_tokens_are_inverse():
    s = Scenario()
    setup = resolve(s)
    cap, memory = setup.capacity, setup.gpu.engine_memory_gib
    assert tokens_for_memory(s, cap, memory) == cap.capacity_tokens
    mem = memory_for_tokens(s, cap, cap.capacity_tokens)
    one_block_gib = s.block_size * cap.kv_bytes_per_token_per_gpu / 2**30 / cap.gpu_mem_util
    assert memory - one_block_gib <= mem <= memory   # capacity is whole blocks
    assert tokens_for_memory(s, cap, fit_memory_gib(s, cap) - 0.1) == 0
    assert tokens_for_memory(s, cap, fit_memory_gib(s, cap) + 1.0) > 0


def test_only_the_sizing_keys_change_the_capacity():
    """The keys outside SIZING_KEYS (serving and workload) never change the capacity: what a
    variant of them reuses (Setup.variant)."""
    base = Scenario.from_dict({"offload_gib": 10})
    cap = _capacity(base)
    changed = {"instances": 3, "routing": "random", "policy": "fifo", "arrival_rate": 7.0, "turns": 9.0,
               "turns_dist": "fixed", "length_dist": "exponential", "think_time_s": 5.0, "think_dist": "fixed", "input_tokens": 33,
               "output_tokens": 44, "system_prompt_tokens": 55, "num_system_prompts": 2, "mfu": 0.2,
               "target_hit_rate": 0.3, "decode_tokens_per_s": 50.0, "ttft_s": 0.5, "think_sigma": 2.0,
               "system_prompt_zipf": 1.0, "num_documents": 30, "document_tokens": 900, "document_share": 0.9,
               "document_zipf": 0.4, "think_shape": "0,1,3"}
    assert set(changed) == {f.key for f in FIELDS} - set(SIZING_KEYS)
    for key, value in changed.items():
        assert _capacity(base.replace(**{key: value})) == cap, key


@pytest.mark.parametrize("model, tp", [("llama-3.1-8b", 24), ("qwen3-235b-a22b", 12), ("deepseek-v3", 6)])
def test_tensor_parallel_sizes_vllm_refuses_for_the_attention_heads(model, tp):
    """vLLM splits the query heads evenly (ModelConfig.verify_with_parallel_config): 24 GPUs for
    Llama-3.1-8B's 32 heads, 12 for Qwen3-235B's 64 and 6 for DeepSeek-V3's 128 are refused,
    although the KV-head rule alone (replicated when tp exceeds them) would pass the first two."""
    s = Scenario.from_dict({"model": model, "gpu": "h200", "num_gpus": tp})
    with pytest.raises(ScenarioError) as err:
        _capacity(s)
    assert err.value.key == "num_gpus" and "attention heads" in str(err.value)
    _capacity(s.replace(num_gpus=8))
