"""Optimizers written from scratch: AdamW and Muon (with an AdamW side for the rest).

``AdamW`` is Loshchilov & Hutter's Adam with *decoupled* weight decay: the
decay shrinks the weights directly (``p -= lr * wd * p``) instead of being
added to the gradient, so it is not rescaled by Adam's per-coordinate step
size. Moments are bias-corrected. It follows the same order of operations as
``torch.optim.AdamW`` so the two agree to float rounding (the tests check 1e-6).

``Muon`` (Jordan et al., 2024) keeps a momentum buffer per 2-D weight matrix
and replaces the update by its nearest semi-orthogonal matrix, computed with a
few steps of a quintic Newton-Schulz iteration (``newton_schulz``): every
direction of the update gets the same step size, whatever the gradient's
spectrum. It only makes sense for the hidden matrices of a network; the
embeddings, the output head, norms and biases go to AdamW. One optimizer
object handles both: each parameter group says ``use_muon=True`` or not, and
``muon_param_groups(model)`` builds the groups for a model.

``build_optimizer(model, cfg, params=None)`` is what week03's Trainer calls:
the optimizer ``cfg.optimizer`` names over every trainable parameter, or over
``params`` (a list of parameters, or of parameter-group dicts) when only part
of the model trains (LoRA adapters, a router).

Left out: AMSGrad, ``maximize``, complex parameters, capturable/CUDA-graph
state, and the distributed (sharded) Muon of the speedrun repositories.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["AdamW", "Muon", "newton_schulz", "muon_param_groups", "build_optimizer", "clip_grad_norm",
           "grad_norm", "NS_COEFFS"]

# ----------------------------------------------------------------------------- AdamW


class AdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay and bias correction.

    Per parameter ``p`` with gradient ``g`` at step ``t`` (1-based)::

        p  <- p * (1 - lr * weight_decay)          # decoupled decay
        m  <- beta1 * m + (1 - beta1) * g           # first moment
        v  <- beta2 * v + (1 - beta2) * g^2         # second moment
        p  <- p - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

    ``foreach=True`` runs the same maths with ``torch._foreach_*`` kernels over
    the whole group (fewer kernel launches, same numbers).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, foreach: bool = False):
        if lr < 0:
            raise ValueError(f"AdamW: lr must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"AdamW: eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        foreach=foreach)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            adamw_group_step(self, group)
        return loss


def _closure_loss(closure) -> torch.Tensor | None:
    """``closure()`` with gradients enabled (``step`` itself runs without), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def _adamw_state(opt: torch.optim.Optimizer, p: torch.Tensor) -> dict:
    state = opt.state[p]
    if not state:
        # step lives in a float tensor like torch's, so state_dicts look alike
        state["step"] = torch.tensor(0.0)
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state


def adamw_group_step(opt: torch.optim.Optimizer, group: dict) -> None:
    """One AdamW step for every parameter of ``group`` that has a gradient."""
    lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
    params = [p for p in group["params"] if p.grad is not None]
    if not params:
        return
    for p in params:
        if p.grad.is_sparse:
            raise RuntimeError("AdamW does not support sparse gradients")
    states = [_adamw_state(opt, p) for p in params]
    for s in states:
        s["step"] += 1
    if group.get("foreach", False):
        _adamw_foreach(params, states, lr, beta1, beta2, eps, wd)
        return
    for p, s in zip(params, states):
        g, m, v = p.grad, s["exp_avg"], s["exp_avg_sq"]
        t = s["step"].item()
        p.mul_(1 - lr * wd)
        m.lerp_(g, 1 - beta1)                        # m = b1*m + (1-b1)*g
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias1 = 1 - beta1**t
        bias2 = 1 - beta2**t
        denom = (v.sqrt() / math.sqrt(bias2)).add_(eps)
        p.addcdiv_(m, denom, value=-lr / bias1)


def _adamw_foreach(params, states, lr, beta1, beta2, eps, wd) -> None:
    grads = [p.grad for p in params]
    ms = [s["exp_avg"] for s in states]
    vs = [s["exp_avg_sq"] for s in states]
    torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_lerp_(ms, grads, 1 - beta1)
    torch._foreach_mul_(vs, beta2)
    torch._foreach_addcmul_(vs, grads, grads, value=1 - beta2)
    # parameters of one group may have different step counts (added mid-run): go per tensor
    steps = [s["step"].item() for s in states]
    denom = torch._foreach_sqrt(vs)
    torch._foreach_div_(denom, [math.sqrt(1 - beta2**t) for t in steps])
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, ms, denom, [-lr / (1 - beta1**t) for t in steps])


# ----------------------------------------------------------------------------- Newton-Schulz

# Quintic coefficients of Keller Jordan's Muon: they push every singular value
# into roughly [0.7, 1.2] in 5 steps (fast, not exact). The "exact" set below
# is the classic order-5 Newton-Schulz polynomial (15x - 10x^3 + 3x^5) / 8,
# which converges to exactly 1 but needs more steps from small singular values.
NS_COEFFS = {"muon": (3.4445, -4.7750, 2.0315), "exact": (15 / 8, -10 / 8, 3 / 8)}


