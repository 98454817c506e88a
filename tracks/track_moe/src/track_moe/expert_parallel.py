"""Expert parallelism: week08's MoE with its routed experts sharded over processes.

With W ranks and N routed experts, rank r holds experts ``r * N/W .. (r+1) * N/W - 1`` (a
slice of week08's ``experts.gate_up_proj`` (N, 2I, C) and ``down_proj`` (N, C, I)); the
router and the shared experts are replicated. Each rank brings its own tokens. Per forward:

1. route (week08's ``route``, looked up at call time): weights (S, k), idx (S, k);
2. ``dispatch_plan``: the S*k (token, expert) pairs sorted stably by expert, so the pairs
   bound for rank 0 come first, then rank 1, ...; ``send_counts`` (W,) pairs per rank and
   ``expert_counts`` (N,) pairs per expert;
3. the per-expert counts are exchanged (one ``all_to_all_single`` of N integers): each rank
   learns how many rows every source sends to each of its local experts;
4. the rows travel (``all_to_all_single`` with uneven splits, differentiable: its backward
   is the reverse exchange), each local expert runs on its rows (week08's ``expert_mix`` with
   k = 1 and weight 1: the grouped-matmul dispatch), and the outputs travel back;
5. the outputs times their router weights are added to their tokens (``index_add_``).

gloo in torch 2.13 has ``all_to_all_single`` with uneven splits on the CPU (checked: see the
track README), so no point-to-point fallback is needed; NCCL has it on GPUs.

Balancing across ranks: ``load`` is the global pairs per expert (an all-reduce), so week08's
``balance_bias_hook`` moves every rank's replicated bias identically; ``aux`` holds this
rank's share of the global Switch loss and z-loss (f from the global load, P summed over
this rank's tokens / the global token count): the shares sum over ranks to the
single-process values, and each share's gradient reaches this rank's tokens only.

Left out: capacity limits (a capacity needs the global per-expert order of pairs),
overlapping the exchange with compute, hierarchical (node-local) all-to-all, and expert
data parallelism (replicas of one expert on several ranks).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

import week08_sota.moe as w8moe
from week08_sota.dispatch import expert_mix
from week08_sota.moe import MoE, moe_layers

__all__ = ["DispatchPlan", "dispatch_plan", "all_to_all", "ExpertParallelMoE", "shard_experts",
           "expert_slice"]


# ---------------------------------------------------------------- the plan


@dataclass
class DispatchPlan:
    """Where the S*k pairs of one forward go. Pair p is token p // k's (p % k)-th choice.

    order (P,): pair ids sorted stably by expert; tokens (P,): the token of each sorted pair;
    expert_counts (N,): pairs per expert; send_counts (W,): pairs per destination rank.
    """

    order: torch.Tensor
    tokens: torch.Tensor
    expert_counts: torch.Tensor
    send_counts: torch.Tensor


def dispatch_plan(idx: torch.Tensor, n_experts: int, world_size: int) -> DispatchPlan:
    """The token permutation for all-to-all: idx (S, k) chosen experts -> ``DispatchPlan``.

    Experts are split into ``world_size`` equal consecutive blocks (rank r owns block r), so
    sorting the pairs by expert also groups them by destination rank.
    """
    k = idx.size(1)
    flat = idx.reshape(-1)                                        # (S*k,) token-major
    order = torch.argsort(flat, stable=True)                      # (P,)
    expert_counts = torch.bincount(flat, minlength=n_experts)     # (N,)
    send_counts = expert_counts.view(world_size, -1).sum(1)       # (W,)
    return DispatchPlan(order, order // k, expert_counts, send_counts)


def expert_slice(n_experts: int, rank: int, world_size: int) -> slice:
    """The experts rank ``rank`` owns."""
    if n_experts % world_size:
        raise ValueError(f"{n_experts} experts do not split evenly over {world_size} ranks")
    n = n_experts // world_size
    return slice(rank * n, (rank + 1) * n)


# ---------------------------------------------------------------- the exchange


class _AllToAll(torch.autograd.Function):
    """rows (sum(in_splits), C) -> (sum(out_splits), C); backward: the reverse exchange."""

    @staticmethod
    def forward(ctx, x, out_splits, in_splits, group):
        ctx.splits, ctx.group = (out_splits, in_splits), group
        out = x.new_empty(sum(out_splits), *x.shape[1:])
        dist.all_to_all_single(out, x.contiguous(), out_splits, in_splits, group=group)
        return out

    @staticmethod
    def backward(ctx, grad):
        out_splits, in_splits = ctx.splits
        gx = grad.new_empty(sum(in_splits), *grad.shape[1:])
        dist.all_to_all_single(gx, grad.contiguous(), in_splits, out_splits, group=ctx.group)
        return gx, None, None, None


def all_to_all(x: torch.Tensor, out_splits: list[int], in_splits: list[int], group=None):
    """Differentiable uneven all-to-all of rows; the identity without a process group."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return x
    return _AllToAll.apply(x, list(out_splits), list(in_splits), group)


def _exchange_counts(counts: torch.Tensor, group) -> torch.Tensor:
    """counts (N,) this rank sends per expert -> (W, N/W): what each source sends to my experts."""
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    if world == 1:
        return counts.view(1, -1)
    out = torch.empty_like(counts)
    dist.all_to_all_single(out, counts, group=group)    # block r of counts goes to rank r
    return out.view(world, -1)


