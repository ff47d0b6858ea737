"""The original calculator's Python API, kept working.

``KVCacheCalculator(mode="classic")`` reproduces the original project's numbers exactly, with
its formulas (L = avg_conversation_length turns, S = avg_sequence_length tokens)::

    memory_per_token  = 2 * num_layers * num_kv_heads * head_dim * dtype_bytes
    available         = available_memory_gb * 1024**3 - model_size_gb * 1024**3 * 1.2
    max_cached_tokens = int(available / memory_per_token)            (0 if available <= 0)
    active            = arrival * L * within_conversation_interval
    hit_rate          = 1 - 1/L, scaled by max_cached_conversations / active when the
                        active conversations do not all fit (max_cached = max_cached_tokens / (L*S))

The default mode, ``"model"``, answers the same questions with the characteristic-time model
of docs/model.md §5: the configs are mapped onto a :class:`~kvcache_calculator.scenario.Scenario`
(a custom model and GPU, exponential think times, geometric turns, every turn adding S/L
tokens split evenly between input and output) and analysed with
:func:`~kvcache_calculator.analytic.model.analyze`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from kvcache_calculator.analytic.model import AnalyticResult, analyze, capacity_for_hit_rate
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.architecture import dtype_bytes, kv_bytes_per_token
from kvcache_calculator.setup.resolve import Setup, resolve

GIB = 1024 ** 3


class ModelDtype(Enum):
    """Weight precision of the original API."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"
    INT4 = "int4"


