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

plus half a block on average for the partly filled last block. More running requests than
``max_num_seqs`` cannot be admitted: the engine is then saturated, holds at most
``max_num_seqs`` requests, and the rest queue (their prompts hold no KV while queued).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


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

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)


NONE = InFlight(0.0, 0.0, 0.0, 0.0, 0.0, False)


def in_flight(request_rate: float, mean_prompt_tokens: float, output_tokens: float, *, ttft_s: float,
              decode_tokens_per_s: float, max_num_seqs: int, block_size: int) -> InFlight:
    """Mean requests and KV tokens in service on one instance (module docstring).

    ``request_rate`` is per instance (requests/s); ``mean_prompt_tokens`` the mean prompt over
    all requests; ``output_tokens`` each request's response.
    """
    decode_s = output_tokens / decode_tokens_per_s
    service_s = ttft_s + decode_s
    held = (mean_prompt_tokens * service_s + output_tokens * decode_s / 2 + block_size / 2 * service_s)
    requests = request_rate * service_s
    tokens = request_rate * held
    saturated = requests > max_num_seqs
    if saturated:
        tokens *= max_num_seqs / requests
        requests = float(max_num_seqs)
    return InFlight(requests, tokens, service_s, ttft_s, decode_tokens_per_s, saturated)


def default_decode_tokens_per_s(weights_bytes_per_gpu: float, hbm_tb_per_s: float) -> float:
    """A sequence's decode speed when decoding is bound by reading the weights, in tokens/s.

    Each decode step reads every weight on the GPU once; at 60 % of the GPU's memory bandwidth
    (what serving engines reach on large batches) that takes ``weights / (0.6 * bandwidth)``
    seconds, and every running sequence gains one token per step.
    """
    return 0.6 * hbm_tb_per_s * 1e12 / max(weights_bytes_per_gpu, 1.0)


def default_ttft_s(prompt_tokens: float, active_params_b: float, num_gpus: int, bf16_tflops: float) -> float:
    """Time to first token of a prompt computed in full at 40 % of the GPUs' dense bf16 peak
    (``2 * active_params`` FLOPs per token), in seconds, plus 20 ms of scheduling."""
    flops = 2 * active_params_b * 1e9 * prompt_tokens
    return 0.02 + flops / (0.4 * bf16_tflops * 1e12 * num_gpus)
