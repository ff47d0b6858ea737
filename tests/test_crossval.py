"""Cross-validation: the analytic LRU model against the simulator over a seeded grid.

The grid (113 scenarios, grid seed 2026, simulation seed 7, about 150,000 measured requests
each, up to 10 times more where the simulation's 95 % half-width exceeds the 1-point
tolerance: 8 cases; 32 of them with shared documents, system prompts of Zipf popularity and lognormal
think times, 9 with exponential message and answer lengths) and its regimes live in ``benchmarks/crossval_table.py``, which also prints the
README table. Tolerances, in percentage points (pt) of hit rate, analytic minus simulated:

- where the model is documented to hold (general LRU, shared content, lognormal gaps,
  random lengths, everything fits, offload tier): mean absolute error <= 0.25 pt (seen:
  0.15, margin 0.1), and every case within its regime's worst seen plus 0.5 pt
  (``WORST_PT``; seen: general 0.30, shared content 0.79, lognormal gaps 0.38, random
  lengths 0.60, offload tier 0.94). Lognormal gaps' worst was 1.04 at 150,000 requests,
  case #72 with a half-width of 1.83 pt: over 20 seeds its error is +0.07 +- 0.20 pt (standard
  error; -0.07 +- 0.11 at 600,000 requests), noise rather than a bias; the grid now runs it 10 times
  longer (1,500,000 requests): +0.38, 95 % half-width 0.84. Simulation noise alone is at
  most 1 pt (95 % half-width) on these runs by that rule (seen: up to 1.00). Before a copy's wait counted the service of the turns served
  elsewhere (docs/model.md §6.2) these were 0.26 / 2.15, and requests running 30 % of the
  think time or more under spread turns were a weak regime of their own (2.32 / 6.46);
- fixed think times near a step of the model (smoothed by the occupancy's fluctuation,
  docs/model.md §12.4): mean <= 0.58 pt, worst <= 3.02 pt (seen: 0.48 / 2.52; 0.41 / 1.56
  before the noisiest cases ran longer: case #44, 8 instances with session routing at a 2.6 %
  hit rate, is -2.62 +- 0.11 pt over 8 seeds, a bias the short run hid; before the
  smoothing: 2.2 / 10.2);
- tiny caches (fewer than 20 prompts): the documented weak spot, mean <= 0.82 pt, worst <=
  8.99 pt (seen: 0.72 / 8.49; 0.79 / 10.16 before the noisiest cases ran longer);
- every scenario off by more than 1.5 pt is flagged by ``report.model_notes``, so the page
  tells the user to check with the simulation.

Both sides model the KV held by running requests. The in-flight grid (16 scenarios where
running requests hold 25-50 % of a small pool, 250,000 measured requests each) holds the
model with its in-flight term within 0.33 pt on average and 1.01 pt everywhere (seen: 0.23 /
0.51, margins 0.1 and 0.5), and shows that without the term the
model is several points off.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from kvcache_calculator.analytic.inflight import in_flight
from kvcache_calculator.analytic.model import analyze_setup
from kvcache_calculator.scenario import ROUTINGS
from kvcache_calculator.sim.simulate import simulate

from benchmark_modules import load_benchmark



cv = load_benchmark("crossval_table")

#: Bounds are the values seen (seed 7) plus a margin: 0.1 pt on means, 0.5 pt on worst cases.
MODELLED_MEAN_PT = 0.15 + 0.1
MODELLED_REQUEST_MEAN_PT = 0.19 + 0.1
MODELLED_REQUEST_WORST_PT = 1.34 + 0.5
#: Per-case bound of each modelled regime: its worst seen plus 0.5 pt.
WORST_PT = {"general": 0.30 + 0.5, "shared content": 0.79 + 0.5, "lognormal gaps": 0.38 + 0.5,
            "random lengths": 0.60 + 0.5, "everything fits": 0.13 + 0.5, "offload tier": 0.94 + 0.5}
#: Beyond this (and the simulation's half-width) a scenario must carry a note for the user.
FLAG_PT = 1.5
IN_FLIGHT_MEAN_PT = 0.23 + 0.1
IN_FLIGHT_WORST_PT = 0.51 + 0.5
WEAK_REQUEST_WORST_PT = 12.0


def test_grid_spans_the_required_space():
    """At least 50 seeded scenarios: all routings at 1-8 instances, every distribution,
    caches from almost nothing to everything, shared documents and popular prompts."""
    cases = cv.grid()
    assert len(cases) >= 50
    assert [c.name for c in cases] == [c.name for c in cv.grid()]          # seeded
    seen = {(c.scenario.routing, c.scenario.instances) for c in cases}
    assert {(r, i) for r in ROUTINGS for i in (1, 2, 4, 8)} <= seen
    assert {c.scenario.turns_dist for c in cases} == {"geometric", "fixed"}
    assert {c.scenario.think_dist for c in cases} == {"exponential", "fixed", "lognormal"}
    assert sum(1 for c in cases if c.scenario.num_documents) >= 10
    assert sum(1 for c in cases if c.scenario.system_prompt_zipf) >= 8
    random_lengths = [c.scenario for c in cases if c.scenario.length_dist == "exponential"]
    assert len(random_lengths) >= 8
    assert {s.think_dist for s in random_lengths} == {"exponential", "lognormal"}
    assert any(s.num_documents or s.system_prompt_zipf for s in random_lengths)
    assert {16, 512} <= {s.block_size for s in random_lengths}
    levels = {c.level for c in cases}
    assert {"tiny", "all"} <= levels and len(levels) >= 8
    assert all(c.scenario.policy == "lru" for c in cases)
    assert any(c.offload_tokens for c in cases)


def compare_all(cases, **options) -> list:
    """``cv.compare`` of every case, on up to two processes: each case is seeded, so the rows
    are those of one process, in the same order, in about half the time on two cores."""
    workers = min(2, os.cpu_count() or 1)
    if workers < 2:
        return [cv.compare(case, **options) for case in cases]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(functools.partial(cv.compare, **options), cases))


@pytest.fixture(scope="module")
def rows():
    return compare_all(cv.grid())


@pytest.fixture(scope="module")
def flight_rows():
    return compare_all(cv.in_flight_grid(), requests=cv.IN_FLIGHT_REQUESTS)


def _report(rows) -> str:
    return "\n".join(f"{r.regime}: analytic {100 * r.analytic:.2f} % simulated {100 * r.simulated:.2f} % "
                     f"({r.error_pt:+.2f} pt) {r.case.name}" for r in rows)


@pytest.mark.slow
def test_modelled_regimes_meet_the_target(rows):
    modelled = [r for r in rows if r.regime in cv.MODELLED]
    assert len(modelled) >= 40
    stats = cv._stats(modelled)
    assert stats["mean_pt"] <= MODELLED_MEAN_PT, _report(modelled)
    bad = [r for r in modelled if abs(r.error_pt) > WORST_PT[r.regime]]
    assert not bad, _report(bad)
    assert stats["request_mean_pt"] <= MODELLED_REQUEST_MEAN_PT
    assert stats["request_worst_pt"] <= MODELLED_REQUEST_WORST_PT
    assert sum(1 for r in modelled if r.regime in ("shared content", "lognormal gaps")) >= 8


@pytest.mark.slow
def test_random_lengths_add_no_error_of_their_own(rows):
    """Exponential message and answer lengths (docs/model.md §13), 9 scenarios with blocks of
    16-512 tokens: mean <= 0.28 pt, worst <= 1.1 pt, request hit rate worst <= 1.84 pt (seen:
    0.18 / 0.60, request 0.36 / 1.34; margins 0.1 and 0.5). The same scenarios with fixed
    lengths are as far off or further (seen: 0.24 / 0.77): the largest errors are round robin
    on one instance at 5 s gaps (+0.60, fixed +0.77) and lognormal gaps (sigma 1.5) under
    random routing with running requests holding a third of the pool (+0.28 and +0.17, fixed
    +0.54 and +0.46), none of them the lengths'. So every case is off by at most 0.3 pt more
    than its fixed-length twin (seen: at most 0.15 more, within the simulation's noise; 6 of
    9 are closer), and the mean no more than 0.1 pt more (seen: 0.05 less)."""
    mine = [r for r in rows if r.regime == "random lengths"]
    assert len(mine) >= 8
    stats = cv._stats(mine)
    assert stats["mean_pt"] <= 0.18 + 0.1, _report(mine)
    assert stats["worst_pt"] <= WORST_PT["random lengths"], _report(mine)
    assert stats["request_worst_pt"] <= 1.34 + 0.5, _report(mine)
    twins = compare_all([dataclasses.replace(r.case, scenario=dataclasses.replace(r.case.scenario,
                                                                                 length_dist="fixed"))
                         for r in mine])
    assert stats["mean_pt"] <= cv._stats(twins)["mean_pt"] + 0.1
    for r, twin in zip(mine, twins):
        # 0.3 pt, or the 95 % noise of the difference of two simulations when larger (#112:
        # +-0.34 pt each; seeds 7, 11 and 12 read +0.33, +0.28 and +0.07 with a twin at +0.02)
        noise = 100 * math.hypot(r.ci_half, twin.ci_half)
        assert abs(r.error_pt) <= abs(twin.error_pt) + max(0.3, noise), _report([r, twin])


@pytest.mark.slow
def test_in_flight_grid_meets_the_target_and_needs_its_term(flight_rows):
    """Where running requests hold a quarter to a half of the pool: the model with its
    in-flight term within 0.33 pt on average and 1.01 pt everywhere (seen: 0.23 / 0.51, before
    the service of spread turns counted: 0.29 / 0.92); without it, several points off (seen:
    5.5 / 10.3)."""
    assert len(flight_rows) == 16
    st = cv.in_flight_stats(flight_rows)
    assert st["share_min"] >= 0.24 and st["share_max"] <= 0.51
    assert st["mean_pt"] <= IN_FLIGHT_MEAN_PT, _report(flight_rows)
    assert st["worst_pt"] <= IN_FLIGHT_WORST_PT, _report(flight_rows)
    assert st["without_mean_pt"] >= 3.0
    for r in flight_rows:
        assert r.analytic_without > r.analytic        # the term always lowers the hit rate
        assert abs(r.error_pt) < abs(100 * (r.analytic_without - r.simulated)), r.case.name


@pytest.mark.slow
def test_simulated_in_flight_kv_is_littles_law(flight_rows):
    """The KV the simulator's running requests held on average is Little's law of
    ``analytic.inflight`` at the simulation's own request rate and mean prompt, within 0.5 %
    (whole blocks against half a block on average; seen: 0.02-0.22 %), and the model's within
    5 % (the simulation's mean prompt varies with the geometric turns it drew; seen: 3.3 %)."""
    for r in flight_rows[::3]:
        s = r.case.scenario
        a = analyze_setup(cv._setup(s, r.case.capacity_tokens))
        sim = simulate(s, capacity_tokens=r.case.capacity_tokens, conversations=20_000, seed=7)
        assert sim.service_s == pytest.approx(a.service_s, rel=1e-12)
        rate = sim.requests / sim.conversations * s.arrival_rate / s.instances
        shared = s.system_prompt_tokens // s.block_size * s.block_size
        little = in_flight(rate, sim.mean_prompt_tokens - shared, s.output_tokens, ttft_s=a.ttft_s_used,
                           decode_tokens_per_s=a.decode_tokens_per_s_used, max_num_seqs=1024,
                           block_size=s.block_size)
        assert sim.in_flight_tokens == pytest.approx(little.tokens, rel=0.005), r.case.name
        assert sim.in_flight_tokens == pytest.approx(a.in_flight_tokens, rel=0.05), r.case.name


@pytest.mark.slow
def test_whole_grid_mean_error(rows):
    """Over all 113 scenarios, weak regimes included (almost half of the grid is deliberately
    tiny or near a step): mean <= 0.49 pt. Seen: 0.39 (0.57 before the service of spread turns
    counted, docs/model.md §6.2; 0.58 over the first 104; 0.60 over the
    first 72 at 60,000 requests before the fixed-gap smoothing; 1.06 before the shared-prefix
    survival rule of ``analytic.shared_prefix_hit_probability``; 0.42 before the noisiest
    cases ran longer)."""
    stats = cv._stats(rows)
    assert stats["mean_pt"] <= 0.39 + 0.1, _report(rows)


@pytest.mark.slow
def test_everything_fits_gives_the_ceiling(rows):
    for r in rows:
        if r.regime == "everything fits":
            assert abs(r.error_pt) <= 0.5, _report([r])


@pytest.mark.slow
@pytest.mark.parametrize("regime, mean_pt, worst_pt", [
    # seen: 0.72 / 8.49, the worst two with lognormal gaps (sigma 1.5) and requests running
    # as long as the think time in a pool they half fill (the mean in-flight KV's limit)
    ("tiny cache", 0.72 + 0.1, 8.49 + 0.5),
    ("fixed gaps near T", 0.48 + 0.1, 2.52 + 0.5),  # seen: 0.48 / 2.52 (before the smoothing: 2.23 / 10.17)
])
def test_weak_regimes_stay_within_their_documented_errors(rows, regime, mean_pt, worst_pt):
    mine = [r for r in rows if r.regime == regime]
    assert len(mine) >= 5
    stats = cv._stats(mine)
    assert stats["mean_pt"] <= mean_pt, _report(mine)
    assert stats["worst_pt"] <= worst_pt, _report(mine)
    assert stats["request_worst_pt"] <= WEAK_REQUEST_WORST_PT, _report(mine)


@pytest.mark.slow
def test_large_errors_are_flagged_for_the_user(rows):
    """Where the model is off by more than 1.5 pt beyond the simulation's own 95 % half-width,
    the page and CLI say so."""
    report = pytest.importorskip("kvcache_calculator.present.report")

    unflagged = []
    for r in rows:
        if abs(r.error_pt) <= FLAG_PT + 100 * r.ci_half:
            continue
        s = r.case.scenario
        res = analyze_setup(cv._setup(s, r.case.capacity_tokens, r.case.offload_tokens)).to_dict()
        if not report.model_notes(s, res):
            unflagged.append(r)
    assert not unflagged, _report(unflagged)


@pytest.mark.slow
def test_simulated_characteristic_time_tracks_the_model(rows):
    """The mean idle time of evicted blocks is close to the model's T (general LRU,
    exponential gaps): within a factor 1.25 for every such scenario (seed 7; seen: 0.94-1.14)."""
    checked = 0
    for r in rows:
        s = r.case.scenario
        if r.regime != "general" or s.think_dist != "exponential" or r.case.offload_tokens:
            continue
        sim = simulate(s, capacity_tokens=r.case.capacity_tokens, conversations=2_000, seed=7)
        if sim.characteristic_time_s is None or r.characteristic_time_s is None:
            continue
        ratio = sim.characteristic_time_s / r.characteristic_time_s
        assert 1 / 1.25 < ratio < 1.25, (r.case.name, sim.characteristic_time_s, r.characteristic_time_s)
        checked += 1
    assert checked >= 5


def test_a_noisy_simulation_runs_longer():
    """Case #72 (lognormal gaps, session routing; seed 7) with 2,000 conversations: its 95 %
    half-width exceeds the 1-point tolerance (``NOISE_PT``), so the row is the same seed run
    ``min(MAX_LONGER, ceil((half-width / AIM_PT)^2))`` times longer (here 10x). (At 2,000
    conversations the batch-means half-width itself is too low, 1.6 pt on average where 20
    seeds give a standard deviation of 1.9 pt, a half-width of about 3.7: batches shorter than
    a conversation's lifetime are correlated. At the grid's 150,000 requests it holds: 1.7
    against a standard deviation of 0.9 over 20 seeds.)"""
    case = cv.grid()[72]
    s = case.scenario
    short = cv.simulate(s, capacity_tokens=case.capacity_tokens, conversations=2_000, seed=cv.SIM_SEED)
    half = 100 * (short.token_hit_rate_ci[1] - short.token_hit_rate_ci[0]) / 2
    assert half > cv.NOISE_PT
    row = cv.compare(case, requests=2_000)
    assert row.longer == min(cv.MAX_LONGER, math.ceil((half / cv.AIM_PT) ** 2)) == 10
    longer = cv.simulate(s, capacity_tokens=case.capacity_tokens, conversations=2_000 * row.longer, seed=cv.SIM_SEED)
    assert row.simulated == longer.token_hit_rate
