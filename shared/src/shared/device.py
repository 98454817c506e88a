"""Device, dtype and seeding helpers.

``pick_device`` prefers CUDA, then Apple's MPS, then the CPU; ``pick_dtype``
chooses the compute dtype that device is fast and safe with; ``seed_everything``
seeds Python, NumPy and PyTorch (all devices) in one call; ``add_threads_argument``
and ``set_threads`` give every benchmark the same ``--threads`` flag.

Left out: multi-GPU placement (week11 owns DDP/FSDP) and deterministic-kernel
flags, which cost speed and are a per-experiment decision.
"""

from __future__ import annotations

import argparse
import os
import random

import numpy as np
import torch

_VALID_DEVICES = ("auto", "cpu", "cuda", "mps")


def pick_device(prefer: str | None = None) -> torch.device:
    """Return the best available device, or the one asked for.

    ``prefer`` is ``None``/"auto" (cuda > mps > cpu), or "cpu", "cuda",
    "cuda:N", "mps". Asking for a device that is not available raises a
    ``ValueError`` that says what is available. The environment variable
    ``NANOCHAT_DEVICE`` overrides "auto".
    """
    choice = (prefer or os.environ.get("NANOCHAT_DEVICE") or "auto").lower()
    base = choice.split(":")[0]
    if base not in _VALID_DEVICES:
        raise ValueError(f"unknown device {prefer!r}; valid: {', '.join(_VALID_DEVICES)} (or cuda:N)")
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if base == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if has_mps:
            return torch.device("mps")
        return torch.device("cpu")
    if base == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {choice!r} asked for, but CUDA is not available; available: {available_devices()}")
    if base == "mps" and not has_mps:
        raise ValueError(f"device 'mps' asked for, but MPS is not available; available: {available_devices()}")
    return torch.device(choice)


def available_devices() -> list[str]:
    """The device names this machine can run on, best first."""
    out = []
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    out.append("cpu")
    return out


def pick_dtype(device: torch.device | str) -> torch.dtype:
    """The compute dtype for autocast on ``device``.

    bf16 on CUDA cards that support it (Ampere and newer), fp16 on older CUDA
    cards and MPS, and fp32 on the CPU, where bf16 matmuls are often slower
    than fp32 and a learner wants exact numbers.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy and PyTorch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def add_threads_argument(parser, default: int = 1) -> None:
    """Add ``--threads N`` (torch CPU intra-op threads; 0 keeps PyTorch's default) to an
    ``argparse`` parser. Benchmarks default to 1: small models are latency-bound, and on a
    shared machine extra threads mostly wait on each other, which makes timings jump."""
    def count(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a thread count; use an int >= 0 "
                                              "(0 keeps PyTorch's default)")
        return n

    parser.add_argument("--threads", type=count, default=default,
                        help=f"torch CPU threads (default {default}; 0 keeps PyTorch's default)")


def set_threads(n: int | None) -> int:
    """Use ``n`` torch intra-op threads (``None`` or 0: leave the default); the count in use."""
    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()
