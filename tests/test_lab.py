"""The lab page's core: resumable jobs (present.jobs), the line feed (traces.lines), the task
lists (present.lab_tasks), figures (present.lab_figures) and tables (present.lab_tables).

Every job is checked against the core's one-call functions on the same input (equal
results, not approximately equal): chunking must not change a single hit.
"""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present import figures, jobs, lab_figures, lab_tables, lab_tasks
from kvcache_calculator.present.report import results
from kvcache_calculator.traces.lines import MAX_LINE_CHARS, LineFeed
from kvcache_calculator.traces.replay import (BeladyReplay, BeladySteps, last_block_tokens, replay,
                                              replay_lru_curve)
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.sim.simulate import simulate
from kvcache_calculator.traces.readers import (
    analytic_token_hit_rate,
    compare_fit_to_replay,
    fit_scenario,
    read_trace,
)
from kvcache_calculator.units import format_percent


def make_trace(seed: int, conversations: int = 40, bailian: bool = False, block: int = 16) -> str:
    """A small multi-turn trace: shared 2-block system prompt, growing histories."""
    rng = random.Random(seed)
    lines = []
    next_id = 1000
    t = 0.0
    chat = 0
    for c in range(conversations):
        history = [1, 2]
        parent = -1
        t += rng.expovariate(1.0)
        ts = t
        for turn in range(1, rng.randint(1, 5) + 1):
            new = rng.randint(1, 6)
            history = history + list(range(next_id, next_id + new))
            next_id += new
            tokens = len(history) * block - rng.randint(0, block - 1)
            rec = {"timestamp": ts if bailian else int(ts * 1000), "input_length": tokens,
                   "output_length": rng.randint(1, 40), "hash_ids": list(history)}
            if bailian:
                rec.update(chat_id=chat, parent_chat_id=parent, turn=turn, type="text")
                parent = chat
                chat += 1
            lines.append((ts, json.dumps(rec)))
            ts += rng.expovariate(1 / 20)
    lines.sort(key=lambda x: x[0])
    return "\n".join(text for _, text in lines) + "\n"


