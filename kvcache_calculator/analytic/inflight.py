"""KV held by running requests: what the cache cannot give to idle conversations.

A running request holds the blocks of its prompt and of the output generated so far, and an
engine never evicts them (vLLM's block pool takes a block out of its free queue while a
request references it; SGLang locks the radix-tree nodes of running requests). Only the rest
of the pool caches the histories of conversations that are waiting for their user.

By Little's law the mean number of requests in service on one instance is
``request_rate * service_s``, and the mean tokens they hold is ``request_rate * E[integral of
held tokens over a request's service]``. A request of ``P`` prompt tokens and ``O`` output
tokens that waits ``ttft_s`` for its first token and then decodes at ``decode_tokens_per_s``
holds ``P`` tokens for ``ttft_s + O / decode`` seconds and its outputs as they grow:

    held_token_seconds = P * (ttft_s + O / decode) + O**2 / (2 * decode)

plus half a block on average for the partly filled last block. ``P`` is the request's own
part of the prompt: a shared system prompt is held once however many requests use it, and
the cache's occupancy counts it already. More running requests than ``max_num_seqs`` cannot
be admitted: the engine is then saturated, holds at most ``max_num_seqs`` requests, and the
rest queue (their prompts hold no KV while queued).

The service times default from the hardware (:func:`service_rates`, shared by the analytic
model and the simulator so that both hold the same KV): decoding reads every weight once per
step, prefill computes ``2 * active_params`` FLOPs per prompt token.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kvcache_calculator.scenario import GPU_KEYS, MODEL_KEYS, Scenario
from kvcache_calculator.setup.capacity import GIB
from kvcache_calculator.setup.engine import parse_version, vllm_batch_defaults
from kvcache_calculator.setup.resolve import Setup

#: A GPU without published figures (``gpu=custom``) decodes and prefills as an H100 SXM
#: (3.35 TB/s, 989.4 dense bf16 TFLOPS) unless ``decode_tokens_per_s`` and ``ttft_s`` are given.
FALLBACK_HBM_TB_S = 3.35
FALLBACK_BF16_TFLOPS = 989.4


@dataclass(frozen=True)
class InFlight:
    """The mean KV held by running requests on one instance.

    ``requests`` in service at once, the ``tokens`` they hold, a request's ``service_s``
    (first token plus decoding) and whether the arrivals exceed what ``max_num_seqs``
    sequences can serve (``saturated``: the engine would queue without bound).
    """

    requests: float
    tokens: float
    service_s: float
    ttft_s: float
    decode_tokens_per_s: float
    saturated: bool
    max_num_seqs: int = 0

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


NONE = InFlight(0.0, 0.0, 0.0, 0.0, 0.0, False)


def in_flight(request_rate: float, mean_prompt_tokens: float, output_tokens: float, *, ttft_s: float,
              decode_tokens_per_s: float, max_num_seqs: int, block_size: int) -> InFlight:
    """Mean requests and KV tokens in service on one instance (module docstring).

    ``request_rate`` is per instance (requests/s); ``mean_prompt_tokens`` the mean prompt over
    all requests (its private part: a shared system prompt is counted by the cache);
    ``output_tokens`` each request's response.
    """
    requests, tokens, service_s = _little(request_rate, mean_prompt_tokens, output_tokens, ttft_s,
                                          decode_tokens_per_s, max_num_seqs, block_size)
    saturated = request_rate * service_s > max_num_seqs
    return InFlight(requests, tokens, service_s, ttft_s, decode_tokens_per_s, saturated, max_num_seqs)


def _little(request_rate: float, mean_prompt_tokens: float, output_tokens: float, ttft_s: float,
            decode_tokens_per_s: float, max_num_seqs: int, block_size: int) -> tuple[float, float, float]:
    """(requests, tokens, service_s) of :func:`in_flight`, the one place they are computed."""
    held, service_s = per_request(mean_prompt_tokens, output_tokens, ttft_s, decode_tokens_per_s, block_size)
    return at_rate(request_rate, held, service_s, max_num_seqs) + (service_s,)


def per_request(mean_prompt_tokens: float, output_tokens: float, ttft_s: float, decode_tokens_per_s: float,
                block_size: int) -> tuple[float, float]:
    """``(held token-seconds, service_s)`` of one request (module docstring)."""
    decode_s = output_tokens / decode_tokens_per_s
    service_s = ttft_s + decode_s
    return mean_prompt_tokens * service_s + output_tokens * decode_s / 2 + block_size / 2 * service_s, service_s


def at_rate(request_rate: float, held_token_s: float, service_s: float, max_num_seqs: int) -> tuple[float, float]:
    """``(requests, tokens)`` in service at ``request_rate`` per instance for requests of
    :func:`per_request`, at most ``max_num_seqs`` of them."""
    requests = request_rate * service_s
    tokens = request_rate * held_token_s
    if requests > max_num_seqs:      # saturated
        tokens *= max_num_seqs / requests
        requests = float(max_num_seqs)
    return requests, tokens


def held_tokens(request_rate: float, mean_prompt_tokens: float, output_tokens: float, rates: "ServiceRates",
                block_size: int) -> tuple[float, float]:
    """``(tokens, service_s)`` of :func:`in_flight` at ``rates``, without building the record:
    what a sweep's many variants need."""
    _, tokens, service_s = _little(request_rate, mean_prompt_tokens, output_tokens, rates.ttft_s,
                                   rates.decode_tokens_per_s, rates.max_num_seqs, block_size)
    return tokens, service_s


