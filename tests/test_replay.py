"""Block replay: one-pass LRU against direct replays, Belady, libCacheSim.

The caches themselves (``kvcache_calculator.sim.policies``) are tested in test_policies.py."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.replay import (
    BeladyReplay,
    LRUCurveReplay,
    PolicyReplay,
    capacity_blocks_from_gib,
    capacity_blocks_from_tokens,
    last_block_tokens,
    replay,
    replay_lru_curve,
    replay_steps,
)
from kvcache_calculator.traces.readers import Request, read_trace
from kvcache_calculator.traces.vllm_pool import replay_vllm

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"


def shared_requests(name: str) -> list:
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"{name} not found: ../shared/traces/ is absent")
    with path.open() as f:
        return list(read_trace(f, "mooncake"))


def reqs(*id_lists, block_size=4):
    """Requests whose prompts fill their blocks exactly."""
    return [Request(float(i), len(ids) * block_size, 1, tuple(ids))
            for i, ids in enumerate(id_lists)]


# ------------------------------------------------------------------ token definition


def test_last_block_tokens():
    assert last_block_tokens(1100, 3, 512) == 76
    assert last_block_tokens(1024, 2, 512) == 512
    assert last_block_tokens(5000, 2, 512) == 512  # clamped when lengths disagree
    assert last_block_tokens(10, 3, 512) == 0
    assert last_block_tokens(0, 0, 512) == 0


def test_token_hits_count_the_partial_last_block_independently():
    # Second request repeats the first (3 blocks, 2 full + 76 tokens), then has 1 more.
    trace = [Request(0.0, 1100, 1, (1, 2, 3)), Request(1.0, 1600, 1, (1, 2, 3, 4))]
    res = replay_lru_curve(trace, [10], 512, "independent")
    assert res.block_hits == (3,)
    assert res.token_hits == (3 * 512,)  # block 3 is full in the second request
    assert res.total_tokens == 1100 + 1600
    assert res.token_hit_rate == [3 * 512 / 2700]
    trace = [Request(0.0, 1100, 1, (1, 2, 3)), Request(1.0, 1100, 1, (1, 2, 3))]
    assert replay_lru_curve(trace, [10], 512, "independent").token_hits == (1100,)


def test_engine_never_caches_a_partial_block_and_caps_the_hit():
    """vLLM: a partial last block has no hash (block 3 of the first request is not cached, so
    the second request, where block 3 is full, hits 2 blocks), and the last token is always
    recomputed (a repeated 1,100-token prompt hits its 2 full blocks, not 1,100 tokens)."""
    trace = [Request(0.0, 1100, 1, (1, 2, 3)), Request(1.0, 1600, 1, (1, 2, 3, 4))]
    for runner in (replay_lru_curve(trace, [10], 512, "engine"), replay(trace, "lru", [10], 512, "engine")):
        assert runner.block_hits == (2,) and runner.token_hits == (1024,)
    trace = [Request(0.0, 1100, 1, (1, 2, 3)), Request(1.0, 1100, 1, (1, 2, 3))]
    assert replay_lru_curve(trace, [10], 512).token_hits == (1024,)
    trace = [Request(0.0, 1024, 1, (1, 2)), Request(1.0, 1024, 1, (1, 2))]   # whole blocks: cap at 1
    assert replay_lru_curve(trace, [10], 512).token_hits == (512,)


def test_engine_counts_prefix_only_independent_counts_every_block():
    trace = reqs([1, 2, 3], [9, 2, 3])
    assert replay_lru_curve(trace, [10], 4, "engine").block_hits == (0,)
    assert replay_lru_curve(trace, [10], 4, "independent").block_hits == (2,)
    assert PolicyReplay("fifo", [10], 4, "engine").feed(trace) == 2


def test_engine_touches_tail_first():
    # Room for 2 blocks (3 with vLLM's null block): a 3-block request leaves its head (1, 2)
    # cached, not its tail, and the next request hits them.
    trace = [Request(0.0, 11, 1, (1, 2, 3)), Request(1.0, 11, 1, (1, 2, 7))]
    assert replay(trace, "lru", [4], 4, "engine").block_hits == (2,)
    assert replay(trace, "fifo", [4], 4, "engine").block_hits == (2,)
    assert replay_lru_curve(trace, [4], 4, "engine").block_hits == (2,)
    assert replay(trace, "lru", [2], 4, "independent").block_hits == (0,)


# ------------------------------------------------------------------ one-pass LRU


def direct_lru(trace, capacity, semantics, block_size=4):
    """An independent plain implementation (OrderedDict), one capacity."""
    cache = OrderedDict()
    hits = toks = 0

    def touch(b):
        if b in cache:
            cache.move_to_end(b)
        elif capacity > 0:
            cache[b] = None
            if len(cache) > capacity:
                cache.popitem(last=False)

    for r in trace:
        ids = r.hash_ids
        n = len(ids)
        last = last_block_tokens(r.input_length, n, block_size)
        if semantics == "engine":
            k = 0
            while k < n and ids[k] in cache:
                k += 1
            hits += k
            toks += sum(block_size if i < n - 1 else last for i in range(k))
            for b in reversed(ids):
                touch(b)
        else:
            for i, b in enumerate(ids):
                if b in cache:
                    hits += 1
                    toks += block_size if i < n - 1 else last
                touch(b)
    return hits, toks


trace_strategy = st.lists(
    st.tuples(st.lists(st.integers(0, 12), max_size=7), st.integers(0, 40)), max_size=25)


def partial_prefix_trace(raw, block_size=4):
    """Requests whose ids are prefix-chained (distinct ids per position) and whose prompts end
    in a partial block: the traces vLLM's block pool and the one-pass curve agree on exactly."""
    out = []
    number = {}  # each distinct prefix gets its own id: no hash collisions, no PYTHONHASHSEED
    for i, (ids, length) in enumerate(raw):
        chain = tuple(number.setdefault(tuple(ids[:j + 1]), len(number)) for j in range(len(ids)))
        n = len(chain)
        tokens = (n - 1) * block_size + 1 + length % (block_size - 1) if n else 0
        out.append(Request(float(i), tokens, 1, chain))
    return out


