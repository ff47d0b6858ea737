"""The fast hit-rate table for sweeps, and one setup's analysis with its table.

A solve of the characteristic-time equation per point would be too slow for a live page, so
the sweeps use one table per workload. With ``x = T / theta`` (``theta`` the mean think time)
the model of :mod:`kvcache_calculator.analytic.model` separates into parts that depend on ``x``
alone and the scalars of its :class:`~kvcache_calculator.analytic.model.Traffic`::

    O(T)    = conv_rate * theta * a(x) + K * Sb * p(T)
    hits(T) = n_turns * p(T) * Sb + G1(x) - p(T) * Sb * G2(x)

with ``a(x) = sum_r w_r M_r(x) Cs_r + x D`` (``M_r`` for unit-mean gaps), ``G1(x) = sum_m
w_m F_m(x) Hs_m`` and ``G2(x) = sum_m w_m F_m(x) Ss_m``: the exponential (Erlang) and fixed
gap laws both scale with their mean, so ``M_r(T; theta) = theta M_r(x; 1)`` and ``F_m(T;
theta) = F_m(x; 1)``; ``p(T)``, the chance a system prompt is cached, is the model's
:func:`~kvcache_calculator.analytic.model.shared_prefix_hit_probability`. The table holds
``a, G1, G2`` on a log grid of ``x``, each from the model's one loop
(:func:`~kvcache_calculator.analytic.model.gap_sums` at unit gaps). The arrival rate, think
time, system-prompt count, sticky instance count and every input that only changes the
capacity (memory, utilisation, reserve, weights, dtypes, offload) are then a few arithmetic
operations per point: find the bracket of ``O = capacity`` by bisection on the grid and
interpolate the hit rate linearly in ``log O``. Which inputs those are is a property of the
scenario keys (:attr:`~kvcache_calculator.scenario.Field.effect`); inputs that change the turn
structure (turns, tokens per turn, block size, non-sticky instance count, sliding layers) are
solved exactly by :func:`~kvcache_calculator.analytic.model.analyze_setup`.

The table holds the histories' occupancy; the KV held by running requests comes on top. Every
answer of the table is therefore taken at the capacity left to idle histories, the variant's
capacity minus the variant's in-flight KV (:func:`~kvcache_calculator.analytic.model.in_flight_for`:
the arrival rate, the instance count, the model, the GPU, the engine's ``max_num_seqs`` and the
service-time keys move it), as the analysis does.

:class:`Analysis` is one :class:`~kvcache_calculator.setup.resolve.Setup` analysed, with its
terms and table: what the sweeps, the advice and the figures of one recompute share, and what
their what-if variants (:func:`variant_hit_rate`, :func:`variant_result`) are evaluated on.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, replace

from kvcache_calculator.analytic.inflight import (
    RATE_KEYS, ServiceRates, at_rate, held_tokens, per_request, service_rates,
)
from kvcache_calculator.analytic.model import (
    T_MAX_S, AnalyticResult, Terms, Traffic, analyze_setup, analyze_terms, build_terms, gap_sums,
    document_window, fixed_gap_hit_probabilities, hit_rate_and_ceiling, hits, illinois_log_root, in_flight_for, saturation_x,
    shared_content, shared_prefix_hit_probability, traffic_of, with_service,
)
from kvcache_calculator.scenario import CAPACITY_ONLY_KEYS, IN_FLIGHT_KEYS, KV_BYTES_KEYS, SCALAR_KEYS, Scenario
from kvcache_calculator.setup.architecture import ModelArch
from kvcache_calculator.setup.capacity import Capacity
from kvcache_calculator.setup.resolve import Setup

_POINTS_PER_DECADE = 20
#: The loop stops where F_m falls below this past x (see :func:`gap_sums`): the table is an
#: interpolation anyway, and the stop makes a point cost O(min(R, x + 40)) instead of O(R).
_TAIL = 1e-13
#: Fixed gaps: grid points around each step x = m of the hit function (smoothed by the
#: occupancy's fluctuation, steep where a cache holds many conversations).
_AROUND_STEP_COARSE = tuple(sorted({1 + s * d for s in (-1, 1)
                                    for d in (1e-9, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)}))
_AROUND_STEP = tuple(sorted({1 + s * d for s in (-1, 1)
                             for d in (1e-9, 0.005, *(k / 100 for k in range(1, 16)), 0.175, 0.2, 0.25, 0.3)}))
_TABLE_KEYS = frozenset(SCALAR_KEYS) | frozenset(CAPACITY_ONLY_KEYS) | frozenset(IN_FLIGHT_KEYS)
_KV_BYTES_KEYS = frozenset(KV_BYTES_KEYS)
_TRAFFIC_KEYS = frozenset(SCALAR_KEYS) | {"instances"}     # what traffic_of reads
#: What sets a fixed-gap table's smoothing (conversations per instance times the think time).
_SPREAD_KEYS = frozenset(("arrival_rate", "think_time_s", "instances"))
#: The keys the table answers that move the service time in mean gaps (the think time, and
#: the time to first token and decode speed: :func:`~kvcache_calculator.analytic.inflight.service_rates`).
SERVICE_GAP_KEYS = frozenset(IN_FLIGHT_KEYS) | {"think_time_s", "active_params_b", "params_b", "weight_dtype",
                                                 "num_gpus"}


class HitRateTable:
    """The model's ``x``-dependent parts on a log grid of ``x = T / theta`` for one workload
    shape (see the module docstring); evaluate it for any :class:`Traffic` and capacity with
    :meth:`token_hit_rate`, or at every grid point with :meth:`occupancy_curve`."""

    def __init__(self, terms: Terms, x_lo: float = 1e-4, x_hi: float | None = None):
        R = len(terms.cost_sums)
        traffic = terms.traffic
        # far enough for the histories (x >> R) and for the shared prefix to saturate even at
        # 1/100 of the current request rate x think time (the sweeps go down to 1/10 of each)
        rate_theta = traffic.shared_rate * traffic.gap_mean_s
        x_hi = x_hi or max(100.0, 3.0 * R, 4000.0 / rate_theta if rate_theta > 0 else 0.0)
        x_hi = min(x_hi, 1e12 / traffic.gap_mean_s)
        n = int(math.ceil(math.log10(x_hi / x_lo) * _POINTS_PER_DECADE))
        xs = [x_lo * (x_hi / x_lo) ** (i / n) for i in range(n + 1)]
        if terms.gap_kind == "fixed":
            # the fixed-gap model steps up at x = m: grid points around each step that matters
            # (weight q(1-q)^(m-1) above 0.2%; smaller steps are interpolated)
            d = terms.service_gaps          # a step is where m gaps and m-1 services span T
            xs += [(m + (m - 1) * d) * f for m in range(1, min(R, 200) + 1) if terms.weights[m - 1] > 2e-3
                   for f in (_AROUND_STEP if terms.weights[m - 1] > 0.05 else _AROUND_STEP_COARSE)
                   if x_lo < (m + (m - 1) * d) * f < x_hi]
            xs.sort()
        self.terms = terms
        # past x_sat every F_m (m <= R) is 1 to within 1e-30 and M_m = m, so a(x) grows as x*D
        # and G1, G2 are constant: one evaluation there serves every larger x
        self.x_sat = saturation_x(R, terms.gap_sigma, terms.service_gaps)
        # with documents, u(x): a conversation's window at unit gaps (document_window)
        self.unit = replace(terms, traffic=replace(terms.traffic, service_s=0.0, gap_mean_s=1.0))
        self.at_sat = gap_sums(terms, self.x_sat, 1.0, 0.0, _TAIL)[:3] + (self._window(self.x_sat),)
        a, g1, g2, u = zip(*(self.parts(x) for x in xs))
        self.xs = tuple(xs)
        self.a = tuple(a)
        self.g1 = tuple(g1)
        self.g2 = tuple(g2)
        self.u = tuple(u)
        self.ceiling_tokens = hits(terms, math.inf)[0]
        self.at_zero = self.parts(0.0)

    def _window(self, x: float) -> float:
        return document_window(self.unit, x, _TAIL) if self.terms.doc_share else 0.0

    def parts(self, x: float) -> tuple[float, float, float, float]:
        """``(a(x), G1(x), G2(x), u(x))``: the model's loop at unit gaps (no shared prefix);
        ``u`` is a conversation's window for documents at unit gaps, 0 without them."""
        if x > self.x_sat:
            a, g1, g2, u = self.at_sat
            grow = x - self.x_sat
            return a + grow * self.terms.cost_last, g1, g2, u + grow * self.terms.turn_last if u else 0.0
        fixed_f = None
        if self.terms.gap_kind == "fixed":       # smoothed at this table's traffic (table_answers)
            traffic = self.terms.traffic
            kappa = traffic.conv_rate_per_instance * traffic.gap_mean_s
            fixed_f = fixed_gap_hit_probabilities(self.terms, x, 1.0, kappa)
        return gap_sums(self.terms, x, 1.0, 0.0, _TAIL, fixed_f=fixed_f)[:3] + (self._window(x),)

    def point(self, x: float, a: float, g1: float, g2: float, traffic: Traffic, u: float = 0.0) -> tuple[float, float]:
        """(occupancy tokens per instance, hit tokens per conversation) at ``T = theta * x``
        from the parts at ``x`` (the module docstring's two equations)."""
        theta = traffic.gap_mean_s
        terms = self.terms
        if terms.doc_share or traffic.sys_groups:
            window = theta * u + terms.mean_turns * traffic.service_s
            shared, part, _ = shared_content(terms, traffic, theta * x, window)
            return traffic.conv_rate_per_instance * theta * a + shared, terms.sys_turns * part + g1 - part * g2
        p = shared_prefix_hit_probability(traffic, theta * x)
        sys_hit = terms.sys_hit_tokens
        return (traffic.conv_rate_per_instance * theta * a + traffic.shared_tokens * p,
                terms.sys_turns * p * sys_hit + g1 - p * sys_hit * g2)

    def zero_rate(self, traffic: Traffic) -> float:
        """The hit rate when nothing is left to idle histories (running requests hold the whole
        cache): ``T = 0``, as the analysis solves it; only the shared prefix, which running
        requests pin, is hit."""
        prompt = self.terms.prompt_tokens
        return _clamp01(self._at(0.0, self.at_zero, traffic)[1] / prompt) if prompt > 0 else 0.0

    def _at(self, x: float, parts: tuple[float, float, float, float], traffic: Traffic) -> tuple[float, float]:
        a, g1, g2, u = parts
        return self.point(x, a, g1, g2, traffic, u)

    def _grid_point(self, i: int, traffic: Traffic) -> tuple[float, float]:
        return self.point(self.xs[i], self.a[i], self.g1[i], self.g2[i], traffic, self.u[i])

    def token_hit_rate(self, capacity_tokens: float, traffic: Traffic) -> float:
        """Token hit rate (0-1) at ``capacity_tokens`` per instance under ``traffic``."""
        prompt = self.terms.prompt_tokens
        if prompt <= 0:
            return 0.0
        if capacity_tokens <= 0:
            return self.zero_rate(traffic)
        n = len(self.xs)
        o_lo, h_lo = self._grid_point(0, traffic)
        if capacity_tokens <= o_lo:     # as analyze: T stays at its lower bound
            return _clamp01(h_lo / prompt)
        o_hi, h_hi = self._grid_point(n - 1, traffic)
        if capacity_tokens >= o_hi:
            # past the grid: solve exactly between its end and T = 1e13 s
            lo_x, hi_x = math.log(self.xs[-1]), math.log(T_MAX_S / traffic.gap_mean_s)

            def occ(log_x: float) -> float:
                x = math.exp(log_x)
                return self._at(x, self.parts(x), traffic)[0]
            if hi_x <= lo_x or occ(hi_x) <= capacity_tokens:
                return _clamp01(self.ceiling_tokens / prompt)
            x = math.exp(illinois_log_root(occ, math.log(capacity_tokens), lo_x, hi_x))
            return _clamp01(self._at(x, self.parts(x), traffic)[1] / prompt)
        lo, hi = 0, n - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            o_mid, h_mid = self._grid_point(mid, traffic)
            if o_mid <= capacity_tokens:
                lo, o_lo, h_lo = mid, o_mid, h_mid
            else:
                hi, o_hi, h_hi = mid, o_mid, h_mid
        return _clamp01(_interp_log(capacity_tokens, o_lo, o_hi, h_lo, h_hi) / prompt)

    def occupancy_curve(self, traffic: Traffic) -> tuple[list[float], list[float]]:
        """(occupancy tokens, token hit rate) at every grid point, for many capacities."""
        # point()'s arithmetic, inlined (tests/test_table.py holds them equal): the heatmap
        # calls this once per row, and a call per point made it a third slower
        prompt = self.terms.prompt_tokens or 1.0
        if self.terms.doc_share or traffic.sys_groups:
            points = [self.point(x, a, g1, g2, traffic, u)
                      for x, a, g1, g2, u in zip(self.xs, self.a, self.g1, self.g2, self.u)]
            return [o for o, _ in points], [_clamp01(h / prompt) for _, h in points]
        theta, conv, shared = traffic.gap_mean_s, traffic.conv_rate_per_instance, traffic.shared_tokens
        sys_turns, sys_hit = self.terms.sys_turns, self.terms.sys_hit_tokens
        probability = shared_prefix_hit_probability
        occ, rate = [], []
        for x, a, g1, g2 in zip(self.xs, self.a, self.g1, self.g2):
            p = probability(traffic, theta * x)
            occ.append(conv * theta * a + shared * p)
            r = (sys_turns * p * sys_hit + g1 - p * sys_hit * g2) / prompt
            rate.append(0.0 if r < 0.0 else 1.0 if r > 1.0 else r)
        return occ, rate


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


