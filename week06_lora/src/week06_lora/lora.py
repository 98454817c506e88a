"""LoRA from scratch: a linear layer with any number of named low-rank adapters.

``LoRALinear`` wraps an ``nn.Linear`` (it keeps the very same ``weight`` and
``bias`` Parameters, so the model's state-dict keys for the base do not move)
and adds adapters. An adapter is a pair A (r, in), B (out, r) with

    y = x W^T + b + scaling * (dropout(x) A^T) B^T,   scaling = alpha / r
                                                       (rsLoRA: alpha / sqrt(r))

A starts Kaiming-uniform, B starts at zero, so a fresh adapter changes nothing
and the first gradient step moves B only. DoRA (``dora=True``) also learns a
per-output magnitude m: W' = m * (W + s B A) / ||W + s B A||_row.

Many adapters per layer, by name:

- ``add_adapter(name, r, alpha, dropout=0.0, rslora=False, dora=False)``;
- ``set_active(names)``: the active adapters are summed (adapter stacking);
- ``merge(name)`` / ``unmerge(name)``: fold ``s B A`` into W and back out;
- ``forward(x, adapter_names=[...])``: a mixed batch where row i uses the
  adapter ``adapter_names[i]`` (``None`` or ``"__base__"``: no adapter).

Model-level helpers: ``inject_lora`` (wrap the attention and MLP projections
and freeze the base), ``set_active_adapters``, ``mixed_batch``,
``merge_adapter`` / ``unmerge_adapter``, ``lora_state_dict``,
``save_adapter`` / ``load_adapter`` (atomic, via ``shared.save_checkpoint``),
``mark_trainable`` and ``trainable_report``.

Left out: LoRA for embeddings and convolutions, per-layer rank/alpha patterns,
and fused kernels for mixed batches (rows are gathered per adapter in Python).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import CheckpointError, load_checkpoint, save_checkpoint

NO_ADAPTER = "__base__"  # in adapter_names: this row uses the base model only (as PEFT)

# ---------------------------------------------------------------- adapter config


@dataclass
class AdapterConfig:
    """Hyper-parameters of one adapter."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    rslora: bool = False  # scaling alpha / sqrt(r) instead of alpha / r
    dora: bool = False  # learn a per-output magnitude (weight-decomposed LoRA)

    def __post_init__(self):
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r <= 0:
            raise ValueError(f"LoRA rank r must be a positive int, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ValueError(f"LoRA alpha must be a positive number, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)


class LoRAAdapter(nn.Module):
    """The trainable pieces of one adapter on one layer: A, B (and DoRA's magnitude)."""

    def __init__(self, in_features: int, out_features: int, config: AdapterConfig,
                 base_weight: torch.Tensor):
        super().__init__()
        self.config = config
        self.scaling = config.scaling
        dev = base_weight.device
        self.A = nn.Parameter(torch.empty(config.r, in_features, device=dev))  # (r, in)
        self.B = nn.Parameter(torch.zeros(out_features, config.r, device=dev))  # (out, r)
        # Kaiming-uniform with a=sqrt(5): what nn.Linear (and PEFT) use, bound = 1/sqrt(in)
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        if config.dora:  # m starts at ||W||_row, so W' = W while B is zero
            self.magnitude = nn.Parameter(base_weight.detach().float().norm(dim=1))  # (out,)
        else:
            self.magnitude = None

    def delta_weight(self) -> torch.Tensor:
        """scaling * B @ A, shaped like the base weight (out, in)."""
        return self.scaling * (self.B @ self.A)


# ---------------------------------------------------------------- the layer


