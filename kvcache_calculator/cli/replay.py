"""The ``kvcache-calc replay`` subcommand: replay a request trace against a block cache.

    kvcache-calc replay TRACE.jsonl [--format auto|mooncake|bailian] [--block-size N]
        [--policy lru|fifo|lfu|belady] [--semantics engine|independent]
        [--capacity-blocks N,N,...] [--capacity-tokens N,...]
        [--capacity-gib X,... --model ID [--kv-dtype DT]]
        [--model ID --gpu ID [--num-gpus N] [--weight-dtype DT] [--kv-dtype DT]]
        [--skip-bad-lines] [--fit] [--json]

Prints ``capacity_blocks``, ``block_hit_rate``, ``token_hit_rate`` (one per capacity) and the
infinite-cache ceilings; for LRU also the capacities reaching 50/90/99 % of the ceiling. With
no capacity option the capacities are chosen from the LRU curve. ``--fit`` fits a scenario
to the trace and compares the analytic model with the LRU replay at each capacity. This
module is the shell: it opens the file, shows progress on a terminal and formats output;
the work is done by :mod:`kvcache_calculator.traces.readers` and :mod:`kvcache_calculator.traces.replay`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterator

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario
from kvcache_calculator.setup.architecture import kv_bytes_per_token
from kvcache_calculator.setup.presets import get_model
from kvcache_calculator.setup.resolve import resolve
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
    ScenarioFitter,
    TraceReader,
    analytic_token_hit_rate,
    compare_fit_to_replay,
    detect_format,
)
from kvcache_calculator.units import format_points, format_percent

EXIT_BAD_INPUT = 2
_CHUNK_REQUESTS = 2000


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``replay`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "replay", help="replay a Mooncake or Bailian request trace against a block cache",
        description="Block-level replay of a request trace: hit rates at given capacities "
                    "and the infinite-cache ceiling.")
    p.add_argument("trace", metavar="TRACE.jsonl", help="trace file, JSON lines ('-' for stdin)")
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
    p.add_argument("--weight-dtype", default="bf16", metavar="DT",
                   help="weight dtype for --gpu (default bf16)")
    p.add_argument("--gpu-mem-util", type=float, default=0.9, metavar="F",
                   help="fraction of GPU memory the engine may use, for --gpu (default 0.9)")
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="skip malformed lines and report how many (default: stop at the first)")
    p.add_argument("--fit", action="store_true",
                   help="fit a scenario to the trace and compare the analytic model with the replay")
    p.add_argument("--json", action="store_true", help="machine-readable output")
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
            self.size = len(self._buffer)
        else:
            try:
                self.size = os.path.getsize(path)
                with open(path, "rb"):
                    pass
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
        with open(self.path, "rb") as f:
            for raw in f:
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
        with open(self.path, "rb") as f:
            for raw in f:
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
    scenario = Scenario.from_dict({
        "model": args.model, "gpu": args.gpu, "num_gpus": args.num_gpus,
        "kv_dtype": args.kv_dtype, "weight_dtype": args.weight_dtype,
        "gpu_mem_util": args.gpu_mem_util, "block_size": block_size})
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

    need_curve = args.policy == "lru" or not caps or args.fit
    curve = fit = None
    reader = None
    if need_curve:
        curve_runner = LRUCurveReplay(block_size, args.semantics)
        runners = [curve_runner]
        fitter = ScenarioFitter(block_size) if args.fit else None
        if fitter is not None:
            runners.append(fitter)
        reader = _run_pass(source, fmt, args.skip_bad_lines, runners, "replay (LRU curve)")
        curve = curve_runner.result()
        if fitter is not None and fitter.requests:
            fit = fitter.result()
    if not caps:
        caps = [(c, "auto") for c in _default_capacities(curve)]
    capacities = [c for c, _ in caps]
    if args.policy == "lru":
        result = curve.at(capacities)
    else:
        if args.policy == "belady":
            runner = BeladyReplay(capacities, block_size, args.semantics)
        else:
            runner = PolicyReplay(args.policy, capacities, block_size, args.semantics)
        reader = _run_pass(source, fmt, args.skip_bad_lines, [runner], f"replay ({args.policy})")
        result = runner.result()
    if result.requests == 0:
        raise ScenarioError("trace", args.trace, "holds no valid request")

    out = result.to_dict()
    out = {"trace": args.trace, "format": fmt, **out,
           "capacity_sources": [label for _, label in caps],
           "skipped_lines": reader.skipped_lines}
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
                    capacity_tokens=c * block_size))
            except ScenarioError as err:
                comparisons.append({"capacity_tokens": c * block_size, "error": str(err)})
        out["fit"] = {"scenario": fit, "analytic_vs_lru_replay": comparisons}

    if args.json:
        print(json.dumps(out, indent=2))
    else:
        _print_table(out)
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
    headers += ["block_hit_rate", "token_hit_rate", "from"]
    rows = []
    for i, c in enumerate(out["capacity_blocks"]):
        row = [f"{c:,}", f"{out['capacity_tokens'][i]:,}"]
        if "capacity_gib" in out:
            row.append(f"{out['capacity_gib'][i]:,.2f}")
        row += [format_percent(out["block_hit_rate"][i], 2), format_percent(out["token_hit_rate"][i], 2),
                out["capacity_sources"][i]]
        rows.append(row)
    ceiling = ["infinite", "", *([""] if "capacity_gib" in out else []),
               format_percent(out["infinite_block_hit_rate"], 2),
               format_percent(out["infinite_token_hit_rate"], 2), ""]
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
    fit = out.get("fit")
    if fit:
        sc = fit["scenario"]
        keys = ("arrival_rate", "turns", "think_time_s", "input_tokens", "output_tokens",
                "system_prompt_tokens")
        print("fitted scenario: " + " ".join(
            f"{k}={sc[k]:.4g}" if isinstance(sc[k], float) else f"{k}={sc[k]}" for k in keys))
        note = sc["diagnostics"].get("note")
        if note:
            print(f"  note: {note}")
        for cmp in fit["analytic_vs_lru_replay"]:
            if "error" in cmp:
                print(f"  at {cmp['capacity_tokens']:,} tokens: analytic model failed: {cmp['error']}")
                continue
            print(f"  at {cmp['capacity_tokens']:,} tokens: analytic "
                  f"{format_percent(cmp['analytic_token_hit_rate'], 2)} vs LRU replay "
                  f"{format_percent(cmp['replay_token_hit_rate'], 2)} (gap {format_points(cmp['gap'])} points)")
