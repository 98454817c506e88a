"""Track MoE exercise, sparse upcycling: every expert starts as the dense MLP.

Komatsuzaki et al. (2022) turn a trained dense model into an MoE without losing what it
learned: each MoE layer's experts are copies of the dense layer's MLP, the router is new.
``track_moe.upcycle.upcycle`` (read its module docstring) builds the MoE and calls
``copy_mlp_into_experts`` for every MoE layer; the tests then check that the upcycled model
computes the dense model's logits.

Fill in ``copy_mlp_into_experts``, then run the track's exercise command (README).
"""

from __future__ import annotations


def copy_mlp_into_experts(mlp, moe):
    """Copy a dense week04 SwiGLU ``mlp`` into every routed expert of week08's ``moe``; return ``moe``.

    The dense SwiGLU: ``mlp.fc.weight`` (2I, C), gate rows then up rows; ``mlp.proj.weight``
    (C, I), the down projection. week08's experts (``moe.experts``) stack N of them:
    ``gate_up_proj`` (N, 2I, C) in the same [gate; up] row order, ``down_proj`` (N, C, I).

    1. Check the shapes: ``moe.experts.gate_up_proj.shape[1:]`` must equal ``mlp.fc.weight.shape``;
       otherwise raise ``ValueError`` with "dense width" in the message (the experts must be
       built with ``moe_intermediate_size`` = the dense ``intermediate_size``).
    2. Write the dense matrices into all N experts, in place, under ``torch.no_grad()``
       (``.copy_`` of a broadcast: the parameters stay the same objects, so optimizers and
       hooks keep working).
    """
    raise NotImplementedError("not implemented yet: copy_mlp_into_experts (fc -> gate_up_proj[e], "
                              "proj -> down_proj[e] for every expert e)")
