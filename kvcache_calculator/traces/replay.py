"""Block-level replay of request traces under LRU, FIFO, LFU and Belady's optimal policy,
and the exact LRU hit-rate curve at every capacity in one pass.

Units. A *block* is one ``hash_ids`` entry (``block_size`` tokens; 512 in Mooncake traces,
16 in Bailian traces). Capacities are in blocks (``capacity_blocks``). Two hit rates:

- **block hit rate** = block hits / block references (docs/model.md §1, the way the Mooncake
  paper and the Alibaba "KVCache in the wild" paper count);
- **token hit rate** = hit tokens / prompt tokens, where a block counts ``block_size`` tokens,
  except the last block of a request, which counts its real tokens
  ``input_length - (len(hash_ids) - 1) * block_size`` (clamped to ``0..block_size`` when a
  trace's lengths and ``hash_ids`` disagree). The denominator is the same sum over all
  blocks, which equals ``input_length`` summed over requests when the trace is consistent.
  Unlike the analytic model's token hit rate, no "last prompt token is recomputed" rule is
  applied: a trace only says which blocks were reusable.

Two replay semantics (docs/model.md §10.3). LRU, FIFO and LFU replay through the simulator's
caches, the one eviction-policy family of :mod:`kvcache_calculator.sim.policies`:

- ``engine`` (default): a request hits the longest cached prefix of its ``hash_ids``, looked
  up before anything is inserted; then all its blocks are touched tail-first, so the head of
  the prompt is the most recently used (vLLM and SGLang behaviour). The family's pinning
  rule applies: no block of the request is evicted while it is served, and a request longer
  than the cache keeps its first ``capacity_blocks`` distinct blocks.
- ``independent``: each block is looked up and then touched in order, each hit counted on
  its own (the Mooncake paper's and libCacheSim's way): every block is a request of one
  block, so pinning only keeps the block being cached from being its own victim, and the
  hits are libCacheSim's LRU, FIFO and LFU hits (tested).

One-pass LRU (Mattson, Gecsei, Slutz and Traiger 1970, "Evaluation techniques for storage
hierarchies"): LRU has the inclusion property, so a block is in an LRU cache of ``C`` blocks
iff its stack distance (the number of distinct blocks used since its last use, itself
included) is at most ``C``. Each access gets a time; a time is *dead* once its block is used
again. The distance of a block last used at time ``p`` is ``(now - p) - dead(p, now)`` =
``(now - p) - total_dead + dead_before(p)``. Instead of the classic Fenwick tree over times
(O(log n) Python-level steps per update and per query), dead times are flags in a bytearray
with one running total per bucket of about sqrt(size) flags: marking a time dead is O(1),
and ``dead_before(p)`` is a sum over bucket totals plus one ``bytearray.count`` inside a
bucket, both done in C. The blocks of a prompt were usually last touched together, so after
the first block of a request ``dead_before`` is updated from the previous block's value by
counting only the flags between the two times. This is several times faster than a Fenwick
tree in CPython (see ``benchmarks/bench_replay.py``). A first use costs one dict insertion;
times are renumbered when the flags fill up, so the state stays proportional to the number
of distinct blocks, not to the trace length.
Under ``engine`` semantics a request's hit prefix at capacity ``C`` is the set of leading
blocks whose running maximum of stack distances (taken before the request's own touches)
is at most ``C``; histogramming that running maximum gives the exact prefix-hit curve.

Incremental use (the page replays in cooperative chunks): every replay is a class with
``feed(requests)`` (call it as often as you like) and ``result()``; :func:`replay_steps`
drives one in chunks and yields progress. The functions :func:`replay_lru_curve` and
:func:`replay` do it all in one call.
"""

from __future__ import annotations

import bisect
import heapq
import math
from itertools import accumulate, compress, islice
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.sim.policies import POLICY_CLASSES, make_cache
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.vllm_pool import VLLMBlockPool

__all__ = [
    "POLICIES",
    "SEMANTICS",
    "GIB",
    "LRUCurve",
    "LRUCurveReplay",
    "curve_from_histograms",
    "ReplayResult",
    "PolicyReplay",
    "BeladyReplay",
    "BeladySteps",
    "replay",
    "replay_lru_curve",
    "replay_steps",
    "last_block_tokens",
    "capacity_blocks_from_tokens",
    "capacity_blocks_from_gib",
]

POLICIES = ("lru", "fifo", "lfu", "belady")
SEMANTICS = ("engine", "independent")
GIB = 2 ** 30
#: bytes.translate table: a dead-time flag (1) to 0, a live one (0) to 1.
_LIVE = bytes.maketrans(b"\x00\x01", b"\x01\x00")


def _check_block_size(block_size) -> int:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ScenarioError("block_size", block_size, "must be an integer >= 1 (tokens per block)")
    return block_size


def _check_semantics(semantics) -> str:
    if semantics not in SEMANTICS:
        raise ScenarioError("semantics", semantics, "allowed: engine, independent")
    return semantics


