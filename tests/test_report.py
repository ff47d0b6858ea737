"""report.evaluate: what the page draws for a link's raw key=value pairs."""

import json

import pytest

from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.errors import ScenarioError

from kvcache_calculator.present.report import RESULT_KEYS, evaluate, results
from kvcache_calculator.scenario import Scenario


def test_evaluate_default_has_results_figures_and_suggestions():
    out = evaluate({})
    assert out["fragment"] == "" and out["field_errors"] == {} and out["unknown_keys"] == []
    assert set(RESULT_KEYS) <= set(out["results"])
    assert set(out["figures"]) == {"hit_vs_memory", "sensitivity", "tornado", "heatmap", "memory"}
    for fig in out["figures"].values():
        assert fig["data"] and "layout" in fig
    assert out["sensitivity_key"] == "arrival_rate" and "turns" in out["sensitivity_keys"]
    json.dumps(out, allow_nan=False)  # plain, finite JSON types only


def test_evaluate_bad_link_values_fall_back_and_are_listed():
    out = evaluate({"model": "nope", "arrival_rate": "-3", "gpu": "h200", "zzz": "1"})
    assert set(out["field_errors"]) == {"model", "arrival_rate"}
    assert out["unknown_keys"] == ["zzz"]
    assert out["scenario"]["gpu"] == "h200"          # the rest of the link still applies
    assert out["scenario"]["model"] == "llama-3.1-8b"
    # each error crosses to the page as data: the key, the value, what is allowed, the sentence
    model = out["field_errors"]["model"]
    assert (model["key"], model["value"], model["shown"]) == ("model", "nope", "'nope'")
    assert model["message"] == f"model: got 'nope'; {model['allowed']}" and model["line"] is None
    assert out["field_errors"]["arrival_rate"]["allowed"].startswith("must be a number")


def test_evaluate_incomplete_custom_model_falls_back_to_the_preset():
    out = evaluate({"model": "custom", "num_layers": "10"})
    # every missing field at once, each with the core's message
    assert sorted(out["field_errors"]) == ["head_dim", "num_kv_heads", "params_b"]
    assert out["field_errors"]["head_dim"] == {
        "key": "head_dim", "value": "", "shown": "''", "allowed": "is required for a custom architecture",
        "line": None, "message": "head_dim: got ''; is required for a custom architecture"}
    assert out["scenario"]["model"] == "llama-3.1-8b"
    mla = evaluate({"model": "custom", "attention": "mla", "params_b": "30"})
    assert sorted(mla["field_errors"]) == ["kv_lora_rank", "num_layers"]
    sliding = evaluate({"model": "custom", "num_layers": "4", "params_b": "1", "num_kv_heads": "2",
                        "head_dim": "64", "sliding_layers": "2"})
    assert list(sliding["field_errors"]) == ["sliding_layers"]     # the parser's own rule
    assert "needs sliding_window" in sliding["field_errors"]["sliding_layers"]["allowed"]
    complete = evaluate({"model": "custom", "num_layers": "4", "params_b": "1", "num_kv_heads": "2",
                         "head_dim": "64"})
    assert complete["field_errors"] == {} and complete["scenario"]["model"] == "custom"


def test_evaluate_sensitivity_key_is_honoured_when_available():
    assert evaluate({}, "turns")["sensitivity_key"] == "turns"
    assert evaluate({}, "no_such_key")["sensitivity_key"] == "arrival_rate"
    # a sweepable input that is empty here is still the one charted, and the chart says why
    for key, why in (("num_layers", "comes from the llama-3.1-8b preset"),
                     ("kv_cache_tokens", "is not set: enter the capacity")):
        out = evaluate({}, key)
        assert out["sensitivity_key"] == key and key not in out["sensitivity_keys"]
        figure = out["figures"]["sensitivity"]
        assert figure["data"] == [] and why in figure["layout"]["title"]["text"]


def test_results_match_evaluate():
    s = Scenario.from_dict({"model": "qwen3-32b", "gpu": "h200", "num_gpus": 2})
    assert evaluate(s.changed())["results"] == results(s)


def test_not_fitting_model_is_explained():
    out = evaluate({"model": "llama-3.1-405b"})
    assert out["fits"] is False and "does not fit" in out["fit_message"]
    assert any(s["id"] == "fit" for s in out["suggestions"])


