"""Eviction policies: the one family the simulator and the trace replayer share.

A cache holds block ids (any hashable) up to ``capacity_blocks``. Requests are served the
way serving engines do (vLLM's block pool, SGLang's radix cache):

- a request's ``blocks`` are its sequence, head first (system prompt, history, new turn);
- its hit is the longest prefix of ``blocks`` that was cached before it was served;
- then its blocks are touched *tail first*, so the head ends up the most recently used and
  the tail is the first to go: a partly evicted history still gives a partial prefix hit.

**The pinning rule** (one rule, every policy, both users): the blocks of the request being
served are never evicted while it is served; victims are chosen among the other blocks
only, after the request's blocks are touched. A request with more distinct blocks than the
cache keeps its first ``capacity_blocks`` distinct blocks (its head); its other blocks are
not cached, and are evicted if they were.

Policies, per block (:class:`BlockCache`: ``access(blocks)`` serves one request,
``touch(block)`` the one-block request ``[block]``):

- :class:`LRU`: least recently used first. This is what vLLM (free-block queue, freed in
  reverse order) and SGLang (radix-tree LRU, the default) do.
- :class:`FIFO`: insertion order; a block's insertion time is when it was first cached, and
  hits do not refresh it. Engines do not do this; it is here for comparison.
- :class:`LFU`: fewest accesses since insertion first, ties broken by least recent access.
  A block evicted and cached again starts from one. Close to SGLang's
  ``--radix-eviction-policy lfu`` (hit count, LRU within a tie; SGLang only ever evicts
  leaves of its radix tree, which tail-first access order gives here too); the default of
  both vLLM and SGLang is LRU.

Per run of blocks, :class:`SegmentLRU` is the same LRU for sequences made of whole runs (a
system prompt shared by many conversations, then a conversation's own history): a run is
touched as a whole, so its cached part is always a head prefix and one entry per run
suffices. It holds the same blocks in the same order as :class:`LRU` (tested), at one
operation per run instead of one per block.

The two users:

- the simulator (:mod:`kvcache_calculator.sim.simulate`) serves every request with
  ``access`` (``access_runs`` for LRU by segments);
- trace replay (:mod:`kvcache_calculator.traces.replay`): ``engine`` semantics serves each
  request with ``access``; ``independent`` semantics looks up and touches every block on its
  own with ``touch``, each block being a request of one block. That is how libCacheSim
  counts: for one block the pinning rule only says that the block being cached is not its
  own victim, which is what libCacheSim's LRU, FIFO and LFU do too (tested).

**Running requests** (the simulator's in-flight KV): ``hold(blocks)`` serves a request as
``access`` does but keeps its blocks pinned after the call, for as long as the request runs;
``release(held, cached)`` ends it: its blocks are unpinned, those of ``held`` not in
``cached`` (the partly filled last block) are dropped, ``cached`` (the whole blocks of its
final sequence) are settled in the policy's order as at an access (LRU: most recent, tail
first; FIFO and LFU: inserted if new, not refreshed), and the overflow is evicted. A block
pinned by several requests (a shared system prompt) stays pinned until the last one ends.
Pinned blocks count in the capacity but are never victims: when running requests alone hold
more than the capacity, the cache holds them all and evicts the rest (an engine would queue
or preempt a request instead). A cache is served either with ``access`` or with
``hold``/``release``, not both. :class:`SegmentLRU` does the same by runs (``hold_runs``,
``release_runs``).

Lookups do not change the state: ``block in cache``; :func:`prefix_length` counts the longest
cached run of a list of blocks.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable, Iterator, Sequence

from kvcache_calculator.errors import ScenarioError


def _check_capacity(capacity_blocks: int) -> int:
    if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int) or capacity_blocks < 0:
        raise ScenarioError("capacity_blocks", capacity_blocks, "must be a whole number >= 0 (blocks)")
    return capacity_blocks


class BlockCache:
    """What every per-block policy implements: ``access``, ``touch``, lookups, eviction order.

    ``evictions`` counts the blocks evicted so far (cached before, not cached after).
    """

    name = ""

    def __init__(self, capacity_blocks: int):
        self.capacity_blocks = _check_capacity(capacity_blocks)
        self.evictions = 0
        self._pins: dict = {}       # block -> running requests holding it (hold/release)

    def __len__(self) -> int:
        raise NotImplementedError

    def __contains__(self, block: Hashable) -> bool:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Hashable]:
        return self.victims()

    def victims(self) -> Iterator[Hashable]:
        """The cached blocks in eviction order, next victim first (do not mutate meanwhile)."""
        raise NotImplementedError

    def access(self, blocks: Sequence[Hashable], start: int = 0) -> int:
        """Serve one request whose sequence is ``blocks`` (head first), by the pinning rule.

        Returns the end of the run of blocks cached before the request, beginning at
        ``blocks[start]`` (``start = 0``: the request's prefix hit, in blocks). Afterwards
        the request's head (its first ``capacity_blocks`` distinct blocks) is cached and
        exactly enough other blocks were evicted, in policy order, to fit the capacity.
        """
        raise NotImplementedError

    def touch(self, block: Hashable) -> bool:
        """Serve the one-block request ``[block]``; True when ``block`` was cached (a hit)."""
        raise NotImplementedError

    def _remove(self, block: Hashable) -> None:
        raise NotImplementedError

    def _use(self, block: Hashable) -> None:
        """One block of a request being served, without eviction: cached, and ordered as the
        policy orders an access."""
        raise NotImplementedError

    def _settle(self, block: Hashable) -> None:
        """One block of a request that ends, without eviction: cached if new, else left where
        the policy keeps it (LRU refreshes it)."""
        raise NotImplementedError

    def pinned(self, block: Hashable) -> bool:
        """Whether a running request holds ``block`` (:meth:`hold`)."""
        return block in self._pins

    def hold(self, blocks: Sequence[Hashable], start: int = 0) -> int:
        """Serve a request that keeps running (see the module docstring): as :meth:`access`,
        its blocks then stay pinned until :meth:`release`. Returns the cached run's end."""
        n = len(blocks)
        end = start
        while end < n and blocks[end] in self:
            end += 1
        for block in reversed(blocks):
            self._use(block)
        pins = self._pins
        for block in blocks:
            pins[block] = pins.get(block, 0) + 1
        self._evict_unpinned(len(self) - self.capacity_blocks)
        return end

    def release(self, held: Sequence[Hashable], cached: Sequence[Hashable]) -> None:
        """End a request served by :meth:`hold` with ``held``; ``cached`` is what its final
        sequence leaves cached (see the module docstring)."""
        pins = self._pins
        for block in held:
            count = pins[block] - 1
            if count:
                pins[block] = count
            else:
                del pins[block]
        keep = set(cached)
        for block in held:
            if block not in keep and block not in pins and block in self:
                self._remove(block)         # the partly filled last block: never cached
        for block in reversed(cached):
            self._settle(block)
        self._evict_unpinned(len(self) - self.capacity_blocks)

    def _evict_unpinned(self, overflow: int) -> None:
        """Evict up to ``overflow`` blocks in policy order, none of them pinned."""
        if overflow <= 0:
            return
        pins = self._pins
        chosen = []
        for block in self.victims():
            if block not in pins:
                chosen.append(block)
                if len(chosen) == overflow:
                    break
        for block in chosen:
            self._remove(block)
        self.evictions += len(chosen)

    def _head(self, blocks: Sequence[Hashable]) -> Sequence[Hashable]:
        """The blocks a request keeps when it is longer than the cache (its first
        ``capacity_blocks`` distinct blocks, in request order); its other cached blocks
        are evicted."""
        kept: dict = {}
        for block in blocks:
            if len(kept) == self.capacity_blocks:
                break
            kept[block] = None
        if len(kept) == len(set(blocks)):
            return blocks                       # repeats only: every block fits
        for block in set(blocks).difference(kept):
            if block in self:
                self._remove(block)
                self.evictions += 1
        return [block for block in blocks if block in kept]


class LRU(BlockCache):
    """Least recently used first (vLLM, SGLang)."""

    name = "lru"

    def __init__(self, capacity_blocks: int):
        super().__init__(capacity_blocks)
        self._order: OrderedDict = OrderedDict()   # least recent first

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, block: Hashable) -> bool:
        return block in self._order

    def victims(self) -> Iterator[Hashable]:
        """Least recently used first."""
        return iter(self._order)

    def access(self, blocks: Sequence[Hashable], start: int = 0) -> int:
        """Serve one request (see :meth:`BlockCache.access`); returns the cached run's end."""
        order = self._order
        n = len(blocks)
        end = start
        while end < n and blocks[end] in order:
            end += 1
        if n > self.capacity_blocks:
            blocks = self._head(blocks)
        move = order.move_to_end
        for block in reversed(blocks):
            if block in order:
                move(block)
            else:
                order[block] = None
        # The request's blocks are now the most recent: the least recent are all others.
        overflow = len(order) - self.capacity_blocks
        if overflow > 0:
            pop = order.popitem
            for _ in range(overflow):
                pop(last=False)
            self.evictions += overflow
        return end

    def touch(self, block: Hashable) -> bool:
        """Serve ``[block]``; True on a hit."""
        order = self._order
        if block in order:
            order.move_to_end(block)
            return True
        if self.capacity_blocks:
            order[block] = None
            if len(order) > self.capacity_blocks:
                order.popitem(last=False)
                self.evictions += 1
        return False

    def _remove(self, block: Hashable) -> None:
        del self._order[block]

    def _use(self, block: Hashable) -> None:
        order = self._order
        if block in order:
            order.move_to_end(block)
        else:
            order[block] = None

    _settle = _use      # a request that ends leaves its blocks the most recent (vLLM frees them so)


