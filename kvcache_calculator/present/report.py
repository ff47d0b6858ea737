"""Everything the page and the CLI show for one scenario, as plain JSON types.

:func:`results` gives the flat result keys (the CLI's ``analyze --json``, the page's result
element ids); :func:`evaluate` takes a shared link's raw key=value pairs and adds the field
errors, suggestions and figures the page draws.
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any, Mapping

from kvcache_calculator.analytic import advice as suggestions
from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.model import AnalyticResult, analyze_setup, capacity_for_hit_rate
from kvcache_calculator.analytic.table import Analysis, prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present import figures
from kvcache_calculator.scenario import (ARCH_KEYS, FIELD_BY_KEY, GPU_KEYS, KEYS, LAYER_KEYS, MODEL_KEYS, Scenario,
                                         encode_fragment, format_value)
from kvcache_calculator.setup.capacity import smaller_weight_dtypes
from kvcache_calculator.setup.hfconfig import arch_to_scenario
from kvcache_calculator.setup.presets import GPUS, MODELS
from kvcache_calculator.setup.resolve import Setup, attention_key_errors, override_key_errors, resolve
from kvcache_calculator.setup.engine import parse_version
from kvcache_calculator.setup.vllm_log import CONCURRENCY_TOKENS_SINCE, V1_SINCE, VllmLog, setup_log

#: Result keys with their unit and a short description (README, CLI table, page labels).
RESULT_KEYS: dict[str, tuple[str, str]] = {
    "token_hit_rate": ("fraction", "prompt tokens served from the prefix cache / all prompt tokens"),
    "request_hit_rate": ("fraction", "requests whose whole reusable history was cached"),
    "max_token_hit_rate": ("fraction", "token hit rate with an infinite cache (the ceiling)"),
    "max_request_hit_rate": ("fraction", "request hit rate with an infinite cache"),
    "gpu_token_hit_rate": ("fraction", "token hit rate served from GPU memory"),
    "offload_token_hit_rate": ("fraction", "token hit rate served from the offload tier"),
    "characteristic_time_s": ("s", "idle time after which a conversation's cache is evicted (null: never)"),
    "offload_characteristic_time_s": ("s", "the same for the offload tier (null: none or never)"),
    "capacity_tokens": ("tokens", "KV-cache capacity per instance"),
    "capacity_gib": ("GiB", "KV-cache memory per instance (all its GPUs)"),
    "kv_cache_gib_per_gpu": ("GiB", "KV-cache memory per GPU"),
    "kv_bytes_per_token": ("bytes", "KV bytes per token, all layers, at kv_dtype"),
    "kv_bytes_per_token_per_gpu": ("bytes", "KV bytes per token on each GPU of an instance"),
    "kv_bytes_per_sequence_fixed_per_gpu": ("bytes", "per-sequence KV of sliding-window and linear layers, per GPU"),
    "engine": ("", "whose start-up memory accounting sized the cache (vllm, sglang, manual)"),
    "gpu_total_gib": ("GiB", "GPU memory the engine sizes from (what CUDA reports)"),
    "gpu_mem_util_used": ("fraction", "the engine's budget fraction used (gpu_memory_utilization / mem_fraction_static)"),
    "weight_dtype_used": ("", "weight format used (the scenario's, or the published checkpoint's)"),
    "weights_gib_per_gpu": ("GiB", "weights per GPU"),
    "activation_gib_per_gpu": ("GiB", "profiled activation peak per GPU (vLLM's profiling run)"),
    "cuda_graph_gib_per_gpu": ("GiB", "CUDA-graph memory taken from the KV budget per GPU (vLLM 0.20 and later)"),
    "non_torch_gib_per_gpu": ("GiB", "non-torch memory that appears during profiling per GPU (NCCL, cuBLAS)"),
    "headroom_gib_per_gpu": ("GiB", "memory outside the engine's budget per GPU (CUDA context, NCCL)"),
    "kv_budget_gib_per_gpu": ("GiB", "memory left for KV per GPU"),
    "offload_tokens": ("tokens", "offload-tier capacity per instance"),
    "vllm_log_kv_tokens": ("tokens", "the \"GPU KV cache size\" vLLM should log at engine_version (hybrid models: "
                                     "the pool divided by its layer groups)"),
    "vllm_log_max_concurrency": ("x", "the \"Maximum concurrency\" vLLM should log for vllm_log_max_model_len"),
    "vllm_log_max_model_len": ("tokens", "max_model_len of that line: the model's context length, vLLM's default"),
    "vllm_log_kv_groups": ("groups", "layer groups sharing vLLM's block pool (1: not hybrid)"),
    "vllm_log_cpu_blocks": ("blocks", "the \"# CPU blocks\" vLLM's V0 engine (before 0.8) logs: 4 GiB of swap space"),
    "request_rate": ("requests/s", "requests per second, whole fleet"),
    "request_rate_per_instance": ("requests/s", "requests per second per instance"),
    "mean_turns": ("turns", "mean turns per conversation"),
    "mean_prompt_tokens": ("tokens", "mean prompt length"),
    "prompt_tokens_per_s": ("tokens/s", "prompt tokens per second, whole fleet"),
    "hit_tokens_per_s": ("tokens/s", "prompt tokens served from cache per second, whole fleet"),
    "prefill_tflops_saved_per_s": ("TFLOP/s", "prefill compute saved, about 2 x active params per hit token"),
    "prefill_gpu_s_saved_per_s": ("GPU-s/s", "GPUs' worth of prefill compute saved at the MFU given"),
    "ttft_saved_s": ("s", "mean prefill time saved per request (compute-bound estimate)"),
    "in_flight_requests": ("requests", "requests in service per instance (Little's law, at most max_num_seqs)"),
    "in_flight_tokens": ("tokens", "KV held by running requests per instance, not evictable"),
    "in_flight_share": ("fraction", "share of the cache held by running requests"),
    "decode_tokens_per_s_used": ("tokens/s", "decode speed per sequence (given, or from the GPU's bandwidth)"),
    "ttft_s_used": ("s", "time to first token (given, or from the mean prompt and the GPU's compute)"),
    "service_s": ("s", "how long a request holds its KV: time to first token plus output / decode speed"),
    "capacity_for_target_tokens": ("tokens", "cache per instance for target_hit_rate (null: above the ceiling)"),
    "memory_for_target_gib": ("GiB", "GPU memory per GPU for target_hit_rate at gpu_mem_util, with the offload tier "
                                     "as it is (null: above the ceiling, or the capacity given as kv_cache_tokens)"),
}


def _clean(x: Any) -> Any:
    """Floats made JSON-safe: NaN/inf become None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def results(scenario: Scenario) -> dict:
    """The flat result keys of :data:`RESULT_KEYS` for ``scenario``, plus ``fits``/``message``."""
    setup = resolve(scenario)
    return setup_results(setup, analyze_setup(setup))


