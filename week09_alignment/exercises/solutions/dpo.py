"""Worked solution: the DPO loss and its variants (see ../dpo.py for the exercise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "ipo", "robust")


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None, sft_weight: float = 0.0,
             chosen_token_logps: torch.Tensor | None = None,
             chosen_token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(mean loss, metrics) from summed completion log-probs, each (B,).

    With h = log(pi(y_w)/pi_ref(y_w)) - log(pi(y_l)/pi_ref(y_l)) (chosen y_w, rejected y_l):

    - sigmoid (DPO eq. 7): Bradley-Terry on the implicit rewards: -log sigmoid(beta * h);
    - ipo (IPO eq. 17): regress the per-token h onto 1/(2 tau), tau = beta:
      (h_w / n_w - h_l / n_l - 1 / (2 beta))^2 with n the completion token counts
      (``chosen_tokens``, ``rejected_tokens``; TRL's normalisation, clamped at 1);
    - robust (Chowdhury et al. eq. 8): the unbiased loss under labels flipped with
      rate e: ((1 - e) * -log s(beta h) - e * -log s(-beta h)) / (1 - 2e).

    ``sft_weight`` alpha > 0 adds RPO's NLL term (Pang et al. 2024; TRL's
    ``loss_type=[..., "sft"]``, ``loss_weights=[1, alpha]``): alpha times minus the
    mean log-prob over every chosen completion token of the batch (one mean over
    tokens, not per row), from ``chosen_token_logps`` (B, T-1) where
    ``chosen_token_mask`` (B, T-1) is 1; logged as ``nll`` whenever those are given.

    Metrics (TRL's names, floats): rewards/chosen and rewards/rejected are the mean
    implicit rewards beta * log-ratio; rewards/accuracies the fraction with
    chosen reward > rejected reward; rewards/margins their mean difference;
    logps/chosen, logps/rejected the mean policy log-probs.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} unknown; valid: {', '.join(LOSS_TYPES)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {t.shape for t in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1 or chosen_logps.dim() != 1:
        raise ValueError(f"the four log-prob tensors must all be (B,), got shapes {sorted(shapes)}")
    chosen_ratio = chosen_logps - ref_chosen_logps  # (B,)
    rejected_ratio = rejected_logps - ref_rejected_logps  # (B,)
    h = chosen_ratio - rejected_ratio  # (B,)
    if loss_type == "sigmoid":
        per_pair = -F.logsigmoid(beta * h)  # (B,)
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("loss_type 'ipo' needs chosen_tokens and rejected_tokens "
                             "(the completion token counts, (B,))")
        n_w = chosen_tokens.to(h.dtype).clamp(min=1.0)  # (B,)
        n_l = rejected_tokens.to(h.dtype).clamp(min=1.0)  # (B,)
        per_pair = (chosen_ratio / n_w - rejected_ratio / n_l - 1.0 / (2.0 * beta)) ** 2
    else:
        e = label_smoothing
        if not 0.0 <= e < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5) for 'robust', got {e}")
        per_pair = (-(1 - e) * F.logsigmoid(beta * h) + e * F.logsigmoid(-beta * h)) / (1 - 2 * e)
    loss = per_pair.mean()
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be >= 0, got {sft_weight}")
    if sft_weight > 0 and (chosen_token_logps is None or chosen_token_mask is None):
        raise ValueError("sft_weight > 0 needs chosen_token_logps and chosen_token_mask "
                         "(the chosen rows' per-token log-probs and completion mask, (B, T-1))")
    nll = None
    if chosen_token_logps is not None and chosen_token_mask is not None:
        if chosen_token_logps.shape != chosen_token_mask.shape or len(chosen_token_logps) != len(h):
            raise ValueError(f"chosen_token_logps {tuple(chosen_token_logps.shape)} and "
                             f"chosen_token_mask {tuple(chosen_token_mask.shape)} must both be "
                             f"(B={len(h)}, T-1)")
        nll = -chosen_token_logps[chosen_token_mask.bool()].mean()  # scalar: over all tokens
        if sft_weight > 0:
            loss = loss + sft_weight * nll
    chosen_rewards = beta * chosen_ratio.detach()  # (B,)
    rejected_rewards = beta * rejected_ratio.detach()  # (B,)
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": chosen_logps.detach().mean().item(),
        "logps/rejected": rejected_logps.detach().mean().item(),
    }
    if nll is not None:
        metrics["nll"] = nll.item()
    return loss, metrics
