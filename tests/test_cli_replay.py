"""The ``replay`` subcommand, driven through its own argparse parser."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from kvcache_calculator.cli import replay as cli_replay
from kvcache_calculator.traces.replay import replay_lru_curve
from kvcache_calculator.traces.readers import read_trace

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"


def run_cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="kvcache-calc")
    cli_replay.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["replay", *argv])
    code = args.func(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def write_trace(tmp_path, records, name="t.jsonl", extra_lines=()):
    path = tmp_path / name
    lines = [json.dumps(r) for r in records] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


MOONCAKE = [
    {"timestamp": 0, "input_length": 1100, "output_length": 10, "hash_ids": [0, 1, 2]},
    {"timestamp": 1000, "input_length": 600, "output_length": 10, "hash_ids": [0, 5]},
    {"timestamp": 2000, "input_length": 1600, "output_length": 10, "hash_ids": [0, 1, 2, 3]},
]


def test_json_output_has_the_contract_keys(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE)
    code, out, _ = run_cli([str(path), "--capacity-blocks", "1,2,10", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["format"] == "mooncake" and data["block_size"] == 512
    assert data["capacity_blocks"] == [1, 2, 10]
    assert len(data["block_hit_rate"]) == len(data["token_hit_rate"]) == 3
    # Engine semantics (vLLM's block pool), capacity 10: request 1 caches its 2 full blocks (its
    # partial third has no hash), request 2 hits block 0, request 3 hits 0 and 1 (not 2).
    assert data["block_hit_rate"][2] == pytest.approx(3 / 9)
    assert data["infinite_block_hit_rate"] == pytest.approx(3 / 9)
    assert data["token_hit_rate"][2] == pytest.approx(3 * 512 / (1100 + 600 + 1600))
    # capacity 1 is vLLM's null block alone, 2 leaves one block, taken by the partial one
    assert data["block_hit_rate"][:2] == [0.0, 0.0]


def test_matches_the_library(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE)
    code, out, _ = run_cli([str(path), "--capacity-blocks", "2,3", "--semantics",
                            "independent", "--json"], capsys)
    expected = replay_lru_curve(list(read_trace(path.read_text().splitlines())), [2, 3], 512,
                                "independent")
    assert json.loads(out)["block_hit_rate"] == expected.block_hit_rate


@pytest.mark.parametrize("policy", ["lru", "fifo", "lfu", "belady"])
def test_every_policy_runs_and_prints_a_table(tmp_path, capsys, policy):
    path = write_trace(tmp_path, MOONCAKE)
    code, out, err = run_cli([str(path), "--policy", policy, "--capacity-blocks", "1,10"], capsys)
    assert code == 0, err
    # Belady's prefix-aware MIN does not apply vLLM's partial-block rule (it is an upper reference)
    assert "block_hit_rate" in out and "infinite" in out and ("44.44 %" if policy == "belady" else "33.33 %") in out


def test_capacity_in_tokens_and_default_capacities(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE)
    _, out, _ = run_cli([str(path), "--capacity-tokens", "1024,5000", "--json"], capsys)
    assert json.loads(out)["capacity_blocks"] == [2, 9]
    _, out, _ = run_cli([str(path), "--json"], capsys)
    data = json.loads(out)
    assert data["capacity_blocks"] and data["block_hit_rate"][-1] == data["infinite_block_hit_rate"]


def test_capacity_in_gib_needs_a_model(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE)
    code, _, err = run_cli([str(path), "--capacity-gib", "1"], capsys)
    assert code == 2 and "capacity_gib" in err and "--model" in err


def test_capacity_in_gib_for_a_model(tmp_path, capsys):
    arch = pytest.importorskip("kvcache_calculator.setup.architecture")
    presets = pytest.importorskip("kvcache_calculator.setup.presets")
    path = write_trace(tmp_path, MOONCAKE)
    code, out, err = run_cli([str(path), "--capacity-gib", "1", "--model", "llama-3.1-8b",
                              "--kv-dtype", "fp8", "--json"], capsys)
    assert code == 0, err
    bpt = arch.kv_bytes_per_token(presets.get_model("llama-3.1-8b"), "fp8")
    assert json.loads(out)["capacity_blocks"] == [int(2**30 // (bpt * 512))]


def test_bailian_detected_with_16_token_blocks(tmp_path, capsys):
    recs = [
        {"chat_id": 0, "parent_chat_id": -1, "timestamp": 0.5, "input_length": 40,
         "output_length": 8, "type": "text", "turn": 1, "hash_ids": [1, 2, 3]},
        {"chat_id": 1, "parent_chat_id": 0, "timestamp": 9.5, "input_length": 70,
         "output_length": 8, "type": "text", "turn": 2, "hash_ids": [1, 2, 3, 4, 5]},
    ]
    path = write_trace(tmp_path, recs)
    code, out, _ = run_cli([str(path), "--capacity-blocks", "100", "--fit", "--json"], capsys)
    data = json.loads(out)
    assert code == 0
    assert data["format"] == "bailian" and data["block_size"] == 16
    assert data["block_hit_rate"] == [pytest.approx(2 / 8)]     # block 3 was a partial block
    fit = data["fit"]
    assert fit["scenario"]["turns"] == pytest.approx(2.0)
    assert fit["scenario"]["think_time_s"] == pytest.approx(9.0)
    cmp = fit["analytic_vs_lru_replay"][0]
    assert set(cmp) >= {"analytic_token_hit_rate", "replay_token_hit_rate", "gap"}
    # the model sees the trace's 9 s window from an empty cache, counted from the start ...
    assert cmp["window_s"] == pytest.approx(9.0) and cmp["observed_from_s"] == 0.0
    assert "empty cache" in fit["models"]
    # ... or from the warm-up's share of it
    code, out, _ = run_cli([str(path), "--capacity-blocks", "100", "--fit", "--warmup", "0.5", "--json"], capsys)
    assert json.loads(out)["fit"]["analytic_vs_lru_replay"][0]["observed_from_s"] == pytest.approx(4.5)
    code, out, _ = run_cli([str(path), "--capacity-blocks", "100", "--fit"], capsys)
    assert "window from an empty cache" in out and "(window 9 s, counted from 0 s)" in out


def test_bad_line_is_an_error_naming_the_line(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE, extra_lines=['{"timestamp": 5, "hash_ids": [1]}'])
    code, _, err = run_cli([str(path), "--capacity-blocks", "4"], capsys)
    assert code == 2
    assert "line 4: input_length" in err


def test_skip_bad_lines_reports_the_count(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE, extra_lines=["oops", "{}"])
    code, out, _ = run_cli([str(path), "--capacity-blocks", "4", "--skip-bad-lines", "--json"],
                           capsys)
    data = json.loads(out)
    assert code == 0 and data["skipped_lines"] == 2 and data["requests"] == 3
    code, out, _ = run_cli([str(path), "--capacity-blocks", "4", "--skip-bad-lines"], capsys)
    assert "skipped 2 malformed lines" in out


def test_missing_file_and_bad_list(tmp_path, capsys):
    code, _, err = run_cli([str(tmp_path / "nope.jsonl")], capsys)
    assert code == 2 and "cannot be read" in err
    path = write_trace(tmp_path, MOONCAKE)
    code, _, err = run_cli([str(path), "--capacity-blocks", "10,abc"], capsys)
    assert code == 2 and "capacity_blocks" in err
    code, _, err = run_cli([str(path), "--capacity-blocks", "-3"], capsys)
    assert code == 2


def test_no_progress_output_when_not_a_terminal(tmp_path, capsys):
    path = write_trace(tmp_path, MOONCAKE)
    _, _, err = run_cli([str(path), "--capacity-blocks", "4"], capsys)
    assert err == ""


def test_shared_trace_reference_capacities(capsys):
    path = TRACES / "mooncake_conversation_trace.jsonl"
    if not path.exists():
        pytest.skip("mooncake_conversation_trace.jsonl not found: ../shared/traces/ is absent")
    code, out, _ = run_cli([str(path), "--capacity-blocks", "1000,10000,100000", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["requests"] == 12031 and data["total_blocks"] == 288500
    assert data["block_hit_rate"] == sorted(data["block_hit_rate"])
    # vLLM hits full blocks only, at most (input_length - 1) // 512 of a prompt: 105,592 of the
    # 105,710 reuses that every block would give
    assert data["infinite_block_hit_rate"] == pytest.approx(105592 / 288500)


def test_progress_shown_on_a_terminal_after_one_second(monkeypatch, capsys):
    clock = iter([0.0, 0.5, 1.5, 1.6, 2.0])
    monkeypatch.setattr(cli_replay.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cli_replay.sys.stderr, "isatty", lambda: True)
    progress = cli_replay._Progress(1000, "replay")   # starts at t = 0
    progress.update(100, 10)    # t = 0.5: too early
    progress.update(500, 50)    # t = 1.5: shown
    progress.update(600, 60)    # t = 1.6: throttled
    progress.update(900, 90)    # t = 2.0: shown
    progress.done()
    err = capsys.readouterr().err
    assert "50.0 % (50 requests)" in err and "90.0 % (90 requests)" in err
    assert "10 requests" not in err and "60 requests" not in err


def test_wired_into_the_main_command(tmp_path, capsys):
    cli = pytest.importorskip("kvcache_calculator.cli.commands")
    path = write_trace(tmp_path, MOONCAKE)
    assert cli.main(["replay", str(path), "--capacity-blocks", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["capacity_blocks"] == [10]


def test_binary_file_is_refused_and_a_byte_order_mark_is_accepted(tmp_path, capsys):
    from kvcache_calculator.cli.commands import main

    binary = tmp_path / "trace.jsonl"
    binary.write_bytes(b'{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n'
                       b'\x00\xff\xfe garbage\n')
    assert main(["replay", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "binary file" in err and "line 2" in err
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b'\xef\xbb\xbf{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [1]}\n')
    assert main(["replay", str(bom), "--capacity-blocks", "1", "--json"]) == 0


@pytest.mark.parametrize("extra, scenario", [
    ([], {}),                                                            # published FP8, vLLM's 0.9
    (["--engine", "sglang"], {"engine": "sglang"}),                      # SGLang's own fraction
    (["--weight-dtype", "fp8", "--gpu-mem-util", "0.8"], {"weight_dtype": "fp8", "gpu_mem_util": 0.8}),
])
def test_gpu_capacity_follows_the_analyze_defaults(tmp_path, capsys, extra, scenario):
    # DeepSeek-V3 on 8 x H200 fits only with its published FP8 weights: replay --gpu must size
    # the cache as analyze does (the model's published checkpoint, the engine's utilisation),
    # not at bf16 and 0.9.
    resolve = pytest.importorskip("kvcache_calculator.setup.resolve").resolve
    Scenario = pytest.importorskip("kvcache_calculator.scenario").Scenario
    path = write_trace(tmp_path, MOONCAKE)
    code, out, err = run_cli([str(path), "--model", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8",
                              *extra, "--json"], capsys)
    assert code == 0, err
    expected = resolve(Scenario.from_dict({"model": "deepseek-v3", "gpu": "h200", "num_gpus": 8,
                                           "block_size": 512, **scenario})).capacity
    assert expected.fits
    assert json.loads(out)["gpu_capacity"] == expected.message
    assert json.loads(out)["capacity_blocks"][-1] == expected.capacity_tokens // 512


def test_replay_takes_the_scenario_form_as_analyze_does(tmp_path, capsys):
    """Issue 12, defect 15: replay took only --model/--gpu flags while analyze takes model=."""
    path = write_trace(tmp_path, MOONCAKE)
    flags = run_cli([str(path), "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "2", "--json"], capsys)
    words = run_cli([str(path), "model=llama-3.1-8b", "gpu=h100", "num_gpus=2", "--json"], capsys)
    assert flags[0] == words[0] == 0
    assert json.loads(words[1])["capacity_blocks"] == json.loads(flags[1])["capacity_blocks"]
    code, _, err = run_cli([str(path), "arrival_rate=2"], capsys)
    assert code == 2 and "arrival_rate" in err and "not used by replay" in err
    code, _, err = run_cli([str(path), "model=qwen3-8b", "--model", "llama-3.1-8b"], capsys)
    assert code == 2 and "contradicts --model" in err
    code, _, err = run_cli([str(path), "num_gpus=0", "model=llama-3.1-8b"], capsys)
    assert code == 2 and "num_gpus" in err
