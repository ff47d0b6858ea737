"""Whole blocks of random lengths (docs/model.md §13): the tokens an engine can reuse of a
history whose length is a sum of exponential lengths.

Only whole blocks of ``B`` tokens are cached, so a history of ``x`` tokens leaves
``B * floor(x / B) = x - (x mod B)`` reusable tokens. With fixed lengths the remainder is
known; with random ones the model needs its mean ``E[(s + Y) mod B]`` for ``Y`` a sum of
independent exponential lengths of means ``m_i`` and a fixed offset ``s``:

- one length (closed form): ``E[(s + L) mod B] = s + m - B e^((s-B)/m) / (1 - e^(-B/m))`` for
  ``0 <= s < B`` (``E[floor((s + L)/B)] = sum_k P(L >= kB - s)``, a geometric series);
- several, by whichever of two exact series converges faster (they are each other's
  Poisson-summation duals):

  - the block boundaries: ``E = s + E[Y] - B sum_k P(Y >= kB - s)``, where only the
    boundaries within the history's bulk need an exact tail (:func:`tail_probability`:
    Erlang tails, or a negative-binomial mixture of them for two means), the others being
    taken as crossed or not with Bernstein or Chernoff bounds adding to at most
    :data:`_DIRECT_TOL_TOKENS` (:func:`direct_plan`). A handful of terms while the history's
    spread is short of a block, and none at all when no boundary is within its bulk;
  - the sawtooth's Fourier series ``x mod B = B/2 - (B/pi) sum_n sin(2 pi n x/B)/n`` taken in
    expectation, with the characteristic function of ``Y``:
    ``E = B/2 - (B/pi) sum_n Im(e^(i t_n s) prod_i 1/(1 - i t_n m_i)) / n``, ``t_n = 2 pi n/B``.
    Every factor has modulus below 1, so the series converges at least like ``1/n^3`` and the
    remainder tends to ``B/2`` as lengths are added; few terms once the spread is a block or
    more, but 100,000 and more for the first turns of 1- to 3-token lengths in 4,096-token
    blocks (its first turn's series stops at the cap about 0.03 tokens short).

  :func:`grouped_remainder` picks one per history by their cost; :func:`history_remainders`
  does every history of a conversation at once, the series' histories sharing its terms.

With geometric turns the model needs ``sum_j r^j E[g(s + Y_j)]`` only, ``Y_j`` the lengths of
j turns: a mixture of two exponential lengths (:func:`geometric_compound`), so closed forms
however slowly the remainder settles (docs/model.md §13).

Lengths are continuous here (a trace's are whole tokens: the mean remainder is then about
half a token lower, ``(B-1)/2`` against ``B/2`` for a uniform remainder).

A request hits at all only if its history holds at least one whole block, so the request
hit rate needs ``P(s + Y_j >= B)`` (:func:`reach_probabilities`, exact tails) and, with fixed
turns, their sum over the turns (:func:`reach_count`: exact tails only for the turns near the
crossing, the rest from the renewal count's closed form, :func:`renewal_count`).
"""

from __future__ import annotations

import cmath
import functools
import math

#: The series stops when a term's bound is below this many tokens.
_TOL_TOKENS = 1e-9
_MAX_TERMS = 100_000


def exponential_remainder(offset: float, mean: float, B: int) -> float:
    """``E[(offset + L) mod B]`` for ``L`` exponential of mean ``mean`` (tokens), closed form."""
    s = offset % B
    if mean <= 0:
        return s
    q = math.exp(-B / mean)
    return s + mean - B * math.exp((s - B) / mean) / -math.expm1(-B / mean) if q < 1 else s


def sum_remainder(offset: float, means: tuple[float, ...], B: int) -> float:
    """``E[(offset + Y) mod B]`` for ``Y`` the sum of independent exponential lengths of
    ``means`` (tokens; zeros are fixed lengths of 0), by the Fourier series (module docstring)."""
    counts: dict[float, int] = {}
    for m in means:
        if m > 0:
            counts[m] = counts.get(m, 0) + 1
    return grouped_remainder(offset, tuple(counts.items()), B)


