"""The core's side of the page's trust fixes (issue 12): suggestions that carry the change
they propose, the inputs that apply to a model, the preset's architecture values, the
measured hit rate against the prediction, exports, and the wording of chart titles and units.
The page's side is tests/browser/test_page_trust.py."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present import report
from kvcache_calculator.present.figures import in_sentence, sensitivity, unit_for
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "site"))
from page_figures import NOTHING_TO_SHOW, for_page  # noqa: E402 (site/ is not a package)


def analysis_of(**keys):
    return prepare(resolve(Scenario.from_dict(keys)))


def applied(analysis, changes):
    """The analysis of the scenario with ``changes`` applied, as the page's form does."""
    return analysis_of(**{**analysis.scenario.changed(), **changes})


def by_id(analysis):
    return {s["id"]: s for s in report.suggestion_dicts(analysis)}


def test_each_action_gives_the_hit_rate_its_suggestion_predicts():
    a = analysis_of(instances=3, routing="random", turns=7)
    found = by_id(a)
    checks = {"routing": "token_hit_rate_session", "fp8_kv": "token_hit_rate_fp8", "offload": "token_hit_rate_offload"}
    for sid, key in checks.items():
        (action,) = found[sid]["actions"]
        after = applied(a, action["changes"]).result.token_hit_rate
        # the suggestion's rate comes from the hit-rate table (interpolated): within 0.1 point
        assert after == pytest.approx(found[sid]["numbers"][key], abs=1e-3), sid
    assert found["routing"]["actions"][0] == {"label": "Routing = session", "changes": {"routing": "session"}}
    assert found["think_time"]["actions"] == []          # advice with no concrete change


def test_fit_actions_make_the_model_fit():
    a = analysis_of(model="llama-3.1-70b")
    assert not a.result.fits
    actions = by_id(a)["fit"]["actions"]
    labels = [x["label"] for x in actions]
    assert labels == ["Weight dtype = int4", "GPUs per instance = 4"]
    for action in actions:
        assert applied(a, action["changes"]).result.fits, action
    # the published checkpoint's format with more GPUs (DeepSeek-V3 is FP8)
    ds = analysis_of(model="deepseek-v3", gpu="h100-sxm", num_gpus=8, weight_dtype="bf16")
    for action in by_id(ds)["fit"]["actions"]:
        assert applied(ds, action["changes"]).result.fits, action


def test_add_memory_actions_reach_the_goal():
    a = analysis_of(model="deepseek-v3", gpu="h200", num_gpus=8)
    found = by_id(a)["add_memory"]
    goal = found["numbers"]["goal_hit_rate"]
    assert {tuple(x["changes"]) for x in found["actions"]} == {("num_gpus",), ("instances",)}
    for action in found["actions"]:
        assert applied(a, action["changes"]).result.token_hit_rate >= goal - 1e-9, action


def test_sensitivity_keys_are_those_the_model_uses():
    gqa = report.sensitivity_keys(resolve(Scenario.from_dict({"model": "llama-3.1-8b"})))
    mla = report.sensitivity_keys(resolve(Scenario.from_dict({"model": "deepseek-v3"})))
    sliding = report.sensitivity_keys(resolve(Scenario.from_dict({"model": "gpt-oss-120b"})))
    manual = report.sensitivity_keys(resolve(Scenario.from_dict({"engine": "manual"})))
    assert {"num_kv_heads", "head_dim"} <= set(gqa) and not {"kv_lora_rank", "qk_rope_head_dim"} & set(gqa)
    assert {"kv_lora_rank", "qk_rope_head_dim"} <= set(mla) and not {"num_kv_heads", "head_dim"} & set(mla)
    assert "sliding_window" not in gqa and {"sliding_window", "sliding_layers"} <= set(sliding)
    assert "activation_reserve_gib" not in gqa and "activation_reserve_gib" in manual
    assert {"arrival_rate", "kv_cache_tokens", "num_gpus"} <= set(gqa)