class FIFO(LRU):
    """First cached, first evicted: LRU's ordered store, except that hits do not refresh a block."""

    name = "fifo"

    def victims(self) -> Iterator[Hashable]:
        """Oldest insertion first."""
        return iter(self._order)

    def access(self, blocks: Sequence[Hashable], start: int = 0) -> int:
        """Serve one request (see :meth:`BlockCache.access`); returns the cached run's end."""
        order = self._order
        n = len(blocks)
        end = start
        while end < n and blocks[end] in order:
            end += 1
        if n > self.capacity_blocks:
            blocks = self._head(blocks)
        for block in reversed(blocks):
            if block not in order:
                order[block] = None
        overflow = len(order) - self.capacity_blocks
        if overflow > 0:
            # The oldest blocks go first, except the request's own (pinned).
            pinned = set(blocks)
            chosen = []
            for block in order:
                if block not in pinned:
                    chosen.append(block)
                    if len(chosen) == overflow:
                        break
            for block in chosen:
                del order[block]
            self.evictions += overflow
        return end

    def _use(self, block: Hashable) -> None:
        if block not in self._order:
            self._order[block] = None

    _settle = _use

    def touch(self, block: Hashable) -> bool:
        """Serve ``[block]``; True on a hit."""
        order = self._order
        if block in order:
            return True
        if self.capacity_blocks:
            order[block] = None
            if len(order) > self.capacity_blocks:
                order.popitem(last=False)
                self.evictions += 1
        return False


