"""The lab page's tables as plain rows: the simulation beside the analytic model, the
capacities of a replayed trace, the fitted model against the replay, the fitted link.

The page turns each row into table cells; every number comes with its text from
:mod:`kvcache_calculator.units`, so the page formats nothing itself.
"""

from __future__ import annotations

from typing import Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.real_traffic import ideal_speedup
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.simulate import SimulationResult
from kvcache_calculator.traces.readers import analytic_token_hit_rate, compare_fit_to_replay
from kvcache_calculator.traces.replay import GIB, LRUCurve, capacity_blocks_from_tokens
from kvcache_calculator.units import NONE, format_duration, format_percent, format_points

__all__ = ["SIMULATION_ROWS", "OFFLOAD_ROWS", "simulation_rows", "trace_capacities", "fit_gaps",
           "fitted_fragment", "gap_rows"]


#: The analytic results the lab compares with the simulation: (result key, row label).
SIMULATION_ROWS = (("token_hit_rate", "Token hit rate"), ("request_hit_rate", "Request hit rate"),
                   ("max_token_hit_rate", "Ceiling (unlimited cache)"),
                   ("characteristic_time_s", "Characteristic time T"))
#: The same for the offload tier, shown when the scenario has one.
OFFLOAD_ROWS = (("gpu_token_hit_rate", "From GPU memory"), ("offload_token_hit_rate", "From the offload tier"))


def simulation_rows(analytic: dict, simulated: SimulationResult | None) -> list:
    """The table of the analytic model beside the simulation, one row per result key (the
    offload tier's rows when ``analytic`` has an offload tier).

    ``analytic``: the flat results (:func:`kvcache_calculator.present.report.results`);
    ``simulated``: the main simulation's result, or None before one has run. Each row holds
    ``key``, ``label``, the values ``analytic`` and ``simulated`` (None: no value) with their
    text, the simulation's 95 % ``interval`` (or None), ``difference_text`` (analytic minus
    simulated, or None) and ``inside`` (whether the analytic value lies in the interval; None
    without an interval).
    """
    sim = {} if simulated is None else simulated.to_dict()
    if simulated is not None and simulated.offload_tokens == 0:
        # no offload tier: the GPU share is the whole hit rate, not a measurement of its own
        sim.pop("gpu_token_hit_rate", None)
        sim.pop("offload_token_hit_rate", None)
    keys = SIMULATION_ROWS + (OFFLOAD_ROWS if (analytic.get("offload_tokens") or 0) > 0 else ())
    out = []
    for key, label in keys:
        fmt = format_duration if key == "characteristic_time_s" else format_percent
        a, s, ci = analytic.get(key), sim.get(key), sim.get(key + "_ci")
        if s is None:
            text = NONE if not sim else "not measured"
            if sim and key == "characteristic_time_s":
                # the simulator measures T for LRU only; for LRU None means nothing was evicted
                text = "no evictions" if simulated.policy == "lru" else "not measured (LRU only)"
        else:
            text = fmt(s) + (f" ({format_percent(ci[0], unit='')}–{format_percent(ci[1], unit='')})"
                             if ci else "")
        difference, inside = None, None
        if s is not None and a is not None and key != "characteristic_time_s":
            within = ci is not None and ci[0] <= a <= ci[1]
            difference = f"{format_points(a - s)} points" + (" (inside the interval)" if within else "")
            inside = within if ci else None
        elif s is not None and a is not None:
            difference = f"{a - s:+,.3g} s"
        out.append({"key": key, "label": label, "analytic": a, "analytic_text": fmt(a),
                    "simulated": s, "simulated_text": text, "interval": None if ci is None else list(ci),
                    "difference_text": difference, "inside": inside})
    return out


