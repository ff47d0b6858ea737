"""Eviction policies for a block cache, behind one small interface.

A cache holds block ids (any hashable) up to ``capacity_blocks``. The only mutating call is
:meth:`BlockCache.access`, which records one request's sequence the way serving engines do
(vLLM's block pool, SGLang's radix cache):

- ``blocks`` is the sequence head first (system prompt, then history, then the new turn);
- the blocks are touched *tail first*, so the head ends up the most recently used and the
  tail is the first to go: a partly evicted history still gives a partial prefix hit;
- while the request runs its blocks are pinned (an engine never evicts a block that a
  running request holds), so victims are chosen among the other blocks only;
- a sequence longer than the cache keeps only its first ``capacity_blocks`` blocks.

Lookups do not change the state: ``block in cache``. :func:`prefix_length` counts the
longest cached prefix of a list of blocks.

Policies:

- :class:`LRU`: least recently used first. This is what vLLM (free-block queue, freed in
  reverse order) and SGLang (radix-tree LRU, the default) do.
- :class:`FIFO`: insertion order; a block's insertion time is when it was first cached, and
  hits do not refresh it. Engines do not do this; it is here for comparison.
- :class:`LFU`: fewest accesses since insertion first, ties broken by least recent access.
  A block evicted and cached again starts from one. Close to SGLang's
  ``--radix-eviction-policy lfu`` (hit count, LRU within a tie; SGLang only ever evicts
  leaves of its radix tree, which tail-first access order gives here too); the default of
  both vLLM and SGLang is LRU.
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
    """The interface every policy implements; subclasses define the ordering hooks.

    ``evictions`` counts the blocks evicted so far.
    """

    name = ""

    def __init__(self, capacity_blocks: int):
        self.capacity_blocks = _check_capacity(capacity_blocks)
        self.evictions = 0

    # -- hooks a policy implements -------------------------------------------------------
    def __len__(self) -> int:
        raise NotImplementedError

    def __contains__(self, block: Hashable) -> bool:
        raise NotImplementedError

    def victims(self) -> Iterator[Hashable]:
        """The cached blocks in eviction order, next victim first (do not mutate meanwhile)."""
        raise NotImplementedError

    def _hit(self, block: Hashable) -> None:
        """A cached block is touched."""
        raise NotImplementedError

    def _insert(self, block: Hashable) -> None:
        """A block that was not cached is cached (capacity is restored afterwards)."""
        raise NotImplementedError

    def _remove(self, block: Hashable) -> None:
        raise NotImplementedError

    # -- the shared contract -------------------------------------------------------------
    def __iter__(self) -> Iterator[Hashable]:
        return self.victims()

    def access(self, blocks: Sequence[Hashable]) -> None:
        """Record one request's sequence ``blocks`` (head first), touched tail first.

        Afterwards the first ``min(len(blocks), capacity_blocks)`` blocks are cached and
        exactly enough other blocks were evicted, in policy order, to fit the capacity.
        """
        cap = self.capacity_blocks
        if len(blocks) > cap:
            for block in blocks[cap:]:
                if block in self:
                    self._remove(block)
                    self.evictions += 1
            blocks = blocks[:cap]
        for block in reversed(blocks):
            if block in self:
                self._hit(block)
            else:
                self._insert(block)
        overflow = len(self) - cap
        if overflow > 0:
            pinned = set(blocks)
            chosen = []
            for block in self.victims():
                if block not in pinned:
                    chosen.append(block)
                    if len(chosen) == overflow:
                        break
            for block in chosen:
                self._remove(block)
            self.evictions += overflow


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

    def _hit(self, block: Hashable) -> None:
        self._order.move_to_end(block)

    def _insert(self, block: Hashable) -> None:
        self._order[block] = None

    def _remove(self, block: Hashable) -> None:
        del self._order[block]


class FIFO(LRU):
    """First cached, first evicted: LRU's ordered store, except that hits do not refresh a block."""

    name = "fifo"

    def victims(self) -> Iterator[Hashable]:
        """Oldest insertion first."""
        return iter(self._order)

    def _hit(self, block: Hashable) -> None:
        pass


class LFU(BlockCache):
    """Fewest accesses since insertion first; ties: least recently accessed first."""

    name = "lfu"

    def __init__(self, capacity_blocks: int):
        super().__init__(capacity_blocks)
        self._count: dict = {}
        self._buckets: dict[int, OrderedDict] = {}   # count -> blocks, least recent first

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

    def _unlink(self, block: Hashable, count: int) -> None:
        bucket = self._buckets[count]
        del bucket[block]
        if not bucket:
            del self._buckets[count]

    def _link(self, block: Hashable, count: int) -> None:
        self._count[block] = count
        bucket = self._buckets.get(count)
        if bucket is None:
            bucket = self._buckets[count] = OrderedDict()
        bucket[block] = None

    def _hit(self, block: Hashable) -> None:
        count = self._count[block]
        self._unlink(block, count)
        self._link(block, count + 1)

    def _insert(self, block: Hashable) -> None:
        self._link(block, 1)

    def _remove(self, block: Hashable) -> None:
        self._unlink(block, self._count.pop(block))


#: Policy name (the scenario's ``policy`` key) -> class.
POLICY_CLASSES: dict[str, type[BlockCache]] = {"lru": LRU, "fifo": FIFO, "lfu": LFU}


def make_cache(policy: str, capacity_blocks: int) -> BlockCache:
    """A new empty cache of ``policy`` (``lru``, ``fifo``, ``lfu``) holding ``capacity_blocks``."""
    cls = POLICY_CLASSES.get(policy)
    if cls is None:
        raise ScenarioError("policy", policy, "must be one of " + ", ".join(POLICY_CLASSES))
    return cls(capacity_blocks)


def prefix_length(cache: BlockCache, blocks: Sequence[Hashable], start: int = 0) -> int:
    """The end of the run of cached blocks beginning at ``blocks[start]``.

    With ``start = 0`` this is the length of the longest cached prefix; a request reuses
    exactly that many blocks (engines stop at the first missing block).
    """
    end = start
    n = len(blocks)
    while end < n and blocks[end] in cache:
        end += 1
    return end
