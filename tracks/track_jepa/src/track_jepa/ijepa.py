"""I-JEPA: predict the target encoder's features of masked blocks from a context block.

Three networks (Assran et al. 2023, figure 3):

- the **context encoder** (a ``ViTEncoder``) sees only the context patches;
- the **target encoder** is a copy of it that no gradient reaches
  (``requires_grad=False``); after every optimizer step it moves towards the
  context encoder by an exponential moving average, ``t <- m t + (1 - m) c``,
  with ``m`` rising linearly from 0.996 to 1.0 over the run (``ema_update``,
  ``ema_momentum``, the Trainer hook ``EMAHook``);
- the **predictor**, a narrower ViT, reads the context tokens (projected, plus
  their positions) and one learned **mask token** per target patch, plus *that
  patch's* position, and outputs a feature for each target patch (``Predictor``).

The loss (``jepa_loss``, week03's ``loss_fn(model, batch)``): the target
encoder runs on the whole image; its outputs are layer-normed (no affine) and
the target blocks' patches gathered; the predictor's outputs for the same
patches are compared by L2 (squared error, the paper) or smooth-L1 (the
paper's code), averaged over the M blocks and their patches. The loss lives
in representation space: nothing is ever decoded back to pixels.

``train_ijepa`` runs it with week03's ``Trainer`` (loss_fn + the EMA hook).
Left out: the weight-decay schedule (0.04 -> 0.4), crops and multi-GPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import SampledBatches
from track_jepa import ijepa as _self  # calls go through the module (exercise swaps)
from track_jepa.masks import MaskCollator, MaskConfig
from track_jepa.monitors import embedding_std
from track_jepa.vit import (
    ViTConfig,
    ViTEncoder,
    _init,
    block_config,
    gather_tokens,
    sincos_pos_embed,
)
from week01_transformer import Block
from week03_training import TrainConfig, Trainer

__all__ = ["IJEPAConfig", "IJEPA_PRESETS", "IJEPA", "Predictor", "jepa_loss", "ema_update",
           "ema_momentum", "EMAHook", "fit", "train_ijepa", "image_examples"]


# --------------------------------------------------------------------------- config


@dataclass
class IJEPAConfig:
    """Encoder, predictor, masking and EMA settings; ``IJEPAConfig.preset("tiny")``."""

    vit: ViTConfig = field(default_factory=ViTConfig)
    pred_dim: int = 32                # the predictor is narrower than the encoder (paper: 384)
    pred_depth: int = 2
    pred_heads: int = 2
    mask: MaskConfig = field(default_factory=MaskConfig)
    loss: str = "l2"                  # "l2" (the paper's text) or "smooth_l1" (its code)
    ema: tuple[float, float] = (0.996, 1.0)

    def __post_init__(self):
        if self.loss not in ("l2", "smooth_l1"):
            raise ValueError(f"IJEPAConfig.loss must be 'l2' or 'smooth_l1', got {self.loss!r}")
        if not 0.0 <= self.ema[0] <= self.ema[1] <= 1.0:
            raise ValueError(f"IJEPAConfig.ema must be 0 <= start <= end <= 1, got {self.ema}")

    @classmethod
    def preset(cls, name: str, **overrides) -> IJEPAConfig:
        return replace(IJEPA_PRESETS[name], **overrides)


IJEPA_PRESETS = {
    "test": IJEPAConfig(vit=ViTConfig.preset("test"), pred_dim=16, pred_depth=1, pred_heads=2),
    "tiny": IJEPAConfig(vit=ViTConfig.preset("tiny"), pred_dim=32, pred_depth=2, pred_heads=2),
    "digits_p1": IJEPAConfig(vit=ViTConfig.preset("digits_p1"), pred_dim=32, pred_depth=3,
                             pred_heads=2, mask=MaskConfig(min_keep=4)),
    "animal": IJEPAConfig(vit=ViTConfig.preset("animal"), pred_dim=48, pred_depth=3,
                          pred_heads=4, mask=MaskConfig(min_keep=4)),
}


# --------------------------------------------------------------------------- predictor


class Predictor(nn.Module):
    """Context tokens + mask tokens at the targets' positions -> one vector per target patch.

    ``out_dim`` defaults to the encoder's width (I-JEPA); MAE's pixel decoder is the same
    module with ``out_dim = patch pixels`` (``baselines.py``).
    """

    def __init__(self, enc_dim: int, pred_dim: int, depth: int, heads: int, grid: int,
                 out_dim: int | None = None, attention: str = "sdpa"):
        super().__init__()
        self.embed = nn.Linear(enc_dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.register_buffer("pos", sincos_pos_embed(pred_dim, grid), persistent=False)
        gcfg = block_config(pred_dim, depth, heads, grid * grid * 2, attention)
        self.blocks = nn.ModuleList([Block(gcfg, i) for i in range(depth)])
        self.norm = nn.LayerNorm(pred_dim)
        self.proj = nn.Linear(pred_dim, out_dim or enc_dim)
        self.apply(_init)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, ctx: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor
                ) -> torch.Tensor:
        """ctx (B, Kc, D), ctx_idx (B, Kc), tgt_idx (B, Kt) -> (B, Kt, out_dim)."""
        B, Kc, _ = ctx.shape
        x = self.embed(ctx) + self.pos[ctx_idx]                              # (B, Kc, P)
        m = self.mask_token.expand(B, tgt_idx.size(1), -1) + self.pos[tgt_idx]  # (B, Kt, P)
        z = torch.cat([x, m], dim=1)                                         # (B, Kc+Kt, P)
        for block in self.blocks:
            z = block(z)
        return self.proj(self.norm(z[:, Kc:]))                               # (B, Kt, out)


# --------------------------------------------------------------------------- the model


class IJEPA(nn.Module):
    """Context encoder, EMA target encoder (no gradient) and predictor."""

    def __init__(self, config: IJEPAConfig):
        super().__init__()
        self.config = config
        v = config.vit
        self.context_encoder = ViTEncoder(v)
        self.target_encoder = copy.deepcopy(self.context_encoder).requires_grad_(False)
        self.predictor = Predictor(v.dim, config.pred_dim, config.pred_depth, config.pred_heads,
                                   v.grid, attention=v.attention)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The target encoder's patch features (B, N, D): the representation I-JEPA keeps."""
        return self.target_encoder(images)

    def encoder(self) -> ViTEncoder:
        """The encoder a linear probe reads (the target encoder, as in the paper)."""
        return self.target_encoder


