"""The lab page's glue, run by PyScript: simulation and trace replay without freezing the page.

Long work runs on the main thread in cooperative steps (``kvcache_calculator.present.jobs``): each
turn of :func:`drive` works for at most :data:`BUDGET_S` (adapting the step size), then
awaits ``asyncio.sleep(0)``, which hands control back to the browser (input, painting, the
cancel button). No SharedArrayBuffer: the page works the same with and without cross-origin
isolation, so on GitHub Pages too. Uploaded files are read with the File API in
:data:`SLICE_BYTES` slices; a file sampled (above the sizes below, or any file with
``?sample=RATE`` in the address) is read by a Web Worker instead (``trace-sampler.js``: it
parses and samples in JavaScript and hands Python only the sampled requests,
``kvcache_calculator.present.upload_sample``). Nothing read from a link or a file is inserted as HTML.
"""

import asyncio
import gc
import json
import time
from array import array

from pyscript import document, window
from pyscript.ffi import create_proxy

from pagekit import Page, by_id, missing   # site/pagekit.py, shipped by pyscript.json

ROOT = document.documentElement
PAGE = Page("kvcache lab", "action")
BUDGET_S = 0.025             # work per turn of the event loop (the browser gets control back after)
PROBE_S = 0.3                # a simulation's first slice of each kind of run, timed for the estimate
CONFIRM_ABOVE_S = 60.0       # a simulation estimated to take longer waits for "Run it" (or Cancel)
SLICE_BYTES = 2 ** 18        # bytes read from an uploaded file at a time (1 MiB took 70-270 ms to split)
MAX_PENDING_LINES = 4000     # read the next slice once fewer lines than this wait
SAMPLE_ABOVE_BYTES = 100 * 2 ** 20        # a larger upload is replayed on a sample (SHARDS)
SAMPLE_ABOVE_GZ_BYTES = 20 * 2 ** 20      # the same for a gzip file (about 5x smaller)
SAMPLE_RATE = 0.01
KEEP_BELOW_BYTES = 60 * 2 ** 20           # the gap split and routing need the requests in memory
ROUTINGS_REPLAYED = ("round_robin", "random", "prefix", "cache_aware")


# ---------------------------------------------------------------------------- small helpers

def plain(value):
    return "" if value is None else repr(float(value))


def cell(tag, text, **data):
    el = document.createElement(tag)
    el.textContent = text
    for key, val in data.items():
        el.setAttribute(key.replace("_", "-"), str(val))
    return el


def draw(div_id, figure):
    """Hand a core figure dict to Plotly.js (``Plotly.react`` redraws in place)."""
    plotly = getattr(window, "Plotly", None)
    div = by_id(div_id)
    if missing(plotly) or div is None or not figure:
        return
    fig = window.JSON.parse(json.dumps(figure))
    plotly.react(div, fig.data, fig.layout, window.kvcalcPlotConfig)   # from loader.js


def placeholder(text, kinds=("scatter",), log_x=False):
    """An empty chart with a line of text: drawn at start-up with empty traces of the kinds
    the results will use, so that a job's results later only update an existing plot (a
    first Plotly draw of a trace type can take longer than the 200 ms long-task bound)."""
    data = [{"type": kind, "x": [], "y": [], "name": kind, "error_y": {"type": "data", "array": []}}
            for kind in kinds]
    if log_x:
        data.append({"type": "scatter", "mode": "markers+text", "x": [1], "y": [0], "text": [""],
                     "name": "mark", "line": {"shape": "hv"}, "marker": {"size": [0]}})
    return {"data": data, "layout": {
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 96}, "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "y": -0.25, "yanchor": "top", "font": {"color": "#ffffff"}},
        "xaxis": {"visible": False, "type": "log" if log_x else "linear"}, "yaxis": {"visible": False},
        "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 0, "y1": 0, "yref": "paper",
                    "line": {"color": "#ffffff", "width": 0}}],
        "annotations": [{"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5,
                         "showarrow": False, "font": {"size": 14, "color": "#4a5160"}}]}}


def show_error(element_id, message):
    box = by_id(element_id)
    box.textContent = message or ""
    box.hidden = not message


# ---------------------------------------------------------------------------- the lab

