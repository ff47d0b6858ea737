"""GPUs: the few figures the calculator needs about an accelerator.

``memory_gib`` is the memory the driver reports (nvidia-smi's total; GiB = 2^30 bytes; an
"80 GB" H100 reports about 79.6 GiB); ``cuda_memory_gib`` what CUDA reports as the device's
total (``cudaMemGetInfo``, about 0.5 GiB less: 79.19 GiB on that H100), the figure vLLM
multiplies by ``gpu_memory_utilization``; ``bf16_tflops`` the dense (no 2:4 sparsity) BF16
tensor peak and ``hbm_tb_s`` the peak memory bandwidth in TB/s (10^12 bytes per second), from
vendor datasheets.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from kvcache_calculator.errors import ScenarioError


@dataclass(frozen=True)
class GPU:
    """One accelerator model: memory, dense BF16 peak, memory bandwidth and their source."""

    id: str
    name: str
    memory_gib: float
    bf16_tflops: float = 0.0
    hbm_tb_s: float = 0.0
    source: str = ""
    cuda_memory_gib: float = 0.0

    @property
    def engine_memory_gib(self) -> float:
        """The total an engine sizes its budget from: CUDA's figure where known, else the
        driver's (a custom GPU's memory is taken as given)."""
        return self.cuda_memory_gib or self.memory_gib

    def __post_init__(self) -> None:
        if not (isinstance(self.memory_gib, (int, float)) and math.isfinite(self.memory_gib)
                and self.memory_gib > 0):
            raise ScenarioError("gpu_memory_gib", self.memory_gib, "must be a number of GiB > 0")
        for key in ("bf16_tflops", "hbm_tb_s", "cuda_memory_gib"):
            value = getattr(self, key)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ScenarioError(key, value, "must be a finite number >= 0")

    @property
    def memory_bytes(self) -> float:
        """Memory in bytes (``memory_gib * 2**30``)."""
        return self.memory_gib * 2**30

    def to_dict(self) -> dict:
        """Plain JSON types."""
        return asdict(self)
