"""Sweeps and sensitivity of the analytic token hit rate (docs/model.md §8).

Everything here answers "what happens to the hit rate if one input changes":

- :func:`hit_vs_memory`: the hit rate against GPU memory per GPU, with the ceiling;
- :func:`sensitivity_curve`: the hit rate over a sensible range of one numeric input;
- :func:`tornado`: the hit-rate change for a +/-X% change of every numeric input, sorted;
- :func:`heatmap`: the hit rate over GPU memory per GPU x conversation arrival rate.

Speed. A solve of the characteristic-time equation per point would be too slow for a live
page, so most sweeps use one table per workload. With ``x = T / theta`` (``theta`` the mean
think time) the model of :mod:`kvcache_calculator.analytic.model` separates into parts that depend
on ``x`` alone and a few scalars::

    O(T)    = conv_rate * theta * a(x) + K * p(T)
    hits(T) = n_turns * p(T) * Sb + G1(x) - p(T) * Sb * G2(x)

with ``a(x) = sum_r w_r M_r(x) Cs_r + x D`` (``M_r`` for unit-mean gaps), ``G1(x) = sum_m
w_m F_m(x) Hs_m`` and ``G2(x) = sum_m w_m F_m(x) Ss_m``: the exponential (Erlang) and fixed
gap laws both scale with their mean, so ``M_r(T; theta) = theta M_r(x; 1)`` and ``F_m(T;
theta) = F_m(x; 1)``; ``p(T)``, the chance a system prompt is cached, is the analytic
module's own function of the system prompts' request rate. The table holds ``a, G1, G2`` on a log grid of ``x``; the arrival
rate, think time, system-prompt count, sticky instance count and every input that only
changes the capacity (memory, utilisation, reserve, weights, dtypes, offload) are then a few
arithmetic operations per point: find the bracket of ``O = capacity`` by bisection on the
grid and interpolate the hit rate linearly in ``log O``. Inputs that change the turn
structure (turns, tokens per turn, block size, non-sticky instance count, sliding layers)
are solved exactly (:func:`exact_hit_rate`, the same answer as
:func:`~kvcache_calculator.analytic.model.analyze`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass

from kvcache_calculator.analytic import model as _analytic
from kvcache_calculator.analytic.model import (
    AnalyticResult, Terms, analyze, build_terms, capacity_for_hit_rate, illinois_log_root,
)
from kvcache_calculator.setup.architecture import tp_splits_heads, valid_tensor_parallel
from kvcache_calculator.setup.capacity import GIB, Capacity, compute_capacity, resolve_gpu, resolve_model
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, with_updates


@dataclass(frozen=True)
class SweepSpec:
    """How one numeric input is swept: ``lo``/``hi`` are factors of the current value
    (``relative``) or absolute bounds; ``log`` spaces the points geometrically."""

    key: str
    lo: float
    hi: float
    relative: bool
    log: bool
    floor_hi: float = 0.0      # the upper bound is at least this (absolute), e.g. 16 instances


#: The numeric inputs offered by the sensitivity selector, with their sweep ranges.
SWEEPS: dict[str, SweepSpec] = {s.key: s for s in (
    SweepSpec("arrival_rate", 0.1, 10.0, True, True),
    SweepSpec("think_time_s", 0.1, 10.0, True, True),
    SweepSpec("turns", 1.0, 3.0, False, False, floor_hi=20.0),
    SweepSpec("input_tokens", 0.1, 10.0, True, True),
    SweepSpec("output_tokens", 0.1, 10.0, True, True),
    SweepSpec("system_prompt_tokens", 0.0, 4.0, False, False, floor_hi=8000.0),
    SweepSpec("num_system_prompts", 1.0, 10.0, False, True, floor_hi=100.0),
    SweepSpec("gpu_memory_gib", 0.0, 4.0, False, False),
    SweepSpec("gpu_mem_util", 0.5, 0.98, False, False),
    SweepSpec("activation_reserve_gib", 0.0, 4.0, False, False, floor_hi=8.0),
    SweepSpec("num_gpus", 1.0, 2.0, False, False, floor_hi=8.0),
    SweepSpec("instances", 1.0, 4.0, False, False, floor_hi=16.0),
    SweepSpec("offload_gib", 0.0, 4.0, False, False, floor_hi=1024.0),
    SweepSpec("block_size", 1.0, 16.0, False, True, floor_hi=256.0),
    SweepSpec("params_b", 0.25, 4.0, True, True),
    SweepSpec("kv_cache_tokens", 0.1, 10.0, True, True),
    SweepSpec("num_layers", 0.5, 2.0, True, False),
    SweepSpec("num_kv_heads", 0.25, 4.0, True, True),
    SweepSpec("head_dim", 0.5, 2.0, True, True),
    SweepSpec("kv_lora_rank", 0.5, 2.0, True, True),
    SweepSpec("qk_rope_head_dim", 0.5, 2.0, True, False),
    SweepSpec("sliding_window", 0.1, 10.0, True, True),
    SweepSpec("sliding_layers", 0.0, 1.0, False, False),
)}

#: Keys offered in the page's sensitivity selector (those set for the scenario are shown).
NUMERIC_KEYS: tuple[str, ...] = tuple(SWEEPS)
#: The selector's default.
DEFAULT_KEY = "arrival_rate"

# inputs whose change leaves the model's T-independent sums alone except for the scalars of
# the table (see the module docstring); "instances" only under session affinity
_TABLE_WORKLOAD = frozenset({"arrival_rate", "think_time_s", "num_system_prompts"})
_CAPACITY_ONLY = frozenset({"gpu_memory_gib", "gpu_mem_util", "activation_reserve_gib", "params_b",
                            "active_params_b", "offload_gib", "kv_cache_tokens", "weight_dtype"})
# these change KV bytes per token: capacity-only unless the model has per-sequence fixed state
_BYTES_KEYS = frozenset({"num_gpus", "kv_dtype", "num_layers", "num_kv_heads", "head_dim",
                         "kv_lora_rank", "qk_rope_head_dim", "attention"})
_ARCH_KEYS = frozenset({"attention", "num_layers", "num_kv_heads", "head_dim", "kv_lora_rank",
                        "qk_rope_head_dim", "sliding_window", "sliding_layers", "params_b",
                        "active_params_b"})
# inputs that leave the capacity alone (compute_capacity does not read them)
_WORKLOAD_KEYS = frozenset({"arrival_rate", "think_time_s", "think_dist", "num_system_prompts", "instances",
                            "routing", "policy", "turns", "turns_dist", "input_tokens", "output_tokens",
                            "system_prompt_tokens", "mfu", "target_hit_rate"})
_POINTS_PER_DECADE = 20
#: Points of a sensitivity curve whose input changes the turn structure (turns, tokens per
#: turn, block size, ...): each is a full solve, so fewer than the table-based curves' 100
#: (and fewer still, down to 12, for very long conversations).
EXACT_POINTS = 40


@dataclass(frozen=True)
class _GPUMemory:
    """The one GPU figure :func:`compute_capacity` reads."""

    memory_gib: float


class HitRateTable:
    """The model's ``x``-dependent parts on a log grid of ``x = T / theta`` for one workload
    shape (see the module docstring); evaluate it for any arrival rate, think time,
    system-prompt count or capacity with :meth:`token_hit_rate`."""

    def __init__(self, terms: Terms, x_lo: float = 1e-4, x_hi: float | None = None):
        parts = _Parts(terms)
        R = parts.R
        # far enough for the histories (x >> R) and for the shared prefix to saturate even at
        # 1/100 of the current request rate x think time (the sweeps go down to 1/10 of each)
        rate_theta = terms.shared_rate * terms.gap_mean_s
        x_hi = x_hi or max(100.0, 3.0 * R, 4000.0 / rate_theta if rate_theta > 0 else 0.0)
        x_hi = min(x_hi, 1e12 / terms.gap_mean_s)
        n = int(math.ceil(math.log10(x_hi / x_lo) * _POINTS_PER_DECADE))
        xs = [x_lo * (x_hi / x_lo) ** (i / n) for i in range(n + 1)]
        if terms.gap_kind == "fixed":
            # the fixed-gap model jumps at x = m: grid points on both sides of each jump that
            # matters (weight q(1-q)^(m-1) above 0.2%; smaller steps are interpolated)
            xs += [m * f for m in range(1, min(R, 200) + 1) for f in (1 - 1e-9, 1 + 1e-9)
                   if x_lo < m < x_hi and parts.w[m - 1] > 2e-3]
            xs.sort()
        a, g1, g2 = zip(*(parts.at(x) for x in xs))
        self.terms = terms
        self.xs = tuple(xs)
        self.a = tuple(a)
        self.g1 = tuple(g1)
        self.g2 = tuple(g2)
        self.ceiling_tokens = parts.ceiling_tokens
        self.parts = parts

    def _point(self, i: int, conv: float, shared: float, view: "SharedPrefix", theta: float) -> tuple[float, float]:
        """(occupancy tokens, hit tokens per conversation) at grid point ``i``."""
        x = self.xs[i]
        p = shared_prefix_probability(view, theta * x)
        t = self.terms
        occ = conv * theta * self.a[i] + shared * p
        hit = t.sys_turns * p * t.sys_hit_tokens + self.g1[i] - p * t.sys_hit_tokens * self.g2[i]
        return occ, hit

    def token_hit_rate(self, capacity_tokens: float, conv_rate: float, shared_tokens: float,
                       shared: "SharedPrefix", theta_s: float) -> float:
        """Token hit rate (0-1) at ``capacity_tokens`` per instance for the given scalars:
        conversations/s per instance, shared prefix tokens, requests/s per instance per
        system prompt (with the number of prompts), mean think time in seconds."""
        prompt = self.terms.prompt_tokens
        if prompt <= 0 or capacity_tokens <= 0:
            return 0.0
        rt = shared
        n = len(self.xs)
        o_lo, h_lo = self._point(0, conv_rate, shared_tokens, rt, theta_s)
        if capacity_tokens <= o_lo:     # as analyze: T stays at its lower bound
            return _clamp01(h_lo / prompt)
        o_hi, h_hi = self._point(n - 1, conv_rate, shared_tokens, rt, theta_s)
        if capacity_tokens >= o_hi:
            # past the grid: solve exactly between its end and T = 1e13 s
            lo_x, hi_x = math.log(self.xs[-1]), math.log(1e13 / theta_s)

            def occ(log_x: float) -> float:
                return self.parts.occupancy_and_hits(math.exp(log_x), conv_rate, shared_tokens,
                                                     shared, theta_s)[0]
            if hi_x <= lo_x or occ(hi_x) <= capacity_tokens:
                return _clamp01(self.ceiling_tokens / prompt)
            x = math.exp(illinois_log_root(occ, math.log(capacity_tokens), lo_x, hi_x))
            return _clamp01(self.parts.occupancy_and_hits(x, conv_rate, shared_tokens, shared,
                                                          theta_s)[1] / prompt)
        lo, hi = 0, n - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            o_mid, h_mid = self._point(mid, conv_rate, shared_tokens, rt, theta_s)
            if o_mid <= capacity_tokens:
                lo, o_lo, h_lo = mid, o_mid, h_mid
            else:
                hi, o_hi, h_hi = mid, o_mid, h_mid
        return _clamp01(_interp_log(capacity_tokens, o_lo, o_hi, h_lo, h_hi) / prompt)

    def occupancy_curve(self, conv_rate: float, shared_tokens: float, shared: "SharedPrefix",
                        theta_s: float) -> tuple[list[float], list[float]]:
        """(occupancy tokens, token hit rate) at every grid point, for many capacities."""
        # _point's arithmetic, inlined: the heatmap calls this once per row (about half of
        # a page update's Python time before it was inlined)
        t = self.terms
        prompt = t.prompt_tokens or 1.0
        sys_turns, sys_hit = t.sys_turns, t.sys_hit_tokens
        probability = _shared_probability_function()
        occ, rate = [], []
        for x, a, g1, g2 in zip(self.xs, self.a, self.g1, self.g2):
            p = probability(shared, theta_s * x)
            occ.append(conv_rate * theta_s * a + shared_tokens * p)
            h = sys_turns * p * sys_hit + g1 - p * sys_hit * g2
            r = h / prompt
            rate.append(0.0 if r < 0.0 else 1.0 if r > 1.0 else r)
        return occ, rate


class _Parts:
    """``a(x), G1(x), G2(x)`` of one workload at any ``x = T / theta`` (unit-mean gaps).

    Exponential gaps as :func:`~kvcache_calculator.analytic.model.gap_functions`: the sum of m unit
    gaps is Erlang-m, ``F_m(x) = P(Poisson(x) >= m)`` and ``M_m(x) = sum_{i<=m} F_i(x)``.
    Once ``F_m`` is below 1e-13 with ``m > x`` the rest of the tail adds nothing to
    ``G1``/``G2`` and ``M`` stays put, so the loop stops and adds ``M_m * sum_{r>m} w_r Cs_r``
    at once: a point costs O(min(R, x + 40)) instead of O(R). Beyond ``x_sat = R + 12 sqrt(R)
    + 50`` every ``F_m`` is 1, so ``a`` grows linearly and ``G1, G2`` stay constant. Fixed
    gaps: ``F_m = 1[m < x]`` and ``M_m = min(m, x)``, so prefix sums give every point in O(1).
    """

    def __init__(self, terms: Terms):
        R = len(terms.cost_sums)
        q = terms.q
        w = [q * (1 - q) ** r for r in range(R)]
        self.terms = terms
        self.R = R
        self.w = w
        self.wc = [w[r] * terms.cost_sums[r] for r in range(R)]
        self.wh = [w[r] * terms.hit_sums[r] for r in range(R)]
        self.wt = [w[r] * terms.turn_sums[r] for r in range(R)]
        suffix = [0.0] * (R + 1)
        for r in range(R - 1, -1, -1):
            suffix[r] = suffix[r + 1] + self.wc[r]
        self.suffix = suffix
        self.logs = [math.log(m) for m in range(1, R + 1)]
        if terms.gap_kind == "fixed":
            # prefix sums over m = 1..k of wc_m * m, wc_m, wh_m, wt_m (index k)
            pm, pc, ph, pt = [0.0], [0.0], [0.0], [0.0]
            for r in range(R):
                pm.append(pm[-1] + self.wc[r] * (r + 1))
                pc.append(pc[-1] + self.wc[r])
                ph.append(ph[-1] + self.wh[r])
                pt.append(pt[-1] + self.wt[r])
            self.prefix = (pm, pc, ph, pt)
        self.ceiling_tokens = terms.sys_turns * terms.sys_hit_tokens + sum(
            w[m] * (terms.hit_sums[m] - terms.sys_hit_tokens * terms.turn_sums[m]) for m in range(R))
        # past x_sat every F_m (m <= R) is 1 to within 1e-30 and M_m = m, so a(x) grows as x*D
        # and G1, G2 are constant: one evaluation there serves every larger x
        self.x_sat = R + 12.0 * math.sqrt(R) + 50.0
        self.at_sat = self._at(self.x_sat)

    def at(self, x: float) -> tuple[float, float, float]:
        """(a(x), G1(x), G2(x))."""
        if x > self.x_sat:
            a, g1, g2 = self.at_sat
            return a + (x - self.x_sat) * self.terms.cost_last, g1, g2
        return self._at(x)

    def _at(self, x: float) -> tuple[float, float, float]:
        terms = self.terms
        if terms.gap_kind != "exponential":
            # fixed unit gaps: F_m = 1[m < x], M_m = min(m, x); k = how many m have m < x
            k = min(self.R, max(0, math.ceil(x) - 1))
            pm, pc, ph, pt = self.prefix
            return pm[k] + x * (pc[self.R] - pc[k]) + x * terms.cost_last, ph[k], pt[k]
        wc, wh, wt, logs = self.wc, self.wh, self.wt, self.logs
        exp = math.exp
        log_x = math.log(x)
        log_term = -x
        cdf = acc = A = G1 = G2 = 0.0
        for m in range(self.R):
            cdf += exp(log_term)
            log_term += log_x - logs[m]
            fm = -math.expm1(-x) if m == 0 else (1.0 - cdf if cdf < 1.0 else 0.0)
            acc += fm
            A += wc[m] * acc
            G1 += wh[m] * fm
            G2 += wt[m] * fm
            if fm < 1e-13 and m + 1 > x:
                A += acc * self.suffix[m + 1]
                break
        return A + x * terms.cost_last, G1, G2

    def occupancy_and_hits(self, x: float, conv: float, shared: float, view: "SharedPrefix",
                           theta: float) -> tuple[float, float]:
        """(occupancy tokens per instance, hit tokens per conversation) at ``T = theta * x``."""
        a, g1, g2 = self.at(x)
        p = shared_prefix_probability(view, theta * x)
        t = self.terms
        return (conv * theta * a + shared * p,
                t.sys_turns * p * t.sys_hit_tokens + g1 - p * t.sys_hit_tokens * g2)


def exact_hit_rate(scenario: Scenario, capacity: Capacity, arch=None) -> tuple[float, float]:
    """(token hit rate, ceiling) of ``scenario`` at ``capacity``: the same model and answer as
    :func:`~kvcache_calculator.analytic.model.analyze` (to 1e-9), with a cheaper evaluation of
    ``O(T)`` for the exact points of the sweeps. ``T`` solves ``O(T) = max(capacity_tokens,
    offload_tokens)`` by Illinois regula falsi on ``log O`` against ``log T``."""
    terms = build_terms(scenario, capacity, arch)
    parts = _Parts(terms)
    prompt = terms.prompt_tokens
    if prompt <= 0:
        return 0.0, 0.0
    ceiling = _clamp01(parts.ceiling_tokens / prompt)
    if not capacity.fits:
        return 0.0, ceiling
    target = float(max(capacity.capacity_tokens, capacity.offload_tokens))
    conv, shared, rate, theta = _table_scalars(scenario, terms)

    def occ(log_x: float) -> float:
        return parts.occupancy_and_hits(math.exp(log_x), conv, shared, rate, theta)[0]

    lo, hi = math.log(1e-6 / theta), math.log(1e13 / theta)
    if occ(hi) <= target:
        return ceiling, ceiling
    if occ(lo) >= target:
        x = math.exp(lo)
    else:
        x = math.exp(illinois_log_root(occ, math.log(target), lo, hi))
    return _clamp01(parts.occupancy_and_hits(x, conv, shared, rate, theta)[1] / prompt), ceiling


def _clamp01(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


def _interp_log(c: float, o0: float, o1: float, h0: float, h1: float) -> float:
    """Linear interpolation of ``h`` in ``log o`` between (o0, h0) and (o1, h1)."""
    if o1 <= o0:
        return h1
    if o0 <= 0:
        return h0 + (h1 - h0) * (c - o0) / (o1 - o0)
    u = math.log(c / o0) / math.log(o1 / o0)
    return h0 + (h1 - h0) * u


def interpolate_curve(capacity_tokens: float, occ: list[float], rate: list[float]) -> float:
    """Hit rate at ``capacity_tokens`` from an :meth:`HitRateTable.occupancy_curve`."""
    if capacity_tokens <= 0:
        return 0.0
    i = bisect_left(occ, capacity_tokens)
    if i == 0:      # as analyze: T stays at its lower bound
        return rate[0]
    if i >= len(occ):
        return rate[-1]
    return _interp_log(capacity_tokens, occ[i - 1], occ[i], rate[i - 1], rate[i])


@dataclass(frozen=True)
class Prepared:
    """One scenario resolved once (model, GPU memory, capacity, analysis, table), shared by
    the sweeps, the suggestions and the figures of one recompute."""

    scenario: Scenario
    arch: object
    gpu_memory_gib: float
    capacity: Capacity
    result: AnalyticResult
    terms: Terms
    table: HitRateTable

    @property
    def sticky(self) -> bool:
        """True when a conversation stays on one instance (session affinity or one instance)."""
        return self.scenario.routing == "session" or self.scenario.instances == 1


def prepare(scenario: Scenario, result: AnalyticResult | None = None, arch=None, gpu=None) -> Prepared:
    """Resolve ``scenario`` once: the model, the GPU memory, the capacity, the analysis and
    the hit-rate table. ``result`` (from :func:`analyze`) is reused when given."""
    arch = arch or resolve_model(scenario)
    if result is None:
        gpu = gpu or resolve_gpu(scenario)
        result = analyze(scenario, compute_capacity(scenario, arch, gpu), arch)
    capacity = result.capacity
    if gpu is not None:
        memory = gpu.memory_gib
    elif scenario.gpu_memory_gib is not None:
        memory = scenario.gpu_memory_gib
    else:
        memory = capacity.usable_gib_per_gpu / scenario.gpu_mem_util
    terms = build_terms(scenario, capacity, arch)
    return Prepared(scenario, arch, memory, capacity, result, terms, HitRateTable(terms))


@dataclass(frozen=True)
class SharedPrefix:
    """The two figures of the shared-prefix term: requests/s per instance per system prompt
    and the number of distinct system prompts (the fields of ``Terms`` they mirror)."""

    shared_rate: float
    num_shared_prompts: int


def _timer_probability(view: SharedPrefix, T: float) -> float:
    return 1.0 if math.isinf(T) else -math.expm1(-view.shared_rate * T)


def _shared_probability_function():
    """The analytic model's own ``shared_prefix_hit_probability`` when it has one, else its
    timer form ``1 - exp(-shared_rate * T)``."""
    return getattr(_analytic, "shared_prefix_hit_probability", None) or _timer_probability


def shared_prefix_probability(view: SharedPrefix, T: float) -> float:
    """Chance a system prompt is still cached at characteristic time ``T``
    (:func:`_shared_probability_function`)."""
    return _shared_probability_function()(view, T)


def _table_scalars(s: Scenario, terms: Terms) -> tuple[float, float, SharedPrefix, float]:
    """(conv_rate, shared_tokens, shared prefix, theta) of ``s``, as in ``build_terms``."""
    conv = s.arrival_rate / s.instances
    shared_rate = conv * terms.mean_turns / s.num_system_prompts
    return (conv, s.num_system_prompts * terms.sys_hit_tokens, SharedPrefix(shared_rate, s.num_system_prompts),
            s.think_time_s)


def _uses_table(prep: Prepared, keys) -> bool:
    """Whether changing ``keys`` keeps the model's sums (so the table answers)."""
    fixed_state = prep.capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    for key in keys:
        if key in _TABLE_WORKLOAD or key in _CAPACITY_ONLY:
            continue
        if key == "instances" and prep.scenario.routing == "session":
            continue
        if key in _BYTES_KEYS and not fixed_state and key != "attention":
            continue
        return False
    return True


