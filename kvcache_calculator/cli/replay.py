"""The ``kvcache-calc replay`` subcommand: replay a request trace against a block cache.

    kvcache-calc replay TRACE.jsonl [KEY=VALUE...] [--format auto|mooncake|bailian] [--block-size N]
        [--policy lru|fifo|lfu|belady] [--semantics engine|independent]
        [--capacity-blocks N,N,...] [--capacity-tokens N,...]
        [--capacity-gib X,... --model ID [--kv-dtype DT]]
        [--model ID --gpu ID [--num-gpus N] [--engine E] [--weight-dtype DT] [--gpu-mem-util F]
         [--kv-dtype DT]]
        [--skip-bad-lines] [--fit [--fit-think auto|empirical]] [--json]
        [--warmup F] [--sample RATE] [--instances N --routing R [--seed S]]
        [--explain [--characteristic-time-s T]]

Prints ``capacity_blocks``, ``block_hit_rate``, ``token_hit_rate`` (one per capacity) and the
infinite-cache ceilings, each token hit rate with its ideal prefill speedup ``1 / (1 - h)``;
for LRU also the capacities reaching 50/90/99 % of the ceiling. With no capacity option the
capacities are chosen from the LRU curve. ``--fit`` fits a scenario to the trace and compares
the analytic model with the LRU replay at each capacity. A ``.gz`` trace is decompressed as a
stream. ``--warmup F`` counts only the requests after the first fraction ``F``;
``--sample RATE`` replays a SHARDS sample (approximate); ``--instances N --routing R``
replays a fleet of ``N`` caches of each capacity (:mod:`kvcache_calculator.traces.routing`);
``--explain`` splits the gap to 100 % into its causes (:mod:`kvcache_calculator.traces.gap`). This
module is the shell: it opens the file, shows progress on a terminal and formats output;
the work is done by :mod:`kvcache_calculator.traces.readers` and :mod:`kvcache_calculator.traces.replay`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
import zlib
from dataclasses import dataclass
from typing import Iterator

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import FIELD_BY_KEY, Scenario, parse_assignments, parse_value
from kvcache_calculator.setup.architecture import kv_bytes_per_token
from kvcache_calculator.setup.engine import ENGINES
from kvcache_calculator.setup.presets import canonical_gpu, get_model
from kvcache_calculator.setup.resolve import resolve
from kvcache_calculator.traces.gap import explain_gap
from kvcache_calculator.traces.gz import is_gzip, read_binary_lines
from kvcache_calculator.traces.routing import (
    ROUTINGS,
    CacheAwareReplay,
    FleetCurveReplay,
    check_instances,
)
from kvcache_calculator.traces.sampling import (
    SAMPLE_FLOOR,
    SampledReplay,
    check_rate,
    ladder_rates,
    rate_for_capacity,
)
from kvcache_calculator.traces.warmup import BeladyWarmupReplay, WarmupReplay, warmup_requests
from kvcache_calculator.traces.replay import (
    GIB,
    POLICIES,
    SEMANTICS,
    BeladyReplay,
    LRUCurveReplay,
    PolicyReplay,
    capacity_blocks_from_gib,
    capacity_blocks_from_tokens,
)
from kvcache_calculator.traces.readers import (
    DEFAULT_BLOCK_SIZE,
    FORMATS,
    TraceReader,
    detect_format,
)
from kvcache_calculator.traces.fit import (
    FIT_THINK,
    REPLAY_WINDOW_NOTE,
    ScenarioFitter,
    analytic_token_hit_rate,
    compare_fit_to_replay,
    fit_report,
    model_scenario,
)
from kvcache_calculator.units import format_points, format_percent

EXIT_BAD_INPUT = 2
_CHUNK_REQUESTS = 2000


#: The scenario keys replay takes in the scenario form (``model=llama-3.1-8b gpu=h100``), each
#: the same as the option of the same name (``--model``, ``--num-gpus`` ...).
SCENARIO_OPTIONS = ("model", "gpu", "num_gpus", "kv_dtype", "weight_dtype", "gpu_mem_util", "block_size",
                    "instances", "routing", "policy")


def apply_assignments(args: argparse.Namespace) -> None:
    """Set the options given in the scenario form (``args.assignments``), checked as analyze
    checks them (routing and policy against replay's own choices); a key given both ways with
    two values, or a key replay does not use, raises :class:`ScenarioError` naming it."""
    words = parse_assignments(getattr(args, "assignments", None) or [])
    defaults = {"kv_dtype": "bf16", "weight_dtype": "bf16", "gpu_mem_util": 0.9, "num_gpus": 1, "instances": 1,
                "policy": "lru"}
    for key, raw in words.items():
        if key not in SCENARIO_OPTIONS:
            raise ScenarioError(key, raw, "is not used by replay; it takes " + ", ".join(SCENARIO_OPTIONS)
                                + " in the scenario form")
        choices = {"routing": ROUTINGS, "policy": POLICIES}.get(key)
        if choices is not None:
            value = raw.strip().lower()
            if value not in choices:
                raise ScenarioError(key, raw, "must be one of " + ", ".join(choices) + " for replay")
        else:
            value = parse_value(FIELD_BY_KEY[key], canonical_gpu(raw) if key == "gpu" else raw)
        given = getattr(args, key)
        if given is not None and given != defaults.get(key) and given != value:
            raise ScenarioError(key, raw, f"contradicts --{key.replace('_', '-')} {given}: give one")
        setattr(args, key, value)


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "replay", help="replay a Mooncake or Bailian request trace against a block cache",
        description="Block-level replay of a request trace: hit rates at given capacities "
                    "and the infinite-cache ceiling.")
    p.add_argument("trace", metavar="TRACE.jsonl", help="trace file, JSON lines ('-' for stdin)")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                   help="the scenario form, as analyze takes it: " + ", ".join(SCENARIO_OPTIONS)
                   + " (each the same as its --option)")
    p.add_argument("--format", choices=("auto",) + FORMATS, default="auto",
                   help="trace format (default: detected from the first line)")
    p.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="tokens per hash_ids block (default: 512 Mooncake, 16 Bailian)")
    p.add_argument("--policy", choices=POLICIES, default="lru", help="eviction policy (default lru)")
    p.add_argument("--semantics", choices=SEMANTICS, default="engine",
                   help="engine: longest cached prefix, tail-first touches (default); "
                        "independent: every block on its own, as libCacheSim")
    p.add_argument("--capacity-blocks", metavar="N,N,...", help="capacities in blocks")
    p.add_argument("--capacity-tokens", metavar="N,N,...", help="capacities in tokens")
    p.add_argument("--capacity-gib", metavar="X,X,...",
                   help="capacities in GiB of KV memory (needs --model; --kv-dtype)")
    p.add_argument("--model", metavar="ID", help="model preset for --capacity-gib / --gpu")
    p.add_argument("--kv-dtype", default="bf16", metavar="DT", help="KV dtype (default bf16)")
    p.add_argument("--gpu", metavar="ID",
                   help="also replay at the capacity of one instance of --model on this GPU")
    p.add_argument("--num-gpus", type=int, default=1, metavar="N",
                   help="GPUs per instance (tensor parallel) for --gpu (default 1)")
    p.add_argument("--weight-dtype", default=None, metavar="DT",
                   help="weight dtype for --gpu (default: the model's published checkpoint, as analyze)")
    p.add_argument("--engine", choices=ENGINES, default="vllm",
                   help="whose memory accounting sizes the cache for --gpu (default vllm, as analyze)")
    p.add_argument("--gpu-mem-util", type=float, default=None, metavar="F",
                   help="fraction of GPU memory the engine may use, for --gpu (default: the engine's, "
                        "0.9 for vLLM, SGLang's rule by GPU size)")
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="skip malformed lines and report how many (default: stop at the first)")
    p.add_argument("--fit", action="store_true",
                   help="fit a scenario to the trace and compare the analytic model with the replay")
    p.add_argument("--fit-think", choices=FIT_THINK, default="auto",
                   help="with --fit: the think-time law, auto (fixed, exponential or lognormal by "
                        "likelihood) or empirical (the trace's own gap quantiles as think_shape)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--warmup", type=float, default=0.0, metavar="F",
                   help="the first fraction F of the requests fill the cache but are not "
                        "counted (default 0; published curves often use 0.5)")
    p.add_argument("--sample", type=float, default=None, metavar="RATE",
                   help="SHARDS spatial sampling: replay only blocks whose hash is under "
                        "RATE (e.g. 0.01) and scale capacities; approximate, LRU only")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="replay a fleet of N instances, each with a cache of every capacity "
                        "(default 1)")
    p.add_argument("--routing", choices=ROUTINGS, default=None,
                   help="how requests are routed to the instances (needed with --instances > 1)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="seed of --routing random (default 0)")
    p.add_argument("--explain", action="store_true",
                   help="split the gap to 100 %% at each capacity: no reuse, capacity, policy, "
                        "routing (holds the trace in memory)")
    p.add_argument("--characteristic-time-s", type=float, default=None, metavar="T",
                   help="with --explain: the characteristic time to mark on the reuse-time "
                        "histogram (default: measured on the trace)")
    p.set_defaults(func=run)
    return p


# ---------------------------------------------------------------------------------------
# Input


def _parse_list(text: str | None, key: str, kind) -> list:
    if text is None:
        return []
    out = []
    for part in text.split(","):
        part = part.strip().replace("_", "")
        if not part:
            continue
        try:
            value = kind(part)
        except ValueError:
            raise ScenarioError(key, part, "must be a comma-separated list of numbers >= 0") from None
        if not value >= 0 or value != value or value == float("inf"):
            raise ScenarioError(key, part, "must be a comma-separated list of numbers >= 0")
        out.append(value)
    if not out:
        raise ScenarioError(key, text, "must be a comma-separated list of numbers >= 0")
    return out


class _Progress:
    """A one-line progress indication on stderr, only on a terminal and after one second."""

    def __init__(self, total_bytes: int | None, label: str):
        self.total = total_bytes
        self.label = label
        self.enabled = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.shown = False

    def update(self, done_bytes: int, requests: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start < 1.0 or now - self.last < 0.2:
            return
        self.last = now
        pct = f"{100 * done_bytes / self.total:5.1f} % " if self.total else ""
        sys.stderr.write(f"\r{self.label}: {pct}({requests:,} requests)")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


def _decode(raw: bytes, line: int) -> str:
    """One line of the file as text; a NUL byte or invalid UTF-8 means a binary file."""
    try:
        if b"\0" in raw:
            raise UnicodeDecodeError("utf-8", raw, 0, 1, "NUL byte")
        text = raw.decode("utf-8")
        return text.removeprefix("\ufeff") if line == 1 else text   # a byte-order mark
    except UnicodeDecodeError:
        raise ScenarioError("trace", "binary data", "is not UTF-8 text: this looks like a binary file, "
                            "not a JSON-lines trace (Mooncake or Bailian)", line=line) from None


class _TraceSource:
    """The trace's lines, readable more than once (stdin is buffered in memory)."""

    def __init__(self, path: str):
        self.path = path
        self._buffer = None
        if path == "-":
            self._buffer = sys.stdin.buffer.read()
            if is_gzip(self._buffer):
                try:
                    self._buffer = gzip.decompress(self._buffer)
                except (OSError, EOFError, zlib.error) as exc:
                    raise ScenarioError("trace", "-", f"is not a valid gzip stream ({exc})") from None
            self.size = len(self._buffer)
        else:
            try:
                self.size = os.path.getsize(path)
                with open(path, "rb") as f:
                    if is_gzip(f.read(2)):
                        self.size = None     # progress counts requests, not compressed bytes
            except OSError as exc:
                raise ScenarioError("trace", path, f"cannot be read ({exc.strerror})") from None

    def lines(self, progress: _Progress, reader: TraceReader) -> Iterator[str]:
        done = 0
        if self._buffer is not None:
            raw_lines = self._buffer.splitlines(keepends=True)
            for raw in raw_lines:
                done += len(raw)
                if not reader.line_number % 1024:
                    progress.update(done, reader.requests_read)
                yield _decode(raw, reader.line_number + 1)
            return
        for raw in read_binary_lines(self.path):
            done += len(raw)
            if not reader.line_number % 1024:
                progress.update(done, reader.requests_read)
            yield _decode(raw, reader.line_number + 1)

    def head(self) -> list:
        out = []
        if self._buffer is not None:
            for i, raw in enumerate(self._buffer.splitlines()[:50]):
                out.append(_decode(raw, i + 1))
            return out
        for raw in read_binary_lines(self.path):
            out.append(_decode(raw, len(out) + 1))
            if raw.strip() or len(out) >= 1000:
                break
        return out


def _run_pass(source: _TraceSource, fmt: str, skip: bool, runners: list, label: str):
    """Read the trace once, feeding every runner in chunks; returns the reader."""
    reader = TraceReader(fmt, skip_bad_lines=skip)
    progress = _Progress(source.size, label)
    chunk = []
    try:
        for request in reader.parse(source.lines(progress, reader)):
            chunk.append(request)
            if len(chunk) >= _CHUNK_REQUESTS:
                for runner in runners:
                    runner.feed(chunk)
                chunk = []
        if chunk:
            for runner in runners:
                runner.feed(chunk)
    finally:
        progress.done()
    return reader


# ---------------------------------------------------------------------------------------
# The command


def _model_kv_bytes(model: str | None, kv_dtype: str) -> float | None:
    if model is None:
        return None
    return kv_bytes_per_token(get_model(model), kv_dtype)


def _gpu_capacity_tokens(args, block_size: int) -> tuple:
    if args.model is None:
        raise ScenarioError("gpu", args.gpu, "needs --model to size the cache")
    values = {"model": args.model, "gpu": args.gpu, "num_gpus": args.num_gpus, "engine": args.engine,
              "kv_dtype": args.kv_dtype, "weight_dtype": args.weight_dtype,
              "gpu_mem_util": args.gpu_mem_util, "block_size": block_size}
    # Unset options take the scenario's defaults, as analyze does (published weights, the
    # engine's utilisation).
    scenario = Scenario.from_dict({k: v for k, v in values.items() if v is not None})
    cap = resolve(scenario).capacity
    if not cap.fits:
        raise ScenarioError("gpu", f"{args.num_gpus} x {args.gpu}", cap.message)
    return cap.capacity_tokens, cap.message


def _default_capacities(curve) -> list:
    """Capacities worth showing when none were asked for: 50/90/99 % of the LRU ceiling,
    the ceiling itself, and round fractions of the distinct blocks."""
    caps = {curve.capacity_for_fraction(f) for f in (0.5, 0.9, 0.99)}
    caps.add(curve.capacity_for_ceiling)
    for frac in (0.01, 0.05, 0.2):
        caps.add(max(1, round(curve.distinct_blocks * frac)))
    return sorted(c for c in caps if c > 0) or [1]


def ideal_prefill_speedup(hit_rate: float) -> float | None:
    """Prefill speedup if hit tokens cost nothing: ``1 / (1 - h)`` (``None`` at h = 1)."""
    return 1 / (1 - hit_rate) if hit_rate < 1 else None


@dataclass(frozen=True)
class _TraceOptions:
    warmup: float
    sample: float | None
    instances: int
    routing: str | None
    fleet: bool


def _trace_options(args) -> _TraceOptions:
    """Validate --warmup, --sample, --instances, --routing and --explain together."""
    warmup = args.warmup
    warmup_requests(warmup, 0)                        # validates 0 <= F < 1
    sample = None if args.sample is None else check_rate(args.sample)
    instances = check_instances(args.instances)
    routing = args.routing
    fleet = instances > 1 or routing is not None
    if instances > 1 and routing is None:
        raise ScenarioError("routing", None, "--instances > 1 needs --routing: "
                            + ", ".join(ROUTINGS))
    if fleet and args.policy != "lru":
        raise ScenarioError("policy", args.policy, "a fleet (--instances/--routing) replays LRU only")
    if sample is not None and args.policy != "lru":
        raise ScenarioError("policy", args.policy, "--sample works with LRU only (the one-pass curve)")
    if args.explain and sample is not None:
        raise ScenarioError("sample", sample, "--explain replays exactly: drop --sample")
    if args.explain and args.semantics != "engine":
        raise ScenarioError("semantics", args.semantics, "--explain uses engine semantics")
    if args.characteristic_time_s is not None and not args.characteristic_time_s > 0:
        raise ScenarioError("characteristic_time_s", args.characteristic_time_s,
                            "must be a number of seconds > 0")
    return _TraceOptions(warmup, sample, instances, routing, fleet)


class _Collector:
    """A runner that keeps the requests (for --explain, whose optimum is offline)."""

    def __init__(self, into: list):
        self.into = into

    def feed(self, requests) -> int:
        self.into.extend(requests)
        return len(self.into)


def run(args: argparse.Namespace) -> int:
    """Run ``replay`` from parsed arguments; returns the exit status (2 on bad input)."""
    try:
        return _run(args)
    except ScenarioError as err:
        if getattr(args, "json", False):
            print(json.dumps({"error": err.to_dict()}), file=sys.stderr)
        print(f"kvcache-calc replay: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _run(args: argparse.Namespace) -> int:
    apply_assignments(args)
    if args.gpu:
        args.gpu = canonical_gpu(args.gpu)
    source = _TraceSource(args.trace)
    fmt = args.format if args.format != "auto" else detect_format(source.head())
    block_size = args.block_size if args.block_size is not None else DEFAULT_BLOCK_SIZE[fmt]
    if block_size < 1:
        raise ScenarioError("block_size", block_size, "must be an integer >= 1 (tokens per block)")

    kv_bytes = _model_kv_bytes(args.model, args.kv_dtype)
    caps: list = []       # (blocks, source label)
    for c in _parse_list(args.capacity_blocks, "capacity_blocks", float):
        if c != int(c):
            raise ScenarioError("capacity_blocks", c, "must be whole blocks")
        caps.append((int(c), "blocks"))
    for t in _parse_list(args.capacity_tokens, "capacity_tokens", float):
        caps.append((capacity_blocks_from_tokens(t, block_size), f"{t:g} tokens"))
    gibs = _parse_list(args.capacity_gib, "capacity_gib", float)
    if gibs and kv_bytes is None:
        raise ScenarioError("capacity_gib", args.capacity_gib,
                            "needs --model (and --kv-dtype) to convert GiB to blocks")
    for g in gibs:
        caps.append((capacity_blocks_from_gib(g, kv_bytes, block_size), f"{g:g} GiB"))
    gpu_note = None
    if args.gpu:
        tokens, gpu_note = _gpu_capacity_tokens(args, block_size)
        caps.append((capacity_blocks_from_tokens(tokens, block_size),
                     f"{args.num_gpus} x {args.gpu}, {args.model}, kv {args.kv_dtype}"))

    opts = _trace_options(args)
    warm = 0
    if opts.warmup > 0:
        counted = _run_pass(source, fmt, args.skip_bad_lines, [], "counting requests")
        warm = warmup_requests(opts.warmup, counted.requests_read)
    need_curve = args.policy == "lru" or not caps or args.fit
    curve = fit = None
    reader = None
    if need_curve:
        if opts.sample is not None:
            curve_runner = WarmupReplay(SampledReplay(block_size, opts.sample, args.semantics), warm)
        elif warm:
            curve_runner = WarmupReplay(LRUCurveReplay(block_size, args.semantics), warm)
        else:
            curve_runner = LRUCurveReplay(block_size, args.semantics)
        runners = [curve_runner]
        fitter = ScenarioFitter(block_size, args.fit_think) if args.fit else None
        if fitter is not None:
            runners.append(fitter)
        reader = _run_pass(source, fmt, args.skip_bad_lines, runners, "replay (LRU curve)")
        curve = curve_runner.result()
        if fitter is not None and fitter.requests:
            fit = fitter.result()
    if not caps:
        caps = [(c, "auto") for c in _default_capacities(curve)]
    capacities = [c for c, _ in caps]
    fleet = None
    if opts.fleet:
        if opts.routing == "cache_aware":
            fleet_runner = CacheAwareReplay(opts.instances, capacities, block_size,
                                            args.semantics, opts.sample)
        else:
            fleet_runner = FleetCurveReplay(opts.routing, opts.instances, block_size,
                                            args.semantics, args.seed, opts.sample)
        counted_runner = WarmupReplay(fleet_runner, warm)
        reader = _run_pass(source, fmt, args.skip_bad_lines, [counted_runner],
                           f"replay ({opts.instances} instances, {opts.routing})")
        fleet = counted_runner.result()
        if opts.routing != "cache_aware":
            fleet = fleet.at(capacities)
        result = fleet
    elif args.policy == "lru":
        result = curve.at(capacities)
    else:
        if args.policy == "belady":
            runner = (BeladyWarmupReplay(capacities, block_size, args.semantics, warm) if warm
                      else BeladyReplay(capacities, block_size, args.semantics))
        else:
            runner = PolicyReplay(args.policy, capacities, block_size, args.semantics)
            if warm:
                runner = WarmupReplay(runner, warm)
        reader = _run_pass(source, fmt, args.skip_bad_lines, [runner], f"replay ({args.policy})")
        result = runner.result()
    if result.requests == 0:
        raise ScenarioError("trace", args.trace, "holds no valid request"
                            + (" after the warm-up" if warm else ""))

    out = result.to_dict()
    if fleet is not None:
        out = {"policy": "lru", "distinct_blocks": curve.distinct_blocks if curve else None,
               **out}
    out = {"trace": args.trace, "format": fmt, **out,
           "capacity_sources": [label for _, label in caps],
           "skipped_lines": reader.skipped_lines}
    out["ideal_prefill_speedup"] = [ideal_prefill_speedup(h) for h in out["token_hit_rate"]]
    out["infinite_ideal_prefill_speedup"] = ideal_prefill_speedup(out["infinite_token_hit_rate"])
    if warm or opts.warmup:
        out["warmup"] = opts.warmup
        out["warmup_requests"] = warm
    if opts.sample is not None:
        out["sample_rate"] = opts.sample
        out["approximate"] = True
        rates = ladder_rates(opts.sample)
        out["sample_rates"] = list(rates)
        out["sample_rate_by_capacity"] = [rate_for_capacity(rates, c)
                                          for c in out["capacity_blocks"]]
        out["sample_min_reliable_capacity_blocks"] = math.ceil(SAMPLE_FLOOR / rates[-1] - 1e-9)
    if reader.first_error is not None:
        out["first_skipped_line_error"] = str(reader.first_error)
    if kv_bytes is not None:
        out["kv_bytes_per_token"] = kv_bytes
        out["capacity_gib"] = [c * block_size * kv_bytes / GIB for c in capacities]
    if gpu_note:
        out["gpu_capacity"] = gpu_note
    if curve is not None:
        out["lru_curve"] = curve.to_dict()
    if fit is not None:
        comparisons = []
        for c in capacities:
            if c <= 0:
                continue
            try:
                comparisons.append(compare_fit_to_replay(
                    fit, curve.token_hit_rate(c), analytic_token_hit_rate,
                    capacity_tokens=c * block_size, warmup=opts.warmup if warm else 0.0))
            except ScenarioError as err:
                comparisons.append({"capacity_tokens": c * block_size, "error": str(err)})
        out["fit"] = {"scenario": fit, "analytic_vs_lru_replay": comparisons, "models": REPLAY_WINDOW_NOTE}
    if args.explain:
        requests: list = []
        _run_pass(source, fmt, args.skip_bad_lines, [_Collector(requests)], "reading for --explain")
        out["explain"] = [explain_gap(requests, c, block_size, opts.instances,
                                      opts.routing or "round_robin", args.seed, args.semantics,
                                      warm, args.characteristic_time_s).to_dict()
                          for c in capacities]

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_table(out)
        _print_trace_options(out)
    return 0


def _print_table(out: dict) -> None:
    print(f"trace: {out['trace']} ({out['format']}, {out['requests']:,} requests, "
          f"{out['total_blocks']:,} block references, {out['distinct_blocks']:,} distinct blocks, "
          f"{out['block_size']} tokens per block)")
    if out["skipped_lines"]:
        print(f"skipped {out['skipped_lines']:,} malformed lines (first: "
              f"{out.get('first_skipped_line_error')})")
    print(f"policy: {out['policy']}, semantics: {out['semantics']}")
    if out.get("gpu_capacity"):
        print(f"instance capacity: {out['gpu_capacity']}")
    headers = ["capacity_blocks", "capacity_tokens"]
    if "capacity_gib" in out:
        headers.append("capacity_gib")
    headers += ["block_hit_rate", "token_hit_rate", "speedup", "from"]
    rows = []
    for i, c in enumerate(out["capacity_blocks"]):
        row = [f"{c:,}", f"{out['capacity_tokens'][i]:,}"]
        if "capacity_gib" in out:
            row.append(f"{out['capacity_gib'][i]:,.2f}")
        row += [format_percent(out["block_hit_rate"][i], 2), format_percent(out["token_hit_rate"][i], 2),
                _speedup(out["token_hit_rate"][i]), out["capacity_sources"][i]]
        rows.append(row)
    ceiling = ["infinite", "", *([""] if "capacity_gib" in out else []),
               format_percent(out["infinite_block_hit_rate"], 2),
               format_percent(out["infinite_token_hit_rate"], 2),
               _speedup(out["infinite_token_hit_rate"]), ""]
    rows.append(ceiling)
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(headers)]
    print("  ".join(h.rjust(w) if k < len(headers) - 1 else h
                    for k, (h, w) in enumerate(zip(headers, widths))))
    for r in rows:
        print("  ".join(v.rjust(w) if k < len(headers) - 1 else v
                        for k, (v, w) in enumerate(zip(r, widths))).rstrip())
    lru = out.get("lru_curve")
    if lru:
        print("LRU capacity for 50 / 90 / 99 / 100 % of the block-hit ceiling: "
              f"{lru['capacity_blocks_for_50pct_of_ceiling']:,} / "
              f"{lru['capacity_blocks_for_90pct_of_ceiling']:,} / "
              f"{lru['capacity_blocks_for_99pct_of_ceiling']:,} / "
              f"{lru['capacity_blocks_for_ceiling']:,} blocks")
        print("LRU capacity for 50 / 90 / 99 % of the token-hit ceiling (as the lab's table): "
              f"{lru['capacity_blocks_for_50pct_of_token_ceiling']:,} / "
              f"{lru['capacity_blocks_for_90pct_of_token_ceiling']:,} / "
              f"{lru['capacity_blocks_for_99pct_of_token_ceiling']:,} blocks")
    fit = out.get("fit")
    if fit:
        sc = fit["scenario"]
        print("fitted scenario (docs/model.md §10.6):")
        for line in fit_report(sc):
            print(f"  {line}")
        if sc["diagnostics"].get("note"):
            print(f"  note: {sc['diagnostics']['note']}")
        _, left_out = model_scenario(sc)
        if left_out:
            print("  the model below runs without the keys this version does not have")
        window = next((c for c in fit["analytic_vs_lru_replay"] if "window_s" in c), None)
        print(f"  {fit['models']}" + (
            f" (window {window['window_s']:,.0f} s, counted from {window['observed_from_s']:,.0f} s)"
            if window else ""))
        for cmp in fit["analytic_vs_lru_replay"]:
            if "error" in cmp:
                print(f"  at {cmp['capacity_tokens']:,} tokens: the model cannot run the fitted "
                      f"scenario: {cmp['error']}")
                continue
            print(f"  at {cmp['capacity_tokens']:,} tokens: analytic "
                  f"{format_percent(cmp['analytic_token_hit_rate'], 2)} vs LRU replay "
                  f"{format_percent(cmp['replay_token_hit_rate'], 2)} (gap {format_points(cmp['gap'])} points)")


def _percent(x: float) -> str:
    return format_percent(x, 2)


def _speedup(h: float) -> str:
    x = ideal_prefill_speedup(h)
    return "inf" if x is None else f"{x:.2f}x"


def _print_trace_options(out: dict) -> None:
    """The lines added by --warmup, --sample, --instances and --explain."""
    if "warmup_requests" in out:
        print(f"warm-up: the first {out['warmup_requests']:,} requests ({out['warmup']:g} of the "
              "trace) fill the cache and are not counted")
    if out.get("approximate"):
        print(f"approximate: SHARDS sample of rate {out['sample_rate']:g} "
              "(blocks whose hash is under the rate; capacities scaled)"
              + (", higher where it holds under 100 blocks: rate "
                 + ", ".join(f"{r:g} at {c:,}" for c, r in zip(out["capacity_blocks"],
                                                              out["sample_rate_by_capacity"]))
                 if any(r != out["sample_rate"] for r in out["sample_rate_by_capacity"]) else ""))
        low = [c for c in out["capacity_blocks"] if c < out["sample_min_reliable_capacity_blocks"]]
        if low:
            print(f"  unreliable below {out['sample_min_reliable_capacity_blocks']:,} blocks "
                  f"(the highest rate's sample holds under 100 blocks there): use a higher "
                  f"--sample rate for "
                  + ", ".join(f"{c:,}" for c in low))
    print("speedup: ideal prefill speedup 1 / (1 - token hit rate)")
    if "per_instance" in out:
        print(f"fleet: {out['instances']} instances, routing {out['routing']}"
              + (f" (seed {out['seed']})" if out["routing"] == "random" else "")
              + "; capacities are per instance; hit rates above are fleet-wide")
        for inst in out["per_instance"]:
            rates = ", ".join(f"{_percent(h)} ({_speedup(h)})" for h in inst["token_hit_rate"])
            reqs = sorted(set(inst["requests"]))
            shown = f"{reqs[0]:,}" if len(reqs) == 1 else "/".join(f"{r:,}" for r in inst["requests"])
            print(f"  instance {inst['instance']}: {shown} requests, token hit rate {rates}")
    for ex in out.get("explain", []):
        _print_explain(ex)


def _print_explain(ex: dict) -> None:
    """The gap split at one capacity: overall and per prompt-length bucket, in points."""
    head = (f"why the hit rate is what it is at {ex['capacity_blocks']:,} blocks"
            + (f" per instance x {ex['instances']} ({ex['routing']})" if ex["instances"] > 1
               else "") + ", points of token hit rate:")
    print(head)
    names = ("no_reuse", "capacity", "policy", "routing", "hit")
    rows = [["prompt tokens", "requests", *names]]
    o = ex["overall"]
    rows.append(["all", f"{o['requests']:,}", *(f"{100 * o['parts'][k]:.1f}" for k in names)])
    for b in ex["buckets"]:
        hi = b["input_tokens_max"]
        label = f"{b['input_tokens_min']:,}-{hi - 1:,}" if hi is not None else f">={b['input_tokens_min']:,}"
        rows.append([label, f"{b['requests']:,}", *(f"{100 * b['parts'][k]:.1f}" for k in names)])
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(v.rjust(w) for v, w in zip(r, widths)))
    print(f"  ceiling {_percent(o['ceiling'])} ({_speedup(o['ceiling'])}), offline optimum "
          f"{_percent(o['optimum'])}, one LRU cache of {ex['pooled_capacity_blocks']:,} blocks "
          f"{_percent(o['lru'])}, fleet {_percent(o['fleet'])} ({_speedup(o['fleet'])})")
    for c in o["clipped"]:
        print(f"  note: {c['note']} (raw {100 * c['raw']:+.2f} points)")
    for note in ex.get("notes", []):
        print(f"  note: {note}")
    t = ex["characteristic_time_s"]
    if t is not None and ex["share_of_reuses_within_characteristic_time"] is not None:
        print(f"  reuses within the characteristic time T = {t:,.1f} s "
              f"({ex['characteristic_time_source']}): "
              f"{_percent(ex['share_of_reuses_within_characteristic_time'])}")
