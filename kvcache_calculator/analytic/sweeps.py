"""Sweeps of the analytic token hit rate: what happens if one input changes (docs/model.md §8).

- :func:`hit_vs_memory`: the hit rate against GPU memory per GPU, with the ceiling;
- :func:`sensitivity_curve`: the hit rate over a sensible range of one numeric input;
- :func:`tornado`: the hit-rate change for a +/-X% change of every numeric input, sorted;
- :func:`heatmap`: the hit rate over GPU memory per GPU x conversation arrival rate;
- :func:`tokens_for_hit_rate`: the cache (and, with
  :func:`~kvcache_calculator.setup.capacity.memory_for_tokens`, the memory) a hit rate needs.

Each takes an :class:`~kvcache_calculator.analytic.table.Analysis` (one setup analysed, with
its hit-rate table) and evaluates its points from the table where the changed input leaves
the model's sums alone, and by an exact solve where it does not (see
:mod:`kvcache_calculator.analytic.table`).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import asdict, dataclass

from kvcache_calculator.analytic.model import Traffic, capacity_for_hit_rate
from kvcache_calculator.analytic.table import (
    Analysis, interpolate_curve, table_answers, variant_hit_and_ceiling, variant_hit_rate,
)
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, with_updates
from kvcache_calculator.setup.architecture import tp_splits_heads, valid_tensor_parallel
from kvcache_calculator.setup.capacity import fit_memory_gib, memory_for_tokens, tokens_for_memory


@dataclass(frozen=True)
class SweepSpec:
    """How one numeric input is swept: ``lo``/``hi`` are factors of the current value
    (``relative``) or absolute bounds; ``log`` spaces the points geometrically."""

    key: str
    lo: float
    hi: float
    relative: bool
    log: bool
    floor_hi: float = 0.0      # the upper bound is at least this (absolute), e.g. 16 instances


#: The numeric inputs offered by the sensitivity selector, with their sweep ranges.
SWEEPS: dict[str, SweepSpec] = {s.key: s for s in (
    SweepSpec("arrival_rate", 0.1, 10.0, True, True),
    SweepSpec("think_time_s", 0.1, 10.0, True, True),
    SweepSpec("turns", 1.0, 3.0, False, False, floor_hi=20.0),
    SweepSpec("input_tokens", 0.1, 10.0, True, True),
    SweepSpec("output_tokens", 0.1, 10.0, True, True),
    SweepSpec("system_prompt_tokens", 0.0, 4.0, False, False, floor_hi=8000.0),
    SweepSpec("num_system_prompts", 1.0, 10.0, False, True, floor_hi=100.0),
    SweepSpec("system_prompt_zipf", 0.0, 2.0, False, False, floor_hi=2.0),
    SweepSpec("num_documents", 1.0, 10.0, False, True, floor_hi=10_000.0),
    SweepSpec("document_tokens", 0.1, 10.0, True, True),
    SweepSpec("document_share", 0.0, 1.0, False, False),
    SweepSpec("document_zipf", 0.0, 2.0, False, False, floor_hi=2.0),
    SweepSpec("think_sigma", 0.25, 3.0, True, True),
    SweepSpec("gpu_memory_gib", 0.0, 4.0, False, False),
    SweepSpec("gpu_mem_util", 0.5, 0.98, False, False),
    SweepSpec("activation_reserve_gib", 0.0, 4.0, False, False, floor_hi=8.0),
    SweepSpec("num_gpus", 1.0, 2.0, False, False, floor_hi=8.0),
    SweepSpec("instances", 1.0, 4.0, False, False, floor_hi=16.0),
    SweepSpec("offload_gib", 0.0, 4.0, False, False, floor_hi=1024.0),
    SweepSpec("block_size", 1.0, 16.0, False, True, floor_hi=256.0),
    SweepSpec("params_b", 0.25, 4.0, True, True),
    SweepSpec("kv_cache_tokens", 0.1, 10.0, True, True),
    SweepSpec("num_layers", 0.5, 2.0, True, False),
    SweepSpec("num_kv_heads", 0.25, 4.0, True, True),
    SweepSpec("head_dim", 0.5, 2.0, True, True),
    SweepSpec("kv_lora_rank", 0.5, 2.0, True, True),
    SweepSpec("qk_rope_head_dim", 0.5, 2.0, True, False),
    SweepSpec("sliding_window", 0.1, 10.0, True, True),
    SweepSpec("sliding_layers", 0.0, 1.0, False, False),
)}

#: Keys offered in the page's sensitivity selector (those set for the scenario are shown).
NUMERIC_KEYS: tuple[str, ...] = tuple(SWEEPS)
#: The selector's default.
DEFAULT_KEY = "arrival_rate"

#: Points of a sensitivity curve whose input changes the turn structure (turns, tokens per
#: turn, block size, ...): each is a full solve, so fewer than the table-based curves' 100
#: (and fewer still, down to 12, for very long conversations).
EXACT_POINTS = 40


def tokens_for_hit_rate(analysis: Analysis, rate: float) -> float | None:
    """Cache tokens per instance (GPU tier alone) for a token hit rate of ``rate`` at the
    current workload, by inverting the table (hit rate rises with T, so with occupancy);
    None when ``rate`` is at or above the ceiling. Agrees with
    :func:`~kvcache_calculator.analytic.model.capacity_for_hit_rate` to the table's accuracy."""
    ceiling = analysis.result.max_token_hit_rate
    if rate >= ceiling - 1e-9:
        return None
    if rate <= 0:
        return 0.0
    occ, hit = analysis.curve
    i = bisect_left(hit, rate)
    if i >= len(hit) or i == 0:
        # past the grid's end, or reached at the smallest T (then the answer is what is cached
        # even then, the shared prompt): the exact solver
        return capacity_for_hit_rate(analysis.setup, rate)[0]
    h0, h1, o0, o1 = hit[i - 1], hit[i], occ[i - 1], occ[i]
    held = analysis.in_flight_tokens          # the running requests' KV comes on top
    if h1 <= h0 or o0 <= 0:
        return o1 + held
    return o0 * (o1 / o0) ** ((rate - h0) / (h1 - h0)) + held


