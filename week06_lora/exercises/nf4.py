"""Week 06 exercises, NF4: the 16 NormalFloat levels (core ``nf4_levels``), quantising a
weight to 4 bits (core ``quantize_nf4``) and reading it back (core ``dequantize_nf4``).

Fill in the three functions below, then run ``make week06-exercises``. Each replaces the
function of the same name in ``week06_lora`` (and ``week06_lora.nf4``, and
``week06_lora.qlora`` where it imports it) while its tests run. The tests want your levels,
codes, constants and dequantised weights bit-identical to bitsandbytes'
(``bitsandbytes.functional.quantize_4bit(..., quant_type="nf4")`` / ``dequantize_4bit``),
and your dequantised weights identical to what ``QLoRALinear`` multiplies with.

You may use the package's tables and container, imported below: ``nf4_table`` (the
package's ``nf4_levels``, so that quantising does not wait on your levels; switch to yours
once they pass), ``dynamic_levels`` (256 sorted levels in [-1, 1], bitsandbytes' signed
8-bit "dynamic" code, for the double quantisation) and ``NF4Weight`` (a dataclass: ``packed``,
``absmax``, ``shape``, ``blocksize``, ``double_quant``, ``absmax2``, ``offset``,
``dq_blocksize``, ``dtype``, and ``numel``). Write the block-wise quantisation, the packing
and the double quantisation yourself (small helpers in this file are welcome).
"""

import torch

from week06_lora.nf4 import NF4_OFFSET, NF4Weight, dynamic_levels  # noqa: F401 (for you to use)
from week06_lora.nf4 import nf4_levels as nf4_table  # noqa: F401 (the package's levels)


def nf4_levels(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 levels: (16,) float32, sorted, ``[0] == -1``, ``[7] == 0``, ``[-1] == 1``.

    Weights are roughly normal, so NF4 puts its levels at quantiles of N(0, 1): each level
    then covers about the same probability mass. The outermost quantile cannot be at
    probability 1 (infinite), so the grid starts at ``offset`` = 0.9677083 (QLoRA's value);
    an ``offset`` outside (0.5, 1) is a ValueError that names ``offset``.

    - 8 positive levels: the quantiles at the first 8 of 9 probabilities evenly spaced from
      ``offset`` down to 0.5 (0.5 itself, quantile 0, is left out);
    - 7 negative levels: minus the quantiles at the first 7 of 8 probabilities from
      ``offset`` down to 0.5;
    - one exact 0 (so zeros and padding stay exact).

    Sort the 16 values and divide by the largest, so they span [-1, 1]. To equal
    bitsandbytes' table bit for bit, build the probabilities as a float32
    ``torch.linspace(offset, 0.5, 9)[:-1]``, take the quantiles in float64
    (``torch.special.ndtri`` on ``.double()``), cast them to float32, then sort and divide
    in float32.
    """
    raise NotImplementedError("not implemented yet: nf4_levels (normal quantiles, 8 positive, "
                              "7 negative and an exact zero, rescaled to [-1, 1])")


def quantize_nf4(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True,
                 dq_blocksize: int = 256) -> NF4Weight:
    """``w`` (any shape, floating point) as an ``NF4Weight``: 4-bit codes + block constants.

    ``w`` not floating point: a TypeError saying it needs a "floating-point" tensor; empty:
    a ValueError.

    1. Block-wise absmax. Flatten ``w`` to float32 (n values) and cut it into blocks of
       ``blocksize`` in that flat order, the last one zero-padded to full length:
       (n_blocks, blocksize). ``absmax`` (n_blocks,) float32 = the largest |value| per
       block. Scale each block into [-1, 1] by MULTIPLYING with ``1 / absmax`` (clamp
       absmax to at least 1e-38 first, for an all-zero block; then clamp to [-1, 1]), as
       bitsandbytes does, so values near a boundary round the same way.
    2. Nearest level. ``levels = nf4_table()``; the decision boundaries are the 15
       midpoints between neighbouring levels, and a value's code (0..15) is the index of the
       level it is nearest to; a value exactly on a midpoint takes the lower level
       (``torch.bucketize(scaled, midpoints)`` does exactly that). Keep the first n codes.
    3. Pack two codes per byte (uint8): code 2i in the high nibble, 2i+1 in the low one:
       ``(c[0::2] << 4) | c[1::2]``. An odd n is padded with code 7, the level 0.0.
       ``packed`` is (ceil(n/2),) uint8.
    4. Without double quantisation: ``absmax`` is stored as it is (fp32: 0.5 bit/weight).
       With it: the constants are all positive, so centre them first,
       ``offset = absmax.mean()``, and quantise ``absmax - offset`` exactly as in steps
       1-2, but with ``dynamic_levels()`` (256 levels, so 8-bit codes) in blocks of
       ``dq_blocksize``: ``absmax`` becomes those uint8 codes (n_blocks,), ``absmax2`` the
       float32 absmax of each block of 256 constants, ``offset`` ``float(offset)``.

    Return ``NF4Weight(packed=..., absmax=..., shape=tuple(w.shape), blocksize=blocksize,
    double_quant=double_quant, absmax2=... or None, offset=... or 0.0,
    dq_blocksize=dq_blocksize, dtype=w.dtype)``.
    """
    raise NotImplementedError("not implemented yet: quantize_nf4 (block-wise absmax, nearest "
                              "NF4 level, two codes per byte, 8-bit absmax constants)")


def dequantize_nf4(q: NF4Weight, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The tensor that ``q`` stores: ``q.shape``, in ``dtype`` (default ``q.dtype``).

    1. Codes: the first ``q.numel`` 4-bit codes of ``q.packed``, the high nibble of each
       byte first (``packed >> 4``, then ``packed & 0x0F``, interleaved).
    2. Constants: ``q.absmax`` as float32 if not ``q.double_quant``; else undo the double
       quantisation: ``dynamic_levels()[q.absmax] * q.absmax2[i // q.dq_blocksize]`` for
       constant i, plus ``q.offset`` (as a float32 tensor). (n_blocks,) float32.
    3. Value j is ``nf4_table()[code j] * absmax[j // q.blocksize]``, in float32 (that one
       product per value is what bitsandbytes computes, so the result is bit-identical).

    Reshape to ``q.shape`` and cast to ``dtype or q.dtype``.
    """
    raise NotImplementedError("not implemented yet: dequantize_nf4 (unpack the nibbles, "
                              "rebuild the absmax, levels[code] * absmax per block)")
