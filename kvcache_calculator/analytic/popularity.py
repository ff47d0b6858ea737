"""Popularity of shared objects (system prompts, documents) and lognormal gaps, in closed form
(docs/model.md §12).

A population of ``n`` objects with Zipf popularity of exponent ``alpha`` (object ``i`` is
chosen with probability ``i^-alpha / H(n, alpha)``; ``alpha = 0`` is uniform) is described by
*groups* ``(count, probability)``: ``count`` objects each chosen with ``probability``. The
model sums a smooth function of each object's request rate (Che's hit probability
``1 - exp(-rate * T)``), so objects of nearly equal rate can share a group: the first
:data:`EXACT_RANKS` ranks are exact, later ranks are grouped while their probabilities stay
within :data:`GROUP_RATIO` of each other, and a group's probability is its members' mean
(their sum, Euler-Maclaurin's midpoint rule ``sum_{i=a..b} i^-alpha ~ integral_{a-1/2}^{b+1/2}
x^-alpha dx``, divided by the count). A million documents take about 200 groups.

Lognormal gaps with mean ``theta`` and shape ``sigma`` (``log G`` normal with standard deviation
``sigma`` and mean ``mu = log(theta) - sigma^2/2``) have::

    P(G < T)        = Phi(z),          z = (log T - mu) / sigma
    E[min(G, T)]    = theta * Phi(z - sigma) + T * (1 - Phi(z))

(the second from ``E[G; G < T] = theta * Phi(z - sigma)``, the lognormal's partial mean). A sum
of ``m`` independent gaps is taken as lognormal with the same mean and variance (Fenton 1960):
``sigma_m^2 = log(1 + (exp(sigma^2) - 1) / m)``, mean ``m theta``.

The sum ``X`` of ``k`` exponential gaps of mean ``theta`` is Erlang; with ``x = t / theta`` and
``Pois`` a Poisson variable of mean ``x``::

    P(X < t)        = P(Pois >= k)
    E[min(X, t)]    = k theta P(Pois >= k + 1) + t P(Pois <= k - 1)

(``E[X; X < t] = k theta P(Erlang(k+1) < t)``). :func:`erlang_cdf_and_partial` gives both at any
``t``, which the model needs when a copy's idle time is the gaps plus a fixed delay
(docs/model.md §6.2).
"""

from __future__ import annotations

import bisect
import math
import statistics

#: Ranks summed one by one before grouping starts.
EXACT_RANKS = 16
#: Largest ratio of the first to the last member's probability within a group.
GROUP_RATIO = 1.06

#: Pairs of a system prompt and a document kept one by one up to this many, else binned ...
MAX_PAIRS = 128
#: ... in bins of this ratio of probabilities (a Che-type sum moves by under 1e-3 relative).
PAIR_RATIO = 1.05

Groups = tuple[tuple[float, float], ...]


def _power_sum(a: float, b: float, alpha: float) -> float:
    """``sum_{i=a..b} i^-alpha`` for whole ``a <= b`` by the midpoint rule (exact enough past
    rank 16: the relative error is about ``alpha (alpha+1) / (24 a^2)``)."""
    lo, hi = a - 0.5, b + 0.5
    if abs(alpha - 1.0) < 1e-12:
        return math.log(hi / lo)
    e = 1.0 - alpha
    return (hi ** e - lo ** e) / e


def zipf_groups(n: int, alpha: float) -> Groups:
    """The groups ``(count, probability)`` of ``n`` objects with Zipf popularity ``alpha``
    (module docstring); their probabilities times counts sum to 1. ``alpha = 0``: one group."""
    if n <= 0:
        return ()
    if alpha == 0.0:
        return ((float(n), 1.0 / n),)
    raw: list[tuple[float, float]] = []        # (count, sum of i^-alpha)
    exact = min(n, EXACT_RANKS)
    for i in range(1, exact + 1):
        raw.append((1.0, i ** -alpha))
    a = exact + 1
    # ranks a..b have probabilities within GROUP_RATIO when (b/a)^alpha <= GROUP_RATIO
    step = GROUP_RATIO ** (1.0 / alpha)
    while a <= n:
        b = min(n, max(a, int(a * step)))
        raw.append((float(b - a + 1), _power_sum(a, b, alpha)))
        a = b + 1
    total = sum(s for _, s in raw)
    return tuple((count, s / total / count) for count, s in raw)