class Lab:
    """The page's state: the scenario of the link, the job running, the last trace read."""

    def __init__(self):
        self.report = None
        self.scenario = None
        self.figure = None
        self.running = False
        self.cancel = False
        self.go = False            # "Run it" pressed on a long simulation's estimate
        self.trace_file = None
        self.trace = None          # the finished TraceJob of an upload
        self.trace_skip = False
        self.summaries = {}        # built-in trace name -> its summary (fetched once)
        self.summary = None        # the chosen built-in trace's summary
        self.curve = None          # the curve shown: LRUCurve, or SampledCurve for a sample
        self.trace_name = ""
        self.replay_rate = None    # requests/s of the last upload's first pass

    # -- the scenario ------------------------------------------------------------------
    def load_scenario(self):
        params = {}
        try:
            params = decode_fragment(str(window.location.hash or ""))
        except ScenarioError as err:
            problems = [str(err)]
        else:
            problems = []
        report = evaluate(params)
        problems += [error["message"] for error in report["field_errors"].values()]
        problems += [f"{k}: not a known setting, ignored" for k in report["unknown_keys"]]
        self.report = report
        self.scenario = Scenario.from_fragment(report["fragment"])
        self.figure = report["figures"]["hit_vs_memory"]
        fragment = report["fragment"]
        res = report["results"]
        sc = self.scenario
        text = (f"{report['model']['name']} on {sc.num_gpus} × {sc.gpu}, "
                f"{sc.instances} {unit_for(sc.instances, 'instances')}; {format_fixed(res['capacity_tokens'])} "
                f"tokens of cache per instance; {sc.arrival_rate:g} {unit_for(sc.arrival_rate, 'conversations/s')} "
                f"of {sc.turns:g} {unit_for(sc.turns, 'turns')}, think time {sc.think_time_s:g} s. ")
        text += f"Link keys: {fragment}" if fragment else "All keys at their defaults."
        by_id("scenario-text").textContent = text
        items = by_id("link-problems")
        items.replaceChildren()
        for message in problems:
            items.appendChild(cell("li", message))
        by_id("edit-link").setAttribute("href", "./index.html" + (f"#{fragment}" if fragment else ""))
        by_id("back-link").setAttribute("href", "./index.html" + (f"#{fragment}" if fragment else ""))
        notes = by_id("weak-notes")
        notes.replaceChildren()
        if not report["fits"]:
            notes.appendChild(cell("li", str(report["fit_message"])))
        for note in report["notes"]:
            notes.appendChild(cell("li", "For this scenario: " + note))
        self.render_sim_table(None)
        draw("chart-sim-memory", self.figure)
        by_id("policy-capacity").value = str(self.current_capacity_blocks() or "")
        by_id("gap-capacity").value = str(self.current_capacity_blocks() or "")
        if self.curve is not None:
            PAGE.start_task(self.render_trace())

    def current_capacity_blocks(self):
        if self.curve is None:
            return None
        return capacity_blocks_from_tokens(self.report["results"]["capacity_tokens"] or 0,
                                           self.curve.block_size)

    # -- the simulation table --------------------------------------------------------------
    def render_sim_table(self, simulated):
        """The analytic model beside ``simulated`` (the main simulation's result, or None)."""
        body = by_id("sim-rows")
        body.replaceChildren()
        for row in simulation_rows(self.report["results"], simulated):
            key = row["key"]
            tr = document.createElement("tr")
            tr.appendChild(cell("th", row["label"], scope="row"))
            td = document.createElement("td")
            td.appendChild(cell("output", row["analytic_text"], id=f"an-{key}", data_value=plain(row["analytic"])))
            tr.appendChild(td)
            attrs = {"id": f"sim-{key}", "data_value": plain(row["simulated"])}
            if row["interval"]:
                attrs.update(data_low=plain(row["interval"][0]), data_high=plain(row["interval"][1]))
            td = document.createElement("td")
            td.appendChild(cell("output", row["simulated_text"], **attrs))
            tr.appendChild(td)
            if row["difference_text"] is None:
                diff = cell("td", "")
            else:
                diff = cell("td", row["difference_text"], id=f"diff-{key}")
                if row["inside"] is not None:
                    diff.className = "diff-in" if row["inside"] else "diff-out"
            tr.appendChild(diff)
            body.appendChild(tr)

    # -- running jobs --------------------------------------------------------------------
    def set_running(self, running, name=""):
        self.running = running
        self.cancel = False
        for button in ("simulate", "compare", "compare-policies", "explain"):
            by_id(button).disabled = running or (button == "compare-policies" and self.trace is None) \
                or (button == "explain" and self.curve is None)
        by_id("trace-file").disabled = running
        by_id("trace-choice").disabled = running
        by_id("cancel").hidden = not running
        by_id("job-go").hidden = True
        if running:
            by_id("job").hidden = False
            ROOT.setAttribute("data-job", "running")
            ROOT.setAttribute("data-job-name", name)
            by_id("job-progress").value = 0
            ROOT.removeAttribute("data-sim-estimate-s")

    def finish(self, state):
        self.set_running(False)
        ROOT.setAttribute("data-job", state)

    def show_progress(self, label, fraction, started):
        by_id("job-progress").value = round(1000 * fraction)
        elapsed = time.perf_counter() - started
        text = f"{label}: {format_percent(fraction, 0)}"
        if fraction > 0.02 and elapsed > 0.5:
            left = elapsed * (1 - fraction) / fraction
            text += f", about {format_duration(max(1.0, left))} left"
        by_id("job-status").textContent = text

    async def drive(self, job, label, started, before_step=None):
        """Run ``job`` in turns of BUDGET_S, yielding to the browser between them;
        ``before_step`` (reading the next slice of a file) returns True when it did work.
        Returns False if cancelled.

        Python's cyclic garbage collector is paused meanwhile: its passes over the millions of
        objects a large replay keeps alive (the curve's and the fit's dicts, the requests) took
        up to 1.9 s in one task in Pyodide (Python 3.14's incremental collector), and a trace
        job makes no reference cycles (reference counting frees its garbage). At the end what
        is alive is frozen (``gc.freeze``), so later passes do not walk it again either."""
        gc.disable()
        try:
            return await self._drive(job, label, started, before_step)
        finally:
            gc.freeze()
            gc.enable()

    async def _drive(self, job, label, started, before_step):
        last_shown = 0.0
        while True:
            if before_step is not None and await before_step():
                await asyncio.sleep(0)         # decoding a slice is a task's work already
            if run_for(job, BUDGET_S, time.perf_counter):
                await asyncio.sleep(0)         # what follows (tables, charts) in a new task
                return True
            now = time.perf_counter()
            if now - last_shown > 0.1:
                self.show_progress(label, job.progress, started)
                last_shown = now
            await asyncio.sleep(0)
            if self.cancel:
                return False

    # -- simulation ----------------------------------------------------------------------
    async def sim_turn(self, job, pace):
        """One turn of BUDGET_S on ``job``, timed into ``pace`` (if any), then back to the browser."""
        index = job.running_index
        before = job.progress
        t0 = time.perf_counter()
        run_for(job, BUDGET_S, time.perf_counter)
        if pace is not None:
            # cost units of the turn (progress weighs tasks by their cost), all to the task it began
            pace.record(index, time.perf_counter() - t0, (job.progress - before) * job.total_cost)
        await asyncio.sleep(0)

    def show_sim_progress(self, label, job, pace):
        fraction = job.progress
        by_id("job-progress").value = 1000 * fraction      # not rounded: the bar moves smoothly
        text = f"{label}: {format_percent(fraction, 1)} ({job.requests:,} requests)"
        left = pace.seconds_left()
        if left is not None:
            text += f", about {format_duration(max(1.0, left))} left"
        by_id("job-status").textContent = text

    async def drive_simulation(self, job, label, started):
        """Time a first slice of each kind of run (:meth:`SimulationJob.probes`), show the
        estimate of the whole job (a long one waits for "Run it" or Cancel), then run it to
        the end in turns of BUDGET_S, showing the progress and the time left. False if cancelled."""
        pace = SimulationPace(job)
        by_id("job-status").textContent = f"{label}: timing a first slice to estimate how long it takes…"
        for index in job.probes():
            job.focus = index
            await self.sim_turn(job, None)         # not timed: it sets the simulation up
            until = time.perf_counter() + PROBE_S
            while not job.finished(index) and time.perf_counter() < until:
                await self.sim_turn(job, pace)
                if self.cancel:
                    return False
        job.focus = None
        by_id("job-progress").value = 1000 * job.progress     # the first slices' work is kept
        left = pace.seconds_left() or 0.0
        total = time.perf_counter() - started + left
        ROOT.setAttribute("data-sim-estimate-s", f"{total:.2f}")
        if left > CONFIRM_ABOVE_S:
            by_id("job-status").textContent = (
                f"This run would take about {format_duration(total)} in this browser (timed on a first slice "
                "of each kind of run); the page stays usable meanwhile.")
            go = by_id("job-go")
            go.hidden = False
            ROOT.setAttribute("data-sim-confirm", "waiting")
            self.go = False
            while not self.go and not self.cancel:
                await asyncio.sleep(0.05)
            go.hidden = True
            ROOT.removeAttribute("data-sim-confirm")
            if self.cancel:
                return False
        last_shown = 0.0
        while not job.done:
            await self.sim_turn(job, pace)
            if self.cancel:
                return False
            now = time.perf_counter()
            if now - last_shown > 0.25:
                self.show_sim_progress(label, job, pace)
                last_shown = now
        return True

    def sim_settings(self):
        """(conversations, seed) from the controls, or None after showing why not."""
        show_error("sim-error", "")
        raw = str(by_id("sim-seed").value).strip()
        if not raw.isdigit():
            by_id("sim-seed").setAttribute("aria-invalid", "true")
            show_error("sim-error", str(ScenarioError("seed", raw, "must be a whole number >= 0")))
            return None
        by_id("sim-seed").removeAttribute("aria-invalid")
        if not self.report["fits"]:
            show_error("sim-error", str(ScenarioError("model", self.scenario.model,
                                                      str(self.report["fit_message"]))))
            return None
        return int(by_id("sim-conversations").value), int(raw)

    async def run_simulations(self, kind, label, cancelled_text, make_tasks):
        """Run the simulations ``make_tasks(conversations, seed)`` gives, in steps; returns
        ``(tasks, job, started)``, or None when they were refused, failed or cancelled."""
        if self.running:
            return None
        settings = self.sim_settings()
        if settings is None:
            return None
        conversations, seed = settings
        tasks = make_tasks(conversations, seed)
        job = SimulationJob(tasks)
        self.set_running(True, kind)
        started = time.perf_counter()
        try:
            finished = await self.drive_simulation(job, label, started)
        except ScenarioError as err:
            show_error("sim-error", str(err))
            self.finish("error")
            return None
        if not finished:
            by_id("job-status").textContent = cancelled_text
            self.finish("cancelled")
            return None
        return tasks, job, started

    async def simulate(self, event=None):
        run = await self.run_simulations(
            "simulate", "Simulating", "Simulation cancelled.",
            lambda n, seed: memory_tasks(self.scenario, conversations=n, seed=seed))
        if run is None:
            return
        tasks, job, started = run
        elapsed = time.perf_counter() - started
        main = job.results.get("main")
        if main is None:
            show_error("sim-error", str(job.errors.get("main", "The simulation failed.")))
            self.finish("error")
            return
        failed = [str(e) for e in job.errors.values()]
        if failed:
            show_error("sim-error", "Some memory points could not be simulated: " + failed[0])
        self.render_sim_table(main)
        draw("chart-sim-memory", with_simulated_points(self.figure, tasks, job.results))
        by_id("job-status").textContent = (
            f"Simulated {job.requests:,} requests in {elapsed:.1f} s "
            f"({job.requests / max(elapsed, 1e-9):,.0f} requests/s).")
        ROOT.setAttribute("data-sim-rate", f"{job.requests / max(elapsed, 1e-9):.1f}")
        ROOT.setAttribute("data-sim-requests", str(job.requests))
        self.finish("done")

    async def compare(self, event=None):
        run = await self.run_simulations(
            "compare", "Comparing policies and routings", "Comparison cancelled.",
            lambda n, seed: comparison_tasks(self.scenario, conversations=n, seed=seed))
        if run is None:
            return
        tasks, job, started = run
        analytic = analytic_rates(tasks)
        await asyncio.sleep(0)                 # the drawing is a browser task of its own
        draw("chart-compare", comparison_figure(tasks, job.results, analytic))
        by_id("job-status").textContent = (f"Simulated {job.requests:,} requests in "
                                           f"{time.perf_counter() - started:.1f} s.")
        note = "Same seed for every run (common random numbers). The orange diamonds are the analytic LRU model."
        if self.scenario.instances == 1:
            note += " Routing only matters with several instances (instances = 1 here), so only policies are compared."
        if job.errors:
            note += " Not simulated: " + "; ".join(str(e) for e in job.errors.values())
        by_id("compare-note").textContent = note
        self.finish("done")

    # -- traces --------------------------------------------------------------------------
    async def read_into(self, job, file, label, started):
        """Stream ``file`` into ``job`` slice by slice while stepping it."""
        size = int(file.size)
        position = 0

        async def before_step():
            nonlocal position
            if job.input_closed or job.pending_lines >= MAX_PENDING_LINES:
                return False
            if position >= size:
                job.close_input()
                return False
            end = min(size, position + SLICE_BYTES)
            buffer = await file.slice(position, end).arrayBuffer()
            job.add_bytes(buffer.to_bytes())
            position = end
            return True

        return await self.drive(job, label, started, before_step)

    async def read_with_worker(self, job, file, label, started):
        """Have the Web Worker (trace-sampler.js) read and sample ``file`` into ``job`` (a
        SampledUploadJob) while stepping it; each batch replayed is acknowledged, so the
        worker stays at most a few batches ahead."""
        worker = window.Worker.new("./trace-sampler.js")

        def on_message(event):
            data = event.data
            if not missing(getattr(data, "batch", None)):
                job.add_batch(batch_from_js(data.batch))
            elif not missing(getattr(data, "done", None)):
                job.close(json.loads(window.JSON.stringify(data.done)))      # JS null -> None
                ROOT.setAttribute("data-reader-s", f"{time.perf_counter() - started:.3f}")
                ROOT.setAttribute("data-reader-waited-s", str(data.done.waitedS))
            elif not missing(getattr(data, "error", None)):
                job.fail(json.loads(window.JSON.stringify(data.error)))

        def on_error(event):
            job.fail({"kind": "internal", "detail": str(getattr(event, "message", "") or "the reader stopped")})

        handlers = [create_proxy(on_message), create_proxy(on_error)]
        worker.onmessage, worker.onerror = handlers
        message = window.JSON.parse(json.dumps(job.worker_message()))
        message.file = file
        worker.postMessage(message)
        acked = 0
        ack = window.JSON.parse('{"ack": 1}')

        async def before_step():
            nonlocal acked
            while acked < job.batches_done:
                worker.postMessage(ack)
                acked += 1
            while job.waiting and not self.cancel:      # the worker is reading: leave it the CPU
                await asyncio.sleep(0.01)
            return False

        try:
            return await self.drive(job, label, started, before_step)
        finally:
            worker.terminate()
            for handler in handlers:
                handler.destroy()

    def clear_trace(self):
        """Forget the trace shown: an error must not leave another trace's results on screen."""
        self.trace = self.curve = self.summary = None
        self.trace_name = ""
        by_id("trace-info").textContent = ""
        for body in ("trace-rows", "fit-rows", "gap-rows"):
            by_id(body).replaceChildren()
        by_id("fit-text").textContent = "A scenario is fitted to the trace once it is replayed."
        by_id("use-workload").hidden = True
        by_id("gap-note").textContent = ""
        draw("chart-trace-curve", placeholder("Choose a trace or drop a trace file", log_x=True))
        draw("chart-gap", placeholder("Choose a trace", ("bar",)))
        draw("chart-reuse", placeholder("Choose a trace", ("bar",), log_x=True))
        draw("chart-routing", placeholder("Choose a trace"))
        ROOT.setAttribute("data-trace", "")

    async def replay_file(self, file):
        if self.running or missing(file):
            return
        show_error("trace-error", "")
        self.trace_skip = bool(by_id("skip-bad").checked)
        size = int(file.size)
        name = str(file.name)
        gz = name.lower().endswith(".gz")
        rate = forced_sample_rate()
        if rate is None and size > (SAMPLE_ABOVE_GZ_BYTES if gz else SAMPLE_ABOVE_BYTES):
            rate = SAMPLE_RATE
        keep = rate is None and size <= KEEP_BELOW_BYTES
        worker = rate is not None and not missing(getattr(window, "Worker", None))
        if worker:
            job = SampledUploadJob(size, rate, skip_bad_lines=self.trace_skip)
        else:
            job = TraceJob(size, skip_bad_lines=self.trace_skip, sample_rate=rate, keep_requests=keep)
        self.set_running(True, "trace")
        started = time.perf_counter()
        label = f"Replaying {name}" + (f" on a {rate:.2g} sample of its blocks (approximate)" if rate else "")
        ROOT.setAttribute("data-reader", "worker" if worker else "python")
        try:
            if worker:
                finished = await self.read_with_worker(job, file, label, started)
            else:
                finished = await self.read_into(job, file, label, started)
        except ScenarioError as err:
            self.clear_trace()
            show_error("trace-error", f"{name} was not read: {err}. "
                       + ("" if self.trace_skip or err.line is None or err.key == "file" else
                          "Tick “Skip malformed lines” to replay the rest of the file."))
            self.finish("error")
            return
        if not finished:
            by_id("job-status").textContent = "Replay cancelled."
            self.finish("cancelled")
            return
        elapsed = time.perf_counter() - started
        self.summary = None
        self.trace_file = file
        self.trace = job
        self.curve = job.curve
        self.trace_name = name
        self.replay_rate = job.requests / max(elapsed, 1e-9)
        choice = by_id("trace-choice")
        choice.options.item(choice.options.length - 1).disabled = False
        choice.value = "upload"
        ROOT.setAttribute("data-replay-rate", f"{size / max(elapsed, 1e-9) / 2 ** 20:.3f}")
        ROOT.setAttribute("data-replay-s", f"{elapsed:.3f}")
        by_id("policy-capacity").value = str(self.current_capacity_blocks())
        by_id("gap-capacity").value = str(self.current_capacity_blocks())
        await self.render_trace(elapsed)
        self.show_gap_offer()
        by_id("job-status").textContent = f"Replayed {job.requests:,} requests in {elapsed:.1f} s."
        self.finish("done")

    async def choose_builtin(self, name):
        """Show a built-in trace from its summary: curve, table, gap split and routing at once."""
        if self.running:
            return
        show_error("trace-error", "")
        if not name or name == "upload":
            return
        try:
            if name not in self.summaries:
                response = await window.fetch(f"./traces/{name}.json")
                if not response.ok:
                    raise ScenarioError("trace", name, f"its summary could not be loaded (HTTP {response.status})")
                self.summaries[name] = json.loads(str(await response.text()))
            summary = self.summaries[name]
            curve = summary_curve(summary, self.warmup())
        except ScenarioError as err:
            self.clear_trace()
            show_error("trace-error", str(err))
            return
        self.trace = None
        self.summary = summary
        self.curve = curve
        self.trace_name = name
        by_id("gap-capacity").value = str(self.current_capacity_blocks())
        by_id("policy-capacity").value = str(self.current_capacity_blocks())
        routing = by_id("gap-routing")
        offered = set(summary["views"][0]["routing"])
        for k in range(routing.options.length):
            option = routing.options.item(k)
            option.disabled = option.value not in offered
        await self.render_trace()
        self.explain_builtin()
        ROOT.setAttribute("data-trace", name)

    def warmup(self):
        return float(by_id("warmup").value)

    async def change_warmup(self):
        if self.summary is not None:
            await self.choose_builtin(self.trace_name)
        elif self.trace is not None:
            self.show_gap_offer()

    async def render_trace(self, elapsed=None):
        curve = self.curve
        res = self.report["results"]
        kv = res.get("kv_bytes_per_token")
        approximate = getattr(curve, "approximate", False)
        if self.summary is not None:
            prov = self.summary["provenance"]
            info = (f"{self.summary['name']} (built-in, from its summary; {prov['licence'].split(' (')[0]}): "
                    f"{curve.requests:,} requests counted"
                    + (f" after a warm-up of {self.summary_view()['warmup_requests']:,}" if self.warmup() else "")
                    + f", {curve.total_blocks:,} block references, {curve.distinct_blocks:,} distinct blocks of "
                    f"{curve.block_size} tokens.")
        else:
            job = self.trace
            info = (f"{self.trace_name}: {job.format} format, {curve.requests:,} requests, "
                    f"{curve.total_blocks:,} block references, {curve.distinct_blocks:,} distinct blocks "
                    f"of {curve.block_size} tokens.")
            if approximate:
                bands = curve.rate_bands()
                info += (f" Approximate: replayed on a {100 * curve.rate:.3g}% sample of the blocks (SHARDS)"
                         + "".join(f", {100 * b['rate']:.3g}% below {prev['min_capacity_blocks']:,} blocks"
                                   for prev, b in zip(bands, bands[1:]))
                         + f"; unreliable below {curve.min_reliable_capacity_blocks:,} blocks"
                         + (" (the higher rate was dropped: the worker could not read every line)"
                            if getattr(job, "levels_dropped", False) else "") + ".")
            skipped = job.reader.skipped_lines
            if skipped:
                info += f" Skipped {skipped:,} malformed lines (first: {job.reader.first_error})."
            order = job.order
            if order.out_of_order:
                info += (f" Warning: {order.out_of_order:,} requests have a timestamp earlier than the one "
                         f"before (first: request {order.first_request:,}, up to "
                         f"{format_duration(order.largest_step_back_s)} back); the replay takes file order.")
            if elapsed is not None:
                info += f" Read in {elapsed:.1f} s."
        info += (f" Ceiling (infinite cache): {format_percent(curve.infinite_token_hit_rate)} of tokens, "
                 f"{format_percent(curve.infinite_block_hit_rate)} of blocks.")
        el = by_id("trace-info")
        el.textContent = info
        el.setAttribute("data-requests", str(curve.requests))
        el.setAttribute("data-skipped", str(0 if self.trace is None else self.trace.reader.skipped_lines))
        el.setAttribute("data-out-of-order", str(0 if self.trace is None else self.trace.order.out_of_order))
        el.setAttribute("data-block-size", str(curve.block_size))
        el.setAttribute("data-ceiling", plain(curve.infinite_token_hit_rate))
        el.setAttribute("data-approximate", "true" if approximate else "false")
        self.draw_curve()
        await asyncio.sleep(0)                 # tables and the fit in a task of their own
        rows = trace_capacities(curve, kv, res.get("capacity_tokens"))
        body = by_id("trace-rows")
        body.replaceChildren()
        for row in rows:
            tr = document.createElement("tr")
            for key in ("key", "capacity_blocks", "capacity_tokens", "token_hit_rate", "block_hit_rate"):
                tr.setAttribute("data-" + key.replace("_", "-"), plain(row[key]) if "rate" in key else str(row[key]))
            tr.appendChild(cell("th", row["label"], scope="row"))
            tr.appendChild(cell("td", format_fixed(row["capacity_blocks"])))
            tr.appendChild(cell("td", format_fixed(row["capacity_tokens"])))
            tr.appendChild(cell("td", format_fixed(row["capacity_gib"], 2)))
            tr.appendChild(cell("td", format_percent(row["token_hit_rate"])))
            tr.appendChild(cell("td", format_percent(row["block_hit_rate"])))
            tr.appendChild(cell("td", "—" if row["ideal_speedup"] is None else f"{row['ideal_speedup']:.2f}x"))
            body.appendChild(tr)
        if self.trace is not None:
            self.render_fit(rows)
        else:
            by_id("fit-rows").replaceChildren()
            by_id("fit-text").textContent = "A scenario is fitted to an uploaded trace once it is replayed."
            by_id("use-workload").hidden = True
        by_id("compare-policies").disabled = self.running or self.trace is None
        by_id("explain").disabled = self.running

    def summary_view(self):
        return summary_view(self.summary, self.warmup())

    def draw_curve(self):
        if self.curve is None:
            return
        res = self.report["results"]
        draw("chart-trace-curve", trace_curve_figure(
            self.curve, str(by_id("curve-unit").value), kv_bytes_per_token=res.get("kv_bytes_per_token"),
            model_name=self.report["model"]["name"], current_capacity_tokens=res.get("capacity_tokens")))

    # -- why is it low, routing ----------------------------------------------------------------
    def gap_settings(self):
        """(capacity blocks per instance, instances, routing), or None after showing why not."""
        raw = str(by_id("gap-capacity").value).strip().replace(",", "").replace("_", "")
        if not raw.isdigit() or int(raw) < 1:
            by_id("gap-capacity").setAttribute("aria-invalid", "true")
            show_error("trace-error", f"Capacity per instance (blocks): got {raw!r}; must be a whole number of blocks >= 1")
            return None
        by_id("gap-capacity").removeAttribute("aria-invalid")
        show_error("trace-error", "")
        return int(raw), int(by_id("gap-instances").value), str(by_id("gap-routing").value)

    def explain_builtin(self):
        settings = self.gap_settings()
        if settings is None or self.summary is None:
            return
        capacity, instances, routing = settings
        try:
            gap = summary_gap(self.summary, self.warmup(), capacity, instances, routing)
            routes = summary_routing(self.summary, self.warmup(), capacity)
        except ScenarioError as err:
            show_error("trace-error", str(err))
            return
        note = ""
        if gap["capacity_blocks"] != capacity:
            note = (f"From the built-in summary, at {gap['capacity_blocks']:,} blocks per instance: the point of its "
                    f"grid nearest the {capacity:,} asked.")
        self.show_gap(gap, routes, note)

    def passes_estimate(self, instances):
        return explain_gap_passes(instances, None) + routing_passes(ROUTINGS_REPLAYED)

    def show_gap_offer(self):
        """Before a costly replay: say what it would take."""
        job = self.trace
        if job is None or job.requests_kept is None:
            by_id("explain").disabled = True
            by_id("explain-help").textContent = (
                "The gap split and the routing chart need the whole trace in memory: this file is too large "
                f"(above {KEEP_BELOW_BYTES // 2 ** 20} MB); use the CLI: kvcache-calc replay TRACE --explain.")
            return
        settings = self.gap_settings()
        instances = settings[1] if settings else 1
        seconds = self.passes_estimate(instances) * job.requests / max(self.replay_rate or 1.0, 1.0) * 1.5
        by_id("explain").disabled = self.running
        by_id("explain-help").textContent = (
            f"Replays your file {self.passes_estimate(instances)} more times: about {format_duration(max(1.0, seconds))} "
            "(estimated from the first replay). The page stays usable; Cancel stops it.")
        by_id("explain").setAttribute("data-estimate-s", f"{seconds:.2f}")

    async def explain(self, event=None):
        if self.summary is not None:
            self.explain_builtin()
            return
        if self.running or self.trace is None or self.trace.requests_kept is None:
            return
        settings = self.gap_settings()
        if settings is None:
            return
        capacity, instances, routing = settings
        requests = self.trace.requests_kept
        bs = self.curve.block_size
        warm = warmup_requests(self.warmup(), len(requests))
        steps = explain_gap_steps(requests, capacity, bs, instances, routing, 0, "engine", warm)
        job = StepsJob(steps, explain_gap_passes(instances, None) * len(requests))
        self.set_running(True, "explain")
        started = time.perf_counter()
        try:
            if not await self.drive(job, "Splitting the gap", started):
                by_id("job-status").textContent = "Cancelled."
                self.finish("cancelled")
                return
            gap = job.result.to_dict()
            job = StepsJob(routing_steps(requests, capacity, bs, ROUTINGS_REPLAYED, warm),
                           routing_passes(ROUTINGS_REPLAYED) * len(requests))
            if not await self.drive(job, "Replaying the routings", started):
                by_id("job-status").textContent = "Cancelled."
                self.finish("cancelled")
                return
        except ScenarioError as err:
            show_error("trace-error", str(err))
            self.finish("error")
            return
        gap["requested_capacity_blocks"] = capacity
        self.show_gap(gap, job.result, "Replayed on your file.")
        by_id("job-status").textContent = f"Split the gap and replayed the routings in {time.perf_counter() - started:.1f} s."
        self.finish("done")

    def show_gap(self, gap, routes, note):
        by_id("gap-note").textContent = note
        draw("chart-gap", gap_waterfall_figure(gap))
        draw("chart-reuse", reuse_time_figure(gap))
        draw("chart-routing", routing_figure(routes))
        div = by_id("chart-gap")
        for key, value in gap["overall"]["parts"].items():
            div.setAttribute("data-" + key.replace("_", "-"), plain(value))
        div.setAttribute("data-capacity-blocks", str(gap["capacity_blocks"]))
        rdiv = by_id("chart-routing")
        rdiv.setAttribute("data-rates", json.dumps(routes["token_hit_rate"]))
        body = by_id("gap-rows")
        body.replaceChildren()
        for row in gap_rows(gap):
            tr = document.createElement("tr")
            tr.appendChild(cell("th", row["label"], scope="row"))
            tr.appendChild(cell("td", format_fixed(row["requests"])))
            for key in ("no_reuse", "capacity", "policy", "routing", "hit"):
                tr.appendChild(cell("td", f"{row[key]:.1f}" + (" (clamped)" if key in row["clipped"] else "")))
            tr.appendChild(cell("td", "—" if row["speedup"] is None else f"{row['speedup']:.2f}x"))
            body.appendChild(tr)

    def render_fit(self, rows):
        fit = self.trace.fit
        curve = self.trace.curve
        # the fit's own sentences: fitted keys, values kept within the form's limits and why
        note = fit["diagnostics"].get("note") or ""
        by_id("fit-text").textContent = " ".join(
            line.rstrip(".") + "." for line in fit_report(fit) if not line.startswith("Share link")
        ) + (f" ({note}.)" if note else "")
        capacities = [r["capacity_blocks"] for r in rows if r["key"] in ("current", "p50", "p90")]
        body = by_id("fit-rows")
        body.replaceChildren()
        for gap in fit_gaps(fit, curve, sorted(set(capacities))):
            tr = document.createElement("tr")
            tr.appendChild(cell("th", format_fixed(gap["capacity_tokens"]), scope="row"))
            if "error" in gap:
                td = cell("td", "The model cannot run the fitted scenario here: " + gap["error"]["message"])
                td.setAttribute("colspan", "3")
                tr.appendChild(td)
            else:
                tr.setAttribute("data-gap", plain(gap["gap"]))
                tr.appendChild(cell("td", format_percent(gap["analytic_token_hit_rate"])))
                tr.appendChild(cell("td", format_percent(gap["replay_token_hit_rate"])))
                tr.appendChild(cell("td", format_points(gap["gap"])))
            body.appendChild(tr)
        link = by_id("use-workload")
        link.setAttribute("href", "./index.html#" + fitted_fragment(self.scenario, fit))
        link.hidden = False

    async def compare_policies(self, event=None):
        if self.running or self.trace is None:
            return
        show_error("trace-error", "")
        raw = str(by_id("policy-capacity").value).strip().replace(",", "").replace("_", "")
        if not raw.isdigit():
            show_error("trace-error", f"Cache capacity (blocks): got {raw!r}; must be a whole number of blocks >= 0")
            by_id("policy-capacity").setAttribute("aria-invalid", "true")
            return
        by_id("policy-capacity").removeAttribute("aria-invalid")
        capacity = int(raw)
        file = self.trace_file
        curve = self.trace.curve
        job = PolicyJob(capacity, curve.block_size, int(file.size), format=self.trace.format,
                        skip_bad_lines=self.trace_skip)
        self.set_running(True, "policies")
        started = time.perf_counter()
        try:
            finished = await self.read_into(job, file, "Replaying FIFO, LFU and Belady", started)
        except ScenarioError as err:
            show_error("trace-error", f"{file.name}: {err}")
            self.finish("error")
            return
        if not finished:
            by_id("job-status").textContent = "Policy comparison cancelled."
            self.finish("cancelled")
            return
        results = {"lru": curve.at([capacity]), **job.results}
        await asyncio.sleep(0)
        draw("chart-trace-policies", trace_policy_figure(results))
        by_id("job-status").textContent = (f"Compared the policies at {capacity:,} blocks in "
                                           f"{time.perf_counter() - started:.1f} s.")
        div = by_id("chart-trace-policies")
        for policy, result in results.items():
            div.setAttribute(f"data-{policy}", plain(result.token_hit_rate[0]))
        self.finish("done")


