"""Worked solution: Progress & Compress's distillation loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    keep = y >= 0
    log_s = F.log_softmax(student_logits[keep].float() / temperature, dim=-1)  # (N, V)
    log_t = F.log_softmax(teacher_logits[keep].detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_s, log_t, log_target=True, reduction="none").sum(-1)  # (N,)
    return kl.mean() * temperature ** 2
