"""The kvcache-calc command line: analyze, presets, errors."""

import json
import subprocess
import sys

import pytest

from kvcache_calculator.cli.commands import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_analyze_json_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "analyze", "model=llama-3.1-8b", "gpu=h100-sxm", "arrival_rate=2", "--json")
    assert code == 0
    data = json.loads(out)
    res = data["results"]
    for key in ("token_hit_rate", "request_hit_rate", "max_token_hit_rate", "characteristic_time_s",
                "capacity_tokens", "kv_bytes_per_token", "kv_bytes_per_token_per_gpu", "request_rate"):
        assert key in res
    assert res["kv_bytes_per_token"] == 131072
    assert res["request_rate"] == pytest.approx(2 * 5)
    assert data["scenario"]["arrival_rate"] == 2.0


def test_analyze_table_is_readable(capsys):
    code, out, _ = run(capsys, "analyze", "model=qwen3-32b", "gpu=h200")
    assert code == 0
    assert "token_hit_rate" in out and "%" in out and "GiB" in out


def test_model_that_does_not_fit_is_explained(capsys):
    code, out, _ = run(capsys, "analyze", "model=llama-3.1-405b")
    assert code == 0
    assert "does not fit" in out and "needs" in out


@pytest.mark.parametrize("args, needle", [
    (["analyze", "arrival_rate=-1"], "arrival_rate: got '-1'"),
    (["analyze", "arival_rate=1"], "not a scenario key"),
    (["analyze", "model=nope"], "model: got 'nope'"),
    (["analyze", "turns"], "KEY=VALUE"),
    (["analyze", "model=custom", "num_layers=4"], "is required"),
])
def test_bad_input_exits_non_zero_with_the_message(capsys, args, needle):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert needle in err and "Traceback" not in err


def test_presets_lists_models_and_gpus(capsys):
    code, out, _ = run(capsys, "presets", "--json")
    assert code == 0
    data = json.loads(out)
    assert len(data["models"]) >= 25 and len(data["gpus"]) >= 10
    code, out, _ = run(capsys, "presets")
    assert "deepseek-v3" in out and "h200" in out


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "kvcache_calculator", "analyze", "--json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert 0 < json.loads(proc.stdout)["results"]["token_hit_rate"] < 1


def test_common_gpu_names_are_accepted_and_typos_get_the_nearest_id(capsys):
    """Issue 12, defect 15: gpu=h100 (the usual name) was refused."""
    code, out, _ = run(capsys, "analyze", "gpu=h100", "--json")
    assert code == 0 and json.loads(out)["scenario"]["gpu"] == "h100-sxm"
    for alias, gpu in (("H100 SXM5", "h100-sxm"), ("a100", "a100-80gb"), ("4090", "rtx-4090"), ("MI300", "mi300x")):
        code, out, _ = run(capsys, "analyze", f"gpu={alias}", "--json")
        assert code == 0 and json.loads(out)["scenario"]["gpu"] == gpu, alias
    code, _, err = run(capsys, "analyze", "gpu=h10")
    assert code == 2 and "did you mean h100-sxm" in err
    code, _, err = run(capsys, "analyze", "model=qwen3-8", "num_gpus=1")
    assert code == 2 and "did you mean qwen3-8b" in err


def test_analyze_says_which_model_and_gpu_it_used(capsys):
    code, out, _ = run(capsys, "analyze", "gpu=h100", "num_gpus=2")
    assert code == 0
    assert out.splitlines()[0] == "Model: Llama-3.1-8B (llama-3.1-8b); GPU: H100 SXM 80GB (h100-sxm), 2 per instance"