def variant_capacity(prep: Prepared, s: Scenario, arch=None) -> Capacity:
    """The capacity of the variant scenario ``s`` on the same GPU (or ``s.gpu_memory_gib``)."""
    memory = s.gpu_memory_gib if s.gpu_memory_gib is not None else prep.gpu_memory_gib
    return compute_capacity(s, arch or prep.arch, _GPUMemory(memory))


def variant_hit_rate(prep: Prepared, **changes) -> float:
    """Token hit rate (0-1) of the scenario with ``changes`` (valid values, not re-checked)."""
    if not changes:
        return prep.result.token_hit_rate
    s = with_updates(prep.scenario, **changes)
    arch = resolve_model(s) if _ARCH_KEYS & changes.keys() else prep.arch
    cap = prep.capacity if changes.keys() <= _WORKLOAD_KEYS else variant_capacity(prep, s, arch)
    if not cap.fits:
        return 0.0
    if _uses_table(prep, changes):
        tokens = max(cap.capacity_tokens, cap.offload_tokens)
        return prep.table.token_hit_rate(tokens, *_table_scalars(s, prep.terms))
    return exact_hit_rate(s, cap, arch)[0]


def variant_hit_and_ceiling(prep: Prepared, **changes) -> tuple[float, float]:
    """(token hit rate, ceiling) of the scenario with ``changes``, solved exactly."""
    s = with_updates(prep.scenario, **changes)
    arch = resolve_model(s) if _ARCH_KEYS & changes.keys() else prep.arch
    cap = prep.capacity if changes.keys() <= _WORKLOAD_KEYS else variant_capacity(prep, s, arch)
    return exact_hit_rate(s, cap, arch)


