"""Benchmark: ``build_terms`` with exponential lengths (``length_dist=exponential``) at two
earlier commits and now (docs/model.md §13), side by side in one run.

With tiny turns in large blocks a history's mean remainder settles at ``B/2`` only after
millions of turns, and the model summed them one by one, each by a Fourier series whose
every term cost one factor per length in the history: with geometric turns a page edit took
seconds (new tokens and answers of 10 in 512-token blocks: about 3 s in CPython) or never
ended (1 and 1). Now the geometric sums over turns are a mixture of two exponentials
(``lengths.geometric_compound``), O(1); with fixed turns (at most 1,000, the form's limit)
each turn's remainder was the Fourier series with one power per kind of length (commit
:data:`SERIES`): the first turns' series, for 1- to 3-token turns in 4,096-token blocks,
ran to the 100,000-term cap. Now each history takes the cheaper of two exact sums (the
block boundaries with Erlang tails, or the series, whose terms the histories share), and
fixed turns' request hits use the renewal count's closed form (``lengths.reach_count``).

The earlier sides are the model as it was at :data:`TERM_BY_TERM` and :data:`SERIES` (``git
show``), loaded beside the current one; cases where one would run for more than a few
seconds are marked and not run.

Run from the project root: ``python benchmarks/bench_lengths.py [--repeat N]``. Prints per
case the median CPU time of one ``build_terms`` at each commit and now, the ratios and the
largest difference of the results from the series commit's (hit and occupancy sums relative
to the prompt tokens; request hit turns relative to the mean turns).
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

#: The last commit with the term-by-term sums over geometric turns.
TERM_BY_TERM = "a9a9484"
#: The last commit with every history's remainder by its Fourier series.
SERIES = "37336d8"
BEFORE = (TERM_BY_TERM, SERIES)

_FIXED = dict(turns=1000, turns_dist="fixed")
#: (label, scenario values, the earlier commits that finish it in seconds). The form's
#: limits: input_tokens >= 1, output_tokens >= 0, block_size <= 4096, turns <= 1000. The
#: fixed-turn cases are the slowest of a grid of 768 inputs (new tokens 1-1,000, answers
#: 0-300, blocks 16-4,096, system prompts 0, 2,000, 4,000 and 4,095 tokens; the default is
#: 2,000) at the series commit and now;
#: the sliding-window model (gemma-2-9b) sums geometric turns one by one (27,619 of them).
CASES = (
    ("in/out 10/10, B=512, 5 geometric turns", dict(input_tokens=10, output_tokens=10, block_size=512), BEFORE),
    ("in/out 20/20, B=512, 5 geometric turns", dict(input_tokens=20, output_tokens=20, block_size=512), BEFORE),
    ("in/out 50/20, B=512, 5 geometric turns", dict(input_tokens=50, output_tokens=20, block_size=512), BEFORE),
    ("in/out 200/100, B=16, 5 geometric turns", dict(input_tokens=200, output_tokens=100, block_size=16), BEFORE),
    ("in/out 5/5, B=512, 1000 fixed turns", dict(input_tokens=5, output_tokens=5, block_size=512, **_FIXED), BEFORE),
    ("in/out 1/1, B=512, 5 geometric turns", dict(input_tokens=1, output_tokens=1, block_size=512), (SERIES,)),
    ("in/out 1/0, B=4096, 1000 geometric turns", dict(input_tokens=1, output_tokens=0, block_size=4096,
                                                       turns=1000), (SERIES,)),
    ("in/out 1/1, B=4096, 1000 geometric turns", dict(input_tokens=1, output_tokens=1, block_size=4096,
                                                       turns=1000), (SERIES,)),
    ("in/out 1/1, B=4096, 1000 fixed turns", dict(input_tokens=1, output_tokens=1, block_size=4096, **_FIXED),
     (SERIES,)),
    ("in/out 3/1, B=4096, 1000 fixed turns", dict(input_tokens=3, output_tokens=1, block_size=4096, **_FIXED),
     (SERIES,)),
    ("in/out 3/1, B=4096, S=0, 1000 fixed turns", dict(input_tokens=3, output_tokens=1, block_size=4096,
                                                        system_prompt_tokens=0, **_FIXED), (SERIES,)),
    ("in/out 1/3, B=4096, S=2000, 1000 fixed turns", dict(input_tokens=1, output_tokens=3, block_size=4096,
                                                           system_prompt_tokens=2000, **_FIXED), (SERIES,)),
    ("in/out 5/1, B=4096, S=4000, 1000 fixed turns", dict(input_tokens=5, output_tokens=1, block_size=4096,
                                                           system_prompt_tokens=4000, **_FIXED), (SERIES,)),
    ("in/out 1000/1, B=1024, 1000 fixed turns", dict(input_tokens=1000, output_tokens=1, block_size=1024,
                                                      **_FIXED), (SERIES,)),
    ("in/out 1/0, B=1024, 1000 fixed turns", dict(input_tokens=1, output_tokens=0, block_size=1024, **_FIXED),
     (SERIES,)),
    ("in/out 3/1, B=4096, 1000 fixed turns, documents", dict(input_tokens=3, output_tokens=1, block_size=4096,
                                                              num_documents=10, document_tokens=700,
                                                              document_share=0.5, **_FIXED), (SERIES,)),
    ("in/out 3/1, B=4096, 1000 fixed turns, fixed gaps", dict(input_tokens=3, output_tokens=1, block_size=4096,
                                                               think_dist="fixed", **_FIXED), (SERIES,)),
    ("gemma-2-9b, in/out 3/1, B=4096, 1000 geometric turns", dict(model="gemma-2-9b", input_tokens=3,
                                                                   output_tokens=1, block_size=4096, turns=1000),
     (SERIES,)),
    ("gemma-2-9b, in/out 1/1, B=4096, 1000 geometric turns", dict(model="gemma-2-9b", input_tokens=1,
                                                                   output_tokens=1, block_size=4096, turns=1000),
     ()),
)


def _module(name: str, source: str, commit: str) -> types.ModuleType:
    module = types.ModuleType(name)
    sys.modules[name] = module          # dataclasses look their module up
    exec(compile(source, f"{commit}:{name}", "exec"), module.__dict__)
    return module


def before_model(commit: str) -> types.ModuleType:
    """``analytic/model.py`` as it was at ``commit``, with that commit's ``lengths``."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    old_lengths = _module(f"lengths_{commit}", show("kvcache_calculator/analytic/lengths.py"), commit)
    key = "kvcache_calculator.analytic.lengths"
    current = sys.modules[key]
    sys.modules[key] = old_lengths
    try:
        module = _module(f"model_{commit}", show("kvcache_calculator/analytic/model.py"), commit)
    finally:
        sys.modules[key] = current
    module.clear = lambda: _clear(old_lengths, module)
    return module


