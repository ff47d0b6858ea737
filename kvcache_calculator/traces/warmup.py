"""Warm-up: the first requests of a trace fill the cache but are not counted.

Published hit-rate curves often skip the first part of a trace (the first half, say), so that
a cold cache at the start does not pull the rate down. ``--warmup F`` counts only the requests
after the first ``floor(F * R)`` of the ``R`` requests; the cache sees every request.

Every replay here is incremental and may be read in the middle (``result()`` then more
``feed``), so the counted part is exact and needs no change to the replays: read the result
once at the boundary and subtract it from the final one. Hit counts, request and block totals
are differences; ``distinct_blocks`` stays that of the whole trace. Belady's offline policy
cannot be read in the middle that way (its decisions depend on the whole future), so
:class:`BeladyWarmupReplay` steps :class:`~kvcache_calculator.traces.replay.BeladySteps`
forward to the boundary and reads its counters there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import (
    BeladySteps,
    LRUCurve,
    ReplayResult,
    last_block_tokens,
)

__all__ = [
    "warmup_requests",
    "curve_minus",
    "result_minus",
    "subtract",
    "WarmupReplay",
    "BeladyWarmupReplay",
]


def warmup_requests(fraction: float, total_requests: int) -> int:
    """Requests that only warm the cache: ``floor(fraction * total_requests)``, with
    ``0 <= fraction < 1``."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
            or not 0 <= fraction < 1:
        raise ScenarioError("warmup", fraction, "must be a fraction in [0, 1) of the requests")
    return math.floor(fraction * total_requests)


def curve_minus(after: LRUCurve, before: LRUCurve) -> LRUCurve:
    """The LRU curve of the requests fed between two readings of one
    :class:`~kvcache_calculator.traces.replay.LRUCurveReplay`.

    Both curves are cumulative histograms of stack distances and ``before``'s histogram is
    contained in ``after``'s, so the difference is again a cumulative histogram."""
    inc_b: dict = {}
    inc_t: dict = {}
    for sign, curve in ((1, after), (-1, before)):
        pb = pt = 0
        for d, cb, ct in zip(curve.distances, curve.cum_block_hits, curve.cum_token_hits):
            inc_b[d] = inc_b.get(d, 0) + sign * (cb - pb)
            inc_t[d] = inc_t.get(d, 0) + sign * (ct - pt)
            pb, pt = cb, ct
    distances, cum_b, cum_t = [], [], []
    sb = st = 0
    for d in sorted(inc_b):
        if inc_b[d] or inc_t[d]:
            sb += inc_b[d]
            st += inc_t[d]
            distances.append(d)
            cum_b.append(sb)
            cum_t.append(st)
    return dataclasses.replace(
        after, requests=after.requests - before.requests,
        total_blocks=after.total_blocks - before.total_blocks,
        total_tokens=after.total_tokens - before.total_tokens,
        distances=tuple(distances), cum_block_hits=tuple(cum_b), cum_token_hits=tuple(cum_t))


def result_minus(after: ReplayResult, before: ReplayResult) -> ReplayResult:
    """Hits at fixed capacities of the requests fed between two readings of one replay."""
    if tuple(after.capacity_blocks) != tuple(before.capacity_blocks):
        raise ScenarioError("capacity_blocks", after.capacity_blocks,
                            "both readings must be at the same capacities")
    return dataclasses.replace(
        after, requests=after.requests - before.requests,
        total_blocks=after.total_blocks - before.total_blocks,
        total_tokens=after.total_tokens - before.total_tokens,
        block_hits=tuple(a - b for a, b in zip(after.block_hits, before.block_hits)),
        token_hits=tuple(a - b for a, b in zip(after.token_hits, before.token_hits)),
        infinite_block_hits=after.infinite_block_hits - before.infinite_block_hits,
        infinite_token_hits=after.infinite_token_hits - before.infinite_token_hits)