def test_keys_the_attention_kind_does_not_use_are_refused_not_ignored():
    mla = {"model": "custom", "attention": "mla", "num_layers": "61", "kv_lora_rank": "512",
           "qk_rope_head_dim": "64", "params_b": "671"}
    out = evaluate({**mla, "sliding_layers": "30", "sliding_window": "128", "num_kv_heads": "128"})
    assert sorted(out["field_errors"]) == ["num_kv_heads", "sliding_layers", "sliding_window"]
    assert out["field_errors"]["num_kv_heads"]["message"] == (
        "num_kv_heads: got 128; does not apply when attention is mla; leave it empty")
    assert out["field_errors"]["num_kv_heads"]["shown"] == "128"     # a parsed number, not text
    assert evaluate(mla)["field_errors"] == {}
    # a preset's own attention kind counts, and the other way round
    assert list(evaluate({"model": "deepseek-v3", "head_dim": "128"})["field_errors"]) == ["head_dim"]
    assert list(evaluate({"model": "llama-3.1-8b", "kv_lora_rank": "64"})["field_errors"]) == ["kv_lora_rank"]
    switched = evaluate({"model": "llama-3.1-8b", "attention": "mla", "kv_lora_rank": "512"})
    assert switched["field_errors"] == {} and switched["results"]["kv_bytes_per_token"] == 32 * 512 * 2
    with pytest.raises(ScenarioError, match="sliding_window: got 128; does not apply"):
        analyze(Scenario.from_dict({**mla, "sliding_layers": "2", "sliding_window": "128"}))


def test_a_bad_override_keeps_the_links_model_and_names_every_field():
    """Issue 12, defect 1: attention=gqa on DeepSeek-V3 used to resolve to llama-3.1-8b."""
    out = evaluate({"model": "deepseek-v3", "gpu": "h200", "num_gpus": "8", "weight_dtype": "fp8",
                    "attention": "gqa"})
    assert out["scenario"]["model"] == "deepseek-v3" and out["substituted"] == []
    assert list(out["field_errors"]) == ["attention", "num_kv_heads", "head_dim"]
    assert "deepseek-v3 is an MLA model" in out["field_errors"]["attention"]["message"]
    assert out["results"]["kv_bytes_per_token"] == 70272          # the preset's own layers
    assert out["link"] == "model=deepseek-v3&attention=gqa&gpu=h200&num_gpus=8&weight_dtype=fp8"


def test_an_incomplete_custom_link_is_marked_substituted_and_kept_as_typed():
    params = {"model": "custom", "num_layers": "32", "num_kv_heads": "8", "params_b": "8", "gpu": "h200"}
    out = evaluate(params)
    assert out["substituted"] == ["model"] and list(out["field_errors"]) == ["head_dim"]
    assert out["link"] == "model=custom&num_layers=32&num_kv_heads=8&params_b=8&gpu=h200"
    unknown = evaluate({"model": "nope", "gpu": "h200"})
    assert unknown["substituted"] == ["model"] and unknown["link"] == "model=nope&gpu=h200"
    # a bad GPU falls back to the default GPU, as its notice says; the link drops it
    gpu = evaluate({"gpu": "custom", "arrival_rate": "x"})
    assert gpu["substituted"] == ["gpu"] and gpu["link"] == ""


def test_overrides_are_said_and_those_beyond_the_gpu_are_warned_about():
    """Issue 12, defect 5: kv_cache_tokens=1e12 gave a 122-million-GiB cache silently, and
    gpu_memory_gib=200 on an H100 SXM 80GB showed 164 GiB of KV with no note."""
    huge = evaluate({"kv_cache_tokens": "1000000000000"})["notes"]
    assert any(n.startswith("Capacity from your override kv_cache_tokens = 1,000,000,000,000") for n in huge)
    assert any("more than the 79.6 GiB the whole H100 SXM 80GB has" in n for n in huge)
    real = evaluate({"kv_cache_tokens": "400000"})["notes"]
    assert len([n for n in real if "kv_cache_tokens" in n]) == 1          # said, not warned about
    memory = evaluate({"gpu_memory_gib": "200"})["notes"]
    assert any("gpu_memory_gib = 200 GiB, in place of the H100 SXM 80GB's 79.19 GiB" in n for n in memory)
    assert any("a GPU that does not exist" in n for n in memory)
    assert not any("does not exist" in n for n in evaluate({"gpu_memory_gib": "70"})["notes"])
    assert not any("override" in n for n in evaluate({"gpu": "custom", "gpu_memory_gib": "200"})["notes"])


@pytest.mark.parametrize("params, turn, share", [({"input_tokens": "100000"}, 2, 0.8),
                                                 ({"turns": "1000", "turns_dist": "fixed"}, 162, 0.839),
                                                 ({"turns": "50"}, 162, 0.98 ** 161)])
def test_prompts_longer_than_the_models_context_are_warned_about(params, turn, share):
    """Issue 12, defect 8: 250k-800k-token prompts on Llama-3.1-8B (131,072 tokens) were silent."""
    notes = evaluate(params)["notes"]
    said = [n for n in notes if "context of 131,072 tokens" in n]
    assert len(said) == 1 and f"From turn {turn} on" in said[0] and "vLLM refuses" in said[0]
    assert f"{share:.1%} of requests" in said[0]
    assert not any("context of" in n for n in evaluate({})["notes"])
    # a model with a shorter context: Qwen3-8B's 40,960 tokens
    assert any("context of 40,960 tokens" in n for n in evaluate({"model": "qwen3-8b", "input_tokens": "50000"})["notes"])
