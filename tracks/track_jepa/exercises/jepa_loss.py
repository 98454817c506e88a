"""Track JEPA exercise: one I-JEPA loss, the predictor step in representation space.

The model (``track_jepa.ijepa.IJEPA``) has ``context_encoder`` and ``target_encoder`` (both
``ViTEncoder``: ``enc(images, keep=None) -> (B, K or N, D)``) and ``predictor``
(``predictor(ctx (B, Kc, D), ctx_idx (B, Kc), tgt_idx (B, Kt)) -> (B, Kt, D)``: the context
tokens plus one mask token per target patch at that patch's position). ``model.config.loss``
is ``"l2"`` or ``"smooth_l1"``. This function is week03's ``loss_fn``: the Trainer calls it
on each batch. Fill it in, then run ``make trackjepa-exercises``.
"""

from __future__ import annotations

import torch


def jepa_loss(model, batch) -> tuple[torch.Tensor, dict]:
    """batch = (images (B, C, H, W), context (B, Kc), targets (B, M, Kt)) -> (loss, metrics).

    1. Targets, without gradient (``torch.no_grad()``): the target encoder on the whole
       image (B, N, D); ``F.layer_norm`` over the last dimension (no weights); gather each
       image's target patches (``track_jepa.vit.gather_tokens`` takes (B, K) indices) and
       arrange them as (B*M, Kt, D), image b's block m in row b*M + m.
    2. Context: the context encoder on the context patches only, (B, Kc, D); repeat each
       image's row M times (``repeat_interleave``) with its indices, (B*M, Kc, ...).
    3. Predict: ``model.predictor`` on the repeated context and the (B*M, Kt) target indices.
    4. Loss: ``F.mse_loss`` (l2) or ``F.smooth_l1_loss`` between the predictions and the
       targets (mean over every element).

    Metrics may be an empty dict (the package logs ``pred_std`` / ``ctx_std``).
    """
    raise NotImplementedError("not implemented yet: jepa_loss (no-grad layer-normed targets, "
                              "context encoder, predictor over the M blocks, L2)")