# ---------------------------------------------------------------------------- wiring

def forced_sample_rate():
    """The rate of ``?sample=RATE`` in the address (every upload then sampled), or None."""
    query = str(window.location.search or "")
    if "sample=" not in query:
        return None
    raw = query.split("sample=", 1)[1].split("&", 1)[0]
    try:
        return check_rate(float(raw))
    except (ValueError, ScenarioError):
        return None


def batch_from_js(data):
    """A worker batch (typed arrays and arrays) as Python types."""
    return Batch(list(data.raw.to_py()), list(data.rawLine.to_py()), list(data.rawAt.to_py()),
                 array("d", data.meta.to_bytes()), array("d", data.ids.to_bytes()), int(data.requests),
                 int(data.blocks), int(data.tokens), int(data.bytesIn),
                 None if missing(data.format) else str(data.format), list(data.rawParsed.to_py()))


def on_cancel(lab):
    def handler(event):
        if lab.running:
            lab.cancel = True
            by_id("job-status").textContent = "Cancelling…"
    return handler


def on_go(lab):
    def handler(event):
        lab.go = True
    return handler


def replay_first(lab, files):
    """Replay the first of a FileList (from the file input or a drop), if any."""
    if missing(files) or not files.length:
        return None
    return lab.replay_file(files.item(0))


