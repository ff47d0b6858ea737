"""The ``kvcache-calc`` command line (also ``python -m kvcache_calculator``).

    kvcache-calc analyze KEY=VALUE... [--json]
    kvcache-calc simulate KEY=VALUE... [--conversations N] [--seed S] [--json]
    kvcache-calc replay TRACE.jsonl [--policy lru|fifo|lfu|belady] ... [--json]
    kvcache-calc summarize TRACE.jsonl --out FILE.json --licence TEXT
    kvcache-calc presets [--json]

Bad input exits with status 2 and a message naming the key, the value and what is allowed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from kvcache_calculator.cli import replay, simulate, summarize
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.report import RESULT_KEYS, engine_log_line, result_notes, results
from kvcache_calculator.scenario import FIELDS, Scenario, parse_assignments
from kvcache_calculator.setup import presets
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.units import NONE_ASCII, format_number, format_percent

EXIT_BAD_INPUT = 2

_RATE_KEYS = {"token_hit_rate", "request_hit_rate", "max_token_hit_rate", "max_request_hit_rate",
              "gpu_token_hit_rate", "offload_token_hit_rate", "target_hit_rate"}


def format_result(key: str, value) -> str:
    """A result value for the table: rates as %, other numbers by :func:`units.format_number`."""
    if key in _RATE_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_percent(value)
    return format_number(value, none=NONE_ASCII)


def print_table(rows: Sequence[tuple[str, str, str]], out=None) -> None:
    """Aligned ``key  value  unit`` rows."""
    out = out or sys.stdout
    width = max((len(r[0]) for r in rows), default=0)
    vwidth = max((len(r[1]) for r in rows), default=0)
    for key, value, unit in rows:
        print(f"{key:<{width}}  {value:>{vwidth}}  {unit}".rstrip(), file=out)


def scenario_from_args(assignments: Sequence[str]) -> Scenario:
    """Parse ``KEY=VALUE`` words into a validated scenario; a common GPU name (``gpu=h100``)
    is taken as its preset id (:func:`~kvcache_calculator.setup.presets.canonical_gpu`)."""
    data = parse_assignments(assignments)
    if "gpu" in data:
        data["gpu"] = presets.canonical_gpu(data["gpu"])
    return Scenario.from_dict(data)


def used_line(scenario: Scenario) -> str:
    """Which model and GPU a command used, by name and id, e.g. ``Model: Llama-3.1-8B
    (llama-3.1-8b); GPU: H100 SXM 80GB (h100-sxm), 1 per instance``."""
    setup = resolve(scenario)
    gpus = scenario.num_gpus
    return (f"Model: {setup.arch.name} ({scenario.model}); GPU: {setup.gpu.name} ({scenario.gpu}), "
            f"{gpus} per instance" + (f", {scenario.instances} instances" if scenario.instances > 1 else ""))


def cmd_analyze(args: argparse.Namespace) -> int:
    """``analyze``: the flat results of a scenario as a table or JSON."""
    scenario = scenario_from_args(args.assignments)
    res = results(scenario)
    line = engine_log_line(res, scenario.engine_version, scenario.block_size)
    notes = [line] * bool(line) + result_notes(resolve(scenario), res)
    if args.json:
        print(json.dumps({"scenario": scenario.to_dict(), "results": res, "notes": notes}, indent=2))
        return 0
    print(used_line(scenario))
    if not res["fits"]:
        print(res["message"])
    rows = [(k, format_result(k, res[k]), "" if RESULT_KEYS[k][0] == "fraction" else RESULT_KEYS[k][0])
            for k in RESULT_KEYS if k in res]
    print_table(rows)
    for note in notes:
        print("note:", note)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """``presets``: the model and GPU presets as a table or JSON."""
    models, gpus = presets.list_models(), presets.list_gpus()
    if args.json:
        print(json.dumps({"models": models, "gpus": gpus}, indent=2))
        return 0
    print("Models (KV bytes per token at bf16, all growing layers):")
    rows = [(m["id"], f'{m["kv_bytes_per_token"]:,.0f} B/token',
             f'{m.get("name", "")}  {m.get("attention", "")}  {m.get("params_b", 0):g}B') for m in models]
    print_table(rows)
    print("\nGPUs:")
    print_table([(g["id"], f'{g["memory_gib"]:g} GiB', g.get("name", "")) for g in gpus])
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    keys = ", ".join(f.key for f in FIELDS)
    parser = argparse.ArgumentParser(
        prog="kvcache-calc", description="KV-cache capacity and prefix-cache hit rates for LLM serving.",
        epilog=f"Scenario keys: {keys}. See the README for units and defaults.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("analyze", help="analytic hit rates and capacity for a scenario")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_analyze)
    p = sub.add_parser("presets", help="list the model and GPU presets")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_presets)
    simulate.register(sub)
    replay.register(sub)
    summarize.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.func(args)
    except ScenarioError as err:
        if getattr(args, "json", False):
            print(json.dumps({"error": err.to_dict()}), file=sys.stderr)
        print(f"kvcache-calc: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("kvcache-calc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
