"""Random lengths (docs/model.md §13): the mean remainder of a history in whole blocks, its
closed forms against term-by-term sums, and the model's sums with ``length_dist``."""

import math
import random

import pytest

from kvcache_calculator.analytic import model
from kvcache_calculator.analytic.lengths import (
    direct_plan, direct_remainder, erlang_tail, exponential_remainder, fourier_remainder, fourier_terms,
    geometric_compound, grouped_remainder, history_remainders, reach_count, reach_probabilities, renewal_count,
    sum_remainder, tail_probability,
)
from kvcache_calculator.analytic.model import analyze, build_terms
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.sim.simulate import simulate


def _erlang_remainder_by_terms(offset: float, mean: float, j: int, B: int) -> float:
    """E[(offset + Y) mod B] for Y Erlang(j, mean), from E[floor((offset+Y)/B)] =
    sum_k P(Y >= kB - offset), term by term (Erlang tail in closed form)."""
    floors = 0.0
    for k in range(1, 100_000):
        y = k * B - offset
        if y <= 0:
            floors += 1.0
            continue
        tail = erlang_tail(y, j, mean)
        floors += tail
        if tail < 1e-16:
            break
    return offset + j * mean - B * floors


@pytest.mark.parametrize("offset,mean,B", [(0, 300, 512), (100, 300, 512), (500, 20, 512), (7, 5000, 16)])
def test_one_length_closed_form_matches_terms(offset, mean, B):
    assert exponential_remainder(offset, mean, B) == pytest.approx(
        _erlang_remainder_by_terms(offset, mean, 1, B), abs=1e-6)


@pytest.mark.parametrize("j,mean", [(2, 300), (3, 800), (4, 50), (6, 100)])
def test_fourier_series_matches_terms(j, mean):
    assert sum_remainder(100.0, (float(mean),) * j, 512) == pytest.approx(
        _erlang_remainder_by_terms(100, mean, j, 512), abs=1e-6)


def test_mixed_means_against_monte_carlo():
    # seed 3, 200,000 draws: the standard error of the mean remainder is about 0.33 tokens
    rng = random.Random(3)
    n = 200_000
    mc = sum((100 + rng.expovariate(1 / 800) + rng.expovariate(1 / 300)) % 512 for _ in range(n)) / n
    assert sum_remainder(100.0, (800.0, 300.0), 512) == pytest.approx(mc, abs=1.5)


def test_remainder_settles_at_half_a_block():
    assert sum_remainder(0.0, (400.0, 200.0) * 8, 512) == pytest.approx(256, abs=1e-6)


@pytest.mark.parametrize("turns_dist", ["geometric", "fixed"])
def test_closed_form_sums_match_term_by_term(turns_dist):
    s = Scenario.from_dict(dict(length_dist="exponential", block_size=512, turns_dist=turns_dist,
                                input_tokens=300, output_tokens=100, system_prompt_tokens=700))
    setup = resolve(s)
    a, b = build_terms(setup), build_terms(setup, closed_form=False)
    assert a.hit_sums[0] == pytest.approx(b.hit_sums[0], rel=1e-9)
    assert a.cost_sums[0] == pytest.approx(b.cost_sums[0], rel=1e-9)
    assert a.cost_last == pytest.approx(b.cost_last, rel=1e-9)
    assert a.request_hit_turns == pytest.approx(b.request_hit_turns, rel=1e-9)


def test_exponential_lengths_lose_half_a_block_per_history():
    # S = 0, step = 512 exactly: fixed lengths lose nothing; exponential lengths lose about B/2
    base = dict(block_size=512, input_tokens=412, output_tokens=100, system_prompt_tokens=0,
                turns=3, turns_dist="fixed")
    fixed = build_terms(resolve(Scenario.from_dict(base)))
    rnd = build_terms(resolve(Scenario.from_dict({**base, "length_dist": "exponential"})))
    # two copies (turns 1 and 2) feed the hits of turns 2 and 3
    assert fixed.hit_sums[0] == 512 + 1024
    assert 512 + 1024 - rnd.hit_sums[0] == pytest.approx(2 * 256, abs=40)
    assert rnd.prompt_tokens == fixed.prompt_tokens


def test_default_is_fixed_and_bad_value_is_named():
    assert Scenario().length_dist == "fixed"
    with pytest.raises(ScenarioError, match="length_dist"):
        Scenario.from_dict({"length_dist": "uniform"})