class FakeClock:
    """A clock that advances by ``cost`` seconds per unit of work done by FakeJob."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeJob:
    def __init__(self, clock, total_units, cost_per_unit):
        self.clock = clock
        self.left = total_units
        self.cost = cost_per_unit
        self.units = 1
        self.steps = []

    @property
    def done(self):
        return self.left <= 0

    def step(self, units):
        n = min(units, self.left)
        self.left -= n
        self.clock.now += n * self.cost
        self.steps.append(n)
        return self.done


def feed_in_slices(job, data: bytes, cuts: list[int]):
    """Add ``data`` to a lines job in slices ending at ``cuts``, stepping between them."""
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        if cut <= start:
            continue
        job.add_bytes(data[start:cut])
        job.step(7)
        start = cut
    job.close_input()
    while not job.done:
        job.step(50)
    return job


# ---------------------------------------------------------------------------- run_for

def test_run_for_stops_after_the_budget_and_adapts_the_step():
    clock = FakeClock()
    job = FakeJob(clock, total_units=100_000, cost_per_unit=1e-5)   # 10 us per unit
    assert jobs.run_for(job, 0.04, clock) is False
    assert 0.04 <= clock.now <= 0.04 + 0.04 / 4 + 1e-9          # overshoot: at most one step
    assert max(job.steps) * 1e-5 <= 0.04 / 4 * 2                   # no step near the budget
    assert job.units > 1
    while not jobs.run_for(job, 0.04, clock):
        pass
    assert job.left == 0


def test_run_for_halves_the_step_after_a_slow_one():
    clock = FakeClock()
    job = FakeJob(clock, total_units=10_000, cost_per_unit=0.001)
    job.units = 256                                                 # 256 ms: far too long
    jobs.run_for(job, 0.04, clock)
    assert job.units == 128
    for _ in range(6):
        jobs.run_for(job, 0.04, clock)
    assert job.units * 0.001 <= 0.04 / 4


# ---------------------------------------------------------------------------- LineFeed

@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_line_feed_splits_like_the_whole_text(cuts):
    text = 'é{"a": 1}\n\n{"b": "ünï€😀"}\r\n' * 12 + "last line without newline"
    data = text.encode("utf-8")
    feed = LineFeed()
    out = []
    start = 0
    for cut in sorted(set(cuts)) + [len(data)]:
        out += feed.feed(data[start:cut])
        start = max(start, cut)
    out += feed.close()
    assert out == text.split("\n")
    assert feed.lines_out == len(out)


def test_line_feed_drops_a_byte_order_mark_and_accepts_a_final_newline():
    feed = LineFeed()
    assert feed.feed(b"\xef\xbb\xbfone\ntwo\n") == ["one", "two"]
    assert feed.close() == []


@pytest.mark.parametrize("data,offset", [(b'{"a": 1}\n\x00\x01\x02', 9), (b"ok\n\xff\xfe rest", 3),
                                         (b"\x89PNG\r\n\x1a\n", 0)])
def test_line_feed_refuses_binary_data_at_once(data, offset):
    feed = LineFeed()
    with pytest.raises(ScenarioError, match=f"byte {offset}.*binary file"):
        feed.feed(data)


def test_line_feed_refuses_a_truncated_character_at_the_end_and_an_empty_file():
    feed = LineFeed()
    feed.feed("x\né".encode()[:-1])
    with pytest.raises(ScenarioError, match="binary"):
        feed.close()
    with pytest.raises(ScenarioError, match="empty file"):
        LineFeed().close()


def test_line_feed_refuses_an_endless_line():
    feed = LineFeed()
    chunk = b"a" * 2 ** 20
    with pytest.raises(ScenarioError, match="not a JSON-lines trace"):
        for _ in range(MAX_LINE_CHARS // len(chunk) + 2):
            feed.feed(chunk)


# ---------------------------------------------------------------------------- TraceJob

@pytest.mark.parametrize("bailian", [False, True])
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(0, 20_000), max_size=8))
def test_trace_job_equals_the_one_call_replay_and_fit(bailian, seed, cuts):
    text = make_trace(seed, bailian=bailian)
    data = text.encode()
    job = feed_in_slices(jobs.TraceJob(len(data)), data, cuts)
    requests = list(read_trace(text.splitlines()))
    block = 16 if bailian else 512
    assert job.format == ("bailian" if bailian else "mooncake")
    assert job.curve == replay_lru_curve(requests, block_size=block)
    assert job.fit == fit_scenario(requests, block)
    assert job.progress == 1.0 and job.requests == len(requests)


def test_trace_job_renumbers_and_fits_in_small_steps_with_the_same_results():
    """Over 2**16 block references: the curve's renumbering runs in slices between the job's
    steps (requests waiting meanwhile), and the fit's result in steps of its own; both equal
    the one-call replay and fit. Each kind of work keeps its own step size."""
    rng = random.Random(5)
    lines = []
    for i in range(3000):
        ids = [0, 1] + [2 + 60 * i + k for k in range(rng.randint(20, 60))]
        lines.append(json.dumps({"timestamp": i * 100, "input_length": len(ids) * 512 - 7,
                                 "output_length": 9, "hash_ids": ids}))
    text = "\n".join(lines) + "\n"
    data = text.encode()
    job = jobs.TraceJob(len(data))
    job.add_bytes(data)
    job.close_input()
    phases = []
    while not job.done:
        phases.append(job._phase())
        job.step(min(job.units, 40))
        job.units = min(job.units * 2, 40)
    requests = list(read_trace(text.splitlines()))
    assert {"lines", "renumber", "waiting", "fit"} <= set(phases)
    assert phases.count("fit") > 3                     # the fit's result took several steps
    assert job.curve == replay_lru_curve(requests, block_size=512)
    assert job.fit == fit_scenario(requests, 512)


def test_trace_job_names_the_bad_line_or_skips_it():
    lines = make_trace(3).splitlines()
    lines[4] = '{"timestamp": 1, "input_length": 5'
    lines[9] = '{"timestamp": 1, "input_length": 5, "output_length": 1, "hash_ids": "x"}'
    data = ("\n".join(lines) + "\n").encode()
    with pytest.raises(ScenarioError, match="^line 5: trace: .*not valid JSON"):
        feed_in_slices(jobs.TraceJob(len(data)), data, [100, 2000])
    job = feed_in_slices(jobs.TraceJob(len(data), skip_bad_lines=True), data, [100])
    assert job.reader.skipped_lines == 2 and job.requests == len(lines) - 2
    assert job.reader.first_error.line == 5


def test_trace_job_refuses_files_without_a_request():
    with pytest.raises(ScenarioError, match="empty file"):
        feed_in_slices(jobs.TraceJob(0), b"", [])
    with pytest.raises(ScenarioError, match="no valid request"):
        feed_in_slices(jobs.TraceJob(9, skip_bad_lines=True), b"nonsense\n", [])
    with pytest.raises(ScenarioError, match="binary"):
        jobs.TraceJob(4).add_bytes(b"\x00\x00\x00\x00")


# ---------------------------------------------------------------------------- PolicyJob, Belady

@pytest.mark.parametrize("semantics", ["engine", "independent"])
@pytest.mark.parametrize("capacity", [0, 3, 40, 10_000])
def test_belady_steps_equal_belady_replay(semantics, capacity):
    requests = list(read_trace(make_trace(11, conversations=60).splitlines()))
    stored = [(r.hash_ids, last_block_tokens(r.input_length, len(r.hash_ids), 512)) for r in requests]
    steps = BeladySteps(stored, capacity, 512, semantics)
    n = 0
    while not steps.step(7):
        n += 1
        assert 0 <= steps.progress < 1
    reference = BeladyReplay([capacity], 512, semantics)
    reference.feed(requests)
    assert steps.result() == reference.result()
    assert n > 2


@pytest.mark.parametrize("capacity", [5, 60])
def test_policy_job_equals_replay_for_each_policy(capacity):
    text = make_trace(5, conversations=50)
    data = text.encode()
    job = feed_in_slices(jobs.PolicyJob(capacity, 512, len(data)), data, [333, 5000])
    requests = list(read_trace(text.splitlines()))
    for policy in ("fifo", "lfu", "belady"):
        assert job.results[policy] == replay(requests, policy, [capacity], 512), policy


def test_policy_job_rejects_a_bad_capacity():
    with pytest.raises(ScenarioError, match="capacity_blocks"):
        jobs.PolicyJob(-1, 512)


# ---------------------------------------------------------------------------- simulation

SMALL = {"arrival_rate": 0.5, "input_tokens": 100, "output_tokens": 50, "system_prompt_tokens": 200,
         "think_time_s": 20, "turns": 3}


def run_to_end(job, units=37):
    while not job.step(units):
        assert 0 <= job.progress < 1
    return job


def test_simulation_job_equals_simulate_for_every_task():
    s = Scenario.from_dict({**SMALL, "instances": 2})
    tasks = lab_tasks.memory_tasks(s, conversations=120, seed=4, points=3)
    tasks += lab_tasks.comparison_tasks(s, conversations=60, seed=4)
    job = run_to_end(jobs.SimulationJob(tasks))
    assert job.progress == 1.0 and not job.errors
    for t in tasks:
        assert job.results[t.name] == simulate(t.scenario, capacity_tokens=t.capacity_tokens,
                                               conversations=t.conversations, seed=t.seed), t.name
    # warm-up requests are simulated too, but not measured
    assert job.requests > sum(r.requests for r in job.results.values())


def test_memory_tasks_follow_the_analytic_curve():
    s = Scenario.from_dict(SMALL)
    tasks = lab_tasks.memory_tasks(s, conversations=100, seed=1, points=4)
    assert [t.group for t in tasks] == ["main"] + ["memory"] * 4
    curve = sweeps.hit_vs_memory(prepare(resolve(s)))
    for t in tasks[1:]:
        i = curve.memory_gib.index(t.x)
        assert t.capacity_tokens == curve.capacity_tokens[i] > 0
    # evenly spaced from the first memory size with room for a cache (the weights fill the
    # smallest ones) to the largest
    usable = [i for i, c in enumerate(curve.capacity_tokens) if c > 0]
    assert curve.capacity_tokens[0] == 0 and usable
    assert tasks[1].x == curve.memory_gib[usable[0]] and tasks[-1].x == curve.memory_gib[usable[-1]]
    assert tasks[0].x == curve.current_memory_gib and tasks[0].capacity_tokens is None
    assert len({t.seed for t in tasks}) == len(tasks)
    # the points sit on the calculator's chart: the same memory sizes and capacities
    model = figures.hit_vs_memory(prepare(resolve(s)))["data"][0]
    for t in tasks[1:]:
        i = model["x"].index(round(t.x, 4))
        assert model["customdata"][i] == t.capacity_tokens


def test_analytic_rates_are_the_lru_model_for_lru_and_the_routings():
    s = Scenario.from_dict({**SMALL, "instances": 3, "policy": "fifo"})
    tasks = lab_tasks.comparison_tasks(s, conversations=10, seed=0)
    rates = lab_tasks.analytic_rates(tasks)
    assert set(rates) == {"policy-lru"} | {t.name for t in tasks if t.group == "routing"}
    assert rates["policy-lru"] == analyze(s.replace(policy="lru")).token_hit_rate
    assert rates["routing-random"] == analyze(s.replace(policy="lru", routing="random")).token_hit_rate
    assert rates["routing-random"] < rates["routing-session"]


def test_comparison_tasks_add_routings_only_with_several_instances():
    one = lab_tasks.comparison_tasks(Scenario.from_dict(SMALL), conversations=10, seed=0)
    assert [t.scenario.policy for t in one] == ["lru", "fifo", "lfu"]
    four = lab_tasks.comparison_tasks(Scenario.from_dict({**SMALL, "instances": 4}), conversations=10, seed=0)
    assert [t.scenario.routing for t in four if t.group == "routing"] == \
        ["session", "round_robin", "random", "least_loaded"]


def test_simulation_job_reports_a_scenario_that_cannot_run():
    s = Scenario.from_dict({**SMALL, "model": "llama-3.1-70b", "gpu": "l4"})   # does not fit
    job = run_to_end(jobs.SimulationJob([jobs.SimTask("main", "main", "x", s, None, 10, 0)]))
    assert "main" in job.errors and "main" not in job.results


# ---------------------------------------------------------------------------- figures

def test_with_simulated_points_adds_error_bars_at_the_task_positions():
    s = Scenario.from_dict(SMALL)
    fig = figures.hit_vs_memory(prepare(resolve(s)))
    tasks = lab_tasks.memory_tasks(s, conversations=80, seed=2, points=2)
    job = run_to_end(jobs.SimulationJob(tasks))
    out = lab_figures.with_simulated_points(fig, tasks, job.results)
    assert out["data"][:-1] == fig["data"]
    sim = out["data"][-1]
    assert sorted(sim["x"]) == sim["x"] and len(sim["x"]) == 3
    for x, y, lo, hi in zip(sim["x"], sim["y"], sim["error_y"]["arrayminus"], sim["error_y"]["array"]):
        r = next(job.results[t.name] for t in tasks if t.x == x)
        assert y == pytest.approx(100 * r.token_hit_rate, abs=1e-3)
        assert y - lo == pytest.approx(100 * r.token_hit_rate_ci[0], abs=1e-3)
        assert y + hi == pytest.approx(100 * r.token_hit_rate_ci[1], abs=1e-3)


def test_trace_curve_figure_and_capacities():
    text = make_trace(9, conversations=80)
    requests = list(read_trace(text.splitlines()))
    curve = replay_lru_curve(requests, block_size=16)   # the trace's own blocks
    rows = lab_tables.trace_capacities(curve, 131072.0, 16 * 30)
    by_key = {r["key"]: r for r in rows}
    for pct in (50, 90, 99):
        assert by_key[f"p{pct}"]["capacity_blocks"] == curve.capacity_for_fraction(pct / 100, "token")
    assert by_key["p100"]["capacity_blocks"] == curve.capacity_for_ceiling
    assert by_key["current"]["capacity_blocks"] == 30
    assert by_key["current"]["token_hit_rate"] == curve.token_hit_rate(30)
    assert by_key["current"]["capacity_gib"] == pytest.approx(30 * 16 * 131072 / 2 ** 30)
    blocks = lab_figures.trace_curve_figure(curve, "blocks", kv_bytes_per_token=131072.0, current_capacity_tokens=16 * 30)
    gib = lab_figures.trace_curve_figure(curve, "gib", kv_bytes_per_token=131072.0, current_capacity_tokens=16 * 30)
    tokens = lab_figures.trace_curve_figure(curve, "tokens")
    assert blocks["data"][0]["y"] == gib["data"][0]["y"] == tokens["data"][0]["y"]
    for b, g, t in zip(blocks["data"][0]["x"], gib["data"][0]["x"], tokens["data"][0]["x"]):
        assert t == b * 16 and g == pytest.approx(b * 16 * 131072 / 2 ** 30, rel=1e-4)
    names = [d["name"] for d in blocks["data"]]
    assert "Current configuration" in names and any(n.startswith("Ceiling") for n in names)
    assert all(d["type"] in ("scatter", "bar") for d in blocks["data"])
    with pytest.raises(ScenarioError, match="GiB needs"):
        lab_figures.trace_curve_figure(curve, "gib")


def test_fitted_fragment_keeps_the_configuration_and_takes_the_workload():
    text = make_trace(4, bailian=True)
    fit = fit_scenario(read_trace(text.splitlines()), 16)
    s = Scenario.from_dict({"model": "qwen3-32b", "gpu": "h200", "arrival_rate": 9})
    out = Scenario.from_fragment(lab_tables.fitted_fragment(s, fit))
    assert out.model == "qwen3-32b" and out.gpu == "h200"
    assert out.arrival_rate == pytest.approx(fit["arrival_rate"])
    assert out.input_tokens == fit["input_tokens"] and out.block_size == 16


def test_fit_gaps_equal_compare_fit_to_replay():
    text = make_trace(8, bailian=True)
    requests = list(read_trace(text.splitlines()))
    fit = fit_scenario(requests, 16)
    curve = replay_lru_curve(requests, block_size=16)
    gaps = lab_tables.fit_gaps(fit, curve, [0, 10, 100])
    assert [g["capacity_blocks"] for g in gaps] == [10, 100]
    for g in gaps:
        ref = compare_fit_to_replay(fit, curve.token_hit_rate(g["capacity_blocks"]),
                                    analytic_token_hit_rate, capacity_tokens=g["capacity_blocks"] * 16)
        assert {k: g[k] for k in ref} == ref


def test_fit_gaps_give_an_error_as_data_where_the_model_cannot_run():
    text = make_trace(8, bailian=True)
    requests = list(read_trace(text.splitlines()))
    fit = {**fit_scenario(requests, 16), "turns": -1.0}
    curve = replay_lru_curve(requests, block_size=16)
    (gap,) = lab_tables.fit_gaps(fit, curve, [10])
    assert gap["capacity_blocks"] == 10 and gap["capacity_tokens"] == 160
    assert gap["error"]["key"] == "turns" and gap["error"]["message"].startswith("turns: got -1")


# ---------------------------------------------------------------------------- the simulation table

def test_simulation_rows_put_the_simulation_beside_the_model():
    s = Scenario.from_dict(SMALL)
    analytic = results(s)
    empty = lab_tables.simulation_rows(analytic, None)
    assert [r["key"] for r in empty] == [k for k, _ in lab_tables.SIMULATION_ROWS]
    assert all(r["simulated"] is None and r["simulated_text"] == "—" and r["difference_text"] is None
               for r in empty)
    assert empty[0]["analytic_text"] == format_percent(analytic["token_hit_rate"])
    sim = simulate(s, conversations=200, seed=3)
    rows = {r["key"]: r for r in lab_tables.simulation_rows(analytic, sim)}
    token = rows["token_hit_rate"]
    lo, hi = sim.token_hit_rate_ci
    a = analytic["token_hit_rate"]
    assert token["simulated"] == sim.token_hit_rate and token["interval"] == [lo, hi]
    assert token["simulated_text"] == (f"{format_percent(sim.token_hit_rate)} "
                                       f"({100 * lo:.1f}–{100 * hi:.1f})")
    assert token["inside"] == (lo <= a <= hi)
    assert token["difference_text"].startswith(f"{100 * (a - sim.token_hit_rate):+.1f} points")
    assert ("inside the interval" in token["difference_text"]) == token["inside"]
    fifo = simulate(s.replace(policy="fifo"), conversations=100, seed=3)
    t_row = {r["key"]: r for r in lab_tables.simulation_rows(analytic, fifo)}["characteristic_time_s"]
    assert t_row["simulated_text"] == "not measured (LRU only)" and t_row["difference_text"] is None
    offload = Scenario.from_dict({**SMALL, "offload_gib": 1})
    keys = [r["key"] for r in lab_tables.simulation_rows(results(offload), None)]
    assert keys[-2:] == ["gpu_token_hit_rate", "offload_token_hit_rate"]
