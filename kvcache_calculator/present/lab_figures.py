"""The lab page's figures as plain Plotly dicts, like :mod:`kvcache_calculator.present.figures`
(scatter and bar traces): simulated points on the calculator's memory curve, the
policy and routing comparison, a trace's LRU curve and policy comparison, and for real traffic
the gap split as a waterfall, the reuse-time histogram and hit rate against instances.
"""

from __future__ import annotations

from typing import Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import SimTask
from kvcache_calculator.present.lab_tables import trace_capacities
from kvcache_calculator.sim.simulate import SimulationResult
from kvcache_calculator.traces.replay import GIB, LRUCurve
from kvcache_calculator.present.real_traffic import ideal_speedup
from kvcache_calculator.units import format_duration, format_percent

__all__ = ["with_simulated_points", "comparison_figure", "trace_curve_figure", "trace_policy_figure",
           "gap_waterfall_figure", "reuse_time_figure", "routing_figure", "TRACE_POLICIES",
           "CURVE_UNITS", "GAP_PARTS"]

#: The parts of the gap split in waterfall order: (key, label).
GAP_PARTS = (("no_reuse", "No reuse"), ("capacity", "Capacity"), ("policy", "Policy"),
             ("routing", "Routing"))

TRACE_POLICIES = ("lru", "fifo", "lfu", "belady")
CURVE_UNITS = ("blocks", "tokens", "gib")

_SIM = "#2ca02c"
_LINE = "#1f77b4"
_CEILING = "#d62728"
_CURRENT = "#ff7f0e"
_GREY = "#7f7f7f"


def _percent(x: float) -> float:
    """A 0-1 rate as the figures' y value (%)."""
    return round(100.0 * x, 4)


def _interval(result: SimulationResult) -> tuple:
    lo, hi = result.token_hit_rate_ci
    return _percent(result.token_hit_rate - lo), _percent(hi - result.token_hit_rate)


def with_simulated_points(figure: dict, tasks: Sequence[SimTask], results: dict) -> dict:
    """``figure`` (from ``figures.hit_vs_memory``) with the simulated token hit rates of the
    tasks that have an ``x`` added as markers with 95 % interval error bars."""
    points = sorted((t.x, results[t.name], t.label) for t in tasks
                    if t.x is not None and t.name in results)
    if not points:
        return figure
    low = [_interval(r)[0] for _, r, _ in points]
    high = [_interval(r)[1] for _, r, _ in points]
    policy = points[0][1].policy.upper()
    trace = {
        "type": "scatter", "mode": "markers", "name": f"Simulated ({policy}, 95 % CI)",
        "x": [x for x, _, _ in points], "y": [_percent(r.token_hit_rate) for _, r, _ in points],
        "error_y": {"type": "data", "symmetric": False, "array": high, "arrayminus": low,
                    "color": _SIM, "thickness": 1.5, "width": 4},
        "marker": {"color": _SIM, "size": 9, "symbol": "circle-open", "line": {"width": 2}},
        "customdata": [[r.capacity_tokens, r.requests, label] for _, r, label in points],
        "hovertemplate": "simulated: %{y:.1f}%<br>%{customdata[0]:,} tokens per instance"
                         "<br>%{customdata[1]:,} measured requests<extra></extra>",
    }
    return {"data": list(figure.get("data", [])) + [trace], "layout": figure.get("layout", {})}