def test_erlang_tail_matches_poisson_sum():
    # P(Erlang(k, m) >= x) = P(Poisson(x/m) < k), term by term
    for x, k, m in [(512.0, 1, 300.0), (512.0, 4, 100.0), (100.0, 20, 3.0)]:
        z = x / m
        assert erlang_tail(x, k, m) == pytest.approx(
            sum(math.exp(-z) * z ** i / math.factorial(i) for i in range(k)), rel=1e-12)


def test_reach_probabilities_match_the_erlang_tail_through_the_grid():
    # near-equal means go through the negative-binomial mixture; equal means are one Erlang
    got = reach_probabilities(300.0, 100.0, 100.0 * (1 + 1e-9), 3)
    assert got == pytest.approx([erlang_tail(300.0, 2 * j, 100.0) for j in (1, 2, 3)], abs=1e-8)
    # without the last answer: j messages and j - 1 answers
    got = reach_probabilities(300.0, 100.0, 100.0 * (1 + 1e-9), 3, answers_cached=False)
    assert got == pytest.approx([erlang_tail(300.0, 2 * j - 1, 100.0) for j in (1, 2, 3)], abs=1e-8)


@pytest.mark.parametrize("m1,m2,answers_cached", [(50.0, 200.0, True), (800.0, 20.0, False), (10.0, 30.0, True)])
def test_reach_probabilities_against_monte_carlo(m1, m2, answers_cached):
    # seed 5, 40,000 draws per turn: standard error at most 0.0025
    rng = random.Random(5)
    got = reach_probabilities(400.0, m1, m2, 4, answers_cached)
    for j, p in enumerate(got, start=1):
        k2 = j if answers_cached else j - 1
        n = 40_000
        mc = sum(1 for _ in range(n) if sum(rng.expovariate(1 / m1) for _ in range(j))
                 + sum(rng.expovariate(1 / m2) for _ in range(k2)) >= 400) / n
        assert p == pytest.approx(mc, abs=0.01), j


def test_request_hits_count_the_chance_that_a_history_fills_a_block():
    """A request hits at all only if its history holds a whole block: with random lengths
    that is a probability, not the indicator of the mean history. 8 fixed turns of 50 + 200
    tokens on average, 512-token blocks: the model's request and token hit rates with every
    history kept against the simulator (seed 7, 20,000 conversations; seen 63.90 % vs
    64.16 % and 71.09 % vs 71.33 %)."""
    s = Scenario.from_dict(dict(block_size=512, input_tokens=50, output_tokens=200, system_prompt_tokens=0,
                                turns=8, turns_dist="fixed", think_time_s=30.0, arrival_rate=1.0,
                                kv_cache_tokens=10 ** 8, length_dist="exponential"))
    a = analyze(s)
    # the mean history reaches a block at turn 3 (750 tokens less half a block), but turn 1's
    # does with probability 0.10 (Erlang tails) and turn 3's with 0.72
    reach = reach_probabilities(512.0, 50.0, 200.0, 7)
    assert reach[0] == pytest.approx(0.103, abs=0.001) and reach[2] == pytest.approx(0.722, abs=0.001)
    r = simulate(s, conversations=20_000, seed=7)
    assert a.request_hit_rate == pytest.approx(r.request_hit_rate, abs=0.006)
    assert a.token_hit_rate == pytest.approx(r.token_hit_rate, abs=0.006)


#: (new tokens, answer, block, system prompt, r = 1 - 1/turns): where the term-by-term sums
#: are slowest (tiny turns in large blocks, the form's limits: 1-token turns, 4,096-token
#: blocks) and ordinary ones.
_COMPOUND_GRID = [(1.0, 1.0, 4096, 0, 0.5), (1.0, 0.0, 4096, 100, 0.5), (3.0, 1.0, 4096, 0, 0.6),
                  (1.0, 1.0, 512, 500, 0.6), (10.0, 10.0, 512, 0, 0.5), (50.0, 200.0, 512, 100, 0.7),
                  (800.0, 300.0, 16, 7, 0.8), (300.0, 0.0, 512, 0, 0.7)]


