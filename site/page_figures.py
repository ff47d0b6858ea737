"""The page's drawing of the core's figures: the same data, cheaper to redraw on every input.

Page-only code (it lives in ``site/`` and is shipped beside ``main.py`` through
``pyscript.json``'s ``files``; the tests import it from there). It is plain Python with no
browser import, so ``tests/test_page_figures.py`` checks it in CPython.

The page redraws each chart near the viewport after every input change (charts.js), and the
charts in view must be on screen within 100 ms (issue #14; 400 ms on a phone's slower CPU).
Measured in Chromium, Plotly.js 4 spends a good part of each redraw on things that either
never change or that plain HTML draws for free:

- the title and its note (a text layout pass per chart): shown as text above the chart;
- the legend (text measurement and a margin pass): shown as an HTML list below the chart;
- the heatmap's colour bar (a second small axis), although its scale is fixed at 0-100 %:
  shown as a static HTML gradient;
- the check of every tick label for overflow (``ticklabeloverflow``, a ``getBBox`` per
  label): not needed with the fixed margins used here;
- the heatmap's log-scale y-axis, which makes Plotly paint the image pixel by pixel at the
  plot's size; in log10 coordinates on a linear axis (with 1-2-5 tick labels and the real
  value in the hover text) it draws the 30 x 30 grid as a scaled 30 x 30 image instead.

Together these took the four redraws from about 60 ms to about 40 ms on the page
(``benchmarks/bench_page.py``). :func:`for_page` does the transformation; the page's
``charts.js`` draws the result. Python users and the CLI keep the core's figures from
:mod:`kvcache_calculator.present.figures`, which have their titles, legends and colour bar in Plotly.
"""

from __future__ import annotations

import copy
import math
import re

# Plotly's "Viridis" colour scale (its stops, as plotly.js defines them), written out so that
# the heatmap and the page's HTML colour bar are drawn from the same list.
VIRIDIS = [
    [0.0, "#440154"], [0.06274509803921569, "#48186a"], [0.12549019607843137, "#472d7b"],
    [0.18823529411764706, "#424086"], [0.25098039215686274, "#3b528b"],
    [0.3137254901960784, "#33638d"], [0.3764705882352941, "#2c728e"],
    [0.4392156862745098, "#26828e"], [0.5019607843137255, "#21918c"],
    [0.5647058823529412, "#1fa088"], [0.6274509803921569, "#28ae80"],
    [0.6901960784313725, "#3fbc73"], [0.7529411764705882, "#5ec962"],
    [0.8156862745098039, "#84d44b"], [0.8784313725490196, "#addc30"],
    [0.9411764705882353, "#d8e219"], [1.0, "#fde725"],
]

# Pixels around each plot (no title above, no legend below: both are HTML now). The top
# margin keeps Plotly's tool buttons (shown on hover or tap) clear of the data. The tornado's
# left margin fits its longest input name (about 6.4 px a character at 12 px).
DEFAULT_MARGIN = {"l": 64, "r": 16, "t": 30, "b": 48}
TORNADO_MARGIN = {"l": 170, "r": 24, "t": 30, "b": 48}

# the core's title with a note (kvcache_calculator.present.figures): "title<br><sup>note</sup>"
_NOTE_START, _NOTE_END = "<br><sup>", "</sup>"
_Y_FIELD = re.compile(r"%\{y(:[^}]*)?\}")


def is_classic(trace: dict) -> bool:
    """A trace drawing the original calculator's formula (shown only on the page's toggle)."""
    tag = f"{trace.get('meta', '')} {trace.get('name', '')} {trace.get('legendgroup', '')}".lower()
    return "classic" in tag or "original" in tag


def split_title(layout: dict) -> tuple[str, str]:
    """The title and its note as plain text: the core writes ``title`` or
    ``title<br><sup>note</sup>``, both parts plain text."""
    title = layout.get("title")
    text = title.get("text", "") if isinstance(title, dict) else str(title or "")
    head, _, note = text.partition(_NOTE_START)
    return head, note.removesuffix(_NOTE_END)


def legend_entries(data: list[dict]) -> list[dict]:
    """What Plotly's legend would show, as plain values for an HTML legend: the name, the
    colour and how to draw the swatch (``line`` with a dash, ``marker`` with a symbol, ``bar``)."""
    entries = []
    for trace in data:
        if trace.get("showlegend") is False or trace.get("visible") is False:
            continue
        if trace.get("type") == "heatmap" or not trace.get("name"):
            continue
        marker = trace.get("marker") or {}
        line = trace.get("line") or {}
        if trace.get("type") == "bar":
            entry = {"kind": "bar", "color": marker.get("color", "#444")}
        elif "markers" in str(trace.get("mode", "")) and "lines" not in str(trace.get("mode", "")):
            entry = {"kind": "marker", "color": marker.get("color", "#444"),
                     "symbol": marker.get("symbol", "circle"),
                     "outline": (marker.get("line") or {}).get("color", "")}
        else:
            entry = {"kind": "line", "color": line.get("color", "#444"),
                     "dash": line.get("dash", "solid"), "width": line.get("width", 2)}
        entry["name"] = str(trace["name"])
        entries.append(entry)
    return entries


