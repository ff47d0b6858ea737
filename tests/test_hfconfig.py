"""The Hugging Face config.json importer and parameter counter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvcache_calculator.setup.architecture import (
    kv_bytes_per_sequence_fixed,
    kv_bytes_per_token,
    kv_bytes_per_token_all_layers,
)
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.configjson import count_params, text_config
from kvcache_calculator.setup.hfconfig import arch_to_scenario, import_config, import_scenario, scenario_keys_gap
from kvcache_calculator.present.report import results
from kvcache_calculator.scenario import Scenario

HF_CONFIGS = Path(__file__).resolve().parents[1] / ".." / "shared" / "hf-configs"
FILES = sorted(HF_CONFIGS.glob("*.json")) if HF_CONFIGS.is_dir() else []

LLAMA_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_attention_heads": 32, "num_hidden_layers": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}


def _read(name: str) -> str:
    path = HF_CONFIGS / name
    if not path.is_file():
        pytest.skip(f"reference config not found: ../shared/hf-configs/{name} is absent")
    return path.read_text()


def _fields(value: object) -> set[str]:
    """Every key at any depth of a parsed JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _fields(v)}
    if isinstance(value, list):
        return {k for v in value for k in _fields(v)}
    return set()


@pytest.mark.skipif(not FILES, reason="reference configs not found: ../shared/hf-configs is absent")
@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_every_reference_config_imports_or_names_the_unsupported_field(path):
    text = path.read_text()
    try:
        arch = import_config(text, path.stem)
    except ScenarioError as err:
        assert err.key in _fields(json.loads(text)), f"error names no field of the file: {err}"
        return
    assert arch.num_layers >= 1
    assert kv_bytes_per_token(arch, "bf16") > 0
    assert 0 < arch.active_params_b <= arch.params_b


# (file, KV bytes per token at bf16 over growing layers, all layers, fixed bytes per sequence)
KV_EXPECTED = [
    ("meta-llama--Meta-Llama-3.1-8B.json", 131_072, 131_072, 0),
    ("meta-llama--Meta-Llama-3.1-70B.json", 327_680, 327_680, 0),
    ("meta-llama--Meta-Llama-3.1-405B.json", 516_096, 516_096, 0),
    ("mistralai--Mixtral-8x7B-v0.1.json", 131_072, 131_072, 0),
    ("Qwen--Qwen3-0.6B.json", 114_688, 114_688, 0),
    ("Qwen--Qwen3-8B.json", 147_456, 147_456, 0),
    ("Qwen--Qwen3-32B.json", 262_144, 262_144, 0),
    ("Qwen--Qwen3-30B-A3B.json", 98_304, 98_304, 0),
    ("Qwen--Qwen3-235B-A22B.json", 192_512, 192_512, 0),
    ("deepseek-ai--DeepSeek-V3.json", 70_272, 70_272, 0),
    ("deepseek-ai--DeepSeek-R1.json", 70_272, 70_272, 0),
    ("moonshotai--Kimi-K2-Instruct.json", 70_272, 70_272, 0),
    ("moonshotai--Kimi-K2.5.json", 70_272, 70_272, 0),
    # 18 full layers * 2 * 8 * 64 * 2; the 18 sliding layers hold (128 + 16) tokens each.
    ("openai--gpt-oss-120b.json", 36_864, 73_728, 18 * 144 * 2048),
    ("openai--gpt-oss-20b.json", 24_576, 49_152, 12 * 144 * 2048),
    # 16 full layers * 2 * 4 * 256 * 2; 48 gated delta-net layers of 3,207,168 bytes each:
    # conv 3 * (2*16*128 + 48*128) * 2 bytes = 61,440 + recurrent 48*128*128 * 4 bytes (fp32).
    ("Qwen--Qwen3.5-27B.json", 65_536, 65_536, 48 * (61_440 + 3_145_728)),
    # 61 MLA layers * (576 * 2 + 132 bytes of fp8 indexer key with its fp32 scale).
    ("deepseek-ai--DeepSeek-V3.2.json", 78_324, 78_324, 0),
    # 78 MLA layers, indexer on the 21 "full" indexer layers only.
    ("zai-org--GLM-5.2.json", 78 * 1152 + 21 * 132, 78 * 1152 + 21 * 132, 0),
    # 12 global layers; 36 chunked-attention layers modelled as an 8192-token window.
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct.json", 49_152, 196_608, 36 * 8208 * 4096),
    # 10 attention layers * 2 * 8 * 128 * 2; 54 Mamba-2 layers: conv 3 * (16384 + 2*8*256) +
    # SSM 256 * 64 * 256, at 2 bytes.
    ("nvidia--Nemotron-H-56B-Base-8K.json", 40_960, 40_960, 54 * 2 * (3 * 20_480 + 4_194_304)),
    # 9 global layers of 4 KV heads * (192 + 128); 39 sliding layers of 8 heads, window 128.
    ("XiaomiMiMo--MiMo-V2-Flash.json", 9 * 4 * 320 * 2, 9 * 2560 + 39 * 8 * 320 * 2,
     39 * 144 * 8 * 320 * 2),
    # 5 global layers of 2 KV heads * (512 + 512); 25 sliding layers of 8 * 256 * 2, window 1024.
    ("google--gemma-4-26B-A4B.json", 5 * 2 * 1024 * 2, 20_480 + 25 * 8 * 512 * 2,
     25 * 1040 * 8 * 512 * 2),
    ("stepfun-ai--Step-3.7-Flash.json", 12 * 4096, 45 * 4096, 33 * 528 * 4096),
    ("Qwen--Qwen3-Coder-480B-A35B-Instruct.json", 62 * 4096, 62 * 4096, 0),
    ("Qwen--Qwen3.5-397B-A17B.json", 15 * 2 * 2 * 256 * 2, 15 * 2048,
     45 * (3 * (2 * 2048 + 64 * 128) * 2 + 64 * 128 * 128 * 4)),
    # 60 layers * 2 * 4 * 128 * 2, plus a 128-value bf16 index key on the 57 sparse layers.
    ("MiniMaxAI--MiniMax-M3.json", 60 * 2048 + 57 * 256, 60 * 2048 + 57 * 256, 0),
]