def current_memory_gib(analysis: Analysis) -> float:
    """GPU memory per GPU of the current point; with ``kv_cache_tokens`` given, the memory
    that would hold that capacity."""
    s, cap = analysis.scenario, analysis.capacity
    if cap.derived_from == "kv_cache_tokens":
        return memory_for_tokens(s, cap, cap.capacity_tokens)
    return analysis.setup.gpu.engine_memory_gib


def memory_range(analysis: Analysis) -> tuple[float, float]:
    """A readable GPU-memory axis (GiB per GPU): from where the model fits to past the knee.

    When the model does not fit at the current memory, the axis starts there instead, so the
    current point is on it and the memory where the model does not fit shows as 0 %."""
    s, cap = analysis.scenario, analysis.capacity
    lo = fit_memory_gib(s, cap)
    cur = current_memory_gib(analysis)
    ceiling = analysis.result.max_token_hit_rate
    # memory for 99% of the ceiling, from the table at the current workload
    occ, rate = analysis.curve
    knee = next((o for o, r in zip(occ, rate) if r >= 0.99 * ceiling), occ[-1]) + analysis.in_flight_tokens
    knee_gib = memory_for_tokens(s, cap, knee) * 1.1
    ref = max(cur, lo * 1.05, lo + 1.0)
    hi = min(max(knee_gib, 1.5 * ref), 6.0 * ref)
    return max(0.0, min(lo, cur)), hi


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryCurve:
    """Token hit rate against GPU memory per GPU (rates 0-1)."""

    memory_gib: tuple[float, ...]          # per GPU
    capacity_tokens: tuple[int, ...]       # per instance
    token_hit_rate: tuple[float, ...]      # with the offload tier, if any
    gpu_only_hit_rate: tuple[float, ...]   # without it (equal when offload_gib = 0)
    current_memory_gib: float
    current_hit_rate: float
    ceiling: float
    fit_memory_gib: float

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def hit_vs_memory(analysis: Analysis, points: int = 100) -> MemoryCurve:
    """The token hit rate at ``points`` GPU memory sizes per GPU (table interpolation, no
    solve per point, at the capacity left beside the running requests' KV); the current point
    is the exact analysis."""
    s, cap = analysis.scenario, analysis.capacity
    lo, hi = memory_range(analysis)
    mems = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
    occ, rate = analysis.curve
    off = cap.offload_tokens
    held, traffic = analysis.in_flight_tokens, analysis.terms.traffic
    toks, hit, gpu_hit = [], [], []
    for m in mems:
        t = tokens_for_memory(s, cap, m)
        toks.append(t)
        g = _idle_rate(analysis, t - held, occ, rate, traffic) if t > 0 else 0.0
        gpu_hit.append(g)
        hit.append(_idle_rate(analysis, off - held, occ, rate, traffic) if t > 0 and off > t else g)
    r = analysis.result
    return MemoryCurve(tuple(mems), tuple(toks), tuple(hit), tuple(gpu_hit), current_memory_gib(analysis),
                       r.token_hit_rate, r.max_token_hit_rate, fit_memory_gib(s, cap))