class LFU(BlockCache):
    """Fewest accesses since insertion first; ties: least recently accessed first."""

    name = "lfu"

    def __init__(self, capacity_blocks: int):
        super().__init__(capacity_blocks)
        self._count: dict = {}
        self._buckets: dict[int, OrderedDict] = {}   # count -> blocks, least recent first
        # A lower bound of the smallest count; exact whenever its bucket exists.
        self._min_count = 1

    def __len__(self) -> int:
        return len(self._count)

    def __contains__(self, block: Hashable) -> bool:
        return block in self._count

    def count(self, block: Hashable) -> int:
        """Accesses of a cached block since it was cached (1 when just cached)."""
        return self._count[block]

    def victims(self) -> Iterator[Hashable]:
        """Fewest accesses first, least recent first within a count."""
        return (b for c in sorted(self._buckets) for b in self._buckets[c])

    def _bump(self, block: Hashable, count: int) -> None:
        """A cached block of ``count`` accesses is accessed once more."""
        buckets = self._buckets
        bucket = buckets[count]
        del bucket[block]
        if not bucket:
            del buckets[count]
            if self._min_count == count:
                self._min_count = count + 1
        self._count[block] = count + 1
        bucket = buckets.get(count + 1)
        if bucket is None:
            buckets[count + 1] = OrderedDict({block: None})
        else:
            bucket[block] = None

    def _insert(self, block: Hashable) -> None:
        self._count[block] = 1
        bucket = self._buckets.get(1)
        if bucket is None:
            self._buckets[1] = OrderedDict({block: None})
        else:
            bucket[block] = None
        self._min_count = 1

    def _remove(self, block: Hashable) -> None:
        count = self._count.pop(block)
        bucket = self._buckets[count]
        del bucket[block]
        if not bucket:
            del self._buckets[count]

    def _use(self, block: Hashable) -> None:
        count = self._count.get(block)
        if count is None:
            self._insert(block)
        else:
            self._bump(block, count)

    def _settle(self, block: Hashable) -> None:
        if block not in self._count:
            self._insert(block)       # a request's end is no access: counts stay

    def access(self, blocks: Sequence[Hashable], start: int = 0) -> int:
        """Serve one request (see :meth:`BlockCache.access`); returns the cached run's end."""
        counts = self._count
        n = len(blocks)
        end = start
        while end < n and blocks[end] in counts:
            end += 1
        if n > self.capacity_blocks:
            blocks = self._head(blocks)
        for block in reversed(blocks):
            count = counts.get(block)
            if count is None:
                self._insert(block)
            else:
                self._bump(block, count)
        overflow = len(counts) - self.capacity_blocks
        if overflow > 0:
            # Fewest accesses first, except the request's own blocks (pinned).
            pinned = set(blocks)
            chosen = []
            buckets = self._buckets
            for c in sorted(buckets):
                for block in buckets[c]:
                    if block not in pinned:
                        chosen.append(block)
                        if len(chosen) == overflow:
                            break
                else:
                    continue
                break
            for block in chosen:
                self._remove(block)
            self.evictions += overflow
        return end

    def touch(self, block: Hashable) -> bool:
        """Serve ``[block]``; True on a hit."""
        count = self._count.get(block)
        if count is not None:
            self._bump(block, count)
            return True
        if self.capacity_blocks:
            if len(self._count) >= self.capacity_blocks:
                buckets = self._buckets
                low = self._min_count
                if low not in buckets:
                    low = min(buckets)
                victim = next(iter(buckets[low]))
                self._remove(victim)
                self.evictions += 1
            self._insert(block)
        return False