@pytest.mark.parametrize("name, growing, all_layers, fixed", KV_EXPECTED, ids=[k[0] for k in KV_EXPECTED])
def test_kv_bytes_of_reference_configs(name, growing, all_layers, fixed):
    arch = import_config(_read(name))
    assert kv_bytes_per_token(arch, "bf16") == growing
    assert kv_bytes_per_token_all_layers(arch, "bf16") == all_layers
    assert kv_bytes_per_sequence_fixed(arch, "bf16", block_size=16) == fixed


def test_deepseek_v4_compressed_attention_is_refused_by_name():
    with pytest.raises(ScenarioError) as err:
        import_config(_read("deepseek-ai--DeepSeek-V4-Flash.json"))
    assert err.value.key == "compress_ratios"
    assert "not supported" in str(err.value)


# (file, published total B, published active B) from docs/validation.md §8 / model names.
PARAMS_PUBLISHED = [
    ("meta-llama--Meta-Llama-3.1-8B.json", 8.03, 8.03),
    ("meta-llama--Meta-Llama-3.1-70B.json", 70.6, 70.6),
    ("meta-llama--Meta-Llama-3.1-405B.json", 405.9, 405.9),
    ("meta-llama--Llama-4-Scout-17B-16E-Instruct.json", 109, 17),
    ("mistralai--Mixtral-8x7B-v0.1.json", 46.7, 12.9),
    ("Qwen--Qwen3-0.6B.json", 0.6, 0.6),
    ("Qwen--Qwen3-8B.json", 8.2, 8.2),
    ("Qwen--Qwen3-32B.json", 32.8, 32.8),
    ("Qwen--Qwen3-30B-A3B.json", 30.5, 3.3),
    ("Qwen--Qwen3-235B-A22B.json", 235, 22),
    ("Qwen--Qwen3.5-27B.json", 27, 27),
    ("deepseek-ai--DeepSeek-V3.json", 671, 37),
    ("deepseek-ai--DeepSeek-R1.json", 671, 37),
    ("moonshotai--Kimi-K2-Instruct.json", 1040, 32),
    ("openai--gpt-oss-120b.json", 117, 5.1),
    ("openai--gpt-oss-20b.json", 21, 3.6),
    ("Qwen--Qwen3-Coder-480B-A35B-Instruct.json", 480, 35),
    ("Qwen--Qwen3.5-397B-A17B.json", 397, 17),
    ("nvidia--Nemotron-H-56B-Base-8K.json", 56, 56),
]

