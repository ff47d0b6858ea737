"""The lab page's helpers: simulation and trace replay in small resumable steps, and figures.

The lab page (``site/lab.html``) runs the simulator and the trace replayer on the browser's
main thread without freezing it: every piece of work here is a *job* with ``step(units)``
(do about ``units`` units of work; returns True when finished), ``done`` and ``progress``
(0-1). :func:`run_for` runs a job for a time budget, adapting ``units`` so one step stays
far below the budget; the page calls it, yields to the browser, updates its progress bar and
checks its cancel flag, again and again. Nothing here reads a clock, a file or the DOM on its
own: the clock is passed to :func:`run_for`, file contents arrive as ``bytes`` slices.

Jobs:

- :class:`SimulationJob` runs a list of :class:`SimTask` (the current scenario, points of the
  hit-rate-against-memory curve, other policies and routings) through
  :class:`kvcache_calculator.sim.simulate.Simulation`, whose ``run(max_requests)`` resumes.
- :class:`TraceJob` turns byte slices of an uploaded Mooncake or Bailian JSONL file into
  lines (:class:`LineFeed`: UTF-8 checked, lines split across slice boundaries), parses them
  with :class:`kvcache_calculator.traces.readers.TraceReader` and feeds the one-pass LRU curve
  (:class:`kvcache_calculator.traces.replay.LRUCurveReplay`) and the scenario fit
  (:class:`kvcache_calculator.traces.readers.ScenarioFitter`).
- :class:`PolicyJob` is the second pass: FIFO and LFU (:class:`~kvcache_calculator.traces.replay.PolicyReplay`)
  and Belady's MIN at one capacity (the resumable :class:`~kvcache_calculator.traces.replay.BeladySteps`,
  against it hit for hit by the tests).

Figures are plain Plotly dicts like :mod:`kvcache_calculator.present.figures` (scatter and bar only).
"""

from __future__ import annotations

import codecs
import math
from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.replay import (
    GIB,
    BeladySteps,
    LRUCurve,
    LRUCurveReplay,
    PolicyReplay,
    capacity_blocks_from_tokens,
    last_block_tokens,
)
from kvcache_calculator.scenario import ROUTINGS, Scenario
from kvcache_calculator.sim.simulate import Simulation, SimulationResult
from kvcache_calculator.traces.readers import (
    DEFAULT_BLOCK_SIZE, ScenarioFitter, TraceReader, analytic_token_hit_rate, compare_fit_to_replay,
)

__all__ = [
    "run_for",
    "LineFeed",
    "SimTask",
    "memory_tasks",
    "comparison_tasks",
    "SimulationJob",
    "TraceJob",
    "PolicyJob",
    "BeladySteps",
    "with_simulated_points",
    "comparison_figure",
    "trace_capacities",
    "trace_curve_figure",
    "trace_policy_figure",
    "fitted_fragment",
    "fit_gaps",
    "MAX_LINE_CHARS",
    "TRACE_POLICIES",
    "CURVE_UNITS",
]

#: A line longer than this is not a trace record (a Bailian request of 128k tokens is ~80 kB).
MAX_LINE_CHARS = 8 * 2 ** 20
TRACE_POLICIES = ("lru", "fifo", "lfu", "belady")
CURVE_UNITS = ("blocks", "tokens", "gib")

_SIM = "#2ca02c"
_LINE = "#1f77b4"
_CEILING = "#d62728"
_CURRENT = "#ff7f0e"
_GREY = "#7f7f7f"


# ---------------------------------------------------------------------------------------
# Cooperative driving


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


def _percent(x: float) -> float:
    return round(100.0 * x, 4)


# ---------------------------------------------------------------------------------------
# Bytes to lines


