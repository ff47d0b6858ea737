"""Record (or check) the numbers the CLI and the page produce for a fixed set of inputs.

    python tests/golden/record.py            # write tests/golden/outputs.json
    python tests/golden/record.py --check    # compare against it (what test_golden.py does)

The recorded file holds every number of ``analyze --json``, ``simulate --json`` (small seeded
runs), ``replay --json`` (seeded generated traces, every policy and semantics) and the page's
``evaluate()`` for a few dozen inputs. A restructuring of the code must leave them equal.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from kvcache_calculator.cli import main  # noqa: E402

OUT = Path(__file__).with_name("outputs.json.gz")

ANALYZE = [
    [],
    ["model=llama-3.1-8b", "gpu=h100-sxm", "arrival_rate=2"],
    ["model=qwen3-32b", "gpu=h200", "num_gpus=2"],
    ["model=deepseek-v3", "gpu=h200", "num_gpus=8", "weight_dtype=fp8"],
    ["model=gpt-oss-120b", "gpu=h100-sxm", "weight_dtype=fp4"],
    ["model=qwen3.5-27b", "gpu=h100-sxm", "turns=8", "think_time_s=30"],
    ["model=llama-3.1-70b", "gpu=h100-sxm", "num_gpus=4", "kv_dtype=fp8", "instances=3", "routing=random"],
    ["model=llama-3.1-8b", "instances=4", "routing=round_robin", "arrival_rate=5"],
    ["model=llama-3.1-8b", "offload_gib=256", "arrival_rate=20", "turns=10"],
    ["model=llama-3.1-8b", "turns_dist=fixed", "think_dist=fixed", "think_time_s=60"],
    ["model=mixtral-8x7b", "gpu=a100-80gb", "num_gpus=2", "policy=fifo"],
    ["model=llama-3.1-8b", "kv_cache_tokens=200000", "system_prompt_tokens=2000"],
    ["model=custom", "num_layers=40", "num_kv_heads=8", "head_dim=128", "params_b=20", "gpu=l40s"],
    ["model=gemma-2-9b", "gpu=l4"],
    ["model=llama-3.1-70b"],
    ["model=qwen3-30b-a3b", "gpu=rtx-4090", "weight_dtype=int4", "kv_dtype=fp8", "block_size=32"],
]

SIMULATE = [
    ["model=llama-3.1-8b", "arrival_rate=1", "kv_cache_tokens=100000"],
    ["model=llama-3.1-8b", "arrival_rate=2", "kv_cache_tokens=60000", "policy=fifo", "instances=2",
     "routing=random"],
    ["model=llama-3.1-8b", "arrival_rate=2", "kv_cache_tokens=60000", "policy=lfu", "offload_gib=1"],
    ["model=llama-3.1-8b", "arrival_rate=1", "kv_cache_tokens=80000", "instances=3", "routing=least_loaded",
     "think_dist=fixed"],
]


def make_trace(seed: int, requests: int, fmt: str) -> str:
    """A seeded Mooncake- or Bailian-format trace with shared prefixes and conversations."""
    rng = random.Random(seed)
    lines, convs, next_hash, t = [], [], 1000, 0
    prompts = [list(range(i * 10, i * 10 + rng.randint(1, 4))) for i in range(3)]
    for i in range(requests):
        t += rng.randint(0, 400)
        if convs and rng.random() < 0.6:
            c = rng.choice(convs)
        else:
            c = {"id": len(convs) + 1, "hashes": list(rng.choice(prompts)), "turn": 0, "parent": -1}
            convs.append(c)
        new = rng.randint(1, 5)
        c["hashes"] = c["hashes"] + list(range(next_hash, next_hash + new))
        next_hash += new
        c["turn"] += 1
        bs = 512 if fmt == "mooncake" else 16
        length = (len(c["hashes"]) - 1) * bs + rng.randint(1, bs)
        obj = {"timestamp": t, "input_length": length, "output_length": rng.randint(1, 300),
               "hash_ids": list(c["hashes"])}
        if fmt == "bailian":
            chat = 10_000 + i
            obj.update({"chat_id": chat, "parent_chat_id": c["parent"], "turn": c["turn"], "type": "text"})
            obj["timestamp"] = t / 1000.0
            c["parent"] = chat
        lines.append(json.dumps(obj))
    return "\n".join(lines) + "\n"


def replay_cases(tmp: Path) -> list[list[str]]:
    moon = tmp / "moon.jsonl"
    moon.write_text(make_trace(1, 1500, "mooncake"))
    bail = tmp / "bail.jsonl"
    bail.write_text(make_trace(2, 1200, "bailian"))
    gz = tmp / "moon.jsonl.gz"
    gz.write_bytes(gzip.compress(make_trace(3, 800, "mooncake").encode()))
    cases = []
    for trace in (moon, bail):
        for policy in ("lru", "fifo", "lfu", "belady"):
            for sem in ("engine", "independent"):
                cases.append([str(trace), "--policy", policy, "--semantics", sem,
                              "--capacity-blocks", "20,50,200,800"])
    cases.append([str(moon), "--capacity-tokens", "10000,100000"])
    cases.append([str(moon), "--fit"])
    cases.append([str(bail), "--fit"])
    cases.append([str(moon), "--capacity-gib", "0.5,2", "--model", "llama-3.1-8b"])
    cases.append([str(moon), "--model", "llama-3.1-8b", "--gpu", "l4", "--weight-dtype", "fp8"])
    return cases


def run_cli(argv: list[str]) -> dict:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    text = out.getvalue()
    try:
        data = json.loads(text)
    except ValueError:
        data = {"stdout": text}
    return {"exit": code, "out": data}


def _scrub(obj, tmp: str):
    """Drop what differs between runs (temporary paths, timings)."""
    if isinstance(obj, dict):
        return {k: _scrub(v, tmp) for k, v in obj.items() if k not in ("elapsed_s", "seconds", "trace", "path")}
    if isinstance(obj, list):
        return [_scrub(v, tmp) for v in obj]
    if isinstance(obj, str):
        return obj.replace(tmp, "<tmp>")
    return obj


def record() -> dict:
    from kvcache_calculator.present.report import evaluate

    out = {"analyze": {}, "simulate": {}, "replay": {}, "evaluate": {}}
    for argv in ANALYZE:
        out["analyze"][" ".join(argv)] = run_cli(["analyze", *argv, "--json"])
    for argv in SIMULATE:
        out["simulate"][" ".join(argv)] = run_cli(["simulate", *argv, "--conversations", "600", "--seed", "3",
                                                   "--json"])
    with tempfile.TemporaryDirectory() as d:
        for argv in replay_cases(Path(d)):
            key = " ".join(argv).replace(d, "<tmp>")
            out["replay"][key] = _scrub(run_cli(["replay", *argv, "--json"]), d)
    for argv in ANALYZE[:8] + [["instances=3", "routing=random", "turns=7"], ["kv_cache_tokens=900000"]]:
        params = dict(a.split("=", 1) for a in argv)
        out["evaluate"][" ".join(argv)] = evaluate(params)
    return json.loads(json.dumps(out))


def main_(argv: list[str]) -> int:
    data = record()
    if "--check" in argv:
        want = json.loads(gzip.decompress(OUT.read_bytes()))
        bad = [f"{k}: {case}" for k in want for case in want[k] if want[k][case] != data[k].get(case)]
        print("\n".join(bad) or "all equal")
        return 1 if bad else 0
    OUT.write_bytes(gzip.compress(json.dumps(data, sort_keys=True).encode(), mtime=0))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
