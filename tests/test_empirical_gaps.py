"""Empirical think times (``think_dist=empirical``, ``think_shape``; docs/model.md §12.4): the
key's validation and link round trip, the closed forms against numerical integration, a
lognormal written as 64 quantiles against ``think_dist=lognormal``, and the model against the
simulator."""

import json
import math

import pytest

from kvcache_calculator import ScenarioError
from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.analytic.popularity import (
    empirical_cdf_and_partial, empirical_quantile, lognormal_shape, shape_cv2, shape_quantiles,
)
from kvcache_calculator.scenario import DEFAULT_THINK_SHAPE, Scenario
from kvcache_calculator.sim.simulate import simulate

BIMODAL = (0.0, 0.05, 0.1, 0.2, 0.3, 2.0, 3.0, 4.0, 6.0)


def _cdf(g: float, q) -> float:
    """The piecewise-linear CDF through ``(q_i, i/n)``, written out independently."""
    n = len(q) - 1
    if g <= q[0]:
        return 0.0
    for i in range(n):
        if q[i] <= g < q[i + 1]:
            return (i + (g - q[i]) / (q[i + 1] - q[i])) / n
    return 1.0


def _integrals(T: float, mean: float, q) -> tuple[float, float]:
    """``(P(G < T), E[min(G, T)] = integral_0^T P(G > g) dg)`` by the midpoint rule between
    the knots (the survival jumps at a repeated quantile)."""
    edges = sorted({0.0, T, *(mean * v for v in q if mean * v < T)})
    total = 0.0
    for a, b in zip(edges, edges[1:]):
        steps = 2000
        h = (b - a) / steps
        total += sum(1.0 - _cdf((a + (i + 0.5) * h) / mean, q) for i in range(steps)) * h
    return _cdf(T / mean, q), total