def comparison_figure(tasks: Sequence[SimTask], results: dict, analytic: dict) -> dict:
    """Simulated token hit rate (%) with 95 % intervals for each policy and routing task,
    beside the analytic LRU model's value (``analytic``: task name -> 0-1 rate or None)."""
    shown = [t for t in tasks if t.name in results]
    groups = {"policy": "Eviction policy", "routing": "Routing"}
    data = []
    for group, title in groups.items():
        items = [t for t in shown if t.group == group]
        if not items:
            continue
        x = [t.label for t in items]
        data.append({
            "type": "bar", "name": f"{title} (simulated)", "x": x,
            "y": [_percent(results[t.name].token_hit_rate) for t in items],
            "error_y": {"type": "data", "symmetric": False,
                        "array": [_interval(results[t.name])[1] for t in items],
                        "arrayminus": [_interval(results[t.name])[0] for t in items]},
            "marker": {"color": _SIM if group == "policy" else _LINE},
            "hovertemplate": "%{x}: %{y:.1f}% simulated<extra></extra>",
        })
        model = [(xi, analytic.get(t.name)) for xi, t in zip(x, items) if analytic.get(t.name) is not None]
        if model:
            data.append({
                "type": "scatter", "mode": "markers", "name": "Analytic LRU model" if group == "policy"
                else "Analytic model (routing)", "x": [m[0] for m in model],
                "y": [_percent(m[1]) for m in model],
                "marker": {"color": _CURRENT, "size": 12, "symbol": "diamond",
                           "line": {"width": 1, "color": "#000"}},
                "hovertemplate": "%{x}: %{y:.1f}% analytic<extra></extra>",
            })
    ceiling = [results[t.name].max_token_hit_rate for t in shown]
    layout = {
        "title": {"text": "Policies and routings (simulated, 95 % CI)", "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 150},
        "xaxis": {"title": {"text": ""}, "automargin": False, "type": "category", "tickangle": -30},
        "yaxis": {"title": {"text": "Token hit rate (%)"}, "automargin": False,
                  "range": [0, 100]},
        "legend": {"orientation": "h", "x": 0, "y": -0.35, "yanchor": "top"},
        "hovermode": "closest", "font": {"size": 12}, "barmode": "overlay",
    }
    if ceiling:
        _mark_ceiling(layout, max(ceiling), "ceiling")
    return {"data": data, "layout": layout}


def _mark_ceiling(layout: dict, rate: float, label: str) -> None:
    """A dashed line across the chart at hit rate ``rate`` (0-1), labelled ``<label> <rate>%``."""
    top = _percent(rate)
    layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": top, "y1": top,
                         "line": {"color": _CEILING, "dash": "dash", "width": 1.5}}]
    layout["annotations"] = [{"xref": "paper", "x": 1, "y": top, "yanchor": "bottom",
                              "xanchor": "right", "showarrow": False,
                              "text": f"{label} {format_percent(rate, unit='%')}", "font": {"color": _CEILING}}]


def _convert(blocks: float, unit: str, block_size: int, kv_bytes_per_token: float | None) -> float:
    if unit == "blocks":
        return blocks
    if unit == "tokens":
        return blocks * block_size
    if kv_bytes_per_token is None:
        raise ScenarioError("unit", unit, "GiB needs the model's KV bytes per token")
    return blocks * block_size * kv_bytes_per_token / GIB


_UNIT_TITLES = _UNIT_TITLES = {"blocks": "Cache capacity (blocks of {bs} tokens)", "tokens": "Cache capacity (tokens)",
                "gib": "Cache capacity (GiB of KV, {model})"}


