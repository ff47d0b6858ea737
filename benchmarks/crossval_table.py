"""Cross-validation of the analytic LRU model against the simulator over a seeded grid.

Run from the project root: ``python benchmarks/crossval_table.py`` prints a markdown table
of the agreement (mean and worst absolute error of token hit rate, in percentage points)
per regime, then the worst scenarios. ``--details`` prints every scenario. The grid and the
regimes are defined here once; ``tests/test_crossval.py`` asserts on the same grid.

The grid (seed 2026): 64 LRU scenarios cycling through the four routings, 1/2/4/8
instances, geometric/fixed turns and exponential/fixed think times, with cache sizes from
"almost nothing fits" (two prompts) through capacities at which the model predicts 15 % to
92 % of the infinite-cache ceiling to "everything fits"; plus 8 scenarios with an offload
tier; then 32 with shared documents, system prompts of Zipf popularity and lognormal think
times, and 9 with exponential message and answer lengths (``length_dist``, blocks of 16-512
tokens, caches of at least 24 prompts). Token counts, turns, think times, system prompts and
block sizes are drawn from small menus. Every simulation measures about 150,000 requests after five mean lifetimes of warm-up;
one whose 95 % half-width of the token hit rate exceeds the 1-point tolerance (:data:`NOISE_PT`)
is run again, same seed, ``(half-width / 0.5 pt)^2`` times longer (at most 10 times), so
that noise alone cannot put a case past the tolerance (case #72, lognormal gaps under session
routing, had a half-width of 1.83 points at 150,000 requests; over 20 seeds its error was
+0.07 +- 0.20 pt, and -0.07 +- 0.11 at 600,000: noise, not a model bias). A case whose error
exceeds the tolerance is also run 10 times longer before it is judged: a short run's
batch-means interval can be too narrow where running requests hold half the pool (case #68,
with an offload tier, read +2.77 +- 0.82 pt at 150,000 requests and +0.33 +- 0.90 at 1,500,000).
Both sides model the KV held by running requests (the model subtracts it from the cache, the
simulator pins each request's blocks for its service time), with the default service times.

The in-flight grid (:func:`in_flight_grid`, 16 scenarios) is where running requests hold a
large share of a small pool: 5 or 10 requests/s per instance, 300- or 600-token outputs, pools
sized so that the model's in-flight KV is 25 % or 50 % of them, session routing on one
instance or random routing over two; 250,000 measured requests each. It is run against the model with and without its
in-flight term (``--in-flight`` prints only that table).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kvcache_calculator.analytic.model import (  # noqa: E402
    analyze_setup, build_terms, capacity_for_hit_rate, in_flight_for, occupancy, with_service,
)
from kvcache_calculator.setup.resolve import Setup, resolve  # noqa: E402
from kvcache_calculator.scenario import ROUTINGS, Scenario  # noqa: E402
from kvcache_calculator.sim.simulate import simulate  # noqa: E402

GRID_SEED = 2026
SIM_SEED = 7
#: A simulation whose 95 % half-width of the token hit rate exceeds the 1-point tolerance
#: (pt) cannot tell a model error of 1 point from noise: it is run again
#: ``(half-width / AIM_PT)^2`` times longer (the half-width shrinks like 1/sqrt(requests)),
#: at most :data:`MAX_LONGER` times.
NOISE_PT = 1.0
AIM_PT = 0.5
MAX_LONGER = 10
LEVELS = ("tiny", 0.15, 0.35, 0.55, 0.75, 0.92, "all")   # capacity levels (exponential gaps)
T_LEVELS = (0.3, 0.8, 1.3, 2.5, 4.5)     # fixed gaps: T / think_time_s, away from and near the steps
TARGET_REQUESTS = 150_000
MAX_WARMUP_CONVERSATIONS = 6_000
EVERYTHING_TOKENS = 10 ** 10

#: Regimes, in table order, with a line saying what they are.
REGIMES = {
    "general": "LRU, exponential or fixed gaps away from T, cache of 20+ prompts",
    "shared content": "as general, with shared documents or system prompts of Zipf popularity",
    "lognormal gaps": "as general, with lognormal think times (sigma 0.5-1.5)",
    "random lengths": "as general, with exponential message and answer lengths (some shared content, lognormal gaps)",
    "everything fits": "no evictions: both give the ceiling",
    "offload tier": "GPU tier plus a 3x larger offload tier (total token hit rate)",
    "fixed gaps near T": "fixed think time, T within 35 % of a step (a multiple of it; sticky: of it)",
    "tiny cache": "cache of fewer than 20 prompts (the model's large-cache assumption fails)",
}



#: The regimes where the model is documented to meet the 1-point target.
MODELLED = ("general", "shared content", "lognormal gaps", "random lengths", "everything fits", "offload tier")


@dataclass(frozen=True)
class Case:
    """One grid point: a scenario and the capacities per instance (tokens)."""

    name: str
    scenario: Scenario
    capacity_tokens: int
    offload_tokens: int
    level: object


@dataclass(frozen=True)
class Row:
    """The analytic and simulated answers for one case."""

    case: Case
    regime: str
    analytic: float
    simulated: float
    ci_half: float
    analytic_request: float
    simulated_request: float
    characteristic_time_s: float | None
    seconds: float

    mean_prompt_tokens: float
    analytic_without: float | None = None    # the model without the in-flight term
    in_flight_share: float = 0.0             # the model's in-flight KV / capacity
    service_s: float = 0.0                   # the model's (and the simulator's) service time
    longer: int = 1                          # the run's length in multiples of the requests asked

    @property
    def error_pt(self) -> float:
        """Analytic minus simulated token hit rate, in percentage points."""
        return 100 * (self.analytic - self.simulated)

    @property
    def request_error_pt(self) -> float:
        """Analytic minus simulated request hit rate, in percentage points."""
        return 100 * (self.analytic_request - self.simulated_request)


def _setup(scenario: Scenario, capacity_tokens: int, offload_tokens: int = 0) -> Setup:
    """The scenario resolved, with the given capacities instead of its own."""
    setup = resolve(scenario)
    capacity = dataclasses.replace(setup.capacity, capacity_tokens=capacity_tokens, offload_tokens=offload_tokens)
    return dataclasses.replace(setup, capacity=capacity)


def _mean_prompt(s: Scenario) -> float:
    doc = s.document_share * s.document_tokens if s.num_documents else 0
    return s.system_prompt_tokens + doc + (s.turns - 1) * (s.input_tokens + s.output_tokens) / 2 + s.input_tokens


def grid(seed: int = GRID_SEED) -> list[Case]:
    """The seeded cross-validation grid (72 cases, then :data:`SHARED_CASES` with shared
    content and lognormal think times, then :data:`RANDOM_LENGTH_CASES` with exponential
    lengths; each block draws after the ones before, so adding one moves no earlier case)."""
    rng = random.Random(seed)
    cases = []
    for i in range(72 + SHARED_CASES + RANDOM_LENGTH_CASES):
        if i >= 72 + SHARED_CASES:
            cases.append(_random_length_case(i, rng))
            continue
        if i >= 72:
            cases.append(_shared_case(i, rng))
            continue
        offload = i >= 64
        routing = ROUTINGS[i % 4]
        instances = (1, 2, 4, 8)[(i // 4) % 4]
        turns_dist = ("geometric", "fixed")[(i // 16) % 2]
        think_dist = ("exponential", "fixed")[(i // 32) % 2]
        if offload:
            instances = (1, 2)[i % 2]
            turns_dist, think_dist = "geometric", ("exponential", "fixed")[(i // 2) % 2]
        turns = rng.choice((2, 3, 5, 8))
        think = rng.choice((5.0, 30.0, 120.0))
        per_instance_rate = rng.choice((0.5, 2.0, 5.0))
        rate = per_instance_rate * instances
        rate = min(rate, MAX_WARMUP_CONVERSATIONS / (5 * turns * think))
        values = dict(
            instances=instances, routing=routing, turns=turns, turns_dist=turns_dist,
            think_time_s=think, think_dist=think_dist, arrival_rate=round(rate, 4),
            input_tokens=rng.choice((50, 200, 800)), output_tokens=rng.choice((20, 200, 600)),
            system_prompt_tokens=rng.choice((0, 300, 1500, 4000)),
            num_system_prompts=rng.choice((1, 1, 4)), block_size=rng.choice((16, 16, 32)),
        )
        s = Scenario.from_dict(values)
        level = LEVELS[i % len(LEVELS)] if not offload else (0.15, 0.35, 0.55, 0.75)[i % 4]
        cases.append(_case(i, s, level, offload))
    return cases


#: Cases of the grid with shared documents, popular system prompts and lognormal think times.
SHARED_CASES = 32


def _drawn(i: int, rng: random.Random, instances: int, block_sizes: tuple[int, ...]) -> dict:
    """The scenario values of grid case ``i`` (72 and on) drawn from the menus: routing by
    ``i``, turns, think time, rate per instance, lengths, system prompt and block size by ``rng``."""
    turns = rng.choice((2, 3, 5, 8))
    think = rng.choice((5.0, 30.0, 120.0))
    rate = rng.choice((0.5, 2.0, 5.0)) * instances
    rate = min(rate, MAX_WARMUP_CONVERSATIONS / (5 * turns * think))
    return dict(
        instances=instances, routing=ROUTINGS[i % 4], turns=turns, turns_dist=rng.choice(("geometric", "fixed")),
        think_time_s=think, arrival_rate=round(rate, 4),
        input_tokens=rng.choice((50, 200, 800)), output_tokens=rng.choice((20, 200, 600)),
        system_prompt_tokens=rng.choice((0, 300, 1500)), block_size=rng.choice(block_sizes),
    )


def _shared_case(i: int, rng: random.Random) -> Case:
    """Grid case ``i`` (72 and on), in turn: lognormal gaps (sigma 0.5 to 1.5); shared
    documents (with lognormal gaps half of the time); system prompts of Zipf popularity (with
    documents half of the time). Every routing at 1-4 instances, capacities as for the rest
    of the grid."""
    values = _drawn(i, rng, (1, 2, 4)[(i // 4) % 3], (16, 16, 32))
    kind = i % 3                 # 0: lognormal gaps; 1: documents; 2: popular system prompts
    lognormal = kind == 0 or (kind == 1 and rng.random() < 0.5)
    documents = kind == 1 or (kind == 2 and rng.random() < 0.5)
    if lognormal:
        values.update(think_dist="lognormal", think_sigma=rng.choice((0.5, 1.0, 1.5)))
    if documents:
        values.update(num_documents=rng.choice((10, 100, 1000)), document_tokens=rng.choice((500, 2000, 6000)),
                      document_share=rng.choice((0.3, 0.7, 1.0)), document_zipf=rng.choice((0.0, 0.8, 1.2)))
    if kind == 2:
        values.update(num_system_prompts=rng.choice((4, 20)), system_prompt_zipf=rng.choice((0.8, 1.5)))
    # no "everything fits" level: a simulation's finite run has not yet used every rare
    # document once, which a steady state has (the first use of each is a miss)
    level = (0.15, 0.35, 0.55, 0.75, 0.92, "tiny", 0.25)[i % 7]
    return _case(i, Scenario.from_dict(values), level, False)


#: Cases of the grid with exponential message and answer lengths (docs/model.md §13).
RANDOM_LENGTH_CASES = 9


def _random_length_case(i: int, rng: random.Random) -> Case:
    """Grid case ``i`` (104 and on): ``length_dist=exponential``, drawn like the general
    cases (every routing at 1-4 instances, exponential gaps), with blocks of 16-512 tokens
    (where the partial last block matters most), lognormal gaps in a quarter and shared
    documents or popular system prompts in another quarter; capacities away from "tiny" and
    "all", so that every case tests the new key where the model is meant to hold."""
    values = dict(_drawn(i, rng, (1, 2, 4)[(i // 2) % 3], (16, 128, 512)), length_dist="exponential")
    kind = i % 4                 # 0, 1: plain; 2: lognormal gaps; 3: shared content
    if kind == 2:
        values.update(think_dist="lognormal", think_sigma=rng.choice((0.5, 1.0, 1.5)))
    if kind == 3 and rng.random() < 0.5:
        values.update(num_documents=rng.choice((10, 100)), document_tokens=rng.choice((500, 2000)),
                      document_share=rng.choice((0.3, 0.7, 1.0)), document_zipf=rng.choice((0.0, 0.8, 1.2)))
    elif kind == 3:
        values.update(num_system_prompts=rng.choice((4, 20)), system_prompt_zipf=rng.choice((0.8, 1.5)),
                      system_prompt_tokens=rng.choice((300, 1500)))
    level = (0.15, 0.35, 0.55, 0.75, 0.92, 0.25, 0.45, 0.65)[i % 8]
    return _case(i, Scenario.from_dict(values), level, False, floor_prompts=24)


def _case(i: int, s: Scenario, level, offload: bool, floor_prompts: int = 2) -> Case:
    """Grid case ``i``: ``s`` with the capacity of ``level`` (and a 3x offload tier), at
    least ``floor_prompts`` mean prompts beside the running requests' KV."""
    B = s.block_size
    routing, instances, turns, think = s.routing, s.instances, s.turns, s.think_time_s
    turns_dist, think_dist = s.turns_dist, s.think_dist
    # the cache is sized beside the KV its running requests hold
    held = analyze_setup(_setup(s, EVERYTHING_TOKENS)).in_flight_tokens
    if level == "tiny":
        tokens = 2 * _mean_prompt(s) + held
    elif level == "all":
        tokens = EVERYTHING_TOKENS
    elif s.think_dist == "fixed":
        # with fixed gaps the hit rate is a step function of T: choose T, not a target
        level = T_LEVELS[LEVELS.index(level) - 1]
        setup = _setup(s, B)
        terms = with_service(build_terms(setup), in_flight_for(setup, build_terms(setup)).service_s)
        tokens = occupancy(terms, level * s.think_time_s) + held
        tokens = max(tokens, floor_prompts * _mean_prompt(s) + held)
    else:
        ceiling = analyze_setup(_setup(s, EVERYTHING_TOKENS)).max_token_hit_rate
        tokens, _ = capacity_for_hit_rate(_setup(s, B), level * ceiling)
        tokens = max(tokens or 0.0, floor_prompts * _mean_prompt(s) + held)
    capacity = max(B, math.ceil(tokens / B) * B)
    offload_tokens = 3 * capacity if offload else 0
    shared = ""
    if s.num_documents:
        shared += (f" docs={s.num_documents}x{s.document_tokens}@{s.document_share:g}"
                   f"(zipf {s.document_zipf:g})")
    if s.system_prompt_zipf:
        shared += f" sys-zipf={s.system_prompt_zipf:g}"
    if think_dist == "lognormal":
        shared += f" sigma={s.think_sigma:g}"
    if s.length_dist != "fixed":
        shared += f" lengths={s.length_dist[:3]}"
    name = (f"#{i} {routing}x{instances} turns={turns:g}({turns_dist[:3]}) think={think:g}s({think_dist[:3]}) "
            f"rate={s.arrival_rate:g} in/out={s.input_tokens}/{s.output_tokens} "
            f"sys={s.system_prompt_tokens}x{s.num_system_prompts} B={B} "
            f"cap={capacity}" + (f" offload={offload_tokens}" if offload else "") + shared)
    return Case(name, s, capacity, offload_tokens, level)


