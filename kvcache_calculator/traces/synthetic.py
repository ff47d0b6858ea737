"""A seeded generator of multi-turn traffic with shared prefixes, in the trace format.

For tests and benchmarks that need traces larger than the public ones (tens of millions of
requests) or with known structure. The traffic:

- new conversations arrive as a Poisson process of rate ``request_rate / mean_turns`` per
  second, so requests arrive at about ``request_rate`` per second;
- each conversation picks one of ``system_prompts`` system prompts with Zipf popularity
  (probability of the ``k``-th proportional to ``1 / k**zipf_s``); prompt ``k`` is
  ``1 + k mod max_system_blocks`` blocks long, with ids shared by all its users;
- it has a geometric number of turns of mean ``mean_turns`` (at least 1), separated by
  exponential think times of mean ``think_time_s``;
- turn ``j``'s prompt is the system prompt, the conversation's history (every earlier turn's
  new blocks and one block of each earlier answer) and 1 + a geometric number (mean
  ``mean_new_blocks``) of new blocks; a conversation ends early when its prompt would exceed
  ``max_prompt_blocks`` blocks;
- every new block gets a fresh id (a counter), so ids are prefix hashes: equal ids mean an
  equal prefix, as in Mooncake traces; the last block is partial (1 to ``block_size``
  tokens, uniform).

The same seed gives the same trace on every platform (only ``random.Random`` is used).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from typing import Iterator

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.readers import Request

__all__ = ["generate_requests"]


def _positive(key: str, value, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0 \
            or (not integer and math.isinf(value)):
        raise ScenarioError(key, value, f"must be a{'n integer' if integer else ' number'} > 0")


def generate_requests(requests: int, seed: int = 0, *, block_size: int = 512,
                      request_rate: float = 50.0, system_prompts: int = 200,
                      zipf_s: float = 1.0, max_system_blocks: int = 8,
                      mean_turns: float = 4.0, think_time_s: float = 60.0,
                      mean_new_blocks: float = 2.0, max_prompt_blocks: int = 96
                      ) -> Iterator[Request]:
    """Yield ``requests`` generated requests in arrival order (see the module docstring)."""
    _positive("requests", requests, integer=True)
    for key, value in (("request_rate", request_rate), ("zipf_s", zipf_s),
                       ("think_time_s", think_time_s)):
        _positive(key, value)
    for key, value in (("block_size", block_size), ("system_prompts", system_prompts),
                       ("max_system_blocks", max_system_blocks),
                       ("max_prompt_blocks", max_prompt_blocks)):
        _positive(key, value, integer=True)
    if isinstance(mean_turns, bool) or not isinstance(mean_turns, (int, float)) \
            or not 1 <= mean_turns < math.inf:
        raise ScenarioError("mean_turns", mean_turns, "must be a number >= 1")
    if isinstance(mean_new_blocks, bool) or not isinstance(mean_new_blocks, (int, float)) \
            or not 1 <= mean_new_blocks < math.inf:
        raise ScenarioError("mean_new_blocks", mean_new_blocks, "must be a number >= 1")
    rng = random.Random(seed)
    # System prompt k has ids k * max_system_blocks + 0..len-1; fresh ids start above them.
    weights = [1 / (k + 1) ** zipf_s for k in range(system_prompts)]
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    prompts = [tuple(range(k * max_system_blocks, k * max_system_blocks
                           + 1 + k % max_system_blocks)) for k in range(system_prompts)]
    next_id = system_prompts * max_system_blocks
    conv_rate = request_rate / mean_turns
    p_end = 1 / mean_turns               # geometric turns, mean mean_turns
    p_new = 1 / mean_new_blocks          # 1 + geometric extra blocks, mean mean_new_blocks
    pending: list = []                   # (time_s, sequence, conversation state)
    sequence = 0
    t_arrival = rng.expovariate(conv_rate)
    emitted = 0
    while emitted < requests:
        if pending and pending[0][0] <= t_arrival:
            t, _, conv = heapq.heappop(pending)
        else:
            t = t_arrival
            t_arrival += rng.expovariate(conv_rate)
            k = min(system_prompts - 1, bisect.bisect_left(cum, rng.random() * acc))
            conv = [prompts[k]]          # [history ids]
        new = 1
        while rng.random() > p_new:
            new += 1
        history = conv[0]
        if len(history) + new > max_prompt_blocks:
            continue                     # the conversation ends: its prompt would be too long
        ids = history + tuple(range(next_id, next_id + new))
        next_id += new
        n = len(ids)
        yield Request(t, (n - 1) * block_size + rng.randint(1, block_size),
                      rng.randint(20, 800), ids)
        emitted += 1
        if rng.random() >= p_end:
            # One block of the answer joins the history of the next turn.
            conv[0] = ids + (next_id,)
            next_id += 1
            sequence += 1
            heapq.heappush(pending, (t + rng.expovariate(1 / think_time_s), sequence, conv))

