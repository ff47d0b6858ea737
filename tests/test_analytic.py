"""The characteristic-time model against plain re-derivations of its formulas (docs/model.md §5-§7)."""

import math

import pytest

from kvcache_calculator.analytic.model import (
    analyze, analyze_setup, build_terms, capacity_for_hit_rate, fixed_gap_hit_probabilities, gap_sums, hits,
    occupancy, solve_characteristic_time, token_hit_rate_at, with_service,
)
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve

BASE = dict(model="llama-3.1-8b", gpu="h100-sxm")


def scen(**kw):
    return Scenario.from_dict({**BASE, **kw})


def erlang_cdf(m, theta, T):
    x = T / theta
    return 1 - sum(math.exp(-x) * x ** i / math.factorial(i) for i in range(m))


def erlang_min_mean(m, theta, T, steps=4000):
    # E[min(X, T)] = integral_0^T P(X > t) dt, by the midpoint rule
    h = T / steps
    return sum((1 - erlang_cdf(m, theta, (i + 0.5) * h)) * h for i in range(steps))


def brute_force(s: Scenario, T: float, nmax: int = 400, service: float = 0.0):
    """Expected occupancy, hit tokens and prompt tokens per conversation, summed plainly over
    N, turns and instances-ago, straight from the definitions of docs/model.md §4-§6: a copy
    left m turns ago has been idle m gaps and the ``service`` of each of the m - 1 turns
    served elsewhere meanwhile."""
    S, In, Out, B = s.system_prompt_tokens, s.input_tokens, s.output_tokens, s.block_size
    step = In + Out
    q = 1.0 if (s.routing == "session" or s.instances == 1) else 1 / s.instances
    Sb = S // B * B
    theta = s.think_time_s
    if s.turns_dist == "fixed":
        pN = {int(s.turns): 1.0}
    else:
        p = 1 / s.turns
        pN = {n: p * (1 - p) ** (n - 1) for n in range(1, nmax)}
    mean_turns = sum(n * w for n, w in pN.items())
    shared_rate = s.arrival_rate / s.instances * mean_turns / s.num_system_prompts
    K = s.num_system_prompts
    # a system prompt survives if one of the last max(1, requests in T + service) requests used it
    p_sys = 1.0 if K == 1 else 1 - (1 - 1 / K) ** max(1.0, shared_rate * K * (T + service))
    cached = lambda j: (S + j * step) // B * B  # noqa: E731
    def wait(m):                               # the turns served elsewhere add to the idle time
        return (m - 1) * service if q < 1 else 0.0

    F = {m: erlang_cdf(m, theta, T - wait(m)) if T > wait(m) else 0.0 for m in range(1, 60)}
    M = {m: wait(m) + erlang_min_mean(m, theta, T - wait(m), 400) if T > wait(m) else T for m in range(1, 12)}
    occ = hit = prompt = 0.0
    for n, w in pN.items():
        if w < 1e-13:
            continue
        for k in range(1, n + 1):
            prompt += w * (S + (k - 1) * step + In)
            if k == 1:
                hit += w * p_sys * Sb
            else:
                found = 0.0
                for m in range(1, k):
                    pm = q * (1 - q) ** (m - 1) * F[min(m, 59)]
                    found += pm
                    hit += w * pm * cached(k - m)
                hit += w * (1 - found) * p_sys * Sb
        for j in range(1, n + 1):
            dur = sum(q * (1 - q) ** (r - 1) * M[r] for r in range(1, min(n - j, 11) + 1))
            dur += (1 - q) ** (n - j) * T
            occ += w * (cached(j) - Sb) * dur
    occ = s.arrival_rate / s.instances * occ + s.num_system_prompts * Sb * p_sys
    return occ, hit, prompt


