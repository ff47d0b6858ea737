"""KV bytes per token and per sequence by layer kind (docs/model.md §2)."""

from __future__ import annotations

import json

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kvcache_calculator.setup.architecture import (
    LayerGroup,
    ModelArch,
    dense_arch,
    dtype_bytes,
    kv_bytes_per_sequence_fixed,
    kv_bytes_per_token,
    kv_bytes_per_token_all_layers,
    mla_arch,
    sequence_kv_bytes,
)
from kvcache_calculator.errors import ScenarioError

LLAMA_8B = dense_arch("llama-3.1-8b", 32, 8, 128, 8.03)
DEEPSEEK_V3 = mla_arch("deepseek-v3", 61, 512, 64, 671, 37)
GEMMA_2_9B = ModelArch("gemma-2-9b", (LayerGroup("sliding", 21, 8, 256, 256, window=4096),
                                      LayerGroup("full", 21, 8, 256, 256)), 9.2)


def test_gqa_bytes_per_token_is_2_heads_head_dim_width():
    # 2 (K and V) * 8 KV heads * 128 * 2 bytes * 32 layers (docs/validation.md §8: 131,072)
    assert kv_bytes_per_token(LLAMA_8B, "bf16") == 2 * 8 * 128 * 2 * 32 == 131_072


@pytest.mark.parametrize("tp, heads_per_gpu", [(1, 8), (2, 4), (4, 2), (8, 1), (16, 1), (32, 1)])
def test_gqa_heads_split_over_tp_and_replicated_beyond(tp, heads_per_gpu):
    assert kv_bytes_per_token(LLAMA_8B, "bf16", tp) == 2 * heads_per_gpu * 128 * 2 * 32


def test_gqa_uneven_split_rounds_heads_down_per_gpu():
    # vLLM refuses such a split (heads must divide tp or be divisible by it); the formula floors.
    arch = dense_arch("odd", 10, 6, 64, 1.0)
    assert kv_bytes_per_token(arch, "fp16", tp=4) == 2 * 1 * 64 * 2 * 10  # 6 // 4 = 1 head


@pytest.mark.parametrize("tp", [1, 2, 8, 16])
def test_mla_latent_is_replicated_on_every_gpu(tp):
    # (512 + 64) * 2 bytes * 61 layers = 70,272 (docs/validation.md §8), the same on each GPU.
    assert kv_bytes_per_token(DEEPSEEK_V3, "bf16", tp) == (512 + 64) * 2 * 61 == 70_272


def test_k_and_v_widths_may_differ():
    group = LayerGroup("full", 1, num_kv_heads=4, k_head_dim=192, v_head_dim=128)
    assert group.bytes_per_token(2.0) == 4 * (192 + 128) * 2
    arch = dense_arch("mimo-like", 3, 4, 192, 1.0, v_head_dim=128)
    assert kv_bytes_per_token(arch, "bf16") == 3 * 4 * 320 * 2


def test_sliding_layers_do_not_grow_with_context_but_are_capped_per_sequence():
    per_layer_token = 2 * 8 * 256 * 2
    assert kv_bytes_per_token(GEMMA_2_9B, "bf16") == 21 * per_layer_token == 172_032
    assert kv_bytes_per_token_all_layers(GEMMA_2_9B, "bf16") == 42 * per_layer_token == 344_064
    cap = 21 * (4096 + 16) * per_layer_token
    assert kv_bytes_per_sequence_fixed(GEMMA_2_9B, "bf16", block_size=16) == cap
    assert kv_bytes_per_sequence_fixed(GEMMA_2_9B, "bf16", seq_tokens=1000) == 21 * 1000 * per_layer_token
    assert kv_bytes_per_sequence_fixed(GEMMA_2_9B, "bf16", seq_tokens=10**6) == cap


def test_sequence_bytes_add_growing_and_capped_parts():
    per_layer_token = 2 * 8 * 256 * 2
    seq = 10_000
    expected = 21 * per_layer_token * seq + 21 * (4096 + 16) * per_layer_token
    assert sequence_kv_bytes(GEMMA_2_9B, seq, "bf16", block_size=16) == expected
    short = 100
    assert sequence_kv_bytes(GEMMA_2_9B, short, "bf16") == 42 * per_layer_token * short


def test_model_of_only_sliding_layers_falls_back_to_all_layers():
    arch = ModelArch("mistral-v0.1-like", (LayerGroup("sliding", 32, 8, 128, 128, window=4096),), 7.2)
    assert kv_bytes_per_token(arch, "bf16") == kv_bytes_per_token_all_layers(arch, "bf16") == 131_072


def test_linear_layers_hold_a_constant_state_per_sequence():
    arch = ModelArch("hybrid", (LayerGroup("linear", 48, state_bytes=3_000_000.0),
                                LayerGroup("full", 16, 4, 256, 256)), 27)
    assert kv_bytes_per_token(arch, "bf16") == 16 * 2 * 4 * 256 * 2 == 65_536
    assert kv_bytes_per_sequence_fixed(arch, "bf16") == 48 * 3_000_000
    # The state does not depend on the sequence length and is sharded over tensor parallelism.
    assert kv_bytes_per_sequence_fixed(arch, "bf16", seq_tokens=5) == 48 * 3_000_000
    assert kv_bytes_per_sequence_fixed(arch, "bf16", tp=4) == 48 * 3_000_000 / 4
    assert sequence_kv_bytes(arch, 1000, "fp8") == 1000 * 32_768 + 48 * 3_000_000


