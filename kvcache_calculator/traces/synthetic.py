"""Seeded generators of multi-turn traffic with shared prefixes, in the trace format:
:func:`generate_requests` (below) and :func:`generate_workload` (the scenario's workload keys,
with shared documents, several system prompts and lognormal think times).

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
import json
import math
import random
from typing import Iterator

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.readers import Request

__all__ = ["generate_requests", "generate_workload", "mooncake_lines", "WORKLOAD_DEFAULTS"]


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



# ---------------------------------------------------------------------------------------
# Traffic described by the scenario's workload keys, with shared documents

#: The workload of :func:`generate_workload` when a key is not given (scenario key names).
WORKLOAD_DEFAULTS = {
    "arrival_rate": 1.0, "turns": 4.0, "turns_dist": "geometric", "think_time_s": 60.0,
    "think_dist": "exponential", "think_sigma": 1.0, "input_tokens": 400, "output_tokens": 200,
    "length_dist": "exponential",
    "system_prompt_tokens": 1024, "num_system_prompts": 1, "system_prompt_zipf": 0.0,
    "num_documents": 0, "document_tokens": 4096, "document_share": 0.0, "document_zipf": 1.0,
}


def _zipf_sampler(rng: random.Random, n: int, s: float):
    cum, acc = [], 0.0
    for k in range(n):
        acc += 1 / (k + 1) ** s
        cum.append(acc)
    return lambda: min(n - 1, bisect.bisect_left(cum, rng.random() * acc))


def _length(rng: random.Random, mean: float, minimum: int, dist: str = "exponential") -> int:
    """A length of mean ``mean`` (tokens): exponential, rounded, at least ``minimum``; or
    ``mean`` itself, rounded, with ``dist`` fixed."""
    if dist == "fixed":
        return max(minimum, round(mean))
    return max(minimum, round(rng.expovariate(1 / mean))) if mean > 0 else minimum


def generate_workload(duration_s: float, seed: int = 0, *, block_size: int = 512,
                      **workload) -> list:
    """Requests of the workload ``workload`` (scenario keys, :data:`WORKLOAD_DEFAULTS` for the
    rest) arriving in ``[0, duration_s)``, in arrival order, as Mooncake-format requests.

    The traffic is the one the model describes (docs/model.md §4, with shared documents):
    conversations arrive as a Poisson process of rate ``arrival_rate``; each uses system
    prompt ``k`` of ``num_system_prompts`` with probability proportional to
    ``1 / k**system_prompt_zipf`` (all ``system_prompt_tokens`` long) and, with probability
    ``document_share``, document ``d`` of ``num_documents`` with probability proportional
    to ``1 / d**document_zipf`` (``document_tokens`` long, placed right after the system
    prompt); it has ``turns`` turns (geometric of that mean, or fixed), separated by think
    times of mean ``think_time_s`` (exponential, fixed, or lognormal with ``think_sigma``, the
    standard deviation of the gap's logarithm). Each turn adds an exponential number of new
    tokens of mean ``input_tokens`` (at least 1) and gets an exponential answer of mean
    ``output_tokens``, which the next turn's prompt carries (``length_dist`` fixed: exactly
    those numbers). Conversations still running at
    ``duration_s`` are cut there, as in a recorded trace.

    Block ids are prefix hashes, as in Mooncake traces: a block of ``block_size`` tokens has
    the same id in two prompts exactly when their tokens up to its end are the same (a system
    prompt's blocks, a document's blocks after the same system prompt, a conversation's own
    history); a prompt's last, partial block gets a fresh id. Seeded: only
    ``random.Random(seed)`` is used.
    """
    w = dict(WORKLOAD_DEFAULTS)
    for key, value in workload.items():
        if key not in w:
            raise ScenarioError(key, value, "is not a workload key of the generator; known: "
                                + ", ".join(w))
        w[key] = value
    _positive("duration_s", duration_s)
    _positive("block_size", block_size, integer=True)
    for key in ("arrival_rate", "think_time_s", "turns", "input_tokens"):
        _positive(key, w[key])
    if w["turns"] < 1:
        raise ScenarioError("turns", w["turns"], "must be a number >= 1")
    if not 0 <= w["document_share"] <= 1:
        raise ScenarioError("document_share", w["document_share"], "must be between 0 and 1")
    if w["think_dist"] not in ("exponential", "fixed", "lognormal"):
        raise ScenarioError("think_dist", w["think_dist"], "must be exponential, fixed or lognormal")
    if w["length_dist"] not in ("exponential", "fixed"):
        raise ScenarioError("length_dist", w["length_dist"], "must be exponential or fixed")
    rng = random.Random(seed)
    bs = block_size
    pick_prompt = _zipf_sampler(rng, max(1, int(w["num_system_prompts"])), w["system_prompt_zipf"])
    n_docs = int(w["num_documents"])
    pick_doc = _zipf_sampler(rng, n_docs, w["document_zipf"]) if n_docs else None
    mean_think, sigma = w["think_time_s"], w["think_sigma"]
    mu = math.log(mean_think) - sigma ** 2 / 2

    def think() -> float:
        if w["think_dist"] == "fixed":
            return mean_think
        if w["think_dist"] == "lognormal":
            return rng.lognormvariate(mu, sigma)
        return rng.expovariate(1 / mean_think)

    def turn_count() -> int:
        if w["turns_dist"] == "fixed":
            return max(1, round(w["turns"]))
        n = 1
        while rng.random() >= 1 / w["turns"]:
            n += 1
        return n

    ids: dict = {}

    def shared_id(key) -> int:
        if key not in ids:
            ids[key] = len(ids)
        return ids[key]

    fresh = [0]

    def new_id() -> int:
        fresh[0] += 1
        return -fresh[0]                  # negative: never a shared key's id; renumbered below

    sp = int(w["system_prompt_tokens"])
    doc_len = int(w["document_tokens"])
    out: list = []
    pending: list = []                    # (time, sequence, conversation)
    sequence = 0
    t_next = rng.expovariate(w["arrival_rate"])
    while True:
        if pending and (pending[0][0] <= t_next or t_next >= duration_s):
            t, _, conv = heapq.heappop(pending)
            if t >= duration_s:
                break
        elif t_next < duration_s:
            t = t_next
            t_next += rng.expovariate(w["arrival_rate"])
            k = pick_prompt()
            d = pick_doc() if pick_doc and rng.random() < w["document_share"] else -1
            shared = sp + (doc_len if d >= 0 else 0)
            conv = {"k": k, "d": d, "shared": shared, "stream": shared, "private": {},
                    "left": turn_count()}
        else:
            break
        prompt = conv["stream"] + _length(rng, w["input_tokens"], 1, w["length_dist"])
        blocks = []
        for i in range(-(-prompt // bs)):
            end = (i + 1) * bs
            if end <= sp:
                blocks.append(shared_id(("s", conv["k"], i)))
            elif end <= conv["shared"]:
                blocks.append(shared_id(("d", conv["k"], conv["d"], i)))
            elif end <= prompt:
                if i not in conv["private"]:
                    conv["private"][i] = new_id()
                blocks.append(conv["private"][i])
            else:
                blocks.append(new_id())
        answer = _length(rng, w["output_tokens"], 0, w["length_dist"])
        out.append(Request(t, prompt, answer, tuple(blocks)))
        conv["stream"] = prompt + answer
        conv["left"] -= 1
        if conv["left"] > 0:
            sequence += 1
            heapq.heappush(pending, (t + think(), sequence, conv))
    # renumber: fresh ids after the shared ones, in order of first appearance
    base = len(ids)
    renumbered = []
    for r in out:
        renumbered.append(Request(r.timestamp_s, r.input_length, r.output_length,
                                  tuple(h if h >= 0 else base - 1 - h for h in r.hash_ids)))
    return renumbered


def mooncake_lines(requests) -> list:
    """The requests as Mooncake JSON lines (``timestamp`` in whole milliseconds)."""
    return [json.dumps({"timestamp": round(r.timestamp_s * 1000), "input_length": r.input_length,
                        "output_length": r.output_length, "hash_ids": list(r.hash_ids)})
            for r in requests]