def fits_every_request(trace, capacity, block_size=4):
    """vLLM refuses a prompt that needs more blocks than the pool has besides the null block."""
    return all(-(-r.input_length // block_size) <= capacity - 1 for r in trace)


class TinyTree(LRUCurveReplay):
    """Forces renumbering of access times every few accesses, tiny buckets and the
    far-query path."""

    _MIN_SIZE = 4
    _NEAR = 2
    _MIN_SHIFT = 1


@settings(max_examples=150, deadline=None)
@given(trace_strategy, st.sampled_from(["engine", "independent"]), st.booleans())
def test_one_pass_equals_direct_at_every_capacity(raw, semantics, tiny):
    """independent: random ids (non-prefix traces, repeated ids inside a request) against a
    plain LRU. engine: prefix-chained prompts ending in a partial block against vLLM's block
    pool, at every capacity that fits each request (vLLM refuses the others)."""
    if semantics == "engine":
        trace = partial_prefix_trace(raw)
    else:
        trace = [Request(float(i), length, 1, tuple(ids)) for i, (ids, length) in enumerate(raw)]
    runner = (TinyTree if tiny else LRUCurveReplay)(4, semantics)
    for chunk in (trace[:7], trace[7:]):
        runner.feed(chunk)
    curve = runner.result()
    distinct = len({b for r in trace for b in r.hash_ids})
    for cap in range(distinct + 3):
        if semantics == "independent":
            assert (curve.block_hits(cap), curve.token_hits(cap)) == direct_lru(trace, cap, semantics)
        elif cap >= 1 and fits_every_request(trace, cap):
            stats = replay_vllm(trace, cap, 4)
            assert (curve.block_hits(cap), curve.token_hits(cap)) == (stats.hit_blocks, stats.hit_tokens), cap
    if semantics == "independent":
        assert curve.distinct_blocks == distinct


class TinySlices(TinyTree):
    """TinyTree renumbering in slices of two blocks."""

    _SLICE = 2


@settings(max_examples=100, deadline=None)
@given(trace_strategy, st.sampled_from(["engine", "independent"]), st.booleans(),
       st.integers(1, 5), st.integers(1, 4))
def test_sliced_renumbering_gives_the_same_curve(raw, semantics, head_reuse, chunk, units):
    """The page's path (renumberings in slices through work(), requests waiting meanwhile,
    fed in small chunks between work steps) gives the curve of one unsliced feed, exactly."""
    if semantics == "engine":
        trace = partial_prefix_trace(raw)
    else:
        trace = [Request(float(i), length, 1, tuple(ids)) for i, (ids, length) in enumerate(raw)]
    whole = TinyTree(4, semantics, head_reuse)
    whole.feed(trace)
    sliced = TinySlices(4, semantics, head_reuse, sliced=True)
    waited = 0
    for k in range(0, len(trace), chunk):
        assert sliced.feed(trace[k:k + chunk]) == len(trace[k:k + chunk])
        while sliced.busy:
            waited += 1
            sliced.work(units)
    assert sliced.result() == whole.result()
    assert sliced.result() == replay_lru_curve(trace, None, 4, semantics) or not head_reuse
    # result() finishes work still due, and feeding while busy only queues
    again = TinySlices(4, semantics, head_reuse, sliced=True)
    for k in range(0, len(trace), chunk):
        again.feed(trace[k:k + chunk])
    assert again.result() == whole.result()


def test_sliced_feed_waits_for_its_renumbering():
    trace = reqs(*([i, i + 1, i + 2] for i in range(0, 60, 3)))
    runner = TinySlices(4, "independent", sliced=True)
    assert runner.feed(trace) == len(trace)
    assert runner.busy and runner.requests < len(trace)
    steps = 0
    while runner.work(1):
        steps += 1
    assert steps > 1 and runner.requests == len(trace)
    assert runner.result() == replay_lru_curve(trace, None, 4, "independent")


@settings(max_examples=60, deadline=None)
@given(trace_strategy, st.sampled_from(["engine", "independent"]))
def test_policy_replay_lru_equals_one_pass(raw, semantics):
    trace = [Request(float(i), length, 1, tuple(ids)) for i, (ids, length) in enumerate(raw)]
    caps = [0, 1, 2, 3, 5, 8, 20]
    if semantics == "engine":
        trace = partial_prefix_trace(raw)
        caps = [c for c in (9, 12, 20, 40) if fits_every_request(trace, c)] or [40]
    direct = PolicyReplay("lru", caps, 4, semantics)
    direct.feed(trace)
    a = direct.result()
    b = replay_lru_curve(trace, caps, 4, semantics)
    assert a.to_dict() == b.to_dict()


@settings(max_examples=60, deadline=None)
@given(trace_strategy)
def test_belady_bounds_every_policy_independent(raw):
    trace = [Request(float(i), length, 1, tuple(ids)) for i, (ids, length) in enumerate(raw)]
    caps = [0, 1, 2, 3, 5, 8, 13]
    best = replay(trace, "belady", caps, 4, "independent")
    for policy in ("lru", "fifo", "lfu"):
        other = family_replay(trace, policy, caps, "independent")
        assert all(x >= y for x, y in zip(best.block_hits, other.block_hits)), policy
    assert all(h <= best.infinite_block_hits for h in best.block_hits)


def family_replay(trace, policy, caps, semantics):
    """The replay through the family's caches (``sim.policies``), whatever the policy."""
    runner = PolicyReplay(policy, caps, 4, semantics)
    runner.feed(trace)
    return runner.result()


@settings(max_examples=60, deadline=None)
@given(trace_strategy, st.sampled_from(["engine", "independent"]))
def test_belady_and_one_pass_meet_the_family_lru(raw, semantics):
    """Where no policy has a choice (capacity 0, or room for every block), Belady equals the
    family's LRU; at every capacity the one-pass curve equals it."""
    trace = [Request(float(i), length, 1, tuple(ids)) for i, (ids, length) in enumerate(raw)]
    if semantics == "engine":
        trace = partial_prefix_trace(raw)
    distinct = len({b for r in trace for b in r.hash_ids})
    caps = list(range(distinct + 2))
    if semantics == "engine":
        caps = [c for c in range(1, distinct + 8) if fits_every_request(trace, c)] or [distinct + 8]
    lru = family_replay(trace, "lru", caps, semantics)
    assert lru == replay_lru_curve(trace, caps, 4, semantics)
    if semantics == "independent":
        best = replay(trace, "belady", [0, distinct], 4, semantics)
        assert best.block_hits == (lru.block_hits[0], lru.block_hits[distinct])
        assert best.token_hits == (lru.token_hits[0], lru.token_hits[distinct])


def brute_force_optimal(seq, capacity):
    """Most hits over every eviction choice (tiny sequences only)."""
    best = 0
    states = {frozenset(): 0}
    for b in seq:
        nxt = {}
        for state, hits in states.items():
            if b in state:
                options = [(state, hits + 1)]
            elif len(state) < capacity:
                options = [(state | {b}, hits)]
            else:
                options = [(state, hits)] + [((state - {v}) | {b}, hits) for v in state]
            for s, h in options:
                if nxt.get(s, -1) < h:
                    nxt[s] = h
        states = nxt
    best = max(states.values())
    return best


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 5), max_size=12), st.integers(1, 4))
def test_belady_independent_is_optimal(seq, capacity):
    trace = [Request(float(i), 4, 1, (b,)) for i, b in enumerate(seq)]
    got = replay(trace, "belady", [capacity], 4, "independent").block_hits[0]
    assert got == brute_force_optimal(seq, capacity)


