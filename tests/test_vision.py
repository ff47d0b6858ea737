"""Vision towers and rotary caches: what vLLM loads besides the text weights (docs/engines.md §3).

Tower counts are checked against published figures; the loaded weights against the "Model
loading took X GiB" lines of vLLM 0.19 starts in ``tests/data/engine_starts.json``. Three of
those starts' config.json copies in ``tests/data/engine_models.json`` lack the
``vision_config`` (gemma-3-12b-it's was taken from a text-only re-upload, Llama-4-Scout's and
Mistral-Small-3.1's were cut to the text model): :data:`VISION_CONFIGS` completes them from
the models' own config.json files, as quoted below.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

import engine_validation as ev
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.capacity import compute_capacity
from kvcache_calculator.setup.configjson import model_shape
from kvcache_calculator.setup.hfconfig import import_config
from kvcache_calculator.setup.presets import HF_CONFIG_FILES, MODELS
from kvcache_calculator.setup.resolve import resolve_gpu
from kvcache_calculator.setup.vision import extra_weights_gib, rope_cache_elements, vision_tower

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "hf-configs"
GIB = 2 ** 30

#: The multimodal fields of the vision starts' config.json files (tests/engine_validation.py).
VISION_CONFIGS = ev.VISION_CONFIGS

#: The vision starts of vLLM 0.19 with a logged KV figure and their logged weights (GiB per GPU).
VISION_STARTS = {"vllm-0.19-gemma3-12b-h100": 23.31, "vllm-0.19-llama4-scout-h100-tp4": 53.12,
                 "vllm-0.19-mistral-small-31-24b-h100": 44.76,
                 "vllm-0.19-mistral-small-31-24b-w8a8-h100-tp2": 12.11}


def completed_row(start: dict, models: dict) -> tuple[ev.Row, float]:
    """The validation row of ``start`` with its config.json completed by
    :data:`VISION_CONFIGS`, and the weights per GPU predicted for it (GiB)."""
    models = copy.deepcopy(models)
    key = models["starts"][start["id"]]
    models[key]["config"] = {**models[key]["config"], **VISION_CONFIGS.get(key, {})}
    row = ev.evaluate(start, models)
    config, _ = ev.model_config(start, models)
    preset, _ = ev.gpu_preset(start)
    dtype, _ = ev.weight_dtype(start, config)
    scenario = ev.scenario_for(start, preset, dtype)
    capacity = compute_capacity(scenario, import_config(config), resolve_gpu(scenario))
    return row, capacity.memory.weights_gib


@pytest.fixture(scope="module")
def starts() -> dict:
    return {s["id"]: s for s in ev.load_starts()}


@pytest.fixture(scope="module")
def models() -> dict:
    return ev.load_models()


def _config(key: str, models: dict) -> dict:
    return {**models[key]["config"], **VISION_CONFIGS[key]}


def test_llama4_tower_equals_the_checkpoint_listing(models):
    # Module-by-module listing of Llama-4-Scout-17B-16E's checkpoint: class embedding 1,408,
    # positions 812,416, patch projection 827,904, 34 layers of 23,807,872, two LayerNorms,
    # adapter 23,068,672 + 16,777,216, projector 20,971,520.
    listed = 1408 + 812416 + 827904 + 4 * 1408 + 34 * 23807872 + 23068672 + 16777216 + 20971520
    tower = vision_tower(_config("meta-llama/Llama-4-Scout-17B-16E-Instruct", models))
    assert tower.params_b * 1e9 == pytest.approx(listed, abs=1)
    assert tower.tp_split


def test_siglip_towers_match_published_sizes(models):
    # SigLIP so400m (patch 14, 384 px, with its pooling head): the "400M" class, 428M.
    so400m = {"vision_config": {"hidden_size": 1152, "image_size": 384, "intermediate_size": 4304,
                                "model_type": "siglip_vision_model", "num_hidden_layers": 27, "patch_size": 14}}
    assert vision_tower(so400m).params_b == pytest.approx(0.428, abs=0.001)
    # Gemma 3 technical report (arXiv:2503.19786, table 1): vision encoder 417M; with the
    # 3840-wide projector and the 11.77B text model it makes the 12.19B of gemma-3-12b-it.
    gemma3 = _config("google/gemma-3-12b-it", models)
    tower = vision_tower(gemma3).params_b
    assert tower - (1152 * 3840 + 1152) / 1e9 == pytest.approx(0.417, abs=0.001)
    assert tower + import_config(gemma3).params_b == pytest.approx(12.19, abs=0.01)


def test_pixtral_tower_matches_its_400m_encoder(models):
    # Mistral's Pixtral 12B announcement: a 400M-parameter vision encoder (the same ViT as
    # Mistral-Small-3.1's); with Mistral 3's projector the checkpoint is 24.0B.
    encoder = vision_tower({"vision_config": VISION_CONFIGS["mistralai/Mistral-Small-3.1-24B-Instruct-2503"]
                            ["vision_config"]})
    assert encoder.params_b == pytest.approx(0.40, rel=0.02)
    full = _config("mistralai/Mistral-Small-3.1-24B-Instruct-2503", models)
    assert vision_tower(full).params_b + import_config(full).params_b == pytest.approx(24.0, abs=0.05)


@pytest.mark.parametrize("start_id", sorted(VISION_STARTS))
def test_weights_line_of_vision_starts(start_id, starts, models):
    """Text weights + tower (split over TP) + rotary caches against "Model loading took"."""
    _, weights = completed_row(starts[start_id], models)
    assert weights == pytest.approx(VISION_STARTS[start_id], rel=0.01)


@pytest.mark.parametrize("start_id", sorted(VISION_STARTS))
def test_vision_starts_within_the_bound(start_id, starts, models):
    row, _ = completed_row(starts[start_id], models)
    assert row.error is not None and abs(row.error) <= 0.03


def test_gemma4_tower_is_replicated_and_its_weights_line_matches(starts, models):
    # vLLM builds Gemma 4's tower with transformers' AutoModel (gemma4_mm.py): not split.
    config = models["google/gemma-4-26B-A4B"]["config"]
    tower = vision_tower(config)
    assert not tower.tp_split and tower.params_b == pytest.approx(0.573, abs=0.001)
    start = dict(starts["vllm-gemma4-26b-a4b-a100-eager"], engine_version="0.19.0")  # version not logged
    _, weights = completed_row(start, models)
    assert weights == pytest.approx(48.5, rel=0.01)
    shape = model_shape(config)
    assert shape.vision_params_b == 0 and shape.replicated_buffers_b > tower.params_b


def test_quantised_checkpoints_leave_the_tower_unquantised(starts, models):
    # nvidia's NVFP4 Qwen3.6 quantises language_model layers only; the tower loads at bf16.
    qc = models["nvidia/Qwen3.6-35B-A3B-NVFP4"]["config"]["quantization_config"]
    targets = [t for group in qc["config_groups"].values() for t in group["targets"]]
    assert targets and all("language_model" in t or t == "lm_head" for t in targets)
    assert not any("visual" in t or "vision" in t for t in [*targets, *qc["quantized_layers"]])
    # The w8a8 start: the same tower GiB per GPU as the bf16 start at the same TP.
    shape = model_shape(_config("RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8", models))
    assert extra_weights_gib(shape.vision_params_b, 0, 2, 2) == pytest.approx(0.439e9 * 2 / 2 / GIB, rel=0.01)


def test_rope_caches():
    # Llama-4-Scout-Instruct: 10,485,760 positions x 128 on its RoPE layers (NoPE layers none):
    # 2.5 GiB per GPU at bf16, whatever the TP.
    scout = {"model_type": "llama4_text", "max_position_embeddings": 10485760, "head_dim": 128,
             "rope_scaling": {"rope_type": "llama3", "factor": 16.0}}
    assert rope_cache_elements(scout, ["sliding", "full"]) == 10485760 * 128
    assert extra_weights_gib(0, 10485760 * 128 / 1e9, 2, 4) == pytest.approx(2.5)
    # Gemma 3: linear scaling x 8 on global layers; local layers unscaled at their own base.
    gemma3 = {"max_position_embeddings": 131072, "head_dim": 256, "rope_local_base_freq": 10000,
              "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    assert rope_cache_elements(gemma3, ["sliding", "full"]) == (131072 + 8 * 131072) * 256
    # YaRN (DeepSeek): original positions x factor, the rope part of MLA's head.
    deepseek = {"max_position_embeddings": 163840, "qk_rope_head_dim": 64,
                "rope_scaling": {"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096}}
    assert rope_cache_elements(deepseek, ["mla"]) == 4096 * 40 * 64
    assert rope_cache_elements({"head_dim": 128}, ["full"]) == 0


def test_rope_factor_not_finite_is_a_clear_error():
    """json.loads reads ``Infinity``: a clear error naming the field, not an OverflowError."""
    config = {"max_position_embeddings": 131072, "head_dim": 128,
              "rope_scaling": {"rope_type": "linear", "factor": float("inf")}}
    with pytest.raises(ScenarioError, match="rope_scaling.factor"):
        rope_cache_elements(config, ["full"])


def test_language_model_only_is_the_config_without_its_tower(models):
    """vLLM skips the tower with --limit-mm-per-prompt 0 for every modality (or
    --language-model-only); the calculator does the same for a config without vision_config."""
    config = _config("mistralai/Mistral-Small-3.1-24B-Instruct-2503", models)
    text_only = {k: v for k, v in config.items() if k != "vision_config"}
    assert vision_tower(text_only) is None and model_shape(text_only).vision_params_b == 0
    assert model_shape(config).vision_params_b == pytest.approx(0.439, abs=0.001)
    assert "vision tower 0.439B" in import_config(config).notes


def test_bad_vision_field_names_it():
    with pytest.raises(ScenarioError, match="vision_config.hidden_size"):
        vision_tower({"vision_config": {"model_type": "pixtral", "hidden_size": "wide"}})
    assert vision_tower({"vision_config": {"num_hidden_layers": 99}}) is None
    llama = {"num_hidden_layers": 2, "num_attention_heads": 8, "hidden_size": 512, "vocab_size": 1000,
             "intermediate_size": 1024}
    notes = import_config({"text_config": llama, "vision_config": {"num_hidden_layers": 99}}).notes
    assert "vision tower not counted" in notes


def test_multimodal_presets_carry_their_tower():
    for model_id in ("llama-4-scout", "gemma-4-26b-a4b", "qwen3.5-27b", "qwen3.5-397b-a17b", "kimi-k2.5"):
        arch = MODELS[model_id]
        tower = arch.shape.vision_params_b or arch.shape.replicated_buffers_b
        assert tower > 0.4, model_id
        assert "vision tower" in arch.source, model_id


@pytest.mark.parametrize("model_id", sorted(HF_CONFIG_FILES))
def test_preset_towers_and_caches_equal_their_reference_config(model_id):
    path = SHARED / HF_CONFIG_FILES[model_id]
    if not path.exists():
        pytest.skip(f"reference config not found: ../shared/hf-configs/{path.name} is absent")
    imported, preset = import_config(path.read_text(encoding="utf-8")).shape, MODELS[model_id].shape
    assert preset.replicated_buffers_b == pytest.approx(imported.replicated_buffers_b, rel=1e-9)
    if model_id != "llama-4-scout":   # the reference file holds Scout's text model only
        assert preset.vision_params_b == pytest.approx(imported.vision_params_b, rel=1e-9)
