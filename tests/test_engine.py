"""The engines' start-up memory accounting (setup/engine.py, docs/engines.md §2-§4), and the
calculator against public start-up logs (docs/engines.md §7, tests/engine_validation.py)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest

import engine_validation as ev
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.capacity import weights_gib_per_gpu as arch_weights_gib
from kvcache_calculator.setup.engine import (
    COMM_GIB, CUDA_CONTEXT_GIB, CUDA_GRAPH_BASE_GIB, CUDA_GRAPH_MOE_EXTRA_GIB, CUDA_GRAPH_PER_LAYER_GIB, GIB, NON_TORCH_GIB, WEIGHT_BYTES,
    VLLM_OLDEST, EngineSettings, ModelShape, activation_peak_gib, activation_peak_v0_gib, breakdown,
    cuda_graph_gib, parse_version, gpu_link, sampler_bytes_per_logit, sglang_mem_fraction_static, vllm_batch_defaults, weights_gib_per_gpu,
)
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.hfconfig import import_config

LLAMA_8B = ModelShape(hidden_size=4096, vocab_size=128256, num_layers=32, intermediate_size=14336,
                      embedding_params_b=128256 * 4096 * 2 / 1e9)
H100 = dict(total_gib=79.19, smi_total_mib=81559, gpu_name="H100 SXM 80GB")


# --- vLLM's batch defaults (EngineArgs.get_batch_defaults) -----------------------------------------

@pytest.mark.parametrize("total_gib, name, version, expected", [
    (79.19, "H100 SXM 80GB", (0, 19), (8192, 1024)),      # >= 70 GiB, not an A100
    (95.0, "H20 96GB", (0, 33), (8192, 1024)),
    (139.8, "H200 141GB", (0, 33), (8192, 1024)),         # below the 160 GiB tier
    (79.15, "A100 SXM 80GB", (0, 19), (2048, 256)),       # A100s are excluded by name
    (79.15, "a100-80gb", (0, 33), (2048, 256)),
    (44.40, "L40S 48GB", (0, 19), (2048, 256)),           # < 70 GiB
    (23.64, "GeForce RTX 4090 24GB", (0, 10), (2048, 256)),
    (178.36, "B200 180GB", (0, 27), (8192, 1024)),        # 160 GiB tier only from 0.28
    (178.36, "B200 180GB", (0, 28), (16384, 1024)),
    (191.98, "Instinct MI300X 192GB", (0, 33), (16384, 1024)),
])
def test_vllm_batch_defaults_by_gpu_and_version(total_gib, name, version, expected):
    assert vllm_batch_defaults(total_gib, name, version) == expected


def test_breakdown_profiles_at_the_batch_defaults_unless_set():
    default = breakdown(EngineSettings(version=(0, 19)), weights_gib=15.0, shape=LLAMA_8B, tp=1, **H100)
    assert (default.max_num_batched_tokens, default.max_num_seqs) == (8192, 1024)
    small = breakdown(EngineSettings(version=(0, 19), max_num_seqs=64, max_num_batched_tokens=2048),
                      weights_gib=15.0, shape=LLAMA_8B, tp=1, **H100)
    assert (small.max_num_batched_tokens, small.max_num_seqs) == (2048, 64)
    assert small.activation_gib == pytest.approx(activation_peak_gib(LLAMA_8B, 2048, 64, 1))
    assert small.activation_gib < default.activation_gib



@pytest.mark.parametrize("version, requests, expected", [
    ((0, 10), 1024, 14.0),    # FlashInfer's sampler, on whenever installed (VLLM_USE_FLASHINFER_SAMPLER unset)
    ((0, 11), 1024, 14.0),
    ((0, 12), 1024, 38.0),    # FlashInfer opt-in: the sort of apply_top_k_top_p
    ((0, 14), 1024, 38.0),
    ((0, 16), 1024, 38.0),
    ((0, 17), 1024, 14.0),    # Triton top-k/top-p kernel for 8 rows or more
    ((0, 17), 4, 38.0),       # ... the sort below 8 rows
    ((0, 19), 1024, 14.0),
    ((0, 21), 1024, 14.0),    # FlashInfer on by default again; the native warm-up runs after it
])
def test_sampler_bytes_per_logit_follow_the_top_k_top_p_path_of_each_release(version, requests, expected):
    assert sampler_bytes_per_logit(version, requests) == expected


def test_sort_path_sampler_reproduces_the_january_2026_image_activation_peak():
    # vllm-latest-2026-01-llama31-8b-h100 (0.13-0.15) logs 4.76 GiB; the 0.19 start of the same
    # model and GPU logs 1.89 GiB (tests/data/engine_starts.json). Both profile 8,192 tokens over
    # 1,024 sequences.
    sort = breakdown(EngineSettings(version=(0, 14)), weights_gib=15.0, shape=LLAMA_8B, tp=1, **H100)
    triton = breakdown(EngineSettings(version=(0, 19)), weights_gib=15.0, shape=LLAMA_8B, tp=1, **H100)
    assert sort.activation_gib == pytest.approx(4.76, abs=0.1)
    assert triton.activation_gib == pytest.approx(1.89, abs=0.1)
    assert sort.activation_gib - triton.activation_gib == pytest.approx(1024 * 128256 * 24 / GIB)

# --- SGLang's mem_fraction_static -----------------------------------------------------------------

def test_sglang_mem_fraction_static_worked_h100_example():
    # H100 80 GB (nvidia-smi 81,559 MiB), TP 1: chunked prefill 8,192, decode graphs up to 256,
    # 58 prefill graph sizes: reserved = 512 + 1.5 * 8192 + 1/8 * 1024 + 2 * 256 + 8 * 58
    # = 13,904 MiB, and (81,559 - 13,904) / 81,559 = 0.8295 -> 0.830.
    reserved = 512 + 1.5 * 8192 + 1 / 8 * 1024 + 2 * 256 + 8 * 58
    assert reserved == 13904
    assert sglang_mem_fraction_static(81559, 1) == 0.830 == round((81559 - reserved) / 81559, 3)


@pytest.mark.parametrize("smi_mib, tp, reserved_mib", [
    # H200, TP 8: decode graphs up to 512 from TP 4, the reserve grows by tp / 8 GiB
    (143771, 8, 512 + 1.5 * 8192 + 1024 + 2 * 512 + 8 * 58),
    # L4 (< 35 GiB): chunked prefill 4,096, decode graphs up to 48, 50 prefill graph sizes
    (23034, 1, 512 + 1.5 * 4096 + 128 + 2 * 48 + 8 * 50),
])
def test_sglang_mem_fraction_static_by_gpu_size(smi_mib, tp, reserved_mib):
    assert sglang_mem_fraction_static(smi_mib, tp) == round((smi_mib - reserved_mib) / smi_mib, 3)


def test_sglang_pool_is_the_fraction_of_memory_free_before_weights_less_the_weights():
    mem = breakdown(EngineSettings("sglang", gpu_mem_util=0.88), weights_gib=15.0, shape=None, tp=1, **H100)
    free_before_weights = 79.19 - CUDA_CONTEXT_GIB     # CUDA context at TP 1
    assert mem.kv_cache_gib == pytest.approx(free_before_weights * 0.88 - 15.0)
    assert mem.context_gib == CUDA_CONTEXT_GIB
    default = breakdown(EngineSettings("sglang"), weights_gib=15.0, shape=None, tp=1, **H100)
    assert default.gpu_mem_util == 0.830


def test_sglang_rule_is_free_after_load_less_the_unreserved_share_of_free_before():
    # profile_max_num_token (SGLang 0.4.x model_runner.py): rest = avail_after_load -
    # avail_before_load * (1 - mem_fraction_static), i.e. before * fraction - weights.
    mem = breakdown(EngineSettings("sglang", gpu_mem_util=0.85), weights_gib=15.54, shape=None, tp=4,
                    total_gib=22.16, smi_total_mib=23034, gpu_name="L4 24GB")
    before = 22.16 - mem.context_gib
    after = before - 15.54
    assert mem.kv_cache_gib == pytest.approx(after - before * (1 - 0.85))


@pytest.mark.parametrize("name, link", [
    ("H100 SXM 80GB", "nvlink"), ("H800 SXM 80GB", "nvlink"), ("Instinct MI300X 192GB", "nvlink"),
    ("H100 NVL 94GB", "nvlink"), ("L4 24GB", "pcie"), ("L40S 48GB", "pcie"), ("A10G 24GB", "pcie"),
    ("GeForce RTX 4090 24GB", "pcie"), ("H100 PCIe 80GB", "pcie"), ("L20 48GB", "pcie"),
])
def test_gpu_link_by_name(name, link):
    assert gpu_link(name) == link


def test_communication_buffers_only_with_tensor_parallelism_and_by_link():
    nvlink = dict(total_gib=79.19, smi_total_mib=81559, gpu_name="H100 SXM 80GB")
    pcie = dict(total_gib=22.16, smi_total_mib=23034, gpu_name="L4 24GB")
    settings = EngineSettings("sglang", gpu_mem_util=0.8)
    assert breakdown(settings, weights_gib=1.0, shape=None, tp=1, **nvlink).context_gib == CUDA_CONTEXT_GIB
    assert breakdown(settings, weights_gib=1.0, shape=None, tp=8, **nvlink).context_gib == pytest.approx(
        CUDA_CONTEXT_GIB + COMM_GIB["nvlink"])
    assert breakdown(settings, weights_gib=1.0, shape=None, tp=8, **pcie).context_gib == pytest.approx(
        CUDA_CONTEXT_GIB + COMM_GIB["pcie"])
    # vLLM 0.19 on PCIe-only GPUs: its single-GPU non-torch memory plus the PCIe buffers.
    mem = breakdown(EngineSettings(version=(0, 19)), weights_gib=1.0, shape=LLAMA_8B, tp=2, **pcie)
    assert mem.non_torch_gib == pytest.approx(NON_TORCH_GIB[(0, 11)][0] + COMM_GIB["pcie"])


def test_router_and_mla_down_projections_are_replicated_on_every_gpu():
    # DeepSeek-R1 (block FP8): 58 MoE routers of 256 x 7168 and 61 MLA down-projections of
    # 7168 x (1536 + 512 + 64) are whole on every GPU; the rest splits 8 ways.
    config = ev.load_models()["deepseek-ai/DeepSeek-R1"]["config"]
    shape = import_config(config).shape
    assert shape.replicated_params_b * 1e9 == pytest.approx(58 * 256 * 7168 + 61 * 7168 * (1536 + 512 + 64))
    split = weights_gib_per_gpu(671.0, "fp8", 8, embedding_params_b=shape.embedding_params_b)
    whole = weights_gib_per_gpu(671.0, "fp8", 8, embedding_params_b=shape.embedding_params_b,
                                replicated_params_b=shape.replicated_params_b)
    assert whole - split == pytest.approx(shape.replicated_params_b * 1e9 * 7 / 8 / GIB)
    assert weights_gib_per_gpu(671.0, "fp8", 1, replicated_params_b=1.0) == weights_gib_per_gpu(671.0, "fp8", 1)


# --- weights of quantised checkpoints (docs/engines.md §3) ---------------------------------------

def test_quantised_weights_keep_embeddings_in_bf16():
    emb = LLAMA_8B.embedding_params_b
    fp8 = weights_gib_per_gpu(8.03, "fp8", 1, embedding_params_b=emb)
    assert fp8 == pytest.approx((emb * 2 + (8.03 - emb) * 1) * 1e9 / GIB)
    assert fp8 == pytest.approx(8.49, rel=0.01)              # vLLM 0.19, --quantization fp8
    int4 = weights_gib_per_gpu(8.03, "int4", 1, embedding_params_b=emb)
    assert int4 == pytest.approx((emb * 2 + (8.03 - emb) * (0.5 + 2 / 128)) * 1e9 / GIB)
    assert int4 == pytest.approx(5.38, rel=0.02)             # vLLM 0.19, GPTQ w4a16
    bf16 = weights_gib_per_gpu(8.03, "bf16", 2, embedding_params_b=emb)
    assert bf16 == pytest.approx(8.03e9 * 2 / GIB / 2)       # full width: embeddings change nothing


def test_mxfp4_quantises_only_the_experts_padded_to_256():
    params, experts = 20.9, 19.1
    padded = weights_gib_per_gpu(params, "mxfp4", 1, expert_params_b=experts, experts_only=True,
                                 moe_intermediate_size=2880)
    expected = (experts * 4.25 / 8 * 3072 / 2880 + (params - experts) * 2) * 1e9 / GIB
    assert padded == pytest.approx(expected)
    aligned = weights_gib_per_gpu(params, "mxfp4", 1, expert_params_b=experts, experts_only=True,
                                  moe_intermediate_size=2560)
    assert aligned == pytest.approx((experts * 4.25 / 8 + (params - experts) * 2) * 1e9 / GIB)
    assert WEIGHT_BYTES["mxfp4"] == 4.25 / 8 and WEIGHT_BYTES["nvfp4"] == 4.5 / 8


def test_gpt_oss_loads_as_vllm_logs_it():
    models = ev.load_models()
    small = import_config(models["openai/gpt-oss-20b"]["config"])
    large = import_config(models["openai/gpt-oss-120b"]["config"])
    assert (small.weight_format, large.weight_format) == ("MXFP4", "MXFP4")
    assert arch_weights_gib(small, "fp4", 1) == pytest.approx(13.47, rel=0.01)    # vLLM 0.19, H100
    assert arch_weights_gib(large, "fp4", 1) == pytest.approx(64.38, rel=0.01)    # one GPU (docs/engines.md §3)
    # the padding (2,880 -> 3,072) is what makes the difference: without it 20b would load less
    unpadded = weights_gib_per_gpu(small.params_b, "mxfp4", 1, expert_params_b=small.shape.expert_params_b,
                                   experts_only=True)
    assert unpadded < 13.47 - 0.5


# --- vLLM's KV budget by version -----------------------------------------------------------------

@pytest.mark.parametrize("version, graphs", [((0, 19), False), ((0, 20), True), ((0, 33), True)])
def test_cuda_graphs_come_out_of_the_budget_from_0_20(version, graphs):
    on = breakdown(EngineSettings(version=version), weights_gib=15.0, shape=LLAMA_8B, tp=1, **H100)
    off = breakdown(EngineSettings(version=version, cuda_graphs=False), weights_gib=15.0, shape=LLAMA_8B,
                    tp=1, **H100)
    expected = CUDA_GRAPH_BASE_GIB + CUDA_GRAPH_PER_LAYER_GIB * 32 if graphs else 0.0
    assert on.cuda_graph_gib == pytest.approx(expected)
    assert off.cuda_graph_gib == 0.0
    assert off.kv_cache_gib - on.kv_cache_gib == pytest.approx(expected)


def test_vllm_budget_is_ceil_of_total_times_util_less_the_reserved():
    mem = breakdown(EngineSettings(version=(0, 19), gpu_mem_util=0.95), weights_gib=14.99, shape=LLAMA_8B,
                    tp=1, **H100)
    assert mem.budget_gib == math.ceil(79.19 * 0.95 * GIB) / GIB
    assert mem.kv_cache_gib == pytest.approx(mem.budget_gib - mem.reserved_gib)
    assert mem.reserved_gib == pytest.approx(mem.weights_gib + mem.activation_gib + mem.non_torch_gib
                                             + mem.cuda_graph_gib)
    assert mem.headroom_gib == pytest.approx(79.19 - mem.budget_gib)
    assert mem.kv_cache_gib == pytest.approx(58.11, rel=0.005)   # logged by vLLM 0.19 for this start


@pytest.mark.parametrize("version, tp, non_torch", [
    ((0, 10), 1, NON_TORCH_GIB[(0, 0)][0]), ((0, 10), 2, NON_TORCH_GIB[(0, 0)][1]),
    ((0, 19), 1, NON_TORCH_GIB[(0, 11)][0]), ((0, 19), 4, NON_TORCH_GIB[(0, 11)][1]),
])
def test_non_torch_memory_by_version_and_tensor_parallelism(version, tp, non_torch):
    mem = breakdown(EngineSettings(version=version), weights_gib=5.0, shape=LLAMA_8B, tp=tp, **H100)
    assert mem.non_torch_gib == non_torch


def test_moe_models_capture_bigger_graphs_and_keep_a_workspace():
    moe = ModelShape(hidden_size=2048, vocab_size=151936, num_layers=48, intermediate_size=6144, num_experts=128,
                     experts_per_token=8, moe_intermediate_size=768)
    dense = ModelShape(hidden_size=2048, vocab_size=151936, num_layers=48, intermediate_size=6144)
    assert cuda_graph_gib(moe) - cuda_graph_gib(dense) == pytest.approx(CUDA_GRAPH_MOE_EXTRA_GIB)
    workspace = 8192 * 8 * 2 * (3 * 768 + 2048) / GIB
    assert activation_peak_gib(moe, 8192, 1024, 1) - activation_peak_gib(dense, 8192, 1024, 1) == \
        pytest.approx(workspace)


def test_manual_engine_subtracts_only_the_reserve():
    mem = breakdown(EngineSettings("manual", gpu_mem_util=0.9, activation_reserve_gib=2.0), weights_gib=15.0,
                    shape=None, tp=1, **H100)
    assert mem.kv_cache_gib == pytest.approx(79.19 * 0.9 - 15.0 - 2.0)


def test_vllm_needs_a_model_shape():
    with pytest.raises(ScenarioError) as err:
        breakdown(EngineSettings(), weights_gib=15.0, shape=None, tp=1, **H100)
    assert err.value.key == "model"


# --- vLLM before 0.9: the V0 worker (0.6-0.7) and the early V1 worker (0.8) -------------------------

RTX_3090 = dict(total_gib=23.58, smi_total_mib=24576, gpu_name="GeForce RTX 3090 24GB")
LLAMA_31_8B = ModelShape(hidden_size=4096, vocab_size=128256, num_layers=32, intermediate_size=14336,
                         context_tokens=131072)


@pytest.mark.parametrize("total_gib, name, version, max_model_len, expected", [
    (79.19, "H100 SXM 80GB", (0, 6, 4), 8192, (8192, 256)),       # no chunked prefill: max(len, 2048)
    (79.19, "H100 SXM 80GB", (0, 7, 0), 1024, (2048, 256)),
    (23.58, "GeForce RTX 3090 24GB", (0, 6, 4), 29000, (29000, 256)),
    (79.19, "H100 SXM 80GB", (0, 6, 4), 131072, (512, 256)),      # chunked prefill above 32K: 512 to 0.6.4
    (79.19, "H100 SXM 80GB", (0, 6, 5), 131072, (2048, 256)),     # ... 2,048 from 0.6.5
    (191.98, "Instinct MI300X 192GB", (0, 7, 0), 131072, (131072, 256)),   # V0 on ROCm: no chunked prefill
    (79.19, "H100 SXM 80GB", (0, 8, 0), 131072, (8192, 1024)),    # 0.8: V1 by default
    (79.15, "A100 SXM 80GB", (0, 8, 0), 8192, (8192, 1024)),      # no A100 exclusion yet
    (44.40, "L40S 48GB", (0, 8, 0), 8192, (2048, 256)),
])
def test_vllm_batch_defaults_before_0_9(total_gib, name, version, max_model_len, expected):
    assert vllm_batch_defaults(total_gib, name, version, max_model_len) == expected


def test_v0_0_6_4_budget_reproduces_the_rtx_3090_logs():
    # vllm-project/vllm#10517 (0.6.4 "Memory profiling results" lines): total 23.58 GiB x 0.90,
    # weights 14.99 GiB, non-torch 0.35 GiB (CUDA context included), KV 3.81 GiB at
    # max_model_len 20,000 and 2.89 GiB at 29,000 (activation 2.07 and 2.99 GiB).
    mem = breakdown(EngineSettings(version=(0, 6, 4), gpu_mem_util=0.9, max_model_len=20000), weights_gib=14.9888,
                    shape=LLAMA_31_8B, tp=1, **RTX_3090)
    assert mem.budget_gib == pytest.approx(23.58 * 0.9, abs=1e-12)        # no rounding up before 0.9
    assert (mem.max_num_batched_tokens, mem.max_num_seqs) == (20000, 256)
    assert mem.non_torch_gib == 0.35
    assert mem.activation_gib == pytest.approx(2.07, abs=0.03)
    assert mem.kv_cache_gib == pytest.approx(3.81, abs=0.03)
    assert mem.kv_cache_gib == pytest.approx(mem.budget_gib - 14.9888 - mem.activation_gib - 0.35)
    long = breakdown(EngineSettings(version=(0, 6, 4), gpu_mem_util=0.9, max_model_len=29000), weights_gib=14.9888,
                     shape=LLAMA_31_8B, tp=1, **RTX_3090)
    assert long.activation_gib == pytest.approx(2.99, abs=0.03)
    assert long.kv_cache_gib == pytest.approx(2.89, abs=0.03)


def test_v0_sampler_dominates_at_the_default_256_sequences():
    # vllm-project/vllm#10511: Meta-Llama-3-8B on an H100, 8,192 tokens (max_model_len 8,192, no
    # chunked prefill) over 256 sequences: 1.26 GiB activation peak logged.
    peak = activation_peak_v0_gib(LLAMA_8B, 8192, 256, 1)
    assert peak == pytest.approx(1.26, abs=0.01)
    assert peak > activation_peak_v0_gib(LLAMA_8B, 8192, 1, 1) + 0.3   # the forward alone: 0.87 GiB


@pytest.mark.parametrize("version, tp, non_torch", [
    ((0, 6, 3), 1, 0.10), ((0, 6, 4), 1, 0.35), ((0, 6, 5), 1, 0.10), ((0, 7, 3), 1, 0.10), ((0, 8, 5), 1, 0.35),
    ((0, 7, 3), 2, 0.10 + COMM_GIB["pcie"]),
])
def test_v0_non_torch_memory_by_release(version, tp, non_torch):
    mem = breakdown(EngineSettings(version=version), weights_gib=5.0, shape=LLAMA_31_8B, tp=tp, **RTX_3090)
    assert mem.non_torch_gib == pytest.approx(non_torch)


@pytest.mark.parametrize("version", [(0, 6, 6), (0, 8, 0)])
def test_no_cuda_graph_term_before_0_9(version):
    on = breakdown(EngineSettings(version=version), weights_gib=15.0, shape=LLAMA_31_8B, tp=1, **H100)
    off = breakdown(EngineSettings(version=version, cuda_graphs=False), weights_gib=15.0, shape=LLAMA_31_8B,
                    tp=1, **H100)
    assert on.cuda_graph_gib == off.cuda_graph_gib == 0.0 and on.kv_cache_gib == off.kv_cache_gib


@pytest.mark.parametrize("version", [(0, 2, 5), (0, 5, 5)])
def test_vllm_older_than_0_6_is_refused_by_name(version):
    with pytest.raises(ScenarioError) as err:
        EngineSettings(version=version)
    assert err.value.key == "engine_version" and err.value.value == ".".join(map(str, version))
    assert "oldest supported is 0.6" in err.value.allowed
    assert VLLM_OLDEST == (0, 6)
    EngineSettings("sglang", version=version)   # the vLLM version means nothing to other engines


def test_scenario_offers_v0_releases_and_refuses_older_ones():
    assert Scenario.from_dict({"engine_version": "0.6.4"}).engine_version == "0.6.4"
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({"engine_version": "0.2"})
    assert err.value.key == "engine_version" and err.value.allowed.startswith("must be one of 0.6.0,")


def test_v0_versions_read_from_the_log_format():
    starts = {s["id"]: s for s in ev.load_starts()}
    assert ev.start_version(starts["vllm-v0-llama31-8b-rtx3090-mml20k"])[0] == (0, 6, 4)
    assert ev.start_version(starts["vllm-v0-llama3-8b-a100-40gb"])[0] == (0, 6, 5)
    assert ev.start_version(starts["vllm-0.6.4.post1-qwen25-72b-gptq-a40-fail"]) == ((0, 6, 4), "")


# --- versions and settings -----------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [("0.19", (0, 19, 0)), ("0.19.1", (0, 19, 1)), ("v0.10.1.1", (0, 10, 1)),
                                            (" 0.33 ", (0, 33, 0)), ("0.6.4.post1", (0, 6, 4))])
def test_parse_version(text, expected):
    assert parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "0", "latest", "0.x", "-1.2", "1.-2", None])
def test_parse_version_rejects_what_is_not_a_version(text):
    with pytest.raises(ScenarioError) as err:
        parse_version(text)
    assert err.value.key == "engine_version" and "0.19" in err.value.allowed


def test_unknown_engine_is_an_error():
    with pytest.raises(ScenarioError) as err:
        EngineSettings("tgi")
    assert err.value.key == "engine" and "sglang" in err.value.allowed


# --- the input mapping of the validation (tests/engine_validation.py) ----------------------------

@pytest.mark.parametrize("gpu, preset", [
    ("NVIDIA H100 80GB HBM3", "h100-sxm"), ("H100-80G", "h100-sxm"), ("NVIDIA H200 (8 GPUs)", "h200"),
    ("H20", "h20"), ("NVIDIA A100 40GB", "a100-40gb"), ("NVIDIA A100 80GB", "a100-80gb"), ("NVIDIA L4", "l4"),
    ("NVIDIA L20", "l20"), ("L40S", "l40s"), ("NVIDIA A10G (4x)", "a10g"), ("NVIDIA GeForce RTX 4090", "rtx-4090"),
    ("AMD Instinct MI300X (node)", "mi300x"), ("H100 96GB NVLink (author)", "h100-nvl"),
    ("RTX 3090", "rtx-3090"), ("NVIDIA A40-48Q", None), ("not named (H100 implied)", None),
])
def test_gpu_names_map_to_presets(gpu, preset):
    start = {"gpu": gpu, "logged": {}}
    assert ev.gpu_preset(start)[0] == preset


def test_an_a100_of_unnamed_size_is_the_80_gb_part_only_when_the_figures_say_so():
    big = {"gpu": "NVIDIA A100", "logged": {"weights_gib": 13.7, "kv_cache_gib": 36.6}}
    small = {"gpu": "NVIDIA A100", "logged": {"weights_gib": 15.0, "kv_cache_gib": 20.0}}
    assert ev.gpu_preset(big)[0] == "a100-80gb"
    assert ev.gpu_preset(small)[0] is None


def test_weight_dtype_from_config_then_start():
    fp8_config = {"quantization_config": {"quant_method": "fp8"}, "torch_dtype": "bfloat16"}
    plain = {"torch_dtype": "bfloat16"}
    assert ev.weight_dtype({"quantization": "fp8", "model": "x"}, fp8_config)[0] is None   # the config's own
    assert ev.weight_dtype({"quantization": "fp8", "model": "x"}, plain)[0] == "fp8"
    assert ev.weight_dtype({"quantization": "compressed-tensors", "model": "a/m-quantized.w8a8"}, plain)[0] == "int8"
    assert ev.weight_dtype({"quantization": "gptq_marlin", "model": "a/m.w4a16"}, plain)[0] == "int4"
    served = {"quantization": None, "model": "x", "quote": "{'dtype': 'float32', 'kv_cache_dtype': 'fp8'}"}
    assert ev.weight_dtype(served, plain)[0] == "fp32"
    assert ev.weight_dtype({"quantization": None, "model": "x", "quote": "'kv_cache_dtype': 'fp8'"}, plain)[0] is None


# --- the validation table (docs/engines.md §7) ----------------------------------------------------

ROWS = ev.validation_rows()


def validated(engine: str) -> list[ev.Row]:
    return [r for r in ROWS if r.engine == engine and r.status == "validated"]


def test_every_start_is_validated_or_excluded_with_a_reason():
    starts = ev.load_starts()
    assert len(ROWS) == len(starts) and len({r.id for r in ROWS}) == len(ROWS)
    for row in ROWS:
        assert row.status in ("validated", "excluded")
        assert bool(row.reason) == (row.status == "excluded"), row.id
        if row.status == "validated":
            assert row.logged_kv_gib and row.logged_kv_gib > 0 and row.predicted_kv_gib is not None, row.id
    assert set(ev.EXCLUDED) <= {s["id"] for s in starts}       # no stale exclusions
    assert set(ev.load_models()["starts"]) == {s["id"] for s in starts}


def test_the_validated_set_is_broad():
    vllm, sglang = validated("vllm"), validated("sglang")
    assert len(vllm) >= 25 and len(sglang) >= 5
    assert {r.gpu for r in vllm} >= {"h100-sxm", "a100-80gb", "a100-40gb"}
    assert {r.tp for r in vllm} >= {1, 2, 4}
    assert {r.version.split(".")[1] for r in vllm} >= {"6", "10", "19"}
    assert "rtx-3090" in {r.gpu for r in vllm}


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_kv_memory_per_gpu_within_15_percent_median_within_5(engine):
    # The target, for both engines: median |predicted/logged - 1| <= 5 % and every
    # validated start within +-15 %, in KV GiB per GPU (docs/engines.md §7).
    errors = {r.id: r.error for r in validated(engine)}
    assert statistics.median(abs(e) for e in errors.values()) <= 0.05
    outside = {k: f"{100 * e:+.1f} %" for k, e in errors.items() if abs(e) > 0.15}
    assert not outside


def test_markdown_table_has_a_row_per_start_and_the_summaries():
    table = ev.markdown_table(ROWS)
    lines = table.splitlines()
    assert sum(line.startswith("| vllm-") or line.startswith("| sglang-") for line in lines) == len(ROWS)
    assert lines[-2].startswith("vLLM: ") and lines[-1].startswith("SGLang: ")
    assert f"{len(validated('vllm'))} validated" in lines[-2]


def test_docs_show_the_current_table():
    """docs/engines.md §7 pastes the script's output; regenerate it with
    ``python tests/engine_validation.py`` when the data or the engine model changes."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "engines.md").read_text(encoding="utf-8")
    assert ev.markdown_table(ROWS) in page
