"""The predicted "GPU KV cache size" and "Maximum concurrency" lines of vLLM
(kvcache_calculator/setup/vllm_log.py) against the lines real starts logged.

The check is independent of the calculator's memory prediction: each start's *logged*
"Available KV cache memory" (GiB, printed with two decimals) goes into
:func:`~kvcache_calculator.setup.vllm_log.predict_log`, and the logged token count must lie
between the predictions at that figure minus and plus 0.005 GiB (the log's rounding), the
logged concurrency (two decimals) within 0.005 of the predictions over the same interval.
That interval spans 0 to 37 blocks depending on the model's block bytes; no looser tolerance is
allowed. Starts without a logged GiB but with both lines (Qwen3.5-27B) must be matched by one
whole number of blocks.
"""

from __future__ import annotations

import re

import pytest

import engine_validation as ev
from kvcache_calculator.present.report import evaluate, results
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.architecture import dense_arch
from kvcache_calculator.setup.engine import parse_version, vllm_batch_defaults
from kvcache_calculator.setup.hfconfig import import_config
from kvcache_calculator.setup.presets import MODELS
from kvcache_calculator.setup.resolve import resolve_gpu
from kvcache_calculator.setup.vllm_log import kv_groups, predict_log, vllm_log

GIB = 2 ** 30
ROUNDING_GIB = 0.005

#: Settings a start's log states in prose (its notes), not in a field of the data set.
PREFIX_CACHING = {"vllm-0.24.0-qwen36-35b-a3b-nvfp4-rtx5090": True}   # notes: "prefix caching on"

#: Why a start with a logged token count is not checked.
SKIPPED_REASONS = {
    "pipeline parallel": "each stage holds a share of the layers; the engine takes the minimum over stages",
    "version": "V0 engine or version not stated: another log format",
    "model": "config.json not held or does not import",
}


def _concurrency(text: str | None) -> float | None:
    match = re.search(r"([\d.]+)x", text or "")
    return float(match[1]) if match else None


def _kv_dtype(start: dict, config: dict) -> str:
    """vLLM's KV dtype "auto" is the served dtype: fp8 when asked, fp32 when served so."""
    if "fp8" in str(start.get("kv_cache_dtype") or ""):
        return "fp8"
    dtype, _ = ev.weight_dtype(start, config)
    return "fp32" if dtype == "fp32" else "bf16"


def checkable_starts() -> list[tuple[dict, object, str]]:
    """(start, its groups' inputs, skip reason or "") for every vLLM start with a logged line."""
    models = ev.load_models()
    out = []
    for start in ev.load_starts():
        logged = start["logged"]
        if start["engine"] != "vllm" or not (logged.get("kv_cache_tokens") or logged.get("max_concurrency")):
            continue
        version = ev.vllm_version(start["engine_version"])
        reason = ""
        arch = config = None
        if version is None or version < (0, 9):
            reason = "version"
        elif (start.get("pipeline_parallel_size") or 1) > 1:
            reason = "pipeline parallel"
        elif start["id"] in models["starts"]:
            config, _ = ev.model_config(start, models)
            try:
                arch = import_config(config)
            except Exception:   # noqa: BLE001 - any import failure is a skip reason here
                reason = "model"
        else:
            reason = "model"
        out.append((start, (version, arch, config), reason))
    return out


def groups_for(start: dict, version, arch, config):
    """The start's groups: its block size (16 unless set), TP, max_model_len and batch limit
    (the engine's default for its GPU when not set)."""
    tokens = start.get("max_num_batched_tokens")
    if not tokens:
        preset, _ = ev.gpu_preset(start)
        gpu = resolve_gpu(ev.scenario_for(start, preset, None))
        tokens = vllm_batch_defaults(gpu.engine_memory_gib, gpu.name, version)[0]
    return kv_groups(arch, kv_dtype=_kv_dtype(start, config), tp=start["tensor_parallel_size"] or 1,
                     block_size=start.get("block_size") or 16, version=version,
                     max_model_len=start["max_model_len"], max_num_batched_tokens=tokens,
                     prefix_caching=PREFIX_CACHING.get(start["id"]))


