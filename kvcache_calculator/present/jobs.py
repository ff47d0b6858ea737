"""Long work in small resumable steps: the lab page's simulations and trace replays.

The lab page (``site/lab.html``) runs the simulator and the trace replayer on the browser's
main thread without freezing it: every piece of work here is a *job* with ``step(units)``
(do about ``units`` units of work; returns True when finished), ``done`` and ``progress``
(0-1). :func:`run_for` runs a job for a time budget, adapting ``units`` so one step stays
far below the budget; the page calls it, yields to the browser, updates its progress bar and
checks its cancel flag, again and again. Nothing here reads a clock, a file or the DOM on its
own: the clock is passed to :func:`run_for`, file contents arrive as ``bytes`` slices.

Jobs:

- :class:`SimulationJob` runs a list of :class:`SimTask` (the lab's task lists are in
  :mod:`kvcache_calculator.present.lab_tasks`) through
  :class:`kvcache_calculator.sim.simulate.Simulation`, whose ``run(max_requests)`` resumes.
- :class:`TraceJob` turns byte slices of an uploaded Mooncake or Bailian JSONL file into
  lines (:class:`~kvcache_calculator.traces.lines.LineFeed`), parses them with
  :class:`kvcache_calculator.traces.readers.TraceReader` and feeds the one-pass LRU curve
  (:class:`kvcache_calculator.traces.replay.LRUCurveReplay`) and the scenario fit
  (:class:`kvcache_calculator.traces.readers.ScenarioFitter`).
- :class:`StepsJob` runs a generator of steps (the gap split of
  :func:`~kvcache_calculator.traces.gap.explain_gap_steps`, the routing table of
  :func:`~kvcache_calculator.present.real_traffic.routing_steps`) a few thousand steps at a time.
- :class:`PolicyJob` is the second pass: FIFO and LFU (:class:`~kvcache_calculator.traces.replay.PolicyReplay`)
  and Belady's MIN at one capacity (the resumable :class:`~kvcache_calculator.traces.replay.BeladySteps`,
  against it hit for hit by the tests).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.simulate import Simulation
from kvcache_calculator.traces.gz import LineDecoder
from kvcache_calculator.traces.readers import DEFAULT_BLOCK_SIZE, ScenarioFitter, TraceReader
from kvcache_calculator.traces.sampling import SampledReplay, check_rate
from kvcache_calculator.traces.replay import (
    BeladySteps,
    LRUCurve,
    LRUCurveReplay,
    PolicyReplay,
    last_block_tokens,
)

__all__ = ["run_for", "SimTask", "SimulationJob", "SimulationPace", "TraceJob", "PolicyJob", "StepsJob", "TimestampOrder"]


def run_for(job, budget_s: float, clock: Callable[[], float]) -> bool:
    """Run ``job.step(job.units)`` until ``budget_s`` seconds of ``clock`` have passed or the
    job is done; returns ``job.done``.

    ``job.units`` adapts so that one step takes between about 1/16 and 1/4 of the budget:
    doubled after a quick step, halved after a slow one. The overshoot past the budget is at
    most one step, so with a 40 ms budget the browser gets control back well within 200 ms.
    """
    start = clock()
    while not job.done:
        t0 = clock()
        job.step(job.units)
        dt = clock() - t0
        if dt < budget_s / 16:
            job.units = min(job.units * 2, 1 << 20)
        elif dt > budget_s / 4 and job.units > 1:
            job.units = max(1, job.units // 2)
        if clock() - start >= budget_s:
            break
    return job.done


@dataclass(frozen=True)
class SimTask:
    """One simulation to run: ``group`` is ``main``, ``memory``, ``policy`` or ``routing``;
    ``x`` the chart position (GPU memory per GPU in GiB for memory points, else None);
    ``capacity_tokens`` per instance (None: from the scenario)."""

    name: str
    group: str
    label: str
    scenario: Scenario
    capacity_tokens: int | None
    conversations: int
    seed: int
    x: float | None = None

    def make(self) -> Simulation:
        """The :class:`Simulation` of this task."""
        return Simulation(self.scenario, capacity_tokens=self.capacity_tokens,
                          conversations=self.conversations, seed=self.seed)

    @property
    def kind(self) -> str:
        """What sets the speed per request: ``segments`` (the LRU engine) or the per-block
        engine's policy (``fifo``, ``lfu``)."""
        return "segments" if self.scenario.policy == "lru" else self.scenario.policy

    def expected_requests(self) -> float:
        """Requests the simulation will run, warm-up included (an estimate): the warm-up and
        measured conversations, plus those arriving until the longest measured one ends (its
        turns: the expected maximum of ``conversations`` geometric draws), times the mean turns."""
        s = self.scenario
        warmup = math.ceil(s.arrival_rate * 5.0 * s.turns * s.think_time_s)
        if s.turns_dist == "fixed" or s.turns <= 1:
            longest = s.turns
        else:
            longest = 1 + math.log(self.conversations) / -math.log(1.0 - 1.0 / s.turns)
        tail = s.arrival_rate * longest * s.think_time_s
        return (warmup + self.conversations + tail) * s.turns

    def cost(self) -> float:
        """Relative cost estimate: expected requests, times the prompt blocks of a mean
        request for the per-block engine (the segment engine touches one entry per request).
        Comparable between tasks of one :attr:`kind` only; :class:`SimulationPace` measures
        each kind's speed."""
        requests = self.expected_requests()
        s = self.scenario
        if s.policy == "lru":
            return requests
        earlier = s.turns - 1 if s.turns_dist != "fixed" else (s.turns - 1) / 2   # mean k - 1 of a request
        blocks = (s.system_prompt_tokens + s.input_tokens + earlier * (s.input_tokens + s.output_tokens)) / s.block_size
        return requests * max(1.0, blocks)