def trace_capacities(curve: LRUCurve, kv_bytes_per_token: float | None,
                     current_capacity_tokens: int | None) -> list:
    """Rows for the page's table: the capacities reaching 50, 90, 99 and 100 % of the
    token-hit ceiling (exact, from the one-pass curve; the smallest capacity reaching the share,
    as the CLI's ``capacity_blocks_for_50pct_of_token_ceiling``) and the current
    configuration's capacity, each in blocks, tokens and GiB with its token and block hit rates
    and the ideal prefill speedup ``1 / (1 - token hit rate)``."""
    bs = curve.block_size
    rows = []
    for pct in (50, 90, 99, 100):
        blocks = curve.capacity_for_ceiling if pct == 100 else curve.capacity_for_fraction(pct / 100, "token")
        rows.append((f"{pct} % of the token-hit ceiling", f"p{pct}", blocks))
    if current_capacity_tokens is not None:
        rows.append(("current configuration", "current",
                     capacity_blocks_from_tokens(current_capacity_tokens, bs)))
    out = []
    for label, key, blocks in rows:
        out.append({
            "key": key, "label": label, "capacity_blocks": blocks, "capacity_tokens": blocks * bs,
            "capacity_gib": (None if kv_bytes_per_token is None
                             else blocks * bs * kv_bytes_per_token / GIB),
            "token_hit_rate": curve.token_hit_rate(blocks),
            "block_hit_rate": curve.block_hit_rate(blocks),
            "ideal_speedup": ideal_speedup(curve.token_hit_rate(blocks)),
        })
    return out


def fitted_fragment(scenario: Scenario, fit: dict) -> str:
    """The URL fragment of ``scenario`` with the workload keys fitted to a trace (model,
    GPUs and serving keys stay); values the scenario rejects are left at their defaults."""
    data = {**scenario.changed(), **{k: v for k, v in fit.items() if k != "diagnostics"}}
    return Scenario.from_dict_lenient(data)[0].to_fragment()


def fit_gaps(fit: dict, curve: LRUCurve, capacities_blocks: Sequence[int]) -> list:
    """The analytic model on the fitted scenario against the exact LRU replay at each capacity
    (``traces.compare_fit_to_replay``: the model sees the trace's window from an empty cache,
    as the replay of an uploaded trace, counted from its start, does: docs/model.md §12.5);
    a capacity the model cannot evaluate gets ``error``
    (:meth:`ScenarioError.to_dict`) instead of the model's numbers."""
    out = []
    for blocks in capacities_blocks:
        if blocks <= 0:
            continue
        tokens = blocks * curve.block_size
        try:
            row = compare_fit_to_replay(fit, curve.token_hit_rate(blocks), analytic_token_hit_rate,
                                        capacity_tokens=tokens)
        except ScenarioError as err:
            row = {"capacity_tokens": tokens, "error": err.to_dict()}
        row["capacity_blocks"] = blocks
        out.append(row)
    return out


def _bucket_label(entry: dict) -> str:
    low, high = entry["input_tokens_min"], entry["input_tokens_max"]
    return f"prompts of {low:,} tokens or more" if high is None else f"prompts of {low:,}–{high - 1:,} tokens"


def gap_rows(gap: dict) -> list:
    """The gap split as table rows: the whole trace, then each prompt-length bucket with
    requests; each row ``label``, ``requests``, the parts in points (``no_reuse``,
    ``capacity``, ``policy``, ``routing``, ``hit``; they add up to 100), ``speedup`` (ideal
    prefill speedup of the hit rate) and ``clipped`` (the parts a clamp set to 0)."""
    out = []
    for label, entry in [("whole trace", gap["overall"])] + [(_bucket_label(b), b) for b in gap["buckets"]]:
        if not entry["requests"]:
            continue
        parts = entry["parts"]
        out.append({"label": label, "requests": entry["requests"],
                    **{k: 100 * parts[k] for k in ("no_reuse", "capacity", "policy", "routing", "hit")},
                    "speedup": ideal_speedup(parts["hit"]),
                    "clipped": [c["part"] for c in entry["clipped"]]})
    return out
