"""Everything the page and the CLI show for one scenario, as plain JSON types.

:func:`results` gives the flat result keys (the CLI's ``analyze --json``, the page's result
element ids); :func:`evaluate` takes a shared link's raw key=value pairs and adds the field
errors, suggestions and figures the page draws.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from kvcache_calculator.analytic import advice as suggestions
from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.model import AnalyticResult, analyze_setup, capacity_for_hit_rate
from kvcache_calculator.analytic.table import Analysis, prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present import figures
from kvcache_calculator.scenario import GPU_KEYS, MODEL_KEYS, Scenario
from kvcache_calculator.setup.capacity import memory_for_tokens
from kvcache_calculator.setup.architecture import custom_key_errors
from kvcache_calculator.setup.capacity import GIB
from kvcache_calculator.setup.resolve import Setup, attention_key_errors, resolve

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
    "memory_for_target_gib": ("GiB", "GPU memory per GPU for target_hit_rate at gpu_mem_util (null: above the ceiling)"),
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


def setup_results(setup: Setup, result: AnalyticResult) -> dict:
    """:func:`results` of a resolved scenario and its analysis."""
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
    tokens, _ceiling = capacity_for_hit_rate(setup, scenario.target_hit_rate)
    if tokens is not None:
        block = scenario.block_size
        tokens = math.ceil(tokens / block) * block
        out["capacity_for_target_tokens"] = tokens
        out["memory_for_target_gib"] = memory_for_tokens(scenario, capacity, tokens)
    return {k: _clean(v) for k, v in out.items()}


#: From this share of the think time, a request's service makes the routings that spread a
#: conversation's turns a weak regime of the model (benchmarks/crossval_table.py).
LONG_SERVICE = 0.3


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
    # a history waits on an instance while its conversation's turns run elsewhere: the model
    # counts think times only (tests/test_crossval.py: 2.5 points at a service of one think time)
    service = res.get("service_s") or 0.0
    if not sticky and service >= LONG_SERVICE * scenario.think_time_s:
        notes.append(f"Requests run {service:.3g} s, {service / scenario.think_time_s:.0%} of the think time, "
                     f"and {scenario.routing} routing spreads a conversation's turns over the instances: the model "
                     "counts the time a history waits on an instance as think times only, not the turns served "
                     "elsewhere meanwhile, and overestimates the hit rate (by 2.5 points at a service of one "
                     "think time; by 6.5 with lognormal think times, whose many short pauses make it "
                     "worse). Check with the simulation.")
    # the cache idle conversations can use: the pool less what running requests hold
    idle = (res.get("capacity_tokens") or 0) - (res.get("in_flight_tokens") or 0)
    if res.get("fits") and 0 < idle < 20 * max(1.0, res.get("mean_prompt_tokens") or 1.0):
        held = " beside the running requests' KV" if res.get("in_flight_tokens") else ""
        notes.append(f"The cache left{held} holds fewer than about 20 prompts: the large-cache "
                     "approximation behind the model is weak here. Check with the simulation.")
    return notes


#: Keys that only make sense together: an error in one drops the group (model, GPU).
_KEY_GROUPS = (frozenset(MODEL_KEYS), frozenset(GPU_KEYS))


def _resolved(params: Mapping[str, Any]) -> tuple[Setup, dict, list]:
    """A link's raw pairs resolved as :func:`evaluate` says: (setup, field errors, unknown keys)."""
    scenario, rejected, unknown = Scenario.from_dict_lenient(params)
    field_errors = {key: err.to_dict() for key, err in rejected.items()}
    # name every architecture problem at once, not one per attempt below
    arch_errors = attention_key_errors(scenario)
    if scenario.model == "custom":
        arch_errors += custom_key_errors(scenario.to_dict())
    for err in arch_errors:
        field_errors.setdefault(err.key, err.to_dict())
    while True:
        try:
            return resolve(scenario), field_errors, unknown
        except ScenarioError as err:
            # drop the offending key (with the keys that only make sense together with it)
            field_errors.setdefault(err.key, err.to_dict())
            group = next((g for g in _KEY_GROUPS if err.key in g), {err.key})
            kept = {k: v for k, v in scenario.changed().items() if k not in group}
            if kept == scenario.changed():
                raise
            scenario = Scenario.from_dict(kept)


def _state(setup: Setup, result: AnalyticResult, field_errors: dict, unknown: list) -> dict:
    """:func:`evaluate`'s keys that come from the analysis alone (no suggestions, no figures)."""
    scenario, arch = setup.scenario, setup.arch
    res = setup_results(setup, result)
    return {
        "scenario": scenario.to_dict(),
        "fragment": scenario.to_fragment(),
        "field_errors": field_errors,
        "unknown_keys": unknown,
        "fits": result.fits,
        "fit_message": result.message,
        "model": {"name": arch.name, "attention": arch.attention, "num_layers": arch.num_layers,
                  "params_b": arch.params_b, "active_params_b": arch.active_params_b, "source": arch.source},
        "gpu": setup.gpu.to_dict(),
        "results": res,
        "notes": model_notes(scenario, res),
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
    setup, field_errors, unknown = _resolved(params)
    analysis = prepare(setup)
    out = _state(setup, analysis.result, field_errors, unknown)
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


def evaluate_numbers(params: Mapping[str, Any]) -> tuple[dict, Setup]:
    """:func:`evaluate` without ``sensitivity_keys``, suggestions and figures (``[]`` and
    ``{}``): the analysis alone, without the hit-rate table the rest is computed from; and the
    resolved setup, for :func:`~kvcache_calculator.analytic.table.prepare` when the rest is
    wanted (:func:`suggestion_dicts`, :func:`figure`)."""
    setup, field_errors, unknown = _resolved(params)
    return _state(setup, analyze_setup(setup), field_errors, unknown), setup


def sensitivity_choice(sensitivity_key: str | None) -> str:
    """The input the sensitivity figure varies: ``sensitivity_key`` if it is sweepable, else
    the default."""
    return sensitivity_key if sensitivity_key in sweeps.SWEEPS else sweeps.DEFAULT_KEY


def suggestion_dicts(analysis: Analysis) -> list[dict]:
    """:func:`evaluate`'s ``suggestions``."""
    return [s.to_dict() for s in suggestions.suggest(analysis)]


def figure(analysis: Analysis, name: str, sensitivity_key: str | None = None) -> dict:
    """One of :func:`evaluate`'s ``figures`` alone (``name`` in :data:`CHARTS`), equal to it."""
    if name == "sensitivity":
        return figures.sensitivity(analysis, sensitivity_choice(sensitivity_key))
    drawn = {"hit_vs_memory": figures.hit_vs_memory, "tornado": figures.tornado, "heatmap": figures.heatmap,
             "memory": lambda a: figures.memory_breakdown(a.setup)}
    if name not in drawn:
        raise ScenarioError("chart", name, "must be one of " + ", ".join(CHARTS))
    return drawn[name](analysis)