class SimulationJob:
    """Runs :class:`SimTask` s in resumable steps (``step(units)`` runs at most ``units``
    requests), one after the other. ``results`` maps task names to
    :class:`~kvcache_calculator.sim.simulate.SimulationResult`; a task whose scenario cannot be
    simulated gets its :class:`ScenarioError` in ``errors`` instead.

    :attr:`focus` (a task index) makes the steps run that task instead of the next one in
    order: the page runs a short first slice of each :meth:`probes` task so as to time every
    kind of task before the long run (:class:`SimulationPace`); the work is kept.
    """

    def __init__(self, tasks: Sequence[SimTask]):
        self.tasks = list(tasks)
        self.units = 50
        self.results: dict = {}
        self.errors: dict = {}
        self.requests = 0
        self.focus: int | None = None
        self._costs = [t.cost() for t in self.tasks]
        self._total = sum(self._costs) or 1.0
        self._index = 0
        self._sims: dict = {}          # task index -> its Simulation, while it runs

    @property
    def done(self) -> bool:
        """True when every task has a result or an error."""
        return self._index >= len(self.tasks)

    def finished(self, index: int) -> bool:
        """Whether task ``index`` has its result or error."""
        name = self.tasks[index].name
        return name in self.results or name in self.errors

    @property
    def total_cost(self) -> float:
        """The estimated cost of every task together (units of :meth:`SimTask.cost`)."""
        return self._total

    def cost(self, index: int) -> float:
        """The estimated cost of task ``index`` (:meth:`SimTask.cost`)."""
        return self._costs[index]

    def work_done(self, index: int) -> float:
        """Cost units (:meth:`SimTask.cost`) of task ``index`` done: its cost times the share
        of its expected requests simulated (at most 99 % until it ends)."""
        if self.finished(index):
            return self._costs[index]
        sim = self._sims.get(index)
        if sim is None:
            return 0.0
        share = sim.requests_done / max(1.0, self.tasks[index].expected_requests())
        return self._costs[index] * min(0.99, share)

    def work_left(self, index: int) -> float:
        """Cost units of task ``index`` not done yet."""
        return self._costs[index] - self.work_done(index)

    @property
    def progress(self) -> float:
        """Estimated 0-1 share of the work done (tasks weighted by :meth:`SimTask.cost`);
        it never goes down."""
        if self.done:
            return 1.0
        done = sum(self.work_done(i) for i in range(self._index, len(self.tasks)))
        return min(0.999, (sum(self._costs[: self._index]) + done) / self._total)

    @property
    def current(self) -> SimTask | None:
        """The task running now."""
        return None if self.done else self.tasks[self._index]

    @property
    def running_index(self) -> int | None:
        """The index of the task the next step runs."""
        if self.focus is not None and not self.finished(self.focus):
            return self.focus
        return None if self.done else self._index

    def probes(self) -> list:
        """The first task of each :attr:`SimTask.kind`, by index: one slice of each times
        every kind of the job."""
        first: dict = {}
        for i, task in enumerate(self.tasks):
            first.setdefault(task.kind, i)
        return sorted(first.values())

    def step(self, units: int) -> bool:
        """Simulate up to ``units`` requests of the task :attr:`running_index`; returns :attr:`done`."""
        index = self.running_index
        if index is None:
            return True
        task = self.tasks[index]
        try:
            sim = self._sims.get(index)
            if sim is None:
                sim = self._sims[index] = task.make()
            before = sim.requests_done
            finished = sim.run(max(1, units))
            self.requests += sim.requests_done - before
            if finished:
                self.results[task.name] = sim.result()
        except ScenarioError as err:
            self.errors[task.name] = err
            finished = True
        if finished:
            # the next task may cost far more per request (another engine): start small again
            self._sims.pop(index, None)
            while not self.done and self.finished(self._index):
                self._index += 1
            self.units = 20
        return self.done