#: OpenAI counts gpt-oss's active parameters without the embedding matrix (vocab x hidden).
ACTIVE_WITHOUT_EMBEDDING = {"openai--gpt-oss-120b.json", "openai--gpt-oss-20b.json"}


@pytest.mark.parametrize("name, total_b, active_b", PARAMS_PUBLISHED, ids=[p[0] for p in PARAMS_PUBLISHED])
def test_counted_parameters_match_published_totals(name, total_b, active_b):
    text = _read(name)
    counted_total, counted_active = count_params(text)
    assert counted_total == pytest.approx(total_b, rel=0.02)
    if name in ACTIVE_WITHOUT_EMBEDDING:
        cfg = json.loads(text)
        counted_active -= cfg["vocab_size"] * cfg["hidden_size"] / 1e9
    # Active counts are rounded harder by their publishers (Kimi-K2 "32B" counts 32.9B here).
    assert counted_active == pytest.approx(active_b, rel=0.03)
    arch = import_config(text)
    assert arch.params_b == pytest.approx(counted_total, abs=0.001)


def test_dict_text_and_bytes_give_the_same_model():
    text = json.dumps(LLAMA_8B)
    a, b, c = import_config(LLAMA_8B), import_config(text), import_config(text.encode())
    assert a == b == c
    assert a.name == "imported" and import_config(LLAMA_8B, name="mine").name == "mine"
    assert "LlamaForCausalLM" in a.source


def test_text_config_wrapper_is_unwrapped():
    wrapped = {"architectures": ["Wrapper"], "model_type": "wrapper", "text_config": dict(LLAMA_8B),
               "vision_config": {"num_hidden_layers": 99}}
    assert import_config(wrapped).layers == import_config(LLAMA_8B).layers
    assert count_params(wrapped) == count_params(LLAMA_8B)
    merged = text_config({"tie_word_embeddings": True, "text_config": {"hidden_size": 8}})
    assert merged == {"tie_word_embeddings": True, "hidden_size": 8}


def test_llama_8b_parameters_by_hand():
    # embed + head 2 * 128256 * 4096; per layer attention 2 * 4096^2 + 2 * 4096 * 1024,
    # SwiGLU 3 * 4096 * 14336, two RMSNorms; a final norm.
    per_layer = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    expected = 2 * 128256 * 4096 + 32 * per_layer + 4096
    total, active = count_params(LLAMA_8B)
    assert total == active == pytest.approx(expected / 1e9, rel=1e-12)


@pytest.mark.parametrize("text", ["{", "not json", "[1, 2", '{"a": }'])
def test_bad_json_raises_config_error(text):
    with pytest.raises(ScenarioError) as err:
        import_config(text)
    assert err.value.key == "config"
    assert "is not valid JSON:" in str(err.value)


@pytest.mark.parametrize("value", ["[1, 2]", "42", 42, None, ["a"]])
def test_non_object_config_is_refused(value):
    with pytest.raises(ScenarioError) as err:
        import_config(value)
    assert err.value.key == "config"


