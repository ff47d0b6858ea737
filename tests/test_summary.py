"""Trace summaries (traces/summary.py, ``kvcache-calc summarize``) and the committed built-in
summaries in ``site/traces/``."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from kvcache_calculator.cli import summarize as cli_summarize
from kvcache_calculator.cli.commands import main
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.gap import fleet_request_hits, prefix_belady_hits
from kvcache_calculator.traces.readers import read_trace
from kvcache_calculator.traces.replay import LRUCurveReplay, PolicyReplay, replay_lru_curve
from kvcache_calculator.traces.routing import replay_fleet
from kvcache_calculator.traces.summary import (
    curve_from_view,
    decode_histogram,
    encode_curve,
    grid_capacities,
    summarize,
)
from kvcache_calculator.traces.warmup import WarmupReplay
from trace_helpers import BS, prefix_closed_trace, req

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"

SITE = Path(__file__).resolve().parents[1] / "site" / "traces"
BUILT_IN = ("mooncake_conversation_trace", "mooncake_synthetic_trace")


def small_summary(trace):
    return summarize(trace, name="t", block_size=BS, trace_format="mooncake",
                     source_file="t.jsonl", sha256="0" * 64, size_bytes=1, licence="CC0")


def test_grid():
    assert grid_capacities(1) == [100]
    assert grid_capacities(450) == [100, 200, 500]
    assert grid_capacities(500) == [100, 200, 500]
    assert grid_capacities(501) == [100, 200, 500, 1000]


def test_histogram_round_trip():
    curve = replay_lru_curve(prefix_closed_trace(random.Random(1), 500))
    gaps, counts, deficits = decode_histogram(encode_curve(curve)["histogram"])
    assert len(gaps) == len(counts) == len(curve.distances)
    assert sum(gaps) == curve.distances[-1] and sum(counts) == curve.infinite_block_hits
    assert sum(c * BS - deficits.get(k, 0) for k, c in enumerate(counts)) == curve.infinite_token_hits


def test_summary_reproduces_the_replays():
    trace = prefix_closed_trace(random.Random(2), 600)
    s = small_summary(trace)
    v0, v5 = s["views"]
    assert (v0["warmup"], v5["warmup"]) == (0.0, 0.5)
    exact = replay_lru_curve(trace)
    assert curve_from_view(v0, BS) == exact
    half = WarmupReplay(LRUCurveReplay(BS), 300)
    half.feed(trace)
    assert curve_from_view(v5, BS) == half.result()
    grid = v0["grid"]["capacity_blocks"]
    fifo = PolicyReplay("fifo", grid, BS)
    fifo.feed(trace)
    assert v0["grid"]["fifo"]["token_hit_rate"] == fifo.result().token_hit_rate
    for k, cap in enumerate(grid):
        assert sum(v0["grid"]["optimum_bucket_token_hits"][k]) == prefix_belady_hits(trace, cap, BS)[1]
        assert sum(v0["grid"]["lru_bucket_token_hits"][k]) == exact.token_hits(cap)
        for name in ("round_robin", "random", "prefix", "cache_aware"):
            for i, n in enumerate(s["views"][0]["routing"][name]["instances"]):
                want = replay_fleet(trace, name, n, [cap], BS).token_hits[0]
                assert sum(v0["routing"][name]["bucket_token_hits"][i][k]) == want
    assert "session" not in v0["routing"]
    # The second half's buckets count the second half only.
    per = fleet_request_hits(trace, grid, BS)
    assert sum(v5["grid"]["lru_bucket_token_hits"][0]) == sum(per.hits[0][300:])
    assert sum(v5["prompt_buckets"]["requests"]) == 300
    json.dumps(s, allow_nan=False)


def test_session_routing_for_bailian_traces():
    trace = [req([1], t=i, chat=i + 1, parent=i if i % 3 else -1) for i in range(30)]
    s = summarize(trace, name="b", block_size=BS, trace_format="bailian", source_file="b",
                  sha256="", size_bytes=0, licence="CC0")
    assert "session" in s["views"][0]["routing"]


def test_summary_needs_a_licence_and_requests():
    with pytest.raises(ScenarioError) as err:
        summarize([req([1])], name="t", block_size=BS, trace_format="mooncake",
                  source_file="t", sha256="", size_bytes=0, licence="")
    assert err.value.key == "licence"
    with pytest.raises(ScenarioError):
        small_summary([])


def test_cli_writes_a_summary(tmp_path, capsys):
    trace = tmp_path / "x.jsonl"
    trace.write_text("\n".join(json.dumps({"timestamp": i, "input_length": 700,
                                           "output_length": 1, "hash_ids": [0, i]})
                               for i in range(50)) + "\n")
    out = tmp_path / "x.json"
    assert main(["summarize", str(trace), "--out", str(out), "--licence", "CC0"]) == 0
    data = json.loads(out.read_text())
    assert data["provenance"]["source_file"] == "x.jsonl"
    assert data["provenance"]["bytes"] == trace.stat().st_size
    assert data["views"][0]["requests"] == 50
    assert main(["summarize", str(tmp_path / "missing.jsonl"), "--out", str(out),
                 "--licence", "CC0"]) == 2
    assert "cannot be read" in capsys.readouterr().err


@pytest.mark.parametrize("name", BUILT_IN)
def test_committed_summary_is_small_and_licensed(name):
    path = SITE / f"{name}.json"
    assert path.stat().st_size < 200 * 1024
    data = json.loads(path.read_text())
    assert data["provenance"]["licence"].startswith("Apache-2.0")
    assert "kvcache-ai/Mooncake" in data["provenance"]["origin"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_committed_curve_equals_a_full_replay(name):
    trace_path = TRACES / f"{name}.jsonl"
    if not trace_path.exists():
        pytest.skip(f"shared trace not found: {trace_path} is absent")
    with open(trace_path) as f:
        trace = list(read_trace(f))
    data = json.loads((SITE / f"{name}.json").read_text())
    curve = curve_from_view(data["views"][0], data["block_size"])
    exact = replay_lru_curve(trace, None, data["block_size"])
    for cap in list(range(0, 2000, 37)) + list(range(2000, exact.capacity_for_ceiling + 5000, 997)):
        assert curve.block_hits(cap) == exact.block_hits(cap)
        assert curve.token_hits(cap) == exact.token_hits(cap)
    assert curve.infinite_token_hit_rate == exact.infinite_token_hit_rate


@pytest.mark.slow
@pytest.mark.parametrize("name", BUILT_IN)
def test_committed_summary_is_current(name):
    """Regenerate the summary from the shared trace with the committed provenance and compare
    the whole file (regenerate with the ``kvcache-calc summarize`` line in the README)."""
    trace_path = TRACES / f"{name}.jsonl"
    if not trace_path.exists():
        pytest.skip(f"shared trace not found: {trace_path} is absent")
    committed = (SITE / f"{name}.json").read_text()
    prov = json.loads(committed)["provenance"]
    fresh = cli_summarize.dumps(cli_summarize.summarize_file(
        str(trace_path), prov["licence"], prov["origin"]))
    assert fresh == committed, f"site/traces/{name}.json is stale: regenerate it"