def near_step(scenario: Scenario, T: float | None) -> bool:
    """Fixed gaps with T within 35 % of a step of the model's hit function.

    With fixed gaps the model's hit probability jumps at T = think_time_s (session routing)
    and, for the other routings, at every multiple m * think_time_s; real LRU is smooth.
    """
    if scenario.think_dist != "fixed" or T is None:
        return False
    x = T / scenario.think_time_s
    sticky = scenario.routing == "session" or scenario.instances == 1
    m = 1 if sticky else max(1, round(x))
    return abs(x - m) <= 0.35 * m if sticky else abs(x - m) <= 0.35


def regime(case: Case, characteristic_time_s: float | None,
           offload_characteristic_time_s: float | None, mean_prompt_tokens: float,
           in_flight_tokens: float = 0.0) -> str:
    """Which regime of :data:`REGIMES` a case belongs to (the tier that decides: offload
    when there is one; the cache left beside the running requests' KV decides whether it is
    tiny)."""
    s = case.scenario
    T, capacity = characteristic_time_s, case.capacity_tokens
    if case.offload_tokens:
        T, capacity = offload_characteristic_time_s, case.offload_tokens
    if T is None or case.level == "all":
        return "everything fits"
    if capacity - in_flight_tokens < 20 * mean_prompt_tokens:          # as report.model_notes
        return "tiny cache"
    if near_step(s, T):
        return "fixed gaps near T"
    if case.offload_tokens:
        return "offload tier"
    if s.length_dist != "fixed":
        return "random lengths"
    if s.num_documents or s.system_prompt_zipf:
        return "shared content"
    return "lognormal gaps" if s.think_dist == "lognormal" else "general"


