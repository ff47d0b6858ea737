"""What an engine leaves for the KV cache on one GPU: vLLM's and SGLang's memory accounting.

An engine does not give the KV cache "memory x utilisation - weights". At start-up it loads the
weights, runs one profiling forward pass at its batch limits, and gives the KV cache what is
left of its budget. This module predicts each part per GPU, in GiB (2**30 bytes), so that the
calculator's capacity matches the "Available KV cache memory" line an engine prints.

**vLLM (V1 engine, 0.9 and later).** ``vllm/v1/worker/gpu_worker.py``
(``Worker.determine_available_memory``) with ``vllm/utils/mem_utils.py`` (``memory_profiling``):

    requested = total * gpu_memory_utilization        (total = what CUDA reports, not nvidia-smi)
    kv_cache  = requested - weights - activation_peak - non_torch_increase - cuda_graph_estimate

- ``activation_peak`` is the torch peak of the profiling run: one forward pass of
  ``max_num_batched_tokens`` tokens spread over ``min(tokens, max_num_seqs)`` requests, then a
  sampler pass over the full-vocabulary logits of every request
  (``GPUModelRunner.profile_run`` / ``_dummy_sampler_run``). We estimate it as
  ``max(forward, sampler) + moe_workspace + 0.1 GiB`` (:func:`activation_peak_gib`).
- ``non_torch_increase``: memory outside PyTorch's allocator that appears during profiling
  (cuBLAS workspaces, NCCL buffers on first use). It is measured, not computed, by vLLM.
- ``cuda_graph_estimate``: from vLLM 0.20 the memory CUDA graphs will take is estimated
  (``GPUModelRunner.profile_cudagraph_memory``) and subtracted; before, graphs were captured
  after the KV cache was allocated, out of the ``1 - utilisation`` headroom.
- Batch defaults (``EngineArgs.get_batch_defaults`` in ``vllm/engine/arg_utils.py``):
  ``vllm serve`` on a GPU with at least 70 GiB that is not an A100 profiles 8,192 tokens and
  1,024 sequences; from 0.28, GPUs of 160 GiB or more profile 16,384; other GPUs 2,048 and 256.

The constants of the estimate (14 bytes per logit of 0.17 on, the per-layer CUDA-graph size,
non-torch memory) were fitted to 26 published start-up logs of vLLM 0.19 on H100 (dense, MoE, MLA,
quantised, tensor parallel 1-4); ``tests/data/engine_starts.json`` holds them with their sources.

**SGLang** (``python/sglang/srt``: the memory settings of the server arguments and
``ModelRunner.profile_max_num_token``, read in 0.2.13 to 0.5.23): the pool is
``free_after_weights - free_before_weights * (1 - mem_fraction_static)``, that is
``free_before_weights * mem_fraction_static - weights``, where ``free_before_weights`` is
what the distributed init leaves (the CUDA total less the CUDA context and, with tensor
parallelism, NCCL's buffers: :func:`sglang_context_gib`) and ``mem_fraction_static``
defaults to ``(total_MiB - reserved_MiB) / total_MiB`` with a reserve that grows with the
chunked-prefill size, tensor parallelism and CUDA graphs.

**vLLM before 0.9** (read in the released wheels 0.5.5, 0.6.2, 0.6.3.post1, 0.6.4.post1,
0.6.5, 0.6.6.post1, 0.7.3, 0.8.0 and 0.8.5). ``VLLM_USE_V1`` defaults to ``"0"`` up to 0.7.3 and
to ``"1"`` from 0.8.0 (``vllm/envs.py``), so ``engine_version`` 0.6-0.7 gets the V0 worker and 0.8
the early V1 worker. V0 is ``vllm/worker/worker.py`` ``Worker.determine_num_available_blocks``:

    kv_cache = total * gpu_memory_utilization - weights - activation_peak - non_torch

with ``non_torch`` by release:

- 0.5 - 0.6.3: ``peak = init_free - free_after_profiling``, where ``init_free`` is read in
  ``init_device`` after the CUDA context and before the distributed init: the context and other
  processes are not charged, NCCL's buffers and cuBLAS workspaces are;
- 0.6.4.x: ``peak = torch peak (weights included) + (used - torch allocated)`` after
  profiling (the "Memory profiling results: total_gpu_memory=..." log line): **everything** on
  the GPU that is not this process's torch tensors is charged, the CUDA context and other
  processes too;
- 0.6.5 - 0.7 (and V0 in 0.8): ``memory_profiling`` (``vllm/utils.py``) from a baseline taken
  after the CUDA context, before the distributed init ("the current vLLM instance can use
  total_gpu_memory ..." lines): ``weights + torch_peak_increase + non_torch_increase``;
- 0.8 V1 (``vllm/v1/worker/gpu_worker.py``): like 0.6.4, the context and other processes are
  charged; no CUDA-graph term.

V0's ``ModelRunner.profile_run`` (``vllm/worker/model_runner.py``) runs ``max_num_seqs``
sequences totalling ``max_num_batched_tokens`` tokens, then samples with ``top_p=0.99,
top_k=vocab-1`` over one float32 row of logits per sequence (the sort path of
``_apply_top_k_top_p`` in ``vllm/model_executor/layers/sampler.py``). With tensor parallelism
the logits are gathered to rank 0 only (``LogitsProcessor._gather_logits``), so only the driver
samples; the engine allocates the blocks of the worker with the fewest (``min`` over workers),
the driver's, and that is what is predicted (other ranks log a larger "KV Cache" figure).
V0 defaults (``EngineArgs`` and ``SchedulerConfig``, ``vllm/config.py``): ``max_num_seqs``
256 for every entry point; chunked prefill on when ``max_model_len`` > 32,768 (CUDA, not
ROCm before 0.8), with ``max_num_batched_tokens`` 512 up to 0.6.4 and 2,048 from 0.6.5;
otherwise ``max(max_model_len, 2048)``. 0.8 V1 profiles 8,192 tokens and 1,024 sequences on
GPUs of at least 70 GiB (A100 included), else 2,048 and 256 (0.8.5). Releases before 0.6 are
refused (:data:`VLLM_OLDEST`).

**manual**: the explicit ``activation_reserve_gib`` of the scenario, no other deduction.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from kvcache_calculator.errors import ScenarioError

GIB = 2 ** 30
MIB = 2 ** 20
ENGINES = ("vllm", "sglang", "manual")

#: The newest vLLM release whose accounting this module follows; the default ``engine_version``.
VLLM_LATEST = (0, 33)
#: The oldest vLLM release whose accounting this module follows (V0 worker of 0.6.0).
VLLM_OLDEST = (0, 6)
#: The first release whose default engine is V1 (``VLLM_USE_V1`` defaults to "1" from 0.8.0).
VLLM_V1_DEFAULT = (0, 8)
#: The first V1 release with ``memory_profiling`` from a snapshot (the rules of 0.9+).
VLLM_V1_PROFILER = (0, 9)

#: Bytes per (request x vocabulary entry) at the peak of the profiling run's sampler pass, by the
#: first V1 release of each top-k/top-p path (``_dummy_sampler_run`` asks for temperature 0.5,
#: top-p 0.9 and top-k vocab-1 in every release; :func:`sampler_bytes_per_logit`).
#:
#: - 0.8-0.11: FlashInfer's ``top_k_top_p_sampling_from_logits`` whenever FlashInfer is installed
#:   (the ``vllm-openai`` image has it) and ``VLLM_USE_FLASHINFER_SAMPLER`` is unset
#:   (``vllm/v1/sample/ops/topk_topp_sampler.py``, ``is not False``: 0.10.1 l.41, 0.11.0 l.46):
#:   logits in the model dtype (2), their float32 copy (4), FlashInfer's top-k-masked logits (4)
#:   and probabilities (4): 14 B, which the 0.10.1 logs on A100 fit.
#: - 0.12-0.16: FlashInfer becomes opt-in (``if envs.VLLM_USE_FLASHINFER_SAMPLER:``, default None;
#:   0.12.0 l.35), so the sort of ``apply_top_k_top_p`` runs (0.14.0 l.262): during
#:   ``logits.sort`` the model-dtype logits (2), the float32 copy (4), the sorted values (4), the
#:   int64 indices (8), PyTorch's int64 iota of the segmented sort (8) and cub's alternate key and
#:   value buffers (4 + 8) are live: 38 B, which the January 2026 ``latest`` image logs fit.
#: - 0.17 on: ``apply_top_k_top_p`` masks in place with the Triton kernel
#:   ``apply_top_k_top_p_triton`` for 8 or more rows (0.17.0 l.251); then the float32 softmax and
#:   the exponential noise of ``random_sample``: 2 + 4 + 4 + 4 = 14 B, fitted to the 0.19 logs
#:   (14-15 fits within 0.3 GiB for dense models of 100k-262k vocabularies). 0.21 turns FlashInfer
#:   back on by default (``vllm/envs.py`` l.726) and warms the native path in a second, later call
#:   (``gpu_model_runner.py`` l.5746): 14 B at either peak. Below 8 rows the sort runs
#:   (:data:`SORT_SAMPLER_BYTES_PER_LOGIT`).
SAMPLER_BYTES_PER_LOGIT = {(0, 0): 14.0, (0, 12): 38.0, (0, 17): 14.0}
#: Bytes per logit of the sort path of ``apply_top_k_top_p`` (see :data:`SAMPLER_BYTES_PER_LOGIT`).
SORT_SAMPLER_BYTES_PER_LOGIT = 38.0
#: From 0.17, batches of fewer rows than this take the sort path instead of the Triton kernel.
TRITON_SAMPLER_MIN_ROWS = 8
#: Allocator overhead and small buffers of the profiling run (fitted, vLLM 0.19).
PROFILE_BASE_GIB = 0.1
#: Non-torch memory that appears during vLLM's profiling run, per GPU, by (single GPU, tensor
#: parallel over NVLink): 0.19 logs show 0.24-0.27 GiB alone and 2.07-2.21 GiB with tensor
#: parallelism on H100 SXM (NCCL and the custom all-reduce allocate buffers at the first
#: collective, after the memory snapshot); 0.10 logs show almost none either way (those
#: buffers came before the snapshot). Over PCIe the collective part is
#: :data:`COMM_GIB` ``["pcie"]`` instead (:func:`comm_gib`).
NON_TORCH_GIB = {(0, 11): (0.25, 2.1), (0, 0): (0.05, 0.1)}
#: CUDA-graph memory per GPU: a base plus a share per decoder layer (vLLM 0.19 logs: 0.87-1.79
#: GiB for 28-80 layers; MoE layers capture more).
CUDA_GRAPH_BASE_GIB = 0.5
CUDA_GRAPH_PER_LAYER_GIB = 0.014
CUDA_GRAPH_MOE_EXTRA_GIB = 0.3


#: V0 (0.6-0.7): bytes per (sequence x vocabulary entry) at the sampler's peak, the logits in
#: the model dtype, their float32 copy and the sort, softmax, cumsum and scatter buffers of
#: ``_apply_top_k_top_p``. Fitted on Meta-Llama-3-8B, H100, 8,192 tokens, 256 sequences: 1.26 GiB
#: logged (vllm-project/vllm#10511); it also gives the driver rank of DeepSeek-R1-Distill-Qwen-14B
#: at TP 2 (7.45 GiB of KV predicted, 81,536 tokens = 7.46 GiB allocated, vllm-project/vllm#13061).
V0_SAMPLER_BYTES_PER_LOGIT = 38.0
#: V0: bytes per token of the forward pass, in units of ``dtype * (hidden + intermediate / tp)``
#: (3: the gate-up output and activation of the MLP with the residual and hidden states). Fitted
#: on Llama-3.1-8B, RTX 3090, 20,000 and 29,000 tokens: 2.07 and 2.99 GiB logged (slope 110 KB per
#: token, vllm-project/vllm#10517).
V0_FORWARD_WIDTH = 3.0
#: V0: small buffers of the profiling run, GiB: the non-driver rank of R1-Distill-Qwen-14B at TP 2
#: (2,048 tokens, no sampler: 0.14 GiB forward) logs 0.19 GiB; the RTX 3090 starts 0.00-0.01.
V0_PROFILE_BASE_GIB = 0.03
#: Non-torch memory vLLM before 0.9 charges, GiB per GPU alone (tensor parallelism adds
#: :func:`comm_gib`), from the release on: 0.6.4 and 0.8 V1 charge all of it, the CUDA context
#: included (0.35 GiB logged on an RTX 3090, vllm-project/vllm#10517); the others only what
#: appears after the context (0.10 GiB logged on an A100 40GB, vllm-project/vllm#12330).
V0_NON_TORCH_GIB = {(0, 6, 0): 0.10, (0, 6, 4): 0.35, (0, 6, 5): 0.10, (0, 8, 0): 0.35}


def parse_version(text: object, key: str = "engine_version") -> tuple[int, int, int]:
    """``"0.19"`` -> ``(0, 19, 0)``, ``"0.6.4.post1"`` -> ``(0, 6, 4)``; a clear error otherwise."""
    parts = str(text).strip().lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
        patch = int(re.match(r"\d*", parts[2])[0] or 0) if len(parts) > 2 else 0
    except (IndexError, ValueError):
        raise ScenarioError(key, text, "must be a version such as 0.19 or 0.19.1") from None
    if major < 0 or minor < 0:
        raise ScenarioError(key, text, "must be a version such as 0.19 or 0.19.1")
    return major, minor, patch


def by_release(table: dict, version: tuple[int, ...]):
    """The entry of ``table`` (first release -> value) in force at ``version``: that of the
    newest release not after it."""
    return table[max(v for v in table if v <= tuple(version))]


def version_text(version: tuple[int, ...]) -> str:
    """``(0, 6, 4)`` -> ``"0.6.4"``."""
    return ".".join(str(part) for part in version)


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a model that set its activation memory (from its ``config.json``).

    ``intermediate_size`` is the dense MLP's width; ``moe_intermediate_size`` one expert's;
    ``activation_bytes`` the model dtype's width. ``embedding_params_b`` (embedding and output
    head) and ``expert_params_b`` (routed experts) are the parts quantised checkpoints treat
    apart; ``context_tokens`` the longest context the model supports (``max_position_embeddings``).
    ``replicated_params_b`` are weights every tensor-parallel GPU holds whole: the MoE router
    and MLA's down-projections (``q_a_proj``, ``kv_a_proj_with_mqa``), which vLLM's and SGLang's
    ``deepseek_v2.py`` build as ``ReplicatedLinear``. ``vision_params_b`` is a multimodal
    checkpoint's vision tower, which tensor parallelism splits, and ``replicated_buffers_b``
    the values every GPU holds whole besides (rotary caches, an unsplit tower), both at the
    model dtype (:mod:`kvcache_calculator.setup.vision`).
    """

    hidden_size: int
    vocab_size: int
    num_layers: int
    intermediate_size: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    activation_bytes: float = 2.0
    embedding_params_b: float = 0.0
    expert_params_b: float = 0.0
    context_tokens: int = 0
    num_attention_heads: int = 0
    replicated_params_b: float = 0.0
    vision_params_b: float = 0.0
    replicated_buffers_b: float = 0.0

    @property
    def is_moe(self) -> bool:
        """Whether the model routes tokens to experts."""
        return self.num_experts > 0 and self.experts_per_token > 0


