"""Replay of a trace over a fleet of ``N`` instances, each with its own LRU cache.

Every instance has a cache of the same capacity (``capacity_blocks`` per instance); a request
is served by one instance, chosen by a routing rule, and hits only that instance's cache.
Fleet-wide hit rates are the sums of the instances' hits over the sums of their references
(blocks or tokens, as in :mod:`kvcache_calculator.traces.replay`).

Routings (reproducible: the same trace, ``N`` and seed give the same assignment):

- ``round_robin``: request ``i`` (0-based, in file order) goes to instance ``i mod N``;
- ``random``: each request to ``rng.randrange(N)``, ``rng = random.Random(seed)`` drawn once
  per request in file order;
- ``prefix``: to ``stable_hash64(first hash_id) mod N`` (instance 0 for a request without
  blocks): requests sharing a first block share an instance, a stand-in for session affinity
  on traces without session ids;
- ``session``: to ``stable_hash64(conversation id) mod N``, where the conversation id of a
  Bailian request is the ``chat_id`` of the first turn of its chain (``parent_chat_id``
  followed back; a parent not in the trace is taken as the first turn). Formats without
  session ids (Mooncake) are refused;
- ``cache_aware``: to the instance holding the longest cached prefix of the request, ties
  broken by the fewest requests routed so far, then the lowest index (the idea of SGLang's
  and Dynamo's cache-aware routers). The router keeps its own view of each instance's cache,
  an LRU index of each cache updated as the engine touches blocks (:class:`CacheAwareRouter`
  says which), as SGLang's router keeps an approximate radix tree per worker; the hits are
  then counted by the replay of each instance's requests, so the counts follow the replay's
  semantics exactly.

The first four do not depend on cache state, so one pass with one exact LRU curve per
instance (:class:`~kvcache_calculator.traces.replay.LRUCurveReplay`) gives the fleet's hits
at every capacity: :class:`FleetCurveReplay`. ``cache_aware`` depends on the contents of the
caches, hence on the capacity: :class:`CacheAwareReplay` simulates each capacity (and an
unbounded one for the ceiling) on its own.
"""

from __future__ import annotations

import dataclasses
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.hashing import stable_hash64
from kvcache_calculator.traces.readers import Request
from kvcache_calculator.traces.replay import LRUCurveReplay
from kvcache_calculator.traces.sampling import SampledReplay, sample_request, sample_threshold
from kvcache_calculator.traces.warmup import subtract

__all__ = [
    "ROUTINGS",
    "STATE_FREE_ROUTINGS",
    "check_instances",
    "Router",
    "CacheAwareRouter",
    "make_router",
    "FleetResult",
    "FleetCurve",
    "FleetCurveReplay",
    "CacheAwareReplay",
    "replay_fleet",
]

ROUTINGS = ("round_robin", "random", "prefix", "cache_aware", "session")
#: Routings whose choice does not depend on the caches' contents.
STATE_FREE_ROUTINGS = ("round_robin", "random", "prefix", "session")
_MAX_INSTANCES = 4096


def check_instances(instances) -> int:
    """A number of instances, 1 to 4096, or ScenarioError."""
    if isinstance(instances, bool) or not isinstance(instances, int) \
            or not 1 <= instances <= _MAX_INSTANCES:
        raise ScenarioError("instances", instances, f"must be an integer from 1 to {_MAX_INSTANCES}")
    return instances


def _check_routing(routing) -> str:
    if routing not in ROUTINGS:
        raise ScenarioError("routing", routing, "allowed: " + ", ".join(ROUTINGS))
    return routing