def trace_curve_figure(curve: LRUCurve, unit: str = "blocks", *, kv_bytes_per_token: float | None = None,
                       model_name: str = "", current_capacity_tokens: int | None = None,
                       max_points: int = 200) -> dict:
    """The exact LRU hit rate (%) of a replayed trace against capacity (log axis) in
    ``unit`` (``blocks``, ``tokens`` or ``gib`` for ``kv_bytes_per_token``), token and block
    hit rates, the ceiling, the current capacity and the 50/90/99 % capacities marked."""
    if unit not in CURVE_UNITS:
        raise ScenarioError("unit", unit, "allowed: " + ", ".join(CURVE_UNITS))
    bs = curve.block_size
    pts = curve.points(max_points)
    rows = trace_capacities(curve, kv_bytes_per_token, current_capacity_tokens)
    top = max([p[0] for p in pts] + [r["capacity_blocks"] for r in rows] + [1])
    if pts and pts[-1][0] < top * 1.25:
        pts.append((round(top * 1.25) or 1, curve.infinite_block_hit_rate, curve.infinite_token_hit_rate))

    def conv(blocks):
        return round(_convert(blocks, unit, bs, kv_bytes_per_token), 6)

    caps = [p[0] for p in pts]
    x = [conv(c) for c in caps]
    custom = [[c, c * bs, None if kv_bytes_per_token is None else round(c * bs * kv_bytes_per_token / GIB, 4)]
              for c in caps]
    hover = ("%{customdata[0]:,} blocks = %{customdata[1]:,} tokens"
             + ("" if kv_bytes_per_token is None else " = %{customdata[2]:.3g} GiB"))
    data = [
        {"type": "scatter", "mode": "lines", "name": "Token hit rate (exact LRU replay)",
         "x": x, "y": [_percent(p[2]) for p in pts], "line": {"color": _LINE, "width": 2.5, "shape": "hv"},
         "customdata": custom, "hovertemplate": hover + "<br>token hit rate %{y:.1f}%<extra></extra>"},
        {"type": "scatter", "mode": "lines", "name": "Block hit rate",
         "x": x, "y": [_percent(p[1]) for p in pts], "line": {"color": _GREY, "width": 1.5, "dash": "dot",
                                                            "shape": "hv"},
         "customdata": custom, "hovertemplate": hover + "<br>block hit rate %{y:.1f}%<extra></extra>"},
    ]
    if x:
        ceiling = _percent(curve.infinite_token_hit_rate)
        data.append({"type": "scatter", "mode": "lines",
                     "name": f"Ceiling (infinite cache) {format_percent(curve.infinite_token_hit_rate, unit='%')}",
                     "x": [x[0], x[-1]],
                     "y": [ceiling, ceiling], "line": {"color": _CEILING, "dash": "dash", "width": 1.5},
                     "hoverinfo": "name"})
    marks = [r for r in rows if r["key"] in ("p50", "p90", "p99") and r["capacity_blocks"] > 0]
    if marks:
        data.append({"type": "scatter", "mode": "markers+text", "name": "50 / 90 / 99 % of the ceiling",
                     "x": [conv(r["capacity_blocks"]) for r in marks],
                     "y": [_percent(r["token_hit_rate"]) for r in marks],
                     "text": [r["key"][1:] + "%" for r in marks], "textposition": "top left",
                     "marker": {"color": _GREY, "size": 9, "symbol": "triangle-up"},
                     "customdata": [[r["capacity_blocks"], r["capacity_tokens"]] for r in marks],
                     "hovertemplate": "%{text} of the ceiling: %{customdata[0]:,} blocks"
                                      " = %{customdata[1]:,} tokens<extra></extra>"})
    current = next((r for r in rows if r["key"] == "current"), None)
    if current is not None and current["capacity_blocks"] > 0:
        cx = conv(current["capacity_blocks"])
        data.append({"type": "scatter", "mode": "lines+markers", "name": "Current configuration",
                     "x": [cx, cx], "y": [0, _percent(current["token_hit_rate"])],
                     "line": {"color": _CURRENT, "width": 1.5},
                     "marker": {"color": _CURRENT, "size": [0, 11], "symbol": "diamond"},
                     "hovertemplate": f"current capacity: {current['capacity_blocks']:,} blocks"
                                      "<br>token hit rate %{y:.1f}%<extra></extra>"})
    approximate = getattr(curve, "approximate", False)
    if approximate:
        rates = getattr(curve, "rates", (curve.rate,))
        data[0]["name"] = ("Token hit rate (sampled replay at rate "
                           + " / ".join(f"{r:g}" for r in rates)
                           + (" by capacity" if len(rates) > 1 else "") + ", approximate)")
    layout = {
        "title": {"text": ("Trace: LRU hit rate vs cache capacity (sampled, approximate)" if approximate
                           else "Trace: exact LRU hit rate vs cache capacity"), "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 150},
        "xaxis": {"title": {"text": _UNIT_TITLES[unit].format(bs=bs, model=model_name or "this model")},
                  "type": "log", "automargin": False},
        "yaxis": {"title": {"text": "Hit rate (%)"}, "range": [0, 100], "automargin": False},
        "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"},
        "hovermode": "closest", "font": {"size": 12},
    }
    return {"data": data, "layout": layout}