class LoRALinear(nn.Module):
    """``nn.Linear`` plus named LoRA adapters (see the module docstring)."""

    fuse_inplace = True  # add adapters into the base output in place (QLoRALinear turns it off)

    def __init__(self, base: nn.Linear):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # the same Parameter objects: no copy, same state-dict keys
        self.bias = base.bias
        self._init_adapters()

    def _init_adapters(self) -> None:
        self.lora = nn.ModuleDict()  # name -> LoRAAdapter
        self.active: list[str] = []
        self.merged: list[str] = []  # in merge order
        self._dora_merge_scale: dict[str, torch.Tensor] = {}  # for DoRA unmerge
        self.batch_adapters: list | None = None  # set by mixed_batch()

    def extra_repr(self) -> str:
        ads = ", ".join(f"{n}(r={a.config.r})" for n, a in self.lora.items())
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"adapters=[{ads}], active={self.active}, merged={self.merged}")

    # -- base path (QLoRALinear overrides these two)
    def base_weight(self) -> torch.Tensor:
        return self.weight

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    # -- adapter bookkeeping
    def add_adapter(self, name: str, r: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                    rslora: bool = False, dora: bool = False, activate: bool = True) -> LoRAAdapter:
        """Add a fresh adapter ``name`` (B = 0, so outputs do not change)."""
        if not isinstance(name, str) or not name or name == NO_ADAPTER or "." in name:
            raise ValueError(f"adapter name must be a non-empty str without '.', and not "
                             f"{NO_ADAPTER!r}; got {name!r}")
        if name in self.lora:
            raise ValueError(f"adapter {name!r} already exists on this layer; existing: "
                             f"{list(self.lora)} (delete_adapter it first)")
        config = AdapterConfig(r=r, alpha=alpha, dropout=dropout, rslora=rslora, dora=dora)
        self.lora[name] = LoRAAdapter(self.in_features, self.out_features, config, self.base_weight())
        if activate and name not in self.active:
            self.active.append(name)
        return self.lora[name]

    def _check(self, name: str) -> LoRAAdapter:
        if name not in self.lora:
            raise KeyError(f"no adapter {name!r} on this layer; adapters: {list(self.lora)}")
        return self.lora[name]

    def delete_adapter(self, name: str) -> None:
        self._check(name)
        if name in self.merged:
            raise RuntimeError(f"adapter {name!r} is merged; unmerge it before deleting it")
        del self.lora[name]
        self.active = [n for n in self.active if n != name]

    def set_active(self, names: str | Iterable[str]) -> None:
        """Make exactly ``names`` active (their outputs are summed); ``[]`` = base only."""
        names = [names] if isinstance(names, str) else list(names)
        for n in names:
            self._check(n)
        self.active = list(dict.fromkeys(names))

    # -- merging
    @torch.no_grad()
    def merge(self, name: str) -> None:
        """Fold adapter ``name`` into the base weight (it then costs nothing at inference)."""
        ad = self._check(name)
        if name in self.merged:
            raise RuntimeError(f"adapter {name!r} is already merged")
        W = self.weight
        delta = ad.delta_weight().to(W.dtype)
        if ad.magnitude is None:
            W.add_(delta)
        else:  # DoRA: W' = m / ||W + dW|| * (W + dW); remember the scale to undo it
            combined = W.float() + delta.float()
            scale = ad.magnitude / combined.norm(dim=1)  # (out,)
            self._dora_merge_scale[name] = scale.clone()
            W.copy_((combined * scale.unsqueeze(1)).to(W.dtype))
        self.merged.append(name)

    @torch.no_grad()
    def unmerge(self, name: str) -> None:
        """Subtract adapter ``name`` from the base weight again (exact up to rounding)."""
        ad = self._check(name)
        if name not in self.merged:
            raise RuntimeError(f"adapter {name!r} is not merged; merged: {self.merged}")
        W = self.weight
        delta = ad.delta_weight().to(W.dtype)
        if ad.magnitude is None:
            W.sub_(delta)
        else:
            if self.merged[-1] != name:
                raise RuntimeError(f"DoRA adapter {name!r} must be unmerged last-in first-out; "
                                   f"merge order: {self.merged}")
            scale = self._dora_merge_scale.pop(name)
            W.copy_((W.float() / scale.unsqueeze(1) - delta.float()).to(W.dtype))
        self.merged.remove(name)

    # -- forward
    def adapter_delta(self, name: str, x: torch.Tensor, base_out: torch.Tensor) -> torch.Tensor:
        """What adapter ``name`` adds to ``base_out`` = base(x): (..., out)."""
        ad = self.lora[name]
        h = ad.drop(x)
        lora = F.linear(F.linear(h.to(ad.A.dtype), ad.A), ad.B)  # (..., r) -> (..., out)
        if ad.magnitude is None:
            return (lora * ad.scaling).to(base_out.dtype)
        # DoRA: (m / ||W + s B A|| - 1) * x W^T + m / ||.|| * s * x A^T B^T; the norm is treated as
        # a constant in backward (DoRA paper, section 4.3)
        W = self.base_weight().float()
        norm = (W + ad.delta_weight().detach()).norm(dim=1).detach()  # (out,)
        scale = ad.magnitude / norm  # (out,)
        if isinstance(ad.drop, nn.Identity) or not self.training:
            base_nb = base_out.float() if self.bias is None else (base_out - self.bias).float()
        else:  # dropout changed x: recompute x W^T on the dropped input
            base_nb = F.linear(h.float(), W)
        return ((scale - 1) * base_nb + scale * lora.float() * ad.scaling).to(base_out.dtype)

    def forward(self, x: torch.Tensor, adapter_names: list | None = None) -> torch.Tensor:
        """x (..., in) -> (..., out); ``adapter_names`` (one per row of x) selects a mixed batch."""
        if adapter_names is None:
            adapter_names = self.batch_adapters
        result = self.base_forward(x)  # (..., out): base plus any merged adapters
        if adapter_names is not None:
            return self._mixed_forward(x, result, adapter_names)
        pending = [self.lora[n] for n in self.active if n not in self.merged]
        if not pending:
            return result
        fast = self.fuse_inplace and result.is_contiguous() and all(
            ad.magnitude is None and ad.A.dtype == x.dtype == result.dtype for ad in pending)
        if fast:  # out += s * (x A^T) B^T as one fused, in-place addmm per adapter
            out2d = result.view(-1, self.out_features)  # (N, out), shares memory with result
            for ad in pending:
                h = ad.drop(x).reshape(-1, self.in_features)  # (N, in)
                out2d.addmm_(h @ ad.A.t(), ad.B.t(), alpha=ad.scaling)  # (N, r) @ (r, out)
            return result
        out = result
        for name in self.active:
            if name not in self.merged:
                out = out + self.adapter_delta(name, x, result)  # DoRA needs the pure base output
        return out

    def _mixed_forward(self, x: torch.Tensor, result: torch.Tensor, names: list) -> torch.Tensor:
        if x.dim() < 2 or len(names) != x.shape[0]:
            raise ValueError(f"adapter_names needs one name per row: got {len(names)} names for "
                             f"input of shape {tuple(x.shape)}")
        if self.merged:
            raise RuntimeError(f"mixed batches need unmerged adapters; merged: {self.merged}")
        out = result.clone()
        for name in dict.fromkeys(names):
            if name is None or name == NO_ADAPTER:
                continue
            if name not in self.lora:
                raise KeyError(f"adapter_names holds {name!r}, which this layer lacks; valid: "
                               f"{list(self.lora)} or None / {NO_ADAPTER!r} for no adapter")
            rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=x.device)
            out[rows] = out[rows] + self.adapter_delta(name, x[rows], result[rows])
        return out