class EvictionLog:
    """Sums over the blocks a :class:`SegmentLRU` evicts while :attr:`active`: how many
    (``blocks``) and how long they had been idle (``idle_block_s``, block-seconds). Caches
    may share one log; the sums are then in eviction order over all of them."""

    __slots__ = ("active", "blocks", "idle_block_s")

    def __init__(self) -> None:
        self.active = False
        self.blocks = 0
        self.idle_block_s = 0.0

    @property
    def mean_idle_s(self) -> float | None:
        """Mean idle time of the logged evicted blocks (seconds); ``None`` when none."""
        return self.idle_block_s / self.blocks if self.blocks else None


class SegmentLRU:
    """:class:`LRU` for sequences made of runs of blocks, one entry per run.

    Block ``i`` of run ``key`` is the block ``(key, i)``. A request's sequence is a head run
    (``head_blocks`` blocks, e.g. a system prompt shared by many sequences; 0 for none)
    followed by a tail run (its own history); a run is always touched as a whole and its
    length never decreases. Then each run's cached blocks are a head prefix of it, and the
    least recent run loses blocks from its tail, exactly as :class:`LRU` on the blocks.
    Evictions are timed: each run remembers when it was last touched, and ``log`` (an
    :class:`EvictionLog`) sums the idle time of the blocks evicted while it is active.
    """

    name = "lru"
    __slots__ = ("capacity_blocks", "used_blocks", "evictions", "log", "_runs", "_held")

    def __init__(self, capacity_blocks: int, log: EvictionLog | None = None):
        self.capacity_blocks = _check_capacity(capacity_blocks)
        self.used_blocks = 0
        self.evictions = 0
        self.log = log if log is not None else EvictionLog()
        self._runs: OrderedDict = OrderedDict()   # key -> (cached blocks, last touch s), least recent first
        self._held: dict = {}                     # key -> [running requests, blocks]: pinned runs

    def __len__(self) -> int:
        return self.used_blocks

    def __contains__(self, block: tuple) -> bool:
        key, i = block
        entry = self._held.get(key)
        if entry is not None:
            return 0 <= i < entry[1]
        entry = self._runs.get(key)
        return entry is not None and 0 <= i < entry[0]

    def pinned(self, block: tuple) -> bool:
        """Whether a running request holds ``block`` (:meth:`hold_runs`)."""
        entry = self._held.get(block[0])
        return entry is not None and 0 <= block[1] < entry[1]

    def __iter__(self) -> Iterator[tuple]:
        return self.victims()

    def victims(self) -> Iterator[tuple]:
        """Blocks ``(key, i)`` in eviction order: least recent run first, its tail first."""
        return ((key, i) for key, (cached, _) in self._runs.items() for i in range(cached - 1, -1, -1))

    def cached_blocks(self, key: Hashable) -> int:
        """How many blocks of run ``key`` are cached (a head prefix of the run), held or not."""
        entry = self._held.get(key)
        if entry is not None:
            return entry[1]
        entry = self._runs.get(key)
        return entry[0] if entry is not None else 0

    def _evict_own(self, head_cached: int, tail_cached: int, head_blocks: int) -> None:
        """Count the evictions of a request longer than the cache: every other block goes,
        and of its own blocks those beyond the first ``capacity_blocks`` that were cached
        (the log times them all, cached before or not, idle or not)."""
        cap = self.capacity_blocks
        kept_head = min(head_blocks, cap)
        others = self.used_blocks - head_cached - tail_cached
        self.evictions += others + max(0, head_cached - kept_head) + max(0, tail_cached - (cap - kept_head))

    def access_runs(self, head: Hashable, head_blocks: int, tail: Hashable, tail_blocks: int,
                    now_s: float, start: int = 0) -> int:
        """Serve one request whose sequence is run ``head`` then run ``tail``, at ``now_s``.

        Returns the end of the run of blocks cached before the request, beginning at block
        ``start`` of the sequence (``start = 0``: the prefix hit). The tail run is touched
        first, then the head run (tail first: the head ends the most recent).
        """
        runs = self._runs
        old = runs.pop(head, None) if head_blocks else None
        h = old[0] if old else 0                    # cached blocks of each run, before
        old = runs.pop(tail, None)
        t = old[0] if old else 0
        # The cached run beginning at ``start``: the head run's cached prefix, continued
        # into the tail run only when the whole head run is cached.
        if start < head_blocks:
            end = (h if h < head_blocks else head_blocks + t) if h > start else start
        else:
            end = head_blocks + t if head_blocks + t > start else start
        used = self.used_blocks - h - t
        if tail_blocks > 0:
            runs[tail] = (tail_blocks, now_s)
            used += tail_blocks
        if head_blocks:
            runs[head] = (head_blocks, now_s)
            used += head_blocks
        excess = used - self.capacity_blocks
        if excess > 0:
            if excess <= used - head_blocks - tail_blocks:
                self.evictions += excess
            else:
                self._evict_own(h, t, head_blocks)
            used -= excess
            log = self.log
            pop = runs.popitem
            while excess:
                key, (cached, touched_s) = pop(False)           # the least recent run
                if cached > excess:                              # loses its tail only
                    runs[key] = (cached - excess, touched_s)
                    runs.move_to_end(key, False)
                    cached = excess
                excess -= cached
                if log.active:
                    log.idle_block_s += cached * (now_s - touched_s)
                    log.blocks += cached
        self.used_blocks = used
        return end


    def hold_runs(self, head: Hashable, head_blocks: int, tail: Hashable, tail_blocks: int,
                  now_s: float, start: int = 0) -> int:
        """Serve a request that keeps running, its sequence run ``head`` then ``tail_blocks``
        of run ``tail`` (:meth:`access_runs`, returning the same); both runs stay pinned
        until :meth:`release_runs` (the module docstring's running requests)."""
        runs, held = self._runs, self._held
        used = self.used_blocks
        h = 0
        if head_blocks:
            entry = held.get(head)
            if entry is not None:               # a shared prompt another running request holds
                entry[0] += 1
                h = entry[1]
            else:
                old = runs.pop(head, None)
                h = old[0] if old else 0
                held[head] = [1, head_blocks]
                used += head_blocks - h
        entry = held.get(tail)
        if entry is not None:
            entry[0] += 1
            t = entry[1]
            if tail_blocks > t:
                used += tail_blocks - t
                entry[1] = tail_blocks
        else:
            old = runs.pop(tail, None)
            t = old[0] if old else 0
            held[tail] = [1, tail_blocks]
            used += tail_blocks - t
        if start < head_blocks:
            end = (h if h < head_blocks else head_blocks + t) if h > start else start
        else:
            end = head_blocks + t if head_blocks + t > start else start
        self.used_blocks = used
        self._evict_idle(now_s)
        return end

    def release_runs(self, head: Hashable, head_blocks: int, tail: Hashable, tail_cached: int,
                     now_s: float) -> None:
        """End a request served by :meth:`hold_runs`: its tail run keeps ``tail_cached``
        blocks (the whole blocks of its final sequence) and becomes the most recent, then its
        head run when no other running request holds it; the overflow is evicted."""
        runs, held = self._runs, self._held
        entry = held[tail]
        entry[0] -= 1
        if entry[0] == 0:
            del held[tail]
            self.used_blocks += tail_cached - entry[1]
            if tail_cached > 0:
                runs[tail] = (tail_cached, now_s)
        if head_blocks:
            entry = held[head]
            entry[0] -= 1
            if entry[0] == 0:
                del held[head]
                runs[head] = (entry[1], now_s)
        self._evict_idle(now_s)

    def _evict_idle(self, now_s: float) -> None:
        """Evict the least recent runs' blocks (tails first) until the capacity holds or
        only pinned runs are left."""
        excess = self.used_blocks - self.capacity_blocks
        runs = self._runs
        if excess <= 0 or not runs:
            return
        log = self.log
        pop = runs.popitem
        while excess > 0 and runs:
            key, (cached, touched_s) = pop(False)           # the least recent run
            if cached > excess:                              # loses its tail only
                runs[key] = (cached - excess, touched_s)
                runs.move_to_end(key, False)
                cached = excess
            excess -= cached
            self.used_blocks -= cached
            self.evictions += cached
            if log.active:
                log.idle_block_s += cached * (now_s - touched_s)
                log.blocks += cached


#: Policy name (the scenario's ``policy`` key) -> per-block class.
POLICY_CLASSES: dict[str, type[BlockCache]] = {"lru": LRU, "fifo": FIFO, "lfu": LFU}


def make_cache(policy: str, capacity_blocks: int) -> BlockCache:
    """A new empty per-block cache of ``policy`` (``lru``, ``fifo``, ``lfu``) of ``capacity_blocks``."""
    cls = POLICY_CLASSES.get(policy)
    if cls is None:
        raise ScenarioError("policy", policy, "must be one of " + ", ".join(POLICY_CLASSES))
    return cls(capacity_blocks)


def prefix_length(cache, blocks: Sequence[Hashable], start: int = 0) -> int:
    """The end of the run of cached blocks beginning at ``blocks[start]`` (no state change).

    With ``start = 0`` this is the length of the longest cached prefix; a request reuses
    exactly that many blocks (engines stop at the first missing block).
    """
    end = start
    n = len(blocks)
    while end < n and blocks[end] in cache:
        end += 1
    return end
