"""Request traces: streaming readers for the Mooncake and Alibaba Bailian JSONL formats,
format detection, and fitting a scenario (docs/architecture.md §3 keys) to a trace.

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

import bisect
from array import array
import json
import math
from dataclasses import dataclass
from typing import Iterable, Iterator

from kvcache_calculator.analytic.model import analyze
from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.scenario import Scenario

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


# ---------------------------------------------------------------------------------------
# Fitting a scenario to a trace


class _MisraGries:
    """Heavy hitters of a stream with ``k`` counters (Misra and Gries 1982): every item with
    frequency > n/(k+1) is kept, and counts are under-estimated by at most n/(k+1)."""

    __slots__ = ("k", "counts")

    def __init__(self, k: int):
        self.k = k
        self.counts: dict = {}

    def add(self, item) -> None:
        counts = self.counts
        if item in counts:
            counts[item] += 1
        elif len(counts) < self.k:
            counts[item] = 1
        else:
            for key in list(counts):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]

    def top(self) -> tuple:
        if not self.counts:
            return None, 0
        item = max(self.counts, key=self.counts.__getitem__)
        return item, self.counts[item]


#: Upper edges (seconds) of the reuse-time histogram: 1 ms to about 11.6 days, 10 per decade.
_REUSE_EDGES_S = tuple(10 ** (k / 10) for k in range(-30, 61))


class ScenarioFitter:
    """Streaming fit of a scenario (docs/model.md §10.6) to a trace (feed requests, then ``result()``).

    What each key is fitted from:

    - ``arrival_rate`` (new conversations/s): first turns over the trace duration. Bailian:
      first turns are requests with ``parent_chat_id == -1``. Mooncake has no conversation
      ids, so they are inferred: a request whose longest already-seen prefix of blocks goes
      past the fitted system prompt is a follow-up of the last request that held the
      deepest block of that prefix; any other request starts a conversation.
    - ``turns``: requests per first turn (mean turns per conversation).
    - ``think_time_s``: mean gap between a follow-up's arrival and its parent's. The traces
      have no completion times, so this gap also contains the parent's queueing and
      generation time (an overestimate of think time by that much).
    - ``input_tokens``: new prompt tokens per turn: a first turn's ``input_length`` minus the
      fitted system prompt; a follow-up's ``input_length`` minus its parent's input and
      output (clamped at 0).
    - ``output_tokens``: mean ``output_length``.

    Token counts are rounded to integers, as the scenario keys require (the exact means are
    in the diagnostics).
    - ``system_prompt_tokens``: ``block_size`` times the number of leading block positions
      whose most frequent id is in more than half of the first-turn requests (all requests
      for Mooncake). Counted with Misra-Gries heavy hitters (16 counters per position, first
      64 positions), which under-count by at most 1/17 of the requests, so a prefix shared
      by barely more than half may be missed.

    Diagnostics: request rate, duration, token-length means and quantiles, reuse times
    (time between successive references to a block, independent of any cache) with the
    fraction within 10 s and 10 min (the Alibaba paper's reference points), and for Bailian
    the measured think-time quantiles. State kept: one timestamp per distinct block, and for
    Bailian one (timestamp, tokens) pair per request that may get a follow-up.
    """

    _PREFIX_POSITIONS = 64

    def __init__(self, block_size: int):
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ScenarioError("block_size", block_size, "must be an integer >= 1")
        self.block_size = block_size
        self.requests = 0
        self.first_ts = math.inf
        self.last_ts = -math.inf
        self.sum_input = 0
        self.sum_output = 0
        self.input_hist: dict = {}
        self.roots = 0
        self.followups = 0
        self.new_input_root: list = [0, 0]   # sum of root input_length, count
        self.new_input_follow: list = [0, 0]  # sum of follow-up new tokens, count
        self.missing_parents = 0
        self.think_sum_s = 0.0
        self.think_hist = [0] * (len(_REUSE_EDGES_S) + 1)
        self.reuse_hist = [0] * (len(_REUSE_EDGES_S) + 1)
        self.reuses = 0
        self.reuse_within_10s = 0
        self.reuse_within_600s = 0
        self.block_last_ts: dict = {}   # block -> (timestamp_s, tokens of that request)
        self._inferred_k = array("q")
        self._inferred_gap_s = array("d")
        self._inferred_input = array("q")
        self._inferred_parent_tokens = array("q")
        self.chat_info: dict = {}
        self.bailian = False
        self.prefix_counted = 0
        self.prefix_heavy = [_MisraGries(16) for _ in range(self._PREFIX_POSITIONS)]

    def feed(self, requests: Iterable[Request]) -> int:
        """Account for ``requests``; returns how many were fed."""
        edges = _REUSE_EDGES_S
        last = self.block_last_ts
        fed = 0
        for r in requests:
            fed += 1
            t = r.timestamp_s
            self.requests += 1
            self.first_ts = min(self.first_ts, t)
            self.last_ts = max(self.last_ts, t)
            self.sum_input += r.input_length
            self.sum_output += r.output_length
            if r.parent_chat_id is None or r.parent_chat_id < 0:
                # Only first turns: a follow-up repeats its own conversation's history.
                self.prefix_counted += 1
                for pos, h in enumerate(r.hash_ids[: self._PREFIX_POSITIONS]):
                    self.prefix_heavy[pos].add(h)
            if r.chat_id is None:
                # No conversation ids: remember the longest already-seen prefix and the last
                # request holding its deepest block (the candidate previous turn).
                ids = r.hash_ids
                k = 0
                while k < len(ids) and ids[k] in last:
                    k += 1
                self._inferred_k.append(k)
                self._inferred_input.append(r.input_length)
                if k:
                    prev_t, prev_tokens = last[ids[k - 1]]
                    self._inferred_gap_s.append(max(0.0, t - prev_t))
                    self._inferred_parent_tokens.append(prev_tokens)
                else:
                    self._inferred_gap_s.append(0.0)
                    self._inferred_parent_tokens.append(0)
            seen_as = (t, r.input_length + r.output_length)
            for h in r.hash_ids:
                prev = last.get(h)
                if prev is not None:
                    gap = t - prev[0]
                    self.reuses += 1
                    self.reuse_hist[bisect.bisect_left(edges, gap)] += 1
                    if gap <= 10:
                        self.reuse_within_10s += 1
                    if gap <= 600:
                        self.reuse_within_600s += 1
                last[h] = seen_as
            if r.chat_id is not None:
                self.bailian = True
                self.chat_info[r.chat_id] = (t, r.input_length + r.output_length)
                if r.parent_chat_id is None or r.parent_chat_id < 0:
                    self.roots += 1
                    self.new_input_root[0] += r.input_length
                    self.new_input_root[1] += 1
                else:
                    self.followups += 1
                    parent = self.chat_info.get(r.parent_chat_id)
                    if parent is None:
                        self.missing_parents += 1
                    else:
                        gap = max(0.0, t - parent[0])
                        self.think_sum_s += gap
                        self.think_hist[bisect.bisect_left(edges, gap)] += 1
                        self.new_input_follow[0] += max(0, r.input_length - parent[1])
                        self.new_input_follow[1] += 1
            else:
                self.new_input_root[0] += r.input_length
                self.new_input_root[1] += 1
        return fed

    def _system_prompt_blocks(self) -> int:
        half = self.prefix_counted / 2
        blocks = 0
        for heavy in self.prefix_heavy:
            _, count = heavy.top()
            if count <= half:
                break
            blocks += 1
        return blocks

    @staticmethod
    def _quantiles(hist: list, total: int) -> dict:
        """Quantiles read off the log-binned histogram (upper bin edge, seconds; ``None``
        beyond the last edge, about 11.6 days, or when there is nothing to count)."""
        out = {}
        if total == 0:
            return {f"p{q}": None for q in (50, 80, 90, 99)}
        for q in (50, 80, 90, 99):
            need = q / 100 * total
            run = 0
            value = None
            for i, c in enumerate(hist):
                run += c
                if run >= need:
                    value = _REUSE_EDGES_S[i] if i < len(_REUSE_EDGES_S) else None
                    break
            out[f"p{q}"] = value
        return out

    def result(self) -> dict:
        """The fitted scenario (docs/architecture.md §3 keys) plus a ``diagnostics`` dict, plain JSON types.

        Raises ScenarioError if no request was fed.
        """
        if self.requests == 0:
            raise ScenarioError("trace", "empty", "no requests to fit a scenario to")
        duration_s = self.last_ts - self.first_ts
        # With every request at one instant the rate is undefined; 1 s is a stated floor.
        span_s = duration_s if duration_s > 0 else 1.0
        sp_blocks = self._system_prompt_blocks()
        sp_tokens = sp_blocks * self.block_size
        mean_in = self.sum_input / self.requests
        mean_out = self.sum_output / self.requests
        root_sum, root_n = self.new_input_root
        new_root = max(0.0, root_sum / root_n - sp_tokens) if root_n else 0.0
        fol_sum, fol_n = self.new_input_follow
        if fol_n:
            input_tokens = (new_root * root_n + fol_sum) / (root_n + fol_n)
        else:
            input_tokens = new_root
        input_tokens = max(1.0, input_tokens)
        if self.bailian:
            conversations = max(1, self.roots)
            turns = self.requests / conversations
            arrival_rate = conversations / span_s
            think_n = sum(self.think_hist)
            think_time_s = self.think_sum_s / think_n if think_n else None
        else:
            # Conversations inferred from shared prefixes: a request whose already-seen
            # prefix goes past the system prompt continues the request that last held the
            # deepest block of that prefix.
            roots = follow = 0
            think = 0.0
            new_sum = 0.0
            think_hist = [0] * (len(_REUSE_EDGES_S) + 1)
            for k, gap, n_in, parent_tokens in zip(self._inferred_k, self._inferred_gap_s,
                                                   self._inferred_input,
                                                   self._inferred_parent_tokens):
                if k > sp_blocks:
                    follow += 1
                    think += gap
                    think_hist[bisect.bisect_left(_REUSE_EDGES_S, gap)] += 1
                    new_sum += max(0, n_in - parent_tokens)
                else:
                    roots += 1
                    new_sum += max(0, n_in - sp_tokens)
            roots = max(1, roots)
            turns = (roots + follow) / roots
            arrival_rate = roots / span_s
            think_time_s = think / follow if follow else None
            input_tokens = max(1.0, new_sum / max(1, roots + follow))
            inferred = (roots, follow, think_hist)
        scenario = {
            "arrival_rate": arrival_rate,
            "turns": turns,
            "turns_dist": "geometric" if turns > 1 else "fixed",
            "input_tokens": max(1, round(input_tokens)),
            "output_tokens": round(mean_out),
            "system_prompt_tokens": sp_tokens,
            "block_size": self.block_size,
        }
        if think_time_s is not None and think_time_s > 0:
            scenario["think_time_s"] = think_time_s
            scenario["think_dist"] = "exponential"
        else:
            # One-turn conversations never think; any positive value gives the same model.
            scenario["think_time_s"] = 1.0
            scenario["think_dist"] = "exponential"
        diagnostics = {
            "format": "bailian" if self.bailian else "mooncake",
            "requests": self.requests,
            "duration_s": duration_s,
            "request_rate": self.requests / span_s,
            "mean_input_length": mean_in,
            "mean_output_length": mean_out,
            "mean_new_input_tokens": input_tokens,
            "system_prompt_blocks": sp_blocks,
            "reuses": self.reuses,
            "reuse_fraction_within_10s": (self.reuse_within_10s / self.reuses
                                          if self.reuses else None),
            "reuse_fraction_within_600s": (self.reuse_within_600s / self.reuses
                                           if self.reuses else None),
            "reuse_time_s_quantiles": self._quantiles(self.reuse_hist, self.reuses),
            "conversation_ids": self.bailian,
        }
        if self.bailian:
            think_n = sum(self.think_hist)
            diagnostics.update({
                "conversations": self.roots,
                "follow_ups": self.followups,
                "follow_ups_without_parent_in_trace": self.missing_parents,
                "think_time_s_quantiles": self._quantiles(self.think_hist, think_n),
                "think_time_note": "gap between a request and its parent's arrival; "
                                   "includes the parent's generation time",
            })
        else:
            roots, follow, think_hist = inferred
            diagnostics.update({
                "conversations": roots,
                "follow_ups": follow,
                "think_time_s_quantiles": self._quantiles(think_hist, follow),
                "note": ("no conversation ids in this format: a request whose already-seen "
                         "prefix goes past the system prompt is taken as the next turn of "
                         "the request that last held that prefix; think time is the gap "
                         "between their arrivals (includes generation time)"),
            })
        scenario["diagnostics"] = diagnostics
        return scenario


def fit_scenario(requests: Iterable[Request], block_size: int) -> dict:
    """Fit a scenario (docs/model.md §10.6) to a trace: see :class:`ScenarioFitter` for what each key
    is fitted from. Returns a plain dict with a ``diagnostics`` entry."""
    fitter = ScenarioFitter(block_size)
    fitter.feed(requests)
    return fitter.result()


def compare_fit_to_replay(fitted: dict, replay_token_hit_rate: float, analytic,
                          capacity_tokens: float | None = None) -> dict:
    """Run an analytic model on a fitted scenario and report its gap to a replay.

    ``analytic`` is a callable taking a scenario dict (docs/architecture.md §3 keys, ``diagnostics``
    removed, ``kv_cache_tokens`` set to ``capacity_tokens`` when given) and returning the
    predicted token hit rate (a 0-1 fraction). Returns ``{"analytic_token_hit_rate",
    "replay_token_hit_rate", "gap"}`` with ``gap = analytic - replay`` (a fraction; x100
    for percentage points).
    """
    scenario = {k: v for k, v in fitted.items() if k != "diagnostics"}
    if capacity_tokens is not None:
        scenario["kv_cache_tokens"] = int(capacity_tokens)
    predicted = float(analytic(scenario))
    return {"analytic_token_hit_rate": predicted,
            "replay_token_hit_rate": replay_token_hit_rate,
            "gap": predicted - replay_token_hit_rate,
            "capacity_tokens": capacity_tokens}


def analytic_token_hit_rate(scenario: dict) -> float:
    """The project's analytic model (docs/model.md §5) on a scenario dict: the callable to
    pass to :func:`compare_fit_to_replay`. Raises ScenarioError for an invalid scenario."""
    return analyze(Scenario.from_dict(scenario)).token_hit_rate
