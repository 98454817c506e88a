"""Week 03 exercises, the optimizer: one AdamW step over a parameter group.

Fill in ``adamw_group_step`` below, then run ``make week03-exercises`` (``IMPL=solutions``
runs the worked one). It replaces ``week03_training.optim.adamw_group_step``, the function
``AdamW.step`` calls once per parameter group (and ``Muon`` calls for its non-matrix
groups), while its tests run. The tests start ``torch.optim.AdamW`` and ours from the same
float32 tensors and compare every parameter after 100 steps to within 1e-6, with and without
weight decay, for four sets of hyperparameters; then a state_dict round trip half way must
continue bit-identically, and in the Trainer under bf16 autocast the moments must stay fp32.

What you get: ``opt`` is the optimizer (``opt.state[p]`` is a dict per parameter, empty the
first time, saved by ``opt.state_dict()``); ``group`` is one of ``opt.param_groups``, a dict
with ``params`` (a list of tensors), ``lr``, ``betas`` (beta1, beta2), ``eps``,
``weight_decay`` and ``foreach``. ``AdamW.step`` already runs this under ``torch.no_grad()``,
so in-place updates of the parameters are allowed.
"""

import torch


def adamw_group_step(opt: torch.optim.Optimizer, group: dict) -> None:
    """One AdamW step for every parameter of ``group`` whose ``p.grad`` is not None.

    Skip parameters without a gradient; a sparse gradient is a RuntimeError. State, made
    on first use in ``opt.state[p]`` under exactly these names (torch's; state_dicts
    and the tests read them):

    - ``"step"``: ``torch.tensor(0.0)``, a float tensor (``state["step"].item()`` is read back);
    - ``"exp_avg"``, ``"exp_avg_sq"``: ``torch.zeros_like(p)`` (same shape, dtype and device
      as ``p``, so fp32 weights keep fp32 moments even when the forward pass ran in bf16).

    Then, per parameter, with ``g = p.grad`` (shaped like ``p``) and ``t`` the step count
    after adding 1 (1-based)::

        p <- p * (1 - lr * weight_decay)                 decoupled decay, before the update
        m <- beta1 * m + (1 - beta1) * g                 m.lerp_(g, 1 - beta1)
        v <- beta2 * v + (1 - beta2) * g * g             v.mul_(beta2).addcmul_(g, g, ...)
        p <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    torch writes the last line as ``denom = v.sqrt() / math.sqrt(1 - beta2**t) + eps`` (a
    new tensor; ``m`` and ``v`` themselves stay uncorrected), then
    ``p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))``; the textbook form with
    ``m_hat = m / (1 - beta1**t)`` and ``v_hat = v / (1 - beta2**t)`` also stays within the
    tests' 1e-6, as long as the stored moments are not overwritten. The decay is *decoupled*: it
    shrinks ``p`` directly instead of being added to ``g``, so Adam's per-coordinate scaling
    does not weaken it. ``group["foreach"]`` asks for ``torch._foreach_*`` kernels over the
    whole group; a plain loop gives the same numbers, which is all the tests check.
    """
    raise NotImplementedError("not implemented yet: adamw_group_step (state on first use, "
                              "decoupled decay, two moments, bias-corrected update; see its "
                              "docstring)")
