"""The scenario contract: keys, defaults, validation and the link/JSON codec."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcache_calculator import ScenarioError
from kvcache_calculator import scenario as sc
from kvcache_calculator.scenario import (
    FIELDS, KEYS, Scenario, decode_fragment, encode_fragment, parse_assignments,
)

# The key table (docs/architecture.md §3): a public contract, never renamed
DESIGN_KEYS = """model num_layers num_kv_heads head_dim params_b active_params_b attention kv_lora_rank
qk_rope_head_dim sliding_window sliding_layers gpu gpu_memory_gib num_gpus gpu_mem_util weight_dtype
kv_dtype block_size kv_cache_tokens offload_gib instances routing policy arrival_rate turns turns_dist
think_time_s think_dist input_tokens output_tokens system_prompt_tokens""".split()


def test_every_design_key_exists():
    assert set(DESIGN_KEYS) <= set(KEYS)


def test_dataclass_defaults_equal_field_defaults():
    assert [f.name for f in dataclasses.fields(Scenario)] == list(KEYS)
    s = Scenario()
    for f in FIELDS:
        assert getattr(s, f.key) == f.default, f.key


def test_documented_defaults():
    s = Scenario()
    # gpu_mem_util and weight_dtype empty: the engine's default (vLLM 0.9) and the model's
    # published checkpoint format (bf16 for Llama-3.1-8B)
    assert (s.gpu, s.num_gpus, s.gpu_mem_util, s.weight_dtype, s.kv_dtype, s.block_size) == \
        ("h100-sxm", 1, None, None, "bf16", 16)
    assert (s.engine, s.engine_version, s.cuda_graphs) == ("vllm", "0.33", "on")
    assert (s.offload_gib, s.instances, s.routing, s.policy) == (0.0, 1, "session", "lru")


def test_fragment_round_trip_and_short_links():
    s = Scenario.from_fragment("#model=qwen3-32b&gpu=h200&num_gpus=2")
    assert (s.model, s.gpu, s.num_gpus) == ("qwen3-32b", "h200", 2)
    assert s.to_fragment() == "model=qwen3-32b&gpu=h200&num_gpus=2"
    assert Scenario().to_fragment() == ""
    assert Scenario.from_fragment(s.to_fragment()) == s
    assert Scenario.from_json(s.to_json()) == s


@pytest.mark.parametrize("key, raw", [
    ("arrival_rate", "-1"), ("arrival_rate", "0"), ("arrival_rate", "nan"), ("arrival_rate", "inf"),
    ("arrival_rate", "abc"), ("turns", "0.5"), ("num_gpus", "1.5"), ("num_gpus", "0"),
    ("gpu_mem_util", "1.5"), ("kv_dtype", "fp7"), ("routing", "sticky"), ("block_size", ""),
    ("model", "<script>alert(1)</script>"), ("input_tokens", "0"),
])
def test_bad_values_name_key_value_and_range(key, raw):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({key: raw})
    assert err.value.key == key
    msg = str(err.value)
    assert msg.startswith(key + ":") and "must" in msg


def test_unknown_key_is_an_error_strictly_and_a_list_leniently():
    with pytest.raises(ScenarioError, match="not a scenario key"):
        Scenario.from_dict({"arival_rate": "2"})
    s, errors, unknown = Scenario.from_dict_lenient({"arival_rate": "2", "turns": "x", "gpu": "h200"})
    assert unknown == ["arival_rate"] and list(errors) == ["turns"] and s.gpu == "h200"
    assert s.turns == Scenario().turns


def test_cross_field_checks():
    with pytest.raises(ScenarioError, match="turns"):
        Scenario.from_dict({"turns": "2.5", "turns_dist": "fixed"})
    s, errors, _ = Scenario.from_dict_lenient({"turns": "2.5", "turns_dist": "fixed"})
    assert "turns" in errors and s.turns == 5.0


def test_cli_assignments():
    assert parse_assignments(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ScenarioError, match="KEY=VALUE"):
        parse_assignments(["arrival_rate"])


def test_fragment_decoding_is_lenient_about_encoding():
    assert decode_fragment("#a=1&&b=x%20y&c") == {"a": "1", "b": "x y", "c": ""}
    with pytest.raises(ScenarioError):
        decode_fragment("a=" + "1" * 9000)


def _value_strategy(f):
    if f.kind == "choice":
        return st.sampled_from(f.choices)
    if f.kind == "int":
        lo = int(f.minimum) + (1 if f.exclusive_min else 0)
        return st.integers(lo, int(min(f.maximum, 10**7)))
    lo = f.minimum
    return st.floats(lo, min(f.maximum, 1e6), allow_nan=False, exclude_min=f.exclusive_min)


_plain = [f for f in FIELDS if f.kind not in ("text", "list") and not f.optional and f.key not in ("turns",)]


@settings(max_examples=200, deadline=None)
@given(st.fixed_dictionaries({}, optional={f.key: _value_strategy(f) for f in _plain}))
def test_round_trip_is_exact(values):
    s = Scenario.from_dict(values)
    assert Scenario.from_fragment(s.to_fragment()) == s
    assert Scenario.from_json(s.to_json()) == s
    assert Scenario.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert encode_fragment(s.changed()) == s.to_fragment()


@pytest.mark.parametrize("raw", ["1_000", "1_0", "inf", "-inf", "Infinity", "nan", "NaN", "1e999", "-1e999",
                                 "0x10", "0b11", "0o7", "１２", "١٢", "1２", "12\u0663", "1e", "e5", ".", "+",
                                 "1 000", "1,000", "1.5.", "--1", "12abc", "0x1p3"])
def test_odd_number_spellings_are_refused(raw):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({"arrival_rate": raw})
    assert err.value.key == "arrival_rate" and err.value.value == raw
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({"input_tokens": raw})
    assert err.value.key == "input_tokens"
    with pytest.raises(ScenarioError):
        Scenario.from_fragment("input_tokens=" + raw)


@pytest.mark.parametrize("raw, value", [
    ("2", 2.0), (" 12 ", 12.0), ("\t2.5\n", 2.5), ("+3", 3.0), (".5", 0.5), ("5.", 5.0), ("1e-05", 1e-05),
    ("1.5E+2", 150.0), ("2e3", 2000.0),
])
def test_plain_number_spellings_are_accepted(raw, value):
    # whitespace around a number is ignored (pasted values); exponents are how format_value
    # writes small and large floats, so links round-trip
    assert Scenario.from_dict({"arrival_rate": raw}).arrival_rate == value


def test_int_fields_take_whole_numbers_in_any_plain_spelling():
    assert Scenario.from_dict({"input_tokens": "1e3"}).input_tokens == 1000
    assert Scenario.from_dict({"input_tokens": " 800.0 "}).input_tokens == 800
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"input_tokens": "1_000"})


def test_json_numbers_beyond_any_float_are_refused_not_crashed():
    with pytest.raises(ScenarioError) as err:
        Scenario.from_json('{"input_tokens": 1' + "0" * 400 + "}")
    assert err.value.key == "input_tokens"
    with pytest.raises(ScenarioError):
        Scenario.from_dict({"arrival_rate": float("inf")})


def test_repeated_keys_are_the_named_keys_given_twice():
    from kvcache_calculator.scenario import repeated_keys

    fragment = "#arrival_rate=2&arrival_rate=3&=x&=y&turns=1&turns=2&turns=3&gpu=h200"
    assert repeated_keys(fragment) == ["arrival_rate", "turns"]
    assert decode_fragment(fragment)["arrival_rate"] == "3"          # the last one is used
    assert repeated_keys("#a%20=1&a=2") == ["a"]                      # as decode_fragment reads keys
    assert repeated_keys("") == []


def test_key_sets_are_derived_from_the_fields():
    by = {f.key: f for f in FIELDS}
    assert set(sc.MODEL_KEYS) == {f.key for f in FIELDS if f.group == "model"}
    assert sc.ARCH_KEYS == tuple(k for k in sc.MODEL_KEYS if k != "model")
    assert set(sc.LAYER_KEYS) == set(sc.ARCH_KEYS) - {"params_b", "active_params_b"}
    assert set(sc.GQA_ONLY_KEYS) == {"num_kv_heads", "head_dim", "sliding_window", "sliding_layers"}
    assert set(sc.MLA_ONLY_KEYS) == {"kv_lora_rank", "qk_rope_head_dim"}
    assert set(sc.GQA_ONLY_KEYS + sc.MLA_ONLY_KEYS) < set(sc.LAYER_KEYS)
    assert sc.GPU_KEYS == ("gpu", "gpu_memory_gib")
    assert set(sc.SIZING_KEYS) >= set(sc.MODEL_KEYS + sc.GPU_KEYS + sc.CAPACITY_ONLY_KEYS + sc.KV_BYTES_KEYS)
    assert not set(sc.SCALAR_KEYS) & set(sc.SIZING_KEYS)
    for f in FIELDS:
        assert f.effect in ("scalar", "capacity", "kv_bytes", "in_flight", "solve"), f.key
        assert f.resolves in ("", "model", "gpu") and set(f.attention) <= {"gqa", "mla"}, f.key
        assert f.optional == (f.default is None), f.key
        assert list(sc.KEYS).index(f.key) == [g.key for g in FIELDS].index(f.key)
    assert by["arrival_rate"].effect == "scalar" and by["block_size"].effect == "solve"
    assert set(sc.IN_FLIGHT_KEYS) == {"mfu", "decode_tokens_per_s", "ttft_s"}
    assert not set(sc.IN_FLIGHT_KEYS) & set(sc.SIZING_KEYS)     # they never change the capacity
