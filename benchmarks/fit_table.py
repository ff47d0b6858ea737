"""The fitted model against the exact LRU replay, on the public traces and on generated ones.

Run from the project root: ``python benchmarks/fit_table.py`` prints markdown tables
(docs/validation.md §7.3): the parameters fitted to each trace (``replay TRACE --fit``'s
fit, :mod:`kvcache_calculator.traces.fit`), and the analytic model's token hit rate on the
fitted scenario minus the exact LRU replay's, in percentage points, at 1k, 3k, 10k, 30k and
100k blocks. ``tests/test_fit_traces.py`` (slow) asserts on the same cases.

The model sees each trace as its replay does (``compare_fit_to_replay``): the trace's window
from an empty cache, so first uses of shared content miss (docs/model.md §12.5). A second gap
table gives the steady-state model (no window term) for comparison. ``--warmup F`` replays
with the first fraction ``F`` of the requests warming the cache uncounted (``replay
--warmup``), and the model counts from ``F`` times the trace's duration.

The gap table needs a model that takes every fitted key (shared documents, Zipf popularity
of system prompts, lognormal think times). Where this version's scenario lacks one, the
table says which and prints the gaps of the model without them, marked as such.

A last table gives the drift test of each trace (``traces/fit.py`` ``drift_test``): a trace
whose reuse rises or falls over time, which a stationary model is expected to miss.

Cases: the two public Mooncake traces (read from ``../shared/traces/`` beside the project;
a missing file is named and skipped) and three traces of :func:`generate_workload` (seeded,
one hour each, 512-token blocks) with shared documents, several system prompts and
lognormal think times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kvcache_calculator.scenario import FIELD_BY_KEY  # noqa: E402
from kvcache_calculator.traces.fit import (  # noqa: E402
    analytic_token_hit_rate, compare_fit_to_replay, fit_scenario, model_scenario,
)
from kvcache_calculator.traces.readers import read_trace  # noqa: E402
from kvcache_calculator.traces.replay import replay_lru_curve  # noqa: E402
from kvcache_calculator.traces.synthetic import generate_workload  # noqa: E402
from kvcache_calculator.traces.warmup import WarmupReplay, warmup_requests  # noqa: E402
from kvcache_calculator.traces.replay import LRUCurveReplay  # noqa: E402

TRACES = ROOT.parent / "shared" / "traces"
CAPACITIES_BLOCKS = (1_000, 3_000, 10_000, 30_000, 100_000)
#: The keys the gap table needs the model to take.
NEW_KEYS = ("num_documents", "document_tokens", "document_share", "document_zipf",
            "system_prompt_zipf", "think_sigma")

#: Generated cases: (name, seed, workload keys); one hour each, 512-token blocks.
GENERATED = (
    ("generated: documents, 8 prompts, lognormal", 11, dict(
        arrival_rate=1.0, turns=4.0, think_time_s=60.0, think_dist="lognormal", think_sigma=1.0,
        input_tokens=800, output_tokens=300, system_prompt_tokens=1536, num_system_prompts=8,
        system_prompt_zipf=1.0, num_documents=40, document_tokens=4096, document_share=0.5,
        document_zipf=0.8)),
    ("generated: many documents, 30 prompts", 12, dict(
        arrival_rate=2.0, turns=3.0, think_time_s=120.0, think_dist="lognormal", think_sigma=1.5,
        input_tokens=600, output_tokens=400, system_prompt_tokens=1024, num_system_prompts=30,
        system_prompt_zipf=1.2, num_documents=300, document_tokens=8192, document_share=0.7,
        document_zipf=1.0)),
    ("generated: fixed turns, exponential", 13, dict(
        arrival_rate=0.5, turns=5.0, turns_dist="fixed", think_time_s=30.0,
        think_dist="exponential", input_tokens=1000, output_tokens=200,
        system_prompt_tokens=2048, num_system_prompts=3, system_prompt_zipf=0.5,
        num_documents=10, document_tokens=2048, document_share=0.3, document_zipf=0.5)),
)

#: The fitted keys shown in the parameter table, with their column titles.
SHOWN = (("arrival_rate", "conv/s"), ("turns", "turns"), ("think_time_s", "think s"),
         ("think_dist", "think dist"), ("think_sigma", "sigma"), ("input_tokens", "input"),
         ("output_tokens", "output"), ("length_dist", "lengths"), ("system_prompt_tokens", "sys tokens"),
         ("num_system_prompts", "prompts"), ("system_prompt_zipf", "prompt zipf"),
         ("num_documents", "docs"), ("document_tokens", "doc tokens"),
         ("document_share", "doc share"), ("document_zipf", "doc zipf"))


def missing_keys() -> list:
    """The fitted keys this version's scenario does not have (empty: the gap table is final)."""
    return [k for k in NEW_KEYS if k not in FIELD_BY_KEY] + (
        [] if "lognormal" in FIELD_BY_KEY["think_dist"].choices else ["think_dist=lognormal"])


