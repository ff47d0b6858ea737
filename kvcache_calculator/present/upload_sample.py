"""A large upload read by the page's JavaScript reader and replayed here on its SHARDS sample.

The lab page (``site/lab.py``) hands a large trace file to a Web Worker
(``site/trace-sampler.js``), which streams, decompresses and parses it and applies the
selection of :mod:`kvcache_calculator.traces.sampling` (block id ``b`` kept iff
``stable_hash64(b, SAMPLE_SALT) < floor(R * 2**64)``, the parameters from
:func:`~kvcache_calculator.traces.sampling.split_params`). Python gets batches of:

- ``raw`` lines with their 1-based line numbers ``raw_line``: the first ``head_lines`` lines
  of the file and every later line the worker did not fully accept. They are parsed here by
  :class:`~kvcache_calculator.traces.readers.TraceReader` (so errors, skipped lines and line
  numbers are the Python reader's) and sampled by
  :meth:`~kvcache_calculator.traces.sampling.SampledReplay.feed`. ``raw_at[k]`` says how many
  of the batch's sampled requests come before line ``k``, so file order is kept;
- the sampled requests of the other lines: ``meta`` holds four numbers per request
  (``input_length``, blocks, kept blocks, whether the last block is kept) and ``ids`` the
  kept ids one request after another; with the batch's counts of the full trace (requests,
  block references, tokens) they feed
  :meth:`~kvcache_calculator.traces.sampling.SampledReplay.feed_sampled`.

The small capacities (under ``100 / R`` blocks) are estimated at the ladder's higher rate
(:func:`~kvcache_calculator.traces.sampling.ladder_rates`, 16R): under ``engine`` semantics
the worker replays that sample itself, over every request it parses (head included; exact up
to :func:`~kvcache_calculator.traces.sampling.ladder_depths` sampled blocks), and sends its
histograms with its final counts; they become the curve's levels
(:func:`~kvcache_calculator.traces.replay.curve_from_histograms`), as ``replay --sample`` computes
them. ``raw_parsed[k]`` says whether the worker parsed raw line ``k``: when Python accepts a
line the worker did not parse (an id beyond 2**53...), the worker's replay missed a request,
and the curve keeps the main rate alone (:attr:`SampledUploadJob.levels_dropped`).

The scenario fit reads the head's requests only (a fit of ten million requests would take
longer than the replay); its note says so. Timestamps out of order are counted by the worker
over the requests it accepted (every valid request unless the file holds lines only Python
accepts, such as ids beyond 2**53). The job has the interface of
:class:`~kvcache_calculator.present.jobs.TraceJob` that the page reads (``step``, ``progress``,
``curve``, ``fit``, ``order``, ``reader``, ``format``, ``requests``, ``requests_kept``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import TimestampOrder
from kvcache_calculator.traces.fit import ScenarioFitter
from kvcache_calculator.traces.gz import gzip_error
from kvcache_calculator.traces.lines import binary_file_error, empty_file_error, long_line_error
from kvcache_calculator.traces.readers import DEFAULT_BLOCK_SIZE, TraceReader
from kvcache_calculator.traces.replay import curve_from_histograms
from kvcache_calculator.traces.sampling import (
    SampledCurve,
    SampledReplay,
    SampledRequest,
    check_rate,
    ladder_depths,
    ladder_rates,
    sampled_input_length,
    split_params,
)

__all__ = ["HEAD_LINES", "BATCH_LINES", "Batch", "SampledUploadJob", "worker_error"]

#: Lines at the start of the file that Python reads itself (the scenario fit reads them).
HEAD_LINES = 20_000
#: Lines per batch the worker sends.
BATCH_LINES = 65_536



@dataclass
class Batch:
    """One message of the worker (module docstring), in Python types."""

    raw: Sequence[str]
    raw_line: Sequence[int]
    raw_at: Sequence[int]
    meta: Sequence[float]
    ids: Sequence[float]
    requests: int
    blocks: int
    tokens: int
    bytes_in: int = 0
    format: str | None = None
    raw_parsed: Sequence[int] = ()


def worker_error(error: dict) -> ScenarioError:
    """The ScenarioError of the worker's ``{kind, detail, offset, line}`` (the words of the
    Python reader for the same fault)."""
    kind = error.get("kind")
    line = error.get("line")
    if kind == "binary":
        return binary_file_error(int(error.get("offset") or 0), int(line or 1))
    if kind == "long_line":
        return long_line_error(int(line or 1))
    if kind == "empty":
        return empty_file_error()
    if kind == "gzip":
        return gzip_error(str(error.get("detail") or "damaged or truncated"))
    return ScenarioError("file", str(error.get("detail") or kind), "the file could not be read")


class SampledUploadJob:
    """The curve (SHARDS estimate) and the fit of a file the worker reads (module docstring):
    ``add_batch`` each message, ``close`` with the worker's final counts (or ``fail`` with its
    error), ``step`` until :attr:`done`. :attr:`batches_done` counts the batches replayed (the
    page acknowledges them to the worker)."""

    requests_kept = None       # the gap split needs the whole trace: not offered

    def __init__(self, total_bytes: int | None, rate: float, *, skip_bad_lines: bool = False,
                 semantics: str = "engine", head_lines: int = HEAD_LINES):
        self.total_bytes = total_bytes
        self.rate = check_rate(rate)
        self.semantics = semantics
        # the ladder's higher rates, replayed by the worker (engine semantics only)
        self.rates = ladder_rates(rate) if semantics == "engine" else (self.rate,)
        self.levels_dropped = False
        self._levels: list = []
        self.head_lines = head_lines
        self.reader = TraceReader(None, skip_bad_lines=skip_bad_lines)
        self.order = TimestampOrder()
        self.units = 256
        self.curve: SampledCurve | None = None
        self.fit: dict | None = None
        self.done = False
        self.input_closed = False
        self.batches_done = 0
        self.tail_requests = 0
        self.worker_format: str | None = None
        self._batches: deque = deque()
        self._error: ScenarioError | None = None
        self._replay: SampledReplay | None = None
        self._fitter: ScenarioFitter | None = None
        self._bytes_done = 0
        self._started = False  # the batch in front: counted, and where its replay stands
        self._raw_k = 0
        self._meta_i = 0
        self._ids_at = 0
        self._pending: list = []
        self._meta: list = []
        self._ids: list = []

    def worker_message(self) -> dict:
        """What the worker needs besides the file (``site/trace-sampler.js``)."""
        levels = [{**split_params(r), "depth": d}
                  for r, d in zip(self.rates[1:], ladder_depths(self.rates)[1:])]
        return {**split_params(self.rate), "levels": levels, "headLines": self.head_lines,
                "blockSizes": dict(DEFAULT_BLOCK_SIZE), "batchLines": BATCH_LINES}

    # -- input -------------------------------------------------------------------------
    @property
    def pending_batches(self) -> int:
        """Batches received and not replayed yet."""
        return len(self._batches)

    @property
    def waiting(self) -> bool:
        """True while there is nothing to replay until the worker sends more."""
        return not self._batches and not self.input_closed and self._error is None

    def add_batch(self, batch: Batch) -> None:
        """Queue the worker's next batch."""
        self._batches.append(batch)

    def close(self, summary: dict) -> None:
        """The worker read the whole file: its counts of timestamps out of order."""
        self.input_closed = True
        self.worker_format = summary.get("format") or self.worker_format
        self.order.out_of_order = int(summary.get("outOfOrder") or 0)
        first = summary.get("firstRequest")
        self.order.first_request = None if first is None else int(first)
        self.order.largest_step_back_s = float(summary.get("largestStepBackS") or 0.0)
        self._levels = list(summary.get("levels") or [])

    def fail(self, error: dict) -> None:
        """The worker stopped on ``error``: the next step raises it."""
        self._error = worker_error(error)

    # -- reading -------------------------------------------------------------------------
    @property
    def format(self) -> str | None:
        """``mooncake`` or ``bailian`` once known."""
        return self.reader.format or self.worker_format

    @property
    def requests(self) -> int:
        """Valid requests read so far."""
        return self.reader.requests_read + self.tail_requests

    @property
    def progress(self) -> float:
        """0-1: the share of the file (its bytes as read, compressed for gzip) replayed."""
        if self.done:
            return 1.0
        return min(0.999, self._bytes_done / self.total_bytes) if self.total_bytes else 0.0

    def _runner(self, fmt: str | None) -> SampledReplay:
        if self._replay is None:
            bs = DEFAULT_BLOCK_SIZE[fmt or "mooncake"]
            self._replay = SampledReplay(bs, self.rate, self.semantics, max_rate=self.rate)
            self._fitter = ScenarioFitter(bs)
        return self._replay

    def _flush(self) -> None:
        if self._pending:
            self._replay.feed_sampled([self._pending], 0, 0, 0)
            self._pending = []

    def _raw(self, text: str, number: int, parsed: bool) -> None:
        self.reader.line_number = number - 1
        requests = list(self.reader.parse([text]))
        if requests and not parsed:
            self.levels_dropped = True
        if requests:
            replay = self._runner(self.reader.format)
            self._flush()
            replay.feed(requests)
            if number <= self.head_lines:
                self._fitter.feed(requests)

    def _start(self, batch: Batch) -> None:
        self._meta = [int(x) for x in batch.meta]
        self._ids = [int(x) for x in batch.ids]
        if batch.format and self.reader.format and batch.format != self.reader.format:
            raise ScenarioError("trace", batch.format, f"the file's first record is in the "
                                f"{self.reader.format} format; a file holds one format")
        self.worker_format = batch.format or self.worker_format
        if batch.requests:
            self._runner(self.format).feed_sampled([], batch.requests, batch.blocks, batch.tokens)
            self.tail_requests += batch.requests

    def step(self, units: int) -> bool:
        """Replay up to ``units`` records (lines for Python, sampled requests) of the queued
        batches; once the input is closed and all are replayed, read the curve, then (next
        step) the fit. Returns :attr:`done`."""
        if self._error is not None:
            raise self._error
        if self.done:
            return True
        budget = max(1, units)
        while budget > 0 and self._batches:
            batch = self._batches[0]
            if not self._started:
                self._start(batch)
                self._started = True
            budget -= self._records(batch, budget)
            if self._meta_i * 4 >= len(batch.meta) and self._raw_k >= len(batch.raw):
                self._flush()
                self._batches.popleft()
                self._bytes_done = batch.bytes_in
                self.batches_done += 1
                self._raw_k = self._meta_i = self._ids_at = 0
                self._started = False
        self._flush()
        if self._batches or not self.input_closed or budget <= 0:
            return False
        return self._finish()

    def _records(self, batch: Batch, budget: int) -> int:
        """Replay up to ``budget`` records of ``batch`` from where it stopped; returns how many."""
        raw, at = batch.raw, batch.raw_at
        meta, ids = self._meta, self._ids
        n_requests = len(meta) // 4
        done = 0
        while done < budget:
            i, k = self._meta_i, self._raw_k
            if k < len(raw) and at[k] <= i:
                self._raw(raw[k], int(batch.raw_line[k]),
                          bool(batch.raw_parsed[k]) if len(batch.raw_parsed) > k else False)
                self._raw_k += 1
                done += 1
                continue
            end = min(n_requests, i + budget - done, at[k] if k < len(raw) else n_requests)
            if end <= i:
                break
            bs = self._runner(self.format).block_size
            pending = self._pending
            j = self._ids_at
            for q in range(4 * i, 4 * end, 4):
                kept = meta[q + 2]
                pending.append(SampledRequest(
                    sampled_input_length(meta[q], meta[q + 1], kept, meta[q + 3], bs),
                    tuple(ids[j:j + kept])))
                j += kept
            self._ids_at = j
            self._meta_i = end
            done += end - i
        return max(done, 1)

    def _with_levels(self, curve: SampledCurve) -> SampledCurve:
        """``curve`` (the main rate) with the worker's replays of the higher rates."""
        if self.levels_dropped or len(self._levels) != len(self.rates) - 1:
            return curve
        levels = tuple(
            dataclasses.replace(curve, sample=curve_from_histograms(
                self.semantics, curve.block_size, int(lv["requests"]), int(lv["blocks"]),
                int(lv["tokens"]), int(lv["distinct"]), [int(x) for x in lv["hb"]],
                [int(x) for x in lv["ht"]]), rate=rate)
            for rate, lv in zip(self.rates[1:], self._levels))
        return dataclasses.replace(curve, levels=levels)

    def _finish(self) -> bool:
        if self._replay is None or self.requests == 0:
            if self.reader.skipped_lines:
                raise ScenarioError("trace", f"{self.reader.skipped_lines:,} bad lines skipped",
                                    "the file holds no valid request")
            raise ScenarioError("file", "no request record", "the file holds only blank lines; "
                                "expected JSON lines (Mooncake or Bailian format)")
        if self.curve is None:
            self.curve = self._with_levels(self._replay.result())
            return False
        if not self._fitter.requests:
            raise ScenarioError("trace", f"the first {self.head_lines:,} lines",
                                "the scenario fit reads them, and none is a valid request")
        fit = self._fitter.result()
        diagnostics = fit["diagnostics"]
        head = (f"fitted on the first {self._fitter.requests:,} requests of the file "
                f"(the curve is replayed on all {self.requests:,}, sampled)")
        diagnostics["note"] = f"{diagnostics['note']}; {head}" if diagnostics.get("note") else head
        diagnostics["fitted_on_head_requests"] = self._fitter.requests
        self.fit = fit
        self.done = True
        return True