def variant_result(prep: Prepared, **changes) -> AnalyticResult:
    """The full exact analysis of the scenario with ``changes`` (valid values, not re-checked)."""
    s = with_updates(prep.scenario, **changes)
    arch = resolve_model(s) if _ARCH_KEYS & changes.keys() else prep.arch
    return analyze(s, variant_capacity(prep, s, arch), arch)


# -- memory <-> tokens ------------------------------------------------------------------


def fit_memory_gib(prep: Prepared, s: Scenario | None = None) -> float:
    """GPU memory per GPU (GiB) below which the model leaves no room for KV cache."""
    s = s or prep.scenario
    cap = prep.capacity
    return (cap.weights_gib_per_gpu + s.activation_reserve_gib) / s.gpu_mem_util


def memory_for_tokens(prep: Prepared, capacity_tokens: float) -> float:
    """GPU memory per GPU (GiB) whose KV budget holds ``capacity_tokens`` per instance::

        memory_gib = (weights_gib_per_gpu + activation_reserve_gib
                      + capacity_tokens * kv_bytes_per_token_per_gpu / 2**30) / gpu_mem_util
    (docs/model.md §3 solved for the memory)."""
    cap = prep.capacity
    kv = capacity_tokens * cap.kv_bytes_per_token_per_gpu / GIB
    return (cap.weights_gib_per_gpu + prep.scenario.activation_reserve_gib + kv) / prep.scenario.gpu_mem_util