def _check_capacities(capacities) -> tuple:
    out = []
    for c in capacities:
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ScenarioError("capacity_blocks", c, "must be an integer >= 0 (blocks)")
        out.append(c)
    return tuple(out)


def last_block_tokens(input_length: int, num_blocks: int, block_size: int) -> int:
    """Tokens the last block of a request counts for the token hit rate:
    ``input_length - (num_blocks - 1) * block_size``, clamped to ``0..block_size``."""
    if num_blocks == 0:
        return 0
    return min(block_size, max(0, input_length - (num_blocks - 1) * block_size))


def capacity_blocks_from_tokens(capacity_tokens: float, block_size: int) -> int:
    """Whole blocks that fit in ``capacity_tokens``: ``floor(capacity_tokens / block_size)``."""
    _check_block_size(block_size)
    if isinstance(capacity_tokens, bool) or not isinstance(capacity_tokens, (int, float)) \
            or not capacity_tokens >= 0 or math.isinf(capacity_tokens):
        raise ScenarioError("capacity_tokens", capacity_tokens, "must be a number >= 0 (tokens)")
    return int(capacity_tokens // block_size)


def capacity_blocks_from_gib(capacity_gib: float, kv_bytes_per_token: float,
                             block_size: int) -> int:
    """Whole blocks that fit in ``capacity_gib`` GiB of KV memory:
    ``floor(capacity_gib * 2**30 / (kv_bytes_per_token * block_size))`` (docs/model.md §3,
    with GiB = 2**30 bytes). ``kv_bytes_per_token`` is the bytes of one token over all layers
    at the chosen KV dtype, e.g. from ``architecture.kv_bytes_per_token``."""
    _check_block_size(block_size)
    if isinstance(capacity_gib, bool) or not isinstance(capacity_gib, (int, float)) \
            or not capacity_gib >= 0 or math.isinf(capacity_gib):
        raise ScenarioError("capacity_gib", capacity_gib, "must be a number >= 0 (GiB)")
    if isinstance(kv_bytes_per_token, bool) or not isinstance(kv_bytes_per_token, (int, float)) \
            or not kv_bytes_per_token > 0 or math.isinf(kv_bytes_per_token):
        raise ScenarioError("kv_bytes_per_token", kv_bytes_per_token, "must be a number > 0")
    return int(capacity_gib * GIB // (kv_bytes_per_token * block_size))


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class ReplayResult:
    """Hits at fixed capacities. Rates are 0-1 fractions; see the module docstring for the
    token-hit definition. ``infinite_*`` are the ceilings (an unbounded cache)."""

    policy: str
    semantics: str
    block_size: int
    requests: int
    total_blocks: int
    total_tokens: int
    distinct_blocks: int
    capacity_blocks: tuple
    block_hits: tuple
    token_hits: tuple
    infinite_block_hits: int
    infinite_token_hits: int

    @property
    def block_hit_rate(self) -> list:
        """Block hit rate at each capacity."""
        return [h / self.total_blocks if self.total_blocks else 0.0 for h in self.block_hits]

    @property
    def token_hit_rate(self) -> list:
        """Token hit rate at each capacity."""
        return [h / self.total_tokens if self.total_tokens else 0.0 for h in self.token_hits]

    @property
    def infinite_block_hit_rate(self) -> float:
        """Block hit rate of an unbounded cache (the ceiling)."""
        return self.infinite_block_hits / self.total_blocks if self.total_blocks else 0.0

    @property
    def infinite_token_hit_rate(self) -> float:
        """Token hit rate of an unbounded cache (the ceiling)."""
        return self.infinite_token_hits / self.total_tokens if self.total_tokens else 0.0

    def to_dict(self) -> dict:
        """Plain JSON types: the inputs, the lists per capacity and the ceilings."""
        return {
            "policy": self.policy, "semantics": self.semantics, "block_size": self.block_size,
            "requests": self.requests, "total_blocks": self.total_blocks,
            "total_tokens": self.total_tokens, "distinct_blocks": self.distinct_blocks,
            "capacity_blocks": list(self.capacity_blocks),
            "capacity_tokens": [c * self.block_size for c in self.capacity_blocks],
            "block_hits": list(self.block_hits), "token_hits": list(self.token_hits),
            "block_hit_rate": self.block_hit_rate, "token_hit_rate": self.token_hit_rate,
            "infinite_block_hit_rate": self.infinite_block_hit_rate,
            "infinite_token_hit_rate": self.infinite_token_hit_rate,
        }


@dataclass(frozen=True)
class LRUCurve:
    """The exact LRU hit counts at every capacity, from one pass.

    ``distances`` are the sorted distinct finite stack distances seen (blocks), and
    ``cum_block_hits[i]`` / ``cum_token_hits[i]`` the hits of a cache of ``distances[i]``
    blocks; between two distances the counts are flat.
    """

    semantics: str
    block_size: int
    requests: int
    total_blocks: int
    total_tokens: int
    distinct_blocks: int
    distances: tuple
    cum_block_hits: tuple
    cum_token_hits: tuple

    def block_hits(self, capacity_blocks: int) -> int:
        """Block hits of an LRU cache of ``capacity_blocks`` blocks."""
        i = bisect.bisect_right(self.distances, capacity_blocks)
        return self.cum_block_hits[i - 1] if i else 0

    def token_hits(self, capacity_blocks: int) -> int:
        """Token hits of an LRU cache of ``capacity_blocks`` blocks."""
        i = bisect.bisect_right(self.distances, capacity_blocks)
        return self.cum_token_hits[i - 1] if i else 0

    def block_hit_rate(self, capacity_blocks: int) -> float:
        """Block hit rate at ``capacity_blocks``."""
        return self.block_hits(capacity_blocks) / self.total_blocks if self.total_blocks else 0.0

    def token_hit_rate(self, capacity_blocks: int) -> float:
        """Token hit rate at ``capacity_blocks``."""
        return self.token_hits(capacity_blocks) / self.total_tokens if self.total_tokens else 0.0

    @property
    def infinite_block_hits(self) -> int:
        """Block hits of an unbounded cache."""
        return self.cum_block_hits[-1] if self.cum_block_hits else 0

    @property
    def infinite_token_hits(self) -> int:
        """Token hits of an unbounded cache."""
        return self.cum_token_hits[-1] if self.cum_token_hits else 0

    @property
    def infinite_block_hit_rate(self) -> float:
        """The block-hit ceiling (unbounded cache)."""
        return self.infinite_block_hits / self.total_blocks if self.total_blocks else 0.0

    @property
    def infinite_token_hit_rate(self) -> float:
        """The token-hit ceiling (unbounded cache)."""
        return self.infinite_token_hits / self.total_tokens if self.total_tokens else 0.0

    @property
    def capacity_for_ceiling(self) -> int:
        """The smallest capacity (blocks) that reaches the ceiling."""
        return self.distances[-1] if self.distances else 0

    def capacity_for_fraction(self, fraction: float, metric: str = "block") -> int:
        """Smallest capacity (blocks) whose hits reach ``fraction`` (0-1] of the ceiling's,
        for ``metric`` ``"block"`` or ``"token"`` hits."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) \
                or not 0 < fraction <= 1:
            raise ScenarioError("fraction", fraction, "must be a number in (0, 1]")
        if metric not in ("block", "token"):
            raise ScenarioError("metric", metric, "allowed: block, token")
        cum = self.cum_block_hits if metric == "block" else self.cum_token_hits
        if not cum:
            return 0
        need = fraction * cum[-1]
        i = bisect.bisect_left(cum, need - 1e-9 * cum[-1])
        return self.distances[min(i, len(cum) - 1)]

    def at(self, capacities_blocks: Sequence[int]) -> ReplayResult:
        """The curve read at fixed capacities, as a :class:`ReplayResult` (policy ``lru``)."""
        caps = _check_capacities(capacities_blocks)
        return ReplayResult("lru", self.semantics, self.block_size, self.requests,
                            self.total_blocks, self.total_tokens, self.distinct_blocks, caps,
                            tuple(self.block_hits(c) for c in caps),
                            tuple(self.token_hits(c) for c in caps),
                            self.infinite_block_hits, self.infinite_token_hits)

    def points(self, max_points: int = 200) -> list:
        """Up to ``max_points`` ``(capacity_blocks, block_hit_rate, token_hit_rate)`` tuples,
        spaced evenly on a log scale of capacity (for plotting)."""
        if not self.distances:
            return []
        top = self.distances[-1]
        caps = sorted({max(1, round(top ** (k / (max_points - 1)))) for k in range(max_points)})
        return [(c, self.block_hit_rate(c), self.token_hit_rate(c)) for c in caps]

    def to_dict(self) -> dict:
        """A summary in plain JSON types (the full curve is available via ``points()``)."""
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
        return out


# ---------------------------------------------------------------------------------------
# One-pass LRU


class LRUCurveReplay:
    """Incremental one-pass LRU replay: ``feed(requests)`` any number of times, then
    ``result()`` for the :class:`LRUCurve`. See the module docstring for the algorithm.

    State: one time per distinct block (a dict), a bytearray of at most
    ``max(2 * distinct_blocks + longest request, 2**16)`` dead-time flags with one total per
    bucket of about ``sqrt`` of that many flags, the block of each of those times (a list,
    so a renumbering needs no sort), and two histograms of at most ``distinct_blocks + 1``
    entries.

    A renumbering (the flags full) rebuilds the dict: O(times), in C, about 0.1 s at a
    million blocks in CPython. With ``sliced=True`` (the lab page) :meth:`feed` does not do it: the
    request that needs it and those after it wait (:attr:`busy`) while :meth:`work` does
    it in slices of :data:`_SLICE` blocks, then replays them; the curve is the same.
    """

    _MIN_SIZE = 1 << 16
    #: Queries closer than this to the previous one (in access times) are counted directly.
    _NEAR = 4096
    _MIN_SHIFT = 8
    #: Blocks (or time slots) a slice of a renumbering handles (:meth:`work`).
    _SLICE = 4096

    def __init__(self, block_size: int, semantics: str = "engine", head_reuse: bool = True,
                 sliced: bool = False):
        self.block_size = _check_block_size(block_size)
        self.semantics = _check_semantics(semantics)
        self.head_reuse = bool(head_reuse)
        #: Renumber in slices through :meth:`work` (the page) rather than inside :meth:`feed`.
        self.sliced = bool(sliced)
        self._renumber: Iterator[None] | None = None
        self._waiting: list = []
        self._unhashed = 0       # engine: blocks without a hash waiting at the free queue's head
        self._ghosts = 0
        self.requests = 0
        self.total_blocks = 0
        self.total_tokens = 0
        self._last: dict = {}
        self._owner: list = []   # the block given each time (_owner[t]), for renumbering
        self._stale: list = []   # live times no block holds any more (a recomputed last block)
        self._now = 0
        self._dead = 0
        self._hist_blocks = [0] * 1024
        self._hist_tokens = [0] * 1024
        self._reset_counts(self._MIN_SIZE)

    def _reset_counts(self, size: int) -> None:
        self._size = size
        self._shift = max(self._MIN_SHIFT, (size.bit_length() + 1) // 2)
        self._flags = bytearray(size)
        self._buckets = [0] * ((size >> self._shift) + 1)
        self._dead = 0

    def _make_room(self, needed: int) -> None:
        """Renumber the live times 0..D-1 and clear the dead flags so ``needed`` more fit."""
        for _ in self._renumber_slices(needed):
            pass

    def _renumber_slices(self, needed: int) -> Iterator[None]:
        """:meth:`_make_room` in slices of at most :data:`_SLICE` times, yielding between
        them. No sort: ``_owner[t]`` is the block given time ``t``, so the live times' blocks
        in time order are those of the times neither dead nor stale (``itertools.compress``,
        in C), and their ranks are the new times, written over the old ones. Nothing may be fed
        until it is exhausted."""
        now = self._now
        step = self._SLICE
        live = self._flags[:now].translate(_LIVE)
        for t in self._stale:
            live[t] = 0
        owner = self._owner
        order: list = []
        for a in range(0, now, step):
            order += compress(owner[a:a + step], live[a:a + step])
            yield
        del live
        last = self._last        # the same keys: updated in place, so the dict never resizes
        for a in range(0, len(order), step):
            last.update(zip(order[a:a + step], range(a, a + step)))
            yield
        self._owner = order
        self._stale = []
        self._now = len(order)
        self._reset_counts(max(self._MIN_SIZE, 2 * len(order) + needed))

    def forget_beyond(self, depth: int) -> None:
        """Once more than ``2 * depth`` blocks are held, forget all but the ``depth`` most
        recently used (a later use of a forgotten one is a miss): the curve stays exact at
        capacities up to ``depth`` blocks, with at most ``2 * depth`` blocks of state (the
        sampled replay's small-capacity rates use it). The kept blocks are renumbered
        0..depth-1 at once (a sort of at most ``2 * depth`` blocks)."""
        last = self._last
        if len(last) > 2 * depth:
            self._finish()
            keep = sorted(last, key=last.__getitem__)[-depth:]
            self._last = {b: i for i, b in enumerate(keep)}
            self._owner = keep
            self._stale = []
            self._now = len(keep)
            self._reset_counts(max(self._MIN_SIZE, 2 * len(keep)))

    @property
    def busy(self) -> bool:
        """With ``sliced``: a renumbering is due or under way, or requests wait for it; call
        :meth:`work` until False (:meth:`result` finishes the work itself)."""
        return self._renumber is not None or bool(self._waiting)

    @property
    def renumbering(self) -> bool:
        """A renumbering is under way (:meth:`work` does its slices)."""
        return self._renumber is not None

    def work(self, units: int) -> bool:
        """Do up to ``units`` slices of the renumbering due (:data:`_SLICE` blocks each), or
        replay up to ``units`` of the requests waiting for it; returns :attr:`busy`."""
        units = max(1, units)
        if self._renumber is not None:
            for _ in range(units):
                if next(self._renumber, True):
                    self._renumber = None
                    break
        elif self._waiting:
            batch = self._waiting[:units]
            del self._waiting[:units]
            self._replay(batch)
        return self.busy

    def _finish(self) -> None:
        while self.busy:
            self.work(1 << 20)

    def feed(self, requests: Iterable[Request]) -> int:
        """Replay ``requests`` in order; returns how many were fed. With ``sliced``, a
        renumbering the feed needs is not done here: the requests from there on wait
        (:attr:`busy`) and :meth:`work` does it in slices, then replays them."""
        if self.busy:
            before = len(self._waiting)
            self._waiting.extend(requests)
            return len(self._waiting) - before
        before = len(self._waiting)
        fed = self._replay(requests)
        return fed + len(self._waiting) - before

    def _replay(self, requests: Iterable[Request]) -> int:
        """Replay ``requests`` in order; returns how many were replayed (with ``sliced``, the
        rest from the first one needing a renumbering waits)."""
        bs = self.block_size
        engine = self.semantics == "engine"
        hb = self._hist_blocks
        ht = self._hist_tokens
        fed = 0
        total_blocks = self.total_blocks
        total_tokens = self.total_tokens
        last = self._last
        lget = last.get
        owner_extend = self._owner.extend
        stale = self._stale
        flags = self._flags
        count = flags.count
        buckets = self._buckets
        size = self._size
        now = self._now
        dead = self._dead
        SH = self._shift
        NEAR = self._NEAR
        unhashed = self._unhashed
        it = iter(requests)
        for req in it:
            ids = req.hash_ids
            n = len(ids)
            if not n:
                fed += 1
                continue
            lastt = req.input_length - (n - 1) * bs
            if lastt > bs:
                lastt = bs
            elif lastt < 0:
                lastt = 0
            # engine before vLLM 0.23: blocks without a hash take a time too
            extra = 0 if not engine or self.head_reuse else max(1, -(-req.input_length // bs) - n + 1)
            if now + n + extra > size:
                self._now, self._dead = now, dead
                if self.sliced:
                    self._waiting[:0] = [req, *it]
                    self._renumber = self._renumber_slices(n + extra)
                    break
                self._make_room(n + extra)
                last, flags, buckets, size, now, dead = (self._last, self._flags, self._buckets,
                                                         self._size, self._now, self._dead)
                lget = last.get
                owner_extend = self._owner.extend
                stale = self._stale
                count = flags.count
                SH = self._shift
            fed += 1
            total_blocks += n
            total_tokens += (n - 1) * bs + lastt
            if len(hb) <= len(last) + n + 2 + unhashed:
                grow = len(last) + n + unhashed + 1024 - len(hb)
                hb.extend([0] * grow)
                ht.extend([0] * grow)
            # One pass over the blocks, head first. ``engine``: the cached prefix, looked up
            # before any of the request's touches, up to its first miss. ``independent``:
            # every block is looked up, then touched at once.
            q = -1 << 62       # the previous lookup's time, and s = dead times before it
            s = 0
            m = 0              # engine: the running maximum of the prefix's distances
            p = None
            lookups = ids
            if engine:
                # vLLM: only full blocks have a hash, and at most (input_length - 1) // bs of
                # them can hit (the last token is recomputed for its logits)
                full = min(n, req.input_length // bs)
                lookups = ids[:min(full, (req.input_length - 1) // bs)]
            for b in lookups:
                p = lget(b)
                if p is None:
                    if engine:
                        break
                    last[b] = now
                    now += 1
                    continue
                # Stack distance: (now - p) - (dead times after p), with the dead times
                # before p counted from q's: the blocks of a prompt were usually last
                # touched together, at nearby times.
                if p > q:
                    if p - q < NEAR:
                        s += count(1, q, p)
                    else:
                        k = p >> SH
                        s = sum(buckets[:k]) + count(1, k << SH, p)
                elif q - p < NEAR:
                    s -= count(1, p, q)
                else:
                    k = p >> SH
                    s = sum(buckets[:k]) + count(1, k << SH, p)
                q = p
                r = now - p - dead + s
                if engine:
                    if r > m:
                        m = r
                    # a hit iff m <= blocks - 1 (the null block) - unhashed blocks waiting
                    r = m + 1 + unhashed
                else:
                    flags[p] = 1
                    buckets[p >> SH] += 1
                    dead += 1
                    last[b] = now
                    now += 1
                hb[r] += 1
                ht[r] += bs
            if engine:
                # The touches, tail first, of the full blocks; the blocks without a hash (a
                # partial last block) either wait at the free queue's head, reused by the
                # next request's first new block (vLLM 0.23 and later), or join the queue
                # like any freed block and only take a slot (before 0.23: a key of their own).
                needed = -(-req.input_length // bs)
                plain = max(0, needed - full)
                if self.head_reuse:
                    unhashed = max(0, unhashed - (needed - len(lookups))) + plain
                    touches = ids[:full]
                else:
                    touches = list(ids[:full])
                    for _ in range(plain):
                        self._ghosts += 1
                        touches.append(("unhashed", self._ghosts))
                # A prompt of whole blocks recomputes its last block (the hit cap) into a new
                # block with the same hash; vLLM keeps the old copy where it was, so its time
                # stays live (it takes a slot until LRU reaches it).
                dup = full - 1 if full and len(lookups) < full and ids[full - 1] in last else -1
                for i in range(len(touches) - 1, -1, -1):
                    b = touches[i]
                    p = lget(b)
                    if p is not None:
                        if i != dup:
                            flags[p] = 1
                            buckets[p >> SH] += 1
                            dead += 1
                        else:
                            stale.append(p)
                    last[b] = now
                    now += 1
                owner_extend(reversed(touches))
            else:
                owner_extend(ids)        # each block took the next time, in order
                if p is not None:        # the last block was a hit: it has lastt tokens
                    ht[r] += lastt - bs
        self._now, self._dead, self._unhashed = now, dead, unhashed
        self.total_blocks = total_blocks
        self.total_tokens = total_tokens
        self.requests += fed
        return fed

    def result(self) -> LRUCurve:
        """The curve of everything fed so far (feeding may continue afterwards); with
        ``sliced``, any work still due is done first."""
        self._finish()
        return curve_from_histograms(self.semantics, self.block_size, self.requests,
                                     self.total_blocks, self.total_tokens, len(self._last),
                                     self._hist_blocks, self._hist_tokens)


def curve_from_histograms(semantics: str, block_size: int, requests: int, total_blocks: int,
                          total_tokens: int, distinct_blocks: int,
                          hist_blocks: Sequence[int], hist_tokens: Sequence[int]) -> LRUCurve:
    """The :class:`LRUCurve` of histograms of hits by index ``d`` (hits of a cache of ``d``
    blocks and not of ``d - 1``), as :class:`LRUCurveReplay` counts them (and the page's
    worker for the sampled replay's higher rate, ``site/trace-sampler.js``)."""
    hb = list(hist_blocks)
    # the distances seen and the running sums there, each in one pass in C
    return LRUCurve(semantics, block_size, requests, total_blocks, total_tokens,
                    distinct_blocks, tuple(compress(range(len(hb)), hb)),
                    tuple(compress(accumulate(hb), hb)),
                    tuple(compress(accumulate(hist_tokens), hb)))


# ---------------------------------------------------------------------------------------
# Fixed-capacity replay (LRU, FIFO, LFU) and Belady


class PolicyReplay:
    """Incremental replay under ``policy`` (``lru``, ``fifo``, ``lfu``) at each of
    ``capacities_blocks``, one cache per capacity; ``feed(requests)`` then ``result()``.

    ``independent`` semantics touches each block in the caches of
    :mod:`kvcache_calculator.sim.policies` (the simulator's). ``engine`` semantics follows vLLM's
    block pool (docs/engines.md §5): LRU is :class:`~kvcache_calculator.traces.vllm_pool.VLLMBlockPool`
    itself (null block, full blocks only, the hit cap, tail-first frees); FIFO and LFU, which
    vLLM does not have, serve the request's full blocks with the family's ``access`` (its
    pinning rule) in a cache one block smaller (the null block), hits capped as vLLM caps them.
    For Belady's policy use :class:`BeladyReplay`; for LRU at many capacities
    :class:`LRUCurveReplay` is much faster and gives the same numbers.
    """

    def __init__(self, policy: str, capacities_blocks: Sequence[int], block_size: int,
                 semantics: str = "engine"):
        if policy not in POLICY_CLASSES:
            raise ScenarioError("policy", policy, "allowed here: lru, fifo, lfu "
                                "(belady has its own offline replay)")
        self.policy = policy
        self.block_size = _check_block_size(block_size)
        self.semantics = _check_semantics(semantics)
        self.capacities_blocks = _check_capacities(capacities_blocks)
        #: The caches, one per capacity (read them; only :meth:`feed` changes them).
        if self.semantics == "engine" and policy == "lru":
            self.caches = tuple(VLLMBlockPool(max(1, c), self.block_size) for c in self.capacities_blocks)
        elif self.semantics == "engine":
            self.caches = tuple(make_cache(policy, max(0, c - 1)) for c in self.capacities_blocks)
        else:
            self.caches = tuple(make_cache(policy, c) for c in self.capacities_blocks)
        self._block_hits = [0] * len(self.caches)
        self._token_hits = [0] * len(self.caches)
        self._seen: set = set()
        self.infinite_block_hits = 0
        self.infinite_token_hits = 0
        self.requests = 0
        self.total_blocks = 0
        self.total_tokens = 0

    def feed(self, requests: Iterable[Request]) -> int:
        """Replay ``requests`` in order; returns how many were fed."""
        bs = self.block_size
        engine = self.semantics == "engine"
        seen = self._seen
        block_hits, token_hits = self._block_hits, self._token_hits
        fed = 0
        for req in requests:
            fed += 1
            ids = req.hash_ids
            n = len(ids)
            if not n:
                continue
            lastt = last_block_tokens(req.input_length, n, bs)
            self.total_blocks += n
            self.total_tokens += (n - 1) * bs + lastt
            # The unbounded cache.
            if engine:
                full = min(n, req.input_length // bs)
                limit = min(full, (req.input_length - 1) // bs)
                k = 0
                while k < limit and ids[k] in seen:
                    k += 1
                self.infinite_block_hits += k
                self.infinite_token_hits += k * bs
                seen.update(ids[:full])
            else:
                for i, b in enumerate(ids):
                    if b in seen:
                        self.infinite_block_hits += 1
                        self.infinite_token_hits += bs if i < n - 1 else lastt
                    else:
                        seen.add(b)
            for c, cache in enumerate(self.caches):
                if engine and self.policy == "lru":
                    k = cache.serve(ids, req.input_length) // bs
                    block_hits[c] += k
                    token_hits[c] += k * bs
                elif engine:
                    k = min(cache.access(ids[:full]), limit) if full else 0
                    block_hits[c] += k
                    token_hits[c] += k * bs
                else:
                    touch = cache.touch
                    for i, b in enumerate(ids):
                        if touch(b):
                            block_hits[c] += 1
                            token_hits[c] += bs if i < n - 1 else lastt
        self.requests += fed
        return fed

    def result(self) -> ReplayResult:
        """Hits of everything fed so far."""
        return ReplayResult(self.policy, self.semantics, self.block_size, self.requests,
                            self.total_blocks, self.total_tokens, len(self._seen),
                            self.capacities_blocks, tuple(self._block_hits),
                            tuple(self._token_hits), self.infinite_block_hits,
                            self.infinite_token_hits)


class BeladyReplay:
    """Belady's offline optimal policy (MIN; Belady 1966): on a miss with a full cache,
    evict the cached block whose next use is farthest in the future (possibly the block just
    inserted, which amounts to not caching it).

    ``independent`` semantics: "next use" is the next reference of the block, and MIN is the
    optimal block hit count at each capacity (the upper bound for every policy).
    ``engine`` semantics: "next use" is the index of the next *request* containing the block,
    ties broken by evicting the block deeper in the prompt first, so that (with prefix
    hashes) a cached block's prefix stays cached. This is the natural prefix-aware analogue
    of MIN, an upper reference for online policies rather than a proven optimum: on
    prefix-hashed traces (a block id implies its whole prefix, as in Mooncake and Bailian
    traces) it was never below LRU, FIFO or LFU in thousands of random trials, while on
    arbitrary id lists, where a later block may be cached without its prefix, it can be.

    Offline: ``feed`` only stores the requests' block ids and token counts; ``result()`` does
    the work in two passes (memory proportional to the trace's block references).
    """

    def __init__(self, capacities_blocks: Sequence[int], block_size: int,
                 semantics: str = "engine"):
        self.block_size = _check_block_size(block_size)
        self.semantics = _check_semantics(semantics)
        self.capacities_blocks = _check_capacities(capacities_blocks)
        self._requests: list = []

    def feed(self, requests: Iterable[Request]) -> int:
        """Store ``requests`` for the offline replay; returns how many were fed."""
        bs = self.block_size
        before = len(self._requests)
        for r in requests:
            n = len(r.hash_ids)
            self._requests.append((r.hash_ids, last_block_tokens(r.input_length, n, bs)))
        return len(self._requests) - before

    def result(self) -> ReplayResult:
        """Run MIN at every capacity over the stored requests (:class:`BeladySteps` each)."""
        runs = []
        for cap in self.capacities_blocks or (0,):
            steps = BeladySteps(self._requests, cap, self.block_size, self.semantics)
            while not steps.step(max(1, len(self._requests))):
                pass
            runs.append(steps)
        first = runs[0]
        hits = runs if self.capacities_blocks else []
        return ReplayResult("belady", self.semantics, self.block_size, len(self._requests),
                            first.total_blocks, first.total_tokens, len(first._seen),
                            self.capacities_blocks, tuple(r.block_hits for r in hits),
                            tuple(r.token_hits for r in hits),
                            first.inf_block_hits, first.inf_token_hits)


class BeladySteps:
    """Belady's MIN at one capacity (see :class:`BeladyReplay` for both semantics), resumable:
    a backward pass computing each block's next use, then the forward pass, each cut into
    steps of ``units`` requests so a page can yield between them. ``result()`` once
    :attr:`done`."""

    def __init__(self, requests: list, capacity_blocks: int, block_size: int,
                 semantics: str = "engine"):
        self.requests = requests          # [(hash_ids, last block tokens)]
        self.capacity = capacity_blocks
        self.block_size = block_size
        self.engine = semantics == "engine"
        self.semantics = semantics
        n = len(requests)
        self._width = max((len(ids) for ids, _ in requests), default=0) + 1
        self._next_keys: list = [None] * n
        self._nxt: dict = {}
        self._back = n - 1                 # next request of the backward pass
        self._pos = sum(len(ids) for ids, _ in requests)
        self._fwd = 0                      # next request of the forward pass
        self._cached: dict = {}
        self._heap: list = []
        self._seen: set = set()
        self.block_hits = self.token_hits = 0
        self.inf_block_hits = self.inf_token_hits = 0
        self.total_blocks = self.total_tokens = 0
        self.done = n == 0

    @property
    def progress(self) -> float:
        """0-1 over both passes."""
        n = len(self.requests)
        if self.done or not n:
            return 1.0
        return ((n - 1 - self._back) + self._fwd) / (2 * n)

    def step(self, units: int) -> bool:
        """Process up to ``units`` requests of the current pass; returns :attr:`done`."""
        if self.done:
            return True
        if self._back >= 0:
            self._backward(max(1, units))
        else:
            self._forward(max(1, units))
        return self.done

    def _backward(self, units: int) -> None:
        reqs, nxt, width, out = self.requests, self._nxt, self._width, self._next_keys
        never = math.inf
        stop = max(-1, self._back - units)
        for r in range(self._back, stop, -1):
            ids = reqs[r][0]
            if self.engine:
                out[r] = [nxt.get(b, never) for b in ids]
                for i, b in enumerate(ids):
                    key = r * width + i
                    old = nxt.get(b)
                    if old is None or old > key or old // width != r:
                        nxt[b] = key
            else:
                keys = [never] * len(ids)
                pos = self._pos
                for i in range(len(ids) - 1, -1, -1):
                    pos -= 1
                    b = ids[i]
                    keys[i] = nxt.get(b, never)
                    nxt[b] = pos
                self._pos = pos
                out[r] = keys
        self._back = stop
        if self._back < 0:
            self._nxt = {}

    def _forward(self, units: int) -> None:
        bs, engine, cap = self.block_size, self.engine, self.capacity
        cached, seen = self._cached, self._seen
        heap = self._heap
        bh, th = self.block_hits, self.token_hits
        stop = min(len(self.requests), self._fwd + units)
        for r in range(self._fwd, stop):
            ids, lastt = self.requests[r]
            keys = self._next_keys[r]
            self._next_keys[r] = None
            n = len(ids)
            if not n:
                continue
            self.total_blocks += n
            self.total_tokens += (n - 1) * bs + lastt
            if engine:
                k = 0
                while k < n and ids[k] in cached:
                    k += 1
                bh += k
                th += k * bs if k < n else (n - 1) * bs + lastt
                k = 0
                while k < n and ids[k] in seen:
                    k += 1
                self.inf_block_hits += k
                self.inf_token_hits += k * bs if k < n else (n - 1) * bs + lastt
                seen.update(ids)
                order = range(n - 1, -1, -1)
            else:
                for i, b in enumerate(ids):
                    if b in seen:
                        self.inf_block_hits += 1
                        self.inf_token_hits += bs if i < n - 1 else lastt
                    else:
                        seen.add(b)
                order = range(n)
            for i in order:
                b = ids[i]
                key = keys[i]
                if not engine and b in cached:
                    bh += 1
                    th += bs if i < n - 1 else lastt
                if cap <= 0:
                    continue
                cached[b] = key
                heapq.heappush(heap, (-key, b))
                while len(cached) > cap:
                    negkey, victim = heapq.heappop(heap)
                    if cached.get(victim) == -negkey:
                        del cached[victim]
                if len(heap) > 4 * cap + 1024:
                    heap = [(-v, blk) for blk, v in cached.items()]
                    heapq.heapify(heap)
        self._heap = heap
        self.block_hits, self.token_hits = bh, th
        self._fwd = stop
        if stop >= len(self.requests):
            self.done = True

    def result(self) -> ReplayResult:
        """The :class:`~kvcache_calculator.traces.replay.ReplayResult` (policy ``belady``)."""
        if not self.done:
            raise ScenarioError("belady", "unfinished", "call step() until done first")
        return ReplayResult("belady", self.semantics, self.block_size, len(self.requests),
                            self.total_blocks, self.total_tokens, len(self._seen),
                            (self.capacity,), (self.block_hits,), (self.token_hits,),
                            self.inf_block_hits, self.inf_token_hits)



# ---------------------------------------------------------------------------------------
# Convenience


def replay_steps(runner, requests: Iterable[Request], chunk_requests: int = 2000) -> Iterator[int]:
    """Feed ``requests`` to ``runner`` (any replay class here) ``chunk_requests`` at a time,
    yielding the running count of requests after each chunk, so a caller (the page) can
    update a progress bar or yield to its event loop between chunks. Read ``runner.result()``
    when it is exhausted."""
    if isinstance(chunk_requests, bool) or not isinstance(chunk_requests, int) \
            or chunk_requests < 1:
        raise ScenarioError("chunk_requests", chunk_requests, "must be an integer >= 1")
    it = iter(requests)
    done = 0
    while True:
        chunk = []
        for r in it:
            chunk.append(r)
            if len(chunk) >= chunk_requests:
                break
        if not chunk:
            return
        done += runner.feed(chunk)
        yield done


def replay_lru_curve(requests: Iterable[Request], capacities_blocks: Sequence[int] | None = None,
                     block_size: int = 512, semantics: str = "engine"):
    """One-pass exact LRU replay. Returns the :class:`LRUCurve`, or, when
    ``capacities_blocks`` is given, the :class:`ReplayResult` read off it at those
    capacities."""
    runner = LRUCurveReplay(block_size, semantics)
    runner.feed(requests)
    curve = runner.result()
    return curve if capacities_blocks is None else curve.at(capacities_blocks)


def replay(requests: Iterable[Request], policy: str, capacities_blocks: Sequence[int],
           block_size: int = 512, semantics: str = "engine") -> ReplayResult:
    """Replay ``requests`` under ``policy`` (lru, fifo, lfu, belady) at each capacity (blocks).
    LRU uses the one-pass curve; the others one cache per capacity."""
    if policy not in POLICIES:
        raise ScenarioError("policy", policy, "allowed: lru, fifo, lfu, belady")
    if policy == "lru":
        return replay_lru_curve(requests, capacities_blocks, block_size, semantics)
    if policy == "belady":
        runner = BeladyReplay(capacities_blocks, block_size, semantics)
    else:
        runner = PolicyReplay(policy, capacities_blocks, block_size, semantics)
    runner.feed(requests)
    return runner.result()
