"""The discrete-event simulator: exactness against per-block references, accounting, seeds."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.policies import SegmentLRU, make_cache
from kvcache_calculator.sim.simulate import (
    Simulation, SimulationResult, batch_means_interval, simulate, t_quantile_975,
)

SMALL = dict(arrival_rate=0.5, turns=4, think_time_s=20, input_tokens=37, output_tokens=21,
             system_prompt_tokens=70, block_size=8)


def small(**changes) -> Scenario:
    return Scenario.from_dict({**SMALL, **changes})


def records(scenario, capacity_tokens, offload_tokens=0, engine="segments", seed=3, conversations=60,
            in_flight=False):
    """A run's request records and result; requests served instantly unless ``in_flight``
    (the per-block references below serve them so)."""
    sim = Simulation(scenario, capacity_tokens=capacity_tokens, offload_tokens=offload_tokens,
                     conversations=conversations, seed=seed, engine=engine, record=True, in_flight=in_flight)
    sim.run()
    return sim.records, sim.result()


def reference_replay(scenario, recs, capacity_tokens, offload_tokens=0):
    """A straightforward per-block LRU (one OrderedDict of block ids per instance and tier).

    It re-serves the simulator's request stream and returns (gpu hit, offload hit) blocks
    per request, computed from the rules of docs/model.md §1 and §4 alone.
    """
    s = scenario
    B, S, D = s.block_size, s.system_prompt_tokens, s.input_tokens + s.output_tokens
    ns = S // B
    caps = (capacity_tokens // B, offload_tokens // B)
    tiers = [[OrderedDict() for _ in range(s.instances)] for _ in caps]
    out = []
    for _t, cid, k, p, inst, _h, _o in recs:
        prompt = S + (k - 1) * D + s.input_tokens
        limit = (prompt - 1) // B
        seq = [("sys", p, i) for i in range(ns)] + [("conv", cid, i) for i in range(ns, (S + k * D) // B)]
        gpu = tiers[0][inst]
        hit = 0
        while hit < limit and seq[hit] in gpu:
            hit += 1
        end = hit
        if caps[1]:
            off = tiers[1][inst]
            while end < limit and seq[end] in off:
                end += 1
        out.append((hit, end - hit))
        for tier, cap in zip(tiers, caps):
            if not cap:
                continue
            od = tier[inst]
            for block in reversed(seq):          # tail first: the head ends most recent
                if block in od:
                    od.move_to_end(block)
                else:
                    od[block] = None
            while len(od) > cap:
                od.popitem(last=False)
    return out


CASES = [
    # (scenario changes, capacity tokens, offload tokens)
    ({}, 0, 0),
    ({}, 8, 0),
    ({}, 100, 0),                 # smaller than one late-turn sequence
    ({}, 600, 0),
    ({}, 2000, 0),
    ({}, 100_000, 0),             # everything fits
    ({"turns_dist": "fixed", "think_dist": "fixed"}, 900, 0),
    ({"num_system_prompts": 3}, 700, 0),
    ({"system_prompt_tokens": 5}, 500, 0),     # no shared block at all
    ({"system_prompt_tokens": 0, "output_tokens": 0}, 400, 0),
    ({"instances": 3, "routing": "session"}, 500, 0),
    ({"instances": 3, "routing": "random"}, 500, 0),
    ({"instances": 2, "routing": "round_robin"}, 800, 0),
    ({"instances": 4, "routing": "least_loaded"}, 400, 0),
    ({}, 300, 1200),              # offload larger than GPU
    ({}, 600, 200),               # offload smaller than GPU
    ({"instances": 3, "routing": "random", "num_system_prompts": 2}, 400, 900),
    ({"arrival_rate": 3, "think_time_s": 2, "think_dist": "fixed"}, 700, 1500),
]


@pytest.mark.parametrize("changes,capacity,offload", CASES)
def test_segments_equal_per_block_references(changes, capacity, offload):
    """Seed 3, 60 measured conversations: every request's hit counts agree exactly."""
    scenario = small(**changes)
    seg, seg_result = records(scenario, capacity, offload, "segments")
    blk, blk_result = records(scenario, capacity, offload, "blocks")
    assert len(seg) > 100
    assert seg == blk
    assert [(r[5], r[6]) for r in seg] == reference_replay(scenario, seg, capacity, offload)
    a, b = seg_result.to_dict(), blk_result.to_dict()
    for key in ("engine", "characteristic_time_s", "offload_characteristic_time_s"):
        a.pop(key), b.pop(key)
    assert a == b


