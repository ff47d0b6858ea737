"""Reading a Hugging Face ``config.json``: its layers, parameter counts and weight format.

:func:`layer_groups` maps the fields that size the KV cache (layer kinds, KV heads, head
dimensions, MLA ranks, sliding windows, linear-attention state) to the layer groups of a
:class:`~kvcache_calculator.setup.architecture.ModelArch`, from a config given as JSON text or as
a dict (:func:`text_config` unwraps a multimodal ``text_config``). :func:`count_params` counts
total and active (per-token) parameters of the text model from the same fields, and
:func:`weight_format` reads the checkpoint's weight dtype (``quantization_config``,
``torch_dtype``). :mod:`kvcache_calculator.setup.hfconfig` puts them together into one import;
the model presets (:mod:`kvcache_calculator.setup.presets`) are built with the same reader.

Supported layouts (each checked against a real config.json in the tests):

- plain GQA/MHA/MQA (Llama, Mistral, Qwen2/3, Mixtral, Qwen3-MoE);
- MLA (DeepSeek-V2/V3/R1, Kimi-K2), with the DeepSeek-V3.2 / GLM-5 sparse-attention indexer;
- sliding-window mixes from ``layer_types`` (gpt-oss, Gemma 3/4, Step), ``hybrid_layer_pattern``
  (MiMo-V2) or the Gemma 2 alternation; Llama 4 chunked local attention, modelled as a sliding
  window of ``attention_chunk_size`` tokens (a chunk holds at most that many tokens);
- hybrid linear attention (Qwen3-Next/Qwen3.5 gated delta-net) and hybrid Mamba-2
  (Nemotron-H ``hybrid_override_pattern``).

Anything else that changes the KV cache (an unknown ``layer_types`` entry, DeepSeek-V4's
``compress_ratios``, Gemma 3n's cross-layer KV sharing ...) raises
:class:`~kvcache_calculator.errors.ScenarioError` naming the field, never a silent guess.
Multi-token-prediction layers (``num_nextn_predict_layers``, ``mtp_num_hidden_layers``) are not
counted: engines only run them with speculative decoding, and published totals exclude them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.architecture import LayerGroup
from kvcache_calculator.setup.engine import ModelShape
from kvcache_calculator.setup.vision import rope_cache_elements, vision_tower

#: Bytes per element of the dtype names found in config.json files.
_TORCH_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4,
                      "fp32": 4, "bf16": 2, "fp16": 2}

#: ``layer_types`` entries and the layer kind each maps to.
_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding",
                "chunked_attention": "sliding", "linear_attention": "linear"}

#: Nemotron-H ``hybrid_override_pattern`` symbols: Mamba-2, attention, MLP, MoE.
_HYBRID_SYMBOLS = {"M": "mamba", "*": "full", "-": "mlp", "E": "moe"}

#: vLLM stores the DeepSeek-V3.2 indexer key as fp8 with one fp32 scale per 128 values
#: (``DeepseekV32IndexerCache``: head_dim + head_dim // 128 * 4 bytes, dtype uint8).
_INDEXER_QUANT_BLOCK = 128

#: Fields that change the KV cache in ways this importer does not model.
_UNSUPPORTED_FIELDS = {
    "compress_ratios": "compressed sparse attention (DeepSeek-V4) is not supported: "
                       "its per-layer KV compression has no layer kind here",
    "attn_type_list": "per-layer attention types given as attn_type_list (MiniMax-Text-01 "
                      "lightning attention) are not supported",
    "cross_attention_layers": "cross-attention layers (Llama 3.2 Vision) are not supported",
    "attn_layer_period": "attention/Mamba interleaving given by attn_layer_period (Jamba) is "
                         "not supported; a layer_types list is",
    "layers_block_type": "per-layer block types given as layers_block_type are not supported; "
                         "a layer_types list is",
    "mamba_d_ssm": "parallel attention + Mamba layers (Falcon-H1) are not supported",
}


def _load(text_or_dict: object) -> dict:
    """The config as a dict: parses JSON text, copies mappings, rejects anything else."""
    if isinstance(text_or_dict, (bytes, bytearray)):
        try:
            text_or_dict = text_or_dict.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScenarioError("config", "<bytes>", f"is not valid JSON: {exc}") from None
    if isinstance(text_or_dict, str):
        try:
            data = json.loads(text_or_dict)
        except json.JSONDecodeError as exc:
            raise ScenarioError("config", text_or_dict.strip()[:40], f"is not valid JSON: {exc}") from None
    elif isinstance(text_or_dict, Mapping):
        data = dict(text_or_dict)
    else:
        raise ScenarioError("config", type(text_or_dict).__name__,
                            "must be config.json text or a dict of its fields")
    if not isinstance(data, dict):
        raise ScenarioError("config", type(data).__name__, "must be a JSON object (config.json)")
    return data


def text_config(config: object) -> dict:
    """The language-model part of a config: ``text_config`` merged over the top level.

    Multimodal configs (Qwen3.5, Kimi-K2.5, Gemma 4, Llama 4) nest the text model's fields in
    ``text_config``; fields only at the top level (``tie_word_embeddings``, ``dtype``) still apply.
    The ``vision_config`` stays (:func:`model_shape` sizes the tower vLLM loads from it); the
    ``audio_config`` goes.
    """
    data = _load(config)
    inner = data.get("text_config")
    if inner is None:
        return data
    if not isinstance(inner, dict):
        raise ScenarioError("text_config", type(inner).__name__, "must be a JSON object")
    outer = {k: v for k, v in data.items() if k not in ("text_config", "audio_config")}
    return {**outer, **inner}


def _num(cfg: dict, key: str, default: object = None, *, minimum: int = 1) -> int:
    """Whole-number field ``key`` (``default`` when absent or null); raises naming ``key``."""
    value = cfg.get(key)
    if value is None:
        if default is None:
            raise ScenarioError(key, None, "missing from config.json; needed to size the model")
        return default  # type: ignore[return-value]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or value < minimum:
        raise ScenarioError(key, value, f"must be a whole number >= {minimum} (config.json field)")
    return int(value)


def _first(cfg: dict, keys: tuple[str, ...], default: object = None, *, minimum: int = 1) -> int:
    """The first of ``keys`` present (non-null) in ``cfg``; raises naming the first key if none."""
    for key in keys:
        if cfg.get(key) is not None:
            return _num(cfg, key, minimum=minimum)
    if default is None:
        raise ScenarioError(keys[0], None, "missing from config.json; needed to size the model")
    return default  # type: ignore[return-value]


def _list(cfg: dict, key: str, length: int) -> list:
    """List field ``key`` of exactly ``length`` entries (one per layer)."""
    value = cfg.get(key)
    if not isinstance(value, list) or len(value) != length:
        shown = len(value) if isinstance(value, list) else value
        raise ScenarioError(key, shown, f"must be a list with one entry per layer ({length})")
    return value


def _dtype_bytes(cfg: dict, key: str = "torch_dtype") -> int:
    """Bytes per element of dtype field ``key`` (the model dtype: ``torch_dtype``, else
    ``dtype``; bf16 if neither is given)."""
    if key == "torch_dtype" and cfg.get("torch_dtype") is None:
        key = "dtype"
    name = cfg.get(key)
    if name is None:
        return 2
    try:
        return _TORCH_DTYPE_BYTES[str(name).replace("torch.", "")]
    except KeyError:
        raise ScenarioError(key, name, "must be one of " + ", ".join(_TORCH_DTYPE_BYTES)) from None


def _layer_kinds(cfg: dict) -> tuple[list[str], list[str]]:
    """Per-layer kinds (``full``/``mla``/``sliding``/``linear``/``mamba``; ``mlp``/``moe`` for
    Nemotron-H layers without a sequence mixer) and notes on how they were read."""
    notes: list[str] = []
    pattern = cfg.get("hybrid_override_pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern:
            raise ScenarioError("hybrid_override_pattern", pattern, "must be a string such as 'M-M*-'")
        bad = sorted(set(pattern) - set(_HYBRID_SYMBOLS))
        if bad:
            raise ScenarioError("hybrid_override_pattern", bad[0],
                                "symbols allowed: M (Mamba-2), * (attention), - (MLP), E (MoE)")
        return [_HYBRID_SYMBOLS[c] for c in pattern], notes

    n = _num(cfg, "num_hidden_layers")
    mla = cfg.get("kv_lora_rank") is not None
    attention = "mla" if mla else "full"
    if cfg.get("layer_types") is not None:
        kinds = []
        for entry in _list(cfg, "layer_types", n):
            if entry not in _LAYER_TYPES:
                raise ScenarioError("layer_types", entry, "entries allowed: " + ", ".join(_LAYER_TYPES))
            kind = _LAYER_TYPES[entry]
            kinds.append(attention if kind == "full" else kind)
        if mla and ("sliding" in kinds or "linear" in kinds):
            raise ScenarioError("layer_types", "sliding/linear with kv_lora_rank",
                                "MLA mixed with other layer kinds is not supported")
        return kinds, notes
    if cfg.get("full_attention_interval") is not None and cfg.get("linear_num_value_heads") is not None:
        # Qwen3-Next without an explicit layer_types: every interval-th layer is full attention.
        interval = _num(cfg, "full_attention_interval")
        return [attention if (i + 1) % interval == 0 else "linear" for i in range(n)], notes
    if cfg.get("hybrid_layer_pattern") is not None:
        # MiMo-V2: 1 = sliding-window layer, 0 = global (full) attention.
        kinds = []
        for entry in _list(cfg, "hybrid_layer_pattern", n):
            if entry not in (0, 1):
                raise ScenarioError("hybrid_layer_pattern", entry, "entries allowed: 0 (full), 1 (sliding)")
            kinds.append("sliding" if entry == 1 else attention)
        return kinds, notes
    model_type = str(cfg.get("model_type", ""))
    if cfg.get("attention_chunk_size") is not None and model_type.startswith("llama4"):
        # Llama 4: RoPE layers use chunked local attention, NoPE layers (every 4th) global.
        nope = cfg.get("no_rope_layers")
        if isinstance(nope, list) and len(nope) == n:
            kinds = ["sliding" if use_rope else "full" for use_rope in nope]
        else:
            interval = _num(cfg, "no_rope_layer_interval", 4)
            kinds = ["full" if (i + 1) % interval == 0 else "sliding" for i in range(n)]
        notes.append(f"chunked local attention (chunk {cfg['attention_chunk_size']} tokens) "
                     "modelled as a sliding window of that size")
        return kinds, notes
    window = cfg.get("sliding_window")
    if window is not None and cfg.get("use_sliding_window", True) is not False:
        if model_type == "gemma2":
            return ["sliding" if i % 2 == 0 else attention for i in range(n)], notes
        if cfg.get("sliding_window_pattern") is not None:
            period = _num(cfg, "sliding_window_pattern")
            return ["full" if (i + 1) % period == 0 else "sliding" for i in range(n)], notes
        if mla:
            raise ScenarioError("sliding_window", window, "MLA with a sliding window is not supported")
        return ["sliding"] * n, notes
    return [attention] * n, notes


def _attention_group(cfg: dict, kind: str) -> LayerGroup:
    """A one-layer group of attention ``kind`` (``full``, ``sliding`` or ``mla``); the caller
    merges equal groups and counts them."""
    heads = _num(cfg, "num_attention_heads")
    if kind == "mla":
        return LayerGroup("mla", 1, kv_lora_rank=_num(cfg, "kv_lora_rank"),
                          qk_rope_head_dim=_num(cfg, "qk_rope_head_dim", 0, minimum=0))
    if kind == "sliding" and cfg.get("swa_num_key_value_heads") is not None:
        kv_heads = _num(cfg, "swa_num_key_value_heads")
        k_dim = _num(cfg, "swa_head_dim")
        v_dim = _num(cfg, "swa_v_head_dim", k_dim)
    elif kind == "full" and cfg.get("attention_k_eq_v") and cfg.get("num_global_key_value_heads"):
        # Gemma 4 global layers: fewer, wider KV heads; V is projected by K's weights but
        # normalised apart, and engines cache both.
        kv_heads = _num(cfg, "num_global_key_value_heads")
        k_dim = v_dim = _num(cfg, "global_head_dim", _num(cfg, "head_dim"))
    else:
        kv_heads = _num(cfg, "num_key_value_heads", heads)
        if cfg.get("head_dim") is None and cfg.get("attention_head_dim") is None \
                and cfg.get("hidden_size") is None:
            raise ScenarioError("head_dim", None, "missing from config.json, and so is hidden_size "
                                "(head_dim defaults to hidden_size / num_attention_heads)")
        default_dim = _num(cfg, "hidden_size") // heads if cfg.get("hidden_size") else None
        k_dim = _first(cfg, ("head_dim", "attention_head_dim"), default_dim)
        if kind == "full" and cfg.get("global_head_dim") is not None:
            k_dim = _num(cfg, "global_head_dim")
        v_dim = _num(cfg, "v_head_dim", k_dim)
    window = 0
    if kind == "sliding":
        if str(cfg.get("model_type", "")).startswith("llama4"):
            window = _num(cfg, "attention_chunk_size")
        else:
            window = _num(cfg, "sliding_window")
    return LayerGroup(kind, 1, kv_heads, k_dim, v_dim, window=window)


def _gated_deltanet_state_bytes(cfg: dict) -> tuple[float, str]:
    """Per-sequence state of one gated delta-net layer (Qwen3-Next / Qwen3.5), in bytes.

    vLLM ``MambaStateShapeCalculator.gated_delta_net_state_shape``: a conv state of
    ``(conv_kernel - 1) * conv_dim`` with ``conv_dim = 2 * num_k_heads * head_k_dim +
    num_v_heads * head_v_dim``, and a temporal state of ``num_v_heads * head_v_dim * head_k_dim``.
    The conv state is held at the model dtype; the temporal state at ``mamba_ssm_dtype`` when
    the config names one (fp32 for Qwen3.5), else the model dtype. vLLM does the same: its
    ``--mamba-ssm-cache-dtype auto`` takes the config's ``mamba_ssm_dtype`` for Qwen3.5
    (``Qwen3_5ForConditionalGenerationConfig.verify_and_update_config``) and otherwise the
    model dtype.
    """
    nk = _num(cfg, "linear_num_key_heads")
    nv = _num(cfg, "linear_num_value_heads")
    dk = _num(cfg, "linear_key_head_dim")
    dv = _num(cfg, "linear_value_head_dim")
    kernel = _num(cfg, "linear_conv_kernel_dim", 4)
    conv = (kernel - 1) * (2 * nk * dk + nv * dv) * _dtype_bytes(cfg)
    ssm_bytes = _dtype_bytes(cfg, "mamba_ssm_dtype") if cfg.get("mamba_ssm_dtype") else _dtype_bytes(cfg)
    temporal = nv * dv * dk * ssm_bytes
    return float(conv + temporal), (f"gated delta-net state {conv + temporal:,} bytes per sequence "
                                    f"and layer (conv {conv:,} + recurrent {temporal:,} at "
                                    f"{ssm_bytes} bytes per value)")


def _mamba2_state_bytes(cfg: dict) -> tuple[float, str]:
    """Per-sequence state of one Mamba-2 layer (Nemotron-H), in bytes.

    vLLM ``MambaStateShapeCalculator.mamba2_state_shape``: conv state
    ``(conv_kernel - 1) * (intermediate + 2 * n_groups * d_state)`` and SSM state
    ``num_heads * head_dim * d_state``, with ``intermediate = num_heads * head_dim``; both at the
    model dtype (vLLM's default ``mamba_ssm_cache_dtype`` ``auto``).
    """
    heads = _first(cfg, ("mamba_num_heads",))
    head_dim = _first(cfg, ("mamba_head_dim",))
    d_state = _first(cfg, ("ssm_state_size", "state_size"))
    groups = _num(cfg, "n_groups", 1)
    kernel = _num(cfg, "conv_kernel", 4)
    width = _dtype_bytes(cfg)
    conv = (kernel - 1) * (heads * head_dim + 2 * groups * d_state) * width
    ssm = heads * head_dim * d_state * width
    return float(conv + ssm), (f"Mamba-2 state {conv + ssm:,} bytes per sequence and layer "
                               f"(conv {conv:,} + SSM {ssm:,} at {width} bytes per value)")


def _indexer_bytes(cfg: dict, n: int) -> tuple[list[float], str | None]:
    """Sparse-attention indexer key bytes per token for each layer (0 where none)."""
    if cfg.get("index_head_dim") is not None and cfg.get("index_topk") is not None:
        dim = _num(cfg, "index_head_dim")
        per_token = float(dim + dim // _INDEXER_QUANT_BLOCK * 4)
        if cfg.get("indexer_types") is not None:
            entries = _list(cfg, "indexer_types", n)
            for entry in entries:
                if entry not in ("full", "shared"):
                    raise ScenarioError("indexer_types", entry, "entries allowed: full, shared")
            extra = [per_token if e == "full" else 0.0 for e in entries]
        else:
            extra = [per_token] * n
        count = sum(1 for e in extra if e)
        return extra, (f"sparse-attention indexer key cache {per_token:g} bytes per token on "
                       f"{count} layers (fp8 + one fp32 scale per {_INDEXER_QUANT_BLOCK}, as vLLM's "
                       "DeepseekV32IndexerCache stores it, whatever the KV dtype)")
    sparse = cfg.get("sparse_attention_config")
    if isinstance(sparse, dict) and sparse.get("use_sparse_attention"):
        dim = _num(sparse, "sparse_index_dim")
        freq = sparse.get("sparse_attention_freq")
        if freq is None:
            freq = [1] * n
        elif not isinstance(freq, list) or len(freq) != n:
            raise ScenarioError("sparse_attention_freq", freq, f"must list one 0/1 per layer ({n})")
        per_token = float(dim * _dtype_bytes(cfg))
        extra = [per_token if f else 0.0 for f in freq]
        count = sum(1 for e in extra if e)
        return extra, (f"block-sparse attention index key {per_token:g} bytes per token on {count} "
                       "layers (one index key of sparse_index_dim values at the model dtype; "
                       "an estimate, engines may store it differently)")
    return [0.0] * n, None


def layer_groups(cfg: dict) -> tuple[tuple[LayerGroup, ...], list[str]]:
    """Layer groups of a text config, merged by identical parameters in first-seen order."""
    for field, why in _UNSUPPORTED_FIELDS.items():
        if cfg.get(field) is not None:
            raise ScenarioError(field, "present", why)
    if cfg.get("num_kv_shared_layers"):
        raise ScenarioError("num_kv_shared_layers", cfg["num_kv_shared_layers"],
                            "cross-layer KV sharing (Gemma 3n) is not supported; must be 0")
    kinds, notes = _layer_kinds(cfg)
    extra, extra_note = _indexer_bytes(cfg, len(kinds))
    if extra_note:
        notes.append(extra_note)
    state_note = None
    merged: dict[LayerGroup, int] = {}
    for i, kind in enumerate(kinds):
        if kind in ("mlp", "moe"):
            continue
        if kind == "linear":
            state, state_note = _gated_deltanet_state_bytes(cfg)
            group = LayerGroup("linear", 1, state_bytes=state)
        elif kind == "mamba":
            state, state_note = _mamba2_state_bytes(cfg)
            group = LayerGroup("linear", 1, state_bytes=state)
        else:
            group = _attention_group(cfg, kind)
            if extra[i]:
                group = LayerGroup(group.kind, 1, group.num_kv_heads, group.k_head_dim,
                                   group.v_head_dim, group.window, group.kv_lora_rank,
                                   group.qk_rope_head_dim, extra_bytes_per_token=extra[i])
        merged[group] = merged.get(group, 0) + 1
    if state_note:
        notes.append(state_note)
    if not merged:
        raise ScenarioError("num_hidden_layers", 0, "the config has no attention or state layers")
    groups = tuple(LayerGroup(g.kind, count, g.num_kv_heads, g.k_head_dim, g.v_head_dim, g.window,
                              g.kv_lora_rank, g.qk_rope_head_dim, g.state_bytes,
                              g.extra_bytes_per_token) for g, count in merged.items())
    mtp = cfg.get("num_nextn_predict_layers") or cfg.get("mtp_num_hidden_layers")
    if mtp:
        notes.append(f"{mtp} multi-token-prediction layer(s) not counted")
    return groups, notes


# ---------------------------------------------------------------------------------------------
# Parameter counting
# ---------------------------------------------------------------------------------------------

def _attention_params(cfg: dict, kind: str) -> int:
    """Weights of one attention (or state-space) block of ``kind``, norms excluded."""
    hidden = _num(cfg, "hidden_size")
    heads = _num(cfg, "num_attention_heads")
    if kind == "mla":
        q_lora = cfg.get("q_lora_rank")
        rope = _num(cfg, "qk_rope_head_dim", 0, minimum=0)
        nope = _num(cfg, "qk_nope_head_dim", 0, minimum=0)
        v_dim = _num(cfg, "v_head_dim")
        kv_lora = _num(cfg, "kv_lora_rank")
        q_dim = heads * (nope + rope)
        q = hidden * q_dim if not q_lora else hidden * q_lora + q_lora * q_dim
        kv = hidden * (kv_lora + rope) + kv_lora * heads * (nope + v_dim)
        return q + kv + heads * v_dim * hidden
    if kind == "linear":
        nk, nv = _num(cfg, "linear_num_key_heads"), _num(cfg, "linear_num_value_heads")
        dk, dv = _num(cfg, "linear_key_head_dim"), _num(cfg, "linear_value_head_dim")
        kernel = _num(cfg, "linear_conv_kernel_dim", 4)
        key_dim, value_dim = nk * dk, nv * dv
        # in_proj_qkvz + in_proj_ba, depthwise conv, out_proj (Qwen3-Next gated delta-net).
        return (hidden * (2 * key_dim + 2 * value_dim) + hidden * 2 * nv
                + (2 * key_dim + value_dim) * kernel + value_dim * hidden)
    if kind == "mamba":
        nh, hd = _num(cfg, "mamba_num_heads"), _num(cfg, "mamba_head_dim")
        d_state = _first(cfg, ("ssm_state_size", "state_size"))
        groups, kernel = _num(cfg, "n_groups", 1), _num(cfg, "conv_kernel", 4)
        inner = nh * hd
        conv_dim = inner + 2 * groups * d_state
        return hidden * (2 * inner + 2 * groups * d_state + nh) + conv_dim * kernel + inner * hidden
    group = _attention_group(cfg, kind)
    q_dim = heads * group.k_head_dim
    out_dim = heads * group.v_head_dim
    if kind == "sliding" and cfg.get("swa_num_attention_heads") is not None:
        q_dim = _num(cfg, "swa_num_attention_heads") * group.k_head_dim
        out_dim = _num(cfg, "swa_num_attention_heads") * group.v_head_dim
    if cfg.get("attn_output_gate"):
        q_dim *= 2  # Qwen3.5 gated attention: the query projection also yields the gate
    k = group.num_kv_heads * group.k_head_dim
    v = 0 if (kind == "full" and cfg.get("attention_k_eq_v")) else group.num_kv_heads * group.v_head_dim
    total = hidden * (q_dim + k + v) + out_dim * hidden
    if cfg.get("attention_bias"):
        total += q_dim + k + v + hidden
    return total


def _indexer_params(cfg: dict, layer: int, n: int) -> int:
    """Weights of a sparse-attention indexer on ``layer`` (0 where there is none)."""
    hidden = _num(cfg, "hidden_size")
    if cfg.get("index_head_dim") is not None and cfg.get("index_topk") is not None:
        if cfg.get("indexer_types") is not None and _list(cfg, "indexer_types", n)[layer] != "full":
            return 0
        dim, heads = _num(cfg, "index_head_dim"), _num(cfg, "index_n_heads")
        q_in = cfg.get("q_lora_rank") or hidden
        return q_in * heads * dim + hidden * dim + hidden * heads
    sparse = cfg.get("sparse_attention_config")
    if isinstance(sparse, dict) and sparse.get("use_sparse_attention"):
        freq = sparse.get("sparse_attention_freq") or [1] * n
        if not freq[layer]:
            return 0
        dim, heads = _num(sparse, "sparse_index_dim"), _num(sparse, "sparse_num_index_heads")
        return hidden * (heads + 1) * dim
    return 0


def _is_moe_layer(cfg: dict, i: int, n: int) -> bool:
    """Whether layer ``i`` has a routed-expert MLP (per the family's own convention)."""
    if cfg.get("mlp_layer_types") is not None:
        entry = _list(cfg, "mlp_layer_types", n)[i]
        if entry not in ("dense", "sparse"):
            raise ScenarioError("mlp_layer_types", entry, "entries allowed: dense, sparse")
        return entry == "sparse"
    freq = cfg.get("moe_layer_freq")
    if isinstance(freq, list):
        return bool(_list(cfg, "moe_layer_freq", n)[i])
    if i < (cfg.get("first_k_dense_replace") or 0):
        return False
    if isinstance(freq, int) and freq > 1:
        return i % freq == 0
    if i in (cfg.get("mlp_only_layers") or []):
        return False
    step = cfg.get("decoder_sparse_step")
    if step:
        return (i + 1) % step == 0
    step = cfg.get("interleave_moe_layer_step")
    if step:
        return (i + 1) % step == 0
    return True


def _mlp_params(cfg: dict, moe: bool, kind: str = "") -> tuple[int, int]:
    """(total, active) weights of one MLP block; ``kind`` ``mlp`` is Nemotron-H's ReLU^2 MLP."""
    hidden = _num(cfg, "hidden_size")
    if kind == "mlp":
        size = 2 * hidden * _num(cfg, "intermediate_size")
        return size, size
    if not moe:
        inter = _first(cfg, ("dense_intermediate_size", "intermediate_size_mlp", "intermediate_size"))
        size = 3 * hidden * inter
        return size, size
    experts = _first(cfg, ("n_routed_experts", "num_experts", "num_local_experts"))
    top_k = _first(cfg, ("num_experts_per_tok", "experts_per_token", "top_k_experts"))
    inter = _first(cfg, ("moe_intermediate_size", "intermediate_size"))
    expert = 3 * hidden * inter
    if str(cfg.get("model_type", "")) == "gpt_oss":
        expert += 3 * inter + hidden  # gate_up and down biases
    shared = 0
    if cfg.get("shared_expert_intermediate_size"):
        shared = 3 * hidden * _num(cfg, "shared_expert_intermediate_size") + hidden
    elif cfg.get("n_shared_experts"):
        per = _first(cfg, ("share_expert_dim", "shared_intermediate_size", "moe_intermediate_size"))
        shared = _num(cfg, "n_shared_experts") * 3 * hidden * per
    elif str(cfg.get("model_type", "")).startswith("llama4"):
        shared = 3 * hidden * _num(cfg, "intermediate_size")
    if cfg.get("enable_moe_block"):
        shared = 3 * hidden * _num(cfg, "intermediate_size")  # Gemma 4: dense MLP beside experts
    router = hidden * experts
    return experts * expert + shared + router, top_k * expert + shared + router


def count_params(config: object) -> tuple[float, float]:
    """Total and active (per-token) parameters of the text model, in billions.

    Sums the weight matrices of embeddings, attention (GQA, MLA with its low-rank projections,
    gated delta-net, Mamba-2, sparse-attention indexers), dense MLPs (3 matrices, SwiGLU) and
    MoE blocks (routed experts, shared experts, router), plus RMSNorm weights. Active counts
    ``num_experts_per_tok`` routed experts instead of all of them; embeddings and the output
    head count in both. Vision/audio towers and multi-token-prediction layers are excluded, as in
    most published totals. Within 2% of published figures for dense, MoE and MLA families.
    """
    cfg = text_config(config)
    kinds, _ = _layer_kinds(cfg)
    n = len(kinds)
    hidden = _num(cfg, "hidden_size")
    vocab = _num(cfg, "vocab_size")
    tied = _tied(cfg)
    has_experts = any(cfg.get(k) for k in ("n_routed_experts", "num_experts", "num_local_experts"))
    total = active = vocab * hidden * (1 if tied else 2) + hidden
    for i, kind in enumerate(kinds):
        if kind in ("mlp", "moe"):
            t, a = _mlp_params(cfg, kind == "moe", kind)
            total, active = total + t + hidden, active + a + hidden
            continue
        mixer = _attention_params(cfg, kind) + _indexer_params(cfg, i, n)
        total, active = total + mixer + hidden, active + mixer + hidden
        if kind == "mamba" or cfg.get("hybrid_override_pattern") is not None:
            continue  # Nemotron-H: MLPs are layers of their own
        t, a = _mlp_params(cfg, has_experts and _is_moe_layer(cfg, i, n))
        total, active = total + t + hidden, active + a + hidden
    return total / 1e9, active / 1e9


def _tied(cfg: dict) -> bool:
    """Whether the output head shares the embedding's weights. Gemma's configs leave the field
    out because their config classes default it to true; everyone else's default is false."""
    if "tie_word_embeddings" in cfg:
        return bool(cfg["tie_word_embeddings"])
    return str(cfg.get("model_type", "")).startswith("gemma")


def model_shape(config: object) -> ModelShape | None:
    """The dimensions that size an engine's activations and a quantised checkpoint's parts
    (:class:`~kvcache_calculator.setup.engine.ModelShape`), or None when the config lacks
    ``hidden_size`` or ``vocab_size``.

    ``embedding_params_b`` counts the input embedding and the output head (once when tied);
    ``expert_params_b`` the routed experts of every MoE layer (what MXFP4 checkpoints quantise);
    ``replicated_params_b`` the weights tensor parallelism does not split: each MoE layer's
    router (experts x hidden) and each MLA layer's down-projections (hidden x (q_lora_rank +
    kv_lora_rank + qk_rope_head_dim)). ``vision_params_b`` is the vision tower of a
    ``vision_config`` and ``replicated_buffers_b`` the rotary caches (plus a tower vLLM does not
    split), as :mod:`kvcache_calculator.setup.vision` counts them.
    """
    cfg = text_config(config)
    if not isinstance(cfg.get("hidden_size"), int) or not isinstance(cfg.get("vocab_size"), int):
        return None
    kinds, _ = _layer_kinds(cfg)
    n = len(kinds)
    hidden, vocab = _num(cfg, "hidden_size"), _num(cfg, "vocab_size")
    has_experts = any(cfg.get(k) for k in ("n_routed_experts", "num_experts", "num_local_experts"))
    experts = top_k = moe_inter = 0
    expert_params = replicated = 0
    if has_experts:
        experts = _first(cfg, ("n_routed_experts", "num_experts", "num_local_experts"))
        top_k = _first(cfg, ("num_experts_per_tok", "experts_per_token", "top_k_experts"), 1)
        moe_inter = _first(cfg, ("moe_intermediate_size", "intermediate_size"))
        moe_layers = sum(1 for i, kind in enumerate(kinds)
                         if kind == "moe" or (kind not in ("mlp", "mamba") and _is_moe_layer(cfg, i, n)))
        expert_params = moe_layers * experts * 3 * hidden * moe_inter
        replicated += moe_layers * experts * hidden
    if cfg.get("kv_lora_rank") is not None:
        latent = (cfg.get("q_lora_rank") or 0) + _num(cfg, "kv_lora_rank") + _num(cfg, "qk_rope_head_dim", 0, minimum=0)
        replicated += sum(kind == "mla" for kind in kinds) * hidden * latent
    dense = cfg.get("dense_intermediate_size") or cfg.get("intermediate_size_mlp") or cfg.get("intermediate_size") or 0
    tower = vision_tower(cfg)
    buffers = rope_cache_elements(cfg, kinds) / 1e9
    if tower is not None and not tower.tp_split:
        buffers += tower.params_b
    return ModelShape(hidden_size=hidden, vocab_size=vocab, num_layers=n,
                      intermediate_size=dense if isinstance(dense, int) else 0, num_experts=experts,
                      experts_per_token=top_k, moe_intermediate_size=moe_inter,
                      embedding_params_b=vocab * hidden * (1 if _tied(cfg) else 2) / 1e9,
                      expert_params_b=expert_params / 1e9, replicated_params_b=replicated / 1e9,
                      context_tokens=cfg.get("max_position_embeddings") if isinstance(
                          cfg.get("max_position_embeddings"), int) else 0,
                      num_attention_heads=cfg.get("num_attention_heads") if isinstance(
                          cfg.get("num_attention_heads"), int) else 0,
                      vision_params_b=tower.params_b if tower is not None and tower.tp_split else 0.0,
                      replicated_buffers_b=buffers)


#: torch dtype names and the weight dtype an engine serves them at by default (vLLM's
#: ``--dtype auto`` serves float32 checkpoints in float16).
_TORCH_WEIGHT_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "half": "fp16", "fp16": "fp16",
                        "float32": "fp16", "float": "fp16", "fp32": "fp16"}


def _compressed_tensors_format(qc: dict) -> tuple[str, str] | None:
    """(weight dtype, format name) of a ``compressed-tensors`` config whose weight groups all
    use one scheme (4 or 8 bits, int or float), else None."""
    groups = qc.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        return None
    schemes = set()
    for group in groups.values():
        weights = group.get("weights") if isinstance(group, dict) else None
        if not isinstance(weights, dict):
            return None
        schemes.add((weights.get("num_bits"), str(weights.get("type", "int")).lower()))
    if len(schemes) != 1:
        return None
    bits, kind = schemes.pop()
    return {(4, "int"): ("int4", "INT4"), (8, "int"): ("int8", "INT8"),
            (4, "float"): ("fp4", "FP4"), (8, "float"): ("fp8", "FP8")}.get((bits, kind))


def _modelopt_mixed_format(qc: dict) -> tuple[str, str] | None:
    """The weight format of a ModelOpt ``MIXED_PRECISION`` checkpoint: the narrowest
    ``quant_algo`` of its MLP and expert layers (``quantized_layers``), which hold nearly all of
    a model's weights (nvidia's Qwen3.6-35B-A3B-NVFP4: NVFP4 experts, FP8 attention). None when
    no layer names a known algorithm."""
    layers = qc.get("quantized_layers")
    if not isinstance(layers, dict):
        return None
    algos = [str(v.get("quant_algo", "")).upper() for k, v in layers.items()
             if isinstance(v, dict) and ("mlp" in k or "expert" in k)]
    algos = algos or [str(v.get("quant_algo", "")).upper() for v in layers.values() if isinstance(v, dict)]
    for needle, found in (("NVFP4", ("fp4", "NVFP4 (mixed precision)")), ("INT4", ("int4", "INT4 (mixed precision)")),
                          ("AWQ", ("int4", "INT4 (mixed precision)")), ("FP8", ("fp8", "FP8 (mixed precision)"))):
        if any(needle in a for a in algos):
            return found
    return None


def weight_format(config: object) -> tuple[str, str, str]:
    """The weight dtype of a config.json's checkpoint: ``(dtype, format name, how it was read)``.

    ``quantization_config`` first: ``fp8`` / ``fbgemm_fp8`` -> fp8, ``mxfp4`` -> fp4 (MXFP4,
    4.25 bits a weight, the nearest value), ``compressed-tensors`` with one weight scheme ->
    int4/int8/fp4/fp8 by its ``num_bits`` and ``type``, ``awq`` / ``gptq`` by ``bits``,
    ``bitsandbytes`` by ``load_in_4bit`` / ``load_in_8bit``, ``modelopt`` by ``quant_algo``
    (FP8, NVFP4; ``MIXED_PRECISION`` by its MLP layers, :func:`_modelopt_mixed_format`). Otherwise ``torch_dtype`` (or ``dtype``): bfloat16 -> bf16, float16 -> fp16,
    float32 -> fp16 (served so by default); bf16 when neither is given. The format name is ""
    where it is the dtype itself. A quantization this does not know falls back to the
    ``torch_dtype`` and says so in the third item.
    """
    cfg = text_config(config)
    qc = cfg.get("quantization_config")
    unknown = ""
    if isinstance(qc, dict):
        method = str(qc.get("quant_method", "")).lower()
        found = None
        if method in ("fp8", "fbgemm_fp8"):
            found = ("fp8", "FP8")
        elif method == "mxfp4":
            found = ("fp4", "MXFP4")
        elif method == "compressed-tensors":
            found = _compressed_tensors_format(qc)
        elif method in ("awq", "gptq"):
            bits = qc.get("bits", qc.get("w_bit"))
            found = {4: ("int4", f"{method.upper()} INT4"), 8: ("int8", f"{method.upper()} INT8")}.get(bits)
        elif method == "bitsandbytes":
            found = (("int4", "bitsandbytes 4-bit") if qc.get("load_in_4bit")
                     else ("int8", "bitsandbytes 8-bit") if qc.get("load_in_8bit") else None)
        elif method == "modelopt":
            algo = str(qc.get("quant_algo", "")).upper()
            found = {"FP8": ("fp8", "FP8"), "NVFP4": ("fp4", "NVFP4")}.get(algo)
            if algo == "MIXED_PRECISION":
                found = _modelopt_mixed_format(qc)
        if found is not None:
            dtype, name = found
            return dtype, "" if name.lower() == dtype else name, f"quantization_config (quant_method {method})"
        unknown = f"quantization_config (quant_method {method or '?'}) not recognised; "
    key = "torch_dtype" if cfg.get("torch_dtype") is not None else "dtype"
    name = cfg.get(key)
    if name is None:
        return "bf16", "", unknown + "no torch_dtype: bf16 assumed"
    dtype = _TORCH_WEIGHT_DTYPES.get(str(name).replace("torch.", ""))
    if dtype is None:
        return "bf16", "", unknown + f"{key} {name} not recognised: bf16 assumed"
    return dtype, "", unknown + f"{key} {name}"


__all__ = ["count_params", "layer_groups", "text_config", "weight_format"]
