"""The lab's simulation jobs (issue 12, defect 9): the work estimate, timed slices of each kind
of run (``SimulationJob.focus``, ``probes``), progress that never goes down, and the time left
(``SimulationPace``, driven here by a fake clock). Deterministic: seeds fixed, no wall clock.
"""

from __future__ import annotations

import pytest

from kvcache_calculator.cli.simulate import main as simulate_main
from kvcache_calculator.present import jobs, lab_tasks
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.simulate import Simulation, simulate

SMALL = {"arrival_rate": 0.5, "input_tokens": 100, "output_tokens": 50, "system_prompt_tokens": 200,
         "think_time_s": 20, "turns": 3}


def comparison(conversations=60, seed=4):
    s = Scenario.from_dict({**SMALL, "instances": 2})
    return lab_tasks.comparison_tasks(s, conversations=conversations, seed=seed)


@pytest.mark.parametrize("extra", [{}, {"turns_dist": "fixed"}, {"policy": "fifo", "instances": 3,
                                                                 "routing": "random"}])
def test_expected_requests_is_close_to_what_runs(extra):
    """Within 25 % of the requests actually simulated (seeds 1-3), warm-up and tail included."""
    s = Scenario.from_dict({**SMALL, **extra})
    for seed in (1, 2, 3):
        task = jobs.SimTask("main", "main", "x", s, None, 400, seed)
        sim = Simulation(s, conversations=400, seed=seed)
        sim.run()
        assert task.expected_requests() == pytest.approx(sim.requests_done, rel=0.25)


def test_probes_are_the_first_task_of_each_kind():
    tasks = comparison()
    job = jobs.SimulationJob(tasks)
    kinds = [tasks[i].kind for i in job.probes()]
    assert kinds == ["segments", "fifo", "lfu"]
    assert job.probes() == sorted(job.probes())


def test_slices_out_of_order_give_the_same_results_and_monotone_progress():
    tasks = comparison()
    job = jobs.SimulationJob(tasks)
    seen = [job.progress]
    for index in reversed(job.probes()):          # a first slice of each kind, last kind first
        job.focus = index
        for _ in range(3):
            job.step(25)
            seen.append(job.progress)
        assert 0 < job.work_done(index) <= job.cost(index)
    job.focus = None
    while not job.step(41):
        seen.append(job.progress)
    seen.append(job.progress)
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen[-2] < 1.0
    assert not job.errors
    for t in tasks:
        assert job.results[t.name] == simulate(t.scenario, capacity_tokens=t.capacity_tokens,
                                               conversations=t.conversations, seed=t.seed), t.name


def test_a_focused_task_that_ends_hands_back_to_the_order():
    tasks = comparison(conversations=20)
    job = jobs.SimulationJob(tasks)
    last = len(tasks) - 1
    job.focus = last
    while job.running_index == last:
        job.step(1000)
    assert job.finished(last) and job.running_index == 0
    while not job.step(1000):
        pass
    assert set(job.results) == {t.name for t in tasks}


def test_pace_estimates_the_time_left_from_timed_slices():
    """A fake clock: every cost unit of a segment task takes 1 ms, of a block task 10 ms."""
    tasks = comparison(conversations=40)
    job = jobs.SimulationJob(tasks)
    pace = jobs.SimulationPace(job, window_s=50.0)
    per_unit = {"segments": 0.001, "fifo": 0.01, "lfu": 0.01}

    def turn(units):
        index = job.running_index
        before = job.progress
        job.step(units)
        done = (job.progress - before) * job.total_cost
        pace.record(index, done * per_unit[tasks[index].kind], done)

    assert pace.seconds_left() is None                    # nothing timed yet
    for index in job.probes():
        job.focus = index
        turn(10)
        if index == job.probes()[0]:
            assert pace.seconds_left() is None            # the block kinds are not timed yet
    job.focus = None
    # timed on first slices only: the block tasks count FULL_CACHE_SLOWDOWN times their pace
    exact = sum(job.work_left(i) * per_unit[t.kind] for i, t in enumerate(tasks))
    first = pace.seconds_left()
    assert exact < first <= exact * max(jobs.FULL_CACHE_SLOWDOWN.values())
    lefts = []
    while not job.done:
        turn(30)
        exact = sum(job.work_left(i) * per_unit[t.kind] for i, t in enumerate(tasks))
        lefts.append((pace.seconds_left(), exact))
    # once a whole task of each kind is timed, the estimate is the exact time left of this clock
    for t in tasks:
        assert pace.pace(t.kind) == pytest.approx(per_unit[t.kind])
    assert lefts[-2][0] == pytest.approx(lefts[-2][1])
    assert lefts[-1] == (0.0, 0.0)


def test_cli_simulate_says_1_instance(capsys):
    assert simulate_main(["arrival_rate=0.5", "think_time_s=20", "turns=3", "instances=1",
                          "--conversations", "20", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 instance," in out and "instance(s)" not in out
    assert simulate_main(["arrival_rate=0.5", "think_time_s=20", "turns=3", "instances=2",
                          "--conversations", "20", "--seed", "1"]) == 0
    assert "2 instances," in capsys.readouterr().out
