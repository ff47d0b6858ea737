"""End to end (slow): the analytic model on the scenario fitted to a trace against the exact
LRU replay at 1k-100k blocks (docs/validation.md §7.3), on the public Mooncake traces and on
generated traces with shared documents, several system prompts and lognormal think times.
The cases are those of ``benchmarks/fit_table.py``.

The issue's target is 2 points everywhere; it is met on these cases (the 30-prompt workload
reaches 2.0 on another seed, docs/validation.md §7.3), and each case asserts its measured
worst gap (validation.md §7.3) plus :data:`MARGIN` points, capped at the target where the measured gap is within it: a regression fails.
The traces and seeds are fixed, so the gaps are deterministic; the margin absorbs float
rounding and small fit changes, not noise.

Skipped, with the reason, while this version's model lacks a fitted key: the gaps would be
those of a model that ignores documents, prompt popularity and think-time spread.
"""

from __future__ import annotations

import pytest

from benchmark_modules import load_benchmark

TARGET_POINTS = 2.0
MARGIN = 0.5
#: Worst measured gap per case, points (benchmarks/fit_table.py, this version: the model of the
#: trace's window from an empty cache, docs/model.md §12.5).
MEASURED_WORST = {
    "Mooncake conversation": 1.0,        # at 3k blocks
    "Mooncake synthetic": 1.9,           # at 3k blocks
    "generated: documents, 8 prompts, lognormal": 1.0,
    "generated: many documents, 30 prompts": 1.7,
    "generated: fixed turns, exponential": 0.2,
}


ft = load_benchmark("fit_table")
ALL_CASES = ft.cases()
CASES = ALL_CASES if not ft.missing_keys() else []


@pytest.mark.slow
@pytest.mark.skipif(bool(ft.missing_keys()),
                    reason="the model does not take these fitted keys yet: "
                           + ", ".join(ft.missing_keys()))
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fitted_model_within_measured_bound_of_lru_replay(case):
    name, requests, _, note = case
    if requests is None:
        pytest.skip(note)
    m = ft.measure(requests)
    worst = max(abs(g) for g in m["gaps_points"])
    measured = MEASURED_WORST[name]
    bound = measured + MARGIN if measured > TARGET_POINTS else min(TARGET_POINTS, measured + MARGIN)
    assert worst <= bound, (name, m["gaps_points"], m["fit"]["link"])


#: The drift test's verdict per case (benchmarks/fit_table.py's last table: spreads of 7.1,
#: 44.7, 2.4, 3.4 and 0.4 points against the threshold of 20).
DRIFTS = {
    "Mooncake conversation": False,
    "Mooncake synthetic": True,
    "generated: documents, 8 prompts, lognormal": False,
    "generated: many documents, 30 prompts": False,
    "generated: fixed turns, exponential": False,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", ALL_CASES, ids=[c[0] for c in ALL_CASES])
def test_drift_test_flags_only_the_drifting_trace(case):
    name, requests, _, note = case
    if requests is None:
        pytest.skip(note)
    fit = ft.fit_scenario(requests, 512)
    assert fit["diagnostics"]["drift"]["drifts"] is DRIFTS[name], fit["diagnostics"]["drift"]