def setup_results(setup: Setup, result: AnalyticResult, target: bool = True) -> dict:
    """:func:`results` of a resolved scenario and its analysis; ``target=False`` leaves
    ``capacity_for_target_tokens`` and ``memory_for_target_gib`` None (their root search is a
    third of the analysis, and the page shows neither: :func:`target_results` adds them)."""
    scenario, arch, gpu, capacity = setup.scenario, setup.arch, setup.gpu, setup.capacity
    mem = capacity.memory
    flops_per_s = 2 * arch.active_params_b * 1e9 * result.hit_tokens_per_s
    peak = gpu.bf16_tflops * 1e12 * scenario.mfu
    hit_tokens_per_request = result.hit_tokens_per_s / result.request_rate if result.request_rate else 0.0
    out = {
        "fits": result.fits,
        "message": result.message,
        "token_hit_rate": result.token_hit_rate,
        "request_hit_rate": result.request_hit_rate,
        "max_token_hit_rate": result.max_token_hit_rate,
        "max_request_hit_rate": result.max_request_hit_rate,
        "gpu_token_hit_rate": result.gpu_token_hit_rate,
        "offload_token_hit_rate": result.offload_token_hit_rate,
        "characteristic_time_s": result.characteristic_time_s,
        "offload_characteristic_time_s": result.offload_characteristic_time_s,
        "capacity_tokens": capacity.capacity_tokens,
        "capacity_gib": capacity.capacity_gib,
        "kv_cache_gib_per_gpu": capacity.kv_cache_gib_per_gpu,
        "kv_bytes_per_token": capacity.kv_bytes_per_token,
        "kv_bytes_per_token_per_gpu": capacity.kv_bytes_per_token_per_gpu,
        "kv_bytes_per_sequence_fixed_per_gpu": capacity.kv_bytes_per_sequence_fixed_per_gpu,
        "engine": scenario.engine,
        "gpu_total_gib": mem.total_gib if mem else None,
        "gpu_mem_util_used": capacity.gpu_mem_util,
        "weight_dtype_used": capacity.weight_dtype,
        "weights_gib_per_gpu": capacity.weights_gib_per_gpu,
        "activation_gib_per_gpu": mem.activation_gib if mem else None,
        "cuda_graph_gib_per_gpu": mem.cuda_graph_gib if mem else None,
        "non_torch_gib_per_gpu": mem.non_torch_gib if mem else None,
        "headroom_gib_per_gpu": mem.headroom_gib if mem else None,
        "kv_budget_gib_per_gpu": capacity.kv_budget_gib_per_gpu,
        "offload_tokens": capacity.offload_tokens,
        **log_results(setup_log(setup)),
        "request_rate": result.request_rate,
        "request_rate_per_instance": result.request_rate / scenario.instances,
        "mean_turns": result.mean_turns,
        "mean_prompt_tokens": result.mean_prompt_tokens,
        "prompt_tokens_per_s": result.prompt_tokens_per_s,
        "hit_tokens_per_s": result.hit_tokens_per_s,
        "prefill_tflops_saved_per_s": flops_per_s / 1e12,
        "prefill_gpu_s_saved_per_s": flops_per_s / peak if peak > 0 else None,
        "ttft_saved_s": (2 * arch.active_params_b * 1e9 * hit_tokens_per_request / (peak * scenario.num_gpus)
                         if peak > 0 else None),
        "in_flight_requests": result.in_flight_requests,
        "in_flight_tokens": result.in_flight_tokens,
        "in_flight_share": result.in_flight_share,
        "decode_tokens_per_s_used": result.decode_tokens_per_s_used if result.fits else None,
        "ttft_s_used": result.ttft_s_used if result.fits else None,
        "service_s": result.service_s if result.fits else None,
        "in_flight_saturated": result.in_flight_saturated,
        "target_hit_rate": scenario.target_hit_rate,
        "capacity_for_target_tokens": None,
        "memory_for_target_gib": None,
        "policy_modelled": result.policy_modelled,
    }
    if target:
        out.update(target_results(setup, result))
    return {k: _clean(v) for k, v in out.items()}