class Router:
    """A routing that does not look at cache state (``round_robin``, ``random``, ``prefix``,
    ``session``): ``route(request)`` returns the instance index, 0 to ``instances - 1``."""

    def __init__(self, routing: str, instances: int, seed: int = 0):
        self.routing = _check_routing(routing)
        if routing == "cache_aware":
            raise ScenarioError("routing", routing, "depends on cache state: use CacheAwareRouter")
        self.instances = check_instances(instances)
        self.seed = seed
        self._rng = random.Random(seed)
        self._next = 0
        self._root: dict = {}        # chat_id -> conversation id (session routing)
        self.routed = [0] * instances

    def route(self, request: Request) -> int:
        """The instance serving ``request`` (call once per request, in file order)."""
        n = self.instances
        if self.routing == "round_robin":
            j = self._next % n
            self._next += 1
        elif self.routing == "random":
            j = self._rng.randrange(n)
        elif self.routing == "prefix":
            ids = request.hash_ids
            j = stable_hash64(ids[0]) % n if ids else 0
        else:
            j = stable_hash64(self._conversation(request)) % n
        self.routed[j] += 1
        return j

    def _conversation(self, request: Request) -> int:
        if request.chat_id is None:
            raise ScenarioError("routing", "session",
                                "needs session ids (chat_id / parent_chat_id, Bailian format); "
                                "this trace has none: use prefix, round_robin, random or "
                                "cache_aware", line=request.line or None)
        parent = request.parent_chat_id
        if parent is None or parent < 0:
            root = request.chat_id
        else:
            root = self._root.get(parent, parent)
        self._root[request.chat_id] = root
        return root