class LineFeed:
    """Complete text lines from byte slices of a file that may split lines (and UTF-8
    characters) anywhere.

    Refuses, with a :class:`ScenarioError` (key ``file``) naming the byte offset and line, a NUL byte or
    invalid UTF-8 (a binary file), and a line longer than :data:`MAX_LINE_CHARS`. A UTF-8
    byte-order mark at the start is dropped. ``close()`` returns the last line (one without a
    newline) and refuses an empty file.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._rest = ""
        self.bytes_in = 0
        self.lines_out = 0
        self.closed = False

    def _binary(self, offset: int) -> ScenarioError:
        return ScenarioError("file", f"byte {offset:,}", "this is a binary file, not a JSON-lines "
                             "text trace (Mooncake or Bailian .jsonl)", line=self.lines_out + 1)

    def feed(self, data: bytes) -> list:
        """Decode ``data`` (the next slice) and return the lines it completes."""
        if self.closed:
            raise ScenarioError("file", "data after close", "the file was already read to its end")
        data = bytes(data)
        nul = data.find(b"\0")
        if nul >= 0:
            raise self._binary(self.bytes_in + nul)
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as err:
            raise self._binary(self.bytes_in + err.start) from None
        if self.bytes_in == 0 and text.startswith("\ufeff"):
            text = text[1:]
        self.bytes_in += len(data)
        return self._split(text)

    def _split(self, text: str) -> list:
        if not text:
            return []
        parts = (self._rest + text).split("\n")
        self._rest = parts.pop()
        if len(self._rest) > MAX_LINE_CHARS:
            raise ScenarioError("file", f"a line of over {MAX_LINE_CHARS // 2 ** 20} MiB",
                                "each line must be one JSON request record; this is not a "
                                "JSON-lines trace", line=self.lines_out + len(parts) + 1)
        self.lines_out += len(parts)
        return parts

    def close(self) -> list:
        """The final line, if the file does not end with a newline; refuses an empty file."""
        if self.closed:
            return []
        self.closed = True
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self._binary(self.bytes_in) from None
        out = self._split(tail)
        if self.bytes_in == 0:
            raise ScenarioError("file", "an empty file", "expected JSON lines (Mooncake or "
                                "Bailian format)")
        if self._rest:
            out.append(self._rest)
            self._rest = ""
            self.lines_out += 1
        return out


# ---------------------------------------------------------------------------------------
# Simulation


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

    def cost(self) -> float:
        """Relative cost estimate: expected requests, times the blocks touched per request
        for the per-block engine (the segment engine touches one entry per request)."""
        s = self.scenario
        warmup = math.ceil(s.arrival_rate * 5.0 * s.turns * s.think_time_s)
        requests = (warmup + self.conversations + s.arrival_rate * 2 * s.turns * s.think_time_s) * s.turns
        if s.policy == "lru":
            return requests
        blocks = (s.system_prompt_tokens + s.turns * (s.input_tokens + s.output_tokens)) / s.block_size
        return requests * max(1.0, blocks / 6)


def _trace_named(figure: dict, name: str) -> dict | None:
    return next((t for t in figure.get("data", []) if t.get("name") == name), None)


def memory_tasks(scenario: Scenario, memory_figure: dict, *, conversations: int, seed: int,
                 points: int = 4) -> list:
    """The main simulation plus ``points`` simulations along the analytic hit-rate-against-
    memory curve (``figures.hit_vs_memory``): capacities are read from that curve's
    ``customdata`` (tokens per instance) at evenly spaced positions, skipping empty caches."""
    tasks = [SimTask("main", "main", "this scenario", scenario, None, conversations, seed)]
    model = memory_figure["data"][0]
    current = _trace_named(memory_figure, "This scenario")
    if current is not None:
        tasks[0] = SimTask("main", "main", "this scenario", scenario, None, conversations, seed,
                           x=float(current["x"][0]))
    xs, caps = model.get("x", []), model.get("customdata", [])
    usable = [i for i, c in enumerate(caps) if c and c > 0]
    if not usable or points < 1:
        return tasks
    picks = sorted({usable[round(k * (len(usable) - 1) / max(1, points - 1))]
                    for k in range(points)}) if points > 1 else [usable[len(usable) // 2]]
    for n, i in enumerate(picks):
        tasks.append(SimTask(f"memory{n}", "memory", f"{xs[i]:.3g} GiB per GPU", scenario,
                             int(caps[i]), conversations, seed + 1 + n, x=float(xs[i])))
    return tasks


def comparison_tasks(scenario: Scenario, *, conversations: int, seed: int) -> list:
    """Simulations comparing the eviction policies (LRU, FIFO, LFU at the scenario's routing)
    and, with more than one instance, the routings (at the scenario's policy). The same seed
    everywhere (common random numbers), so differences are not sampling noise alone."""
    tasks = []
    for policy in ("lru", "fifo", "lfu"):
        tasks.append(SimTask(f"policy-{policy}", "policy", policy.upper(),
                             scenario.replace(policy=policy), None, conversations, seed))
    if scenario.instances > 1:
        for routing in ROUTINGS:
            tasks.append(SimTask(f"routing-{routing}", "routing", routing.replace("_", " "),
                                 scenario.replace(routing=routing), None, conversations, seed))
    return tasks


class SimulationJob:
    """Runs :class:`SimTask` s one after the other in resumable steps (``step(units)`` runs
    at most ``units`` requests). ``results`` maps task names to
    :class:`~kvcache_calculator.sim.simulate.SimulationResult`; a task whose scenario cannot be
    simulated gets its :class:`ScenarioError` in ``errors`` instead."""

    def __init__(self, tasks: Sequence[SimTask]):
        self.tasks = list(tasks)
        self.units = 50
        self.results: dict = {}
        self.errors: dict = {}
        self.requests = 0
        self._costs = [t.cost() for t in self.tasks]
        self._total = sum(self._costs) or 1.0
        self._index = 0
        self._sim: Simulation | None = None

    @property
    def done(self) -> bool:
        """True when every task has a result or an error."""
        return self._index >= len(self.tasks)

    @property
    def progress(self) -> float:
        """Estimated 0-1 share of the work done (tasks weighted by :meth:`SimTask.cost`)."""
        if self.done:
            return 1.0
        done = sum(self._costs[: self._index])
        if self._sim is not None:
            done += self._costs[self._index] * self._sim.progress
        return min(0.999, done / self._total)

    @property
    def current(self) -> SimTask | None:
        """The task running now."""
        return None if self.done else self.tasks[self._index]

    def step(self, units: int) -> bool:
        """Simulate up to ``units`` requests of the current task; returns :attr:`done`."""
        if self.done:
            return True
        task = self.tasks[self._index]
        try:
            if self._sim is None:
                self._sim = task.make()
            before = self._sim.requests_done
            finished = self._sim.run(max(1, units))
            self.requests += self._sim.requests_done - before
            if finished:
                self.results[task.name] = self._sim.result()
        except ScenarioError as err:
            self.errors[task.name] = err
            finished = True
        if finished:
            # the next task may cost far more per request (another engine): start small again
            self._sim = None
            self._index += 1
            self.units = 20
        return self.done


# ---------------------------------------------------------------------------------------
# Trace replay


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
        self.lines_in = LineFeed()
        self.units = 64
        self.input_closed = False
        self._lines: deque = deque()
        self._chars = 0
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
        self._lines.extend(self.lines_in.feed(data))

    def close_input(self) -> None:
        """The whole file has been added (refuses an empty file)."""
        self._lines.extend(self.lines_in.close())
        self.input_closed = True

    def _make_runners(self, block_size: int) -> list:
        raise NotImplementedError

    def _parse(self, units: int) -> None:
        """Parse and feed up to ``units`` queued lines."""
        lines = self._lines
        batch = [lines.popleft() for _ in range(min(units, len(lines)))]
        self._chars += sum(len(t) + 1 for t in batch)
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
        """Share of the file parsed so far (characters over bytes: exact for ASCII JSON)."""
        if not self.total_bytes:
            return 1.0 if self.input_closed and not self._lines else 0.0
        return min(1.0, self._chars / self.total_bytes)

    def _no_requests(self) -> ScenarioError:
        first = self.reader.first_error
        more = f" (first: {first})" if first is not None else ""
        return ScenarioError("trace", f"{self.reader.skipped_lines:,} bad lines skipped",
                             "the file holds no valid request" + more)


class TraceJob(_LinesJob):
    """Pass one over an uploaded trace: the exact LRU curve and the fitted scenario.

    ``add_bytes`` each slice, ``close_input`` after the last, ``step`` until :attr:`done`
    (one unit = one line); then :attr:`curve` (:class:`~kvcache_calculator.traces.replay.LRUCurve`)
    and :attr:`fit` (the fitted scenario dict). A malformed line raises ScenarioError with its
    line number unless ``skip_bad_lines``; a file without a single valid request raises at
    the end.
    """

    def __init__(self, total_bytes: int | None = None, *, format: str | None = None,
                 block_size: int | None = None, skip_bad_lines: bool = False,
                 semantics: str = "engine"):
        super().__init__(total_bytes, format, block_size, skip_bad_lines)
        self.semantics = semantics
        self.curve: LRUCurve | None = None
        self.fit: dict | None = None
        self.done = False

    def _make_runners(self, block_size: int) -> list:
        return [LRUCurveReplay(block_size, self.semantics), ScenarioFitter(block_size)]

    @property
    def requests(self) -> int:
        """Valid requests read so far."""
        return self.reader.requests_read

    @property
    def progress(self) -> float:
        """0-1: the share of the file replayed."""
        return 1.0 if self.done else min(0.999, self.read_fraction)

    def step(self, units: int) -> bool:
        """Parse and replay up to ``units`` queued lines; once the input is closed and every
        line is replayed, read the curve, then (next step) the fit. Returns :attr:`done`."""
        if self.done:
            return True
        if self._lines or not self.input_closed:
            # the last lines and the results are separate steps: each is a long loop
            self._parse(max(1, units))
            return self.done
        if self._runners is None:
            raise self._no_requests()
        if self.curve is None:
            self.curve = self._runners[0].result()
        else:
            fitter = self._runners[1]
            self.fit = fitter.result()
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


# ---------------------------------------------------------------------------------------
# Figures and summaries


def _interval(result: SimulationResult) -> tuple:
    lo, hi = result.token_hit_rate_ci
    return _percent(result.token_hit_rate - lo), _percent(hi - result.token_hit_rate)


def with_simulated_points(figure: dict, tasks: Sequence[SimTask], results: dict) -> dict:
    """``figure`` (from ``figures.hit_vs_memory``) with the simulated token hit rates of the
    tasks that have an ``x`` added as markers with 95 % interval error bars."""
    points = sorted((t.x, results[t.name], t.label) for t in tasks
                    if t.x is not None and t.name in results)
    if not points:
        return figure
    low = [_interval(r)[0] for _, r, _ in points]
    high = [_interval(r)[1] for _, r, _ in points]
    policy = points[0][1].policy.upper()
    trace = {
        "type": "scatter", "mode": "markers", "name": f"Simulated ({policy}, 95 % CI)",
        "x": [x for x, _, _ in points], "y": [_percent(r.token_hit_rate) for _, r, _ in points],
        "error_y": {"type": "data", "symmetric": False, "array": high, "arrayminus": low,
                    "color": _SIM, "thickness": 1.5, "width": 4},
        "marker": {"color": _SIM, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
        "customdata": [[r.capacity_tokens, r.requests, label] for _, r, label in points],
        "hovertemplate": "simulated: %{y:.1f}%<br>%{customdata[0]:,} tokens per instance"
                         "<br>%{customdata[1]:,} measured requests<extra></extra>",
    }
    return {"data": list(figure.get("data", [])) + [trace], "layout": figure.get("layout", {})}


def comparison_figure(tasks: Sequence[SimTask], results: dict, analytic: dict) -> dict:
    """Simulated token hit rate (%) with 95 % intervals for each policy and routing task,
    beside the analytic LRU model's value (``analytic``: task name -> 0-1 rate or None)."""
    shown = [t for t in tasks if t.name in results]
    groups = {"policy": "Eviction policy", "routing": "Routing"}
    data = []
    for group, title in groups.items():
        items = [t for t in shown if t.group == group]
        if not items:
            continue
        x = [t.label for t in items]
        data.append({
            "type": "bar", "name": f"{title} (simulated)", "x": x,
            "y": [_percent(results[t.name].token_hit_rate) for t in items],
            "error_y": {"type": "data", "symmetric": False,
                        "array": [_interval(results[t.name])[1] for t in items],
                        "arrayminus": [_interval(results[t.name])[0] for t in items]},
            "marker": {"color": _SIM if group == "policy" else _LINE},
            "hovertemplate": "%{x}: %{y:.1f}% simulated<extra></extra>",
        })
        model = [(xi, analytic.get(t.name)) for xi, t in zip(x, items) if analytic.get(t.name) is not None]
        if model:
            data.append({
                "type": "scatter", "mode": "markers", "name": "Analytic LRU model" if group == "policy"
                else "Analytic model (routing)", "x": [m[0] for m in model],
                "y": [_percent(m[1]) for m in model],
                "marker": {"color": _CURRENT, "size": 12, "symbol": "diamond",
                           "line": {"width": 1, "color": "#000"}},
                "hovertemplate": "%{x}: %{y:.1f}% analytic<extra></extra>",
            })
    ceiling = [results[t.name].max_token_hit_rate for t in shown]
    layout = {
        "title": {"text": "Policies and routings (simulated, 95 % CI)", "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 150},
        "xaxis": {"title": {"text": ""}, "automargin": False, "type": "category", "tickangle": -30},
        "yaxis": {"title": {"text": "Token hit rate (%)"}, "automargin": False,
                  "range": [0, 100]},
        "legend": {"orientation": "h", "x": 0, "y": -0.35, "yanchor": "top"},
        "hovermode": "closest", "font": {"size": 12}, "barmode": "overlay",
    }
    if ceiling:
        _mark_ceiling(layout, _percent(max(ceiling)), "ceiling")
    return {"data": data, "layout": layout}


def _mark_ceiling(layout: dict, top: float, label: str) -> None:
    """A dashed line across the chart at hit rate ``top`` (%), labelled ``<label> <top>%``."""
    layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": top, "y1": top,
                         "line": {"color": _CEILING, "dash": "dash", "width": 1.5}}]
    layout["annotations"] = [{"xref": "paper", "x": 1, "y": top, "yanchor": "bottom",
                              "xanchor": "right", "showarrow": False,
                              "text": f"{label} {top:.1f}%", "font": {"color": _CEILING}}]


def _convert(blocks: float, unit: str, block_size: int, kv_bytes_per_token: float | None) -> float:
    if unit == "blocks":
        return blocks
    if unit == "tokens":
        return blocks * block_size
    if kv_bytes_per_token is None:
        raise ScenarioError("unit", unit, "GiB needs the model's KV bytes per token")
    return blocks * block_size * kv_bytes_per_token / GIB


def trace_capacities(curve: LRUCurve, kv_bytes_per_token: float | None,
                     current_capacity_tokens: int | None) -> list:
    """Rows for the page's table: the capacities reaching 50, 90, 99 and 100 % of the
    token-hit ceiling (exact, from the one-pass curve) and the current configuration's
    capacity, each in blocks, tokens and GiB with its token and block hit rates."""
    bs = curve.block_size
    rows = []
    for pct in (50, 90, 99, 100):
        blocks = curve.capacity_for_ceiling if pct == 100 else curve.capacity_for_fraction(pct / 100, "token")
        rows.append((f"{pct} % of the ceiling", f"p{pct}", blocks))
    if current_capacity_tokens is not None:
        rows.append(("current configuration", "current",
                     capacity_blocks_from_tokens(current_capacity_tokens, bs)))
    out = []
    for label, key, blocks in rows:
        out.append({
            "key": key, "label": label, "capacity_blocks": blocks, "capacity_tokens": blocks * bs,
            "capacity_gib": (None if kv_bytes_per_token is None
                             else blocks * bs * kv_bytes_per_token / GIB),
            "token_hit_rate": curve.token_hit_rate(blocks),
            "block_hit_rate": curve.block_hit_rate(blocks),
        })
    return out


_UNIT_TITLES = {"blocks": "Cache capacity (blocks of {bs} tokens)", "tokens": "Cache capacity (tokens)",
                "gib": "Cache capacity (GiB of KV, {model})"}


def trace_curve_figure(curve: LRUCurve, unit: str = "blocks", *, kv_bytes_per_token: float | None = None,
                       model_name: str = "", current_capacity_tokens: int | None = None,
                       max_points: int = 200) -> dict:
    """The exact LRU hit rate (%) of a replayed trace against capacity (log axis) in
    ``unit`` (``blocks``, ``tokens`` or ``gib`` for ``kv_bytes_per_token``), token and block
    hit rates, the ceiling, the current capacity and the 50/90/99 % capacities marked."""
    if unit not in CURVE_UNITS:
        raise ScenarioError("unit", unit, "allowed: " + ", ".join(CURVE_UNITS))
    bs = curve.block_size
    pts = curve.points(max_points)
    rows = trace_capacities(curve, kv_bytes_per_token, current_capacity_tokens)
    top = max([p[0] for p in pts] + [r["capacity_blocks"] for r in rows] + [1])
    if pts and pts[-1][0] < top * 1.25:
        pts.append((round(top * 1.25) or 1, curve.infinite_block_hit_rate, curve.infinite_token_hit_rate))

    def conv(blocks):
        return round(_convert(blocks, unit, bs, kv_bytes_per_token), 6)

    caps = [p[0] for p in pts]
    x = [conv(c) for c in caps]
    custom = [[c, c * bs, None if kv_bytes_per_token is None else round(c * bs * kv_bytes_per_token / GIB, 4)]
              for c in caps]
    hover = ("%{customdata[0]:,} blocks = %{customdata[1]:,} tokens"
             + ("" if kv_bytes_per_token is None else " = %{customdata[2]:.3g} GiB"))
    data = [
        {"type": "scatter", "mode": "lines", "name": "Token hit rate (exact LRU replay)",
         "x": x, "y": [_percent(p[2]) for p in pts], "line": {"color": _LINE, "width": 2.5, "shape": "hv"},
         "customdata": custom, "hovertemplate": hover + "<br>token hit rate %{y:.1f}%<extra></extra>"},
        {"type": "scatter", "mode": "lines", "name": "Block hit rate",
         "x": x, "y": [_percent(p[1]) for p in pts], "line": {"color": _GREY, "width": 1.5, "dash": "dot",
                                                            "shape": "hv"},
         "customdata": custom, "hovertemplate": hover + "<br>block hit rate %{y:.1f}%<extra></extra>"},
    ]
    if x:
        ceiling = _percent(curve.infinite_token_hit_rate)
        data.append({"type": "scatter", "mode": "lines",
                     "name": f"Ceiling (infinite cache) {ceiling:.1f}%", "x": [x[0], x[-1]],
                     "y": [ceiling, ceiling], "line": {"color": _CEILING, "dash": "dash", "width": 1.5},
                     "hoverinfo": "name"})
    marks = [r for r in rows if r["key"] in ("p50", "p90", "p99") and r["capacity_blocks"] > 0]
    if marks:
        data.append({"type": "scatter", "mode": "markers+text", "name": "50 / 90 / 99 % of the ceiling",
                     "x": [conv(r["capacity_blocks"]) for r in marks],
                     "y": [_percent(r["token_hit_rate"]) for r in marks],
                     "text": [r["key"][1:] + "%" for r in marks], "textposition": "top left",
                     "marker": {"color": _GREY, "size": 9, "symbol": "triangle-up"},
                     "customdata": [[r["capacity_blocks"], r["capacity_tokens"]] for r in marks],
                     "hovertemplate": "%{text} of the ceiling: %{customdata[0]:,} blocks"
                                      " = %{customdata[1]:,} tokens<extra></extra>"})
    current = next((r for r in rows if r["key"] == "current"), None)
    if current is not None and current["capacity_blocks"] > 0:
        cx = conv(current["capacity_blocks"])
        data.append({"type": "scatter", "mode": "lines+markers", "name": "Current configuration",
                     "x": [cx, cx], "y": [0, _percent(current["token_hit_rate"])],
                     "line": {"color": _CURRENT, "width": 1.5},
                     "marker": {"color": _CURRENT, "size": [0, 11], "symbol": "diamond"},
                     "hovertemplate": f"current capacity: {current['capacity_blocks']:,} blocks"
                                      "<br>token hit rate %{y:.1f}%<extra></extra>"})
    layout = {
        "title": {"text": "Trace: exact LRU hit rate vs cache capacity", "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 150},
        "xaxis": {"title": {"text": _UNIT_TITLES[unit].format(bs=bs, model=model_name or "this model")},
                  "type": "log", "automargin": False},
        "yaxis": {"title": {"text": "Hit rate (%)"}, "range": [0, 100], "automargin": False},
        "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"},
        "hovermode": "closest", "font": {"size": 12},
    }
    return {"data": data, "layout": layout}


def trace_policy_figure(results: dict) -> dict:
    """Token and block hit rates (%) of each replayed policy at one capacity (bars), with the
    ceiling; ``results`` maps policy names to one-capacity ReplayResults."""
    order = [p for p in TRACE_POLICIES if p in results]
    names = [p.upper() if p != "belady" else "Belady (MIN)" for p in order]
    data = [
        {"type": "bar", "name": "Token hit rate", "x": names,
         "y": [_percent(results[p].token_hit_rate[0]) for p in order], "marker": {"color": _LINE},
         "hovertemplate": "%{x}: token hit rate %{y:.2f}%<extra></extra>"},
        {"type": "bar", "name": "Block hit rate", "x": names,
         "y": [_percent(results[p].block_hit_rate[0]) for p in order], "marker": {"color": _GREY},
         "hovertemplate": "%{x}: block hit rate %{y:.2f}%<extra></extra>"},
    ]
    cap = results[order[0]].capacity_blocks[0] if order else 0
    bs = results[order[0]].block_size if order else 0
    layout = {
        "title": {"text": f"Trace: policies at {cap:,} blocks ({cap * bs:,} tokens)", "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 80}, "barmode": "group",
        "xaxis": {"type": "category", "automargin": False},
        "yaxis": {"title": {"text": "Hit rate (%)"}, "range": [0, 100], "automargin": False},
        "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}, "font": {"size": 12},
    }
    if order:
        _mark_ceiling(layout, _percent(results[order[0]].infinite_token_hit_rate), "token ceiling")
    return {"data": data, "layout": layout}


def fitted_fragment(scenario: Scenario, fit: dict) -> str:
    """The URL fragment of ``scenario`` with the workload keys fitted to a trace (model,
    GPUs and serving keys stay); values the scenario rejects are left at their defaults."""
    data = {**scenario.changed(), **{k: v for k, v in fit.items() if k != "diagnostics"}}
    return Scenario.from_dict_lenient(data)[0].to_fragment()


def fit_gaps(fit: dict, curve: LRUCurve, capacities_blocks: Sequence[int]) -> list:
    """The analytic model on the fitted scenario against the exact LRU replay at each capacity
    (``traces.compare_fit_to_replay``); a capacity the model cannot evaluate gets ``error``."""
    out = []
    for blocks in capacities_blocks:
        if blocks <= 0:
            continue
        tokens = blocks * curve.block_size
        try:
            row = compare_fit_to_replay(fit, curve.token_hit_rate(blocks), analytic_token_hit_rate,
                                        capacity_tokens=tokens)
        except ScenarioError as err:
            row = {"capacity_tokens": tokens, "error": str(err)}
        row["capacity_blocks"] = blocks
        out.append(row)
    return out