@functools.lru_cache(maxsize=4096)
def grouped_remainder(offset: float, groups: tuple[tuple[float, int], ...], B: int) -> float:
    """:func:`sum_remainder` of ``Y`` the sum of ``count`` exponential lengths of ``mean`` for
    each ``(mean, count)`` of ``groups`` (an Erlang per group), by whichever of two exact
    series costs less (:func:`direct_plan`): the sum over block boundaries
    (:func:`direct_remainder`), fast when ``Y``'s spread is short of a block, or the Fourier
    series (:func:`fourier_remainder`), fast when it is not. Both are within about
    ``1e-9`` tokens (their stated truncation bounds)."""
    merged: dict[float, int] = {}
    for m, k in groups:
        if m > 0 and k > 0:
            merged[m] = merged.get(m, 0) + k
    groups = tuple(merged.items())
    s = offset % B
    if not groups:
        return s
    if len(groups) == 1 and groups[0][1] == 1:
        return exponential_remainder(s, groups[0][0], B)
    plan = _cheaper_plan(s, groups, B, _FOURIER_COST)
    return fourier_remainder(s, groups, B) if plan is None else direct_remainder(s, groups, B, plan)


def _cheaper_plan(s: float, groups, B: int, fourier_cost: float) -> tuple[int, int, int] | None:
    """:func:`direct_plan` if the direct sum costs less than the Fourier series (its terms,
    :func:`fourier_terms`, each ``fourier_cost`` loop steps), else None."""
    if _fourier_within(groups, B, _FEW_TERMS):
        return None
    plan = direct_plan(s, groups, B)
    if plan is None or _fourier_within(groups, B, max(1, int(plan[2] / fourier_cost))):
        return None
    return plan


@functools.lru_cache(maxsize=64)
def history_remainders(offset: float, m1: float, m2: float, B: int, J: int,
                       answers_cached: bool = True) -> tuple[float, ...]:
    """``E[(offset + Y_j) mod B]`` for j = 1..J (``Y_j`` as in :func:`reach_probabilities`):
    :func:`grouped_remainder` of every history of a conversation at once. The histories
    whose Fourier series is the cheaper sum share its terms: term n of history j is
    ``e^(i t_n s) z_n^j`` (over the last answer's factor without it), ``z_n`` one turn's
    factor, so each costs one complex product (about :data:`_BATCH_FOURIER_COST` direct
    steps) instead of powers and logarithms. Each history's series stops where
    :func:`fourier_remainder`'s does."""
    s = offset % B
    out = [0.0] * (J + 1)
    fourier_js = []
    few_from = J + 1        # the series' terms' bound falls with j: few terms from here on
    tol = _DIRECT_TOL_TOKENS / (2 * B)
    for j in range(1, J + 1):
        if j < few_from:
            # the common case first, inline: no block boundary within the history's bulk
            # (both nearest boundaries skipped by :func:`_skipped_beyond`'s Bernstein bounds)
            k2 = j if answers_cached else j - 1
            mean, var = j * m1 + k2 * m2, j * m1 * m1 + k2 * m2 * m2
            if var > 0 and j + k2 > 1:
                top = max(m1, m2 if k2 else 0.0)
                k_mid = max(1, math.ceil((mean + s) / B))
                t_up, t_down = k_mid * B - s - mean, mean - (k_mid - 1) * B + s
                if t_up > 0 and math.exp(-t_up * t_up / (2 * (var + top * t_up))) < tol * -math.expm1(
                        -B * t_up * (2 * var + top * t_up) / (2 * (var + top * t_up) ** 2)) and (
                        k_mid == 1 or (t_down > 0 and math.exp(-t_down * t_down / (2 * var))
                                       < tol * -math.expm1(-B * t_down / var))):
                    out[j] = s + mean - B * (k_mid - 1)
                    continue
        groups = _turn_groups(m1, m2, j, answers_cached)
        if j >= few_from:
            fourier_js.append(j)
        elif not groups:
            out[j] = s
        elif len(groups) == 1 and groups[0][1] == 1:
            out[j] = exponential_remainder(s, groups[0][0], B)
        elif _fourier_within(groups, B, _FEW_TERMS):
            few_from = j
            fourier_js.append(j)
        else:
            plan = _cheaper_plan(s, groups, B, _BATCH_FOURIER_COST)
            if plan is None:
                fourier_js.append(j)
            else:
                out[j] = direct_remainder(s, groups, B, plan)
    if fourier_js:
        sums = _batch_fourier(s, m1, m2, B, fourier_js, answers_cached)
        for j, total in zip(fourier_js, sums):
            out[j] = B / 2 - B / math.pi * total
    return tuple(out[1:])