def subtract(after, before):
    """``after - before`` for an :class:`LRUCurve`, a :class:`ReplayResult`, or any result
    with a ``minus(before)`` method (fleet and sampled results)."""
    if isinstance(after, LRUCurve):
        return curve_minus(after, before)
    if isinstance(after, ReplayResult):
        return result_minus(after, before)
    return after.minus(before)


class WarmupReplay:
    """Wraps an incremental replay (``feed``/``result``): the first ``warmup_requests``
    requests are fed but not counted in ``result()``."""

    def __init__(self, runner, warmup_requests: int):
        if isinstance(warmup_requests, bool) or not isinstance(warmup_requests, int) \
                or warmup_requests < 0:
            raise ScenarioError("warmup_requests", warmup_requests, "must be an integer >= 0")
        self.runner = runner
        self.warmup_requests = warmup_requests
        self.fed = 0
        self._before = runner.result() if warmup_requests == 0 else None

    def feed(self, requests: Iterable[Request]) -> int:
        """Feed ``requests``, reading the runner once at the warm-up boundary."""
        if self._before is not None:
            n = self.runner.feed(requests)
            self.fed += n
            return n
        batch = list(requests)
        cut = min(len(batch), self.warmup_requests - self.fed)
        self.runner.feed(batch[:cut])
        self.fed += cut
        if self.fed >= self.warmup_requests:
            self._before = self.runner.result()
            self.runner.feed(batch[cut:])
            self.fed += len(batch) - cut
        return len(batch)

    def result(self):
        """The counted part: the final reading minus the one at the boundary (everything is
        warm-up, so nothing is counted, when the trace is shorter than the warm-up)."""
        after = self.runner.result()
        return subtract(after, self._before if self._before is not None else after)


class BeladyWarmupReplay:
    """Belady's offline policy (as :class:`~kvcache_calculator.traces.replay.BeladyReplay`)
    over the whole trace, counting only the requests after the first ``warmup_requests``."""

    def __init__(self, capacities_blocks: Sequence[int], block_size: int,
                 semantics: str = "engine", warmup_requests: int = 0):
        self.capacities_blocks = tuple(capacities_blocks)
        self.block_size = block_size
        self.semantics = semantics
        self.warmup_requests = warmup_requests
        self._requests: list = []

    def feed(self, requests: Iterable[Request]) -> int:
        """Store ``requests`` for the offline replay; returns how many were fed."""
        before = len(self._requests)
        for r in requests:
            n = len(r.hash_ids)
            self._requests.append((r.hash_ids,
                                   last_block_tokens(r.input_length, n, self.block_size)))
        return len(self._requests) - before

    def result(self) -> ReplayResult:
        """Run MIN at each capacity; subtract the counts at the boundary."""
        reqs = self._requests
        n = len(reqs)
        w = min(self.warmup_requests, n)
        full = None
        marks = []
        for cap in self.capacities_blocks or (0,):
            steps = BeladySteps(reqs, cap, self.block_size, self.semantics)
            steps.step(max(1, n))                      # the backward pass
            if w:
                steps.step(w)
            marks.append((steps.total_blocks, steps.total_tokens, steps.block_hits,
                          steps.token_hits, steps.inf_block_hits, steps.inf_token_hits))
            while not steps.step(max(1, n)):
                pass
            res = steps.result()
            full = res if full is None else dataclasses.replace(
                full, capacity_blocks=full.capacity_blocks + res.capacity_blocks,
                block_hits=full.block_hits + res.block_hits,
                token_hits=full.token_hits + res.token_hits)
        tb, tt, _, _, ib, it = marks[0]
        caps = self.capacities_blocks
        return dataclasses.replace(
            full, requests=n - w, total_blocks=full.total_blocks - tb,
            total_tokens=full.total_tokens - tt, capacity_blocks=caps,
            block_hits=tuple(h - m[2] for h, m in zip(full.block_hits, marks)) if caps else (),
            token_hits=tuple(h - m[3] for h, m in zip(full.token_hits, marks)) if caps else (),
            infinite_block_hits=full.infinite_block_hits - ib,
            infinite_token_hits=full.infinite_token_hits - it)