# -- one setup analysed ---------------------------------------------------------------------


@dataclass(frozen=True)
class Analysis:
    """A :class:`~kvcache_calculator.setup.resolve.Setup` analysed: the model's terms, the
    result, the hit-rate table and its curve at the setup's own traffic. Built once
    (:func:`prepare`) and shared by the sweeps, the suggestions and the figures of one
    recompute."""

    setup: Setup
    terms: Terms
    result: AnalyticResult
    table: HitRateTable
    curve: tuple[tuple[float, ...], tuple[float, ...]]   # occupancy_curve at the setup's traffic
    rates: ServiceRates                                  # how fast the setup serves a request
    request_held: tuple[float, float]                    # (held token-seconds, service_s) of a request

    @property
    def scenario(self) -> Scenario:
        """The setup's scenario."""
        return self.setup.scenario

    @property
    def arch(self) -> ModelArch:
        """The setup's model."""
        return self.setup.arch

    @property
    def capacity(self) -> Capacity:
        """The setup's capacity."""
        return self.setup.capacity

    def traffic(self, scenario: Scenario, service_s: float | None = None) -> Traffic:
        """The :class:`Traffic` of a variant ``scenario`` with this one's turn structure, its
        requests served in ``service_s`` (None: this one's)."""
        service = self.terms.traffic.service_s if service_s is None else service_s
        return traffic_of(scenario, self.terms.mean_turns, self.terms.sys_hit_tokens, service, self.terms.doc_tokens)

    @property
    def in_flight_tokens(self) -> float:
        """KV tokens held by running requests per instance (0 when the model does not fit)."""
        return self.result.in_flight_tokens

    def variant_in_flight(self, scenario: Scenario, rates: ServiceRates | None = None) -> tuple[float, float]:
        """``(tokens, service_s)`` of the running requests per instance in a variant
        ``scenario`` with this one's turn structure (the table's variants), served at ``rates``
        (None: this setup's), as :func:`~kvcache_calculator.analytic.model.in_flight_for`
        gives them."""
        terms = self.terms
        rate = scenario.arrival_rate * terms.mean_turns / scenario.instances
        if rates is None:            # this setup's requests at another rate: a few operations
            held, service_s = self.request_held
            return at_rate(rate, held, service_s, self.rates.max_num_seqs)[1], service_s
        return held_tokens(rate, max(0.0, terms.prompt_tokens / terms.mean_turns - terms.shared_prefix_tokens),
                           scenario.output_tokens, rates, scenario.block_size)


