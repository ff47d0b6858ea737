"""Import a Hugging Face ``config.json`` into a :class:`~kvcache_calculator.setup.architecture.ModelArch`.

:func:`import_config` reads a config given as JSON text or as a dict (with or without a
multimodal ``text_config`` wrapper) with the reader of :mod:`kvcache_calculator.setup.configjson`:
its layers, its total and active parameters and its checkpoint's weight dtype.
:func:`arch_to_scenario` turns an architecture into the scenario keys (docs/architecture.md §3),
and :func:`scenario_keys_gap` says when those keys can only approximate it (naming the preset that
has the exact figures, if there is one).
"""

from __future__ import annotations

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, format_value, parse_value
from kvcache_calculator.setup.architecture import (
    LayerGroup, ModelArch, arch_from_keys, kv_bytes_per_sequence_fixed, kv_bytes_per_token,
)
from kvcache_calculator.setup.configjson import count_params, layer_groups, model_shape, text_config, weight_format
from kvcache_calculator.setup.presets import MODELS
from kvcache_calculator.setup.vision import vision_tower
from kvcache_calculator.units import format_bytes


#: config.json fields that size a scenario key, with that key: each is held to the key's limit
#: before anything is built from it (a million layers would keep the page busy for a minute,
#: a billion exhaust its memory).
_LIMITED_FIELDS = {"num_hidden_layers": "num_layers", "num_key_value_heads": "num_kv_heads",
                   "head_dim": "head_dim", "kv_lora_rank": "kv_lora_rank",
                   "qk_rope_head_dim": "qk_rope_head_dim", "sliding_window": "sliding_window"}
#: Per-layer lists and patterns, held to the layer limit for the same reason.
_LAYER_LISTS = ("layer_types", "hybrid_override_pattern", "hybrid_layer_pattern", "indexer_types",
                "moe_layer_freq", "mlp_only_layers")


def check_limits(cfg: dict) -> None:
    """Raise :class:`ScenarioError` naming the config field when a size in ``cfg`` exceeds the
    limit the page's form sets for its scenario key (``num_hidden_layers`` above 1000 ...)."""
    for name, key in _LIMITED_FIELDS.items():
        value = cfg.get(name)
        limit = FIELD_BY_KEY[key].maximum
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limit:
            raise ScenarioError(name, value, f"is above the calculator's limit of {format_value(limit)} "
                                             f"{FIELD_BY_KEY[key].unit} (its {key} field)")
    most = FIELD_BY_KEY["num_layers"].maximum
    for name in _LAYER_LISTS:
        value = cfg.get(name)
        if isinstance(value, (list, str)) and len(value) > most:
            raise ScenarioError(name, f"{len(value)} entries", f"describes more layers than the calculator's "
                                                              f"limit of {format_value(most)}")


def import_config(text_or_dict: object, name: str = "imported") -> ModelArch:
    """A :class:`ModelArch` from a Hugging Face ``config.json`` (JSON text or dict).

    Reads the text model (unwrapping ``text_config``), maps its layers to layer groups
    (full / MLA / sliding / linear) and counts its parameters with :func:`count_params`.
    ``notes`` records every modelling choice (chunked attention as a window, indexer bytes,
    linear-state bytes, MTP layers left out). Raises :class:`ScenarioError` naming the field
    that is missing, malformed or unsupported; bad JSON raises it with key ``config``.
    """
    cfg = text_config(text_or_dict)
    check_limits(cfg)
    groups, notes = layer_groups(cfg)
    total_b, active_b = count_params(cfg)
    arch_names = cfg.get("architectures") or []
    label = arch_names[0] if isinstance(arch_names, list) and arch_names else cfg.get("model_type", "")
    source = f"imported from config.json ({label})" if label else "imported from config.json"
    weight_dtype, weight_name, read_from = weight_format(cfg)
    tower = vision_tower(cfg)
    if tower is not None:
        notes.append(tower.note())
    elif isinstance(cfg.get("vision_config"), dict) and cfg["vision_config"]:
        notes.append("vision tower not counted: its vision_config gives no sizes this importer reads")
    if weight_dtype != "bf16" or "not recognised" in read_from:
        notes.append(f"weights {weight_name or weight_dtype} (weight_dtype {weight_dtype}, from {read_from})")
    return ModelArch(name, groups, round(total_b, 3), round(active_b, 3), source, "; ".join(notes),
                     weight_dtype, weight_name, model_shape(cfg))


