"""Spatially sampled LRU replay (SHARDS) for traces too large to replay exactly.

SHARDS (Waldspurger, Park, Garthwaite and Ahmad, "Efficient MRC Construction with SHARDS",
FAST'15): keep only the references to blocks whose hash falls under a threshold, ``hash(b) <
R * 2**64`` for a sampling rate ``R``. A block is either always kept or never, so the sample is
itself a trace whose stack distances are about ``R`` times the full trace's: an LRU cache of
``C`` blocks on the full trace behaves like one of ``floor(R * C)`` blocks on the sample. Work
and memory fall by the factor ``R`` (except reading and hashing every id).

What is implemented, exactly:

- *Selection*: block id ``b`` is kept iff ``stable_hash64(b, salt) < floor(R * 2**64)``
  (:func:`~kvcache_calculator.traces.hashing.stable_hash64`, the same on every platform).
- *Sampled requests*: a request keeps its kept blocks in order (a request with none is
  dropped; it would hit nothing). Its ``input_length`` is rewritten so that the kept blocks
  count the tokens they count in the full trace: ``block_size`` each, except the request's
  real last block, which keeps its own token count when it is kept; when it is not, the
  sampled request ends in a whole block, with one token more so that an engine's "the last
  token is recomputed" rule does not cut a block the full request would have hit.
  Under ``engine`` semantics the hit prefix of a sampled request is the longest run of its
  kept blocks that are cached: the unkept blocks of the prefix are assumed cached too (for
  prefix-hashed traces, where a block's distance is at least its prefix's, this is mostly
  true).
- *Capacity*: ``C`` blocks on the full trace are read at ``floor(R * C)`` on the sample's
  exact LRU curve (:class:`~kvcache_calculator.traces.replay.LRUCurveReplay`, so the sample
  follows the replay's own semantics).
- *Adjustment* (SHARDS_adj, §4.2 of the paper): a few very popular blocks (a system prompt in
  every request) carry much of the hits, and whether they fall in the sample moves the
  estimate by points. The difference between the expected sampled references ``R * N`` (``N``
  counted exactly on the full trace) and the actual ones is added to the hits at the smallest
  distance (blocks and tokens alike). Estimated hits are ``(sampled hits at floor(R*C) +
  R*N - sampled references) / R``, clamped to ``0 .. N``; at ``floor(R*C) = 0`` they are 0.

- *Rate per capacity* (the ladder): the error is small where the sample holds enough blocks
  and large where ``R * C`` is small (a few hot blocks, such as system prompts, then decide
  the estimate: -16 points at ``R * C = 10`` on a generated trace). So a second sample, at
  ``16 R`` (:func:`ladder_rates`, at most 1), estimates every capacity where ``floor(R * C)
  < 100`` (:data:`SAMPLE_FLOOR`; :func:`rate_for_capacity`). The thresholds are nested (a
  block kept at ``R`` is kept at ``16 R``), so each block is hashed once. That sample is read
  only at ``floor(16 R * C) < 1,600`` blocks, so its replay keeps only its most recent
  ``1,602`` to ``3,204`` blocks (:meth:`LRUCurveReplay.forget_beyond`, exact up to there):
  its memory is bounded, its time is one LRU step per block it keeps. Floor 100 and a
  single step of 16 were chosen by measurement (``benchmarks/bench_sampling.py``; a floor of
  50 left 2 points of error at 1,300 blocks, and rates 2R, 4R, 8R in between did no better
  and cost one replay each).

Results are approximate: they carry the rates, the rate used at each capacity and
``approximate: true``. The error against exact replay is measured in
``benchmarks/bench_sampling.py`` and the tests;
:attr:`SampledCurve.min_reliable_capacity_blocks` = ``ceil(100 / 16R)``: below it, use a
higher rate.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.hashing import GAMMA64, MASK64
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import (
    LRUCurve,
    LRUCurveReplay,
    ReplayResult,
    last_block_tokens,
)
from kvcache_calculator.traces.warmup import curve_minus

__all__ = [
    "SAMPLE_SALT",
    "SAMPLE_FLOOR",
    "SampledRequest",
    "MAX_RATE_FACTOR",
    "LADDER_STEP",
    "kept_with_hashes",
    "ladder_rates",
    "rate_for_capacity",
    "ladder_depths",
    "check_rate",
    "sample_threshold",
    "split_params",
    "kept_ids",
    "sampled_input_length",
    "sample_request",
    "sample_requests",
    "SampledCurve",
    "SampledReplay",
    "replay_sampled",
]

#: A sampled request as the LRU replay reads it (lighter than a Request).
SampledRequest = namedtuple("SampledRequest", "input_length hash_ids")

#: Salt of the sampling hash: independent of the routing hash (salt 0).
SAMPLE_SALT = 0x5348_4152_4453   # "SHARDS"
#: Sampled blocks a capacity's estimate needs: below ``floor(R * C) = SAMPLE_FLOOR`` the next
#: rate of the ladder estimates it (measured in ``benchmarks/bench_sampling.py``).
SAMPLE_FLOOR = 100
#: The ladder's highest rate over the main one.
MAX_RATE_FACTOR = 16
#: The ratio of two rates of the ladder: 16, so the ladder is R and 16R (a finer ladder,
#: R, 2R, 4R..., measured no better and costs one more replay per rate).
LADDER_STEP = 16


def check_rate(rate) -> float:
    """A sampling rate in (0, 1], or ScenarioError."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise ScenarioError("sample", rate, "must be a sampling rate in (0, 1], e.g. 0.01")
    return float(rate)