def test_belady_engine_keeps_prefixes():
    trace = reqs([1, 2, 3], [4, 5], [1, 2, 3], [4, 5], [1, 2, 3])
    res = replay(trace, "belady", [3, 5], 4, "engine")
    lru = replay(trace, "lru", [3, 5], 4, "engine")
    assert res.block_hits == (6, 8)
    assert all(x >= y for x, y in zip(res.block_hits, lru.block_hits))


def test_capacity_for_fraction_of_ceiling():
    trace = reqs([1, 2, 3], [4, 5, 6], [1, 2, 3], [4, 5, 6], [1, 2, 3], [7], [1, 2, 3])
    curve = replay_lru_curve(trace, None, 4, "independent")
    ceiling = curve.infinite_block_hits
    assert ceiling == 12 and curve.capacity_for_ceiling == 6
    for frac in (0.5, 0.9, 0.99, 1.0):
        cap = curve.capacity_for_fraction(frac)
        assert curve.block_hits(cap) >= frac * ceiling
        assert cap == 0 or curve.block_hits(cap - 1) < frac * ceiling
    with pytest.raises(ScenarioError, match="fraction"):
        curve.capacity_for_fraction(0)
    summary = curve.to_dict()
    assert summary["capacity_blocks_for_ceiling"] == 6
    assert curve.points(5)[-1] == (6, 12 / 19, pytest.approx(12 / 19))


