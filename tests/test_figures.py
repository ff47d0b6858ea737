"""Figure dicts: plain JSON, allowed trace types, units on every axis, % on screen."""

from __future__ import annotations

import json

import pytest

from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.compat import classic_hit_rate_for_setup
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present import figures
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve

ALLOWED = {"scatter", "bar", "heatmap"}
SCENARIOS = {
    "default": Scenario(),
    "random4": Scenario.from_dict({"routing": "random", "instances": 4, "arrival_rate": 4}),
    "offload-fifo": Scenario.from_dict({"offload_gib": 100, "policy": "fifo"}),
    "no-fit": Scenario.from_dict({"model": "llama-3.1-70b"}),
    "fixed": Scenario.from_dict({"think_dist": "fixed", "turns_dist": "fixed", "turns": 3}),
}


def _analysis(s: Scenario):
    return prepare(resolve(s))


def _all(s: Scenario) -> dict:
    a = _analysis(s)
    return {"hit_vs_memory": figures.hit_vs_memory(a), "sensitivity": figures.sensitivity(a, "arrival_rate"),
            "tornado": figures.tornado(a), "heatmap": figures.heatmap(a)}


def _check_common(fig: dict) -> None:
    assert set(fig) == {"data", "layout"}
    json.dumps(fig, allow_nan=False)          # plain JSON, no NaN/inf
    layout = fig["layout"]
    assert "width" not in layout and layout.get("autosize") is True
    assert layout["title"]["text"]
    for trace in fig["data"]:
        assert trace["type"] in ALLOWED
    x_title = layout["xaxis"]["title"]["text"]
    assert "(" in x_title and ")" in x_title, x_title          # a unit


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_figure_is_a_plain_plotly_dict(name):
    for key, fig in _all(SCENARIOS[name]).items():
        _check_common(fig)


def test_hit_vs_memory_marks_current_point_ceiling_and_classic():
    s = SCENARIOS["default"]
    r = _analysis(s).result
    fig = figures.hit_vs_memory(_analysis(s))
    by = {t["name"]: t for t in fig["data"]}
    model = by["Token hit rate (model)"]
    assert len(model["x"]) == 100
    assert max(model["y"]) <= 100.0 and max(model["y"]) > 1.0       # percent, not fraction
    current = by["This scenario"]
    # x: the memory the engine sizes from, CUDA's total (79.19 GiB on an H100 SXM)
    assert current["x"] == [pytest.approx(79.19)] and current["y"] == [pytest.approx(100 * r.token_hit_rate, abs=1e-3)]
    ceiling = next(t for n, t in by.items() if n.startswith("Ceiling"))
    assert ceiling["line"]["dash"] == "dash"
    assert ceiling["y"][0] == pytest.approx(100 * r.max_token_hit_rate, abs=1e-3)
    classic = by["Original calculator's formula"]
    assert classic["visible"] == "legendonly" and len(classic["x"]) == 100
    assert "%" in fig["layout"]["yaxis"]["title"]["text"]
    assert fig["layout"]["yaxis"]["range"] == [0, 100]


def test_hit_vs_memory_without_classic_is_the_same_figure_less_that_trace():
    """The page asks for the figure without the original formula's curve unless its toggle is on."""
    analysis = _analysis(SCENARIOS["default"])
    full, lean = figures.hit_vs_memory(analysis), figures.hit_vs_memory(analysis, classic=False)
    assert lean["layout"] == full["layout"]
    assert lean["data"] == [t for t in full["data"] if t["name"] != "Original calculator's formula"]
    assert len(lean["data"]) == len(full["data"]) - 1


def test_classic_trace_matches_compat():
    s = SCENARIOS["default"]
    fig = figures.hit_vs_memory(_analysis(s))
    classic = next(t for t in fig["data"] if t["name"] == "Original calculator's formula")
    i = 50
    assert classic["y"][i] == pytest.approx(100 * classic_hit_rate_for_setup(resolve(s), classic["x"][i]), abs=1e-3)


def test_offload_and_policy_notes():
    s = SCENARIOS["offload-fifo"]
    fig = figures.hit_vs_memory(_analysis(s))
    names = [t["name"] for t in fig["data"]]
    assert "GPU cache only (no offload)" in names
    assert "LRU model" in fig["layout"]["title"]["text"] and "FIFO" in fig["layout"]["title"]["text"]
    a = _analysis(s)
    for f in (figures.sensitivity(a, "turns"), figures.tornado(a), figures.heatmap(a)):
        assert "FIFO" in f["layout"]["title"]["text"]


def test_tornado_note_keeps_the_base_beside_other_notes():
    base = _analysis(SCENARIOS["default"]).result.token_hit_rate
    note = figures.tornado(_analysis(SCENARIOS["default"]))["layout"]["title"]["text"].split("<sup>")[1]
    assert note == f"base {100 * base:.1f}%</sup>"
    s = Scenario.from_dict({"policy": "fifo"})
    text = figures.tornado(_analysis(s))["layout"]["title"]["text"]
    assert f"<sup>base {100 * base:.1f}%; LRU model; FIFO needs the simulator</sup>" in text


