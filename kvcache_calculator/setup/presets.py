"""Model and GPU presets: data, each entry with its source.

A model preset is the handful of ``config.json`` fields that size its KV cache (read by the
same reader as a pasted config, :mod:`kvcache_calculator.setup.configjson`), plus its parameter
counts in billions. Published counts (model cards, papers; the figures of
docs/validation.md §8) are used where they exist; for the newest models the counts are those
:func:`~kvcache_calculator.setup.configjson.count_params` gives on the full config.json (text model,
multi-token-prediction layers excluded), and ``source`` says so.

Ids are lower case (``llama-3.1-8b``, ``deepseek-v3``, ``qwen3-235b-a22b``); ``custom`` is
reserved for an architecture given key by key. Unknown ids raise
:class:`~kvcache_calculator.errors.ScenarioError` listing the valid ones.
"""

from __future__ import annotations

import difflib
from types import MappingProxyType

from kvcache_calculator.setup.architecture import ModelArch, kv_bytes_per_sequence_fixed, kv_bytes_per_token
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.setup.gpus import GPU
from kvcache_calculator.setup.configjson import layer_groups, model_shape, text_config
from kvcache_calculator.setup.vision import vision_tower

DEFAULT_MODEL = "llama-3.1-8b"
DEFAULT_GPU = "h100-sxm"

