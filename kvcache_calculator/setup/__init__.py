"""Setup: from a scenario to what a calculation runs on.

Model architectures and their KV bytes (:mod:`.architecture`), GPUs (:mod:`.gpus`), reading a
Hugging Face ``config.json`` (:mod:`.configjson`) and importing one (:mod:`.hfconfig`), the
model and GPU presets (:mod:`.presets`), the KV-cache capacity of one serving instance
(:mod:`.capacity`), and :func:`.resolve.resolve`, which turns a scenario into the
:class:`.resolve.Setup` everything downstream takes.
"""
