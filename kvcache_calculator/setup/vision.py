"""What vLLM loads besides the text model's weights: vision towers and rotary caches.

**Vision tower** (docs/engines.md §3). A multimodal checkpoint (its ``config.json`` has a
``vision_config``, or Llama 4's) ships an image encoder and a projector into the text model's
width. vLLM builds both and loads them at the model dtype: the quantised checkpoints checked
here leave them unquantised (RedHat's w8a8 Mistral-Small-3.1 and nvidia's NVFP4 Qwen3.6 quantise
``language_model`` layers only; Kimi-K2.5's compressed-tensors ``ignore`` list keeps everything
but the routed experts in bf16). :func:`vision_tower` counts the tower's parameters from the
``vision_config``; ``W`` is ``hidden_size``, ``I`` ``intermediate_size``, ``L`` the layer count,
``P`` the patch size, ``C`` the channels, ``T`` the text model's hidden size:

- SigLIP (Gemma 3; ``siglip_vision_model``): ``L * (4 (W^2 + W) + 2 W I + I + W + 4 W)`` (biased
  q/k/v/o, a GELU MLP, two LayerNorms) plus the patch convolution ``C P^2 W + W``, one position
  embedding per patch ``(image_size / P)^2 W``, the post-LayerNorm, the attention-pooling head
  when ``vision_use_head`` (HF ``SiglipVisionConfig`` default: on) and Gemma 3's projector
  ``W T + W``. SigLIP-so400m-patch14-384 counts 428 M (its model card: 400 M class); Gemma 3's
  tower with projector 0.421 B, which with the 11.766 B text model gives the 12.19 B of
  gemma-3-12b-it's checkpoint.
- Llama 4 (``llama4_vision_model``): the same biased ViT layer, a class token, ``(image_size /
  P)^2 + 1`` positions, an unbiased patch projection ``C P^2 W``, two LayerNorms, the pixel-shuffle
  adapter ``4 W * projector_input_dim + projector_input_dim * projector_output_dim`` (ratio 0.5
  folds 4 patches into one) and the projector ``vision_output_dim * T``: 0.872 B for Scout, equal
  to the module-by-module listing of its checkpoint.
- Pixtral (Mistral 3; ``pixtral``): ``L * (4 W^2 + 3 W I + 2 W)`` (no biases, SwiGLU, RMSNorm),
  the patch convolution ``C P^2 W``, and Mistral 3's projector ``W + (W m^2) W + W T + T^2`` with
  ``m`` the ``spatial_merge_size``: 0.403 B for the tower (Pixtral's "400M" encoder) and 0.439 B
  with the projector, which with the 23.57 B text model gives Mistral-Small-3.1's 24.0 B.
- Qwen3-VL / Qwen3.5 (``depth``, ``out_hidden_size``): the biased ViT layer, a 3-D patch
  convolution ``C t P^2 W + W`` (``t`` = ``temporal_patch_size``), ``num_position_embeddings * W``,
  and the patch merger ``2 W + (W m^2)^2 + W m^2 + W m^2 * out + out`` (one more per
  ``deepstack_visual_indexes`` entry, with its norm on ``W m^2``).
- Gemma 4 (``gemma4_vision``): ``L * (4 W^2 + 3 W I + 4 W + 2 head_dim)`` (gated MLP, four RMSNorms,
  q/k norms), the patch embedding ``C P^2 W``, a 2-D position table ``2 *
  position_embedding_size * W`` and the projector ``W T``: 0.572 B (Gemma 4's model card:
  about 550 M).
- Kimi-K2.5 (MoonViT, ``vt_*`` fields): the biased ViT layer, the patch convolution, an
  ``init_pos_emb_height * init_pos_emb_width`` position table and the patch-merger projector
  ``2 W k + (W k)^2 + W k + W k T + T`` with ``k`` the merge kernel's area.
- any other ``vision_config`` with ``hidden_size``, a layer count and ``intermediate_size``: the
  biased ViT layer only, and the result says it is generic.

Tensor parallelism: vLLM 0.19 builds SigLIP, Pixtral, Llama 4's and Qwen's vision layers from
``QKVParallelLinear`` / ``ColumnParallelLinear`` / ``RowParallelLinear`` (split over the ranks
unless ``--mm-encoder-tp-mode data``), so the tower divides by ``tp`` like the text model;
Gemma 4's tower is built by ``transformers``' ``AutoModel`` (``gemma4_mm.py``) and every GPU
holds it whole. ``--limit-mm-per-prompt`` 0 for every modality, or ``--language-model-only``,
makes vLLM skip the tower (``SupportsMultiModal._mark_tower_model``): import the config without
its ``vision_config`` to model that.

**Rotary caches.** vLLM's ``RotaryEmbedding`` keeps a cos/sin table of ``positions x
rotary_dim`` values at the model dtype on every GPU (a buffer, replicated), one per distinct
rotary setting (``get_rope`` caches them): ``positions`` is ``max_position_embeddings``, times
the scaling ``factor`` for ``linear`` and ``dynamic`` scaling, and ``original_max_position_embeddings
* factor`` for YaRN (``vllm/model_executor/layers/rotary_embedding/``, 0.19). It is small for
most models (Llama 3.1: 0.03 GiB) but Llama-4-Scout-Instruct's 10,485,760 positions make 2.5 GiB
per GPU, and Gemma 3's linear factor 8 makes 0.5 GiB. :func:`rope_cache_elements` counts it.

**Not modelled: the encoder's profiling.** vLLM's ``GPUModelRunner.profile_run`` first runs the
encoder on a dummy batch (as many items of the largest size as fit
``max(max_num_batched_tokens, tokens per item)``) and keeps its outputs while the decoder's
profiling pass runs. Kept outputs are ``items x tokens x T x 2`` bytes: 0.06 GiB for Gemma 3
(32 images of 256 tokens), 0.06 GiB for Mistral-Small-3.1 (2 of 3,080), 0.07 GiB for Llama 4
Scout (3 of 2,448); the encoder's own peak stays below the decoder's. The vision starts of
vLLM 0.19 show 0.10-0.28 GiB more activation peak than predicted where dense text starts show
0.02-0.03 GiB: the same order, but too small and too scattered to fit a rule to, so the
activation estimate leaves it out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from kvcache_calculator.errors import ScenarioError

GIB = 2 ** 30


@dataclass(frozen=True)
class VisionTower:
    """A multimodal checkpoint's image encoder and projector.

    ``params_b`` counts both, in billions; ``tp_split`` says whether vLLM splits them over
    tensor-parallel GPUs (else each GPU holds them whole); ``family`` names the formula used
    (module docstring), ``generic`` when the ``vision_config`` was not recognised.
    """

    family: str
    params_b: float
    tp_split: bool = True

    def note(self) -> str:
        """One line for an import's notes."""
        where = "split over tensor-parallel GPUs" if self.tp_split else "held whole on every GPU"
        return (f"vision tower {self.params_b:.3f}B parameters ({self.family}), loaded at the model "
                f"dtype and {where}")