@pytest.mark.parametrize("dtype, width", [("fp32", 4), ("bf16", 2), ("fp16", 2), ("fp8", 1),
                                          ("int8", 1), ("fp4", 0.5), ("int4", 0.5)])
def test_dtype_widths(dtype, width):
    assert dtype_bytes(dtype) == width
    assert kv_bytes_per_token(LLAMA_8B, dtype) == 131_072 / 2 * width


def test_extra_bytes_per_token_ignore_dtype_and_tp():
    group = LayerGroup("mla", 61, kv_lora_rank=512, qk_rope_head_dim=64, extra_bytes_per_token=132)
    arch = ModelArch("v3.2-like", (group,), 671, 37)
    assert kv_bytes_per_token(arch, "bf16") == 61 * (576 * 2 + 132) == 78_324
    assert kv_bytes_per_token(arch, "fp8", tp=8) == 61 * (576 + 132)


@pytest.mark.parametrize("bad", ["bf8", "float16", None, 2])
def test_unknown_dtype_names_the_key(bad):
    with pytest.raises(ScenarioError) as err:
        kv_bytes_per_token(LLAMA_8B, bad)
    assert err.value.key == "kv_dtype"
    assert "fp32" in str(err.value)


@pytest.mark.parametrize("kwargs, key", [
    ({"kind": "cross", "count": 1}, "attention"),
    ({"kind": "full", "count": 0, "num_kv_heads": 8, "k_head_dim": 128, "v_head_dim": 128}, "num_layers"),
    ({"kind": "full", "count": 2.5, "num_kv_heads": 8, "k_head_dim": 128, "v_head_dim": 128}, "num_layers"),
    ({"kind": "full", "count": 1, "num_kv_heads": 0, "k_head_dim": 128, "v_head_dim": 128}, "num_kv_heads"),
    ({"kind": "full", "count": 1, "num_kv_heads": 8, "k_head_dim": 0, "v_head_dim": 128}, "head_dim"),
    ({"kind": "sliding", "count": 1, "num_kv_heads": 8, "k_head_dim": 64, "v_head_dim": 64}, "sliding_window"),
    ({"kind": "mla", "count": 1}, "kv_lora_rank"),
    ({"kind": "linear", "count": 1, "state_bytes": -1.0}, "state_bytes"),
    ({"kind": "linear", "count": 1, "state_bytes": float("inf")}, "state_bytes"),
    ({"kind": "mla", "count": 1, "kv_lora_rank": 512, "extra_bytes_per_token": -4.0}, "extra_bytes_per_token"),
])
def test_layer_group_rejects_bad_fields(kwargs, key):
    with pytest.raises(ScenarioError) as err:
        LayerGroup(**kwargs)
    assert err.value.key == key


def test_model_arch_rejects_bad_parameters():
    group = LayerGroup("full", 1, 1, 64, 64)
    with pytest.raises(ScenarioError) as err:
        ModelArch("empty", (), 1.0)
    assert err.value.key == "num_layers"
    for params in (0, -1, float("nan")):
        with pytest.raises(ScenarioError) as err:
            ModelArch("x", (group,), params)
        assert err.value.key == "params_b"
    with pytest.raises(ScenarioError) as err:
        ModelArch("x", (group,), 10, 12)
    assert err.value.key == "active_params_b"


def test_active_params_default_to_total():
    assert ModelArch("x", (LayerGroup("full", 1, 1, 64, 64),), 3.0).active_params_b == 3.0


def test_to_dict_is_plain_json():
    d = GEMMA_2_9B.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["num_layers"] == 42 and d["attention"] == "hybrid-sliding"
    assert [g["kind"] for g in d["layers"]] == ["sliding", "full"]


def test_attention_summaries():
    assert LLAMA_8B.attention == "gqa"
    assert DEEPSEEK_V3.attention == "mla"
    hybrid = ModelArch("h", (LayerGroup("linear", 3, state_bytes=1.0), LayerGroup("full", 1, 1, 8, 8)), 1)
    assert hybrid.attention == "hybrid-linear"


@given(layers=st.integers(1, 200), heads=st.integers(1, 128), head_dim=st.sampled_from([64, 80, 128, 256]),
       tp=st.sampled_from([1, 2, 4, 8, 16, 32]))
def test_tp_never_shrinks_the_total_below_the_unsharded_figure(layers, heads, head_dim, tp):
    """Summed over the tp GPUs, sharded KV is at least the model's own (replication only adds),
    and exactly equal when tp divides the KV heads. Only splits vLLM accepts (heads divisible by
    tp, or tp by heads) are checked."""
    assume(heads % tp == 0 or tp % heads == 0)
    arch = dense_arch("p", layers, heads, head_dim, 1.0)
    whole = kv_bytes_per_token(arch, "bf16")
    per_gpu = kv_bytes_per_token(arch, "bf16", tp)
    assert per_gpu * tp >= whole
    if heads % tp == 0:
        assert per_gpu * tp == whole