def _idle_rate(analysis: Analysis, idle_tokens: float, occ: list[float], rate: list[float],
               traffic: Traffic) -> float:
    """The hit rate of a curve (at ``traffic``) when ``idle_tokens`` are left to idle
    histories (none left: the table's rate at T = 0, as the analysis)."""
    return interpolate_curve(idle_tokens, occ, rate) if idle_tokens > 0 else analysis.table.zero_rate(traffic)


def base_value(analysis: Analysis, key: str):
    """The current value of numeric input ``key``, or None when it does not apply: the GPU's
    memory and the model's parameters as resolved, ``activation_reserve_gib`` only with engine
    manual; every other key as the scenario gives it (so a preset's layer keys are only swept
    when overridden)."""
    if key == "gpu_memory_gib":
        return analysis.setup.gpu.engine_memory_gib
    if key == "gpu_mem_util":
        return analysis.setup.capacity.gpu_mem_util
    if key == "params_b":
        return analysis.arch.params_b
    if key == "activation_reserve_gib" and analysis.scenario.engine != "manual":
        return None     # vLLM and SGLang size their own reserve: the key changes nothing there
    if key in _APPLIES and not _APPLIES[key](analysis.scenario):
        return None     # e.g. a document's size without documents: the key changes nothing
    return getattr(analysis.scenario, key)


#: Keys that change the hit rate only under a condition on the scenario.
_APPLIES = {
    "system_prompt_zipf": lambda s: s.num_system_prompts > 1,
    "document_tokens": lambda s: s.num_documents > 0 and s.document_share > 0,
    "document_share": lambda s: s.num_documents > 0,
    "document_zipf": lambda s: s.num_documents > 1 and s.document_share > 0,
    "num_documents": lambda s: s.num_documents > 0 and s.document_share > 0,
    "think_sigma": lambda s: s.think_dist == "lognormal",
}


def _field_bounds(key: str) -> tuple[float, float]:
    f = FIELD_BY_KEY[key]
    lo = f.minimum if f.minimum is not None else -math.inf
    hi = f.maximum if f.maximum is not None else math.inf
    if f.exclusive_min:
        lo = lo + (1e-9 if f.kind == "float" else 1)
    return lo, hi


def _legal(key: str, value: float, s: Scenario):
    """``value`` rounded for int fields and clamped to the field's range (and the scenario's
    cross-field rules: whole turns for fixed turns, sliding layers at most the layers)."""
    lo, hi = _field_bounds(key)
    f = FIELD_BY_KEY[key]
    if key == "turns" and s.turns_dist == "fixed":
        value = round(value)
    if key == "sliding_layers" and s.num_layers is not None:
        hi = min(hi, s.num_layers)
    value = min(hi, max(lo, value))
    if f.kind == "int":
        value = int(round(value))
        value = int(min(hi, max(math.ceil(lo), value)))
    else:
        value = float(value)
    return value


