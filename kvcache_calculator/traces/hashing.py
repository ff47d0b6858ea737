"""A stable 64-bit hash of integer ids, the same on every platform and run.

Routing by prefix or session and spatial sampling must give the same answer on CPython and in
the browser (Pyodide is a 32-bit build, where ``hash()`` differs) and from one run to the
next, so they do not use ``hash()``. This is the finaliser of SplitMix64 (Steele, Lea and
Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014), a bijection of 64-bit
integers whose output bits each depend on every input bit; ``salt`` gives independent hashes
for independent uses (sampling and routing must not pick correlated subsets).
"""

from __future__ import annotations

__all__ = ["MASK64", "GAMMA64", "stable_hash64"]

MASK64 = (1 << 64) - 1
#: SplitMix64's increment (the golden ratio times 2**64), added before the finaliser.
GAMMA64 = 0x9E3779B97F4A7C15
_GOLDEN = GAMMA64
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


def stable_hash64(value: int, salt: int = 0) -> int:
    """SplitMix64 of ``(value + salt) mod 2**64``: an integer in ``0 .. 2**64 - 1``.

    Negative and larger-than-64-bit ids are reduced modulo 2**64 first.

    >>> stable_hash64(0), stable_hash64(1) != stable_hash64(1, salt=1)
    (16294208416658607535, True)
    """
    z = (value + salt + _GOLDEN) & MASK64
    z = ((z ^ (z >> 30)) * _M1) & MASK64
    z = ((z ^ (z >> 27)) * _M2) & MASK64
    return z ^ (z >> 31)