#: How much slower per cost unit a per-block simulation runs once its caches are full than in
#: its first second (evictions start once the cache is full; measured on FIFO and LFU runs:
#: 1.6-3x): a task's probe times its start only.
FULL_CACHE_SLOWDOWN = {"segments": 1.0, "fifo": 2.0, "lfu": 2.0}


class SimulationPace:
    """Seconds per cost unit of each task kind, from timed slices, and the time left.

    The page times every slice it runs (:meth:`record`, with the index of the task the slice
    ran and the cost units it did). A kind's pace is that of its last finished task when
    there is one (whole tasks: the most faithful), else of its running task's recent slices
    (about the last ``window_s`` seconds), else its probe's times :data:`FULL_CACHE_SLOWDOWN`.
    """

    def __init__(self, job: SimulationJob, window_s: float = 10.0):
        self.job = job
        self.window_s = window_s
        self._slices: dict = {}        # task index -> [(seconds, units)] of its slices
        self._whole: dict = {}         # kind -> seconds per unit of a finished task

    def record(self, index: int, seconds: float, units: float) -> None:
        """A slice of ``seconds`` did ``units`` cost units of task ``index``."""
        self._slices.setdefault(index, []).append((seconds, units))
        if self.job.finished(index):
            spent = sum(s for s, _ in self._slices[index])
            if spent > 0 and self.job.tasks[index].name in self.job.results:
                self._whole[self.job.tasks[index].kind] = spent / max(1e-12, self.job.cost(index))

    def _recent(self, index: int) -> float | None:
        """Seconds per unit of task ``index`` over its last ``window_s`` seconds of slices."""
        seconds = units = 0.0
        for s, u in reversed(self._slices.get(index, [])):
            seconds += s
            units += u
            if seconds >= self.window_s:
                break
        return seconds / units if units > 0 else None

    def pace(self, kind: str) -> float | None:
        """Seconds per cost unit of ``kind`` (None: not timed yet)."""
        if kind in self._whole:
            return self._whole[kind]
        job = self.job
        for i, task in enumerate(job.tasks):
            if task.kind == kind and i in self._slices and not job.finished(i):
                recent = self._recent(i)
                if recent is not None:
                    seconds = sum(s for s, _ in self._slices[i])
                    # a task timed in its first second only runs with caches not yet full
                    return recent * (1.0 if seconds >= self.window_s else FULL_CACHE_SLOWDOWN.get(kind, 2.0))
        return None

    def seconds_left(self) -> float | None:
        """Estimated seconds until the job is done (None while some kind is not timed)."""
        job = self.job
        total = 0.0
        for i, task in enumerate(job.tasks):
            if job.finished(i):
                continue
            left = job.work_left(i)
            recent = self._recent(i) if i in self._slices else None
            spent = sum(s for s, _ in self._slices.get(i, []))
            if recent is not None and spent >= self.window_s:
                total += left * recent          # its caches are full by now: its own recent pace
                continue
            pace = self.pace(task.kind)
            if pace is None:
                return None
            total += left * pace
        return total


