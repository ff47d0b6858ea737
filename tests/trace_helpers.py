"""Small trace builders shared by the trace tests (imported, not a pytest plugin)."""

from __future__ import annotations

import random
from kvcache_calculator.traces.readers import Request

BS = 512


def req(ids, t=0.0, length=None, chat=None, parent=None):
    """A request of ``len(ids)`` full blocks and one token more (so that every block can hit
    under the engine's last-token rule), or of ``length`` tokens."""
    ids = tuple(ids)
    return Request(float(t), len(ids) * BS + 1 if length is None else length, 10, ids, chat,
                   parent, None if chat is None else 1, None)


def fitting_capacity(trace) -> int:
    """The smallest capacity that fits every request of ``trace`` in the engine's pool (its
    blocks and the null block): where fixed-capacity replays equal the one-pass curve."""
    return max(-(-r.input_length // BS) for r in trace) + 1


def prefix_closed_trace(rng: random.Random, requests: int, max_new: int = 4,
                        reuse: float = 0.7, heads: int = 3) -> list:
    """A random prefix-closed trace: each request continues a random earlier request's
    prefix (or one of ``heads`` shared first blocks) with fresh blocks, so equal ids always
    have equal prefixes, as prefix hashes do."""
    out = []
    next_id = 1000
    for i in range(requests):
        if out and rng.random() < reuse:
            base = rng.choice(out).hash_ids
            base = base[:rng.randint(1, len(base))]
        else:
            base = (rng.randrange(heads),)
        new = tuple(range(next_id, next_id + rng.randint(0, max_new)))
        next_id += len(new)
        ids = base + new
        out.append(Request(float(i), (len(ids) - 1) * BS + rng.randint(1, BS), 5, ids))
    return out