def default_decode_tokens_per_s(weights_bytes_per_gpu: float, hbm_tb_per_s: float) -> float:
    """A sequence's decode speed when decoding is bound by reading the weights, in tokens/s.

    Each decode step reads every weight on the GPU once; at 60 % of the GPU's memory bandwidth
    (what serving engines reach on large batches) that takes ``weights / (0.6 * bandwidth)``
    seconds, and every running sequence gains one token per step.
    """
    return 0.6 * hbm_tb_per_s * 1e12 / max(weights_bytes_per_gpu, 1.0)


def default_ttft_s(prompt_tokens: float, active_params_b: float, num_gpus: int, bf16_tflops: float,
                   mfu: float = 0.4) -> float:
    """Time to first token of a prompt computed in full at ``mfu`` (40 %) of the GPUs' dense
    bf16 peak (``2 * active_params`` FLOPs per token), in seconds, plus 20 ms of scheduling."""
    flops = 2 * active_params_b * 1e9 * prompt_tokens
    return 0.02 + flops / (mfu * bf16_tflops * 1e12 * num_gpus)


def mean_request_prompt_tokens(scenario: Scenario) -> float:
    """Mean prompt tokens over all requests of the scenario's workload: ``S + In + D (n - 1)``
    for geometric turns of mean ``n`` (``E[N(N-1)/2] / E[N] = n - 1``), ``S + In + D (n - 1)
    / 2`` for ``n`` turns each (``D`` = input + output tokens); ``S`` includes the shared
    documents' tokens in their share of conversations (docs/model.md §12)."""
    n = scenario.turns
    per_turn = scenario.input_tokens + scenario.output_tokens
    first = scenario.system_prompt_tokens + scenario.input_tokens
    if scenario.num_documents > 0:
        first += scenario.document_share * scenario.document_tokens
    if scenario.turns_dist == "fixed":
        return first + per_turn * (n - 1) / 2
    return first + per_turn * (n - 1)


#: The scenario keys :func:`service_rates` reads, directly or through the model, the GPU, the
#: weights and the engine's defaults: a change of any other key leaves the rates as they are
#: (tests/test_inflight.py changes every other key to check it).
RATE_KEYS = frozenset(MODEL_KEYS) | frozenset(GPU_KEYS) | {
    "num_gpus", "weight_dtype", "engine", "engine_version", "max_num_seqs", "ttft_s", "decode_tokens_per_s",
    "mfu", "turns", "turns_dist", "input_tokens", "output_tokens", "system_prompt_tokens",
    "num_documents", "document_share", "document_tokens",
}


@dataclass(frozen=True)
class ServiceRates:
    """How fast one instance serves a request: the time to first token (of the mean prompt),
    the decode speed per sequence, the sequences it runs at most; ``derived`` names those not
    given by the scenario (``ttft_s``, ``decode_tokens_per_s``)."""

    ttft_s: float
    decode_tokens_per_s: float
    max_num_seqs: int
    derived: tuple[str, ...]


def service_rates(setup: Setup) -> ServiceRates:
    """The scenario's ``ttft_s``, ``decode_tokens_per_s`` and ``max_num_seqs``, each derived
    when empty: TTFT of the mean prompt (:func:`mean_request_prompt_tokens`) at the scenario's
    ``mfu``, decode speed from the GPU's bandwidth and the weights per GPU, ``max_num_seqs``
    as the engine starts (vLLM's default by GPU, also taken for SGLang and manual)."""
    s, gpu, capacity = setup.scenario, setup.gpu, setup.capacity
    derived: tuple[str, ...] = ()
    ttft = s.ttft_s
    if ttft is None:
        derived += ("ttft_s",)
        tflops = gpu.bf16_tflops or FALLBACK_BF16_TFLOPS
        ttft = default_ttft_s(mean_request_prompt_tokens(s), setup.arch.active_params_b, s.num_gpus, tflops, s.mfu)
    decode = s.decode_tokens_per_s
    if decode is None:
        derived += ("decode_tokens_per_s",)
        decode = default_decode_tokens_per_s(capacity.weights_gib_per_gpu * GIB, gpu.hbm_tb_s or FALLBACK_HBM_TB_S)
    seqs = s.max_num_seqs
    if seqs is None:
        memory = capacity.memory
        seqs = (memory.max_num_seqs if memory is not None and memory.max_num_seqs
                else vllm_batch_defaults(gpu.engine_memory_gib, gpu.name, parse_version(s.engine_version))[1])
    return ServiceRates(ttft, decode, seqs, derived)


def in_flight_of(setup: Setup, mean_prompt_tokens: float, shared_tokens: float, mean_turns: float) -> InFlight:
    """The :class:`InFlight` of a resolved scenario whose requests have ``mean_prompt_tokens``
    of prompt on average, the first ``shared_tokens`` of them a cached shared system prompt,
    and whose conversations have ``mean_turns`` requests."""
    s = setup.scenario
    rates = service_rates(setup)
    return in_flight(s.arrival_rate * mean_turns / s.instances, max(0.0, mean_prompt_tokens - shared_tokens),
                     s.output_tokens, ttft_s=rates.ttft_s, decode_tokens_per_s=rates.decode_tokens_per_s,
                     max_num_seqs=rates.max_num_seqs, block_size=s.block_size)