def import_scenario(text_or_dict: object) -> tuple[ModelArch, dict]:
    """A config.json imported as the page's form takes it: the architecture and its scenario
    keys, ``weight_dtype`` included (the format its ``quantization_config`` says: FP8 for
    DeepSeek-V3, MXFP4 as fp4 for gpt-oss, INT4 for Kimi-K2.5), each key checked against the
    form's limits. Raises :class:`ScenarioError` naming the field otherwise."""
    arch = import_config(text_or_dict)
    keys = arch_to_scenario(arch, weight_dtype=True)
    for key, value in keys.items():
        if value is not None:
            parse_value(FIELD_BY_KEY[key], value)
    return arch, keys


def arch_to_scenario(arch: ModelArch, *, weight_dtype: bool = False) -> dict:
    """The scenario keys (docs/architecture.md §3) that describe ``arch``, where they can express it.

    ``num_layers`` counts the layers that hold KV (full, MLA, sliding); ``num_kv_heads`` and
    ``head_dim`` come from the full-attention layers (the sliding ones if there are none);
    ``attention`` is ``mla`` when MLA layers exist, else ``gqa``; ``sliding_window`` and
    ``sliding_layers`` describe the sliding layers. Where K and V widths differ (MiMo-V2),
    ``head_dim`` is their mean, which keeps the bytes per token. Linear-state layers, sliding
    layers with other heads than the full ones (Gemma 4, MiMo-V2) and indexer bytes have no
    scenario key: only the preset id carries them, so overriding a key of such a preset drops them.

    With ``weight_dtype=True`` the result also holds ``weight_dtype``: the checkpoint's weight
    dtype (``arch.weight_dtype``, from ``quantization_config`` / ``torch_dtype`` for an
    imported config), always, so that importing a bf16 config after an FP8 one resets it.
    It is left out by default: the scenario's ``weight_dtype`` is not an architecture key.
    """
    def first(kind: str) -> LayerGroup | None:
        return next((g for g in arch.layers if g.kind == kind), None)

    scenario: dict = {"params_b": arch.params_b, "active_params_b": arch.active_params_b}
    kv_layers = sum(g.count for g in arch.layers if g.kind != "linear")
    scenario["num_layers"] = kv_layers
    mla = first("mla")
    attn = first("full") or first("sliding")
    if mla is not None:
        scenario.update(attention="mla", kv_lora_rank=mla.kv_lora_rank,
                        qk_rope_head_dim=mla.qk_rope_head_dim)
    else:
        scenario["attention"] = "gqa"
    if attn is not None:
        scenario["num_kv_heads"] = attn.num_kv_heads
        width = attn.k_head_dim + attn.v_head_dim  # K and V of unequal widths: their mean
        scenario["head_dim"] = width // 2 if width % 2 == 0 else width / 2
    sliding = [g for g in arch.layers if g.kind == "sliding"]
    if sliding:
        scenario["sliding_window"] = sliding[0].window
        scenario["sliding_layers"] = sum(g.count for g in sliding)
    if weight_dtype:
        scenario["weight_dtype"] = arch.weight_dtype
    return scenario


def scenario_keys_gap(arch: ModelArch) -> str | None:
    """A sentence when the scenario keys of :func:`arch_to_scenario` describe ``arch`` only
    approximately (sliding layers with their own heads, linear-attention state, indexer
    bytes), with both KV figures at bf16 and the preset that has the exact ones, if any;
    None when the keys give the same KV bytes per token and per sequence."""
    flat = arch_from_keys({k: v for k, v in arch_to_scenario(arch).items() if v is not None})

    def figures(a: ModelArch) -> tuple[float, float]:
        return kv_bytes_per_token(a), kv_bytes_per_sequence_fixed(a)

    exact, approx = figures(arch), figures(flat)
    if all(abs(x - y) <= 0.005 * max(abs(x), 1.0) for x, y in zip(exact, approx)):
        return None

    def said(pair: tuple[float, float]) -> str:
        return f"{format_bytes(pair[0])} per token" + (
            f" plus {format_bytes(pair[1])} per sequence" if pair[1] else "")

    text = (f"The scenario keys describe this architecture only approximately: {said(approx)}, "
            f"against the config's {said(exact)} (bf16).")
    for model_id, preset in MODELS.items():
        if figures(preset) == exact and abs(preset.params_b - arch.params_b) <= 0.02 * preset.params_b:
            return text + f" The preset {model_id} has the exact figures."
    return text


__all__ = ["check_limits", "import_config", "import_scenario", "arch_to_scenario", "scenario_keys_gap"]
