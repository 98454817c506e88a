"""QLoRA: a frozen NF4 base weight, dequantised on the fly, plus trainable LoRA adapters.

``QLoRALinear`` is a ``LoRALinear`` whose base weight lives as NF4 buffers
(packed 4-bit codes + double-quantised absmax, see ``week06_lora.nf4``)
instead of a float Parameter. Each forward dequantises the weight to the
compute dtype (bf16 by default, as QLoRA), runs the matmul there, and casts
the result back to the input's dtype; the adapters run in their own (fp32)
precision on top. The backward pass dequantises the weight again instead of
keeping the bf16 copy alive, so activations memory holds no full-size weights.

``quantize_model(model)`` swaps every target linear layer (the attention and
MLP projections by default) for a ``QLoRALinear`` without adapters; then
``inject_lora`` adds adapters as usual. ``prepare_qlora`` does both.

Left out: merging into an NF4 weight (it would re-quantise and lose the exact
round trip; merge in full precision and quantise again if you need it), paged
optimizers and CUDA kernels.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

import torch
import torch.nn as nn
import torch.nn.functional as F

from week06_lora.lora import LoRALinear, _matches, _set_module, default_targets, inject_lora
from week06_lora.nf4 import NF4Weight, dynamic_levels, nf4_levels, quantize_nf4, unpack_4bit

# ---------------------------------------------------------------- dequantisation (cached tables)


@cache
def _tables() -> tuple[torch.Tensor, torch.Tensor]:
    return nf4_levels(), dynamic_levels()


class _NF4Matmul(torch.autograd.Function):
    """y = x W^T (+ b) with W dequantised in forward and again in backward (not saved)."""

    @staticmethod
    def forward(ctx, x, layer, bias):
        W = layer.dequantize(x.dtype)  # (out, in) in the compute dtype
        ctx.layer = layer
        return F.linear(x, W, bias)

    @staticmethod
    def backward(ctx, grad_out):
        W = ctx.layer.dequantize(grad_out.dtype)
        return grad_out @ W, None, None  # the base is frozen: no weight or bias gradient


# ---------------------------------------------------------------- the layer


class QLoRALinear(LoRALinear):
    """A linear layer with a frozen NF4 weight and named LoRA adapters."""

    # the base output comes from a custom autograd Function: autograd forbids modifying it in place
    fuse_inplace = False

    def __init__(self, base: nn.Linear | LoRALinear, blocksize: int = 64, double_quant: bool = True,
                 compute_dtype: torch.dtype = torch.bfloat16):
        nn.Module.__init__(self)
        if not isinstance(base, (nn.Linear, LoRALinear)) or isinstance(base, QLoRALinear):
            raise TypeError(f"QLoRALinear quantises an nn.Linear or LoRALinear, got {type(base).__name__}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.compute_dtype = compute_dtype
        q = quantize_nf4(base.weight.detach(), blocksize=blocksize, double_quant=double_quant)
        self.blocksize, self.double_quant, self.dq_blocksize = blocksize, double_quant, q.dq_blocksize
        self.register_buffer("nf4_packed", q.packed)
        self.register_buffer("nf4_absmax", q.absmax)
        self.register_buffer("nf4_absmax2", q.absmax2 if double_quant else torch.zeros(0))
        self.register_buffer("nf4_offset", torch.tensor(q.offset, dtype=torch.float32))
        self.bias = None if base.bias is None else nn.Parameter(base.bias.detach().clone(),
                                                                requires_grad=False)
        self._init_adapters()
        if isinstance(base, LoRALinear):  # keep its adapters
            if base.merged:
                raise RuntimeError(f"unmerge {base.merged} before quantising: a merged adapter "
                                   "would be frozen into the 4-bit weight")
            self.lora, self.active = base.lora, list(base.active)

    @property
    def quantized_numel(self) -> int:
        return self.in_features * self.out_features

    @property
    def nf4(self) -> NF4Weight:
        """The stored weight as an ``NF4Weight`` (shares the buffers)."""
        return NF4Weight(packed=self.nf4_packed, absmax=self.nf4_absmax,
                         shape=(self.out_features, self.in_features), blocksize=self.blocksize,
                         double_quant=self.double_quant,
                         absmax2=self.nf4_absmax2 if self.double_quant else None,
                         offset=float(self.nf4_offset), dq_blocksize=self.dq_blocksize)

    def base_nbytes(self) -> int:
        """Bytes of the frozen base weight as stored (codes + constants; bias excluded)."""
        return self.nf4.nbytes()

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The base weight (out, in) in ``dtype``: levels[code] * absmax, computed in fp32."""
        levels, dyn = _tables()
        n = self.quantized_numel
        absmax = self.nf4_absmax
        if self.double_quant:  # absmax = dynamic[code2] * absmax2[block of 256] + offset
            a = dyn.to(absmax.device)[absmax.long()].view(-1)
            blk = torch.arange(a.numel(), device=a.device) // self.dq_blocksize
            absmax = a * self.nf4_absmax2[blk] + self.nf4_offset
        codes = unpack_4bit(self.nf4_packed, n).long()  # (n,)
        values = levels.to(codes.device)[codes]  # (n,) in [-1, 1]
        n_blocks = absmax.numel()
        pad = n_blocks * self.blocksize - n
        if pad:
            values = F.pad(values, (0, pad))
        W = (values.view(n_blocks, self.blocksize) * absmax.view(-1, 1)).view(-1)[:n]
        return W.view(self.out_features, self.in_features).to(dtype)

    # -- LoRALinear's base path
    def base_weight(self) -> torch.Tensor:
        return self.dequantize(torch.float32)

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        cd = self.compute_dtype
        bias = None if self.bias is None else self.bias.to(cd)
        return _NF4Matmul.apply(x.to(cd), self, bias).to(x.dtype)  # (..., out)

    def merge(self, name: str) -> None:
        raise NotImplementedError("QLoRALinear cannot merge into its 4-bit weight without "
                                  "re-quantising; keep the adapter unmerged, or dequantise the "
                                  "model to full precision first")

    def unmerge(self, name: str) -> None:
        raise NotImplementedError("QLoRALinear never merges, so there is nothing to unmerge")

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nf4(blocksize={self.blocksize}, dq={self.double_quant})"