def log_rows() -> list[dict]:
    """One row per checked start: logged and predicted lines (the README's and report's table)."""
    rows = []
    for start, (version, arch, config), reason in checkable_starts():
        if reason:
            continue
        logged = start["logged"]
        groups = groups_for(start, version, arch, config)
        model_len = start["max_model_len"]
        gib = logged.get("kv_cache_gib")
        row = {"id": start["id"], "version": start["engine_version"], "groups": groups.num_groups,
               "block_size": groups.block_size, "gib": gib, "tokens": logged.get("kv_cache_tokens"),
               "concurrency": _concurrency(logged.get("max_concurrency"))}
        if gib:
            lo, mid, hi = (predict_log((gib + e) * GIB, groups, version, model_len)
                           for e in (-ROUNDING_GIB, 0.0, ROUNDING_GIB))
            row.update(predicted=mid.kv_tokens, low=lo.kv_tokens, high=hi.kv_tokens,
                       predicted_concurrency=mid.max_concurrency, conc_low=lo.max_concurrency,
                       conc_high=hi.max_concurrency, blocks=mid.num_blocks,
                       span_blocks=hi.num_blocks - lo.num_blocks)
        else:   # find the whole number of blocks that gives both logged lines
            block_bytes = groups.page_bytes * groups.group_size
            found = [n for n in range(1, 10 ** 6) if
                     (p := predict_log(n * block_bytes, groups, version, model_len)).kv_tokens == row["tokens"]
                     and round(p.max_concurrency, 2) == row["concurrency"]]
            row.update(blocks_matching=found)
        rows.append(row)
    return rows


ROWS = log_rows()


def test_every_start_with_a_token_line_is_checked_or_has_a_reason():
    starts = checkable_starts()
    checked = [s for s, _, reason in starts if not reason]
    assert len(checked) == len(ROWS) >= 28
    hybrid = [r for r in ROWS if r["groups"] > 1]
    assert {r["id"] for r in hybrid} >= {"vllm-0.19-gpt-oss-20b-h100-tp2", "vllm-0.19-gemma2-9b-h100",
                                         "vllm-0.19-gemma3-12b-h100", "vllm-0.19.0-qwen35-27b-h20-hybrid",
                                         "vllm-0.24.0-qwen36-35b-a3b-nvfp4-rtx5090"}
    assert all(reason in SKIPPED_REASONS for _, _, reason in starts if reason)


@pytest.mark.parametrize("row", [r for r in ROWS if r["gib"]], ids=lambda r: r["id"])
def test_logged_gib_gives_the_logged_lines_within_its_rounding(row):
    if row["tokens"] is not None:
        assert row["low"] <= row["tokens"] <= row["high"], row
    if row["concurrency"] is not None:
        assert row["conc_low"] - 0.005 <= row["concurrency"] <= row["conc_high"] + 0.005, row


def test_without_a_logged_gib_one_block_count_gives_both_lines():
    row = next(r for r in ROWS if r["id"] == "vllm-0.19.0-qwen35-27b-h20-hybrid")
    # 48 gated delta-net + 16 full layers: 4 groups of 16, block 784 tokens (the state page)
    assert (row["groups"], row["block_size"]) == (4, 784)
    assert row["blocks_matching"] == [1487]


def test_hybrid_token_count_is_the_pool_divided_by_its_groups():
    row = next(r for r in ROWS if r["id"] == "vllm-0.19-gemma3-12b-h100")
    assert row["groups"] == 6                       # 40 sliding + 8 full layers: groups of 8
    assert row["predicted"] == row["blocks"] // 6 * 16 == 130_304 == row["tokens"]


