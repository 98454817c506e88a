"""Sparse upcycling (Komatsuzaki et al. 2022): an MoE started from a dense week04 checkpoint.

``upcycle(dense, UpcycleConfig(...))`` builds week08's ``SotaModel`` with week04's grouped-query
attention (``attn_type="gqa"``, so every non-MLP weight has the same name and shape as in
week04's ``Llama``), copies all of them, and turns the MLP of every layer from
``first_moe_layer`` on into an MoE whose N experts are copies of that layer's dense SwiGLU
(``copy_mlp_into_experts``: ``fc`` (2I, C) [gate; up] -> ``gate_up_proj[e]``, ``proj``
(C, I) -> ``down_proj[e]``; expert width = the dense width) and whose router is fresh
(week08's init, std ``router_std``; the selection bias zero). ``upcycle_checkpoint(path)``
does the same from a file ``shared.save_model`` wrote.

The exact relation at step 0: every expert of a layer computes the dense MLP m(x), so
y_moe(x) = (sum_{j in top-k} w_j(x)) * m(x). With ``norm_topk_prob`` (the weights renormalised
to sum to 1) and ``routed_scaling_factor`` 1 this is m(x) for *any* router: the upcycled model's
logits equal the dense model's (to float rounding). Without renormalisation and a uniform
router (zero weights: every p_j = 1/N) it is (k / N) * m(x).

Left out: expert dropout or noise to break the experts' symmetry (they diverge because the
router sends them different tokens), upcycling the attention, and MLA (the dense model's
attention is kept as it is).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn

from week04_modern_arch_tools import Llama
from week08_sota import SotaConfig, SotaModel
from week08_sota.moe import MoE

__all__ = ["UpcycleConfig", "upcycle", "upcycle_checkpoint", "copy_mlp_into_experts",
           "moe_config_from_dense"]


@dataclass
class UpcycleConfig:
    """How to turn a dense model into an MoE (week08's MoE knobs)."""

    n_experts: int = 8
    top_k: int = 2
    first_moe_layer: int = 0         # layers before it stay dense (week08's first_k_dense_replace)
    gating: str = "softmax"
    norm_topk_prob: bool = True
    router_std: float = 0.02
    aux_loss_alpha: float = 0.0
    bias_update_speed: float = 0.0


def moe_config_from_dense(dense_cfg, up: UpcycleConfig) -> SotaConfig:
    """week04's ``LlamaConfig`` -> week08's ``SotaConfig``: same model, MoE MLPs of the dense width."""
    if dense_cfg.mlp != "swiglu" or dense_cfg.bias:
        raise ValueError("upcycling copies a SwiGLU without biases into week08's experts; "
                         f"got mlp={dense_cfg.mlp!r}, bias={dense_cfg.bias}")
    fields = {f.name: getattr(dense_cfg, f.name) for f in dataclasses.fields(dense_cfg)}
    return SotaConfig(**fields, attn_type="gqa", moe=True, n_routed_experts=up.n_experts,
                      num_experts_per_tok=up.top_k, n_shared_experts=0,
                      moe_intermediate_size=dense_cfg.intermediate_size,
                      first_k_dense_replace=up.first_moe_layer, gating=up.gating,
                      norm_topk_prob=up.norm_topk_prob, aux_loss_alpha=up.aux_loss_alpha,
                      bias_update_speed=up.bias_update_speed)


# ---------------------------------------------------------------- the copy


@torch.no_grad()
def copy_mlp_into_experts(mlp: nn.Module, moe: MoE) -> MoE:
    """Every routed expert of ``moe`` := the dense SwiGLU ``mlp`` (``fc`` [gate; up], ``proj``)."""
    gate_up, down = mlp.fc.weight, mlp.proj.weight                    # (2I, C), (C, I)
    if moe.experts.gate_up_proj.shape[1:] != gate_up.shape:
        raise ValueError(f"expert shape {tuple(moe.experts.gate_up_proj.shape[1:])} != dense "
                         f"{tuple(gate_up.shape)}: set moe_intermediate_size to the dense width")
    moe.experts.gate_up_proj.copy_(gate_up.unsqueeze(0).expand_as(moe.experts.gate_up_proj))
    moe.experts.down_proj.copy_(down.unsqueeze(0).expand_as(moe.experts.down_proj))
    return moe


def upcycle(dense: Llama, up: UpcycleConfig | None = None, seed: int = 0) -> SotaModel:
    """A week08 ``SotaModel`` whose every non-MLP weight is ``dense``'s and whose experts are
    copies of its MLPs; the routers are fresh (drawn with ``seed``)."""
    up = up or UpcycleConfig()
    cfg = moe_config_from_dense(dense.config, up)
    torch.manual_seed(seed)
    moe = SotaModel(cfg)
    own = moe.state_dict()
    dense_sd = {k: v for k, v in dense.state_dict().items() if k in own and own[k].shape == v.shape}
    moe.load_state_dict(dense_sd, strict=False)
    copied = set(dense_sd)
    for i, block in enumerate(moe.blocks):
        if isinstance(block.mlp, MoE):
            # looked up at call time: an exercise may replace it
            sys.modules[__name__].copy_mlp_into_experts(dense.blocks[i].mlp, block.mlp)
            with torch.no_grad():
                block.mlp.gate.weight.normal_(0.0, up.router_std)
            copied |= {f"blocks.{i}.mlp.{n}" for n in ("experts.gate_up_proj", "experts.down_proj")}
    fresh = [k for k in own if k not in copied and "mlp.gate." not in k]
    if fresh:
        raise ValueError(f"upcycle: weights with no dense source: {fresh[:5]}")
    return moe.to(next(dense.parameters()).device)


def upcycle_checkpoint(path: str | os.PathLike, up: UpcycleConfig | None = None,
                       seed: int = 0) -> SotaModel:
    """``upcycle`` of the week04 model saved at ``path`` (``shared.save_model``)."""
    from shared import load_model

    return upcycle(load_model(path), up, seed)
