"""Suggestions that follow from the analytic model, each with the numbers that justify it.

One rule keeps them consistent (the original tool could advise "increase memory" and
"reduce memory" at once). With ``hit`` the token hit rate, ``ceiling`` the infinite-cache
hit rate and ``target`` the scenario's ``target_hit_rate``, the *goal* is
``min(target, ceiling - 1 point)``:

- ``hit < goal``: memory is the limit. Only then are more memory (``add_memory``), fp8 KV
  (``fp8_kv``) and an offload tier (``offload``) suggested, each with its predicted gain.
- ``hit >= target``: the target is met (``target_met``, with the memory the target needs,
  which is at most the current one).
- ``hit >= goal`` and ``ceiling - hit <= 2 points``: the ceiling, not memory, is the limit
  (``memory_not_limit``).

So ``add_memory`` never appears with ``target_met`` or ``memory_not_limit``. A suggestion
that predicts a gain is emitted only when the gain is at least half a point, and every
number it carries is finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kvcache_calculator.analytic.model import document_cache, document_window, fixed_gap_hit_probabilities
from kvcache_calculator.analytic.popularity import empirical_cdf_and_partial, lognormal_cdf_and_partial
from kvcache_calculator.analytic.sweeps import current_memory_gib, tokens_for_hit_rate
from kvcache_calculator.analytic.table import Analysis, variant_hit_rate, variant_result
from kvcache_calculator.setup.architecture import (
    DTYPE_BYTES, dtype_bytes, kv_bytes_per_token, kv_head_counts, valid_tensor_parallel,
)
from kvcache_calculator.setup.capacity import (
    GIB, fit_memory_gib, memory_for_tokens, published_weight_label, smaller_weight_dtypes, weight_dtype_hint,
    weight_dtype_sentence,
)

SEVERITIES = ("action", "info", "warning")
MIN_GAIN = 0.005            # half a point of token hit rate: below this, not worth suggesting
CEILING_GAP = 0.02          # within 2 points of the ceiling, memory is not the limit
GOAL_BELOW_CEILING = 0.01   # the goal when the target is above the ceiling: 1 point below it
MAX_OFFLOAD_GIB = 1024.0    # largest offload tier suggested per instance (CPU DRAM of one host)

#: Ids that ask for more memory or hardware, and ids that say memory could shrink or is
#: not the limit; a list never holds one of each (the contradiction test checks it).
ADD_MEMORY_IDS = frozenset({"add_memory", "fit"})
ENOUGH_MEMORY_IDS = frozenset({"target_met", "memory_not_limit"})

#: What each engine keeps in its budget besides the KV cache (the fit option's wording;
#: :func:`~kvcache_calculator.setup.engine.breakdown`).
_RESERVED = {"vllm": "weights, activations and buffers as vLLM reserves them,",
             "sglang": "weights and CUDA context as SGLang reserves them,",
             "manual": "weights and activation reserve"}


@dataclass(frozen=True)
class Suggestion:
    """One piece of advice: ``severity`` is "action", "info" or "warning"; ``numbers`` holds
    the finite values that justify it (rates as 0-1 fractions, units in the key names)."""

    id: str
    severity: str
    title: str
    text: str
    numbers: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"id": self.id, "severity": self.severity, "title": self.title, "text": self.text,
                "numbers": dict(self.numbers)}


def _p(rate: float) -> str:
    return f"{100 * rate:.1f}%"


def _gib(v: float) -> str:
    return f"{v:,.1f} GiB"


def _clean(numbers: dict) -> dict:
    """Drop None and non-finite values; round floats for display stability."""
    out = {}
    for k, v in numbers.items():
        if v is None or isinstance(v, bool):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                continue
            v = round(v, 6)
        out[k] = v
    return out


def _make(id_: str, severity: str, title: str, text: str, **numbers) -> Suggestion:
    return Suggestion(id_, severity, title, text, _clean(numbers))


def _gpu_counts_above(arch, current: int, limit: int = 1024) -> list[int]:
    """GPU counts per instance to try above ``current``, smallest first: its doublings, and,
    for a model whose KV heads tensor parallelism splits, the divisors of their least common
    multiple and its doublings; only counts that split the heads
    (:func:`~kvcache_calculator.setup.architecture.valid_tensor_parallel`)."""
    counts = set()
    n = current * 2
    while n <= limit:
        counts.add(n)
        n *= 2
    heads = kv_head_counts(arch)
    if heads:
        lcm = math.lcm(*heads)
        counts.update(d for d in range(1, min(lcm, limit) + 1) if lcm % d == 0)
        n = lcm
        while n <= limit:
            counts.add(n)
            n *= 2
    return sorted(n for n in counts if current < n <= limit and valid_tensor_parallel(arch, n))


def _num_gpus_to_fit(analysis: Analysis, **changes) -> int | None:
    """Fewest GPUs per instance of :func:`_gpu_counts_above` at which the model fits with
    ``changes``; None up to 1024."""
    s = analysis.scenario
    for n in _gpu_counts_above(analysis.arch, s.num_gpus):
        if analysis.setup.variant(num_gpus=n, **changes).capacity.fits:
            return n
    return None


def _fit(analysis: Analysis) -> list[Suggestion]:
    """What makes the model fit: the published checkpoint's weight format (FP8 for DeepSeek-V3,
    MXFP4 for gpt-oss) first, a smaller weight dtype, more memory per GPU, more GPUs per
    instance."""
    s, cap, arch = analysis.scenario, analysis.capacity, analysis.arch
    need = fit_memory_gib(s, cap)
    numbers = dict(weights_gib_per_gpu=cap.weights_gib_per_gpu, usable_gib_per_gpu=cap.usable_gib_per_gpu,
                   reserved_gib_per_gpu=cap.reserved_gib_per_gpu, gpu_memory_gib=analysis.setup.gpu.engine_memory_gib,
                   min_gpu_memory_gib=need)
    options = []
    dtypes = smaller_weight_dtypes(s, arch, analysis.setup.gpu) if s.kv_cache_tokens is None else []
    for dtype, left, published in dtypes:
        hit = variant_hit_rate(analysis, weight_dtype=dtype)
        if published:
            numbers.update(published_weight_bytes=DTYPE_BYTES[dtype], kv_gib_per_gpu_at_published_weights=left,
                           hit_rate_at_published_weights=hit)
        else:
            numbers.update(weight_bytes_to_fit=DTYPE_BYTES[dtype], kv_gib_per_gpu_at_weight_dtype=left,
                           hit_rate_at_weight_dtype=hit)
        if dtype == "fp8":
            numbers.update(hit_rate_with_fp8_weights=hit)
        options.append(f"{weight_dtype_sentence(dtype, left, published, arch)}, for a token hit rate of {_p(hit)}")
    n = _num_gpus_to_fit(analysis) if s.kv_cache_tokens is None else None
    published = arch.weight_dtype
    if s.kv_cache_tokens is None and DTYPE_BYTES[published] < DTYPE_BYTES[cap.weight_dtype] \
            and not any(p for _d, _l, p in dtypes):
        # the published format alone is not enough: with how many GPUs it fits
        m = _num_gpus_to_fit(analysis, weight_dtype=published)
        if m is not None and (n is None or m < n):
            hit = variant_hit_rate(analysis, num_gpus=m, weight_dtype=published)
            numbers.update(num_gpus_to_fit_at_published_weights=m, hit_rate_at_published_weights=hit)
            options.append(f"the published checkpoint is {published_weight_label(arch)}: weight_dtype={published} "
                           f"with num_gpus={m} fits, for a token hit rate of {_p(hit)}")
    options.append(f"a GPU with more than {_gib(need)} ({_RESERVED[s.engine]} at gpu_mem_util {cap.gpu_mem_util:g})")
    if n is not None:
        hit = variant_hit_rate(analysis, num_gpus=n)
        numbers.update(num_gpus_to_fit=n, hit_rate_at_num_gpus=hit)
        options.append(f"num_gpus={n} (tensor parallel), for a token hit rate of {_p(hit)}")
    # the capacity message's weight-dtype hint is repeated, with hit rates, as the first options
    message = cap.message.removesuffix(weight_dtype_hint(s, arch, analysis.setup.gpu))
    text = f"{message} Options: " + "; ".join(options) + "."
    return [_make("fit", "action", "Make the model fit", text, **numbers)]


def _memory_advice(analysis: Analysis, hit: float, ceiling: float, target: float) -> tuple[list[Suggestion], bool]:
    """Target, add-memory, target-met and ceiling suggestions; returns them and whether memory
    is the limit (hit below the goal)."""
    s, cap = analysis.scenario, analysis.capacity
    out: list[Suggestion] = []
    goal = min(target, ceiling - GOAL_BELOW_CEILING)
    cur_mem = current_memory_gib(analysis)
    if target >= ceiling - 1e-9:
        why = ("the first prompt of every conversation misses (except the shared system prompt), so no amount "
               "of memory reaches it. Shorten the gap with more turns per conversation or a longer shared prefix.")
        session_ceiling = (None if analysis.setup.sticky
                           else variant_result(analysis, routing="session").max_token_hit_rate)
        if session_ceiling is not None and session_ceiling - ceiling >= MIN_GAIN:
            why = (f"with {s.routing.replace('_', '-')} routing a turn that lands on another instance than the last "
                   f"misses its history, so no amount of memory reaches it. Session routing raises the ceiling "
                   f"to {_p(session_ceiling)}.")
        out.append(_make("target_unreachable", "warning", "The target is above the ceiling",
                         f"The target of {_p(target)} is above {_p(ceiling)}, the hit rate of an infinite cache: "
                         + why, target_hit_rate=target, ceiling=ceiling, token_hit_rate=hit))
    memory_limited = hit < goal and goal > 0
    if memory_limited:
        need_tokens = tokens_for_hit_rate(analysis, goal)
        if need_tokens is not None and need_tokens > cap.capacity_tokens:
            need_mem = memory_for_tokens(s, cap, need_tokens)
            extra = max(0.0, need_mem - cur_mem)
            what = (f"the target of {_p(target)}" if goal == target
                    else f"{_p(goal)} (one point below the ceiling)")
            numbers = dict(goal_hit_rate=goal, token_hit_rate=hit, capacity_tokens=cap.capacity_tokens,
                           capacity_tokens_for_goal=int(math.ceil(need_tokens)),
                           gpu_memory_gib=cur_mem, gpu_memory_gib_for_goal=need_mem,
                           extra_gib_per_gpu=extra, capacity_factor=need_tokens / max(1, cap.capacity_tokens))
            if cap.derived_from == "kv_cache_tokens":
                # the capacity is the engine's own figure: say it in tokens, not in a GPU memory
                # inferred from it (whose difference to the real GPU would mislead)
                options = [f"an engine capacity of {int(math.ceil(need_tokens)):,} tokens per instance "
                           "(kv_cache_tokens), e.g. from more GPU memory or a smaller KV dtype"]
            else:
                options = [f"{_gib(need_mem)} of GPU memory per GPU (+{_gib(extra)})"]
            if cap.derived_from == "memory":
                for n in _gpu_counts_above(analysis.arch, s.num_gpus):
                    vcap = analysis.setup.variant(num_gpus=n).capacity
                    if vcap.fits and vcap.capacity_tokens >= need_tokens:
                        numbers["num_gpus_for_goal"] = n
                        options.append(f"num_gpus={n} per instance")
                        break
            if s.routing == "session":
                inst = _instances_for(analysis, goal)
                if inst is not None:
                    numbers["instances_for_goal"] = inst
                    options.append(f"{inst:,} instances with session routing")
            if cap.offload_tokens > 0:
                off_gib = need_tokens * cap.kv_bytes_per_token / GIB
                numbers["offload_gib_for_goal"] = off_gib
                options.append(f"an offload tier of {_gib(off_gib)} per instance")
            out.append(_make("add_memory", "action", f"More cache for {_p(goal)}",
                             f"The cache holds {cap.capacity_tokens:,} tokens per instance; {what} needs about "
                             f"{int(math.ceil(need_tokens)):,} ({need_tokens / max(1, cap.capacity_tokens):,.1f}x). "
                             "Options: " + "; ".join(options) + ".", **numbers))
    if hit >= target and target < ceiling:
        need_tokens = tokens_for_hit_rate(analysis, target)
        if need_tokens is not None:
            need = int(math.ceil(need_tokens))
            numbers = dict(target_hit_rate=target, token_hit_rate=hit, capacity_tokens_for_target=need)
            text = (f"The token hit rate of {_p(hit)} meets the {_p(target)} target. The target needs about "
                    f"{need:,} tokens of cache per instance")
            need_mem = memory_for_target_gib(s, cap, need_tokens, analysis.in_flight_tokens)
            if need_mem is None:
                # the engine's own capacity: say it in tokens, not in a GPU memory inferred from it
                text += (f"; the engine's capacity (kv_cache_tokens) is {cap.capacity_tokens:,}, "
                         f"{max(0, cap.capacity_tokens - need):,} more than that.")
            else:
                spare = max(0.0, cur_mem - need_mem)
                numbers.update(gpu_memory_gib_for_target=need_mem, spare_gib_per_gpu=spare)
                held = " (the offload tier holds the rest)" if cap.offload_tokens >= need_tokens else ""
                text += (f", {_gib(need_mem)} of GPU memory per GPU{held}: {_gib(spare)} per GPU could go to "
                         "something else (e.g. a lower gpu_mem_util or a smaller GPU).")
            out.append(_make("target_met", "info", "The target is met", text, **numbers))
    if not memory_limited and ceiling - hit <= CEILING_GAP:
        numbers = dict(token_hit_rate=hit, ceiling=ceiling, gap_points=100 * (ceiling - hit),
                       mean_turns=analysis.result.mean_turns)
        keep = hit - GOAL_BELOW_CEILING
        extra_text = ""
        if keep > 0 and cap.offload_tokens == 0:
            tokens = tokens_for_hit_rate(analysis, keep)
            mem = None if tokens is None else memory_for_target_gib(s, cap, tokens)
            if tokens is not None and tokens < cap.capacity_tokens and mem is None:
                numbers.update(capacity_tokens_one_point_lower=int(math.ceil(tokens)))
                extra_text = (f" {int(math.ceil(tokens)):,} tokens of cache per instance would still give "
                              f"{_p(keep)} (one point less).")
            elif tokens is not None and tokens < cap.capacity_tokens:
                numbers.update(gpu_memory_gib_one_point_lower=mem, spare_gib_per_gpu=max(0.0, cur_mem - mem))
                extra_text = (f" {_gib(mem)} per GPU would still give {_p(keep)} "
                              f"(one point less).")
        turns = analysis.result.mean_turns
        cause = (f"The ceiling is set by the conversations: with {turns:.3g} turn{'' if turns == 1 else 's'} "
                 "on average, first prompts miss.")
        if not analysis.setup.sticky:
            # a turn served by another instance than the last misses its history: routing, not
            # the conversations, sets this ceiling when session routing would lift it
            session = variant_result(analysis, routing="session")
            if session.max_token_hit_rate - ceiling >= MIN_GAIN:
                numbers.update(ceiling_session=session.max_token_hit_rate,
                               token_hit_rate_session=session.token_hit_rate)
                cause = (f"The ceiling is set by {s.routing.replace('_', '-')} routing: a turn that lands on "
                         f"another of the {s.instances} instances than the last misses its history. Session "
                         f"routing would raise the ceiling to {_p(session.max_token_hit_rate)} and the hit rate "
                         f"to {_p(session.token_hit_rate)}.")
        out.append(_make("memory_not_limit", "info", "The ceiling, not memory, is the limit",
                         f"The token hit rate {_p(hit)} is within {100 * (ceiling - hit):.1f} points of the "
                         f"{_p(ceiling)} an infinite cache would give. {cause} More memory, "
                         f"fp8 KV or offloading would add little." + extra_text, **numbers))
    return out, memory_limited


def memory_for_target_gib(scenario, capacity, need_tokens: float, in_flight_tokens: float = 0.0) -> float | None:
    """GPU memory per GPU (GiB) at which the cache still gives the hit rate ``need_tokens`` of
    cache per instance give, the engine's other terms held: None when the capacity is the
    engine's own figure (``kv_cache_tokens``: no GPU memory follows from it). An offload tier,
    written through, serves every hit of the larger of its capacity and the GPU's, so once it
    holds ``need_tokens`` the GPU needs room only for the running requests' KV."""
    if capacity.derived_from == "kv_cache_tokens":
        return None
    block = scenario.block_size
    gpu_tokens = need_tokens
    if capacity.offload_tokens >= need_tokens:
        gpu_tokens = max(block, math.ceil(in_flight_tokens / block) * block)
    return memory_for_tokens(scenario, capacity, min(gpu_tokens, need_tokens))


