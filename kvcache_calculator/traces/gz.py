"""Gzip-compressed traces (``.jsonl.gz``), decompressed as a stream.

The CLI reads a file with :func:`open_binary` (``gzip.open`` when the file starts with the
gzip magic bytes, so a ``.gz`` suffix is not needed and a misnamed file still works). The page
gets an uploaded file in byte slices and feeds them to :class:`LineDecoder`, which
decompresses with ``zlib.decompressobj(wbits=31)`` (gzip framing; Pyodide's standard library
has zlib), decodes UTF-8 and splits lines, holding only one slice and one partial line at a
time. Concatenated gzip members (what ``cat a.gz b.gz`` gives) are read one after another,
as ``gzip`` does.
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from typing import BinaryIO, Iterable, Iterator

from kvcache_calculator.errors import ScenarioError

__all__ = ["GZIP_MAGIC", "is_gzip", "open_binary", "read_binary_lines", "LineDecoder",
           "decode_lines"]

GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(head: bytes) -> bool:
    """Whether ``head`` (the first bytes of a file) starts a gzip stream."""
    return head[:2] == GZIP_MAGIC


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
    """Bytes in (plain or gzip, detected from the first two bytes), text lines out.

    ``feed(chunk)`` returns the complete lines so far (without their ``\\n``); ``close()``
    returns the last line when the data did not end with a newline, and raises ScenarioError
    for a truncated gzip stream. ``compressed`` says whether the input was gzip once known;
    ``bytes_in`` and ``bytes_out`` count input and decompressed bytes.
    """

    def __init__(self):
        self.compressed: bool | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._head = b""
        self._zlib = None
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._rest = ""
        self._text_seen = False

    def _inflate(self, data: bytes) -> bytes:
        out = []
        while data:
            if self._zlib is None:
                self._zlib = zlib.decompressobj(wbits=31)
            try:
                out.append(self._zlib.decompress(data))
            except zlib.error as exc:
                raise ScenarioError("trace", "gzip", f"is not a valid gzip stream ({exc})") from None
            data = b""
            if self._zlib.eof:
                # Another member may follow (``cat a.gz b.gz``); trailing zero padding ends it.
                data = self._zlib.unused_data
                self._zlib = None
                if not data.strip(b"\0"):
                    data = b""
        return b"".join(out)

    def _lines(self, raw: bytes, final: bool = False) -> list:
        self.bytes_out += len(raw)
        try:
            text = self._text.decode(raw, final)
        except UnicodeDecodeError:
            raise ScenarioError("trace", "binary data", "is not UTF-8 text: this looks like a "
                                "binary file, not a JSON-lines trace") from None
        if not self._text_seen and text:
            self._text_seen = True
            text = text.removeprefix("\ufeff")     # a byte-order mark
        parts = (self._rest + text).split("\n")
        self._rest = parts.pop()
        return parts

    def feed(self, chunk: bytes) -> list:
        """Decode ``chunk``; the complete lines it finishes."""
        self.bytes_in += len(chunk)
        if self.compressed is None:
            self._head += chunk
            if len(self._head) < 2:
                return []
            self.compressed = is_gzip(self._head)
            chunk, self._head = self._head, b""
        return self._lines(self._inflate(chunk) if self.compressed else chunk)

    def close(self) -> list:
        """The last line, if any; checks that a gzip stream was complete."""
        lines = []
        if self.compressed is None and self._head:
            self.compressed = False
            lines = self._lines(self._head)
        if self.compressed and self._zlib is not None:
            raise ScenarioError("trace", "gzip", "ends before the end of its gzip stream "
                                "(truncated file?)")
        lines += self._lines(b"", final=True)
        if self._rest:
            lines.append(self._rest)
            self._rest = ""
        return lines


def decode_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text lines of byte chunks, plain or gzip: ``read_trace(decode_lines(chunks))``."""
    decoder = LineDecoder()
    for chunk in chunks:
        if chunk:
            yield from decoder.feed(chunk)
    yield from decoder.close()