def target_results(setup: Setup, result: AnalyticResult) -> dict:
    """The cache and the GPU memory per GPU that reach the scenario's ``target_hit_rate``
    (None above the ceiling), as :func:`setup_results` gives them."""
    scenario = setup.scenario
    tokens, _ceiling = capacity_for_hit_rate(setup, scenario.target_hit_rate)
    if tokens is None:
        return {"capacity_for_target_tokens": None, "memory_for_target_gib": None}
    tokens = math.ceil(tokens / scenario.block_size) * scenario.block_size
    memory = suggestions.memory_for_target_gib(scenario, setup.capacity, tokens, result.in_flight_tokens)
    return {k: _clean(v) for k, v in (("capacity_for_target_tokens", tokens), ("memory_for_target_gib", memory))}


#: What an engine does with a prompt longer than the model's context (``max_model_len``, by
#: default the config's ``max_position_embeddings``): vLLM's OpenAI server refuses it with HTTP
#: 400 ("This model's maximum context length is N tokens. However, you requested M tokens ...",
#: ``OpenAIServing._validate_input`` in vllm/entrypoints/openai/serving_engine.py).
ENGINE_ON_LONG_PROMPTS = ("vLLM refuses a request longer than max_model_len (HTTP 400, \"This model's maximum "
                          "context length is ...\"), so a client must truncate or summarise the history")
#: The same for SGLang and the manual engine: the calculator does not model their limit.
OTHER_ENGINES_ON_LONG_PROMPTS = ("The engine refuses or truncates a request longer than its context length, so a "
                                 "client must truncate or summarise the history")


def long_prompt_share(scenario: Scenario, context_tokens: int) -> tuple[int, float] | None:
    """The first turn whose prompt exceeds ``context_tokens`` and the share of requests at that
    turn or later, or None when none does (or under 0.1 % do). The prompt of turn ``n`` is
    ``system + n * input + (n - 1) * output`` tokens; with geometric turns of mean ``m`` a
    conversation reaches turn ``n`` with probability ``(1 - 1/m) ** (n - 1)``, so that share is
    the same power (docs/model.md §4)."""
    s = scenario
    room = context_tokens - s.system_prompt_tokens - s.input_tokens
    first = 1 if room < 0 else 2 + math.floor(room / (s.input_tokens + s.output_tokens))
    if s.turns_dist == "fixed":
        turns = int(s.turns)
        return (first, (turns - first + 1) / turns) if first <= turns else None
    stay = 1 - 1 / s.turns
    share = stay ** (first - 1) if first > 1 else 1.0
    return (first, share) if share >= 1e-3 else None