# ---------------------------------------------------------------- model-level helpers


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every ``LoRALinear`` in ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LoRALinear)}


def adapter_names(model: nn.Module) -> list[str]:
    """Every adapter name present in some layer of ``model``, in order of first appearance."""
    names: dict[str, None] = {}
    for layer in lora_layers(model).values():
        names.update(dict.fromkeys(layer.lora))
    return list(names)


def _layers_with(model: nn.Module, adapter: str) -> dict[str, LoRALinear]:
    layers = {n: m for n, m in lora_layers(model).items() if adapter in m.lora}
    if not layers:
        raise KeyError(f"no layer holds adapter {adapter!r}; adapters in this model: "
                       f"{adapter_names(model) or 'none (call inject_lora first)'}")
    return layers


def _matches(name: str, targets: Iterable[str]) -> bool:
    """``name`` is a target if it equals one, ends with ``.target``, or full-matches it as a regex."""
    for t in targets:
        if name == t or name.endswith("." + t):
            return True
        try:
            if re.fullmatch(t, name):
                return True
        except re.error:
            pass
    return False


def default_targets(model: nn.Module) -> list[str]:
    """Every ``nn.Linear`` except output heads tied to (or named like) the embedding.

    For a transformer that is exactly the attention and MLP projections, the
    set "LoRA Without Regret" recommends.
    """
    embeds = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, LoRALinear)):
            leaf = name.rsplit(".", 1)[-1]
            tied = id(getattr(m, "weight", None)) in embeds
            if leaf in ("lm_head", "head", "output", "embed_out") or tied:
                continue
            out.append(name)
    return out


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def inject_lora(model: nn.Module, targets: Iterable[str] | None = None, r: int = 8,
                alpha: float = 16.0, adapter: str = "default", dropout: float = 0.0,
                rslora: bool = False, dora: bool = False, freeze_base: bool = True,
                activate: bool = True) -> nn.Module:
    """Add adapter ``adapter`` to every target linear layer of ``model`` (in place); returns it.

    ``targets``: module names, name suffixes (``"q_proj"``, ``"attn.qkv"``) or
    regexes; default: ``default_targets(model)``. Layers that already carry
    adapters get one more. ``freeze_base``: only this adapter stays trainable.
    ``activate``: this adapter becomes the only active one.
    """
    AdapterConfig(r=r, alpha=alpha, dropout=dropout, rslora=rslora, dora=dora)  # validate early
    if isinstance(targets, str):
        targets = [targets]
    targets = list(targets) if targets is not None else default_targets(model)
    candidates = [(n, m) for n, m in model.named_modules()
                  if isinstance(m, (nn.Linear, LoRALinear)) and n]
    chosen = [(n, m) for n, m in candidates if _matches(n, targets)]
    if not chosen:
        raise ValueError(f"no nn.Linear in {type(model).__name__} matches targets {targets}; "
                         f"linear layers: {[n for n, _ in candidates][:12]}")
    for name, m in chosen:
        if not isinstance(m, LoRALinear):
            m = LoRALinear(m)
            _set_module(model, name, m)
        m.add_adapter(adapter, r=r, alpha=alpha, dropout=dropout, rslora=rslora, dora=dora,
                      activate=False)
    if activate:
        set_active_adapters(model, [adapter])
    if freeze_base:
        mark_trainable(model, [adapter])
    return model