# --------------------------------------------------------------------------- loss


def jepa_loss(model: IJEPA, batch) -> tuple[torch.Tensor, dict]:
    """week03 ``loss_fn``: batch = (images (B, C, H, W), context (B, Kc), targets (B, M, Kt)).

    Returns the mean L2 (or smooth-L1) distance between the predictor's outputs and the
    layer-normed target features of every target patch, and monitors (``pred_std``,
    ``target_std``: ``embedding_std`` of the flattened vectors; collapse drives them to 0).
    """
    images, ctx_idx, tgt_idx = batch
    B, M, Kt = tgt_idx.shape
    with torch.no_grad():
        h = model.target_encoder(images)                              # (B, N, D)
        h = F.layer_norm(h, h.shape[-1:])
        h = gather_tokens(h, tgt_idx.reshape(B, M * Kt))              # (B, M*Kt, D)
        h = h.reshape(B * M, Kt, -1)                                  # (B*M, Kt, D)
    z = model.context_encoder(images, ctx_idx)                        # (B, Kc, D)
    z = z.repeat_interleave(M, dim=0)                                 # (B*M, Kc, D)
    ctx_rep = ctx_idx.repeat_interleave(M, dim=0)                     # (B*M, Kc)
    p = model.predictor(z, ctx_rep, tgt_idx.reshape(B * M, Kt))       # (B*M, Kt, D)
    if model.config.loss == "l2":
        loss = F.mse_loss(p, h)
    else:
        loss = F.smooth_l1_loss(p, h)
    D = p.size(-1)
    return loss, {"pred_std": embedding_std(p.detach().reshape(-1, D)),
                  "ctx_std": embedding_std(z.detach()[::M].mean(1))}


# --------------------------------------------------------------------------- EMA


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place, for every parameter pair: ``t <- momentum * t + (1 - momentum) * o``."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(momentum).add_(o.detach(), alpha=1.0 - momentum)


def ema_momentum(step: int, total: int, start: float = 0.996, end: float = 1.0) -> float:
    """The paper's schedule: linear from ``start`` (step 0) to ``end`` (step ``total``)."""
    return start + (end - start) * min(step, total) / max(total, 1)


class EMAHook:
    """week03 Trainer hook: after each optimizer step, the target encoder follows the context
    encoder with ``ema_momentum(steps_done, total)``; checkpointed with the run."""

    def __init__(self, total_steps: int, momentum: tuple[float, float] = (0.996, 1.0)):
        self.total, self.momentum, self.steps = total_steps, momentum, 0

    def __call__(self, trainer, info) -> dict:
        model = trainer.raw_model
        m = ema_momentum(self.steps, self.total, *self.momentum)
        _self.ema_update(model.target_encoder, model.context_encoder, m)
        self.steps += 1
        return {"ema_m": m}

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])


# --------------------------------------------------------------------------- training


def image_examples(images: torch.Tensor, labels) -> list[tuple[torch.Tensor, int]]:
    """(N, C, H, W) images and N labels -> a list of (image, label) pairs for SampledBatches."""
    return [(images[i], int(labels[i])) for i in range(len(images))]


def fit(model: nn.Module, loader, loss_fn, steps: int, lr: float = 1e-3,
        weight_decay: float = 0.05, hooks=(), params=None, progress: bool = True,
        desc: str = "train", seed: int = 0) -> Trainer:
    """week03's Trainer, writing nothing (no checkpoints, no metrics file); returns it fitted."""
    cfg = TrainConfig(steps=steps, batch_size=1, block_size=1, lr=lr, weight_decay=weight_decay,
                      optimizer="torch-adamw", warmup_steps=max(1, steps // 10), eval_every=0,
                      ckpt_every=0, save_final=False, write_metrics=False, progress=progress,
                      seed=seed, betas=(0.9, 0.999), grad_clip=1.0)
    trainer = Trainer(model, loader, cfg, loss_fn=loss_fn, hooks=hooks, params=params, desc=desc)
    trainer.fit()
    return trainer


def train_ijepa(model: IJEPA, images: torch.Tensor, labels, steps: int, batch_size: int = 64,
                lr: float = 1e-3, seed: int = 0, progress: bool = True) -> Trainer:
    """I-JEPA on ``images`` (labels are only carried, never read) with week03's Trainer."""
    collate = MaskCollator(model.config.vit.grid, model.config.mask, seed=seed)
    loader = SampledBatches(image_examples(images, labels), batch_size, collate, seed=seed)
    hook = EMAHook(steps, model.config.ema)
    return fit(model, loader, _self.jepa_loss, steps, lr=lr, hooks=[hook], progress=progress,
               desc="i-jepa", seed=seed)