def _get(cfg: Mapping, key: str, default: object = None, prefix: str = "vision_config") -> int:
    """Whole-number field ``key`` of ``cfg`` (``default`` when absent); raises naming it."""
    value = cfg.get(key)
    if value is None:
        if default is None:
            raise ScenarioError(f"{prefix}.{key}", None, "missing from config.json; needed to size the vision tower")
        return int(default)  # type: ignore[arg-type]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise ScenarioError(f"{prefix}.{key}", value, "must be a whole number >= 0 (config.json field)")
    return int(value)


def _vit_layer(width: int, inter: int) -> int:
    """One pre-norm ViT layer with biases: q, k, v, o; a two-matrix GELU MLP; two LayerNorms."""
    return 4 * (width * width + width) + 2 * width * inter + inter + width + 4 * width


def _text_hidden(config: Mapping) -> int:
    """The text model's hidden size (``text_config.hidden_size`` or the top level's)."""
    text = config.get("text_config")
    source = text if isinstance(text, Mapping) and text.get("hidden_size") is not None else config
    return _get(source, "hidden_size", prefix="text_config")


def _siglip(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i = _get(vc, "hidden_size"), _get(vc, "intermediate_size")
    layers, p = _get(vc, "num_hidden_layers"), _get(vc, "patch_size")
    c, image = _get(vc, "num_channels", 3), _get(vc, "image_size")
    total = layers * _vit_layer(w, i) + c * p * p * w + w + (image // p) ** 2 * w + 2 * w
    if vc.get("vision_use_head", True):
        total += w + 3 * w * w + 3 * w + w * w + w + 2 * w + 2 * w * i + i + w
    family = "SigLIP"
    if str(config.get("model_type", "")).startswith("gemma3"):
        total += w * _text_hidden(config) + w
        family = "SigLIP with Gemma 3's projector"
    return family, total


def _llama4(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i = _get(vc, "hidden_size"), _get(vc, "intermediate_size")
    layers, p = _get(vc, "num_hidden_layers"), _get(vc, "patch_size")
    c, image = _get(vc, "num_channels", 3), _get(vc, "image_size")
    ratio = vc.get("pixel_shuffle_ratio", 0.5)
    shuffled = int(round(w / (ratio * ratio))) if isinstance(ratio, (int, float)) and ratio > 0 else 4 * w
    proj_in, proj_out = _get(vc, "projector_input_dim", 4096), _get(vc, "projector_output_dim", 4096)
    out = _get(vc, "vision_output_dim", proj_out)
    total = (layers * _vit_layer(w, i) + w + ((image // p) ** 2 + 1) * w + c * p * p * w + 4 * w
             + shuffled * proj_in + proj_in * proj_out + out * _text_hidden(config))
    return "Llama 4 ViT with its pixel-shuffle adapter and projector", total


def _pixtral(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i = _get(vc, "hidden_size"), _get(vc, "intermediate_size")
    layers, p, c = _get(vc, "num_hidden_layers"), _get(vc, "patch_size"), _get(vc, "num_channels", 3)
    total = layers * (4 * w * w + 3 * w * i + 2 * w) + c * p * p * w + w
    family = "Pixtral ViT"
    if config.get("spatial_merge_size") is not None or str(config.get("model_type", "")) == "mistral3":
        m, t = _get(config, "spatial_merge_size", 2, prefix="config"), _text_hidden(config)
        bias = t + t if config.get("multimodal_projector_bias") else 0
        total += w + w * m * m * w + w * t + t * t + bias
        family = "Pixtral ViT with Mistral 3's patch merger and projector"
    return family, total


def _qwen_vl(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i, layers = _get(vc, "hidden_size"), _get(vc, "intermediate_size"), _get(vc, "depth")
    p, c, t = _get(vc, "patch_size"), _get(vc, "in_channels", 3), _get(vc, "temporal_patch_size", 2)
    m, out = _get(vc, "spatial_merge_size", 2), _get(vc, "out_hidden_size")
    merged = w * m * m
    gated = vc.get("fullatt_block_indexes") is not None   # Qwen2.5-VL: SwiGLU MLP and RMSNorm
    layer = (4 * (w * w + w) + 3 * w * i + 2 * i + w + 2 * w) if gated else _vit_layer(w, i)
    merger = merged * merged + merged + merged * out + out
    deepstack = vc.get("deepstack_visual_indexes") or []
    total = (layers * layer + c * t * p * p * w + w + _get(vc, "num_position_embeddings", 0) * w
             + 2 * w + merger + len(deepstack) * (2 * merged + merger))
    return ("Qwen2.5-VL ViT with its patch merger" if gated else "Qwen3-VL ViT with its patch merger"), total


def _gemma4(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i, layers = _get(vc, "hidden_size"), _get(vc, "intermediate_size"), _get(vc, "num_hidden_layers")
    p, head = _get(vc, "patch_size"), _get(vc, "head_dim", 0)
    total = (layers * (4 * w * w + 3 * w * i + 4 * w + 2 * head) + 3 * p * p * w
             + 2 * _get(vc, "position_embedding_size", 0) * w + w * _text_hidden(config))
    return "Gemma 4 ViT with its projector", total


def _moonvit(vc: Mapping, config: Mapping) -> tuple[str, int]:
    w, i = _get(vc, "vt_hidden_size"), _get(vc, "vt_intermediate_size")
    layers, p = _get(vc, "vt_num_hidden_layers"), _get(vc, "patch_size")
    kernel = vc.get("merge_kernel_size") or [2, 2]
    k = int(kernel[0]) * int(kernel[1]) if isinstance(kernel, list) and len(kernel) == 2 else 4
    t = _get(vc, "text_hidden_size", 0) or _text_hidden(config)
    positions = _get(vc, "init_pos_emb_height", 0) * _get(vc, "init_pos_emb_width", 0)
    total = (layers * _vit_layer(w, i) + 3 * p * p * w + w + positions * w + 2 * w
             + 2 * w * k + (w * k) ** 2 + w * k + w * k * t + t)
    return "MoonViT with Kimi's patch-merger projector", total


def _generic(vc: Mapping, config: Mapping) -> tuple[str, int] | None:
    if vc.get("hidden_size") is None or vc.get("intermediate_size") is None:
        return None
    layers = vc.get("num_hidden_layers", vc.get("depth"))
    if layers is None:
        return None
    key = "num_hidden_layers" if vc.get("num_hidden_layers") is not None else "depth"
    return "generic ViT layers only", _get(vc, key) * _vit_layer(_get(vc, "hidden_size"), _get(vc, "intermediate_size"))


def vision_tower(config: object) -> VisionTower | None:
    """The vision tower of a ``config.json`` given as a dict (module docstring for the
    formulas), or None when it has none or its ``vision_config`` has no size to read.
    Raises :class:`ScenarioError` naming the field when a size is malformed."""
    if not isinstance(config, Mapping):
        return None
    vc = config.get("vision_config")
    if not isinstance(vc, Mapping) or not vc:
        return None
    kind = str(vc.get("model_type", "")).lower()
    outer = str(config.get("model_type", "")).lower()
    if kind.startswith("llama4") or outer == "llama4":
        family, total = _llama4(vc, config)
    elif kind.startswith("gemma4"):
        family, total = _gemma4(vc, config)
    elif kind.startswith("siglip") or outer == "gemma3":
        family, total = _siglip(vc, config)
    elif kind == "pixtral" or outer == "mistral3":
        family, total = _pixtral(vc, config)
    elif vc.get("depth") is not None and vc.get("out_hidden_size") is not None:
        family, total = _qwen_vl(vc, config)
    elif vc.get("vt_hidden_size") is not None:
        family, total = _moonvit(vc, config)
    else:
        found = _generic(vc, config)
        if found is None:
            return None
        family, total = found
    return VisionTower(family, total / 1e9, tp_split=not kind.startswith("gemma4"))


def rope_cache_elements(cfg: Mapping, kinds: list[str]) -> float:
    """Values in vLLM's rotary cos/sin caches for a text config (module docstring), summed over
    the distinct rotary settings of its attention layer ``kinds`` (``full``, ``sliding``,
    ``mla``); 0 when the config gives no ``max_position_embeddings``."""
    positions = cfg.get("max_position_embeddings")
    if not isinstance(positions, int) or isinstance(positions, bool) or positions <= 0:
        return 0.0
    seen: dict[tuple, int] = {}
    nope_full = str(cfg.get("model_type", "")).startswith("llama4")   # Llama 4: global layers use no RoPE
    for kind in set(kinds) & {"full", "sliding", "mla"}:
        if kind == "full" and nope_full:
            continue
        params = _rope_params(cfg, kind)
        width = _rope_width(cfg, kind, params)
        rope_type = str(params.get("rope_type", params.get("type", "default")))
        factor = params.get("factor", 1.0)
        factor = factor if isinstance(factor, (int, float)) and factor > 0 else 1.0
        if not math.isfinite(factor):   # json.loads reads "Infinity"
            where = "rope_parameters" if isinstance(cfg.get("rope_parameters"), Mapping) else "rope_scaling"
            raise ScenarioError(f"{where}.factor", factor, "must be a finite number (config.json field)")
        count = positions
        if rope_type in ("linear", "dynamic"):
            count = int(positions * factor)
        elif rope_type in ("yarn", "deepseek_yarn"):
            original = params.get("original_max_position_embeddings", positions)
            count = int((original if isinstance(original, int) else positions) * factor)
        key = (count, width, rope_type, params.get("rope_theta", cfg.get("rope_theta")), str(params.get("base")))
        seen[key] = count * width
    return float(sum(seen.values()))


def _rope_params(cfg: Mapping, kind: str) -> Mapping:
    """The rotary settings of ``kind`` layers: ``rope_parameters`` (per layer type where it is
    nested so, as in Gemma 4) or ``rope_scaling``; Gemma 3's sliding layers use
    ``rope_local_base_freq`` unscaled."""
    params = cfg.get("rope_parameters")
    if isinstance(params, Mapping):
        layer_type = "sliding_attention" if kind == "sliding" else "full_attention"
        nested = params.get(layer_type)
        return nested if isinstance(nested, Mapping) else params
    if kind == "sliding" and cfg.get("rope_local_base_freq") is not None:
        return {"rope_theta": cfg["rope_local_base_freq"]}
    scaling = cfg.get("rope_scaling")
    return scaling if isinstance(scaling, Mapping) else {}


def _rope_width(cfg: Mapping, kind: str, params: Mapping) -> int:
    """``rotary_dim`` of ``kind`` layers: the head dimension times ``partial_rotary_factor``
    (MLA: ``qk_rope_head_dim``; Gemma 4's ``proportional`` RoPE keeps the full head width)."""
    if kind == "mla":
        return int(cfg.get("qk_rope_head_dim") or 64)
    heads = cfg.get("num_attention_heads") or 1
    head = cfg.get("head_dim") or (int(cfg.get("hidden_size") or 0) // int(heads))
    if kind == "full" and cfg.get("global_head_dim"):
        head = cfg["global_head_dim"]
    if params.get("rope_type") == "proportional":
        return int(head)
    partial = params.get("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    partial = partial if isinstance(partial, (int, float)) and 0 < partial <= 1 else 1.0
    return int(int(head) * partial)


def extra_weights_gib(vision_params_b: float, replicated_buffers_b: float, served_bytes: float, tp: int) -> float:
    """GiB per GPU that vLLM loads besides the text weights: the ``vision_params_b`` tower
    split over ``tp`` GPUs plus the ``replicated_buffers_b`` (billions of values: rotary caches,
    towers vLLM does not split) every GPU holds, all at ``served_bytes`` per value (the model
    dtype: 2 for bf16/fp16 and for quantised checkpoints, whose unquantised parts are bf16)."""
    return (vision_params_b / tp + replicated_buffers_b) * served_bytes * 1e9 / GIB


__all__ = ["VisionTower", "vision_tower", "rope_cache_elements", "extra_weights_gib"]