def _batch_fourier(s: float, m1: float, m2: float, B: int, js: list[int], answers_cached: bool) -> list[float]:
    """``sum_n Im(phi_j(t_n)) / n`` for each j of ``js`` (increasing), each to the first term
    whose bound ``(B/pi) |phi_j(t_n)| / n`` is below :data:`_TOL_TOKENS`. The bound falls
    with j, so the histories still summing at term n are a prefix of ``js``."""
    totals = [0.0] * len(js)
    active = len(js)
    scale = B / math.pi
    for n in range(1, _MAX_TERMS + 1):
        if not active:
            break
        t = 2 * math.pi * n / B
        f1 = 1 / complex(1.0, -t * m1) if m1 > 0 else 1.0
        f2 = 1 / complex(1.0, -t * m2) if m2 > 0 else 1.0
        z = f1 * f2
        base = cmath.exp(complex(0.0, t * s)) * (1.0 if answers_cached else 1 / f2 if m2 > 0 else 1.0)
        w = base * z ** js[0]
        j_prev = js[0]
        cut = active
        for i in range(active):
            j = js[i]
            if j != j_prev:
                w *= z if j == j_prev + 1 else z ** (j - j_prev)
                j_prev = j
            totals[i] += w.imag / n
            if cut == active and scale * abs(w) / n < _TOL_TOKENS:
                cut = i
        # every history from ``cut`` on has a term below the bound: it stops after this term
        active = cut
    return totals


def fourier_remainder(offset: float, groups: tuple[tuple[float, int], ...], B: int) -> float:
    """``E[(offset + Y) mod B]`` by the sawtooth's Fourier series (module docstring): each
    term costs one power per group; stops at the first term whose bound is below
    :data:`_TOL_TOKENS` (at most :data:`_MAX_TERMS` terms)."""
    groups = tuple((m, k) for m, k in groups if m > 0 and k > 0)
    s = offset % B
    if not groups:
        return s
    total = 0.0
    tables = [(_log_factors(m, B), m, k) for m, k in groups]
    for n in range(1, _MAX_TERMS + 1):
        t = 2 * math.pi * n / B
        log_phi = complex(0.0, t * s)
        for table, m, k in tables:
            if n >= len(table) and n < _LOG_TABLE_MAX:
                table.extend(cmath.log(complex(1.0, -2 * math.pi * i / B * m))
                             for i in range(len(table), min(_LOG_TABLE_MAX, 2 * n)))
            log_phi -= k * (table[n] if n < len(table) else cmath.log(complex(1.0, -t * m)))
        phi = cmath.exp(log_phi)          # |phi| = prod |1 - i t m|^-k: the term's bound
        total += phi.imag / n
        if B / math.pi * math.exp(log_phi.real) / n < _TOL_TOKENS:
            break
    return B / 2 - B / math.pi * total


#: Entries of one :func:`_log_factors` table at most.
_LOG_TABLE_MAX = 1 << 14


@functools.lru_cache(maxsize=64)
def _log_factors(mean: float, B: int) -> list[complex]:
    """``log(1 - i t_n mean)``, ``t_n = 2 pi n / B``, for n = 0, 1, ... (extended in place by
    :func:`fourier_remainder` as it needs more; shared by every history of those lengths)."""
    return [0j]


def _fourier_within(groups, B: int, n: int) -> bool:
    """Whether :func:`fourier_remainder` stops within ``n`` terms (its n-th term's bound is
    below :data:`_TOL_TOKENS`; the bounds fall with n and with every length added)."""
    t = 2 * math.pi * n / B
    log_bound = -sum(k * 0.5 * math.log1p((t * m) ** 2) for m, k in groups)
    return B / math.pi * math.exp(log_bound) / n < _TOL_TOKENS


