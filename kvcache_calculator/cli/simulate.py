"""``kvcache-calc simulate KEY=VALUE... [--conversations N] [--seed S] [--json]``.

Runs the discrete-event simulator (:mod:`kvcache_calculator.sim.simulate`) on a scenario and
prints the same result keys as ``analyze``, each hit rate with its 95 % confidence interval.
On a terminal, runs longer than a second show their progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.figures import unit_for
from kvcache_calculator.scenario import Scenario, parse_assignments
from kvcache_calculator.sim.simulate import Simulation
from kvcache_calculator.units import NONE_ASCII, format_number, format_percent

#: Result keys shown in the table, with their unit ("" for 0-1 fractions shown as %).
TABLE_KEYS = (
    ("token_hit_rate", ""), ("request_hit_rate", ""), ("gpu_token_hit_rate", ""),
    ("offload_token_hit_rate", ""), ("gpu_request_hit_rate", ""), ("max_token_hit_rate", ""),
    ("max_request_hit_rate", ""), ("characteristic_time_s", "s"),
    ("offload_characteristic_time_s", "s"), ("capacity_tokens", "tokens"),
    ("offload_tokens", "tokens"), ("request_rate", "requests/s"), ("mean_turns", "turns"),
    ("mean_prompt_tokens", "tokens"), ("prompt_tokens_per_s", "tokens/s"),
    ("hit_tokens_per_s", "tokens/s"), ("service_s", "s"), ("in_flight_tokens", "tokens"),
    ("conversations", "measured"), ("requests", "measured"),
    ("warmup_conversations", "conversations"), ("simulated_time_s", "s"), ("seed", ""),
)
_CHUNK = 20_000          # requests between progress updates


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``simulate`` subcommand to ``subparsers`` (from ``add_subparsers``)."""
    p = subparsers.add_parser(
        "simulate", help="simulate a scenario (any eviction policy), with confidence intervals",
        description="Discrete-event simulation of the scenario's conversations against per-instance "
                    "KV block caches. Prints the analyze keys from the simulator, hit rates with "
                    "95 % batch-means confidence intervals.")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE")
    p.add_argument("--conversations", type=int, default=20_000, metavar="N",
                   help="measured conversations (default 20000), after a warm-up of five mean lifetimes")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--warmup-s", type=float, default=None, metavar="SECONDS",
                   help="simulated warm-up (default 5 * turns * think_time_s)")
    p.add_argument("--batches", type=int, default=10, metavar="B", help="batches for the intervals (default 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
    return p


class _Progress:
    """A one-line progress indicator on a terminal, shown after the first second."""

    def __init__(self, stream):
        self.stream = stream
        self.enabled = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.monotonic()
        self.shown = False

    def update(self, fraction: float) -> None:
        if not self.enabled or time.monotonic() - self.start < 1.0:
            return
        self.shown = True
        self.stream.write(f"\rsimulating... {100 * fraction:3.0f} %")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 24 + "\r")
            self.stream.flush()


def _format(key: str, value, unit: str) -> str:
    if key == "seed":
        return str(value)
    if unit == "" and isinstance(value, float):
        return format_percent(value, 2)
    return format_number(value, whole_floats=False, none=NONE_ASCII)


def run(args: argparse.Namespace) -> int:
    """Run the simulation for the parsed arguments; print a table or JSON; return 0."""
    scenario = Scenario.from_dict(parse_assignments(args.assignments))
    sim = Simulation(scenario, conversations=args.conversations, seed=args.seed,
                     warmup_s=args.warmup_s, batches=args.batches)
    progress = _Progress(sys.stderr)
    try:
        while not sim.run(max_requests=_CHUNK):
            progress.update(sim.progress)
    finally:
        progress.close()
    result = sim.result()
    data = result.to_dict()
    if args.json:
        print(json.dumps({"scenario": scenario.to_dict(), "results": data}, indent=2))
        return 0
    rows = []
    for key, unit in TABLE_KEYS:
        value = _format(key, data[key], unit)
        ci = data.get(key + "_ci")
        if ci is not None:
            value += f"  [{format_percent(ci[0], 2, unit='')}, {format_percent(ci[1], 2, unit='')}]"
        rows.append((key, value, unit))
    width = max(len(r[0]) for r in rows)
    print(f"simulation: {scenario.policy}, {scenario.instances} {unit_for(scenario.instances, 'instances')}, "
          f"routing {scenario.routing}; "
          f"95 % confidence intervals in brackets")
    for key, value, unit in rows:
        print(f"{key:<{width}}  {value}  {unit}".rstrip())
    return 0


def main(argv=None) -> int:
    """Stand-alone entry (``python -m kvcache_calculator.cli.simulate``), for testing."""
    parser = argparse.ArgumentParser(prog="kvcache-calc")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["simulate", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except ScenarioError as err:
        print(f"kvcache-calc: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
