"""The page's state in parts (numbers first, the rest when shown) equals ``evaluate()``'s."""

from __future__ import annotations

import pytest

from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.report import (
    CHARTS, evaluate, evaluate_numbers, figure, sensitivity_choice, suggestion_dicts, target_results,
)

CASES = (
    {},
    {"model": "qwen3-32b", "gpu": "h200", "num_gpus": "2", "offload_gib": "64"},
    {"instances": "3", "routing": "random", "turns": "7", "policy": "fifo"},
    {"model": "nope", "arrival_rate": "-3", "zzz": "1"},          # field errors, unknown key
    {"model": "llama-3.1-405b", "gpu": "l4"},                       # does not fit
)


@pytest.mark.parametrize("params", CASES)
@pytest.mark.parametrize("key", (None, "turns", "kv_cache_tokens", "no_such_key"))
def test_parts_equal_evaluate(params, key):
    whole = evaluate(params, key)
    numbers, setup = evaluate_numbers(params)
    rest = {k: whole.pop(k) for k in ("suggestions", "figures", "sensitivity_keys", "sensitivity_key")}
    assert numbers == {**whole, "suggestions": [], "figures": {}}
    analysis = prepare(setup)
    assert suggestion_dicts(analysis) == rest["suggestions"]
    assert {name: figure(analysis, name, key) for name in CHARTS} == rest["figures"]
    assert sensitivity_choice(key) == rest["sensitivity_key"]


@pytest.mark.parametrize("params", CASES)
def test_numbers_without_the_target_then_the_target_equal_evaluate(params):
    """The page's numbers leave out the target's root search; target_results adds it back."""
    whole = evaluate_numbers(params)[0]
    numbers, setup = evaluate_numbers(params, target=False)
    target = target_results(setup, prepare(setup).result)
    assert set(target) == {"capacity_for_target_tokens", "memory_for_target_gib"}
    assert {k: numbers["results"][k] for k in target} == dict.fromkeys(target)
    assert {**numbers, "results": {**numbers["results"], **target}} == whole
    assert any(v is not None for v in target.values()) or not whole["fits"]


def test_an_unknown_chart_is_named():
    _numbers, setup = evaluate_numbers({})
    with pytest.raises(ScenarioError, match="chart"):
        figure(prepare(setup), "pie")