def trace_policy_figure(results: dict) -> dict:
    """Token and block hit rates (%) of each replayed policy at one capacity (bars), with the
    ceiling; ``results`` maps policy names to one-capacity ReplayResults."""
    order = [p for p in TRACE_POLICIES if p in results]
    names = [p.upper() if p != "belady" else "Belady (MIN)" for p in order]
    data = [
        {"type": "bar", "name": "Token hit rate", "x": names,
         "y": [_percent(results[p].token_hit_rate[0]) for p in order], "marker": {"color": _LINE},
         "hovertemplate": "%{x}: token hit rate %{y:.2f}%<extra></extra>"},
        {"type": "bar", "name": "Block hit rate", "x": names,
         "y": [_percent(results[p].block_hit_rate[0]) for p in order], "marker": {"color": _GREY},
         "hovertemplate": "%{x}: block hit rate %{y:.2f}%<extra></extra>"},
    ]
    cap = results[order[0]].capacity_blocks[0] if order else 0
    bs = results[order[0]].block_size if order else 0
    layout = {
        "title": {"text": f"Trace: policies at {cap:,} blocks ({cap * bs:,} tokens)", "font": {"size": 15},
                  "x": 0.02, "xanchor": "left"},
        "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": 80}, "barmode": "group",
        "xaxis": {"type": "category", "automargin": False},
        "yaxis": {"title": {"text": "Hit rate (%)"}, "range": [0, 100], "automargin": False},
        "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}, "font": {"size": 12},
    }
    if order:
        _mark_ceiling(layout, results[order[0]].infinite_token_hit_rate, "token ceiling")
    return {"data": data, "layout": layout}


def _layout(title: str, bottom: int = 80) -> dict:
    return {"title": {"text": title, "font": {"size": 15}, "x": 0.02, "xanchor": "left"},
            "autosize": True, "margin": {"l": 56, "r": 16, "t": 48, "b": bottom},
            "font": {"size": 12}, "legend": {"orientation": "h", "x": 0, "y": -0.2, "yanchor": "top"}}


def gap_waterfall_figure(gap: dict) -> dict:
    """The split of the gap (:func:`kvcache_calculator.traces.gap.explain_gap` or
    :func:`kvcache_calculator.present.real_traffic.summary_gap`) as a waterfall in points of
    token hit rate: 100 % of prompt tokens, minus each cause, down to the hit rate (floating
    bars: each cause's bar spans what it takes away)."""
    parts = gap["overall"]["parts"]
    labels = ["All prompt tokens"] + [label for _, label in GAP_PARTS] + ["Hit rate"]
    # Plotly's waterfall trace is not in the page's cartesian bundle: bars with a base draw it.
    heights, bases, top = [100.0], [0.0], 100.0
    for key, _ in GAP_PARTS:
        h = _percent(parts[key])
        top -= h
        heights.append(h)
        bases.append(top)
    heights.append(_percent(parts["hit"]))
    bases.append(0.0)
    text = ["100"] + [f"−{h:.1f}" if h >= 0.05 else "0.0" for h in heights[1:-1]] + [f"{heights[-1]:.1f}"]
    colours = [_GREY] + [_CEILING] * len(GAP_PARTS) + [_LINE]
    speed = ideal_speedup(parts["hit"])
    data = [{"type": "bar", "name": "Points of token hit rate", "x": labels,
             "y": [round(h, 4) for h in heights], "base": [round(b, 4) for b in bases],
             "text": text, "textposition": "outside", "cliponaxis": False,
             "marker": {"color": colours},
             "hovertemplate": "%{x}: %{text} points<extra></extra>"}]
    where = (f"{gap['instances']} × {gap['capacity_blocks']:,} blocks, {gap['routing'].replace('_', ' ')}"
             if gap["instances"] > 1 else f"one cache of {gap['capacity_blocks']:,} blocks")
    title = f"Hit rate {format_percent(parts['hit'])}"
    if speed is not None:
        title += f" (ideal prefill speedup {speed:.2f}x)"
    title += f"<br><span style='font-size:12px'>{where}</span>"
    layout = _layout(title, 90)
    layout["margin"]["t"] = 64
    layout.update({"showlegend": False, "xaxis": {"type": "category", "automargin": True},
                   "yaxis": {"title": {"text": "Points of token hit rate"}, "range": [0, 108],
                             "automargin": False}})
    return {"data": data, "layout": layout}