def newton_schulz(G: torch.Tensor, steps: int = 5, coeffs: str | tuple = "muon",
                  eps: float = 1e-7, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Approximate the orthogonal polar factor ``U V^T`` of ``G = U S V^T``.

    Each step maps ``X -> a X + b (X X^T) X + c (X X^T)^2 X``, which applies the
    odd polynomial ``p(s) = a s + b s^3 + c s^5`` to every singular value and
    leaves the singular vectors alone. Normalising ``G`` by its Frobenius norm
    first puts all singular values in (0, 1], where repeated ``p`` drives them
    towards 1. ``G`` may be (..., m, n); the wide orientation is used inside so
    ``X X^T`` is the smaller Gram matrix. ``dtype`` is the compute dtype
    (bf16 on GPUs is the usual choice; the default keeps ``G``'s dtype).
    """
    if G.ndim < 2:
        raise ValueError(f"newton_schulz needs a matrix (..., m, n), got shape {tuple(G.shape)}")
    a, b, c = NS_COEFFS[coeffs] if isinstance(coeffs, str) else coeffs
    X = G.to(dtype) if dtype is not None else G.clone()
    tall = X.size(-2) > X.size(-1)
    if tall:
        X = X.mT                                            # (..., n, m) with n < m
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)      # singular values <= 1
    for _ in range(steps):
        A = X @ X.mT                                        # (..., r, r), r = min(m, n)
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if tall:
        X = X.mT
    return X.to(G.dtype)


# ----------------------------------------------------------------------------- Muon


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalised updates for 2-D weights; AdamW for the other groups.

    A group with ``use_muon=True`` (every parameter a matrix) gets::

        buf <- momentum * buf + g
        u   <- g + momentum * buf   (nesterov)   or   buf
        p   <- p * (1 - lr * weight_decay) - lr * sqrt(max(1, m / n)) * NS(u)

    The ``sqrt(max(1, m/n))`` factor keeps the per-entry update size similar
    for tall matrices. Any other group is stepped with AdamW (``betas``,
    ``eps``, ``weight_decay`` from that group). Build the groups with
    ``muon_param_groups``; passing a bare parameter list makes every 2-D
    parameter Muon and the rest AdamW.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, weight_decay: float = 0.0, adamw_lr: float = 3e-3,
                 adamw_betas: tuple[float, float] = (0.9, 0.95), adamw_eps: float = 1e-8,
                 adamw_weight_decay: float = 0.0, ns_dtype: torch.dtype | None = None):
        if lr < 0 or not 0.0 <= momentum < 1.0 or ns_steps < 1:
            raise ValueError(f"Muon: need lr >= 0, 0 <= momentum < 1, ns_steps >= 1; got "
                             f"lr={lr}, momentum={momentum}, ns_steps={ns_steps}")
        params = list(params)
        if params and not isinstance(params[0], dict):   # bare list: split by shape
            params = [{"params": [p for p in params if p.ndim == 2], "use_muon": True},
                      {"params": [p for p in params if p.ndim != 2], "use_muon": False}]
            params = [g for g in params if g["params"]]
        groups = []
        for g in params:
            g = dict(g)
            muon = g.setdefault("use_muon", False)
            if muon:
                bad = [tuple(p.shape) for p in g["params"] if p.ndim != 2]
                if bad:
                    raise ValueError(f"Muon groups take 2-D weights only, got shapes {bad}; "
                                     "put them in a use_muon=False (AdamW) group")
            else:  # AdamW side: its own defaults
                g.setdefault("lr", adamw_lr)
                g.setdefault("betas", tuple(adamw_betas))
                g.setdefault("eps", adamw_eps)
                g.setdefault("weight_decay", adamw_weight_decay)
            groups.append(g)
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps,
                        weight_decay=weight_decay, use_muon=True)
        self.ns_dtype = ns_dtype
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = _closure_loss(closure)
        for group in self.param_groups:
            if not group["use_muon"]:
                adamw_group_step(self, group)
                continue
            lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(g)
                u = g.add(buf, alpha=mu) if group["nesterov"] else buf
                o = self.orthogonalize(u, group)                             # (m, n)
                scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                p.mul_(1 - lr * wd)
                p.add_(o, alpha=-lr * scale)
        return loss

    def orthogonalize(self, u: torch.Tensor, group: dict) -> torch.Tensor:
        """NS(u) for one matrix update; week11 overrides it for sharded (DTensor) matrices."""
        return newton_schulz(u, steps=group["ns_steps"], dtype=self.ns_dtype)


# ----------------------------------------------------------------------------- groups


def muon_param_groups(model: nn.Module, lr: float = 0.02, adamw_lr: float = 3e-3,
                      weight_decay: float = 0.0, adamw_weight_decay: float = 0.0,
                      head_names: Iterable[str] = ("lm_head", "head", "output", "unembed"),
                      ) -> list[dict]:
    """Split ``model``'s parameters into a Muon group and AdamW groups.

    Muon gets the weight of every ``nn.Linear`` inside the network. AdamW gets:
    embeddings (``nn.Embedding``), the output head (a Linear whose name ends in
    one of ``head_names``, or whose output size is ``model.vocab_size``, or
    whose weight is tied to an embedding), norms, biases and anything not 2-D.
    Returns ``[muon, adamw_matrices, adamw_no_decay]``: decay applies to the
    embedding/head matrices, not to norms and biases. Empty groups are dropped.
    """
    vocab = getattr(model, "vocab_size", None) or getattr(getattr(model, "config", None),
                                                          "vocab_size", None)
    embed_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    muon, adam_2d, adam_rest, seen = [], [], [], set()
    linear_weights = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            linear_weights[id(mod.weight)] = (name, mod)
    for name, p in model.named_parameters():       # tied parameters are listed once
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in linear_weights:
            lname, mod = linear_weights[id(p)]
            is_head = (lname.split(".")[-1] in head_names or id(p) in embed_ids
                       or (vocab is not None and mod.out_features == vocab))
            (adam_2d if is_head else muon).append(p)
        elif id(p) in embed_ids or (p.ndim == 2 and "emb" in name):
            adam_2d.append(p)
        else:
            adam_rest.append(p)
    groups = [
        {"params": muon, "use_muon": True, "lr": lr, "weight_decay": weight_decay},
        {"params": adam_2d, "use_muon": False, "lr": adamw_lr, "weight_decay": adamw_weight_decay},
        {"params": adam_rest, "use_muon": False, "lr": adamw_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------------------------- clipping


def clip_grad_norm(params, max_norm: float) -> torch.Tensor:
    """Scale all gradients so their joint L2 norm is at most ``max_norm``; return the norm.

    The norm is taken over every gradient as one long vector. Like
    ``torch.nn.utils.clip_grad_norm_`` the scale is ``min(1, max_norm / (norm + 1e-6))``.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norms = torch.stack([g.detach().norm(2.0).float() for g in grads])   # (n_params,)
    total = norms.norm(2.0)
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.detach().mul_(scale.to(g.dtype))
    return total


def grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.tensor(0.0)


# ----------------------------------------------------------------------------- from a TrainConfig


def _checked_params(model: nn.Module, params) -> list:
    """``params`` as a list (of tensors or of group dicts), checked against ``model``."""
    params = list(params)
    if not params:
        raise ValueError("params= is empty: nothing to train")
    groups = params if isinstance(params[0], dict) else [{"params": params}]
    if not all(isinstance(g, dict) and "params" in g for g in groups):
        raise TypeError("params= must be a list of parameters or a list of param-group dicts "
                        "(each with a 'params' key), not a mix")
    owned = {id(p) for p in model.parameters()}
    seen: set[int] = set()
    for g in groups:
        g["params"] = list(g["params"])
        for p in g["params"]:
            if id(p) not in owned:
                raise ValueError(f"params= holds a tensor of shape {tuple(p.shape)} that is not a "
                                 "parameter of the model")
            if not p.requires_grad:
                raise ValueError(f"params= holds a parameter of shape {tuple(p.shape)} with "
                                 "requires_grad=False: it would never train")
            if id(p) in seen:
                raise ValueError("params= lists a parameter twice")
            seen.add(id(p))
    return params


def build_optimizer(model: nn.Module, cfg, params=None) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names (a week03 ``TrainConfig``), decaying matrices only.

    ``params=None`` trains every parameter with ``requires_grad``. A list of
    parameters trains those: weight decay still goes to the matrices only,
    and with Muon they keep the groups ``muon_param_groups(model)`` gives them.
    A list of group dicts is used as given (missing ``lr``, ``weight_decay``...
    come from ``cfg``; for Muon, mark matrix groups ``use_muon=True``).
    """
    if params is not None:
        params = _checked_params(model, params)
        if isinstance(params[0], dict):
            return _from_groups(params, cfg)
    if cfg.optimizer == "muon":
        groups = muon_param_groups(model, lr=cfg.muon_lr, adamw_lr=cfg.lr,
                                   weight_decay=0.0, adamw_weight_decay=cfg.weight_decay)
        if params is not None:
            chosen = {id(p) for p in params}
            groups = [{**g, "params": [p for p in g["params"] if id(p) in chosen]} for g in groups]
            groups = [g for g in groups if g["params"]]
        return Muon(groups, lr=cfg.muon_lr, adamw_betas=cfg.betas, adamw_eps=cfg.eps)
    if params is None:
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no parameter with requires_grad: nothing to train")
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return _from_groups([g for g in groups if g["params"]], cfg)


def _from_groups(groups: list[dict], cfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "muon":
        return Muon(groups, lr=cfg.muon_lr, weight_decay=0.0, adamw_lr=cfg.lr,
                    adamw_betas=cfg.betas, adamw_eps=cfg.eps, adamw_weight_decay=cfg.weight_decay)
    kind = torch.optim.AdamW if cfg.optimizer == "torch-adamw" else AdamW
    return kind(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
