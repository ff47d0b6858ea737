"""The page's JavaScript reader of large uploads (site/trace-sampler.js), run in node, against
the Python core: the same hash, the same kept blocks, the same sampled curve and counts."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from kvcache_calculator.errors import ScenarioError
from kvcache_calculator.present.jobs import TimestampOrder
from kvcache_calculator.present.upload_sample import Batch, SampledUploadJob, worker_error
from kvcache_calculator.traces.hashing import stable_hash64
from kvcache_calculator.traces.readers import TraceReader
from kvcache_calculator.traces.replay import LRUCurveReplay
from kvcache_calculator.traces.sampling import (
    SAMPLE_SALT,
    kept_ids,
    ladder_rates,
    replay_sampled,
    sample_threshold,
    split_params,
)
from kvcache_calculator.traces.synthetic import generate_requests, mooncake_lines

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def node(script: str) -> str:
    return subprocess.run([NODE, "-e", script], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def run_sampler(path: Path, options: dict) -> dict:
    out = subprocess.run([NODE, str(ROOT / "tests" / "js" / "run_sampler.js"), str(path),
                          json.dumps(options)], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def job_from(result: dict, job: SampledUploadJob) -> SampledUploadJob:
    """Feed the node reader's batches to ``job`` as the page does, and run it to the end."""
    for b in result["batches"]:
        job.add_batch(Batch(b["raw"], b["rawLine"], b["rawAt"], b["meta"], b["ids"],
                            b["requests"], b["blocks"], b["tokens"], 0, b["format"], b["rawParsed"]))
    job.close(result["summary"])
    while not job.step(97):      # an odd step size: batches are cut anywhere
        pass
    return job


@pytest.mark.parametrize("salt", [SAMPLE_SALT, 0])
def test_hash_is_pythons(salt):
    rng = random.Random(3)
    values = [0, 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1] \
        + [rng.randrange(2 ** 53) for _ in range(1000)] + [rng.randrange(2 ** 20) for _ in range(1000)]
    p = split_params(0.5, salt)
    out = json.loads(node(
        "const {splitmix64} = require('./site/trace-sampler.js');"
        f"const out = []; for (const v of {json.dumps(values)}) {{"
        f"  const h = splitmix64(Math.floor(v / 4294967296) >>> 0, v >>> 0, {p['saltHi']}, {p['saltLo']}, [0, 0]);"
        "  out.push(h[0] * 4294967296 + h[1], h[0], h[1]); }"
        "console.log(JSON.stringify(out));"))
    got = [(out[3 * i + 1] << 32) | out[3 * i + 2] for i in range(len(values))]
    assert got == [stable_hash64(v, salt) for v in values]


def test_split_params_halves_the_threshold():
    p = split_params(0.01)
    assert (p["thresholdHi"] << 32) | p["thresholdLo"] == sample_threshold(0.01)
    assert not p["keepAll"] and split_params(1.0)["keepAll"]


def trace_lines(requests: int, seed: int) -> list:
    """A generated trace with the lines a reader must get right: blank, CRLF, malformed, an
    id written 1.0 (refused by Python), negative and beyond-2**53 ids (accepted by Python
    only), out-of-order timestamps, floats for whole lengths."""
    lines = mooncake_lines(generate_requests(requests, seed))
    extra = {
        50: "", 120: "   ", 300: '{"timestamp": 1, "input_length": 600, "output_length": 3, "hash_ids": [1, 2.0]}',
        400: '{"timestamp": 5, "input_length": 1200, "output_length": 3, "hash_ids": [-7, 3, 2]}',
        500: '{"timestamp": 6, "input_length": 1200, "output_length": 3, "hash_ids": [36028797018963971, 4]}',
        600: "not json", 700: '{"timestamp": 7, "input_length": 5.0, "output_length": 3.0, "hash_ids": [0]}',
        800: '[1, 2]', 900: '{"timestamp": 8, "input_length": 100, "output_length": 3}',
        1000: '{"timestamp": 9, "input_length": 100, "output_length": 3, "hash_ids": [ 0 , 1 ]}\r',
    }
    for at in sorted(extra, reverse=True):
        lines.insert(at, extra[at])
    return lines


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_js_selection_and_curve_are_pythons(tmp_path, rate):
    lines = trace_lines(3000, 5)
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job = SampledUploadJob(None, rate, skip_bad_lines=True, head_lines=200)
    result = run_sampler(path, {**job.worker_message(), "batchLines": 333})
    # the kept ids, request by request, are Python's selection of the lines the reader took
    reader = TraceReader(None, skip_bad_lines=True)
    raw = {n for b in result["batches"] for n in b["rawLine"]}
    th = sample_threshold(rate)
    python_kept = []
    for n, text in enumerate(lines, start=1):
        reader.line_number = n - 1
        for r in reader.parse([text]):
            if n not in raw:
                python_kept += kept_ids(r.hash_ids, th)
    assert [int(b) for batch in result["batches"] for b in batch["ids"]] == python_kept
    assert len(python_kept) > 50
    # lines handed to Python: the head, the malformed and the unusual ones
    python_only = [n for n, text in enumerate(lines, start=1) if n > 200 and (
        text in ("not json", "[1, 2]") or "2.0]" in text
        or "36028797018963971" in text or "hash_ids" not in text and text.strip())]
    assert sorted(n for n in raw if n > 200) == python_only and len(python_only) == 5
    # the whole curve is the CLI's --sample replay, the counts too
    job = job_from(result, job)
    # (the line with an id beyond 2**53 is Python's alone: the worker's replay of the
    # ladder's higher rate missed it, so the curve keeps the main rate only, and says so)
    want = replay_sampled(TraceReader(None, skip_bad_lines=True).parse(lines), rate, 512,
                          max_rate=rate)
    assert job.levels_dropped and job.curve.rates == (rate,)
    assert job.curve.to_dict() == want.to_dict()
    assert job.curve.sample.to_dict() == want.sample.to_dict()
    assert job.reader.skipped_lines == 4 and job.requests == want.requests
    # timestamps out of order: counted by the reader over the requests it took itself (all
    # valid ones but the line with an id beyond 2**53)
    order = TimestampOrder()
    order.feed([r for r in TraceReader(None, skip_bad_lines=True).parse(lines)
                if max(r.hash_ids, default=0) < 2 ** 53])
    assert (job.order.out_of_order, job.order.first_request) == (order.out_of_order, order.first_request)
    assert job.order.out_of_order > 0
    assert job.fit["diagnostics"]["fitted_on_head_requests"] == 198
    assert "first 198 requests" in job.fit["diagnostics"]["note"]