def test_token_count_by_version():
    """One full-attention model, 10,000 blocks: up to 0.20 blocks x 16; from 0.21
    int(concurrency x max_model_len) = 10,000 / 63 x 1,000 when max_model_len is not whole blocks."""
    arch = dense_arch("d", 32, 8, 128, 8.0)
    page = 16 * 8 * 256 * 2
    for version, expected in (((0, 10), 160_000), ((0, 20), 160_000), ((0, 21), 158_730), ((0, 33), 158_730)):
        groups = kv_groups(arch, kv_dtype="bf16", tp=1, block_size=16, version=version, max_model_len=1000,
                           max_num_batched_tokens=8192)
        log = predict_log(10_000 * page * 32, groups, version, 1000)
        assert (log.num_blocks, log.kv_tokens) == (10_000, expected), version
        assert log.max_concurrency == pytest.approx(10_000 / 63)



def test_token_count_with_parsed_versions():
    """``parse_version`` gives 3-tuples ((0, 10, 0) > (0, 10)): every release before 0.21 logs
    the pool divided by its groups (a hybrid model: half for two groups), one group or several."""
    hybrid = MODELS["gpt-oss-20b"]
    for text in ("0.9", "0.10", "0.11", "0.20"):
        version = parse_version(text)
        groups = kv_groups(hybrid, kv_dtype="bf16", tp=1, block_size=16, version=version, max_model_len=131_072,
                           max_num_batched_tokens=8192)
        log = predict_log(10 * GIB, groups, version, 131_072)
        assert groups.num_groups == 2
        assert log.kv_tokens == log.num_blocks // 2 * groups.block_size, text
        dense = dense_arch("d", 32, 8, 128, 8.0)
        one = kv_groups(dense, kv_dtype="bf16", tp=1, block_size=16, version=version, max_model_len=1000,
                        max_num_batched_tokens=8192)
        assert predict_log(10 * GIB, one, version, 1000).kv_tokens == 10 * GIB // (16 * 8 * 256 * 2 * 32) * 16

def test_lines_text_and_no_kv():
    arch = dense_arch("d", 32, 8, 128, 8.0)
    log = vllm_log(arch, 8.0, kv_dtype="bf16", tp=1, block_size=16, version=(0, 33), max_model_len=131_072,
                   max_num_batched_tokens=8192)
    assert log.lines() == ("GPU KV cache size: 65,536 tokens",
                           "Maximum concurrency for 131,072 tokens per request: 0.50x")
    assert vllm_log(arch, 0.0, kv_dtype="bf16", tp=1, block_size=16, version=(0, 33), max_model_len=1024,
                    max_num_batched_tokens=8192) is None