def compare(case: Case, seed: int = SIM_SEED, in_flight: bool = True, requests: int = TARGET_REQUESTS) -> Row:
    """Run the model and the simulator on one case (about ``requests`` measured);
    ``in_flight=False`` leaves out the KV held by running requests on both sides."""
    s = case.scenario
    start = time.process_time()
    setup = _setup(s, case.capacity_tokens, case.offload_tokens)
    a = analyze_setup(setup, in_flight)
    without = analyze_setup(setup, False).token_hit_rate if in_flight else a.token_hit_rate
    conversations = max(2_000, int(requests / s.turns))

    def run(times: int):
        r = simulate(s, capacity_tokens=case.capacity_tokens, offload_tokens=case.offload_tokens,
                     conversations=conversations * times, seed=seed, in_flight=in_flight)
        return r, (r.token_hit_rate_ci[1] - r.token_hit_rate_ci[0]) / 2

    r, half = run(1)
    factor = min(MAX_LONGER, math.ceil((100 * half / AIM_PT) ** 2)) if 100 * half > NOISE_PT else 1
    if factor == 1 and 100 * abs(a.token_hit_rate - r.token_hit_rate) > NOISE_PT:
        factor = MAX_LONGER   # outside the tolerance: judged on a longer run (module docstring)
    if factor > 1:
        # too noisy to judge the model at a 1-point tolerance: run it longer (the half-width
        # shrinks like 1/sqrt(requests)), the same seed, in place of the short run
        r, half = run(factor)
    return Row(case, regime(case, a.characteristic_time_s, a.offload_characteristic_time_s, a.mean_prompt_tokens,
                            a.in_flight_tokens),
               a.token_hit_rate, r.token_hit_rate, half, a.request_hit_rate, r.request_hit_rate,
               a.characteristic_time_s, time.process_time() - start, a.mean_prompt_tokens, without,
               a.in_flight_share, a.service_s, factor)