def cases() -> list:
    """``(name, requests or None, truth or None, note)``; a missing public trace gives None."""
    out = []
    for name, file in (("Mooncake conversation", "mooncake_conversation_trace.jsonl"),
                       ("Mooncake synthetic", "mooncake_synthetic_trace.jsonl")):
        path = TRACES / file
        if path.exists():
            with path.open() as f:
                out.append((name, list(read_trace(f)), None, ""))
        else:
            out.append((name, None, None, f"{path} not found (the folder is absent)"))
    for name, seed, truth in GENERATED:
        out.append((name, generate_workload(3600.0, seed, **truth), truth, f"seed {seed}"))
    return out


def measure(requests: list, block_size: int = 512, warmup: float = 0.0) -> dict:
    """The fit, and the model's gap to the LRU replay at :data:`CAPACITIES_BLOCKS` (points):
    ``gaps_points`` with the trace's window from a cold cache, ``steady_points`` without;
    ``warmup`` the replay's uncounted share of the requests."""
    fit = fit_scenario(requests, block_size)
    if warmup:
        runner = WarmupReplay(LRUCurveReplay(block_size), warmup_requests(warmup, len(requests)))
        runner.feed(requests)
        curve = runner.result()
    else:
        curve = replay_lru_curve(requests, block_size=block_size)
    gaps, steady = [], []
    for c in CAPACITIES_BLOCKS:
        for cold, out in ((True, gaps), (False, steady)):
            cmp = compare_fit_to_replay(fit, curve.token_hit_rate(c), analytic_token_hit_rate,
                                        capacity_tokens=c * block_size, warmup=warmup,
                                        cold_window=cold)
            out.append(100 * cmp["gap"])
    return {"fit": fit, "gaps_points": gaps, "steady_points": steady,
            "replay": [curve.token_hit_rate(c) for c in CAPACITIES_BLOCKS]}


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=float, default=0.0, metavar="F",
                        help="uncounted share of each trace's requests, as replay --warmup (default 0)")
    args = parser.parse_args(argv)
    warmup_requests(args.warmup, 0)           # validates 0 <= F < 1
    rows = []
    for name, requests, truth, note in cases():
        if requests is None:
            print(f"trace not found, skipped {name}: {note}", file=sys.stderr)
            continue
        rows.append((name, truth, measure(requests, warmup=args.warmup)))
    print("Fitted parameters (generated traces: the true value after the slash):\n")
    print("| trace | " + " | ".join(t for _, t in SHOWN) + " |")
    print("|---|" + "---:|" * len(SHOWN))
    for name, truth, m in rows:
        cells = []
        for key, _ in SHOWN:
            v = _cell(m["fit"].get(key))
            if truth is not None and key in truth:
                v += " / " + _cell(truth[key])
            cells.append(v)
        print(f"| {name} | " + " | ".join(cells) + " |")
    missing = missing_keys()
    print()
    if missing:
        print("Model minus exact LRU replay, token hit rate, points: **not final**, this version's "
              "model lacks " + ", ".join(missing) + " (the gaps below are the model without them; "
              "re-run after the model takes them):\n")
    else:
        print("Model on the fitted scenario minus exact LRU replay, token hit rate, points:\n")
    counted = (f"the replay counts the requests after the first {args.warmup:g} of them, the "
               f"model from {args.warmup:g} of the duration" if args.warmup else
               "the replay counts every request")
    for key, title in (("gaps_points", f"Model of the trace's window from an empty cache ({counted}):"),
                       ("steady_points", "Steady-state model (no window term), for comparison:")):
        print(title + "\n")
        print("| trace | " + " | ".join(f"{c // 1000}k" for c in CAPACITIES_BLOCKS) + " | worst |")
        print("|---|" + "---:|" * (len(CAPACITIES_BLOCKS) + 1))
        for name, _, m in rows:
            g = m[key]
            print(f"| {name} | " + " | ".join(f"{x:+.1f}" for x in g)
                  + f" | {max(abs(x) for x in g):.1f} |")
        print()
    print("Drift test (docs/validation.md §7.3): share of prompt tokens seen before in each "
          "quarter of the trace, the stationary fit's window ceiling for it, and the spread of "
          "their differences (flagged from 20 points):\n")
    print("| trace | seen before, % | fitted model's ceiling, % | spread, points | drifts |")
    print("|---|---|---|---:|---|")
    for name, _, m in rows:
        drift = m["fit"]["diagnostics"]["drift"]
        if drift is None:
            print(f"| {name} | — | — | — | not tested |")
            continue
        seen = " / ".join(f"{100 * g['seen_share']:.1f}" for g in drift["segments"])
        ceiling = " / ".join(f"{100 * g['model_ceiling']:.1f}" for g in drift["segments"])
        print(f"| {name} | {seen} | {ceiling} | {drift['spread_points']:.1f} | "
              f"{'yes' if drift['drifts'] else 'no'} |")
    print()
    for name, _, m in rows:
        _, left = model_scenario(m["fit"])
        if left:
            print(f"\n{name}: left out of the model: {', '.join(left)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