def _all_sum(t: torch.Tensor, group) -> torch.Tensor:
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        t = t.clone()
        dist.all_reduce(t, group=group)
    return t


# ---------------------------------------------------------------- the layer


class ExpertParallelMoE(MoE):
    """week08's ``MoE`` whose ``experts`` are this rank's slice; same forward contract.

    Build it with ``from_moe(moe, rank, world_size)`` (a copy of the single-process layer's
    weights: router and shared experts whole, routed experts sliced). Every rank must call
    ``forward`` the same number of times (each call is a collective).
    """

    def __init__(self, config, layer_idx: int = 0, rank: int = 0, world_size: int = 1,
                 group=None):
        super().__init__(config, layer_idx)
        self.rank, self.world_size, self.group = rank, world_size, group
        self.local = expert_slice(config.n_routed_experts, rank, world_size)
        n = self.local.stop - self.local.start
        C, I = config.n_embd, config.moe_intermediate_size
        self.experts = w8moe.Experts(n, C, I)           # (n, 2I, C), (n, C, I)

    @classmethod
    @torch.no_grad()
    def from_moe(cls, moe: MoE, rank: int, world_size: int, group=None) -> ExpertParallelMoE:
        ep = cls(moe.config, moe.layer_idx, rank, world_size, group)
        ep.gate.load_state_dict(moe.gate.state_dict())
        if moe.shared_experts is not None:
            ep.shared_experts = copy.deepcopy(moe.shared_experts)
        ep.experts.gate_up_proj.copy_(moe.experts.gate_up_proj[ep.local])
        ep.experts.down_proj.copy_(moe.experts.down_proj[ep.local])
        ep.grouped = moe.grouped
        return ep.to(moe.gate.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cfg, group, W = self.config, self.group, self.world_size
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                                   # (S, C)
        logits, weights, idx, probs = self.gating(x2)
        plan = dispatch_plan(idx, cfg.n_routed_experts, W)
        recv = _exchange_counts(plan.expert_counts, group)             # (W, n_local)
        in_splits, out_splits = plan.send_counts.tolist(), recv.sum(1).tolist()
        xs = all_to_all(x2[plan.tokens], out_splits, in_splits, group)   # (R, C) src-major
        n_local = recv.size(1)
        local_e = torch.repeat_interleave(torch.arange(n_local, device=x.device).repeat(W),
                                          recv.reshape(-1))             # (R,) local expert
        ones = xs.new_ones(xs.size(0), 1, dtype=weights.dtype)
        ys, _, _ = expert_mix(xs, ones, local_e[:, None], self.experts.gate_up_proj,
                              self.experts.down_proj, None, self.grouped)  # (R, C)
        ys = all_to_all(ys, in_splits, out_splits, group)               # (P, C) plan order
        w = weights.reshape(-1)[plan.order]                             # (P,)
        y = x2.new_zeros(x2.shape).index_add_(0, plan.tokens, ys * w[:, None].to(ys.dtype))
        load = _all_sum(plan.expert_counts, group)                      # (N,) global
        self.aux = self._shared_balance_terms(logits, load, probs)
        self.load, self.dropped = load.detach().float(), 0
        if self.training:
            self.load_since_step = self.load_since_step.to(self.load.device) + self.load
        y = self.dropout(y.view(shape))
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        return y

    def _shared_balance_terms(self, logits, load, probs) -> dict:
        """This rank's share of week08's aux and z losses over the global batch."""
        cfg, N = self.config, self.config.n_routed_experts
        S_all = float(_all_sum(torch.tensor([logits.size(0)], device=logits.device), self.group))
        zero = logits.new_zeros(())
        aux = zero
        if cfg.aux_loss_alpha > 0:
            f = load.float() / (S_all * cfg.num_experts_per_tok)                  # (N,)
            aux = cfg.aux_loss_alpha * N * (f * probs.sum(0)).sum() / S_all
        z = (cfg.z_loss_coef * torch.logsumexp(logits, -1).square().sum() / S_all
             if cfg.z_loss_coef > 0 else zero)
        return {"aux_loss": aux, "z_loss": z}

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One token per row, (B, C) -> (B, C): the forward on T = 1 (a collective too)."""
        return self.forward(x[:, None])[:, 0]

    def extra_repr(self) -> str:
        return (super().extra_repr()
                + f", rank={self.rank}/{self.world_size}, experts={self.local.start}..{self.local.stop - 1}")


def shard_experts(model: nn.Module, rank: int, world_size: int, group=None) -> nn.Module:
    """Replace every week08 ``MoE`` in ``model`` by its ``ExpertParallelMoE`` slice, in place;
    returns ``model`` (or the sharded layer, when ``model`` is itself an ``MoE``)."""
    if isinstance(model, MoE):
        return model if isinstance(model, ExpertParallelMoE) else ExpertParallelMoE.from_moe(
            model, rank, world_size, group)
    targets = {id(m) for m in moe_layers(model)}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if id(child) in targets and not isinstance(child, ExpertParallelMoE):
                setattr(parent, name, ExpertParallelMoE.from_moe(child, rank, world_size, group))
    return model