def test_kv_cache_tokens_marker_is_explained_in_the_note():
    s = Scenario.from_dict({"kv_cache_tokens": 200_000})
    fig = figures.hit_vs_memory(_analysis(s))
    assert "capacity from kv_cache_tokens: marked at the memory that holds it" in fig["layout"]["title"]["text"]
    assert "kv_cache_tokens" not in figures.hit_vs_memory(_analysis(SCENARIOS["default"]))["layout"]["title"]["text"]
    s = Scenario.from_dict({"kv_cache_tokens": 200_000, "policy": "lfu"})
    assert "LFU needs the simulator; capacity from kv_cache_tokens" in \
        figures.hit_vs_memory(_analysis(s))["layout"]["title"]["text"]


def test_no_fit_is_said():
    fig = figures.hit_vs_memory(_analysis(SCENARIOS["no-fit"]))
    assert "does not fit" in fig["layout"]["title"]["text"]


@pytest.mark.parametrize("key", ["arrival_rate", "think_time_s", "turns", "gpu_memory_gib", "block_size"])
def test_sensitivity_figure(key):
    s = SCENARIOS["default"]
    fig = figures.sensitivity(_analysis(s), key)
    _check_common(fig)
    curve = sweeps.sensitivity_curve(_analysis(s), key)
    line = fig["data"][0]
    assert line["x"] == list(curve.values)
    assert line["y"] == [pytest.approx(100 * v, abs=1e-3) for v in curve.token_hit_rate]
    assert any(t.get("line", {}).get("dash") == "dash" for t in fig["data"])
    assert any(t["name"] == "This scenario" for t in fig["data"])
    if curve.log_scale:
        assert fig["layout"]["xaxis"]["type"] == "log"


def test_tornado_figure_sorted_largest_first():
    s = SCENARIOS["default"]
    fig = figures.tornado(_analysis(s))
    low, high = fig["data"]
    assert low["type"] == high["type"] == "bar" and low["orientation"] == "h"
    t = sweeps.tornado(_analysis(s))
    assert low["y"] == [b.label for b in t.bars]
    assert fig["layout"]["yaxis"]["autorange"] == "reversed"      # first bar on top
    assert low["x"][0] == pytest.approx(100 * (t.bars[0].low_hit_rate - t.base_hit_rate), abs=1e-3)
    assert low["name"] == "-20%" and high["name"] == "+20%"


def test_heatmap_figure():
    s = SCENARIOS["default"]
    fig = figures.heatmap(_analysis(s))
    hm = fig["data"][0]
    assert hm["type"] == "heatmap" and len(hm["z"]) == 30 and all(len(r) == 30 for r in hm["z"])
    assert hm["zmin"] == 0 and hm["zmax"] == 100
    assert "%" in hm["colorbar"]["title"]["text"]
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert "conversations/s" in fig["layout"]["yaxis"]["title"]["text"]
    marker = fig["data"][1]
    assert marker["x"] == [pytest.approx(79.19)] and marker["y"] == [1.0]


def test_all_figures_draws_the_page_charts_of_one_analysis():
    a = _analysis(SCENARIOS["random4"])
    shared = figures.all_figures(a, "think_time_s")
    assert list(shared) == ["hit_vs_memory", "sensitivity", "tornado", "heatmap", "memory"]
    assert shared["memory"] == figures.memory_breakdown(a.setup)
    assert shared["sensitivity"] == figures.sensitivity(a, "think_time_s")
    assert shared["heatmap"] == figures.heatmap(a)


def test_sensitivity_of_an_unset_key_says_so_and_unknown_key_raises():
    fig = figures.sensitivity(_analysis(SCENARIOS["default"]), "kv_cache_tokens")
    assert fig["data"] == [] and "not set" in fig["layout"]["title"]["text"]
    json.dumps(fig)
    fig = figures.sensitivity(_analysis(SCENARIOS["default"]), "activation_reserve_gib")
    assert fig["data"] == [] and "applies to engine manual only" in fig["layout"]["title"]["text"]
    with pytest.raises(ScenarioError):
        figures.sensitivity(_analysis(SCENARIOS["default"]), "model")


def test_memory_breakdown_stacks_one_gpu_to_its_total():
    """The parts of the breakdown add up to the GPU's memory as CUDA reports it (79.19 GiB on
    an H100 SXM); the KV cache is the capacity's; a kv_cache_tokens override has no bar."""
    from kvcache_calculator.present.figures import memory_breakdown
    from kvcache_calculator.setup.resolve import resolve

    setup = resolve(Scenario())
    fig = memory_breakdown(setup)
    names = [d["name"] for d in fig["data"]]
    assert names[0] == "Weights" and "KV cache" in names and fig["layout"]["barmode"] == "stack"
    assert sum(d["x"][0] for d in fig["data"]) == pytest.approx(79.19, abs=0.01)
    kv = next(d for d in fig["data"] if d["name"] == "KV cache")
    assert kv["x"][0] == pytest.approx(setup.capacity.memory.kv_cache_gib, abs=1e-3)
    assert memory_breakdown(resolve(Scenario.from_dict({"kv_cache_tokens": 100000})))["data"] == []