def on_file(lab):
    def handler(event):
        files = event.target.files
        task = replay_first(lab, files)
        event.target.value = ""        # the same file chosen again is a new change
        return task
    return handler


def on_drop(lab):
    def handler(event):
        event.preventDefault()
        by_id("drop-zone").classList.remove("over")
        return replay_first(lab, None if missing(event.dataTransfer) else event.dataTransfer.files)
    return handler


def on_drag(over):
    def handler(event):
        event.preventDefault()
        by_id("drop-zone").classList.toggle("over", over)
    return handler


def start():
    lab = Lab()
    lab.load_scenario()
    draw("chart-compare", placeholder("Press “Compare policies and routings”", ("bar", "scatter")))
    lab.clear_trace()
    draw("chart-trace-policies", placeholder("Replay a trace, then compare the policies", ("bar",)))
    PAGE.listen("simulate", "click", lambda e: lab.simulate())
    PAGE.listen("compare", "click", lambda e: lab.compare())
    PAGE.listen("cancel", "click", on_cancel(lab))
    PAGE.listen("job-go", "click", on_go(lab))
    PAGE.listen("trace-file", "change", on_file(lab))
    PAGE.listen("drop-zone", "dragover", on_drag(True))
    PAGE.listen("drop-zone", "dragleave", on_drag(False))
    PAGE.listen("drop-zone", "drop", on_drop(lab))
    PAGE.listen("curve-unit", "change", lambda e: lab.draw_curve())
    PAGE.listen("compare-policies", "click", lambda e: lab.compare_policies())
    PAGE.listen("trace-choice", "change", lambda e: lab.choose_builtin(str(e.target.value)))
    PAGE.listen("warmup", "change", lambda e: lab.change_warmup())
    PAGE.listen("explain", "click", lambda e: lab.explain())
    for control in ("gap-capacity", "gap-instances", "gap-routing"):
        PAGE.listen(control, "change", lambda e: lab.explain_builtin() if lab.summary is not None
                    else lab.show_gap_offer())
    window.addEventListener("hashchange", create_proxy(PAGE.guarded(
        lambda e: None if lab.running else lab.load_scenario())))
    lab.set_running(False)
    chosen = str(window.location.search or "")
    if "trace=" in chosen:
        name = chosen.split("trace=", 1)[1].split("&", 1)[0]
        by_id("trace-choice").value = name
        PAGE.start_task(lab.choose_builtin(name))
    ROOT.setAttribute("data-job", "idle")
    ROOT.setAttribute("data-state", "ready")