def _instances_for(analysis: Analysis, goal: float) -> int | None:
    """Fewest instances (session routing, per-instance load arrival_rate / I) reaching ``goal``."""
    lo = analysis.scenario.instances
    hi = lo * 2
    while variant_hit_rate(analysis, instances=hi) < goal:
        hi *= 2
        if hi > 100_000:
            return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if variant_hit_rate(analysis, instances=mid) >= goal:
            hi = mid
        else:
            lo = mid
    return hi


def _fp8(analysis: Analysis, hit: float) -> list[Suggestion]:
    s, cap = analysis.scenario, analysis.capacity
    if dtype_bytes(s.kv_dtype) <= 1:
        return []
    old = kv_bytes_per_token(analysis.arch, s.kv_dtype, s.num_gpus)
    new = kv_bytes_per_token(analysis.arch, "fp8", s.num_gpus)
    factor = old / new
    changes = {"kv_dtype": "fp8"}
    if s.kv_cache_tokens is not None:
        changes["kv_cache_tokens"] = int(s.kv_cache_tokens * factor)
    vr = variant_result(analysis, **changes)
    gain = vr.token_hit_rate - hit
    if gain < MIN_GAIN:
        return []
    return [_make("fp8_kv", "action", f"fp8 KV cache: {_p(hit)} -> {_p(vr.token_hit_rate)}",
                  f"Storing the KV cache in fp8 instead of {s.kv_dtype} holds {factor:.2g}x the tokens "
                  f"({cap.capacity_tokens:,} -> {vr.capacity_tokens:,} per instance) and raises the token hit "
                  f"rate from {_p(hit)} to {_p(vr.token_hit_rate)} (+{100 * gain:.1f} points). vLLM: "
                  "--kv-cache-dtype fp8; check the accuracy of your model with it.",
                  capacity_factor=vr.capacity_tokens / max(1, cap.capacity_tokens),
                  capacity_tokens=cap.capacity_tokens, capacity_tokens_fp8=vr.capacity_tokens,
                  token_hit_rate=hit, token_hit_rate_fp8=vr.token_hit_rate, gain_points=100 * gain)]