def reuse_time_figure(gap: dict) -> dict:
    """The reuse-time histogram of a gap split (share of reuses per bin, log time axis) with
    the characteristic time ``T`` marked and the share of reuses within it."""
    hist = gap["reuse_time_histogram"]
    edges, counts = hist["upper_edges_s"], hist["counts"]
    total = sum(counts) or 1
    centres = [edges[0] / 10 ** 0.1] + [(edges[k - 1] * edges[k]) ** 0.5 for k in range(1, len(edges))]
    centres.append(edges[-1] * 10 ** 0.1)
    keep = [k for k, c in enumerate(counts) if c]
    data = [{"type": "bar", "name": "Reuses", "x": [round(centres[k], 6) for k in keep],
             "y": [round(100 * counts[k] / total, 4) for k in keep], "marker": {"color": _LINE},
             "hovertemplate": "around %{x:.3g} s: %{y:.1f}% of reuses<extra></extra>"}]
    t_char = gap.get("characteristic_time_s")
    share = gap.get("share_of_reuses_within_characteristic_time")
    title = "Time between a block's uses"
    layout = _layout(title, 80)
    layout.update({"showlegend": False, "bargap": 0.05,
                   "xaxis": {"title": {"text": "Reuse time (s, log scale)"}, "type": "log", "automargin": False},
                   "yaxis": {"title": {"text": "Share of reuses (%)"}, "automargin": False}})
    if t_char is not None and t_char > 0:
        layout["shapes"] = [{"type": "line", "xref": "x", "yref": "paper", "x0": t_char, "x1": t_char,
                             "y0": 0, "y1": 1, "line": {"color": _CURRENT, "width": 2, "dash": "dash"}}]
        note = f"T = {format_duration(t_char)}"
        if share is not None:
            note += f": {format_percent(share)} of reuses within T"
        layout["title"]["text"] = f"{title}<br><span style='font-size:12px;color:{_CURRENT}'>{note}</span>"
        layout["margin"]["t"] = 64
    return {"data": data, "layout": layout}


_ROUTING_COLOURS = {"round_robin": _LINE, "random": _GREY, "prefix": _SIM, "cache_aware": _CURRENT,
                    "session": "#9467bd"}


def routing_figure(routing: dict) -> dict:
    """Fleet token hit rate (%) against instances (1, 2, 4, 8), one line per routing, at a
    capacity per instance (:func:`kvcache_calculator.present.real_traffic.summary_routing`)."""
    n = routing["instances"]
    data = []
    for name, rates in routing["token_hit_rate"].items():
        data.append({"type": "scatter", "mode": "lines+markers", "name": name.replace("_", " "),
                     "x": n, "y": [round(_percent(r), 4) for r in rates],
                     "customdata": [round(ideal_speedup(r) or 0, 3) for r in rates],
                     "line": {"color": _ROUTING_COLOURS.get(name, _LINE), "width": 2},
                     "hovertemplate": name.replace("_", " ")
                     + ", %{x} instances: %{y:.1f}% (ideal prefill speedup %{customdata:.2f}x)<extra></extra>"})
    cap = routing["capacity_blocks"]
    layout = _layout(f"Hit rate against instances, {cap:,} blocks per instance", 110)
    layout.update({"xaxis": {"title": {"text": "Instances (each with its own cache)"}, "type": "log",
                             "tickvals": n, "ticktext": [str(v) for v in n], "automargin": False},
                   "yaxis": {"title": {"text": "Token hit rate, fleet (%)"}, "rangemode": "tozero",
                             "automargin": False},
                   "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"}})
    return {"data": data, "layout": layout}
