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


#: Rows of a chart's data table (the text alternative under each chart): a curve's points
#: are sampled evenly down to this, a heatmap's rows and columns each.
TABLE_ROWS = 21
HEATMAP_CELLS = 10


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, (int, float)):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def _sample(n: int, most: int) -> list[int]:
    """Up to ``most`` indices of ``range(n)``, evenly spread, first and last included."""
    if n <= most:
        return list(range(n))
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def _axis_text(layout: dict, axis: str) -> str:
    title = (layout.get(axis) or {}).get("title") or {}
    return str(title.get("text", "") if isinstance(title, dict) else title)


def data_table(data: list[dict], layout: dict) -> dict:
    """A chart's numbers as a table for people who cannot see the chart (its text
    alternative): ``{"columns", "rows", "notes"}``, every cell a string. Curves that share the
    x values of the longest one are columns beside it (sampled to :data:`TABLE_ROWS` rows);
    a heatmap is a matrix (sampled to :data:`HEATMAP_CELLS` a side); horizontal bars are one
    row per category; single points and two-point lines (a constant ceiling) are ``notes``."""
    x_title, y_title = _axis_text(layout, "xaxis"), _axis_text(layout, "yaxis")
    notes: list[str] = []
    heat = next((t for t in data if t.get("type") == "heatmap"), None)
    if heat is not None:
        xs, ys, z = heat.get("x") or [], heat.get("y") or [], heat.get("z") or []
        cols, rows = _sample(len(xs), HEATMAP_CELLS), _sample(len(ys), HEATMAP_CELLS)
        columns = [f"{y_title} \\ {x_title}"] + [_cell(xs[j]) for j in cols]
        table = [[_cell(ys[i])] + [_cell(z[i][j]) for j in cols] for i in rows]
        notes.append(f"Cells: {heat.get('name', 'value')} (%).")
        data = [t for t in data if t is not heat]
        return {"columns": columns, "rows": table, "notes": notes + _point_notes(data, x_title, y_title)}
    bars = [t for t in data if t.get("type") == "bar" and t.get("orientation") == "h"]
    if bars and all(len(t.get("y") or []) == 1 for t in bars):   # one stacked bar: its parts
        return {"columns": ["Part", x_title], "rows": [[str(t.get("name", "")), _cell((t.get("x") or [None])[0])]
                                                       for t in bars], "notes": notes}
    if bars:
        categories = list(bars[0].get("y") or [])
        rows = [[str(c)] + [_cell((t.get("x") or [])[i]) if i < len(t.get("x") or []) else "" for t in bars]
                for i, c in enumerate(categories)]
        return {"columns": ["Input"] + [f"{t.get('name', '')} ({x_title})" for t in bars], "rows": rows, "notes": notes}
    curves = [t for t in data if len(t.get("x") or []) > 2]
    if not curves:
        return {"columns": [], "rows": [], "notes": _point_notes(data, x_title, y_title)}
    main = max(curves, key=lambda t: len(t.get("x") or []))
    xs = list(main.get("x") or [])
    joined = [t for t in curves if list(t.get("x") or []) == xs]
    rows = [[_cell(xs[i])] + [_cell((t.get("y") or [])[i]) for t in joined] for i in _sample(len(xs), TABLE_ROWS)]
    rest = [t for t in data if t not in joined]
    unit = y_title[y_title.rfind("(") + 1:-1] if y_title.endswith(")") else ""
    return {"columns": [x_title] + [f"{t.get('name', '')} ({unit})" if unit else str(t.get("name", "")) for t in joined],
            "rows": rows, "notes": _point_notes(rest, x_title, y_title)}


def _point_notes(data: list[dict], x_title: str, y_title: str) -> list[str]:
    """Sentences for single points and two-point lines."""
    notes = []
    for t in data:
        xs, ys = list(t.get("x") or []), list(t.get("y") or [])
        name = str(t.get("name") or "")
        if len(xs) == 1 and len(ys) == 1:
            notes.append(f"{name}: {x_title} = {_cell(xs[0])}, {y_title} = {_cell(ys[0])}.")
        elif len(ys) == 2 and ys[0] == ys[1]:
            notes.append(f"{name}: {y_title} = {_cell(ys[0])} at every {x_title}.")
    return notes


#: Said instead of a chart that shows nothing (the model does not fit, an input not set).
NOTHING_TO_SHOW = "The model does not fit on these GPUs, so the hit rate is 0 % everywhere here: see what would fit under Results."


def blank_reason(name: str, figure: dict, note: str, fits: bool) -> str:
    """Why chart ``name`` has nothing to show, or "": no data (its note says why), or, when
    the model does not fit, a tornado or sensitivity curve that is 0 everywhere."""
    data = figure.get("data") or []
    if not data:
        return note or "Nothing to show for this scenario."
    if fits:
        return ""
    if name == "tornado" and not any(v for t in data for v in t.get("x") or []):
        return NOTHING_TO_SHOW
    if name == "sensitivity" and not any(v for v in (data[0].get("y") or [])):
        return NOTHING_TO_SHOW
    return ""


def for_page(name: str, figure: dict, *, show_classic: bool = False, fits: bool = True) -> dict:
    """The page's drawing of the core's figure ``figure`` for chart ``name``
    (``hit_vs_memory``, ``sensitivity``, ``tornado`` or ``heatmap``; the name picks margins).

    Returns ``{"figure", "title", "note", "legend", "colorbar", "table", "blank"}``: the Plotly
    figure without title, legend or colour bar, and those as plain values for HTML
    (``colorbar`` is None unless the figure has a heatmap); ``table`` its numbers
    (:func:`data_table`); ``blank`` why it has nothing to show (:func:`blank_reason`, "" when
    it has), drawn as that sentence instead of an empty chart. ``fits``: whether the model fits. ``figure`` itself is not changed: the layout, the axes
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
    table = data_table(data, layout)
    blank = blank_reason(name, fig, note, fits)
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
    return {"figure": fig, "title": title, "note": note, "legend": legend, "colorbar": colorbar,
            "table": table, "blank": blank}