def test_equal_on_many_seeds():
    """Seeds 0-5 over a cache that holds about three conversations: exact agreement."""
    for seed, routing in itertools.product(range(6), ("session", "random")):
        scenario = small(instances=2, routing=routing, turns=6)
        seg, _ = records(scenario, 600, seed=seed, conversations=40)
        blk, _ = records(scenario, 600, engine="blocks", seed=seed, conversations=40)
        assert seg == blk


@pytest.mark.parametrize("policy", ["fifo", "lfu"])
def test_other_policies_run_and_stay_below_the_ceiling(policy):
    scenario = small(policy=policy)
    result = simulate(scenario, capacity_tokens=800, conversations=300, seed=5)
    assert result.engine == "blocks" and result.policy == policy
    assert 0 < result.token_hit_rate < result.max_token_hit_rate
    with pytest.raises(ScenarioError, match="engine"):
        Simulation(scenario, capacity_tokens=800, engine="segments")


@pytest.mark.parametrize("routing", ["session", "random", "round_robin", "least_loaded"])
def test_everything_fits_reaches_the_ceiling(routing):
    """Seed 1, room for everything: the simulated rates are the routing's ceilings."""
    result = simulate(small(instances=3, routing=routing), capacity_tokens=10**7, conversations=400, seed=1)
    assert result.token_hit_rate == pytest.approx(result.max_token_hit_rate, abs=1e-12)
    assert result.request_hit_rate == result.max_request_hit_rate
    if routing == "session":         # S >= B: every request reuses its whole history
        assert result.request_hit_rate == 1.0
    else:                            # only turns that return to the previous instance
        assert 0.3 < result.request_hit_rate < 0.6
    assert result.characteristic_time_s is None
    assert result.token_hit_rate_ci[0] <= result.token_hit_rate <= result.token_hit_rate_ci[1]