@pytest.mark.parametrize("rate, requests, seed", [(0.01, 6000, 2), (0.05, 3000, 4),
                                                  (0.1, 2500, 6)])
def test_js_ladder_is_pythons(tmp_path, rate, requests, seed):
    """The worker's replay of the ladder's higher rate (16R, head lines included) gives the
    CLI's ``replay --sample`` estimate at every capacity, the small ones included."""
    lines = mooncake_lines(generate_requests(requests, seed))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job = SampledUploadJob(None, rate, head_lines=300)
    job = job_from(run_sampler(path, {**job.worker_message(), "batchLines": 500}), job)
    want = replay_sampled(TraceReader().parse(lines), rate, 512)
    assert not job.levels_dropped and job.curve.rates == want.rates == ladder_rates(rate)
    caps = sorted({max(1, round(1.07 ** k)) for k in range(170)})
    assert {want.rate_at(c) for c in caps} == set(want.rates)
    assert [job.curve.token_hits(c) for c in caps] == [want.token_hits(c) for c in caps]
    assert [job.curve.block_hits(c) for c in caps] == [want.block_hits(c) for c in caps]
    assert job.curve.to_dict() == want.to_dict()
    assert want.levels[0].sample.block_hits(10 ** 6) > 0


def test_rate_one_is_the_exact_curve(tmp_path):
    lines = mooncake_lines(generate_requests(1500, 2))
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(lines))          # no final newline
    job = SampledUploadJob(None, 1.0, head_lines=10)
    job = job_from(run_sampler(path, job.worker_message()), job)
    exact = LRUCurveReplay(512)
    exact.feed(TraceReader().parse(lines))
    c = exact.result()
    for cap in (1, 10, 100, 1000, 10_000):
        assert job.curve.token_hit_rate(cap) == pytest.approx(c.token_hit_rate(cap), abs=1e-12)


def test_bailian_lines(tmp_path):
    rows = [{"chat_id": i, "parent_chat_id": i - 1 if i % 3 else -1, "timestamp": i * 0.5,
             "input_length": 40 + i, "output_length": 7, "hash_ids": [i % 5, 100 + i, 200 + i],
             "turn": 1 + i % 3, "type": "text"} for i in range(400)]
    rows[250]["chat_id"] = -4                  # refused by Python: a line for Python to judge
    lines = [json.dumps(r) for r in rows]
    path = tmp_path / "b.jsonl"
    path.write_text("\n".join(lines) + "\n")
    job = SampledUploadJob(None, 0.3, skip_bad_lines=True, head_lines=50)
    result = run_sampler(path, {**job.worker_message(), "batchLines": 64})
    assert result["summary"]["format"] == "bailian"
    job = job_from(result, job)
    want = replay_sampled(TraceReader(None, skip_bad_lines=True).parse(lines), 0.3, 16)
    assert job.curve.to_dict() == want.to_dict() and job.curve.block_size == 16
    assert job.reader.skipped_lines == 1 and job.format == "bailian"


def test_errors_stop_with_the_readers_words(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"timestamp": 1}\n' * 3)
    job = SampledUploadJob(None, 0.1, head_lines=1)
    for b in run_sampler(path, job.worker_message())["batches"]:
        job.add_batch(Batch(b["raw"], b["rawLine"], b["rawAt"], b["meta"], b["ids"],
                            b["requests"], b["blocks"], b["tokens"], 0, b["format"], b["rawParsed"]))
    with pytest.raises(ScenarioError, match="line 1: input_length"):
        job.step(10)
    job = SampledUploadJob(None, 0.1)
    job.fail({"kind": "binary", "offset": 12, "line": 3})
    with pytest.raises(ScenarioError, match="line 3: file: got 'byte 12'; this is a binary file"):
        job.step(10)
    assert "not a valid gzip stream" in str(worker_error({"kind": "gzip", "detail": "bad"}))
    assert "empty file" in str(worker_error({"kind": "empty"}))


def test_blank_file_says_so():
    job = SampledUploadJob(None, 0.1)
    job.add_batch(Batch(["", " "], [1, 2], [0, 0], [], [], 0, 0, 0, 10, None))
    job.close({})
    with pytest.raises(ScenarioError, match="only blank lines"):
        while not job.step(10):
            pass