def _offload(analysis: Analysis, hit: float, ceiling: float) -> list[Suggestion]:
    s, cap, r = analysis.scenario, analysis.capacity, analysis.result
    if s.offload_gib > 0:
        if r.offload_token_hit_rate <= 0:
            return [_make("offload_in_use", "info", "The offload tier adds nothing",
                          f"Its {cap.offload_tokens:,} tokens are no more than the GPU cache's "
                          f"{cap.capacity_tokens:,}: a write-through second tier must be larger to help.",
                          offload_gib=s.offload_gib, offload_tokens=cap.offload_tokens,
                          capacity_tokens=cap.capacity_tokens)]
        return [_make("offload_in_use", "info", f"The offload tier serves {_p(r.offload_token_hit_rate)}",
                      f"Of the {_p(hit)} token hit rate, {_p(r.gpu_token_hit_rate)} comes from GPU memory and "
                      f"{_p(r.offload_token_hit_rate)} from the {s.offload_gib:g} GiB offload tier, whose hits "
                      "are copied back over the host link before prefill.",
                      gpu_token_hit_rate=r.gpu_token_hit_rate, offload_token_hit_rate=r.offload_token_hit_rate,
                      offload_gib=s.offload_gib)]
    tokens = tokens_for_hit_rate(analysis, ceiling - GOAL_BELOW_CEILING)
    if tokens is None or tokens <= cap.capacity_tokens:
        return []
    gib = min(MAX_OFFLOAD_GIB, math.ceil(tokens * cap.kv_bytes_per_token / GIB))
    new_hit = variant_hit_rate(analysis, offload_gib=float(gib))
    gain = new_hit - hit
    if gain < MIN_GAIN:
        return []
    return [_make("offload", "action", f"CPU offload tier: {_p(hit)} -> {_p(new_hit)}",
                  f"A second cache tier of {gib:g} GiB of CPU memory per instance (LMCache, vLLM's offloading "
                  f"connector) holds about {int(gib * GIB // cap.kv_bytes_per_token):,} tokens and raises the token "
                  f"hit rate from {_p(hit)} to {_p(new_hit)} (+{100 * gain:.1f} points), if loading a hit back "
                  "over the host link is faster than recomputing it (usually true for long prefixes).",
                  offload_gib=float(gib), token_hit_rate=hit, token_hit_rate_offload=new_hit,
                  gain_points=100 * gain)]


