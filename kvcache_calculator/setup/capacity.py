"""The KV-cache capacity of one serving instance, from its model and GPU (docs/model.md §3).

::

    kv_cache_per_gpu = (total_gib - offset_gib) * fraction - reserved_gib
    capacity_tokens  = (floor(kv_cache_per_gpu / (kv_bytes_per_token_per_gpu * block_size)) - null) * block_size

The engine (:mod:`kvcache_calculator.setup.engine`, docs/engines.md) sets each term: for vLLM
``fraction`` is ``gpu_memory_utilization`` of the total CUDA reports, ``reserved`` the
weights, the profiled activation peak, non-torch memory and (from 0.20) CUDA graphs, and
block 0 is its null block (``null = 1``; none before 0.8, in the V0 engine); for SGLang ``fraction`` is ``mem_fraction_static``
of the memory free before the weights load (``offset`` the CUDA context and, with tensor
parallelism, NCCL's buffers), ``reserved`` the weights; ``manual`` is ``total * gpu_mem_util - weights - activation_reserve_gib``.
Tensor parallelism splits GQA heads (at least one per GPU) but replicates the MLA latent, so
capacity is limited per GPU, not by pooled memory. GiB = 2**30 bytes throughout. The model and the GPU come resolved
(:func:`kvcache_calculator.setup.resolve.resolve`); :func:`tokens_for_memory` and
:func:`memory_for_tokens` are the same formula at another GPU memory and solved for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import LAYER_KEYS, Scenario
from kvcache_calculator.setup.architecture import (
    DTYPE_BYTES, ModelArch, check_tensor_parallel, dtype_bytes, estimated_shape, kv_bytes_per_sequence_fixed,
    kv_bytes_per_token,
)
from kvcache_calculator.setup.engine import (
    VLLM_V1_DEFAULT, EngineSettings, MemoryBreakdown, breakdown, parse_version,
)
from kvcache_calculator.setup.engine import weights_gib_per_gpu as checkpoint_gib_per_gpu
from kvcache_calculator.setup.gpus import GPU
from kvcache_calculator.setup.vision import extra_weights_gib

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
    weight_dtype: str = "bf16"           # the weights' dtype used (the scenario's, or the published one)
    gpu_mem_util: float = 0.9            # the engine's budget fraction used
    budget_offset_gib: float = 0.0       # kv(M) = (M - offset) * gpu_mem_util - reserved (module docstring)
    reserved_gib_per_gpu: float = 0.0    # everything in the budget besides the KV cache
    null_blocks: int = 0                 # blocks the engine never caches in (vLLM's null block)
    memory: MemoryBreakdown | None = None  # one GPU's memory at start-up (None with kv_cache_tokens)

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


def effective_weight_dtype(scenario: Scenario, arch: ModelArch) -> str:
    """The scenario's ``weight_dtype``, or the model's published checkpoint's when it is empty."""
    return scenario.weight_dtype or arch.weight_dtype


def weights_gib_per_gpu(arch: ModelArch, weight_dtype: str, tp: int) -> float:
    """GiB of weights each of ``tp`` GPUs loads at ``weight_dtype`` (docs/engines.md §3): all
    weights at that width, except that a quantised checkpoint keeps its embedding and output
    head in bf16, and an MXFP4 checkpoint (gpt-oss) quantises only its routed experts; plus
    what vLLM loads besides, at the model dtype: a vision tower and the rotary caches
    (:func:`kvcache_calculator.setup.vision.extra_weights_gib`)."""
    dtype_bytes(weight_dtype, "weight_dtype")
    shape = arch.shape
    if shape is None:
        return arch.params_b * 1e9 * DTYPE_BYTES[weight_dtype] / tp / GIB
    mxfp4 = weight_dtype == "fp4" and arch.weight_format == "MXFP4"
    return checkpoint_gib_per_gpu(arch.params_b, "mxfp4" if mxfp4 else weight_dtype, tp,
                                  embedding_params_b=shape.embedding_params_b, expert_params_b=shape.expert_params_b,
                                  experts_only=mxfp4, moe_intermediate_size=shape.moe_intermediate_size,
                                  replicated_params_b=shape.replicated_params_b) + extra_weights_gib(
        shape.vision_params_b, shape.replicated_buffers_b, max(2.0, DTYPE_BYTES[weight_dtype]), tp)