@pytest.mark.parametrize("kw", [
    dict(turns=4, turns_dist="fixed", system_prompt_tokens=0),
    dict(turns=3, turns_dist="geometric"),
    dict(turns=4, turns_dist="fixed", instances=3, routing="random"),
    dict(turns=2.5, turns_dist="geometric", instances=2, routing="round_robin", num_system_prompts=3),
])
@pytest.mark.parametrize("T", [5.0, 40.0, 300.0])
@pytest.mark.parametrize("service", [0.0, 7.0])
def test_closed_forms_match_plain_sums(kw, T, service):
    s = scen(think_time_s=30, input_tokens=300, output_tokens=200, **kw)
    terms = with_service(build_terms(resolve(s)), service)
    occ, hit, prompt = brute_force(s, T, service=service)
    assert terms.prompt_tokens == pytest.approx(prompt, rel=1e-9)
    assert hits(terms, T)[0] == pytest.approx(hit, rel=1e-9)
    # the brute force integrates M_r numerically (midpoint rule): 1e-4 relative
    assert occupancy(terms, T) == pytest.approx(occ, rel=1e-4)


def test_characteristic_time_is_the_root_of_occupancy():
    s = scen(arrival_rate=3)
    r = analyze(s)
    terms = build_terms(resolve(s))
    # the histories fill what the running requests leave
    assert r.in_flight_tokens > 0.1 * r.capacity_tokens
    assert occupancy(terms, r.characteristic_time_s) == pytest.approx(r.capacity_tokens - r.in_flight_tokens, rel=1e-9)
    assert r.token_hit_rate == pytest.approx(token_hit_rate_at(terms, r.characteristic_time_s))


