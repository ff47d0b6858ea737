"""Closed forms of docs/model.md §12 against term-by-term sums and numeric integration:
Zipf popularity groups, lognormal gaps, shared documents and popular system prompts."""

from __future__ import annotations

import math
import random

import pytest

from kvcache_calculator.analytic.model import (
    analyze, build_terms, document_cache, document_window, gap_sums, system_prompt_cache, traffic_of,
)
from kvcache_calculator.analytic.popularity import (
    erlang_cdf_and_partial, lognormal_cdf_and_partial, lognormal_sigma_of_sum, normal_cdf, product_groups,
    zipf_groups,
)
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve


def _integrate(f, a: float, b: float, n: int = 20_000) -> float:
    """Simpson's rule on [a, b] with n (even) intervals."""
    h = (b - a) / n
    return h / 3 * (f(a) + f(b) + sum((4 if i % 2 else 2) * f(a + i * h) for i in range(1, n)))


@pytest.mark.parametrize("sigma", [0.1, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("T", [0.2, 1.0, 3.0, 20.0])
def test_lognormal_closed_forms_equal_numeric_integration(sigma, T):
    """P(G < T) and E[min(G, T)] for a lognormal of mean 1, integrated in u = log g."""
    mu = -0.5 * sigma * sigma

    def density_u(u: float) -> float:          # density of log G at u
        return math.exp(-0.5 * ((u - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))

    lo = mu - 12 * sigma
    cdf = _integrate(density_u, lo, math.log(T))
    partial = _integrate(lambda u: math.exp(u) * density_u(u), lo, math.log(T)) + T * (1 - cdf)
    F, M = lognormal_cdf_and_partial(T, 1.0, sigma)
    assert F == pytest.approx(cdf, abs=1e-9)
    assert M == pytest.approx(partial, rel=1e-8)
    assert lognormal_cdf_and_partial(math.inf, 1.0, sigma) == (1.0, 1.0)
    assert lognormal_cdf_and_partial(0.0, 1.0, sigma) == (0.0, 0.0)


@pytest.mark.parametrize("k", [1, 2, 7, 40])
@pytest.mark.parametrize("t", [0.05, 1.0, 9.0, 40.0, 120.0])
def test_erlang_closed_forms_equal_term_by_term_sums(k, t):
    """P(X < t) and E[min(X, t)] for the sum of k exponential gaps of mean 1.5: the Poisson
    terms summed in full, and E[min(X, t)] = integral_0^t P(X > u) du by Simpson's rule."""
    theta = 1.5

    def survival(u: float) -> float:          # P(X > u) = P(Poisson(u/theta) <= k - 1)
        x = u / theta
        return sum(math.exp(-x + i * math.log(x) - math.lgamma(i + 1)) for i in range(k)) if x > 0 else 1.0

    F, M = erlang_cdf_and_partial(t, k, theta)
    assert F == pytest.approx(1 - survival(t), rel=1e-9, abs=1e-15)
    assert M == pytest.approx(_integrate(survival, 0.0, t, 4_000), rel=1e-9)
    assert erlang_cdf_and_partial(0.0, k, theta) == (0.0, 0.0)


def test_sum_of_lognormals_keeps_mean_and_variance():
    for sigma in (0.3, 1.0, 1.7):
        for m in (1, 2, 7):
            sm = lognormal_sigma_of_sum(sigma, m)
            # variance of a lognormal of mean m: m^2 (e^{sm^2} - 1) = m (e^{sigma^2} - 1)
            assert m * m * math.expm1(sm * sm) == pytest.approx(m * math.expm1(sigma * sigma), rel=1e-12)
    assert normal_cdf(0) == 0.5 and normal_cdf(-40) == 0.0


@pytest.mark.parametrize("n,alpha", [(1, 1.0), (10, 0.0), (50, 1.2), (3000, 0.8), (100_000, 1.0), (100_000, 2.5)])
def test_zipf_groups_equal_term_by_term_sums(n, alpha):
    """Groups sum to probability 1 and count n; a Che-type sum over them matches the sum over
    every rank (rel. 5e-4)."""
    groups = zipf_groups(n, alpha)
    assert sum(c for c, _ in groups) == pytest.approx(n)
    assert sum(c * p for c, p in groups) == pytest.approx(1.0, rel=1e-12)
    weights = [i ** -alpha for i in range(1, n + 1)]
    total = sum(weights)
    for scale in (1.0, 10.0 * n, 1000.0 * n):
        exact = sum(-math.expm1(-scale * w / total) for w in weights)
        grouped = sum(c * -math.expm1(-scale * p) for c, p in groups)
        assert grouped == pytest.approx(exact, rel=5e-4), scale
    if alpha > 0 and n > 1000:
        assert len(groups) < n / 10


def test_product_groups_equal_the_pairs():
    first, second = zipf_groups(300, 1.0), zipf_groups(2000, 0.7)
    pairs = product_groups(first, second)
    assert sum(c * p for c, p in pairs) == pytest.approx(1.0, rel=1e-9)
    exact = [p1 * p2 for c1, p1 in first for c2, p2 in second for _ in range(1) for __ in [c1 * c2]]
    counts = [c1 * c2 for c1, _ in first for c2, _ in second]
    for scale in (1e3, 1e5, 1e7):
        want = sum(c * -math.expm1(-scale * p) for c, p in zip(counts, exact))
        got = sum(c * -math.expm1(-scale * p) for c, p in pairs)
        assert got == pytest.approx(want, rel=1e-3)


def _scenario(**changes) -> Scenario:
    return Scenario.from_dict({"kv_cache_tokens": 300_000, "arrival_rate": 2, "think_time_s": 20, **changes})


def test_system_prompt_popularity_equals_a_sum_over_prompts():
    """Zipf prompts: the mean survival over requests and the prompts cached equal the sums
    over every prompt of ``1 - (1 - pi_k)^n`` (ranks past 16 grouped: rel. 5e-4); exponent 0 is
    the equal-use formula."""
    for K, alpha in ((7, 1.3), (40, 0.6)):
        s = _scenario(num_system_prompts=K, system_prompt_zipf=alpha)
        traffic = traffic_of(s, 5.0, 1984.0)
        weights = [i ** -alpha for i in range(1, K + 1)]
        pis = [w / sum(weights) for w in weights]
        for T in (0.1, 3.0, 60.0):
            n = max(1.0, traffic.shared_rate * K * T)
            kept = [1 - (1 - pi) ** n for pi in pis]
            p, cached = system_prompt_cache(traffic, T)
            assert p == pytest.approx(sum(pi * k for pi, k in zip(pis, kept)), rel=5e-4)
            assert cached == pytest.approx(sum(kept), rel=5e-4)
    equal = traffic_of(_scenario(num_system_prompts=9), 5.0, 1984.0)
    assert equal.sys_groups == ()
    p, cached = system_prompt_cache(equal, 2.0)
    n = max(1.0, equal.shared_rate * 9 * 2.0)
    assert p == pytest.approx(1 - (1 - 1 / 9) ** n) and cached == pytest.approx(9 * p)


def test_document_cache_equals_a_sum_over_pairs():
    """Each (prompt, document) pair is cached with ``1 - exp(-doc_rate * pi * window)`` (120
    pairs: kept one by one; documents past rank 16 grouped, rel. 5e-4)."""
    s = _scenario(num_system_prompts=3, system_prompt_zipf=1.0, num_documents=40, document_zipf=0.9,
                  document_share=0.6)
    traffic = traffic_of(s, 5.0, 1984.0, doc_tokens=2000.0)
    sys_w = [i ** -1.0 for i in range(1, 4)]
    doc_w = [i ** -0.9 for i in range(1, 41)]
    pis = [a / sum(sys_w) * b / sum(doc_w) for a in sys_w for b in doc_w]
    for window in (0.5, 30.0, 900.0):
        kept = [-math.expm1(-2 * 0.6 * pi * window) for pi in pis]
        p, cached = document_cache(traffic, window)
        assert p == pytest.approx(sum(pi * k for pi, k in zip(pis, kept)), rel=5e-4)
        assert cached == pytest.approx(sum(kept), rel=5e-4)


@pytest.mark.parametrize("changes", [{}, {"turns_dist": "fixed", "turns": 4}, {"think_dist": "lognormal"}])
def test_document_window_of_a_sticky_conversation(changes):
    """One instance: a conversation's window is ``T + (E[N] - 1) E[min(G, T)]`` (the union of
    the intervals within T after each of its requests), with no service time."""
    s = _scenario(num_documents=10, **changes)
    terms = build_terms(resolve(s))
    terms = terms.__class__(**{**terms.__dict__, "traffic": terms.traffic.__class__(
        **{**terms.traffic.__dict__, "service_s": 0.0})})
    for T in (1.0, 20.0, 400.0):
        if s.think_dist == "lognormal":
            M1 = lognormal_cdf_and_partial(T, 20.0, s.think_sigma)[1]
        else:
            M1 = 20.0 * -math.expm1(-T / 20.0)
        assert document_window(terms, T) == pytest.approx(T + (terms.mean_turns - 1) * M1, rel=1e-12)


def test_documents_for_every_conversation_are_a_longer_shared_prefix():
    """With a document in every conversation, the sums over turns are those of a system
    prompt ``S + document_tokens`` long, the document's blocks shared apart."""
    s = _scenario(num_documents=10, document_share=1.0, document_tokens=1000, system_prompt_tokens=2000)
    longer = _scenario(system_prompt_tokens=3000)
    a, b = build_terms(resolve(s)), build_terms(resolve(longer))
    assert a.hit_sums == pytest.approx(b.hit_sums) and a.cost_sums == pytest.approx(b.cost_sums)
    assert a.prompt_tokens == pytest.approx(b.prompt_tokens)
    assert a.sys_hit_tokens == 2000 and a.doc_tokens == 992        # (3000 // 16 - 2000 // 16) * 16


def test_documents_raise_the_ceiling_and_popularity_raises_the_hit_rate():
    base = analyze(_scenario())
    docs = analyze(_scenario(num_documents=100))
    assert docs.max_token_hit_rate > base.max_token_hit_rate
    flat = analyze(_scenario(num_documents=1000, document_zipf=0.0, document_share=1.0))
    skewed = analyze(_scenario(num_documents=1000, document_zipf=1.5, document_share=1.0))
    assert skewed.token_hit_rate > flat.token_hit_rate


def test_lognormal_gaps_in_the_loop_equal_the_closed_forms():
    """Sticky routing: gap_sums' F_1 and the history's token-seconds use the closed forms."""
    s = _scenario(think_dist="lognormal", think_sigma=1.3)
    terms = build_terms(resolve(s))
    for T in (2.0, 20.0, 200.0):
        A, _, _, f1 = gap_sums(terms, T, 20.0, hit_sums=False)
        F, M = lognormal_cdf_and_partial(T, 20.0, 1.3)
        assert f1 == pytest.approx(F, rel=1e-12)
        assert A == pytest.approx(M * terms.cost_sums[0] + T * terms.cost_last, rel=1e-12)


def test_random_scenarios_with_shared_content_solve():
    """Any mix of the new keys gives rates in [0, 1], below the ceiling."""
    rng = random.Random(5)
    for _ in range(40):
        s = _scenario(num_documents=rng.choice([0, 1, 30, 10_000]), document_tokens=rng.choice([1, 700, 9000]),
                      document_share=rng.random(), document_zipf=rng.choice([0, 0.7, 3]),
                      num_system_prompts=rng.choice([1, 5, 5000]), system_prompt_zipf=rng.choice([0, 1.1]),
                      think_dist=rng.choice(["exponential", "fixed", "lognormal"]), think_sigma=rng.choice([0.05, 1, 4]),
                      instances=rng.choice([1, 3]), routing=rng.choice(["session", "random"]))
        r = analyze(s)
        assert 0 <= r.token_hit_rate <= r.max_token_hit_rate + 1e-12 <= 1 + 1e-12, s.changed()