def _gqa(layers: int, heads: int, kv_heads: int, head_dim: int, **more: object) -> dict:
    """A config fragment for a plain GQA stack."""
    return {"num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "head_dim": head_dim, **more}


def _mla(layers: int, heads: int, **more: object) -> dict:
    """A config fragment for a DeepSeek-V3-style MLA stack (kv_lora_rank 512, rope 64)."""
    return {"num_hidden_layers": layers, "num_attention_heads": heads, "kv_lora_rank": 512,
            "qk_rope_head_dim": 64, **more}


def _hf(repo: str) -> str:
    """The source phrase for a Hugging Face repository's config.json."""
    return f"config.json of {repo} on Hugging Face"


_COUNTED = "counted from that config.json by hfconfig.count_params (text model, MTP layers excluded)"

# id: (display name, HF repo, file in the reference hf-configs folder or "", total B, active B,
#      parameter source, config fields, extra note)
_MODEL_DATA: dict[str, tuple] = {
    "llama-3.1-8b": ("Llama-3.1-8B", "meta-llama/Llama-3.1-8B", "meta-llama--Meta-Llama-3.1-8B.json",
                     8.03, 8.03, "Llama 3.1 model card (8.03B)", _gqa(32, 32, 8, 128), ""),
    "llama-3.1-70b": ("Llama-3.1-70B", "meta-llama/Llama-3.1-70B", "meta-llama--Meta-Llama-3.1-70B.json",
                      70.6, 70.6, "Llama 3.1 model card (70.6B)", _gqa(80, 64, 8, 128), ""),
    "llama-3.1-405b": ("Llama-3.1-405B", "meta-llama/Llama-3.1-405B",
                       "meta-llama--Meta-Llama-3.1-405B.json", 405.9, 405.9,
                       "Llama 3.1 model card (405B; 405.9B counted)", _gqa(126, 128, 8, 128), ""),
    "llama-3.2-1b": ("Llama-3.2-1B", "meta-llama/Llama-3.2-1B", "", 1.24, 1.24,
                     "Llama 3.2 model card (1.23B)",
                     _gqa(16, 32, 8, 64, hidden_size=2048, intermediate_size=8192,
                          vocab_size=128256, tie_word_embeddings=True), ""),
    "llama-3.2-3b": ("Llama-3.2-3B", "meta-llama/Llama-3.2-3B", "", 3.21, 3.21,
                     "Llama 3.2 model card (3.21B)",
                     _gqa(28, 24, 8, 128, hidden_size=3072, intermediate_size=8192,
                          vocab_size=128256, tie_word_embeddings=True), ""),
    "llama-4-scout": ("Llama-4-Scout-17B-16E", "meta-llama/Llama-4-Scout-17B-16E-Instruct",
                      "meta-llama--Llama-4-Scout-17B-16E-Instruct.json", 107.8, 17.0,
                      "Llama 4 model card (109B total with the vision encoder, 17B active); text model "
                      "107.8B counted by hfconfig.count_params",
                      _gqa(48, 40, 8, 128, model_type="llama4_text", attention_chunk_size=8192), ""),
    "mistral-7b": ("Mistral-7B-v0.3", "mistralai/Mistral-7B-v0.3", "", 7.25, 7.25,
                   "Mistral 7B paper, arXiv:2310.06825 (7.3B; 7.25B counted)",
                   _gqa(32, 32, 8, 128, hidden_size=4096, intermediate_size=14336,
                        vocab_size=32768), "v0.3 has no sliding window (v0.1 used 4096)"),
    "mistral-small-24b": ("Mistral-Small-24B", "mistralai/Mistral-Small-24B-Base-2501", "", 23.6, 23.6,
                          "Mistral Small 3 model card (24B; 23.6B counted)",
                          _gqa(40, 32, 8, 128, hidden_size=5120, intermediate_size=32768,
                               vocab_size=131072), ""),
    "mixtral-8x7b": ("Mixtral-8x7B", "mistralai/Mixtral-8x7B-v0.1", "mistralai--Mixtral-8x7B-v0.1.json",
                     46.7, 12.9, "Mixtral of Experts paper, arXiv:2401.04088 (47B total, 13B active)",
                     _gqa(32, 32, 8, 128), ""),
    "qwen2.5-7b": ("Qwen2.5-7B", "Qwen/Qwen2.5-7B", "", 7.6, 7.6, "Qwen2.5 model card (7.61B)",
                   _gqa(28, 28, 4, 128, hidden_size=3584, intermediate_size=18944,
                        vocab_size=152064, attention_bias=True), ""),
    "qwen3-0.6b": ("Qwen3-0.6B", "Qwen/Qwen3-0.6B", "Qwen--Qwen3-0.6B.json", 0.6, 0.6,
                   "Qwen3 model card (0.6B)", _gqa(28, 16, 8, 128), ""),
    "qwen3-8b": ("Qwen3-8B", "Qwen/Qwen3-8B", "Qwen--Qwen3-8B.json", 8.2, 8.2,
                 "Qwen3 model card (8.2B)", _gqa(36, 32, 8, 128), ""),
    "qwen3-32b": ("Qwen3-32B", "Qwen/Qwen3-32B", "Qwen--Qwen3-32B.json", 32.8, 32.8,
                  "Qwen3 model card (32.8B)", _gqa(64, 64, 8, 128), ""),
    "qwen3-30b-a3b": ("Qwen3-30B-A3B", "Qwen/Qwen3-30B-A3B", "Qwen--Qwen3-30B-A3B.json", 30.5, 3.3,
                      "Qwen3 model card (30.5B total, 3.3B active)", _gqa(48, 32, 4, 128), ""),
    "qwen3-235b-a22b": ("Qwen3-235B-A22B", "Qwen/Qwen3-235B-A22B", "Qwen--Qwen3-235B-A22B.json",
                        235.0, 22.0, "Qwen3 model card (235B total, 22B active)",
                        _gqa(94, 64, 4, 128), ""),
    "qwen3-coder-480b-a35b": ("Qwen3-Coder-480B-A35B", "Qwen/Qwen3-Coder-480B-A35B-Instruct",
                              "Qwen--Qwen3-Coder-480B-A35B-Instruct.json", 480.0, 35.0,
                              "Qwen3-Coder model card (480B total, 35B active)",
                              _gqa(62, 96, 8, 128), ""),
    "qwen3.5-27b": ("Qwen3.5-27B", "Qwen/Qwen3.5-27B", "Qwen--Qwen3.5-27B.json", 27.0, 27.0,
                    "Qwen3.5 model card (27B)",
                    _gqa(64, 24, 4, 256,
                         layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 16,
                         linear_num_key_heads=16, linear_num_value_heads=48, linear_key_head_dim=128,
                         linear_value_head_dim=128, linear_conv_kernel_dim=4,
                         mamba_ssm_dtype="float32", dtype="bfloat16", mtp_num_hidden_layers=1), ""),
    "qwen3.5-397b-a17b": ("Qwen3.5-397B-A17B", "Qwen/Qwen3.5-397B-A17B", "Qwen--Qwen3.5-397B-A17B.json",
                          397.0, 17.0, "Qwen3.5 model card (397B total, 17B active)",
                          _gqa(60, 32, 2, 256,
                               layer_types=(["linear_attention"] * 3 + ["full_attention"]) * 15,
                               linear_num_key_heads=16, linear_num_value_heads=64,
                               linear_key_head_dim=128, linear_value_head_dim=128,
                               linear_conv_kernel_dim=4, mamba_ssm_dtype="float32",
                               dtype="bfloat16", mtp_num_hidden_layers=1), ""),
    "deepseek-v3": ("DeepSeek-V3", "deepseek-ai/DeepSeek-V3", "deepseek-ai--DeepSeek-V3.json",
                    671.0, 37.0, "DeepSeek-V3 technical report, arXiv:2412.19437 (671B total, 37B active)",
                    _mla(61, 128, num_nextn_predict_layers=1), ""),
    "deepseek-r1": ("DeepSeek-R1", "deepseek-ai/DeepSeek-R1", "deepseek-ai--DeepSeek-R1.json",
                    671.0, 37.0, "DeepSeek-R1 model card (671B total, 37B active)",
                    _mla(61, 128, num_nextn_predict_layers=1), ""),
    "deepseek-v3.2": ("DeepSeek-V3.2", "deepseek-ai/DeepSeek-V3.2", "deepseek-ai--DeepSeek-V3.2.json",
                      671.9, 38.4, _COUNTED,
                      _mla(61, 128, index_head_dim=128, index_n_heads=64, index_topk=2048,
                           num_nextn_predict_layers=1), ""),
    "glm-5.2": ("GLM-5.2", "zai-org/GLM-5.2", "zai-org--GLM-5.2.json", 743.4, 41.3, _COUNTED,
                _mla(78, 64, index_head_dim=128, index_n_heads=32, index_topk=2048,
                     indexer_types=["full"] * 3 + (["shared"] * 3 + ["full"]) * 18 + ["shared"] * 3,
                     num_nextn_predict_layers=1), ""),
    "kimi-k2": ("Kimi-K2", "moonshotai/Kimi-K2-Instruct", "moonshotai--Kimi-K2-Instruct.json",
                1040.0, 32.0, "Kimi K2 model card (1T total, 32B active; 1.04T in PRESETS)",
                _mla(61, 64), ""),
    "kimi-k2.5": ("Kimi-K2.5", "moonshotai/Kimi-K2.5", "moonshotai--Kimi-K2.5.json", 1040.0, 32.0,
                  "Kimi K2.5 model card (same text model as Kimi K2: 1T total, 32B active)",
                  _mla(61, 64), ""),
    "gpt-oss-120b": ("gpt-oss-120b", "openai/gpt-oss-120b", "openai--gpt-oss-120b.json", 117.0, 5.1,
                     "gpt-oss model card, arXiv:2508.10925 (116.8B total, 5.1B active)",
                     _gqa(36, 64, 8, 64, sliding_window=128,
                          layer_types=["sliding_attention", "full_attention"] * 18), ""),
    "gpt-oss-20b": ("gpt-oss-20b", "openai/gpt-oss-20b", "openai--gpt-oss-20b.json", 21.0, 3.6,
                    "gpt-oss model card, arXiv:2508.10925 (20.9B total, 3.6B active)",
                    _gqa(24, 64, 8, 64, sliding_window=128,
                         layer_types=["sliding_attention", "full_attention"] * 12), ""),
    "gemma-2-9b": ("Gemma-2-9B", "google/gemma-2-9b", "", 9.2, 9.2,
                   "Gemma 2 report, arXiv:2408.00118 (9.24B)",
                   _gqa(42, 16, 8, 256, model_type="gemma2", sliding_window=4096, hidden_size=3584,
                        intermediate_size=14336, vocab_size=256000, tie_word_embeddings=True), ""),
    "gemma-4-26b-a4b": ("Gemma-4-26B-A4B", "google/gemma-4-26B-A4B", "google--gemma-4-26B-A4B.json",
                        25.2, 3.8, _COUNTED,
                        _gqa(30, 16, 8, 256, sliding_window=1024, attention_k_eq_v=True,
                             global_head_dim=512, num_global_key_value_heads=2,
                             layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 5),
                        ""),
    "minimax-m3": ("MiniMax-M3", "MiniMaxAI/MiniMax-M3", "MiniMaxAI--MiniMax-M3.json", 426.2, 26.0,
                   _COUNTED,
                   _gqa(60, 64, 4, 128, torch_dtype="bfloat16", num_nextn_predict_layers=1,
                        sparse_attention_config={"use_sparse_attention": True, "sparse_index_dim": 128,
                                                 "sparse_attention_freq": [0] * 3 + [1] * 57}), ""),
    "mimo-v2-flash": ("MiMo-V2-Flash", "XiaomiMiMo/MiMo-V2-Flash", "XiaomiMiMo--MiMo-V2-Flash.json",
                      308.8, 15.5, _COUNTED,
                      _gqa(48, 64, 4, 192, v_head_dim=128, sliding_window=128,
                           swa_num_key_value_heads=8, swa_head_dim=192, swa_v_head_dim=128,
                           hybrid_layer_pattern=[0] + ([1] * 5 + [0]) * 7 + [1] * 4 + [0]), ""),
    "step-3.7-flash": ("Step-3.7-Flash", "stepfun-ai/Step-3.7-Flash", "stepfun-ai--Step-3.7-Flash.json",
                       195.8, 10.9, _COUNTED,
                       _gqa(45, 64, 8, 128, sliding_window=512, num_nextn_predict_layers=3,
                            layer_types=(["full_attention"] + ["sliding_attention"] * 3) * 11
                            + ["full_attention"]), ""),
    "nemotron-h-56b": ("Nemotron-H-56B-Base-8K", "nvidia/Nemotron-H-56B-Base-8K",
                       "nvidia--Nemotron-H-56B-Base-8K.json", 56.3, 56.3, _COUNTED,
                       {"num_attention_heads": 64, "num_key_value_heads": 8, "attention_head_dim": 128,
                        "hybrid_override_pattern": "M-M-M-M*-" + "M-M-M-M-M*-" * 9 + "M-M-M-M-M-",
                        "mamba_num_heads": 256, "mamba_head_dim": 64, "ssm_state_size": 256,
                        "n_groups": 8, "conv_kernel": 4, "torch_dtype": "bfloat16"}, ""),
}


#: The fields of each preset's config.json that size an engine's activations and a quantised
#: checkpoint's parts (hidden size, vocabulary, MLP and expert widths, the context length),
#: copied from the same config.json as the layers (tests/test_presets.py checks them against
#: the reference files where present).
_SHAPE_FIELDS: dict[str, dict] = {
    "llama-3.1-8b": {'hidden_size': 4096, 'vocab_size': 128256, 'intermediate_size': 14336, 'tie_word_embeddings': False, 'max_position_embeddings': 131072},
    "llama-3.1-70b": {'hidden_size': 8192, 'vocab_size': 128256, 'intermediate_size': 28672, 'tie_word_embeddings': False, 'max_position_embeddings': 131072},
    "llama-3.1-405b": {'hidden_size': 16384, 'vocab_size': 128256, 'intermediate_size': 53248, 'tie_word_embeddings': False, 'max_position_embeddings': 131072},
    "llama-3.2-1b": {'max_position_embeddings': 131072},
    "llama-3.2-3b": {'max_position_embeddings': 131072},
    "llama-4-scout": {'hidden_size': 5120, 'vocab_size': 202048, 'intermediate_size': 8192, 'num_local_experts': 16, 'num_experts_per_tok': 1, 'max_position_embeddings': 10485760, 'intermediate_size_mlp': 16384, 'interleave_moe_layer_step': 1},
    "mistral-7b": {'max_position_embeddings': 32768},
    "mistral-small-24b": {'max_position_embeddings': 32768},
    "mixtral-8x7b": {'hidden_size': 4096, 'vocab_size': 32000, 'intermediate_size': 14336, 'num_local_experts': 8, 'num_experts_per_tok': 2, 'tie_word_embeddings': False, 'max_position_embeddings': 32768},
    "qwen2.5-7b": {'max_position_embeddings': 131072},
    "qwen3-0.6b": {'hidden_size': 1024, 'vocab_size': 151936, 'intermediate_size': 3072, 'tie_word_embeddings': True, 'max_position_embeddings': 40960},
    "qwen3-8b": {'hidden_size': 4096, 'vocab_size': 151936, 'intermediate_size': 12288, 'tie_word_embeddings': False, 'max_position_embeddings': 40960},
    "qwen3-32b": {'hidden_size': 5120, 'vocab_size': 151936, 'intermediate_size': 25600, 'tie_word_embeddings': False, 'max_position_embeddings': 40960},
    "qwen3-30b-a3b": {'hidden_size': 2048, 'vocab_size': 151936, 'intermediate_size': 6144, 'moe_intermediate_size': 768, 'num_experts': 128, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 40960, 'decoder_sparse_step': 1, 'mlp_only_layers': []},
    "qwen3-235b-a22b": {'hidden_size': 4096, 'vocab_size': 151936, 'intermediate_size': 12288, 'moe_intermediate_size': 1536, 'num_experts': 128, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 40960, 'decoder_sparse_step': 1, 'mlp_only_layers': []},
    "qwen3-coder-480b-a35b": {'hidden_size': 6144, 'vocab_size': 151936, 'intermediate_size': 8192, 'moe_intermediate_size': 2560, 'num_experts': 160, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 262144, 'decoder_sparse_step': 1, 'mlp_only_layers': [], 'shared_expert_intermediate_size': 0},
    "qwen3.5-27b": {'hidden_size': 5120, 'vocab_size': 248320, 'intermediate_size': 17408, 'tie_word_embeddings': False, 'max_position_embeddings': 262144, 'mlp_only_layers': [], 'rope_parameters': {'partial_rotary_factor': 0.25}},
    "qwen3.5-397b-a17b": {'hidden_size': 4096, 'vocab_size': 248320, 'moe_intermediate_size': 1024, 'num_experts': 512, 'num_experts_per_tok': 10, 'tie_word_embeddings': False, 'max_position_embeddings': 262144, 'mlp_only_layers': [], 'shared_expert_intermediate_size': 1024, 'rope_parameters': {'partial_rotary_factor': 0.25}},
    "deepseek-v3": {'q_lora_rank': 1536, 'hidden_size': 7168, 'vocab_size': 129280, 'intermediate_size': 18432, 'moe_intermediate_size': 2048, 'n_routed_experts': 256, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 163840, 'first_k_dense_replace': 3, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "deepseek-r1": {'q_lora_rank': 1536, 'hidden_size': 7168, 'vocab_size': 129280, 'intermediate_size': 18432, 'moe_intermediate_size': 2048, 'n_routed_experts': 256, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 163840, 'first_k_dense_replace': 3, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "deepseek-v3.2": {'q_lora_rank': 1536, 'hidden_size': 7168, 'vocab_size': 129280, 'intermediate_size': 18432, 'moe_intermediate_size': 2048, 'n_routed_experts': 256, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 163840, 'first_k_dense_replace': 3, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "glm-5.2": {'q_lora_rank': 2048, 'hidden_size': 6144, 'vocab_size': 154880, 'intermediate_size': 12288, 'moe_intermediate_size': 2048, 'n_routed_experts': 256, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 1048576, 'first_k_dense_replace': 3, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "kimi-k2": {'q_lora_rank': 1536, 'hidden_size': 7168, 'vocab_size': 163840, 'intermediate_size': 18432, 'moe_intermediate_size': 2048, 'n_routed_experts': 384, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 131072, 'first_k_dense_replace': 1, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "kimi-k2.5": {'q_lora_rank': 1536, 'hidden_size': 7168, 'vocab_size': 163840, 'intermediate_size': 18432, 'moe_intermediate_size': 2048, 'n_routed_experts': 384, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 262144, 'first_k_dense_replace': 1, 'moe_layer_freq': 1, 'n_shared_experts': 1},
    "gpt-oss-120b": {'hidden_size': 2880, 'vocab_size': 201088, 'intermediate_size': 2880, 'num_local_experts': 128, 'num_experts_per_tok': 4, 'tie_word_embeddings': False, 'max_position_embeddings': 131072},
    "gpt-oss-20b": {'hidden_size': 2880, 'vocab_size': 201088, 'intermediate_size': 2880, 'num_local_experts': 32, 'num_experts_per_tok': 4, 'tie_word_embeddings': False, 'max_position_embeddings': 131072},
    "gemma-2-9b": {'max_position_embeddings': 8192},
    "gemma-4-26b-a4b": {'hidden_size': 2816, 'vocab_size': 262144, 'intermediate_size': 2112, 'moe_intermediate_size': 704, 'num_experts': 128, 'tie_word_embeddings': True, 'max_position_embeddings': 262144, 'enable_moe_block': True, 'top_k_experts': 8},
    "minimax-m3": {'hidden_size': 6144, 'vocab_size': 200064, 'intermediate_size': 3072, 'moe_intermediate_size': 3072, 'num_local_experts': 128, 'num_experts_per_tok': 4, 'tie_word_embeddings': False, 'max_position_embeddings': 1048576, 'partial_rotary_factor': 0.5, 'first_k_dense_replace': 3, 'moe_layer_freq': [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 'n_shared_experts': 1},
    "mimo-v2-flash": {'hidden_size': 4096, 'vocab_size': 152576, 'intermediate_size': 16384, 'moe_intermediate_size': 2048, 'n_routed_experts': 256, 'num_experts_per_tok': 8, 'tie_word_embeddings': False, 'max_position_embeddings': 262144, 'partial_rotary_factor': 0.334, 'moe_layer_freq': [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 'n_shared_experts': None},
    "step-3.7-flash": {'hidden_size': 4096, 'vocab_size': 128896, 'intermediate_size': 11264, 'moe_intermediate_size': 1280, 'num_experts': 288, 'num_experts_per_tok': 8, 'max_position_embeddings': 65536, 'first_k_dense_replace': 3, 'n_shared_experts': 1},
    "nemotron-h-56b": {'hidden_size': 8192, 'vocab_size': 131072, 'intermediate_size': 32768, 'tie_word_embeddings': False, 'max_position_embeddings': 8192},
}


#: The ``vision_config`` of each multimodal preset's config.json (the fields that size the
#: tower, :mod:`kvcache_calculator.setup.vision`): vLLM loads the tower at the model dtype, so
#: the preset's loaded size is its published checkpoint's. Qwen3.5's two models share one tower
#: design but project to their own text width.
_QWEN35_VIT = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "in_channels": 3, "patch_size": 16,
               "temporal_patch_size": 2, "spatial_merge_size": 2, "num_position_embeddings": 2304,
               "deepstack_visual_indexes": []}
_VISION_CONFIGS: dict[str, dict] = {
    "llama-4-scout": {"model_type": "llama4_vision_model", "hidden_size": 1408, "intermediate_size": 5632,
                      "num_hidden_layers": 34, "image_size": 336, "patch_size": 14, "num_channels": 3,
                      "pixel_shuffle_ratio": 0.5, "projector_input_dim": 4096, "projector_output_dim": 4096,
                      "vision_output_dim": 4096},
    "qwen3.5-27b": {**_QWEN35_VIT, "out_hidden_size": 5120},
    "qwen3.5-397b-a17b": {**_QWEN35_VIT, "out_hidden_size": 4096},
    "kimi-k2.5": {"vt_hidden_size": 1152, "vt_intermediate_size": 4304, "vt_num_hidden_layers": 27, "patch_size": 14,
                  "init_pos_emb_height": 64, "init_pos_emb_width": 64, "merge_kernel_size": [2, 2],
                  "text_hidden_size": 7168},
    "gemma-4-26b-a4b": {"model_type": "gemma4_vision", "hidden_size": 1152, "intermediate_size": 4304,
                        "num_hidden_layers": 27, "head_dim": 72, "patch_size": 16, "position_embedding_size": 10240},
}
#: Where each tower's config comes from (the Llama 4 file of the reference folder holds the
#: text model only).
_VISION_SOURCES = {"llama-4-scout": "vision_config of meta-llama/Llama-4-Scout-17B-16E-Instruct's config.json "
                                    "on Hugging Face (equal to its checkpoint's module listing, 871,932,416)"}

_FP8_BLOCK = ("quantization_config of its config.json: quant_method fp8, fmt e4m3, weight_block_size "
              "[128, 128]")
#: Presets whose published checkpoint does not ship bf16 weights: id -> (the nearest
#: ``weight_dtype`` value, the format's own name where it is not that value, source). Each
#: agrees with :func:`~kvcache_calculator.setup.configjson.weight_format` on the reference config.json
#: (tests/test_presets.py). Every other preset's
#: config.json gives bfloat16 (``torch_dtype``/``dtype``) and no ``quantization_config``.
#: The scenario's ``weight_dtype`` stays bf16 by default (a contract); these only feed advice.
_PUBLISHED_WEIGHTS: dict[str, tuple[str, str, str]] = {
    "deepseek-v3": ("fp8", "", _FP8_BLOCK + "; its model card: FP8 weights only, from FP8 training"),
    "deepseek-r1": ("fp8", "", _FP8_BLOCK),
    "deepseek-v3.2": ("fp8", "", _FP8_BLOCK),
    "kimi-k2": ("fp8", "", _FP8_BLOCK),
    "kimi-k2.5": ("int4", "", "quantization_config of its config.json: compressed-tensors, 4-bit "
                  "symmetric int, group size 32, on the routed experts (attention, shared experts, dense "
                  "MLP and lm_head left in bf16, so int4 for every weight slightly undercounts)"),
    "mimo-v2-flash": ("fp8", "", _FP8_BLOCK),
    "gpt-oss-120b": ("fp4", "MXFP4", "quantization_config of its config.json: quant_method mxfp4 on the "
                     "MoE experts (attention, router, embeddings and lm_head in bf16); gpt-oss model card: "
                     "runs on one 80 GB GPU. MXFP4 is 4.25 bits per expert weight, so fp4 for every "
                     "weight undercounts a little: 54.5 GiB against the 60.8 GiB checkpoint"),
    "gpt-oss-20b": ("fp4", "MXFP4", "quantization_config of its config.json: quant_method mxfp4 on the "
                    "MoE experts; gpt-oss model card: runs within 16 GB"),
}


def _build_model(model_id: str, data: tuple) -> ModelArch:
    """The :class:`ModelArch` of one preset row (with its published weight format)."""
    name, repo, _file, total_b, active_b, params_source, fields, note = data
    config = text_config({**fields, **_SHAPE_FIELDS[model_id]})
    groups, notes = layer_groups(config)
    if note:
        notes.append(note)
    source = f"{_hf(repo)}; parameters: {params_source}"
    if model_id in _VISION_CONFIGS:
        config["vision_config"] = _VISION_CONFIGS[model_id]
        tower = vision_tower(config)
        notes.append(tower.note())
        source += (f"; vision tower {tower.params_b:.3f}B ({tower.family}), counted from the "
                   f"{_VISION_SOURCES.get(model_id, 'vision_config of that config.json')}, loaded at bf16")
    weight_dtype, weight_format = "bf16", ""
    if model_id in _PUBLISHED_WEIGHTS:
        weight_dtype, weight_format, weights_source = _PUBLISHED_WEIGHTS[model_id]
        source += f"; published weights {weight_format or weight_dtype.upper()}: {weights_source}"
    return ModelArch(name, groups, total_b, active_b, source, "; ".join(notes), weight_dtype, weight_format,
                     model_shape(config))


#: Model presets by id (read-only).
MODELS = MappingProxyType({mid: _build_model(mid, row) for mid, row in _MODEL_DATA.items()})

#: The config.json fields each model preset is built from (read-only; id -> dict).
MODEL_CONFIGS = MappingProxyType({mid: MappingProxyType({**row[6], **_SHAPE_FIELDS[mid]})
                                  for mid, row in _MODEL_DATA.items()})

#: For presets taken from a file of the reference ``hf-configs`` folder: id -> file name.
HF_CONFIG_FILES = MappingProxyType({mid: row[2] for mid, row in _MODEL_DATA.items() if row[2]})

_NV = "NVIDIA"
_CUDA = ("CUDA total: cudaMemGetInfo / torch total_memory as printed in public vLLM, Unsloth and "
         "PyTorch logs")
#: GPU presets by id (read-only). ``memory_gib``: as the driver reports it (nvidia-smi MiB / 1024);
#: ``cuda_memory_gib``: as CUDA reports it (what vLLM's gpu_memory_utilization multiplies).
GPUS = MappingProxyType({g.id: g for g in (
    GPU("h100-sxm", "H100 SXM 80GB", 79.6, 989.4, 3.35,
        f"{_NV} H100 Tensor Core GPU datasheet: BF16 1,979 TFLOPS with sparsity (989 dense), "
        f"3.35 TB/s; driver reports 81,559 MiB; {_CUDA}: 79.19 GiB (vLLM 0.19 debug logs, "
        "llm-d-planner accuracy runs)", 79.19),
    GPU("h100-pcie", "H100 PCIe 80GB", 79.6, 756.0, 2.0,
        f"{_NV} H100 Tensor Core GPU datasheet: BF16 1,513 TFLOPS with sparsity (756 dense), "
        f"2.0 TB/s; driver reports 81,559 MiB; {_CUDA}: 81,008 MiB = 79.11 GiB", 79.11),
    GPU("h100-nvl", "H100 NVL 94GB", 93.5, 835.0, 3.9,
        f"{_NV} H100 NVL datasheet: 94 GB HBM3, 3.9 TB/s, BF16 1,671 TFLOPS with sparsity (835 dense); "
        f"{_CUDA}: 93.02 GiB", 93.02),
    GPU("h800", "H800 SXM 80GB", 79.6, 989.4, 3.35,
        f"{_NV} H800: the H100 SXM's 80 GB HBM3 and compute (export variant with reduced NVLink); "
        "CUDA total taken as the H100 SXM's (no public reading found)", 79.19),
    GPU("h20", "H20 96GB", 95.5, 148.0, 4.0,
        f"{_NV} H20: 96 GB HBM3, 4.0 TB/s, BF16 296 TFLOPS with sparsity (148 dense); "
        f"{_CUDA}: 97,285 MiB = 95.00 GiB", 95.0),
    GPU("h200", "H200 141GB", 140.4, 989.4, 4.8,
        f"{_NV} H200 Tensor Core GPU datasheet: 141 GB HBM3e, 4.8 TB/s, BF16 1,979 TFLOPS with "
        f"sparsity (989 dense); driver reports 143,771 MiB; {_CUDA}: 143,156 MiB = 139.80 GiB", 139.8),
    GPU("b200", "B200 180GB", 179.0, 2250.0, 8.0,
        f"{_NV} HGX B200 datasheet: 8 GPUs, FP16/BF16 36 PFLOPS with sparsity (2.25 PFLOPS dense "
        "per GPU), 8 TB/s per GPU (later HGX B200 datasheet revisions list 180 GB and 7.7 TB/s); "
        f"driver reports about 183,359 MiB; {_CUDA}: 182,642 MiB = 178.36 GiB", 178.36),
    GPU("b300", "B300 288GB", 268.6, 2250.0, 8.0,
        f"{_NV} Blackwell Ultra (HGX B300): 288 GB HBM3e, 8 TB/s, dense BF16 as B200; nvidia-smi "
        "shows 275,040 MiB; CUDA total estimated 0.7 GiB below it (no public reading found)", 267.9),
    GPU("gb200", "GB200 (per GPU) 186GB", 185.0, 2500.0, 8.0,
        f"{_NV} GB200 NVL72: 13.4 TB HBM3e over 72 GPUs, 8 TB/s and 2.5 PFLOPS dense FP16/BF16 per "
        f"GPU; nvidia-smi 189,471 MiB; {_CUDA}: 184.31 GiB", 184.31),
    GPU("a100-80gb", "A100 SXM 80GB", 80.0, 312.0, 2.039,
        f"{_NV} A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense (624 with sparsity), "
        f"80GB SXM 2,039 GB/s; driver reports 81,920 MiB; {_CUDA}: 79.15 GiB", 79.15),
    GPU("a100-40gb", "A100 40GB", 40.0, 312.0, 1.555,
        f"{_NV} A100 Tensor Core GPU datasheet: BF16 312 TFLOPS dense, 40GB 1,555 GB/s; "
        f"driver reports 40,960 MiB; {_CUDA}: 39.49 GiB (older drivers 39.56)", 39.49),
    GPU("l40s", "L40S 48GB", 44.5, 362.05, 0.864,
        f"{_NV} L40S datasheet: BF16 362.05 TFLOPS dense (733 with sparsity), 48 GB GDDR6, "
        f"864 GB/s; nvidia-smi shows about 46,068 MiB with ECC on; {_CUDA}: 44.40 GiB", 44.40),
    GPU("l20", "L20 48GB", 44.5, 119.5, 0.864,
        f"{_NV} L20: 48 GB GDDR6, 864 GB/s, BF16 239 TFLOPS with sparsity (119.5 dense); nvidia-smi "
        "46,068 MiB with ECC on; CUDA total taken as 44.52 GiB (47.50 with ECC off)", 44.52),
    GPU("l4", "L4 24GB", 22.0, 121.0, 0.3,
        f"{_NV} L4 datasheet: BF16 242 TFLOPS with sparsity (121 dense), 24 GB GDDR6, 300 GB/s; "
        f"nvidia-smi shows about 23,034 MiB; {_CUDA}: 22.16 GiB", 22.16),
    GPU("a10g", "A10G 24GB", 22.5, 70.0, 0.6,
        "AWS A10G (EC2 G5): 24 GB GDDR6, 600 GB/s; NVIDIA publishes no datasheet, its dense BF16 "
        f"is taken as 70 TFLOPS (the A10's 125 scaled to the A10G's lower clocks); {_CUDA}: "
        "22,723 MiB = 22.19 GiB", 22.19),
    GPU("rtx-4090", "GeForce RTX 4090 24GB", 24.0, 165.2, 1.008,
        f"{_NV} Ada Lovelace GPU architecture whitepaper: RTX 4090 BF16 tensor 165.2 TFLOPS dense "
        f"(FP32 accumulate), 1,008 GB/s; driver reports 24,564 MiB; {_CUDA}: 23.64 GiB", 23.64),
    GPU("rtx-3090", "GeForce RTX 3090 24GB", 24.0, 71.0, 0.936,
        f"{_NV} Ampere GA102 GPU architecture whitepaper: RTX 3090 FP16/BF16 tensor 71 TFLOPS dense "
        "(FP32 accumulate), 936 GB/s, 24 GB GDDR6X; CUDA total 23.58 GiB as vLLM logs it "
        "(vllm-project/vllm#10517; PyTorch reports 23.69 on other drivers, vllm-project/vllm#2140)",
        23.58),
    GPU("rtx-5090", "GeForce RTX 5090 32GB", 32.0, 209.5, 1.792,
        f"{_NV} RTX Blackwell GPU architecture whitepaper: RTX 5090 FP16/BF16 tensor 209.5 TFLOPS "
        "dense (FP32 accumulate), 1,792 GB/s, 32 GB GDDR7; CUDA total 31.36 GiB (PyTorch OOM "
        "message, TrajectoryCrafter/TrajectoryCrafter#20)", 31.36),
    GPU("rtx-6000-ada", "RTX 6000 Ada 48GB", 44.99, 364.2, 0.96,
        f"{_NV} RTX 6000 Ada Generation datasheet: 1,457 TFLOPS FP8 with sparsity (BF16 364.2 "
        "dense), 960 GB/s, 48 GB GDDR6 with ECC; nvidia-smi 46,068 MiB; CUDA total 44.43 GiB "
        "(PyTorch OOM message, DINGYANB/MTVCrafter#21)", 44.43),
    GPU("a10", "A10 24GB", 22.49, 125.0, 0.6,
        f"{_NV} A10 Tensor Core GPU datasheet: BF16 125 TFLOPS dense (250 with sparsity), 600 GB/s, "
        "24 GB GDDR6; nvidia-smi 23,028 MiB; CUDA total 22.18 GiB (vLLM OOM message, "
        "OpenBMB/MiniCPM-V#640)", 22.18),
    GPU("t4", "Tesla T4 16GB", 15.0, 65.0, 0.32,
        f"{_NV} T4 datasheet: no BF16 (Turing); FP16 tensor 65 TFLOPS, 320 GB/s, 16 GB GDDR6; "
        "nvidia-smi 15,360 MiB; CUDA total 14.57 GiB (vLLM OOM message on 4 x T4, "
        "deepseek-ai/DeepSeek-R1#546; 14.58 in datawhalechina/self-llm#162)", 14.57),
    GPU("v100-32gb", "Tesla V100 SXM2 32GB", 32.0, 125.0, 0.9,
        f"{_NV} V100 datasheet: no BF16 (Volta); FP16 tensor 125 TFLOPS (SXM2), 900 GB/s, 32 GB "
        "HBM2; CUDA total 31.74 GiB (PyTorch OOM message, liucongg/ChatGLM-Finetuning#73)", 31.74),
    GPU("mi300x", "Instinct MI300X 192GB", 192.0, 1307.4, 5.3,
        "AMD Instinct MI300X data sheet: BF16 1,307.4 TFLOPS dense (2,614.9 with sparsity), "
        f"192 GB HBM3, 5.3 TB/s; {_CUDA}: 191.98 GiB (ROCm)", 191.98),
    GPU("mi325x", "Instinct MI325X 256GB", 256.0, 1307.4, 6.0,
        "AMD Instinct MI325X data sheet: 256 GB HBM3E, 6.0 TB/s, BF16 1,307.4 TFLOPS dense; total "
        "estimated 20 MiB below 256 GiB as ROCm reports MI300X and MI355X (no public reading found)", 255.98),
    GPU("mi355x", "Instinct MI355X 288GB", 288.0, 2516.6, 8.0,
        "AMD Instinct MI355X data sheet: 288 GB HBM3E, 8 TB/s, BF16 2.5 PFLOPS dense; "
        f"{_CUDA}: 287.98 GiB (ROCm)", 287.98),
)})


#: The names engineers commonly give the GPU presets (``h100`` is the SXM part, ``a100`` the
#: 80 GB one, as clouds and papers mostly mean them) -> preset id. Keys are as
#: :func:`canonical_gpu` normalises them.
GPU_ALIASES = MappingProxyType({
    "h100": "h100-sxm", "h100-80gb": "h100-sxm", "h100-sxm5": "h100-sxm", "h100sxm": "h100-sxm",
    "h100-sxm-80gb": "h100-sxm", "h100pcie": "h100-pcie", "h100-pcie-80gb": "h100-pcie",
    "h100nvl": "h100-nvl", "h100-nvl-94gb": "h100-nvl", "h200-141gb": "h200", "h200-sxm": "h200",
    "h800-sxm": "h800", "h20-96gb": "h20", "b200-180gb": "b200", "b300-288gb": "b300",
    "gb200-nvl72": "gb200", "a100": "a100-80gb", "a100-80g": "a100-80gb", "a100-sxm": "a100-80gb",
    "a100-sxm4-80gb": "a100-80gb", "a100-40g": "a100-40gb", "a100-sxm4-40gb": "a100-40gb",
    "l40s-48gb": "l40s", "l4-24gb": "l4", "a10g-24gb": "a10g", "l20-48gb": "l20",
    "4090": "rtx-4090", "rtx4090": "rtx-4090", "geforce-rtx-4090": "rtx-4090",
    "3090": "rtx-3090", "rtx3090": "rtx-3090", "geforce-rtx-3090": "rtx-3090",
    "5090": "rtx-5090", "rtx5090": "rtx-5090", "geforce-rtx-5090": "rtx-5090",
    "rtx6000-ada": "rtx-6000-ada", "rtx-6000": "rtx-6000-ada", "a10-24gb": "a10", "tesla-t4": "t4",
    "t4-16gb": "t4", "v100": "v100-32gb", "v100-32g": "v100-32gb", "v100-sxm2-32gb": "v100-32gb",
    "mi300": "mi300x", "mi325": "mi325x", "mi355": "mi355x",
})


def canonical_gpu(name: str) -> str:
    """The GPU preset id ``name`` stands for: a preset id itself, a common alias
    (:data:`GPU_ALIASES`, matched in lower case with spaces and underscores as hyphens), or
    ``name`` unchanged when it is neither (so that its own error names it)."""
    text = str(name).strip().lower().replace("_", "-").replace(" ", "-")
    if text in GPUS or text == "custom":
        return text
    return GPU_ALIASES.get(text, str(name))


def nearest_ids(value: object, known, aliases=None) -> list[str]:
    """Up to three ids of ``known`` close to ``value`` (a typo's likely meaning), best first;
    ``aliases`` (name -> id) are matched too and give their id."""
    names = {**{k: k for k in known}, **(aliases or {})}
    close = difflib.get_close_matches(str(value).strip().lower(), list(names), n=6, cutoff=0.6)
    return list(dict.fromkeys(names[c] for c in close))[:3]


def _unknown(key: str, value: object, known, aliases=None) -> ScenarioError:
    near = nearest_ids(value, known, aliases)
    hint = f"; did you mean {' or '.join(near)}?" if near else ""
    return ScenarioError(key, value, "must be one of " + ", ".join(known) + " (or custom)" + hint)


def get_model(model_id: str) -> ModelArch:
    """The :class:`ModelArch` preset ``model_id``; raises :class:`ScenarioError` ("model") if unknown."""
    try:
        return MODELS[model_id]
    except (KeyError, TypeError):
        raise _unknown("model", model_id, MODELS) from None


def get_gpu(gpu_id: str) -> GPU:
    """The :class:`GPU` preset ``gpu_id``; raises :class:`ScenarioError` ("gpu") if unknown."""
    try:
        return GPUS[gpu_id]
    except (KeyError, TypeError):
        raise _unknown("gpu", gpu_id, GPUS, GPU_ALIASES) from None


def list_models() -> list[dict]:
    """Every model preset as plain JSON types: id, name, parameters, attention, KV bytes, source.

    ``kv_bytes_per_token`` is at bf16 over the layers that grow with context
    (:func:`~kvcache_calculator.setup.architecture.kv_bytes_per_token`);
    ``kv_bytes_per_sequence_fixed`` the bf16 bytes a sequence holds in window-capped and
    linear-state layers at block size 16. ``weight_dtype`` / ``weight_format``: the published
    checkpoint's weight format (:class:`~kvcache_calculator.setup.architecture.ModelArch`);
    ``context_tokens`` its context length (``max_position_embeddings`` of its config.json).
    """
    rows = []
    for model_id, arch in MODELS.items():
        rows.append({"id": model_id, "name": arch.name, "params_b": arch.params_b,
                     "active_params_b": arch.active_params_b, "attention": arch.attention,
                     "num_layers": arch.num_layers,
                     "kv_bytes_per_token": kv_bytes_per_token(arch, "bf16"),
                     "kv_bytes_per_sequence_fixed": kv_bytes_per_sequence_fixed(arch, "bf16"),
                     "weight_dtype": arch.weight_dtype, "weight_format": arch.weight_format,
                     "context_tokens": arch.shape.context_tokens if arch.shape is not None else None,
                     "source": arch.source, "notes": arch.notes})
    return rows


def list_gpus() -> list[dict]:
    """Every GPU preset as plain JSON types."""
    return [gpu.to_dict() for gpu in GPUS.values()]


__all__ = ["DEFAULT_MODEL", "DEFAULT_GPU", "MODELS", "GPUS", "GPU_ALIASES", "HF_CONFIG_FILES", "MODEL_CONFIGS",
           "canonical_gpu", "get_model", "get_gpu", "list_models", "list_gpus", "nearest_ids"]
