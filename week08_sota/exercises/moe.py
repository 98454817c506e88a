"""Week 08 exercise, Mixture-of-Experts routing: which experts each token uses, and how much.

An MoE layer (``week08_sota/src/week08_sota/moe.py``, read its module docstring) has N
expert MLPs; a router (a linear C -> N) scores every expert for every token, and each token
is sent to only ``k = config.num_experts_per_tok`` of them. The layer's output for a token
is the weighted sum of its k experts' outputs. ``route`` decides the k experts and the
weights; the layer calls it on every forward (``MoE.gating``) and then dispatches.

Fill in ``route`` below, then run ``make week08-exercises`` (``IMPL=solutions`` runs the
worked one). It replaces ``week08_sota.moe.route`` while its tests run: the layer equal to
Hugging Face's ``MixtralSparseMoeBlock`` (softmax gating) and ``DeepseekV3MoE`` (sigmoid
gating, a selection bias, group-limited routing), gradients included, and equal to a
per-token reference loop written the slow, obvious way.
"""

from __future__ import annotations

import torch


def route(logits: torch.Tensor, bias: torch.Tensor, config):
    """logits (S, N) float32, bias (N,) -> (weights (S, k), idx (S, k), probs (S, N)).

    What ``config`` (a ``SotaConfig``) tells you: ``num_experts_per_tok`` (k),
    ``gating`` ("softmax" or "sigmoid"), ``norm_topk_prob``, ``routed_scaling_factor``,
    ``n_group`` and ``topk_group``.

    1. Scores: ``softmax(logits)`` over the N experts for ``"softmax"`` (Mixtral), or
       ``sigmoid(logits)`` for ``"sigmoid"`` (DeepSeek-V3). ``probs`` (returned for the
       balance loss) is the softmax itself, or the sigmoid scores divided by their sum
       over the N experts of each row.
    2. Choice scores: scores + bias. The bias (the auxiliary-loss-free balancer's) only
       changes *which* experts are chosen, never their weights.
    3. Group limit, only when ``n_group > 1``: split the N experts into ``n_group``
       consecutive groups of N // n_group; a group's score is the sum of its two best
       choice scores (its best one if a group holds one expert); only the experts of the
       ``topk_group`` best groups may be chosen (set the others' choice to -inf).
    4. ``idx``: the k experts with the highest choice scores (``torch.topk``; any order).
    5. ``weights``: the *scores* (not the choice scores) of those experts; when
       ``norm_topk_prob``, divide by their sum (+ 1e-20, as Hugging Face's DeepSeek-V3);
       finally multiply by ``routed_scaling_factor``. Keep them differentiable: the
       router learns through them.
    """
    raise NotImplementedError("not implemented yet: route (scores, + bias for the choice, "
                              "group limit, top-k, weights from the un-biased scores)")
