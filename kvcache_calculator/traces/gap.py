"""Why is the hit rate low: the gap to 100 % split into its causes, for one trace.

For a trace, ``N`` instances of ``C`` blocks each and a routing, in token hit rate (0-1
fractions; x100 for points):

- ``ceiling``: an unbounded single cache (every prefix block seen before hits);
- ``optimum``: the offline optimum of a single cache of ``N * C`` blocks, the fleet's memory
  pooled (:class:`PrefixBelady`);
- ``lru``: an LRU cache of ``N * C`` blocks (the replay of
  :mod:`kvcache_calculator.traces.replay`);
- ``fleet``: ``N`` LRU caches of ``C`` blocks under the routing
  (:mod:`kvcache_calculator.traces.routing`).

The parts, each >= 0, that sum to exactly 1:

    1 = no_reuse + capacity + policy + routing + hit
    no_reuse = 1 - ceiling          (the traffic never repeats these tokens)
    capacity = ceiling - optimum'   (even the best offline policy lacks room)
    policy   = optimum' - lru'      (LRU's choices against the offline optimum)
    routing  = lru' - fleet         (splitting the memory over instances and routing)
    hit      = fleet

with ``lru' = max(lru, fleet)`` and ``optimum' = min(ceiling, max(optimum, lru'))``. The
clamps only act when a raw difference is negative: the optimum here is a heuristic for
prefix hits (it is proved optimal only for block hits on prefix-closed traces, see
:class:`PrefixBelady`), and ``N`` small caches under a lucky routing can beat one pooled LRU
(LRU is not optimal either). Every clamp is reported in ``clipped`` with its size. With one
instance ``routing`` is 0.

The same split is given per prompt-length bucket (requests grouped by ``input_length``), and
beside it the reuse-time histogram: for every reference to a block seen before, the time since
its previous reference. The share of reuses within the characteristic time ``T`` (the age at
which LRU evicts a block, Che's approximation) is about the share an LRU cache of that ``T``
can hit.

Warm-up: requests before ``warmup_requests`` are replayed but not counted.

:func:`explain_gap_steps` is :func:`explain_gap` in steps (a generator yielding once per request
of each pass, for a page that must not freeze); :func:`drain` runs such a generator to its
result.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import OrderedDict
from array import array
from dataclasses import dataclass
from typing import Iterable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.steps import drain
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import PolicyReplay, last_block_tokens
from kvcache_calculator.traces.routing import check_instances, make_router

__all__ = [
    "PROMPT_BUCKET_EDGES",
    "REUSE_EDGES_S",
    "PrefixBelady",
    "prefix_belady_hits",
    "ReuseTimes",
    "measure_characteristic_time_s",
    "split_gap",
    "BucketHits",
    "bucket_of",
    "RequestHits",
    "fleet_request_hits",
    "fleet_request_hits_steps",
    "fleet_bucket_hits",
    "optimum_request_hits",
    "optimum_bucket_hits",
    "sum_by_bucket",
    "GapResult",
    "drain",
    "explain_gap",
    "explain_gap_steps",
    "explain_gap_passes",
]

#: Upper edges (tokens, exclusive) of the prompt-length buckets; the last bucket is open.
PROMPT_BUCKET_EDGES = (1024, 4096, 16384, 65536)
#: Upper edges (seconds, inclusive) of the reuse-time histogram: 1 ms to 10**6 s, 5 per decade.
REUSE_EDGES_S = tuple(10 ** (k / 5) for k in range(-15, 31))


# ---------------------------------------------------------------------------------------
# The offline optimum


class PrefixBelady:
    """Prefix-aware Belady (MIN) with bypass under the ``engine`` rules, one capacity,
    per-request hits.

    The rules are those of the replay's ``engine`` semantics (vLLM's block pool): of a request
    of ``L`` tokens and ``n`` block ids, only the ``full = min(n, L // block_size)`` full blocks
    can be cached, only the first ``min(full, (L - 1) // block_size)`` can hit (the last token
    is recomputed), a request needing more than ``capacity_blocks - 1`` blocks is refused (it
    hits nothing and changes nothing: block 0 is vLLM's null block), and at most
    ``capacity_blocks - 1`` blocks stay cached. A request hits the longest run of leading
    blocks in its lookup range that are cached when it arrives.

    What it does, exactly. For each request that is not refused, every full block gets the
    key ``(r', i')`` of its next use: ``r'`` the next request that is not refused and has the
    block in its lookup range, ``i'`` its position there (``(inf, inf)`` if none). The blocks
    are offered to the cache with their new keys, and while more than ``capacity_blocks - 1``
    blocks are cached the one with the largest key is dropped, which may be a block just
    offered (a bypass: never keep a block whose next use is after every cached block's). It
    is an ideal: vLLM's pool must hold a request's blocks while it runs, so it cannot bypass,
    and its partial last block takes a slot; the optimum has neither constraint.

    Why it is optimal for block hits on prefix-closed traces. Call a trace prefix-closed when
    a block id implies its whole prefix (equal ids have equal predecessors and positions:
    true of Mooncake and Bailian prefix hashes; the public traces were checked). Serialise
    each request into its full blocks in order, those in the lookup range being the
    references that count. Then (1) a parent's key is always below its child's (every
    request whose lookup range holds the child holds the parent, earlier in it), so the
    cached set stays closed under prefixes, so a request's cached blocks are exactly its hit
    prefix, and the serial sequence's hits equal the prefix hits counted here; (2) on the
    serial sequence this is Belady's MIN with bypass, which maximises hits among all policies
    that may cache any block at its reference (Belady 1966; Mattson et al. 1970); (3) LRU,
    FIFO and LFU under ``engine`` semantics are such policies (a cache of at most
    ``capacity_blocks - 1`` blocks taken from what it held and the request's full blocks)
    with no more serial hits than prefix hits. Hence this count >= their block hits on
    prefix-closed traces. Hit blocks are full, so token hits are ``block_size`` per block
    hit. On traces that are not prefix-closed (1) fails: there it is a heuristic, and
    :func:`split_gap` clamps it. ``tests/test_gap.py`` checks it against an exhaustive
    search on small traces and ``>=`` LRU, FIFO and LFU on random ones.
    """

    def __init__(self, requests: Sequence, capacity_blocks: int, block_size: int):
        if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int) \
                or capacity_blocks < 0:
            raise ScenarioError("capacity_blocks", capacity_blocks, "must be an integer >= 0")
        self.requests = requests
        self.capacity_blocks = capacity_blocks
        self.block_size = block_size

    def hits(self) -> list:
        """``(block_hits, token_hits)`` of each request, in order."""
        return drain(self.steps())

    def steps(self):
        """:meth:`hits` in steps: yields once per request of each of its two passes (a page
        runs it a few thousand requests at a time), returns the list."""
        reqs = self.requests
        n = len(reqs)
        bs = self.block_size
        room = self.capacity_blocks - 1            # block 0 is the null block
        width = max((len(r.hash_ids) for r in reqs), default=0) + 1
        never = math.inf
        # (full blocks, lookup range) of each request, or None when it is refused.
        shape = []
        for r in reqs:
            length = r.input_length
            if -(-length // bs) > room:
                shape.append(None)
                continue
            full = min(len(r.hash_ids), length // bs)
            shape.append((full, max(0, min(full, (length - 1) // bs))))
        # Backward pass: the key of each full block's next use after each request.
        nxt: dict = {}
        keys = [None] * n
        for r in range(n - 1, -1, -1):
            if shape[r] is None:
                continue
            full, look = shape[r]
            ids = reqs[r].hash_ids
            keys[r] = [nxt.get(b, never) for b in ids[:full]]
            for i in range(look - 1, -1, -1):
                nxt[ids[i]] = r * width + i
            yield
        del nxt
        cached: dict = {}
        heap: list = []
        out = []
        for r in range(n):
            if shape[r] is None:
                out.append((0, 0))
                continue
            full, look = shape[r]
            ids = reqs[r].hash_ids
            k = 0
            while k < look and ids[k] in cached:
                k += 1
            out.append((k, k * bs))
            for b, key in zip(ids, keys[r]):
                cached[b] = key
                heapq.heappush(heap, (-key, b))
            keys[r] = None
            while len(cached) > room:
                negkey, victim = heapq.heappop(heap)
                if cached.get(victim) == -negkey:
                    del cached[victim]
            if len(heap) > 4 * max(room, 0) + 1024:
                heap = [(-v, blk) for blk, v in cached.items()]
                heapq.heapify(heap)
            yield
        return out


def prefix_belady_hits(requests: Sequence, capacity_blocks: int, block_size: int) -> tuple:
    """Total ``(block_hits, token_hits)`` of :class:`PrefixBelady`."""
    per = PrefixBelady(requests, capacity_blocks, block_size).hits()
    return sum(b for b, _ in per), sum(t for _, t in per)


# ---------------------------------------------------------------------------------------
# Reuse times and the characteristic time


class ReuseTimes:
    """Histogram of the time between successive references to a block (seconds, bins with
    upper edges :data:`REUSE_EDGES_S`, the last bin open). ``add(request, counted)`` for each
    request in order; every request updates the state, only counted ones add reuses."""

    def __init__(self):
        self.counts = [0] * (len(REUSE_EDGES_S) + 1)
        self.times = array("d")      # every counted reuse time, for exact shares
        self._last: dict = {}

    def add(self, request: Request, counted: bool = True) -> None:
        """Account for the reuses of ``request``'s blocks."""
        t = request.timestamp_s
        last = self._last
        for b in request.hash_ids:
            prev = last.get(b)
            if prev is not None and counted:
                gap = max(0.0, t - prev)
                self.counts[bisect.bisect_left(REUSE_EDGES_S, gap)] += 1
                self.times.append(gap)
            last[b] = t

    @property
    def reuses(self) -> int:
        """Reuses counted."""
        return len(self.times)

    def share_within(self, seconds: float) -> float:
        """The exact share of counted reuses that come back within ``seconds``."""
        if not self.times:
            return 0.0
        return sum(1 for g in self.times if g <= seconds) / len(self.times)

    def to_dict(self) -> dict:
        """Edges and counts in plain JSON types."""
        return {"upper_edges_s": list(REUSE_EDGES_S), "counts": list(self.counts),
                "reuses": self.reuses}


def measure_characteristic_time_s(requests: Iterable[Request], capacity_blocks: int,
                                  block_size: int, semantics: str = "engine") -> float | None:
    """The measured characteristic time of an LRU cache of ``capacity_blocks`` blocks on
    this trace: the mean age (time since last use) of the blocks it evicts, which Che's
    approximation takes as a constant ``T``. ``None`` when nothing is evicted. Under
    ``engine`` semantics the cache holds ``capacity_blocks - 1`` blocks (the null block) and
    only full blocks, as the replay's."""
    return drain(_characteristic_time_steps(requests, capacity_blocks, block_size, semantics))


def _characteristic_time_steps(requests, capacity_blocks, block_size, semantics):
    cache: OrderedDict = OrderedDict()
    engine = semantics == "engine"
    room = capacity_blocks - 1 if engine else capacity_blocks
    total = 0.0
    evicted = 0
    for r in requests:
        t = r.timestamp_s
        ids = r.hash_ids
        if engine:
            if -(-r.input_length // block_size) > room:
                yield
                continue                     # refused: the cache is unchanged
            ids = ids[:min(len(ids), r.input_length // block_size)][::-1]
        for b in ids:
            if b in cache:
                cache.move_to_end(b)
            cache[b] = t
            if len(cache) > room:
                _, last = cache.popitem(last=False)
                total += t - last
                evicted += 1
        yield
    return total / evicted if evicted else None


# ---------------------------------------------------------------------------------------
# The split


def split_gap(ceiling: float, optimum: float, lru: float, fleet: float) -> tuple:
    """The parts ``{no_reuse, capacity, policy, routing, hit}`` (summing to 1) of four hit
    rates, and the list of clamps applied (see the module docstring)."""
    clipped = []
    lru_c = max(lru, fleet)
    if lru_c > lru:
        clipped.append({"part": "routing", "raw": lru - fleet,
                        "note": "the fleet beats one pooled LRU cache; routing set to 0"})
    opt_c = min(ceiling, max(optimum, lru_c))
    if optimum < lru_c:
        clipped.append({"part": "policy", "raw": optimum - lru_c,
                        "note": "the heuristic optimum is below LRU here; policy set to 0"})
    if optimum > ceiling:
        clipped.append({"part": "capacity", "raw": ceiling - optimum,
                        "note": "the optimum is above the ceiling; capacity set to 0"})
    parts = {"no_reuse": 1 - ceiling, "capacity": ceiling - opt_c, "policy": opt_c - lru_c,
             "routing": lru_c - fleet, "hit": fleet}
    return parts, clipped


@dataclass(frozen=True)
class GapResult:
    """The split of the gap, overall and per prompt-length bucket, with reuse times.

    ``overall`` and each entry of ``buckets`` hold the raw token hit rates (``ceiling``,
    ``optimum``, ``lru``, ``fleet``), the parts (``no_reuse``, ``capacity``, ``policy``,
    ``routing``, ``hit``; 0-1 fractions summing to 1) and ``clipped``.
    """

    capacity_blocks: int
    instances: int
    routing: str
    seed: int
    semantics: str
    block_size: int
    warmup_requests: int
    overall: dict
    buckets: tuple
    reuse: dict
    characteristic_time_s: float | None
    characteristic_time_source: str
    share_of_reuses_within_t: float | None
    notes: tuple = ()

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {
            "capacity_blocks": self.capacity_blocks,
            "capacity_tokens": self.capacity_blocks * self.block_size,
            "instances": self.instances, "routing": self.routing, "seed": self.seed,
            "semantics": self.semantics, "block_size": self.block_size,
            "warmup_requests": self.warmup_requests,
            "pooled_capacity_blocks": self.capacity_blocks * self.instances,
            "overall": self.overall, "buckets": list(self.buckets),
            "reuse_time_histogram": self.reuse,
            "characteristic_time_s": self.characteristic_time_s,
            "characteristic_time_source": self.characteristic_time_source,
            "share_of_reuses_within_characteristic_time": self.share_of_reuses_within_t,
            "notes": list(self.notes),
        }


_PARTS = ("ceiling", "optimum", "lru", "fleet")


@dataclass(frozen=True)
class BucketHits:
    """Token hits per prompt-length bucket: ``requests[b]``, ``tokens[b]`` (prompt tokens),
    ``ceiling[b]`` (an unbounded single cache) and ``hits[k][b]`` at ``capacity_blocks[k]``."""

    bucket_edges: tuple
    capacity_blocks: tuple
    requests: tuple
    tokens: tuple
    ceiling: tuple
    hits: tuple


def bucket_of(input_length: int, bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> int:
    """The prompt-length bucket of a request: the number of edges ``<= input_length``."""
    return bisect.bisect_right(bucket_edges, input_length)


@dataclass(frozen=True)
class RequestHits:
    """Token hits of every request: ``ceiling[i]`` (a single unbounded cache) and
    ``hits[k][i]`` at ``capacity_blocks[k]``; ``tokens[i]`` its prompt tokens."""

    capacity_blocks: tuple
    tokens: array
    ceiling: array
    hits: tuple

    def by_bucket(self, requests: Sequence[Request], warmup_requests: int = 0,
                  bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> BucketHits:
        """Sums per prompt-length bucket over the requests after the warm-up."""
        edges = tuple(bucket_edges)
        nb = len(edges) + 1
        counts, tokens, ceiling = [0] * nb, [0] * nb, [0] * nb
        hits = [[0] * nb for _ in self.capacity_blocks]
        for i in range(warmup_requests, len(requests)):
            b = bisect.bisect_right(edges, requests[i].input_length)
            counts[b] += 1
            tokens[b] += self.tokens[i]
            ceiling[b] += self.ceiling[i]
            for k, row in enumerate(self.hits):
                hits[k][b] += row[i]
        return BucketHits(edges, self.capacity_blocks, tuple(counts), tuple(tokens),
                          tuple(ceiling), tuple(tuple(h) for h in hits))


def fleet_request_hits(requests: Iterable[Request], capacities_blocks: Sequence[int],
                       block_size: int, instances: int = 1, routing: str = "round_robin",
                       seed: int = 0, semantics: str = "engine") -> RequestHits:
    """LRU token hits of every request with ``instances`` caches of each capacity under
    ``routing`` (one instance: a single cache). Each instance's hits come from
    :class:`~kvcache_calculator.traces.replay.PolicyReplay` fed request by request (under
    ``engine`` semantics vLLM's block pool itself), so they follow the replay's semantics and
    equal the fleet replay of :mod:`kvcache_calculator.traces.routing` (one-pass curves)
    wherever every request fits an instance's pool; below that the pool refuses a too-long
    request while the curve serves it in part. ``ceiling`` is of a single unbounded cache."""
    return drain(fleet_request_hits_steps(requests, capacities_blocks, block_size, instances,
                                          routing, seed, semantics))


def fleet_request_hits_steps(requests, capacities_blocks, block_size, instances=1,
                             routing="round_robin", seed=0, semantics="engine"):
    """:func:`fleet_request_hits` in steps: yields once per request, returns the RequestHits."""
    check_instances(instances)
    caps = tuple(capacities_blocks)
    if routing == "cache_aware":
        # The choice depends on the caches, so each capacity routes on its own.
        sims = [(make_router(routing, instances, seed, c, block_size, semantics), (k,),
                 [PolicyReplay("lru", [c], block_size, semantics) for _ in range(instances)])
                for k, c in enumerate(caps)]
    else:
        sims = [(make_router(routing, instances, seed), tuple(range(len(caps))),
                 [PolicyReplay("lru", caps, block_size, semantics) for _ in range(instances)])]
    ceiling_runner = PolicyReplay("lru", [], block_size, semantics)
    prev = [[[0] * len(ks) for _ in runners] for _, ks, runners in sims]
    prev_ceiling = 0
    hits = [array("q") for _ in caps]
    ceiling = array("q")
    tokens = array("q")
    for req in requests:
        ceiling_runner.feed((req,))
        inf_hits = ceiling_runner.infinite_token_hits
        ceiling.append(inf_hits - prev_ceiling)
        prev_ceiling = inf_hits
        n = len(req.hash_ids)
        tokens.append((n - 1) * block_size + last_block_tokens(req.input_length, n, block_size)
                      if n else 0)
        for s, (router, ks, runners) in enumerate(sims):
            j = router.route(req)
            runners[j].feed((req,))
            now = runners[j].result().token_hits
            before = prev[s][j]
            for pos, k in enumerate(ks):
                hits[k].append(now[pos] - before[pos])
            prev[s][j] = list(now)
        yield
    return RequestHits(caps, tokens, ceiling, tuple(hits))


def fleet_bucket_hits(requests: Sequence[Request], capacities_blocks: Sequence[int],
                      block_size: int, instances: int = 1, routing: str = "round_robin",
                      seed: int = 0, semantics: str = "engine", warmup_requests: int = 0,
                      bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> BucketHits:
    """:func:`fleet_request_hits` summed per prompt-length bucket after the warm-up."""
    requests = list(requests)
    return fleet_request_hits(requests, capacities_blocks, block_size, instances, routing,
                              seed, semantics).by_bucket(requests, warmup_requests, bucket_edges)


def optimum_request_hits(requests: Sequence[Request], capacities_blocks: Sequence[int],
                         block_size: int) -> tuple:
    """:class:`PrefixBelady` token hits of every request at each capacity:
    ``[capacity][request]``."""
    return tuple(array("q", (t for _, t in PrefixBelady(requests, c, block_size).hits()))
                 for c in capacities_blocks)


def optimum_bucket_hits(requests: Sequence[Request], capacities_blocks: Sequence[int],
                        block_size: int, warmup_requests: int = 0,
                        bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> tuple:
    """:class:`PrefixBelady` token hits per prompt-length bucket at each capacity:
    ``[capacity][bucket]``."""
    return sum_by_bucket(requests, optimum_request_hits(requests, capacities_blocks,
                                                        block_size),
                         warmup_requests, bucket_edges)


def sum_by_bucket(requests: Sequence[Request], per_request: Sequence[Sequence[int]],
                  warmup_requests: int = 0,
                  bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> tuple:
    """Sums per prompt-length bucket of per-request rows (``[row][request]``), counting
    only requests after the warm-up: ``[row][bucket]``."""
    edges = tuple(bucket_edges)
    buckets = [bisect.bisect_right(edges, r.input_length) for r in requests]
    out = []
    for row in per_request:
        sums = [0] * (len(edges) + 1)
        for i in range(warmup_requests, len(requests)):
            sums[buckets[i]] += row[i]
        out.append(tuple(sums))
    return tuple(out)


def _summarise(tokens: int, hits: dict, requests: int) -> dict:
    rates = {k: (hits[k] / tokens if tokens else 0.0) for k in _PARTS}
    parts, clipped = split_gap(**rates)
    return {"requests": requests, "tokens": tokens, **rates, "parts": parts,
            "clipped": clipped}


def explain_gap(requests: Sequence[Request], capacity_blocks: int, block_size: int,
                instances: int = 1, routing: str = "round_robin", seed: int = 0,
                semantics: str = "engine", warmup_requests: int = 0,
                characteristic_time_s: float | None = None,
                bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES) -> GapResult:
    """Split the gap of ``requests`` (see :func:`explain_gap_steps`, which this runs)."""
    return drain(explain_gap_steps(requests, capacity_blocks, block_size, instances, routing,
                                   seed, semantics, warmup_requests, characteristic_time_s,
                                   bucket_edges))


def explain_gap_passes(instances: int, characteristic_time_s: float | None) -> int:
    """How many passes over the requests :func:`explain_gap_steps` makes (for progress)."""
    return 2 + (instances > 1) + 2 + (characteristic_time_s is None)


def explain_gap_steps(requests: Sequence[Request], capacity_blocks: int, block_size: int,
                      instances: int = 1, routing: str = "round_robin", seed: int = 0,
                      semantics: str = "engine", warmup_requests: int = 0,
                      characteristic_time_s: float | None = None,
                      bucket_edges: Sequence[int] = PROMPT_BUCKET_EDGES):
    """Split the gap of ``requests`` (a list: the optimum is offline) at ``capacity_blocks``
    per instance over ``instances`` instances under ``routing`` (see the module docstring).

    ``characteristic_time_s`` is the ``T`` to mark on the reuse-time histogram (the
    calculator's, for instance); when ``None`` it is measured on the trace for an LRU cache
    of ``instances * capacity_blocks`` blocks (:func:`measure_characteristic_time_s`).
    """
    check_instances(instances)
    if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int) \
            or capacity_blocks < 0:
        raise ScenarioError("capacity_blocks", capacity_blocks, "must be an integer >= 0 (blocks)")
    requests = list(requests)
    pooled = capacity_blocks * instances
    edges = tuple(bucket_edges)
    single = (yield from fleet_request_hits_steps(requests, [pooled], block_size, 1,
                                                  "round_robin", 0, semantics)
              ).by_bucket(requests, warmup_requests, edges)
    if instances == 1:
        fleet = single
    else:
        fleet = (yield from fleet_request_hits_steps(requests, [capacity_blocks], block_size,
                                                     instances, routing, seed, semantics)
                 ).by_bucket(requests, warmup_requests, edges)
    optimum_hits = yield from PrefixBelady(requests, pooled, block_size).steps()
    optimum = sum_by_bucket(requests, [[t for _, t in optimum_hits]], warmup_requests, edges)[0]
    reuse = ReuseTimes()
    for i, req in enumerate(requests):
        reuse.add(req, i >= warmup_requests)
        yield
    per_bucket = [{"ceiling": single.ceiling[b], "optimum": optimum[b], "lru": single.hits[0][b],
                   "fleet": fleet.hits[0][b]} for b in range(len(edges) + 1)]
    total_hits = {k: sum(h[k] for h in per_bucket) for k in _PARTS}
    overall = _summarise(sum(single.tokens), total_hits, sum(single.requests))
    buckets = []
    lows = (0,) + edges
    for b, h in enumerate(per_bucket):
        entry = _summarise(single.tokens[b], h, single.requests[b])
        entry["input_tokens_min"] = lows[b]
        entry["input_tokens_max"] = edges[b] if b < len(edges) else None
        buckets.append(entry)
    if characteristic_time_s is None:
        t_char = yield from _characteristic_time_steps(requests, pooled, block_size, semantics)
        source = (f"measured: mean age at eviction of an LRU cache of {pooled} blocks "
                  "on this trace")
    else:
        t_char = float(characteristic_time_s)
        source = "given"
    share = reuse.share_within(t_char) if t_char is not None and reuse.reuses else None
    notes = []
    longest = max((-(-r.input_length // block_size) for r in requests), default=0)
    if semantics == "engine" and capacity_blocks - 1 < longest:
        notes.append(f"the longest request needs {longest} blocks, more than the "
                     f"{capacity_blocks - 1} an instance's pool holds besides its null block: "
                     "here the fixed-capacity replays refuse it, as vLLM does, while the one-pass "
                     "curve of the replay table serves it in part, so the two may differ")
    return GapResult(capacity_blocks, instances, routing, seed, semantics, block_size,
                     min(warmup_requests, len(requests)), overall, tuple(buckets),
                     reuse.to_dict(), t_char, source, share, tuple(notes))