def scenario_warnings(setup: Setup) -> list[str]:
    """What the numbers rest on that a reader may not know: overrides in effect (the capacity
    given as ``kv_cache_tokens``, the GPU memory as ``gpu_memory_gib``), those beyond the GPU's
    physical memory, and prompts longer than the model's context length."""
    scenario, capacity, gpu = setup.scenario, setup.capacity, setup.gpu
    out = []
    preset = GPUS.get(scenario.gpu)
    if scenario.kv_cache_tokens is not None:
        out.append(f"Capacity from your override kv_cache_tokens = {scenario.kv_cache_tokens:,} tokens, not from "
                   f"the model and GPU: empty that field to derive it.")
        physical = preset or gpu       # a memory override is not physical memory
        if capacity.kv_cache_gib_per_gpu > physical.memory_gib:
            out.append(f"kv_cache_tokens = {scenario.kv_cache_tokens:,} needs {capacity.kv_cache_gib_per_gpu:,.1f} GiB "
                       f"of KV cache per GPU, more than the {physical.memory_gib:g} GiB the whole {physical.name} has: "
                       "check the figure (vLLM prints \"GPU KV cache size: N tokens\" at start-up).")
    if scenario.gpu_memory_gib is not None and preset is not None:
        out.append(f"GPU memory from your override gpu_memory_gib = {scenario.gpu_memory_gib:g} GiB, in place of the "
                   f"{preset.name}'s {preset.engine_memory_gib:g} GiB: empty that field to use the preset's.")
        if scenario.gpu_memory_gib > preset.memory_gib:
            out.append(f"gpu_memory_gib = {scenario.gpu_memory_gib:g} GiB is more than the {preset.name} has "
                       f"({preset.memory_gib:g} GiB): these numbers describe a GPU that does not exist.")
    context = setup.arch.shape.context_tokens if setup.arch.shape is not None else 0
    limit = (f"max_model_len of {scenario.max_model_len:,} tokens" if scenario.max_model_len
             else f"model's context of {context:,} tokens (max_position_embeddings)")
    context = scenario.max_model_len or context
    long = long_prompt_share(scenario, context) if context else None
    if long is not None:
        first, share = long
        out.append(f"From turn {first} on, prompts exceed the {limit}: {share:.1%} of requests. "
                   f"{ENGINE_ON_LONG_PROMPTS if scenario.engine == 'vllm' else OTHER_ENGINES_ON_LONG_PROMPTS}; "
                   "the numbers here count them as served.")
    return out


def log_results(log: VllmLog | None) -> dict:
    """The ``vllm_log_*`` result keys of :func:`setup_results` (None without a prediction)."""
    if log is None:
        return dict.fromkeys(("vllm_log_kv_tokens", "vllm_log_max_concurrency", "vllm_log_max_model_len",
                              "vllm_log_kv_groups", "vllm_log_cpu_blocks"))
    return {"vllm_log_kv_tokens": log.kv_tokens, "vllm_log_max_concurrency": log.max_concurrency,
            "vllm_log_max_model_len": log.max_model_len, "vllm_log_kv_groups": log.num_groups,
            "vllm_log_cpu_blocks": log.cpu_blocks or None}


def engine_log_line(res: Mapping[str, Any], version: str, block_size: int) -> str:
    """The two lines vLLM should print at start-up, as one sentence (from the ``vllm_log_*``
    results; the V0 engine before 0.8 prints its block counts), or "" without a prediction
    (docs/engines.md §2.4)."""
    tokens, model_len = res.get("vllm_log_kv_tokens"), res.get("vllm_log_max_model_len")
    if tokens is None or not model_len:
        return ""
    concurrency = res.get("vllm_log_max_concurrency") or 0.0
    size = (f"# GPU blocks: {tokens // block_size}, # CPU blocks: {res.get('vllm_log_cpu_blocks') or 0} "
            f"({tokens:,} tokens)" if parse_version(version) < V1_SINCE else f"GPU KV cache size: {tokens:,} tokens")
    return (f"vLLM {version} should print: {size}; Maximum concurrency for {model_len:,} tokens per request: "
            f"{concurrency:.2f}x.")


def engine_log_notes(res: Mapping[str, Any], version: str) -> list[str]:
    """What a reader comparing with vLLM's start-up lines must know: for a hybrid model, why
    its logged token count is not this page's capacity; when one ``max_model_len`` request does
    not fit, that vLLM would refuse to start (docs/engines.md §2.4)."""
    model_len = res.get("vllm_log_max_model_len")
    if res.get("vllm_log_kv_tokens") is None or not model_len:
        return []
    notes = []
    groups = res.get("vllm_log_kv_groups") or 1
    if groups > 1:
        if parse_version(version) >= CONCURRENCY_TOKENS_SINCE:
            how = (f"vLLM {version} logs max concurrency x max_model_len, which counts the blocks each "
                   f"{model_len:,}-token request also holds in the other groups")
        else:
            how = f"vLLM {version} logs that pool divided by its {groups} layer groups"
        notes.append(f"This hybrid model's layers form {groups} groups sharing one block pool. {how}, so the logged "
                     f"count is not the tokens the cache holds ({res.get('capacity_tokens') or 0:,} here): compare "
                     f"in GiB, where \"Available KV cache memory\" should read about "
                     f"{res.get('kv_budget_gib_per_gpu') or 0:.2f} GiB.")
    if (res.get("vllm_log_max_concurrency") or 0.0) < 1:
        notes.append(f"One {model_len:,}-token request needs more KV than the pool holds: vLLM would refuse to "
                     "start. Pass a smaller --max-model-len.")
    return notes