@dataclass(frozen=True)
class EngineSettings:
    """The engine and the start-up knobs that change its KV capacity.

    ``None`` means "as the engine defaults": batch limits from the GPU's memory, SGLang's
    ``mem_fraction_static`` from its reserve rule, ``max_model_len`` from the model (its
    ``max_position_embeddings``: :attr:`ModelShape.context_tokens`).
    """

    engine: str = "vllm"
    version: tuple[int, ...] = VLLM_LATEST
    gpu_mem_util: float | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    cuda_graphs: bool = True
    activation_reserve_gib: float = 1.0
    max_model_len: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ScenarioError("engine", self.engine, f"must be one of {', '.join(ENGINES)}")
        if self.engine == "vllm" and tuple(self.version) < VLLM_OLDEST:
            raise ScenarioError("engine_version", version_text(self.version),
                                f"vLLM before {version_text(VLLM_OLDEST)} is not modelled (its profiler "
                                f"differs); the oldest supported is {version_text(VLLM_OLDEST)}")


@dataclass(frozen=True)
class MemoryBreakdown:
    """One GPU's memory at engine start-up, in GiB: where it goes, KV cache last.

    ``total_gib`` is what CUDA reports; ``budget_gib`` the engine's share (utilisation or
    ``mem_fraction_static`` times the total); ``headroom_gib`` the rest, which the CUDA context,
    NCCL and (vLLM before 0.20) CUDA graphs use. ``kv_cache_gib`` may be negative when the
    model does not fit: callers say so.
    """

    engine: str
    total_gib: float
    budget_gib: float
    weights_gib: float
    activation_gib: float
    cuda_graph_gib: float
    non_torch_gib: float
    kv_cache_gib: float
    headroom_gib: float
    gpu_mem_util: float
    max_num_batched_tokens: int = 0
    max_num_seqs: int = 0
    context_gib: float = 0.0

    @property
    def reserved_gib(self) -> float:
        """Everything the budget holds besides the KV cache."""
        return self.weights_gib + self.activation_gib + self.cuda_graph_gib + self.non_torch_gib

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