@pytest.mark.parametrize("change, key", [
    ({"num_hidden_layers": None}, "num_hidden_layers"),
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"num_key_value_heads": "8"}, "num_key_value_heads"),
    ({"num_key_value_heads": 7.5}, "num_key_value_heads"),
    ({"num_attention_heads": None}, "num_attention_heads"),
    ({"hidden_size": None}, "head_dim"),
    ({"hidden_size": None, "head_dim": 128}, "hidden_size"),
    ({"vocab_size": None}, "vocab_size"),
    ({"layer_types": ["full_attention"] * 31 + ["cross_attention"]}, "layer_types"),
    ({"layer_types": ["full_attention"] * 3}, "layer_types"),
    ({"layer_types": "full_attention"}, "layer_types"),
    ({"sliding_window": 4096, "layer_types": ["sliding_attention"] * 32, "model_type": "x",
      "num_hidden_layers": 32, "head_dim": 0}, "head_dim"),
    ({"text_config": "llama"}, "text_config"),
    ({"num_kv_shared_layers": 10}, "num_kv_shared_layers"),
    ({"hybrid_override_pattern": "M*X"}, "hybrid_override_pattern"),
    ({"compress_ratios": [0, 4]}, "compress_ratios"),
    ({"attn_layer_period": 8, "attn_layer_offset": 4}, "attn_layer_period"),
    ({"layers_block_type": ["mamba", "attention"] * 16}, "layers_block_type"),
    ({"kv_lora_rank": 512, "qk_rope_head_dim": 64, "layer_types": ["sliding_attention"] * 32,
      "sliding_window": 128}, "layer_types"),
])
def test_bad_or_unsupported_fields_are_named(change, key):
    cfg = {**LLAMA_8B, **change}
    cfg = {k: v for k, v in cfg.items() if v is not None}
    with pytest.raises(ScenarioError) as err:
        import_config(cfg)
    assert err.value.key == key


def test_unknown_layer_type_error_names_the_entry():
    cfg = {**LLAMA_8B, "layer_types": ["full_attention"] * 31 + ["mystery_attention"]}
    with pytest.raises(ScenarioError, match="layer_types: got 'mystery_attention'; entries allowed"):
        import_config(cfg)


def test_unknown_state_dtype_is_named():
    cfg = {**LLAMA_8B, "num_hidden_layers": 4, "head_dim": 128, "dtype": "float8",
           "layer_types": ["linear_attention", "full_attention"] * 2,
           "linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
           "linear_value_head_dim": 8}
    with pytest.raises(ScenarioError) as err:
        import_config(cfg)
    assert err.value.key == "dtype"


def test_gemma2_alternates_sliding_and_global_layers():
    cfg = {"model_type": "gemma2", "num_hidden_layers": 42, "num_attention_heads": 16,
           "num_key_value_heads": 8, "head_dim": 256, "sliding_window": 4096, "hidden_size": 3584,
           "intermediate_size": 14336, "vocab_size": 256000, "tie_word_embeddings": True}
    arch = import_config(cfg)
    assert [(g.kind, g.count, g.window) for g in arch.layers] == [("sliding", 21, 4096), ("full", 21, 0)]
    assert kv_bytes_per_token_all_layers(arch) == 344_064
    assert kv_bytes_per_token(arch) == 172_032
    assert count_params(cfg)[0] == pytest.approx(9.24, rel=0.02)


def test_qwen2_style_disabled_sliding_window_is_ignored():
    cfg = {**LLAMA_8B, "sliding_window": 131072, "use_sliding_window": False}
    assert import_config(cfg).layers == import_config(LLAMA_8B).layers


def test_notes_record_modelling_choices():
    scout = import_config(_read("meta-llama--Llama-4-Scout-17B-16E-Instruct.json"))
    assert "chunked local attention (chunk 8192 tokens)" in scout.notes
    v32 = import_config(_read("deepseek-ai--DeepSeek-V3.2.json"))
    assert "indexer key cache 132 bytes per token on 61 layers" in v32.notes
    assert "multi-token-prediction" in v32.notes
    qwen35 = import_config(_read("Qwen--Qwen3.5-27B.json"))
    assert "gated delta-net state 3,207,168 bytes" in qwen35.notes


