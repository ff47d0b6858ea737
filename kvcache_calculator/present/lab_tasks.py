"""What the lab simulates: task lists for :class:`~kvcache_calculator.present.jobs.SimulationJob`
and the analytic values shown beside their results.

- :func:`memory_tasks`: the scenario itself plus points along the analytic hit-rate-against-
  memory curve, each at the capacity the curve gives for its memory (the curve is computed
  here, from the scenario: capacities are data, never read back out of a figure);
- :func:`comparison_tasks`: the eviction policies and, with several instances, the routings;
- :func:`analytic_rates`: the analytic LRU model's token hit rate for the tasks it describes.
"""

from __future__ import annotations

from typing import Sequence

from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import SimTask
from kvcache_calculator.scenario import ROUTINGS, Scenario
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.units import format_count

__all__ = ["memory_tasks", "comparison_tasks", "analytic_rates"]


def memory_tasks(scenario: Scenario, *, conversations: int, seed: int, points: int = 4) -> list:
    """The main simulation plus ``points`` simulations along the analytic hit-rate-against-
    memory curve (:func:`kvcache_calculator.analytic.sweeps.hit_vs_memory`, the curve the
    calculator draws): each at an evenly spaced memory size of the curve with the capacity
    (tokens per instance) the curve gives for it, skipping memory sizes with an empty cache.
    ``x`` is the GPU memory per GPU (GiB) of each task, the main one's included."""
    curve = sweeps.hit_vs_memory(prepare(resolve(scenario)))
    tasks = [SimTask("main", "main", "this scenario", scenario, None, conversations, seed,
                     x=curve.current_memory_gib)]
    usable = [i for i, c in enumerate(curve.capacity_tokens) if c > 0]
    if not usable or points < 1:
        return tasks
    picks = sorted({usable[round(k * (len(usable) - 1) / max(1, points - 1))]
                    for k in range(points)}) if points > 1 else [usable[len(usable) // 2]]
    for n, i in enumerate(picks):
        memory_gib = curve.memory_gib[i]
        tasks.append(SimTask(f"memory{n}", "memory", f"{format_count(memory_gib)} GiB per GPU", scenario,
                             curve.capacity_tokens[i], conversations, seed + 1 + n, x=memory_gib))
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


def analytic_rates(tasks: Sequence[SimTask]) -> dict:
    """Task name -> the analytic model's token hit rate (0-1) for the tasks it describes: the
    LRU policy task and every routing task (at LRU: the model describes LRU only); None for a
    scenario the model cannot evaluate. For :func:`~kvcache_calculator.present.lab_figures.comparison_figure`."""
    out = {}
    for task in tasks:
        if task.group == "routing" or task.name == "policy-lru":
            try:
                out[task.name] = analyze(task.scenario.replace(policy="lru")).token_hit_rate
            except ScenarioError:
                out[task.name] = None
    return out