def product_groups(first: Groups, second: Groups) -> Groups:
    """Groups of the pairs (one object of each population, chosen independently): each pair's
    probability is the product; pairs are merged in bins of :data:`PAIR_RATIO` in probability
    (count-weighted mean) when there would be more than :data:`MAX_PAIRS` of them."""
    pairs = [(c1 * c2, p1 * p2) for c1, p1 in first for c2, p2 in second]
    if len(pairs) <= MAX_PAIRS:
        return tuple(pairs)
    width = math.log(PAIR_RATIO)
    bins: dict[int, list[float]] = {}
    for count, p in pairs:
        entry = bins.setdefault(math.floor(math.log(p) / width), [0.0, 0.0])
        entry[0] += count
        entry[1] += count * p
    return tuple((c, s / c) for c, s in (bins[k] for k in sorted(bins, reverse=True)))


def normal_cdf(z: float) -> float:
    """Phi(z), accurate in both tails (``erfc``)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def lognormal_sigma_of_sum(sigma: float, m: int) -> float:
    """Shape of the lognormal matched to the sum of ``m`` lognormal gaps of shape ``sigma``
    (Fenton-Wilkinson: same mean and variance)."""
    if m == 1:
        return sigma
    return math.sqrt(math.log1p(math.expm1(sigma * sigma) / m))


def lognormal_cdf_and_partial(T: float, mean: float, sigma: float) -> tuple[float, float]:
    """``(P(G < T), E[min(G, T)])`` for a lognormal ``G`` of ``mean`` and shape ``sigma``."""
    if T <= 0.0:
        return 0.0, 0.0
    if math.isinf(T):
        return 1.0, mean
    z = (math.log(T / mean) + 0.5 * sigma * sigma) / sigma
    F = normal_cdf(z)
    return F, mean * normal_cdf(z - sigma) + T * normal_cdf(-z)


#: A Poisson tail sum stops where its terms fall below this share of the sum.
_POISSON_EPS = 1e-17


def poisson_tails(k: int, x: float) -> tuple[float, float, float]:
    """``(P(Pois <= k - 1), P(Pois = k), P(Pois >= k + 1))`` for a Poisson variable of mean
    ``x > 0``: the smaller tail summed from ``k`` outwards (its terms fall monotonically
    there), the other one its complement, so each is accurate where it is small."""
    log_pk = -x + k * math.log(x) - math.lgamma(k + 1)
    pk = math.exp(log_pk)
    if k <= x:                       # the lower tail is the smaller: i = k-1, k-2, ... 0
        term, lower, i = pk, 0.0, k
        while i > 0:
            term *= i / x
            lower += term
            i -= 1
            if term <= _POISSON_EPS * lower:
                break
        return lower, pk, max(0.0, 1.0 - lower - pk)
    term, upper, i = pk, 0.0, k      # the upper tail: i = k+1, k+2, ...
    while True:
        i += 1
        term *= x / i
        upper += term
        if term <= _POISSON_EPS * upper or term == 0.0:
            break
    return max(0.0, 1.0 - upper - pk), pk, upper


def erlang_cdf_and_partial(t: float, k: int, theta: float) -> tuple[float, float]:
    """``(P(X < t), E[min(X, t)])`` for the sum ``X`` of ``k`` exponential gaps of mean
    ``theta`` (module docstring); ``(0, t)`` for ``t <= 0`` is left to the caller."""
    if t <= 0.0:
        return 0.0, 0.0
    lower, pk, above = poisson_tails(k, t / theta)
    return pk + above, k * theta * above + t * lower


#: Below this ``x``, ``x - 1 + exp(-x)`` is summed as its series (its three terms are exact
#: to about 1e-17 relative there, where the direct form loses digits to cancellation).
_RAMP_SERIES = 1e-3


def _ramp(x: float) -> float:
    """``x - 1 + exp(-x)`` (>= 0), accurate for small ``x``."""
    if x < _RAMP_SERIES:
        return x * x * (0.5 - x * (1.0 / 6.0 - x / 24.0))
    return x + math.expm1(-x)


def window_hit_probability(rate: float, horizon: float, start: float, end: float) -> float:
    """Mean of ``1 - exp(-rate * min(t, horizon))`` over ``t`` uniform on ``[start, end]``
    (docs/model.md §12.5): the chance that a use of an object requested as a Poisson stream of
    ``rate`` per second finds it cached, for uses at times ``t`` since an empty cache started,
    when a steady-state cache keeps it ``horizon`` seconds (Che's characteristic time).

    With ``lo = min(start, horizon)``, ``hi = min(end, horizon)``, ``d = hi - lo``::

        integral_start^end = (1 - e^(-rate lo)) d + e^(-rate lo) (rate d - 1 + e^(-rate d)) / rate
                             + max(0, end - max(start, horizon)) (1 - e^(-rate horizon))

    divided by ``end - start``. ``end = inf`` (or ``start >= horizon``) is the steady state
    ``1 - exp(-rate * horizon)``; ``start = end`` the value at that instant."""
    if rate <= 0.0:
        return 0.0
    if math.isinf(rate):
        return 1.0
    steady = -math.expm1(-rate * horizon) if not math.isinf(horizon) else 1.0
    if math.isinf(end) or start >= horizon:
        return steady
    if end <= start:
        return -math.expm1(-rate * min(start, horizon))
    lo, hi = min(start, horizon), min(end, horizon)
    d = hi - lo
    total = -math.expm1(-rate * lo) * d + math.exp(-rate * lo) * _ramp(rate * d) / rate
    if end > horizon:
        total += (end - max(start, horizon)) * steady
    return total / (end - start)


# -- empirical gaps: a piecewise-linear CDF through n + 1 quantiles (docs/model.md §12) --------


def shape_quantiles(shape) -> tuple[float, ...]:
    """The quantiles ``q_0 <= ... <= q_n`` of an empirical gap shape (``think_shape``: the
    gap's quantiles at probabilities ``0, 1/n, ..., 1``, the CDF linear in between), rescaled
    so the gap's mean ``sum_i (q_i + q_{i+1}) / (2n)`` is 1."""
    n = len(shape) - 1
    mean = (sum(shape) - 0.5 * (shape[0] + shape[-1])) / n
    return tuple(v / mean for v in shape)


def shape_cv2(q) -> float:
    """The squared coefficient of variation of the piecewise-uniform gap of quantiles ``q``
    (mean 1, :func:`shape_quantiles`): ``E[G^2] - 1`` with ``E[G^2] = sum_i (a^2 + ab + b^2)
    / (3n)`` over the segments ``[a, b]``."""
    n = len(q) - 1
    second = sum(a * a + a * b + b * b for a, b in zip(q, q[1:])) / (3.0 * n)
    return max(0.0, second - 1.0)


def empirical_cdf_and_partial(T: float, mean: float, q) -> tuple[float, float]:
    """``(P(G < T), E[min(G, T)])`` for the gap ``mean * Q`` with ``Q`` of quantiles ``q``
    (mean 1) and a CDF linear between them: exact. ``T`` in segment ``k`` (``mean q_k <= T <
    mean q_{k+1}``, a fraction ``f`` of the way) has ``P = (k + f) / n`` and ``E[G; G < T] =
    sum_{i<k} mean (q_i + q_{i+1}) / (2n) + f (mean q_k + T) / (2n)``."""
    n = len(q) - 1
    if T <= mean * q[0]:
        return 0.0, T
    if T >= mean * q[-1]:
        return 1.0, mean
    x = T / mean
    k = bisect.bisect_right(q, x) - 1          # q[k] <= x < q[k+1] (a zero-width segment skipped)
    below = (sum(q[:k]) + sum(q[1:k + 1])) / (2.0 * n)   # sum_{i<k} (q_i + q_{i+1}) / (2n)
    f = (x - q[k]) / (q[k + 1] - q[k])
    P = (k + f) / n
    partial = below + f * (q[k] + x) / (2.0 * n)
    return P, mean * partial + T * (1.0 - P)


def empirical_quantile(u: float, q) -> float:
    """The inverse CDF at ``u`` in [0, 1) of the shape of quantiles ``q``: linear between
    ``q_k`` and ``q_{k+1}`` for ``u`` in ``[k/n, (k+1)/n)``."""
    n = len(q) - 1
    pos = u * n
    k = min(int(pos), n - 1)
    return q[k] + (pos - k) * (q[k + 1] - q[k])


def lognormal_shape(sigma: float, n: int) -> tuple[float, ...]:
    """An empirical shape of ``n + 1`` quantiles (mean 1) for the lognormal of shape ``sigma``:
    its quantiles at ``1/n, ..., (n-1)/n``, 0 at probability 0, and a last value that gives the
    top segment the lognormal's mean above ``q_{n-1}`` (the tail beyond it has no finite
    quantile at probability 1)."""
    mu = -0.5 * sigma * sigma
    inner = [math.exp(mu + sigma * statistics.NormalDist().inv_cdf(i / n)) for i in range(1, n)]
    z = (math.log(inner[-1]) - mu) / sigma
    top_mean = normal_cdf(sigma - z) * n        # E[G | G > q_{n-1}], the top 1/n of the mass
    return shape_quantiles((0.0, *inner, 2.0 * top_mean - inner[-1]))
