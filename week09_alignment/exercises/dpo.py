"""Week 09 exercise, the DPO loss: preference learning without a reward model.

Direct Preference Optimization (Rafailov et al. 2023) starts from the KL-regularised RL
objective  max_pi E[r(x, y)] - beta KL(pi || pi_ref), whose optimum is
pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x). Solved for r, the reward is
beta log(pi*/pi_ref) + beta log Z(x); in the Bradley-Terry probability that the chosen
answer y_w beats the rejected y_l, Z(x) cancels, and the loss is a logistic regression on
the *implicit rewards* of the policy being trained. The lesson (section 4) derives it.

Fill in ``dpo_loss``, then run ``make week09-exercises`` (``IMPL=solutions`` runs the worked
one). It replaces ``week09_alignment.dpo.dpo_loss`` while its tests run: TRL's own
``DPOTrainer`` computes the loss on the same pairs with a Hugging Face copy of the model,
and your loss, its gradients and its metrics must equal TRL's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: F401  (F.logsigmoid is what you need)

LOSS_TYPES = ("sigmoid", "ipo", "robust")


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None, sft_weight: float = 0.0,
             chosen_token_logps: torch.Tensor | None = None,
             chosen_token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(mean loss over the B pairs, metrics) from summed completion log-probs, each (B,).

    Log-ratios: c = chosen_logps - ref_chosen_logps, r = rejected_logps - ref_rejected_logps,
    h = c - r.

    - "sigmoid" (DPO): -log sigmoid(beta * h)
    - "ipo" (Azar et al.): (c / n_w - r / n_l - 1 / (2 beta))^2, with n_w, n_l the completion
      token counts ``chosen_tokens`` / ``rejected_tokens`` clamped at 1 (TRL's per-token
      normalisation; a ValueError when they are missing)
    - "robust" (Chowdhury et al., label smoothing e = ``label_smoothing`` in [0, 0.5)):
      ((1 - e) * -log sigmoid(beta h) - e * -log sigmoid(-beta h)) / (1 - 2 e)

    A ValueError for an unknown ``loss_type`` (name the valid ones) or beta <= 0.

    RPO's NLL term (Pang et al. 2024; TRL's ``loss_type=[..., "sft"]``): when
    ``chosen_token_logps`` (B, T-1) and ``chosen_token_mask`` (B, T-1) are given,
    nll = -(the mean of chosen_token_logps over every position the mask marks, one mean
    over all the batch's tokens, not per row); add ``sft_weight * nll`` to the loss and
    log it as metric "nll". ``sft_weight > 0`` without them is a ValueError, as is a
    negative weight.

    Metrics, floats, TRL's names, from the detached implicit rewards beta * c and beta * r:
    "rewards/chosen", "rewards/rejected" (their means), "rewards/accuracies" (the fraction
    of pairs with chosen reward > rejected reward), "rewards/margins" (mean difference),
    "logps/chosen", "logps/rejected" (the mean policy log-probs).
    """
    raise NotImplementedError("not implemented yet: dpo_loss (log-ratios, sigmoid / ipo / "
                              "robust, TRL's reward metrics)")