class CacheAwareRouter:
    """``cache_aware`` routing over per-instance LRU indexes of caches of ``capacity_blocks``
    blocks (``None``: unbounded). ``route(request)`` picks the instance and records the
    request's blocks in that instance's index.

    The index follows the replay's rules for what a cache holds: under ``engine`` semantics
    (vLLM's pool) ``capacity_blocks - 1`` blocks (block 0 is the null block), only a
    request's full blocks (``input_length // block_size`` of them), touched tail first, and no
    change for a request too long for the pool; under ``independent`` every block, in order,
    ``capacity_blocks`` of them. The cached prefix that decides is counted over all of the
    request's ids.
    """

    routing = "cache_aware"

    def __init__(self, instances: int, capacity_blocks: int | None, block_size: int,
                 semantics: str = "engine"):
        self.instances = check_instances(instances)
        if capacity_blocks is not None and (isinstance(capacity_blocks, bool)
                                            or not isinstance(capacity_blocks, int)
                                            or capacity_blocks < 0):
            raise ScenarioError("capacity_blocks", capacity_blocks, "must be an integer >= 0 (blocks)")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ScenarioError("block_size", block_size, "must be an integer >= 1 (tokens per block)")
        self.capacity_blocks = capacity_blocks
        self.block_size = block_size
        self.engine = semantics == "engine"
        self._index = [OrderedDict() for _ in range(instances)]
        self.routed = [0] * instances

    def cached_prefix(self, instance: int, hash_ids: Sequence) -> int:
        """Blocks of ``hash_ids``' longest prefix held in ``instance``'s index."""
        index = self._index[instance]
        k = 0
        for b in hash_ids:
            if b not in index:
                break
            k += 1
        return k

    def route(self, request: Request) -> int:
        """The instance serving ``request``; updates its index."""
        ids = request.hash_ids
        best = 0
        best_key = None
        for j in range(self.instances):
            key = (-self.cached_prefix(j, ids), self.routed[j], j)
            if best_key is None or key < best_key:
                best, best_key = j, key
        self.routed[best] += 1
        room = self.capacity_blocks
        touches = ids
        if self.engine:
            bs, length = self.block_size, request.input_length
            if room is not None:
                room -= 1
                if -(-length // bs) > room:
                    return best              # refused by the pool: its cache is unchanged
            touches = ids[:min(len(ids), length // bs)][::-1]
        if room == 0 or not touches:
            return best
        index = self._index[best]
        for b in touches:
            if b in index:
                index.move_to_end(b)
            else:
                index[b] = None
                if room is not None and len(index) > room:
                    index.popitem(last=False)
        return best


def make_router(routing: str, instances: int, seed: int = 0, capacity_blocks: int | None = None,
                block_size: int = 512, semantics: str = "engine"):
    """The router for ``routing`` (``cache_aware`` indexes caches of ``capacity_blocks``)."""
    if _check_routing(routing) == "cache_aware":
        return CacheAwareRouter(instances, capacity_blocks, block_size, semantics)
    return Router(routing, instances, seed)


# ---------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FleetResult:
    """Fleet-wide and per-instance hits at fixed capacities (blocks per instance).

    ``per_capacity[k][j]`` is instance ``j``'s
    :class:`~kvcache_calculator.traces.replay.ReplayResult` at
    ``capacity_blocks[k]`` (its requests may differ between capacities under ``cache_aware``);
    ``unbounded[j]`` holds instance ``j``'s hits with unbounded caches (its
    ``infinite_*`` counts), from which the fleet's ceiling comes. Rates are 0-1 fractions.
    """

    routing: str
    instances: int
    seed: int
    semantics: str
    block_size: int
    capacity_blocks: tuple
    per_capacity: tuple
    unbounded: tuple
    approximate: bool = False

    @property
    def requests(self) -> int:
        """Requests counted."""
        return sum(r.requests for r in self.unbounded)

    @property
    def total_blocks(self) -> int:
        """Block references counted."""
        return sum(r.total_blocks for r in self.unbounded)

    @property
    def total_tokens(self) -> int:
        """Prompt tokens counted."""
        return sum(r.total_tokens for r in self.unbounded)

    def _hits(self, kind: str) -> tuple:
        return tuple(sum(getattr(r, kind)[0] for r in row) for row in self.per_capacity)

    @property
    def block_hits(self) -> tuple:
        """Fleet block hits at each capacity."""
        return self._hits("block_hits")

    @property
    def token_hits(self) -> tuple:
        """Fleet token hits at each capacity."""
        return self._hits("token_hits")

    @staticmethod
    def _rate(hits, total) -> float:
        return hits / total if total else 0.0

    @property
    def block_hit_rate(self) -> list:
        """Fleet block hit rate at each capacity."""
        return [self._rate(h, self.total_blocks) for h in self.block_hits]

    @property
    def token_hit_rate(self) -> list:
        """Fleet token hit rate at each capacity."""
        return [self._rate(h, self.total_tokens) for h in self.token_hits]

    @property
    def infinite_block_hit_rate(self) -> float:
        """Fleet block hit rate with unbounded caches."""
        return self._rate(sum(r.infinite_block_hits for r in self.unbounded), self.total_blocks)

    @property
    def infinite_token_hit_rate(self) -> float:
        """Fleet token hit rate with unbounded caches."""
        return self._rate(sum(r.infinite_token_hits for r in self.unbounded), self.total_tokens)

    def minus(self, before: "FleetResult") -> "FleetResult":
        """The requests fed between two readings (for warm-up)."""
        return dataclasses.replace(
            self,
            per_capacity=tuple(tuple(subtract(a, b) for a, b in zip(ra, rb))
                               for ra, rb in zip(self.per_capacity, before.per_capacity)),
            unbounded=tuple(subtract(a, b) for a, b in zip(self.unbounded, before.unbounded)))

    def instance_figures(self) -> list:
        """Per instance: requests, block and token hit rates (lists, one per capacity) and
        the unbounded hit rates."""
        out = []
        for j in range(self.instances):
            rows = [row[j] for row in self.per_capacity]
            u = self.unbounded[j]
            out.append({
                "instance": j,
                "requests": [r.requests for r in rows],
                "block_hit_rate": [r.block_hit_rate[0] for r in rows],
                "token_hit_rate": [r.token_hit_rate[0] for r in rows],
                "infinite_requests": u.requests,
                "infinite_block_hit_rate": u.infinite_block_hit_rate,
                "infinite_token_hit_rate": u.infinite_token_hit_rate,
            })
        return out

    def to_dict(self) -> dict:
        """Plain JSON types: the replay keys (fleet-wide, one value per capacity) and
        ``per_instance``."""
        return {
            "routing": self.routing, "instances": self.instances, "seed": self.seed,
            "semantics": self.semantics, "block_size": self.block_size,
            "requests": self.requests, "total_blocks": self.total_blocks,
            "total_tokens": self.total_tokens,
            "capacity_blocks": list(self.capacity_blocks),
            "capacity_tokens": [c * self.block_size for c in self.capacity_blocks],
            "block_hits": list(self.block_hits), "token_hits": list(self.token_hits),
            "block_hit_rate": self.block_hit_rate, "token_hit_rate": self.token_hit_rate,
            "infinite_block_hit_rate": self.infinite_block_hit_rate,
            "infinite_token_hit_rate": self.infinite_token_hit_rate,
            "approximate": self.approximate,
            "per_instance": self.instance_figures(),
        }


@dataclass(frozen=True)
class FleetCurve:
    """One exact LRU curve per instance (state-free routings): the fleet at every capacity.
    ``curves[j]`` is an :class:`~kvcache_calculator.traces.replay.LRUCurve` (or a
    :class:`~kvcache_calculator.traces.sampling.SampledCurve` when sampled)."""

    routing: str
    instances: int
    seed: int
    curves: tuple

    @property
    def semantics(self) -> str:
        """The replay semantics."""
        return self.curves[0].semantics

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self.curves[0].block_size

    @property
    def total_blocks(self) -> int:
        """Block references counted."""
        return sum(c.total_blocks for c in self.curves)

    @property
    def total_tokens(self) -> int:
        """Prompt tokens counted."""
        return sum(c.total_tokens for c in self.curves)

    def block_hits(self, capacity_blocks: int) -> int:
        """Fleet block hits with ``capacity_blocks`` per instance."""
        return sum(c.block_hits(capacity_blocks) for c in self.curves)

    def token_hits(self, capacity_blocks: int) -> int:
        """Fleet token hits with ``capacity_blocks`` per instance."""
        return sum(c.token_hits(capacity_blocks) for c in self.curves)

    def block_hit_rate(self, capacity_blocks: int) -> float:
        """Fleet block hit rate with ``capacity_blocks`` per instance."""
        t = self.total_blocks
        return self.block_hits(capacity_blocks) / t if t else 0.0

    def token_hit_rate(self, capacity_blocks: int) -> float:
        """Fleet token hit rate with ``capacity_blocks`` per instance."""
        t = self.total_tokens
        return self.token_hits(capacity_blocks) / t if t else 0.0

    def at(self, capacities_blocks: Sequence[int]) -> FleetResult:
        """The fleet at fixed capacities (blocks per instance)."""
        caps = tuple(capacities_blocks)
        per = tuple(tuple(c.at([cap]) for c in self.curves) for cap in caps)
        return FleetResult(self.routing, self.instances, self.seed, self.semantics,
                           self.block_size, caps, per, tuple(c.at([]) for c in self.curves),
                           bool(getattr(self.curves[0], "approximate", False)))

    def minus(self, before: "FleetCurve") -> "FleetCurve":
        """The requests fed between two readings (for warm-up)."""
        return dataclasses.replace(
            self, curves=tuple(subtract(a, b) for a, b in zip(self.curves, before.curves)))


# ---------------------------------------------------------------------------------------
# Replays


def _instance_runner(block_size: int, semantics: str, sample_rate: float | None):
    if sample_rate is None:
        return LRUCurveReplay(block_size, semantics)
    return SampledReplay(block_size, sample_rate, semantics)


class FleetCurveReplay:
    """Incremental fleet replay under a state-free routing: ``feed(requests)``, then
    ``result()`` for the :class:`FleetCurve` (exact at every capacity; approximate when
    ``sample_rate`` is given, each instance's trace then being sampled as in
    :mod:`kvcache_calculator.traces.sampling`, after routing)."""

    def __init__(self, routing: str, instances: int, block_size: int,
                 semantics: str = "engine", seed: int = 0, sample_rate: float | None = None):
        self.router = Router(routing, instances, seed)
        self._runners = [_instance_runner(block_size, semantics, sample_rate)
                         for _ in range(instances)]

    def feed(self, requests: Iterable[Request]) -> int:
        """Route and replay ``requests``; returns how many were fed."""
        route = self.router.route
        batches = [[] for _ in self._runners]
        fed = 0
        for r in requests:
            batches[route(r)].append(r)
            fed += 1
        for runner, batch in zip(self._runners, batches):
            if batch:
                runner.feed(batch)
        return fed

    def result(self) -> FleetCurve:
        """The fleet curve of everything fed so far."""
        r = self.router
        return FleetCurve(r.routing, r.instances, r.seed,
                          tuple(run.result() for run in self._runners))


class CacheAwareReplay:
    """Incremental fleet replay under ``cache_aware`` routing at each of
    ``capacities_blocks`` (per instance) and unbounded: one router and one LRU replay per
    instance for each. ``result()`` gives the :class:`FleetResult`."""

    def __init__(self, instances: int, capacities_blocks: Sequence[int], block_size: int,
                 semantics: str = "engine", sample_rate: float | None = None):
        check_instances(instances)
        self.capacities_blocks = tuple(capacities_blocks)
        self.instances = instances
        self.semantics = semantics
        self.block_size = block_size
        self.sample_rate = sample_rate
        # Sampled: the router's index holds the sample's blocks, sized floor(R * C).
        sized = [c if sample_rate is None else int(sample_rate * c + 1e-9)
                 for c in self.capacities_blocks]
        self._sims = [(CacheAwareRouter(instances, size, block_size, semantics),
                       [_instance_runner(block_size, semantics, sample_rate)
                        for _ in range(instances)])
                      for size in sized + [None]]

    def feed(self, requests: Iterable[Request]) -> int:
        """Route and replay ``requests`` at every capacity; returns how many were fed."""
        batch = list(requests)
        view = batch
        if self.sample_rate is not None:
            # The router sees the sampled requests (its index is the sample's size); one
            # with no sampled block has nothing cached anywhere.
            th = sample_threshold(self.sample_rate)
            view = [sample_request(r, th, self.block_size)
                    or dataclasses.replace(r, hash_ids=(), input_length=0) for r in batch]
        for router, runners in self._sims:
            parts = [[] for _ in runners]
            for r, v in zip(batch, view):
                parts[router.route(v)].append(r)
            for runner, part in zip(runners, parts):
                if part:
                    runner.feed(part)
        return len(batch)

    def result(self) -> FleetResult:
        """Fleet and per-instance hits at each capacity and unbounded."""
        per = []
        for cap, (_, runners) in zip(self.capacities_blocks, self._sims):
            per.append(tuple(run.result().at([cap]) for run in runners))
        unbounded = tuple(run.result().at([]) for run in self._sims[-1][1])
        return FleetResult("cache_aware", self.instances, 0, self.semantics, self.block_size,
                           self.capacities_blocks, tuple(per), unbounded,
                           self.sample_rate is not None)


def replay_fleet(requests: Iterable[Request], routing: str, instances: int,
                 capacities_blocks: Sequence[int], block_size: int = 512,
                 semantics: str = "engine", seed: int = 0,
                 sample_rate: float | None = None) -> FleetResult:
    """Replay ``requests`` over ``instances`` caches of each of ``capacities_blocks`` under
    ``routing``, in one call."""
    if _check_routing(routing) == "cache_aware":
        runner = CacheAwareReplay(instances, capacities_blocks, block_size, semantics,
                                  sample_rate)
        runner.feed(requests)
        return runner.result()
    runner = FleetCurveReplay(routing, instances, block_size, semantics, seed, sample_rate)
    runner.feed(requests)
    return runner.result().at(capacities_blocks)
