"""Request traces: streaming readers for the Mooncake and Alibaba Bailian JSONL formats,
format detection (the scenario fitter is in :mod:`kvcache_calculator.traces.fit`).

Readers take an iterable of text lines (the CLI opens files; the page passes chunks of an
uploaded file through :func:`split_lines`), and yield :class:`Request` objects one at a time,
so a trace of any length is read in constant memory.

Formats (docs/model.md §10.1):

- **Mooncake** (kvcache-ai/Mooncake, ``FAST25-release/traces/``): one JSON object per line,
  ``{"timestamp": ms, "input_length": tokens, "output_length": tokens, "hash_ids": [...]}``;
  ``hash_ids`` are prefix hashes of 512-token blocks, and the timestamp is in milliseconds.
- **Bailian** (alibaba-edu/qwen-bailian-usagetraces-anon, released with Wang et al., "KVCache
  Cache in the Wild", USENIX ATC'25): the same fields plus ``chat_id`` (int),
  ``parent_chat_id`` (int, -1 for the first request of a conversation), ``turn`` (int, 1 for
  the first), ``type`` (``text``/``search``/``image``/``file``); ``timestamp`` is in
  *seconds* since the start of the trace (a float), and ``hash_ids`` are salted SipHash-2-4
  hashes of 16-token blocks remapped to integers. What this module relies on is exactly the
  record example and field comments of that repository's README (checked 2026-11): field
  names, the seconds unit, -1 for roots, 16-token blocks. Nothing else about the Bailian
  format is assumed; in particular a follow-up's ``input_length`` is not assumed to contain
  its parent's whole prompt and response.

A malformed line raises :class:`~kvcache_calculator.errors.ScenarioError` naming the line
number (1-based) and what is wrong; with ``skip_bad_lines=True`` the reader skips such lines
and counts them (``TraceReader.skipped_lines``, first error kept in ``first_error``).
Blank lines are ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

from kvcache_calculator.errors import ScenarioError
# The fitter lives in traces/fit.py; its names stay importable from here.
from kvcache_calculator.traces.fit import (
    ScenarioFitter,
    analytic_token_hit_rate,
    compare_fit_to_replay,
    fit_scenario,
)

__all__ = [
    "FORMATS",
    "DEFAULT_BLOCK_SIZE",
    "Request",
    "TraceReader",
    "detect_format",
    "read_trace",
    "split_lines",
    "ScenarioFitter",
    "fit_scenario",
    "compare_fit_to_replay",
    "analytic_token_hit_rate",
]

FORMATS = ("mooncake", "bailian")
#: Tokens per ``hash_ids`` block in each published format (docs/model.md §10.1).
DEFAULT_BLOCK_SIZE = {"mooncake": 512, "bailian": 16}
_BAILIAN_KEYS = ("chat_id", "parent_chat_id", "turn")


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a trace.

    ``timestamp_s`` is the arrival time in seconds (Mooncake's milliseconds are divided by
    1000), ``input_length`` / ``output_length`` are prompt and response tokens, ``hash_ids``
    the prefix-hash ids of the prompt's blocks. The Bailian fields are ``None`` for Mooncake
    traces. ``line`` is the 1-based line number in the source (0 when built by hand).
    """

    timestamp_s: float
    input_length: int
    output_length: int
    hash_ids: tuple
    chat_id: int | None = None
    parent_chat_id: int | None = None
    turn: int | None = None
    type: str | None = None
    line: int = 0

    def to_dict(self) -> dict:
        """The request as plain JSON types."""
        return {"timestamp_s": self.timestamp_s, "input_length": self.input_length,
                "output_length": self.output_length, "hash_ids": list(self.hash_ids),
                "chat_id": self.chat_id, "parent_chat_id": self.parent_chat_id,
                "turn": self.turn, "type": self.type, "line": self.line}


def split_lines(chunks: Iterable[str]) -> Iterator[str]:
    """Yield complete lines from text chunks that may split lines anywhere.

    For the page, which reads an uploaded file in slices: ``read_trace(split_lines(chunks))``.
    A final line without a newline is yielded too.
    """
    rest = ""
    for chunk in chunks:
        if not chunk:
            continue
        parts = (rest + chunk).split("\n")
        rest = parts.pop()
        yield from parts
    if rest:
        yield rest


def _format_of(obj: dict) -> str:
    return "bailian" if any(k in obj for k in _BAILIAN_KEYS) else "mooncake"


