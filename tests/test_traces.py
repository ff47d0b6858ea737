"""Trace readers, format detection and scenario fitting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.traces.readers import (
    DEFAULT_BLOCK_SIZE,
    Request,
    ScenarioFitter,
    TraceReader,
    compare_fit_to_replay,
    detect_format,
    fit_scenario,
    read_trace,
    split_lines,
)

TRACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "traces"

MOONCAKE_LINE = '{"timestamp": 1500, "input_length": 1100, "output_length": 7, "hash_ids": [0, 1, 2]}'
# The record example of alibaba-edu/qwen-bailian-usagetraces-anon's README (hash_ids shortened).
BAILIAN_LINE = ('{"chat_id": 159, "parent_chat_id": 55, "timestamp": 61.114, "input_length": 521,'
                ' "output_length": 132, "type": "text", "turn": 2, "hash_ids": [1089, 1090, 1091]}')


def shared_trace(name: str) -> Path:
    path = TRACES / name
    if not path.exists():
        pytest.skip(f"{name} not found: ../shared/traces/ is absent")
    return path


def test_mooncake_line_parses_with_timestamp_in_seconds():
    (req,) = read_trace([MOONCAKE_LINE])
    assert req == Request(1.5, 1100, 7, (0, 1, 2), line=1)
    assert req.to_dict()["hash_ids"] == [0, 1, 2]


def test_bailian_line_parses_all_fields():
    (req,) = read_trace([BAILIAN_LINE], "bailian")
    assert (req.timestamp_s, req.chat_id, req.parent_chat_id, req.turn, req.type) == \
        (61.114, 159, 55, 2, "text")
    assert req.hash_ids == (1089, 1090, 1091)


def test_detect_format():
    assert detect_format(["", MOONCAKE_LINE]) == "mooncake"
    assert detect_format([BAILIAN_LINE]) == "bailian"
    with pytest.raises(ScenarioError, match="empty"):
        detect_format(["", "  "])
    with pytest.raises(ScenarioError, match="line 1"):
        detect_format(["{oops"])


def test_auto_format_reads_bailian_fields():
    (req,) = read_trace([BAILIAN_LINE])
    assert req.chat_id == 159
    assert DEFAULT_BLOCK_SIZE == {"mooncake": 512, "bailian": 16}


@pytest.mark.parametrize("line, key", [
    ("{not json", "trace"),
    ("[1, 2]", "trace"),
    ('{"input_length": 1, "output_length": 1, "hash_ids": [1]}', "timestamp"),
    ('{"timestamp": -1, "input_length": 1, "output_length": 1, "hash_ids": [1]}', "timestamp"),
    ('{"timestamp": 0, "input_length": "9", "output_length": 1, "hash_ids": [1]}', "input_length"),
    ('{"timestamp": 0, "input_length": 1.5, "output_length": 1, "hash_ids": [1]}', "input_length"),
    ('{"timestamp": 0, "input_length": 1, "output_length": -2, "hash_ids": [1]}', "output_length"),
    ('{"timestamp": 0, "input_length": 1, "output_length": 1}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [1, "x"]}', "hash_ids"),
    ('{"timestamp": 0, "input_length": 1, "output_length": 1, "hash_ids": [true]}', "hash_ids"),
])
def test_malformed_line_names_line_and_problem(line, key):
    lines = [MOONCAKE_LINE, "", line]
    with pytest.raises(ScenarioError) as info:
        list(read_trace(lines, "mooncake"))
    assert info.value.line == 3
    assert info.value.key == key
    assert str(info.value).startswith(f"line 3: {key}: got")


def test_bailian_requires_its_fields():
    bad = json.loads(BAILIAN_LINE)
    del bad["chat_id"]
    with pytest.raises(ScenarioError, match="line 1: chat_id"):
        list(read_trace([json.dumps(bad)], "bailian"))
    bad = json.loads(BAILIAN_LINE)
    bad["parent_chat_id"] = -2
    with pytest.raises(ScenarioError, match="parent_chat_id"):
        list(read_trace([json.dumps(bad)], "bailian"))


def test_skip_bad_lines_counts_them():
    reader = TraceReader("mooncake", skip_bad_lines=True)
    got = list(reader.parse([MOONCAKE_LINE, "garbage", "", MOONCAKE_LINE, '{"timestamp": 1}']))
    assert len(got) == 2
    assert [r.line for r in got] == [1, 4]
    assert reader.skipped_lines == 2
    assert reader.first_error.line == 2
    assert reader.requests_read == 2


def test_reader_keeps_line_numbers_across_batches():
    reader = TraceReader()
    first = list(reader.parse([MOONCAKE_LINE, MOONCAKE_LINE]))
    second = list(reader.parse([MOONCAKE_LINE]))
    assert [r.line for r in first + second] == [1, 2, 3]


def test_unknown_format_rejected():
    with pytest.raises(ScenarioError, match="format"):
        TraceReader("csv")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="ab{}\n ", max_size=30), max_size=8), st.data())
def test_split_lines_is_independent_of_chunking(texts, data):
    text = "".join(texts)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    chunks = [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]
    expected = text.split("\n")
    if expected and expected[-1] == "":
        expected.pop()
    assert list(split_lines(chunks)) == expected


def test_read_trace_from_chunks_matches_lines():
    text = "\n".join([MOONCAKE_LINE] * 5) + "\n"
    chunks = [text[i:i + 17] for i in range(0, len(text), 17)]
    assert list(read_trace(split_lines(chunks))) == list(read_trace(text.splitlines()))


def bailian_conversation_lines():
    """Two conversations: A with 3 turns (think gaps 10 s and 30 s), B with 1 turn.
    System prompt = blocks 0, 1 (32 tokens at 16 tokens/block)."""
    recs = [
        dict(chat_id=0, parent_chat_id=-1, timestamp=0.0, input_length=48, output_length=16,
             type="text", turn=1, hash_ids=[0, 1, 2]),
        dict(chat_id=1, parent_chat_id=-1, timestamp=5.0, input_length=64, output_length=16,
             type="text", turn=1, hash_ids=[0, 1, 9, 10]),
        dict(chat_id=2, parent_chat_id=0, timestamp=10.0, input_length=96, output_length=16,
             type="text", turn=2, hash_ids=[0, 1, 2, 3, 4, 5]),
        dict(chat_id=3, parent_chat_id=2, timestamp=40.0, input_length=144, output_length=16,
             type="search", turn=3, hash_ids=[0, 1, 2, 3, 4, 5, 6, 7, 8]),
    ]
    return [json.dumps(r) for r in recs]


def test_fit_bailian_conversations():
    fit = fit_scenario(read_trace(bailian_conversation_lines()), 16)
    d = fit["diagnostics"]
    assert d["format"] == "bailian"
    assert d["conversations"] == 2 and d["follow_ups"] == 2
    assert fit["turns"] == pytest.approx(2.0)
    assert fit["arrival_rate"] == pytest.approx(2 / 40.0)
    assert fit["think_time_s"] == pytest.approx((10 + 30) / 2)
    assert fit["system_prompt_tokens"] == 32
    assert fit["output_tokens"] == 16
    # new tokens: roots 48-32=16 and 64-32=32; follow-ups 96-(48+16)=32, 144-(96+16)=32.
    assert fit["input_tokens"] == 28  # (16 + 32 + 32 + 32) / 4, rounded
    assert d["mean_new_input_tokens"] == pytest.approx(28.0)
    # reuses: blocks 0 and 1 at t=5 (gap 5), t=10 (gap 5), t=40 (gap 30); block 2 at t=10
    # (gap 10) and t=40 (gap 30); blocks 3, 4, 5 at t=40 (gap 30): 11 reuses, 5 within 10 s.
    assert d["reuses"] == 11
    assert d["reuse_fraction_within_10s"] == pytest.approx(5 / 11)
    json.dumps(fit)  # plain JSON types


def test_fit_mooncake_is_one_turn():
    # two prompts that share their first three blocks and differ in the last: two
    # conversations with one system prompt (an exact repeat would be a next turn)
    other = MOONCAKE_LINE.replace("1500", "3500").replace("[0, 1, 2]", "[0, 1, 2, 9]")
    fit = fit_scenario(read_trace([MOONCAKE_LINE.replace("[0, 1, 2]", "[0, 1, 2, 8]"), other]), 512)
    assert fit["turns"] == 1.0 and fit["turns_dist"] == "fixed"
    assert fit["arrival_rate"] == pytest.approx(2 / 2.0)
    assert fit["system_prompt_tokens"] == 3 * 512
    assert "note" in fit["diagnostics"]


def test_fit_rejects_empty_and_bad_block_size():
    with pytest.raises(ScenarioError):
        fit_scenario([], 16)
    with pytest.raises(ScenarioError, match="block_size"):
        ScenarioFitter(0)


def test_compare_fit_to_replay_passes_capacity_and_reports_gap():
    seen = {}

    def fake_analytic(scenario, answers_cached=True, window_s=None, observed_from_s=0.0):
        seen.update(scenario, answers_cached=answers_cached, window_s=window_s)
        return 0.5

    fit = fit_scenario(read_trace(bailian_conversation_lines()), 16)
    out = compare_fit_to_replay(fit, 0.4, fake_analytic, capacity_tokens=1600)
    assert out["gap"] == pytest.approx(0.1)
    assert seen["kv_cache_tokens"] == 1600 and "diagnostics" not in seen
    assert seen["answers_cached"] is False     # a replay caches prompts only
    assert seen["window_s"] == fit["diagnostics"]["duration_s"]   # the trace's window, cold


def test_shared_mooncake_trace_reads_and_fits():
    path = shared_trace("mooncake_conversation_trace.jsonl")
    with path.open() as f:
        assert detect_format(f) == "mooncake"
    with path.open() as f:
        fitter = ScenarioFitter(512)
        fitter.feed(read_trace(f))
    fit = fitter.result()
    d = fit["diagnostics"]
    # 12,031 requests over 3,536.999 s (docs/validation.md §7.1 and the last timestamp).
    assert d["requests"] == 12031
    assert d["request_rate"] == pytest.approx(12031 / 3536.999)
    # block references minus distinct blocks: 288,500 - 182,790.
    assert d["reuses"] == 288500 - 182790


def test_fit_mooncake_infers_conversations_from_prefixes():
    def line(t_ms, ids, n_in):
        return json.dumps({"timestamp": t_ms, "input_length": n_in, "output_length": 5,
                           "hash_ids": ids})

    lines = [line(0, [0, 1], 20), line(3000, [0, 5], 20), line(10000, [0, 1, 2, 3], 40),
             line(12000, [0, 7], 20), line(20000, [0, 9], 20)]
    fit = fit_scenario(read_trace(lines), 10)
    d = fit["diagnostics"]
    assert fit["system_prompt_tokens"] == 10  # block 0 starts every request
    assert (d["conversations"], d["follow_ups"]) == (4, 1)
    assert fit["turns"] == pytest.approx(5 / 4)
    assert fit["arrival_rate"] == pytest.approx(4 / 20.0)
    assert fit["think_time_s"] == pytest.approx(10.0)  # third request continues the first
    # new tokens: first turns 20 - 10 each (4 of them), the follow-up 40 - (20 + 5).
    assert d["mean_new_input_tokens"] == pytest.approx((4 * 10 + 15) / 5)
