"""Week 09 exercises, GRPO: advantages from a group, and the clipped policy loss.

GRPO (DeepSeekMath, arXiv:2402.03300) samples G completions per prompt, scores each with a
verifier, and uses the reward relative to its own group as the advantage of every token of
that completion: no value network. The update is PPO's clipped surrogate on the per-token
importance ratio, optionally with a KL penalty to a reference model (the k3 estimator).

Fill in ``group_advantages`` and ``grpo_loss``, then run ``make week09-exercises``
(``IMPL=solutions`` runs the worked ones). They replace the package's functions while its
tests run: TRL's own ``GRPOTrainer._compute_loss`` on the same tokens, advantages and
masks, for each aggregation, with and without the KL term; and a bandit whose expected
reward must rise through week03's Trainer.
"""

from __future__ import annotations

import torch

from week09_alignment.grpo import GRPOConfig

SCALES = ("group", "batch", "none")
STD_EPS = 1e-4  # TRL adds it to the std before dividing


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """(N,) advantages of (N,) rewards laid out group after group (N = prompts * G).

    adv = r - (the mean of r's group); then divided by (std + STD_EPS) where std is the
    group's (``scale="group"``), the whole batch's (``"batch"``) or not at all (``"none"``).
    Stds are Bessel-corrected (``torch.std``'s default, TRL's). ValueErrors for rewards
    that are not (N,) with N a multiple of ``group_size`` and for an unknown ``scale``.

    Worked example: rewards [1, 0, 0, 1 | 1, 1, 1, 0], G = 4: group means 0.5 and 0.75,
    stds 0.5774 and 0.5, so "group" gives [0.866, -0.866, -0.866, 0.866, 0.5, 0.5, 0.5, -1.5].
    """
    raise NotImplementedError("not implemented yet: group_advantages (r - group mean, / std)")


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, ref_logps: torch.Tensor | None = None,
              cfg: GRPOConfig | None = None, num_items: float | torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict]:
    """(scalar loss, metrics) from (N, Tc) per-completion-token log-probs.

    ``mask`` (N, Tc) is 1 on tokens that train (completion tokens the model sampled itself;
    padding and tool outputs are 0). ``advantages`` is (N,) (or already (N, Tc)).

    1. ratio = exp(logps - old_logps); clipped = clamp(ratio, 1 - cfg.epsilon, 1 + cfg.eps_high)
    2. per_token = -min(ratio * A, clipped * A)
    3. if cfg.beta > 0 (ref_logps required, else ValueError): d = ref_logps - logps,
       kl = exp(d) - d - 1 (the k3 estimator); times ratio when cfg.kl_ratio_correction;
       per_token += cfg.beta * kl
    4. aggregate masked per_token by cfg.loss_type:
       "grpo": each sequence's masked mean (its token count clamped at 1), then the mean;
       "bnpo": sum over every masked token / their count (clamped at 1);
       "dr_grpo": sum / (N * cfg.max_new_tokens);
       "dapo": sum / num_items (default: mask.sum()), clamped at 1.

    Metrics (floats, over masked tokens): "clip_ratio" (fraction clipped: ratio below
    1 - epsilon with A < 0, or above 1 + eps_high with A > 0), "clip_low", "clip_high",
    "ratio_mean", and "kl" (its masked mean) when beta > 0. ValueError when logps,
    old_logps and mask are not (N, Tc) of one shape.
    """
    raise NotImplementedError("not implemented yet: grpo_loss (ratio, clip, k3 KL, the four "
                              "aggregations)")