def _clear(*modules: types.ModuleType) -> None:
    """Empty every cache of ``modules`` (each run starts cold)."""
    for module in modules:
        for value in vars(module).values():
            if hasattr(value, "cache_clear"):
                value.cache_clear()


def _time(build, setup, repeat: int, clear) -> tuple[float, object]:
    times, terms = [], None
    for _ in range(repeat):
        clear()
        start = time.process_time()
        terms = build(setup)
        times.append(time.process_time() - start)
    return statistics.median(times), terms


def difference(a, b) -> float:
    """Largest difference of the sums over turns, relative to the prompt tokens."""
    worst = 0.0
    for x, y in ((a.hit_sums[0], b.hit_sums[0]), (a.cost_sums[0], b.cost_sums[0]), (a.cost_last, b.cost_last),
                 (a.prompt_tokens, b.prompt_tokens)):
        worst = max(worst, abs(x - y) / b.prompt_tokens)
    return worst


def hit_turns_change(a, b) -> str:
    """The expected turns that find a whole block of their history, earlier -> now, where
    they differ by more than 1e-9 of the mean turns (the series commit's reach
    probabilities overflowed to nan for long Erlang tails, and Simpson's rule jumped to 1
    many turns early for unequal lengths)."""
    x, y = b.request_hit_turns, a.request_hit_turns
    if x == x and abs(x - y) <= 1e-9 * b.mean_turns:
        return "same"
    return f"{x:.4g} -> {y:.4g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    old = {commit: before_model(commit) for commit in BEFORE}
    print(f"| case | {TERM_BY_TERM} (ms) | {SERIES} (ms) | now (ms) | {SERIES}/now | "
          f"largest sum difference from {SERIES} | request hit turns, {SERIES} -> now |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, values, runs in CASES:
        setup = resolve(Scenario.from_dict(dict(values, length_dist="exponential")))
        now, terms = _time(model.build_terms, setup, args.repeat, lambda: _clear(lengths, model))
        cells, diff, ratio, hits = [], "", "", ""
        for commit in BEFORE:
            if commit not in runs:
                cells.append("not run (slow)")
                continue
            before, old_terms = _time(old[commit].build_terms, setup, args.repeat, old[commit].clear)
            cells.append(f"{1000 * before:.1f}")
            if commit == SERIES:
                ratio, diff = f"{before / now:.1f}x", f"{difference(terms, old_terms):.1e}"
                hits = hit_turns_change(terms, old_terms)
        print(f"| {label} | {cells[0]} | {cells[1]} | {1000 * now:.1f} | {ratio} | {diff} | {hits} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
