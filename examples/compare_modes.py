"""The original calculator's example, answered by both modes side by side.

    python examples/compare_modes.py

"classic" reproduces the original project's formula (1 - 1/turns, scaled by the share of
active conversations that fit); "model" is the characteristic-time model of docs/model.md §5.
"""

from kvcache_calculator import (
    ConversationPattern, KVCacheCalculator, KVCacheDtype, ModelConfig, ModelDtype, SystemConfig,
)

MODELS = {
    # the original example's "Llama-3-8B" with the correct 8 KV heads
    "Llama-3-8B": ModelConfig(32, 32, 8, 128, ModelDtype.FP16, KVCacheDtype.FP16, 16.0),
    "Mistral-Small-24B": ModelConfig(40, 32, 8, 128, ModelDtype.FP16, KVCacheDtype.FP16, 48.0),
}
SYSTEM = SystemConfig(available_memory_gb=80)
PATTERNS = {
    "5 turns, 1 conv/s, 30 s apart": ConversationPattern(5, 1.0, 30, 1000),
    "5 turns, 2 conv/s, 30 s apart": ConversationPattern(5, 2.0, 30, 1000),
    "10 turns, 0.5 conv/s, 60 s apart": ConversationPattern(10, 0.5, 60, 800),
}


def main() -> None:
    classic, model = KVCacheCalculator(mode="classic"), KVCacheCalculator(mode="model")
    print(f"{'model':<18} {'workload':<34} {'classic':>8} {'model':>8}  {'T (s)':>7}")
    for name, cfg in MODELS.items():
        for label, pattern in PATTERNS.items():
            a = classic.calculate_conversation_hit_rate(cfg, SYSTEM, pattern)
            b = model.calculate_conversation_hit_rate(cfg, SYSTEM, pattern)
            t = b["characteristic_time_s"]
            print(f"{name:<18} {label:<34} {a['hit_rate']:>8.1%} {b['hit_rate']:>8.1%}  "
                  f"{'inf' if t is None else f'{t:7.1f}':>7}")
    need = classic.optimize_memory_allocation(MODELS["Llama-3-8B"], SYSTEM, PATTERNS["5 turns, 1 conv/s, 30 s apart"])
    need_m = model.optimize_memory_allocation(MODELS["Llama-3-8B"], SYSTEM, PATTERNS["5 turns, 1 conv/s, 30 s apart"])
    print(f"\nMemory for an 80% hit rate (Llama-3-8B, 1 conv/s): classic {need['recommended_memory_gb']:.1f} GB, "
          f"model {need_m['recommended_memory_gb'] or float('nan'):.1f} GB "
          f"(ceiling {need_m.get('max_token_hit_rate', 1):.1%})")


if __name__ == "__main__":
    main()