def fourier_terms(offset: float, groups: tuple[tuple[float, int], ...], B: int, cap: int = _MAX_TERMS) -> int:
    """How many terms :func:`fourier_remainder` sums (its stopping rule, found by doubling and
    bisection on the terms' bound, which decreases with ``n``), or ``cap`` if more."""
    def small(n: int) -> bool:
        return _fourier_within(groups, B, n)

    cap = max(1, min(cap, _MAX_TERMS))
    if not small(cap):
        return cap
    hi = 1
    while not small(hi):
        if hi >= cap:
            return cap
        hi = min(cap, 2 * hi)
    lo = hi // 2                          # small(lo) is False (or lo = 0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if small(mid) else (mid, hi)
    return hi


#: The direct sum's truncation (tokens): the boundaries it takes as certainly crossed or
#: never crossed have Chernoff bounds adding up to at most this.
_DIRECT_TOL_TOKENS = 1e-9
#: The Fourier series is taken without costing the direct sum when it needs fewer terms.
_FEW_TERMS = 32
#: The same, for a term of :func:`history_remainders`' shared series (one complex product).
_BATCH_FOURIER_COST = 1.5
#: Relative cost of one Fourier term against one step of the direct sum's loops (CPython).
_FOURIER_COST = 8
#: The direct sum is not tried when Y's standard deviation exceeds this many blocks (its
#: boundaries are then many, and the Fourier series needs a handful of terms).
_DIRECT_SPREAD_BLOCKS = 0.5
#: Pmf terms below this are dropped from the Poisson and negative-binomial sums.
_PMF_TINY = 1e-18


def _log_mgf(u: float, groups) -> float:
    """``log E[e^(uY)]`` for ``u < 1/max(mean)``."""
    return -sum(k * math.log1p(-u * m) for m, k in groups)


def _chernoff(x: float, groups) -> tuple[float, float]:
    """``(bound, u)``: ``P(Y >= x) <= bound`` for ``x > E[Y]`` (``u > 0``), ``P(Y <= x) <= bound``
    for ``x < E[Y]`` (``u < 0``), ``bound = e^(-ux) E[e^(uY)]``. Any ``u`` of the right sign
    (below ``1/max(mean)``) gives a valid bound; this one is the optimum for one group
    (``u = 1/m - k/x``), else the gamma distribution's of the same mean and variance,
    improved by one Newton step on the convex exponent when that stays in range."""
    mean = var = 0.0
    top = 0.0
    for m, k in groups:
        mean += m * k
        var += m * m * k
        top = max(top, m)
    if x <= 0 or x == mean:
        return 1.0, 0.0
    if len(groups) == 1:
        u = 1.0 / groups[0][0] - groups[0][1] / x
        return min(1.0, math.exp(-u * x + _log_mgf(u, groups))), u
    limit = 1.0 / top
    u = mean / var * (1 - mean / x)
    if u >= limit:
        u = limit * (1 - mean / x)
    d1, d2 = -x, 0.0
    for m, k in groups:
        r = m / (1 - u * m)
        d1 += k * r
        d2 += k * r * r
    step = u - d1 / d2
    best = -u * x + _log_mgf(u, groups)
    if (step > 0) == (u > 0) and step < limit:
        other = -step * x + _log_mgf(step, groups)
        if other < best:
            best, u = other, step
    return min(1.0, math.exp(best)), u


def _skipped_beyond(x: float, mean: float, var: float, top: float, B: int, groups) -> float:
    """A bound on ``sum_{i>=0} P(Y >= x + iB)`` (``x > E[Y]``) or ``sum_{i>=0} P(Y <= x - iB)``
    (``x < E[Y]``). First Bernstein's, cheap: a sum of exponential lengths is sub-gamma on the
    right (variance ``var``, scale ``top``, the largest mean) and sub-Gaussian on the left
    (Boucheron, Lugosi & Massart, *Concentration Inequalities*, 2013, §2.4), so
    ``P(Y - E[Y] >= t) <= e^(-f(t))``, ``f(t) = t^2 / (2 (var + top t))``, and
    ``P(E[Y] - Y >= t) <= e^(-t^2 / (2 var))``; ``f`` is convex, so the boundaries further
    out add at most a geometric series of ratio ``e^(-B f'(t))``. Where that is not small,
    the Chernoff bound (:func:`_chernoff`; with its ``u``, ratio ``e^(-|u| B)``)."""
    t = abs(x - mean)
    if x > mean:
        f, slope = t * t / (2 * (var + top * t)), t * (2 * var + top * t) / (2 * (var + top * t) ** 2)
    else:
        f, slope = t * t / (2 * var), t / var
    bound = math.exp(-f) / -math.expm1(-B * slope)
    if bound < _DIRECT_TOL_TOKENS / (2 * B):
        return bound
    chernoff, u = _chernoff(x, groups)
    return chernoff / -math.expm1(-abs(u) * B) if u else math.inf