def result_notes(setup: Setup, res: Mapping[str, Any]) -> list[str]:
    """Every note shown with the results: :func:`scenario_warnings`, :func:`engine_log_notes`,
    :func:`model_notes`."""
    scenario = setup.scenario
    return scenario_warnings(setup) + engine_log_notes(res, scenario.engine_version) + model_notes(scenario, res)


def model_notes(scenario: Scenario, res: dict) -> list[str]:
    """Where the analytic model is known to be weaker, in words (cross-validation, README)."""
    notes = []
    if scenario.policy != "lru":
        notes.append(f"The analytic model describes LRU; with policy={scenario.policy} the numbers shown are "
                     "LRU's. Run the simulation for this policy.")
    T = res.get("characteristic_time_s")
    sticky = scenario.routing == "session" or scenario.instances == 1
    x = None if T is None else T / scenario.think_time_s
    # the model's hit rate steps at T = think time (non-sticky routings: at every multiple)
    if scenario.think_dist == "fixed" and x is not None and (0.5 < x < 2 if sticky else x > 0.5):
        notes.append("Fixed think times close to the characteristic time T: the hit rate changes steeply "
                     "here, with how many conversations the cache happens to hold, which the model "
                     "approximates (within 1.6 points of the simulation in its cross-validation grid, "
                     "where the simulation itself swings by several points). Check with the simulation.")
    if res.get("in_flight_saturated"):
        seqs = res.get("in_flight_requests") or 0      # max_num_seqs when saturated
        notes.append(f"Requests arrive faster than {seqs:,.0f} running sequences (max_num_seqs) can serve them "
                     f"at {res.get('service_s') or 0:.3g} s each: the engine would queue them without bound. "
                     f"The KV held by running requests is counted for {seqs:,.0f} of them.")
    elif res.get("fits") and (res.get("in_flight_share") or 0) >= 1:
        notes.append("The running requests alone hold the whole cache: only the shared system prompt, "
                     "which they pin, is left to hit.")
    # the cache idle conversations can use: the pool less what running requests hold
    idle = (res.get("capacity_tokens") or 0) - (res.get("in_flight_tokens") or 0)
    if res.get("fits") and 0 < idle < 20 * max(1.0, res.get("mean_prompt_tokens") or 1.0):
        held = " beside the running requests' KV" if res.get("in_flight_tokens") else ""
        notes.append(f"The cache left{held} holds fewer than about 20 prompts: the large-cache "
                     "approximation behind the model is weak here. Check with the simulation.")
    return notes


#: Keys that only make sense together: an error in one drops the group (model, GPU).
_KEY_GROUPS = {"model": frozenset(MODEL_KEYS), "gpu": frozenset(GPU_KEYS)}
_LAYER_KEYS = frozenset(LAYER_KEYS)


def _resolved(params: Mapping[str, Any]) -> tuple[Setup, dict, list, list]:
    """A link's raw pairs resolved as :func:`evaluate` says: (setup, field errors, unknown keys,
    substituted groups).

    A bad architecture override of a preset drops the overrides and keeps the preset (the
    link's model, with its own layers); only a model or GPU that cannot be resolved at all (an
    unknown id, an incomplete custom model) makes the group fall back to its defaults, and
    that group is listed as substituted: the numbers are then not the link's model's (or GPU's).
    """
    scenario, rejected, unknown = Scenario.from_dict_lenient(params)
    field_errors = {key: err.to_dict() for key, err in rejected.items()}
    substituted = [name for name in _KEY_GROUPS if name in rejected]
    # name every architecture problem at once, not one per attempt below
    for err in attention_key_errors(scenario) + override_key_errors(scenario):
        field_errors.setdefault(err.key, err.to_dict())
    while True:
        try:
            return resolve(scenario), field_errors, unknown, substituted
        except ScenarioError as err:
            field_errors.setdefault(err.key, err.to_dict())
            changed = scenario.changed()
            if err.key in _LAYER_KEYS and scenario.model in MODELS:
                # a preset's bad override: the preset's own layers, not another model
                kept = {k: v for k, v in changed.items() if k not in _LAYER_KEYS}
            else:
                # drop the offending key with the keys that only make sense together with it
                name = next((n for n, g in _KEY_GROUPS.items() if err.key in g), None)
                group = _KEY_GROUPS.get(name, {err.key})
                kept = {k: v for k, v in changed.items() if k not in group}
                if name and name not in substituted:
                    substituted.append(name)
            if kept == changed:
                raise
            scenario = Scenario.from_dict(kept)