#: Bytes per weight of each stored format, scales included: int4 group-quantised (GPTQ, AWQ,
#: compressed-tensors w4a16: a 16-bit scale per 128 weights), MXFP4 (an 8-bit scale per 32
#: 4-bit weights: 4.25 bits), NVFP4 (an 8-bit scale per 16: 4.5 bits).
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5 + 2 / 128,
                "mxfp4": 4.25 / 8, "nvfp4": 4.5 / 8, "fp4": 4.5 / 8}


def weights_gib_per_gpu(params_b: float, weight_dtype: str, tp: int, *, embedding_params_b: float = 0.0,
                        expert_params_b: float = 0.0, experts_only: bool = False,
                        moe_intermediate_size: int = 0, replicated_params_b: float = 0.0) -> float:
    """The weights one GPU loads, in GiB, as a checkpoint of ``weight_dtype`` stores them.

    Quantised checkpoints keep the embedding and output head in bf16 (``embedding_params_b``
    of the ``params_b``); ``experts_only`` formats (gpt-oss's MXFP4) quantise only the
    ``expert_params_b`` routed experts, which vLLM loads padded to a multiple of 256 in the
    expert's intermediate dimension (gpt-oss-20b: 13.47 GiB logged, 13.45 predicted; 120b: 64.38
    and 64.9). Tensor parallelism splits every matrix ``tp`` ways (vLLM's vocabulary-parallel
    embedding included), except the ``replicated_params_b`` every GPU holds whole (the MoE
    router, MLA's down-projections: :class:`ModelShape`), counted at the checkpoint's width:
    DeepSeek-R1 at TP 8 holds 0.9 GiB more per GPU than an even split.
    """
    width = WEIGHT_BYTES[weight_dtype]
    if width >= 2.0:
        total = params_b * width
    elif experts_only:
        pad = math.ceil(moe_intermediate_size / 256) * 256 / moe_intermediate_size if moe_intermediate_size else 1.0
        total = expert_params_b * width * pad + (params_b - expert_params_b) * 2.0
    else:
        total = embedding_params_b * 2.0 + (params_b - embedding_params_b) * width
    replicated = replicated_params_b * (2.0 if experts_only else width) * (tp - 1)
    return (total + replicated) * 1e9 / GIB / tp


