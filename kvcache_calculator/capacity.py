"""From a scenario to a model, a GPU and the KV-cache capacity of one instance (MODEL.md 3).

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
from dataclasses import asdict, dataclass

from kvcache_calculator.architecture import (
    LayerGroup, ModelArch, dtype_bytes, kv_bytes_per_sequence_fixed, kv_bytes_per_token,
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


def arch_from_keys(values: dict, name: str = "custom") -> ModelArch:
    """Build a model from the flat scenario keys (``attention``, ``num_layers`` ...)."""
    v = values
    why = "for a custom architecture"
    num_layers = _require(v, "num_layers", why)
    params_b = _require(v, "params_b", why)
    attention = v.get("attention") or "gqa"
    if attention == "mla":
        rank = _require(v, "kv_lora_rank", "when attention is mla")
        rope = v.get("qk_rope_head_dim") or 0
        groups = (LayerGroup("mla", num_layers, kv_lora_rank=rank, qk_rope_head_dim=rope),)
    else:
        heads = _require(v, "num_kv_heads", why)
        head_dim = _require(v, "head_dim", why)
        sliding = v.get("sliding_layers") or 0
        if sliding > num_layers:
            raise ScenarioError("sliding_layers", sliding, f"must be at most num_layers ({num_layers})")
        groups = []
        if num_layers - sliding:
            groups.append(LayerGroup("full", num_layers - sliding, heads, head_dim, head_dim))
        if sliding:
            window = _require(v, "sliding_window", "when sliding_layers > 0")
            groups.append(LayerGroup("sliding", sliding, heads, head_dim, head_dim, window=window))
        groups = tuple(groups)
    return ModelArch(name, groups, params_b, v.get("active_params_b") or 0.0, source="entered by the user")


def resolve_model(scenario: Scenario) -> ModelArch:
    """The scenario's model: a preset, with any architecture keys overriding it, or custom."""
    overrides = {k: getattr(scenario, k) for k in ARCH_KEYS if getattr(scenario, k) is not None}
    params = {k: getattr(scenario, k) for k in ("params_b", "active_params_b") if getattr(scenario, k) is not None}
    if scenario.model == "custom":
        return arch_from_keys({**overrides, **params})
    from kvcache_calculator import presets
    from kvcache_calculator.hfconfig import arch_to_scenario

    base = presets.get_model(scenario.model)
    if overrides:
        merged = {**arch_to_scenario(base), **overrides, **params}
        if "params_b" not in params:
            merged["params_b"] = base.params_b
            merged.setdefault("active_params_b", base.active_params_b)
        return arch_from_keys(merged, name=base.name + " (modified)")
    if params:
        total = params.get("params_b", base.params_b)
        active = params.get("active_params_b", min(base.active_params_b, total))
        return ModelArch(base.name, base.layers, total, active, base.source, base.notes)
    return base


def resolve_gpu(scenario: Scenario):
    """The scenario's GPU preset, or a custom one; ``gpu_memory_gib`` overrides the memory."""
    from kvcache_calculator.hardware import GPU

    if scenario.gpu == "custom":
        memory = _require(scenario, "gpu_memory_gib", "when gpu is custom")
        return GPU("custom", "Custom GPU", memory, 0.0, 0.0, "entered by the user")
    from kvcache_calculator import presets

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


def compute_capacity(scenario: Scenario, arch: ModelArch | None = None, gpu=None) -> Capacity:
    """Capacity per MODEL.md section 3, or the ``kv_cache_tokens`` override."""
    arch = arch or resolve_model(scenario)
    gpu = gpu or resolve_gpu(scenario)
    tp = scenario.num_gpus
    bpt = kv_bytes_per_token(arch, scenario.kv_dtype)
    bpt_gpu = kv_bytes_per_token(arch, scenario.kv_dtype, tp)
    fixed_gpu = kv_bytes_per_sequence_fixed(arch, scenario.kv_dtype, tp, scenario.block_size)
    weights = arch.params_b * 1e9 * dtype_bytes(scenario.weight_dtype, "weight_dtype") / tp / GIB
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