def direct_plan(s: float, groups, B: int) -> tuple[int, int, int] | None:
    """``(k_lo, k_hi, cost)`` for :func:`direct_remainder`, or None when it does not apply
    (more than two groups, or a spread over many blocks): boundaries ``k < k_lo`` are taken
    as crossed, ``k > k_hi`` as never crossed, the skipped probabilities' bounds
    (:func:`_skipped_beyond`) adding to at most :data:`_DIRECT_TOL_TOKENS` / B each side;
    ``cost`` estimates its loop steps."""
    if len(groups) > 2:
        return None
    mean = var = top = 0.0
    for m, k in groups:
        mean += m * k
        var += m * m * k
        top = max(top, m)
    if var > (_DIRECT_SPREAD_BLOCKS * B) ** 2:
        return None
    tol = _DIRECT_TOL_TOKENS / (2 * B)
    k_mid = max(1, math.ceil((mean + s) / B))           # the first boundary at or above the mean
    k_hi = k_mid - 1
    while (k_hi + 1) * B - s <= mean or _skipped_beyond((k_hi + 1) * B - s, mean, var, top, B, groups) >= tol:
        k_hi += 1
    k_lo = k_mid
    while k_lo > 1 and ((k_lo - 1) * B - s >= mean
                        or _skipped_beyond((k_lo - 1) * B - s, mean, var, top, B, groups) >= tol):
        k_lo -= 1
    if k_hi < k_lo:
        return k_lo, k_hi, 0
    return k_lo, k_hi, (k_hi - k_lo + 1) * _tail_cost(k_hi * B - s, groups)


def _tail_cost(x: float, groups) -> int:
    """About how many loop steps :func:`tail_probability` takes at ``x``."""
    m1 = min(m for m, _ in groups)
    width = math.sqrt(max(x, 0.0) / m1)
    if len(groups) == 2 and groups[0][0] != groups[1][0]:
        return int(2 * _POISSON_SPAN * width + 10 * math.sqrt(max(x, 0.0) / max(m for m, _ in groups)) + 20)
    return int(_POISSON_SPAN * width + 10)


def direct_remainder(s: float, groups, B: int, plan: tuple[int, int, int] | None = None) -> float:
    """``E[(s + Y) mod B] = s + E[Y] - B sum_k P(Y >= kB - s)`` (``0 <= s < B``), the sum over
    the block boundaries that matter (:func:`direct_plan`), each tail exact
    (:func:`tail_probability`)."""
    k_lo, k_hi, _ = plan or direct_plan(s, groups, B)
    crossings = float(k_lo - 1)
    for k in range(k_lo, k_hi + 1):
        crossings += tail_probability(k * B - s, groups)
    return s + sum(m * k for m, k in groups) - B * crossings


def _poisson_cdf(n: int, lam: float) -> float:
    """``P(Pois(lam) <= n)``, summing the pmf from ``n`` away from the mode until negligible."""
    if n < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    log_p = n * math.log(lam) - lam - math.lgamma(n + 1)
    if n < lam:
        term = math.exp(log_p)
        total, i = term, n
        while i > 0 and term > _PMF_TINY * total:
            term *= i / lam
            i -= 1
            total += term
        return total
    term = math.exp(log_p) * lam / (n + 1)
    total, i = 0.0, n + 1
    while term > _PMF_TINY:
        total += term
        i += 1
        term *= lam / i
    return 1.0 - total


#: The Poisson CDF table of :func:`_poisson_table` spans this many standard deviations
#: either side of the mean (beyond, the CDF is within 1e-18 of 0 or 1; checked by the table's
#: end values, computed exactly).
_POISSON_SPAN = 10.0