def prepare(setup: Setup) -> Analysis:
    """Analyse ``setup`` once: its terms, its :class:`AnalyticResult` and its hit-rate table."""
    terms = build_terms(setup)
    terms = with_service(terms, in_flight_for(setup, terms).service_s)
    table = HitRateTable(terms)
    occ, rate = table.occupancy_curve(terms.traffic)
    rates = service_rates(setup)
    s = setup.scenario
    held = per_request(max(0.0, terms.prompt_tokens / terms.mean_turns - terms.shared_prefix_tokens), s.output_tokens,
                       rates.ttft_s, rates.decode_tokens_per_s, s.block_size)
    return Analysis(setup, terms, analyze_terms(setup, terms), table, (tuple(occ), tuple(rate)), rates, held)


def table_answers(analysis: Analysis, keys) -> bool:
    """Whether changing ``keys`` keeps the model's sums over turns, so the table answers:
    traffic scalars, capacity-only and service-time keys, the instance count under session
    affinity (it only divides the traffic) and the KV bytes per token unless the model holds
    per-sequence state. With fixed gaps the table is smoothed at its own traffic
    (:func:`~kvcache_calculator.analytic.model.fixed_gap_hit_probabilities`), so a change of the
    conversations per instance or of the think time is solved exactly. Under routings that
    spread turns the table holds the service time in mean gaps (``Terms.service_gaps``), so a
    change of the think time or of what sets the service time is solved exactly too."""
    fixed_state = analysis.capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    fixed_gaps = analysis.terms.gap_kind == "fixed"
    served_elsewhere = analysis.terms.service_gaps > 0
    for key in keys:
        if fixed_gaps and key in _SPREAD_KEYS:
            return False
        if served_elsewhere and key in SERVICE_GAP_KEYS:
            return False
        if key in _TABLE_KEYS:
            continue
        if key == "instances" and analysis.scenario.routing == "session":
            continue
        if key in _KV_BYTES_KEYS and not fixed_state:
            continue
        return False
    return True


