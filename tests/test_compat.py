"""The original calculator's API: classic mode reproduces its numbers exactly."""

import pytest

from kvcache_calculator import ScenarioError
from kvcache_calculator.compat import (
    ConversationPattern, KVCacheCalculator, KVCacheDtype, ModelConfig, ModelDtype, SystemConfig,
)

LLAMA3_8B = dict(num_layers=32, num_attention_heads=32, num_kv_heads=8, head_dim=128,
                 model_dtype=ModelDtype.FP16, kvcache_dtype=KVCacheDtype.FP16, model_size_gb=16.0)
MISTRAL_24B = dict(num_layers=40, num_attention_heads=32, num_kv_heads=8, head_dim=128,
                   model_dtype=ModelDtype.FP16, kvcache_dtype=KVCacheDtype.FP16, model_size_gb=48.0)


@pytest.fixture
def classic():
    return KVCacheCalculator(mode="classic")


def test_classic_llama3_8b_matches_original(classic):
    model, system = ModelConfig(**LLAMA3_8B), SystemConfig(80)
    pattern = ConversationPattern(5, 1.0, 30, 1000)
    r = classic.calculate_conversation_hit_rate(model, system, pattern)
    assert r["hit_rate"] == 0.5312778666666667
    assert r["max_cached_tokens"] == 498073
    assert r["active_conversations"] == 150.0
    assert r["avg_cached_conversations"] == pytest.approx(99.6146, abs=1e-12)
    d = classic.calculate_detailed_metrics(model, system, pattern)
    assert d["cache_memory_gb"] == 60.7999267578125
    assert d["memory_per_token_bytes"] == 131072
    assert d["model_memory_gb"] == pytest.approx(19.2)
    assert d["derived_qps"] == 5.0
    assert d["tokens_per_second"] == 5000.0
    assert d["cache_hits_per_second"] == pytest.approx(5000 * 0.5312778666666667)
    o = classic.optimize_memory_allocation(model, system, pattern, 0.8)
    assert o["recommended_memory_gb"] == 92.4421875
    assert o["additional_memory_needed_gb"] == pytest.approx(12.4421875)
    assert o["achievable"] is True
    assert o["target_hit_rate"] == 0.8


def test_classic_mistral_24b_matches_original(classic):
    r = classic.calculate_conversation_hit_rate(ModelConfig(**MISTRAL_24B), SystemConfig(80),
                                                ConversationPattern(5, 2.0, 30, 1000))
    assert r["hit_rate"] == 0.07829333333333334
    assert r["max_cached_tokens"] == 146800


def test_classic_no_memory_left_gives_zero(classic):
    r = classic.calculate_conversation_hit_rate(ModelConfig(**MISTRAL_24B), SystemConfig(40),
                                                ConversationPattern(5, 2.0, 30, 1000))
    assert r == {"hit_rate": 0.0, "avg_cached_conversations": 0.0, "cache_utilization": 0.0,
                 "max_cached_tokens": 0, "active_conversations": 0}


def test_classic_already_met_returns_available_memory(classic):
    model = ModelConfig(**LLAMA3_8B)
    o = classic.optimize_memory_allocation(model, SystemConfig(80), ConversationPattern(5, 0.1, 30, 1000), 0.5)
    assert o == {"recommended_memory_gb": 80, "current_hit_rate": 0.8, "achievable": True}


def test_memory_per_token_and_qps(classic):
    model = ModelConfig(**{**LLAMA3_8B, "kvcache_dtype": KVCacheDtype.FP8})
    assert classic.calculate_kvcache_memory_per_token(model) == 65536
    assert classic.calculate_derived_qps(ConversationPattern(4, 2.5, 10, 100)) == 10.0


@pytest.mark.parametrize("kwargs, key", [
    (dict(avg_conversation_length=0, conversation_arrival_rate=1, within_conversation_interval=30, avg_sequence_length=1000), "avg_conversation_length"),
    (dict(avg_conversation_length=5, conversation_arrival_rate=1, within_conversation_interval=30, avg_sequence_length=0), "avg_sequence_length"),
    (dict(avg_conversation_length=5, conversation_arrival_rate=-1, within_conversation_interval=30, avg_sequence_length=1000), "conversation_arrival_rate"),
])
def test_where_the_original_crashed_we_raise_a_clear_error(kwargs, key):
    with pytest.raises(ScenarioError) as err:
        ConversationPattern(**kwargs)
    assert err.value.key == key
    assert key in str(err.value)


def test_bad_dtype_and_mode_are_clear_errors():
    with pytest.raises(ScenarioError, match="kvcache_dtype"):
        ModelConfig(**{**LLAMA3_8B, "kvcache_dtype": "int4"})
    with pytest.raises(ScenarioError, match="mode"):
        KVCacheCalculator(mode="magic")


def test_model_mode_answers_with_the_characteristic_time_model():
    calc = KVCacheCalculator()
    model, system = ModelConfig(**LLAMA3_8B), SystemConfig(80)
    pattern = ConversationPattern(5, 1.0, 30, 1000)
    r = calc.calculate_conversation_hit_rate(model, system, pattern)
    # same memory budget as classic mode, in whole 16-token blocks
    assert r["max_cached_tokens"] == 498073 // 16 * 16
    assert 0 < r["hit_rate"] <= r["max_token_hit_rate"] <= 1
    assert r["characteristic_time_s"] > 0
    o = calc.optimize_memory_allocation(model, system, pattern, 0.8)
    if o["achievable"]:
        assert o["recommended_memory_gb"] > 19.2
    else:
        assert o["max_token_hit_rate"] <= 0.8
