"""From a scenario to a model, a GPU and the KV-cache capacity of one instance (docs/model.md §3).

::

    kv_budget_per_gpu = gpu_memory_gib * gpu_mem_util - weights_per_gpu - activation_reserve_gib
    weights_per_gpu   = params_b * 1e9 * weight_dtype_bytes / num_gpus            [bytes]
    capacity_tokens   = floor(kv_budget_per_gpu / (kv_bytes_per_token_per_gpu * block_size)) * block_size

``gpu_mem_util`` is vLLM's ``gpu_memory_utilization`` (SGLang: ``mem_fraction_static``), a
fraction of the GPU's total memory. Tensor parallelism splits GQA heads (at least one per
GPU) but replicates the MLA latent, so capacity is limited per GPU, not by pooled memory.
GiB = 2**30 bytes throughout.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from kvcache_calculator.setup.architecture import (
    DTYPE_BYTES, LayerGroup, ModelArch, check_tensor_parallel, dtype_bytes, kv_bytes_per_sequence_fixed,
    kv_bytes_per_token,
)
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario

GIB = 2 ** 30
ARCH_KEYS = ("attention", "num_layers", "num_kv_heads", "head_dim", "kv_lora_rank",
             "qk_rope_head_dim", "sliding_window", "sliding_layers")


def _require(values, key: str, why: str):
    """``values[key]`` (a dict or an object's attribute); a clear error when it is missing."""
    value = values.get(key) if isinstance(values, dict) else getattr(values, key)
    if value is None:
        raise ScenarioError(key, "", f"is required {why}")
    return value


def custom_key_errors(values: dict) -> list[ScenarioError]:
    """Every problem with the flat architecture keys ``values`` (``attention``,
    ``num_layers`` ...), in the order :func:`arch_from_keys` meets them: the required keys
    that are missing, and more sliding layers than layers. :func:`arch_from_keys` raises the
    first; a form marks them all at once."""
    v = values
    why = "for a custom architecture"
    mla = (v.get("attention") or "gqa") == "mla"
    need = [("num_layers", why), ("params_b", why)]
    need += [("kv_lora_rank", "when attention is mla")] if mla else [("num_kv_heads", why), ("head_dim", why)]
    errors = [ScenarioError(key, "", f"is required {reason}") for key, reason in need if v.get(key) is None]
    if not mla:
        sliding, layers = v.get("sliding_layers") or 0, v.get("num_layers")
        if layers is not None and sliding > layers:
            errors.append(ScenarioError("sliding_layers", sliding, f"must be at most num_layers ({layers})"))
        if sliding and v.get("sliding_window") is None:
            errors.append(ScenarioError("sliding_window", "", "is required when sliding_layers > 0"))
    return errors


def arch_from_keys(values: dict, name: str = "custom") -> ModelArch:
    """Build a model from the flat scenario keys (``attention``, ``num_layers`` ...); raises the
    first of :func:`custom_key_errors`."""
    errors = custom_key_errors(values)
    if errors:
        raise errors[0]
    v = values
    num_layers, params_b = v["num_layers"], v["params_b"]
    if (v.get("attention") or "gqa") == "mla":
        groups = (LayerGroup("mla", num_layers, kv_lora_rank=v["kv_lora_rank"],
                             qk_rope_head_dim=v.get("qk_rope_head_dim") or 0),)
    else:
        heads, head_dim = v["num_kv_heads"], v["head_dim"]
        sliding = v.get("sliding_layers") or 0
        groups = []
        if num_layers - sliding:
            groups.append(LayerGroup("full", num_layers - sliding, heads, head_dim, head_dim))
        if sliding:
            groups.append(LayerGroup("sliding", sliding, heads, head_dim, head_dim, window=v["sliding_window"]))
        groups = tuple(groups)
    return ModelArch(name, groups, params_b, v.get("active_params_b") or 0.0, source="entered by the user")


# Keys that only one kind of attention uses: given for the other kind they would be ignored.
_GQA_ONLY = ("num_kv_heads", "head_dim", "sliding_window", "sliding_layers")
_MLA_ONLY = ("kv_lora_rank", "qk_rope_head_dim")


def attention_key_errors(scenario: Scenario) -> list[ScenarioError]:
    """An error for each architecture key given that the model's attention kind does not use
    (MLA has no KV heads or sliding window; GQA no latent rank): refused, not ignored."""
    given = {k: getattr(scenario, k) for k in _GQA_ONLY + _MLA_ONLY if getattr(scenario, k) is not None}
    if not given:
        return []
    attention = scenario.attention
    if attention is None and scenario.model != "custom":
        from kvcache_calculator.setup import presets
        base = presets.MODELS.get(scenario.model)
        if base is None:
            return []   # an unknown model is its own error
        attention = "mla" if any(g.kind == "mla" for g in base.layers) else "gqa"   # as arch_to_scenario
    attention = attention or "gqa"
    return [ScenarioError(key, given[key], f"does not apply when attention is {attention}; leave it empty")
            for key in (_GQA_ONLY if attention == "mla" else _MLA_ONLY) if key in given]


def resolve_model(scenario: Scenario) -> ModelArch:
    """The scenario's model: a preset, with any architecture keys overriding it, or custom."""
    overrides = {k: getattr(scenario, k) for k in ARCH_KEYS if getattr(scenario, k) is not None}
    params = {k: getattr(scenario, k) for k in ("params_b", "active_params_b") if getattr(scenario, k) is not None}
    errors = attention_key_errors(scenario)
    if errors:
        raise errors[0]
    if scenario.model == "custom":
        return arch_from_keys({**overrides, **params})
    from kvcache_calculator.setup import presets
    from kvcache_calculator.setup.hfconfig import arch_to_scenario

    base = presets.get_model(scenario.model)
    if overrides:
        merged = {**arch_to_scenario(base), **overrides, **params}
        if "params_b" not in params:
            merged["params_b"] = base.params_b
            merged.setdefault("active_params_b", base.active_params_b)
        arch = arch_from_keys(merged, name=base.name + " (modified)")
        return replace(arch, weight_dtype=base.weight_dtype, weight_format=base.weight_format)
    if params:
        total = params.get("params_b", base.params_b)
        active = params.get("active_params_b", min(base.active_params_b, total))
        return ModelArch(base.name, base.layers, total, active, base.source, base.notes,
                         base.weight_dtype, base.weight_format)
    return base


def resolve_gpu(scenario: Scenario):
    """The scenario's GPU preset, or a custom one; ``gpu_memory_gib`` overrides the memory."""
    from kvcache_calculator.setup.gpus import GPU

    if scenario.gpu == "custom":
        memory = _require(scenario, "gpu_memory_gib", "when gpu is custom")
        return GPU("custom", "Custom GPU", memory, 0.0, 0.0, "entered by the user")
    from kvcache_calculator.setup import presets

    gpu = presets.get_gpu(scenario.gpu)
    if scenario.gpu_memory_gib is not None:
        return GPU(gpu.id, gpu.name, scenario.gpu_memory_gib, gpu.bf16_tflops, gpu.hbm_tb_s, gpu.source)
    return gpu


@dataclass(frozen=True)
class Capacity:
    """KV-cache capacity of one serving instance, and how it was derived."""

    fits: bool
    message: str
    capacity_tokens: int                 # per instance, whole blocks; 0 when it does not fit
    capacity_gib: float                  # KV cache memory of the instance (all its GPUs)
    kv_cache_gib_per_gpu: float
    kv_bytes_per_token: float            # model, all growing layers, at kv_dtype (tp = 1)
    kv_bytes_per_token_per_gpu: float
    kv_bytes_per_sequence_fixed_per_gpu: float  # sliding-window cap + linear state
    weights_gib_per_gpu: float
    kv_budget_gib_per_gpu: float
    usable_gib_per_gpu: float
    offload_tokens: int
    derived_from: str                    # "memory" or "kv_cache_tokens"

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


def model_label(scenario: Scenario) -> str:
    """How messages name the scenario's model: its preset id, ``<id> (modified)`` with
    architecture overrides, or ``the custom model``."""
    if scenario.model == "custom":
        return "the custom model"
    if any(getattr(scenario, k) is not None for k in ARCH_KEYS):
        return f"{scenario.model} (modified)"
    return scenario.model


def weights_gib_per_gpu(arch: ModelArch, weight_dtype: str, tp: int) -> float:
    """GiB of weights on each of ``tp`` GPUs at ``weight_dtype`` (docs/model.md §3)."""
    return arch.params_b * 1e9 * dtype_bytes(weight_dtype, "weight_dtype") / tp / GIB


def kv_left_with_weights(scenario: Scenario, arch: ModelArch, usable_gib: float, weight_dtype: str,
                         tp: int | None = None) -> float | None:
    """KV-cache GiB per GPU left with the weights at ``weight_dtype`` (and ``tp`` GPUs, the
    scenario's by default) when each GPU has ``usable_gib`` (memory x gpu_mem_util); None when
    that leaves less than one block."""
    tp = tp or scenario.num_gpus
    budget = usable_gib - weights_gib_per_gpu(arch, weight_dtype, tp) - scenario.activation_reserve_gib
    block_gib = kv_bytes_per_token(arch, scenario.kv_dtype, tp) * scenario.block_size / GIB
    return budget if budget > 0 and budget >= block_gib else None


def published_weight_label(arch: ModelArch) -> str:
    """The published checkpoint's weight format as a reader knows it: ``FP8``, ``MXFP4``."""
    return arch.weight_format or arch.weight_dtype.upper()


def smaller_weight_dtypes(scenario: Scenario, arch: ModelArch, usable_gib: float) -> list[tuple[str, float, bool]]:
    """Smaller weight dtypes that make the model fit, as ``(dtype, kv_gib_left_per_gpu,
    published)``: first the published checkpoint's format (``arch.weight_dtype``) when it is
    smaller than the scenario's and fits, then the widest smaller dtype (``fp8``, else
    ``int4``) that fits, if it is not as small as the published one already offered."""
    current = dtype_bytes(scenario.weight_dtype, "weight_dtype")
    out: list[tuple[str, float, bool]] = []
    published = arch.weight_dtype
    if DTYPE_BYTES[published] < current:
        left = kv_left_with_weights(scenario, arch, usable_gib, published)
        if left is not None:
            out.append((published, left, True))
    for dtype in ("fp8", "int4"):
        if DTYPE_BYTES[dtype] >= current:
            continue
        left = kv_left_with_weights(scenario, arch, usable_gib, dtype)
        if left is not None:
            if not (out and DTYPE_BYTES[dtype] >= DTYPE_BYTES[out[0][0]]):
                out.append((dtype, left, False))
            break
    return out


def weight_dtype_sentence(dtype: str, left: float, published: bool, arch: ModelArch) -> str:
    """``the published checkpoint is FP8: weight_dtype=fp8 fits with 47.3 GiB per GPU left for
    the KV cache``, or ``at weight_dtype=int4 it fits with ...`` for a dtype that is not the
    published one."""
    left_text = f"{left:.1f} GiB per GPU left for the KV cache"
    if not published:
        return f"at weight_dtype={dtype} it fits with {left_text}"
    label = published_weight_label(arch)
    nearest = " (the nearest setting)" if label.lower() != dtype else ""
    return f"the published checkpoint is {label}: weight_dtype={dtype}{nearest} fits with {left_text}"


def weight_dtype_hint(scenario: Scenario, arch: ModelArch, usable_gib: float) -> str:
    """What the not-fit message adds: `` The published checkpoint is FP8: weight_dtype=fp8 fits
    with ...`` (:func:`smaller_weight_dtypes`), or ``""`` when no smaller dtype fits."""
    hints = smaller_weight_dtypes(scenario, arch, usable_gib)
    if not hints:
        return ""
    text = "; ".join(weight_dtype_sentence(d, left, pub, arch) for d, left, pub in hints)
    return " " + text[0].upper() + text[1:] + "."


def compute_capacity(scenario: Scenario, arch: ModelArch | None = None, gpu=None) -> Capacity:
    """Capacity per docs/model.md §3, or the ``kv_cache_tokens`` override.

    Raises :class:`ScenarioError` on ``num_gpus`` when tensor parallelism over that many GPUs
    cannot split the model's KV heads (:func:`~kvcache_calculator.setup.architecture.check_tensor_parallel`).
    """
    arch = arch or resolve_model(scenario)
    gpu = gpu or resolve_gpu(scenario)
    tp = scenario.num_gpus
    if tp > 1:
        check_tensor_parallel(arch, tp, model_label(scenario))
    bpt = kv_bytes_per_token(arch, scenario.kv_dtype)
    bpt_gpu = kv_bytes_per_token(arch, scenario.kv_dtype, tp)
    fixed_gpu = kv_bytes_per_sequence_fixed(arch, scenario.kv_dtype, tp, scenario.block_size)
    weights = weights_gib_per_gpu(arch, scenario.weight_dtype, tp)
    usable = gpu.memory_gib * scenario.gpu_mem_util
    budget = usable - weights - scenario.activation_reserve_gib
    block = scenario.block_size
    offload_tokens = int(scenario.offload_gib * GIB // bpt) if bpt > 0 else 0
    common = dict(kv_bytes_per_token=bpt, kv_bytes_per_token_per_gpu=bpt_gpu,
                  kv_bytes_per_sequence_fixed_per_gpu=fixed_gpu, weights_gib_per_gpu=weights,
                  kv_budget_gib_per_gpu=budget, usable_gib_per_gpu=usable, offload_tokens=offload_tokens)
    if scenario.kv_cache_tokens is not None:
        tokens = scenario.kv_cache_tokens // block * block
        if tokens < block:
            raise ScenarioError("kv_cache_tokens", scenario.kv_cache_tokens,
                                f"must hold at least one block ({block} tokens)")
        gib_gpu = tokens * bpt_gpu / GIB
        return Capacity(True, f"{tokens:,} tokens, as given by kv_cache_tokens", tokens,
                        gib_gpu * tp, gib_gpu, derived_from="kv_cache_tokens", **common)
    if budget <= 0:
        need = weights + scenario.activation_reserve_gib
        msg = (f"The model does not fit: it needs {need:.1f} GiB per GPU for weights and activations "
               f"({arch.params_b:g}B parameters at {scenario.weight_dtype} over {tp} GPU{'s' if tp > 1 else ''}), "
               f"and each GPU has {usable:.1f} GiB usable ({gpu.memory_gib:g} GiB x {scenario.gpu_mem_util:g}).")
        msg += weight_dtype_hint(scenario, arch, usable)
        return Capacity(False, msg, 0, 0.0, 0.0, derived_from="memory", **common)
    blocks = math.floor(budget * GIB / (bpt_gpu * block))
    tokens = blocks * block
    if tokens < block:
        msg = (f"The model fits, but its {budget * 1024:.0f} MiB of KV budget per GPU holds less than one "
               f"{block}-token block ({bpt_gpu * block / 2**20:.1f} MiB).")
        return Capacity(False, msg, 0, 0.0, 0.0, derived_from="memory", **common)
    gib_gpu = tokens * bpt_gpu / GIB
    msg = f"{tokens:,} tokens in {gib_gpu:.1f} GiB of KV cache per GPU"
    return Capacity(True, msg, tokens, gib_gpu * tp, gib_gpu, derived_from="memory", **common)
