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

Lengths are continuous here (a trace's are whole tokens: the mean remainder is then about
half a token lower, ``(B-1)/2`` against ``B/2`` for a uniform remainder).
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


@functools.lru_cache(maxsize=4096)
def sum_remainder(offset: float, means: tuple[float, ...], B: int) -> float:
    """``E[(offset + Y) mod B]`` for ``Y`` the sum of independent exponential lengths of
    ``means`` (tokens; zeros are fixed lengths of 0), by the Fourier series (module docstring)."""
    means = tuple(m for m in means if m > 0)
    s = offset % B
    if not means:
        return s
    if len(means) == 1:
        return exponential_remainder(s, means[0], B)
    total = 0.0
    for n in range(1, _MAX_TERMS + 1):
        t = 2 * math.pi * n / B
        phi = cmath.exp(1j * t * s)
        bound = 1.0
        for m in means:
            phi /= complex(1.0, -t * m)
            bound /= math.hypot(1.0, t * m)
        total += phi.imag / n
        if B / math.pi * bound / n < _TOL_TOKENS:
            break
    return B / 2 - B / math.pi * total


def remainder_settles(means_per_turn: tuple[float, ...], B: int) -> float:
    """The modulus of one turn's factor at the series' first frequency: how fast the
    remainder after ``j`` turns approaches ``B/2`` (its distance shrinks like this to the ``j``)."""
    t = 2 * math.pi / B
    out = 1.0
    for m in means_per_turn:
        if m > 0:
            out /= math.hypot(1.0, t * m)
    return out