def _routing(analysis: Analysis, hit: float) -> list[Suggestion]:
    s = analysis.scenario
    if s.instances <= 1:
        return []
    if s.routing != "session":
        vr = variant_result(analysis, routing="session")
        gain = vr.token_hit_rate - hit
        if gain < MIN_GAIN:
            return []
        return [_make("routing", "action", f"Session affinity: {_p(hit)} -> {_p(vr.token_hit_rate)}",
                      f"With {s.routing.replace('_', '-')} routing a conversation's turns spread over {s.instances} "
                      f"instances and often miss their history. Routing each conversation to one instance "
                      f"(sticky sessions, prefix-aware routing) raises the token hit rate from {_p(hit)} to "
                      f"{_p(vr.token_hit_rate)} (+{100 * gain:.1f} points).",
                      instances=s.instances, token_hit_rate=hit, token_hit_rate_session=vr.token_hit_rate,
                      gain_points=100 * gain)]
    vr = variant_result(analysis, routing="random")
    loss = hit - vr.token_hit_rate
    if loss < MIN_GAIN:
        return []
    return [_make("session_affinity_value", "info", f"Session affinity is worth {100 * loss:.1f} points",
                  f"Keep routing by session: spreading turns at random over the {s.instances} instances would "
                  f"lower the token hit rate from {_p(hit)} to {_p(vr.token_hit_rate)}.",
                  instances=s.instances, token_hit_rate=hit, token_hit_rate_random=vr.token_hit_rate,
                  loss_points=100 * loss)]


