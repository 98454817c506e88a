"""Worked solutions: the NF4 levels, quantisation and dequantisation (week06 exercises)."""

import torch

from week06_lora.nf4 import NF4_OFFSET, NF4Weight, dynamic_levels


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """Normal quantiles at float32-spaced probabilities, an exact 0, rescaled to [-1, 1]."""
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset must be in (0.5, 1), got {offset}")
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9)[:-1].double()).float()  # (8,)
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8)[:-1].double()).float()  # (7,)
    levels = torch.cat([neg, torch.zeros(1), pos]).sort().values  # (16,)
    return levels / levels.max()


def _blockwise(x: torch.Tensor, levels: torch.Tensor, blocksize: int):
    """Flat codes (uint8, n) of ``x`` on ``levels`` and the absmax of each block (n_blocks,)."""
    flat = x.reshape(-1).float()
    n = flat.numel()
    n_blocks = -(-n // blocksize)
    blocks = torch.zeros(n_blocks * blocksize, device=flat.device)
    blocks[:n] = flat
    blocks = blocks.view(n_blocks, blocksize)  # (n_blocks, blocksize), zero-padded
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1, 1)
    levels = levels.to(flat.device, torch.float32)
    midpoints = (levels[:-1] + levels[1:]) / 2  # (len - 1,)
    codes = torch.bucketize(scaled.reshape(-1)[:n], midpoints).to(torch.uint8)  # (n,)
    return codes, absmax


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True,
                 dq_blocksize: int = 256) -> NF4Weight:
    """Block-wise absmax NF4 codes, packed two per byte; absmax optionally to 8 bits."""
    if not w.is_floating_point():
        raise TypeError(f"quantize_nf4 needs a floating-point tensor, got {w.dtype}")
    if w.numel() == 0:
        raise ValueError("quantize_nf4 got an empty tensor")
    codes, absmax = _blockwise(w.detach(), nf4_levels(), blocksize)
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_full((1,), 7)])  # pad with the code of 0.0
    packed = (codes[0::2] << 4) | codes[1::2]  # (ceil(n/2),) uint8
    absmax2, offset = None, 0.0
    if double_quant:
        mean = absmax.mean()
        absmax, absmax2 = _blockwise(absmax - mean, dynamic_levels(), dq_blocksize)
        offset = float(mean)
    return NF4Weight(packed=packed, absmax=absmax, shape=tuple(w.shape), blocksize=blocksize,
                     double_quant=double_quant, absmax2=absmax2, offset=offset,
                     dq_blocksize=dq_blocksize, dtype=w.dtype)


def dequantize_nf4(q: NF4Weight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """levels[code] * absmax of its block, with the absmax rebuilt from 8 bits if needed."""
    packed = q.packed.reshape(-1)
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)[: q.numel]  # (n,)
    if q.double_quant:
        i = torch.arange(q.absmax.numel(), device=packed.device)
        dyn = dynamic_levels().to(packed.device)
        absmax = dyn[q.absmax.long()] * q.absmax2[i // q.dq_blocksize]
        absmax = absmax + torch.tensor(q.offset, dtype=torch.float32, device=packed.device)
    else:
        absmax = q.absmax.float()  # (n_blocks,)
    j = torch.arange(q.numel, device=packed.device)
    w = nf4_levels().to(packed.device)[codes.long()] * absmax[j // q.blocksize]  # (n,)
    return w.view(q.shape).to(dtype or q.dtype)