def test_architecture_values_are_the_presets():
    values = report.architecture_values(resolve(Scenario.from_dict({"model": "llama-3.1-70b"})))
    assert values == {"params_b": 70.6, "active_params_b": 70.6, "num_layers": 80, "attention": "gqa",
                      "num_kv_heads": 8, "head_dim": 128}


def test_measured_counters_against_the_prediction():
    got = report.measured_comparison(0.8, hits="7,000", queries="10000")
    assert got["measured"] == pytest.approx(0.7) and got["gap_points"] == pytest.approx(-10)
    assert got["text"].startswith("Measured 70.0 %, predicted 80.0 %: 10.0 points below the prediction.")
    above = report.measured_comparison(0.5, rate_percent="61")
    assert above["gap_points"] == pytest.approx(11) and "above the prediction" in above["text"]
    assert "within 2 points" in report.measured_comparison(0.5, rate_percent="51")["text"]
    assert report.measured_comparison(0.5) == {}


@pytest.mark.parametrize("given,key", [
    ({"hits": "5", "queries": "0"}, "prefix_cache_queries"),
    ({"hits": "11", "queries": "10"}, "prefix_cache_hits"),
    ({"hits": "x", "queries": "10"}, "prefix_cache_hits"),
    ({"hits": "5"}, "prefix_cache_queries"),
    ({"rate_percent": "120"}, "measured_hit_rate"),
    ({"rate_percent": "-1"}, "measured_hit_rate"),
    ({"rate_percent": "nan"}, "measured_hit_rate"),
])
def test_a_bad_measurement_names_its_field(given, key):
    with pytest.raises(ScenarioError) as err:
        report.measured_comparison(0.5, **given)
    assert err.value.key == key


def test_export_csv_has_every_scenario_key_and_result():
    numbers, setup = report.evaluate_numbers({"model": "qwen3-32b", "gpu": "h200"})
    doc = report.export_document(numbers, report.suggestion_dicts(prepare(setup)))
    rows = list(csv.DictReader(io.StringIO(report.export_csv(doc))))
    assert tuple(rows[0]) == report.EXPORT_COLUMNS
    scenario = {r["key"]: r["value"] for r in rows if r["section"] == "scenario"}
    results = {r["key"]: r for r in rows if r["section"] == "result"}
    assert set(scenario) == set(numbers["scenario"]) and scenario["model"] == "qwen3-32b"
    assert float(results["token_hit_rate"]["value"]) == numbers["results"]["token_hit_rate"]
    assert results["capacity_tokens"]["unit"] == "tokens" and results["fits"]["value"] == "True"
    assert doc["suggestions"] and all("actions" in s for s in doc["suggestions"])


def test_titles_use_the_forms_labels_and_counts_of_one_are_singular():
    a = analysis_of(kv_cache_tokens=200_000)
    title = sensitivity(a, "kv_cache_tokens")["layout"]["title"]["text"]
    assert title.startswith("Token hit rate vs KV cache size override")
    assert in_sentence("Think time") == "think time" and in_sentence("GPU memory") == "GPU memory"
    assert unit_for(1, "instances") == "instance" and unit_for(2, "instances") == "instances"
    assert unit_for(1, "conversations/s") == "conversation/s" and unit_for(1.0, "tokens") == "token"
    assert unit_for(1, "GiB per instance") == "GiB per instance" and unit_for(1, "s") == "s"


def test_charts_of_a_model_that_does_not_fit_are_a_sentence():
    a = analysis_of(model="llama-3.1-70b")
    tornado = for_page("tornado", report.figure(a, "tornado"), fits=False)
    assert tornado["blank"] == NOTHING_TO_SHOW
    assert for_page("sensitivity", report.figure(a, "sensitivity"), fits=False)["blank"] == NOTHING_TO_SHOW
    # the curve against memory shows where it starts to fit: drawn
    assert for_page("hit_vs_memory", report.figure(a, "hit_vs_memory"), fits=False)["blank"] == ""
    ok = analysis_of()
    assert all(for_page(n, report.figure(ok, n), fits=True)["blank"] == "" for n in report.CHARTS)
