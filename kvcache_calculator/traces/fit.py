"""Fitting a scenario to a trace (docs/model.md §10.6): conversations, system prompts with
their popularity, shared documents, the think-time distribution, turns, rates and lengths.

:class:`ScenarioFitter` is fed requests as the trace streams past (the CLI's single pass, the
lab's chunks) and returns the fitted scenario with ``result()``:

- the workload keys (docs/architecture.md §3), each kept within the form's limits; a value
  the trace gives outside them is replaced by the nearest allowed value and explained in
  plain words in ``fit["explanations"]`` (never an error);
- ``fit["link"]``: the fitted workload as a share link's fragment (the page's ``#key=value``
  form), with the keys this version's form knows;
- ``fit["diagnostics"]``: what the fit measured on the way (reuse times, think-time
  quantiles, how conversations were inferred, the raw estimates before clamping), and
  ``["drift"]``, the drift test (:func:`drift_test`; docs/model.md §12.5): whether the
  trace's reuse rises or falls over time, which the stationary fit cannot follow
  (:func:`drift_warning` says so in words, in :func:`fit_report`).

Conversations come from :mod:`kvcache_calculator.traces.inference` (Mooncake: inferred from
the block ids; Bailian: ``parent_chat_id``). How each key is fitted:

- ``arrival_rate``: conversations per second of trace; ``turns``: requests per conversation,
  ``turns_dist`` fixed when nine conversations in ten have the same count, else geometric;
- ``think_time_s`` / ``think_dist`` / ``think_sigma``: the gaps between a request's arrival and
  its previous turn's (which include the previous turn's queueing and generation: the
  traces have no completion times). Fixed when their coefficient of variation is under
  0.05; otherwise exponential or lognormal, whichever gives the gaps the higher likelihood
  (maximum-likelihood parameters; exponential below 20 gaps; gaps of 0, from timestamps rounded to whole seconds or
  more, are counted at half the smallest positive gap). The gaps' own shape, 17 quantiles in
  units of their mean (:func:`gap_shape`), is reported as ``diagnostics["think_time"]
  ["think_shape"]``; with ``fit_think="empirical"`` (``replay --fit --fit-think empirical``)
  the fit uses it, ``think_dist=empirical`` with ``think_time_s`` the gaps' mean. The
  automatic choice never picks it: a 16-segment histogram has 15 more parameters than a
  lognormal, so comparing likelihoods would need a penalty (BIC), and on traces of thousands of
  gaps the histogram would win almost always, changing every fit; the option keeps the
  choice the user's;
- ``num_system_prompts`` / ``system_prompt_tokens`` / ``system_prompt_zipf``: the system
  prompts found, their mean length (weighted by use) in whole blocks, and the Zipf exponent
  of their use (maximum likelihood over the ranks);
- ``num_documents`` / ``document_tokens`` / ``document_share`` / ``document_zipf``: the
  documents used by two or more conversations. A prefix hash includes the system prompt
  before it, so the runs found are (system prompt, document) pairs used at least twice; the
  model forms the pairs of ``num_system_prompts`` prompts and ``num_documents`` documents
  itself. The runs found pin the document count for each Zipf exponent, and the gaps between
  successive uses of a pair choose the exponent by likelihood
  (:func:`document_popularity_steps`, docs/model.md §10.6; where conversations are split,
  the merges the inference makes are modelled, :func:`merged_counts`, and the pairs seen
  used once choose the exponent). ``document_share`` is the share of conversations using
  one: all the uses the count implies, pairs used once included, whose document tokens
  leave ``input_tokens``;
- ``input_tokens``: new prompt tokens per request (first turn: after the system prompt and
  document; next turn: its prompt minus the previous turn's prompt and answer);
  ``output_tokens``: the mean ``output_length``; ``length_dist`` exponential when the new
  tokens of the follow-up turns have a coefficient of variation of at least 0.5 (an
  exponential's is 1; docs/model.md §13), else fixed.
"""

from __future__ import annotations

import bisect
import math
from typing import Iterable

from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.analytic.popularity import empirical_quantile, product_groups, zipf_groups
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, encode_fragment
from kvcache_calculator.steps import drain
from kvcache_calculator.traces.inference import ANSWER_SHARE, ConversationInference

__all__ = ["ScenarioFitter", "fit_scenario", "fit_zipf", "fit_think_times", "repeated_pairs",
           "merged_counts", "true_repeats",
           "documents_for_runs", "document_popularity_steps", "document_gap_loglik", "clamp_to_form",
           "model_scenario", "replay_view", "replay_window", "REPLAY_WINDOW_NOTE", "compare_fit_to_replay",
           "analytic_token_hit_rate", "fit_report", "drift_test", "drift_warning",
           "DRIFT_SEGMENTS", "DRIFT_POINTS",
           "WORKLOAD_KEYS", "FALLBACK_LIMITS"]

#: The keys a fit sets, in the order the report lists them.
WORKLOAD_KEYS = ("arrival_rate", "turns", "turns_dist", "think_time_s", "think_dist",
                 "think_sigma", "think_shape", "input_tokens", "output_tokens", "length_dist", "system_prompt_tokens",
                 "num_system_prompts", "system_prompt_zipf", "num_documents",
                 "document_tokens", "document_share", "document_zipf", "block_size")

#: Limits of keys this version's form may not have yet (used only while ``FIELD_BY_KEY`` lacks
#: them): (label, unit, kind, minimum, maximum, minimum excluded).
FALLBACK_LIMITS = {
    "num_documents": ("Shared documents", "documents", "int", 0, 1_000_000, False),
    "document_tokens": ("Document size", "tokens", "int", 0, 10_000_000, False),
    "document_share": ("Conversations with a document", "fraction", "float", 0, 1, False),
    "document_zipf": ("Document popularity (Zipf)", "", "float", 0, 10, False),
    "system_prompt_zipf": ("System prompt popularity (Zipf)", "", "float", 0, 10, False),
    "think_sigma": ("Think-time spread (lognormal sigma)", "", "float", 0, 10, True),
}

#: Upper edges (seconds) of the reuse-time histogram: 1 ms to about 11.6 days, 10 per decade.
_EDGES_S = tuple(10 ** (k / 10) for k in range(-30, 61))
#: Think times with a coefficient of variation under this are fitted as fixed.
FIXED_CV = 0.05
#: Segments of the empirical think-time shape a fit reports (``think_shape``, :func:`gap_shape`).
SHAPE_QUANTILES = 16
#: ``fit_think`` choices: ``auto`` picks fixed, exponential or lognormal (module docstring);
#: ``empirical`` uses the gaps' own shape (:func:`gap_shape`) when there are enough gaps.
FIT_THINK = ("auto", "empirical")
#: Fewer gaps than this are too few to prefer a lognormal to an exponential.
MIN_GAPS_FOR_SHAPE = 20
#: Turn counts are fitted as fixed when this share of conversations has the same count.
FIXED_TURNS_SHARE = 0.9
#: The split-conversation correction applies when first messages shorter than a block
#: explain at least this share of the orphan first requests (:func:`split_first_turns`).
EXPLAINED_ORPHANS = 0.5
#: Lengths are fitted as exponential when the new tokens per turn vary at least this much
#: (coefficient of variation; an exponential's is 1, fixed lengths' 0).
RANDOM_LENGTH_CV = 0.5


