"""Worked solutions: GRPO's group advantages and its clipped loss (see ../grpo.py)."""

from __future__ import annotations

import torch

from week09_alignment.grpo import GRPOConfig

SCALES = ("group", "batch", "none")
STD_EPS = 1e-4  # TRL adds it to the std before dividing


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """(N,) advantages of (N,) rewards laid out group after group (N = prompts * G).

    Worked example (the test): rewards [1, 0, 0, 1 | 1, 1, 1, 0], G = 4. Group
    means 0.5 and 0.75; Bessel stds sqrt(1/3) = 0.5774 and 0.5; so "group" gives
    [0.866, -0.866, -0.866, 0.866, 0.5, 0.5, 0.5, -1.5] (each / (std + 1e-4)).
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (N,) with N a multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} unknown; valid: {', '.join(SCALES)}")
    r = rewards.float().view(-1, group_size)  # (P, G)
    adv = (r - r.mean(dim=1, keepdim=True)).flatten()  # (N,)
    if scale == "group":
        std = r.std(dim=1, keepdim=True).expand_as(r).flatten()  # (N,) unbiased
    elif scale == "batch":
        std = rewards.float().std().expand_as(adv)  # (N,)
    else:
        return adv
    return adv / (std + STD_EPS)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, ref_logps: torch.Tensor | None = None,
              cfg: GRPOConfig | None = None, num_items: float | torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict]:
    """(scalar loss, metrics) from (N, Tc) per-completion-token log-probs (see the module doc).

    ``mask`` is 1 on the completion tokens that train (completion mask times
    tool mask); ``num_items`` is dapo's normalizer, the number of such tokens in
    the whole generation batch (default: ``mask.sum()``).
    """
    cfg = cfg or GRPOConfig()
    if not (logps.shape == old_logps.shape == mask.shape) or logps.dim() != 2:
        raise ValueError(f"logps, old_logps and mask must be (N, Tc) of one shape, got "
                         f"{tuple(logps.shape)}, {tuple(old_logps.shape)}, {tuple(mask.shape)}")
    if cfg.beta > 0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps (the reference model's log-probs)")
    mask = mask.to(logps.dtype)
    adv = advantages.to(logps.dtype)
    adv = adv[:, None] if adv.dim() == 1 else adv  # (N, 1)
    ratio = torch.exp(logps - old_logps)  # (N, Tc)
    clipped = torch.clamp(ratio, 1 - cfg.epsilon, 1 + cfg.eps_high)  # (N, Tc)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (N, Tc)
    kl = None
    if cfg.beta > 0:
        d = ref_logps - logps  # (N, Tc)
        kl = torch.exp(d) - d - 1  # (N, Tc) k3 estimator, an estimate under pi_old's samples
        if cfg.kl_ratio_correction:  # importance-weight it to pi's: unbiased when mu > 1
            kl = kl * ratio
        per_token = per_token + cfg.beta * kl
    masked = per_token * mask  # (N, Tc)
    if cfg.loss_type == "grpo":
        loss = (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif cfg.loss_type == "bnpo":
        loss = masked.sum() / mask.sum().clamp(min=1.0)
    elif cfg.loss_type == "dr_grpo":
        loss = masked.sum() / (logps.size(0) * cfg.max_new_tokens)
    else:  # dapo
        n = mask.sum() if num_items is None else torch.as_tensor(num_items, dtype=logps.dtype)
        loss = masked.sum() / n.clamp(min=1.0)

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1.0)
        low = ((ratio < 1 - cfg.epsilon) & (adv < 0)).to(mask.dtype)
        high = ((ratio > 1 + cfg.eps_high) & (adv > 0)).to(mask.dtype)
        metrics = {"clip_ratio": float(((low + high).clamp(max=1) * mask).sum() / tokens),
                   "clip_low": float((low * mask).sum() / tokens),
                   "clip_high": float((high * mask).sum() / tokens),
                   "ratio_mean": float((ratio * mask).sum() / tokens)}
        if kl is not None:
            metrics["kl"] = float((kl * mask).sum() / tokens)
    return loss, metrics