class _LinesJob:
    """Shared part of the trace jobs: byte slices in, parsed requests out, step by step."""

    def __init__(self, total_bytes: int | None, format: str | None, block_size: int | None,
                 skip_bad_lines: bool):
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int)
                                       or block_size < 1):
            raise ScenarioError("block_size", block_size, "must be an integer >= 1 (tokens per block)")
        self.total_bytes = total_bytes
        self.block_size = block_size
        self.reader = TraceReader(format, skip_bad_lines=skip_bad_lines)
        self.lines_in = LineDecoder()        # plain or gzip, told apart by the first bytes
        self.units = 64
        self.input_closed = False
        self._lines: deque = deque()
        self._received = 0
        self._parsed = 0
        self._runners: list | None = None

    @property
    def pending_lines(self) -> int:
        """Lines received and not parsed yet (the page reads the next slice below a bound)."""
        return len(self._lines)

    @property
    def format(self) -> str | None:
        """``mooncake`` or ``bailian`` once the first record is read."""
        return self.reader.format

    def add_bytes(self, data: bytes) -> None:
        """Queue the next slice of the file (refuses binary data at once)."""
        lines = self.lines_in.feed(data)
        self._received += len(lines)
        self._lines.extend(lines)

    def close_input(self) -> None:
        """The whole file has been added (refuses an empty file)."""
        lines = self.lines_in.close()
        self._received += len(lines)
        self._lines.extend(lines)
        self.input_closed = True

    def _make_runners(self, block_size: int) -> list:
        raise NotImplementedError

    def _parse(self, units: int) -> None:
        """Parse and feed up to ``units`` queued lines."""
        lines = self._lines
        batch = [lines.popleft() for _ in range(min(units, len(lines)))]
        self._parsed += len(batch)
        requests = list(self.reader.parse(batch))
        if requests and self._runners is None:
            if self.block_size is None:
                self.block_size = DEFAULT_BLOCK_SIZE[self.reader.format]
            self._runners = self._make_runners(self.block_size)
        if requests:
            for runner in self._runners:
                runner.feed(requests)

    @property
    def read_fraction(self) -> float:
        """Share of the file parsed so far: the bytes read (compressed, for a gzip file)
        times the share of their lines parsed."""
        if not self.total_bytes:
            return 1.0 if self.input_closed and not self._lines else 0.0
        parsed = self._parsed / self._received if self._received else 0.0
        return min(1.0, self.lines_in.bytes_in / self.total_bytes * parsed)

    def _no_requests(self) -> ScenarioError:
        if not self.reader.skipped_lines:
            return ScenarioError("file", "no request record", "the file holds only blank lines; "
                                 "expected JSON lines (Mooncake or Bailian format)")
        first = self.reader.first_error
        more = f" (first: {first})" if first is not None else ""
        return ScenarioError("trace", f"{self.reader.skipped_lines:,} bad lines skipped",
                             "the file holds no valid request" + more)


class TimestampOrder:
    """Counts requests whose timestamp is earlier than the one before (a trace should be in
    arrival order; the replay takes file order): ``out_of_order``, ``first_request`` (1-based)."""

    def __init__(self):
        self.out_of_order = 0
        self.first_request: int | None = None
        self.largest_step_back_s = 0.0
        self._last = None
        self._seen = 0

    def feed(self, requests) -> int:
        """Check ``requests`` (in file order); returns how many."""
        last = self._last
        for r in requests:
            self._seen += 1
            t = r.timestamp_s
            if last is not None and t < last:
                self.out_of_order += 1
                self.largest_step_back_s = max(self.largest_step_back_s, last - t)
                if self.first_request is None:
                    self.first_request = self._seen
            last = t if last is None else max(last, t)
        self._last = last
        return len(requests)


