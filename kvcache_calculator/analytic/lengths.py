"""Whole blocks of random lengths (docs/model.md §13): the tokens an engine can reuse of a
history whose length is a sum of exponential lengths.

Only whole blocks of ``B`` tokens are cached, so a history of ``x`` tokens leaves
``B * floor(x / B) = x - (x mod B)`` reusable tokens. With fixed lengths the remainder is
known; with random ones the model needs its mean ``E[(s + Y) mod B]`` for ``Y`` a sum of
independent exponential lengths of means ``m_i`` and a fixed offset ``s``:

- one length (closed form): ``E[(s + L) mod B] = s + m - B e^((s-B)/m) / (1 - e^(-B/m))`` for
  ``0 <= s < B`` (``E[floor((s + L)/B)] = sum_k P(L >= kB - s)``, a geometric series);
- several: the sawtooth's Fourier series ``x mod B = B/2 - (B/pi) sum_n sin(2 pi n x/B)/n``
  taken in expectation, with the characteristic function of ``Y``:
  ``E = B/2 - (B/pi) sum_n Im(e^(i t_n s) prod_i 1/(1 - i t_n m_i)) / n``, ``t_n = 2 pi n/B``.
  Every factor has modulus below 1, so the series converges at least like ``1/n^3`` and the
  remainder tends to ``B/2`` as lengths are added.

With geometric turns the model needs ``sum_j r^j E[g(s + Y_j)]`` only, ``Y_j`` the lengths of
j turns: a mixture of two exponential lengths (:func:`geometric_compound`), so closed forms
however slowly the remainder settles (docs/model.md §13).

Lengths are continuous here (a trace's are whole tokens: the mean remainder is then about
half a token lower, ``(B-1)/2`` against ``B/2`` for a uniform remainder).

A request hits at all only if its history holds at least one whole block, so the request
hit rate needs ``P(s + Y >= B)``: for ``Y`` the sum of an Erlang of ``k1`` lengths of mean
``m1`` and one of ``k2`` of mean ``m2``, ``P(Y >= x) = P(A >= x) + int_0^x f_A(u) P(C >= x-u) du``
(the Erlang tails in closed form, the integral by Simpson's rule on a smooth integrand;
:func:`reach_probabilities`).
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
    each ``(mean, count)`` of ``groups`` (an Erlang per group): each Fourier term costs one
    power per group, not one factor per length."""
    groups = tuple((m, k) for m, k in groups if m > 0 and k > 0)
    s = offset % B
    if not groups:
        return s
    if len(groups) == 1 and groups[0][1] == 1:
        return exponential_remainder(s, groups[0][0], B)
    total = 0.0
    for n in range(1, _MAX_TERMS + 1):
        t = 2 * math.pi * n / B
        log_phi = complex(0.0, t * s)
        for m, k in groups:
            log_phi -= k * cmath.log(complex(1.0, -t * m))
        phi = cmath.exp(log_phi)          # |phi| = prod |1 - i t m|^-k: the term's bound
        total += phi.imag / n
        if B / math.pi * math.exp(log_phi.real) / n < _TOL_TOKENS:
            break
    return B / 2 - B / math.pi * total


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
    """``P(A >= x)`` for ``A`` the sum of ``k`` exponential lengths of mean ``mean``."""
    if x <= 0 or k <= 0 or mean <= 0:
        return 1.0 if x <= 0 else 0.0
    z = x / mean
    term, total = 1.0, 1.0
    for i in range(1, k):
        term *= z / i
        total += term
    return math.exp(-z) * total


#: Simpson's rule intervals for :func:`reach_probabilities`' convolution: at least this many,
#: at most :data:`_MAX_INTERVALS`, and about four per token of the shorter mean length.
_MIN_INTERVALS = 256
_MAX_INTERVALS = 2048
#: Past this probability a history is taken to reach the block for every later turn.
_REACHED = 1.0 - 1e-10


def reach_probabilities(x: float, m1: float, m2: float, J: int, answers_cached: bool = True) -> tuple[float, ...]:
    """``P(A_j + C_j >= x)`` for j = 1..J (shorter once it reaches 1): ``A_j`` the sum of j
    exponential lengths of mean ``m1``, ``C_j`` of j of mean ``m2`` (j - 1 when
    ``answers_cached`` is False); zero means are fixed lengths of 0.

    ``P(A + C >= x) = P(A >= x) + int_0^x f_A(u) P(C >= x-u) du`` by Simpson's rule on one
    grid for every j: the Erlang density and tail at each grid point grow by one term per j
    (in logarithms, so that long sums of short lengths do not underflow)."""
    if x <= 0:
        return (1.0,)
    out = []
    if m2 <= 0 or m1 == m2 or m1 <= 0:
        m = m1 if m1 > 0 else m2
        for j in range(1, J + 1):
            k = (j if m1 > 0 else 0) + ((j if answers_cached else j - 1) if m2 > 0 else 0)
            out.append(erlang_tail(x, k, m))
            if out[-1] >= _REACHED:
                break
        return tuple(out)
    n = min(_MAX_INTERVALS, max(_MIN_INTERVALS, int(4 * x / min(m1, m2))))
    n += n % 2
    h = x / n
    weights = [1.0 if i in (0, n) else (4.0 if i % 2 else 2.0) for i in range(n + 1)]
    # log(u/m1) at u = i h and log(y/m2) at y = x - i h (None at 0)
    log_u = [math.log(i * h / m1) if i else None for i in range(n + 1)]
    log_y = [math.log((x - i * h) / m2) if i < n else None for i in range(n + 1)]
    z_u = [i * h / m1 for i in range(n + 1)]
    z_y = [(x - i * h) / m2 for i in range(n + 1)]
    tail_c = [0.0] * (n + 1)            # P(C >= y) for y > 0 with no length yet
    k2 = 0
    for j in range(1, J + 1):
        # one more answer length in C (or none yet for the first turn without answers)
        want = j if answers_cached else j - 1
        while k2 < want:
            lg = math.lgamma(k2 + 1)
            for i in range(n):
                tail_c[i] += math.exp(k2 * log_y[i] - z_y[i] - lg) if k2 else math.exp(-z_y[i])
            tail_c[n] = 1.0                 # y = 0
            k2 += 1
        if not k2:                      # C = 0: A alone
            out.append(erlang_tail(x, j, m1))
            continue
        lg = math.lgamma(j)
        total = weights[0] * (1.0 / m1 if j == 1 else 0.0) * tail_c[0]
        for i in range(1, n + 1):
            total += weights[i] * math.exp((j - 1) * log_u[i] - z_u[i] - lg) / m1 * tail_c[i]
        out.append(min(1.0, erlang_tail(x, j, m1) + total * h / 3))
        if out[-1] >= _REACHED:
            break
    return tuple(out)


def remainder_settles(means_per_turn: tuple[float, ...], B: int) -> float:
    """The modulus of one turn's factor at the series' first frequency: how fast the
    remainder after ``j`` turns approaches ``B/2`` (its distance shrinks like this to the ``j``)."""
    t = 2 * math.pi / B
    out = 1.0
    for m in means_per_turn:
        if m > 0:
            out /= math.hypot(1.0, t * m)
    return out