def _think_time(analysis: Analysis, memory_limited: bool) -> list[Suggestion]:
    s, r = analysis.scenario, analysis.result
    theta = s.think_time_s
    T = r.characteristic_time_s
    if T is None:
        return [_make("think_time", "info", "Nothing is ever evicted",
                      "The cache holds every conversation for good: the characteristic time is unbounded.",
                      think_time_s=theta)]
    if s.think_dist == "fixed":
        smoothed = fixed_gap_hit_probabilities(analysis.terms, T, theta, analysis.terms.traffic.conv_rate_per_instance)
        kept = smoothed[0] if smoothed else 1.0 if theta < T else 0.0
    elif s.think_dist == "lognormal":
        kept = lognormal_cdf_and_partial(T, theta, s.think_sigma)[0]
    elif s.think_dist == "empirical":
        kept = empirical_cdf_and_partial(T, theta, analysis.terms.gap_shape)[0]
    else:
        kept = -math.expm1(-T / theta)
    numbers = dict(characteristic_time_s=T, think_time_s=theta, ratio=T / theta, history_kept_fraction=kept)
    how = " More cache per instance raises T." if memory_limited else ""
    if s.think_dist == "fixed" and abs(T - theta) <= 0.25 * theta:
        return [_make("think_time", "warning", "Fixed think time close to T: check with the simulator",
                      f"T = {T:.3g} s is within 25% of the fixed think time of {theta:.3g} s, where the "
                      "hit rate changes steeply with how many conversations the cache happens to hold (the "
                      "model approximates it; errors of up to about 1.6 points were seen). Run the "
                      "simulation for this scenario." + how, **numbers)]
    if T < theta:
        return [_make("think_time", "warning", f"T = {T:.3g} s, shorter than the think time",
                      f"A conversation idle longer than T = {T:.3g} s loses its cache, and users pause "
                      f"{theta:.3g} s on average: only {_p(kept)} of histories survive a pause." + how, **numbers)]
    return [_make("think_time", "info", f"T = {T:.3g} s, {T / theta:.2g}x the think time",
                  f"A conversation idle longer than T = {T:.3g} s loses its cache; with a mean pause of "
                  f"{theta:.3g} s, {_p(kept)} of histories survive a pause.", **numbers)]


