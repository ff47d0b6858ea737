"""Benchmark: ``build_terms`` with exponential lengths (``length_dist=exponential``), before and
after the closed-form geometric sums (docs/model.md §13), side by side in one run.

With tiny turns in large blocks a history's mean remainder settles at ``B/2`` only after
millions of turns, and the model summed them one by one, each by a Fourier series whose
every term cost one factor per length in the history: with geometric turns a page edit took
seconds (new tokens and answers of 10 in 512-token blocks: about 3 s in CPython) or never
ended (1 and 1). Now the geometric sums over turns are a mixture of two exponentials
(``lengths.geometric_compound``), O(1); with fixed turns (at most 1,000, the form's limit)
each turn's remainder is the Fourier series with one power per kind of length.

The "before" side is the model as it was at commit :data:`BEFORE` (``git show``), loaded
beside the current one; cases where it would run for minutes are marked and not run.

Run from the project root: ``python benchmarks/bench_lengths.py [--repeat N]``. Prints per
case the median CPU time of one ``build_terms`` before and after, their ratio and the
largest difference of the results (hit and occupancy sums relative to the prompt tokens).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kvcache_calculator.analytic import lengths, model  # noqa: E402
from kvcache_calculator.scenario import Scenario  # noqa: E402
from kvcache_calculator.setup.resolve import resolve  # noqa: E402

#: The last commit with the term-by-term sums.
BEFORE = "a9a9484"

#: (label, scenario values, whether the "before" side finishes in seconds). The form's
#: limits: input_tokens >= 1, output_tokens >= 0, block_size <= 4096, turns <= 1000.
CASES = (
    ("in/out 10/10, B=512, 5 geometric turns", dict(input_tokens=10, output_tokens=10, block_size=512), True),
    ("in/out 20/20, B=512, 5 geometric turns", dict(input_tokens=20, output_tokens=20, block_size=512), True),
    ("in/out 50/20, B=512, 5 geometric turns", dict(input_tokens=50, output_tokens=20, block_size=512), True),
    ("in/out 200/100, B=16, 5 geometric turns", dict(input_tokens=200, output_tokens=100, block_size=16), True),
    ("in/out 5/5, B=512, 1000 fixed turns", dict(input_tokens=5, output_tokens=5, block_size=512, turns=1000,
                                                  turns_dist="fixed"), True),
    ("in/out 1/1, B=512, 5 geometric turns", dict(input_tokens=1, output_tokens=1, block_size=512), False),
    ("in/out 1/0, B=4096, 1000 geometric turns", dict(input_tokens=1, output_tokens=0, block_size=4096,
                                                       turns=1000), False),
    ("in/out 1/1, B=4096, 1000 geometric turns", dict(input_tokens=1, output_tokens=1, block_size=4096,
                                                       turns=1000), False),
    ("in/out 1/1, B=4096, 1000 fixed turns", dict(input_tokens=1, output_tokens=1, block_size=4096, turns=1000,
                                                   turns_dist="fixed"), False),
    ("in/out 3/1, B=4096, 1000 fixed turns", dict(input_tokens=3, output_tokens=1, block_size=4096, turns=1000,
                                                   turns_dist="fixed"), False),
)


def _module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module          # dataclasses look their module up
    exec(compile(source, f"{BEFORE}:{name}", "exec"), module.__dict__)
    return module


def before_model() -> types.ModuleType:
    """``analytic/model.py`` as it was at :data:`BEFORE`, with that commit's ``lengths``."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{BEFORE}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    old_lengths = _module("before_lengths", show("kvcache_calculator/analytic/lengths.py"))
    key = "kvcache_calculator.analytic.lengths"
    current = sys.modules[key]
    sys.modules[key] = old_lengths
    try:
        return _module("before_model", show("kvcache_calculator/analytic/model.py"))
    finally:
        sys.modules[key] = current


def _time(build, setup, repeat: int, clear) -> tuple[float, object]:
    times, terms = [], None
    for _ in range(repeat):
        clear()
        start = time.process_time()
        terms = build(setup)
        times.append(time.process_time() - start)
    return statistics.median(times), terms


def difference(a, b) -> float:
    """Largest difference of the sums over turns, relative to the prompt tokens (request
    hit turns relative to the mean turns)."""
    worst = abs(a.request_hit_turns - b.request_hit_turns) / b.mean_turns
    for x, y in ((a.hit_sums[0], b.hit_sums[0]), (a.cost_sums[0], b.cost_sums[0]), (a.cost_last, b.cost_last),
                 (a.prompt_tokens, b.prompt_tokens)):
        worst = max(worst, abs(x - y) / b.prompt_tokens)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    old = before_model()
    print("| case | before (ms) | after (ms) | before/after | largest difference |")
    print("|---|---:|---:|---:|---:|")
    for label, values, run_before in CASES:
        setup = resolve(Scenario.from_dict(dict(values, length_dist="exponential")))
        after, terms = _time(model.build_terms, setup, args.repeat, lengths.grouped_remainder.cache_clear)
        if not run_before:
            print(f"| {label} | not run (a minute or more) | {1000 * after:.2f} | | |")
            continue
        before, old_terms = _time(old.build_terms, setup, args.repeat, old.sum_remainder.cache_clear)
        print(f"| {label} | {1000 * before:.1f} | {1000 * after:.2f} | {before / after:.0f}x | "
              f"{difference(terms, old_terms):.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