def test_replay_steps_progress_and_same_result():
    trace = reqs(*([1, 2, i] for i in range(10)))
    runner = LRUCurveReplay(4)
    progress = list(replay_steps(runner, trace, chunk_requests=3))
    assert progress == [3, 6, 9, 10]
    assert runner.result() == replay_lru_curve(trace, None, 4)
    with pytest.raises(ScenarioError):
        list(replay_steps(runner, trace, chunk_requests=0))


def test_capacity_conversions():
    assert capacity_blocks_from_tokens(1_000_000, 512) == 1953
    # 10 GiB at 70 KiB/token (e.g. 80 layers x 8 KV heads x 128 dims x 2 x bf16 is 320 KiB).
    assert capacity_blocks_from_gib(10, 70 * 1024, 16) == (10 * 2**30) // (70 * 1024 * 16)
    with pytest.raises(ScenarioError, match="kv_bytes_per_token"):
        capacity_blocks_from_gib(1, 0, 16)
    with pytest.raises(ScenarioError, match="capacity_tokens"):
        capacity_blocks_from_tokens(-1, 16)


@pytest.mark.parametrize("kwargs, key", [
    (dict(policy="arc"), "policy"),
    (dict(semantics="exact"), "semantics"),
    (dict(capacities_blocks=[-1]), "capacity_blocks"),
    (dict(block_size=0), "block_size"),
])
def test_bad_arguments_raise_scenario_error(kwargs, key):
    args = dict(requests=reqs([1]), policy="fifo", capacities_blocks=[1], block_size=4,
                semantics="engine")
    args.update(kwargs)
    with pytest.raises(ScenarioError) as info:
        replay(**args)
    assert info.value.key == key


# ------------------------------------------------------------------ shared traces


@pytest.mark.parametrize("name", ["mooncake_conversation_trace.jsonl",
                                  "mooncake_synthetic_trace.jsonl"])
