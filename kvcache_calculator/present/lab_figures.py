"""The lab page's figures as plain Plotly dicts, like :mod:`kvcache_calculator.present.figures`
(scatter and bar traces only): simulated points on the calculator's memory curve, the policy
and routing comparison, and a replayed trace's LRU curve and policy comparison.
"""

from __future__ import annotations

from typing import Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import SimTask
from kvcache_calculator.present.lab_tables import trace_capacities
from kvcache_calculator.sim.simulate import SimulationResult
from kvcache_calculator.traces.replay import GIB, LRUCurve
from kvcache_calculator.units import format_percent

__all__ = ["with_simulated_points", "comparison_figure", "trace_curve_figure", "trace_policy_figure",
           "TRACE_POLICIES", "CURVE_UNITS"]

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
    layout = {
        "title": {"text": "Trace: exact LRU hit rate vs cache capacity", "font": {"size": 15},
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
