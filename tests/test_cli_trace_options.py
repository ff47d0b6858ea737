"""``kvcache-calc replay`` options of real traffic: .gz input, --warmup, --sample,
--instances/--routing/--seed, --explain, and the ideal prefill speedup."""

from __future__ import annotations

import gzip
import io
import json
import random
import sys

import pytest

from kvcache_calculator.cli.commands import main
from kvcache_calculator.traces.gap import explain_gap
from kvcache_calculator.traces.readers import read_trace
from kvcache_calculator.traces.replay import LRUCurveReplay, replay_lru_curve
from kvcache_calculator.traces.routing import replay_fleet
from kvcache_calculator.traces.sampling import replay_sampled
from kvcache_calculator.traces.warmup import WarmupReplay
from trace_helpers import BS, fitting_capacity, prefix_closed_trace


def write(tmp_path, trace, name="t.jsonl", bailian=False):
    lines = []
    for i, r in enumerate(trace):
        obj = {"timestamp": int(r.timestamp_s * 1000), "input_length": r.input_length,
               "output_length": r.output_length, "hash_ids": list(r.hash_ids)}
        if bailian:
            obj = {**obj, "timestamp": r.timestamp_s, "chat_id": i + 1,
                   "parent_chat_id": i if i % 4 else -1, "turn": 1 + i % 4}
        lines.append(json.dumps(obj))
    path = tmp_path / name
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def run(capsys, *argv):
    code = main(["replay", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def trace():
    return prefix_closed_trace(random.Random(21), 400)


def test_gzip_input_gives_the_same_numbers(tmp_path, capsys, trace):
    plain = write(tmp_path, trace)
    packed = write(tmp_path, trace, "t.jsonl.gz")
    _, a, _ = run(capsys, plain, "--capacity-blocks", "5,50", "--json")
    _, b, _ = run(capsys, packed, "--capacity-blocks", "5,50", "--json")
    a, b = json.loads(a), json.loads(b)
    assert a.pop("trace") != b.pop("trace")
    assert a == b


def test_gzip_on_stdin(tmp_path, capsys, trace, monkeypatch):
    packed = write(tmp_path, trace, "t.jsonl.gz")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(packed.read_bytes())))
    code, out, _ = run(capsys, "-", "--capacity-blocks", "5", "--json")
    assert code == 0 and json.loads(out)["requests"] == len(trace)


def test_speedup_beside_every_hit_rate(tmp_path, capsys, trace):
    path = write(tmp_path, trace)
    _, out, _ = run(capsys, path, "--capacity-blocks", "0,5,50", "--json")
    data = json.loads(out)
    assert data["ideal_prefill_speedup"] == [1 / (1 - h) for h in data["token_hit_rate"]]
    assert data["infinite_ideal_prefill_speedup"] == 1 / (1 - data["infinite_token_hit_rate"])
    _, text, _ = run(capsys, path, "--capacity-blocks", "0,5,50")
    assert "speedup" in text and "1.00x" in text


def test_warmup(tmp_path, capsys, trace):
    path = write(tmp_path, trace)
    _, out, _ = run(capsys, path, "--capacity-blocks", "5,50", "--warmup", "0.5", "--json")
    data = json.loads(out)
    want = WarmupReplay(LRUCurveReplay(BS), 200)
    want.feed(trace)
    want = want.result().at([5, 50])
    assert data["warmup_requests"] == 200 and data["requests"] == 200
    assert data["token_hit_rate"] == want.token_hit_rate
    for policy in ("fifo", "belady"):
        code, out, _ = run(capsys, path, "--capacity-blocks", "5", "--warmup", "0.5",
                           "--policy", policy, "--json")
        assert code == 0 and json.loads(out)["requests"] == 200
    code, _, err = run(capsys, path, "--warmup", "1")
    assert code == 2 and "warmup" in err


