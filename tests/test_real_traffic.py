"""Real traffic on the lab page (present/real_traffic.py, the lab's jobs and tables): a
summary's gap split and routing table equal the replays they stand for; the stepwise gap
split equals the one-call one; uploads in gzip, blank or out of order are handled."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import StepsJob, TraceJob, run_for
from kvcache_calculator.present.lab_figures import gap_waterfall_figure, reuse_time_figure, routing_figure
from kvcache_calculator.present.lab_tables import gap_rows, trace_capacities
from kvcache_calculator.present.real_traffic import (grid_index, ideal_speedup, routing_steps, share_within,
                                                     summary_curve, summary_gap, summary_routing)
from kvcache_calculator.traces.gap import (ReuseTimes, drain, explain_gap, explain_gap_passes, explain_gap_steps,
                                           fleet_request_hits)
from kvcache_calculator.traces.summary import summarize
from kvcache_calculator.traces.warmup import warmup_requests
from trace_helpers import BS, prefix_closed_trace, req


@pytest.fixture(scope="module")
def trace():
    return prefix_closed_trace(random.Random(7), 400)


@pytest.fixture(scope="module")
def summary(trace):
    return summarize(trace, name="t", block_size=BS, trace_format="mooncake", source_file="t.jsonl",
                     sha256="0" * 64, size_bytes=1, licence="CC0")


def test_grid_index_is_log_nearest():
    grid = [100, 200, 500, 1000]
    assert [grid_index(grid, c) for c in (1, 140, 150, 320, 5000, 0)] == [0, 0, 1, 2, 3, 0]


@pytest.mark.parametrize("warmup", [0.0, 0.5])
@pytest.mark.parametrize("instances,routing", [(1, "round_robin"), (2, "random"), (4, "round_robin"),
                                               (8, "prefix"), (2, "cache_aware")])
def test_summary_gap_equals_the_replayed_split(trace, summary, warmup, instances, routing):
    grid = summary["views"][0]["grid"]["capacity_blocks"]
    for cap in grid[:3]:
        got = summary_gap(summary, warmup, cap, instances, routing)
        want = explain_gap(trace, cap, BS, instances, routing, 0, "engine",
                           warmup_requests(warmup, len(trace))).to_dict()
        assert got["capacity_blocks"] == cap
        assert got["overall"] == want["overall"]
        assert got["buckets"] == [{k: v for k, v in b.items()} for b in want["buckets"]]
        assert got["characteristic_time_s"] == pytest.approx(want["characteristic_time_s"])
        assert sum(got["overall"]["parts"].values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in got["overall"]["parts"].values())


def test_summary_gap_snaps_and_refuses_what_it_lacks(summary):
    got = summary_gap(summary, 0.0, 130)
    assert (got["capacity_blocks"], got["requested_capacity_blocks"]) == (100, 130)
    with pytest.raises(ScenarioError, match="instances"):
        summary_gap(summary, 0.0, 100, 3)
    with pytest.raises(ScenarioError, match="routing"):
        summary_gap(summary, 0.0, 100, 2, "session")
    with pytest.raises(ScenarioError, match="warmup"):
        summary_gap(summary, 0.25, 100)


def test_summary_routing_equals_fleet_replays(trace, summary):
    cap = summary["views"][0]["grid"]["capacity_blocks"][1]
    got = summary_routing(summary, 0.0, cap)
    assert got["instances"] == [1, 2, 4, 8]
    total = sum(fleet_request_hits(trace, [cap], BS).tokens)
    for routing, rates in got["token_hit_rate"].items():
        for n, rate in zip(got["instances"], rates):
            hits = fleet_request_hits(trace, [cap], BS, n, routing)
            assert rate == pytest.approx(sum(hits.hits[0]) / total)
    replayed = drain(routing_steps(trace, cap, BS, list(got["token_hit_rate"])))
    assert replayed["token_hit_rate"] == pytest.approx(got["token_hit_rate"])


def test_stepwise_split_equals_one_call(trace):
    steps = explain_gap_steps(trace, 200, BS, 4, "random", 0, "engine", 100)
    job = StepsJob(steps, explain_gap_passes(4, None) * len(trace))
    ticks = iter(range(10 ** 9))
    while not run_for(job, 5, lambda: next(ticks)):
        assert 0 <= job.progress < 1
    assert job.count <= job.total_steps + job.units       # the estimate of passes is right
    assert job.result == explain_gap(trace, 200, BS, 4, "random", 0, "engine", 100)


def test_share_within_reads_the_histogram(trace):
    reuse = ReuseTimes()
    for r in trace:
        reuse.add(r)
    hist = reuse.to_dict()
    for t in (0.5, 3.0, 40.0, 1e4):
        exact = reuse.share_within(t)
        assert share_within(hist, t) == pytest.approx(exact, abs=0.35)
    assert share_within(hist, 1e7) == 1.0
    assert share_within(hist, None) is None


def test_gap_rows_add_up_to_100_and_figures_draw(summary):
    gap = summary_gap(summary, 0.0, 200, 2, "random")
    rows = gap_rows(gap)
    assert rows[0]["label"] == "whole trace"
    for row in rows:
        assert sum(row[k] for k in ("no_reuse", "capacity", "policy", "routing", "hit")) == pytest.approx(100)
    fig = gap_waterfall_figure(gap)
    bar = fig["data"][0]
    assert bar["type"] == "bar" and len(bar["x"]) == 6
    assert bar["base"][-2] == pytest.approx(bar["y"][-1], abs=1e-3)   # the last cause ends at the hit rate
    json.dumps([fig, reuse_time_figure(gap), routing_figure(summary_routing(summary, 0.0, 200))])


def test_ideal_speedup():
    assert ideal_speedup(0.5) == 2 and ideal_speedup(0.0) == 1 and ideal_speedup(1.0) is None


def test_table_capacities_match_the_cli_rounding(summary):
    curve = summary_curve(summary, 0.0)
    rows = {r["key"]: r for r in trace_capacities(curve, None, None)}
    d = curve.to_dict()
    for pct in (50, 90, 99):
        assert rows[f"p{pct}"]["capacity_blocks"] == d[f"capacity_blocks_for_{pct}pct_of_token_ceiling"]


def lines_of(trace):
    return "".join(json.dumps({"timestamp": int(r.timestamp_s * 1000), "input_length": r.input_length,
                               "output_length": 10, "hash_ids": list(r.hash_ids)}) + "\n" for r in trace)


def run_trace_job(data: bytes, **options):
    job = TraceJob(len(data), **options)
    for k in range(0, len(data), 4096):
        job.add_bytes(data[k:k + 4096])
    job.close_input()
    while not job.step(1000):
        pass
    return job


def test_trace_job_reads_gzip_like_plain_text(trace):
    text = lines_of(trace).encode()
    plain = run_trace_job(text)
    packed = run_trace_job(gzip.compress(text))
    assert packed.curve == plain.curve and packed.progress == 1.0


def test_blank_file_says_so():
    with pytest.raises(ScenarioError) as err:
        run_trace_job(b"\n  \n\n")
    assert "blank" in str(err.value) and "bad lines" not in str(err.value)


def test_out_of_order_timestamps_are_counted():
    rows = [req([1], t=0), req([1, 2], t=5), req([3], t=2), req([1], t=9), req([4], t=1)]
    job = run_trace_job(lines_of(rows).encode(), keep_requests=True)
    assert (job.order.out_of_order, job.order.first_request) == (2, 3)
    assert job.order.largest_step_back_s == pytest.approx(8.0)
    assert len(job.requests_kept) == 5


def test_sampled_trace_job_is_approximate(trace):
    job = run_trace_job(lines_of(trace).encode(), sample_rate=0.5)
    assert job.curve.approximate and job.curve.rate == 0.5
    assert job.curve.points(20)
