"""Model architectures and the KV-cache bytes they need (docs/model.md §2).

A model is a tuple of :class:`LayerGroup` s, each a run of layers of one kind:

- ``"full"``: full attention (MHA, GQA, MQA). Per token and layer it stores K and V:
  ``(k_head_dim + v_head_dim) * num_kv_heads * d`` bytes, which is the familiar
  ``2 * num_kv_heads * head_dim * d`` when K and V have the same width.
- ``"mla"``: multi-head latent attention (DeepSeek-V2/V3/R1, Kimi-K2, GLM-5). One compressed
  latent per token and layer: ``(kv_lora_rank + qk_rope_head_dim) * d`` bytes, no factor 2
  (DeepSeek-V2 paper, arXiv:2405.04434, section 2.1). Replicated on every tensor-parallel GPU.
- ``"sliding"``: full attention restricted to a window of ``window`` tokens. Same bytes per
  token, but a sequence never holds more than ``window + block_size`` tokens of it.
- ``"linear"``: linear attention, Mamba or gated delta-net. Nothing per token; a constant
  recurrent state of ``state_bytes`` per sequence and layer.

Any attention group may also carry ``extra_bytes_per_token``: bytes per token and layer that do
not scale with the KV dtype and are replicated on every tensor-parallel GPU, such as the key
cache of a sparse-attention indexer (DeepSeek-V3.2, GLM-5: 128 fp8 values + one fp32 scale =
132 bytes in vLLM's ``DeepseekV32IndexerCache``).

Here ``d`` is the KV dtype width in bytes (:data:`DTYPE_BYTES`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kvcache_calculator.errors import ScenarioError

#: Bytes per element of each supported dtype (fp4/int4 pack two values per byte).
DTYPE_BYTES: dict[str, float] = {
    "fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "fp4": 0.5, "int4": 0.5,
}

LAYER_KINDS = ("full", "mla", "sliding", "linear")


def dtype_bytes(dtype: str, key: str = "kv_dtype") -> float:
    """Bytes per element of ``dtype``; raises :class:`ScenarioError` naming ``key`` if unknown."""
    try:
        return DTYPE_BYTES[dtype]
    except (KeyError, TypeError):
        raise ScenarioError(key, dtype, "must be one of " + ", ".join(DTYPE_BYTES)) from None


@dataclass(frozen=True)
class LayerGroup:
    """``count`` consecutive layers of one attention kind (see the module docstring)."""

    kind: str
    count: int
    num_kv_heads: int = 0
    k_head_dim: int = 0
    v_head_dim: int = 0
    window: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    state_bytes: float = 0.0
    extra_bytes_per_token: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ScenarioError("attention", self.kind, "layer kind must be one of " + ", ".join(LAYER_KINDS))
        if not isinstance(self.count, int) or self.count < 1:
            raise ScenarioError("num_layers", self.count, "must be a whole number >= 1")
        if self.kind in ("full", "sliding"):
            if self.num_kv_heads < 1:
                raise ScenarioError("num_kv_heads", self.num_kv_heads, "must be a whole number >= 1")
            if self.k_head_dim < 1 or self.v_head_dim < 1:
                raise ScenarioError("head_dim", self.k_head_dim, "must be a whole number >= 1")
        if self.kind == "sliding" and self.window < 1:
            raise ScenarioError("sliding_window", self.window, "must be a whole number of tokens >= 1")
        if self.kind == "mla" and self.kv_lora_rank + self.qk_rope_head_dim < 1:
            raise ScenarioError("kv_lora_rank", self.kv_lora_rank, "MLA needs kv_lora_rank + qk_rope_head_dim >= 1")
        if self.state_bytes < 0 or not math.isfinite(self.state_bytes):
            raise ScenarioError("state_bytes", self.state_bytes, "must be a finite number >= 0")
        if self.extra_bytes_per_token < 0 or not math.isfinite(self.extra_bytes_per_token):
            raise ScenarioError("extra_bytes_per_token", self.extra_bytes_per_token,
                                "must be a finite number >= 0")

    def bytes_per_token(self, d: float, tp: int = 1) -> float:
        """KV bytes one token occupies in one layer of this group, on one of ``tp`` GPUs.

        GQA heads are split over GPUs, at least one per GPU: ``max(1, num_kv_heads // tp)``
        (vLLM replicates KV heads when ``num_kv_heads < tp``); the MLA latent is replicated.
        ``extra_bytes_per_token`` (an indexer key cache) is added as is, on every GPU.
        """
        if self.kind in ("full", "sliding"):
            heads = max(1, self.num_kv_heads // tp)
            return heads * (self.k_head_dim + self.v_head_dim) * d + self.extra_bytes_per_token
        if self.kind == "mla":
            return (self.kv_lora_rank + self.qk_rope_head_dim) * d + self.extra_bytes_per_token
        return 0.0

    def state_bytes_per_gpu(self, tp: int = 1) -> float:
        """Constant recurrent state per sequence and layer (linear layers), per GPU."""
        return self.state_bytes / tp if self.kind == "linear" else 0.0


@dataclass(frozen=True)
class ModelArch:
    """A model: its layers, parameter counts (billions) and where the figures come from.

    ``weight_dtype`` is the :data:`DTYPE_BYTES` value nearest to the format the model's
    published checkpoint ships its weights in (``fp8`` for DeepSeek-V3, ``fp4`` for gpt-oss's
    MXFP4), and ``weight_format`` that format's own name when it differs from the dtype value
    (``"MXFP4"``); ``bf16`` and ``""`` for an unquantised checkpoint. They are information for
    advice ("the published checkpoint is FP8"): the scenario's ``weight_dtype`` (default
    bf16) is what sizes the weights.
    """

    name: str
    layers: tuple[LayerGroup, ...]
    params_b: float
    active_params_b: float = 0.0
    source: str = ""
    notes: str = ""
    weight_dtype: str = "bf16"
    weight_format: str = ""

    def __post_init__(self) -> None:
        dtype_bytes(self.weight_dtype, "weight_dtype")
        if not self.layers:
            raise ScenarioError("num_layers", 0, "a model needs at least one layer")
        if not (self.params_b > 0 and math.isfinite(self.params_b)):
            raise ScenarioError("params_b", self.params_b, "must be a number of billions > 0")
        if self.active_params_b == 0.0:
            object.__setattr__(self, "active_params_b", self.params_b)
        if not (0 < self.active_params_b <= self.params_b and math.isfinite(self.active_params_b)):
            raise ScenarioError("active_params_b", self.active_params_b,
                                f"must be > 0 and at most params_b ({self.params_b:g})")

    @property
    def num_layers(self) -> int:
        """Total layer count over all groups."""
        return sum(g.count for g in self.layers)

    @property
    def attention(self) -> str:
        """A one-word summary: ``mla``, ``gqa``, ``hybrid-sliding``, ``hybrid-linear`` ..."""
        kinds = {g.kind for g in self.layers}
        if kinds == {"mla"}:
            return "mla"
        if kinds == {"full"}:
            return "gqa"
        if "linear" in kinds:
            return "hybrid-linear"
        if "sliding" in kinds:
            return "hybrid-sliding" if kinds - {"sliding"} else "sliding"
        return "+".join(sorted(kinds))

    def to_dict(self) -> dict:
        """Plain JSON types."""
        d = asdict(self)
        d["layers"] = [asdict(g) for g in self.layers]
        d["num_layers"] = self.num_layers
        d["attention"] = self.attention
        return d


def kv_head_counts(arch: ModelArch) -> tuple[int, ...]:
    """The distinct KV-head counts of the layers whose heads tensor parallelism splits (full
    and sliding attention), largest first; empty for MLA and linear-state models."""
    return tuple(sorted({g.num_kv_heads for g in arch.layers if g.kind in ("full", "sliding")}, reverse=True))


def tp_splits_heads(heads: int, tp: int) -> bool:
    """vLLM's rule for ``tp`` GPUs and ``heads`` KV heads: ``heads % tp == 0`` when
    ``tp <= heads`` (each GPU holds ``heads / tp``), ``tp % heads == 0`` when ``tp > heads``
    (each head is replicated on ``tp / heads`` GPUs)."""
    return heads % tp == 0 if tp <= heads else tp % heads == 0


def valid_tensor_parallel(arch: ModelArch, tp: int) -> bool:
    """Whether ``tp`` GPUs can split every KV-head count of ``arch`` (:func:`tp_splits_heads`);
    MLA latents and linear-attention state are replicated, so they impose no rule."""
    return all(tp_splits_heads(h, tp) for h in kv_head_counts(arch))


def check_tensor_parallel(arch: ModelArch, tp: int, label: str = "") -> None:
    """Raise :class:`ScenarioError` on ``num_gpus`` when ``tp`` cannot split the KV heads of
    ``arch`` (:func:`valid_tensor_parallel`); the message names the head counts and the valid
    GPU counts. ``label`` names the model (its name by default)."""
    if valid_tensor_parallel(arch, tp):
        return
    heads = kv_head_counts(arch)
    label = label or arch.name
    top = 2 * max(heads)
    valid = [str(n) for n in range(1, top + 1) if valid_tensor_parallel(arch, n)]
    listing = ", ".join(valid) + ", ..."
    if len(heads) == 1:
        h = heads[0]
        raise ScenarioError("num_gpus", tp, f"{label} has {h} KV heads: num_gpus must divide {h} or be a "
                                            f"multiple of {h} ({listing})")
    counts = " and ".join(str(h) for h in heads)
    raise ScenarioError("num_gpus", tp, f"{label} has layers with {counts} KV heads: num_gpus must divide "
                                        f"each count or be a multiple of it ({listing})")


def kv_bytes_per_token(arch: ModelArch, kv_dtype: str = "bf16", tp: int = 1) -> float:
    """Bytes of KV cache each token of context adds, summed over the layers that grow with it.

    ``sum over full and MLA layers of bytes_per_token`` (docs/model.md §2). Sliding-window
    and linear layers are excluded: their cost is bounded per sequence
    (:func:`kv_bytes_per_sequence_fixed`). ``tp`` > 1 gives the bytes on each GPU of a
    tensor-parallel group; ``tp`` = 1 the model's own figure, as published (docs/validation.md §8).
    A model with no growing layers at all falls back to :func:`kv_bytes_per_token_all_layers`.
    """
    d = dtype_bytes(kv_dtype)
    growing = sum(g.count * g.bytes_per_token(d, tp) for g in arch.layers if g.kind in ("full", "mla"))
    if growing == 0:
        return kv_bytes_per_token_all_layers(arch, kv_dtype, tp)
    return growing


def kv_bytes_per_token_all_layers(arch: ModelArch, kv_dtype: str = "bf16", tp: int = 1) -> float:
    """Bytes per token if every attention layer (sliding ones too) held it: short contexts."""
    d = dtype_bytes(kv_dtype)
    return sum(g.count * g.bytes_per_token(d, tp) for g in arch.layers)


def kv_bytes_per_sequence_fixed(arch: ModelArch, kv_dtype: str = "bf16", tp: int = 1,
                                block_size: int = 16, seq_tokens: float | None = None) -> float:
    """Per-sequence KV bytes that do not grow without bound with the context.

    Sliding layers hold ``min(seq_tokens, window + block_size)`` tokens (all of
    ``window + block_size`` when ``seq_tokens`` is None); linear layers hold their state.
    """
    d = dtype_bytes(kv_dtype)
    total = 0.0
    for g in arch.layers:
        if g.kind == "sliding":
            held = g.window + block_size
            if seq_tokens is not None:
                held = min(held, seq_tokens)
            total += g.count * held * g.bytes_per_token(d, tp)
        elif g.kind == "linear":
            total += g.count * g.state_bytes_per_gpu(tp)
    return total


def sequence_kv_bytes(arch: ModelArch, seq_tokens: float, kv_dtype: str = "bf16", tp: int = 1,
                      block_size: int = 16) -> float:
    """All KV bytes (per GPU of ``tp``) of one cached sequence of ``seq_tokens`` tokens."""
    growing = sum(g.count * g.bytes_per_token(dtype_bytes(kv_dtype), tp)
                  for g in arch.layers if g.kind in ("full", "mla"))
    return growing * seq_tokens + kv_bytes_per_sequence_fixed(arch, kv_dtype, tp, block_size, seq_tokens)


def dense_arch(name: str, num_layers: int, num_kv_heads: int, head_dim: int, params_b: float,
               active_params_b: float = 0.0, source: str = "", v_head_dim: int = 0) -> ModelArch:
    """A model whose layers are all full attention (MHA/GQA/MQA)."""
    group = LayerGroup("full", num_layers, num_kv_heads, head_dim, v_head_dim or head_dim)
    return ModelArch(name, (group,), params_b, active_params_b, source)


def mla_arch(name: str, num_layers: int, kv_lora_rank: int, qk_rope_head_dim: int, params_b: float,
             active_params_b: float = 0.0, source: str = "") -> ModelArch:
    """A model whose layers are all MLA."""
    group = LayerGroup("mla", num_layers, kv_lora_rank=kv_lora_rank, qk_rope_head_dim=qk_rope_head_dim)
    return ModelArch(name, (group,), params_b, active_params_b, source)


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
