"""The accelerators the planner knows: memory, dense peak FLOP/s and a default price.

``GPUS`` maps a short name (``h100-80gb``) to a ``GPU``; ``gpu(name)`` looks one up and
names the valid ones when it is not there. Peaks are the vendors' dense (no sparsity)
data-sheet figures, the same ones ``week03_training.flops`` uses for MFU; memory is what
``nvidia-smi`` reports (GiB); prices are rough on-demand cloud rates per GPU-hour (late
2025), a default the planner's ``--price`` overrides. The H100's $3.00 is what nanochat's
reports use (8 x H100 at $24/h).

Left out: sparsity peaks, fp8, per-cloud price lists, interconnect bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "GPUS", "gpu"]


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float       # device memory as nvidia-smi reports it
    bf16_tflops: float      # dense peak, no sparsity
    fp32_tflops: float      # dense peak (plain fp32, not TF32)
    price_per_hour: float   # default USD per GPU-hour

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 2**30)

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s for ``dtype`` ("bf16" or "fp32")."""
        if dtype not in ("bf16", "fp32"):
            raise ValueError(f"dtype {dtype!r} unknown; valid: bf16, fp32")
        return (self.bf16_tflops if dtype == "bf16" else self.fp32_tflops) * 1e12


GPUS: dict[str, GPU] = {g.name: g for g in (
    GPU("h100-80gb", 79.6, 989.0, 67.0, 3.00),
    GPU("h200-141gb", 140.4, 989.0, 67.0, 3.50),
    GPU("a100-80gb", 80.0, 312.0, 19.5, 1.80),
    GPU("a100-40gb", 40.0, 312.0, 19.5, 1.30),
    GPU("l4-24gb", 22.5, 121.0, 30.0, 0.80),
    GPU("rtx4090-24gb", 24.0, 165.0, 83.0, 0.70),
    GPU("a10-24gb", 22.5, 125.0, 31.0, 0.75),
)}


def gpu(name: str) -> GPU:
    """The ``GPU`` called ``name``; a ValueError listing the valid names otherwise."""
    try:
        return GPUS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown gpu {name!r}; valid: {', '.join(GPUS)}") from None