#: The in-flight grid's shares of the pool held by running requests (the model's).
IN_FLIGHT_SHARES = (0.25, 0.5)
#: Measured requests per in-flight scenario: their errors are a few tenths of a point, so
#: the simulation noise must be smaller (with 60,000 it is up to 1.5 points, seen over seeds).
IN_FLIGHT_REQUESTS = 250_000


def in_flight_grid() -> list[Case]:
    """Scenarios where running requests hold a large share of a small pool (module docstring):
    llama-3.1-8b on an H100 (decode 125 tokens/s per sequence, time to first token 0.07-0.2 s,
    both derived), 5 turns of 200 input tokens after a 1,000-token system prompt, 30 s think
    times; the pool (``capacity_tokens``, as ``kv_cache_tokens`` would give it) sized from the
    model's in-flight KV."""
    cases = []
    for routing, instances in (("session", 1), ("random", 2)):
        for per_instance in (1.0, 2.0):
            for output in (300, 600):
                s = Scenario.from_dict(dict(
                    routing=routing, instances=instances, arrival_rate=per_instance * instances, turns=5,
                    think_time_s=30.0, input_tokens=200, output_tokens=output, system_prompt_tokens=1000))
                held = analyze_setup(_setup(s, EVERYTHING_TOKENS)).in_flight_tokens
                for share in IN_FLIGHT_SHARES:
                    capacity = math.ceil(held / share / s.block_size) * s.block_size
                    name = (f"in-flight {share:.0%} {routing}x{instances} {5 * per_instance:g} req/s/instance "
                            f"out={output} cap={capacity}")
                    cases.append(Case(name, s, capacity, 0, share))
    return cases


