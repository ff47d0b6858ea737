"""Figures as plain Plotly figure dicts (``{"data": [...], "layout": {...}}``, docs/architecture.md §5).

Only the trace types ``scatter``, ``bar`` and ``heatmap`` are used (the page ships Plotly's
"cartesian" bundle). Hit rates are 0-1 fractions in the core and shown here as % (times
100 in the figure data). Every axis names its unit; the current scenario is marked; the
infinite-cache ceiling is a dashed line; no layout fixes a width, so the page can size the
charts to a 390 px phone. A Python user can draw one with
``plotly.graph_objects.Figure(fig)``.
"""

from __future__ import annotations

from kvcache_calculator.analytic import sweeps
from kvcache_calculator.analytic.table import Analysis
from kvcache_calculator.compat import classic_hit_rate_for_setup
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario
from kvcache_calculator.setup.resolve import Setup

_LINE = "#1f77b4"
_CEILING = "#d62728"
_CURRENT = "#ff7f0e"
_GREY = "#7f7f7f"


def _pct(v: float) -> float:
    return round(100.0 * v, 4)


def _num(v: float) -> str:
    """A short human number: 1.2k, 45.3, 0.25."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if float(v).is_integer():
        return f"{int(v)}"
    return f"{v:.3g}"


def in_sentence(label: str) -> str:
    """A form label inside a sentence: "Think time" -> "think time"; an acronym stays ("KV
    cache size override", "GPU memory")."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


def unit_for(value: float, unit: str) -> str:
    """``unit`` after ``value``: its first word in the singular for exactly 1 ("1 instance",
    "1 conversation/s", "1 token"), as written otherwise."""
    head, sep, rest = unit.partition(" ")
    word, slash, per = head.partition("/")
    if value == 1 and len(word) > 2 and word.endswith("s") and word != "GiB":
        return word[:-1] + slash + per + sep + rest
    return unit


def _axis_title(key: str) -> str:
    f = FIELD_BY_KEY[key]
    return f"{f.label} ({f.unit})" if f.unit else f.label


def _policy_note(scenario: Scenario) -> str:
    if scenario.policy == "lru":
        return ""
    return f"LRU model; {scenario.policy.upper()} needs the simulator"


def _layout(title: str, x_title: str, y_title: str, note: str = "", **extra) -> dict:
    """A responsive layout (no width), readable on a phone: compact margins, legend below."""
    text = title + (f"<br><sup>{note}</sup>" if note else "")
    layout = {
        "title": {"text": text, "font": {"size": 15}, "x": 0.02, "xanchor": "left"},
        "autosize": True,
        "margin": {"l": 56, "r": 16, "t": 64 if note else 48, "b": 56},
        "xaxis": {"title": {"text": x_title}, "automargin": True},
        "yaxis": {"title": {"text": y_title}, "automargin": True},
        "legend": {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top"},
        "hovermode": "closest",
        "font": {"size": 12},
    }
    layout.update(extra)
    return layout


def _ceiling_trace(x0: float, x1: float, ceiling: float) -> dict:
    return {"type": "scatter", "mode": "lines", "name": f"Ceiling (infinite cache) {100 * ceiling:.1f}%",
            "x": [x0, x1], "y": [_pct(ceiling), _pct(ceiling)],
            "line": {"color": _CEILING, "dash": "dash", "width": 1.5}, "hoverinfo": "name"}


def _current_trace(x: float, hit: float, x_title: str, text: str = "this scenario") -> dict:
    return {"type": "scatter", "mode": "markers", "name": "This scenario", "x": [x], "y": [_pct(hit)],
            "marker": {"color": _CURRENT, "size": 11, "symbol": "diamond", "line": {"width": 1, "color": "#000"}},
            "hovertemplate": f"{text}<br>{x_title}: %{{x:.4g}}<br>token hit rate: %{{y:.1f}}%<extra></extra>"}


def classic_curve(setup: Setup, memory_gib: list[float]) -> list[float]:
    """The original calculator's hit rate (0-1) at each memory size per GPU, from
    :func:`kvcache_calculator.compat.classic_hit_rate_for_setup`."""
    return [classic_hit_rate_for_setup(setup, m) for m in memory_gib]


def hit_vs_memory(analysis: Analysis, points: int = 100, classic: bool = True) -> dict:
    """Token hit rate (%) against GPU memory per GPU, with the current point, the ceiling, the
    GPU-only curve when an offload tier is set, and the original formula (hidden in the legend;
    left out when ``classic`` is false: the page draws it only on its toggle, and it is about
    a third of this figure's computing time)."""
    s = analysis.scenario
    curve = sweeps.hit_vs_memory(analysis, points)
    x = [round(m, 4) for m in curve.memory_gib]
    x_title = "GPU memory per GPU (GiB)"
    data = [{
        "type": "scatter", "mode": "lines", "name": "Token hit rate (model)",
        "x": x, "y": [_pct(v) for v in curve.token_hit_rate], "line": {"color": _LINE, "width": 2.5},
        "customdata": list(curve.capacity_tokens),
        "hovertemplate": "%{x:.1f} GiB per GPU<br>%{customdata:,} tokens per instance"
                         "<br>token hit rate %{y:.1f}%<extra></extra>",
    }]
    if analysis.capacity.offload_tokens > 0:
        data.append({"type": "scatter", "mode": "lines", "name": "GPU cache only (no offload)",
                     "x": x, "y": [_pct(v) for v in curve.gpu_only_hit_rate],
                     "line": {"color": _LINE, "dash": "dot", "width": 1.5},
                     "hovertemplate": "%{x:.1f} GiB: %{y:.1f}% from GPU memory<extra></extra>"})
    data.append(_ceiling_trace(x[0], x[-1], curve.ceiling))
    if classic:
        data.append({"type": "scatter", "mode": "lines", "name": "Original calculator's formula",
                     "visible": "legendonly", "x": x,
                     "y": [_pct(v) for v in classic_curve(analysis.setup, list(curve.memory_gib))],
                     "line": {"color": _GREY, "dash": "dashdot", "width": 1.5},
                     "hovertemplate": "original formula: %{y:.1f}%<extra></extra>"})
    cur_text = "this scenario" + (" (capacity from kv_cache_tokens)"
                                  if analysis.capacity.derived_from == "kv_cache_tokens" else "")
    data.append(_current_trace(curve.current_memory_gib, curve.current_hit_rate, x_title, cur_text))
    notes = [_policy_note(s)]
    if not analysis.result.fits:
        notes.append("the model does not fit at the current memory")
    if analysis.capacity.derived_from == "kv_cache_tokens":
        notes.append("capacity from kv_cache_tokens: marked at the memory that holds it")
    note = "; ".join(n for n in notes if n)
    layout = _layout("Token hit rate vs GPU memory", x_title, "Token hit rate (%)", note,
                     yaxis={"title": {"text": "Token hit rate (%)"}, "range": [0, 100], "automargin": True})
    return {"data": data, "layout": layout}


def unset_reason(scenario: Scenario, key: str) -> str:
    """Why numeric input ``key`` has no value to vary in ``scenario``."""
    label = FIELD_BY_KEY[key].label
    if key == "kv_cache_tokens":
        return f"{label} is not set: enter the capacity your engine reports to vary it"
    if key == "activation_reserve_gib" and scenario.engine != "manual":
        return f"{label} applies to engine manual only: {scenario.engine} sizes its own reserve"
    if FIELD_BY_KEY[key].group == "model" and scenario.model != "custom":
        return f"{label} comes from the {scenario.model} preset: enter it under Architecture to vary it"
    return f"{label} is not set for this scenario"


def sensitivity(analysis: Analysis, key: str = sweeps.DEFAULT_KEY, points: int = 100) -> dict:
    """Token hit rate (%) over the sweep range of one numeric input ``key``
    (:data:`kvcache_calculator.analytic.sweeps.NUMERIC_KEYS`), with the ceiling and the current point.

    A key of that list that is empty for this scenario gives an empty chart saying so; a key
    outside it raises :class:`~kvcache_calculator.errors.ScenarioError`."""
    if key in sweeps.SWEEPS and sweeps.base_value(analysis, key) is None:
        # offered by the selector but empty here (e.g. kv_cache_tokens not given): say why
        label = FIELD_BY_KEY[key].label
        return {"data": [], "layout": _layout(f"Token hit rate vs {in_sentence(label)}", _axis_title(key),
                                              "Token hit rate (%)", unset_reason(analysis.scenario, key))}
    curve = sweeps.sensitivity_curve(analysis, key, points)
    x_title = _axis_title(key)
    x = list(curve.values)
    constant_ceiling = len(set(curve.ceiling)) == 1
    data = [{"type": "scatter", "mode": "lines", "name": "Token hit rate (model)", "x": x,
             "y": [_pct(v) for v in curve.token_hit_rate], "line": {"color": _LINE, "width": 2.5},
             "hovertemplate": f"{curve.label}: %{{x:.4g}}<br>token hit rate %{{y:.1f}}%<extra></extra>"}]
    if constant_ceiling:
        data.append(_ceiling_trace(x[0], x[-1], curve.ceiling[0]))
    else:
        data.append({"type": "scatter", "mode": "lines", "name": "Ceiling (infinite cache)", "x": x,
                     "y": [_pct(v) for v in curve.ceiling], "line": {"color": _CEILING, "dash": "dash", "width": 1.5},
                     "hovertemplate": "ceiling %{y:.1f}%<extra></extra>"})
    data.append(_current_trace(curve.current_value, curve.current_hit_rate, x_title))
    xaxis = {"title": {"text": x_title}, "automargin": True}
    if curve.log_scale:
        xaxis["type"] = "log"
    layout = _layout(f"Token hit rate vs {in_sentence(curve.label)}", x_title, "Token hit rate (%)",
                     _policy_note(analysis.scenario), xaxis=xaxis,
                     yaxis={"title": {"text": "Token hit rate (%)"}, "range": [0, 100], "automargin": True})
    return {"data": data, "layout": layout}


def tornado(analysis: Analysis, fraction: float = 0.2) -> dict:
    """Change of the token hit rate (percentage points) for -/+``fraction`` of each numeric input,
    largest swing at the top."""
    t = sweeps.tornado(analysis, fraction)
    pct = round(100 * fraction)
    labels = [b.label for b in t.bars]
    base = t.base_hit_rate

    def trace(name: str, side: str, color: str) -> dict:
        vals = [getattr(b, f"{side}_value") for b in t.bars]
        rates = [getattr(b, f"{side}_hit_rate") for b in t.bars]
        return {"type": "bar", "orientation": "h", "name": name, "y": labels,
                "x": [round(100 * (r - base), 4) for r in rates],
                "customdata": [[_num(v), unit_for(v, b.unit), round(100 * r, 2)] for v, b, r in zip(vals, t.bars, rates)],
                "marker": {"color": color}, "opacity": 0.85,
                "hovertemplate": "%{y} = %{customdata[0]} %{customdata[1]}<br>"
                                 "token hit rate %{customdata[2]:.1f}% (%{x:+.1f} points)<extra></extra>"}

    data = [trace(f"-{pct}%", "low", "#4c78a8"), trace(f"+{pct}%", "high", "#f58518")]
    # the bars are changes from the base: it is always named, beside any other note
    notes = [f"base {100 * base:.1f}%", _policy_note(analysis.scenario)]
    if not t.bars:
        notes.append("no input changes the hit rate here")
    layout = _layout(f"What moves the hit rate: each input -/+{pct}%",
                     "Hit-rate change (% points)", "", "; ".join(n for n in notes if n),
                     barmode="overlay", height=max(260, 120 + 30 * len(labels)),
                     yaxis={"autorange": "reversed", "automargin": True, "type": "category"})
    layout["xaxis"]["zeroline"] = True
    return {"data": data, "layout": layout}


def heatmap(analysis: Analysis, rows: int = 30, cols: int = 30) -> dict:
    """Token hit rate (%) over GPU memory per GPU x conversation arrival rate (log scale), with
    the current point."""
    h = sweeps.heatmap(analysis, rows, cols)
    x_title = "GPU memory per GPU (GiB)"
    y_title = _axis_title("arrival_rate")
    data = [
        {"type": "heatmap", "name": "Token hit rate", "x": [round(m, 4) for m in h.memory_gib],
         "y": [float(f"{v:.6g}") for v in h.arrival_rate], "z": [[_pct(v) for v in row] for row in h.token_hit_rate],
         "zmin": 0, "zmax": 100, "colorscale": "Viridis",
         "colorbar": {"title": {"text": "Hit rate (%)", "side": "right"}, "thickness": 12},
         "hovertemplate": "%{x:.1f} GiB per GPU<br>conversation arrivals: %{y:.3g} per s<br>"
                          "token hit rate %{z:.1f}%<extra></extra>"},
        {"type": "scatter", "mode": "markers", "name": "This scenario", "x": [h.current_memory_gib],
         "y": [h.current_arrival_rate], "showlegend": False,
         "marker": {"color": "#ffffff", "size": 12, "symbol": "x", "line": {"width": 2, "color": "#000"}},
         "hovertemplate": "this scenario: %{x:.1f} GiB, conversation arrivals %{y:.3g} per s<br>"
                          f"token hit rate {100 * h.current_hit_rate:.1f}%<extra></extra>"},
    ]
    layout = _layout("Token hit rate: memory x traffic", x_title, y_title, _policy_note(analysis.scenario),
                     yaxis={"title": {"text": y_title}, "type": "log", "dtick": "D2", "automargin": True})
    layout["showlegend"] = False
    return {"data": data, "layout": layout}


#: The parts of one GPU's memory at engine start-up, in the order they are drawn, with colours.
MEMORY_PARTS = (("weights_gib", "Weights", "#4c72b0"), ("activation_gib", "Activation peak", "#dd8452"),
                ("cuda_graph_gib", "CUDA graphs", "#8172b3"), ("non_torch_gib", "Other (NCCL, cuBLAS)", "#937860"),
                ("kv_cache_gib", "KV cache", "#55a868"), ("headroom_gib", "Outside the engine's budget", "#c8c8c8"))


def memory_breakdown(setup: Setup) -> dict:
    """One GPU's memory at engine start-up as a stacked horizontal bar (GiB): weights, the
    profiled activation peak, CUDA graphs, other memory, the KV cache and what the engine
    leaves outside its budget (docs/engines.md §2). Empty data with the capacity override."""
    mem = setup.capacity.memory
    data = []
    if mem is not None:
        values = mem.to_dict()
        for key, name, colour in MEMORY_PARTS:
            gib = max(0.0, values[key])
            if gib <= 0 and key not in ("weights_gib", "kv_cache_gib"):
                continue
            data.append({"type": "bar", "orientation": "h", "name": name, "y": ["GPU"], "x": [round(gib, 3)],
                         "marker": {"color": colour},
                         "hovertemplate": f"{name}: %{{x:.2f}} GiB<extra></extra>"})
    engine = {"vllm": "vLLM", "sglang": "SGLang", "manual": "manual reserve"}[setup.scenario.engine]
    note = (f"{engine}, {mem.total_gib:g} GiB as CUDA reports it, budget {100 * mem.gpu_mem_util:.1f}%"
            if mem is not None else "capacity given by kv_cache_tokens")
    layout = _layout("Memory of one GPU at start-up", "GiB", "", note, barmode="stack", showlegend=True)
    layout["yaxis"]["showticklabels"] = False
    return {"data": data, "layout": layout}


def all_figures(analysis: Analysis, key: str = sweeps.DEFAULT_KEY) -> dict:
    """The figures of the page for one analysed scenario: ``hit_vs_memory``, ``sensitivity``
    (of ``key``), ``tornado``, ``heatmap`` and the GPU's ``memory`` breakdown."""
    return {"hit_vs_memory": hit_vs_memory(analysis),
            "sensitivity": sensitivity(analysis, key),
            "tornado": tornado(analysis),
            "heatmap": heatmap(analysis),
            "memory": memory_breakdown(analysis.setup)}