def variant_hit_rate(analysis: Analysis, **changes) -> float:
    """Token hit rate (0-1) of the scenario with ``changes`` (valid values, not re-checked):
    from the table when it answers (:func:`table_answers`), else solved exactly."""
    if not changes:
        return analysis.result.token_hit_rate
    variant = analysis.setup.variant(**changes)
    cap = variant.capacity
    if not cap.fits:
        return 0.0
    if table_answers(analysis, changes):
        # the service rates are this setup's unless the changes touch what they read
        rates = None if RATE_KEYS.isdisjoint(changes) else service_rates(variant)
        held, service_s = analysis.variant_in_flight(variant.scenario, rates)
        if analysis.terms.service_gaps and not math.isclose(
                service_s / variant.scenario.think_time_s, analysis.terms.service_gaps, rel_tol=1e-12):
            return hit_rate_and_ceiling(variant, _TAIL)[0]     # the table's service in gaps moved
        tokens = max(0.0, max(cap.capacity_tokens, cap.offload_tokens) - held)
        base = analysis.terms.traffic
        same = _TRAFFIC_KEYS.isdisjoint(changes) and (not base.pins or service_s == base.service_s)
        traffic = analysis.terms.traffic if same else analysis.traffic(variant.scenario, service_s)
        return analysis.table.token_hit_rate(tokens, traffic)
    return hit_rate_and_ceiling(variant, _TAIL)[0]


def variant_hit_and_ceiling(analysis: Analysis, **changes) -> tuple[float, float]:
    """(token hit rate, ceiling) of the scenario with ``changes``, solved exactly (to about
    1e-12: :func:`~kvcache_calculator.analytic.model.hit_rate_and_ceiling` with the table's
    early stop)."""
    return hit_rate_and_ceiling(analysis.setup.variant(**changes), _TAIL)


def variant_result(analysis: Analysis, **changes) -> AnalyticResult:
    """The full exact analysis of the scenario with ``changes`` (valid values, not re-checked)."""
    return analyze_setup(analysis.setup.variant(**changes))


def hit_rate_at_tokens(analysis: Analysis, capacity_tokens: float) -> float:
    """Token hit rate at ``capacity_tokens`` of GPU cache per instance, from the table (the
    offload tier, if any and larger, serves as the second tier as in the analysis; the
    running requests hold their KV in either)."""
    if capacity_tokens <= 0:
        return 0.0
    tokens = max(capacity_tokens, analysis.capacity.offload_tokens) - analysis.in_flight_tokens
    return analysis.table.token_hit_rate(max(0.0, tokens), analysis.terms.traffic)
