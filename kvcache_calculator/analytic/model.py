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
turns is independent of ``T`` and computed once (:func:`build_terms`), so a solve costs O(R)
per step: :func:`gap_sums` is the model's one loop over ``m`` (turns ago), shared by the
occupancy, the hit counts and the sweeps' fast table (:mod:`kvcache_calculator.analytic.table`).

Running requests hold KV the idle histories cannot use (:mod:`kvcache_calculator.analytic.inflight`):
``T`` is solved on ``capacity_tokens - in_flight_tokens`` (never below 0), the cache left to
conversations waiting for their user; the offload tier, written through, holds the running
sequences too and gives them the same share.

Setup to result: :func:`analyze_setup` takes a resolved :class:`~kvcache_calculator.setup.resolve.Setup`
(model, GPU, capacity); :func:`analyze` resolves a scenario first.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, replace

from kvcache_calculator.analytic.inflight import NONE as NO_IN_FLIGHT
from kvcache_calculator.analytic.inflight import InFlight, in_flight_of
from kvcache_calculator.analytic.lengths import (
    exponential_remainder, geometric_compound, grouped_remainder, history_remainders, reach_count, reach_probabilities,
    remainder_settles,
)
from kvcache_calculator.analytic.popularity import (
    Groups, empirical_cdf_and_partial, erlang_cdf_and_partial, lognormal_cdf_and_partial, lognormal_sigma_of_sum,
    normal_cdf, product_groups, shape_cv2, shape_quantiles,
    window_hit_probability, zipf_groups,
)
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.architecture import sequence_kv_bytes
from kvcache_calculator.setup.capacity import Capacity
from kvcache_calculator.setup.resolve import Setup, resolve

_EPS_TAIL = 1e-12       # truncate sums over turns where P(N >= k) falls below this
T_MIN_S = 1e-6          # the characteristic time is solved for between these (seconds)
T_MAX_S = 1e13
MAX_TERMS = 200_000


@dataclass(frozen=True)
class Traffic:
    """The model's scalars that its sums over turns do not depend on, per instance: a change
    of the arrival rate, the think time or the number of system prompts changes only these."""

    conv_rate_per_instance: float     # conversations/s per instance (arrival_rate / I)
    shared_tokens: float              # num_system_prompts * Sb
    shared_rate: float                # requests/s per instance per system prompt
    num_shared_prompts: int           # distinct system prompts
    gap_mean_s: float                 # mean think time theta
    service_s: float = 0.0            # how long a running request pins its shared prefix
    sys_groups: Groups = ()           # popularity groups of the system prompts; (): equal use
    doc_tokens: float = 0.0           # a document's shared tokens (docs/model.md §12)
    doc_rate: float = 0.0             # conversations/s per instance that include a document
    doc_groups: Groups = ()           # (count, probability) of (system prompt, document) pairs

    @property
    def pins(self) -> bool:
        """Whether a running request's pinning of shared content matters (several system
        prompts, or documents): else the service time is kept at 0."""
        return self.num_shared_prompts > 1 or self.doc_rate > 0


def _documents_on(scenario: Scenario) -> bool:
    return scenario.num_documents > 0 and scenario.document_share > 0


@functools.lru_cache(maxsize=64)
def _popularity(prompts: int, prompt_zipf: float, documents: int, document_zipf: float) -> tuple[Groups, Groups]:
    """The system prompts' popularity groups (``()`` for equal use) and the groups of the
    (system prompt, document) pairs a conversation with a document uses (cached: pure)."""
    sys_groups = zipf_groups(prompts, prompt_zipf) if prompt_zipf > 0 and prompts > 1 else ()
    if documents <= 0:
        return sys_groups, ()
    return sys_groups, product_groups(sys_groups or zipf_groups(prompts, 0.0), zipf_groups(documents, document_zipf))


def traffic_of(scenario: Scenario, mean_turns: float, sys_hit_tokens: float, service_s: float = 0.0,
               doc_tokens: float = 0.0) -> Traffic:
    """The :class:`Traffic` of ``scenario`` for a workload of ``mean_turns`` turns per
    conversation, ``sys_hit_tokens`` reusable system-prompt tokens (``Sb``), documents of
    ``doc_tokens`` shared tokens and requests served in ``service_s`` (kept only when shared
    content is pinned: :func:`with_service`)."""
    conv = scenario.arrival_rate / scenario.instances
    prompts = scenario.num_system_prompts
    docs = _documents_on(scenario)
    sys_groups, doc_groups = _popularity(prompts, scenario.system_prompt_zipf,
                                         scenario.num_documents if docs else 0, scenario.document_zipf)
    doc_rate = conv * scenario.document_share if docs else 0.0
    return Traffic(conv, float(prompts * sys_hit_tokens), conv * mean_turns / prompts, prompts,
                   scenario.think_time_s, service_s if prompts > 1 or doc_rate > 0 else 0.0,
                   sys_groups, float(doc_tokens) if docs else 0.0, doc_rate, doc_groups)


def with_service(terms: "Terms", service_s: float) -> "Terms":
    """``terms`` for requests served in ``service_s``: the window in which a running request
    pins its system prompt and document (:func:`shared_prefix_hit_probability`; kept at 0 with
    one system prompt and no documents, where it changes nothing), and, under routings that
    spread turns, the time each turn served elsewhere adds to a copy's idle time
    (``Terms.service_gaps``, docs/model.md §6.2; 0 under session affinity)."""
    pinned = service_s if terms.traffic.pins else 0.0
    theta = terms.traffic.gap_mean_s
    gaps = service_s / theta if terms.q < 1 and theta > 0 else 0.0
    if terms.traffic.service_s == pinned and terms.service_gaps == gaps:
        return terms
    return replace(terms, service_gaps=gaps, traffic=replace(terms.traffic, service_s=pinned))