def memory_breakdown(scenario: Scenario, arch: ModelArch, gpu: GPU, weight_dtype: str | None = None,
                     tp: int | None = None) -> MemoryBreakdown:
    """One GPU's memory at engine start-up under the scenario's engine and knobs (docs/engines.md)."""
    tp = tp or scenario.num_gpus
    dtype = weight_dtype or effective_weight_dtype(scenario, arch)
    settings = EngineSettings(scenario.engine, parse_version(scenario.engine_version), scenario.gpu_mem_util,
                              scenario.max_num_seqs, scenario.max_num_batched_tokens, scenario.cuda_graphs == "on",
                              scenario.activation_reserve_gib, scenario.max_model_len)
    return breakdown(settings, total_gib=gpu.engine_memory_gib, smi_total_mib=gpu.memory_gib * 1024,
                     gpu_name=gpu.name, weights_gib=weights_gib_per_gpu(arch, dtype, tp),
                     shape=estimated_shape(arch), tp=tp)


def kv_left_with_weights(scenario: Scenario, arch: ModelArch, gpu: GPU, weight_dtype: str,
                         tp: int | None = None) -> float | None:
    """KV-cache GiB per GPU left with the weights at ``weight_dtype`` (and ``tp`` GPUs, the
    scenario's by default) on ``gpu``; None when that leaves less than one block."""
    tp = tp or scenario.num_gpus
    budget = memory_breakdown(scenario, arch, gpu, weight_dtype, tp).kv_cache_gib
    block_gib = kv_bytes_per_token(arch, scenario.kv_dtype, tp) * scenario.block_size / GIB
    return budget if budget > 0 and budget >= block_gib else None


def published_weight_label(arch: ModelArch) -> str:
    """The published checkpoint's weight format as a reader knows it: ``FP8``, ``MXFP4``."""
    return arch.weight_format or arch.weight_dtype.upper()


def smaller_weight_dtypes(scenario: Scenario, arch: ModelArch, gpu: GPU) -> list[tuple[str, float, bool]]:
    """Smaller weight dtypes that make the model fit, as ``(dtype, kv_gib_left_per_gpu,
    published)``: first the published checkpoint's format (``arch.weight_dtype``) when it is
    smaller than the scenario's and fits, then the widest smaller dtype (``fp8``, else
    ``int4``) that fits, if it is not as small as the published one already offered."""
    current = dtype_bytes(effective_weight_dtype(scenario, arch), "weight_dtype")
    out: list[tuple[str, float, bool]] = []
    published = arch.weight_dtype
    if DTYPE_BYTES[published] < current:
        left = kv_left_with_weights(scenario, arch, gpu, published)
        if left is not None:
            out.append((published, left, True))
    for dtype in ("fp8", "int4"):
        if DTYPE_BYTES[dtype] >= current:
            continue
        left = kv_left_with_weights(scenario, arch, gpu, dtype)
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


def weight_dtype_hint(scenario: Scenario, arch: ModelArch, gpu: GPU) -> str:
    """What the not-fit message adds: `` The published checkpoint is FP8: weight_dtype=fp8 fits
    with ...`` (:func:`smaller_weight_dtypes`), or ``""`` when no smaller dtype fits."""
    hints = smaller_weight_dtypes(scenario, arch, gpu)
    if not hints:
        return ""
    text = "; ".join(weight_dtype_sentence(d, left, pub, arch) for d, left, pub in hints)
    return " " + text[0].upper() + text[1:] + "."


