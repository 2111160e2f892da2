"""Tokens/s and model FLOPs utilisation (MFU).

FLOPs per processed token of one base, forward and backward (PaLM appendix B, as nanoGPT and torchtitan
count): 6 x the matmul parameters (attention and MLP projections of every layer, and the output head; the
input embedding is a lookup, not a matmul) + 12 x layers x hidden x context for attention scores and values.
Every side of a parallel pair counts as processed tokens. Peak: a per-device table of dense (no sparsity)
FLOP/s for accelerators, and on CPU a matmul probe.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache

import torch

log = logging.getLogger(__name__)
# Dense peak FLOP/s per device (no sparsity), by dtype.
PEAKS = {
    "H200": {"bf16": 989e12, "fp32": 67e12},
    "H100": {"bf16": 989e12, "fp32": 67e12},
    "A100": {"bf16": 312e12, "fp32": 19.5e12},
    "L40S": {"bf16": 362e12, "fp32": 91.6e12},
    "A10": {"bf16": 125e12, "fp32": 31.2e12},
}


@lru_cache(maxsize=4)
def cpu_peak_flops(n: int = 1024, repeats: int = 8) -> float:
    """Measured fp32 matmul FLOP/s of this CPU (best of `repeats`, after a warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def peak_flops(dtype: str) -> float:
    """Dense peak FLOP/s of this process's device for `dtype` ("bf16" or "fp32")."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        for key, peaks in PEAKS.items():
            if key in name:
                return peaks[dtype]
        log.warning("no peak FLOP/s known for %s: MFU is computed against an A100's (add it to PEAKS)", name)
        return PEAKS["A100"][dtype]
    return cpu_peak_flops()


def flops_per_token(dims: tuple[int, int, int, int, int], vocab: int, context: int) -> float:
    """Training FLOPs per token of a Llama-style base with `dims` = (layers, hidden, heads, kv heads,
    intermediate) (`ModelConfig.dims()`), a `vocab`-sized output head and `context` tokens of attention."""
    layers, hidden, heads, kv_heads, inter = dims
    kv = hidden // heads * kv_heads
    matmul = layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter) + hidden * vocab
    return 6 * matmul + 12 * layers * hidden * context


class Meter:
    """Tokens per second and MFU over the steps since the last `read()`."""

    def __init__(self, flops_per_token: float, peak: float, world_size: int):
        self.fpt, self.peak, self.world = flops_per_token, peak, world_size
        self.tokens, self.t0 = 0, time.perf_counter()

    def add(self, tokens: int | torch.Tensor) -> None:
        """Count this rank's tokens of a step (a device count stays on the device until `read`)."""
        self.tokens = self.tokens + tokens

    def read(self) -> dict[str, float]:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the clock must include the queued kernels of the steps counted
        dt = max(time.perf_counter() - self.t0, 1e-9)
        tps = float(self.tokens) * self.world / dt  # every rank processes its share
        out = {"perf/tokens_per_s": tps, "perf/mfu": tps * self.fpt / (self.peak * self.world)}
        self.tokens, self.t0 = 0, time.perf_counter()
        return out