def detect_format(lines: Iterable[str]) -> str:
    """``"bailian"`` if the first non-blank line has ``chat_id``/``parent_chat_id``/``turn``,
    else ``"mooncake"``. Only the first non-blank line is read (pass a list or the head of a
    file). Raises ScenarioError if that line is not a JSON object or there is none."""
    for number, text in enumerate(lines, start=1):
        if text.strip():
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise ScenarioError("trace", text.strip(), f"not JSON ({exc.msg})",
                                    line=number) from None
            if not isinstance(obj, dict):
                raise ScenarioError("trace", text.strip(), "each line must be a JSON object",
                                    line=number)
            return _format_of(obj)
    raise ScenarioError("trace", "", "the trace is empty: expected JSON lines "
                        "(Mooncake or Bailian format)")


def _int_field(obj: dict, key: str, number: int, minimum: int) -> int:
    if key not in obj:
        raise ScenarioError(key, "missing", "this field is required", line=number)
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ScenarioError(key, value, f"must be an integer >= {minimum}", line=number)
    if isinstance(value, float):
        if not value.is_integer():
            raise ScenarioError(key, value, f"must be an integer >= {minimum}", line=number)
        value = int(value)
    if value < minimum:
        raise ScenarioError(key, value, f"must be an integer >= {minimum}", line=number)
    return value


class TraceReader:
    """Streaming parser of trace lines into :class:`Request` objects.

    Keeps its position across calls, so a caller can feed successive batches of lines
    (``for r in reader.parse(batch)``) and line numbers keep counting. ``format`` is
    ``"mooncake"``, ``"bailian"`` or ``None``/``"auto"`` (detected from the first non-blank
    line). With ``skip_bad_lines`` a malformed line is skipped and counted in
    ``skipped_lines``; otherwise it raises ScenarioError with its line number.
    """

    def __init__(self, format: str | None = None, *, skip_bad_lines: bool = False):
        if format not in (None, "auto") + FORMATS:
            raise ScenarioError("format", format, "allowed: auto, mooncake, bailian")
        self.format = None if format in (None, "auto") else format
        self.skip_bad_lines = skip_bad_lines
        self.line_number = 0
        self.requests_read = 0
        self.skipped_lines = 0
        self.first_error: ScenarioError | None = None

    def parse(self, lines: Iterable[str]) -> Iterator[Request]:
        """Yield the requests of ``lines`` (continuing the line count of earlier calls)."""
        for text in lines:
            self.line_number += 1
            if not text.strip():
                continue
            try:
                request = self._parse_line(text, self.line_number)
            except ScenarioError as err:
                if not self.skip_bad_lines:
                    raise
                self.skipped_lines += 1
                if self.first_error is None:
                    self.first_error = err
                continue
            self.requests_read += 1
            yield request

    def _parse_line(self, text: str, number: int) -> Request:
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise ScenarioError("trace", text.strip(), f"not valid JSON ({exc.msg})",
                                line=number) from None
        if not isinstance(obj, dict):
            raise ScenarioError("trace", text.strip(), "each line must be a JSON object",
                                line=number)
        if self.format is None:
            self.format = _format_of(obj)
        if "timestamp" not in obj:
            raise ScenarioError("timestamp", "missing", "this field is required", line=number)
        ts = obj["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) \
                or ts < 0:
            raise ScenarioError("timestamp", ts, "must be a finite number >= 0", line=number)
        input_length = _int_field(obj, "input_length", number, 0)
        output_length = _int_field(obj, "output_length", number, 0)
        hash_ids = obj.get("hash_ids")
        if not isinstance(hash_ids, list):
            raise ScenarioError("hash_ids", "missing" if hash_ids is None else hash_ids,
                                "must be a list of integer block ids", line=number)
        for h in hash_ids:
            if isinstance(h, bool) or not isinstance(h, int):
                raise ScenarioError("hash_ids", h, "must be a list of integer block ids",
                                    line=number)
        if self.format == "mooncake":
            return Request(ts / 1000.0, input_length, output_length, tuple(hash_ids),
                           line=number)
        chat_id = _int_field(obj, "chat_id", number, 0)
        parent = _int_field(obj, "parent_chat_id", number, -1)
        turn = _int_field(obj, "turn", number, 0)
        kind = obj.get("type")
        if kind is not None and not isinstance(kind, str):
            raise ScenarioError("type", kind, "must be a string (text, search, image, file)",
                                line=number)
        return Request(float(ts), input_length, output_length, tuple(hash_ids), chat_id,
                       parent, turn, kind, number)


def read_trace(lines: Iterable[str], format: str | None = None, *,
               skip_bad_lines: bool = False) -> Iterator[Request]:
    """Yield the requests of a trace given as text lines (format detected when ``None``).

    Convenience wrapper around :class:`TraceReader`; use the class directly to learn how many
    bad lines were skipped.
    """
    return TraceReader(format, skip_bad_lines=skip_bad_lines).parse(lines)