@pytest.mark.parametrize("semantics", ["engine", "independent"])
def test_shared_trace_one_pass_equals_per_capacity_replays(name, semantics):
    """The one-pass curve equals a replay per capacity: a plain LRU (independent), vLLM's
    block pool (engine: capacities from the longest prompt's blocks up, as vLLM needs)."""
    trace = shared_requests(name)
    caps = [1, 100, 1000, 10000, 30000, 100000]
    if semantics == "engine":
        longest = max(-(-r.input_length // 512) for r in trace)
        caps = [longest + 1] + [c for c in caps if c > longest + 1]
    curve = replay_lru_curve(trace, None, 512, semantics)
    direct = PolicyReplay("lru", caps, 512, semantics)
    direct.feed(trace)
    res = direct.result()
    assert tuple(curve.block_hits(c) for c in caps) == res.block_hits
    assert tuple(curve.token_hits(c) for c in caps) == res.token_hits
    assert curve.total_tokens == sum(r.input_length for r in trace)
    refs = sum(len(r.hash_ids) for r in trace)
    distinct = len({b for r in trace for b in r.hash_ids})
    if semantics == "independent":
        # The ceiling is the distinct-reuse count: references minus distinct blocks.
        assert curve.infinite_block_hits == res.infinite_block_hits == refs - distinct
    else:
        # vLLM never hits a partial block or a prompt's last token: below that count
        assert curve.infinite_block_hits == res.infinite_block_hits < refs - distinct


def test_shared_conversation_trace_published_plateau():
    # docs/validation.md §7.2: the FAST'25 conversation trace plateaus near 0.37-0.40.
    trace = shared_requests("mooncake_conversation_trace.jsonl")
    curve = replay_lru_curve(trace, None, 512, "independent")
    assert 0.35 <= curve.infinite_block_hit_rate <= 0.40


def libcachesim_hits(seq, policy, capacity):
    """Hits of libCacheSim's own LRU/FIFO/LFU over a block-id sequence (unit-size objects)."""
    libcachesim = pytest.importorskip("libcachesim")
    cls = {"lru": libcachesim.LRU, "fifo": libcachesim.FIFO, "lfu": libcachesim.LFU}[policy]
    cache = cls(cache_size=capacity)
    return sum(cache.get(libcachesim.Request(obj_size=1, obj_id=b)) for b in seq)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 30), min_size=1, max_size=6), max_size=30),
       st.integers(1, 12), st.sampled_from(["lru", "fifo", "lfu"]))
def test_independent_equals_libcachesim_random(id_lists, capacity, policy):
    trace = reqs(*id_lists)
    seq = list(itertools.chain.from_iterable(id_lists))
    ours = replay(trace, policy, [capacity], 4, "independent").block_hits[0]
    assert ours == libcachesim_hits(seq, policy, capacity)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu"])
def test_independent_equals_libcachesim_shared_trace(policy):
    trace = shared_requests("mooncake_synthetic_trace.jsonl")
    seq = [b for r in trace for b in r.hash_ids]
    caps = [10, 1000, 5000, 20000]
    ours = replay(trace, policy, caps, 512, "independent")
    assert list(ours.block_hits) == [libcachesim_hits(seq, policy, c) for c in caps]


def test_belady_fed_in_chunks_equals_one_call():
    trace = reqs([1, 2, 3], [4, 5], [1, 2, 6], [4, 5, 7], [1, 2, 3], [8], [4, 5])
    runner = BeladyReplay([1, 2, 4], 4, "engine")
    assert list(replay_steps(runner, trace, chunk_requests=2)) == [2, 4, 6, 7]
    assert runner.result() == replay(trace, "belady", [1, 2, 4], 4, "engine")


@st.composite
def prefix_traces(draw):
    """Conversations sharing block 0; each turn extends its conversation by one block, so a
    block id always comes with the same prefix (as with real prefix hashes)."""
    convs = [[0]]
    out = []
    next_id = 1
    for _ in range(draw(st.integers(1, 25))):
        if draw(st.booleans()):
            convs.append([0])
        conv = convs[draw(st.integers(0, len(convs) - 1))]
        conv.append(next_id)
        next_id += 1
        out.append(Request(0.0, 4 * len(conv), 1, tuple(conv)))
    return out


@settings(max_examples=80, deadline=None)
@given(prefix_traces())
def test_belady_engine_bounds_online_policies_on_prefix_traces(trace):
    caps = [1, 2, 3, 5, 8]
    best = replay(trace, "belady", caps, 4, "engine")
    for policy in ("lru", "fifo", "lfu"):
        other = family_replay(trace, policy, caps, "engine")
        assert all(x >= y for x, y in zip(best.block_hits, other.block_hits)), policy