def set_active_adapters(model: nn.Module, names: str | Iterable[str]) -> None:
    """Activate exactly ``names`` in every layer (a layer skips the names it lacks)."""
    names = [names] if isinstance(names, str) else list(names)
    known = adapter_names(model)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown adapters {unknown}; adapters in this model: {known}")
    for layer in lora_layers(model).values():
        layer.set_active([n for n in names if n in layer.lora])


def active_adapters(model: nn.Module) -> list[str]:
    names: dict[str, None] = {}
    for layer in lora_layers(model).values():
        names.update(dict.fromkeys(layer.active))
    return list(names)


@contextmanager
def mixed_batch(model: nn.Module, names: list) -> Iterator[nn.Module]:
    """Inside the block, row i of every forward uses adapter ``names[i]`` (None: none)."""
    known = adapter_names(model)
    bad = [n for n in names if n is not None and n != NO_ADAPTER and n not in known]
    if bad:
        raise KeyError(f"unknown adapters {bad}; valid: {known} or None / {NO_ADAPTER!r}")
    layers = list(lora_layers(model).values())
    for layer in layers:  # a layer without some adapter treats those rows as base rows
        layer.batch_adapters = [n if n in layer.lora else None for n in names]
    try:
        yield model
    finally:
        for layer in layers:
            layer.batch_adapters = None


def merge_adapter(model: nn.Module, adapter: str) -> None:
    for layer in _layers_with(model, adapter).values():
        layer.merge(adapter)


def unmerge_adapter(model: nn.Module, adapter: str) -> None:
    for layer in _layers_with(model, adapter).values():
        layer.unmerge(adapter)


def delete_adapter(model: nn.Module, adapter: str) -> None:
    for layer in _layers_with(model, adapter).values():
        layer.delete_adapter(adapter)


def mark_trainable(model: nn.Module, adapters: str | Iterable[str]) -> None:
    """Freeze everything except the parameters of ``adapters``."""
    adapters = [adapters] if isinstance(adapters, str) else list(adapters)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in adapters:
        for layer in _layers_with(model, name).values():
            for p in layer.lora[name].parameters():
                p.requires_grad_(True)


# ---------------------------------------------------------------- adapter state and files


def lora_state_dict(model: nn.Module, adapter: str = "default") -> dict[str, torch.Tensor]:
    """Adapter ``adapter`` alone: ``{"<layer>.A": ..., "<layer>.B": ..., "<layer>.magnitude"}``.

    Keys do not contain the adapter's name, so a file can be loaded under any name.
    """
    state = {}
    for lname, layer in _layers_with(model, adapter).items():
        ad = layer.lora[adapter]
        state[f"{lname}.A"] = ad.A.detach()
        state[f"{lname}.B"] = ad.B.detach()
        if ad.magnitude is not None:
            state[f"{lname}.magnitude"] = ad.magnitude.detach()
    return state


def adapter_config(model: nn.Module, adapter: str = "default") -> AdapterConfig:
    """The config of ``adapter`` (it must be the same on every layer that holds it)."""
    configs = {lname: layer.lora[adapter].config for lname, layer in _layers_with(model, adapter).items()}
    first = next(iter(configs.values()))
    odd = [n for n, c in configs.items() if c != first]
    if odd:
        raise ValueError(f"adapter {adapter!r} has different configs across layers ({odd[:3]} "
                         f"differ from {first}); per-layer configs are not supported here")
    return first