@functools.lru_cache(maxsize=512)
def _poisson_table(lam: float) -> tuple[int, tuple[float, ...]]:
    """``(n_lo, G)``: ``G[i] = P(Pois(lam) <= n_lo + i)`` over the CDF's rise, shared by every
    tail at one boundary (the turns' histories differ only in how many lengths they hold)."""
    half = _POISSON_SPAN * math.sqrt(lam) + 2
    n_lo, n_hi = max(0, int(lam - half)), int(lam + half) + 1
    cdf = _poisson_cdf(n_lo, lam)
    pmf = math.exp((n_lo + 1) * math.log(lam) - lam - math.lgamma(n_lo + 2))
    out = [cdf]
    for n in range(n_lo + 1, n_hi + 1):
        cdf += pmf
        out.append(min(1.0, cdf))
        pmf *= lam / (n + 1)
    return n_lo, tuple(out)


def _binomial_cdf(c: int, n: int, p: float) -> float:
    """``P(Bin(n, p) <= c)``, summing the pmf from ``c`` away from the mode until negligible."""
    if c < 0:
        return 0.0
    if c >= n:
        return 1.0
    log_pmf = (math.lgamma(n + 1) - math.lgamma(c + 1) - math.lgamma(n - c + 1)
               + c * math.log(p) + (n - c) * math.log1p(-p))
    odds = p / (1 - p)
    term = math.exp(log_pmf)
    if c < n * p:
        total, i = term, c
        while i > 0 and term > _PMF_TINY * total:
            term *= i / ((n - i + 1) * odds)
            i -= 1
            total += term
        return total
    total, i = 0.0, c
    while i < n:
        term *= (n - i) / (i + 1) * odds
        i += 1
        total += term
        if term < _PMF_TINY:
            break
    return 1.0 - total


def tail_probability(x: float, groups) -> float:
    """``P(Y >= x)`` exactly (to about 1e-15) for ``Y`` one or two Erlang groups.

    One mean: the Erlang tail ``P(Pois(x/m) < k)``. Two means ``m1 < m2``: an exponential
    of mean ``m2`` is a geometric number of exponentials of mean ``m1``, so the Erlang of
    ``k2`` of them is ``k2 + M`` of mean ``m1``, ``M`` negative binomial (``k2`` successes
    of probability ``m1/m2``); ``P(Y >= x) = sum_f P(M = f) G(k1 + k2 + f - 1)``, ``G`` the
    CDF of ``Pois(x/m1)``: a mixture of positive terms (no cancellation). Summed where ``G``
    rises (:func:`_poisson_table`); where it is 1 the terms add to ``P(M >= f)``, a binomial
    CDF (:func:`_binomial_cdf`); below, ``G`` is under 1e-18."""
    if x <= 0:
        return 1.0
    means = {m for m, _ in groups}
    if len(means) == 1:
        return _poisson_cdf(sum(k for _, k in groups) - 1, x / groups[0][0])
    (m1, k1), (m2, k2) = sorted(groups)
    lam, p = x / m1, m1 / m2
    k0 = k1 + k2
    n_lo, table = _poisson_table(lam)
    f = max(0, n_lo - k0 + 1)                   # the first f whose G is in the table
    f_top = n_lo + len(table) - k0 + 1          # G(k0 + f - 1) = 1 from here on
    total = 0.0
    mode = int((k2 - 1) * (1 - p) / p) if k2 > 1 else 0
    # below this, M's pmf is negligible (ten standard deviations under its mode)
    f = max(f, mode - int(_POISSON_SPAN * math.sqrt(k2 * (1 - p)) / p))
    if f < f_top:
        log_w = (math.lgamma(k2 + f) - math.lgamma(f + 1) - math.lgamma(k2) + k2 * math.log(p)
                 + f * math.log1p(-p))
        w = math.exp(log_w)
        i = k0 + f - 1 - n_lo
        q = 1 - p
        while f < f_top:
            total += w * table[i]
            w *= (k2 + f) / (f + 1) * q
            f += 1
            i += 1
            if f > mode and w < _PMF_TINY:          # the rest of M's pmf is negligible
                return min(1.0, total)
    # P(M >= f) = P(fewer than k2 successes in the first k2 + f - 1 trials)
    return min(1.0, total + (_binomial_cdf(k2 - 1, k2 + f - 1, p) if f > 0 else 1.0))