def sample_threshold(rate: float) -> int:
    """Hash threshold of ``rate``: a block is kept iff its hash is below it."""
    return min(1 << 64, math.floor(check_rate(rate) * (1 << 64)))


def split_params(rate: float, salt: int = SAMPLE_SALT) -> dict:
    """The selection of ``rate`` in 32-bit halves, for the page's JavaScript reader
    (``site/trace-sampler.js``): ``thresholdHi``/``thresholdLo`` of :func:`sample_threshold`
    (``keepAll`` when it is ``2**64``) and ``saltHi``/``saltLo`` of ``GAMMA64 + salt`` mod
    ``2**64``, the number the hash adds to an id first."""
    threshold = sample_threshold(rate)
    keep_all = threshold >= 1 << 64
    threshold = min(threshold, MASK64)
    g = (GAMMA64 + salt) & MASK64
    return {"thresholdHi": threshold >> 32, "thresholdLo": threshold & 0xFFFFFFFF,
            "keepAll": keep_all, "saltHi": g >> 32, "saltLo": g & 0xFFFFFFFF}


def kept_ids(ids: Sequence[int], threshold: int, salt: int = SAMPLE_SALT) -> list:
    """The ids of ``ids`` whose ``stable_hash64`` (with ``salt``) is below ``threshold``."""
    return [b for b, _ in kept_with_hashes(ids, threshold, salt)]


def kept_with_hashes(ids: Sequence[int], threshold: int, salt: int = SAMPLE_SALT) -> list:
    """``(id, hash)`` of the ids of ``ids`` whose ``stable_hash64`` is below ``threshold``: the
    hash says at which rates of a ladder the id is kept too."""
    # stable_hash64 written out: this loop runs once per block reference of the trace.
    g, m1, m2, mask = GAMMA64 + salt, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, MASK64
    out = []
    for b in ids:
        z = (b + g) & mask
        z = ((z ^ (z >> 30)) * m1) & mask
        z = ((z ^ (z >> 27)) * m2) & mask
        z ^= z >> 31
        if z < threshold:
            out.append((b, z))
    return out


def ladder_rates(rate: float, max_rate: float | None = None) -> tuple:
    """The rates of the adaptive sample: ``rate``, then :data:`LADDER_STEP` times the one
    before, up to ``max_rate`` (default :data:`MAX_RATE_FACTOR` times ``rate``, at most 1),
    which is the last."""
    rate = check_rate(rate)
    top = min(1.0, rate * MAX_RATE_FACTOR if max_rate is None else check_rate(max_rate))
    rates = [rate]
    while rates[-1] < top:
        rates.append(min(top, rates[-1] * LADDER_STEP))
    return tuple(rates)