def coefficient_of_variation(values) -> float | None:
    """Standard deviation over mean of ``values`` (population); None for none or a mean of 0."""
    n = len(values)
    if n == 0:
        return None
    mean = sum(values) / n
    if mean <= 0:
        return None
    return math.sqrt(max(0.0, sum(v * v for v in values) / n - mean * mean)) / mean


def fit_zipf(counts: Iterable[int]) -> float:
    """Maximum-likelihood Zipf exponent ``s >= 0`` of items used ``counts`` times: item of rank
    ``r`` (by count, 1 the most used) drawn with probability ``r**-s / H(N, s)``. Returns 0
    for fewer than two items or uses spread at least as evenly as uniform."""
    c = sorted((int(x) for x in counts if x > 0), reverse=True)
    n, m = len(c), sum(c)
    if n < 2:
        return 0.0
    logs = [math.log(r) for r in range(1, n + 1)]
    target = sum(ci * lr for ci, lr in zip(c, logs)) / m   # observed mean log-rank

    def mean_log_rank(s: float) -> float:
        w = [math.exp(-s * lr) for lr in logs]
        return sum(wi * lr for wi, lr in zip(w, logs)) / sum(w)

    if target >= mean_log_rank(0.0) - 1e-12:
        return 0.0
    lo, hi = 0.0, 20.0
    if target <= mean_log_rank(hi):
        return hi
    for _ in range(60):
        mid = (lo + hi) / 2
        if mean_log_rank(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


#: The pairs seen used once, counted from first requests' lengths, choose the document Zipf
#: exponent when they exceed this many standard deviations of their count (docs/model.md §10.6).
ONCE_SIGMAS = 3.0

#: Largest document count :func:`document_popularity_steps` considers, per (system prompt,
#: document) pair seen used at least twice (docs/model.md §10.6).
DOCUMENTS_PER_RUN = 10
#: Zipf exponents of the coarse grid of :func:`document_popularity_steps`, then a
#: golden-section search within one grid step of the best to :data:`_ZIPF_TOLERANCE`.
_DOC_ZIPFS = tuple(k / 2 for k in range(0, 7))
_ZIPF_TOLERANCE = 0.01
_GOLDEN = (math.sqrt(5) - 1) / 2


def _gap_histogram(gaps: list) -> list:
    """``(count, lower edge, upper edge)`` of the gaps in the reuse-time bins."""
    hist: dict = {}
    for g in gaps:
        i = bisect.bisect_left(_EDGES_S, g)
        hist[i] = hist.get(i, 0) + 1
    return [(c, _EDGES_S[i - 1] if i else 0.0, _EDGES_S[i] if i < len(_EDGES_S) else math.inf)
            for i, c in sorted(hist.items())]


def document_gap_loglik(hist: list, rate: float, pair_groups, window_s: float) -> float:
    """Log-likelihood of binned gaps between successive conversations using the same
    (system prompt, document) pair, when pairs of probability ``p`` (``pair_groups``:
    ``(count, p)``) are used as Poisson processes of rate ``rate * p``: a gap comes from a pair
    in proportion to its uses and is exponential of that pair's rate,
    ``F(g) = sum count p (1 - exp(-rate p g))``, conditioned on ``g < window_s`` (a trace
    shows no longer gap)."""
    def cdf(g: float) -> float:
        return sum(c * p * -math.expm1(-rate * p * g) for c, p in pair_groups)

    # each distinct edge once (adjacent bins share one)
    at = {g: cdf(g) for g in {min(e, window_s) for _, lo, hi in hist for e in (lo, hi)} | {window_s}}
    total = at[window_s]
    if total <= 0:
        return -math.inf
    ll = 0.0
    for n, lo, hi in hist:
        mass = (at[min(hi, window_s)] - at[min(lo, window_s)]) / total
        ll += n * math.log(mass) if mass > 0 else -1e300
    return ll


def merged_counts(lam: float, merge: tuple = (0.0, 0.0)) -> tuple:
    """What the conversation inference sees of a (system prompt, document) pair used a
    Poisson number ``K`` of times of mean ``lam`` (docs/model.md §10.6): ``(P(seen used at
    least twice), E[uses seen; at least twice], P(seen used once), E[uses merged])``.
    ``merge = (a, g)``: the pair's first use is, with probability ``a``, a first request with
    no whole block of its own, and then each later start of the pair is linked to it as a
    next turn with probability ``g`` until one is not (``M`` merged, at most ``K - 1``); the
    pair is seen used ``K - M`` times. Closed forms over ``K`` (``x = lam g``):
    ``sum_{k>=2} P(K=k) g^(k-1) = e^-lam (e^x - 1 - x) / g``, and likewise with ``k``."""
    e = math.exp(-lam)
    p2 = -math.expm1(-lam) - lam * e
    u2 = lam * -math.expm1(-lam)
    p1 = lam * e
    a, g = merge
    if a <= 0 or g <= 0:
        return p2, u2, p1, 0.0
    x = lam * g
    ex = math.exp(x - lam) - e                  # e^-lam (e^x - 1), without overflow
    if x < 0.5:                                 # e^-lam (e^x - 1 - x) without cancellation
        t2, term, k = 0.0, x * x / 2, 2
        while term > 1e-17 * t2 or not t2:
            t2 += term
            k += 1
            term *= x / k
        t2 *= e
    else:
        t2 = ex - e * x
    lost = t2 / g                               # sum_{k>=2} P(K=k) g^(k-1)
    g1, g0 = x * ex, t2                         # sum_{k>=2} k P g^k, sum_{k>=2} P g^k
    uses_lost = lam * ex + (g * p2 - (g1 - g0) / g + g1 - 2 * g0) / (1 - g)
    return p2 - a * lost, u2 - a * uses_lost, p1 + a * lost, a * g / (1 - g) * (p2 - lost)


def repeated_pairs(pair_groups, uses: float, merge: tuple = (0.0, 0.0)) -> tuple:
    """``(expected pairs seen used at least twice, all uses)`` in a window where the pairs
    seen at least twice were used ``uses`` times together: each pair of probability ``p`` is
    used a Poisson number of times of mean ``L p``, and ``L`` (all uses, once-used pairs
    included, which the trace cannot tell from a conversation's own content) solves
    ``sum count L p (1 - exp(-L p)) = uses`` (Newton's method from ``L = uses``; the left side
    is increasing and convex in ``L``). With ``merge`` (:func:`merged_counts`) the uses seen
    are those the inference keeps apart (the derivative then by a finite difference)."""
    def seen_uses(lam: float) -> float:
        return sum(c * merged_counts(lam * p, merge)[1] for c, p in pair_groups)

    merging = merge[0] > 0 and merge[1] > 0
    lam = float(uses)
    for _ in range(50):
        if merging:
            f = seen_uses(lam) - uses
            h = 1e-6 * lam
            df = (seen_uses(lam + h) - uses - f) / h
        else:
            f, df = -uses, 0.0
            for c, p in pair_groups:
                x = lam * p
                e = math.exp(-x)
                f += c * x * (1 - e)
                df += c * p * (1 - e + x * e)
        if df <= 0:
            break
        step = f / df
        lam -= step
        if abs(step) <= 1e-9 * lam:
            break
    lam = max(lam, float(uses))
    seen = sum(c * merged_counts(lam * p, merge)[0] for c, p in pair_groups)
    return seen, lam


def documents_for_runs(zipf: float, sys_groups, runs: float, uses: float, most: int,
                       merge: tuple = (0.0, 0.0)) -> tuple:
    """``(document count, all uses)``: the count whose pairs with the system prompts
    (``sys_groups``), documents of Zipf popularity ``zipf``, give ``runs`` pairs used at least
    twice when those were used ``uses`` times (:func:`repeated_pairs`, ``merge`` as in
    :func:`merged_counts`; bisection over whole
    counts, which the expected number increases), and the uses that count implies. None for
    the count when even ``most`` documents give fewer such pairs (for a steep exponent the
    few popular documents take most uses)."""
    def seen(n: int) -> tuple:
        return repeated_pairs(product_groups(sys_groups, zipf_groups(n, zipf)), uses, merge)

    lo, hi = 1, most
    at_lo, at_hi = seen(lo), seen(hi)
    if at_lo[0] >= runs:
        return lo, at_lo[1]
    if at_hi[0] < runs:
        return None, at_hi[1]
    while hi - lo > 1:          # seen(lo) < runs <= seen(hi)
        mid = min(hi - 1, max(lo + 1, math.isqrt(lo * hi)))
        at = seen(mid)
        if at[0] < runs:
            lo = mid
        else:
            hi, at_hi = mid, at
    return hi, at_hi[1]


def true_repeats(seen: int, orphans: int, q: float) -> tuple:
    """``(P(used at least twice), E[uses; used at least twice], E[uses])`` of a (system prompt,
    document) pair seen at ``seen`` conversation starts, ``orphans`` of them first requests
    with no whole block of their own, each followed by a false start (its own next turn, seen
    as a conversation start) with probability ``q`` (:func:`split_first_turns`): the pair's
    uses are ``seen - B``, ``B`` binomial (``orphans``, ``q``), at least 1."""
    o = min(orphans, seen - 1)
    p2 = u2 = u = 0.0
    for b in range(o + 1):
        w = math.comb(o, b) * q ** b * (1 - q) ** (o - b)
        k = seen - b
        u += w * k
        if k >= 2:
            p2 += w
            u2 += w * k
    return p2, u2, u


def document_popularity_steps(gaps: list, sys_groups, window_s: float, runs: float, uses: float,
                              merge: tuple = (0.0, 0.0), once_seen: float | None = None):
    """``(num_documents, document_zipf, all uses L)`` as a generator of steps (one candidate
    exponent per step). Two pieces of evidence: the ``runs`` (system prompt, document) pairs seen used at
    least twice in the window of ``window_s`` seconds, ``uses`` times together, pin the
    document count for each exponent and the uses of all pairs (:func:`documents_for_runs`);
    the gaps between successive uses of a pair then choose the exponent by likelihood
    (:func:`document_gap_loglik` at that count and rate; gap timing alone barely separates the
    count from the exponent): a grid over :data:`_DOC_ZIPFS`, then a golden-section search
    within a grid step of its best. Exponents no count explains lose to any that one does.
    ``sys_groups``: the system prompts' popularity groups; ``merge``: :func:`merged_counts`'
    ``(a, g)``. With ``once_seen`` (the pairs seen used once, counted from lengths) the
    exponent is scored by how near its predicted pairs seen once come to it instead of by
    the gaps (docs/model.md §10.6)."""
    hist = _gap_histogram(gaps)
    scores: dict = {}
    most = max(1, math.ceil(DOCUMENTS_PER_RUN * runs))

    def score(s: float) -> tuple:
        s = round(s, 6)
        if s not in scores:
            n, lam = documents_for_runs(s, sys_groups, runs, uses, most, merge)
            groups = product_groups(sys_groups, zipf_groups(n or most, s))
            if once_seen is None:
                fit = document_gap_loglik(hist, lam / window_s, groups, window_s)
            else:
                once = sum(c * merged_counts(lam * p, merge)[2] for c, p in groups)
                fit = -abs(math.log(max(once, 1e-9) / once_seen))
            scores[s] = (n is not None, fit,
                         n or most, s, lam)
        return scores[s]

    for s in _DOC_ZIPFS:
        score(s)
        yield
    best = max(scores.values())[3]
    step = _DOC_ZIPFS[1] - _DOC_ZIPFS[0]
    a, b = max(0.0, best - step), best + step
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    for s in (c, d):            # then one new point per step
        score(s)
        yield
    while b - a > _ZIPF_TOLERANCE:
        if score(c)[:2] >= score(d)[:2]:
            b, d = d, c
            c = b - _GOLDEN * (b - a)
        else:
            a, c = c, d
            d = a + _GOLDEN * (b - a)
        yield
    _, _, n, s, lam = max(scores.values())
    return n, s, lam


def fit_think_times(gaps: list) -> dict:
    """The think-time distribution of the gaps (seconds): ``{"dist", "mean_s", "sigma", "cv",
    "loglik_exponential", "loglik_lognormal", "zero_floor_s"}`` (see the module docstring).
    Empty gaps give None for every number."""
    n = len(gaps)
    if n == 0:
        return {"dist": None, "mean_s": None, "sigma": None, "cv": None,
                "loglik_exponential": None, "loglik_lognormal": None, "zero_floor_s": None,
                "think_shape": None, "sample_mean_s": None}
    mean = sum(gaps) / n
    var = sum((g - mean) ** 2 for g in gaps) / n
    cv = math.sqrt(var) / mean if mean > 0 else 0.0
    positive = [g for g in gaps if g > 0]
    floor = min(positive) / 2 if positive else 1.0
    xs = [g if g > 0 else floor for g in gaps]
    logs = [math.log(x) for x in xs]
    mu = sum(logs) / n
    sigma = math.sqrt(sum((v - mu) ** 2 for v in logs) / n)
    m_exp = sum(xs) / n
    ll_exp = -n * math.log(m_exp) - n
    if sigma > 0:
        ll_ln = -sum(logs) - n * math.log(sigma) - n / 2 * math.log(2 * math.pi) - n / 2
    else:
        ll_ln = math.inf
    if n >= 2 and (cv < FIXED_CV or sigma == 0):
        dist, fitted_mean, fitted_sigma = "fixed", mean, None
    elif n >= MIN_GAPS_FOR_SHAPE and ll_ln > ll_exp:
        dist, fitted_mean, fitted_sigma = "lognormal", math.exp(mu + sigma ** 2 / 2), sigma
    else:
        dist, fitted_mean, fitted_sigma = "exponential", mean, None
    return {"dist": dist, "mean_s": fitted_mean, "sigma": fitted_sigma, "cv": cv,
            "loglik_exponential": ll_exp, "loglik_lognormal": None if math.isinf(ll_ln) else ll_ln,
            "zero_floor_s": floor if len(positive) < n else None,
            "think_shape": list(shape) if (shape := gap_shape(gaps)) else None, "sample_mean_s": mean}


def gap_shape(gaps: list, n: int = SHAPE_QUANTILES) -> tuple | None:
    """The gaps' ``think_shape`` (docs/model.md §12.4): ``n + 1`` quantiles at probabilities
    ``0, 1/n, ..., 1`` in units of the gaps' mean, to 3 significant digits. The inner ones are
    the sample's quantiles (linear interpolation between order statistics); the two ends make
    the first and last segments' means those of the gaps below ``q_1`` and above ``q_{n-1}``
    (``q_0 = 2 mean_low - q_1``, at least 0; ``q_n = 2 mean_high - q_{n-1}``), since the
    sample's minimum and maximum say little about a tail. None below
    :data:`MIN_GAPS_FOR_SHAPE` gaps or when they are all equal."""
    v = sorted(gaps)
    count = len(v)
    mean = sum(v) / count if count else 0.0
    if count < MIN_GAPS_FOR_SHAPE or mean <= 0 or v[0] == v[-1]:
        return None

    inner = [empirical_quantile(i / n, v) for i in range(1, n)]
    low = [g for g in v if g <= inner[0]]
    high = [g for g in v if g >= inner[-1]]
    first = max(0.0, 2 * sum(low) / len(low) - inner[0])
    last = max(inner[-1], 2 * sum(high) / len(high) - inner[-1])
    shape = [float(f"{x / mean:.3g}") for x in (first, *inner, last)]
    if shape[-1] <= shape[0]:
        return None
    return tuple(shape)


def _limits(key: str) -> tuple | None:
    field = FIELD_BY_KEY.get(key)
    if field is not None:
        if field.kind not in ("int", "float"):
            return None
        return (field.label, field.unit, field.kind, field.minimum, field.maximum,
                field.exclusive_min)
    return FALLBACK_LIMITS.get(key)


def _number(x: float, unit: str) -> str:
    text = f"{x:,.0f}" if float(x).is_integer() and abs(x) >= 1 else f"{x:,.4g}"
    return text + (f" {unit}" if unit and unit != "fraction" else "")


#: Why a fitted value can fall outside the form, said to the user next to the clamp.
_WHY = {
    ("turns", "high"): "so many turns usually means requests of different users were taken "
                       "for one long conversation",
    ("arrival_rate", "low"): "the trace holds very few conversations for its duration",
    ("think_time_s", "high"): "the trace's gaps between turns are longer than the form allows",
}


def clamp_to_form(key: str, value):
    """``(value used, explanation or None)``: ``value`` kept within the form's limits for
    ``key`` (rounded for a whole-number key); the explanation says in plain words what the
    trace gave, what is used instead and why this may happen."""
    lim = _limits(key)
    if lim is None or value is None:
        return value, None
    label, unit, kind, lo, hi, excl = lim
    used = value
    side = None
    if lo is not None and (value < lo or (excl and value <= lo)):
        side = "low"
        used = lo if not excl else (lo + 1 if kind == "int" else max(lo * 1.000001, 1e-9))
    elif hi is not None and value > hi:
        side = "high"
        used = hi
    if kind == "int":
        used = int(round(used))
    if side is None:
        return used, None
    limit = hi if side == "high" else lo
    text = (f"{label}: the trace gives {_number(value, unit)}, "
            f"{'more' if side == 'high' else 'less'} than the form allows "
            f"({'at most' if side == 'high' else 'more than' if excl else 'at least'} "
            f"{_number(limit, unit)}); the fit uses {_number(used, unit)}")
    why = _WHY.get((key, side))
    return used, text + (f" ({why})." if why else ".")


def model_scenario(fit: dict) -> tuple:
    """``(scenario dict, notes)``: the fitted keys this version's model takes (without
    ``diagnostics`` and the report entries); a key or a value it does not know yet is left
    out, and each note says which, in plain words."""
    out, notes = {}, []
    for key, value in fit.items():
        if key in ("diagnostics", "explanations", "link"):
            continue
        field = FIELD_BY_KEY.get(key)
        if field is None:
            notes.append(f"{key} = {value:g}" if isinstance(value, (int, float)) else key)
            continue
        if field.kind == "choice" and value not in field.choices:
            notes.append(f"{key} = {value}")
            continue
        out[key] = value
    return out, notes


class ScenarioFitter:
    """Streaming fit of a scenario to a trace (module docstring): ``feed(requests)``, then
    ``result()``. Keeps one entry per distinct block and a few numbers per request."""

    def __init__(self, block_size: int, fit_think: str = "auto"):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ScenarioError("block_size", block_size, "must be an integer >= 1")
        if fit_think not in FIT_THINK:
            raise ScenarioError("fit_think", fit_think, "must be one of " + ", ".join(FIT_THINK))
        self.block_size = block_size
        self.fit_think = fit_think
        self.requests = 0
        self.first_ts = math.inf
        self.last_ts = -math.inf
        self.sum_input = 0
        self.sum_output = 0
        self.reuse_hist = [0] * (len(_EDGES_S) + 1)
        self.reuses = 0
        self.reuse_within_10s = 0
        self.reuse_within_600s = 0
        self.block_last_ts: dict = {}
        self.bailian = False
        self.chat_index: dict = {}
        self.missing_parents = 0
        self.inference = ConversationInference()

    def feed(self, requests: Iterable) -> int:
        """Account for ``requests`` (in arrival order); returns how many were fed."""
        last = self.block_last_ts
        edges = _EDGES_S
        fed = 0
        for r in requests:
            fed += 1
            t = r.timestamp_s
            self.first_ts = min(self.first_ts, t)
            self.last_ts = max(self.last_ts, t)
            self.sum_input += r.input_length
            self.sum_output += r.output_length
            for h in r.hash_ids:
                prev = last.get(h)
                if prev is not None:
                    gap = t - prev
                    self.reuses += 1
                    self.reuse_hist[bisect.bisect_left(edges, gap)] += 1
                    self.reuse_within_10s += gap <= 10
                    self.reuse_within_600s += gap <= 600
                last[h] = t
            known = None
            if r.chat_id is not None:
                self.bailian = True
                known = -1
                if r.parent_chat_id is not None and r.parent_chat_id >= 0:
                    known = self.chat_index.get(r.parent_chat_id, -1)
                    self.missing_parents += known < 0
                self.chat_index[r.chat_id] = self.requests
            self.inference.add(r, known)
            self.requests += 1
        return fed

    @staticmethod
    def _quantiles(values: list) -> dict:
        if not values:
            return {f"p{q}": None for q in (50, 80, 90, 99)}
        v = sorted(values)
        return {f"p{q}": v[min(len(v) - 1, int(q / 100 * len(v)))] for q in (50, 80, 90, 99)}

    def _hist_quantiles(self) -> dict:
        out = {}
        for q in (50, 80, 90, 99):
            need, run, value = q / 100 * self.reuses, 0, None
            if self.reuses:
                for i, c in enumerate(self.reuse_hist):
                    run += c
                    if run >= need:
                        value = _EDGES_S[i] if i < len(_EDGES_S) else None
                        break
            out[f"p{q}"] = value
        return out

    def result(self) -> dict:
        """The fitted scenario (module docstring), plain JSON types. Raises ScenarioError if no
        request was fed."""
        return drain(self.result_steps())

    def result_steps(self):
        """:meth:`result` as a generator of small steps (the lab's cooperative turns; see
        ``ConversationInference.structure_steps``) returning the fitted scenario."""
        if self.requests == 0:
            raise ScenarioError("trace", "empty", "no requests to fit a scenario to")
        bs = self.block_size
        st = yield from self.inference.structure_steps(bs)
        duration_s = self.last_ts - self.first_ts
        span_s = duration_s if duration_s > 0 else 1.0    # a stated floor: all at one instant
        split = split_first_turns(st, self.inference.outputs, self.inference.root_request, bs)
        roots = len(st.turns)
        conversations = max(1.0, roots - split["false_starts"])
        follow = self.requests - roots
        # system prompts: use-weighted mean length, Zipf of their use (false starts taken out)
        sps = st.system_prompts
        sp_counts = [max(1, round(p.conversations - f)) for p, f in zip(sps, split["system_prompt"])]
        sp_uses = sum(sp_counts)
        sp_blocks = (sum(p.blocks * c for p, c in zip(sps, sp_counts)) / sp_uses) if sp_uses else 0.0
        # documents: every use of a (prompt, document) pair seen at least twice is a document
        # use (the model, not the window, decides whether it hits)
        docs = st.documents
        doc_counts = [max(1, round(d.conversations - f)) for d, f in zip(docs, split["document"])]
        reuses = [c - 1 for c in doc_counts]
        doc_reuses = sum(reuses)
        doc_blocks = (sum(d.blocks * u for d, u in zip(docs, reuses)) / doc_reuses
                      if doc_reuses else 0.0)
        new_tokens = sum(st.new_tokens) - split["tokens"]
        gaps = [g for g, p in zip(st.gap_s, st.parent) if p >= 0]
        sp_zipf = fit_zipf(sp_counts)
        doc_count, doc_zipf = 0, None
        # the pairs used at least twice and their uses, net of false starts (per document)
        merge = split["merge"]
        q = split["false_start_probability"]
        repeats = [true_repeats(d.conversations, o, q) for d, o in zip(docs, split["document_orphans"])]
        seen_uses = sum(r[2] for r in repeats)
        once_seen, merged = 0.0, 0.0
        all_uses = seen_uses
        if docs:
            starts = self.inference.t
            last_use: dict = {}
            doc_gaps = []
            after_orphan: dict = {}
            for conv, d in enumerate(st.document_of_root):
                if d >= 0:
                    t = starts[self.inference.root_request[conv]]
                    # the start after a corrected orphan may be its own next turn: skip
                    if d in last_use and not after_orphan[d]:
                        doc_gaps.append(t - last_use[d])
                    last_use[d] = t
                    after_orphan[d] = split["orphan_of_conversation"][conv]
            n_sys = max(1, len(sps))
            sys_groups = zipf_groups(n_sys, sp_zipf if n_sys > 1 else 0.0)
            once_target = None
            size = round(doc_blocks) * bs
            if split["false_starts"] and split["message_mean"] and size > 0:
                # pairs seen used once: first requests without a document whose new tokens
                # reach a document's size, less those a long own message explains
                first = self.inference.root_request
                plain = [st.new_tokens[first[conv]] for conv, d in enumerate(st.document_of_root) if d < 0]
                tail = math.exp(-size / split["message_mean"])
                big = sum(x >= size for x in plain)
                estimate = (big - len(plain) * tail) / (1 - tail)
                # only a count clearly above its noise (Poisson counts) says more than the gaps
                if estimate > ONCE_SIGMAS * math.sqrt(big + len(plain) * tail) / (1 - tail):
                    once_target = estimate
            if doc_gaps:
                doc_count, doc_zipf, all_uses = yield from document_popularity_steps(
                    doc_gaps, sys_groups, span_s, sum(r[0] for r in repeats),
                    sum(r[1] for r in repeats), merge, once_target)
                # the pairs seen used once (their document counted as the conversation's own
                # new tokens) and the starts linked to another conversation (docs/model.md §10.6)
                for c, p in product_groups(sys_groups, zipf_groups(doc_count, doc_zipf)):
                    _, _, once, m = merged_counts(all_uses * p, merge)
                    once_seen += c * once
                    merged += c * m
            else:
                doc_count, doc_zipf = 1, 0.0
        conversations += merged
        # length variability from the follow-up turns (a first turn's new tokens also hold
        # the part of a shared prefix the inference could not attribute)
        follow_new = [n for n, p in zip(st.new_tokens, st.parent) if p >= 0] or list(st.new_tokens)
        length_cv = coefficient_of_variation(follow_new)
        yield
        think = fit_think_times(gaps)
        yield
        mode, mode_n = split["mode"]
        turns = self.requests / conversations
        fixed_turns = mode > 1 and mode_n >= FIXED_TURNS_SHARE * conversations
        # a pair seen used once shows its document as the conversation's own new tokens
        new_tokens = max(0.0, new_tokens - once_seen * round(doc_blocks) * bs)
        raw = {
            "arrival_rate": conversations / span_s,
            "turns": float(mode) if fixed_turns else turns,
            "turns_dist": "fixed" if fixed_turns or turns == 1 else "geometric",
            "think_time_s": think["mean_s"] if think["mean_s"] else 1.0,
            "think_dist": think["dist"] or "exponential",
            "input_tokens": new_tokens / self.requests,
            "output_tokens": self.sum_output / self.requests,
            "length_dist": "exponential" if (length_cv or 0.0) >= RANDOM_LENGTH_CV else "fixed",
            "system_prompt_tokens": round(sp_blocks) * bs,
            "num_system_prompts": max(1, len(sps)),
            "system_prompt_zipf": sp_zipf,
            # a prefix hash includes the system prompt before it, so a document used behind
            # K prompts shows as up to K runs; the model forms the K x D pairs itself
            "num_documents": doc_count,
            "document_tokens": round(doc_blocks) * bs,
            "document_share": min(1.0, all_uses / conversations),
            "document_zipf": doc_zipf,
            "block_size": bs,
        }
        if think["dist"] == "lognormal":
            raw["think_sigma"] = think["sigma"]
        if self.fit_think == "empirical" and think["think_shape"]:
            raw.pop("think_sigma", None)
            raw.update(think_dist="empirical", think_time_s=think["sample_mean_s"],
                       think_shape=tuple(think["think_shape"]))
        if not docs:   # no shared documents: their size, share and popularity mean nothing
            for key in ("document_tokens", "document_share", "document_zipf"):
                raw.pop(key)
        scenario, explanations = {}, []
        for key in WORKLOAD_KEYS:
            if key not in raw:
                continue
            used, why = clamp_to_form(key, raw[key])
            if key in ("input_tokens", "output_tokens"):
                used = round(used)
                used, why = clamp_to_form(key, used)
            if isinstance(used, float) and used:
                used = float(f"{used:.4g}")    # four significant digits: a readable link
            scenario[key] = used
            if why:
                explanations.append({"key": key, "fitted": raw[key], "used": used, "text": why})
        if not follow:
            explanations.append({"key": "think_time_s", "fitted": None, "used": scenario["think_time_s"],
                                 "text": "Think time: no request continues an earlier one, so the "
                                         "trace says nothing about think times; 1 s is used (one-turn "
                                         "conversations never wait, so any value gives the same hit rate)."})
        if scenario["turns_dist"] == "fixed" and not float(scenario["turns"]).is_integer():
            scenario["turns"] = float(round(scenario["turns"]))
        known, pending = model_scenario(scenario)
        link = encode_fragment({k: v for k, v in known.items()
                                if FIELD_BY_KEY[k].default != v})
        diagnostics = {
            "format": "bailian" if self.bailian else "mooncake",
            "requests": self.requests,
            "duration_s": duration_s,
            "request_rate": self.requests / span_s,
            "mean_input_length": self.sum_input / self.requests,
            "mean_output_length": self.sum_output / self.requests,
            "mean_new_input_tokens": new_tokens / self.requests,
            "new_tokens_cv": length_cv,
            "conversations": conversations,
            "conversation_starts_seen": roots,
            "split_first_turns": {k: split[k] for k in ("orphans", "continue_share",
                                                        "explained", "false_starts")},
            "follow_ups": follow,
            "max_turns": max(st.turns),
            "system_prompts": [{"blocks": p.blocks, "conversations": p.conversations} for p in sps[:20]],
            "conversations_without_shared_system_prompt": st.uncovered_roots,
            "documents_top": [{"blocks": d.blocks, "conversations": d.conversations}
                              for d in sorted(docs, key=lambda d: -d.conversations)[:20]],
            "document_runs": len(docs),
            "document_uses": sum(doc_counts),
            "document_pairs_seen_once": once_seen,
            "conversations_merged": merged,
            "document_share_of_conversations": sum(doc_counts) / conversations,
            "think_time": think,
            "think_time_s_quantiles": self._quantiles(gaps),
            "raw": raw,
            "not_in_this_version": pending,
            "reuses": self.reuses,
            "reuse_fraction_within_10s": self.reuse_within_10s / self.reuses if self.reuses else None,
            "reuse_fraction_within_600s": self.reuse_within_600s / self.reuses if self.reuses else None,
            "reuse_time_s_quantiles": self._hist_quantiles(),
            "conversation_ids": self.bailian,
            "note": ("gaps between turns include the previous turn's generation time"
                     + ("" if self.bailian else
                        "; conversations, system prompts and documents are inferred from "
                        "shared block ids (no conversation ids in this format)")),
        }
        if self.bailian:
            diagnostics["follow_ups_without_parent_in_trace"] = self.missing_parents
        # the drift test's tokens of each request's leading blocks seen before (anywhere earlier
        # in the trace: the inference counts them as it reads)
        read = self.inference
        seen_tokens = [min(k * self.block_size, n) for k, n in zip(read.seen_blocks, read.inputs)]
        diagnostics["drift"] = drift_test(read.t, read.inputs, seen_tokens, known, duration_s)
        return {**scenario, "explanations": explanations, "link": link, "diagnostics": diagnostics}


def split_first_turns(st, outputs, roots, block_size: int) -> dict:
    """The conversations the inference split in two, counted in aggregate (docs/model.md §10.6;
    ``roots``: each conversation's first request): a first request with no whole block of its
    own (``st.orphan_of_root``, seen as a one-request conversation) cannot be linked to its next
    turn, which then shows as a conversation start. Such a first request continues with the
    share ``c`` of the other conversation starts that are seen to continue, so ``F = c * O`` of
    the ``O`` orphans are false starts.
    Returns ``{"orphans": O, "continue_share": c, "false_starts": F,
    "system_prompt": [F per system prompt], "document": [F per document], "tokens": the new
    tokens counted twice, "mode": (turn count, conversations) of the corrected mode,
    "explained": orphans short first messages explain, "document_orphans": [O per document],
    "false_start_probability": c (0 when not corrected), "merge": (a, g) for
    :func:`merged_counts` (the share of first messages shorter than a block, the chance a
    later start is linked to such a first request), "message_mean": the messages' mean
    tokens}``; F, a and g are 0 unless short first messages explain at least
    :data:`EXPLAINED_ORPHANS` of the orphans;
    ``outputs[i]`` is request ``i``'s answer length."""
    turns, orphan_flags = st.turns, st.orphan_of_root
    orphan = [o and n == 1 for o, n in zip(orphan_flags, turns)]
    others = [n for n, o in zip(turns, orphan) if not o]
    c = sum(n >= 2 for n in others) / len(others) if others else 0.0
    sp_f = [0.0] * len(st.system_prompts)
    doc_f = [0.0] * len(st.documents)
    doc_o = [0] * len(st.documents)
    orphans, tokens = 0, 0.0
    for conv, o in enumerate(orphan):
        if not o:
            continue
        orphans += 1
        s, d, i = st.system_prompt_of_root[conv], st.document_of_root[conv], roots[conv]
        if s >= 0:
            sp_f[s] += c
        if d >= 0:
            doc_f[d] += c
            doc_o[d] += 1
        # a false start's new tokens hold the orphan's own new tokens and its answer again
        tokens += c * (st.new_tokens[i] + outputs[i])
    # orphans a first message shorter than a block explains: the new tokens of the other
    # first requests past one block, taken as exponential (median / ln 2 its mean), give the
    # share q below one block; other orphans (a shared prompt alone) are not corrected
    excess = sorted(st.new_tokens[i] - block_size for i, o in zip(roots, orphan)
                    if not o and st.new_tokens[i] >= block_size)
    short, merge_share, mean = 0.0, 0.0, None
    if excess and excess[len(excess) // 2] > 0:
        q = 1 - math.exp(-block_size * math.log(2) / excess[len(excess) // 2])
        expected = (q / (1 - q) * max(0.0, len(others) - c * orphans) if q < 1
                    else float(orphans))
        # merges (docs/model.md §10.6): a later start of a pair whose first use was an orphan
        # is linked to it as its next turn when its new tokens reach the orphan's and half
        # its answer (inference.ANSWER_SHARE). Messages' mean from the next turns' new tokens
        # (a first request's also hold the documents of pairs used once), exponential.
        follow = sorted(n for n, p in zip(st.new_tokens, st.parent) if p >= 0)
        if follow and follow[len(follow) // 2] > 0:
            mean = follow[len(follow) // 2] / math.log(2)
            short = 1 - math.exp(-block_size / mean)
            shares = [math.exp(-(st.new_tokens[i] + ANSWER_SHARE * outputs[i]) / mean)
                      for i, o in zip(roots, orphan) if o]
            merge_share = min(0.99, sum(shares) / len(shares)) if shares else 0.0
    else:
        expected = float(orphans)
    # corrected only where short first messages explain most orphans (EXPLAINED_ORPHANS);
    # elsewhere (long first turns, Mooncake traces) the orphans are left as conversations
    scale = 1.0 if orphans and expected >= EXPLAINED_ORPHANS * orphans else 0.0
    false_starts = c * orphans * scale
    sp_f = [f * scale for f in sp_f]
    doc_f = [f * scale for f in doc_f]
    tokens *= scale
    # turn counts: the false starts leave the one-request counts; each continued a
    # conversation seen one request short, the mode test takes them from the count below
    hist: dict = {}
    below: dict = {}
    for n, o in zip(turns, orphan):
        hist[n] = hist.get(n, 0) + 1
        if not o:
            below[n] = below.get(n, 0) + 1
    hist[1] = hist.get(1, 0) - false_starts
    best = max(((n, h + (min(false_starts, below.get(n - 1, 0)) if n > 1 else 0))
                for n, h in hist.items()), key=lambda kv: (kv[1], -kv[0]))
    return {"orphans": orphans, "continue_share": c, "false_starts": false_starts,
            "system_prompt": sp_f, "document": doc_f, "document_orphans": doc_o,
            "false_start_probability": c * scale, "merge": (short * scale, merge_share * scale),
            "message_mean": mean if scale else None,
            "tokens": tokens, "mode": best, "explained": expected,
            "orphan_of_conversation": orphan if scale else [False] * len(orphan)}


def fit_scenario(requests: Iterable, block_size: int, fit_think: str = "auto") -> dict:
    """Fit a scenario to a trace in one call (see :class:`ScenarioFitter`)."""
    fitter = ScenarioFitter(block_size, fit_think)
    fitter.feed(requests)
    return fitter.result()


def fit_report(fit: dict) -> list:
    """The fit in plain sentences, for the CLI and the lab: the fitted keys, every value
    kept within the form's limits, the keys this version cannot use, and the share link."""
    d = fit["diagnostics"]
    lines = [f"{d['conversations']:,} conversations in {d['requests']:,} requests over "
             f"{d['duration_s']:,.0f} s"]
    shown = []
    for key in WORKLOAD_KEYS:
        if key in fit:
            v = fit[key]
            shown.append(f"{key}={v:.4g}" if isinstance(v, float) else
                         f"{key}={','.join(f'{x:g}' for x in v)}" if isinstance(v, (tuple, list)) else f"{key}={v}")
    lines.append("Fitted: " + " ".join(shown))
    lines += [e["text"] for e in fit["explanations"]]
    warning = drift_warning(fit)
    if warning:
        lines.append(warning)
    if d["not_in_this_version"]:
        lines.append("Not used by this version's model (fitted, left out of the link): "
                     + ", ".join(d["not_in_this_version"]))
    lines.append("Share link: #" + fit["link"])
    return lines


#: The drift test (docs/model.md §12.5) cuts a trace into this many equal spans of time.
DRIFT_SEGMENTS = 4
#: A trace is flagged as drifting when its spans' departures from the stationary model's
#: ceiling spread over at least this many points (docs/validation.md §7.3).
DRIFT_POINTS = 20.0
#: Spans with fewer requests than this leave the trace untested.
DRIFT_MIN_REQUESTS = 25


def drift_test(arrivals, prompt_tokens, seen_tokens, scenario: dict, duration_s: float) -> dict | None:
    """Does the trace drift over time, i.e. is a stationary model expected to miss it?
    (docs/model.md §12.5, docs/validation.md §7.3)

    The trace is cut into :data:`DRIFT_SEGMENTS` equal spans ``[a, b]`` of its duration. In
    each, the share of prompt tokens whose leading blocks were seen before (``seen_tokens``
    over ``prompt_tokens``, per request arriving at ``arrivals``: an infinite cache's hit
    rate, counted as the trace goes) is set against the ceiling the fitted stationary model
    gives for the same span from an empty cache (``scenario``, the keys the model takes; the
    window term with ``window_s = b``, ``observed_from_s = a``). A stationary trace departs
    from its fit by a roughly constant fit error; a trace whose reuse rises or falls over
    time departs more and more. Returns ``{"segments": [{"from_s", "to_s", "requests",
    "seen_share", "model_ceiling", "departure"}], "spread_points", "threshold_points",
    "drifts"}`` (shares as fractions, the spread of the departures in points), or None when
    a span has fewer than :data:`DRIFT_MIN_REQUESTS` requests or the model cannot run the
    fitted scenario."""
    if duration_s <= 0 or not arrivals:
        return None
    k = DRIFT_SEGMENTS
    t0 = arrivals[0]
    counts = [[0, 0, 0] for _ in range(k)]     # requests, prompt tokens, seen tokens
    for t, p, s in zip(arrivals, prompt_tokens, seen_tokens):
        c = counts[min(k - 1, int((t - t0) / duration_s * k))]
        c[0] += 1
        c[1] += p
        c[2] += s
    if any(n < DRIFT_MIN_REQUESTS or p <= 0 for n, p, _ in counts):
        return None
    view = Scenario.from_dict(replay_view(scenario))
    segments = []
    for i, (n, p, s) in enumerate(counts):
        a, b = i * duration_s / k, (i + 1) * duration_s / k
        try:
            ceiling = analyze(view, answers_cached=False, window_s=b,
                              observed_from_s=a).max_token_hit_rate
        except ScenarioError:
            return None
        segments.append({"from_s": a, "to_s": b, "requests": n, "seen_share": s / p,
                         "model_ceiling": ceiling, "departure": s / p - ceiling})
    departures = [g["departure"] for g in segments]
    spread = 100 * (max(departures) - min(departures))
    return {"segments": segments, "spread_points": spread, "threshold_points": DRIFT_POINTS,
            "drifts": spread >= DRIFT_POINTS}


def drift_warning(fit: dict) -> str | None:
    """The drift test's warning in words (None when the trace does not drift or was not
    tested), for the CLI and the lab."""
    drift = fit.get("diagnostics", {}).get("drift")
    if not drift or not drift["drifts"]:
        return None
    seg = drift["segments"]
    seen = " / ".join(f"{100 * g['seen_share']:.0f}" for g in seg)
    model = " / ".join(f"{100 * g['model_ceiling']:.0f}" for g in seg)
    return (f"This trace drifts over time: the share of its prompt tokens already seen before "
            f"is {seen} % in its {len(seg)} equal spans of time, where a stationary workload "
            f"with the fitted parameters gives {model} % from the same empty cache (the "
            f"departures spread over {drift['spread_points']:.0f} points; the test flags "
            f"{drift['threshold_points']:.0f} or more). The fitted scenario, and its share "
            f"link, describe the trace's average, not its end: a stationary model is expected "
            f"to be off on such a trace, and by more on a part of it, most on its later part "
            f"when its reuse rises (replay --warmup; docs/validation.md §7.3).")


#: A replay's requests take no time: no running request holds KV the histories cannot use.
REPLAY_SERVICE = {"ttft_s": 1e-6, "decode_tokens_per_s": 1e6}


def replay_view(scenario: dict) -> dict:
    """The scenario as a trace replay sees it (docs/model.md §10.6), for comparing the model
    with a replay: a replayed request takes no time (no KV held by running requests,
    :data:`REPLAY_SERVICE`). A trace's block ids cover prompts only, so no turn can reuse the
    KV of the previous turn's answer: its tokens come back as new prompt tokens of the next
    turn. The model takes that as ``answers_cached=False`` (:func:`analytic_token_hit_rate`;
    the answers stay in the scenario, so the prompts keep their lengths). The fitted scenario
    itself, and its link, keep the service times of a real engine, which caches answers."""
    out = dict(scenario)
    out.update(REPLAY_SERVICE)
    return out


def replay_window(fitted: dict, warmup: float = 0.0) -> dict:
    """The keywords that make the analytic model see a replay's window (docs/model.md §12.5):
    ``window_s``, the fitted trace's duration, and ``observed_from_s``, where its counted
    requests start (``warmup`` times the duration for ``replay --warmup``: arrivals at a
    steady rate). A replay starts from an empty cache, so each shared document's and system
    prompt's first use in the window is a miss, which the steady state counts as a hit.
    Empty (the steady state) for a trace with no duration."""
    duration = float(fitted.get("diagnostics", {}).get("duration_s") or 0.0)
    if duration <= 0:
        return {}
    return {"window_s": duration, "observed_from_s": warmup * duration}


#: What the comparison of a fitted model with a replay models, for the CLI and the lab.
REPLAY_WINDOW_NOTE = ("the model is run as the replay sees the trace: its window from an "
                      "empty cache (first uses of shared content miss), prompts only cached, "
                      "requests taking no time; the share link is the steady state")


def compare_fit_to_replay(fitted: dict, replay_token_hit_rate: float, analytic,
                          capacity_tokens: float | None = None, warmup: float = 0.0,
                          cold_window: bool = True) -> dict:
    """Run an analytic model on a fitted scenario and report its gap to a replay.

    ``analytic`` takes a scenario dict (the keys :func:`model_scenario` keeps, as
    :func:`replay_view` sets them, ``kv_cache_tokens`` set to ``capacity_tokens`` when given)
    and the keyword ``answers_cached`` (False here: a replay caches prompts only), with
    ``cold_window`` also :func:`replay_window`'s ``window_s`` and ``observed_from_s`` (the
    trace's duration and, with ``warmup``, the replay's warm-up fraction, where counting
    starts), and returns the predicted token hit rate (0-1). Returns
    ``{"analytic_token_hit_rate", "replay_token_hit_rate", "gap", "capacity_tokens"}`` with
    ``gap = analytic - replay`` (a fraction), and ``window_s``/``observed_from_s`` when the
    model saw the window.
    """
    scenario = replay_view(model_scenario(fitted)[0])
    if capacity_tokens is not None:
        scenario["kv_cache_tokens"] = int(capacity_tokens)
    window = replay_window(fitted, warmup) if cold_window else {}
    predicted = float(analytic(scenario, answers_cached=False, **window))
    return {"analytic_token_hit_rate": predicted,
            "replay_token_hit_rate": replay_token_hit_rate,
            "gap": predicted - replay_token_hit_rate,
            "capacity_tokens": capacity_tokens, **window}


def analytic_token_hit_rate(scenario: dict, answers_cached: bool = True, window_s: float | None = None,
                            observed_from_s: float = 0.0) -> float:
    """The project's analytic model (docs/model.md §5) on a scenario dict; ``answers_cached``
    False for a trace replay's view (:func:`replay_view`), ``window_s``/``observed_from_s`` a
    replay's window from a cold cache (:func:`replay_window`). Raises ScenarioError for an
    invalid scenario."""
    return analyze(Scenario.from_dict(scenario), answers_cached=answers_cached, window_s=window_s,
                   observed_from_s=observed_from_s).token_hit_rate
