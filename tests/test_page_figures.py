"""site/page_figures.py (for_page): the page's cheaper drawing of the core's figures loses nothing."""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from pathlib import Path

import pytest

from kvcache_calculator.analytic.table import prepare
from kvcache_calculator.present import figures
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
# page-only code lives with the page; the browser gets it through site/pyscript.json
sys.path.insert(0, str(ROOT / "site"))
from page_figures import VIRIDIS, decade_ticks, for_page, legend_entries, split_title  # noqa: E402
SCENARIOS = {
    "default": Scenario(),
    "offload-fifo": Scenario.from_dict({"offload_gib": 100, "policy": "fifo"}),
    "no-fit": Scenario.from_dict({"model": "llama-3.1-70b"}),
    "random4": Scenario.from_dict({"routing": "random", "instances": 4, "arrival_rate": 0.05}),
}


def _figures(s: Scenario) -> dict:
    return figures.all_figures(prepare(resolve(s)), key="think_time_s")


@pytest.mark.parametrize("label", sorted(SCENARIOS))
def test_for_page_keeps_the_data_and_moves_title_legend_and_colour_bar_to_html(label):
    core = _figures(SCENARIOS[label])
    before = copy.deepcopy(core)
    for name, figure in core.items():
        page = for_page(name, figure)
        json.dumps(page, allow_nan=False)          # plain JSON for charts.js
        fig, layout = page["figure"], page["figure"]["layout"]
        # the title and the note are the core's, as text
        title, note = split_title(figure["layout"])
        assert (page["title"], page["note"]) == (title, note)
        assert page["title"] and "<" not in page["title"] + page["note"]
        assert figure["layout"]["title"]["text"] == title + (f"<br><sup>{note}</sup>" if note else "")
        assert "title" not in layout and layout["showlegend"] is False
        for axis in ("xaxis", "yaxis"):
            assert layout[axis]["ticklabeloverflow"] == "allow"
            assert layout[axis]["automargin"] is False
        # every trace but the hidden original formula is kept, with its numbers
        kept = [t for t in figure["data"] if "original" not in t.get("name", "").lower()]
        assert [t.get("name") for t in fig["data"]] == [t.get("name") for t in kept]
        for old, new in zip(kept, fig["data"]):
            assert new["x"] == old["x"]
            if new.get("type") != "heatmap" and "text" not in new:
                assert new["y"] == old["y"]
        # the legend lists what Plotly's would have: named, shown, not the heatmap
        assert [e["name"] for e in page["legend"]] == [
            t["name"] for t in kept
            if t.get("showlegend") is not False and t.get("type") != "heatmap"
            and figure["layout"].get("showlegend", True) is not False]
    assert core == before, "for_page changed the core's figure"


def test_the_original_formula_is_drawn_only_on_the_toggle():
    figure = _figures(Scenario())["hit_vs_memory"]
    hidden = for_page("hit_vs_memory", figure)
    shown = for_page("hit_vs_memory", figure, show_classic=True)
    names = [t["name"] for t in shown["figure"]["data"]]
    assert any("original" in n.lower() for n in names)
    assert not any("original" in t["name"].lower() for t in hidden["figure"]["data"])
    original = next(t for t in shown["figure"]["data"] if "original" in t["name"].lower())
    assert original["visible"] is True
    assert any("original" in e["name"].lower() for e in shown["legend"])


def test_legend_entries_say_how_to_draw_each_swatch():
    data = [
        {"type": "scatter", "mode": "lines", "name": "a", "line": {"color": "#111", "dash": "dash", "width": 1.5}},
        {"type": "scatter", "mode": "markers", "name": "b",
         "marker": {"color": "#222", "symbol": "diamond", "line": {"color": "#000"}}},
        {"type": "bar", "name": "c", "marker": {"color": "#333"}},
        {"type": "scatter", "mode": "lines", "name": "hidden", "visible": False},
        {"type": "scatter", "mode": "markers", "name": "unlisted", "showlegend": False},
        {"type": "heatmap", "name": "z"},
    ]
    assert legend_entries(data) == [
        {"kind": "line", "color": "#111", "dash": "dash", "width": 1.5, "name": "a"},
        {"kind": "marker", "color": "#222", "symbol": "diamond", "outline": "#000", "name": "b"},
        {"kind": "bar", "color": "#333", "name": "c"},
    ]


