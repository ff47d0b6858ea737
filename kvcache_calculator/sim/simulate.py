"""Discrete-event simulation of multi-turn conversations against per-instance KV block caches.

The workload is that of docs/model.md §4:

- conversations arrive as a Poisson process at ``arrival_rate`` per second (whole fleet),
  for the whole run, warm-up and measurement alike;
- a conversation has ``N`` turns (``fixed``, or ``geometric`` with mean ``turns``) and draws
  one of ``num_system_prompts`` system prompts uniformly;
- requests are served instantly: turn ``k`` arrives, is looked up, and its whole sequence
  (prompt and response) is cached at once; the user then thinks for a gap ``G``
  (``exponential`` with mean ``think_time_s``, or ``fixed``) before turn ``k + 1``.

Token counts, with ``S`` = system prompt, ``D`` = input + output tokens, ``B`` = block size::

    prompt P_k          = S + (k - 1) * D + input_tokens                   [tokens]
    reusable prefix     = min((S + (k - 1) * D) // B, (P_k - 1) // B)      [blocks]
    cached sequence     = (S + k * D) // B                                 [blocks, whole blocks only]
    hit                 = min(longest cached prefix, (P_k - 1) // B)       [blocks]

(vLLM never reuses the last prompt token, docs/model.md §1.) The first ``S // B`` blocks
belong to the system prompt and are shared by every conversation using it; the rest are
private to the conversation. A request *hits* when its whole reusable prefix (at least one
block) was cached.

Caches follow :mod:`kvcache_calculator.sim.policies`: after each request the sequence's blocks
are touched tail first. For LRU the simulator keeps *segments* instead of blocks: all of a
conversation's blocks on an instance are touched together, so they form one run in the LRU
order whose cached part is always a head prefix; the least recently used segment loses
blocks from its tail. Each system prompt is a segment of its own. The tests check this
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

Measurement: the first ``ceil(arrival_rate * warmup_s)`` conversations are warm-up
(default ``warmup_s = 5 * turns * think_time_s``, five mean lifetimes); the next
``conversations`` are measured, every request of theirs, while arrivals continue until the
last of them has finished. Confidence intervals are 95 % batch-means t-intervals over
``batches`` groups of consecutive measured conversations (ratio of sums per batch).

Randomness comes only from ``random.Random(seed)``, so a seed reproduces a run exactly.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.sim.policies import make_cache, prefix_length
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
    """Per-batch sums over the measured conversations."""

    batches: int
    hit: list = field(default_factory=list)
    offload_hit: list = field(default_factory=list)
    prompt: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    request_hits: list = field(default_factory=list)
    ceiling: list = field(default_factory=list)
    ceiling_requests: list = field(default_factory=list)
    gpu_request_hits: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("hit", "offload_hit", "prompt", "requests", "request_hits", "ceiling",
                     "ceiling_requests", "gpu_request_hits"):
            setattr(self, name, [0] * self.batches)


class Simulation:
    """A resumable simulation: call :meth:`run` until :attr:`done`, then :meth:`result`.

    ``capacity_tokens`` and ``offload_tokens`` are per instance; when ``None`` they come
    from :func:`kvcache_calculator.setup.capacity.compute_capacity`. ``engine`` is ``segments``
    (fast, LRU only), ``blocks`` (one cache entry per block, any policy) or ``auto``
    (segments for LRU). ``record=True`` keeps every request's outcome in :attr:`records` as
    ``(time_s, conversation, turn, system_prompt, instance, gpu_hit_blocks,
    offload_hit_blocks)``, for tests on small cases.
    """

    def __init__(self, scenario: Scenario, *, capacity_tokens: int | None = None,
                 offload_tokens: int | None = None, conversations: int = 20_000, seed: int = 0,
                 warmup_s: float | None = None, batches: int = 10, engine: str = "auto",
                 record: bool = False):
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

        self._rng = random.Random(seed)
        self._heap: list = []
        self._now = 0.0
        self._next_arrival = self._rng.expovariate(s.arrival_rate)
        self._arrived = 0
        self._remaining = conversations
        self._requests_done = 0
        self._rr = 0
        self._loads = [0] * s.instances
        self._seen = [set() for _ in range(s.instances)]   # system prompts each instance has seen
        self._stats = _Stats(batches)
        self._age_sum = 0.0
        self._evicted = 0
        self._off_age_sum = 0.0
        self._off_evicted = 0
        self._measure_from = self.warmup_conversations
        self._measure_to = self.warmup_conversations + conversations
        self._measuring = False
        n = s.instances
        if engine == "segments":
            self._gpu = [OrderedDict() for _ in range(n)]
            self._gpu_used = [0] * n
            self._off = [OrderedDict() for _ in range(n)] if self.offload_blocks else None
            self._off_used = [0] * n
        else:
            self._gpu = [make_cache(s.policy, self.capacity_blocks) for _ in range(n)]
            self._off = [make_cache("lru", self.offload_blocks) for _ in range(n)] if self.offload_blocks else None
            shared = s.system_prompt_tokens // s.block_size
            self._shared_ids = [[-(p * _STRIDE + i) - 1 for i in range(shared)]
                                for p in range(s.num_system_prompts)]
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
        the simulation in chunks without freezing.
        """
        if self.done:
            return True
        budget = math.inf if max_requests is None else _check_int("max_requests", max_requests, 1)
        s = self.scenario
        rng = self._rng
        rnd = rng.random
        expo = rng.expovariate
        randrange = rng.randrange
        heappush, heappop = heapq.heappush, heapq.heappop
        heap = self._heap
        lam = s.arrival_rate
        B = s.block_size
        S = s.system_prompt_tokens
        IN = s.input_tokens
        D = s.input_tokens + s.output_tokens
        ns = S // B
        n_inst = s.instances
        n_prompts = s.num_system_prompts
        routing = s.routing if n_inst > 1 else "session"
        session = routing == "session"
        rr_routing = routing == "round_robin"
        ll_routing = routing == "least_loaded"
        loads = self._loads
        fixed_turns = int(s.turns) if s.turns_dist == "fixed" or s.turns == 1 else 0
        log_q = math.log(1.0 - 1.0 / s.turns) if not fixed_turns else 0.0
        exp_gaps = s.think_dist == "exponential"
        think = s.think_time_s
        inv_think = 1.0 / think
        segments = self.engine == "segments"
        gpu = self._gpu
        gpu_used = getattr(self, "_gpu_used", None)
        cap = self.capacity_blocks
        off = self._off
        off_used = getattr(self, "_off_used", None)
        cap2 = self.offload_blocks
        shared_ids = getattr(self, "_shared_ids", None)
        st = self._stats
        st_hit, st_off, st_prompt, st_req, st_rh, st_ceil, st_ceil_req = (
            st.hit, st.offload_hit, st.prompt, st.requests, st.request_hits, st.ceiling,
            st.ceiling_requests)
        st_grh = st.gpu_request_hits
        seen = self._seen
        nb = self.batches
        m_from, m_to = self._measure_from, self._measure_to
        n_measured = self.conversations
        measuring = self._measuring
        age_sum = self._age_sum
        evicted = self._evicted
        off_age_sum = self._off_age_sum
        off_evicted = self._off_evicted
        records = self.records
        next_arrival = self._next_arrival
        arrived = self._arrived
        remaining = self._remaining
        rr = self._rr
        done_now = 0
        t = self._now

        while done_now < budget and remaining:
            if heap and heap[0][0] < next_arrival:
                t, cid, k, n, p, inst, visits = heappop(heap)
            else:
                t = next_arrival
                cid = arrived
                arrived += 1
                next_arrival = t + expo(lam)
                k = 1
                n = fixed_turns or 1 + int(math.log(1.0 - rnd()) / log_q)
                p = int(rnd() * n_prompts) if n_prompts > 1 else 0
                inst = randrange(n_inst) if session and n_inst > 1 else 0
                visits = None if session else {}
                if cid == m_from:
                    measuring = True
                elif cid == m_to:
                    measuring = False
            base = S + (k - 1) * D             # tokens before the new user message
            prompt = base + IN
            max_blocks = (prompt - 1) // B
            reuse = base // B
            if reuse > max_blocks:
                reuse = max_blocks
            seq_blocks = (base + D) // B
            if not session:
                if rr_routing:
                    inst = rr % n_inst
                    rr += 1
                elif ll_routing:
                    inst = loads.index(min(loads))
                else:
                    inst = randrange(n_inst)
            loads[inst] += prompt
            # the infinite-cache ceiling under this routing: the system prompt if this
            # instance has seen it, then the history left by the last visit here
            seen_i = seen[inst]
            if p in seen_i or ns == 0:
                if session:
                    ceil_blocks = reuse
                else:
                    ceil_blocks = ns + visits.get(inst, 0)
                    visits[inst] = seq_blocks - ns
                    if ceil_blocks > max_blocks:
                        ceil_blocks = max_blocks
            else:
                seen_i.add(p)
                ceil_blocks = 0
                if not session:
                    visits[inst] = seq_blocks - ns

            if segments:
                # -- LRU over segments: one run of blocks per (instance, conversation) and
                # per (instance, system prompt); values are (cached blocks, last touch).
                od = gpu[inst]
                skey = -1 - p
                old_s = od.pop(skey, None) if ns else None
                old_p = od.pop(cid, None)
                sh = old_s[0] if old_s else 0
                pc = old_p[0] if old_p else 0
                hit = sh if sh < ns else ns + pc
                if hit > max_blocks:
                    hit = max_blocks
                used = gpu_used[inst] - sh - pc
                npriv = seq_blocks - ns
                if npriv > 0:
                    od[cid] = (npriv, t)
                    used += npriv
                if ns:
                    od[skey] = (ns, t)
                    used += ns
                if used > cap:
                    excess = used - cap
                    while excess:
                        key, (c, t0) = od.popitem(last=False)
                        if c > excess:
                            od[key] = (c - excess, t0)
                            od.move_to_end(key, last=False)
                            c = excess
                        excess -= c
                        if measuring:
                            age_sum += c * (t - t0)
                            evicted += c
                    used = cap
                gpu_used[inst] = used
                ohit = 0
                if off is not None:
                    od = off[inst]
                    old_s = od.pop(skey, None) if ns else None
                    old_p = od.pop(cid, None)
                    sh2 = old_s[0] if old_s else 0
                    pc2 = old_p[0] if old_p else 0
                    if hit < max_blocks:
                        if hit < ns:
                            end = (sh2 if sh2 < ns else ns + pc2) if sh2 > hit else hit
                        else:
                            end = ns + pc2 if ns + pc2 > hit else hit
                        if end > max_blocks:
                            end = max_blocks
                        ohit = end - hit
                    used = off_used[inst] - sh2 - pc2
                    if npriv > 0:
                        od[cid] = (npriv, t)
                        used += npriv
                    if ns:
                        od[skey] = (ns, t)
                        used += ns
                    if used > cap2:
                        excess = used - cap2
                        while excess:
                            key, (c, t0) = od.popitem(last=False)
                            if c > excess:
                                od[key] = (c - excess, t0)
                                od.move_to_end(key, last=False)
                                c = excess
                            excess -= c
                            if measuring:
                                off_age_sum += c * (t - t0)
                                off_evicted += c
                        used = cap2
                    off_used[inst] = used
            else:
                blocks = shared_ids[p] + list(range(cid * _STRIDE, cid * _STRIDE + seq_blocks - ns))
                cache = gpu[inst]
                hit = prefix_length(cache, blocks[:max_blocks])
                ohit = 0
                if off is not None:
                    if hit < max_blocks:
                        ohit = prefix_length(off[inst], blocks[:max_blocks], hit) - hit
                    off[inst].access(blocks)
                before = cache.evictions
                cache.access(blocks)
                if measuring:
                    evicted += cache.evictions - before

            if records is not None:
                records.append((t, cid, k, p, inst, hit, ohit))
            b = cid - m_from
            if 0 <= b < n_measured:
                b = b * nb // n_measured
                st_hit[b] += hit * B
                st_off[b] += ohit * B
                st_prompt[b] += prompt
                st_req[b] += 1
                st_ceil[b] += ceil_blocks * B
                if reuse and ceil_blocks >= reuse:
                    st_ceil_req[b] += 1
                if reuse and hit + ohit >= reuse:
                    st_rh[b] += 1
                    if hit >= reuse:
                        st_grh[b] += 1
                if k == n:
                    remaining -= 1
            if k < n:
                heappush(heap, (t + (expo(inv_think) if exp_gaps else think), cid, k + 1, n, p, inst, visits))
            done_now += 1

        self._now = t
        self._next_arrival = next_arrival
        self._arrived = arrived
        self._remaining = remaining
        self._rr = rr
        self._measuring = measuring
        self._age_sum = age_sum
        self._evicted = evicted
        self._off_age_sum = off_age_sum
        self._off_evicted = off_evicted
        self._requests_done += done_now
        return self.done

    # -- results -------------------------------------------------------------------------------
    def result(self) -> SimulationResult:
        """The measured hit rates with 95 % batch-means intervals; runs to the end first."""
        if not self.done:
            self.run()
        s = self.scenario
        st = self._stats
        total = [h + o for h, o in zip(st.hit, st.offload_hit)]
        thr, thr_lo, thr_hi = batch_means_interval(total, st.prompt)
        ghr, ghr_lo, ghr_hi = batch_means_interval(st.hit, st.prompt)
        ohr, ohr_lo, ohr_hi = batch_means_interval(st.offload_hit, st.prompt)
        rhr, rhr_lo, rhr_hi = batch_means_interval(st.request_hits, st.requests)
        grh, grh_lo, grh_hi = batch_means_interval(st.gpu_request_hits, st.requests)
        lam = s.arrival_rate
        prompt_tps = lam * sum(st.prompt) / self.conversations
        prompt_tokens = sum(st.prompt)
        requests = sum(st.requests)
        lru_ages = self.engine == "segments" and self._evicted
        return SimulationResult(
            token_hit_rate=thr, token_hit_rate_ci=(thr_lo, thr_hi),
            request_hit_rate=rhr, request_hit_rate_ci=(rhr_lo, rhr_hi),
            gpu_request_hit_rate=grh, gpu_request_hit_rate_ci=(grh_lo, grh_hi),
            gpu_token_hit_rate=ghr, gpu_token_hit_rate_ci=(ghr_lo, ghr_hi),
            offload_token_hit_rate=ohr, offload_token_hit_rate_ci=(ohr_lo, ohr_hi),
            max_token_hit_rate=sum(st.ceiling) / prompt_tokens if prompt_tokens else 0.0,
            max_request_hit_rate=sum(st.ceiling_requests) / requests if requests else 0.0,
            characteristic_time_s=self._age_sum / self._evicted if lru_ages else None,
            offload_characteristic_time_s=(self._off_age_sum / self._off_evicted
                                           if self.engine == "segments" and self._off_evicted else None),
            mean_turns=requests / self.conversations,
            mean_prompt_tokens=prompt_tokens / requests if requests else 0.0,
            prompt_tokens_per_s=prompt_tps, hit_tokens_per_s=prompt_tps * thr,
            capacity_tokens=self.capacity_tokens, offload_tokens=self.offload_tokens,
            block_size=s.block_size, request_rate=s.arrival_rate * s.turns,
            policy=s.policy, routing=s.routing, instances=s.instances, seed=self.seed,
            conversations=self.conversations, requests=requests,
            prompt_tokens=prompt_tokens, hit_tokens=sum(total), offload_hit_tokens=sum(st.offload_hit),
            warmup_conversations=self.warmup_conversations, warmup_s=self.warmup_s,
            simulated_time_s=self._now, batches=self.batches, engine=self.engine,
        )


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
             engine: str = "auto") -> SimulationResult:
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
                     batches=batches, engine=engine)
    sim.run()
    return sim.result()