class _Keep:
    def __init__(self, store: list):
        self.store = store

    def feed(self, requests) -> int:
        self.store.extend(requests)
        return len(requests)


class TraceJob(_LinesJob):
    """Pass one over an uploaded trace: the exact LRU curve and the fitted scenario.

    With ``sample_rate`` the curve is the SHARDS estimate
    (:class:`~kvcache_calculator.traces.sampling.SampledReplay`, approximate); with
    ``keep_requests`` the requests are kept in :attr:`requests_kept` (for the gap split and the
    routing chart, which need the whole trace); :attr:`order` counts timestamps out of order.

    ``add_bytes`` each slice, ``close_input`` after the last, ``step`` until :attr:`done`
    (one unit = one line); then :attr:`curve` (:class:`~kvcache_calculator.traces.replay.LRUCurve`)
    and :attr:`fit` (the fitted scenario dict). A malformed line raises ScenarioError with its
    line number unless ``skip_bad_lines``; a file without a single valid request raises at
    the end.
    """

    def __init__(self, total_bytes: int | None = None, *, format: str | None = None,
                 block_size: int | None = None, skip_bad_lines: bool = False,
                 semantics: str = "engine", sample_rate: float | None = None,
                 keep_requests: bool = False):
        self._units = {"lines": 64, "renumber": 1, "waiting": 64, "fit": 1}
        self._ran = "lines"
        super().__init__(total_bytes, format, block_size, skip_bad_lines)
        self.semantics = semantics
        self.sample_rate = None if sample_rate is None else check_rate(sample_rate)
        self.requests_kept: list | None = [] if keep_requests else None
        self.order = TimestampOrder()
        self.curve: LRUCurve | None = None
        self.fit: dict | None = None
        self._fit_steps = None         # the fit's result, computed in steps at the end
        self.done = False

    def _make_runners(self, block_size: int) -> list:
        curve = (LRUCurveReplay(block_size, self.semantics, sliced=True) if self.sample_rate is None
                 else SampledReplay(block_size, self.sample_rate, self.semantics))
        extra = [] if self.requests_kept is None else [_Keep(self.requests_kept)]
        return [curve, ScenarioFitter(block_size), self.order, *extra]

    @property
    def requests(self) -> int:
        """Valid requests read so far."""
        return self.reader.requests_read

    def _phase(self) -> str:
        runners = self._runners
        if runners and isinstance(runners[0], LRUCurveReplay) and runners[0].busy:
            return "renumber" if runners[0].renumbering else "waiting"
        return "fit" if self.curve is not None else "lines"

    @property
    def units(self) -> int:
        """The step size :func:`run_for` adapts, one per kind of work, as their units cost very
        differently: lines to parse, slices of the curve's renumbering and the requests waiting for it
        (``LRUCurveReplay.work``), steps of the fit's result (``ScenarioFitter.result_steps``)."""
        return self._units[self._phase()]

    @units.setter
    def units(self, value: int) -> None:
        self._units[self._ran] = value       # the kind of work the last step did

    @property
    def progress(self) -> float:
        """0-1: the share of the file replayed."""
        return 1.0 if self.done else min(0.999, self.read_fraction)

    def step(self, units: int) -> bool:
        """Parse and replay up to ``units`` queued lines; once the input is closed and every
        line is replayed, read the curve, then (next step) the fit. Returns :attr:`done`."""
        if self.done:
            return True
        self._ran = self._phase()
        if self._ran in ("renumber", "waiting"):
            self._runners[0].work(units)       # a renumbering of the curve's times, in slices
            return self.done
        if self._lines or not self.input_closed:
            # the last lines and the results are separate steps: each is a long loop
            self._parse(max(1, units))
            return self.done
        if self._runners is None:
            raise self._no_requests()
        if self.curve is None:
            self.curve = self._runners[0].result()
        elif self._fit_steps is None:
            self._fit_steps = self._runners[1].result_steps()
        else:
            try:
                for _ in range(max(1, units)):
                    next(self._fit_steps)
            except StopIteration as stop:
                self.fit = stop.value
                self.done = True
        return self.done


