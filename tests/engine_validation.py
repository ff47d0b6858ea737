"""Public engine start-up logs against the calculator's prediction (docs/engines.md §7).

``tests/data/engine_starts.json`` holds vLLM and SGLang start-ups quoted from public issues,
docs and repositories, each with its source, its settings and the figures it logged;
``tests/data/engine_models.json`` the ``config.json`` of each start's model. For every start
this module builds the prediction the way a user would get it:

- the model from :func:`kvcache_calculator.setup.hfconfig.import_config` on its config.json;
- the GPU preset that matches the log's GPU name, its memory overridden (``gpu_memory_gib``)
  by the CUDA total where the log states one;
- a :class:`~kvcache_calculator.scenario.Scenario` with the start's engine and version,
  utilisation (``gpu_memory_utilization`` / ``mem_fraction_static``, the engine's default
  when not set), tensor parallelism, batch limits, ``enforce_eager`` (``cuda_graphs=off``),
  weight dtype (the config's ``quantization_config``, else the start's ``quantization`` or
  ``dtype``) and KV dtype;
- :func:`kvcache_calculator.setup.capacity.compute_capacity`, whose memory breakdown gives
  the KV GiB per GPU the engine would allocate.

vLLM logs that figure ("Available KV cache memory"). SGLang logs a token count
(``max_total_num_tokens``), turned into GiB with the model's KV bytes per token per GPU.

Each start is ``validated`` or ``excluded`` with a one-line reason (:func:`exclusion`). A
start is excluded for what it is (an engine or setting the calculator does not model, a
figure it cannot be compared with, an input that is not known), never for its error.

Run ``python tests/engine_validation.py`` to print the table as markdown.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:   # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from kvcache_calculator.errors import ScenarioError  # noqa: E402
from kvcache_calculator.scenario import ENGINE_VERSIONS, Scenario  # noqa: E402
from kvcache_calculator.setup.capacity import compute_capacity  # noqa: E402
from kvcache_calculator.setup.configjson import weight_format  # noqa: E402
from kvcache_calculator.setup.engine import VLLM_OLDEST, VLLM_V1_DEFAULT  # noqa: E402
from kvcache_calculator.setup.hfconfig import import_config  # noqa: E402
from kvcache_calculator.setup.resolve import resolve_gpu  # noqa: E402
from kvcache_calculator.setup.vision import vision_tower  # noqa: E402

DATA = ROOT / "tests" / "data"
STARTS_PATH = DATA / "engine_starts.json"
MODELS_PATH = DATA / "engine_models.json"
GIB = 2 ** 30

#: Fields missing from a config.json copy in engine_models.json, completed from the base
#: model's own config.json (the copy of the FP8 quant was cut off after ``rope_theta``).
CONFIG_COMPLETIONS = {
    "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic": (
        {"vocab_size": 128256, "tie_word_embeddings": False, "torch_dtype": "bfloat16"},
        "vocab_size, tie_word_embeddings and torch_dtype from meta-llama/Llama-3.3-70B-Instruct's config.json"),
}

#: The multimodal fields of three config.json files, as published (Hugging Face repositories
#: google/gemma-3-12b-it, meta-llama/Llama-4-Scout-17B-16E-Instruct and
#: mistralai/Mistral-Small-3.1-24B-Instruct-2503, config.json; the same values are quoted in
#: transformers' and TensorRT-LLM's tests).
VISION_CONFIGS = {
    "google/gemma-3-12b-it": {
        "model_type": "gemma3", "mm_tokens_per_image": 256,
        "vision_config": {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                          "model_type": "siglip_vision_model", "num_attention_heads": 16,
                          "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False}},
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": {
        "vision_config": {"hidden_act": "gelu", "hidden_size": 1408, "image_size": 336,
                          "intermediate_size": 5632, "model_type": "llama4_vision_model",
                          "multi_modal_projector_bias": False, "num_attention_heads": 16, "num_channels": 3,
                          "num_hidden_layers": 34, "patch_size": 14, "pixel_shuffle_ratio": 0.5,
                          "projector_input_dim": 4096, "projector_output_dim": 4096,
                          "vision_output_dim": 4096}},
    "mistralai/Mistral-Small-3.1-24B-Instruct-2503": {
        "vision_config": {"head_dim": 64, "hidden_act": "silu", "hidden_size": 1024, "image_size": 1540,
                          "intermediate_size": 4096, "model_type": "pixtral", "num_attention_heads": 16,
                          "num_channels": 3, "num_hidden_layers": 24, "patch_size": 14}},
}
#: RedHat's w8a8 quant of Mistral-Small-3.1 keeps the base model's vision_config.
VISION_CONFIGS["RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8"] = \
    VISION_CONFIGS["mistralai/Mistral-Small-3.1-24B-Instruct-2503"]
for _repo, _fields in VISION_CONFIGS.items():
    CONFIG_COMPLETIONS[_repo] = (_fields, "vision_config from the published config.json (the copy held was cut "
                                          "to the text model)")

#: Log GPU names (lower case, first match wins) and the preset each means.
GPU_NAMES = (
    (r"h100.*(96 ?gb|nvl)", "h100-nvl"), (r"h100.*pcie", "h100-pcie"), (r"h100", "h100-sxm"),
    (r"h800", "h800"), (r"h200", "h200"), (r"\bh20\b", "h20"), (r"b200", "b200"), (r"gb200", "gb200"),
    (r"a100.*40 ?gb", "a100-40gb"), (r"a100", "a100-80gb"), (r"l40s", "l40s"), (r"\bl20\b", "l20"),
    (r"\bl4\b", "l4"), (r"a10g", "a10g"), (r"4090", "rtx-4090"), (r"3090", "rtx-3090"), (r"5090", "rtx-5090"),
    (r"mi300x|gfx942", "mi300x"),
    (r"mi325x", "mi325x"), (r"mi355x", "mi355x"),
)

#: Starts of the image ``vllm/vllm-openai:latest`` whose log does not state the release: id prefix,
#: the release taken and the note. In January 2026 ``latest`` was 0.13.0 (PyPI 2025-12-19), 0.14.0
#: (2026-01-20), 0.14.1 (01-24) or 0.15.0 (01-29); all four profile 8,192 tokens over 1,024
#: sequences on an H100 and take the sort path of the sampler (FlashInfer's is opt-in from 0.12,
#: the Triton kernel comes in 0.17: :data:`kvcache_calculator.setup.engine.SAMPLER_BYTES_PER_LOGIT`),
#: so their accounting is the same and 0.14.0 stands for them. Their logged activation peaks
#: (4.76 GiB for Llama-3.1-8B, 4.84 for the 70B at TP 2, 7.38 for gpt-oss-20b) are 37-38 B per logit.
IMAGE_TAG_VERSIONS = (("vllm-latest-2026-01-", (0, 14, 0),
                       "version 0.14.0 inferred: image 'latest' of January 2026 (0.13.0-0.15.0, same accounting)"),)

#: V0 starts whose log does not state the version: the release read from the worker's log format
#: (``vllm/worker/worker.py``): "Memory profiling results: total_gpu_memory=..." on one line is
#: 0.6.4.x (0.6.5 replaced it); "the current vLLM instance can use" (one line or, in the PR that
#: introduced it, one figure per line) with "non_torch_memory"/"PyTorch activation peak memory"
#: is 0.6.5-0.7.x, whose accounting is the same (:mod:`kvcache_calculator.setup.engine`).
V0_LOG_FORMATS = ((r"Memory profiling results: total_gpu_memory=", (0, 6, 4), "0.6.4.x"),
                  (r"current vLLM instance can use|activation peak memory takes", (0, 6, 5), "0.6.5-0.7.x"))

#: Why a start is excluded, where its fields do not say it: the patched build, the numbers
#: reported in prose, settings of the run that the calculator does not model.
EXCLUDED = {
    "sglang-qwen3-30b-a3b-amd-288gb-aiter-patched":
        "patched build: the PR changes SGLang's KV budget, and the GPU is not named",
    "sglang-dsv4-flash-fp8-16xl20-pp2-tp8":
        "token counts reported in prose; pipeline parallel; DeepSeek-V4 compressed attention not modelled",
    "sglang-dsv4-flash-fp8-8xl20-tp8":
        "token count reported in prose ('about'); DeepSeek-V4 compressed attention not modelled",
    "sglang-dsv4-flash-fp8-8xl20-tp8-mtp":
        "token count reported in prose; MTP speculative decoding; DeepSeek-V4 compressed attention not modelled",
    "sglang-fa3-llama31-8b-h100-pr4760":
        "GPU not named, and mem_fraction_static not stated: the default of that SGLang build (March 2025) "
        "used an older rule than the one modelled",
    "sglang-mi300x-llama3-8b-bench-latency-2024-10":
        "mem_fraction_static not stated: the default of that SGLang build (October 2024) used an older "
        "rule than the one modelled",
    "vllm-0.6.4.post1-qwen25-72b-gptq-a40-fail":
        "vGPU (A40-48Q): 0.6.4 charges all non-torch memory, here 4.09 GiB that the vGPU holds "
        "(the calculator assumes a dedicated GPU's 0.35)",
    "vllm-v0-llama3-8b-a100-40gb":
        "activation peak 9.37 GiB against 1.26 at the V0 defaults (8,192 tokens, 256 sequences): "
        "settings not shown in the excerpt (it matches max_num_seqs about 2,048 through the sampler)",
    "vllm-v1-qwen3-235b-a22b-fp8-4xh100":
        "vLLM version not stated (V1 of July 2025: 0.8 or 0.9, whose accounting differ); LMCache KV "
        "connector enabled (its buffers are not modelled)",
    "vllm-v1-llama31-8b-l40s":
        "V1 before 0.9 (April 2025, about 0.8.4; version not stated): its profiler charged the CUDA "
        "context to the budget; only the token count is logged",
    "vllm-v1-kimi-linear-48b-awq-2x3090":
        "vLLM version not stated; KV figure from the reporter's prose; config.json incomplete",
    "vllm-0.19.0-qwen35-27b-h20-hybrid":
        "only the token count is logged, which for a hybrid model is the pool divided by its "
        "layer groups (no GiB to compare)",
}


@dataclass(frozen=True)
class Row:
    """One start: what it ran, what it logged and what the calculator predicts, per GPU."""

    id: str
    engine: str
    version: str
    model: str
    gpu: str                       # the preset used ("" when none)
    tp: int
    util: float | None             # the utilisation used (the engine's default when not set)
    logged_kv_gib: float | None
    predicted_kv_gib: float | None
    status: str                    # validated | excluded
    reason: str                    # why excluded ("" when validated)
    note: str = ""                 # how an input was read, where it needed a choice

    @property
    def error(self) -> float | None:
        """``predicted / logged - 1``, or None when either is missing."""
        if self.logged_kv_gib and self.predicted_kv_gib is not None:
            return self.predicted_kv_gib / self.logged_kv_gib - 1
        return None

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {**asdict(self), "error": self.error}


def load_starts() -> list[dict]:
    """The starts of ``tests/data/engine_starts.json``."""
    return json.loads(STARTS_PATH.read_text(encoding="utf-8"))


def load_models() -> dict:
    """``tests/data/engine_models.json``: model key -> {repo, source, config}, and ``starts``."""
    return json.loads(MODELS_PATH.read_text(encoding="utf-8"))


def model_config(start: dict, models: dict) -> tuple[dict, str]:
    """The config.json of the start's model, completed where :data:`CONFIG_COMPLETIONS` says;
    and a note saying what was completed."""
    key = models["starts"][start["id"]]
    config = models[key]["config"]
    if key in CONFIG_COMPLETIONS:
        fields, source = CONFIG_COMPLETIONS[key]
        return {**config, **fields}, source
    return config, ""


def gpu_preset(start: dict) -> tuple[str | None, str]:
    """The GPU preset id the log's GPU name means, or None; and a note when it needed a choice.

    An A100 whose memory is not named is the 80 GB part only when the logged weights and KV
    cache exceed what a 40 GB card holds."""
    # The name before any parenthesis: what follows is the collector's commentary.
    name = start["gpu"].split(" (")[0].lower()
    for pattern, preset in GPU_NAMES:
        if re.search(pattern, name):
            break
    else:
        return None, ""
    note = ""
    if "gfx942" in name:
        note = "gfx942 (MI300X or MI325X) with about 185 GB free per GPU: MI300X"
    if preset == "h100-nvl":
        note = "H100 '96 GB NVLink' taken as the H100 NVL (96 GB of HBM3, 94 GB usable)"
    if preset == "a100-80gb" and "80" not in name:
        logged = start["logged"]
        if (logged.get("weights_gib") or 0) + (logged.get("kv_cache_gib") or 0) <= 40:
            return None, ""
        note = "A100 memory not named: 80 GB, since the logged weights and KV cache exceed 40 GB"
    return preset, note


def vllm_version(text: object) -> tuple[int, int, int] | None:
    """``"0.10.1.1"`` -> ``(0, 10, 1)``; None when the version is not stated."""
    match = re.match(r"v?(\d+)\.(\d+)(?:\.(\d+))?", str(text or ""))
    return (int(match[1]), int(match[2]), int(match[3] or 0)) if match else None


def start_version(start: dict) -> tuple[tuple[int, int, int] | None, str]:
    """The vLLM release of a start: stated, taken from the image tag and date
    (:data:`IMAGE_TAG_VERSIONS`) or read from a V0 log's format (:data:`V0_LOG_FORMATS`); and a
    note when it was inferred."""
    version = vllm_version(start["engine_version"])
    if version is not None:
        return version, ""
    for prefix, release, note in IMAGE_TAG_VERSIONS:
        if start["id"].startswith(prefix):
            return release, note
    if not start["id"].startswith("vllm-v0-"):
        return None, ""
    text = start.get("quote", "") + " " + start.get("notes", "")
    for pattern, release, label in V0_LOG_FORMATS:
        if re.search(pattern, text):
            return release, f"version {label}, read from the V0 worker's log format"
    return None, ""


def scenario_version(version: tuple[int, ...]) -> str:
    """The ``engine_version`` key for a vLLM release: ``0.6.x`` by patch, later releases by
    minor version, clamped to the newest modelled."""
    newest = ENGINE_VERSIONS[-1]
    text = f"{version[0]}.{version[1]}.{version[2]}" if version[:2] == (0, 6) else f"{version[0]}.{version[1]}"
    return text if text in ENGINE_VERSIONS else newest


_QUANT_NAMES = (("w8a8", "int8"), ("int8", "int8"), ("w4a16", "int4"), ("int4", "int4"), ("nvfp4", "fp4"),
                ("fp8", "fp8"))
_QUANT_METHODS = {"fp8": "fp8", "mxfp4": "fp4", "gptq": "int4", "gptq_marlin": "int4", "awq": "int4",
                  "awq_marlin": "int4"}
_TORCH_DTYPES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


def weight_dtype(start: dict, config: dict) -> tuple[str | None, str]:
    """The ``weight_dtype`` key for a start (None: the checkpoint's own, read from its
    config.json) and a note when it did not come from the config.

    The config's ``quantization_config`` wins. Without one, the start's ``quantization``
    (``fp8``, ``gptq``, ``awq``...; ``compressed-tensors`` and ``modelopt`` by the scheme in
    the repository name, ``w8a8`` or ``w4a16``), else a ``dtype`` among the engine's
    non-default arguments (``float32``)."""
    if weight_format(config)[2].startswith("quantization_config"):
        return None, ""
    method = (start.get("quantization") or "").lower()
    model = start["model"].lower()
    if method:
        dtype = next((d for part, d in _QUANT_NAMES if part in model), None) or _QUANT_METHODS.get(method)
        if dtype:
            return dtype, f"weights {dtype}: config.json has no quantization_config; start says {method}"
    served = re.search(r"(?<!\w)'dtype': '(\w+)'", start.get("quote", ""))
    if served and _TORCH_DTYPES.get(served[1]) not in (None, weight_format(config)[0]):
        dtype = _TORCH_DTYPES[served[1]]
        return dtype, f"weights {dtype}: served with dtype={served[1]}"
    return None, ""


def is_vision_model(config: dict) -> bool:
    """Whether a config.json is a multimodal model (its architecture generates from images
    too), whose vision tower vLLM loads and whose encoder it profiles at start-up."""
    names = config.get("architectures") or []
    return "vision_config" in config or any(str(n).endswith("ForConditionalGeneration") for n in names)


def exclusion(start: dict, config: dict | None, preset: str | None) -> str:
    """Why a start cannot validate the calculator, or "" when it can.

    Validated: vLLM from 0.6 (V0 and V1) or SGLang, a model that imports, a GPU with a preset
    (or whose total the log states), known utilisation (or the engine's stable default), no
    pipeline parallelism, a vision tower sized from the config (if any), a logged KV figure the
    calculator can compare."""
    if start["id"] in EXCLUDED:
        return EXCLUDED[start["id"]]
    reasons = []
    engine = start["engine"]
    if engine == "vllm":
        version, _ = start_version(start)
        if version is None:
            reasons.append("vLLM version not stated")
        elif version < VLLM_OLDEST:
            reasons.append(f"vLLM {start['engine_version']} is older than the oldest release modelled "
                           f"({'.'.join(map(str, VLLM_OLDEST))})")
        # The data set marks failed starts in their id. A start that failed because its KV cache
        # holds less than max_model_len logged its KV figure first: that one still validates.
        if "fail" in start["id"] and "maximum number of tokens that can be stored in KV cache" not in start["quote"]:
            reasons.append("failed start")
    if (start.get("pipeline_parallel_size") or 1) > 1:
        reasons.append("pipeline parallel: each GPU holds a share of the layers (not modelled)")
    if preset is None and not start.get("gpu_total_gib"):
        name = start["gpu"].split(" (")[0]
        reasons.append("GPU not named" if start["gpu"].startswith("not named") or "model not named" in start["gpu"]
                       else f"no GPU preset for {name} and the log does not state its total")
    if config is not None and is_vision_model(config) and vision_tower(config) is None:
        reasons.append("vision model whose config.json copy has no vision_config: the tower vLLM loads "
                       "is not sized")
    if config is None:
        reasons.append("config.json not held")
    logged = start["logged"]
    if engine == "vllm" and not logged.get("kv_cache_gib"):
        reasons.append("no 'Available KV cache memory' figure logged")
    if engine == "sglang" and not logged.get("max_total_num_tokens"):
        reasons.append("no max_total_num_tokens logged")
    return "; ".join(reasons)


def scenario_for(start: dict, preset: str | None, dtype: str | None) -> Scenario:
    """The scenario a user would enter for the start (module docstring)."""
    values: dict = {"engine": start["engine"], "num_gpus": start["tensor_parallel_size"] or 1}
    if preset is None:
        values.update(gpu="custom", gpu_memory_gib=start["gpu_total_gib"])
    else:
        values["gpu"] = preset
        if start.get("gpu_total_gib"):
            values["gpu_memory_gib"] = start["gpu_total_gib"]
    if start["engine"] == "vllm":
        version, _ = start_version(start)
        if version is not None and version >= VLLM_OLDEST:
            values["engine_version"] = scenario_version(version)
        values["gpu_mem_util"] = start.get("gpu_memory_utilization")
        values["max_num_seqs"] = start.get("max_num_seqs")
        values["max_num_batched_tokens"] = start.get("max_num_batched_tokens")
        values["max_model_len"] = start.get("max_model_len")
        if start.get("enforce_eager"):
            values["cuda_graphs"] = "off"
    else:
        values["gpu_mem_util"] = start.get("mem_fraction_static")
    if dtype:
        values["weight_dtype"] = dtype
    if "fp8" in str(start.get("kv_cache_dtype") or ""):
        values["kv_dtype"] = "fp8"
    return Scenario.from_dict({k: v for k, v in values.items() if v is not None})


def v0_driver_kv_gib(start: dict, version: tuple[int, ...] | None, kv_bytes_per_token: float) -> float | None:
    """For a V0 start with tensor parallelism that logs its block count: the KV GiB per GPU
    the engine allocated, ``tokens * KV bytes per token per GPU``. V0 samples on rank 0 only and
    allocates every GPU the blocks of the worker with the fewest (``min`` over workers), while
    the "KV Cache" figure quoted may come from another rank (:mod:`kvcache_calculator.setup.engine`).
    None otherwise."""
    tokens = start["logged"].get("kv_cache_tokens")
    if version is None or version >= VLLM_V1_DEFAULT or (start["tensor_parallel_size"] or 1) < 2 or not tokens:
        return None
    return tokens * kv_bytes_per_token / GIB


def comparable(start: dict, preset: str | None) -> bool:
    """Whether a prediction can be made at all: a known vLLM version from 0.6 (or SGLang), a
    GPU, one pipeline stage (excluded starts that pass are still shown with their prediction)."""
    if start["engine"] == "vllm":
        version, _ = start_version(start)
        if version is None or version < VLLM_OLDEST:
            return False
    if (start.get("pipeline_parallel_size") or 1) > 1:
        return False
    return preset is not None or bool(start.get("gpu_total_gib"))


def evaluate(start: dict, models: dict) -> Row:
    """The row of one start: its prediction, its logged figure and its status."""
    notes = []
    config = None
    arch = None
    import_error = ""
    if start["id"] in models["starts"]:
        config, completed = model_config(start, models)
        if completed:
            notes.append(completed)
        try:
            arch = import_config(config)
        except ScenarioError as err:
            import_error = f"config.json does not import ({err})"
    preset, gpu_note = gpu_preset(start)
    if gpu_note:
        notes.append(gpu_note)
    version, version_note = start_version(start) if start["engine"] == "vllm" else (None, "")
    if version_note:
        notes.append(version_note)
    reason = exclusion(start, config, preset)
    if import_error and import_error not in reason:
        reason = "; ".join(filter(None, (reason, import_error)))
    dtype, dtype_note = weight_dtype(start, config) if config is not None else (None, "")
    if dtype_note:
        notes.append(dtype_note)
    tp = start["tensor_parallel_size"] or 1
    logged = start["logged"]
    predicted = logged_kv = util = None
    if arch is not None and comparable(start, preset):
        scenario = scenario_for(start, preset, dtype)
        capacity = compute_capacity(scenario, arch, resolve_gpu(scenario))
        predicted = capacity.memory.kv_cache_gib
        util = capacity.memory.gpu_mem_util
        if start["engine"] == "sglang" and logged.get("max_total_num_tokens"):
            logged_kv = logged["max_total_num_tokens"] * capacity.kv_bytes_per_token_per_gpu / GIB
    if start["engine"] == "vllm":
        logged_kv = logged.get("kv_cache_gib")
        driver_kv = v0_driver_kv_gib(start, version, capacity.kv_bytes_per_token_per_gpu) if predicted is not None else None
        if driver_kv is not None:
            notes.append(f"KV compared as allocated: {logged['kv_cache_tokens']:,} tokens = {driver_kv:.2f} GiB per "
                         f"GPU (the {logged_kv} GiB quoted is another rank's; V0 allocates the fewest blocks of any rank)")
            logged_kv = driver_kv
        util = util or start.get("gpu_memory_utilization")
    elif util is None:
        util = start.get("mem_fraction_static")
    shown = str(start["engine_version"] or (".".join(map(str, version)) + " (inferred)" if version else "?"))
    return Row(start["id"], start["engine"], shown, start["model"], preset or "", tp, util, logged_kv,
               predicted, "excluded" if reason else "validated", reason, "; ".join(notes))


def validation_rows() -> list[Row]:
    """Every start of the data set, evaluated (:func:`evaluate`), in the file's order."""
    models = load_models()
    return [evaluate(start, models) for start in load_starts()]


@dataclass(frozen=True)
class Summary:
    """Counts and |error| statistics of the validated starts of one engine."""

    engine: str
    starts: int
    validated: int
    median_abs_error: float
    worst_abs_error: float
    worst_id: str
    within_15_percent: int

    def line(self) -> str:
        """One markdown line: ``vLLM: 27 validated of 51 starts; median |error| 0.4 %, ...``."""
        name = {"vllm": "vLLM", "sglang": "SGLang"}[self.engine]
        return (f"{name}: {self.validated} validated of {self.starts} starts; median |error| "
                f"{100 * self.median_abs_error:.1f} %, worst {100 * self.worst_abs_error:.1f} % "
                f"({self.worst_id}); {self.within_15_percent} of {self.validated} within ±15 %.")


def summarize(rows: list[Row], engine: str) -> Summary:
    """The :class:`Summary` of ``engine``'s rows."""
    mine = [r for r in rows if r.engine == engine]
    errors = sorted(((abs(r.error), r.id) for r in mine if r.status == "validated"), reverse=True)
    return Summary(engine, len(mine), len(errors), statistics.median(e for e, _ in errors), errors[0][0],
                   errors[0][1], sum(e <= 0.15 for e, _ in errors))


def _gib(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"


def markdown_table(rows: list[Row]) -> str:
    """The validation table as markdown: validated starts first, then the excluded, each
    group by engine and id; then one summary line per engine."""
    head = ("| start | model | GPU | TP | engine | util | logged KV GiB | predicted KV GiB | error | status |\n"
            "|---|---|---|---:|---|---:|---:|---:|---:|---|")
    lines = [head]
    order = sorted(rows, key=lambda r: (r.status != "validated", r.engine != "vllm", r.id))
    for r in order:
        util = "—" if r.util is None else f"{r.util:.3g}"
        error = "—" if r.error is None else f"{100 * r.error:+.1f} %"
        status = r.status if r.status == "validated" else f"excluded: {r.reason}"
        if r.note:
            status += f" ({r.note})"
        model = r.model.split("/")[-1]
        lines.append(f"| {r.id} | {model} | {r.gpu or '—'} | {r.tp} | {r.engine} {r.version} | {util} | "
                     f"{_gib(r.logged_kv_gib)} | {_gib(r.predicted_kv_gib)} | {error} | {status} |")
    lines.append("")
    lines += [summarize(rows, engine).line() for engine in ("vllm", "sglang")]
    return "\n".join(lines)


def main() -> None:
    """Print the validation table (``python tests/engine_validation.py``)."""
    print(markdown_table(validation_rows()))


if __name__ == "__main__":
    main()
