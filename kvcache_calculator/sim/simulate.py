"""Discrete-event simulation of multi-turn conversations against per-instance KV block caches.

The workload is that of docs/model.md §4:

- conversations arrive as a Poisson process at ``arrival_rate`` per second (whole fleet),
  for the whole run, warm-up and measurement alike;
- a conversation has ``N`` turns (``fixed``, or ``geometric`` with mean ``turns``) and draws
  one of ``num_system_prompts`` system prompts uniformly;
- turn ``k`` arrives and is looked up, then runs for a service time ``ttft_s + output_tokens /
  decode_tokens_per_s`` (the scenario's, or derived as the analytic model derives them:
  :func:`kvcache_calculator.analytic.inflight.service_rates`), holding its KV blocks, which
  cannot be evicted meanwhile; when it ends, its whole sequence (prompt and response) stays
  cached, evictable, the most recent; the user then thinks for a gap ``G`` (``exponential``
  with mean ``think_time_s``, ``fixed``, ``lognormal``, or ``empirical``: inverse-CDF draws
  from ``think_shape``) before turn ``k + 1``.

A running request holds its prompt and the output generated so far. The simulator holds, for
the whole service, its prompt plus ``O * decode_s / (2 * service_s)`` tokens of output (the
mean of a linear growth over the decode), rounded up to whole blocks: the same token-seconds
as the analytic model's, at one event per request instead of one per block. It does not
queue requests beyond ``max_num_seqs`` (a saturated engine queues without bound), and when
running requests alone exceed the cache it lets them run with nothing idle cached (an engine
would queue or preempt). ``in_flight=False`` serves every request instantly, holding nothing
(the simulator before running requests were modelled; the tests of exactness use it).

Token counts, with ``S`` = system prompt, ``D`` = input + output tokens, ``B`` = block size::

    prompt P_k          = S + (k - 1) * D + input_tokens                   [tokens]
    reusable prefix     = min((S + (k - 1) * D) // B, (P_k - 1) // B)      [blocks]
    cached sequence     = (S + k * D) // B                                 [blocks, whole blocks only]
    hit                 = min(longest cached prefix, (P_k - 1) // B)       [blocks]

(vLLM never reuses the last prompt token, docs/model.md §1.) The first ``S // B`` blocks
belong to the system prompt and are shared by every conversation using it; the rest are
private to the conversation. A request *hits* when its whole reusable prefix (at least one
block) was cached.

Caches are :mod:`kvcache_calculator.sim.policies`' (the family trace replay uses too, with its
pinning rule): each request is served by ``access``, its blocks touched tail first. For LRU
the simulator keeps *segments* instead of blocks (:class:`~kvcache_calculator.sim.policies.SegmentLRU`):
all of a conversation's blocks on an instance are touched together, so they form one run in
the LRU order whose cached part is always a head prefix; the least recently used segment
loses blocks from its tail. Each system prompt is a segment of its own. The tests check this
against a per-block ``OrderedDict`` LRU, hit count by hit count.

Several instances each have their own cache of ``capacity_tokens // B`` blocks. Routing:

- ``session``: a conversation is placed on a uniformly random instance for all its turns;
- ``random``: every request goes to a uniformly random instance;
- ``round_robin``: a global request counter, modulo the number of instances;
- ``least_loaded``: the instance that has received the fewest prompt tokens so far (ties:
  the lowest index).

The optional offload tier (``offload_tokens`` > 0 per instance) is a write-through LRU: every
block the GPU tier caches or touches is also cached or touched there. A lookup matches the
longest prefix in the GPU tier, then continues the match in the offload tier; those blocks
are counted as offload hits and cached again in the GPU tier.

The eviction policies (:mod:`kvcache_calculator.sim.policies`) pin a running request's
blocks with ``hold``/``release`` (``hold_runs``/``release_runs`` by segments); the offload
tier is written through at the request's arrival and holds nothing pinned.

Measurement: the first ``ceil(arrival_rate * warmup_s)`` conversations are warm-up
(default ``warmup_s = 5 * turns * think_time_s``, five mean lifetimes); the next
``conversations`` are measured, every request of theirs, while arrivals continue until the
last of them has finished. Confidence intervals are 95 % batch-means t-intervals over
``batches`` groups of consecutive measured conversations (ratio of sums per batch).

Randomness comes only from ``random.Random(seed)``, so a seed reproduces a run exactly.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from kvcache_calculator.analytic.inflight import service_rates
from kvcache_calculator.analytic.popularity import empirical_quantile, shape_quantiles
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.sim.policies import EvictionLog, SegmentLRU, make_cache
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve

#: Two-sided 95 % Student t quantiles t_{0.975, df}; between entries the smaller df is used.
_T975 = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365),
         (8, 2.306), (9, 2.262), (10, 2.228), (11, 2.201), (12, 2.179), (13, 2.160),
         (14, 2.145), (15, 2.131), (16, 2.120), (17, 2.110), (18, 2.101), (19, 2.093),
         (20, 2.086), (25, 2.060), (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980))

_STRIDE = 1 << 48            # block ids: conversation * _STRIDE + index (private)
ENGINES = ("auto", "segments", "blocks")


def t_quantile_975(df: int) -> float:
    """Student's t 0.975 quantile for ``df`` >= 1 degrees of freedom (table; conservative
    between entries, 1.96 above 120)."""
    if df > 120:
        return 1.96
    value = _T975[0][1]
    for d, q in _T975:
        if d <= df:
            value = q
    return value


def batch_means_interval(numerators: list[float], denominators: list[float]) -> tuple[float, float, float]:
    """Ratio of sums and its 95 % batch-means t-interval ``(estimate, low, high)``.

    Each batch gives ``r_b = numerator_b / denominator_b``; the half-width is
    ``t_{0.975, b-1} * stdev(r_b) / sqrt(b)`` (Law and Kelton, *Simulation Modeling and
    Analysis*, batch means). Batches with a zero denominator are left out.
    """
    total_den = sum(denominators)
    estimate = sum(numerators) / total_den if total_den else 0.0
    rates = [n / d for n, d in zip(numerators, denominators) if d]
    if len(rates) < 2:
        return estimate, estimate, estimate
    mean = sum(rates) / len(rates)
    var = sum((r - mean) ** 2 for r in rates) / (len(rates) - 1)
    half = t_quantile_975(len(rates) - 1) * math.sqrt(var / len(rates))
    return estimate, max(0.0, estimate - half), min(1.0, estimate + half)


def _gap_sampler(s: Scenario, rng: random.Random):
    """A draw of one lognormal or empirical think time (the others are written out inline):
    lognormal of mean ``think_time_s`` and shape ``think_sigma``, or ``think_time_s`` times the
    inverse CDF of ``think_shape`` (mean 1) at a uniform draw."""
    if s.think_dist == "empirical":
        q, rnd, theta = shape_quantiles(s.think_shape), rng.random, s.think_time_s
        return lambda: theta * empirical_quantile(rnd(), q)
    sigma = s.think_sigma
    mu = math.log(s.think_time_s) - 0.5 * sigma * sigma      # the mean of the gap is think_time_s
    return functools.partial(rng.lognormvariate, mu, sigma)


@dataclass(frozen=True)
class SimulationResult:
    """What a simulation run measured; hit rates are 0-1 fractions with 95 % intervals.

    ``token_hit_rate = gpu_token_hit_rate + offload_token_hit_rate``. ``max_token_hit_rate``
    and ``max_request_hit_rate`` are the ceilings of the same requests with an infinite cache
    on every instance (with session routing: the whole history; otherwise the history left
    by the conversation's last visit to the instance). ``characteristic_time_s`` is the mean time blocks had been idle when LRU
    evicted them during the measurement (``None`` when nothing was evicted or the policy is
    not LRU): the simulated counterpart of the analytic model's ``T``; the offload tier's
    likewise. ``gpu_request_hit_rate`` counts requests whose reusable prefix was all in the
    GPU tier. ``mean_turns``, ``mean_prompt_tokens`` and the per-second rates (whole fleet)
    are measured over the measured conversations.
    """

    token_hit_rate: float
    token_hit_rate_ci: tuple[float, float]
    request_hit_rate: float
    request_hit_rate_ci: tuple[float, float]
    gpu_request_hit_rate: float
    gpu_request_hit_rate_ci: tuple[float, float]
    gpu_token_hit_rate: float
    gpu_token_hit_rate_ci: tuple[float, float]
    offload_token_hit_rate: float
    offload_token_hit_rate_ci: tuple[float, float]
    max_token_hit_rate: float
    max_request_hit_rate: float
    characteristic_time_s: float | None
    offload_characteristic_time_s: float | None
    mean_turns: float
    mean_prompt_tokens: float
    prompt_tokens_per_s: float
    hit_tokens_per_s: float
    capacity_tokens: int
    offload_tokens: int
    block_size: int
    request_rate: float
    policy: str
    routing: str
    instances: int
    seed: int
    conversations: int
    requests: int
    prompt_tokens: int
    hit_tokens: int
    offload_hit_tokens: int
    warmup_conversations: int
    warmup_s: float
    simulated_time_s: float
    batches: int
    engine: str
    service_s: float = 0.0            # how long each request held its KV (0: served instantly)
    in_flight_tokens: float = 0.0     # mean private KV tokens held by running requests, per instance

    def to_dict(self) -> dict:
        """Plain JSON types (intervals as ``[low, high]``)."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


def _check_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ScenarioError(key, value, f"must be a whole number >= {minimum}")
    return value


@dataclass
class _Stats:
    """Per-batch sums over the measured conversations ."""

    batches: int
    hit_blocks: list = field(default_factory=list)
    offload_hit_blocks: list = field(default_factory=list)
    prompt_tokens: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    request_hits: list = field(default_factory=list)
    ceiling_blocks: list = field(default_factory=list)
    ceiling_requests: list = field(default_factory=list)
    gpu_request_hits: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("hit_blocks", "offload_hit_blocks", "prompt_tokens", "requests", "request_hits",
                     "ceiling_blocks", "ceiling_requests", "gpu_request_hits"):
            setattr(self, name, [0] * self.batches)


class Simulation:
    """A resumable simulation: call :meth:`run` until :attr:`done`, then :meth:`result`.

    ``capacity_tokens`` and ``offload_tokens`` are per instance; when ``None`` they come
    from :func:`kvcache_calculator.setup.capacity.compute_capacity`. ``engine`` is ``segments``
    (fast, LRU only), ``blocks`` (one cache entry per block, any policy) or ``auto``
    (segments for LRU). ``record=True`` keeps every request's outcome in :attr:`records` as
    ``(time_s, conversation, turn, system_prompt, instance, gpu_hit_blocks,
    offload_hit_blocks)``, for tests on small cases. ``in_flight=False`` serves requests
    instantly (see the module docstring).
    """

    def __init__(self, scenario: Scenario, *, capacity_tokens: int | None = None,
                 offload_tokens: int | None = None, conversations: int = 20_000, seed: int = 0,
                 warmup_s: float | None = None, batches: int = 10, engine: str = "auto",
                 record: bool = False, in_flight: bool = True):
        if not isinstance(scenario, Scenario):
            raise ScenarioError("scenario", type(scenario).__name__, "must be a Scenario (use Scenario.from_dict)")
        scenario.check()
        conversations = _check_int("conversations", conversations, 1)
        seed = _check_int("seed", seed, 0)
        batches = _check_int("batches", batches, 1)
        if batches > conversations:
            raise ScenarioError("batches", batches, f"must be at most conversations ({conversations})")
        if engine not in ENGINES:
            raise ScenarioError("engine", engine, "must be one of " + ", ".join(ENGINES))
        if engine == "auto":
            engine = "segments" if scenario.policy == "lru" else "blocks"
        if engine == "segments" and scenario.policy != "lru":
            raise ScenarioError("engine", engine, "segments simulate LRU only; use blocks for " + scenario.policy)
        if capacity_tokens is None or (offload_tokens is None and scenario.offload_gib > 0):
            capacity_tokens, offload_tokens = _capacities(scenario, capacity_tokens, offload_tokens)
        capacity_tokens = _check_int("capacity_tokens", capacity_tokens, 0)
        offload_tokens = _check_int("offload_tokens", offload_tokens or 0, 0)
        if warmup_s is None:
            warmup_s = 5.0 * scenario.turns * scenario.think_time_s
        if isinstance(warmup_s, bool) or not isinstance(warmup_s, (int, float)) or not math.isfinite(warmup_s) or warmup_s < 0:
            raise ScenarioError("warmup_s", warmup_s, "must be a number >= 0 (seconds)")

        s = scenario
        self.scenario = s
        self.seed = seed
        self.engine = engine
        self.block_size = s.block_size
        self.capacity_tokens = capacity_tokens
        self.offload_tokens = offload_tokens
        self.capacity_blocks = capacity_tokens // s.block_size
        self.offload_blocks = offload_tokens // s.block_size
        self.warmup_s = float(warmup_s)
        self.warmup_conversations = math.ceil(s.arrival_rate * warmup_s)
        self.conversations = conversations
        self.batches = batches
        self.records: list | None = [] if record else None
        self.in_flight = bool(in_flight)
        self.service_s, self._output_held = _service(s) if self.in_flight else (0.0, 0.0)
        self._held_blocks = 0             # private KV blocks held by the measured requests (each for service_s)

        self._rng = random.Random(seed)
        self._heap: list = []
        self._now = 0.0
        self._next_arrival = self._rng.expovariate(s.arrival_rate)
        self._arrived = 0
        self._remaining = conversations
        self._requests_done = 0
        self._loads = [0] * s.instances
        self._seen = [set() for _ in range(s.instances)]   # system prompts each instance has seen
        self._stats = _Stats(batches)
        self._measure_from = self.warmup_conversations
        self._measure_to = self.warmup_conversations + conversations
        self._routing = s.routing if s.instances > 1 else "session"
        self._fixed_turns = int(s.turns) if s.turns_dist == "fixed" or s.turns == 1 else 0
        # exponential lengths (docs/model.md §13): each conversation's token marks, drawn at
        # its start: marks[2k-2] tokens before turn k's message, marks[2k-1] after it
        # (the prompt), marks[2k] after its answer; removed after its last turn
        self._marks: dict | None = {} if s.length_dist == "exponential" else None
        self._log_q = math.log(1.0 - 1.0 / s.turns) if not self._fixed_turns else 0.0
        # The instance of a request under a routing other than session, as one call.
        self._route = {"round_robin": itertools.cycle(range(s.instances)).__next__,
                       "least_loaded": self._least_loaded,
                       "random": functools.partial(self._rng.randrange, s.instances),
                       "session": None}[self._routing]
        # One log per tier, shared by the instances, active while measuring: the idle
        # times of evicted blocks (segments only) give the characteristic times.
        self._gpu_log, self._off_log = EvictionLog(), EvictionLog()
        n = s.instances
        if engine == "segments":
            self._gpu = [SegmentLRU(self.capacity_blocks, self._gpu_log) for _ in range(n)]
            self._off = ([SegmentLRU(self.offload_blocks, self._off_log) for _ in range(n)]
                         if self.offload_blocks else None)
            self._shared_ids = None
        else:
            self._gpu = [make_cache(s.policy, self.capacity_blocks) for _ in range(n)]
            self._off = [make_cache("lru", self.offload_blocks) for _ in range(n)] if self.offload_blocks else None
            shared = s.system_prompt_tokens // s.block_size
            self._shared_ids = [[-(p * _STRIDE + i) - 1 for i in range(shared)]
                                for p in range(s.num_system_prompts)]
        # Zipf popularity (docs/model.md §12): cumulative weights, drawn by bisection
        self._prompt_cdf = (list(itertools.accumulate(i ** -s.system_prompt_zipf
                                                      for i in range(1, s.num_system_prompts + 1)))
                            if s.system_prompt_zipf > 0 and s.num_system_prompts > 1 else None)
        self._document_cdf = (list(itertools.accumulate(i ** -s.document_zipf for i in range(1, s.num_documents + 1)))
                              if s.num_documents > 0 and s.document_share > 0 else None)
        self._expected_requests = (self._measure_to + s.arrival_rate * 2 * s.turns * s.think_time_s) * s.turns

    # -- progress --------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        """True once every measured conversation has had all its turns."""
        return self._remaining == 0

    @property
    def progress(self) -> float:
        """A 0-1 estimate of the share of the work done (1.0 exactly when :attr:`done`)."""
        if self.done:
            return 1.0
        return min(0.99, self._requests_done / self._expected_requests)

    @property
    def requests_done(self) -> int:
        """Requests simulated so far, warm-up included."""
        return self._requests_done

    # -- the event loop ----------------------------------------------------------------------
    def run(self, max_requests: int | None = None) -> bool:
        """Simulate up to ``max_requests`` more requests (all remaining when ``None``).

        Returns :attr:`done`. Calling it again resumes where it stopped, so a page can run
        the simulation in chunks without freezing. Each request goes through four steps:
        the next event, its instance and ceiling, the caches, the accounting. With running
        requests modelled, the end of a request is an event of its own: its blocks are
        released and the user's think time starts.
        """
        if self.done:
            return True
        budget = math.inf if max_requests is None else _check_int("max_requests", max_requests, 1)
        s = self.scenario
        B, S, IN = s.block_size, s.system_prompt_tokens, s.input_tokens
        D = IN + s.output_tokens
        ns = S // B
        heap, heappush, heappop = self._heap, heapq.heappush, heapq.heappop
        rnd, log = self._rng.random, math.log
        exp_gaps, think_s = s.think_dist == "exponential", s.think_time_s
        fixed_gaps = s.think_dist == "fixed"
        draw_gap = _gap_sampler(s, self._rng)
        S_doc = S + s.document_tokens
        ns_doc = S_doc // B
        inv_think = 1.0 / think_s
        session = self._routing == "session"
        route = self._route
        loads, seen = self._loads, self._seen
        segments = self.engine == "segments"
        gpu, off, shared_ids = self._gpu, self._off, self._shared_ids
        st = self._stats
        st_hit, st_off, st_ceil = st.hit_blocks, st.offload_hit_blocks, st.ceiling_blocks
        st_rh, st_grh, st_ceil_req = st.request_hits, st.gpu_request_hits, st.ceiling_requests
        records = self.records
        next_arrival = self._next_arrival
        remaining = self._remaining
        done_now = 0
        t = self._now
        hold = self.in_flight
        service_s, output_held = self.service_s, self._output_held
        held_sum = 0
        marks = self._marks

        while done_now < budget and remaining:
            # 1. The next event: a conversation's next turn, the end of a running request
            # (k < 0), or a new conversation.
            if heap and heap[0][0] < next_arrival:
                t, cid, k, conv = heappop(heap)
                if k < 0:
                    conv, inst = conv
                    k = -k
                    n, p, d = conv[0], conv[1], conv[5]
                    Sc, nsc = (S, ns) if d is None else (S_doc, ns_doc)
                    if marks is None:
                        seq_blocks = (Sc + k * D) // B
                        held_blocks = -int(-(Sc + (k - 1) * D + IN + output_held) // B)
                    else:
                        mk = marks[cid] if k < n else marks.pop(cid)
                        seq_blocks = (Sc + mk[2 * k]) // B
                        held_blocks = -int(-(Sc + mk[2 * k - 1] + output_held) // B)
                    if d is not None:
                        self._release_with_document(gpu[inst], p, d, cid, held_blocks, seq_blocks, t)
                    elif segments:
                        gpu[inst].release_runs(-1 - p, ns, cid, seq_blocks - ns, t)
                    else:
                        first = cid * _STRIDE
                        gpu[inst].release(shared_ids[p] + list(range(first, first + held_blocks - ns)),
                                          shared_ids[p] + list(range(first, first + seq_blocks - ns)))
                    if k < n:
                        gap_s = (-log(1.0 - rnd()) / inv_think if exp_gaps else
                                 think_s if fixed_gaps else draw_gap())
                        heappush(heap, (t + gap_s, cid, k + 1, conv))
                    continue
            else:
                t = next_arrival
                cid, conv = self._new_conversation()
                next_arrival = self._next_arrival
                k = 1
            n, p, inst, visits, b, d = conv
            Sc, nsc = (S, ns) if d is None else (S_doc, ns_doc)
            if marks is None:
                base = Sc + (k - 1) * D         # tokens before the new user message
                prompt = base + IN
                seq_blocks = (base + D) // B
            else:
                mk = marks[cid] if hold or k < n else marks.pop(cid)
                base, prompt = Sc + mk[2 * k - 2], Sc + mk[2 * k - 1]
                seq_blocks = (Sc + mk[2 * k]) // B
            max_blocks = (prompt - 1) // B
            reuse = base // B
            if reuse > max_blocks:
                reuse = max_blocks

            # 2. Its instance, and the infinite-cache ceiling there: the system prompt if
            # this instance has seen it, then the history left by the last visit here.
            if not session:
                inst = route()
            loads[inst] += prompt
            seen_i = seen[inst]
            if d is not None and (p, d) not in seen_i:
                # the document's first use here: only the system prompt, if seen, was cached
                ceil_blocks = ns if p in seen_i else 0
                seen_i.add(p)
                seen_i.add((p, d))
                if ceil_blocks > max_blocks:
                    ceil_blocks = max_blocks
            elif p in seen_i or ns == 0:
                if session:
                    ceil_blocks = reuse
                else:
                    ceil_blocks = nsc + visits.get(inst, 0)
                    if ceil_blocks > max_blocks:
                        ceil_blocks = max_blocks
            else:
                seen_i.add(p)
                ceil_blocks = 0
            if not session:
                visits[inst] = seq_blocks - nsc

            # 3. The caches: the longest prefix in the GPU tier, continued in the offload
            # tier; both then hold the sequence (write-through).
            # A running request holds its prompt and its growing output averaged over its
            # service (module docstring), in whole blocks, until its end event.
            ohit = 0
            if hold:
                held_blocks = -int(-(prompt + output_held) // B)
                if b >= 0:
                    held_sum += held_blocks - nsc
            if d is not None:
                hit, ohit = self._serve_with_document(inst, p, d, cid, held_blocks if hold else 0, seq_blocks,
                                                      max_blocks, t)
            elif segments:
                if hold:
                    hit = gpu[inst].hold_runs(-1 - p, ns, cid, held_blocks - ns, t)
                else:
                    hit = gpu[inst].access_runs(-1 - p, ns, cid, seq_blocks - ns, t)
                if hit > max_blocks:
                    hit = max_blocks
                if off is not None:
                    end = off[inst].access_runs(-1 - p, ns, cid, seq_blocks - ns, t, hit)
                    if hit < max_blocks:
                        ohit = (end if end < max_blocks else max_blocks) - hit
            else:
                blocks = shared_ids[p] + list(range(cid * _STRIDE, cid * _STRIDE + seq_blocks - ns))
                if hold:
                    hit = gpu[inst].hold(shared_ids[p] + list(range(cid * _STRIDE, cid * _STRIDE + held_blocks - ns)))
                else:
                    hit = gpu[inst].access(blocks)
                if hit > max_blocks:
                    hit = max_blocks
                if off is not None:
                    end = off[inst].access(blocks, hit)
                    if hit < max_blocks:
                        ohit = (end if end < max_blocks else max_blocks) - hit

            # 4. Accounting, in the batch of a measured conversation; then the next turn.
            if records is not None:
                records.append((t, cid, k, p, inst, hit, ohit))
            if b >= 0:
                st_hit[b] += hit
                st_off[b] += ohit
                st_ceil[b] += ceil_blocks
                if reuse and ceil_blocks >= reuse:
                    st_ceil_req[b] += 1
                if reuse and hit + ohit >= reuse:
                    st_rh[b] += 1
                    if hit >= reuse:
                        st_grh[b] += 1
                if k == n:
                    remaining -= 1
            if hold:
                heappush(heap, (t + service_s, cid, -k, (conv, inst)))
            elif k < n:
                # The think time: random.expovariate(inv_think) written out (a call less).
                gap_s = (-log(1.0 - rnd()) / inv_think if exp_gaps else
                         think_s if fixed_gaps else draw_gap())
                heappush(heap, (t + gap_s, cid, k + 1, conv))
            done_now += 1

        self._now = t
        self._next_arrival = next_arrival
        self._remaining = remaining
        self._requests_done += done_now
        self._held_blocks += held_sum
        return self.done

    def _new_conversation(self) -> tuple:
        """A conversation arriving now: its id and ``(turns, system prompt, instance,
        visits, batch, document)``, the batch being -1 for a conversation not measured and the
        document None for a conversation without one.

        Draws the next arrival time, starts or stops the eviction logs when the measured
        conversations begin or end, and counts a measured conversation's requests and
        prompt tokens at once (all its turns are served before the run ends).
        """
        s = self.scenario
        rng = self._rng
        cid = self._arrived
        self._arrived += 1
        self._next_arrival += rng.expovariate(s.arrival_rate)
        n = self._fixed_turns or 1 + int(math.log(1.0 - rng.random()) / self._log_q)
        if self._prompt_cdf:
            p = bisect.bisect_right(self._prompt_cdf, rng.random() * self._prompt_cdf[-1])
        else:
            p = int(rng.random() * s.num_system_prompts) if s.num_system_prompts > 1 else 0
        d = None
        if self._document_cdf and rng.random() < s.document_share:
            d = bisect.bisect_right(self._document_cdf, rng.random() * self._document_cdf[-1])
        session = self._routing == "session"
        inst = rng.randrange(s.instances) if session and s.instances > 1 else 0
        if cid == self._measure_from or cid == self._measure_to:
            self._gpu_log.active = self._off_log.active = cid == self._measure_from
        b = cid - self._measure_from
        if 0 <= b < self.conversations:
            b = b * self.batches // self.conversations
            # the sum of P_k = S + (k - 1) * D + input_tokens over the turns k = 1..n
            first_prompt = s.system_prompt_tokens + s.input_tokens + (0 if d is None else s.document_tokens)
            per_turn = s.input_tokens + s.output_tokens
            self._stats.requests[b] += n
            if self._marks is None:
                self._stats.prompt_tokens[b] += n * first_prompt + per_turn * n * (n - 1) // 2
        else:
            b = -1
        if self._marks is not None:
            marks = self._marks[cid] = self._draw_marks(n)
            if b >= 0:
                shared = s.system_prompt_tokens + (0 if d is None else s.document_tokens)
                self._stats.prompt_tokens[b] += n * shared + sum(marks[1::2])
        return cid, (n, p, inst, None if session else {}, b, d)

    def _draw_marks(self, n: int) -> list:
        """A conversation's token marks (see ``_marks``) for exponential lengths of the
        scenario's means, whole tokens: a message of at least 1 token, an answer of at least 0."""
        s, expo = self.scenario, self._rng.expovariate
        marks = [0]
        for _ in range(n):
            marks.append(marks[-1] + max(1, round(expo(1.0 / s.input_tokens))))
            marks.append(marks[-1] + (round(expo(1.0 / s.output_tokens)) if s.output_tokens else 0))
        return marks

    def _document_runs(self, p: int, d: int, cid: int, private_blocks: int) -> tuple:
        """The runs of a sequence with a document: ``(key, blocks)`` of its system prompt, of
        the (system prompt, document) pair (the blocks after the prompt's up to the document's
        end: a prefix cache keys a block by everything before it) and its private history."""
        s = self.scenario
        B = s.block_size
        ns = s.system_prompt_tokens // B
        nd = (s.system_prompt_tokens + s.document_tokens) // B - ns
        return (-1 - p, ns), ((p, d), nd), (cid, private_blocks)

    def _document_blocks(self, p: int, d: int, cid: int, private_blocks: int) -> list:
        """The block ids of :meth:`_document_runs` for the per-block caches."""
        (_, ns), (pair, nd), _ = self._document_runs(p, d, cid, 0)
        first = cid * _STRIDE
        return self._shared_ids[p] + [(p, d, i) for i in range(nd)] + list(range(first, first + private_blocks))

    def _serve_with_document(self, inst: int, p: int, d: int, cid: int, held_blocks: int, seq_blocks: int,
                             max_blocks: int, now_s: float) -> tuple[int, int]:
        """Serve a request of a conversation with a document: ``(gpu hit blocks, offload hit
        blocks)``. The hit is looked up before anything is touched; then the history, the
        document and the system prompt are touched in that order (tail first), held while the
        request runs when ``held_blocks`` > 0 (its prompt and output so far, in blocks)."""
        gpu = self._gpu[inst]
        runs = self._document_runs(p, d, cid, 0)
        shared = runs[0][1] + runs[1][1]
        if self.engine == "segments":
            hit = min(_chain_end(gpu, runs, 0), max_blocks)
            (sys_key, ns), (pair, nd), _ = runs
            if held_blocks:
                if ns:
                    gpu.hold_runs(sys_key, ns, ("pin", p), 0, now_s)
                gpu.hold_runs(pair, nd, cid, held_blocks - shared, now_s)
            else:
                gpu.access_runs(pair, nd, cid, seq_blocks - shared, now_s)
                if ns:
                    gpu.access_runs(sys_key, ns, ("pin", p), 0, now_s)
        else:
            blocks = self._document_blocks(p, d, cid, (held_blocks or seq_blocks) - shared)
            hit = min(gpu.hold(blocks) if held_blocks else gpu.access(blocks), max_blocks)
        ohit = 0
        if self._off is not None:
            off = self._off[inst]
            if self.engine == "segments":
                end = _chain_end(off, runs, hit)
                (sys_key, ns), (pair, nd), _ = runs
                off.access_runs(pair, nd, cid, seq_blocks - shared, now_s)
                if ns:
                    off.access_runs(sys_key, ns, ("pin", p), 0, now_s)
            else:
                end = off.access(self._document_blocks(p, d, cid, seq_blocks - shared), hit)
            if hit < max_blocks:
                ohit = min(end, max_blocks) - hit
        return hit, ohit

    def _release_with_document(self, gpu, p: int, d: int, cid: int, held_blocks: int, seq_blocks: int,
                               now_s: float) -> None:
        """End a request of :meth:`_serve_with_document`: its history keeps ``seq_blocks`` of
        its sequence, then the document and the system prompt become the most recent."""
        runs = self._document_runs(p, d, cid, 0)
        (sys_key, ns), (pair, nd), _ = runs
        shared = ns + nd
        if self.engine == "segments":
            gpu.release_runs(pair, nd, cid, seq_blocks - shared, now_s)
            if ns:
                gpu.release_runs(sys_key, ns, ("pin", p), 0, now_s)
        else:
            gpu.release(self._document_blocks(p, d, cid, held_blocks - shared),
                        self._document_blocks(p, d, cid, seq_blocks - shared))

    def _least_loaded(self) -> int:
        """The instance that has received the fewest prompt tokens (ties: the lowest index)."""
        return self._loads.index(min(self._loads))

    # -- results -------------------------------------------------------------------------------
    def result(self) -> SimulationResult:
        """The measured hit rates with 95 % batch-means intervals; runs to the end first."""
        if not self.done:
            self.run()
        s = self.scenario
        st = self._stats
        B = s.block_size
        gpu_hit, off_hit = [h * B for h in st.hit_blocks], [h * B for h in st.offload_hit_blocks]
        total = [h + o for h, o in zip(gpu_hit, off_hit)]
        thr, thr_lo, thr_hi = batch_means_interval(total, st.prompt_tokens)
        ghr, ghr_lo, ghr_hi = batch_means_interval(gpu_hit, st.prompt_tokens)
        ohr, ohr_lo, ohr_hi = batch_means_interval(off_hit, st.prompt_tokens)
        rhr, rhr_lo, rhr_hi = batch_means_interval(st.request_hits, st.requests)
        grh, grh_lo, grh_hi = batch_means_interval(st.gpu_request_hits, st.requests)
        lam = s.arrival_rate
        prompt_tps = lam * sum(st.prompt_tokens) / self.conversations
        prompt_tokens = sum(st.prompt_tokens)
        requests = sum(st.requests)
        return SimulationResult(
            token_hit_rate=thr, token_hit_rate_ci=(thr_lo, thr_hi),
            request_hit_rate=rhr, request_hit_rate_ci=(rhr_lo, rhr_hi),
            gpu_request_hit_rate=grh, gpu_request_hit_rate_ci=(grh_lo, grh_hi),
            gpu_token_hit_rate=ghr, gpu_token_hit_rate_ci=(ghr_lo, ghr_hi),
            offload_token_hit_rate=ohr, offload_token_hit_rate_ci=(ohr_lo, ohr_hi),
            max_token_hit_rate=sum(st.ceiling_blocks) * B / prompt_tokens if prompt_tokens else 0.0,
            max_request_hit_rate=sum(st.ceiling_requests) / requests if requests else 0.0,
            characteristic_time_s=self._gpu_log.mean_idle_s,
            offload_characteristic_time_s=self._off_log.mean_idle_s,
            mean_turns=requests / self.conversations,
            mean_prompt_tokens=prompt_tokens / requests if requests else 0.0,
            prompt_tokens_per_s=prompt_tps, hit_tokens_per_s=prompt_tps * thr,
            capacity_tokens=self.capacity_tokens, offload_tokens=self.offload_tokens,
            block_size=s.block_size, request_rate=s.arrival_rate * s.turns,
            policy=s.policy, routing=s.routing, instances=s.instances, seed=self.seed,
            conversations=self.conversations, requests=requests,
            prompt_tokens=prompt_tokens, hit_tokens=sum(total), offload_hit_tokens=sum(off_hit),
            warmup_conversations=self.warmup_conversations, warmup_s=self.warmup_s,
            simulated_time_s=self._now, batches=self.batches, engine=self.engine,
            service_s=self.service_s,
            # Little's law over the measured conversations: they arrive at arrival_rate
            in_flight_tokens=self._held_blocks * B * self.service_s * s.arrival_rate / self.conversations / s.instances,
        )


def _chain_end(cache: SegmentLRU, runs: tuple, start: int) -> int:
    """The end of the run of cached blocks beginning at block ``start`` of a sequence made of
    ``runs`` (``(key, blocks)``, the last one open-ended), without touching anything: each
    run's cached blocks are a head prefix of it, and a run is continued into the next only
    when it is cached whole."""
    pos = 0
    last = len(runs) - 1
    for i, (key, length) in enumerate(runs):
        if i < last and start >= pos + length:
            pos += length
            continue
        cached = cache.cached_blocks(key)
        if start >= pos + cached:
            return start
        if i == last or cached < length:
            return pos + cached
        pos += length
        start = pos
    return start


def _service(scenario: Scenario) -> tuple[float, float]:
    """A request's service time (s) and the output tokens it holds on average over it (the
    analytic model's rates: :func:`~kvcache_calculator.analytic.inflight.service_rates`)."""
    ttft, decode = scenario.ttft_s, scenario.decode_tokens_per_s
    if ttft is None or decode is None:
        rates = service_rates(resolve(scenario))
        ttft = rates.ttft_s if ttft is None else ttft
        decode = rates.decode_tokens_per_s if decode is None else decode
    decode_s = scenario.output_tokens / decode
    service = ttft + decode_s
    return service, scenario.output_tokens * decode_s / (2 * service)


def _capacities(scenario: Scenario, capacity_tokens: int | None,
                offload_tokens: int | None) -> tuple[int, int]:
    """Fill the missing capacities from the scenario (docs/model.md §3)."""
    if (capacity_tokens is None and scenario.kv_cache_tokens is not None
            and scenario.offload_gib == 0):
        return scenario.kv_cache_tokens // scenario.block_size * scenario.block_size, 0
    capacity = resolve(scenario).capacity
    if not capacity.fits:
        raise ScenarioError("model", scenario.model, capacity.message)
    if capacity_tokens is None:
        capacity_tokens = capacity.capacity_tokens
    if offload_tokens is None:
        offload_tokens = capacity.offload_tokens if scenario.offload_gib > 0 else 0
    return capacity_tokens, offload_tokens


def simulate(scenario: Scenario, *, capacity_tokens: int | None = None,
             offload_tokens: int | None = None, conversations: int = 20_000, seed: int = 0,
             warmup_s: float | None = None, batches: int = 10,
             engine: str = "auto", in_flight: bool = True) -> SimulationResult:
    """Simulate ``scenario`` to the end and return its :class:`SimulationResult`.

    See :class:`Simulation` for the arguments; capacities are per instance, in tokens.

    >>> from kvcache_calculator.scenario import Scenario
    >>> s = Scenario.from_dict({"arrival_rate": 1, "think_time_s": 30})
    >>> r = simulate(s, capacity_tokens=200_000, conversations=500, seed=1)
    >>> 0 < r.token_hit_rate < r.max_token_hit_rate < 1
    True
    """
    sim = Simulation(scenario, capacity_tokens=capacity_tokens, offload_tokens=offload_tokens,
                     conversations=conversations, seed=seed, warmup_s=warmup_s,
                     batches=batches, engine=engine, in_flight=in_flight)
    sim.run()
    return sim.result()