def test_sample(tmp_path, capsys, trace):
    path = write(tmp_path, trace)
    _, out, _ = run(capsys, path, "--capacity-blocks", "20,200", "--sample", "0.5", "--json")
    data = json.loads(out)
    want = replay_sampled(trace, 0.5, BS)
    assert data["approximate"] is True and data["sample_rate"] == 0.5
    assert data["token_hit_rate"] == [want.token_hit_rate(20), want.token_hit_rate(200)]
    # 20 blocks: the 0.5 sample holds 10, under 100: rate 1 (the ladder's top) estimates it
    assert data["sample_rates"] == [0.5, 1.0] and data["sample_rate_by_capacity"] == [1.0, 0.5]
    assert data["sample_min_reliable_capacity_blocks"] == 100
    _, out, _ = run(capsys, path, "--capacity-blocks", "20,200", "--sample", "1", "--json")
    exact = replay_lru_curve(trace, [20, 200], BS)
    assert json.loads(out)["token_hit_rate"] == exact.token_hit_rate
    code, _, err = run(capsys, path, "--sample", "0.5", "--policy", "fifo")
    assert code == 2 and "LRU only" in err


@pytest.mark.parametrize("routing", ["round_robin", "random", "prefix", "cache_aware"])
def test_instances_and_routing(tmp_path, capsys, trace, routing):
    path = write(tmp_path, trace)
    _, out, _ = run(capsys, path, "--capacity-blocks", "10,100", "--instances", "3",
                    "--routing", routing, "--seed", "4", "--json")
    data = json.loads(out)
    want = replay_fleet(trace, routing, 3, [10, 100], BS, seed=4)
    assert data["token_hit_rate"] == want.token_hit_rate
    assert data["block_hit_rate"] == want.block_hit_rate
    assert data["infinite_block_hit_rate"] == want.infinite_block_hit_rate
    assert data["instances"] == 3 and data["routing"] == routing
    assert len(data["per_instance"]) == 3
    assert sum(p["requests"][0] for p in data["per_instance"]) == len(trace)
    _, text, _ = run(capsys, path, "--capacity-blocks", "10", "--instances", "3",
                     "--routing", routing)
    assert "instance 2:" in text


def test_session_routing_needs_session_ids(tmp_path, capsys, trace):
    code, _, err = run(capsys, write(tmp_path, trace), "--instances", "2", "--routing", "session")
    assert code == 2 and "chat_id" in err
    path = write(tmp_path, trace, "b.jsonl", bailian=True)
    code, out, _ = run(capsys, path, "--block-size", BS, "--capacity-blocks", "10",
                       "--instances", "2", "--routing", "session", "--json")
    assert code == 0 and json.loads(out)["routing"] == "session"


def test_fleet_option_errors(tmp_path, capsys, trace):
    path = write(tmp_path, trace)
    code, _, err = run(capsys, path, "--instances", "2")
    assert code == 2 and "--routing" in err
    code, _, err = run(capsys, path, "--instances", "2", "--routing", "random", "--policy", "lfu")
    assert code == 2 and "LRU only" in err
    code, _, err = run(capsys, path, "--instances", "0", "--routing", "random")
    assert code == 2 and "instances" in err


def test_explain(tmp_path, capsys, trace):
    path = write(tmp_path, trace)
    m = fitting_capacity(trace)     # explain's fixed-capacity replays equal the curve there
    _, out, _ = run(capsys, path, "--capacity-blocks", f"{m},{4 * m}", "--instances", "2",
                    "--routing", "random", "--explain", "--characteristic-time-s", "30", "--json")
    data = json.loads(out)
    requests = list(read_trace(path.read_text().splitlines()))
    for k, (ex, cap) in enumerate(zip(data["explain"], (m, 4 * m))):
        want = explain_gap(requests, cap, BS, 2, "random", 0, characteristic_time_s=30)
        assert ex == json.loads(json.dumps(want.to_dict()))
        assert sum(ex["overall"]["parts"].values()) == pytest.approx(1, abs=1e-12)
        assert ex["overall"]["fleet"] == data["token_hit_rate"][k]
    _, text, _ = run(capsys, path, "--capacity-blocks", "10", "--explain")
    assert "no_reuse" in text and "reuses within the characteristic time" in text
    code, _, err = run(capsys, path, "--explain", "--sample", "0.5")
    assert code == 2 and "exactly" in err
