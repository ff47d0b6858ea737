"""The scenario fitter (traces/fit.py), conversation inference (traces/inference.py) and the
workload generator (traces/synthetic.py): known parameters recovered from generated traces,
within stated tolerances; clamps explained in words."""

from __future__ import annotations

import math
import random

import pytest

from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario
from kvcache_calculator.traces.fit import (
    clamp_to_form,
    fit_report,
    fit_scenario,
    fit_think_times,
    fit_zipf,
    model_scenario,
    replay_view,
)
from kvcache_calculator.traces.readers import read_trace
from kvcache_calculator.traces.synthetic import generate_requests, generate_workload, mooncake_lines

# A workload with everything the fit looks for. Block size 32: first turns almost always fill
# a block of their own, so every turn can be linked to the one before (with 512-token blocks
# a first message shorter than a block shares no block with its next turn; see
# docs/model.md §10.6).
TRUTH = dict(arrival_rate=1.0, turns=4.0, think_time_s=60.0, think_dist="lognormal",
             think_sigma=1.0, input_tokens=300, output_tokens=150, system_prompt_tokens=256,
             num_system_prompts=6, system_prompt_zipf=1.0, num_documents=30,
             document_tokens=1024, document_share=0.5, document_zipf=0.8)


@pytest.fixture(scope="module")
def generated():
    requests = generate_workload(3600.0, 5, block_size=32, **TRUTH)
    return requests, fit_scenario(requests, 32)


def test_zipf_exponent_recovered_from_draws():
    rng = random.Random(3)
    for s in (0.6, 1.0, 1.5):
        weights = [1 / k ** s for k in range(1, 51)]
        counts = [0] * 50
        for k in rng.choices(range(50), weights, k=20_000):
            counts[k] += 1
        assert fit_zipf(counts) == pytest.approx(s, abs=0.05)
    assert fit_zipf([100] * 20) == 0.0 and fit_zipf([7]) == 0.0


def test_think_time_shape_chosen_by_likelihood():
    rng = random.Random(4)
    logn = [rng.lognormvariate(math.log(60) - 0.5, 1.0) for _ in range(5000)]
    fit = fit_think_times(logn)
    assert fit["dist"] == "lognormal"
    assert fit["sigma"] == pytest.approx(1.0, abs=0.05)
    assert fit["mean_s"] == pytest.approx(60, rel=0.08)
    expo = [rng.expovariate(1 / 30) for _ in range(5000)]
    assert fit_think_times(expo)["dist"] == "exponential"
    assert fit_think_times([12.0] * 50)["dist"] == "fixed"
    # too few gaps to tell a shape: exponential
    assert fit_think_times(logn[:10])["dist"] == "exponential"


def test_generated_trace_parameters_recovered(generated):
    """Seed 5, one hour, 14k requests. Tolerances: rates, turns and means within 10 %
    (conversations still running at the end are cut, which shortens them), sigma and Zipf
    exponents within 0.1, the raw document share within 0.05."""
    _, fit = generated
    d = fit["diagnostics"]
    assert fit["arrival_rate"] == pytest.approx(1.0, rel=0.1)
    assert fit["turns"] == pytest.approx(4.0, rel=0.1)
    assert fit["think_dist"] == "lognormal"
    assert fit["think_time_s"] == pytest.approx(60, rel=0.1)
    assert fit["think_sigma"] == pytest.approx(1.0, abs=0.1)
    assert fit["output_tokens"] == pytest.approx(150, rel=0.05)
    assert fit["system_prompt_tokens"] == 256 and fit["num_system_prompts"] == 6
    assert fit["system_prompt_zipf"] == pytest.approx(1.0, abs=0.1)
    assert fit["document_tokens"] == 1024
    assert fit["document_zipf"] == pytest.approx(0.8, abs=0.1)
    assert d["document_share_of_conversations"] == pytest.approx(0.5, abs=0.05)
    assert fit["document_share"] == pytest.approx(d["document_share_of_conversations"], abs=1e-3)
    # runs are (prompt, document) pairs (a prefix hash includes what precedes it); the fit
    # reports runs over prompts, so the model's 6 x num_documents pairs match the runs
    assert 30 <= d["document_runs"] <= 6 * 30
    assert fit["num_documents"] == round(d["document_runs"] / 6)
    # new tokens per request: the generator's 300, plus each document's first use
    first_uses = d["document_runs"] * 1024 / d["requests"]
    assert fit["input_tokens"] == pytest.approx(300 + first_uses, rel=0.1)
    assert not fit["explanations"]