def in_flight_stats(rows: list[Row]) -> dict:
    """Mean and worst |error| (pt) of the token hit rate with and without the model's
    in-flight term, against the simulator holding running requests' blocks."""
    without = [100 * abs(r.analytic_without - r.simulated) for r in rows]
    return {"cases": len(rows), "mean_pt": sum(abs(r.error_pt) for r in rows) / len(rows),
            "worst_pt": max(abs(r.error_pt) for r in rows),
            "without_mean_pt": sum(without) / len(rows), "without_worst_pt": max(without),
            "share_min": min(r.in_flight_share for r in rows), "share_max": max(r.in_flight_share for r in rows)}


def summarize(rows: list[Row]) -> dict[str, dict]:
    """Per regime: cases, mean and worst |error| (pt) of token and request hit rate, worst row."""
    out = {}
    for name in REGIMES:
        mine = [r for r in rows if r.regime == name]
        if mine:
            out[name] = _stats(mine)
    return out


def _stats(rows: list[Row]) -> dict:
    worst = max(rows, key=lambda r: abs(r.error_pt))
    return {"cases": len(rows),
            "mean_pt": sum(abs(r.error_pt) for r in rows) / len(rows),
            "worst_pt": abs(worst.error_pt),
            "request_mean_pt": sum(abs(r.request_error_pt) for r in rows) / len(rows),
            "request_worst_pt": max(abs(r.request_error_pt) for r in rows),
            "worst": worst}


