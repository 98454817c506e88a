"""Counting model FLOPs, so a run can report its model FLOP utilisation (MFU).

``flops_per_token(model, block_size)`` uses the PaLM-paper estimate for a
decoder-only transformer trained with backprop: ``6 * N`` for the parameter
matmuls (2 forward, 4 backward per weight), plus ``12 * n_layer * n_embd * T``
for the attention score and value matmuls, where ``N`` excludes embedding
tables (a lookup is not a matmul; a tied output head is counted once, through
the head). MFU = achieved model FLOP/s divided by the device's peak.

``peak_flops`` knows a few GPUs' dense bf16/fp32 peaks; for a CPU (or an
unknown GPU) ``measure_matmul_flops`` times a large matmul and uses that as
the practical peak, which is what the benchmark reports.

A model can count itself (a ``flops_per_token(block_size)`` method, e.g. week08's MoE
with its active parameters); the Trainer's MFU uses whichever count applies.

Left out: activation recomputation and sliding-window attention counts.
"""

from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["flops_per_token", "peak_flops", "measure_matmul_flops"]

# dense peak FLOP/s, no sparsity, from the vendors' data sheets
_GPU_PEAKS = {  # substring of the device name -> (bf16, fp32)
    "H200": (989e12, 67e12),
    "H100": (989e12, 67e12),
    "A100": (312e12, 19.5e12),
    "L4": (121e12, 30e12),
    "A10": (125e12, 31e12),
    "4090": (165e12, 83e12),
    "3090": (71e12, 36e12),
}


def flops_per_token(model: nn.Module, block_size: int) -> float:
    """Training FLOPs per token (forward + backward) of a GPT-like ``model``.

    A model that knows better counts itself: when it has a ``flops_per_token(block_size)``
    method (week08's MoE counts only the experts a token uses, its active parameters),
    that is the answer."""
    own = getattr(model, "flops_per_token", None)
    if callable(own):
        return float(own(block_size))
    embed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    heads = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    n = sum(p.numel() for p in model.parameters() if id(p) not in embed or id(p) in heads)
    cfg = getattr(model, "config", None)
    n_layer = getattr(cfg, "n_layer", getattr(model, "n_layer", 0)) or 0
    n_embd = getattr(cfg, "n_embd", getattr(model, "n_embd", 0)) or 0
    return 6.0 * n + 12.0 * n_layer * n_embd * block_size


def peak_flops(device: torch.device | str, dtype: torch.dtype = torch.bfloat16) -> float | None:
    """Data-sheet dense peak FLOP/s of a known CUDA device, else ``None``."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    for key, (bf16, fp32) in _GPU_PEAKS.items():
        if key in name:
            return bf16 if dtype in (torch.bfloat16, torch.float16) else fp32
    return None


def measure_matmul_flops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                         n: int = 1024, repeats: int = 5) -> float:
    """Best achieved FLOP/s of an ``n x n`` matmul: a practical peak for MFU on CPUs."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best