def test_arch_to_scenario_keys():
    llama = arch_to_scenario(import_config(LLAMA_8B))
    assert llama == {"params_b": pytest.approx(8.03, abs=0.01), "active_params_b": pytest.approx(8.03, abs=0.01),
                     "num_layers": 32, "attention": "gqa", "num_kv_heads": 8, "head_dim": 128}
    deepseek = arch_to_scenario(import_config(_read("deepseek-ai--DeepSeek-V3.json")))
    assert deepseek["attention"] == "mla"
    assert (deepseek["kv_lora_rank"], deepseek["qk_rope_head_dim"], deepseek["num_layers"]) == (512, 64, 61)
    oss = arch_to_scenario(import_config(_read("openai--gpt-oss-120b.json")))
    assert (oss["sliding_window"], oss["sliding_layers"], oss["num_layers"]) == (128, 18, 36)
    assert (oss["num_kv_heads"], oss["head_dim"]) == (8, 64)
    assert json.loads(json.dumps(oss)) == oss


@given(layers=st.integers(1, 160), heads=st.sampled_from([8, 16, 32, 64, 128]),
       groups=st.sampled_from([1, 2, 4, 8]), head_dim=st.sampled_from([64, 128, 256]),
       hidden=st.sampled_from([1024, 4096, 8192]), inter=st.integers(1, 60000),
       vocab=st.integers(1000, 300000), tied=st.booleans())
def test_random_dense_configs_follow_the_gqa_formula(layers, heads, groups, head_dim, hidden, inter,
                                                     vocab, tied):
    kv_heads = heads // groups
    cfg = {"num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
           "head_dim": head_dim, "hidden_size": hidden, "intermediate_size": inter,
           "vocab_size": vocab, "tie_word_embeddings": tied}
    arch = import_config(cfg)
    assert kv_bytes_per_token(arch, "bf16") == 2 * layers * kv_heads * head_dim * 2
    total, active = count_params(cfg)
    assert total == active
    assert total * 1e9 > layers * 3 * hidden * inter + vocab * hidden


def test_qwen3_next_full_attention_interval_without_layer_types():
    qwen35 = json.loads(_read("Qwen--Qwen3.5-27B.json"))["text_config"]
    explicit = import_config(qwen35)
    implicit = import_config({k: v for k, v in qwen35.items() if k != "layer_types"})
    assert implicit.layers == explicit.layers


@pytest.mark.parametrize("name, dtype, fmt", [
    ("deepseek-ai--DeepSeek-V3.json", "fp8", ""), ("moonshotai--Kimi-K2-Instruct.json", "fp8", ""),
    ("moonshotai--Kimi-K2.5.json", "int4", ""), ("openai--gpt-oss-120b.json", "fp4", "MXFP4"),
    ("XiaomiMiMo--MiMo-V2-Flash.json", "fp8", ""), ("Qwen--Qwen3-8B.json", "bf16", ""),
    ("Qwen--Qwen3.5-27B.json", "bf16", ""),
])
def test_import_reads_the_checkpoint_weight_format(name, dtype, fmt):
    arch = import_config(_read(name))
    assert (arch.weight_dtype, arch.weight_format) == (dtype, fmt)
    assert ("weights " in arch.notes) == (dtype != "bf16")


@pytest.mark.parametrize("fields, dtype", [
    ({}, "bf16"), ({"torch_dtype": "float16"}, "fp16"), ({"torch_dtype": "torch.bfloat16"}, "bf16"),
    ({"torch_dtype": "float32"}, "fp16"),
    ({"quantization_config": {"quant_method": "fp8"}}, "fp8"),
    ({"quantization_config": {"quant_method": "awq", "bits": 4}}, "int4"),
    ({"quantization_config": {"quant_method": "gptq", "bits": 8}}, "int8"),
    ({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}, "int4"),
    ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}, "fp4"),
    # ModelOpt mixed precision (nvidia's Qwen3.6-35B-A3B-NVFP4): the MLP / expert layers' format
    ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "quantized_layers": {
        "model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"},
        "model.layers.0.mlp.experts": {"quant_algo": "W4A16_NVFP4", "group_size": 16}}}}, "fp4"),
    ({"quantization_config": {"quant_method": "modelopt", "quant_algo": "MIXED_PRECISION", "quantized_layers": {
        "model.layers.0.mlp.down_proj": {"quant_algo": "FP8"}}}}, "fp8"),
    ({"quantization_config": {"quant_method": "compressed-tensors", "config_groups": {
        "g": {"weights": {"num_bits": 8, "type": "float"}}}}}, "fp8"),
    # a quantization this does not know: the torch_dtype, and a note saying so
    ({"torch_dtype": "bfloat16", "quantization_config": {"quant_method": "hqq"}}, "bf16"),
])
def test_weight_format_from_quantization_config_or_torch_dtype(fields, dtype):
    arch = import_config({**LLAMA_8B, **fields})
    assert arch.weight_dtype == dtype
    if fields.get("quantization_config", {}).get("quant_method") == "hqq":
        assert "not recognised" in arch.notes