@dataclass(frozen=True)
class Terms:
    """The T-independent sums of the model for one workload (token units), and the weights
    the loop over ``m`` (turns ago) runs on. With documents (docs/model.md §12) the sums are
    the mixture of the conversations without a document and those with one, in their shares:
    every sum is linear in the conversations, and both kinds share ``S(k)`` and ``Ss_m``."""

    q: float                          # probability a turn lands on a given instance (1: sticky)
    mean_turns: float
    prompt_tokens: float              # E[sum_k P_k] per conversation
    sys_hit_tokens: float             # Sb
    sys_turns: float                  # E[N]: turns that may hit the shared prefix
    hit_sums: tuple[float, ...]       # Hs_m = sum_j S(j+m) (h_j - ...) terms, m = 1..R
    turn_sums: tuple[float, ...]      # Ss_m = sum_j S(j+m), m = 1..R
    cost_sums: tuple[float, ...]      # Cs_r = sum_j c_j S(j+r), r = 1..R
    cost_last: float                  # D = sum_j c_j E[(1-q)^(N-j); N >= j]
    gap_kind: str                     # exponential | fixed | lognormal | empirical
    request_hit_turns: float          # sum_k S(k+1) over turns whose history is >= 1 block
    first_turn_sys: bool              # the first turn's reusable prefix is >= 1 block
    traffic: Traffic
    weights: tuple[float, ...]        # w_m = q(1-q)^(m-1), m = 1..R (by repeated products)
    log_m: tuple[float, ...]          # log m, m = 1..R (the Poisson recursion)
    cost_tail: tuple[float, ...]      # sum_{r >= k} w_r Cs_r, k = 1..R+1 (the loop's early stop)
    gap_sigma: float = 0.0            # lognormal shape sigma (lognormal gaps; empirical ones: the
                                      # sigma of the lognormal of the same variance, gap_shape_sigma)
    gap_shape: tuple[float, ...] = ()  # empirical gaps: the quantiles of a gap, mean 1 (shape_quantiles)
    service_gaps: float = 0.0         # a request's service in mean gaps, added to a copy's idle
                                      # time per turn served elsewhere (q < 1; with_service)
    doc_tokens: float = 0.0           # a document's shared tokens, Sb' - Sb (0: no documents)
    doc_share: float = 0.0            # share of conversations with a document
    first_turn_doc: bool = False      # a first turn with a document reuses >= 1 block
    turn_last: float = 0.0            # D with c_j = 1: sum_j E[(1-q)^(N-j); N >= j]
    turn_tail: tuple[float, ...] = ()  # sum_{r >= k} w_r Ss_r, k = 1..R+1
    square_sums: tuple[float, ...] = ()  # fixed gaps: Cs_r with c_j^2 (the occupancy's variance)
    square_last: float = 0.0          # fixed gaps: D with c_j^2
    ramps: tuple[tuple[float, ...], ...] = ()  # fixed gaps: prefix sums of w_r r Cs_r and of w_r r Cs2_r,
    square_tail: tuple[float, ...] = ()        # and the tail of w_r Cs2_r (fixed_gap_hit_probabilities)

    @property
    def shared_prefix_tokens(self) -> float:
        """Shared tokens of a request's prompt on average (system prompt and document): held
        once however many running requests use them, so not in the in-flight KV."""
        return self.sys_hit_tokens + self.doc_share * self.doc_tokens


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


#: A random history's mean remainder is taken as ``B/2`` once within this many tokens of it.
_SETTLED_TOKENS = 1e-9


def _random_mod_sum(S: int, lengths: tuple[float, float], B: int, r: float,
                    answers_cached: bool = True) -> float:
    """``sum_{j>=1} r^j E[(S + Y_j) mod B]`` (``Y_j`` the sum of j exponential lengths of each of
    ``lengths``, new tokens and answer per turn, without the j-th answer when ``answers_cached``
    is False: docs/model.md §13, §10.6), ``0 < r < 1``,
    in closed form: the geometric sum over j of the random histories is a mixture of two
    exponential lengths (:func:`~kvcache_calculator.analytic.lengths.geometric_compound`),
    whose remainders are closed forms. Costs O(1) however slowly the remainder settles (tiny
    lengths in large blocks took millions of terms summed one by one)."""
    if lengths[0] <= 0:             # no new tokens: the term-by-term sum (never from the form)
        J = _settled_turn(lengths, B, _NO_CAP, answers_cached)
        counts = lambda j: ((lengths[0], j), (lengths[1], j if answers_cached else j - 1))  # noqa: E731
        return (sum(r ** j * grouped_remainder(float(S), counts(j), B) for j in range(1, J))
                + (B / 2) * r ** J / (1 - r))
    return sum(w * exponential_remainder(float(S), mean, B)
               for w, mean in geometric_compound(lengths[0], lengths[1], r, answers_cached))