class StepsJob:
    """A generator of steps (``yield`` between small pieces of work, ``return`` the result) as
    a job: ``step(units)`` advances it ``units`` steps; ``total_steps`` (an estimate) gives the
    progress; :attr:`result` once :attr:`done`."""

    def __init__(self, steps, total_steps: int):
        self._steps = steps
        self.total_steps = max(1, total_steps)
        self.count = 0
        self.units = 256
        self.done = False
        self.result = None

    @property
    def progress(self) -> float:
        """0-1: steps taken over the estimate."""
        return 1.0 if self.done else min(0.999, self.count / self.total_steps)

    def step(self, units: int) -> bool:
        """Advance up to ``units`` steps; returns :attr:`done`."""
        steps = self._steps
        try:
            for _ in range(max(1, units)):
                next(steps)
            self.count += max(1, units)
        except StopIteration as stop:
            self.result = stop.value
            self.done = True
        return self.done


class _RequestStore:
    """Keeps ``(hash_ids, last block tokens)`` of fed requests for Belady's offline pass."""

    def __init__(self, store: list, block_size: int):
        self.store = store
        self.block_size = block_size

    def feed(self, requests) -> int:
        """Store ``requests``; returns how many."""
        bs = self.block_size
        for r in requests:
            self.store.append((r.hash_ids, last_block_tokens(r.input_length, len(r.hash_ids), bs)))
        return len(requests)


class PolicyJob(_LinesJob):
    """Pass two over a trace: FIFO, LFU and Belady at one capacity (blocks). LRU needs no
    pass of its own: it is read off the curve of :class:`TraceJob`. ``results`` maps each
    policy to a :class:`~kvcache_calculator.traces.replay.ReplayResult` once :attr:`done`."""

    def __init__(self, capacity_blocks: int, block_size: int, total_bytes: int | None = None, *,
                 format: str | None = None, skip_bad_lines: bool = False,
                 semantics: str = "engine"):
        if isinstance(capacity_blocks, bool) or not isinstance(capacity_blocks, int) or capacity_blocks < 0:
            raise ScenarioError("capacity_blocks", capacity_blocks, "must be a whole number of blocks >= 0")
        super().__init__(total_bytes, format, block_size, skip_bad_lines)
        self.capacity_blocks = capacity_blocks
        self.semantics = semantics
        self.results: dict = {}
        self._stored: list = []
        self._belady: BeladySteps | None = None
        self.done = False

    def _make_runners(self, block_size: int) -> list:
        return [PolicyReplay("fifo", [self.capacity_blocks], block_size, self.semantics),
                PolicyReplay("lfu", [self.capacity_blocks], block_size, self.semantics),
                _RequestStore(self._stored, block_size)]

    @property
    def progress(self) -> float:
        """0-1: reading counts for half, Belady's two offline passes for the other half."""
        if self.done:
            return 1.0
        if self._belady is None:
            return 0.5 * self.read_fraction
        return min(0.999, 0.5 + 0.5 * self._belady.progress)

    def step(self, units: int) -> bool:
        """Parse and replay up to ``units`` lines, then run Belady in steps; returns :attr:`done`."""
        if self.done:
            return True
        if self._belady is not None:
            if self._belady.step(units):
                self.results["belady"] = self._belady.result()
                self._stored = []
                self.done = True
            return self.done
        self._parse(max(1, units))
        if self.input_closed and not self._lines:
            if self._runners is None:
                raise self._no_requests()
            fifo, lfu, _ = self._runners
            self.results["fifo"] = fifo.result()
            self.results["lfu"] = lfu.result()
            self._belady = BeladySteps(self._stored, self.capacity_blocks, self.block_size,
                                       self.semantics)
        return self.done