@pytest.mark.parametrize("shape", [DEFAULT_THINK_SHAPE, BIMODAL, (1.0, 1.0, 2.0, 5.0)])
@pytest.mark.parametrize("T", [0.02, 0.7, 1.0, 3.3, 50.0])
def test_closed_forms_equal_numerical_integration(shape, T):
    q = shape_quantiles(shape)
    mean = 2.5
    F, M = empirical_cdf_and_partial(T * mean, mean, q)
    F_num, M_num = _integrals(T * mean, mean, q)
    assert F == pytest.approx(F_num, abs=1e-12)
    assert M == pytest.approx(M_num, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("shape", [DEFAULT_THINK_SHAPE, BIMODAL])
def test_shape_moments_and_inverse_cdf(shape):
    """Mean 1 after rescaling; cv^2 against the midpoint rule on the inverse CDF; the
    inverse CDF inverts the CDF."""
    q = shape_quantiles(shape)
    steps = 64_000
    draws = [empirical_quantile((i + 0.5) / steps, q) for i in range(steps)]
    assert sum(draws) / steps == pytest.approx(1.0, rel=1e-6)
    assert sum(d * d for d in draws) / steps - 1.0 == pytest.approx(shape_cv2(q), rel=1e-4)
    for u in (0.0, 0.03, 0.5, 0.97):
        assert _cdf(empirical_quantile(u, q), q) == pytest.approx(u, abs=1e-12)


@pytest.mark.parametrize("extra,capacity", [
    ({}, 200_000), ({}, 400_000), ({}, 800_000),
    ({"routing": "round_robin", "instances": 4}, 100_000),
    ({"routing": "round_robin", "instances": 4}, 400_000),
])
def test_a_lognormal_as_64_quantiles_matches_the_lognormal_model(extra, capacity):
    """Within 0.3 points (docs/model.md §12.4; seen: at most 0.25, round robin at 400k)."""
    base = dict(kv_cache_tokens=capacity, arrival_rate=2, think_time_s=30, **extra)
    lognormal = analyze(Scenario.from_dict({**base, "think_dist": "lognormal", "think_sigma": 1.0}))
    shape = ",".join(repr(v) for v in lognormal_shape(1.0, 64))
    empirical = analyze(Scenario.from_dict({**base, "think_dist": "empirical", "think_shape": shape}))
    assert empirical.token_hit_rate == pytest.approx(lognormal.token_hit_rate, abs=0.003)


@pytest.mark.parametrize("extra", [{}, {"routing": "round_robin", "instances": 2}])
def test_model_against_simulator(extra):
    """Seed 5, 20,000 conversations, the default shape (a lognormal of sigma 1 at 16
    segments): within 1.5 points (seen: model 0.65 and 0.92 points under; docs/model.md §12.4)."""
    s = Scenario.from_dict(dict(kv_cache_tokens=60_000, arrival_rate=0.5, think_time_s=30,
                                think_dist="empirical", **extra))
    sim = simulate(s, conversations=20_000, seed=5)
    assert analyze(s).token_hit_rate == pytest.approx(sim.token_hit_rate, abs=0.015)


def test_simulated_gaps_follow_the_shape():
    """Seed 2: the simulator's gaps have the think time as mean and the shape's median
    (tolerance: 4 standard errors of the mean; the median within 0.03 in probability)."""
    from kvcache_calculator.sim.simulate import Simulation
    s = Scenario.from_dict(dict(kv_cache_tokens=10_000, think_time_s=20, think_dist="empirical",
                                think_shape="0,1,2,10", system_prompt_tokens=0))
    sim = Simulation(s, conversations=3000, seed=2, record=True, in_flight=False)
    sim.run()
    times: dict = {}
    for t, cid, *_ in sim.records:
        times.setdefault(cid, []).append(t)
    gaps = [b - a for ts in times.values() for a, b in zip(ts, ts[1:])]
    q = shape_quantiles((0, 1, 2, 10))
    sd = 20 * math.sqrt(shape_cv2(q))
    assert sum(gaps) / len(gaps) == pytest.approx(20, abs=4 * sd / math.sqrt(len(gaps)))
    below = sum(1 for g in gaps if g < 20 * empirical_quantile(0.5, q)) / len(gaps)
    assert below == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("raw,says", [
    ("1,2", "3 to 65"),
    (",".join(str(i) for i in range(70)), "70 given"),
    ("0,2,1", "1 comes after 2"),
    ("-1,0,1", "-1 is negative"),
    ("0,1,x", "'x' is not a number"),
    ("0,1,inf", "'inf' is not a number"),
    ("2,2,2", "all values are equal"),
    ("", "3 to 65"),
])
def test_bad_shapes_name_the_field(raw, says):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({"think_dist": "empirical", "think_shape": raw})
    assert err.value.key == "think_shape"
    assert says in str(err.value)


def test_link_and_json_round_trip():
    s = Scenario.from_dict({"think_dist": "empirical", "think_shape": "0, 0.5,1, 4.25", "think_time_s": 12})
    assert s.think_shape == (0.0, 0.5, 1.0, 4.25)
    fragment = s.to_fragment()
    assert "think_shape=0%2C0.5%2C1%2C4.25" in fragment
    assert Scenario.from_fragment(fragment) == s
    assert Scenario.from_json(s.to_json()) == s
    assert json.loads(s.to_json())["think_shape"] == [0.0, 0.5, 1.0, 4.25]
    assert Scenario.from_dict({"think_dist": "empirical"}).to_fragment() == "think_dist=empirical"
    # the values are kept as given; the model and the simulator rescale them to mean 1
    assert shape_quantiles(s.think_shape)[-1] == pytest.approx(4.25 / ((0.5 + 1 + (0 + 4.25) / 2) / 3))


def test_think_time_sets_the_mean_and_the_shape_its_spread():
    """Scaling the shape changes nothing; doubling the think time is the same as doubling
    every gap (the hit rate moves)."""
    base = dict(kv_cache_tokens=300_000, think_dist="empirical")
    a = analyze(Scenario.from_dict({**base, "think_shape": "0,1,2,10"})).token_hit_rate
    b = analyze(Scenario.from_dict({**base, "think_shape": "0,3,6,30"})).token_hit_rate
    c = analyze(Scenario.from_dict({**base, "think_shape": "0,1,2,10", "think_time_s": 120})).token_hit_rate
    assert a == pytest.approx(b, abs=1e-12)
    assert c != pytest.approx(a, abs=1e-4)


def test_fit_reports_the_gaps_shape():
    """Seed 4, 5,000 lognormal gaps of sigma 1: the fitted shape's inner quantiles within 0.05
    (in means) of the lognormal's, its cv^2 within 0.3 of the 16-segment lognormal shape's
    (the top segment rests on the few largest gaps); too few or equal gaps give none."""
    import random
    from kvcache_calculator.traces.fit import fit_think_times, gap_shape
    rng = random.Random(4)
    gaps = [rng.lognormvariate(math.log(60) - 0.5, 1.0) for _ in range(5000)]
    think = fit_think_times(gaps)
    assert think["dist"] == "lognormal"          # the automatic choice never picks it
    shape = think["think_shape"]
    want = lognormal_shape(1.0, 16)
    assert len(shape) == 17 and shape[0] >= 0
    for got, ref in zip(shape[1:-1], want[1:-1]):
        assert got == pytest.approx(ref, abs=0.05)
    assert shape_cv2(shape_quantiles(shape)) == pytest.approx(shape_cv2(want), abs=0.3)
    assert gap_shape(gaps[:10]) is None and gap_shape([5.0] * 40) is None
    Scenario.from_dict({"think_dist": "empirical", "think_shape": shape})   # a valid key


def test_replay_fit_think_empirical_gives_a_valid_link():
    """``fit_think="empirical"``: the fitted scenario uses the trace's gap shape and its link
    parses; its hit rate is within 1 point of the lognormal fit's (seed 5, one hour)."""
    from kvcache_calculator.traces.fit import fit_report, fit_scenario
    from kvcache_calculator.traces.synthetic import generate_workload
    requests = generate_workload(1800.0, 5, block_size=32, arrival_rate=1.0, turns=4.0, think_time_s=60.0,
                                 think_dist="lognormal", think_sigma=1.0, input_tokens=300,
                                 output_tokens=150, system_prompt_tokens=256)
    auto = fit_scenario(requests, 32)
    emp = fit_scenario(requests, 32, fit_think="empirical")
    assert auto["think_dist"] == "lognormal" and "think_shape" not in auto
    assert emp["think_dist"] == "empirical" and "think_sigma" not in emp
    assert len(emp["think_shape"]) == 17
    assert emp["think_time_s"] == pytest.approx(60, rel=0.1)
    assert "think_shape=" in emp["link"]
    assert any(line.startswith("Fitted:") and "think_shape=0" in line for line in fit_report(emp))
    rates = []
    for fit in (auto, emp):
        s = Scenario.from_fragment(fit["link"]).replace(kv_cache_tokens=50_000)
        rates.append(analyze(s).token_hit_rate)
    assert rates[1] == pytest.approx(rates[0], abs=0.01)
    with pytest.raises(ScenarioError):
        fit_scenario(requests, 32, fit_think="histogram")


def test_cli_replay_fit_think_empirical(tmp_path, capsys):
    """``replay --fit --fit-think empirical --json``: the fitted scenario is empirical and its
    link parses; without the option the fit is lognormal (seed 5, half an hour)."""
    import argparse
    from kvcache_calculator.cli import replay as cli_replay
    from kvcache_calculator.traces.synthetic import generate_workload, mooncake_lines
    requests = generate_workload(1800.0, 5, block_size=32, arrival_rate=1.0, turns=4.0, think_time_s=60.0,
                                 think_dist="lognormal", think_sigma=1.0, input_tokens=300,
                                 output_tokens=150, system_prompt_tokens=256)
    path = tmp_path / "t.jsonl"
    path.write_text("".join(line + "\n" for line in mooncake_lines(requests)))
    fitted = {}
    for how in ("auto", "empirical"):
        parser = argparse.ArgumentParser(prog="kvcache-calc")
        cli_replay.register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["replay", str(path), "--block-size", "32", "--capacity-blocks", "1000",
                                  "--fit", "--fit-think", how, "--json"])
        assert args.func(args) == 0
        fitted[how] = json.loads(capsys.readouterr().out)["fit"]["scenario"]
    assert fitted["auto"]["think_dist"] == "lognormal"
    assert fitted["empirical"]["think_dist"] == "empirical"
    assert fitted["empirical"]["diagnostics"]["think_time"]["think_shape"] == fitted["empirical"]["think_shape"]
    assert Scenario.from_fragment(fitted["empirical"]["link"]).think_dist == "empirical"
