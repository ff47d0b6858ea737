"""Model and GPU presets against published figures (docs/validation.md §8) and the reference configs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kvcache_calculator.setup.architecture import ModelArch, kv_bytes_per_token, kv_bytes_per_token_all_layers
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.gpus import GPU
from kvcache_calculator.setup.configjson import count_params
from kvcache_calculator.setup.hfconfig import import_config
from kvcache_calculator.setup.presets import (
    DEFAULT_GPU,
    DEFAULT_MODEL,
    GPUS,
    HF_CONFIG_FILES,
    MODEL_CONFIGS,
    MODELS,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
)

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"

# docs/validation.md §8, models: id -> (total B, active B, KV bytes per token at bf16 over the growing
# layers, or None where the table says "see config"; all-layer figure where the table gives it).
PUBLISHED_MODELS = {
    "llama-3.1-8b": (8.03, 8.03, 131_072, 131_072),
    "llama-3.1-70b": (70.6, 70.6, 327_680, 327_680),
    "llama-3.1-405b": (405.9, 405.9, 516_096, 516_096),
    "llama-3.2-1b": (1.24, 1.24, 32_768, 32_768),
    "llama-3.2-3b": (3.21, 3.21, 114_688, 114_688),
    "llama-4-scout": (109, 17, None, None),
    "mistral-7b": (7.25, 7.25, 131_072, 131_072),
    "mistral-small-24b": (23.6, 23.6, 163_840, 163_840),
    "mixtral-8x7b": (46.7, 12.9, 131_072, 131_072),
    "qwen2.5-7b": (7.6, 7.6, 57_344, 57_344),
    "qwen3-0.6b": (0.6, 0.6, 114_688, 114_688),
    "qwen3-8b": (8.2, 8.2, 147_456, 147_456),
    "qwen3-32b": (32.8, 32.8, 262_144, 262_144),
    "qwen3-30b-a3b": (30.5, 3.3, 98_304, 98_304),
    "qwen3-235b-a22b": (235, 22, 192_512, 192_512),
    "qwen3.5-27b": (27, 27, 65_536, None),
    "deepseek-v3": (671, 37, 70_272, 70_272),
    "deepseek-r1": (671, 37, 70_272, 70_272),
    "kimi-k2": (1040, 32, 70_272, 70_272),
    "gpt-oss-120b": (117, 5.1, 36_864, None),
    "gpt-oss-20b": (21, 3.6, 24_576, None),
    "gemma-2-9b": (9.2, 9.2, 172_032, 344_064),
}

# docs/validation.md §8, GPUs: id -> (memory GiB, dense bf16 TFLOP/s, HBM TB/s).
PUBLISHED_GPUS = {
    "h100-sxm": (79.6, 989, 3.35), "h100-pcie": (79.6, 756, 2.0), "h200": (140.4, 989, 4.8),
    "b200": (179, 2250, 8.0), "a100-80gb": (80, 312, 2.0), "a100-40gb": (40, 312, 1.6),
    "l40s": (44.5, 362, 0.86), "l4": (22, 121, 0.3), "rtx-4090": (24, 165, 1.0),
    "mi300x": (192, 1307, 5.3),
}

#: OpenAI counts gpt-oss's active parameters without the embedding matrix (vocab x hidden).
ACTIVE_WITHOUT_EMBEDDING = {"gpt-oss-120b", "gpt-oss-20b"}


def test_counts_and_defaults():
    assert len(MODELS) >= 25
    assert len(GPUS) >= 10
    assert DEFAULT_MODEL == "llama-3.1-8b" and DEFAULT_MODEL in MODELS
    assert DEFAULT_GPU == "h100-sxm" and DEFAULT_GPU in GPUS
    assert set(PUBLISHED_MODELS) <= set(MODELS)
    assert set(PUBLISHED_GPUS) <= set(GPUS)
    for required in ("deepseek-v3", "qwen3-235b-a22b", "h200"):
        assert required in MODELS or required in GPUS


@pytest.mark.parametrize("preset_id", list(MODELS) + list(GPUS))
def test_ids_are_lower_case_slugs(preset_id):
    assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", preset_id), preset_id
    assert preset_id != "custom"


@pytest.mark.parametrize("model_id", list(MODELS))
def test_every_model_cites_its_config_and_parameter_sources(model_id):
    arch = get_model(model_id)
    assert isinstance(arch, ModelArch)
    assert "config.json of " in arch.source and "on Hugging Face" in arch.source
    assert "; parameters: " in arch.source
    assert arch.source.split("; parameters: ")[1].strip()


@pytest.mark.parametrize("model_id", list(PUBLISHED_MODELS))
def test_kv_bytes_and_parameters_match_presets_md(model_id):
    total_b, active_b, growing, all_layers = PUBLISHED_MODELS[model_id]
    arch = get_model(model_id)
    assert arch.params_b == pytest.approx(total_b, rel=0.02)
    assert arch.active_params_b == pytest.approx(active_b, rel=0.02)
    if growing is not None:
        assert kv_bytes_per_token(arch, "bf16") == growing
    if all_layers is not None:
        assert kv_bytes_per_token_all_layers(arch, "bf16") == all_layers


def test_kv_bytes_of_models_described_in_words():
    # Llama 4 Scout: 12 global layers of 8 x 128; 36 chunked layers (window 8192).
    scout = get_model("llama-4-scout")
    assert kv_bytes_per_token(scout) == 12 * 2 * 8 * 128 * 2
    assert {(g.kind, g.count, g.window) for g in scout.layers} == {("sliding", 36, 8192), ("full", 12, 0)}
    assert "sliding window" in scout.notes
    # Qwen3.5-27B: 16 full layers of 4 KV heads x 256 + 48 linear-attention layers.
    qwen = get_model("qwen3.5-27b")
    assert [(g.kind, g.count) for g in qwen.layers] == [("linear", 48), ("full", 16)]
    # gpt-oss: half the layers slide over 128 tokens.
    for model_id, n in (("gpt-oss-120b", 18), ("gpt-oss-20b", 12)):
        assert {(g.kind, g.count, g.window) for g in get_model(model_id).layers} == \
            {("sliding", n, 128), ("full", n, 0)}


@pytest.mark.parametrize("model_id", sorted(HF_CONFIG_FILES))
def test_preset_equals_import_of_its_reference_config(model_id):
    path = SHARED / "hf-configs" / HF_CONFIG_FILES[model_id]
    if not path.is_file():
        pytest.skip(f"reference config not found: ../shared/hf-configs/{path.name} is absent")
    text = path.read_text()
    imported = import_config(text, model_id)
    preset = get_model(model_id)
    assert preset.layers == imported.layers
    total, active = count_params(text)
    assert preset.params_b == pytest.approx(total, rel=0.02)
    if model_id in ACTIVE_WITHOUT_EMBEDDING:
        cfg = json.loads(text)
        active -= cfg["vocab_size"] * cfg["hidden_size"] / 1e9
    assert preset.active_params_b == pytest.approx(active, rel=0.03)
    # the published checkpoint's weight format, as its config.json states it
    assert (preset.weight_dtype, preset.weight_format) == (imported.weight_dtype, imported.weight_format)


# the weight dtype each quantised checkpoint ships (quantization_config of its config.json)
PUBLISHED_WEIGHTS = {"deepseek-v3": "fp8", "deepseek-r1": "fp8", "deepseek-v3.2": "fp8", "kimi-k2": "fp8",
                     "kimi-k2.5": "int4", "mimo-v2-flash": "fp8", "gpt-oss-120b": "fp4", "gpt-oss-20b": "fp4"}


def test_presets_record_their_published_weight_format():
    for model_id, arch in MODELS.items():
        assert arch.weight_dtype == PUBLISHED_WEIGHTS.get(model_id, "bf16"), model_id
        if model_id in PUBLISHED_WEIGHTS:
            assert "published weights" in arch.source and "quantization_config" in arch.source
    assert get_model("gpt-oss-120b").weight_format == "MXFP4"
    rows = {m["id"]: m for m in list_models()}
    assert rows["deepseek-v3"]["weight_dtype"] == "fp8" and rows["llama-3.1-8b"]["weight_dtype"] == "bf16"


@pytest.mark.parametrize("model_id", sorted(set(MODELS) - set(HF_CONFIG_FILES)))
def test_presets_without_reference_file_count_close_to_published(model_id):
    total, active = count_params(MODEL_CONFIGS[model_id])
    assert get_model(model_id).params_b == pytest.approx(total, rel=0.02)
    assert get_model(model_id).active_params_b == pytest.approx(active, rel=0.02)


@pytest.mark.parametrize("gpu_id", list(PUBLISHED_GPUS))
def test_gpu_figures_match_presets_md(gpu_id):
    memory_gib, tflops, tb_s = PUBLISHED_GPUS[gpu_id]
    gpu = get_gpu(gpu_id)
    assert gpu.memory_gib == pytest.approx(memory_gib, rel=0.02)
    assert gpu.bf16_tflops == pytest.approx(tflops, rel=0.02)
    assert gpu.hbm_tb_s == pytest.approx(tb_s, rel=0.04)  # datasheets: 2.039 and 1.555 TB/s for A100
    assert "datasheet" in gpu.source or "data sheet" in gpu.source or "whitepaper" in gpu.source


def test_h100_carries_the_memory_the_driver_reports():
    # nvidia-smi reports 81,559 MiB for an "80 GB" H100: 79.6 GiB, not 80.
    assert get_gpu("h100-sxm").memory_gib == pytest.approx(81_559 / 1024, abs=0.06)
    assert get_gpu("h100-sxm").memory_gib < 80
    assert get_gpu("h100-sxm").memory_bytes == pytest.approx(79.6 * 2**30)


@pytest.mark.parametrize("getter, key, bad", [(get_model, "model", "llama3-8B"),
                                              (get_model, "model", "custom"),
                                              (get_model, "model", None),
                                              (get_gpu, "gpu", "H100"), (get_gpu, "gpu", "")])
def test_unknown_ids_raise_naming_the_key_and_the_choices(getter, key, bad):
    with pytest.raises(ScenarioError) as err:
        getter(bad)
    assert err.value.key == key
    assert "(or custom)" in str(err.value)
    assert (DEFAULT_MODEL if key == "model" else DEFAULT_GPU) in str(err.value)


def test_listings_are_plain_json_and_complete():
    models = list_models()
    assert [m["id"] for m in models] == list(MODELS)
    assert json.loads(json.dumps(models)) == models
    row = next(m for m in models if m["id"] == "gemma-2-9b")
    assert row["kv_bytes_per_token"] == 172_032 and row["attention"] == "hybrid-sliding"
    assert row["kv_bytes_per_sequence_fixed"] == 21 * (4096 + 16) * 2 * 8 * 256 * 2
    gpus = list_gpus()
    assert [g["id"] for g in gpus] == list(GPUS)
    assert json.loads(json.dumps(gpus)) == gpus
    assert set(gpus[0]) == {"id", "name", "memory_gib", "bf16_tflops", "hbm_tb_s", "source"}


def test_preset_tables_are_read_only():
    with pytest.raises(TypeError):
        MODELS["x"] = get_model(DEFAULT_MODEL)  # type: ignore[index]
    with pytest.raises(TypeError):
        GPUS["x"] = get_gpu(DEFAULT_GPU)  # type: ignore[index]


@pytest.mark.parametrize("kwargs, key", [({"memory_gib": 0}, "gpu_memory_gib"),
                                         ({"memory_gib": float("nan")}, "gpu_memory_gib"),
                                         ({"memory_gib": 80, "bf16_tflops": -1}, "bf16_tflops"),
                                         ({"memory_gib": 80, "hbm_tb_s": float("inf")}, "hbm_tb_s")])
def test_gpu_rejects_bad_figures(kwargs, key):
    with pytest.raises(ScenarioError) as err:
        GPU("x", "X", **kwargs)
    assert err.value.key == key