def decade_ticks(low: float, high: float) -> tuple[list[float], list[str]]:
    """Ticks at 1, 2 and 5 times powers of ten between ``low`` and ``high`` (both > 0), as
    log10 positions and labels: what Plotly's ``dtick: "D2"`` shows on a log axis."""
    values, labels = [], []
    for decade in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for digit in (1, 2, 5):
            v = digit * 10.0 ** decade
            if low * (1 - 1e-9) <= v <= high * (1 + 1e-9):
                values.append(round(math.log10(v), 12))
                labels.append(f"{v:g}")
    return values, labels


def _log_y_to_linear(figure: dict) -> None:
    """Draw a heatmap's log-scale y-axis as log10 values on a linear axis (see the module
    docstring): ticks and hover text still show the real values."""
    layout = figure["layout"]
    yaxis = layout.get("yaxis") or {}
    ys = [v for t in figure["data"] for v in (t.get("y") or []) if isinstance(v, (int, float)) and v > 0]
    if yaxis.get("type") != "log" or not ys:
        return
    for trace in figure["data"]:
        y = trace.get("y") or []
        if not y or not all(isinstance(v, (int, float)) and v > 0 for v in y):
            continue
        shown = [f"{v:.3g}" for v in y]
        if trace.get("type") == "heatmap":
            trace["text"] = [[shown[i]] * len(row) for i, row in enumerate(trace.get("z") or [])]
        else:
            trace["text"] = shown
        trace["y"] = [math.log10(v) for v in y]
        if "hovertemplate" in trace:
            trace["hovertemplate"] = _Y_FIELD.sub("%{text}", trace["hovertemplate"])
    # the heatmap's cells reach half a row beyond the first and last row centres
    step = (math.log10(max(ys)) - math.log10(min(ys))) / max(1, len(set(ys)) - 1)
    low, high = 10 ** (math.log10(min(ys)) - step / 2), 10 ** (math.log10(max(ys)) + step / 2)
    tickvals, ticktext = decade_ticks(low, high)
    # no zero line: 0 here is log10(1), not a value the axis starts from
    layout["yaxis"] = {"title": yaxis.get("title", {}), "type": "linear", "zeroline": False,
                       "tickmode": "array", "tickvals": tickvals, "ticktext": ticktext}


def for_page(name: str, figure: dict, *, show_classic: bool = False) -> dict:
    """The page's drawing of the core's figure ``figure`` for chart ``name``
    (``hit_vs_memory``, ``sensitivity``, ``tornado`` or ``heatmap``; the name picks margins).

    Returns ``{"figure", "title", "note", "legend", "colorbar"}``: the Plotly figure without
    title, legend or colour bar, and those as plain values for HTML (``colorbar`` is None
    unless the figure has a heatmap). ``figure`` itself is not changed: the layout, the axes
    and the traces are copied, and data arrays are replaced, never edited.
    """
    layout = copy.deepcopy(figure.get("layout") or {})
    data = [dict(t) for t in figure.get("data") or [] if not is_classic(t) or show_classic]
    fig = {"data": data, "layout": layout}
    title, note = split_title(layout)
    for trace in data:
        if is_classic(trace):
            trace["visible"] = True
    colorbar = None
    for trace in data:
        if trace.get("type") == "heatmap":
            trace["showscale"] = False
            trace["colorscale"] = VIRIDIS
            bar_title = ((trace.get("colorbar") or {}).get("title") or {}).get("text", "")
            colorbar = {"title": bar_title, "min": trace.get("zmin", 0), "max": trace.get("zmax", 100),
                        "stops": VIRIDIS}
    legend = legend_entries(data) if layout.get("showlegend", True) is not False else []
    _log_y_to_linear(fig)
    layout.pop("title", None)
    layout.pop("height", None)
    layout["showlegend"] = False
    layout["margin"] = dict(TORNADO_MARGIN if name == "tornado" else DEFAULT_MARGIN)
    if name == "tornado":
        longest = max((len(str(v)) for t in data for v in t.get("y") or []), default=10)
        layout["margin"]["l"] = max(80, min(TORNADO_MARGIN["l"], round(6.4 * longest) + 18))
    for axis in ("xaxis", "yaxis"):
        ax = layout.setdefault(axis, {})
        ax["automargin"] = False
        ax["ticklabeloverflow"] = "allow"
    # a little more room under the x labels, so that the first one does not touch the y-axis'
    # "0" in the corner on a narrow screen
    layout["xaxis"]["ticklabelstandoff"] = 4
    return {"figure": fig, "title": title, "note": note, "legend": legend, "colorbar": colorbar}