def markdown_table() -> str:
    """The rows as a markdown table (for the report)."""
    lines = ["| start | vLLM | groups | logged GiB | logged tokens | predicted (range) | logged conc. | predicted |",
             "|---|---|---|---|---|---|---|---|"]
    for r in ROWS:
        if r["gib"]:
            pred = f"{r['predicted']:,} ({r['low']:,}-{r['high']:,})"
            conc = f"{r['predicted_concurrency']:.2f}"
        else:
            pred, conc = f"{len(r['blocks_matching'])} block count(s) fit", ""
        tokens = f"{r['tokens']:,}" if r["tokens"] else "-"
        lines.append(f"| {r['id']} | {r['version']} | {r['groups']} | {r['gib'] or '-'} | {tokens} | {pred} | "
                     f"{r['concurrency'] or '-'} | {conc} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())


def test_analyze_shows_the_lines_and_the_hybrid_rule():
    old = results(Scenario.from_dict({"model": "gpt-oss-20b", "gpu": "h100-sxm", "engine_version": "0.19"}))
    assert old["vllm_log_kv_groups"] == 2 and old["vllm_log_max_model_len"] == 131_072
    # 0.19: the pool divided by its 2 groups, i.e. about half the tokens the cache holds
    assert old["vllm_log_kv_tokens"] == pytest.approx(old["capacity_tokens"] / 2, abs=16)
    report = evaluate({"model": "gpt-oss-20b", "gpu": "h100-sxm"})
    notes = report["notes"]
    new = results(Scenario.from_dict({"model": "gpt-oss-20b", "gpu": "h100-sxm"}))
    line = (f"vLLM 0.33 should print: GPU KV cache size: {new['vllm_log_kv_tokens']:,} tokens; Maximum concurrency "
            f"for 131,072 tokens per request: {new['vllm_log_max_concurrency']:.2f}x.")
    # the line goes with the engine comparison (the page's "Compare with your engine's
    # measurement"), the hybrid caveat with the notes
    assert report["engine_log"] == line and line not in notes
    assert any("2 groups sharing one block pool" in n and "compare in GiB" in n for n in notes)
    dense = evaluate({"model": "llama-3.1-8b", "gpu": "h100-sxm"})
    assert dense["engine_log"].startswith("vLLM 0.33 should print")
    assert not any("block pool" in n for n in dense["notes"])
    for other in ({"engine": "sglang"}, {"engine": "manual"}, {"kv_cache_tokens": "400000"}):
        res = evaluate(other)
        assert res["results"]["vllm_log_kv_tokens"] is None, other
        assert res["engine_log"] == "", other


def test_a_context_the_pool_cannot_hold_is_said():
    res = evaluate({"model": "qwen3.5-27b", "gpu": "h100-sxm"})
    assert res["results"]["vllm_log_max_concurrency"] < 1
    assert any("vLLM would refuse to start" in n for n in res["notes"])


def v0_starts() -> list[tuple[dict, object]]:
    """V0 starts (before 0.8, by the log format when the version is not stated) that log their
    KV GiB and "# GPU blocks", with their imported model."""
    models = ev.load_models()
    out = []
    for start in ev.load_starts():
        logged = start["logged"]
        version, _ = ev.start_version(start) if start["engine"] == "vllm" else (None, "")
        if version is None or version >= (0, 8) or not logged.get("num_gpu_blocks") or not logged.get("kv_cache_gib"):
            continue
        if start["id"] not in models["starts"]:
            continue
        config, _ = ev.model_config(start, models)
        try:
            arch = import_config(config)
        except Exception:   # noqa: BLE001 - a model that does not import is not checked here
            continue
        out.append((start, (version, arch, config)))
    return out


V0_STARTS = v0_starts()


def test_v0_starts_are_checked():
    """The RTX 3090, A100 40GB and A40 starts of vLLM 0.6 (the vision one does not import)."""
    assert len(V0_STARTS) >= 4, [s["id"] for s, _ in V0_STARTS]


@pytest.mark.parametrize("start, inputs", V0_STARTS, ids=[s["id"] for s, _ in V0_STARTS])
def test_v0_logged_gib_gives_the_logged_block_counts(start, inputs):
    """V0 prints "# GPU blocks: N, # CPU blocks: C" and "Maximum concurrency for M tokens per
    request: X": the logged GiB (two decimals) must give N within its rounding, C exactly (4 GiB
    of swap) and X within 0.005 over the same interval."""
    version, arch, config = inputs
    logged = start["logged"]
    model_len = start["max_model_len"] or arch.shape.context_tokens
    lo, hi = (vllm_log(arch, logged["kv_cache_gib"] + e, kv_dtype=_kv_dtype(start, config),
                       tp=start["tensor_parallel_size"] or 1, block_size=16, version=version,
                       max_model_len=model_len, max_num_batched_tokens=0) for e in (-ROUNDING_GIB, ROUNDING_GIB))
    assert lo.num_blocks <= logged["num_gpu_blocks"] <= hi.num_blocks
    cpu = re.search(r"# CPU blocks: (\d+)", start["quote"])
    assert cpu and lo.cpu_blocks == int(cpu[1])
    assert lo.lines()[0].startswith(f"# GPU blocks: {lo.num_blocks}, # CPU blocks: ")
    conc = _concurrency(logged.get("max_concurrency"))
    if conc is not None:
        assert lo.max_concurrency - 0.005 <= conc <= hi.max_concurrency + 0.005
