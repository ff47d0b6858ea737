"""vLLM's prefix-cache block pool, block for block: the reference for ``--semantics engine``.

A direct model of vLLM V1's ``BlockPool`` (``vllm/v1/core/block_pool.py``), its free queue
(``FreeKVCacheBlockQueue`` in ``vllm/v1/core/kv_cache_utils.py``) and the prefix lookup of
``KVCacheManager.get_computed_blocks`` / ``FullAttentionManager.find_longest_cache_hit``
(``vllm/v1/core/kv_cache_manager.py``, ``single_type_kv_cache_manager.py``), read in the
released sources of vLLM 0.11 to 0.33. Requests are served one at a time, as a trace replay
does; each is a prompt of ``input_length`` tokens whose full blocks carry the trace's hashes.

The rules it follows:

- ``num_blocks`` GPU blocks, of which block 0 is the *null block*: at most ``num_blocks - 1``
  hold KV.
- Only full blocks get a hash and can be hit; a prompt's partial last block takes a block
  while the request runs but is never cached.
- A hit is the longest run of leading blocks whose hashes are cached, stopping at the first
  miss, and capped at ``(input_length - 1) // block_size`` blocks (the last token is always
  recomputed, for its logits).
- The request takes its hit blocks out of the free queue, then pops its new blocks from the
  queue's head; a popped block that held a hash loses it (that is an eviction).
- When it finishes, its blocks return to the free queue in reverse order (tail block first),
  so its head blocks are the last to be evicted. Up to vLLM 0.22 every block goes to the
  queue's tail; from 0.23 blocks without a hash go to the head (they are reused first) and
  hashed blocks to the tail.
- A fully cached prompt whose length is a multiple of the block size recomputes its last
  block into a new block with the same hash; vLLM keeps both (the lookup returns the older).

This module is exact but handles one capacity per pass; the one-pass curve of
:mod:`kvcache_calculator.traces.replay` gives every capacity at once and is tested against it.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

from kvcache_calculator.errors import ScenarioError

#: The first vLLM release that returns blocks without a hash to the head of the free queue.
HEAD_REUSE_VERSION = (0, 23)


@dataclass(frozen=True)
class PoolStats:
    """Counts of a replay: prompt tokens looked up (vLLM's ``prefix_cache_queries``), tokens hit
    (``prefix_cache_hits``), blocks looked up and hit, blocks evicted, and requests refused
    because they needed more blocks than the pool has."""

    query_tokens: int = 0
    hit_tokens: int = 0
    query_blocks: int = 0
    hit_blocks: int = 0
    evictions: int = 0
    refused: int = 0

    @property
    def token_hit_rate(self) -> float:
        """Hit tokens over prompt tokens (0 when nothing was looked up)."""
        return self.hit_tokens / self.query_tokens if self.query_tokens else 0.0


class VLLMBlockPool:
    """A vLLM block pool of ``num_blocks`` blocks of ``block_size`` tokens (null block included).

    ``version`` (``(major, minor)``) selects where freed blocks without a hash go.
    """

    def __init__(self, num_blocks: int, block_size: int, version: tuple[int, int] = (0, 33)):
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ScenarioError("capacity_blocks", num_blocks, "must be a whole number >= 1 (blocks, the null block included)")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ScenarioError("block_size", block_size, "must be a whole number >= 1 (tokens)")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.head_reuse = tuple(version) >= HEAD_REUSE_VERSION
        # the free queue, head first: block id -> None (an OrderedDict keeps the order and
        # removes from the middle in O(1), as vLLM's doubly linked list does)
        self._free: OrderedDict[int, None] = OrderedDict((b, None) for b in range(1, num_blocks))
        self._hash_of: dict[int, Hashable] = {}
        self._blocks_of: dict[Hashable, list[int]] = {}   # hash -> block ids, oldest first
        self._stats = PoolStats()

    @property
    def stats(self) -> PoolStats:
        """The counts so far."""
        return self._stats

    def cached_hashes(self) -> set:
        """The hashes that a lookup can hit now."""
        return set(self._blocks_of)

    def _pop_head(self) -> tuple[int, bool]:
        """Take the block at the head of the free queue; whether it lost a hash (an eviction)."""
        block, _ = self._free.popitem(last=False)
        old = self._hash_of.pop(block, None)
        if old is None:
            return block, False
        ids = self._blocks_of[old]
        ids.remove(block)
        if not ids:
            del self._blocks_of[old]
        return block, True

    def serve(self, hash_ids: Sequence[Hashable], input_length: int) -> int:
        """Serve one prompt; return its hit tokens.

        ``hash_ids`` are the prefix hashes of the prompt's blocks (a trace may list one for a
        partial last block too; it is not cached). A prompt that needs more blocks than the
        pool has is refused, as vLLM refuses it: it counts as looked up, hits nothing and
        leaves the pool as it was (``refused`` counts them).
        """
        bs = self.block_size
        needed = -(-input_length // bs)
        s = self._stats
        if needed > self.num_blocks - 1:
            self._stats = PoolStats(s.query_tokens + input_length, s.hit_tokens, s.query_blocks + len(hash_ids),
                                    s.hit_blocks, s.evictions, s.refused + 1)
            return 0
        full = min(len(hash_ids), input_length // bs)
        cap = (input_length - 1) // bs
        hits: list[int] = []
        for h in hash_ids[:min(full, cap)]:
            ids = self._blocks_of.get(h)
            if not ids:
                break
            hits.append(ids[0])
        evicted = 0
        for b in hits:                                   # touch: out of the free queue
            del self._free[b]
        new: list[int] = []
        for _ in range(needed - len(hits)):
            block, lost_hash = self._pop_head()
            new.append(block)
            evicted += lost_hash
        blocks = hits + new
        for i in range(len(hits), full):                 # cache the full blocks
            h = hash_ids[i]
            self._hash_of[blocks[i]] = h
            self._blocks_of.setdefault(h, []).append(blocks[i])
        released = blocks[::-1]
        if self.head_reuse:
            plain = [b for b in released if b not in self._hash_of]
            for b in reversed(plain):                    # keep their order at the head
                self._free[b] = None
                self._free.move_to_end(b, last=False)
            released = [b for b in released if b in self._hash_of]
        for b in released:
            self._free[b] = None
        self._stats = PoolStats(s.query_tokens + input_length, s.hit_tokens + len(hits) * bs,
                                s.query_blocks + len(hash_ids), s.hit_blocks + len(hits), s.evictions + evicted,
                                s.refused)
        return len(hits) * bs


def replay_vllm(requests: Iterable, num_blocks: int, block_size: int, version: tuple[int, int] = (0, 33)) -> PoolStats:
    """Replay requests (objects with ``hash_ids`` and ``input_length``) through one pool."""
    pool = VLLMBlockPool(num_blocks, block_size, version)
    for r in requests:
        pool.serve(r.hash_ids, r.input_length)
    return pool.stats
