"""The two lines vLLM prints about its KV cache after profiling (docs/engines.md §2.4)::

    GPU KV cache size: N tokens
    Maximum concurrency for M tokens per request: X.XXx

predicted from the KV memory per GPU ("Available KV cache memory"), the model's layers, the
block size and the vLLM version. Read in the released wheels' ``vllm/v1/core/kv_cache_utils.py``
(0.19.0 ``_get_kv_cache_groups_uniform_page_size`` l.959-1075, ``get_max_concurrency_for_kv_cache_config``,
``_report_kv_cache_config``; 0.33.0 ``kv_cache_planning.py`` l.416-532 and ``kv_cache_utils.py``
``get_kv_cache_capacity`` l.1120), ``vllm/v1/kv_cache_interface.py`` (page sizes and each spec's
``max_memory_usage_bytes``) and ``vllm/model_executor/models/config.py`` (0.19.0 l.230-330, the
attention block size of attention + Mamba hybrids; ``MambaModelConfig``, its cache mode).

**Groups.** Layers are bucketed by kind (full attention and MLA; sliding window of one size;
linear / Mamba). ``group_size`` is the smallest bucket's layer count, or the largest's when
that is below 1.5 times the smallest (0.19.0 l.1044-1054, also in 0.33); each bucket is cut
into ``ceil(n / group_size)`` groups, the last one padded. All groups draw block ids from one
shared pool::

    num_blocks = available_kv_bytes // (page_bytes * group_size)

where ``page_bytes`` is one layer's block: ``block_size * bytes per token and layer`` for
attention (the largest over the attention kinds; vLLM multiplies the smaller pages' block
size to match, ``unify_kv_cache_spec_page_size``), the Mamba state padded to the attention
page for linear layers. With linear layers the attention block size is raised to
``16 * ceil(state_page / (16 * attention bytes per token))`` (``attn_block_size``, 0.19.0
``config.py`` l.262-277).

**The logged token count**:

- 0.9-0.10, one group: ``num_blocks * block_size``;
- 0.9-0.10 with several groups, and 0.11-0.20: ``num_blocks // num_groups * block_size``;
- 0.21 and later: ``int(max_concurrency * max_model_len)``.

For a hybrid model it is therefore the shared pool divided by its layer groups, not the tokens
one sequence can hold.

**The V0 engine (0.6-0.7)** has no groups: ``CacheEngine.get_cache_block_size``
(``vllm/worker/cache_engine.py``, 0.6.4.post1 and 0.7.3) sizes one block over every attention
layer, sliding ones included, ``num_blocks = available // (block_size * bytes per token of all
layers)``, and the executor prints ``# GPU blocks: N, # CPU blocks: C`` (``C`` =
``swap_space``, 4 GiB by default, over the same block size) and ``Maximum concurrency for M
tokens per request: N * block_size / M`` (``vllm/executor/gpu_executor.py``). It keeps no
null block. Linear-attention models are not predicted there.

**Maximum concurrency** = ``num_blocks / sum over groups of the blocks one request of
max_model_len tokens needs``: full attention ``ceil(M / B)``; a sliding window ``w``
``ceil(min(w - 1 + max_num_batched_tokens, M) / B) + 1``; a Mamba group 1 block, 2 in the
"align" cache mode that prefix caching selects (``MambaSpec.max_memory_usage_bytes``).
vLLM turns prefix caching on for hybrid Mamba models by default from 0.26
(``ModelConfig.is_prefix_caching_supported``: 0.25.0 says hybrids do not support it, 0.26.0
that they do). ``num_blocks`` includes vLLM's null block. Llama 4's chunked local attention
is modelled as a sliding window here; vLLM's hybrid manager keeps it apart
(``VLLM_ALLOW_CHUNKED_LOCAL_ATTN_WITH_HYBRID_KV_CACHE`` defaults to 1 in 0.19-0.33) with the
chunk's own usage, ``ceil(min(chunk + max_num_batched_tokens, M) / B)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kvcache_calculator.setup.architecture import ModelArch, dtype_bytes, kv_bytes_per_token_all_layers
from kvcache_calculator.setup.engine import VLLM_V1_DEFAULT, parse_version, version_text
from kvcache_calculator.setup.resolve import Setup

GIB = 2 ** 30

#: The first vLLM release whose hybrid Mamba models have prefix caching (and so the "align"
#: Mamba cache mode) on by default.
MAMBA_PREFIX_CACHING_SINCE = (0, 26)

#: What an imported model's notes say when its sliding layers are Llama 4's chunked local
#: attention (:mod:`kvcache_calculator.setup.configjson`): a chunk, not a window, per request.
CHUNKED_NOTE = "chunked local attention"

#: The first release that logs ``int(max_concurrency * max_model_len)`` as the token count.
CONCURRENCY_TOKENS_SINCE = (0, 21)
#: The first release of the V1 engine by default (before it, the V0 engine's block count).
V1_SINCE = VLLM_V1_DEFAULT
#: The first release with V1's hybrid allocator (layer groups sharing one pool); 0.8 ran hybrid
#: models on the V0 engine (docs/engines.md §8), so no lines are predicted for them there.
HYBRID_SINCE = (0, 9)
#: V0's default ``swap_space`` (GiB), the CPU blocks of its "# CPU blocks" line.
V0_SWAP_GIB = 4


@dataclass(frozen=True)
class KVGroups:
    """vLLM's KV-cache groups for one model on one GPU.

    ``page_bytes``: one layer's block; ``group_size``: layers per group (the pool's tensors);
    ``request_blocks``: the blocks one request of ``max_model_len`` tokens needs in each group
    (one entry per group); ``block_size``: the smallest block size of the groups.
    """

    block_size: int
    page_bytes: float
    group_size: int
    request_blocks: tuple[int, ...]

    @property
    def num_groups(self) -> int:
        """How many groups share the pool."""
        return len(self.request_blocks)


@dataclass(frozen=True)
class VllmLog:
    """What vLLM would print after profiling (module docstring)."""

    version: str
    max_model_len: int
    block_size: int
    num_groups: int
    num_blocks: int
    kv_tokens: int
    max_concurrency: float

    @property
    def hybrid(self) -> bool:
        """Whether the pool is shared by several layer groups (the token count is divided)."""
        return self.num_groups > 1

    cpu_blocks: int = 0

    def lines(self) -> tuple[str, str]:
        """The two log lines, formatted as vLLM formats them (0.12 and later; V0's block counts
        before 0.8)."""
        concurrency = f"Maximum concurrency for {self.max_model_len:,} tokens per request: {self.max_concurrency:.2f}x"
        if self.cpu_blocks:
            return f"# GPU blocks: {self.num_blocks}, # CPU blocks: {self.cpu_blocks}", concurrency
        return f"GPU KV cache size: {self.kv_tokens:,} tokens", concurrency

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


def _cdiv(a: float, b: float) -> int:
    return -int(-a // b)


def kv_groups(arch: ModelArch, *, kv_dtype: str, tp: int, block_size: int, version: tuple[int, int],
              max_model_len: int, max_num_batched_tokens: int, prefix_caching: bool | None = None) -> KVGroups:
    """vLLM's groups for ``arch`` (module docstring). ``prefix_caching``: whether vLLM runs with
    prefix caching, which puts Mamba layers in the "align" mode (2 blocks per request); None:
    the version's default for hybrid Mamba models (:data:`MAMBA_PREFIX_CACHING_SINCE`)."""
    d = dtype_bytes(kv_dtype)
    buckets: dict[tuple, int] = {}
    attention_bpt = 0.0
    state_page = 0.0
    for g in arch.layers:
        if g.kind == "linear":
            key = ("linear",)
            state_page = max(state_page, g.state_bytes_per_gpu(tp))
        else:
            bpt = g.bytes_per_token(d, tp)
            attention_bpt = max(attention_bpt, bpt)
            key = ("sliding", g.window, bpt) if g.kind == "sliding" else ("full", bpt)
        buckets[key] = buckets.get(key, 0) + g.count
    block = block_size
    if state_page > 0 and attention_bpt > 0:
        align = max(16, block_size)
        block = max(block, align * _cdiv(state_page, align * attention_bpt))
    page = max(block * attention_bpt, state_page)
    counts = list(buckets.values())
    group_size = min(counts)
    if max(counts) < 1.5 * group_size:
        group_size = max(counts)
    if prefix_caching is None:
        prefix_caching = version >= MAMBA_PREFIX_CACHING_SINCE
    mamba_blocks = 2 if prefix_caching else 1
    chunked = CHUNKED_NOTE in arch.notes
    request_blocks: list[int] = []
    smallest = block
    for key, n in buckets.items():
        if key[0] == "linear":
            per = mamba_blocks
        else:
            own = int(page // key[-1]) if key[-1] > 0 else block   # a smaller page gets a larger block
            smallest = min(smallest, own)
            if key[0] == "sliding" and chunked:
                per = _cdiv(min(key[1] + max_num_batched_tokens, max_model_len), own)
            elif key[0] == "sliding":
                per = _cdiv(min(key[1] - 1 + max_num_batched_tokens, max_model_len), own) + 1
            else:
                per = _cdiv(max_model_len, own)
        request_blocks += [per] * _cdiv(n, group_size)
    return KVGroups(smallest, page, group_size, tuple(request_blocks))


def predict_log(kv_bytes: float, groups: KVGroups, version: tuple[int, int], max_model_len: int) -> VllmLog:
    """The two log lines for ``kv_bytes`` of KV memory per GPU (module docstring)."""
    num_blocks = int(kv_bytes // (groups.page_bytes * groups.group_size))
    concurrency = num_blocks / sum(groups.request_blocks)
    if version >= CONCURRENCY_TOKENS_SINCE:
        tokens = int(concurrency * max_model_len)
    else:   # 0.9-0.10 logged num_blocks * block_size for one group: the same as // 1
        tokens = num_blocks // groups.num_groups * groups.block_size
    return VllmLog(f"{version[0]}.{version[1]}", max_model_len, groups.block_size, groups.num_groups, num_blocks,
                   tokens, concurrency)


def vllm_log(arch: ModelArch, kv_gib_per_gpu: float, *, kv_dtype: str, tp: int, block_size: int,
             version: tuple[int, int], max_model_len: int, max_num_batched_tokens: int) -> VllmLog | None:
    """:func:`predict_log` for ``kv_gib_per_gpu`` GiB; None without a KV cache or a context length."""
    if kv_gib_per_gpu <= 0 or max_model_len <= 0:
        return None
    if version < V1_SINCE:
        return v0_log(arch, kv_gib_per_gpu, kv_dtype=kv_dtype, tp=tp, block_size=block_size, version=version,
                      max_model_len=max_model_len)
    groups = kv_groups(arch, kv_dtype=kv_dtype, tp=tp, block_size=block_size, version=version,
                       max_model_len=max_model_len, max_num_batched_tokens=max_num_batched_tokens)
    if groups.page_bytes <= 0 or (version < HYBRID_SINCE and groups.num_groups > 1):
        return None
    return predict_log(kv_gib_per_gpu * GIB, groups, version, max_model_len)


def v0_log(arch: ModelArch, kv_gib_per_gpu: float, *, kv_dtype: str, tp: int, block_size: int,
           version: tuple[int, ...], max_model_len: int) -> VllmLog | None:
    """What vLLM's V0 engine (before 0.8) prints: its block counts over all attention layers
    and the concurrency they give (module docstring); None for a model with linear layers."""
    if any(g.kind == "linear" for g in arch.layers):
        return None
    block_bytes = block_size * kv_bytes_per_token_all_layers(arch, kv_dtype, tp)
    num_blocks = int(kv_gib_per_gpu * GIB // block_bytes)
    tokens = num_blocks * block_size
    return VllmLog(version_text(version), max_model_len, block_size, 1, num_blocks, tokens,
                   tokens / max_model_len, int(V0_SWAP_GIB * GIB // block_bytes))


def setup_log(setup: Setup) -> VllmLog | None:
    """The lines vLLM at the scenario's ``engine_version`` would print for the resolved setup:
    its KV GiB per GPU (the memory breakdown's), ``block_size``, ``kv_dtype``, tensor
    parallelism, batch limit, and ``max_model_len`` (the scenario's, else the model's context
    length, vLLM's default). None for another engine, a capacity given as ``kv_cache_tokens``, a model that
    does not fit or whose context length is not known."""
    scenario, capacity = setup.scenario, setup.capacity
    mem = capacity.memory
    shape = setup.arch.shape
    if scenario.engine != "vllm" or capacity.derived_from != "memory" or not capacity.fits or mem is None \
            or shape is None:
        return None
    return vllm_log(setup.arch, mem.kv_cache_gib, kv_dtype=scenario.kv_dtype, tp=scenario.num_gpus,
                    block_size=scenario.block_size, version=parse_version(scenario.engine_version),
                    max_model_len=scenario.max_model_len or shape.context_tokens,
                    max_num_batched_tokens=mem.max_num_batched_tokens)
