"""The ``kvcache-calc summarize`` subcommand: a compact summary of a trace for the page.

    kvcache-calc summarize TRACE.jsonl[.gz] --out FILE.json --licence TEXT [--origin TEXT]
        [--name NAME] [--format auto|mooncake|bailian] [--block-size N] [--skip-bad-lines]

Writes the summary of :mod:`kvcache_calculator.traces.summary` (the exact LRU curve, the
ceiling, reuse times, prompt-length buckets, FIFO and the offline optimum on a grid of
capacities, fleets under each routing; for warm-ups 0 and 0.5) as JSON, with the file's name,
sha256, size and the licence statement given. The built-in traces of the page are made so
(``site/traces/``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.gz import read_binary_lines
from kvcache_calculator.traces.readers import DEFAULT_BLOCK_SIZE, FORMATS, TraceReader
from kvcache_calculator.traces.summary import summarize

EXIT_BAD_INPUT = 2


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``summarize`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "summarize", help="write a compact JSON summary of a trace (for the page's built-in traces)",
        description="Summarise a Mooncake or Bailian trace: exact LRU curve, ceiling, reuse "
                    "times, prompt-length buckets, FIFO/optimum on a grid, routing.")
    p.add_argument("trace", metavar="TRACE.jsonl", help="trace file, JSON lines (.gz read as a stream)")
    p.add_argument("--out", required=True, metavar="FILE.json", help="where to write the summary")
    p.add_argument("--licence", required=True, metavar="TEXT",
                   help="the trace's licence, e.g. Apache-2.0 (stored in the summary)")
    p.add_argument("--origin", default="", metavar="TEXT",
                   help="where the trace comes from (stored in the summary)")
    p.add_argument("--name", default=None, help="name of the trace (default: the file name)")
    p.add_argument("--format", choices=("auto",) + FORMATS, default="auto",
                   help="trace format (default: detected from the first line)")
    p.add_argument("--block-size", type=int, default=None, metavar="N",
                   help="tokens per hash_ids block (default: 512 Mooncake, 16 Bailian)")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip malformed lines")
    p.set_defaults(func=run)
    return p


def file_digest(path: str) -> tuple:
    """``(sha256 hex, size in bytes)`` of the file as stored."""
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ScenarioError("trace", path, f"cannot be read ({exc.strerror})") from None
    return h.hexdigest(), size


def summarize_file(path: str, licence: str, origin: str = "", name: str | None = None,
                   trace_format: str = "auto", block_size: int | None = None,
                   skip_bad_lines: bool = False) -> dict:
    """Read ``path`` and return its summary (plain JSON types)."""
    sha, size = file_digest(path)
    reader = TraceReader(None if trace_format == "auto" else trace_format,
                         skip_bad_lines=skip_bad_lines)
    lines = (raw.decode("utf-8").removeprefix("\ufeff") if i == 0 else raw.decode("utf-8")
             for i, raw in enumerate(read_binary_lines(path)))
    try:
        requests = list(reader.parse(lines))
    except UnicodeDecodeError:
        raise ScenarioError("trace", path, "is not UTF-8 text") from None
    fmt = reader.format or "mooncake"
    bs = block_size if block_size is not None else DEFAULT_BLOCK_SIZE[fmt]
    base = os.path.basename(path)
    stem = base.split(".")[0]
    return summarize(requests, name=name or stem, block_size=bs, trace_format=fmt,
                     source_file=base, sha256=sha, size_bytes=size, licence=licence,
                     origin=origin)


def dumps(summary: dict) -> str:
    """The summary as the committed files hold it: JSON, one space of indent, newline."""
    return json.dumps(summary, indent=1) + "\n"


def run(args: argparse.Namespace) -> int:
    """Run ``summarize``; returns the exit status (2 on bad input)."""
    try:
        summary = summarize_file(args.trace, args.licence, args.origin, args.name, args.format,
                                 args.block_size, args.skip_bad_lines)
        text = dumps(summary)
        try:
            with open(args.out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise ScenarioError("out", args.out, f"cannot be written ({exc.strerror})") from None
    except ScenarioError as err:
        print(f"kvcache-calc summarize: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {args.out} ({len(text.encode()):,} bytes): {summary['name']}, "
          f"{summary['views'][0]['requests']:,} requests")
    return 0
