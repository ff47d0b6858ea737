"""Gzip-compressed traces (``.jsonl.gz``), decompressed as a stream.

The CLI reads a file with :func:`open_binary` (``gzip.open`` when the file starts with the
gzip magic bytes, so a ``.gz`` suffix is not needed and a misnamed file still works). The page
gets an uploaded file in byte slices and feeds them to :class:`LineDecoder`, which
decompresses with ``zlib.decompressobj(wbits=31)`` (gzip framing; Pyodide's standard library
has zlib) and hands the bytes to :class:`~kvcache_calculator.traces.lines.LineFeed`, holding
only one slice and one partial line at a time. Concatenated gzip members (what ``cat a.gz b.gz`` gives) are read one after another,
as ``gzip`` does.
"""

from __future__ import annotations

import gzip
import zlib
from typing import BinaryIO, Iterable, Iterator

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.lines import LineFeed

__all__ = ["GZIP_MAGIC", "is_gzip", "gzip_error", "open_binary", "read_binary_lines", "LineDecoder",
           "decode_lines"]

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts a gzip stream."""
    return head[:2] == GZIP_MAGIC


def gzip_error(detail: str) -> ScenarioError:
    """The refusal of a damaged gzip stream (``detail``: the decompressor's words)."""
    return ScenarioError("file", "gzip", f"is not a valid gzip stream ({detail})")


def open_binary(path: str) -> BinaryIO:
    """Open ``path`` for reading bytes, decompressing on the fly when it is gzip."""
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if is_gzip(head) else open(path, "rb")


def read_binary_lines(path: str) -> Iterator[bytes]:
    """The lines of ``path`` as bytes (decompressed when gzip); a damaged or truncated gzip
    file raises ScenarioError."""
    with open_binary(path) as f:
        try:
            yield from f
        except (OSError, EOFError, zlib.error) as exc:
            raise ScenarioError("trace", path, f"is not a valid gzip file ({exc})") from None


class LineDecoder:
    """Bytes in (plain or gzip, detected from the first two bytes), text lines out: a drop-in
    for :class:`~kvcache_calculator.traces.lines.LineFeed` (same ``feed``/``close``), which
    it feeds with the decompressed bytes, so binary data, endless lines and empty files are
    refused the same way.

    ``feed(chunk)`` returns the complete lines so far; ``close()`` returns the last line when
    the data did not end with a newline, and refuses a truncated gzip stream. ``compressed``
    says whether the input was gzip once known; ``bytes_in`` counts input bytes (compressed:
    use it for progress against the file size) and ``bytes_out`` decompressed bytes.
    """

    def __init__(self):
        self.compressed: bool | None = None
        self.bytes_in = 0
        self._head = b""
        self._zlib = None
        self._lines = LineFeed()
        # LineFeed drops a byte-order mark only from its first slice, so the first three
        # bytes (a whole mark) are handed over together.
        self._start = b""

    @property
    def bytes_out(self) -> int:
        """Bytes handed to the line splitter (decompressed)."""
        return self._lines.bytes_in

    @property
    def lines_out(self) -> int:
        """Lines returned so far."""
        return self._lines.lines_out

    def _inflate(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._zlib is None:
                self._zlib = zlib.decompressobj(wbits=31)
            try:
                out.append(self._zlib.decompress(data))
            except zlib.error as exc:
                raise gzip_error(str(exc)) from None
            data = b""
            if self._zlib.eof:
                # Another member may follow (``cat a.gz b.gz``); trailing zero padding ends it.
                data = self._zlib.unused_data
                self._zlib = None
                if not data.strip(b"\0"):
                    data = b""
        return b"".join(out)

    def feed(self, chunk: bytes) -> list:
        """Decode ``chunk``; the complete lines it finishes."""
        chunk = bytes(chunk)
        self.bytes_in += len(chunk)
        if self.compressed is None:
            self._head += chunk
            if len(self._head) < 2:
                return []
            self.compressed = is_gzip(self._head)
            chunk, self._head = self._head, b""
        data = self._inflate(chunk) if self.compressed else chunk
        if self._start is not None:
            self._start += data
            if len(self._start) < 3:
                return []
            data, self._start = self._start, None
        return self._lines.feed(data) if data else []

    def close(self) -> list:
        """The last line, if any; refuses a truncated gzip stream and an empty file."""
        rest = b""
        if self.compressed is None:
            self.compressed = False
            rest = self._head
        if self.compressed and self._zlib is not None:
            raise ScenarioError("file", "gzip", "ends before the end of its gzip stream "
                                "(truncated file?)")
        rest = (self._start or b"") + rest
        self._start = None
        lines = self._lines.feed(rest) if rest else []
        return lines + self._lines.close()


def decode_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text lines of byte chunks, plain or gzip: ``read_trace(decode_lines(chunks))``."""
    decoder = LineDecoder()
    for chunk in chunks:
        if chunk:
            yield from decoder.feed(chunk)
    yield from decoder.close()