def _history_blocks(scenario: Scenario, S: int, K: int, answers_cached: bool = True) -> list[float]:
    """``h_j``, j = 0..K (``h_0 = 0``): the expected whole-block tokens of the history after
    turn j, ``S + j*step`` tokens on average (``S + j*step - Out``, turn j's prompt, when
    ``answers_cached`` is False: docs/model.md §10.6): its whole blocks with fixed lengths,
    its mean less the mean remainder with exponential lengths (docs/model.md §13)."""
    B, step = scenario.block_size, scenario.input_tokens + scenario.output_tokens
    S_hist = S if answers_cached else S - scenario.output_tokens
    h = [0.0] * (K + 1)
    if scenario.length_dist == "fixed":
        for j in range(1, K + 1):
            h[j] = float(((S_hist + j * step) // B) * B)
        return h
    lengths = (float(scenario.input_tokens), float(scenario.output_tokens))
    J = _settled_turn(lengths, B, K + 1, answers_cached) - 1
    rems = history_remainders(float(S), lengths[0], lengths[1], B, J, answers_cached)
    for j in range(1, K + 1):
        h[j] = S_hist + j * step - (rems[j - 1] if j <= J else B / 2)
    return h


#: No cap on :func:`_settled_turn`.
_NO_CAP = 2 ** 62


def _settled_turn(lengths: tuple[float, float], B: int, cap: int, answers_cached: bool = True) -> int:
    """The first turn j whose history's mean remainder is taken as ``B/2`` (docs/model.md §13),
    or ``cap`` if later."""
    settle = remainder_settles(lengths, B)
    settle_last = remainder_settles(lengths if answers_cached else lengths[:1], B)
    for j in range(1, cap):
        # the distance to B/2 is at most (B/pi) * settle^j * zeta(2) < B * settle^j
        if B * (settle ** j if answers_cached else settle ** (j - 1) * settle_last) < _SETTLED_TOKENS:
            return j
    return cap


def _reaches_block(scenario: Scenario, S: int, h: list[float], answers_cached: bool = True) -> list[float]:
    """``P(h_j >= B)``, j = 0..K (``h`` from :func:`_history_blocks`): whether the history
    after turn j holds a whole block, which a request needs to hit at all. With fixed lengths
    0 or 1; with exponential ones ``P(S + Y_j >= B)`` for ``Y_j`` the turn's random history
    (j messages, j answers or j-1 when answers are not cached; docs/model.md §13), not the
    indicator of its mean."""
    B = scenario.block_size
    if scenario.length_dist == "fixed":
        return [1.0 if j and x >= B else 0.0 for j, x in enumerate(h)]
    K = len(h) - 1
    reach = reach_probabilities(float(B - S), float(scenario.input_tokens), float(scenario.output_tokens), K,
                                answers_cached)
    return [0.0, *reach[:K]] + [1.0] * (K - len(reach))


def _request_hit_turns(scenario: Scenario, S: int, h: list[float], surv_ext: list[float],
                       answers_cached: bool = True) -> float:
    """``sum_j S(j+1) P(h_j >= B)``, j = 1..K (``surv_ext``: S(1..K+1)): the expected turns
    that find a whole block of their history. With fixed turns and exponential lengths
    (every weight 1 up to turn K-1) the closed-form count of
    :func:`~kvcache_calculator.analytic.lengths.reach_count`, which needs exact tails only
    for the turns near the crossing (docs/model.md §13)."""
    K = len(h) - 1
    if scenario.length_dist != "fixed" and all(w == 1.0 for w in surv_ext[:K]) and not surv_ext[K]:
        return reach_count(float(scenario.block_size - S), float(scenario.input_tokens),
                           float(scenario.output_tokens), K - 1, answers_cached)
    return sum(surv_ext[j] * x for j, x in enumerate(_reaches_block(scenario, S, h, answers_cached)) if j)


def _geometric_sums(S: int, In: int, step: int, B: int, p: float,
                    random_lengths: tuple[float, float] | None = None, answer: int = 0) -> dict:
    """Closed forms of the sums over turns for geometric N (``P(N >= k) = r^(k-1)``, r = 1-p).

    ``h_j = B*floor((S + j*step)/B) = S + j*step - ((S + j*step) mod B)``: the linear part has
    the usual closed forms and the remainder is periodic in j with period ``B/gcd(step, B)``,
    so ``sum_j r^j h_j`` costs O(B) instead of O(turns / p). Exact up to rounding. With
    exponential lengths (``random_lengths``: the mean new tokens and answer per turn) the
    remainder is its mean, which settles at ``B/2`` (:func:`_random_mod_sum`). ``answer``:
    the tokens of the last answer the history leaves out (``Out`` when answers are not
    cached, docs/model.md §10.6; else 0): ``h_j`` is then that of ``S - answer``.
    """
    r = 1.0 - p
    H = S - answer                      # the history's offset: h_j = B*floor((H + j*step)/B)
    if random_lengths is not None:
        mod_sum = _random_mod_sum(S, random_lengths, B, r, answer == 0)
    else:
        period = B // math.gcd(step, B)
        one_minus_r_period = -math.expm1(period * math.log1p(-p))
        mod_sum = sum(r ** t * ((H + t * step) % B) for t in range(1, period + 1)) / one_minus_r_period
    base_s = r / p
    base_h = H * r / p + step * r / p ** 2 - mod_sum
    first_hit = 1 if H >= B else max(1, -(-(B - H) // step))   # first j with h_j >= B
    return {
        "mean_turns": 1.0 / p,
        "prompt_tokens": (S + In) / p + step * r / p ** 2,
        "base_s": base_s,
        "base_h": base_h,
        "request_hit_turns": r ** first_hit / p,
    }


@dataclass(frozen=True)
class _Sums:
    """The sums over turns of one kind of conversation (a shared prefix of ``S`` tokens)."""

    q: float
    mean_turns: float
    prompt_tokens: float
    Sb: int
    hit_sums: tuple[float, ...]
    turn_sums: tuple[float, ...]
    cost_sums: tuple[float, ...]
    cost_last: float
    turn_last: float
    request_hit_turns: float
    square_sums: tuple[float, ...] = ()
    square_last: float = 0.0


def build_terms(setup: Setup, *, closed_form: bool = True, answers_cached: bool = True) -> Terms:
    """Precompute the model's sums for ``setup`` (see the module docstring).

    ``closed_form=False`` sums term by term (truncated where ``P(N >= k) < 1e-12``), the
    reference the closed forms are tested against; models with per-sequence fixed state
    (sliding windows, linear attention) always sum term by term. With documents
    (docs/model.md §12) the conversations that include one are summed with the document in
    their shared prefix, and the two kinds mixed in their shares. ``answers_cached=False``
    is the view of a trace replay (docs/model.md §10.6): a history's reusable part ends at
    its last prompt, its last answer not cached.
    """
    scenario = setup.scenario
    S, B = scenario.system_prompt_tokens, scenario.block_size
    plain = _sums(setup, S, closed_form, answers_cached)
    if not _documents_on(scenario):
        return _terms(scenario, plain)
    share = scenario.document_share
    with_doc = _sums(setup, S + scenario.document_tokens, closed_form, answers_cached)

    def mix(a: float, b: float) -> float:
        return (1 - share) * a + share * b

    mixed = _Sums(
        plain.q, plain.mean_turns, mix(plain.prompt_tokens, with_doc.prompt_tokens), plain.Sb,
        tuple(map(mix, plain.hit_sums, with_doc.hit_sums)), plain.turn_sums,
        tuple(map(mix, plain.cost_sums, with_doc.cost_sums)), mix(plain.cost_last, with_doc.cost_last),
        plain.turn_last, mix(plain.request_hit_turns, with_doc.request_hit_turns),
        tuple(map(mix, plain.square_sums, with_doc.square_sums)), mix(plain.square_last, with_doc.square_last))
    return _terms(scenario, mixed, doc_tokens=float(with_doc.Sb - plain.Sb), doc_share=share,
                  first_turn_doc=with_doc.Sb >= B)


def _sums(setup: Setup, S: int, closed_form: bool, answers_cached: bool = True) -> _Sums:
    """The sums over turns of conversations whose shared prefix is ``S`` tokens (with fixed
    gaps, also those of ``c_j^2`` that set the occupancy's variance, :func:`fixed_gap_hit_probabilities`)."""
    sums = _first_moments(setup, S, closed_form, answers_cached)
    if setup.scenario.think_dist != "fixed":
        return sums
    return replace(sums, **_square_sums(setup, S, sums.q, len(sums.cost_sums), answers_cached))


def _copy_costs(setup: Setup, S: int, K: int, h: list[float] | None = None,
                answers_cached: bool = True) -> list[float]:
    """``c_j``, j = 0..K (``c_0 = 0``): the private cached tokens of the copy left by turn j
    (``h_j - Sb``, ``h`` from :func:`_history_blocks` unless given), with the per-sequence
    fixed state of sliding-window and linear layers in token equivalents."""
    scenario, capacity = setup.scenario, setup.capacity
    B, step = scenario.block_size, scenario.input_tokens + scenario.output_tokens
    Sb = (S // B) * B
    if h is None:
        h = _history_blocks(scenario, S, K, answers_cached)
    has_fixed = capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    c = [0.0] * (K + 1)
    held = S if answers_cached else S - scenario.output_tokens    # the history is held + j*step
    for j in range(1, K + 1):
        c[j] = h[j] - Sb
        if has_fixed:
            total = sequence_kv_bytes(setup.arch, held + j * step, scenario.kv_dtype, scenario.num_gpus, B)
            c[j] += total / capacity.kv_bytes_per_token_per_gpu - (held + j * step)
    return c


def _square_sums(setup: Setup, S: int, q: float, R: int, answers_cached: bool = True) -> dict:
    """``Cs_r`` and ``D`` with ``c_j^2`` for ``c_j`` (term by term)."""
    scenario = setup.scenario
    surv = _survival(scenario)
    K = len(surv)
    c2 = [c * c for c in _copy_costs(setup, S, K, answers_cached=answers_cached)]
    if scenario.turns_dist == "geometric" and K > 1:
        p = 1.0 / scenario.turns
        base = sum(surv[j] * c2[j] for j in range(1, K))            # sum_j S(j+1) c_j^2
        factor = p / (1 - (1 - p) * (1 - q))
        return {"square_sums": tuple(base * (1 - p) ** (r - 1) for r in range(1, R + 1)),
                "square_last": factor * sum(c2[j] * surv[j - 1] for j in range(1, K + 1))}
    prefix = [0.0] * (K + 1)
    for j in range(1, K + 1):
        prefix[j] = prefix[j - 1] + c2[j]
    return {"square_sums": tuple(prefix[max(0, K - r)] for r in range(1, R + 1)),
            "square_last": sum(c2[j] * (1 - q) ** (K - j) for j in range(1, K + 1))}


def _first_moments(setup: Setup, S: int, closed_form: bool, answers_cached: bool = True) -> _Sums:
    """The sums over turns of conversations whose shared prefix is ``S`` tokens."""
    scenario = setup.scenario
    In, Out, B = scenario.input_tokens, scenario.output_tokens, scenario.block_size
    step = In + Out
    sticky = setup.sticky
    I = scenario.instances
    q = 1.0 if sticky else 1.0 / I
    Sb = (S // B) * B
    # per-sequence fixed state (sliding windows, linear state) is summed term by term
    has_fixed = setup.capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    geometric = scenario.turns_dist == "geometric" and scenario.turns > 1
    if geometric and closed_form and not has_fixed:
        p = 1.0 / scenario.turns
        K = min(MAX_TERMS, int(math.log(_EPS_TAIL) / math.log(1 - p)) + 2)
        sums = _geometric_sums(S, In, In + Out, B, p,
                               None if scenario.length_dist == "fixed" else (float(In), float(Out)),
                               0 if answers_cached else Out)
        R = 1 if sticky else max(1, min(K, int(math.log(_EPS_TAIL) / math.log(1 - q)) + 2))
        if scenario.length_dist != "fixed":
            # sum_j S(j+1) P(S + Y_j >= B), S(j+1) = (1-p)^j, in closed form over the
            # geometric compound of the lengths (a mixture of two exponentials)
            x = B - S
            sums["request_hit_turns"] = sum(
                w * (math.exp(-x / mean) if x > 0 else 1.0)
                for w, mean in geometric_compound(float(In), float(Out), 1 - p, answers_cached))
        base_h, base_s = sums["base_h"], sums["base_s"]
        base_c = base_h - Sb * base_s
        factor = p / (1 - (1 - p) * (1 - q))
        # every sum over m is its first term times (1-p)^(m-1)
        f = [(1 - p) ** m for m in range(R)]
        return _Sums(q, sums["mean_turns"], sums["prompt_tokens"], Sb,
                     tuple(base_h * x for x in f), tuple(base_s * x for x in f), tuple(base_c * x for x in f),
                     factor * base_c / (1 - p), factor * sums["mean_turns"], sums["request_hit_turns"])
    surv = _survival(scenario)
    K = len(surv)
    # h[j]: tokens a later turn hits on the copy left by turn j; c[j]: its private cached tokens
    h = _history_blocks(scenario, S, K, answers_cached)
    c = _copy_costs(setup, S, K, h, answers_cached)
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
        turn_last = factor * mean_turns
    else:
        cost_last = sum(c[j] * (1 - q) ** (K - j) for j in range(1, K + 1))
        turn_last = sum((1 - q) ** (K - j) for j in range(1, K + 1))
    return _Sums(q, mean_turns, prompt_tokens, Sb, tuple(hit_sums), tuple(turn_sums), tuple(cost_sums),
                 cost_last, turn_last,
                 _request_hit_turns(scenario, S, h, surv_ext, answers_cached))


def _tail(weights: list[float], sums: tuple[float, ...]) -> tuple[float, ...]:
    """``sum_{r >= k} w_r sums_r`` for k = 1..R+1."""
    R = len(sums)
    tail = [0.0] * (R + 1)
    for r in range(R - 1, -1, -1):
        tail[r] = tail[r + 1] + weights[r] * sums[r]
    return tuple(tail)


def _terms(scenario: Scenario, sums: _Sums, doc_tokens: float = 0.0, doc_share: float = 0.0,
           first_turn_doc: bool = False) -> Terms:
    """The :class:`Terms` of the sums, with the traffic scalars and the loop's weights."""
    R = len(sums.cost_sums)
    q = sums.q
    weights = []
    w = q
    for _ in range(R):      # repeated products, as the model has always weighted the sums
        weights.append(w)
        w *= (1 - q)
    return Terms(
        q=q, mean_turns=sums.mean_turns, prompt_tokens=sums.prompt_tokens, sys_hit_tokens=float(sums.Sb),
        sys_turns=sums.mean_turns, hit_sums=sums.hit_sums, turn_sums=sums.turn_sums, cost_sums=sums.cost_sums,
        cost_last=sums.cost_last, gap_kind=scenario.think_dist, request_hit_turns=sums.request_hit_turns,
        first_turn_sys=sums.Sb >= scenario.block_size,
        traffic=traffic_of(scenario, sums.mean_turns, float(sums.Sb), doc_tokens=doc_tokens),
        weights=tuple(weights), log_m=tuple(math.log(m) for m in range(1, R + 1)),
        cost_tail=_tail(weights, sums.cost_sums),
        gap_sigma=(scenario.think_sigma if scenario.think_dist == "lognormal" else
                   gap_shape_sigma(scenario.think_shape) if scenario.think_dist == "empirical" else 0.0),
        gap_shape=shape_quantiles(scenario.think_shape) if scenario.think_dist == "empirical" else (),
        doc_tokens=doc_tokens, doc_share=doc_share, first_turn_doc=first_turn_doc,
        turn_last=sums.turn_last, turn_tail=_tail(weights, sums.turn_sums) if doc_share else (),
        square_sums=sums.square_sums, square_last=sums.square_last,
        ramps=(_ramp(weights, sums.cost_sums), _ramp(weights, sums.square_sums)) if sums.square_sums else (),
        square_tail=_tail(weights, sums.square_sums) if sums.square_sums else (),
    )


def gap_shape_sigma(shape) -> float:
    """The shape sigma of the lognormal with the variance of the empirical gap ``shape``
    (``sigma^2 = log(1 + cv^2)``): the model's sums of two gaps or more (docs/model.md §12)."""
    return math.sqrt(math.log1p(shape_cv2(shape_quantiles(shape))))


def _lognormal_law(sigma: float, theta: float):
    """``law(t, k)`` of :func:`_shifted_sums` for lognormal gaps of mean ``theta`` and shape
    ``sigma``: a sum of ``k`` as the lognormal of the same mean and variance."""
    return lambda t, k: lognormal_cdf_and_partial(t, k * theta, lognormal_sigma_of_sum(sigma, k))


def _empirical_law(q: tuple[float, ...], sigma: float, theta: float):
    """``law(t, k)`` of :func:`_shifted_sums` for empirical gaps of mean ``theta``: one gap
    exactly (piecewise-uniform density), a sum of ``k >= 2`` as the lognormal of the same
    mean and variance (:func:`_lognormal_law`, ``sigma`` from the shape's variance)."""
    sums = _lognormal_law(sigma, theta)
    return lambda t, k: empirical_cdf_and_partial(t, theta, q) if k == 1 else sums(t, k)


def _ramp(weights: list[float], sums: tuple[float, ...]) -> tuple[float, ...]:
    """``sum_{r <= m} w_r r sums_r`` for m = 0..R."""
    ramp = [0.0] * (len(sums) + 1)
    for r in range(len(sums)):
        ramp[r + 1] = ramp[r] + weights[r] * (r + 1) * sums[r]
    return tuple(ramp)


def saturation_x(R: int, sigma: float = 0.0, service_gaps: float = 0.0) -> float:
    """``x = T/theta`` past which the sum of any m <= R exponential gaps is below ``T`` but
    with probability under 1e-30 (R + 12 sqrt(R) + 50 standard deviations and more); for
    lognormal gaps of shape ``sigma > 0``, where ``log x`` is 12 of the sum's standard
    deviations above its mean for m = 1 and m = R (:mod:`~kvcache_calculator.analytic.popularity`);
    plus ``R * service_gaps``, the most the turns served elsewhere add to an idle time."""
    x = R + 12.0 * math.sqrt(R) + 50.0
    if sigma > 0:
        for m in (1, R):
            sm = lognormal_sigma_of_sum(sigma, m)
            x = max(x, m * math.exp(12.0 * sm - 0.5 * sm * sm))
    return x + R * service_gaps


def gap_sums(terms: Terms, T: float, theta: float, sys_part: float = 0.0, tail: float = 0.0,
             hit_sums: bool = True, fixed_f: tuple[float, ...] | None = None) -> tuple[float, float, float, float]:
    """The model's one loop over ``m`` (turns ago) at characteristic time ``T`` for gaps of
    mean ``theta`` seconds: ``(A, H, G2, F_1)`` with ``w_m = q(1-q)^(m-1)``::

        A   = sum_r w_r M_r(T) Cs_r + T D                 cached token-seconds per conversation
        H   = E[N] sys_part + sum_m w_m F_m(T) (Hs_m - sys_part Ss_m)   hit tokens per conversation
        G2  = sum_m w_m F_m(T) Ss_m                        turns that find a private history
        F_1 = P(one gap < T)

    ``F_m(T) = P(idle < T)`` and ``M_m(T) = E[min(idle, T)]``, a copy's idle time being the sum
    of m gaps plus ``(m-1) * service_gaps * theta`` for the turns served elsewhere in between
    (``Terms.service_gaps``, docs/model.md §6.2; below, the case without it). Exponential
    gaps: the sum of m gaps is Erlang; with ``x = T/theta``, ``F_m = P(Poisson(x) >= m)`` and
    ``M_m = theta * sum_{i<=m} F_i``. Fixed gaps: the sum is ``m*theta`` exactly. Lognormal
    gaps: closed forms for one gap, a lognormal of the same mean and variance for m gaps
    (:func:`~kvcache_calculator.analytic.popularity.lognormal_cdf_and_partial`). Empirical
    gaps (``think_shape``): one gap exactly, m gaps as the lognormal of their mean and variance
    (:func:`_empirical_law`). With the
    turns served elsewhere, ``F_m(T) = P(sum < T - shift)`` and ``M_m(T) = shift + E[min(sum,
    T - shift)]`` (Erlang: :func:`~kvcache_calculator.analytic.popularity.erlang_cdf_and_partial`).
    ``sys_part`` is the system-prompt tokens a turn hits (``p(T) * Sb``): with 0, ``H`` is
    ``sum_m w_m F_m Hs_m``. ``hit_sums=False`` leaves ``H`` and ``G2`` out (0.0): an
    occupancy needs ``A`` alone, at half the cost of a step.

    ``tail = 0`` sums every m (the analysis). ``tail > 0`` stops at the first m past ``x``
    where ``F_m < tail`` and adds the rest of ``A`` at once (``M`` stays put there), and
    beyond ``x = R + 12 sqrt(R) + 50``, where every ``F_m`` (m <= R) is 1 to within 1e-30,
    takes ``F_m = 1`` and ``M_m = m theta``: within about ``tail`` relative, in
    O(min(R, x + 40)) steps with no exponentials past that point, for the sweeps.

    ``fixed_f`` (fixed gaps only): the ``F_m`` to use instead of the step ``1[m theta < T]``
    (:func:`fixed_gap_hit_probabilities`).
    """
    R = len(terms.cost_sums)
    w, cs, hs, ts, cost_tail = terms.weights, terms.cost_sums, terms.hit_sums, terms.turn_sums, terms.cost_tail
    A = 0.0
    H = terms.sys_turns * sys_part if hit_sums else 0.0
    G2 = 0.0
    d = terms.service_gaps * theta     # seconds each turn served elsewhere adds to an idle time
    if math.isinf(T) or (tail and fixed_f is None and T > theta * saturation_x(R, terms.gap_sigma, terms.service_gaps)):
        for m in range(R):
            wm = w[m]
            A += wm * ((m + 1) * theta + m * d) * cs[m]
            if hit_sums:
                wf = wm * 1.0
                H += wf * (hs[m] - sys_part * ts[m])
                G2 += wf * ts[m]
        return A + T * terms.cost_last, H, G2, 1.0
    if terms.gap_kind == "fixed":
        for m in range(R):
            span = (m + 1) * theta + m * d
            fm = (1.0 if span < T else 0.0) if fixed_f is None else fixed_f[m]
            wm = w[m]
            A += wm * min(span, T) * cs[m]
            if hit_sums:
                wf = wm * fm
                H += wf * (hs[m] - sys_part * ts[m])
                G2 += wf * ts[m]
            if tail and span >= T and fm <= tail:
                A += T * cost_tail[m + 1]
                break
        return A + T * terms.cost_last, H, G2, (1.0 if theta < T else 0.0) if fixed_f is None else fixed_f[0]
    if terms.gap_kind == "lognormal":
        return _shifted_sums(terms, T, theta, sys_part, tail, hit_sums, H, _lognormal_law(terms.gap_sigma, theta))
    if terms.gap_kind == "empirical":
        return _shifted_sums(terms, T, theta, sys_part, tail, hit_sums, H,
                             _empirical_law(terms.gap_shape, terms.gap_sigma, theta))
    if d > 0:
        return _shifted_sums(terms, T, theta, sys_part, tail, hit_sums, H,
                             lambda t, k: erlang_cdf_and_partial(t, k, theta))
    x = T / theta
    if x == 0:
        return A + T * terms.cost_last, H, G2, 0.0
    exp, logs = math.exp, terms.log_m
    log_x = math.log(x)
    log_term = -x            # log of e^-x x^i / i!, i = 0
    cdf = 0.0                # P(Poisson(x) <= m - 1) accumulated
    acc = 0.0                # sum_{i <= m} F_i
    f1 = -math.expm1(-x)     # F_1, exact for small x
    for m in range(R):
        cdf += exp(log_term)
        log_term += log_x - logs[m]
        fm = f1 if m == 0 else (1.0 - cdf if cdf < 1.0 else 0.0)
        acc += fm
        wm = w[m]
        A += wm * (theta * acc) * cs[m]
        if hit_sums:
            wf = wm * fm
            H += wf * (hs[m] - sys_part * ts[m])
            G2 += wf * ts[m]
        if fm < tail and m + 1 > x:
            A += (theta * acc) * cost_tail[m + 1]
            break
    return A + T * terms.cost_last, H, G2, f1


def _shifted_sums(terms: Terms, T: float, theta: float, sys_part: float, tail: float, hit_sums: bool,
                  H: float, law) -> tuple[float, float, float, float]:
    """:func:`gap_sums` with ``F_m`` and ``M_m`` in closed form: ``law(t, m)`` gives ``(P(X <
    t), E[min(X, t)])`` for the sum ``X`` of m gaps (lognormal gaps; exponential ones when
    turns served elsewhere add ``d`` seconds each to a copy's idle time, ``X + (m-1) d``).
    Once ``(m-1) d >= T`` no older copy is hit and each stays ``T``."""
    w, cs, hs, ts, cost_tail = terms.weights, terms.cost_sums, terms.hit_sums, terms.turn_sums, terms.cost_tail
    d = terms.service_gaps * theta
    A = G2 = f1 = 0.0
    for m in range(len(cs)):
        shift = m * d
        if shift >= T:
            A += T * cost_tail[m]
            break
        fm, mm = law(T - shift, m + 1)
        mm += shift
        if m == 0:
            f1 = fm
        wm = w[m]
        A += wm * mm * cs[m]
        if hit_sums:
            wf = wm * fm
            H += wf * (hs[m] - sys_part * ts[m])
            G2 += wf * ts[m]
        if tail and fm < tail and (m + 1) * theta + shift > T:
            A += mm * cost_tail[m + 1]
            break
    return A + T * terms.cost_last, H, G2, f1


def system_prompt_cache(traffic: Traffic, T: float) -> tuple[float, float]:
    """``(p, cached)``: the probability that a request finds its system prompt still cached,
    averaged over requests, and the mean number of system prompts cached.

    Every request touches its system prompt last (it is the head of the sequence), and LRU
    evicts only when something is inserted. So with one system prompt it is never evicted while
    the cache holds anything else, and with ``K`` prompts a prompt survives if one of the last
    ``max(1, Lambda*T)`` requests used it (``Lambda``: requests/s per instance):
    ``1 - (1 - 1/K)^max(1, Lambda*T)``. (A continuous timer, ``1 - exp(-Lambda*T/K)``,
    underestimated tiny caches by up to 9 points against the simulator.) A running request
    pins its prompt for its service time and LRU's clock starts at its end, so the window is
    ``T + service_s``: ``1 - (1 - 1/K)^max(1, Lambda*(T + service_s))``. Prompts of unequal
    popularity ``pi_k`` (docs/model.md §12) survive with ``1 - (1 - pi_k)^max(1, Lambda*(T + service_s))``
    each; ``p = sum_k pi_k (...)``, ``cached = sum_k (...)``.
    """
    K = traffic.num_shared_prompts
    if K <= 1 or math.isinf(T):
        return 1.0, float(K)
    n = max(1.0, traffic.shared_rate * K * (T + traffic.service_s))
    if not traffic.sys_groups:
        p = -math.expm1(n * math.log1p(-1.0 / K))
        return p, K * p
    mean = cached = 0.0
    for count, prob in traffic.sys_groups:
        kept = -math.expm1(n * math.log1p(-prob)) if prob < 1.0 else 1.0
        mean += count * prob * kept
        cached += count * kept
    return mean, cached


def shared_prefix_hit_probability(traffic: Traffic, T: float) -> float:
    """Probability that a system prompt is still cached when a request needs it, averaged over
    requests (:func:`system_prompt_cache`)."""
    return system_prompt_cache(traffic, T)[0]


def document_cache(traffic: Traffic, window_s: float) -> tuple[float, float]:
    """``(p, cached)`` for documents: the probability that a conversation's document is cached
    when it needs it and its own history is not, averaged over those conversations, and the
    mean number of (system prompt, document) pairs cached (docs/model.md §12).

    Che's approximation with the conversations as clusters of requests: a pair chosen with
    probability ``pi`` by conversations arriving at ``doc_rate`` per second is cached when one
    of them touched it within ``T``, which the other conversations miss with probability
    ``exp(-doc_rate * pi * window_s)``, ``window_s`` being a conversation's expected total time
    within ``T`` of one of its requests (:func:`document_window`).
    """
    if math.isinf(window_s):
        return 1.0, sum(count for count, _ in traffic.doc_groups)
    mean = cached = 0.0
    rate = traffic.doc_rate * window_s
    for count, prob in traffic.doc_groups:
        kept = -math.expm1(-rate * prob)
        mean += count * prob * kept
        cached += count * kept
    return mean, cached


def system_prompt_window_hit(traffic: Traffic, T: float, observed: tuple[float, float]) -> float:
    """:func:`system_prompt_cache`'s ``p`` for requests at ``a`` to ``W`` seconds after an
    empty cache started, ``observed = (a, W)`` (docs/model.md §12.5): a prompt of popularity
    ``pi`` survives if one of the last ``min(Lambda t, n)`` requests used it, ``n`` as there,
    i.e. a Poisson stream of rate ``-Lambda log(1 - pi)`` kept ``n / Lambda`` seconds."""
    K = traffic.num_shared_prompts
    requests = traffic.shared_rate * K
    if K <= 1 or requests <= 0:
        return 1.0
    horizon = math.inf if math.isinf(T) else max(1.0, requests * (T + traffic.service_s)) / requests
    total = 0.0
    for count, prob in traffic.sys_groups or ((float(K), 1.0 / K),):
        rate = -requests * math.log1p(-prob) if prob < 1.0 else math.inf
        total += count * prob * window_hit_probability(rate, horizon, *observed)
    return total


def document_window_hit(traffic: Traffic, window_s: float, observed: tuple[float, float]) -> float:
    """:func:`document_cache`'s ``p`` for conversations at ``a`` to ``W`` seconds after an
    empty cache started, ``observed = (a, W)`` (docs/model.md §12.5): the conversations that
    may have left a pair cached are those since the start, so its exponent
    ``doc_rate pi window_s`` becomes ``doc_rate pi min(t, window_s)`` at time ``t``."""
    rate = traffic.doc_rate
    return sum(count * prob * window_hit_probability(rate * prob, window_s, *observed)
               for count, prob in traffic.doc_groups)


def observed_window(window_s: float | None, observed_from_s: float = 0.0) -> tuple[float, float] | None:
    """``(a, W)`` for :func:`hits`: requests counted from ``observed_from_s`` to ``window_s``
    seconds after an empty cache started (a replay of a trace ``window_s`` long, counted after
    its warm-up); None for ``window_s=None`` (the steady state). Raises ScenarioError naming
    the argument for a value that is not a time in order."""
    if window_s is None:
        return None
    for key, v in (("window_s", window_s), ("observed_from_s", observed_from_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise ScenarioError(key, v, "must be a number of seconds >= 0")
    if window_s <= observed_from_s:
        raise ScenarioError("window_s", window_s,
                            f"must be longer than observed_from_s ({observed_from_s:g} s)")
    return float(observed_from_s), float(window_s)


def document_window(terms: Terms, T: float, tail: float = 0.0) -> float:
    """A conversation's expected time (s, summed over instances) within ``T`` after one of its
    requests ended plus its requests' service: ``sum_r w_r M_r(T) Ss_r + T D_1 + E[N]
    service_s``, the occupancy of a one-token copy per turn (:func:`gap_sums` with ``c_j = 1``);
    0 without documents."""
    if not terms.doc_share:
        return 0.0
    unit = replace(terms, cost_sums=terms.turn_sums, cost_last=terms.turn_last, cost_tail=terms.turn_tail)
    traffic = terms.traffic
    return gap_sums(unit, T, traffic.gap_mean_s, 0.0, tail, hit_sums=False)[0] + terms.mean_turns * traffic.service_s


def shared_content(terms: Terms, traffic: Traffic, T: float, window_s: float,
                   observed: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """``(tokens cached, tokens hit, request hits)`` of the shared content at ``T``: the
    system prompts' and documents' cached tokens per instance; the shared tokens a turn whose
    history is lost still hits, averaged over conversations (``sys_part`` of :func:`gap_sums`);
    a first turn's chance to be a request hit (its whole shared prefix cached). ``traffic``
    is ``terms.traffic`` or a variant's (the sweeps' table). ``observed`` ``(a, W)``: the hits
    of requests at ``a`` to ``W`` seconds after an empty cache started (docs/model.md §12.5;
    None: the steady state); the cached tokens stay the steady state's."""
    Sb = terms.sys_hit_tokens
    p_sys, prompts = system_prompt_cache(traffic, T) if traffic.shared_tokens or terms.first_turn_sys else (1.0, 0.0)
    tokens = traffic.shared_tokens * p_sys if not traffic.sys_groups else Sb * prompts
    if observed is not None and p_sys < 1.0:
        p_sys = system_prompt_window_hit(traffic, T, observed)
    share = terms.doc_share
    part = p_sys * Sb
    first = (1.0 - share) * p_sys if terms.first_turn_sys else 0.0
    if share:
        p_doc, docs = document_cache(traffic, window_s)
        tokens += terms.doc_tokens * docs
        if observed is not None:
            p_doc = document_window_hit(traffic, window_s, observed)
        part += share * p_doc * terms.doc_tokens
        if terms.first_turn_doc:
            first += share * p_doc
    return tokens, part, first


def occupancy(terms: Terms, T: float, tail: float = 0.0) -> float:
    """Mean cached tokens per instance when entries live ``T`` seconds idle (Little's law);
    ``tail`` as in :func:`gap_sums`."""
    traffic = terms.traffic
    total = gap_sums(terms, T, traffic.gap_mean_s, 0.0, tail, hit_sums=False)[0]
    if not traffic.shared_tokens and not terms.doc_share:
        return traffic.conv_rate_per_instance * total
    shared = shared_content(terms, traffic, T, document_window(terms, T, tail))[0]
    return traffic.conv_rate_per_instance * total + shared


#: Beyond this many standard deviations a smoothed step is taken as 0 or 1.
_STEP_Z = 8.0


def fixed_gap_hit_probabilities(terms: Terms, T: float, theta: float, conv_rate: float) -> tuple[float, ...] | None:
    """``F_m`` for fixed gaps of ``theta`` seconds at characteristic time ``T``, the step
    ``1[m theta < T]`` smoothed by the occupancy's fluctuation (docs/model.md §12.4).

    The cache holds the histories of the conversations present, a Poisson number, so its
    occupancy at a given ``T`` fluctuates about the mean ``O(T)`` with variance
    ``conv_rate * A2(T)`` (Campbell's theorem: ``A2`` is ``A`` of :func:`gap_sums` with
    ``c_j^2``), and LRU's actual age limit moves with it. A copy idle ``m theta`` survives
    when the occupancy of the copies younger than it fits, ``O(m theta) + noise < C = O(T)``:
    ``F_m = Phi((O(T) - O(m theta)) / sd)``. With exponential gaps the step is already smooth.
    None when there is no fluctuation (or ``T`` is infinite): the step itself.
    """
    if math.isinf(T) or not terms.square_sums or T <= 0:
        return None
    # With fixed gaps M_r(t) = min(span_r, t), span_r = r theta + (r-1) d (d: the service each
    # turn served elsewhere adds, Terms.service_gaps), so A(t) = sum_{r <= k} w_r span_r Cs_r
    # + t (sum_{r > k} w_r Cs_r + D) with k = #{r: span_r <= t}: prefix sums (Terms.ramps) and
    # tails give it in O(1).
    R = len(terms.cost_sums)
    ramp, ramp2 = terms.ramps
    d = terms.service_gaps * theta
    step = theta + d

    def A(t: float, ramp: tuple, tail: tuple, last: float) -> float:
        k = min(R, int((t + d) / step))
        return step * ramp[k] - d * (tail[0] - tail[k]) + t * (tail[k] + last)

    var = conv_rate * A(T, ramp2, terms.square_tail, terms.square_last)
    if var <= 0:
        return None
    sd = math.sqrt(var)
    tail, last = terms.cost_tail, terms.cost_last

    def histories(m: int) -> float:
        """conv_rate * A(span_m)."""
        return conv_rate * (step * ramp[m] - d * (tail[0] - tail[m]) + (m * step - d) * (tail[m] + last))

    at_T = conv_rate * A(T, ramp, tail, last)
    f = [0.0] * R
    below = min(R, int((T + d) / step))     # spans span_m < T: m = 1..below
    for m in range(below, 0, -1):
        z = (at_T - histories(m)) / sd
        if z > _STEP_Z:
            f[:m] = [1.0] * m
            break
        f[m - 1] = normal_cdf(z)
    for m in range(below + 1, R + 1):
        z = (at_T - histories(m)) / sd
        if z < -_STEP_Z:
            break
        f[m - 1] = normal_cdf(z)
    return tuple(f)


def hits(terms: Terms, T: float, tail: float = 0.0,
         observed: tuple[float, float] | None = None) -> tuple[float, float]:
    """(expected hit tokens, expected request hits) per conversation at characteristic time T;
    ``tail`` as in :func:`gap_sums`; ``observed`` as in :func:`shared_content` (a finite
    window from a cold cache changes only the shared content's hits: docs/model.md §12.5)."""
    _, part, first = shared_content(terms, terms.traffic, T, document_window(terms, T, tail), observed)
    traffic = terms.traffic
    fixed_f = (fixed_gap_hit_probabilities(terms, T, traffic.gap_mean_s, traffic.conv_rate_per_instance)
               if terms.gap_kind == "fixed" else None)
    _, tokens, _, f1 = gap_sums(terms, T, terms.traffic.gap_mean_s, part, tail, fixed_f=fixed_f)
    return tokens, terms.q * f1 * terms.request_hit_turns + first


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


def solve_increasing(f, target: float, lo: float, hi: float) -> float:
    """Root of the increasing function ``f(T) = target`` on [lo, hi], solved in log T."""
    return math.exp(illinois_log_root(lambda x: f(math.exp(x)), math.log(target), math.log(lo), math.log(hi)))


def solve_characteristic_time(terms: Terms, capacity_tokens: float, tail: float = 0.0) -> float:
    """The root T of O(T) = capacity_tokens; ``inf`` when everything ever cached fits.
    ``tail`` as in :func:`gap_sums`."""
    if capacity_tokens <= 0:
        return 0.0
    if occupancy(terms, T_MAX_S, tail) <= capacity_tokens:
        return math.inf
    if occupancy(terms, T_MIN_S, tail) >= capacity_tokens:
        return T_MIN_S
    return solve_increasing(lambda T: occupancy(terms, T, tail), capacity_tokens, T_MIN_S, T_MAX_S)


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
    in_flight_requests: float = 0.0           # requests in service per instance (Little's law)
    in_flight_tokens: float = 0.0             # KV tokens they hold per instance, not evictable
    in_flight_share: float = 0.0              # in_flight_tokens / capacity_tokens
    decode_tokens_per_s_used: float = 0.0     # per sequence, the scenario's or derived
    ttft_s_used: float = 0.0                  # the scenario's or derived
    service_s: float = 0.0                    # ttft + output / decode speed
    in_flight_saturated: bool = False         # arrivals beyond max_num_seqs: the engine queues

    def to_dict(self) -> dict:
        """Plain JSON types (the capacity nested as a dict)."""
        d = asdict(self)
        d["capacity"] = self.capacity.to_dict()
        return d


def _finite(T: float) -> float | None:
    return None if math.isinf(T) else T


def in_flight_for(setup: Setup, terms: Terms) -> InFlight:
    """The KV held by running requests of ``setup`` per instance, for the workload of its
    ``terms`` (:func:`~kvcache_calculator.analytic.inflight.in_flight_of`)."""
    return in_flight_of(setup, terms.prompt_tokens / terms.mean_turns, terms.shared_prefix_tokens, terms.mean_turns)


def idle_capacity(tokens: float, held: InFlight) -> float:
    """What a tier of ``tokens`` per instance leaves to idle histories beside the running requests."""
    return max(0.0, tokens - held.tokens)


def analyze_terms(setup: Setup, terms: Terms, in_flight: bool = True,
                  observed: tuple[float, float] | None = None) -> AnalyticResult:
    """Hit rates, characteristic time and rates for ``setup`` (docs/model.md §4-§6, §9), from
    its :func:`build_terms` (built once by a caller that needs them too). ``in_flight=False``
    leaves out the KV held by running requests (requests served instantly, as before).
    ``observed`` (:func:`observed_window`): the hit rates of a finite window from a cold
    cache (docs/model.md §12.5); None, the steady state."""
    scenario, capacity = setup.scenario, setup.capacity
    ceiling_tokens, ceiling_requests = hits(terms, math.inf, observed=observed)
    max_thr = min(1.0, ceiling_tokens / terms.prompt_tokens)
    max_rhr = min(1.0, ceiling_requests / terms.mean_turns)
    request_rate = scenario.arrival_rate * terms.mean_turns
    prompt_tps = scenario.arrival_rate * terms.prompt_tokens
    if not capacity.fits:
        return AnalyticResult(False, capacity.message, 0.0, 0.0, max_thr, max_rhr, 0.0, 0.0, 0.0, None,
                              0, terms.mean_turns, request_rate, prompt_tps, 0.0,
                              terms.prompt_tokens / terms.mean_turns, scenario.policy == "lru", capacity)
    held = in_flight_for(setup, terms) if in_flight else NO_IN_FLIGHT
    terms = with_service(terms, held.service_s)
    T1 = solve_characteristic_time(terms, idle_capacity(capacity.capacity_tokens, held))
    gpu_tokens, gpu_requests = hits(terms, T1, observed=observed)
    total_tokens, total_requests, T2 = gpu_tokens, gpu_requests, None
    if capacity.offload_tokens > capacity.capacity_tokens:
        T2 = solve_characteristic_time(terms, idle_capacity(capacity.offload_tokens, held))
        total_tokens, total_requests = hits(terms, T2, observed=observed)
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
        in_flight_requests=held.requests, in_flight_tokens=held.tokens,
        in_flight_share=held.tokens / capacity.capacity_tokens if capacity.capacity_tokens else 0.0,
        decode_tokens_per_s_used=held.decode_tokens_per_s, ttft_s_used=held.ttft_s, service_s=held.service_s,
        in_flight_saturated=held.saturated,
    )


def analyze_setup(setup: Setup, in_flight: bool = True, answers_cached: bool = True, *,
                  window_s: float | None = None, observed_from_s: float = 0.0) -> AnalyticResult:
    """Hit rates, characteristic time and rates for a resolved scenario (docs/model.md §4-§6, §9);
    ``in_flight`` as in :func:`analyze_terms`, ``answers_cached`` as in :func:`build_terms`.
    ``window_s``: the hit rates of the requests from ``observed_from_s`` to ``window_s``
    seconds after an empty cache started, as a replay of a trace that long sees them
    (docs/model.md §12.5); None (the default), the steady state."""
    observed = observed_window(window_s, observed_from_s)
    return analyze_terms(setup, build_terms(setup, answers_cached=answers_cached), in_flight, observed)


def analyze(scenario: Scenario, in_flight: bool = True, answers_cached: bool = True, *,
            window_s: float | None = None, observed_from_s: float = 0.0) -> AnalyticResult:
    """:func:`analyze_setup` of ``scenario`` resolved (:func:`~kvcache_calculator.setup.resolve.resolve`)."""
    return analyze_setup(resolve(scenario), in_flight, answers_cached, window_s=window_s,
                         observed_from_s=observed_from_s)


def hit_rate_and_ceiling(setup: Setup, tail: float = 0.0, in_flight: bool = True) -> tuple[float, float]:
    """(token hit rate, ceiling) of a resolved scenario: :func:`analyze_setup`'s two rates
    alone, the hit rate at ``T`` solved for the larger tier. ``tail`` as in :func:`gap_sums`:
    the sweeps' exact points pass a small one, which changes the rates by about 1e-12 and makes
    each solve step cost O(x + 40) instead of O(R) for routings that spread conversations."""
    terms = build_terms(setup)
    capacity = setup.capacity
    ceiling = min(1.0, hits(terms, math.inf)[0] / terms.prompt_tokens)
    if not capacity.fits:
        return 0.0, ceiling
    held = in_flight_for(setup, terms) if in_flight else NO_IN_FLIGHT
    terms = with_service(terms, held.service_s)
    tokens = idle_capacity(max(capacity.capacity_tokens, capacity.offload_tokens), held)
    T = solve_characteristic_time(terms, tokens, tail)
    return min(1.0, hits(terms, T, tail)[0] / terms.prompt_tokens), ceiling


def capacity_for_hit_rate(setup: Setup, target: float, in_flight: bool = True) -> tuple[float | None, float]:
    """Tokens of cache per instance for a token hit rate of ``target``, and the ceiling.

    Returns ``(None, ceiling)`` when the target is at or above the infinite-cache ceiling.
    Solves on T (hit rate rises with T), then capacity = O(T) plus the KV held by running
    requests.
    """
    terms = build_terms(setup)
    ceiling = token_hit_rate_at(terms, math.inf)
    if target >= ceiling - 1e-9:
        return None, ceiling
    held = in_flight_for(setup, terms) if in_flight else NO_IN_FLIGHT
    terms = with_service(terms, held.service_s)
    if token_hit_rate_at(terms, T_MIN_S) >= target:
        return occupancy(terms, T_MIN_S) + held.tokens, ceiling   # what is hit even then: the shared prompt
    T = solve_increasing(lambda t: token_hit_rate_at(terms, t), target, T_MIN_S, T_MAX_S)
    return occupancy(terms, T) + held.tokens, ceiling
