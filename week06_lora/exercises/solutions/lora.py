"""Worked solutions: the LoRA forward pass, merge and unmerge (week06 exercises)."""

import torch
import torch.nn.functional as F


def forward(self, x: torch.Tensor, adapter_names: list | None = None) -> torch.Tensor:
    """Base output plus scaling * (drop(x) A^T) B^T per active, unmerged adapter."""
    if adapter_names is None:
        adapter_names = self.batch_adapters
    result = self.base_forward(x)  # (..., out)
    if adapter_names is not None:
        return self._mixed_forward(x, result, adapter_names)
    out = result
    for name in self.active:
        if name in self.merged:
            continue
        ad = self.lora[name]
        if ad.magnitude is not None:  # DoRA: the package's delta, from the pure base output
            out = out + self.adapter_delta(name, x, result)
            continue
        h = ad.drop(x).to(ad.A.dtype)  # (..., in)
        lora = F.linear(F.linear(h, ad.A), ad.B)  # (..., r) -> (..., out)
        out = out + (lora * ad.scaling).to(result.dtype)
    return out


@torch.no_grad()
def merge(self, name: str) -> None:
    """W += s B A; DoRA: W = m * V / ||V||_row with V = W + s B A (the scale is kept)."""
    ad = self._check(name)
    if name in self.merged:
        raise RuntimeError(f"adapter {name!r} is already merged")
    W = self.weight  # (out, in)
    delta = ad.delta_weight().to(W.dtype)  # (out, in)
    if ad.magnitude is None:
        W.add_(delta)
    else:
        V = W.float() + delta.float()
        scale = ad.magnitude / V.norm(dim=1)  # (out,)
        self._dora_merge_scale[name] = scale.clone()
        W.copy_((V * scale.unsqueeze(1)).to(W.dtype))
    self.merged.append(name)


@torch.no_grad()
def unmerge(self, name: str) -> None:
    """W -= s B A; DoRA (last merged first): W = W / scale - s B A."""
    ad = self._check(name)
    if name not in self.merged:
        raise RuntimeError(f"adapter {name!r} is not merged; merged: {self.merged}")
    W = self.weight  # (out, in)
    delta = ad.delta_weight().to(W.dtype)
    if ad.magnitude is None:
        W.sub_(delta)
    else:
        if self.merged[-1] != name:
            raise RuntimeError(f"DoRA adapter {name!r} must be unmerged last-in first-out; "
                               f"merge order: {self.merged}")
        scale = self._dora_merge_scale.pop(name)  # (out,)
        W.copy_((W.float() / scale.unsqueeze(1) - delta.float()).to(W.dtype))
    self.merged.remove(name)