def _documents(analysis: Analysis) -> list[Suggestion]:
    """How often a conversation finds its shared document cached (docs/model.md §12)."""
    terms, r = analysis.terms, analysis.result
    if not terms.doc_share or r.characteristic_time_s is None:
        return []
    T = r.characteristic_time_s
    found, cached = document_cache(terms.traffic, document_window(terms, T))
    s = analysis.scenario
    pairs = s.num_documents * s.num_system_prompts
    return [_make("documents", "info", f"Shared documents: {_p(found)} found cached",
                  f"A conversation that has lost its own history still finds its document cached "
                  f"{_p(found)} of the time; about {cached:,.0f} of the {pairs:,} (system prompt, document) "
                  f"pairs are cached at a time. A document used less often than once every "
                  f"T = {T:.3g} s, counting every conversation that uses it, is mostly recomputed.",
                  document_found_fraction=found, documents_cached=cached, characteristic_time_s=T)]


def suggest(analysis: Analysis) -> list[Suggestion]:
    """The suggestions for an analysed scenario, most important first. See the module
    docstring for the rule that keeps them consistent."""
    s, r = analysis.scenario, analysis.result
    out: list[Suggestion] = []
    if s.policy != "lru":
        out.append(_make("policy", "warning", f"{s.policy.upper()} is not modelled analytically",
                         "The analytic model describes LRU eviction; for FIFO or LFU the numbers are LRU's. "
                         "Run the simulation for this policy.", ))
    if not r.fits:
        return _fit(analysis) + out
    hit, ceiling = r.token_hit_rate, r.max_token_hit_rate
    memory, memory_limited = _memory_advice(analysis, hit, ceiling, s.target_hit_rate)
    actions: list[Suggestion] = []
    if memory_limited:
        actions += _fp8(analysis, hit)
    actions += _routing(analysis, hit)
    if memory_limited or s.offload_gib > 0:
        actions += _offload(analysis, hit, ceiling)
    actions.sort(key=lambda x: -x.numbers.get("gain_points", 0.0))
    ordered = [m for m in memory if m.severity == "action"] + actions + [m for m in memory if m.severity != "action"]
    return ordered + _think_time(analysis, memory_limited) + _documents(analysis) + out
