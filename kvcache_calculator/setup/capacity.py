"""The KV-cache capacity of one serving instance, from its model and GPU (docs/model.md §3).

::

    kv_budget_per_gpu = gpu_memory_gib * gpu_mem_util - weights_per_gpu - activation_reserve_gib
    weights_per_gpu   = params_b * 1e9 * weight_dtype_bytes / num_gpus            [bytes]
    capacity_tokens   = floor(kv_budget_per_gpu / (kv_bytes_per_token_per_gpu * block_size)) * block_size

``gpu_mem_util`` is vLLM's ``gpu_memory_utilization`` (SGLang: ``mem_fraction_static``), a
fraction of the GPU's total memory. Tensor parallelism splits GQA heads (at least one per
GPU) but replicates the MLA latent, so capacity is limited per GPU, not by pooled memory.
GiB = 2**30 bytes throughout. The model and the GPU come resolved
(:func:`kvcache_calculator.setup.resolve.resolve`); :func:`tokens_for_memory` and
:func:`memory_for_tokens` are the same formula at another GPU memory and solved for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import LAYER_KEYS, Scenario
from kvcache_calculator.setup.architecture import (
    DTYPE_BYTES, ModelArch, check_tensor_parallel, dtype_bytes, kv_bytes_per_sequence_fixed, kv_bytes_per_token,
)
from kvcache_calculator.setup.gpus import GPU

GIB = 2 ** 30


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
    if any(getattr(scenario, k) is not None for k in LAYER_KEYS):
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


def compute_capacity(scenario: Scenario, arch: ModelArch, gpu: GPU) -> Capacity:
    """Capacity per docs/model.md §3 for ``scenario`` on model ``arch`` and GPU ``gpu`` (only
    its ``memory_gib`` is read), or the ``kv_cache_tokens`` override.

    Raises :class:`ScenarioError` on ``num_gpus`` when tensor parallelism over that many GPUs
    cannot split the model's KV heads (:func:`~kvcache_calculator.setup.architecture.check_tensor_parallel`).
    """
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


def fit_memory_gib(scenario: Scenario, capacity: Capacity) -> float:
    """GPU memory per GPU (GiB) below which the model leaves no room for KV cache."""
    return (capacity.weights_gib_per_gpu + scenario.activation_reserve_gib) / scenario.gpu_mem_util


def memory_for_tokens(scenario: Scenario, capacity: Capacity, capacity_tokens: float) -> float:
    """GPU memory per GPU (GiB) whose KV budget holds ``capacity_tokens`` per instance::

        memory_gib = (weights_gib_per_gpu + activation_reserve_gib
                      + capacity_tokens * kv_bytes_per_token_per_gpu / 2**30) / gpu_mem_util
    (docs/model.md §3 solved for the memory)."""
    kv = capacity_tokens * capacity.kv_bytes_per_token_per_gpu / GIB
    return (capacity.weights_gib_per_gpu + scenario.activation_reserve_gib + kv) / scenario.gpu_mem_util


def tokens_for_memory(scenario: Scenario, capacity: Capacity, memory_gib: float) -> int:
    """KV-cache tokens per instance (whole blocks) at ``memory_gib`` of GPU memory per GPU
    (docs/model.md §3, with the weights and bytes per token of ``capacity``); 0 when the
    model does not fit."""
    budget = memory_gib * scenario.gpu_mem_util - capacity.weights_gib_per_gpu - scenario.activation_reserve_gib
    if budget <= 0:
        return 0
    block = scenario.block_size
    tokens = int(budget * GIB // (capacity.kv_bytes_per_token_per_gpu * block)) * block
    return tokens if tokens >= block else 0