@pytest.mark.parametrize("m1,m2,B,S,r", _COMPOUND_GRID)
@pytest.mark.parametrize("answers_cached", [True, False])
def test_geometric_compound_matches_term_by_term_sums(m1, m2, B, S, r, answers_cached):
    """``sum_j r^j E[g(Y_j)]`` as a mixture of two exponentials against the sum over j,
    to where ``r^j B`` falls below 1e-10 tokens, of each history's remainder and of
    ``P(S + Y_j >= B)``. Equal or zero means (``Y_j`` Erlang): exact term-by-term references
    (Erlang tails), within 1e-9 tokens. Unequal means: each history's Fourier series
    (:func:`grouped_remainder`), within 1e-4 tokens: the series of the first histories stops
    at 100,000 terms before its 1e-9 bound with 1- to 3-token lengths in 4,096-token blocks."""
    mixture = geometric_compound(m1, m2, r, answers_cached)
    assert sum(w for w, _ in mixture) == pytest.approx(r / (1 - r), rel=1e-12)
    erlang = m2 in (0.0, m1)
    total, reach, j = 0.0, 0.0, 1
    while r ** j * B > 1e-10:
        k2 = j if answers_cached else j - 1
        if erlang:
            k = j + (k2 if m2 else 0)
            total += r ** j * _erlang_remainder_by_terms(S, m1, k, B)
            reach += r ** j * erlang_tail(B - S, k, m1)
        else:
            total += r ** j * grouped_remainder(float(S), ((m1, j), (m2, k2)), B)
        j += 1
    assert sum(w * exponential_remainder(S, mean, B) for w, mean in mixture) == pytest.approx(
        total, abs=1e-9 if erlang else 1e-4)
    if erlang:
        assert sum(w * math.exp(-(B - S) / mean) for w, mean in mixture) == pytest.approx(reach, abs=1e-9)


@pytest.mark.parametrize("values", [
    dict(input_tokens=1, output_tokens=1, block_size=4096, turns=2),
    dict(input_tokens=3, output_tokens=1, block_size=4096, turns=3, system_prompt_tokens=100),
    dict(input_tokens=10, output_tokens=10, block_size=512, turns=5, routing="random", instances=4),
    dict(input_tokens=5, output_tokens=0, block_size=512, turns=20, num_documents=10, document_tokens=300,
         document_share=0.5),
])
def test_tiny_turns_in_large_blocks_match_the_reference(values):
    """The worst inputs of the term-by-term sums (new tokens and answers of a few tokens in
    blocks of 512-4,096) with geometric turns: the closed forms (O(1); the sums took seconds
    or did not end, benchmarks/bench_lengths.py) against the model's term-by-term reference
    (``closed_form=False``), every sum within 1e-8 of the prompt tokens, both views."""
    setup = resolve(Scenario.from_dict(dict(values, length_dist="exponential")))
    for cached in (True, False):
        a, b = build_terms(setup, answers_cached=cached), build_terms(setup, closed_form=False, answers_cached=cached)
        for x, y in ((a.hit_sums[0], b.hit_sums[0]), (a.cost_sums[0], b.cost_sums[0]),
                     (a.cost_last, b.cost_last), (a.prompt_tokens, b.prompt_tokens)):
            assert x == pytest.approx(y, abs=1e-8 * b.prompt_tokens)
        assert a.request_hit_turns == pytest.approx(b.request_hit_turns, abs=1e-8 * b.mean_turns)


def _tail_by_quadrature(x: float, k1: int, m1: float, k2: int, m2: float, n: int = 50_000) -> float:
    """P(A + C >= x), A Erlang(k1, m1), C Erlang(k2, m2), k1 >= 2: P(A >= x) plus
    int_0^x f_A(u) P(C >= x - u) du by Simpson's rule on n intervals (a smooth integrand)."""
    h = x / n
    total = 0.0
    for i in range(n + 1):
        u = i * h
        f = math.exp((k1 - 1) * math.log(u / m1) - u / m1 - math.lgamma(k1)) / m1 if u > 0 else 0.0
        total += (1 if i in (0, n) else 4 if i % 2 else 2) * f * erlang_tail(x - u, k2, m2)
    return erlang_tail(x, k1, m1) + total * h / 3


def _hypoexponential_remainder(s: float, m1: float, m2: float, B: int) -> float:
    """E[(s + L1 + L2) mod B] for two exponential lengths of unequal means, by the boundaries
    with the closed-form tail P(L1 + L2 >= y) = (m1 e^(-y/m1) - m2 e^(-y/m2)) / (m1 - m2)."""
    crossings, k = 0.0, 1
    while True:
        y = k * B - s
        tail = (m1 * math.exp(-y / m1) - m2 * math.exp(-y / m2)) / (m1 - m2)
        crossings += tail
        if tail < 1e-18:
            return s + m1 + m2 - B * crossings
        k += 1


@pytest.mark.parametrize("m1,m2,B,s", [(1.0, 3.0, 4096, 0.0), (3.0, 1.0, 4096, 4000.0), (1.0, 50.0, 4096, 2000.0),
                                        (5.0, 1.0, 512, 500.0), (200.0, 100.0, 512, 100.0), (800.0, 20.0, 16, 7.0)])