def test_ceiling_is_one_minus_one_over_turns_without_system_prompt():
    s = scen(turns=5, turns_dist="fixed", system_prompt_tokens=0, kv_cache_tokens=10**11)
    r = analyze(s)
    assert r.max_request_hit_rate == pytest.approx(1 - 1 / 5)
    # an enormous cache: idle histories live for months, every later turn hits
    assert r.characteristic_time_s > 1e6
    assert r.token_hit_rate == pytest.approx(r.max_token_hit_rate, rel=1e-6)
    # the token ceiling: turn k hits floor((k-1)*800/16)*16 of its prompt, turns 2..5
    prompts = [(k - 1) * 800 + 500 for k in range(1, 6)]
    hit = [(k - 1) * 800 // 16 * 16 for k in range(1, 6)]
    assert r.max_token_hit_rate == pytest.approx(sum(hit) / sum(prompts))


def test_block_rounding_and_last_token_rule():
    # 10-token turns with 16-token blocks: nothing but whole blocks is ever reused
    s = scen(turns=2, turns_dist="fixed", system_prompt_tokens=0, input_tokens=7, output_tokens=3,
             kv_cache_tokens=10**9)
    r = analyze(s)
    # turn 2's prompt is 17 tokens; the history (10 tokens) is less than one block: no hit
    assert r.max_token_hit_rate == 0.0
    assert r.max_request_hit_rate == 0.0


def test_one_instance_any_routing_is_session_affinity():
    a = analyze(scen(routing="random", instances=1, arrival_rate=2))
    b = analyze(scen(routing="session", instances=1, arrival_rate=2))
    assert a.token_hit_rate == b.token_hit_rate


def test_session_affinity_beats_random_routing():
    a = analyze(scen(routing="session", instances=4, arrival_rate=4))
    b = analyze(scen(routing="random", instances=4, arrival_rate=4))
    assert a.token_hit_rate > b.token_hit_rate
    assert a.max_token_hit_rate > b.max_token_hit_rate


def test_offload_tier_adds_hits_only_when_larger_than_the_gpu_cache():
    base = scen(arrival_rate=4)
    small = analyze(base.replace(offload_gib=10))
    big = analyze(base.replace(offload_gib=500))
    assert small.token_hit_rate == analyze(base).token_hit_rate
    assert big.token_hit_rate > small.token_hit_rate
    assert big.offload_token_hit_rate == pytest.approx(big.token_hit_rate - big.gpu_token_hit_rate)
    assert big.offload_characteristic_time_s > big.characteristic_time_s


def test_capacity_for_hit_rate_inverts_the_model():
    s = scen(arrival_rate=3)
    tokens, ceiling = capacity_for_hit_rate(resolve(s), 0.7)
    assert tokens is not None and 0.7 < ceiling
    r = analyze(s.replace(kv_cache_tokens=int(math.ceil(tokens / 16)) * 16 + 16))
    assert r.token_hit_rate == pytest.approx(0.7, abs=2e-3)
    assert capacity_for_hit_rate(resolve(s), 0.99) == (None, pytest.approx(ceiling))


def test_model_that_does_not_fit_says_so():
    r = analyze(scen(model="llama-3.1-405b"))
    assert not r.fits
    assert r.token_hit_rate == 0.0 and r.capacity_tokens == 0
    assert "needs" in r.message and "GiB" in r.message


def test_solver_handles_extremes():
    s = scen()
    terms = build_terms(resolve(s))
    assert solve_characteristic_time(terms, 0) == 0.0
    assert math.isinf(solve_characteristic_time(terms, 1e30))
    t1 = solve_characteristic_time(terms, 1e5)
    t2 = solve_characteristic_time(terms, 2e5)
    assert 0 < t1 < t2


def test_fixed_gaps_step_is_smoothed_by_the_occupancys_fluctuation():
    """With fixed gaps the history is found when T exceeds the think time, a step that the
    occupancy's fluctuation smooths (docs/model.md §12.4): the hit rate rises through it,
    half-way about where O(T) = O(theta), and is the step's own value far from it."""
    s = scen(think_dist="fixed", turns_dist="fixed", turns=3, think_time_s=60)
    terms = build_terms(resolve(s))
    rates = [token_hit_rate_at(terms, t) for t in (10, 30, 55, 59.9, 60.1, 65, 120, 600)]
    assert rates == sorted(rates)
    step_below = gap_sums(terms, 30, 60, terms.sys_hit_tokens)[1] / terms.prompt_tokens
    step_above = gap_sums(terms, 600, 60, terms.sys_hit_tokens)[1] / terms.prompt_tokens
    assert rates[0] == pytest.approx(step_below, abs=1e-6)
    assert rates[-1] == pytest.approx(step_above, abs=1e-6)
    assert step_below < rates[3] < rates[4] < step_above
    f = fixed_gap_hit_probabilities(terms, 60.0, 60.0, terms.traffic.conv_rate_per_instance)
    assert f[0] == pytest.approx(0.5)            # O(T) = O(theta) at T = theta


def test_geometric_closed_forms_equal_term_by_term_sums():
    import random

    rng = random.Random(11)
    for _ in range(200):
        s = scen(turns=rng.choice([1.5, 2, 5, 17.3, 100, 1000]), input_tokens=rng.randint(1, 3000),
                 output_tokens=rng.randint(0, 2000), system_prompt_tokens=rng.choice([0, 5, 16, 17, 2000, 4097]),
                 block_size=rng.choice([1, 16, 32, 512]), instances=rng.choice([1, 2, 8]),
                 routing=rng.choice(["session", "random"]))
        setup = resolve(s)
        fast, slow = build_terms(setup), build_terms(setup, closed_form=False)
        for name in ("mean_turns", "prompt_tokens", "cost_last", "request_hit_turns"):
            assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=1e-9), name
        for name in ("hit_sums", "turn_sums", "cost_sums"):
            a, b = getattr(fast, name), getattr(slow, name)
            assert len(a) == len(b)
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9 * max(b)), name


def test_analyze_is_the_analysis_of_the_resolved_scenario():
    s = scen(arrival_rate=3, routing="random", instances=2)
    assert analyze(s) == analyze_setup(resolve(s))


def test_per_sequence_state_is_part_of_every_analysis():
    """A model with sliding windows holds per-sequence KV beyond its growing layers: the terms
    of its setup always count it (no caller can leave the architecture out)."""
    s = scen(model="gpt-oss-20b")
    setup = resolve(s)
    assert setup.capacity.kv_bytes_per_sequence_fixed_per_gpu > 0
    terms = build_terms(setup)
    plain = build_terms(resolve(scen(model="gpt-oss-20b", sliding_layers=0)))
    assert terms.cost_sums[0] > plain.cost_sums[0]
    assert occupancy(terms, 60.0) > occupancy(plain, 60.0)
