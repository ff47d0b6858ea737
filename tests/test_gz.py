"""Gzip traces (traces/gz.py): the page's incremental decoder and the CLI's stream."""

from __future__ import annotations

import gzip
import json

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.gz import LineDecoder, decode_lines, is_gzip, read_binary_lines
from kvcache_calculator.traces.readers import read_trace

TEXT = "\ufeff" + "\n".join(json.dumps({"timestamp": i, "input_length": 600, "output_length": 1,
                                        "hash_ids": [0, i]}) for i in range(200)) + "\n"
LINES = TEXT.removeprefix("\ufeff").splitlines()


def chunks(data: bytes, size: int):
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 7, 1000, 10 ** 6])
@pytest.mark.parametrize("compress", [False, True])
def test_lines_come_out_whole_in_any_chunking(size, compress):
    data = TEXT.encode()
    if compress:
        data = gzip.compress(data)
    assert list(decode_lines(chunks(data, size))) == LINES


def test_multi_byte_characters_split_across_chunks():
    text = '{"type": "é€😀"}\nlast without newline'
    got = list(decode_lines(chunks(gzip.compress(text.encode()), 1)))
    assert got == ['{"type": "é€😀"}', "last without newline"]


def test_concatenated_members_are_read_in_turn():
    data = gzip.compress(b"a\nb\n") + gzip.compress(b"c\n")
    assert list(decode_lines(chunks(data, 3))) == ["a", "b", "c"]


def test_requests_are_the_same_as_from_text():
    want = list(read_trace(LINES))
    got = list(read_trace(decode_lines(chunks(gzip.compress(TEXT.encode()), 4096))))
    assert got == want and len(got) == 200


def test_truncated_and_damaged_gzip_are_refused():
    data = gzip.compress(TEXT.encode())
    with pytest.raises(ScenarioError) as err:
        list(decode_lines([data[: len(data) // 2]]))
    assert "truncated" in str(err.value)
    bad = data[:10] + bytes(b ^ 0xFF for b in data[10:40]) + data[40:]
    with pytest.raises(ScenarioError) as err:
        list(decode_lines([bad]))
    assert err.value.key == "file"


def test_binary_data_and_empty_files_are_refused_as_by_line_feed():
    with pytest.raises(ScenarioError) as err:
        LineDecoder().feed(b"\x01\xff\xfe\xfa" * 10)
    assert err.value.key == "file" and "binary" in str(err.value)
    with pytest.raises(ScenarioError) as err:
        LineDecoder().feed(gzip.compress(b"\x00\x01" * 10))
    assert "binary" in str(err.value)
    with pytest.raises(ScenarioError) as err:
        LineDecoder().close()
    assert "empty" in str(err.value)


def test_counters_and_detection():
    dec = LineDecoder()
    data = gzip.compress(b"xy\n")
    assert dec.feed(data[:1]) == [] and dec.compressed is None
    assert dec.feed(data[1:]) == ["xy"] and dec.compressed is True
    assert dec.close() == []
    assert dec.bytes_in == len(data) and dec.bytes_out == 3 and dec.lines_out == 1
    short = LineDecoder()
    assert short.feed(b"z") == [] and short.close() == ["z"]
    assert is_gzip(data) and not is_gzip(b"{}")


def test_files_are_read_as_a_stream(tmp_path):
    plain = tmp_path / "t.jsonl"
    plain.write_text(TEXT.removeprefix("\ufeff"))
    packed = tmp_path / "t.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    misnamed = tmp_path / "t2.jsonl"
    misnamed.write_bytes(packed.read_bytes())
    want = list(read_binary_lines(str(plain)))
    assert list(read_binary_lines(str(packed))) == want
    assert list(read_binary_lines(str(misnamed))) == want
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(packed.read_bytes()[:-20])
    with pytest.raises(ScenarioError):
        list(read_binary_lines(str(broken)))