def compute_capacity(scenario: Scenario, arch: ModelArch, gpu: GPU) -> Capacity:
    """Capacity per the module docstring for ``scenario`` on model ``arch`` and GPU ``gpu``, or
    the ``kv_cache_tokens`` override (the engine's reported size).

    Raises :class:`ScenarioError` on ``num_gpus`` when tensor parallelism over that many GPUs
    cannot split the model's heads (:func:`~kvcache_calculator.setup.architecture.check_tensor_parallel`).
    """
    tp = scenario.num_gpus
    if tp > 1:
        check_tensor_parallel(arch, tp, model_label(scenario))
    dtype = effective_weight_dtype(scenario, arch)
    bpt = kv_bytes_per_token(arch, scenario.kv_dtype)
    bpt_gpu = kv_bytes_per_token(arch, scenario.kv_dtype, tp)
    fixed_gpu = kv_bytes_per_sequence_fixed(arch, scenario.kv_dtype, tp, scenario.block_size)
    mem = memory_breakdown(scenario, arch, gpu, dtype, tp)
    weights = mem.weights_gib
    usable = mem.budget_gib
    budget = mem.kv_cache_gib
    block = scenario.block_size
    # block 0 is the V1 block pool's null block; V0 (before 0.8) kept none
    null = 1 if scenario.engine == "vllm" and parse_version(scenario.engine_version) >= VLLM_V1_DEFAULT else 0
    offset = mem.context_gib
    offload_tokens = int(scenario.offload_gib * GIB // bpt) if bpt > 0 else 0
    common = dict(kv_bytes_per_token=bpt, kv_bytes_per_token_per_gpu=bpt_gpu,
                  kv_bytes_per_sequence_fixed_per_gpu=fixed_gpu, weights_gib_per_gpu=weights,
                  kv_budget_gib_per_gpu=budget, usable_gib_per_gpu=usable, offload_tokens=offload_tokens,
                  weight_dtype=dtype, gpu_mem_util=mem.gpu_mem_util, budget_offset_gib=offset,
                  reserved_gib_per_gpu=mem.reserved_gib, null_blocks=null)
    if scenario.kv_cache_tokens is not None:
        tokens = (scenario.kv_cache_tokens // block - null) * block
        if tokens < block:
            raise ScenarioError("kv_cache_tokens", scenario.kv_cache_tokens,
                                f"must hold at least {1 + null} block{'s' if null else ''} ({(1 + null) * block} tokens)")
        gib_gpu = tokens * bpt_gpu / GIB
        said = " (less vLLM's null block)" if null else ""
        return Capacity(True, f"{tokens:,} tokens, as given by kv_cache_tokens{said}", tokens,
                        gib_gpu * tp, gib_gpu, derived_from="kv_cache_tokens", **common)
    engine = {"vllm": "vLLM", "sglang": "SGLang", "manual": "the activation reserve"}[scenario.engine]
    if budget <= 0:
        need = mem.reserved_gib
        msg = (f"The model does not fit: with {engine}'s accounting it needs {need:.1f} GiB per GPU for weights, "
               f"activations and buffers ({arch.params_b:g}B parameters at {dtype} over {tp} GPU{'s' if tp > 1 else ''}), "
               f"and each GPU gives the engine {usable:.1f} GiB ({gpu.engine_memory_gib:g} GiB x {mem.gpu_mem_util:g}).")
        msg += weight_dtype_hint(scenario, arch, gpu)
        return Capacity(False, msg, 0, 0.0, 0.0, derived_from="memory", memory=mem, **common)
    blocks = math.floor(budget * GIB / (bpt_gpu * block))
    tokens = (blocks - null) * block
    if tokens < block:
        msg = (f"The model fits, but its {budget * 1024:.0f} MiB of KV budget per GPU holds less than one "
               f"{block}-token block ({bpt_gpu * block / 2**20:.1f} MiB).")
        return Capacity(False, msg, 0, 0.0, 0.0, derived_from="memory", memory=mem, **common)
    gib_gpu = tokens * bpt_gpu / GIB
    msg = f"{tokens:,} tokens in {gib_gpu:.1f} GiB of KV cache per GPU ({engine}'s accounting)"
    return Capacity(True, msg, tokens, gib_gpu * tp, gib_gpu, derived_from="memory", memory=mem, **common)


def fit_memory_gib(scenario: Scenario, capacity: Capacity) -> float:
    """GPU memory per GPU (GiB, as the engine counts it) below which no KV cache is left."""
    return capacity.reserved_gib_per_gpu / capacity.gpu_mem_util + capacity.budget_offset_gib


def memory_for_tokens(scenario: Scenario, capacity: Capacity, capacity_tokens: float) -> float:
    """GPU memory per GPU (GiB) whose KV cache holds ``capacity_tokens`` per instance::

        memory_gib = (reserved_gib_per_gpu + kv_gib) / gpu_mem_util + budget_offset_gib
        kv_gib     = (capacity_tokens + null_blocks * block_size) * kv_bytes_per_token_per_gpu / 2**30

    (the module's formula solved for the memory, the engine's other terms held as they are)."""
    tokens = capacity_tokens + capacity.null_blocks * scenario.block_size
    kv = tokens * capacity.kv_bytes_per_token_per_gpu / GIB
    return (capacity.reserved_gib_per_gpu + kv) / capacity.gpu_mem_util + capacity.budget_offset_gib


def tokens_for_memory(scenario: Scenario, capacity: Capacity, memory_gib: float) -> int:
    """KV-cache tokens per instance (whole blocks) at ``memory_gib`` of GPU memory per GPU
    (the module's formula with the engine's other terms held as they are); 0 when the model
    does not fit."""
    budget = (memory_gib - capacity.budget_offset_gib) * capacity.gpu_mem_util - capacity.reserved_gib_per_gpu
    if budget <= 0:
        return 0
    block = scenario.block_size
    tokens = (int(budget * GIB // (capacity.kv_bytes_per_token_per_gpu * block)) - capacity.null_blocks) * block
    return tokens if tokens >= block else 0