def typed_link(scenario: Scenario, params: Mapping[str, Any], field_errors: Mapping[str, Any],
               substituted: list, every_error: bool = False) -> str:
    """The fragment that keeps what was typed where it could not be used, so that a link never
    silently becomes another model: the scenario's valid keys, with the invalid model keys as
    typed and, when the model was substituted (:func:`_resolved`), the whole model group as
    typed (``model=custom`` with a key missing stays custom). ``every_error`` keeps every
    invalid key as typed (a form's, whose fields show them); otherwise the other invalid keys
    take their defaults, as a link's notice says."""
    typed = {k for k in field_errors if k in FIELD_BY_KEY and (every_error or k in _KEY_GROUPS["model"])}
    for name in substituted:
        if every_error or name == "model":
            typed |= _KEY_GROUPS[name]
    values = {k: v for k, v in scenario.changed().items() if k not in typed}
    values.update({k: str(params[k]) for k in typed if k in params and str(params[k]).strip() != ""})
    return encode_fragment({k: values[k] for k in KEYS if k in values})


def _state(setup: Setup, result: AnalyticResult, params: Mapping[str, Any], field_errors: dict, unknown: list,
           substituted: list, target: bool = True) -> dict:
    """:func:`evaluate`'s keys that come from the analysis alone (no suggestions, no figures)."""
    scenario, arch = setup.scenario, setup.arch
    res = setup_results(setup, result, target)
    return {
        "scenario": scenario.to_dict(),
        "fragment": scenario.to_fragment(),
        "link": typed_link(scenario, params, field_errors, substituted),
        "field_errors": field_errors,
        "unknown_keys": unknown,
        "substituted": substituted,
        "fits": result.fits,
        "fit_message": result.message,
        "model": {"name": arch.name, "attention": arch.attention, "num_layers": arch.num_layers,
                  "params_b": arch.params_b, "active_params_b": arch.active_params_b, "source": arch.source},
        "gpu": setup.gpu.to_dict(),
        "results": res,
        "notes": result_notes(setup, res),
        "engine_log": engine_log_line(res, setup.scenario.engine_version, setup.scenario.block_size),
        "suggestions": [],
        "figures": {},
    }


def evaluate(params: Mapping[str, Any], sensitivity_key: str | None = None) -> dict:
    """The page's whole state for a link's raw ``{key: value}`` pairs (plain JSON types).

    Invalid values fall back to their defaults and are listed in ``field_errors`` (``{key:
    ScenarioError.to_dict()}``: the key, the value, what is allowed and the message); unknown
    keys in ``unknown_keys``. Never raises :class:`ScenarioError` (a failure to resolve the
    model or GPU is reported in ``field_errors`` and the defaults are used).
    """
    setup, field_errors, unknown, substituted = _resolved(params)
    analysis = prepare(setup)
    out = _state(setup, analysis.result, params, field_errors, unknown, substituted)
    # a sweepable key is honoured even where it is empty: its chart then says why (the page's
    # selector offers every key; falling back to another would plot an input nobody chose)
    key = sensitivity_choice(sensitivity_key)
    out["sensitivity_keys"] = list(sweeps.available_keys(analysis))
    out["sensitivity_key"] = key
    out["suggestions"] = suggestion_dicts(analysis)
    out["figures"] = figures.all_figures(analysis, key)
    return out


# -- the same state in parts, for a page that shows the numbers first -------------------------

#: The figures of :func:`evaluate`, by name, in the page's order.
CHARTS: tuple[str, ...] = ("hit_vs_memory", "sensitivity", "tornado", "heatmap", "memory")


def evaluate_numbers(params: Mapping[str, Any], target: bool = True) -> tuple[dict, Setup]:
    """:func:`evaluate` without ``sensitivity_keys``, suggestions and figures (``[]`` and
    ``{}``): the analysis alone, without the hit-rate table the rest is computed from; and the
    resolved setup, for :func:`~kvcache_calculator.analytic.table.prepare` when the rest is
    wanted (:func:`suggestion_dicts`, :func:`figure`). ``target=False``: without the results
    for ``target_hit_rate`` either (None; :func:`target_results`), as the page's numbers."""
    setup, field_errors, unknown, substituted = _resolved(params)
    return _state(setup, analyze_setup(setup), params, field_errors, unknown, substituted, target), setup


def sensitivity_choice(sensitivity_key: str | None) -> str:
    """The input the sensitivity figure varies: ``sensitivity_key`` if it is sweepable, else
    the default."""
    return sensitivity_key if sensitivity_key in sweeps.SWEEPS else sweeps.DEFAULT_KEY


def suggestion_dicts(analysis: Analysis) -> list[dict]:
    """:func:`evaluate`'s ``suggestions``: each with ``actions``, the concrete changes it
    proposes as ``[{"label", "changes": {key: value}}]`` (:func:`suggestion_actions`)."""
    return [{**s.to_dict(), "actions": suggestion_actions(analysis, s)} for s in suggestions.suggest(analysis)]