def test_first_turn_remainder_is_exact(m1, m2, B, s):
    """Turn 1 of tiny lengths in a large block, where the Fourier series stops at its
    100,000-term cap short of its bound: the chosen sum against the closed-form tails,
    within 1e-9 tokens."""
    assert grouped_remainder(s, ((m1, 1), (m2, 1)), B) == pytest.approx(
        _hypoexponential_remainder(s, m1, m2, B), abs=1e-9)


@pytest.mark.parametrize("x,k1,m1,k2,m2", [(4096.0, 3, 1.0, 3, 3.0), (100.0, 20, 3.0, 20, 1.0),
                                             (400.0, 60, 1.0, 60, 3.0), (300.0, 2, 100.0, 3, 7.0),
                                             (600.0, 100, 5.0, 100, 1.0), (900.0, 4, 1.0, 30, 50.0)])
def test_mixture_tail_matches_quadrature(x, k1, m1, k2, m2):
    """P(Y >= x) for two Erlang groups (the negative-binomial mixture of Erlangs) against
    Simpson's rule on the convolution with 50,000 intervals (its own error about 6e-10 at
    worst here), within 1e-9."""
    assert tail_probability(x, ((m1, k1), (m2, k2))) == pytest.approx(_tail_by_quadrature(x, k1, m1, k2, m2), abs=1e-9)


#: Worst cases of the direct and Fourier sums over block boundaries: (mean 1, mean 2, turns
#: j, block, offset), from the form's extremes (1- to 5-token turns in 4,096-token blocks).
def _boundary_groups(m1: float, m2: float, j: int) -> tuple:
    return ((m1, 2 * j),) if m1 == m2 else ((m1, j), (m2, j))


def _both_cheap(m1: float, m2: float, j: int, B: int, s: float) -> bool:
    """Both sums run here in well under a second: the series within 100,000 terms, the
    boundaries within 200,000 steps."""
    plan = direct_plan(s, _boundary_groups(m1, m2, j), B)
    return plan is not None and plan[2] <= 200_000 and fourier_terms(s, _boundary_groups(m1, m2, j), B) < 100_000


_BOUNDARY_GRID = [(m1, m2, j, B, s) for m1, m2 in ((1.0, 1.0), (3.0, 1.0), (1.0, 50.0), (5.0, 5.0), (200.0, 100.0))
                  for j in (2, 5, 30, 300) for B, s in ((4096, 0.0), (4096, 4000.0), (512, 300.0), (16, 7.0))
                  if _both_cheap(m1, m2, j, B, s)]


@pytest.mark.parametrize("m1,m2,j,B,s", _BOUNDARY_GRID)
def test_direct_sum_matches_fourier_series(m1, m2, j, B, s):
    """The sum over block boundaries against the Fourier series wherever both are cheap
    enough to run here (:func:`_both_cheap`; the grid's others take one of them seconds):
    within 1e-6 tokens (the series stops at a term below 1e-9 tokens; its tail beyond is
    about that times the terms summed / 2j)."""
    groups = _boundary_groups(m1, m2, j)
    assert direct_remainder(s, groups, B) == pytest.approx(fourier_remainder(s, groups, B), abs=1e-6)
    assert grouped_remainder(s, groups, B) == pytest.approx(fourier_remainder(s, groups, B), abs=1e-6)


@pytest.mark.parametrize("x,m1,m2,J", [(4096.0, 1.0, 1.0, 999), (2096.0, 3.0, 1.0, 999), (4096.0, 5.0, 1.0, 999),
                                        (96.0, 3.0, 1.0, 999), (4096.0, 1.0, 10.0, 600), (512.0, 50.0, 200.0, 7),
                                        (4096.0, 1.0, 0.0, 999), (1000.0, 100.0, 300.0, 50)])
@pytest.mark.parametrize("answers_cached", [True, False])
def test_reach_count_matches_the_sum_of_tails(x, m1, m2, J, answers_cached):
    """The expected turns whose history reaches x (only the turns near the crossing
    computed, the rest by Chernoff bounds and the renewal count's closed form) against the
    sum of every turn's probability (:func:`reach_probabilities`, 1 once it reaches 1),
    within 1e-9 turns; and the renewal count against the sum of P(Y_j < x) over j."""
    probs = reach_probabilities(x, m1, m2, J, answers_cached)
    assert reach_count(x, m1, m2, J, answers_cached) == pytest.approx(sum(probs) + (J - len(probs)), abs=1e-9)
    # sum_j P(Y_j < x) to where it vanishes
    longer = reach_probabilities(x, m1, m2, 100_000, answers_cached)
    assert longer[-1] >= 1 - 1e-10
    assert renewal_count(x, m1, m2, answers_cached) == pytest.approx(sum(1 - p for p in longer), abs=1e-8)