def markdown_table(rows: list[Row]) -> str:
    """The README table: mean and worst absolute error per regime, in percentage points."""
    lines = ["| regime | scenarios | token hit rate: mean error | worst | request hit rate: mean error | worst |",
             "|---|---:|---:|---:|---:|---:|"]

    def line(label: str, st: dict) -> str:
        return (f"| {label} | {st['cases']} | {st['mean_pt']:.2f} | {st['worst_pt']:.2f} | "
                f"{st['request_mean_pt']:.2f} | {st['request_worst_pt']:.2f} |")

    for name, st in summarize(rows).items():
        lines.append(line(f"{name}: {REGIMES[name]}", st))
    modelled = [r for r in rows if r.regime in MODELLED]
    lines.append(line("**LRU outside the weak regimes**", _stats(modelled)))
    lines.append(line("all scenarios", _stats(rows)))
    return "\n".join(lines)


def in_flight_table(rows: list[Row]) -> str:
    """The in-flight grid's agreement, with and without the model's in-flight term."""
    st = in_flight_stats(rows)
    return "\n".join([
        "| in-flight grid | scenarios | share of the pool | mean error | worst |",
        "|---|---:|---:|---:|---:|",
        f"| model with the in-flight term | {st['cases']} | {st['share_min']:.0%}-{st['share_max']:.0%} | "
        f"{st['mean_pt']:.2f} | {st['worst_pt']:.2f} |",
        f"| model without it | {st['cases']} | | {st['without_mean_pt']:.2f} | {st['without_worst_pt']:.2f} |",
    ])


def _print_row(r: Row) -> None:
    T = "-" if r.characteristic_time_s is None else f"{r.characteristic_time_s:.3g}"
    print(f"{r.regime:<18} ana {100 * r.analytic:6.2f} sim {100 * r.simulated:6.2f} "
          f"+-{100 * r.ci_half:4.2f} err {r.error_pt:+6.2f} req.err {r.request_error_pt:+6.2f} "
          f"without {100 * (r.analytic_without - r.simulated):+6.2f} share {r.in_flight_share:.2f} "
          f"svc/think {r.service_s / r.case.scenario.think_time_s:.2f} "
          f"T={T:<8} {r.seconds:4.1f}s x{r.longer}  {r.case.name}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true", help="print every scenario")
    parser.add_argument("--in-flight", action="store_true", help="only the in-flight grid")
    args = parser.parse_args()
    flight = []
    for case in in_flight_grid():
        flight.append(compare(case, requests=IN_FLIGHT_REQUESTS))
        if args.details:
            _print_row(flight[-1])
    if args.in_flight:
        print(in_flight_table(flight))
        return 0
    rows = []
    for case in grid():
        rows.append(compare(case))
        if args.details:
            _print_row(rows[-1])
    print(markdown_table(rows))
    print()
    print(in_flight_table(flight))
    print()
    print("Worst case per regime (analytic vs simulated token hit rate, 95 % CI of the simulation):")
    for name, st in summarize(rows).items():
        r = st["worst"]
        print(f"- {name}: {100 * r.analytic:.2f} % vs {100 * r.simulated:.2f} % +- {100 * r.ci_half:.2f} "
              f"({r.error_pt:+.2f} pt): {r.case.name}")
    print(f"\n{len(rows) + len(flight)} scenarios, {sum(r.seconds for r in rows + flight):.0f} s of CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