def test_several_system_prompts_are_not_chained_into_one_conversation():
    # The trace the old fitter read as one conversation of 2,528 turns: 200 Zipf-popular
    # system prompts of 1-8 blocks, 4 turns on average.
    requests = list(generate_requests(3000, seed=2, request_rate=5.0, think_time_s=30.0))
    fit = fit_scenario(requests, 512)
    assert fit["turns"] == pytest.approx(4.0, rel=0.25)
    assert fit["num_system_prompts"] >= 20
    assert fit["system_prompt_zipf"] > 0.5
    assert not fit["explanations"]
    Scenario.from_dict(model_scenario(fit)[0])     # the model takes its own fit


def test_out_of_range_values_are_clamped_and_explained_in_words():
    used, text = clamp_to_form("turns", 12_030.0)
    assert used == FIELD_BY_KEY["turns"].maximum
    assert "more than the form allows" in text and "12,030" in text
    assert "different users" in text and "got" not in text
    used, text = clamp_to_form("document_share", 1.4)
    assert used == 1 and "at most 1" in text
    assert clamp_to_form("input_tokens", 700.4) == (700, None)


def test_a_chained_trace_gives_a_valid_scenario_and_plain_explanations():
    # every request extends the one before: one conversation of 1,500 turns, 1 s apart
    lines = [f'{{"timestamp": {1000 * i}, "input_length": {16 * (i + 1)}, "output_length": 0, '
             f'"hash_ids": {list(range(i + 1))}}}' for i in range(1500)]
    fit = fit_scenario(read_trace(lines), 16)
    assert fit["turns"] == 1000
    (expl,) = [e for e in fit["explanations"] if e["key"] == "turns"]
    assert expl["fitted"] == 1500 and "1,000" in expl["text"]
    scenario, _ = model_scenario(fit)
    Scenario.from_dict(scenario)
    report = "\n".join(fit_report(fit))
    assert "Turns per conversation: the trace gives 1,500" in report and "Share link: #" in report


def test_share_link_is_the_page_fragment_of_the_fit(generated):
    _, fit = generated
    s = Scenario.from_fragment(fit["link"])
    assert s.arrival_rate == fit["arrival_rate"] and s.turns == fit["turns"]
    assert s.block_size == 32 and s.input_tokens == fit["input_tokens"]
    known, left_out = model_scenario(fit)
    assert set(known) <= set(FIELD_BY_KEY)
    assert all(k.split(" ")[0] not in FIELD_BY_KEY or "=" in k for k in left_out)


def test_generator_is_seeded_and_writes_mooncake_lines():
    a = generate_workload(300.0, 9, **{**TRUTH, "arrival_rate": 0.5})
    b = generate_workload(300.0, 9, **{**TRUTH, "arrival_rate": 0.5})
    assert a == b and a != generate_workload(300.0, 10, **{**TRUTH, "arrival_rate": 0.5})
    assert all(x.timestamp_s <= y.timestamp_s for x, y in zip(a, a[1:]))
    assert all(len(r.hash_ids) == -(-r.input_length // 512) for r in a)
    back = list(read_trace(mooncake_lines(a)))
    assert [r.hash_ids for r in back] == [r.hash_ids for r in a]
    with pytest.raises(Exception, match="document_share"):
        generate_workload(10.0, document_share=2.0)


def test_replay_view_folds_answers_into_prompts_and_drops_service_time():
    # a trace's block ids cover prompts only: the answer comes back as new prompt tokens
    view = replay_view({"input_tokens": 800, "output_tokens": 300, "arrival_rate": 2.0})
    assert view["input_tokens"] == 1100 and view["output_tokens"] == 0
    assert view["arrival_rate"] == 2.0
    scenario = Scenario.from_dict({**view, "kv_cache_tokens": 500_000})
    assert analyze(scenario).in_flight_share < 1e-3   # replayed requests take no time
