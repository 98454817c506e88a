"""Track exercise, Progress & Compress: the distillation loss of the compress phase.

P&C (``tracks/track_continual/src/track_continual/progress_compress.py``) learns a task in
an active column, then trains the knowledge base (KB) to reproduce the column's outputs on
the task's inputs, with online EWC holding the KB near what it knew. This loss is the
"reproduce" part; the KB is the student, the column the teacher.
"""

from __future__ import annotations

import torch


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean over scored positions of KL(softmax(teacher / T) || softmax(student / T)).

    logits (B, T, V); y (B, T) with y >= 0 at the positions that count.
    1. keep = y >= 0; select both logits at those positions, (N, V), in float32; detach the
       teacher (no gradient reaches the column).
    2. log-softmax of both divided by the temperature.
    3. KL per position: sum_v p_t (log p_t - log p_s); mean over the N positions.
    4. Multiply by temperature ** 2 (Hinton's scaling keeps gradients comparable across T).
    """
    raise NotImplementedError("not implemented yet: distill_loss (P&C's compress loss)")