def geometric_compound(m1: float, m2: float, r: float, answers_cached: bool = True) -> tuple[tuple[float, float], ...]:
    """``(weight, mean)`` pairs such that ``sum_{j>=1} r^j E[g(Y_j)] = sum weight E[g(X_mean)]``
    for every ``g``, ``X_mean`` exponential of that mean: ``Y_j`` the sum of j exponential
    lengths of mean ``m1 > 0`` and j of mean ``m2 >= 0`` (j - 1 when ``answers_cached`` is
    False), ``0 < r < 1``.

    The Laplace transform of the left side is ``r phi1 phi2^(1 or 0) / (1 - r phi1 phi2)``
    with ``phi_i(u) = 1/(1 + u m_i)``: ``N(u) / D(u)`` with ``D(u) = (1 + u m1)(1 + u m2) - r
    = m1 m2 (u + a)(u + b)``, real roots ``a, b > 0`` (its discriminant is ``(m1 - m2)^2 +
    4 m1 m2 r``), and ``N = r`` (``r (1 + u m2)`` without the last answer). Partial fractions
    make its measure ``alpha e^(-a y) + beta e^(-b y)``: two exponentials of means ``1/a``,
    ``1/b``, weights ``alpha/a``, ``beta/b`` (of either sign; they sum to ``r/(1-r)``). With
    ``m2 = 0`` one exponential: weight ``r/(1-r)``, mean ``m1/(1-r)`` (a geometric sum of
    exponentials is exponential)."""
    if m2 <= 0:
        return ((r / (1 - r), m1 / (1 - r)),)
    prod, total = m1 * m2, m1 + m2
    b = (total + math.sqrt((m1 - m2) ** 2 + 4 * prod * r)) / (2 * prod)
    a = (1 - r) / (prod * b)                       # a * b = (1 - r) / (m1 m2), without cancellation

    def numerator(u: float) -> float:
        return r if answers_cached else r * (1 - u * m2)

    alpha = numerator(a) / (prod * (b - a))        # residue at u = -a: N(-a) / (m1 m2 (b - a))
    beta = numerator(b) / (prod * (a - b))
    return ((alpha / a, 1 / a), (beta / b, 1 / b))


def erlang_tail(x: float, k: int, mean: float) -> float:
    """``P(A >= x)`` for ``A`` the sum of ``k`` exponential lengths of mean ``mean``:
    ``P(Pois(x/mean) < k)``, summed from its largest term (no overflow for long sums)."""
    if x <= 0 or k <= 0 or mean <= 0:
        return 1.0 if x <= 0 else 0.0
    return _poisson_cdf(k - 1, x / mean)


#: Past this probability a history is taken to reach the block for every later turn.
_REACHED = 1.0 - 1e-10
#: A reach probability whose Chernoff bound is below this is taken as 0 (or 1).
_REACH_TINY = 1e-15


def reach_probabilities(x: float, m1: float, m2: float, J: int, answers_cached: bool = True) -> tuple[float, ...]:
    """``P(A_j + C_j >= x)`` for j = 1..J (shorter once it reaches 1): ``A_j`` the sum of j
    exponential lengths of mean ``m1``, ``C_j`` of j of mean ``m2`` (j - 1 when
    ``answers_cached`` is False); zero means are fixed lengths of 0.

    Each is the exact tail of :func:`tail_probability` (an Erlang, or a negative-binomial mixture of
    Erlangs), except where a Chernoff bound puts it within :data:`_REACH_TINY` of 0 or 1
    (Simpson's rule on the convolution, used before, returned 1 at j = 441 for ``x`` = 4096,
    means 5 and 1, where the exact tail is 1.2e-35)."""
    if x <= 0:
        return (1.0,)
    out = []
    for j in range(1, J + 1):
        groups = _turn_groups(m1, m2, j, answers_cached)
        if not groups:
            out.append(0.0)
            continue
        bound, u = _chernoff(x, groups)
        out.append(0.0 if u > 0 and bound < _REACH_TINY else 1.0 if u < 0 and bound < _REACH_TINY
                   else tail_probability(x, groups))
        if out[-1] >= _REACHED:
            break
    return tuple(out)


