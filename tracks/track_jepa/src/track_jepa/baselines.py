"""The baselines I-JEPA is measured against, on the same ``ViTEncoder``, data and steps.

- **MAE-style pixel reconstruction** (He et al. 2022): the encoder sees a random 25%
  of the patches; a light decoder (``ijepa.Predictor`` with ``out_dim`` = patch
  pixels: mask tokens + positions, the same module as I-JEPA's predictor) predicts
  the pixels of the masked 75%; the loss is the squared error on each masked
  patch's pixels, normalised per patch (MAE's ``norm_pix_loss``).
- **Supervised**: the encoder, mean-pooled, a linear head, cross-entropy on the labels.
- **Random**: the encoder as initialised (``ViTEncoder(config)``, no training).

Each trains with week03's Trainer through ``ijepa.fit``. Left out: MAE's
class token, augmentations, label smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import SampledBatches
from track_jepa import baselines as _self
from track_jepa.ijepa import Predictor, fit, image_examples
from track_jepa.masks import random_mask
from track_jepa.vit import ViTConfig, ViTEncoder, gather_tokens, patchify

__all__ = ["MAEConfig", "MAE", "mae_loss", "Supervised", "supervised_loss", "train_mae",
           "train_supervised", "stack_collate"]


# --------------------------------------------------------------------------- MAE


@dataclass
class MAEConfig:
    vit: ViTConfig
    dec_dim: int = 32
    dec_depth: int = 2
    dec_heads: int = 2
    mask_ratio: float = 0.75
    norm_pix: bool = True


class MAE(nn.Module):
    """Encoder on the visible patches, pixel decoder on mask tokens at the masked ones."""

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        v = config.vit
        self.encoder_net = ViTEncoder(v)
        self.decoder = Predictor(v.dim, config.dec_dim, config.dec_depth, config.dec_heads,
                                 v.grid, out_dim=v.patch_dim, attention=v.attention)

    def encoder(self) -> ViTEncoder:
        return self.encoder_net


def mae_loss(model: MAE, batch) -> tuple[torch.Tensor, dict]:
    """week03 ``loss_fn``: batch = (images (B, C, H, W), labels (B,)); labels unused."""
    images, _ = batch
    cfg = model.config
    N = cfg.vit.num_patches
    visible, masked = random_mask(N, cfg.mask_ratio, images.size(0))       # (B, Kv), (B, Km)
    visible, masked = visible.to(images.device), masked.to(images.device)
    z = model.encoder_net(images, visible)                                  # (B, Kv, D)
    pred = model.decoder(z, visible, masked)                                # (B, Km, P)
    target = gather_tokens(patchify(images, cfg.vit.patch), masked)         # (B, Km, P)
    if cfg.norm_pix and target.size(-1) > 1:  # one-pixel patches are standardised already
        mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mu) / (var + 1e-6).sqrt()
    return F.mse_loss(pred, target), {}


# --------------------------------------------------------------------------- supervised


class Supervised(nn.Module):
    """Encoder, mean over patches, linear head."""

    def __init__(self, vit: ViTConfig, num_classes: int):
        super().__init__()
        self.encoder_net = ViTEncoder(vit)
        self.head = nn.Linear(vit.dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder_net(images).mean(1))                  # (B, classes)

    def encoder(self) -> ViTEncoder:
        return self.encoder_net


def supervised_loss(model: Supervised, batch) -> tuple[torch.Tensor, dict]:
    images, labels = batch
    logits = model(images)
    return F.cross_entropy(logits, labels), {"acc": (logits.argmax(-1) == labels).float().mean()}


# --------------------------------------------------------------------------- training


def stack_collate(examples) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, label) pairs -> (images (B, C, H, W), labels (B,))."""
    return (torch.stack([x for x, _ in examples]),
            torch.tensor([y for _, y in examples], dtype=torch.long))


def train_mae(model: MAE, images, labels, steps: int, batch_size: int = 64, lr: float = 1e-3,
              seed: int = 0, progress: bool = True):
    loader = SampledBatches(image_examples(images, labels), batch_size, stack_collate, seed=seed)
    return fit(model, loader, _self.mae_loss, steps, lr=lr, progress=progress, desc="mae",
               seed=seed)


def train_supervised(model: Supervised, images, labels, steps: int, batch_size: int = 64,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True):
    loader = SampledBatches(image_examples(images, labels), batch_size, stack_collate, seed=seed)
    return fit(model, loader, _self.supervised_loss, steps, lr=lr, progress=progress,
               desc="supervised", seed=seed)