def ladder_depths(rates: Sequence[float], floor: int = SAMPLE_FLOOR) -> tuple:
    """Sampled blocks each rate of the ladder must replay exactly: 0 (all) for the main rate;
    for a higher one, ``floor`` times its ratio to the rate below, plus 2 (it estimates the
    capacities where the rate below holds under ``floor`` blocks)."""
    return (0,) + tuple(math.ceil(floor * hi / lo) + 2 for lo, hi in zip(rates, rates[1:]))


def rate_for_capacity(rates: Sequence[float], capacity_blocks: int,
                      floor: int = SAMPLE_FLOOR) -> float:
    """The rate of the ladder ``rates`` (ascending) that estimates ``capacity_blocks``: the
    lowest whose sample holds ``floor`` blocks at that capacity (``floor(r * C) >= floor``),
    else the highest."""
    for r in rates:
        if math.floor(r * capacity_blocks + 1e-9) >= floor:
            return r
    return rates[-1]


def sampled_input_length(input_length: int, blocks: int, kept: int, last_kept: bool,
                         block_size: int) -> int:
    """``input_length`` of a sampled request that keeps ``kept`` of its ``blocks`` blocks
    (``last_kept``: its real last block among them), as the module docstring says; a
    request that keeps every block is unchanged."""
    if kept == blocks:
        return input_length
    if last_kept:
        return (kept - 1) * block_size + last_block_tokens(input_length, blocks, block_size)
    return kept * block_size + 1


def sample_request(request: Request, threshold: int, block_size: int,
                   salt: int = SAMPLE_SALT) -> Request | None:
    """The sampled request (kept blocks only, ``input_length`` rewritten as described in the
    module docstring), or ``None`` when no block is kept."""
    ids = request.hash_ids
    n = len(ids)
    keep = kept_ids(ids, threshold, salt)
    if not keep:
        return None
    if len(keep) == n:
        return request
    length = sampled_input_length(request.input_length, n, len(keep), keep[-1] == ids[-1],
                                  block_size)
    return dataclasses.replace(request, input_length=length, hash_ids=tuple(keep))


def sample_requests(requests: Iterable[Request], rate: float, block_size: int,
                    salt: int = SAMPLE_SALT) -> Iterator[Request]:
    """The sampled trace of ``requests`` at ``rate`` (requests with no kept block dropped)."""
    threshold = sample_threshold(rate)
    for r in requests:
        s = sample_request(r, threshold, block_size, salt)
        if s is not None:
            yield s


