"""Text lines from byte slices of a trace file: the browser reads an upload slice by slice.

:class:`LineFeed` turns slices that may cut a line (or a UTF-8 character) anywhere into
complete lines, refusing binary data and endless lines at once with a
:class:`~kvcache_calculator.errors.ScenarioError` (key ``file``). The lab's trace jobs
(:mod:`kvcache_calculator.present.jobs`) feed its lines to
:class:`~kvcache_calculator.traces.readers.TraceReader`.
"""

from __future__ import annotations

import codecs

from kvcache_calculator.errors import ScenarioError

__all__ = ["LineFeed", "MAX_LINE_CHARS", "binary_file_error", "long_line_error", "empty_file_error"]

#: A line longer than this is not a trace record (a Bailian request of 128k tokens is ~80 kB).
MAX_LINE_CHARS = 8 * 2 ** 20


def binary_file_error(offset: int, line: int) -> ScenarioError:
    """The refusal of a binary file (a NUL byte or invalid UTF-8 at byte ``offset``)."""
    return ScenarioError("file", f"byte {offset:,}", "this is a binary file, not a JSON-lines "
                         "text trace (Mooncake or Bailian .jsonl)", line=line)


def long_line_error(line: int) -> ScenarioError:
    """The refusal of a line longer than :data:`MAX_LINE_CHARS`."""
    return ScenarioError("file", f"a line of over {MAX_LINE_CHARS // 2 ** 20} MiB",
                         "each line must be one JSON request record; this is not a "
                         "JSON-lines trace", line=line)


def empty_file_error() -> ScenarioError:
    """The refusal of an empty file."""
    return ScenarioError("file", "an empty file", "expected JSON lines (Mooncake or "
                         "Bailian format)")


class LineFeed:
    """Complete text lines from byte slices of a file that may split lines (and UTF-8
    characters) anywhere.

    Refuses, with a :class:`ScenarioError` (key ``file``) naming the byte offset and line, a NUL byte or
    invalid UTF-8 (a binary file), and a line longer than :data:`MAX_LINE_CHARS`. A UTF-8
    byte-order mark at the start is dropped. ``close()`` returns the last line (one without a
    newline) and refuses an empty file.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._rest = ""
        self.bytes_in = 0
        self.lines_out = 0
        self.closed = False

    def _binary(self, offset: int) -> ScenarioError:
        return binary_file_error(offset, self.lines_out + 1)

    def feed(self, data: bytes) -> list:
        """Decode ``data`` (the next slice) and return the lines it completes."""
        if self.closed:
            raise ScenarioError("file", "data after close", "the file was already read to its end")
        data = bytes(data)
        nul = data.find(b"\0")
        if nul >= 0:
            raise self._binary(self.bytes_in + nul)
        try:
            text = self._decoder.decode(data)
        except UnicodeDecodeError as err:
            raise self._binary(self.bytes_in + err.start) from None
        if self.bytes_in == 0 and text.startswith("\ufeff"):
            text = text[1:]
        self.bytes_in += len(data)
        return self._split(text)

    def _split(self, text: str) -> list:
        if not text:
            return []
        parts = (self._rest + text).split("\n")
        self._rest = parts.pop()
        if len(self._rest) > MAX_LINE_CHARS:
            raise long_line_error(self.lines_out + len(parts) + 1)
        self.lines_out += len(parts)
        return parts

    def close(self) -> list:
        """The final line, if the file does not end with a newline; refuses an empty file."""
        if self.closed:
            return []
        self.closed = True
        try:
            tail = self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self._binary(self.bytes_in) from None
        out = self._split(tail)
        if self.bytes_in == 0:
            raise empty_file_error()
        if self._rest:
            out.append(self._rest)
            self._rest = ""
            self.lines_out += 1
        return out