# ---------------------------------------------------------------- whole models


def quantize_model(model: nn.Module, targets: Iterable[str] | None = None, blocksize: int = 64,
                   double_quant: bool = True, compute_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Replace the target linear layers of ``model`` by frozen NF4 ``QLoRALinear`` (in place)."""
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets) if targets is not None else default_targets(model)
    chosen = [(n, m) for n, m in model.named_modules()
              if isinstance(m, (nn.Linear, LoRALinear)) and not isinstance(m, QLoRALinear)
              and n and _matches(n, targets)]
    if not chosen:
        raise ValueError(f"quantize_model found no linear layer matching {targets} in "
                         f"{type(model).__name__}")
    for name, m in chosen:
        _set_module(model, name, QLoRALinear(m, blocksize=blocksize, double_quant=double_quant,
                                             compute_dtype=compute_dtype))
    return model


def prepare_qlora(model: nn.Module, targets: Iterable[str] | None = None, r: int = 8,
                  alpha: float = 16.0, adapter: str = "default",
                  compute_dtype: torch.dtype = torch.bfloat16, **lora_kwargs) -> nn.Module:
    """``quantize_model`` then ``inject_lora``: the QLoRA recipe in one call."""
    quantize_model(model, targets=targets, compute_dtype=compute_dtype)
    return inject_lora(model, targets=targets, r=r, alpha=alpha, adapter=adapter, **lora_kwargs)


def base_weight_bytes(model: nn.Module) -> int:
    """Bytes held by the weights of the linear layers that are NF4 (as stored)."""
    return sum(m.base_nbytes() for m in model.modules() if isinstance(m, QLoRALinear))
