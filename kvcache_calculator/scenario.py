"""The scenario: every input of a calculation as one flat set of key=value pairs.

The same keys are used in the page's URL fragment (``#model=llama-3.1-8b&arrival_rate=2``),
on the command line (``kvcache-calc analyze model=llama-3.1-8b arrival_rate=2``) and in
JSON. Keys left out take the defaults of :data:`FIELDS`. The key names are a public
contract (docs/architecture.md §3): add keys, never rename them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping
from urllib.parse import quote, unquote_plus

from kvcache_calculator.errors import ScenarioError

DTYPES = ("fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4")
ROUTINGS = ("session", "round_robin", "random", "least_loaded")
ENGINES = ("vllm", "sglang", "manual")
#: The vLLM releases whose memory accounting the calculator follows (docs/engines.md §2): the V0
#: engine's 0.6.x by patch release (their profilers differ), 0.7, 0.8 (early V1), then 0.9 on.
ENGINE_VERSIONS = (tuple(f"0.6.{patch}" for patch in range(7)) + ("0.7", "0.8")
                   + tuple(f"0.{minor}" for minor in range(9, 34)))
POLICIES = ("lru", "fifo", "lfu")
THINK_DISTS = ("exponential", "fixed", "lognormal", "empirical")
#: ``think_shape``: 2..64 segments (3..65 quantiles).
SHAPE_SEGMENTS = (2, 64)
#: The default ``think_shape``: a lognormal of sigma 1 at 16 segments, to 3 digits
#: (analytic.popularity.lognormal_shape(1.0, 16)).
DEFAULT_THINK_SHAPE = (0.0, 0.13, 0.191, 0.248, 0.307, 0.37, 0.439, 0.516, 0.603, 0.706, 0.83, 0.984,
                       1.18, 1.47, 1.91, 2.8, 6.64)
LENGTH_DISTS = ("fixed", "exponential")


@dataclass(frozen=True)
class Field:
    """How one scenario key is labelled, checked and shown, and what it feeds.

    ``group`` is where the page shows the key and what it describes: ``model`` and
    ``hardware`` keys size the cache (the setup reads them); ``serving``, ``workload`` and
    ``shared`` keys (content shared across conversations: system-prompt popularity, documents)
    describe the traffic and never change the capacity. ``resolves`` names the preset lookup
    the key takes part in (``model``: the model id, its layers and parameter counts; ``gpu``:
    the GPU id and its memory), ``layers`` marks the keys that describe (or override) a
    model's layers, and ``attention`` the attention kinds a layer key applies to (empty: all).
    ``effect`` says how a change of the key reaches the analytic hit rate, which decides how a
    sweep evaluates it: ``scalar`` (a rate or count the model's sums over turns do not
    depend on), ``capacity`` (only the capacity), ``kv_bytes`` (the KV bytes per token: the
    capacity, and the sums too when a model holds per-sequence state), ``in_flight`` (only
    the KV held by running requests, through the service time) or ``solve`` (anything else:
    the model is solved again). The sweeps recompute the in-flight KV of every variant,
    whatever its keys (the arrival rate, the model and the GPU move it too).
    """

    key: str
    label: str
    unit: str
    help: str
    group: str                      # model | hardware | serving | workload | shared
    kind: str                       # int | float | choice | text
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    exclusive_min: bool = False     # minimum itself not allowed
    optional: bool = False          # may be empty (None): "from the preset" / "derived"
    resolves: str = ""              # model | gpu | "" (see the class docstring)
    layers: bool = False
    attention: tuple[str, ...] = ()  # gqa | mla; empty: every kind
    effect: str = "solve"           # scalar | capacity | kv_bytes | in_flight | solve

    def allowed(self) -> str:
        """A sentence saying what values are allowed."""
        if self.kind == "choice":
            return "must be one of " + ", ".join(self.choices)
        if self.kind == "text":
            return "must be a preset id or custom"
        if self.kind == "list":
            lo, hi = SHAPE_SEGMENTS
            return (f"must be {lo + 1} to {hi + 1} comma-separated numbers >= 0 in ascending order, "
                    "the last above the first")
        what = "a whole number" if self.kind == "int" else "a number"
        parts = []
        if self.minimum is not None:
            parts.append(("> " if self.exclusive_min else ">= ") + _fmt(self.minimum))
        if self.maximum is not None:
            parts.append("<= " + _fmt(self.maximum))
        rng = " and ".join(parts)
        unit = f" ({self.unit})" if self.unit else ""
        return f"must be {what}{' ' + rng if rng else ''}{unit}" + (", or empty" if self.optional else "")

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in fields(self)}


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


#: The one spelling of a number in links, on the command line and in form fields: ASCII digits,
#: an optional sign, fraction and exponent (``2``, ``-0.5``, ``.5``, ``1e-05``, ``1.5e+20``, as
#: :func:`format_value` writes them), with whitespace around it ignored. Python's ``float()``
#: also takes ``1_000``, ``inf``, ``nan``, ``infinity`` and non-ASCII digits (``１２``,
#: ``١٢``); none of those is a number here.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _parse_list(field: Field, raw: Any) -> tuple[float, ...]:
    """A ``list`` field (``think_shape``): comma-separated numbers in a string, or a JSON list;
    ascending quantiles, each >= 0, the last above the first, 3 to 65 of them."""
    if isinstance(raw, str):
        items: list = [t.strip() for t in raw.split(",")]
    elif isinstance(raw, (list, tuple)):
        items = list(raw)
    else:
        raise ScenarioError(field.key, raw, field.allowed())
    values = []
    for item in items:
        if isinstance(item, str) and _NUMBER.fullmatch(item):
            values.append(float(item))
        elif isinstance(item, (int, float)) and not isinstance(item, bool) and math.isfinite(item):
            values.append(float(item))
        else:
            raise ScenarioError(field.key, raw, f"{field.allowed()}; {item!r} is not a number")
    lo, hi = SHAPE_SEGMENTS
    if not lo + 1 <= len(values) <= hi + 1:
        raise ScenarioError(field.key, raw, f"{field.allowed()}; {len(values)} given")
    if values[0] < 0:
        raise ScenarioError(field.key, raw, f"{field.allowed()}; {values[0]:g} is negative")
    for a, b in zip(values, values[1:]):
        if b < a:
            raise ScenarioError(field.key, raw, f"{field.allowed()}; {b:g} comes after {a:g}")
    if values[-1] <= values[0]:
        raise ScenarioError(field.key, raw, f"{field.allowed()}; all values are equal (use think_dist=fixed)")
    return tuple(values)


def parse_value(field: Field, raw: Any) -> Any:
    """Convert ``raw`` (a string from a link/CLI/form, or a JSON value) to the field's type.

    A number given as a string must be spelt as :data:`_NUMBER` says (no ``1_000``, ``inf``,
    ``0x10`` or full-width digits); whitespace around it is ignored, and a whole number in
    exponent form (``1e6``) is accepted for an int field. Raises :class:`ScenarioError`
    naming the key, the value and what is allowed.
    """
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        if field.optional:
            return None
        raise ScenarioError(field.key, "" if raw is None else raw, field.allowed())
    if field.kind in ("choice", "text"):
        if not isinstance(raw, str):
            raise ScenarioError(field.key, raw, field.allowed())
        value = raw.strip().lower()
        if field.kind == "choice" and value not in field.choices:
            raise ScenarioError(field.key, raw, field.allowed())
        if field.kind == "text" and (len(value) > MAX_TEXT or not all(c.isalnum() or c in "-._" for c in value)):
            raise ScenarioError(field.key, raw, "must be a preset id (letters, digits, - . _) or custom")
        return value
    if field.kind == "list":
        return _parse_list(field, raw)
    if isinstance(raw, bool):
        raise ScenarioError(field.key, raw, field.allowed())
    if isinstance(raw, (int, float)):
        try:
            number = float(raw)
        except OverflowError:   # a JSON integer beyond any float
            raise ScenarioError(field.key, raw, field.allowed()) from None
    elif isinstance(raw, str):
        text = raw.strip()
        if not _NUMBER.fullmatch(text):
            raise ScenarioError(field.key, raw, field.allowed())
        number = float(text)
    else:
        raise ScenarioError(field.key, raw, field.allowed())
    if not math.isfinite(number):
        raise ScenarioError(field.key, raw, field.allowed())
    if field.kind == "int":
        if not number.is_integer():
            raise ScenarioError(field.key, raw, field.allowed())
        number = int(number)
    lo, hi = field.minimum, field.maximum
    if lo is not None and (number < lo or (field.exclusive_min and number == lo)):
        raise ScenarioError(field.key, raw, field.allowed())
    if hi is not None and number > hi:
        raise ScenarioError(field.key, raw, field.allowed())
    return number


@dataclass(frozen=True)
class Scenario:
    """All inputs of one calculation, with their defaults (the one place they are written);
    see :data:`FIELDS` for units and ranges.

    Build one with :meth:`from_dict` (validates) rather than the constructor.
    """

    model: str = "llama-3.1-8b"
    attention: str | None = None
    num_layers: int | None = None
    num_kv_heads: int | None = None
    head_dim: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    sliding_window: int | None = None
    sliding_layers: int | None = None
    params_b: float | None = None
    active_params_b: float | None = None
    gpu: str = "h100-sxm"
    gpu_memory_gib: float | None = None
    num_gpus: int = 1
    gpu_mem_util: float | None = None
    engine: str = "vllm"
    engine_version: str = "0.33"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    cuda_graphs: str = "on"
    activation_reserve_gib: float = 1.0
    weight_dtype: str | None = None
    kv_dtype: str = "bf16"
    block_size: int = 16
    kv_cache_tokens: int | None = None
    offload_gib: float = 0.0
    instances: int = 1
    routing: str = "session"
    policy: str = "lru"
    arrival_rate: float = 1.0
    turns: float = 5.0
    turns_dist: str = "geometric"
    think_time_s: float = 60.0
    think_dist: str = "exponential"
    think_sigma: float = 1.0
    think_shape: tuple[float, ...] = DEFAULT_THINK_SHAPE
    input_tokens: int = 500
    output_tokens: int = 300
    length_dist: str = "fixed"
    system_prompt_tokens: int = 2000
    num_system_prompts: int = 1
    system_prompt_zipf: float = 0.0
    num_documents: int = 0
    document_tokens: int = 2000
    document_share: float = 0.5
    document_zipf: float = 1.0
    mfu: float = 0.4
    target_hit_rate: float = 0.7
    decode_tokens_per_s: float | None = None
    ttft_s: float | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, ignore_unknown: bool = False) -> "Scenario":
        """Validate ``data`` (strings or JSON values) into a Scenario; defaults fill the rest.

        Raises :class:`ScenarioError` for the first bad or unknown key.
        """
        values: dict[str, Any] = {}
        for key, raw in data.items():
            field = FIELD_BY_KEY.get(key)
            if field is None:
                if ignore_unknown:
                    continue
                raise ScenarioError(str(key), raw, "is not a scenario key; known keys: " + ", ".join(KEYS))
            values[key] = parse_value(field, raw)
        scenario = cls(**values)
        scenario.check()
        return scenario

    @classmethod
    def from_dict_lenient(cls, data: Mapping[str, Any]) -> tuple["Scenario", dict[str, ScenarioError], list[str]]:
        """Like :meth:`from_dict`, but a bad value falls back to its default.

        Returns the scenario, ``{key: error}`` for the values that were rejected and the
        list of unknown keys: what a shared link needs.
        """
        values: dict[str, Any] = {}
        errors: dict[str, ScenarioError] = {}
        unknown: list[str] = []
        for key, raw in data.items():
            field = FIELD_BY_KEY.get(key)
            if field is None:
                unknown.append(str(key))
                continue
            try:
                values[key] = parse_value(field, raw)
            except ScenarioError as err:
                errors[key] = err
        while True:
            scenario = cls(**values)
            try:
                scenario.check()
                return scenario, errors, unknown
            except ScenarioError as err:
                if err.key not in values:
                    raise
                errors[err.key] = err
                del values[err.key]

    def check(self) -> None:
        """Cross-field checks (single values are checked by :func:`parse_value`)."""
        if self.turns_dist == "fixed" and not float(self.turns).is_integer():
            raise ScenarioError("turns", self.turns, "must be a whole number when turns_dist is fixed")
        if (self.sliding_layers or 0) > 0 and not self.sliding_window:
            raise ScenarioError("sliding_layers", self.sliding_layers, "needs sliding_window (tokens) to be set too")
        if self.params_b is not None and self.active_params_b is not None and self.active_params_b > self.params_b:
            raise ScenarioError("active_params_b", self.active_params_b,
                                f"must be at most params_b ({self.params_b:g} billion)")

    def to_dict(self) -> dict:
        """Every key with its value, plain JSON types."""
        return {f.key: getattr(self, f.key) for f in FIELDS}

    def changed(self) -> dict:
        """Only the keys that differ from their defaults, in :data:`FIELDS` order."""
        return {f.key: v for f in FIELDS if (v := getattr(self, f.key)) != f.default}

    def replace(self, **changes: Any) -> "Scenario":
        """A copy with ``changes`` applied and validated."""
        data = {**self.changed(), **changes}
        return Scenario.from_dict({k: v for k, v in data.items() if v is not None or FIELD_BY_KEY[k].optional})

    def to_fragment(self) -> str:
        """The URL-fragment form (without ``#``): only the non-default keys."""
        return encode_fragment(self.changed())

    def to_json(self) -> str:
        """JSON of the non-default keys."""
        return json.dumps(self.changed(), sort_keys=False)

    @classmethod
    def from_fragment(cls, fragment: str) -> "Scenario":
        """Parse a URL fragment (with or without ``#``) strictly."""
        return cls.from_dict(decode_fragment(fragment))

    @classmethod
    def from_json(cls, text: str) -> "Scenario":
        """Parse a JSON object of scenario keys strictly."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ScenarioError("scenario", text, f"is not valid JSON: {err.msg} at line {err.lineno}") from None
        if not isinstance(data, dict):
            raise ScenarioError("scenario", text, "must be a JSON object of key: value pairs")
        return cls.from_dict(data)


_M = "model"
_H = "hardware"
_S = "serving"
_W = "workload"
_SH = "shared"
_DEFAULTS = {f.name: f.default for f in fields(Scenario)}


def _field(key: str, label: str, unit: str, help: str, group: str, kind: str,
           minimum: float | None = None, maximum: float | None = None, **more: Any) -> Field:
    """A :class:`Field` whose default is the :class:`Scenario` attribute's (written once,
    there); a key whose default is None may be left empty."""
    default = _DEFAULTS[key]
    return Field(key, label, unit, help, group, kind, default, minimum, maximum,
                 optional=default is None, **more)


_MODEL = dict(resolves="model")
_LAYERS = dict(resolves="model", layers=True)

#: Every scenario key, in display order.
FIELDS: tuple[Field, ...] = (
    _field("model", "Model", "", "A preset model id, or custom to enter the architecture below.",
           _M, "text", **_MODEL),
    _field("attention", "Attention kind", "", "gqa covers MHA/GQA/MQA; mla is DeepSeek-style latent attention.",
           _M, "choice", choices=("gqa", "mla"), **_LAYERS),
    _field("num_layers", "Layers", "layers", "Transformer layers (all of them).", _M, "int", 1, 1000,
           effect="kv_bytes", **_LAYERS),
    _field("num_kv_heads", "KV heads", "heads", "Key/value heads per layer (GQA); 1 for MQA.", _M, "int", 1, 1024,
           attention=("gqa",), effect="kv_bytes", **_LAYERS),
    _field("head_dim", "Head dim", "elements", "Width of one K or V head.", _M, "int", 1, 4096,
           attention=("gqa",), effect="kv_bytes", **_LAYERS),
    _field("kv_lora_rank", "MLA latent rank", "elements", "kv_lora_rank of an MLA model.", _M, "int", 1, 8192,
           attention=("mla",), effect="kv_bytes", **_LAYERS),
    _field("qk_rope_head_dim", "MLA rope dim", "elements", "qk_rope_head_dim of an MLA model.", _M, "int", 0, 4096,
           attention=("mla",), effect="kv_bytes", **_LAYERS),
    _field("sliding_window", "Sliding window", "tokens", "Window of the sliding-window layers.", _M, "int",
           1, 10_000_000, attention=("gqa",), **_LAYERS),
    _field("sliding_layers", "Sliding layers", "layers", "How many of the layers use the sliding window.", _M, "int",
           0, 1000, attention=("gqa",), **_LAYERS),
    _field("params_b", "Parameters", "billions", "Total parameters (all experts).", _M, "float", 0, 100_000,
           exclusive_min=True, effect="capacity", **_MODEL),
    _field("active_params_b", "Active parameters", "billions", "Parameters used per token (MoE); sets prefill compute.",
           _M, "float", 0, 100_000, exclusive_min=True, effect="capacity", **_MODEL),
    _field("gpu", "GPU", "", "A GPU preset id, or custom with its memory below.", _H, "text", resolves="gpu"),
    _field("gpu_memory_gib", "GPU memory", "GiB",
           "Memory per GPU as CUDA reports it, the total the engine sizes from (custom GPU or override).",
           _H, "float", 0, 100_000, exclusive_min=True, resolves="gpu", effect="capacity"),
    _field("num_gpus", "GPUs per instance", "GPUs", "Tensor-parallel GPUs per serving instance.", _H, "int", 1, 1024,
           effect="kv_bytes"),
    _field("gpu_mem_util", "Memory utilisation", "fraction",
           "Fraction of GPU memory the engine may use (vLLM gpu_memory_utilization, SGLang "
           "mem_fraction_static); empty for the engine's default (vLLM 0.9, SGLang by GPU size).",
           _H, "float", 0, 1, exclusive_min=True, effect="capacity"),
    _field("engine", "Serving engine", "",
           "Whose start-up memory accounting sizes the KV cache: vllm, sglang, or manual (the "
           "activation reserve below, nothing else).", _H, "choice", choices=ENGINES, effect="capacity"),
    _field("engine_version", "vLLM version", "",
           "The vLLM release (0.6.x-0.7: V0 engine; 0.20 and later also set memory aside for CUDA "
           "graphs).", _H, "choice",
           choices=ENGINE_VERSIONS, effect="capacity"),
    _field("max_num_seqs", "Max sequences", "sequences",
           "The engine's max_num_seqs; empty for its default (1,024 on GPUs of 70 GiB or more, else 256; "
           "256 on vLLM's V0 engine, 0.6-0.7).",
           _H, "int", 1, 1_000_000, effect="capacity"),
    _field("max_num_batched_tokens", "Max batched tokens", "tokens",
           "The engine's max_num_batched_tokens; empty for its default (8,192 on GPUs of 70 GiB or more "
           "except A100, else 2,048; vLLM 0.6-0.7: max_model_len, at least 2,048, or 2,048 (512 to 0.6.4) "
           "above 32,768 tokens).", _H, "int", 1, 10_000_000, effect="capacity"),
    _field("max_model_len", "Max model length", "tokens",
           "The engine's max_model_len (longest prompt plus answer it serves); empty for the model's "
           "context length (max_position_embeddings).", _H, "int", 1, 100_000_000, effect="capacity"),
    _field("cuda_graphs", "CUDA graphs", "", "off is --enforce-eager: no memory set aside for graphs.",
           _H, "choice", choices=("on", "off"), effect="capacity"),
    _field("activation_reserve_gib", "Activation reserve", "GiB per GPU",
           "With engine manual: memory kept for activations and CUDA graphs, per GPU.", _H, "float", 0, 10_000,
           effect="capacity"),
    _field("weight_dtype", "Weight dtype", "",
           "Precision of the weights; empty for the model's published checkpoint (FP8 for DeepSeek-V3, "
           "MXFP4 for gpt-oss, else bf16).", _H, "choice", choices=DTYPES, effect="capacity"),
    _field("kv_dtype", "KV cache dtype", "", "Precision of the KV cache.", _H, "choice", choices=DTYPES,
           effect="kv_bytes"),
    _field("block_size", "Block size", "tokens", "Tokens per KV block; only whole blocks are reused.", _H, "int",
           1, 4096),
    _field("kv_cache_tokens", "KV cache size override", "tokens",
           "The capacity your engine reports (vLLM: \"GPU KV cache size: N tokens\"); empty to derive it.",
           _H, "int", 1, 10**12, effect="capacity"),
    _field("offload_gib", "Offload tier", "GiB per instance",
           "CPU DRAM cache per instance (LMCache, vLLM offloading), write-through.", _H, "float", 0, 1_000_000,
           effect="capacity"),
    _field("instances", "Instances", "instances", "Serving instances, each with its own cache.", _S, "int",
           1, 100_000),
    _field("routing", "Routing", "", "session keeps a conversation on one instance; the others spread its turns.",
           _S, "choice", choices=ROUTINGS),
    _field("policy", "Eviction policy", "", "LRU is modelled analytically; FIFO and LFU need the simulator.",
           _S, "choice", choices=POLICIES),
    _field("arrival_rate", "Conversation arrivals", "conversations/s", "New conversations per second, whole fleet.",
           _W, "float", 0, 1e6, exclusive_min=True, effect="scalar"),
    _field("turns", "Turns per conversation", "turns", "Mean number of user turns.", _W, "float", 1, 1000),
    _field("turns_dist", "Turns distribution", "",
           "geometric: memoryless, mean as above; fixed: every conversation has that many.", _W, "choice",
           choices=("geometric", "fixed")),
    _field("think_time_s", "Think time", "s", "Mean gap between a response and the user's next message.",
           _W, "float", 0, 1e7, exclusive_min=True, effect="scalar"),
    _field("think_dist", "Think-time distribution", "",
           "exponential, fixed, or lognormal gaps (a long tail, as measured traces show), or "
           "empirical (the shape below, e.g. from a fitted trace).", _W, "choice",
           choices=THINK_DISTS),
    _field("think_sigma", "Think-time spread", "lognormal sigma",
           "With lognormal gaps: the shape sigma of log(gap); the mean stays the think time.",
           _W, "float", 0.05, 4),
    _field("think_shape", "Think-time shape", "multiples of the mean",
           "With empirical gaps: the gap's quantiles at equally spaced probabilities 0, 1/n, ..., 1 "
           "(n from 2 to 64, comma-separated, ascending; linear in between); rescaled so their mean "
           "is 1, the think time above setting the mean.", _W, "list"),
    _field("input_tokens", "Input tokens per turn", "tokens", "New user tokens per turn.", _W, "int", 1, 10_000_000),
    _field("output_tokens", "Output tokens per turn", "tokens", "Response tokens per turn.", _W, "int",
           0, 10_000_000),
    _field("length_dist", "Length distribution", "",
           "fixed: every turn adds exactly the tokens above; exponential: random lengths of those "
           "means, as real traffic has (a history then ends half a block into its last block on "
           "average).", _W, "choice", choices=LENGTH_DISTS),
    _field("system_prompt_tokens", "System prompt", "tokens", "Shared prefix at the start of every prompt.",
           _W, "int", 0, 10_000_000),
    _field("num_system_prompts", "Distinct system prompts", "prompts",
           "How many different system prompts share the traffic.", _W, "int", 1, 1_000_000, effect="scalar"),
    _field("system_prompt_zipf", "System-prompt popularity", "Zipf exponent",
           "How unevenly conversations pick the system prompts: 0 uses them equally, 1 is Zipf "
           "(the k-th most used 1/k as often as the first).", _SH, "float", 0, 4, effect="scalar"),
    _field("num_documents", "Shared documents", "documents",
           "Distinct documents (tool definitions, RAG passages) that conversations include after "
           "the system prompt; 0 for none.", _SH, "int", 0, 1_000_000),
    _field("document_tokens", "Document size", "tokens", "Tokens of each shared document.", _SH, "int",
           1, 10_000_000),
    _field("document_share", "Conversations with a document", "fraction",
           "Share of conversations that include one document (picked at their start; every turn "
           "repeats it).", _SH, "float", 0, 1),
    _field("document_zipf", "Document popularity", "Zipf exponent",
           "How unevenly conversations pick documents: 0 is uniform, 1 is Zipf.", _SH, "float", 0, 4),
    _field("mfu", "Prefill MFU", "fraction",
           "Model FLOPs utilisation of prefill, for the compute saved and the derived time to first token.",
           _W, "float", 0, 1, exclusive_min=True, effect="in_flight"),
    _field("target_hit_rate", "Target token hit rate", "fraction", "Target for the memory solver.",
           _W, "float", 0, 1, exclusive_min=True),
    _field("decode_tokens_per_s", "Decode speed", "tokens/s per sequence",
           "How fast one running request generates; empty to derive it from the GPU's memory bandwidth.",
           _S, "float", 0, 1e6, exclusive_min=True, effect="in_flight"),
    _field("ttft_s", "Time to first token", "s",
           "Measured time to first token; empty to derive it from the prompt and the GPU's compute.",
           _S, "float", 0, 1e5, exclusive_min=True, effect="in_flight"),
)

FIELD_BY_KEY: dict[str, Field] = {f.key: f for f in FIELDS}
KEYS: tuple[str, ...] = tuple(f.key for f in FIELDS)
MAX_TEXT = 64

# -- key sets, all derived from FIELDS (each in FIELDS order) ---------------------------------


def _keys(test) -> tuple[str, ...]:
    return tuple(f.key for f in FIELDS if test(f))


#: The keys that resolve the model: its id, its layers and its parameter counts.
MODEL_KEYS = _keys(lambda f: f.resolves == "model")
#: The model keys other than its id: the page's Architecture fields, a custom model's keys.
ARCH_KEYS = _keys(lambda f: f.resolves == "model" and f.key != "model")
#: The keys that describe a model's layers (override a preset's layers when given).
LAYER_KEYS = _keys(lambda f: f.layers)
#: The layer keys only GQA models (MHA/GQA/MQA, sliding windows) use.
GQA_ONLY_KEYS = _keys(lambda f: f.attention == ("gqa",))
#: The layer keys only MLA models use.
MLA_ONLY_KEYS = _keys(lambda f: f.attention == ("mla",))
#: The keys that resolve the GPU: its id and its memory.
GPU_KEYS = _keys(lambda f: f.resolves == "gpu")
#: The keys that size the cache (model and hardware); the others never change the capacity.
SIZING_KEYS = _keys(lambda f: f.group in (_M, _H))
#: Keys whose change leaves the model's sums over turns alone (rates and counts).
SCALAR_KEYS = _keys(lambda f: f.effect == "scalar")
#: Keys whose change only moves the capacity.
CAPACITY_ONLY_KEYS = _keys(lambda f: f.effect == "capacity")
#: Keys whose change moves the KV bytes per token.
KV_BYTES_KEYS = _keys(lambda f: f.effect == "kv_bytes")
#: Keys whose change only moves the KV held by running requests (their service time).
IN_FLIGHT_KEYS = _keys(lambda f: f.effect == "in_flight")


def format_value(value: Any) -> str:
    """The text form of a value in links and on the command line; round-trips exactly."""
    if value is None:
        return ""
    if isinstance(value, float):
        return _fmt(value) if value.is_integer() else repr(value)
    if isinstance(value, (tuple, list)):
        return ",".join(format_value(float(v)) for v in value)
    return str(value)


def encode_fragment(values: Mapping[str, Any]) -> str:
    """``key=value&...`` with values percent-encoded."""
    return "&".join(f"{k}={quote(format_value(v), safe='-._~')}" for k, v in values.items())


def decode_fragment(fragment: str) -> dict[str, str]:
    """Split a fragment into ``{key: raw string}``; a key without ``=`` maps to ``""``.

    Later repetitions of a key win. Raises :class:`ScenarioError` for an over-long fragment.
    """
    return dict(_fragment_pairs(fragment))


def repeated_keys(fragment: str) -> list[str]:
    """The named keys a fragment gives more than once (:func:`decode_fragment` keeps the last
    value), in order of their first repetition."""
    seen: set[str] = set()
    repeated: list[str] = []
    for key, _ in _fragment_pairs(fragment):
        if key in seen and key and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


def _fragment_pairs(fragment: str) -> list[tuple[str, str]]:
    """``(key, raw value)`` for each non-empty ``&`` part of a fragment, in order."""
    text = fragment[1:] if fragment.startswith("#") else fragment
    if len(text) > 8192:
        raise ScenarioError("link", text[:40], "is longer than 8192 characters")
    pairs = []
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((unquote_plus(key).strip(), unquote_plus(value)))
    return pairs


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """Parse CLI ``KEY=VALUE`` words into a dict; a word without ``=`` is an error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ScenarioError(item, item, "must be written KEY=VALUE, e.g. arrival_rate=2")
        out[key.strip()] = value
    return out


_FIELD_NAMES = frozenset(f.name for f in fields(Scenario))


def with_updates(scenario: Scenario, **changes: Any) -> Scenario:
    """``dataclasses.replace`` without validation, for internal sweeps over valid values.

    A copy of the instance's fields instead of a call to ``__init__`` with all of them (the
    sweeps of one page update make about 150 variants; ``Scenario`` has no ``__post_init__``
    to skip). Like ``replace``, an unknown field name raises ``TypeError``."""
    if not _FIELD_NAMES.issuperset(changes):
        raise TypeError(f"Scenario has no field {', '.join(sorted(changes.keys() - _FIELD_NAMES))}")
    new = object.__new__(type(scenario))
    new.__dict__.update(scenario.__dict__)
    new.__dict__.update(changes)
    return new
