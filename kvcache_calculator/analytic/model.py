"""The analytic hit-rate model: LRU as a characteristic-time cache (docs/model.md §4-§6).

LRU evicts whatever has been idle longest; in a large cache it behaves like a timer: an entry
survives while it has been idle less than one characteristic time ``T`` (Che, Tung and Wang,
IEEE JSAC 2002; Fricker, Robert and Roberts, ITC 2012; Martina, Garetto and Leonardi,
INFOCOM 2014, for renewal request processes). All blocks of a conversation's history are
touched together at each turn, so they share one idle clock.

Workload (docs/model.md §4), with ``S`` system-prompt tokens, ``In``/``Out`` tokens per turn and
block size ``B``:

- turn k's prompt is ``P_k = S + (k-1)(In+Out) + In`` tokens;
- after turn k the engine holds ``H_k = S + k(In+Out)`` tokens, of which whole blocks,
  ``floor(H_k/B)*B``, are reusable; the first ``Sb = floor(S/B)*B`` are the shared system prompt;
- a hit is the cached prefix rounded down to whole blocks and never the last prompt token
  (docs/model.md §1), so turn k+1 finding the copy left by turn j hits ``h_j = floor(H_j/B)*B`` tokens.

Routing: with session affinity each of ``I`` instances sees ``arrival_rate/I`` conversations.
Otherwise each turn lands on any instance with probability ``q = 1/I``; turn k+1 finds the
copy its conversation left on that instance m turns ago with probability ``q(1-q)^(m-1)``,
if that copy has been idle (m gaps: Erlang-m for exponential gaps) less than ``T``. Session
affinity is the case ``q = 1``.

Occupancy per instance in tokens (Little's law), with ``c_j`` the private tokens of the copy
left by turn j, ``S(k) = P(N >= k)``, ``M_r(T) = E[min(sum of r gaps, T)]``::

    O(T) = (arrival_rate/I) * [ sum_r q(1-q)^(r-1) M_r(T) sum_j c_j S(j+r)
                                + T * sum_j c_j E[(1-q)^(N-j); N >= j] ]
           + num_system_prompts * Sb * p_sys(T)

where ``p_sys`` is the chance a system prompt is still cached
(:func:`shared_prefix_hit_probability`). ``T`` is the root of
``O(T) = capacity_tokens`` (bisection on log T; O grows from 0 without bound). Every sum over
turns is independent of ``T`` and computed once, so a solve costs O(R) per step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kvcache_calculator.setup.architecture import sequence_kv_bytes
from kvcache_calculator.setup.capacity import Capacity, compute_capacity, resolve_gpu, resolve_model
from kvcache_calculator.scenario import Scenario

_EPS_TAIL = 1e-12       # truncate sums over turns where P(N >= k) falls below this
_T_MIN_S = 1e-6
_T_MAX_S = 1e13
MAX_TERMS = 200_000


@dataclass(frozen=True)
class Terms:
    """The T-independent sums of the model for one workload (token units)."""

    q: float                          # probability a turn lands on a given instance (1: sticky)
    conv_rate_per_instance: float     # conversations/s per instance (arrival_rate / I)
    mean_turns: float
    prompt_tokens: float              # E[sum_k P_k] per conversation
    sys_hit_tokens: float             # Sb
    sys_turns: float                  # E[N]: turns that may hit the shared prefix
    hit_sums: tuple[float, ...]       # Hs_m = sum_j S(j+m) (h_j - ...) terms, m = 1..R
    turn_sums: tuple[float, ...]      # Ss_m = sum_j S(j+m), m = 1..R
    cost_sums: tuple[float, ...]      # Cs_r = sum_j c_j S(j+r), r = 1..R
    cost_last: float                  # D = sum_j c_j E[(1-q)^(N-j); N >= j]
    shared_tokens: float              # num_system_prompts * Sb (+ fixed costs)
    shared_rate: float                # requests/s per instance per system prompt
    num_shared_prompts: int           # distinct system prompts
    gap_mean_s: float
    gap_kind: str                     # exponential | fixed
    request_hit_turns: float          # sum_k S(k+1) over turns whose history is >= 1 block
    first_turn_sys: bool              # the first turn's reusable prefix is >= 1 block

    @property
    def weights(self) -> list[float]:
        """q(1-q)^(m-1) for m = 1..R."""
        q = self.q
        return [q * (1 - q) ** (m - 1) for m in range(1, len(self.hit_sums) + 1)]


def _survival(scenario: Scenario) -> list[float]:
    """S(k) = P(N >= k) for k = 1..K, truncated where it falls below ``_EPS_TAIL``."""
    if scenario.turns_dist == "fixed":
        n = int(scenario.turns)
        return [1.0] * n
    p = 1.0 / scenario.turns
    if p >= 1.0:
        return [1.0]
    kmax = min(MAX_TERMS, int(math.log(_EPS_TAIL) / math.log(1 - p)) + 2)
    return [(1 - p) ** (k - 1) for k in range(1, kmax + 1)]


def _geometric_sums(S: int, In: int, step: int, B: int, p: float) -> dict:
    """Closed forms of the sums over turns for geometric N (``P(N >= k) = r^(k-1)``, r = 1-p).

    ``h_j = B*floor((S + j*step)/B) = S + j*step - ((S + j*step) mod B)``: the linear part has
    the usual closed forms and the remainder is periodic in j with period ``B/gcd(step, B)``,
    so ``sum_j r^j h_j`` costs O(B) instead of O(turns / p). Exact up to rounding.
    """
    r = 1.0 - p
    period = B // math.gcd(step, B)
    one_minus_r_period = -math.expm1(period * math.log1p(-p))
    mod_sum = sum(r ** t * ((S + t * step) % B) for t in range(1, period + 1)) / one_minus_r_period
    base_s = r / p
    base_h = S * r / p + step * r / p ** 2 - mod_sum
    first_hit = 1 if S >= B else max(1, -(-(B - S) // step))   # first j with h_j >= B
    return {
        "mean_turns": 1.0 / p,
        "prompt_tokens": (S + In) / p + step * r / p ** 2,
        "base_s": base_s,
        "base_h": base_h,
        "request_hit_turns": r ** first_hit / p,
    }


def build_terms(scenario: Scenario, capacity: Capacity, arch=None, *, closed_form: bool = True) -> Terms:
    """Precompute the model's sums for ``scenario`` (see the module docstring).

    ``closed_form=False`` sums term by term (truncated where ``P(N >= k) < 1e-12``), the
    reference the closed forms are tested against; models with per-sequence fixed state
    (sliding windows, linear attention) always sum term by term.
    """
    S, In, Out, B = scenario.system_prompt_tokens, scenario.input_tokens, scenario.output_tokens, scenario.block_size
    step = In + Out
    sticky = scenario.routing == "session" or scenario.instances == 1
    I = scenario.instances
    q = 1.0 if sticky else 1.0 / I
    Sb = (S // B) * B
    # per-sequence fixed state (sliding windows, linear state), in token equivalents
    bpt_gpu = capacity.kv_bytes_per_token_per_gpu
    has_fixed = capacity.kv_bytes_per_sequence_fixed_per_gpu > 0 and arch is not None

    def fixed_cost(tokens: float) -> float:
        total = sequence_kv_bytes(arch, tokens, scenario.kv_dtype, scenario.num_gpus, B)
        return total / bpt_gpu - tokens

    geometric = scenario.turns_dist == "geometric" and scenario.turns > 1
    if geometric and closed_form and not has_fixed:
        p = 1.0 / scenario.turns
        K = min(MAX_TERMS, int(math.log(_EPS_TAIL) / math.log(1 - p)) + 2)
        sums = _geometric_sums(S, In, In + Out, B, p)
        R = 1 if sticky else max(1, min(K, int(math.log(_EPS_TAIL) / math.log(1 - q)) + 2))
        base_c = sums["base_h"] - Sb * sums["base_s"]
        factor = p / (1 - (1 - p) * (1 - q))
        return _terms(scenario, q, sums["mean_turns"], sums["prompt_tokens"], Sb, R, 1 - p,
                      sums["base_h"], sums["base_s"], base_c, factor * base_c / (1 - p),
                      sums["request_hit_turns"])
    surv = _survival(scenario)
    K = len(surv)
    h = [0.0] * (K + 1)      # h[j]: tokens a later turn hits on the copy left by turn j
    c = [0.0] * (K + 1)      # c[j]: private cached tokens of that copy
    for j in range(1, K + 1):
        cached = ((S + j * step) // B) * B
        h[j] = float(cached)
        c[j] = float(cached - Sb)
        if has_fixed:
            c[j] += fixed_cost(S + j * step)
    surv_ext = surv + [0.0]  # S(K+1) = 0 (truncated)

    def sv(k: int) -> float:
        return surv_ext[k - 1] if 1 <= k <= K + 1 else 0.0

    mean_turns = sum(surv)
    prompt_tokens = sum(surv[k - 1] * (S + (k - 1) * step + In) for k in range(1, K + 1))
    if sticky:
        R = 1
    else:
        R = K if q <= 0 else min(K, int(math.log(_EPS_TAIL) / math.log(1 - q)) + 2) if q < 1 else 1
        R = max(1, R)
    # Hs_m = sum_j S(j+m) h_j ; Ss_m = sum_j S(j+m) ; Cs_r = sum_j S(j+r) c_j
    # computed with suffix structure: for each m, sum over j = 1..K-m
    hit_sums, turn_sums, cost_sums = [], [], []
    if scenario.turns_dist == "geometric" and K > 1:
        ratio = 1 - 1.0 / scenario.turns
        base_h = sum(sv(j + 1) * h[j] for j in range(1, K + 1))
        base_s = sum(sv(j + 1) for j in range(1, K + 1))
        base_c = sum(sv(j + 1) * c[j] for j in range(1, K + 1))
        for m in range(1, R + 1):
            f = ratio ** (m - 1)
            hit_sums.append(base_h * f)
            turn_sums.append(base_s * f)
            cost_sums.append(base_c * f)
    else:
        # fixed turns (or a single turn): S(j+m) = 1 for j + m <= n
        pref_h = [0.0] * (K + 1)
        pref_c = [0.0] * (K + 1)
        for j in range(1, K + 1):
            pref_h[j] = pref_h[j - 1] + h[j]
            pref_c[j] = pref_c[j - 1] + c[j]
        for m in range(1, R + 1):
            upto = max(0, K - m)
            hit_sums.append(pref_h[upto])
            turn_sums.append(float(upto))
            cost_sums.append(pref_c[upto])
    # D = sum_j c_j E[(1-q)^(N-j); N >= j]
    if scenario.turns_dist == "geometric" and K > 1:
        p = 1.0 / scenario.turns
        factor = p / (1 - (1 - p) * (1 - q))
        cost_last = factor * sum(c[j] * surv[j - 1] for j in range(1, K + 1))
    else:
        cost_last = sum(c[j] * (1 - q) ** (K - j) for j in range(1, K + 1))

    return Terms(
        q=q, conv_rate_per_instance=scenario.arrival_rate / I, mean_turns=mean_turns,
        prompt_tokens=prompt_tokens, sys_hit_tokens=float(Sb), sys_turns=mean_turns,
        hit_sums=tuple(hit_sums), turn_sums=tuple(turn_sums), cost_sums=tuple(cost_sums),
        cost_last=cost_last, shared_tokens=float(scenario.num_system_prompts * Sb),
        shared_rate=scenario.arrival_rate / I * mean_turns / scenario.num_system_prompts,
        num_shared_prompts=scenario.num_system_prompts, gap_mean_s=scenario.think_time_s,
        gap_kind=scenario.think_dist,
        request_hit_turns=sum(sv(j + 1) for j in range(1, K + 1) if h[j] >= B), first_turn_sys=Sb >= B,
    )


def _terms(scenario: Scenario, q: float, mean_turns: float, prompt_tokens: float, Sb: int, R: int,
           ratio: float, base_h: float, base_s: float, base_c: float, cost_last: float,
           request_hit_turns: float) -> Terms:
    """Terms for geometric turns, where every sum over m is its first term times ratio^(m-1)."""
    f = [ratio ** m for m in range(R)]
    conv_rate = scenario.arrival_rate / scenario.instances
    return Terms(
        q=q, conv_rate_per_instance=conv_rate, mean_turns=mean_turns, prompt_tokens=prompt_tokens,
        sys_hit_tokens=float(Sb), sys_turns=mean_turns, hit_sums=tuple(base_h * x for x in f),
        turn_sums=tuple(base_s * x for x in f), cost_sums=tuple(base_c * x for x in f),
        cost_last=cost_last, shared_tokens=float(scenario.num_system_prompts * Sb),
        shared_rate=conv_rate * mean_turns / scenario.num_system_prompts,
        num_shared_prompts=scenario.num_system_prompts, gap_mean_s=scenario.think_time_s,
        gap_kind=scenario.think_dist, request_hit_turns=request_hit_turns, first_turn_sys=Sb >= scenario.block_size,
    )


def gap_functions(terms: Terms, T: float, R: int) -> tuple[list[float], list[float]]:
    """F_m(T) = P(sum of m gaps < T) and M_m(T) = E[min(sum of m gaps, T)], m = 1..R.

    Exponential gaps (mean theta): the sum of m gaps is Erlang; with x = T/theta,
    ``F_m = P(Poisson(x) >= m)`` and ``M_m = theta * sum_{i<=m} F_i``. Fixed gaps: the sum
    is m*theta exactly.
    """
    theta = terms.gap_mean_s
    if math.isinf(T):
        return [1.0] * R, [m * theta for m in range(1, R + 1)]
    if terms.gap_kind == "fixed":
        F = [1.0 if m * theta < T else 0.0 for m in range(1, R + 1)]
        M = [min(m * theta, T) for m in range(1, R + 1)]
        return F, M
    x = T / theta
    F, M = [], []
    if x == 0:
        return [0.0] * R, [0.0] * R
    log_x = math.log(x)
    log_term = -x            # log of e^-x x^i / i!, i = 0
    cdf = 0.0                # P(Poisson(x) <= i - 1) accumulated
    acc = 0.0
    for m in range(1, R + 1):
        cdf += math.exp(log_term)          # now P(Poisson <= m-1)
        log_term += log_x - math.log(m)
        fm = max(0.0, 1.0 - cdf)
        if m == 1:
            fm = -math.expm1(-x)           # exact for small x
        F.append(fm)
        acc += fm
        M.append(theta * acc)
    return F, M


def shared_prefix_hit_probability(terms: Terms, T: float) -> float:
    """Probability that a system prompt is still cached when a request needs it.

    Every request touches its system prompt last (it is the head of the sequence), and LRU
    evicts only when something is inserted. So with one system prompt it is never evicted while
    the cache holds anything else, and with ``K`` prompts a prompt survives if one of the last
    ``max(1, Lambda*T)`` requests used it (``Lambda``: requests/s per instance):
    ``1 - (1 - 1/K)^max(1, Lambda*T)``. (A continuous timer, ``1 - exp(-Lambda*T/K)``,
    underestimated tiny caches by up to 9 points against the simulator.)
    """
    K = terms.num_shared_prompts
    if K <= 1 or math.isinf(T):
        return 1.0
    n = max(1.0, terms.shared_rate * K * T)
    return -math.expm1(n * math.log1p(-1.0 / K))


def occupancy(terms: Terms, T: float) -> float:
    """Mean cached tokens per instance when entries live ``T`` seconds idle (Little's law)."""
    R = len(terms.cost_sums)
    _, M = gap_functions(terms, T, R)
    q = terms.q
    total = 0.0
    w = q
    for r in range(R):
        total += w * M[r] * terms.cost_sums[r]
        w *= (1 - q)
    total += T * terms.cost_last
    shared = terms.shared_tokens * shared_prefix_hit_probability(terms, T) if terms.shared_tokens else 0.0
    return terms.conv_rate_per_instance * total + shared


def hits(terms: Terms, T: float) -> tuple[float, float]:
    """(expected hit tokens, expected request hits) per conversation at characteristic time T."""
    R = len(terms.hit_sums)
    F, _ = gap_functions(terms, T, R)
    p_sys = shared_prefix_hit_probability(terms, T)
    sys_part = p_sys * terms.sys_hit_tokens
    tokens = terms.sys_turns * sys_part
    q = terms.q
    w = q
    for m in range(R):
        tokens += w * F[m] * (terms.hit_sums[m] - sys_part * terms.turn_sums[m])
        w *= (1 - q)
    requests = terms.q * F[0] * terms.request_hit_turns if R else 0.0
    if terms.first_turn_sys:
        requests += p_sys
    return tokens, requests


def illinois_log_root(f, log_target: float, x0: float, x1: float) -> float:
    """Root of ``log f(x) = log_target`` for increasing ``f`` on [x0, x1] (regula falsi with
    the Illinois modification, bisection as a guard). With x = log T, ``log O`` is close to
    linear, so it converges in a handful of steps."""
    def g(x: float) -> float:
        v = f(x)
        return (math.log(v) if v > 0 else -745.0) - log_target

    g0, g1 = g(x0), g(x1)
    side = 0
    for _ in range(200):
        x = x1 - g1 * (x1 - x0) / (g1 - g0) if g1 != g0 else 0.5 * (x0 + x1)
        if not (min(x0, x1) < x < max(x0, x1)):
            x = 0.5 * (x0 + x1)
        gx = g(x)
        if abs(gx) < 1e-12 or abs(x1 - x0) < 1e-12:
            return x
        if gx * g1 < 0:
            x0, g0 = x1, g1
            side = 0
        else:
            if side == -1:
                g0 *= 0.5
            side = -1
        x1, g1 = x, gx
    return x1


def _solve_increasing(f, target: float, lo: float, hi: float) -> float:
    """Root of the increasing function ``f(T) = target`` on [lo, hi], solved in log T."""
    return math.exp(illinois_log_root(lambda x: f(math.exp(x)), math.log(target), math.log(lo), math.log(hi)))


def solve_characteristic_time(terms: Terms, capacity_tokens: float) -> float:
    """The root T of O(T) = capacity_tokens; ``inf`` when everything ever cached fits."""
    if capacity_tokens <= 0:
        return 0.0
    if occupancy(terms, _T_MAX_S) <= capacity_tokens:
        return math.inf
    if occupancy(terms, _T_MIN_S) >= capacity_tokens:
        return _T_MIN_S
    return _solve_increasing(lambda T: occupancy(terms, T), capacity_tokens, _T_MIN_S, _T_MAX_S)


def token_hit_rate_at(terms: Terms, T: float) -> float:
    """Token hit rate (0-1) at characteristic time T."""
    if terms.prompt_tokens <= 0:
        return 0.0
    return min(1.0, max(0.0, hits(terms, T)[0] / terms.prompt_tokens))


@dataclass(frozen=True)
class AnalyticResult:
    """The analytic model's answer for one scenario (rates are 0-1 fractions)."""

    fits: bool
    message: str
    token_hit_rate: float
    request_hit_rate: float
    max_token_hit_rate: float
    max_request_hit_rate: float
    gpu_token_hit_rate: float
    offload_token_hit_rate: float
    characteristic_time_s: float | None       # None: nothing is ever evicted
    offload_characteristic_time_s: float | None
    capacity_tokens: int
    mean_turns: float
    request_rate: float                       # requests/s, whole fleet
    prompt_tokens_per_s: float                # whole fleet
    hit_tokens_per_s: float
    mean_prompt_tokens: float
    policy_modelled: bool                     # False: the policy is not LRU, use the simulator
    capacity: Capacity

    def to_dict(self) -> dict:
        """Plain JSON types (the capacity nested as a dict)."""
        d = asdict(self)
        d["capacity"] = self.capacity.to_dict()
        return d


def _finite(T: float) -> float | None:
    return None if math.isinf(T) else T


def analyze(scenario: Scenario, capacity: Capacity | None = None, arch=None) -> AnalyticResult:
    """Hit rates, characteristic time and rates for ``scenario`` (docs/model.md §4-§6, §9)."""
    arch = arch or resolve_model(scenario)
    capacity = capacity or compute_capacity(scenario, arch, resolve_gpu(scenario))
    terms = build_terms(scenario, capacity, arch)
    ceiling_tokens, ceiling_requests = hits(terms, math.inf)
    max_thr = min(1.0, ceiling_tokens / terms.prompt_tokens)
    max_rhr = min(1.0, ceiling_requests / terms.mean_turns)
    request_rate = scenario.arrival_rate * terms.mean_turns
    prompt_tps = scenario.arrival_rate * terms.prompt_tokens
    if not capacity.fits:
        return AnalyticResult(False, capacity.message, 0.0, 0.0, max_thr, max_rhr, 0.0, 0.0, 0.0, None,
                              0, terms.mean_turns, request_rate, prompt_tps, 0.0,
                              terms.prompt_tokens / terms.mean_turns, scenario.policy == "lru", capacity)
    T1 = solve_characteristic_time(terms, capacity.capacity_tokens)
    gpu_tokens, gpu_requests = hits(terms, T1)
    total_tokens, total_requests, T2 = gpu_tokens, gpu_requests, None
    if capacity.offload_tokens > capacity.capacity_tokens:
        T2 = solve_characteristic_time(terms, capacity.offload_tokens)
        total_tokens, total_requests = hits(terms, T2)
    gpu_thr = min(1.0, gpu_tokens / terms.prompt_tokens)
    thr = min(1.0, total_tokens / terms.prompt_tokens)
    rhr = min(1.0, total_requests / terms.mean_turns)
    return AnalyticResult(
        fits=True, message=capacity.message, token_hit_rate=thr, request_hit_rate=rhr,
        max_token_hit_rate=max_thr, max_request_hit_rate=max_rhr, gpu_token_hit_rate=gpu_thr,
        offload_token_hit_rate=max(0.0, thr - gpu_thr), characteristic_time_s=_finite(T1),
        offload_characteristic_time_s=None if T2 is None else _finite(T2),
        capacity_tokens=capacity.capacity_tokens, mean_turns=terms.mean_turns,
        request_rate=request_rate, prompt_tokens_per_s=prompt_tps, hit_tokens_per_s=prompt_tps * thr,
        mean_prompt_tokens=terms.prompt_tokens / terms.mean_turns,
        policy_modelled=scenario.policy == "lru", capacity=capacity,
    )


def capacity_for_hit_rate(scenario: Scenario, target: float, capacity: Capacity | None = None,
                          arch=None) -> tuple[float | None, float]:
    """Tokens of cache per instance for a token hit rate of ``target``, and the ceiling.

    Returns ``(None, ceiling)`` when the target is at or above the infinite-cache ceiling.
    Solves on T (hit rate rises with T), then capacity = O(T).
    """
    arch = arch or resolve_model(scenario)
    capacity = capacity or compute_capacity(scenario, arch, resolve_gpu(scenario))
    terms = build_terms(scenario, capacity, arch)
    ceiling = token_hit_rate_at(terms, math.inf)
    if target >= ceiling - 1e-9:
        return None, ceiling
    if token_hit_rate_at(terms, _T_MIN_S) >= target:
        return occupancy(terms, _T_MIN_S), ceiling   # what is hit even then: the shared prompt
    T = _solve_increasing(lambda t: token_hit_rate_at(terms, t), target, _T_MIN_S, _T_MAX_S)
    return occupancy(terms, T), ceiling