def sweep_values(analysis: Analysis, key: str, points: int = 100) -> list:
    """The values swept for ``key``: its :data:`SWEEPS` range around the current value,
    clamped to the field's range, whole numbers for int fields (duplicates dropped), always
    including the current value; for ``num_gpus`` and ``num_kv_heads`` only the counts
    tensor parallelism can split the heads by."""
    spec = SWEEPS[key]
    base = base_value(analysis, key)
    if base is None:
        raise ScenarioError(key, "", "is not set for this scenario, so it cannot be swept")
    s = analysis.scenario
    if key == "gpu_memory_gib":
        lo, hi = memory_range(analysis)
        lo = max(lo, 1e-3)
    elif spec.relative:
        lo, hi = base * spec.lo, base * spec.hi
        if base == 0:
            lo, hi = 0.0, spec.floor_hi or 1.0
    else:
        lo = spec.lo
        hi = (max(spec.floor_hi, base * spec.hi) if key not in ("gpu_mem_util", "sliding_layers", "document_share")
              else spec.hi)
        if key == "sliding_layers":
            hi = s.num_layers or base
        if key in ("system_prompt_tokens", "activation_reserve_gib", "offload_gib"):
            hi = max(spec.floor_hi, base * spec.hi)
    lo, hi = min(lo, base), max(hi, base)
    use_log = spec.log and lo > 0
    raw = []
    for i in range(points):
        u = i / (points - 1) if points > 1 else 0.0
        raw.append(lo * (hi / lo) ** u if use_log else lo + (hi - lo) * u)
    raw.append(base)
    values = sorted({_legal(key, v, s) for v in raw})
    # only GPU counts that split the KV heads, and head counts the GPUs split (the current
    # values do): compute_capacity refuses the others
    if key == "num_gpus":
        values = [v for v in values if valid_tensor_parallel(analysis.arch, v)]
    elif key == "num_kv_heads":
        values = [v for v in values if tp_splits_heads(v, s.num_gpus)]
    return values


