"""Worked solution: the I-JEPA loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def jepa_loss(model, batch) -> tuple[torch.Tensor, dict]:
    images, ctx_idx, tgt_idx = batch
    B, M, Kt = tgt_idx.shape
    with torch.no_grad():
        feats = model.target_encoder(images)                               # (B, N, D)
        feats = F.layer_norm(feats, (feats.size(-1),))
        D = feats.size(-1)
        flat = tgt_idx.reshape(B, M * Kt)                                   # (B, M*Kt)
        targets = torch.gather(feats, 1, flat.unsqueeze(-1).expand(B, M * Kt, D))
        targets = targets.reshape(B * M, Kt, D)
    ctx = model.context_encoder(images, ctx_idx)                            # (B, Kc, D)
    ctx = ctx.unsqueeze(1).expand(B, M, *ctx.shape[1:]).reshape(B * M, *ctx.shape[1:])
    idx = ctx_idx.unsqueeze(1).expand(B, M, ctx_idx.size(1)).reshape(B * M, -1)
    pred = model.predictor(ctx, idx, tgt_idx.reshape(B * M, Kt))            # (B*M, Kt, D)
    if model.config.loss == "l2":
        return ((pred - targets) ** 2).mean(), {}
    return F.smooth_l1_loss(pred, targets), {}