def save_adapter(path: str | Path, model: nn.Module, adapter: str = "default") -> Path:
    """Write adapter ``adapter`` alone (weights + config) atomically to ``path``."""
    config = adapter_config(model, adapter)
    layers = _layers_with(model, adapter)
    meta = {"kind": "lora-adapter", "adapter": adapter, "config": asdict(config),
            "targets": list(layers),
            "shapes": {n: [m.out_features, m.in_features] for n, m in layers.items()}}
    return save_checkpoint(path, lora_state_dict(model, adapter), meta)


def load_adapter(path: str | Path, model: nn.Module, adapter: str | None = None,
                 activate: bool = True, freeze_base: bool = True) -> str:
    """Load an adapter file written by ``save_adapter`` into ``model``; returns its name.

    Layers that lack adapter ``adapter`` (default: the name it was saved
    under) get it injected with the saved config; a layer that already has it
    must have the same rank. Any shape or rank mismatch raises ``CheckpointError``.
    """
    state, meta = load_checkpoint(path, expect={"kind": "lora-adapter"})
    name = adapter or meta["adapter"]
    cfg = AdapterConfig(**meta["config"])
    missing = [t for t in meta["targets"] if t not in dict(model.named_modules())]
    if missing:
        raise CheckpointError(f"adapter file {path} targets layers {missing[:3]} that "
                              f"{type(model).__name__} does not have: it was trained for another model")
    modules = dict(model.named_modules())
    problems = []
    for t in meta["targets"]:
        m = modules[t]
        out_f, in_f = (m.out_features, m.in_features) if hasattr(m, "out_features") else (None, None)
        want = tuple(meta["shapes"][t])
        if (out_f, in_f) != want:
            problems.append(f"{t}: file is for a ({want[0]} x {want[1]}) layer, model has "
                            f"({out_f} x {in_f})")
        elif isinstance(m, LoRALinear) and name in m.lora and m.lora[name].config.r != cfg.r:
            problems.append(f"{t}: adapter {name!r} in the model has rank {m.lora[name].config.r}, "
                            f"the file has rank {cfg.r}")
        for key, w_shape in (("A", (cfg.r, in_f)), ("B", (out_f, cfg.r))):
            if f"{t}.{key}" not in state:
                problems.append(f"{t}.{key} is missing from the file")
                continue
            got = tuple(state[f"{t}.{key}"].shape)
            if got != w_shape and (out_f, in_f) == want:
                problems.append(f"{t}.{key}: file {got} vs expected {w_shape} (rank {cfg.r})")
    if problems:
        raise CheckpointError(f"adapter file {path} does not fit this model: " + "; ".join(problems[:4]))
    for t in meta["targets"]:
        if not (isinstance(modules[t], LoRALinear) and name in modules[t].lora):
            inject_lora(model, targets=[f"^{re.escape(t)}$"], adapter=name, freeze_base=False,
                        activate=False, **asdict(cfg))
    layers = lora_layers(model)
    with torch.no_grad():
        for t in meta["targets"]:
            ad = layers[t].lora[name]
            ad.A.copy_(state[f"{t}.A"])
            ad.B.copy_(state[f"{t}.B"])
            if ad.magnitude is not None:
                ad.magnitude.copy_(state[f"{t}.magnitude"])
    if activate:
        set_active_adapters(model, [name])
    if freeze_base:
        mark_trainable(model, [name])
    return name


# ---------------------------------------------------------------- parameter report


@dataclass
class TrainableReport:
    """How many parameters train, in total and per adapter."""

    trainable: int
    total: int
    per_adapter: dict[str, int] = field(default_factory=dict)

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        lines = [f"trainable params: {self.trainable:,} / {self.total:,} ({self.percent:.4f}%)"]
        lines += [f"  adapter {n!r}: {k:,}" for n, k in self.per_adapter.items()]
        return "\n".join(lines)


def trainable_report(model: nn.Module) -> TrainableReport:
    """Trainable vs total parameters (tied weights counted once, NF4 bases by element count)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    for layer in lora_layers(model).values():
        total += getattr(layer, "quantized_numel", 0)  # QLoRA bases are buffers, not parameters
    per_adapter = {}
    for name in adapter_names(model):
        per_adapter[name] = sum(p.numel() for layer in _layers_with(model, name).values()
                                for p in layer.lora[name].parameters())
    return TrainableReport(trainable, total, per_adapter)