def test_arch_to_scenario_weight_dtype_only_when_asked():
    oss = import_config(_read("openai--gpt-oss-120b.json"))
    assert "weight_dtype" not in arch_to_scenario(oss)
    assert arch_to_scenario(oss, weight_dtype=True)["weight_dtype"] == "fp4"
    assert arch_to_scenario(import_config(LLAMA_8B), weight_dtype=True)["weight_dtype"] == "bf16"


@pytest.mark.parametrize("name, gap, preset", [
    ("google--gemma-4-26B-A4B.json", "20 KiB per token plus 102 MiB per sequence, against the config's "
                                     "20 KiB per token plus 203 MiB per sequence", "gemma-4-26b-a4b"),
    ("Qwen--Qwen3.5-27B.json", "64 KiB per token, against the config's 64 KiB per token plus 147 MiB",
     "qwen3.5-27b"),
    ("deepseek-ai--DeepSeek-V3.2.json", "68.62 KiB per token, against the config's 76.49 KiB", "deepseek-v3.2"),
    ("Qwen--Qwen3-32B.json", None, None),
    ("deepseek-ai--DeepSeek-V3.json", None, None),
])
def test_scenario_keys_gap_says_when_the_form_can_only_approximate(name, gap, preset):

    said = scenario_keys_gap(import_config(_read(name)))
    if gap is None:
        assert said is None
    else:
        assert gap in said and said.endswith(f"The preset {preset} has the exact figures.")


def test_scenario_keys_gap_without_a_matching_preset():

    config = json.loads(_read("google--gemma-4-26B-A4B.json"))
    text = config.get("text_config") or config
    text["num_hidden_layers"] = 36                                    # no preset has this one
    text["layer_types"] = text["layer_types"] + text["layer_types"][:6]
    said = scenario_keys_gap(import_config(config))
    assert said.startswith("The scenario keys describe this architecture only approximately")
    assert "preset" not in said


@pytest.mark.parametrize("name, dtype", [("deepseek-ai--DeepSeek-V3.json", "fp8"),
                                         ("openai--gpt-oss-120b.json", "fp4"),
                                         ("moonshotai--Kimi-K2.5.json", "int4"),
                                         ("Qwen--Qwen3-8B.json", "bf16")])
def test_import_gives_the_weight_format_its_quantization_config_says(name, dtype):
    """Issue 12, defect 3: the page's import used to leave weight_dtype out (bf16 weights)."""
    path = HF_CONFIGS / name
    if not path.exists():
        pytest.skip(f"{name} is not in the reference folder")
    _arch, keys = import_scenario(path.read_text())
    assert keys["weight_dtype"] == dtype
    scenario = Scenario.from_dict({"model": "custom", "gpu": "h200", "num_gpus": 8, **keys})
    assert results(scenario)["weight_dtype_used"] == dtype


@pytest.mark.parametrize("field, value", [("num_hidden_layers", 1_000_000), ("num_hidden_layers", 1e9),
                                          ("num_key_value_heads", 5000), ("head_dim", 100_000)])
def test_import_applies_the_forms_limits_before_building_anything(field, value):
    """Issue 12, defect 4: a million layers used to take the page 45 s, a billion a MemoryError."""
    config = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
              "hidden_size": 4096, "intermediate_size": 14336, "vocab_size": 128256, field: value}
    with pytest.raises(ScenarioError) as err:
        import_scenario(json.dumps(config))
    assert err.value.key == field and "limit" in str(err.value)
    long_list = {**config, field: 32, "layer_types": ["full_attention"] * 5000}
    with pytest.raises(ScenarioError, match="layer_types"):
        import_scenario(long_list)
