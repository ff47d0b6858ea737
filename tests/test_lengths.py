"""Random lengths (docs/model.md §13): the mean remainder of a history in whole blocks, its
closed forms against term-by-term sums, and the model's sums with ``length_dist``."""

import math
import random

import pytest

from kvcache_calculator.analytic.lengths import exponential_remainder, sum_remainder
from kvcache_calculator.analytic.model import build_terms
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve


def _erlang_remainder_by_terms(offset: float, mean: float, j: int, B: int) -> float:
    """E[(offset + Y) mod B] for Y Erlang(j, mean), from E[floor((offset+Y)/B)] =
    sum_k P(Y >= kB - offset), term by term (Erlang tail in closed form)."""
    floors = 0.0
    for k in range(1, 100_000):
        y = k * B - offset
        if y <= 0:
            floors += 1.0
            continue
        x = y / mean
        tail = math.exp(-x) * sum(x ** i / math.factorial(i) for i in range(j))
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