def test_split_title_takes_the_note_out_of_the_cores_markup():
    assert split_title({"title": {"text": "Hit rate<br><sup>LRU model; FIFO needs the simulator</sup>"}}) == (
        "Hit rate", "LRU model; FIFO needs the simulator")
    # a figure with a note has it in the core's title (the policy note here)
    core = figures.hit_vs_memory(prepare(resolve(Scenario.from_dict({"policy": "fifo"}))))
    assert split_title(core["layout"]) == ("Token hit rate vs GPU memory", "LRU model; FIFO needs the simulator")
    assert split_title({"title": "Plain"}) == ("Plain", "")
    assert split_title({}) == ("", "")


def test_decade_ticks_are_plotlys_1_2_5_labels():
    values, labels = decade_ticks(0.0915, 10.9)
    assert labels == ["0.1", "0.2", "0.5", "1", "2", "5", "10"]
    assert values == pytest.approx([math.log10(float(v)) for v in labels])
    assert decade_ticks(3, 4) == ([], [])


@pytest.mark.parametrize("label", sorted(SCENARIOS))
def test_heatmap_log_axis_becomes_log10_values_with_real_labels_and_hover(label):
    core = _figures(SCENARIOS[label])["heatmap"]
    page = for_page("heatmap", core)
    heat, point = page["figure"]["data"]
    rates = core["data"][0]["y"]
    # log10 values, evenly spaced, so Plotly draws the grid as one scaled image
    assert heat["y"] == pytest.approx([math.log10(v) for v in rates])
    steps = [b - a for a, b in zip(heat["y"], heat["y"][1:])]
    assert max(steps) - min(steps) < 1e-3 * max(steps)
    assert point["y"] == pytest.approx([math.log10(core["data"][1]["y"][0])])
    yaxis = page["figure"]["layout"]["yaxis"]
    assert yaxis["type"] == "linear" and yaxis["title"] == core["layout"]["yaxis"]["title"]
    assert yaxis["zeroline"] is False   # log10(1) = 0 is not an axis origin
    assert [10 ** v for v in yaxis["tickvals"]] == pytest.approx([float(t) for t in yaxis["ticktext"]])
    assert min(rates) <= 10 ** yaxis["tickvals"][0] * 1.5 and 10 ** yaxis["tickvals"][-1] <= max(rates) * 1.5
    # the hover shows the real rate: text per cell, no log10 value
    for trace in (heat, point):
        assert "%{text}" in trace["hovertemplate"]
        assert not re.search(r"%\{y", trace["hovertemplate"])
    assert heat["text"][0][0] == f"{rates[0]:.3g}" and heat["text"][-1][-1] == f"{rates[-1]:.3g}"
    assert len(heat["text"]) == len(heat["z"]) and len(heat["text"][0]) == len(heat["z"][0])
    # one colour scale for the heatmap and its HTML colour bar, at the core's fixed 0-100 %
    assert heat["showscale"] is False and heat["colorscale"] == VIRIDIS
    assert page["colorbar"] == {"title": "Hit rate (%)", "min": 0, "max": 100, "stops": VIRIDIS}


def test_viridis_is_plotlys_own_scale():
    bundle = ROOT / "node_modules" / "plotly.js-cartesian-dist-min" / "plotly-cartesian.min.js"
    if not bundle.exists():
        pytest.skip("node_modules/ has no Plotly.js bundle (run `npm ci` or `python build.py test`)")
    text = bundle.read_text(encoding="utf-8")
    found = re.search(r"Viridis:(\[\[[^;]*?\]\])", text)
    assert found, "Viridis not found in the Plotly.js bundle"
    stops = json.loads(re.sub(r"(?<=[\[,])\.", "0.", found.group(1)))
    assert stops == VIRIDIS


def test_tornado_margin_fits_its_longest_name():
    page = for_page("tornado", _figures(Scenario())["tornado"])
    longest = max(len(v) for v in page["figure"]["data"][0]["y"])
    margin = page["figure"]["layout"]["margin"]
    assert 6 * longest < margin["l"] <= 170
    assert for_page("hit_vs_memory", _figures(Scenario())["hit_vs_memory"])["figure"]["layout"]["margin"]["l"] == 64