def vllm_batch_defaults(total_gib: float, gpu_name: str, version: tuple[int, ...],
                        max_model_len: int = 0) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` that ``vllm serve`` profiles at by default.

    ``EngineArgs.get_batch_defaults`` (vllm/engine/arg_utils.py): 16,384 / 1,024 on GPUs of at
    least 160 GiB (from 0.28); 8,192 / 1,024 on GPUs of at least 70 GiB whose name does not
    contain "A100"; 2,048 / 256 otherwise. 0.8 (V1, ``_set_default_args_v1``): 8,192 / 1,024 from
    70 GiB, A100 included. V0 (before 0.8) depends on ``max_model_len`` instead
    (:func:`vllm_v0_batch_defaults`).
    """
    if version < VLLM_V1_DEFAULT:
        return vllm_v0_batch_defaults(version, max_model_len, gpu_name)
    if version < VLLM_V1_PROFILER:
        return (8192, 1024) if total_gib >= 70 else (2048, 256)
    if version >= (0, 28) and total_gib >= 160:
        return 16384, 1024
    if total_gib >= 70 and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


#: GPUs on which V0 before 0.8 did not turn chunked prefill on by default (ROCm), by name.
ROCM_GPUS = r"\bmi\d|instinct|radeon|gfx9"


def vllm_v0_batch_defaults(version: tuple[int, ...], max_model_len: int, gpu_name: str = "") -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` of vLLM's V0 engine (0.6-0.7), any entry point.

    ``max_num_seqs`` 256 (``EngineArgs``). Chunked prefill is turned on when ``max_model_len``
    exceeds 32,768 (``EngineArgs.create_engine_config``; not on ROCm before 0.8), and then
    ``SchedulerConfig`` profiles 512 tokens (up to 0.6.4) or 2,048 (0.6.5 on); without it,
    ``max(max_model_len, 2048)``. (Sliding-window, multimodal, LoRA and speculative runs keep
    chunked prefill off; not distinguished here.)
    """
    rocm = re.search(ROCM_GPUS, gpu_name.lower()) is not None
    if max_model_len > 32768 and not rocm:
        return (512 if version < (0, 6, 5) else 2048), 256
    return max(max_model_len, 2048), 256


def activation_peak_v0_gib(shape: ModelShape, tokens: int, seqs: int, tp: int) -> float:
    """Estimated torch peak of vLLM V0's profiling run on the driver GPU (tensor-parallel rank 0,
    the only one that samples), in GiB.

    - forward: ``tokens * dtype * 3 * (hidden + intermediate / tp)`` (:data:`V0_FORWARD_WIDTH`);
    - sampler: ``tokens * hidden * dtype + min(tokens, seqs) * vocab * 38 B``
      (:data:`V0_SAMPLER_BYTES_PER_LOGIT`);
    - fused MoE's workspace on top, as in :func:`activation_peak_gib`.
    """
    dt = shape.activation_bytes
    forward = tokens * dt * V0_FORWARD_WIDTH * (shape.hidden_size + shape.intermediate_size / tp)
    sampler = tokens * shape.hidden_size * dt + min(tokens, seqs) * shape.vocab_size * V0_SAMPLER_BYTES_PER_LOGIT
    return (max(forward, sampler) + _moe_workspace(shape, tokens, tp)) / GIB + V0_PROFILE_BASE_GIB


def _moe_workspace(shape: ModelShape, tokens: int, tp: int) -> float:
    """Fused MoE's intermediate caches, bytes: ``min(tokens, 32768) * top_k * dtype *
    (3 * moe_intermediate / tp + hidden)``; 0 for a dense model."""
    if not shape.is_moe:
        return 0.0
    return (min(tokens, 32768) * shape.experts_per_token * shape.activation_bytes
            * (3 * shape.moe_intermediate_size / tp + shape.hidden_size))


def sampler_bytes_per_logit(version: tuple[int, ...], requests: int) -> float:
    """Bytes per (request x vocabulary entry) at the peak of vLLM V1's profiling sampler pass in
    release ``version`` over ``requests`` rows: 14 with FlashInfer (to 0.11) or Triton (0.17 on,
    8 rows or more), 38 on the sort path (0.12-0.16, and small batches from 0.17); the sources are
    in :data:`SAMPLER_BYTES_PER_LOGIT`."""
    if tuple(version) >= (0, 17) and requests < TRITON_SAMPLER_MIN_ROWS:
        return SORT_SAMPLER_BYTES_PER_LOGIT
    return by_release(SAMPLER_BYTES_PER_LOGIT, version)


def activation_peak_gib(shape: ModelShape, tokens: int, seqs: int, tp: int,
                        version: tuple[int, ...] = VLLM_LATEST) -> float:
    """Estimated torch peak of vLLM's profiling run on one GPU, in GiB.

    - forward: the widest live tensors of one decoder layer,
      ``tokens * dtype * (2 * hidden + 3 * intermediate / tp)`` (gate-up output and activation);
    - sampler: ``tokens * hidden * dtype + requests * vocab * bytes_per_logit`` with
      ``requests = min(tokens, max_num_seqs)``, the full vocabulary on every GPU, and 14 or 38 B
      per logit by release (:func:`sampler_bytes_per_logit`);
    - fused MoE keeps its workspace, ``tokens * top_k * dtype * (3 * moe_intermediate / tp +
      hidden)`` (``fused_moe``'s intermediate caches), on top of the larger of the two.
    """
    dt = shape.activation_bytes
    requests = min(tokens, seqs)
    forward = tokens * dt * (2 * shape.hidden_size + 3 * shape.intermediate_size / tp)
    sampler = tokens * shape.hidden_size * dt + requests * shape.vocab_size * sampler_bytes_per_logit(version, requests)
    return (max(forward, sampler) + _moe_workspace(shape, tokens, tp)) / GIB + PROFILE_BASE_GIB


def cuda_graph_gib(shape: ModelShape) -> float:
    """Estimated memory of vLLM's CUDA graphs on one GPU (default capture sizes), in GiB."""
    extra = CUDA_GRAPH_MOE_EXTRA_GIB if shape.is_moe else 0.0
    return CUDA_GRAPH_BASE_GIB + CUDA_GRAPH_PER_LAYER_GIB * shape.num_layers + extra


def sglang_mem_fraction_static(smi_total_mib: float, tp: int) -> float:
    """SGLang's default ``mem_fraction_static`` for a GPU of ``smi_total_mib`` (nvidia-smi MiB).

    ``(total - reserved) / total`` rounded to 3 places, with ``reserved = 512 + 1.5 *
    max(chunked_prefill, 2048) + tp / 8 * 1024 + 2 * decode_max_bs + 8 * prefill_graph_sizes``
    MiB and at least 10,240 MiB above 60 GiB (SGLang 0.5.23, the GPU memory settings of
    ``srt/arg_groups/memory_hook.py``).
    """
    gib = smi_total_mib / 1024
    if gib < 20:
        chunk, max_bs = 2048, 8
    elif gib < 35:
        chunk, max_bs = 4096, 48 if tp < 4 else 160
    elif gib < 60:
        chunk, max_bs = 4096, 32 if tp < 4 else 160
    elif gib < 160:
        chunk, max_bs = 8192, 256 if tp < 4 else 512
    else:
        chunk, max_bs = 16384, 512
    reserved = 512 + 1.5 * max(chunk, 2048) + tp / 8 * 1024 + 2 * max_bs + 8 * _prefill_graph_sizes(chunk)
    if gib > 60:
        reserved = max(reserved, 10 * 1024)
    return round((smi_total_mib - reserved) / smi_total_mib, 3)


def _prefill_graph_sizes(chunk: int) -> int:
    """How many prefill batch sizes SGLang captures CUDA graphs for, up to ``chunk`` tokens."""
    sizes = list(range(4, 33, 4)) + list(range(48, 257, 16)) + list(range(288, 513, 32))
    sizes += list(range(576, 1025, 64)) + list(range(1280, 4097, 256)) + list(range(4608, chunk + 1, 512))
    return len([s for s in sizes if s <= chunk])


#: The CUDA context and runtime of one GPU process, before any allocation (GiB). SGLang's
#: "Load weight begin. avail mem" lines put it at 0.48-0.65 GiB below CUDA's total on one GPU
#: (RTX 4090, H200, MI300X) and on PCIe-only cards at tensor parallel 4-8 (L4, A10G).
CUDA_CONTEXT_GIB = 0.5
#: Collective-communication buffers per GPU at tensor parallelism (GiB), by how the GPUs are
#: linked. NCCL's memory grows with its channel count, which it raises to reach NVLink's
#: bandwidth and keeps low over PCIe (NVIDIA/nccl#986). Measured, not derived: 1.7-2.0 GiB on
#: H100/H800 SXM at TP 8-16 (SGLang's free memory before the weights) and 1.8-2.0 GiB on H100
#: at TP 2-4 (vLLM 0.19's non-torch memory less its single-GPU 0.25); 0.0-0.2 GiB on L4 and
#: A10G at TP 4-8.
COMM_GIB = {"nvlink": 1.85, "pcie": 0.05}
#: GPUs whose tensor-parallel peers talk over PCIe only (no NVLink or Infinity Fabric links):
#: patterns on the GPU's name, lower case. Others (SXM/OAM parts, GH/GB superchips, NVL
#: bridged pairs, custom GPUs) are taken as linked.
PCIE_ONLY_GPUS = (r"\bl4\b", r"\bl40", r"\bl20\b", r"\ba10g?\b", r"\ba40\b", r"\bt4\b", r"rtx", r"geforce", r"pcie")


def gpu_link(gpu_name: str) -> str:
    """``"pcie"`` for a GPU whose tensor-parallel peers talk over PCIe only
    (:data:`PCIE_ONLY_GPUS`), else ``"nvlink"`` (NVLink, NVSwitch or AMD's Infinity Fabric)."""
    name = gpu_name.lower()
    return "pcie" if any(re.search(p, name) for p in PCIE_ONLY_GPUS) else "nvlink"


def comm_gib(gpu_name: str, tp: int) -> float:
    """Collective-communication memory per GPU at tensor parallelism ``tp`` (:data:`COMM_GIB`;
    none on one GPU)."""
    return COMM_GIB[gpu_link(gpu_name)] if tp > 1 else 0.0


def sglang_context_gib(gpu_name: str, tp: int) -> float:
    """What SGLang's base, the memory free after distributed init and before the weights load,
    lacks of CUDA's total: the CUDA context and, at tensor parallelism, NCCL's buffers."""
    return CUDA_CONTEXT_GIB + comm_gib(gpu_name, tp)


def breakdown(settings: EngineSettings, *, total_gib: float, smi_total_mib: float, gpu_name: str,
              weights_gib: float, shape: ModelShape | None, tp: int) -> MemoryBreakdown:
    """One GPU's memory at start-up under ``settings`` (see the module docstring)."""
    if settings.engine == "manual":
        util = 0.9 if settings.gpu_mem_util is None else settings.gpu_mem_util
        budget = total_gib * util
        kv = budget - weights_gib - settings.activation_reserve_gib
        return MemoryBreakdown("manual", total_gib, budget, weights_gib, settings.activation_reserve_gib, 0.0,
                               0.0, kv, total_gib - budget, util)
    if settings.engine == "sglang":
        util = (sglang_mem_fraction_static(smi_total_mib, tp) if settings.gpu_mem_util is None
                else settings.gpu_mem_util)
        context = sglang_context_gib(gpu_name, tp)
        budget = (total_gib - context) * util
        kv = budget - weights_gib
        return MemoryBreakdown("sglang", total_gib, budget, weights_gib, 0.0, 0.0, 0.0, kv,
                               total_gib - budget, util, context_gib=context)
    util = 0.9 if settings.gpu_mem_util is None else settings.gpu_mem_util
    if shape is None:
        raise ScenarioError("model", "", "needs hidden_size and vocab_size to size vLLM's profiling run")
    max_model_len = settings.max_model_len or shape.context_tokens
    default_tokens, default_seqs = vllm_batch_defaults(total_gib, gpu_name, settings.version, max_model_len)
    seqs = settings.max_num_seqs or default_seqs
    tokens = settings.max_num_batched_tokens or default_tokens
    if settings.version < VLLM_V1_PROFILER:
        # 0.6-0.8 (module docstring): no rounding up, the non-torch memory the release charges,
        # CUDA graphs captured after the KV cache, out of the headroom
        activation = (activation_peak_v0_gib(shape, tokens, seqs, tp) if settings.version < VLLM_V1_DEFAULT
                      else activation_peak_gib(shape, tokens, seqs, tp, settings.version))
        non_torch = by_release(V0_NON_TORCH_GIB, settings.version) + comm_gib(gpu_name, tp)
        graphs = 0.0
        budget = total_gib * util
    else:
        activation = activation_peak_gib(shape, tokens, seqs, tp, settings.version)
        alone, with_tp = by_release(NON_TORCH_GIB, settings.version)
        non_torch = alone if tp == 1 else (with_tp if gpu_link(gpu_name) == "nvlink" else alone + COMM_GIB["pcie"])
        graphs = cuda_graph_gib(shape) if settings.cuda_graphs and settings.version >= (0, 20) else 0.0
        budget = math.ceil(total_gib * util * GIB) / GIB
    kv = budget - weights_gib - activation - non_torch - graphs
    return MemoryBreakdown("vllm", total_gib, budget, weights_gib, activation, graphs, non_torch, kv,
                           total_gib - budget, util, tokens, seqs)

