"""NF4 (4-bit NormalFloat) quantisation from scratch, as QLoRA defines it.

The steps, each a small function:

1. ``nf4_levels()``: the 16 NormalFloat levels. Pre-trained weights are close
   to normally distributed, so the levels are quantiles of N(0, 1): every level
   covers the same probability mass, rescaled to [-1, 1]. There are 8 positive
   levels, 7 negative ones and an exact 0 (padding and zeros stay exact).
2. ``quantize_blockwise``: split a tensor into blocks of 64 values, divide each
   block by its absolute maximum (its "absmax", kept in fp32) and store the
   index of the nearest level. An outlier only spoils its own block.
3. ``pack_4bit`` / ``unpack_4bit``: two 4-bit codes per byte, the first value
   in the high nibble (bitsandbytes' layout).
4. Double quantisation: the fp32 absmax constants (4 bytes per 64 weights = 0.5
   bit per weight) are themselves quantised to 8 bits in blocks of 256, with
   bitsandbytes' signed "dynamic" 8-bit code (``dynamic_levels()``) after
   subtracting their mean. That brings the constants to ~0.127 bit per weight.

``quantize_nf4(w)`` runs them all and returns an ``NF4Weight``;
``dequantize_nf4(q)`` inverts them. Codes and dequantised values equal
``bitsandbytes.functional.quantize_4bit(..., quant_type="nf4")`` /
``dequantize_4bit`` (the tests check it). ``uniform_levels()`` gives the plain
int4 grid for comparisons.

Left out: FP4, 4-bit storage types other than uint8, CUDA kernels (the matmul
dequantises the whole weight, then multiplies) and quantisation-aware
initialisation such as LoftQ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# ---------------------------------------------------------------- the code tables

# The outermost quantile cannot be 0 or 1 (the normal quantile there is
# infinite). QLoRA takes the mean of the half-steps of a 15- and a 16-level
# grid: offset = 1 - (1/(2*15) + 1/(2*16)) / 2 = 0.9677083.
NF4_OFFSET = 0.9677083


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels, sorted, in [-1, 1], float32; index 7 is exactly 0."""
    if not 0.5 < offset < 1.0:
        raise ValueError(f"offset must be in (0.5, 1), got {offset}")
    # quantile probabilities from the tail towards the median (float32 grid, as bitsandbytes)
    p_pos = torch.linspace(offset, 0.5, 9)[:-1].double()  # 8 positive levels
    p_neg = torch.linspace(offset, 0.5, 8)[:-1].double()  # 7 negative levels
    pos = torch.special.ndtri(p_pos).float()  # standard normal quantiles
    neg = -torch.special.ndtri(p_neg).float()
    levels = torch.cat([neg, torch.zeros(1), pos]).sort().values  # (16,)
    return levels / levels.max()  # rescale so the largest level is 1


def uniform_levels(bits: int = 4) -> torch.Tensor:
    """``2**bits`` evenly spaced levels in [-1, 1]: the plain int-N absmax grid."""
    return torch.linspace(-1.0, 1.0, 2**bits)


def dynamic_levels() -> torch.Tensor:
    """The signed 8-bit "dynamic" code (256 sorted levels in [-1, 1]).

    Dynamic tree quantisation: a value is 10^-e * f with exponent e in 0..6
    and a linear fraction f in (0.1, 1); the smaller the exponent, the more
    fraction bits are left. Exponent 10^(i-6) gets 2^i fraction steps, so the
    levels are dense near 0 and coarse near 1. Plus 0 and 1 exactly.
    """
    levels: list[float] = []
    for i in range(7):
        edges = torch.linspace(0.1, 1.0, 2**i + 1)  # (2^i + 1,) fraction bin edges, float32
        mids = (edges[:-1] + edges[1:]) / 2.0  # a level in the middle of each bin
        scale = 10.0 ** (i - 6)
        levels += (scale * mids).tolist() + (-scale * mids).tolist()
    levels += [0.0, 1.0]
    return torch.tensor(sorted(levels), dtype=torch.float32)  # (256,)


# ---------------------------------------------------------------- block-wise absmax quantisation