class KVCacheDtype(Enum):
    """KV-cache precision of the original API."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    FP8 = "fp8"
    INT8 = "int8"


_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1, "int8": 1, "int4": 0.5}


def _dtype_value(value, key: str, allowed_enum) -> str:
    raw = value.value if isinstance(value, Enum) else value
    if raw not in {m.value for m in allowed_enum}:
        raise ScenarioError(key, raw, "must be one of " + ", ".join(m.value for m in allowed_enum))
    return raw


def _positive(key: str, value, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        raise ScenarioError(key, value, "must be a finite number " + (">= 0" if allow_zero else "> 0"))
    return value


@dataclass
class ModelConfig:
    """A model as the original API described it (``model_size_gb`` of weights, in GB = GiB)."""

    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    model_dtype: ModelDtype = ModelDtype.FP16
    kvcache_dtype: KVCacheDtype = KVCacheDtype.FP16
    model_size_gb: float = 0.0

    def __post_init__(self) -> None:
        for key in ("num_layers", "num_attention_heads", "num_kv_heads", "head_dim"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ScenarioError(key, value, "must be a whole number >= 1")
        _dtype_value(self.model_dtype, "model_dtype", ModelDtype)
        _dtype_value(self.kvcache_dtype, "kvcache_dtype", KVCacheDtype)
        _positive("model_size_gb", self.model_size_gb, allow_zero=True)


@dataclass
class SystemConfig:
    """The memory available to the original calculator, in GB (= GiB)."""

    available_memory_gb: float

    def __post_init__(self) -> None:
        _positive("available_memory_gb", self.available_memory_gb)


@dataclass
class ConversationPattern:
    """The original workload: turns, arrivals/s, seconds between turns, tokens per conversation turn."""

    avg_conversation_length: float
    conversation_arrival_rate: float
    within_conversation_interval: float
    avg_sequence_length: float

    def __post_init__(self) -> None:
        # the original divided by these and crashed on 0; negative rates made nonsense
        _positive("avg_conversation_length", self.avg_conversation_length)
        _positive("conversation_arrival_rate", self.conversation_arrival_rate, allow_zero=True)
        _positive("within_conversation_interval", self.within_conversation_interval, allow_zero=True)
        _positive("avg_sequence_length", self.avg_sequence_length)


def classic_hit_rate(memory_per_token: float, available_bytes: float, pattern: ConversationPattern) -> float:
    """The original formula: ``1 - 1/L``, scaled down when active conversations do not fit."""
    L, S = pattern.avg_conversation_length, pattern.avg_sequence_length
    max_cached_tokens = int(available_bytes / memory_per_token) if available_bytes > 0 else 0
    if max_cached_tokens == 0:
        return 0.0
    max_conv = max_cached_tokens / (L * S)
    active = pattern.conversation_arrival_rate * L * pattern.within_conversation_interval
    base = 1 - 1 / L
    rate = base if active <= max_conv else base * (max_conv / active)
    return min(1.0, max(0.0, rate))


def classic_hit_rate_for_setup(setup: Setup, memory_gib: float) -> float:
    """The original calculator's answer for a resolved scenario at ``memory_gib`` of GPU memory
    per GPU.

    For the comparison trace of the hit-rate-vs-memory chart: memory is the instance's
    memory (``memory_gib * num_gpus``), the model size its weights, L the mean turns, S the
    mean tokens per turn of history (input + output), the interval the think time.
    """
    scenario, arch = setup.scenario, setup.arch
    model_gib = arch.params_b * 1e9 * dtype_bytes(scenario.weight_dtype, "weight_dtype") / GIB
    available = memory_gib * scenario.num_gpus * GIB - model_gib * GIB * 1.2
    pattern = ConversationPattern(scenario.turns, scenario.arrival_rate, scenario.think_time_s,
                                  scenario.input_tokens + scenario.output_tokens)
    return classic_hit_rate(kv_bytes_per_token(arch, scenario.kv_dtype), available, pattern)


class KVCacheCalculator:
    """The original calculator's methods. ``mode="classic"`` gives its numbers exactly;
    ``mode="model"`` (the default) uses the characteristic-time model of docs/model.md §5."""

    def __init__(self, mode: str = "model"):
        if mode not in ("model", "classic"):
            raise ScenarioError("mode", mode, "must be model or classic")
        self.mode = mode

    # --- the original formulas -------------------------------------------------------------
    def calculate_kvcache_memory_per_token(self, model: ModelConfig) -> float:
        """``2 * num_layers * num_kv_heads * head_dim * bytes`` (bytes per token)."""
        d = _BYTES[_dtype_value(model.kvcache_dtype, "kvcache_dtype", KVCacheDtype)]
        return 2 * model.num_layers * model.num_kv_heads * model.head_dim * d

    def calculate_derived_qps(self, pattern: ConversationPattern) -> float:
        """Requests per second: ``arrival * L``."""
        return pattern.conversation_arrival_rate * pattern.avg_conversation_length

    def calculate_max_cached_tokens(self, model: ModelConfig, system: SystemConfig) -> int:
        """Tokens of KV cache that fit (classic: memory minus 1.2 x the weights)."""
        if self.mode == "model":
            return self._analyze(model, system, None).capacity_tokens
        available = system.available_memory_gb * GIB - model.model_size_gb * GIB * 1.2
        return int(available / self.calculate_kvcache_memory_per_token(model)) if available > 0 else 0

    def calculate_conversation_hit_rate(self, model: ModelConfig, system: SystemConfig,
                                        pattern: ConversationPattern) -> dict:
        """Hit rate and the figures behind it (keys of the original API)."""
        L, S = pattern.avg_conversation_length, pattern.avg_sequence_length
        active = pattern.conversation_arrival_rate * L * pattern.within_conversation_interval
        if self.mode == "model":
            r = self._analyze(model, system, pattern)
            max_conv = r.capacity_tokens / (L * S)
            return {
                "hit_rate": r.token_hit_rate, "request_hit_rate": r.request_hit_rate,
                "max_token_hit_rate": r.max_token_hit_rate,
                "characteristic_time_s": r.characteristic_time_s,
                "max_cached_tokens": r.capacity_tokens,
                "max_cached_conversations": max_conv, "active_conversations": active,
                "avg_cached_conversations": min(active, max_conv),
                "cache_utilization": min(active / max_conv, 1.0) if max_conv > 0 else 0.0,
            }
        max_tokens = self.calculate_max_cached_tokens(model, system)
        if max_tokens == 0:
            return {"hit_rate": 0.0, "avg_cached_conversations": 0.0, "cache_utilization": 0.0,
                    "max_cached_tokens": 0, "active_conversations": 0}
        max_conv = max_tokens / (L * S)
        base = 1 - 1 / L
        hit = base if active <= max_conv else base * (max_conv / active)
        return {
            "hit_rate": min(1.0, max(0.0, hit)),
            "avg_cached_conversations": min(active, max_conv),
            "cache_utilization": min(active / max_conv, 1.0),
            "max_cached_tokens": max_tokens,
            "max_cached_conversations": max_conv,
            "active_conversations": active,
        }

    def calculate_detailed_metrics(self, model: ModelConfig, system: SystemConfig,
                                   pattern: ConversationPattern) -> dict:
        """The hit-rate figures plus memory and throughput figures of the original API."""
        result = self.calculate_conversation_hit_rate(model, system, pattern)
        mpt = self.calculate_kvcache_memory_per_token(model)
        qps = self.calculate_derived_qps(pattern)
        tps = qps * pattern.avg_sequence_length
        result.update({
            "memory_per_token_bytes": mpt,
            "model_memory_gb": model.model_size_gb * 1.2,
            "cache_memory_gb": result["max_cached_tokens"] * mpt / GIB,
            "derived_qps": qps,
            "tokens_per_second": tps,
            "cache_hits_per_second": tps * result["hit_rate"],
            "memory_efficiency": result["cache_utilization"],
        })
        return result

    def optimize_memory_allocation(self, model: ModelConfig, system: SystemConfig,
                                   pattern: ConversationPattern, target_hit_rate: float = 0.8) -> dict:
        """Memory needed for ``target_hit_rate``; the model mode solves the characteristic-time model."""
        if not (isinstance(target_hit_rate, (int, float)) and 0 < target_hit_rate < 1):
            raise ScenarioError("target_hit_rate", target_hit_rate, "must be a number between 0 and 1")
        current = self.calculate_conversation_hit_rate(model, system, pattern)["hit_rate"]
        if current >= target_hit_rate:
            return {"recommended_memory_gb": system.available_memory_gb, "current_hit_rate": current,
                    "achievable": True}
        if self.mode == "model":
            return self._optimize_model(model, system, pattern, target_hit_rate, current)
        L, S = pattern.avg_conversation_length, pattern.avg_sequence_length
        active = pattern.conversation_arrival_rate * L * pattern.within_conversation_interval
        mpt = self.calculate_kvcache_memory_per_token(model)
        required = active * target_hit_rate * L * S * mpt / GIB + model.model_size_gb * 1.2
        return {
            "recommended_memory_gb": required, "current_hit_rate": current,
            "target_hit_rate": target_hit_rate,
            "additional_memory_needed_gb": max(0, required - system.available_memory_gb),
            "achievable": required <= 2 * system.available_memory_gb,
        }

    # --- the model mode --------------------------------------------------------------------
    def _scenario(self, model: ModelConfig, system: SystemConfig,
                  pattern: ConversationPattern | None) -> Scenario:
        # the original subtracted 1.2 x the weights from the memory: keep that memory budget,
        # expressed as one custom GPU whose whole memory is usable
        weights_gib = model.model_size_gb
        d_w = _BYTES[_dtype_value(model.model_dtype, "model_dtype", ModelDtype)]
        params_b = max(weights_gib * GIB / d_w / 1e9, 1e-6)
        kv = _dtype_value(model.kvcache_dtype, "kvcache_dtype", KVCacheDtype)
        values = {
            "model": "custom", "num_layers": model.num_layers, "num_kv_heads": model.num_kv_heads,
            "head_dim": model.head_dim, "params_b": params_b,
            "weight_dtype": _dtype_value(model.model_dtype, "model_dtype", ModelDtype), "kv_dtype": kv,
            "gpu": "custom", "gpu_memory_gib": system.available_memory_gb, "gpu_mem_util": 1.0,
            "activation_reserve_gib": 0.2 * weights_gib, "block_size": 16, "system_prompt_tokens": 0,
        }
        if pattern is not None:
            per_turn = pattern.avg_sequence_length
            values.update({
                "turns": max(1.0, pattern.avg_conversation_length),
                "arrival_rate": max(pattern.conversation_arrival_rate, 1e-9),
                "think_time_s": max(pattern.within_conversation_interval, 1e-6),
                "input_tokens": max(1, int(round(per_turn / 2))),
                "output_tokens": max(0, int(round(per_turn - max(1, round(per_turn / 2))))),
            })
        return Scenario.from_dict(values)

    def _analyze(self, model, system, pattern) -> AnalyticResult:
        return analyze(self._scenario(model, system, pattern))

    def _optimize_model(self, model, system, pattern, target, current) -> dict:
        tokens, ceiling = capacity_for_hit_rate(resolve(self._scenario(model, system, pattern)), target)
        if tokens is None:
            return {"recommended_memory_gb": None, "current_hit_rate": current,
                    "target_hit_rate": target, "max_token_hit_rate": ceiling,
                    "additional_memory_needed_gb": None, "achievable": False}
        mpt = self.calculate_kvcache_memory_per_token(model)
        required = tokens * mpt / GIB + model.model_size_gb * 1.2
        return {"recommended_memory_gb": required, "current_hit_rate": current, "target_hit_rate": target,
                "max_token_hit_rate": ceiling,
                "additional_memory_needed_gb": max(0.0, required - system.available_memory_gb),
                "achievable": True}