def _action(changes: dict) -> dict:
    """One action: the scenario ``changes`` and a label in the form's words."""
    parts = []
    for key, value in changes.items():
        field_ = FIELD_BY_KEY[key]
        text = f"{value:,g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        # the unit unless the label says it ("GPUs per instance = 4", not "... = 4 GPUs")
        unit = field_.unit if field_.unit and field_.unit.split()[0].lower() not in field_.label.lower() else ""
        parts.append(f"{field_.label} = {text}" + (f" {unit}" if unit else ""))
    return {"label": ", ".join(parts), "changes": dict(changes)}


def suggestion_actions(analysis: Analysis, suggestion: suggestions.Suggestion) -> list[dict]:
    """The scenario changes ``suggestion`` proposes, each ready to apply to the form: the fp8
    KV cache, session routing, an offload tier, or the weight format, GPUs per instance or
    instances that make the model fit or reach the goal. Empty for advice that names no
    concrete change (a target met, the ceiling, think times)."""
    s, n = analysis.scenario, suggestion.numbers
    out: list[dict] = []
    if suggestion.id == "fp8_kv":
        changes: dict = {"kv_dtype": "fp8"}
        if s.kv_cache_tokens is not None and "capacity_tokens_fp8" in n:
            changes["kv_cache_tokens"] = int(n["capacity_tokens_fp8"])
        out.append(changes)
    elif suggestion.id == "routing":
        out.append({"routing": "session"})
    elif suggestion.id == "offload" and "offload_gib" in n:
        out.append({"offload_gib": float(n["offload_gib"])})
    elif suggestion.id == "fit":
        if s.kv_cache_tokens is None:
            out += [{"weight_dtype": dtype} for dtype, _left, _published in
                    smaller_weight_dtypes(s, analysis.arch, analysis.setup.gpu)]
        if "num_gpus_to_fit_at_published_weights" in n:
            out.append({"weight_dtype": analysis.arch.weight_dtype,
                        "num_gpus": int(n["num_gpus_to_fit_at_published_weights"])})
        if "num_gpus_to_fit" in n:
            out.append({"num_gpus": int(n["num_gpus_to_fit"])})
    elif suggestion.id == "add_memory":
        if "num_gpus_for_goal" in n:
            out.append({"num_gpus": int(n["num_gpus_for_goal"])})
        if "instances_for_goal" in n:
            out.append({"instances": int(n["instances_for_goal"])})
        if "offload_gib_for_goal" in n:
            out.append({"offload_gib": float(math.ceil(n["offload_gib_for_goal"]))})
    return [_action(c) for c in out]


def architecture_values(setup: Setup) -> dict:
    """The architecture keys' values the setup's model uses (a preset's own, or the custom
    ones): what the page shows in the empty architecture fields."""
    return arch_to_scenario(setup.arch)


def form_text(value) -> str:
    """A scenario value as a form field writes it: as a link does (a whole float without its
    ".0", think_shape comma-separated)."""
    return format_value(value)


def architecture_placeholders(setup: Setup) -> list:
    """The empty architecture fields' placeholders as ``[element id, "placeholder", text]``
    changes: the values the model uses (a preset's own; :func:`architecture_values`), not
    "auto"; "required" for a custom model, "not used by this model" for a key it has no use
    for. The page writes them once Python runs, build.py into the static form before."""
    custom = setup.scenario.model == "custom"
    values = {} if custom else architecture_values(setup)
    return [[f"f-{key}", "placeholder", form_text(values.get(key)) or ("required" if custom
                                                                       else "not used by this model")]
            for key in ARCH_KEYS]


def sensitivity_keys(setup: Setup) -> tuple[str, ...]:
    """The inputs the sensitivity selector offers for this setup: every key of
    :data:`~kvcache_calculator.analytic.sweeps.NUMERIC_KEYS` except the architecture keys the
    model has no use for (MLA keys for a GQA model, head keys for an MLA one, sliding-window
    keys without sliding layers) and the activation reserve outside engine manual."""
    arch = architecture_values(setup)
    return tuple(k for k in sweeps.NUMERIC_KEYS
                 if (FIELD_BY_KEY[k].group != "model" or k in arch)
                 and (k != "activation_reserve_gib" or setup.scenario.engine == "manual"))


