"""A scenario resolved once: its model, its GPU and the KV-cache capacity of one instance.

:func:`resolve` is the one place where a scenario's preset ids are looked up and its
architecture and memory overrides applied. Everything downstream (the analytic model, the
sweeps and advice, the figures and the report, the simulator's default capacity, the CLI)
takes the :class:`Setup` it returns, so nothing is looked up twice and no caller can forget
a part (a model with sliding windows or linear-attention state needs its architecture
everywhere its capacity is used). :meth:`Setup.variant` resolves a what-if change of a few
keys, re-resolving only the parts those keys feed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import (
    GPU_KEYS, GQA_ONLY_KEYS, LAYER_KEYS, MLA_ONLY_KEYS, MODEL_KEYS, SIZING_KEYS, Scenario, with_updates,
)
from kvcache_calculator.setup.architecture import ModelArch, arch_from_keys, custom_key_errors
from kvcache_calculator.setup.capacity import Capacity, compute_capacity
from kvcache_calculator.setup.gpus import GPU
from kvcache_calculator.setup.hfconfig import arch_to_scenario
from kvcache_calculator.setup.presets import MODELS, get_gpu, get_model

_MODEL_KEYS = frozenset(MODEL_KEYS)
_GPU_KEYS = frozenset(GPU_KEYS)
_SIZING_KEYS = frozenset(SIZING_KEYS)


@dataclass(frozen=True)
class Setup:
    """One scenario with everything its calculations run on: the model, the GPU and the
    capacity of one serving instance."""

    scenario: Scenario
    arch: ModelArch
    gpu: GPU
    capacity: Capacity

    @property
    def sticky(self) -> bool:
        """True when a conversation stays on one instance (session affinity or one instance)."""
        return self.scenario.routing == "session" or self.scenario.instances == 1

    def variant(self, **changes) -> "Setup":
        """The setup of the scenario with ``changes`` (valid values, not re-checked): the model
        is resolved again only when a model key changes, the GPU when a GPU key does, the
        capacity when a key that sizes the cache does (:data:`~kvcache_calculator.scenario.SIZING_KEYS`).
        Raises :class:`ScenarioError` as :func:`resolve` does (e.g. GPUs that cannot split the
        KV heads)."""
        s = with_updates(self.scenario, **changes)
        arch = self.arch if _MODEL_KEYS.isdisjoint(changes) else resolve_model(s)
        gpu = self.gpu if _GPU_KEYS.isdisjoint(changes) else resolve_gpu(s)
        capacity = self.capacity if _SIZING_KEYS.isdisjoint(changes) else compute_capacity(s, arch, gpu)
        return Setup(s, arch, gpu, capacity)


def attention_key_errors(scenario: Scenario) -> list[ScenarioError]:
    """An error for each architecture key given that the model's attention kind does not use
    (MLA has no KV heads or sliding window; GQA no latent rank): refused, not ignored."""
    given = {k: v for k in GQA_ONLY_KEYS + MLA_ONLY_KEYS if (v := getattr(scenario, k)) is not None}
    if not given:
        return []
    attention = scenario.attention
    if attention is None and scenario.model != "custom":
        base = MODELS.get(scenario.model)
        if base is None:
            return []   # an unknown model is its own error
        attention = "mla" if any(g.kind == "mla" for g in base.layers) else "gqa"   # as arch_to_scenario
    attention = attention or "gqa"
    return [ScenarioError(key, given[key], f"does not apply when attention is {attention}; leave it empty")
            for key in (GQA_ONLY_KEYS if attention == "mla" else MLA_ONLY_KEYS) if key in given]


def override_key_errors(scenario: Scenario) -> list[ScenarioError]:
    """Every key a model's architecture lacks: for ``model=custom`` the required keys left
    empty; for a preset whose attention kind is overridden (``attention=gqa`` on DeepSeek-V3),
    ``attention`` itself and each key the new kind needs that the preset cannot supply (an
    MLA preset has no KV heads). Empty when the model can be built."""
    if scenario.model == "custom":
        return custom_key_errors(scenario.to_dict())
    base = MODELS.get(scenario.model)
    overrides = {k: v for k in LAYER_KEYS if (v := getattr(scenario, k)) is not None}
    if base is None or not overrides:
        return []
    own = arch_to_scenario(base)
    missing = [e for e in custom_key_errors({**own, **overrides, "params_b": base.params_b}) if e.value == ""]
    if not missing:
        return []
    kind = scenario.attention or own["attention"]
    own_kind = {"mla": "an MLA", "gqa": "a GQA"}[own["attention"]]
    why = f"is required when attention is {kind} on {scenario.model} ({own_kind} preset)"
    errors = [ScenarioError(e.key, "", why) for e in missing]
    if scenario.attention and scenario.attention != own["attention"]:
        keys = " and ".join(e.key for e in missing)
        errors.insert(0, ScenarioError("attention", scenario.attention,
                                       f"{scenario.model} is {own_kind} model: attention="
                                       f"{kind} needs {keys} as well, or leave attention empty"))
    return errors


def resolve_model(scenario: Scenario) -> ModelArch:
    """The scenario's model: a preset, with any architecture keys overriding it, or custom."""
    overrides = {k: v for k in LAYER_KEYS if (v := getattr(scenario, k)) is not None}
    params = {k: v for k in ("params_b", "active_params_b") if (v := getattr(scenario, k)) is not None}
    errors = attention_key_errors(scenario) or override_key_errors(scenario)
    if errors:
        raise errors[0]
    if scenario.model == "custom":
        return arch_from_keys({**overrides, **params})
    base = get_model(scenario.model)
    if overrides:
        merged = {**arch_to_scenario(base), **overrides, **params}
        if "params_b" not in params:
            merged["params_b"] = base.params_b
            merged.setdefault("active_params_b", base.active_params_b)
        arch = arch_from_keys(merged, name=base.name + " (modified)")
        return replace(arch, weight_dtype=base.weight_dtype, weight_format=base.weight_format, shape=base.shape)
    if params:
        total = params.get("params_b", base.params_b)
        active = params.get("active_params_b", min(base.active_params_b, total))
        return ModelArch(base.name, base.layers, total, active, base.source, base.notes,
                         base.weight_dtype, base.weight_format, base.shape)
    return base


def resolve_gpu(scenario: Scenario) -> GPU:
    """The scenario's GPU preset, or a custom one; ``gpu_memory_gib`` overrides the memory."""
    if scenario.gpu == "custom":
        if scenario.gpu_memory_gib is None:
            raise ScenarioError("gpu_memory_gib", "", "is required when gpu is custom")
        return GPU("custom", "Custom GPU", scenario.gpu_memory_gib, 0.0, 0.0, "entered by the user")
    gpu = get_gpu(scenario.gpu)
    if scenario.gpu_memory_gib is not None:
        return GPU(gpu.id, gpu.name, scenario.gpu_memory_gib, gpu.bf16_tflops, gpu.hbm_tb_s, gpu.source)
    return gpu


def resolve(scenario: Scenario) -> Setup:
    """Resolve ``scenario`` once: its model, its GPU and the capacity of one instance.

    Raises :class:`ScenarioError` naming the key when the model or GPU cannot be resolved (an
    unknown preset, a custom model missing a key, an architecture key its attention kind does
    not use) or the GPUs cannot split the model's KV heads. A model that does not fit is not an
    error: its capacity says so.
    """
    arch = resolve_model(scenario)
    gpu = resolve_gpu(scenario)
    return Setup(scenario, arch, gpu, compute_capacity(scenario, arch, gpu))