def _turn_groups(m1: float, m2: float, j: int, answers_cached: bool) -> tuple[tuple[float, int], ...]:
    """The Erlang groups of a history of ``j`` turns (``j`` messages of mean ``m1``, ``j``
    answers of mean ``m2`` or ``j - 1`` without the last answer), equal means merged."""
    groups = tuple((m, k) for m, k in ((m1, j), (m2, j if answers_cached else j - 1)) if m > 0 and k > 0)
    if len(groups) == 2 and groups[0][0] == groups[1][0]:
        return ((m1, groups[0][1] + groups[1][1]),)
    return groups


def renewal_count(x: float, m1: float, m2: float, answers_cached: bool = True) -> float:
    """``sum_{j>=1} P(Y_j < x)`` (``Y_j`` as in :func:`reach_probabilities`), in closed form:
    its Laplace transform in ``x`` is ``phi1 phi2^(0 or 1) / (u (1 - phi1 phi2))`` with
    ``phi_i = 1/(1 + u m_i)``, i.e. ``(1 + u m2)^(0 or 1) / (u^2 (c + d u))``, ``c = m1 + m2``,
    ``d = m1 m2``: ``x/c - (d/c^2)(1 - e^(-x c/d))``, plus ``(m2/c)(1 - e^(-x c/d))`` without
    the last answer (``x/m1`` when ``m2 = 0``)."""
    if x <= 0:
        return 0.0
    if m2 <= 0:
        return x / m1
    c, d = m1 + m2, m1 * m2
    settle = -math.expm1(-x * c / d)
    return x / c - d / c ** 2 * settle + (0.0 if answers_cached else m2 / c * settle)


def reach_count(x: float, m1: float, m2: float, J: int, answers_cached: bool = True) -> float:
    """``sum_{j=1..J} P(Y_j >= x)`` (``Y_j`` as in :func:`reach_probabilities`, ``m1 > 0``):
    the expected number of a conversation's first J turns whose history reaches ``x``.

    Only the turns where ``P(Y_j >= x)`` is not within :data:`_REACH_TINY` of 0 or 1 (by
    Chernoff bounds, monotone in j: a binary search finds them) need an exact tail
    (:func:`tail_probability`). Summed directly over those up to J, or as ``J - sum_{j<=J} P(Y_j < x)``
    with the closed form of :func:`renewal_count` less those after J, whichever has fewer."""
    if J <= 0:
        return 0.0
    if x <= 0:
        return float(J)

    def never(j: int) -> bool:           # P(Y_j >= x) < tiny
        bound, u = _chernoff(x, _turn_groups(m1, m2, j, answers_cached))
        return u > 0 and bound < _REACH_TINY

    def surely(j: int) -> bool:          # P(Y_j < x) < tiny
        bound, u = _chernoff(x, _turn_groups(m1, m2, j, answers_cached))
        return u < 0 and bound < _REACH_TINY

    def first(pred, lo: int) -> int:     # the smallest j >= lo with pred(j) (pred monotone)
        hi = lo
        while not pred(hi):
            lo, hi = hi + 1, 2 * hi
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if pred(mid) else (mid + 1, hi)
        return lo

    j_lo = first(lambda j: not never(j), 1)        # P_j > tiny from here
    j_hi = first(surely, j_lo)                     # P_j > 1 - tiny from here
    before, after = max(0, min(J, j_hi - 1) - j_lo + 1), max(0, j_hi - 1 - max(J + 1, j_lo) + 1)
    if before <= after:
        band = sum(tail_probability(x, _turn_groups(m1, m2, j, answers_cached))
                   for j in range(j_lo, min(J, j_hi - 1) + 1))
        return band + max(0, J - j_hi + 1)
    # the turns after J whose history is still short of x: all of them before j_lo, the band's tails
    short = max(0, j_lo - 1 - J) + sum(1.0 - tail_probability(x, _turn_groups(m1, m2, j, answers_cached))
                                       for j in range(max(J + 1, j_lo), j_hi))
    return J - (renewal_count(x, m1, m2, answers_cached) - short)


def remainder_settles(means_per_turn: tuple[float, ...], B: int) -> float:
    """The modulus of one turn's factor at the series' first frequency: how fast the
    remainder after ``j`` turns approaches ``B/2`` (its distance shrinks like this to the ``j``)."""
    t = 2 * math.pi / B
    out = 1.0
    for m in means_per_turn:
        if m > 0:
            out /= math.hypot(1.0, t * m)
    return out