def test_nothing_fits_hits_nothing():
    result = simulate(small(), capacity_tokens=0, conversations=200, seed=1, in_flight=False)
    assert result.token_hit_rate == result.request_hit_rate == 0.0
    assert result.token_hit_rate_ci == (0.0, 0.0)
    # Running requests run even beyond the pool (the simulator does not queue them): only
    # the shared prompt they pin is ever hit, never a history.
    recs, held = records(small(), 0, conversations=200, seed=1, in_flight=True)
    assert held.token_hit_rate > 0
    assert all(r[5] <= 70 // 8 for r in recs) and any(r[5] for r in recs)


def test_token_accounting_fixed_turns():
    """Fixed turns: prompt tokens are exactly conversations * sum_k P_k; the ceiling too."""
    s = small(turns=3, turns_dist="fixed")
    result = simulate(s, capacity_tokens=500, conversations=123, seed=2, batches=3)
    D = s.input_tokens + s.output_tokens
    prompts = [s.system_prompt_tokens + (k - 1) * D + s.input_tokens for k in (1, 2, 3)]
    ceiling = [min((p - s.input_tokens) // 8, (p - 1) // 8) * 8 for p in prompts]
    assert result.requests == 369
    assert result.prompt_tokens == 123 * sum(prompts)
    assert result.max_token_hit_rate == sum(ceiling) / sum(prompts)
    assert result.mean_turns == 3 and result.mean_prompt_tokens == sum(prompts) / 3
    assert result.prompt_tokens_per_s == pytest.approx(s.arrival_rate * sum(prompts))
    assert result.hit_tokens_per_s == pytest.approx(result.prompt_tokens_per_s * result.token_hit_rate)


def test_last_prompt_token_is_never_reused():
    """input_tokens=1 and B=1: the cap (P-1)//B bites; a full hit is P-1 tokens."""
    s = small(block_size=1, input_tokens=1, output_tokens=0, system_prompt_tokens=4,
              turns=2, turns_dist="fixed")
    result = simulate(s, capacity_tokens=10**6, conversations=50, seed=0, batches=2)
    # turn 1: prompt 5, reuse 4; turn 2: prompt 6, reuse 5 (the 1-token turn before)
    assert result.token_hit_rate == pytest.approx(9 / 11)
    assert result.request_hit_rate == 1.0


def test_first_turn_without_system_prompt_is_no_request_hit():
    s = small(system_prompt_tokens=0, turns=1, turns_dist="fixed")
    result = simulate(s, capacity_tokens=10**6, conversations=50, seed=0)
    assert result.token_hit_rate == 0.0 and result.request_hit_rate == 0.0


def test_offload_tier_adds_up():
    """Seed 4: GPU + offload = total; a big offload tier recovers the ceiling."""
    s = small()
    result = simulate(s, capacity_tokens=200, offload_tokens=10**7, conversations=300, seed=4)
    assert result.offload_token_hit_rate > 0.3
    assert result.gpu_token_hit_rate + result.offload_token_hit_rate == pytest.approx(result.token_hit_rate)
    assert result.token_hit_rate == pytest.approx(result.max_token_hit_rate)
    assert result.gpu_request_hit_rate < result.request_hit_rate == result.max_request_hit_rate
    assert result.characteristic_time_s > 0 and result.offload_characteristic_time_s is None  # never full
    without = simulate(s, capacity_tokens=200, conversations=300, seed=4)
    assert without.gpu_request_hit_rate == without.request_hit_rate
    both_full = simulate(s, capacity_tokens=200, offload_tokens=800, conversations=300, seed=4)
    assert both_full.characteristic_time_s < both_full.offload_characteristic_time_s
    assert without.offload_token_hit_rate == 0.0
    assert without.gpu_token_hit_rate == pytest.approx(without.token_hit_rate)
    assert without.token_hit_rate < result.token_hit_rate


def test_same_seed_same_numbers_and_chunks_resume():
    s = small(instances=3, routing="random", num_system_prompts=2)
    one = simulate(s, capacity_tokens=700, offload_tokens=900, conversations=300, seed=11)
    sim = Simulation(s, capacity_tokens=700, offload_tokens=900, conversations=300, seed=11)
    progress = []
    while not sim.run(max_requests=97):
        progress.append(sim.progress)
    assert sim.progress == 1.0
    assert progress == sorted(progress) and all(0 <= p < 1 for p in progress)
    assert sim.result() == one
    other = simulate(s, capacity_tokens=700, offload_tokens=900, conversations=300, seed=12)
    assert other.token_hit_rate != one.token_hit_rate


def test_routings_spread_the_load():
    """Seed 8: least_loaded and round_robin balance prompt tokens across instances."""
    for routing in ("least_loaded", "round_robin", "random", "session"):
        s = small(instances=4, routing=routing)
        sim = Simulation(s, capacity_tokens=500, conversations=400, seed=8, in_flight=False)
        sim.run()
        loads = sim._loads
        spread = (max(loads) - min(loads)) / (sum(loads) / 4)
        if routing == "least_loaded":
            assert max(loads) - min(loads) <= s.system_prompt_tokens + 20 * 58  # one prompt
        assert spread < {"least_loaded": 0.01, "round_robin": 0.1}.get(routing, 0.3)


def test_non_sticky_routing_loses_hits():
    """Seed 9: spreading turns over 4 instances misses more than sticky sessions."""
    base = dict(instances=4)
    session = simulate(small(routing="session", **base), capacity_tokens=1500, conversations=500, seed=9)
    spread = simulate(small(routing="random", **base), capacity_tokens=1500, conversations=500, seed=9)
    assert spread.token_hit_rate < session.token_hit_rate - 0.05


def test_run_length_and_warmup():
    """Warm-up is ceil(rate * 5 * turns * think); arrivals go on until the end."""
    s = small()
    result = simulate(s, capacity_tokens=500, conversations=200, seed=1, in_flight=False)
    assert result.warmup_s == 5 * 4 * 20
    assert result.warmup_conversations == math.ceil(0.5 * 400)
    # 400 conversations at 0.5/s take ~800 s, then the last ones finish (Poisson: +-15 %)
    assert 650 < result.simulated_time_s < 1400
    assert result.conversations == 200
    assert result.request_rate == pytest.approx(2.0)
    custom = simulate(s, capacity_tokens=500, conversations=200, seed=1, warmup_s=0)
    assert custom.warmup_conversations == 0


def test_characteristic_time_grows_with_capacity():
    """Seed 2: the mean idle time of evicted blocks grows with the cache."""
    s = small(arrival_rate=2)
    small_t = simulate(s, capacity_tokens=600, conversations=400, seed=2).characteristic_time_s
    large_t = simulate(s, capacity_tokens=3000, conversations=400, seed=2).characteristic_time_s
    assert 0 < small_t < large_t


def test_confidence_interval_covers_independent_replications():
    """Seeds 0-5: the 95 % intervals of five runs contain the sixth run's estimate mostly;
    asserting on the spread: half-widths within 3x of the seed-to-seed standard deviation."""
    s = small(arrival_rate=2, think_time_s=10)
    results = [simulate(s, capacity_tokens=1200, conversations=600, seed=seed) for seed in range(6)]
    rates = [r.token_hit_rate for r in results]
    mean = sum(rates) / len(rates)
    sd = math.sqrt(sum((r - mean) ** 2 for r in rates) / (len(rates) - 1))
    halves = [(r.token_hit_rate_ci[1] - r.token_hit_rate_ci[0]) / 2 for r in results]
    for half in halves:
        assert sd / 3 < half / 1.96 < sd * 3


def test_batch_means_interval():
    est, lo, hi = batch_means_interval([1, 2, 3, 4], [10, 10, 10, 10])
    assert est == 0.25
    half = t_quantile_975(3) * math.sqrt(sum((r - 0.25) ** 2 for r in (0.1, 0.2, 0.3, 0.4)) / 3 / 4)
    assert (lo, hi) == pytest.approx((0.25 - half, 0.25 + half))
    assert batch_means_interval([1], [2]) == (0.5, 0.5, 0.5)
    assert batch_means_interval([0, 0], [0, 0]) == (0.0, 0.0, 0.0)
    assert t_quantile_975(9) == 2.262 and t_quantile_975(1000) == 1.96 and t_quantile_975(22) == 2.086


@pytest.mark.parametrize("kwargs,key", [
    (dict(conversations=0), "conversations"),
    (dict(conversations=10, batches=11), "batches"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
    (dict(warmup_s=-1), "warmup_s"),
    (dict(warmup_s=math.nan), "warmup_s"),
    (dict(engine="gpu"), "engine"),
    (dict(capacity_tokens=-16), "capacity_tokens"),
    (dict(offload_tokens=-1), "offload_tokens"),
])
def test_bad_arguments(kwargs, key):
    kwargs = {"capacity_tokens": 100, **kwargs}
    with pytest.raises(ScenarioError, match=f"^{key}: got"):
        Simulation(small(), **kwargs)


def test_scenario_must_be_a_scenario():
    with pytest.raises(ScenarioError, match="scenario"):
        Simulation({"arrival_rate": 1}, capacity_tokens=100)


def test_capacity_from_the_scenario():
    """kv_cache_tokens is used as is; without it the resolved capacity (presets) decides."""
    s = small(kv_cache_tokens=803)
    result = simulate(s, conversations=50, seed=0)
    assert result.capacity_tokens == 800 and result.offload_tokens == 0
    pytest.importorskip("kvcache_calculator.setup.presets")
    from kvcache_calculator.setup.resolve import resolve

    s = Scenario.from_dict({"arrival_rate": 0.2, "think_time_s": 5, "offload_gib": 1})
    capacity = resolve(s).capacity
    result = simulate(s, conversations=50, seed=0)
    assert result.capacity_tokens == capacity.capacity_tokens > 0
    assert result.offload_tokens == capacity.offload_tokens > 0
    too_big = Scenario.from_dict({"gpu": "custom", "gpu_memory_gib": 8, "arrival_rate": 1})
    with pytest.raises(ScenarioError, match="does not fit"):
        simulate(too_big, conversations=10)


def test_result_to_dict_is_plain_json():
    import json

    result = simulate(small(), capacity_tokens=500, conversations=50, seed=0)
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert isinstance(result, SimulationResult)
    assert data["token_hit_rate_ci"] == list(result.token_hit_rate_ci)
    for key in ("token_hit_rate", "request_hit_rate", "max_token_hit_rate", "characteristic_time_s",
                "gpu_token_hit_rate", "offload_token_hit_rate", "capacity_tokens", "request_rate"):
        assert key in data


# -- the command line ---------------------------------------------------------------------------

SMALL_ARGS = ["arrival_rate=0.5", "turns=4", "think_time_s=20", "input_tokens=37", "output_tokens=21",
              "system_prompt_tokens=70", "block_size=8", "kv_cache_tokens=600"]


def test_cli_json_matches_the_library(capsys):
    import json

    from kvcache_calculator.cli.simulate import main

    assert main([*SMALL_ARGS, "--conversations", "150", "--seed", "4", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = simulate(small(kv_cache_tokens=600), conversations=150, seed=4).to_dict()
    assert data["results"] == expected
    assert data["scenario"]["kv_cache_tokens"] == 600


def test_cli_table_and_errors(capsys):
    from kvcache_calculator.cli.simulate import main

    assert main([*SMALL_ARGS, "--conversations", "100", "--batches", "5"]) == 0
    out = capsys.readouterr().out
    assert "token_hit_rate" in out and "%  [" in out and "characteristic_time_s" in out
    assert main(["arrival_rate=-1"]) == 2
    assert "arrival_rate: got '-1'" in capsys.readouterr().err
    assert main([*SMALL_ARGS, "--conversations", "0"]) == 2
    assert "conversations: got 0" in capsys.readouterr().err


def test_cli_registered_in_kvcache_calc(capsys):
    from kvcache_calculator.cli import commands

    assert "simulate" in commands.build_parser().format_help()
    assert commands.main(["simulate", *SMALL_ARGS, "--conversations", "50", "--json"]) == 0
    assert '"token_hit_rate"' in capsys.readouterr().out


def test_cli_progress_only_on_a_terminal_after_a_second():
    import io

    from kvcache_calculator.cli.simulate import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pipe = _Progress(io.StringIO())
    pipe.start -= 5
    pipe.update(0.5)
    pipe.close()
    assert pipe.stream.getvalue() == ""
    term = _Progress(Terminal())
    term.update(0.1)                      # within the first second: silent
    assert term.stream.getvalue() == ""
    term.start -= 5
    term.update(0.5)
    assert "50 %" in term.stream.getvalue()
    term.close()
    assert term.stream.getvalue().endswith("\r")


# -- the same numbers in the browser's Python -----------------------------------------------------

_NODE_SCRIPT = """
import { loadPyodide } from %(module)s;
import fs from "node:fs";
import path from "node:path";
const pkgDir = %(package)s;
const py = await loadPyodide({ indexURL: %(index)s });
for (const f of fs.readdirSync(pkgDir, { recursive: true })) {
  if (!f.endsWith(".py")) continue;
  const dest = "/pkg/kvcache_calculator/" + f.split(path.sep).join("/");
  py.FS.mkdirTree(dest.slice(0, dest.lastIndexOf("/")));
  py.FS.writeFile(dest, fs.readFileSync(path.join(pkgDir, f)));
}
py.runPython("import sys; sys.path.insert(0, '/pkg')");
console.log(py.runPython(fs.readFileSync(0, "utf8")));
"""

_PYODIDE_CODE = """
import json
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.sim.simulate import simulate
s = Scenario.from_dict({"instances": 3, "routing": "random", "arrival_rate": 3, "turns_dist": "geometric"})
json.dumps(simulate(s, capacity_tokens=200000, offload_tokens=500000, conversations=1500, seed=5).to_dict(),
           sort_keys=True)
"""


@pytest.mark.slow
def test_same_seed_same_numbers_under_pyodide(tmp_path):
    """Seed 5: Pyodide (the page's runtime, run by Node) gives the very same result dict."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pyodide = root / "node_modules" / "pyodide"
    node = shutil.which("node")
    if node is None or not (pyodide / "pyodide.mjs").exists():
        pytest.skip("node or node_modules/pyodide not found (run npm ci)")
    script = tmp_path / "run.mjs"
    script.write_text(_NODE_SCRIPT % {
        "module": json.dumps((pyodide / "pyodide.mjs").as_uri()),
        "package": json.dumps(str(root / "kvcache_calculator")),
        "index": json.dumps(str(pyodide) + "/"),
    })
    proc = subprocess.run([node, str(script)], input=_PYODIDE_CODE, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    namespace: dict = {}
    exec(_PYODIDE_CODE.rsplit("\njson.dumps", 1)[0], namespace)
    expected = simulate(namespace["s"], capacity_tokens=200000, offload_tokens=500000, conversations=1500, seed=5)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(expected.to_dict()))


@pytest.mark.slow
def test_confidence_intervals_cover_the_mean_of_replications():
    """Seeds 0-19, 2,000 measured conversations each: the 95 % intervals cover the mean of
    the 20 replications in at least 16 of 20 runs (expected 19; 16 or fewer has probability
    below 2 % for calibrated intervals) and are at most twice as wide as 1.96 standard
    deviations of the replications (t with 9 df makes them a little conservative)."""
    import statistics

    s = small(arrival_rate=2, think_time_s=10, instances=2, routing="random")
    runs = [simulate(s, capacity_tokens=1200, conversations=2000, seed=seed) for seed in range(20)]
    rates = [r.token_hit_rate for r in runs]
    mean, sd = statistics.mean(rates), statistics.stdev(rates)
    covered = sum(r.token_hit_rate_ci[0] <= mean <= r.token_hit_rate_ci[1] for r in runs)
    halves = statistics.mean((r.token_hit_rate_ci[1] - r.token_hit_rate_ci[0]) / 2 for r in runs)
    assert covered >= 16
    assert halves <= 2 * 1.96 * sd


# -- running requests hold their blocks ------------------------------------------------------


def test_instant_service_keeps_the_results_before_running_requests_were_modelled():
    """``in_flight=False`` gives the numbers the simulator gave before (recorded at the
    commit before it modelled running requests; seed 11, 300 conversations)."""
    for changes, kwargs, expected in [
        ({}, dict(capacity_tokens=700, offload_tokens=900), (0.3072011170949713, 0.34967012252591895, 1.5839497153979014)),
        ({"instances": 3, "routing": "random"}, dict(capacity_tokens=500),
         (0.2588742841284658, 0.2931937172774869, 3.1738079843399487)),
        ({"policy": "lfu"}, dict(capacity_tokens=800), (0.30344837617591336, 0.33176248821866167, None)),
    ]:
        r = simulate(small(**changes), conversations=300, seed=11, in_flight=False, **kwargs)
        assert (r.token_hit_rate, r.request_hit_rate, r.characteristic_time_s) == expected, changes
        assert r.service_s == 0.0 and r.in_flight_tokens == 0.0


def reference_held(scenario, recs, capacity_tokens, service_s, output_held, offload_tokens=0):
    """A per-block LRU with pinning (one OrderedDict and one pin count per instance), fed the
    simulator's requests and, ``service_s`` later, their ends, in time order: at its start a
    request hits its cached prefix, touches the blocks it holds (its prompt and
    ``output_held`` tokens, rounded up to blocks) tail first and pins them; at its end it
    unpins them, drops its partly filled last block, touches its final sequence's whole
    blocks tail first. Evictions take the least recent blocks no request pins."""
    s = scenario
    B, S, D, IN = s.block_size, s.system_prompt_tokens, s.input_tokens + s.output_tokens, s.input_tokens
    ns = S // B
    caches = [OrderedDict() for _ in range(s.instances)]
    pins = [dict() for _ in range(s.instances)]
    offload = [OrderedDict() for _ in range(s.instances)]
    events = sorted([(t, 1, i) for i, (t, *_r) in enumerate(recs)] + [(t + service_s, 0, i) for i, (t, *_r) in enumerate(recs)])

    def blocks(cid, p, n):
        return [("sys", p, i) for i in range(ns)] + [("conv", cid, i) for i in range(ns, n)]

    def evict(od, pin, cap):
        for block in [b for b in od if b not in pin][:max(0, len(od) - cap)]:
            del od[block]

    out = {}
    for _t, start, i in events:
        _t, cid, k, p, inst, _h, _o = recs[i]
        od, pin = caches[inst], pins[inst]
        prompt = S + (k - 1) * D + IN
        held = blocks(cid, p, math.ceil((prompt + output_held) / B))
        final = blocks(cid, p, (S + k * D) // B)
        if start:
            hit = 0
            while hit < (prompt - 1) // B and held[hit] in od:
                hit += 1
            for block in reversed(held):
                od[block] = None
                od.move_to_end(block)
                pin[block] = pin.get(block, 0) + 1
            evict(od, pin, capacity_tokens // B)
            ohit = 0
            if offload_tokens:
                off = offload[inst]
                end = hit
                while end < (prompt - 1) // B and final[end] in off:
                    end += 1
                ohit = end - hit
                for block in reversed(final):
                    off[block] = None
                    off.move_to_end(block)
                while len(off) > offload_tokens // B:
                    off.popitem(last=False)
            out[i] = (hit, ohit)
        else:
            for block in held:
                pin[block] -= 1
                if not pin[block]:
                    del pin[block]
            for block in set(held) - set(final):
                if block not in pin:
                    od.pop(block, None)
            for block in reversed(final):
                od[block] = None
                od.move_to_end(block)
            evict(od, pin, capacity_tokens // B)
    return [out[i] for i in range(len(recs))]


HELD_CASES = [
    # (scenario changes, capacity tokens, offload tokens): decode at 2 tokens/s, so that a
    # request runs about 11 s, against 20 s of think time: many overlap
    ({}, 300, 0),
    ({}, 900, 0),
    ({"num_system_prompts": 3}, 700, 0),
    ({"system_prompt_tokens": 5}, 500, 0),
    ({"instances": 3, "routing": "random"}, 500, 0),
    ({"turns_dist": "fixed", "think_dist": "fixed", "arrival_rate": 1}, 800, 0),
    ({}, 400, 1200),
    ({}, 120, 0),                             # running requests overfill the pool
]


@pytest.mark.parametrize("changes,capacity,offload", HELD_CASES)
def test_running_requests_segments_blocks_and_reference_agree(changes, capacity, offload):
    """Seed 3, 60 measured conversations, running requests holding their blocks: the segment
    LRU, the per-block LRU and a straightforward reference give every request the same hits."""
    scenario = small(decode_tokens_per_s=2, ttft_s=0.5, **changes)
    seg, seg_result = records(scenario, capacity, offload, "segments", in_flight=True)
    blk, blk_result = records(scenario, capacity, offload, "blocks", in_flight=True)
    assert len(seg) > 100 and seg == blk
    service = 0.5 + 21 / 2
    assert seg_result.service_s == pytest.approx(service)
    expected = reference_held(scenario, seg, capacity, service, 21 * 10.5 / (2 * service), offload)
    assert [(r[5], r[6]) for r in seg] == expected
    assert any(r[5] for r in seg)
    a, b = seg_result.to_dict(), blk_result.to_dict()
    for key in ("engine", "characteristic_time_s", "offload_characteristic_time_s"):
        a.pop(key), b.pop(key)
    assert a == b


def test_a_running_requests_blocks_are_never_evicted():
    """Step by step through a run where running requests hold most of a small pool (seed 5):
    after every event every running request's blocks are cached and pinned, and the pool
    holds no more than its capacity unless running requests alone exceed it."""
    s = small(decode_tokens_per_s=3, ttft_s=0.2, arrival_rate=0.6)
    for engine in ("segments", "blocks"):
        sim = Simulation(s, capacity_tokens=400, conversations=30, seed=5, engine=engine)
        B, S, D, IN = s.block_size, s.system_prompt_tokens, s.input_tokens + s.output_tokens, s.input_tokens
        checked = 0
        while not sim.run(max_requests=1):
            # the end events of the running requests: (time, conversation, -turn, (conv, instance))
            running = [(cid, -k, req[0][1], req[1]) for _t, cid, k, req in sim._heap if k < 0]
            pinned_blocks = [0] * s.instances
            for cid, k, p, inst in running:
                held = math.ceil((S + (k - 1) * D + IN + sim._output_held) / B)
                ids = ([(-1 - p, i) for i in range(S // B)] + [(cid, i) for i in range(held - S // B)]
                       if engine == "segments" else
                       sim._shared_ids[p] + [cid * (1 << 48) + i for i in range(held - S // B)])
                cache = sim._gpu[inst]
                assert all(b in cache and cache.pinned(b) for b in ids), (cid, k)
                pinned_blocks[inst] += held - S // B
                checked += 1
            for inst, cache in enumerate(sim._gpu):
                assert len(cache) <= max(cache.capacity_blocks, pinned_blocks[inst] + S // B * s.num_system_prompts)
        assert checked > 100


@pytest.mark.parametrize("policy", ["lru", "lru-segments", "fifo", "lfu"])
def test_hold_pins_until_release(policy):
    """A pool of 4 blocks. C runs and ends (idle, cached); A starts; B starts and needs room:
    C is evicted, not A, though A is older than C's end. A request that does not fit beside
    the pinned ones still runs (the pool is overcommitted) and evicts the rest."""
    segments = policy == "lru-segments"
    cache = SegmentLRU(4) if segments else make_cache(policy, 4)

    def hold(key, n, now):
        return cache.hold_runs(None, 0, key, n, now) if segments else cache.hold([(key, i) for i in range(n)])

    def release(key, held, cached, now):
        if segments:
            cache.release_runs(None, 0, key, cached, now)
        else:
            cache.release([(key, i) for i in range(held)], [(key, i) for i in range(cached)])

    assert hold("c", 2, 1.0) == 0
    release("c", 2, 2, 2.0)
    assert hold("a", 2, 3.0) == 0
    assert hold("b", 2, 4.0) == 0
    assert {b for b in [("a", 0), ("a", 1), ("b", 0), ("b", 1)]} <= set(_cached(cache))
    assert ("c", 0) not in cache and cache.evictions == 2
    assert hold("d", 3, 5.0) == 0                 # 7 blocks pinned in a pool of 4
    assert len(cache) == 7 and cache.evictions == 2
    # A ends: its partly filled last block is dropped, its other block is idle and goes at
    # once (the pool is over its capacity); B ends: its tail goes; D ends: it fits
    release("a", 2, 1, 6.0)
    assert ("a", 0) not in cache and ("a", 1) not in cache and len(cache) == 5 and cache.evictions == 3
    release("b", 2, 2, 7.0)
    assert ("b", 0) in cache and ("b", 1) not in cache and len(cache) == 4 and cache.evictions == 4
    release("d", 3, 3, 8.0)
    assert len(cache) == 4 and cache.evictions == 4
    assert hold("b", 2, 9.0) == 1                 # b's head survived


def _cached(cache):
    if isinstance(cache, SegmentLRU):
        return [(key, i) for key in ("a", "b", "c", "d") for i in range(4) if (key, i) in cache]
    return [b for b in [(key, i) for key in ("a", "b", "c", "d") for i in range(4)] if b in cache]


DOCUMENT_CASES = [
    # (scenario changes, capacity tokens, offload tokens, running requests hold their KV)
    ({"num_documents": 3, "document_tokens": 30, "document_share": 0.6}, 600, 0, False),
    ({"num_documents": 3, "document_tokens": 30, "document_share": 0.6}, 600, 0, True),
    ({"num_documents": 5, "document_tokens": 45, "document_share": 1.0, "document_zipf": 0.0}, 900, 0, True),
    ({"num_documents": 4, "document_tokens": 12, "num_system_prompts": 3, "system_prompt_zipf": 1.0}, 500, 0, True),
    ({"num_documents": 4, "document_tokens": 30, "system_prompt_tokens": 0}, 400, 0, True),
    ({"num_documents": 3, "document_tokens": 30, "instances": 3, "routing": "random"}, 500, 0, True),
    ({"num_documents": 3, "document_tokens": 30}, 300, 1200, False),
    ({"num_documents": 6, "document_tokens": 30, "think_dist": "lognormal", "think_sigma": 1.2}, 700, 0, True),
]


@pytest.mark.parametrize("changes,capacity,offload,held", DOCUMENT_CASES)
def test_documents_segments_equal_per_block(changes, capacity, offload, held):
    """Seed 3, 60 measured conversations with shared documents (docs/model.md §12): the
    segment LRU (system prompt, document and history runs) and the per-block LRU give every
    request the same hits, and documents are hit across conversations."""
    scenario = small(decode_tokens_per_s=2, ttft_s=0.5, **changes)
    seg, seg_result = records(scenario, capacity, offload, "segments", in_flight=held)
    blk, blk_result = records(scenario, capacity, offload, "blocks", in_flight=held)
    assert len(seg) > 100 and seg == blk
    assert seg_result.token_hit_rate == blk_result.token_hit_rate
    assert 0 < seg_result.token_hit_rate < seg_result.max_token_hit_rate <= 1


def test_document_and_prompt_popularity_and_lognormal_gaps_are_drawn_as_specified():
    """Seed 11: documents in their share of conversations with Zipf popularity, system prompts
    likewise, lognormal think times with the scenario's mean (tolerances: 4 standard errors)."""
    s = small(num_documents=5, document_zipf=1.0, document_share=0.4, num_system_prompts=4,
              system_prompt_zipf=2.0, think_dist="lognormal", think_sigma=0.8)
    sim = Simulation(s, capacity_tokens=10_000, conversations=4000, seed=11, in_flight=False)
    convs = [sim._new_conversation()[1] for _ in range(20_000)]
    n = len(convs)
    with_doc = [c[5] for c in convs if c[5] is not None]
    assert len(with_doc) / n == pytest.approx(0.4, abs=4 * math.sqrt(0.24 / n))
    harmonic = sum(1 / i for i in range(1, 6))
    for d in range(5):
        share = 1 / (d + 1) / harmonic
        assert with_doc.count(d) / len(with_doc) == pytest.approx(share, abs=4 * math.sqrt(share / len(with_doc)))
    weights = [i ** -2.0 for i in range(1, 5)]
    for p in range(4):
        share = weights[p] / sum(weights)
        assert [c[1] for c in convs].count(p) / n == pytest.approx(share, abs=4 * math.sqrt(share / n))
    sim = Simulation(s, capacity_tokens=10_000, conversations=3000, seed=11, record=True, in_flight=False)
    sim.run()
    times: dict = {}
    for t, cid, k, *_ in sim.records:
        times.setdefault(cid, []).append(t)
    gaps = [b - a for ts in times.values() for a, b in zip(ts, ts[1:])]
    sd = 20 * math.sqrt(math.expm1(0.8 ** 2))
    assert sum(gaps) / len(gaps) == pytest.approx(20, abs=4 * sd / math.sqrt(len(gaps)))