def quantize_blockwise(x: torch.Tensor, levels: torch.Tensor,
                       blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes (uint8, flat, one per value) and per-block absmax (float32) of ``x``.

    The last block may be shorter than ``blocksize``. Each value is scaled by
    1/absmax of its block into [-1, 1] and mapped to its nearest level.
    """
    if blocksize <= 0:
        raise ValueError(f"blocksize must be positive, got {blocksize}")
    if levels.dim() != 1 or levels.numel() > 256:
        raise ValueError(f"levels must be a 1-D table of at most 256 values, got {tuple(levels.shape)}")
    flat = x.detach().reshape(-1).float()
    n = flat.numel()
    n_blocks = -(-n // blocksize)
    padded = torch.zeros(n_blocks * blocksize, dtype=torch.float32, device=flat.device)
    padded[:n] = flat
    blocks = padded.view(n_blocks, blocksize)  # (n_blocks, blocksize); zero padding never wins absmax
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    # multiply by the reciprocal (as bitsandbytes does, so ties round the same way)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1, 1).reshape(-1)[:n]
    levels = levels.to(device=flat.device, dtype=torch.float32)
    midpoints = (levels[:-1] + levels[1:]) / 2  # decision boundaries between neighbours
    codes = torch.bucketize(scaled, midpoints).to(torch.uint8)  # (n,) nearest level
    return codes, absmax


def dequantize_blockwise(codes: torch.Tensor, absmax: torch.Tensor, levels: torch.Tensor,
                         blocksize: int) -> torch.Tensor:
    """Flat float32 values ``levels[codes] * absmax[block]`` (inverse of ``quantize_blockwise``)."""
    n = codes.numel()
    values = levels.to(codes.device, torch.float32)[codes.reshape(-1).long()]  # (n,)
    block = torch.arange(n, device=codes.device) // blocksize  # (n,) block of each value
    return values * absmax.float()[block]


# ---------------------------------------------------------------- packing


def pack_4bit(codes: torch.Tensor, pad_code: int = 0) -> torch.Tensor:
    """Two codes (each < 16) per byte: element 2i in the high nibble, 2i+1 in the low one.

    An odd count is padded with ``pad_code`` (NF4 pads with the code of 0.0, as bitsandbytes).
    """
    codes = codes.reshape(-1).to(torch.uint8)
    if codes.numel() and int(codes.max()) > 15:
        raise ValueError(f"4-bit codes must be in 0..15, got a code {int(codes.max())}")
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_full((1,), pad_code)])  # pad to an even count
    return (codes[0::2] << 4) | codes[1::2]  # (ceil(n/2),)


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` 4-bit codes stored in ``packed`` (inverse of ``pack_4bit``)."""
    packed = packed.reshape(-1).to(torch.uint8)
    if n > 2 * packed.numel():
        raise ValueError(f"{packed.numel()} bytes hold at most {2 * packed.numel()} codes, asked for {n}")
    codes = torch.stack([packed >> 4, packed & 0x0F], dim=1).reshape(-1)  # (2 * bytes,)
    return codes[:n]


# ---------------------------------------------------------------- NF4 weights


@dataclass
class NF4Weight:
    """A tensor stored as NF4: packed codes plus (possibly double-quantised) absmax."""

    packed: torch.Tensor  # (ceil(n/2),) uint8, two codes per byte
    absmax: torch.Tensor  # (n_blocks,) float32, or uint8 codes when double_quant
    shape: tuple[int, ...]
    blocksize: int = 64
    double_quant: bool = True
    absmax2: torch.Tensor | None = None  # (ceil(n_blocks/256),) float32: absmax of the absmax
    offset: float = 0.0  # mean of the absmax constants, subtracted before quantising them
    dq_blocksize: int = 256
    dtype: torch.dtype = torch.float32  # dtype of the original tensor

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def nbytes(self) -> int:
        """Bytes stored: codes + constants (+ second-level constants and offset)."""
        total = self.packed.numel() * self.packed.element_size()
        total += self.absmax.numel() * self.absmax.element_size()
        if self.double_quant:
            total += self.absmax2.numel() * self.absmax2.element_size() + 4  # + fp32 offset
        return total

    def bits_per_weight(self) -> float:
        return 8.0 * self.nbytes() / self.numel


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True,
                 dq_blocksize: int = 256) -> NF4Weight:
    """Quantise ``w`` to NF4 (block-wise absmax, packed, optional double quantisation)."""
    if not w.is_floating_point():
        raise TypeError(f"quantize_nf4 needs a floating-point tensor, got {w.dtype}")
    if w.numel() == 0:
        raise ValueError("quantize_nf4 got an empty tensor")
    levels = nf4_levels()
    codes, absmax = quantize_blockwise(w, levels, blocksize)
    zero_code = int((levels == 0).nonzero()[0])  # 7
    q = NF4Weight(packed=pack_4bit(codes, pad_code=zero_code), absmax=absmax, shape=tuple(w.shape), blocksize=blocksize,
                  double_quant=double_quant, dq_blocksize=dq_blocksize, dtype=w.dtype)
    if double_quant:
        offset = absmax.mean()  # the constants are all positive: centre them to use both signs
        codes2, absmax2 = quantize_blockwise(absmax - offset, dynamic_levels(), dq_blocksize)
        q.absmax, q.absmax2, q.offset = codes2, absmax2, float(offset)
    return q


def nf4_absmax(q: NF4Weight) -> torch.Tensor:
    """The first-level absmax constants (float32), undoing double quantisation."""
    if not q.double_quant:
        return q.absmax.float()
    dq = dequantize_blockwise(q.absmax, q.absmax2, dynamic_levels(), q.dq_blocksize)
    return dq + torch.tensor(q.offset, dtype=torch.float32)


def dequantize_nf4(q: NF4Weight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor that ``q`` stores, in ``dtype`` (default: the original dtype)."""
    codes = unpack_4bit(q.packed, q.numel)
    w = dequantize_blockwise(codes, nf4_absmax(q), nf4_levels(), q.blocksize)
    return w.view(q.shape).to(dtype or q.dtype)


def fake_quantize(w: torch.Tensor, levels: torch.Tensor, blocksize: int = 64) -> torch.Tensor:
    """``w`` quantised to ``levels`` block-wise and straight back (for error studies)."""
    codes, absmax = quantize_blockwise(w, levels, blocksize)
    return dequantize_blockwise(codes, absmax, levels, blocksize).view(w.shape).to(w.dtype)