def tokens_for_memory(prep: Prepared, memory_gib: float) -> int:
    """KV-cache tokens per instance (whole blocks) at ``memory_gib`` of GPU memory per GPU
    (docs/model.md §3); 0 when the model does not fit."""
    s, cap = prep.scenario, prep.capacity
    budget = memory_gib * s.gpu_mem_util - cap.weights_gib_per_gpu - s.activation_reserve_gib
    if budget <= 0:
        return 0
    block = s.block_size
    tokens = int(budget * GIB // (cap.kv_bytes_per_token_per_gpu * block)) * block
    return tokens if tokens >= block else 0


def hit_rate_at_tokens(prep: Prepared, capacity_tokens: float, arrival_rate: float | None = None,
                       with_offload: bool = True) -> float:
    """Token hit rate at ``capacity_tokens`` of GPU cache per instance (the offload tier, if
    any and larger, serves as the second tier as in :func:`analyze`)."""
    if capacity_tokens <= 0:
        return 0.0
    s = prep.scenario if arrival_rate is None else with_updates(prep.scenario, arrival_rate=arrival_rate)
    tokens = max(capacity_tokens, prep.capacity.offload_tokens) if with_offload else capacity_tokens
    return prep.table.token_hit_rate(tokens, *_table_scalars(s, prep.terms))


def tokens_for_hit_rate(prep: Prepared, rate: float) -> float | None:
    """Cache tokens per instance (GPU tier alone) for a token hit rate of ``rate`` at the
    current workload, by inverting the table (hit rate rises with T, so with occupancy);
    None when ``rate`` is at or above the ceiling. Agrees with
    :func:`~kvcache_calculator.analytic.model.capacity_for_hit_rate` to the table's accuracy."""
    ceiling = prep.result.max_token_hit_rate
    if rate >= ceiling - 1e-9:
        return None
    if rate <= 0:
        return 0.0
    occ, hit = prep.table.occupancy_curve(*_table_scalars(prep.scenario, prep.terms))
    i = bisect_left(hit, rate)
    if i >= len(hit) or i == 0:
        # past the grid's end, or reached at the smallest T (then the answer is what is cached
        # even then, the shared prompt): the exact solver
        return capacity_for_hit_rate(prep.scenario, rate, prep.capacity, prep.arch)[0]
    h0, h1, o0, o1 = hit[i - 1], hit[i], occ[i - 1], occ[i]
    if h1 <= h0 or o0 <= 0:
        return o1
    return o0 * (o1 / o0) ** ((rate - h0) / (h1 - h0))


def current_memory_gib(prep: Prepared) -> float:
    """GPU memory per GPU of the current point; with ``kv_cache_tokens`` given, the memory
    that would hold that capacity."""
    if prep.capacity.derived_from == "kv_cache_tokens":
        return memory_for_tokens(prep, prep.capacity.capacity_tokens)
    return prep.gpu_memory_gib


def memory_range(prep: Prepared) -> tuple[float, float]:
    """A readable GPU-memory axis (GiB per GPU): from where the model fits to past the knee.

    When the model does not fit at the current memory, the axis starts there instead, so the
    current point is on it and the memory where the model does not fit shows as 0 %."""
    lo = fit_memory_gib(prep)
    cur = current_memory_gib(prep)
    ceiling = prep.result.max_token_hit_rate
    # memory for 99% of the ceiling, from the table at the current workload
    occ, rate = prep.table.occupancy_curve(*_table_scalars(prep.scenario, prep.terms))
    knee = next((o for o, r in zip(occ, rate) if r >= 0.99 * ceiling), occ[-1])
    knee_gib = memory_for_tokens(prep, knee) * 1.1
    ref = max(cur, lo * 1.05, lo + 1.0)
    hi = min(max(knee_gib, 1.5 * ref), 6.0 * ref)
    return max(0.0, min(lo, cur)), hi


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryCurve:
    """Token hit rate against GPU memory per GPU (rates 0-1)."""

    memory_gib: tuple[float, ...]          # per GPU
    capacity_tokens: tuple[int, ...]       # per instance
    token_hit_rate: tuple[float, ...]      # with the offload tier, if any
    gpu_only_hit_rate: tuple[float, ...]   # without it (equal when offload_gib = 0)
    current_memory_gib: float
    current_hit_rate: float
    ceiling: float
    fit_memory_gib: float

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def hit_vs_memory(scenario: Scenario, result: AnalyticResult | None = None, points: int = 100, *,
                  prep: Prepared | None = None, arch=None, gpu=None) -> MemoryCurve:
    """The token hit rate at ``points`` GPU memory sizes per GPU (table interpolation, no
    solve per point); the current point is the exact analysis."""
    prep = prep or prepare(scenario, result, arch, gpu)
    lo, hi = memory_range(prep)
    mems = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    scal = _table_scalars(prep.scenario, prep.terms)
    occ, rate = prep.table.occupancy_curve(*scal)
    off = prep.capacity.offload_tokens
    toks, hit, gpu_hit = [], [], []
    for m in mems:
        t = tokens_for_memory(prep, m)
        toks.append(t)
        g = interpolate_curve(t, occ, rate) if t > 0 else 0.0
        gpu_hit.append(g)
        hit.append(interpolate_curve(off, occ, rate) if t > 0 and off > t else g)
    r = prep.result
    return MemoryCurve(tuple(mems), tuple(toks), tuple(hit), tuple(gpu_hit), current_memory_gib(prep),
                       r.token_hit_rate, r.max_token_hit_rate, fit_memory_gib(prep))


def base_value(prep: Prepared, key: str):
    """The current value of numeric input ``key`` (resolved from the presets when the scenario
    leaves it empty), or None when it does not apply."""
    s = prep.scenario
    if key == "gpu_memory_gib":
        return prep.gpu_memory_gib
    if key == "params_b":
        return prep.arch.params_b
    if key in ("num_layers", "num_kv_heads", "head_dim", "kv_lora_rank", "qk_rope_head_dim",
               "sliding_window", "sliding_layers") and s.model != "custom":
        return getattr(s, key)      # preset architecture: only explicit overrides are swept
    return getattr(s, key)


def _field_bounds(key: str) -> tuple[float, float]:
    f = FIELD_BY_KEY[key]
    lo = f.minimum if f.minimum is not None else -math.inf
    hi = f.maximum if f.maximum is not None else math.inf
    if f.exclusive_min:
        lo = lo + (1e-9 if f.kind == "float" else 1)
    return lo, hi


def _legal(key: str, value: float, s: Scenario):
    """``value`` rounded for int fields and clamped to the field's range (and the scenario's
    cross-field rules: whole turns for fixed turns, sliding layers at most the layers)."""
    lo, hi = _field_bounds(key)
    f = FIELD_BY_KEY[key]
    if key == "turns" and s.turns_dist == "fixed":
        value = round(value)
    if key == "sliding_layers" and s.num_layers is not None:
        hi = min(hi, s.num_layers)
    value = min(hi, max(lo, value))
    if f.kind == "int":
        value = int(round(value))
        value = int(min(hi, max(math.ceil(lo), value)))
    else:
        value = float(value)
    return value


def sweep_values(prep: Prepared, key: str, points: int = 100) -> list:
    """The values swept for ``key``: its :data:`SWEEPS` range around the current value,
    clamped to the field's range, whole numbers for int fields (duplicates dropped), always
    including the current value; for ``num_gpus`` and ``num_kv_heads`` only the counts
    tensor parallelism can split the heads by."""
    spec = SWEEPS[key]
    base = base_value(prep, key)
    if base is None:
        raise ScenarioError(key, "", "is not set for this scenario, so it cannot be swept")
    s = prep.scenario
    if key == "gpu_memory_gib":
        lo, hi = memory_range(prep)
        lo = max(lo, 1e-3)
    elif spec.relative:
        lo, hi = base * spec.lo, base * spec.hi
        if base == 0:
            lo, hi = 0.0, spec.floor_hi or 1.0
    else:
        lo = spec.lo
        hi = max(spec.floor_hi, base * spec.hi) if key not in ("gpu_mem_util", "sliding_layers") else spec.hi
        if key == "sliding_layers":
            hi = s.num_layers or base
        if key in ("system_prompt_tokens", "activation_reserve_gib", "offload_gib"):
            hi = max(spec.floor_hi, base * spec.hi)
    lo, hi = min(lo, base), max(hi, base)
    use_log = spec.log and lo > 0
    raw = []
    for i in range(points):
        u = i / (points - 1) if points > 1 else 0.0
        raw.append(lo * (hi / lo) ** u if use_log else lo + (hi - lo) * u)
    raw.append(base)
    values = sorted({_legal(key, v, s) for v in raw})
    # only GPU counts that split the KV heads, and head counts the GPUs split (the current
    # values do): compute_capacity refuses the others
    if key == "num_gpus":
        values = [v for v in values if valid_tensor_parallel(prep.arch, v)]
    elif key == "num_kv_heads":
        values = [v for v in values if tp_splits_heads(v, s.num_gpus)]
    return values


def _exact_points(prep: Prepared, key: str) -> int:
    """How many exact solves a curve gets: :data:`EXACT_POINTS`, fewer (down to 12) for
    long conversations, whose sums over turns make each solve costlier."""
    s = prep.scenario
    turns = max(s.turns, SWEEPS["turns"].floor_hi, 3 * s.turns) if key == "turns" else s.turns
    terms_per_solve = turns if s.turns_dist == "fixed" else 27.6 * turns   # P(N >= k) down to 1e-12
    return max(12, min(EXACT_POINTS, int(80_000 // max(1.0, terms_per_solve))))


@dataclass(frozen=True)
class SensitivityCurve:
    """Token hit rate (0-1) over a sweep of one input; ``ceiling`` per point."""

    key: str
    label: str
    unit: str
    log_scale: bool
    values: tuple[float, ...]
    token_hit_rate: tuple[float, ...]
    ceiling: tuple[float, ...]
    current_value: float
    current_hit_rate: float
    exact: bool                  # True: an exact solve per point; False: table interpolation

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def sensitivity_curve(scenario: Scenario, key: str, points: int = 100, *, result=None,
                      prep: Prepared | None = None, arch=None, gpu=None) -> SensitivityCurve:
    """The token hit rate over the :data:`SWEEPS` range of numeric input ``key``: ``points``
    values from the table, or :data:`EXACT_POINTS` exact solves for inputs that change the
    turn structure (see the module docstring).

    Raises :class:`ScenarioError` for a key that is not in :data:`NUMERIC_KEYS` or not set
    for this scenario (a preset's architecture keys are only swept when overridden).
    """
    if key not in SWEEPS:
        raise ScenarioError("sensitivity", key, "must be one of " + ", ".join(NUMERIC_KEYS))
    prep = prep or prepare(scenario, result, arch, gpu)
    table = _uses_table(prep, (key,))
    values = sweep_values(prep, key, points if table else min(points, _exact_points(prep, key)))
    r = prep.result
    hit, ceil = [], []
    for v in values:
        try:
            if table:
                hit.append(variant_hit_rate(prep, **{key: v}))
                ceil.append(r.max_token_hit_rate)
            else:
                h, c = variant_hit_and_ceiling(prep, **{key: v})
                hit.append(h)
                ceil.append(c)
        except ScenarioError:
            hit.append(0.0)
            ceil.append(r.max_token_hit_rate)
    f = FIELD_BY_KEY[key]
    spec = SWEEPS[key]
    return SensitivityCurve(key, f.label, f.unit, spec.log and values[0] > 0, tuple(values), tuple(hit),
                            tuple(ceil), base_value(prep, key), r.token_hit_rate, not table)


@dataclass(frozen=True)
class TornadoBar:
    """The hit rate (0-1) at ``low_value`` and ``high_value`` of one input."""

    key: str
    label: str
    unit: str
    base_value: float
    low_value: float
    high_value: float
    low_hit_rate: float
    high_hit_rate: float
    swing: float                 # |high - low| hit rate

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class Tornado:
    """Hit-rate changes for a +/-``fraction`` change of each numeric input, largest first."""

    fraction: float
    base_hit_rate: float
    bars: tuple[TornadoBar, ...]

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"fraction": self.fraction, "base_hit_rate": self.base_hit_rate,
                "bars": [b.to_dict() for b in self.bars]}


def tornado(scenario: Scenario, fraction: float = 0.2, *, result=None, prep: Prepared | None = None,
            arch=None, gpu=None, min_swing: float = 1e-6) -> Tornado:
    """For every numeric input set for the scenario, the hit rate at -/+``fraction`` of its
    value (clamped to its range, whole numbers for int fields), sorted by swing; inputs whose
    change moves nothing (by more than ``min_swing``) are left out."""
    if not (0 < fraction < 1):
        raise ScenarioError("fraction", fraction, "must be a number > 0 and < 1")
    prep = prep or prepare(scenario, result, arch, gpu)
    s = prep.scenario
    base_hit = prep.result.token_hit_rate
    bars = []
    for key in NUMERIC_KEYS:
        base = base_value(prep, key)
        if base is None:
            continue
        lo_v = _legal(key, base * (1 - fraction), s)
        hi_v = _legal(key, base * (1 + fraction), s)
        rates = []
        for v in (lo_v, hi_v):
            if v == base:
                rates.append(base_hit)
                continue
            try:
                rates.append(variant_hit_rate(prep, **{key: v}))
            except ScenarioError:
                rates.append(base_hit)
        swing = abs(rates[1] - rates[0])
        if max(abs(rates[0] - base_hit), abs(rates[1] - base_hit)) <= min_swing:
            continue
        f = FIELD_BY_KEY[key]
        bars.append(TornadoBar(key, f.label, f.unit, base, lo_v, hi_v, rates[0], rates[1], swing))
    bars.sort(key=lambda b: -max(b.swing, abs(b.low_hit_rate - base_hit), abs(b.high_hit_rate - base_hit)))
    return Tornado(fraction, base_hit, tuple(bars))


@dataclass(frozen=True)
class Heatmap:
    """Token hit rate (0-1) over GPU memory per GPU (columns) x arrival rate (rows)."""

    memory_gib: tuple[float, ...]
    arrival_rate: tuple[float, ...]
    token_hit_rate: tuple[tuple[float, ...], ...]    # [row][column]
    current_memory_gib: float
    current_arrival_rate: float
    current_hit_rate: float

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"memory_gib": list(self.memory_gib), "arrival_rate": list(self.arrival_rate),
                "token_hit_rate": [list(r) for r in self.token_hit_rate],
                "current_memory_gib": self.current_memory_gib,
                "current_arrival_rate": self.current_arrival_rate,
                "current_hit_rate": self.current_hit_rate}


def heatmap(scenario: Scenario, rows: int = 30, cols: int = 30, *, result=None, prep: Prepared | None = None,
            arch=None, gpu=None) -> Heatmap:
    """Token hit rate on a ``rows`` x ``cols`` grid: arrival rate from 1/10 to 10 times the
    current one (log spaced) x GPU memory per GPU over :func:`memory_range`. One table serves
    every row; each row costs one pass over its grid."""
    prep = prep or prepare(scenario, result, arch, gpu)
    s = prep.scenario
    lo, hi = memory_range(prep)
    mems = [lo + (hi - lo) * i / (cols - 1) for i in range(cols)]
    lam_lo, lam_hi = _legal("arrival_rate", s.arrival_rate / 10, s), _legal("arrival_rate", s.arrival_rate * 10, s)
    lams = [lam_lo * (lam_hi / lam_lo) ** (i / (rows - 1)) for i in range(rows)]
    toks = [tokens_for_memory(prep, m) for m in mems]
    off = prep.capacity.offload_tokens
    eff = [max(t, off) if t > 0 else 0 for t in toks]
    grid = []
    for lam in lams:
        occ, rate = prep.table.occupancy_curve(*_table_scalars(with_updates(s, arrival_rate=lam), prep.terms))
        grid.append(tuple(interpolate_curve(t, occ, rate) if t > 0 else 0.0 for t in eff))
    return Heatmap(tuple(mems), tuple(lams), tuple(grid), current_memory_gib(prep), s.arrival_rate,
                   prep.result.token_hit_rate)


def available_keys(scenario: Scenario, *, prep: Prepared | None = None, arch=None, gpu=None) -> tuple[str, ...]:
    """The keys of :data:`NUMERIC_KEYS` that can be swept for ``scenario`` (those with a value:
    ``kv_cache_tokens`` only when given, architecture keys only for a custom or overridden model)."""
    prep = prep or prepare(scenario, None, arch, gpu)
    return tuple(k for k in NUMERIC_KEYS if base_value(prep, k) is not None)