@dataclass(frozen=True)
class SampledCurve:
    """The approximate LRU curve of a full trace, read off the exact curve of its sample.

    ``sample`` is the sample's :class:`~kvcache_calculator.traces.replay.LRUCurve`; the other
    counts are of the full trace. Reads like an :class:`LRUCurve` (``block_hits(C)``,
    ``token_hit_rate(C)``, ``at(capacities)``...), with float hit counts.
    """

    sample: LRUCurve
    rate: float
    requests: int
    total_blocks: int
    total_tokens: int
    #: The estimates at the ladder's higher rates (16R), whose samples are replayed only up to
    #: the capacities they estimate: each estimates the capacities where the rates below it hold
    #: fewer than ``floor`` sampled blocks (:func:`rate_for_capacity`).
    levels: tuple = ()
    floor: int = SAMPLE_FLOOR

    approximate = True

    @property
    def rates(self) -> tuple:
        """The ladder's rates, ascending: :attr:`rate` first."""
        return (self.rate,) + tuple(level.rate for level in self.levels)

    def rate_at(self, capacity_blocks: int) -> float:
        """The rate whose sample estimates ``capacity_blocks``."""
        return rate_for_capacity(self.rates, capacity_blocks, self.floor)

    def _curve_at(self, capacity_blocks: int) -> "SampledCurve":
        rate = self.rate_at(capacity_blocks)
        return next((lv for lv in self.levels if lv.rate == rate), self)

    def rate_bands(self) -> list:
        """``{"rate", "min_capacity_blocks"}`` per rate of the ladder: each estimates the
        capacities from its minimum up to the next lower rate's."""
        rates = self.rates
        return [{"rate": r, "min_capacity_blocks":
                 0 if r == rates[-1] else math.ceil(self.floor / r - 1e-9)} for r in rates]

    @property
    def semantics(self) -> str:
        """The replay semantics of the sample."""
        return self.sample.semantics

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self.sample.block_size

    @property
    def distinct_blocks(self) -> int:
        """Distinct blocks of the full trace, estimated: the sample's over the rate."""
        return round(self.sample.distinct_blocks / self.rate)

    @property
    def adjust_blocks(self) -> float:
        """SHARDS_adj: expected minus actual sampled block references."""
        return self.rate * self.total_blocks - self.sample.total_blocks

    @property
    def adjust_tokens(self) -> float:
        """SHARDS_adj for tokens: expected minus actual sampled tokens."""
        return self.rate * self.total_tokens - self.sample.total_tokens

    @property
    def min_reliable_capacity_blocks(self) -> int:
        """The smallest capacity whose sample (at the ladder's highest rate) holds ``floor``
        blocks: ``ceil(floor / R_max)``."""
        return math.ceil(self.floor / self.rates[-1] - 1e-9)

    def sample_capacity(self, capacity_blocks: int) -> int:
        """The sample's capacity standing for ``capacity_blocks``: ``floor(R * C)``."""
        return math.floor(self.rate * capacity_blocks + 1e-9)

    def _scale(self, hits: float, adjust: float, total: int, capacity: int | None) -> float:
        if capacity is not None and capacity < 1:
            return 0.0
        return min(float(total), max(0.0, (hits + adjust) / self.rate))

    def block_hits(self, capacity_blocks: int) -> float:
        """Estimated block hits of an LRU cache of ``capacity_blocks`` blocks."""
        level = self._curve_at(capacity_blocks)
        if level is not self:
            return level.block_hits(capacity_blocks)
        c = self.sample_capacity(capacity_blocks)
        return self._scale(self.sample.block_hits(c), self.adjust_blocks, self.total_blocks, c)

    def token_hits(self, capacity_blocks: int) -> float:
        """Estimated token hits of an LRU cache of ``capacity_blocks`` blocks."""
        level = self._curve_at(capacity_blocks)
        if level is not self:
            return level.token_hits(capacity_blocks)
        c = self.sample_capacity(capacity_blocks)
        return self._scale(self.sample.token_hits(c), self.adjust_tokens, self.total_tokens, c)

    def block_hit_rate(self, capacity_blocks: int) -> float:
        """Estimated block hit rate at ``capacity_blocks``."""
        return self.block_hits(capacity_blocks) / self.total_blocks if self.total_blocks else 0.0

    def token_hit_rate(self, capacity_blocks: int) -> float:
        """Estimated token hit rate at ``capacity_blocks``."""
        return self.token_hits(capacity_blocks) / self.total_tokens if self.total_tokens else 0.0

    @property
    def infinite_block_hits(self) -> float:
        """Estimated block hits of an unbounded cache."""
        return self._scale(self.sample.infinite_block_hits, self.adjust_blocks,
                           self.total_blocks, None)

    @property
    def infinite_token_hits(self) -> float:
        """Estimated token hits of an unbounded cache."""
        return self._scale(self.sample.infinite_token_hits, self.adjust_tokens,
                           self.total_tokens, None)

    @property
    def infinite_block_hit_rate(self) -> float:
        """Estimated block-hit ceiling."""
        return self.infinite_block_hits / self.total_blocks if self.total_blocks else 0.0

    @property
    def infinite_token_hit_rate(self) -> float:
        """Estimated token-hit ceiling."""
        return self.infinite_token_hits / self.total_tokens if self.total_tokens else 0.0

    @property
    def capacity_for_ceiling(self) -> int:
        """Estimated smallest capacity (blocks) that reaches the ceiling."""
        return math.ceil(self.sample.capacity_for_ceiling / self.rate)

    def capacity_for_fraction(self, fraction: float, metric: str = "block") -> int:
        """Estimated smallest capacity (blocks) whose hits reach ``fraction`` of the ceiling."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise ScenarioError("fraction", fraction, "must be a number in (0, 1]")
        if metric not in ("block", "token"):
            raise ScenarioError("metric", metric, "allowed: block, token")
        hits = self.block_hits if metric == "block" else self.token_hits
        ceiling = self.infinite_block_hits if metric == "block" else self.infinite_token_hits
        caps = [math.ceil(d / self.rate) for d in self.sample.distances]
        if not caps:
            return 0
        i = bisect.bisect_left([hits(c) for c in caps], fraction * ceiling - 1e-9 * ceiling)
        return caps[min(i, len(caps) - 1)]

    def points(self, max_points: int = 200) -> list:
        """Up to ``max_points`` ``(capacity_blocks, block_hit_rate, token_hit_rate)`` estimates,
        log-spaced up to :attr:`capacity_for_ceiling` (as ``LRUCurve.points``)."""
        top = self.capacity_for_ceiling
        if top < 1:
            return []
        caps = sorted({max(1, round(top ** (k / (max_points - 1)))) for k in range(max_points)})
        return [(c, self.block_hit_rate(c), self.token_hit_rate(c)) for c in caps]

    def at(self, capacities_blocks: Sequence[int]) -> ReplayResult:
        """The estimate at fixed capacities as a ReplayResult (policy ``lru``, float hits)."""
        caps = tuple(capacities_blocks)
        return ReplayResult("lru", self.semantics, self.block_size, self.requests,
                            self.total_blocks, self.total_tokens, self.distinct_blocks, caps,
                            tuple(self.block_hits(c) for c in caps),
                            tuple(self.token_hits(c) for c in caps),
                            self.infinite_block_hits, self.infinite_token_hits)

    def minus(self, before: "SampledCurve") -> "SampledCurve":
        """The requests fed between two readings (for warm-up)."""
        return SampledCurve(curve_minus(self.sample, before.sample), self.rate,
                            self.requests - before.requests,
                            self.total_blocks - before.total_blocks,
                            self.total_tokens - before.total_tokens,
                            tuple(a.minus(b) for a, b in zip(self.levels, before.levels)),
                            self.floor)

    def to_dict(self) -> dict:
        """A summary in plain JSON types, as ``LRUCurve.to_dict`` plus the sampling figures."""
        out = {
            "semantics": self.semantics, "block_size": self.block_size,
            "requests": self.requests, "total_blocks": self.total_blocks,
            "total_tokens": self.total_tokens, "distinct_blocks": self.distinct_blocks,
            "infinite_block_hit_rate": self.infinite_block_hit_rate,
            "infinite_token_hit_rate": self.infinite_token_hit_rate,
            "capacity_blocks_for_ceiling": self.capacity_for_ceiling,
        }
        for pct in (50, 90, 99):
            out[f"capacity_blocks_for_{pct}pct_of_ceiling"] = self.capacity_for_fraction(pct / 100)
            out[f"capacity_blocks_for_{pct}pct_of_token_ceiling"] = \
                self.capacity_for_fraction(pct / 100, "token")
        out.update({"approximate": True, "sample_rate": self.rate,
                    "sample_rates": list(self.rates), "sample_floor_blocks": self.floor,
                    "sample_rate_bands": self.rate_bands(),
                    "min_reliable_capacity_blocks": self.min_reliable_capacity_blocks,
                    "sampled_requests": self.sample.requests,
                    "sampled_block_references": self.sample.total_blocks,
                    "sampled_distinct_blocks": self.sample.distinct_blocks})
        return out


class SampledReplay:
    """Incremental SHARDS replay: ``feed(requests)`` (the full trace), then ``result()`` for
    the :class:`SampledCurve`. At ``rate`` 1 every block is kept and the estimate equals the
    exact curve.

    Besides the sample at ``rate`` (replayed whole), the samples at the ladder's higher rates
    (:func:`ladder_rates`, up to ``max_rate``) are replayed with only their most recently used
    blocks kept, ``floor`` times the ratio to the rate below plus 2 (exact up to that many
    sampled blocks): they estimate the small capacities. Each block is hashed once; its hash says at which rates it is kept (the
    thresholds are nested)."""

    def __init__(self, block_size: int, rate: float, semantics: str = "engine",
                 salt: int = SAMPLE_SALT, max_rate: float | None = None,
                 floor: int = SAMPLE_FLOOR):
        self.rate = check_rate(rate)
        self.rates = ladder_rates(rate, max_rate)
        self.thresholds = tuple(sample_threshold(r) for r in self.rates)
        self.threshold = self.thresholds[0]
        self.floor = floor
        self.depths = ladder_depths(self.rates, floor)
        self.salt = salt & MASK64
        self.block_size = block_size
        self._runners = [LRUCurveReplay(block_size, semantics) for _ in self.rates]
        self.requests = 0
        self.total_blocks = 0
        self.total_tokens = 0

    def split(self, request: Request) -> list:
        """``request`` sampled at each rate of the ladder (``None`` where no block is kept): the
        request itself where every block is kept, else a :data:`SampledRequest`."""
        ids = request.hash_ids
        n = len(ids)
        kept = kept_with_hashes(ids, self.thresholds[-1], self.salt)
        if not kept:
            return [None] * len(self.thresholds)
        low = min(z for _, z in kept)
        out = []
        for th in self.thresholds:
            if low >= th:
                out.append(None)
                continue
            keep = [b for b, z in kept if z < th]
            if len(keep) == n:
                out.append(request)
            else:
                out.append(SampledRequest(sampled_input_length(
                    request.input_length, n, len(keep), keep[-1] == ids[-1], self.block_size),
                    tuple(keep)))
        return out

    def feed(self, requests: Iterable[Request]) -> int:
        """Count ``requests`` exactly and replay their samples; returns how many were fed."""
        bs = self.block_size
        parts = [[] for _ in self.rates]
        fed = 0
        split = self.split
        for r in requests:
            fed += 1
            n = len(r.hash_ids)
            if not n:
                continue
            self.total_blocks += n
            self.total_tokens += (n - 1) * bs + last_block_tokens(r.input_length, n, bs)
            for part, s in zip(parts, split(r)):
                if s is not None:
                    part.append(s)
        self.feed_sampled(parts, 0, 0, 0)
        self.requests += fed
        return fed

    def feed_sampled(self, sampled: Sequence[Sequence[Request]], requests: int, blocks: int,
                     tokens: int) -> None:
        """Replay requests sampled elsewhere (the page's JavaScript reader, with this
        selection): ``sampled[i]`` the requests sampled at ``rates[i]``, in order, standing for
        ``requests`` requests of the full trace with ``blocks`` block references and
        ``tokens`` tokens."""
        for i, (runner, part) in enumerate(zip(self._runners, sampled)):
            if part:
                runner.feed(part)
                if i:
                    runner.forget_beyond(self.depths[i])
        self.requests += requests
        self.total_blocks += blocks
        self.total_tokens += tokens

    def result(self) -> SampledCurve:
        """The estimate from everything fed so far."""
        def curve(runner, rate, levels=()):
            return SampledCurve(runner.result(), rate, self.requests, self.total_blocks,
                                self.total_tokens, levels, self.floor)
        levels = tuple(curve(run, r) for run, r in zip(self._runners[1:], self.rates[1:]))
        return curve(self._runners[0], self.rate, levels)


def replay_sampled(requests: Iterable[Request], rate: float, block_size: int = 512,
                   semantics: str = "engine", salt: int = SAMPLE_SALT,
                   max_rate: float | None = None) -> SampledCurve:
    """SHARDS replay of ``requests`` in one call."""
    runner = SampledReplay(block_size, rate, semantics, salt, max_rate)
    runner.feed(requests)
    return runner.result()