try:
    from kvcache_calculator.errors import ScenarioError
    from kvcache_calculator.present.figures import unit_for
    from kvcache_calculator.present.jobs import PolicyJob, SimulationJob, SimulationPace, StepsJob, TraceJob, run_for
    from kvcache_calculator.present.upload_sample import Batch, SampledUploadJob
    from kvcache_calculator.traces.sampling import check_rate
    from kvcache_calculator.present.real_traffic import (routing_passes, routing_steps, summary_curve, summary_gap,
                                                         summary_routing, summary_view)
    from kvcache_calculator.traces.gap import explain_gap_passes, explain_gap_steps
    from kvcache_calculator.traces.warmup import warmup_requests
    from kvcache_calculator.present.lab_figures import (comparison_figure, gap_waterfall_figure, reuse_time_figure,
                                                        routing_figure, trace_curve_figure, trace_policy_figure,
                                                        with_simulated_points)
    from kvcache_calculator.present.lab_tables import (fit_gaps, fitted_fragment, gap_rows, simulation_rows,
                                                       trace_capacities)
    from kvcache_calculator.traces.fit import fit_report
    from kvcache_calculator.present.lab_tasks import analytic_rates, comparison_tasks, memory_tasks
    from kvcache_calculator.present.report import evaluate
    from kvcache_calculator.scenario import Scenario, decode_fragment
    from kvcache_calculator.traces.replay import capacity_blocks_from_tokens
    from kvcache_calculator.units import format_duration, format_fixed, format_percent, format_points

    start()
except Exception as boot_error:  # noqa: BLE001 (shown as a sentence, logged in full)
    PAGE.report_unexpected(boot_error)
    by_id("load-text").textContent = "The lab could not start."
    ROOT.setAttribute("data-state", "error")