def test_reach_fixes_the_simpson_jump():
    # Simpson's rule on the convolution returned 1 at turn 441 (5 + 1 tokens, 4,096 to go);
    # the mean history then is 2,646 tokens, 13.5 standard deviations short
    assert reach_probabilities(4096.0, 5.0, 1.0, 441)[440] < 1e-30


_FIXED_WORST = [dict(input_tokens=1, output_tokens=1, block_size=4096, turns=1000),
                dict(input_tokens=3, output_tokens=1, block_size=4096, turns=1000, system_prompt_tokens=0),
                dict(input_tokens=5, output_tokens=1, block_size=4096, turns=300, system_prompt_tokens=4000)]


def _reference_remainder(offset, groups, B):
    groups = tuple((m, k) for m, k in groups if m > 0 and k > 0)
    if len(groups) == 1 and groups[0][1] == 1:
        return exponential_remainder(offset, groups[0][0], B)
    return fourier_remainder(offset, groups, B)


def _reference_reach(x, m1, m2, J, answers_cached=True):
    probs = reach_probabilities(x, m1, m2, J, answers_cached)
    return sum(probs) + (J - len(probs))


@pytest.mark.parametrize("values", _FIXED_WORST)
def test_fixed_turns_of_tiny_lengths_match_the_series(values, monkeypatch):
    """The form's worst inputs for fixed turns (1- to 5-token turns in 4,096-token blocks):
    the model's sums against the same model with every history's remainder by its Fourier
    series and the request hits summed turn by turn, within 1e-7 of the prompt tokens (the
    series of the first turns stops at 100,000 terms, about 0.03 tokens short)."""
    setup = resolve(Scenario.from_dict(dict(values, length_dist="exponential", turns_dist="fixed")))
    new = build_terms(setup)
    monkeypatch.setattr(model, "grouped_remainder", _reference_remainder)
    monkeypatch.setattr(model, "reach_count", _reference_reach)
    ref = build_terms(setup)
    for x, y in ((new.hit_sums[0], ref.hit_sums[0]), (new.cost_sums[0], ref.cost_sums[0]),
                 (new.cost_last, ref.cost_last)):
        assert x == pytest.approx(y, abs=1e-7 * ref.prompt_tokens)
    assert new.request_hit_turns == pytest.approx(ref.request_hit_turns, abs=1e-9 * ref.mean_turns)


@pytest.mark.parametrize("m1,m2,B,S", [(1.0, 1.0, 4096, 2000.0), (3.0, 1.0, 4096, 0.0), (5.0, 1.0, 4096, 4000.0),
                                        (1.0, 3.0, 4096, 2000.0), (5.0, 5.0, 512, 2000.0), (1.0, 0.0, 1024, 0.0),
                                        (300.0, 100.0, 512, 700.0)])
@pytest.mark.parametrize("answers_cached", [True, False])
def test_history_remainders_match_each_history(m1, m2, B, S, answers_cached):
    """A conversation's 300 histories at once (the inline no-boundary case, the direct sums
    and the shared series) against each history alone. One mean (an Erlang): the exact sum
    over boundaries with Erlang tails, within 1e-9 tokens. Two: the closed form for one
    length of each, else the Fourier series where it stops within N <= 100,000 terms,
    within 1e-9 N tokens (the series' own truncation: it stops at a term below 1e-9
    tokens, and the terms it leaves fall like n^-(2j+1), adding to at most N/2j of it)."""
    got = history_remainders(S, m1, m2, B, 300, answers_cached)
    for j in range(1, 301):
        k2 = j if answers_cached else j - 1
        groups = tuple((m, k) for m, k in ((m1, j), (m2, k2)) if m > 0 and k > 0)
        if len({m for m, _ in groups}) == 1:
            want, tol = _erlang_remainder_by_terms(S % B, groups[0][0], sum(k for _, k in groups), B), 1e-9
        elif groups == ((m1, 1), (m2, 1)):
            want, tol = _hypoexponential_remainder(S % B, m1, m2, B), 1e-9
        elif (n := fourier_terms(S % B, groups, B)) < 100_000:
            want, tol = fourier_remainder(S, groups, B), 1e-9 * n
        else:
            continue
        assert got[j - 1] == pytest.approx(want, abs=tol), j
