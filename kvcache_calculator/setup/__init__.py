"""Setup: from a scenario to what a calculation runs on.

Model architectures and their KV bytes (:mod:`.architecture`), GPU presets (:mod:`.gpus`),
Hugging Face ``config.json`` import (:mod:`.hfconfig`), model presets (:mod:`.presets`) and the
KV-cache capacity of one serving instance (:mod:`.capacity`).
"""