def _exact_points(analysis: Analysis, key: str) -> int:
    """How many exact solves a curve gets: :data:`EXACT_POINTS`, fewer (down to 12) for
    long conversations, whose sums over turns make each solve costlier."""
    s = analysis.scenario
    turns = max(s.turns, SWEEPS["turns"].floor_hi, 3 * s.turns) if key == "turns" else s.turns
    terms_per_solve = turns if s.turns_dist == "fixed" else 27.6 * turns   # P(N >= k) down to 1e-12
    return max(12, min(EXACT_POINTS, int(80_000 // max(1.0, terms_per_solve))))


@dataclass(frozen=True)
class SensitivityCurve:
    """Token hit rate (0-1) over a sweep of one input; ``ceiling`` per point."""

    key: str
    label: str
    unit: str
    log_scale: bool
    values: tuple[float, ...]
    token_hit_rate: tuple[float, ...]
    ceiling: tuple[float, ...]
    current_value: float
    current_hit_rate: float
    exact: bool                  # True: an exact solve per point; False: table interpolation

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


def sensitivity_curve(analysis: Analysis, key: str, points: int = 100) -> SensitivityCurve:
    """The token hit rate over the :data:`SWEEPS` range of numeric input ``key``: ``points``
    values from the table, or :data:`EXACT_POINTS` exact solves for inputs that change the
    turn structure (see the module docstring).

    Raises :class:`ScenarioError` for a key that is not in :data:`NUMERIC_KEYS` or not set
    for this scenario (a preset's architecture keys are only swept when overridden).
    """
    if key not in SWEEPS:
        raise ScenarioError("sensitivity", key, "must be one of " + ", ".join(NUMERIC_KEYS))
    table = table_answers(analysis, (key,))
    values = sweep_values(analysis, key, points if table else min(points, _exact_points(analysis, key)))
    r = analysis.result
    hit, ceil = [], []
    for v in values:
        try:
            if table:
                hit.append(variant_hit_rate(analysis, **{key: v}))
                ceil.append(r.max_token_hit_rate)
            else:
                h, c = variant_hit_and_ceiling(analysis, **{key: v})
                hit.append(h)
                ceil.append(c)
        except ScenarioError:
            hit.append(0.0)
            ceil.append(r.max_token_hit_rate)
    f = FIELD_BY_KEY[key]
    spec = SWEEPS[key]
    return SensitivityCurve(key, f.label, f.unit, spec.log and values[0] > 0, tuple(values), tuple(hit),
                            tuple(ceil), base_value(analysis, key), r.token_hit_rate, not table)


@dataclass(frozen=True)
class TornadoBar:
    """The hit rate (0-1) at ``low_value`` and ``high_value`` of one input."""

    key: str
    label: str
    unit: str
    base_value: float
    low_value: float
    high_value: float
    low_hit_rate: float
    high_hit_rate: float
    swing: float                 # |high - low| hit rate

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


@dataclass(frozen=True)
class Tornado:
    """Hit-rate changes for a +/-``fraction`` change of each numeric input, largest first."""

    fraction: float
    base_hit_rate: float
    bars: tuple[TornadoBar, ...]

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"fraction": self.fraction, "base_hit_rate": self.base_hit_rate,
                "bars": [b.to_dict() for b in self.bars]}


def tornado(analysis: Analysis, fraction: float = 0.2, *, min_swing: float = 1e-6) -> Tornado:
    """For every numeric input set for the scenario, the hit rate at -/+``fraction`` of its
    value (clamped to its range, whole numbers for int fields), sorted by swing; inputs whose
    change moves nothing (by more than ``min_swing``) are left out."""
    if not (0 < fraction < 1):
        raise ScenarioError("fraction", fraction, "must be a number > 0 and < 1")
    s = analysis.scenario
    base_hit = analysis.result.token_hit_rate
    bars = []
    for key in NUMERIC_KEYS:
        base = base_value(analysis, key)
        if base is None:
            continue
        lo_v = _legal(key, base * (1 - fraction), s)
        hi_v = _legal(key, base * (1 + fraction), s)
        rates = []
        for v in (lo_v, hi_v):
            if v == base:
                rates.append(base_hit)
                continue
            try:
                rates.append(variant_hit_rate(analysis, **{key: v}))
            except ScenarioError:
                rates.append(base_hit)
        swing = abs(rates[1] - rates[0])
        if max(abs(rates[0] - base_hit), abs(rates[1] - base_hit)) <= min_swing:
            continue
        f = FIELD_BY_KEY[key]
        bars.append(TornadoBar(key, f.label, f.unit, base, lo_v, hi_v, rates[0], rates[1], swing))
    bars.sort(key=lambda b: -max(b.swing, abs(b.low_hit_rate - base_hit), abs(b.high_hit_rate - base_hit)))
    return Tornado(fraction, base_hit, tuple(bars))


@dataclass(frozen=True)
class Heatmap:
    """Token hit rate (0-1) over GPU memory per GPU (columns) x arrival rate (rows)."""

    memory_gib: tuple[float, ...]
    arrival_rate: tuple[float, ...]
    token_hit_rate: tuple[tuple[float, ...], ...]    # [row][column]
    current_memory_gib: float
    current_arrival_rate: float
    current_hit_rate: float

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {"memory_gib": list(self.memory_gib), "arrival_rate": list(self.arrival_rate),
                "token_hit_rate": [list(r) for r in self.token_hit_rate],
                "current_memory_gib": self.current_memory_gib,
                "current_arrival_rate": self.current_arrival_rate,
                "current_hit_rate": self.current_hit_rate}


def heatmap(analysis: Analysis, rows: int = 30, cols: int = 30) -> Heatmap:
    """Token hit rate on a ``rows`` x ``cols`` grid: arrival rate from 1/10 to 10 times the
    current one (log spaced) x GPU memory per GPU over :func:`memory_range`. One table serves
    every row; each row costs one pass over its grid."""
    s, cap = analysis.scenario, analysis.capacity
    lo, hi = memory_range(analysis)
    mems = [lo + (hi - lo) * i / (cols - 1) for i in range(cols)]
    lam_lo, lam_hi = _legal("arrival_rate", s.arrival_rate / 10, s), _legal("arrival_rate", s.arrival_rate * 10, s)
    lams = [lam_lo * (lam_hi / lam_lo) ** (i / (rows - 1)) for i in range(rows)]
    toks = [tokens_for_memory(s, cap, m) for m in mems]
    off = cap.offload_tokens
    eff = [max(t, off) if t > 0 else 0 for t in toks]
    grid = []
    for lam in lams:
        variant = with_updates(s, arrival_rate=lam)
        held = analysis.variant_in_flight(variant)[0]     # grows with the arrival rate
        traffic = analysis.traffic(variant)
        occ, rate = analysis.table.occupancy_curve(traffic)
        grid.append(tuple(_idle_rate(analysis, t - held, occ, rate, traffic) if t > 0 else 0.0 for t in eff))
    return Heatmap(tuple(mems), tuple(lams), tuple(grid), current_memory_gib(analysis), s.arrival_rate,
                   analysis.result.token_hit_rate)


def available_keys(analysis: Analysis) -> tuple[str, ...]:
    """The keys of :data:`NUMERIC_KEYS` that can be swept for the analysed scenario (those with a value:
    ``kv_cache_tokens`` only when given, architecture keys only for a custom or overridden model)."""
    return tuple(k for k in NUMERIC_KEYS if base_value(analysis, k) is not None)