def measured_comparison(predicted: float, *, hits: str = "", queries: str = "", rate_percent: str = "") -> dict:
    """The prediction against an engine's measurement: vLLM's ``prefix_cache_hits`` and
    ``prefix_cache_queries`` counters (tokens, over the same window: the token hit rate is
    their ratio, docs/model.md §1), or a measured hit rate in percent. The texts are as typed
    (empty: not given); a bad one raises :class:`ScenarioError` naming it.

    Returns ``{"measured", "predicted", "gap_points", "text"}`` (rates as 0-1 fractions,
    ``gap_points`` measured minus predicted), or ``{}`` when nothing is given."""
    hits, queries, rate_percent = (str(v).strip() for v in (hits, queries, rate_percent))
    if hits or queries:
        h = _non_negative("prefix_cache_hits", hits)
        q = _non_negative("prefix_cache_queries", queries)
        if q <= 0:
            raise ScenarioError("prefix_cache_queries", queries, "must be above 0 (tokens looked up)")
        if h > q:
            raise ScenarioError("prefix_cache_hits", hits, f"must be at most prefix_cache_queries ({q:g})")
        measured = h / q
    elif rate_percent:
        measured = _non_negative("measured_hit_rate", rate_percent) / 100
        if measured > 1:
            raise ScenarioError("measured_hit_rate", rate_percent, "must be a percentage from 0 to 100")
    else:
        return {}
    gap = 100 * (measured - predicted)
    head = (f"Measured {100 * measured:.1f} %, predicted {100 * predicted:.1f} %: ")
    if abs(gap) < 2:
        text = head + ("within 2 points. The model describes this deployment; what it predicts for a change "
                       "(more memory, other routing) can be trusted as far as the workload stays alike.")
    elif gap < 0:
        text = head + (f"{-gap:.1f} points below the prediction. The engine reuses less than this workload "
                       "implies: prompts that differ earlier than modelled (a system prompt with a date or a "
                       "user id), longer pauses or more users than entered, turns spread over instances, or a "
                       "smaller cache than estimated (set KV cache size override to the engine's own figure). "
                       "Counters since start-up also count the cold start: take the difference over a window.")
    else:
        text = head + (f"{gap:.1f} points above the prediction. The engine reuses more than this workload "
                       "implies: longer shared prefixes (documents, few-shot examples, retries), more turns or "
                       "shorter pauses than entered, or a larger cache than estimated.")
    return {"measured": measured, "predicted": predicted, "gap_points": gap, "text": text}


def _non_negative(key: str, text: str) -> float:
    try:
        value = float(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise ScenarioError(key, text, "must be a number") from None
    if not math.isfinite(value) or value < 0:
        raise ScenarioError(key, text, "must be a number of at least 0")
    return value


#: The columns of :func:`export_csv`.
EXPORT_COLUMNS = ("section", "key", "value", "unit", "description")


def export_document(report: Mapping[str, Any], suggestion_list: list[dict] | None = None) -> dict:
    """One evaluation as a JSON document to download: the scenario (every key), the link's
    fragment, whether it fits, the results with their units, the notes and the suggestions."""
    results_ = report.get("results", {})
    return {
        "scenario": dict(report.get("scenario", {})),
        "fragment": report.get("fragment", ""),
        "fits": bool(report.get("fits", True)),
        "fit_message": report.get("fit_message", ""),
        "results": {k: results_.get(k) for k in RESULT_KEYS if k in results_},
        "units": {k: unit for k, (unit, _d) in RESULT_KEYS.items() if k in results_},
        "notes": list(report.get("notes", [])),
        "suggestions": [{k: s.get(k) for k in ("id", "title", "text", "numbers", "actions") if k in s}
                        for s in suggestion_list or []],
    }


def export_csv(document: Mapping[str, Any]) -> str:
    """:func:`export_document` as CSV (:data:`EXPORT_COLUMNS`): one row per scenario key, then
    one per result."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for key, value in document.get("scenario", {}).items():
        field_ = FIELD_BY_KEY.get(key)
        writer.writerow(("scenario", key, "" if value is None else value, field_.unit if field_ else "",
                         field_.label if field_ else ""))
    writer.writerow(("result", "fits", document.get("fits"), "", "the model fits in GPU memory"))
    units = document.get("units", {})
    for key, value in document.get("results", {}).items():
        writer.writerow(("result", key, "" if value is None else value, units.get(key, ""), RESULT_KEYS[key][1]))
    return out.getvalue()


def figure(analysis: Analysis, name: str, sensitivity_key: str | None = None, classic: bool = True) -> dict:
    """One of :func:`evaluate`'s ``figures`` alone (``name`` in :data:`CHARTS`), equal to it;
    ``classic`` false leaves the original formula's curve out of the hit-rate figure (the page
    computes it only when its toggle draws it)."""
    if name == "sensitivity":
        return figures.sensitivity(analysis, sensitivity_choice(sensitivity_key))
    drawn = {"hit_vs_memory": lambda a: figures.hit_vs_memory(a, classic=classic),
             "tornado": figures.tornado, "heatmap": figures.heatmap,
             "memory": lambda a: figures.memory_breakdown(a.setup)}
    if name not in drawn:
        raise ScenarioError("chart", name, "must be one of " + ", ".join(CHARTS))
    return drawn[name](analysis)
