"""Mixture-of-Experts MLP: Switch/Mixtral/DeepSeekMoE/DeepSeek-V3 routing, grouped dispatch.

``MoE(config, layer_idx)`` replaces a dense SwiGLU in the layers where
``config.layer_uses_moe(layer_idx)``. Per token:

1. the router ``gate`` (an ``nn.Linear`` C -> N, with the selection-only buffer
   ``gate.e_score_correction_bias``) gives logits (S, N) in float32;
2. ``route`` picks ``k = num_experts_per_tok`` experts and their weights:

   - ``gating="softmax"`` (Mixtral): p = softmax(logits); top-k of p (+ bias, zero unless the
     loss-free update moved it); weights = the chosen p, renormalised when ``norm_topk_prob``;
   - ``gating="sigmoid"`` (DeepSeek-V3): s = sigmoid(logits); choice = s + bias; with
     ``n_group`` > 1 only the ``topk_group`` groups with the best sum of their top-2 choice
     scores are eligible; top-k of choice; weights = the chosen *un-biased* s, normalised
     when ``norm_topk_prob``; both gatings then multiply by ``routed_scaling_factor``;

3. dispatch, no Python loop over tokens (``expert_mix``, in ``dispatch.py``): the S*k (token, expert) pairs
   are sorted by expert (a stable sort), so each expert's tokens are one contiguous slice;
   all experts run in two grouped matmuls (``F.grouped_mm`` / ``torch._grouped_mm``, where
   the build has it: CUDA in bf16, the CPU in float32), or else each expert's SwiGLU on its
   slice (one loop over the N experts, one autograd node per projection); the outputs,
   times their weights, are added back to their tokens with ``index_add_``;
4. the shared experts (one SwiGLU of width ``moe_intermediate_size * n_shared_experts``,
   ``shared_experts``, or None) see every token and are added.

Weights use Hugging Face 5.x's fused layout, so conversion is a copy:
``experts.gate_up_proj`` (N, 2I, C) with gate rows before up rows, ``experts.down_proj``
(N, C, I); ``load_hf_moe`` / ``export_hf_moe`` (``DeepseekV3MoE``) and ``load_hf_mixtral``
(``MixtralSparseMoeBlock``) copy them.

Capacity (``capacity_factor``): each expert takes at most
``ceil(capacity_factor * S * k / N)`` of the S*k pairs of a forward call; the rest are
dropped (their routed contribution is zero; the shared experts still apply). Drop order:
pairs are ranked by choice rank first (every token's 1st choice before any 2nd choice,
GShard's priority), then by token position in the flattened (B*T) batch; the first
``capacity`` pairs of an expert are kept.

Balancing. After each forward the layer keeps ``aux`` (scalar tensors with gradient):
``aux_loss`` = alpha * N * sum_i f_i * P_i (Switch/GShard; f_i the fraction of the S*k
pairs routed to expert i, P_i the mean over tokens of the router's probability of i:
softmax p, or for sigmoid gating the scores normalised to sum to 1 per token, as in
DeepSeek-V3's sequence-wise loss; alpha * 1 when perfectly balanced; Hugging Face's
``load_balancing_loss_func`` equals k times this with alpha = 1), and ``z_loss`` =
coef * mean_t logsumexp(logits_t)^2 (ST-MoE); and ``load`` (N,), the pairs routed to each
expert before any capacity drop. ``moe_aux_loss`` sums the aux terms of a model's MoE layers
and ``moe_loss_fn`` adds them to week03's next-token loss. The auxiliary-loss-free method
(DeepSeek-V3): ``balance_bias_hook`` (a week03 ``Trainer`` hook) moves each layer's bias by
gamma * sign(mean load - load) after each optimizer step, with the load summed over the
step's micro-batches (training forwards only), and reports MaxVio = max load / mean load - 1.

Counting: ``active_params(config)`` and ``moe_flops_per_token(config)`` are one MoE layer's
active parameters and forward matmul FLOPs; ``active_param_count(model)`` and
``train_flops_per_token(model, block_size)`` are week03's counts with the unchosen experts
left out, for an MFU that uses active parameters.

Left out: expert parallelism (all-to-all), token dropping by router score, router jitter
noise, V3's node-limited routing and multi-token prediction; routed experts are always
SwiGLU without biases (``config.mlp`` and ``config.bias`` apply to the dense layers and the
shared experts).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from week03_training.flops import flops_per_token
from week03_training.loss import next_token_loss
from week04_modern_arch_tools.modules import SwiGLU, llama_mlp
from week08_sota.config import SotaConfig
from week08_sota.dispatch import expert_mix

__all__ = [
    "MoE", "Router", "Experts", "SharedExperts", "route", "expert_mix", "capacity",
    "mlp_for_layer", "moe_layers", "moe_aux_loss", "moe_loss_fn", "balance_bias_hook",
    "max_violation", "load_hf_moe", "export_hf_moe", "load_hf_mixtral", "active_params",
    "moe_flops_per_token", "active_param_count", "train_flops_per_token",
]


# ---------------------------------------------------------------- routing


def route(logits: torch.Tensor, bias: torch.Tensor, config: SotaConfig):
    """Top-k routing: logits (S, N) float32, bias (N,) -> (weights (S, k), idx (S, k), probs (S, N)).

    ``weights`` are float32 and carry gradient to the logits; ``idx`` are the chosen
    experts (any order within a row); ``probs`` are the router's probabilities over all
    experts for the auxiliary loss (softmax, or the sigmoid scores normalised per row).
    ``bias`` is added for the choice only. See the module docstring for both gatings.
    """
    N, k = logits.size(-1), config.num_experts_per_tok
    if config.gating == "softmax":
        scores = torch.softmax(logits, dim=-1)
        probs = scores
    else:
        scores = logits.sigmoid()
        probs = scores / scores.sum(-1, keepdim=True)
    choice = scores + bias
    if config.n_group > 1:  # group-limited: only the topk_group best groups are eligible
        g = config.n_group
        grouped = choice.view(-1, g, N // g)
        group_scores = grouped.topk(min(2, N // g), dim=-1).values.sum(-1)  # (S, g)
        keep = torch.zeros_like(group_scores, dtype=torch.bool)
        keep.scatter_(1, group_scores.topk(config.topk_group, dim=-1).indices, True)
        choice = choice.masked_fill(~keep.repeat_interleave(N // g, dim=1), float("-inf"))
    idx = choice.topk(k, dim=-1).indices  # (S, k)
    weights = scores.gather(1, idx)
    if config.norm_topk_prob:
        weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
    return weights * config.routed_scaling_factor, idx, probs


def capacity(config: SotaConfig, n_tokens: int) -> int | None:
    """Pairs an expert may take in a forward call of ``n_tokens`` tokens (None: no limit)."""
    if config.capacity_factor is None:
        return None
    return math.ceil(config.capacity_factor * n_tokens * config.num_experts_per_tok
                     / config.n_routed_experts)


# ---------------------------------------------------------------- modules


class Router(nn.Linear):
    """The gate: ``weight`` (N, C) and the selection-only buffer ``e_score_correction_bias`` (N,)."""

    def __init__(self, n_embd: int, n_experts: int):
        super().__init__(n_embd, n_experts, bias=False)
        self.register_buffer("e_score_correction_bias", torch.zeros(n_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in float32 (as Hugging Face's DeepseekV3 router): x (S, C) -> (S, N)."""
        return F.linear(x.float(), self.weight.float())


class Experts(nn.Module):
    """N SwiGLU experts, stacked: ``gate_up_proj`` (N, 2I, C) [gate; up], ``down_proj`` (N, C, I)."""

    def __init__(self, n_experts: int, n_embd: int, width: int, down_std: float = 0.02):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.randn(n_experts, 2 * width, n_embd) * 0.02)
        self.down_proj = nn.Parameter(torch.randn(n_experts, n_embd, width) * down_std)


class SharedExperts(SwiGLU):
    """The experts every token uses: one SwiGLU of width moe_intermediate_size * n_shared_experts."""

    def hidden_size(self, config: SotaConfig) -> int:
        return config.moe_intermediate_size * config.n_shared_experts


def _check(config) -> None:
    if not isinstance(config, SotaConfig):
        raise TypeError(f"MoE needs a SotaConfig, got {type(config).__name__}")
    N, k, g = config.n_routed_experts, config.num_experts_per_tok, config.n_group
    if config.topk_group * (N // g) < k:
        raise ValueError(f"SotaConfig: topk_group ({config.topk_group}) groups of {N // g} "
                         f"experts hold fewer than num_experts_per_tok ({k}) experts")


class MoE(nn.Module):
    """Routed experts + shared experts; ``forward`` (B, T, C) -> (B, T, C), ``step`` (B, C).

    After each call: ``aux`` {"aux_loss", "z_loss"} (scalar tensors with gradient), ``load``
    (N,) pairs routed per expert (detached float), ``dropped`` (pairs over capacity). In
    training mode the load is also summed into ``load_since_step`` for ``balance_bias_hook``.
    ``grouped``: None picks the grouped matmul where it runs (``_grouped_ok``), True / False force.
    """

    def __init__(self, config: SotaConfig, layer_idx: int = 0):
        super().__init__()
        _check(config)
        self.config, self.layer_idx = config, layer_idx
        N, C, I = config.n_routed_experts, config.n_embd, config.moe_intermediate_size
        self.gate = Router(C, N)
        self.experts = Experts(N, C, I, down_std=0.02 / math.sqrt(2 * config.n_layer))
        self.shared_experts = SharedExperts(config, layer_idx) if config.n_shared_experts else None
        self.dropout = nn.Dropout(config.dropout)
        self.grouped: bool | None = None
        zero = torch.zeros(())
        self.aux = {"aux_loss": zero, "z_loss": zero}
        self.load = torch.zeros(N)
        self.dropped = 0
        self.load_since_step = torch.zeros(N)

    def gating(self, x2: torch.Tensor):
        """Router logits (S, N) and ``route``'s (weights, idx, probs) for rows x2 (S, C)."""
        with torch.autocast(x2.device.type, enabled=False):  # the router stays in float32
            logits = self.gate(x2)
        return (logits, *route(logits, self.gate.e_score_correction_bias, self.config))

    def _balance_terms(self, logits, idx, probs) -> dict:
        cfg, N = self.config, self.config.n_routed_experts
        zero = logits.new_zeros(())
        aux = zero
        if cfg.aux_loss_alpha > 0:
            f = torch.bincount(idx.reshape(-1), minlength=N).float() / idx.numel()  # (N,)
            aux = cfg.aux_loss_alpha * N * (f * probs.mean(0)).sum()
        z = cfg.z_loss_coef * torch.logsumexp(logits, -1).square().mean() if cfg.z_loss_coef > 0 else zero
        return {"aux_loss": aux, "z_loss": z}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])                                   # (S, C)
        logits, weights, idx, probs = self.gating(x2)
        cap = capacity(self.config, x2.size(0))
        y, routed, self.dropped = expert_mix(x2, weights, idx, self.experts.gate_up_proj,
                                             self.experts.down_proj, cap, self.grouped)
        self.aux = self._balance_terms(logits, idx, probs)
        self.load = routed.detach().float()
        if self.training:
            acc = self.load_since_step
            if acc.device != self.load.device:
                acc = acc.to(self.load.device)
            self.load_since_step = acc + self.load
        y = self.dropout(y.view(shape))
        if self.shared_experts is not None:
            y = y + self.shared_experts(x)
        return y

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """One token per row: x (B, C) -> (B, C) (no capacity limit at decode)."""
        logits, weights, idx, _ = self.gating(x)
        y, routed, _ = expert_mix(x, weights, idx, self.experts.gate_up_proj,
                                  self.experts.down_proj, None, self.grouped)
        self.load = routed.detach().float()
        if self.shared_experts is not None:
            y = y + self.shared_experts.step(x)
        return y

    def extra_repr(self) -> str:
        c = self.config
        return (f"experts={c.n_routed_experts}, top_k={c.num_experts_per_tok}, "
                f"shared={c.n_shared_experts}, width={c.moe_intermediate_size}, gating={c.gating}")


def mlp_for_layer(config: SotaConfig, layer_idx: int = 0) -> nn.Module:
    """The MLP of layer ``layer_idx``: an ``MoE`` where ``config.layer_uses_moe``, else week04's."""
    return MoE(config, layer_idx) if config.layer_uses_moe(layer_idx) else llama_mlp(config, layer_idx)


# ---------------------------------------------------------------- balancing


def moe_layers(model: nn.Module) -> list[MoE]:
    return [m for m in model.modules() if isinstance(m, MoE)]


def moe_aux_loss(model: nn.Module):
    """Sum of every MoE layer's aux terms from its last forward: (loss, metrics).

    metrics: ``aux_loss`` and ``z_loss`` summed over layers (floats), ``moe_maxvio`` the
    mean over layers of the last forward's MaxVio. A model without MoE layers gives 0, {}.
    """
    layers = moe_layers(model)
    if not layers:
        return torch.zeros(()), {}
    aux = sum(m.aux["aux_loss"] for m in layers)
    z = sum(m.aux["z_loss"] for m in layers)
    metrics = {"aux_loss": float(aux.detach()), "z_loss": float(z.detach()),
               "moe_maxvio": sum(max_violation(m.load) for m in layers) / len(layers)}
    return aux + z, metrics


def moe_loss_fn(model: nn.Module, batch):
    """week03's ``next_token_loss`` plus ``moe_aux_loss``: a Trainer ``loss_fn``."""
    loss, metrics = next_token_loss(model, batch)
    extra, moe_metrics = moe_aux_loss(model)
    return loss + extra.to(loss.device), {**metrics, "ce_loss": float(loss.detach()),
                                          **moe_metrics}


def max_violation(load: torch.Tensor) -> float:
    """MaxVio (DeepSeek-V3): max load / mean load - 1; 0 is perfect balance."""
    load = load.float()
    mean = load.mean()
    return float(load.max() / mean - 1) if mean > 0 else 0.0


@torch.no_grad()
def balance_bias_hook(trainer, info) -> dict:
    """The auxiliary-loss-free update, after each optimizer step (a week03 Trainer hook).

    For every MoE layer of ``trainer.raw_model`` (or of ``trainer`` itself, when it is the
    model): load = the pairs routed per expert in the training forwards since the last
    call (all micro-batches of the step), bias += gamma * sign(mean load - load) with
    gamma = ``config.bias_update_speed`` (no update when 0), and the sums restart.
    Returns ``moe_maxvio`` (mean over layers of the step's MaxVio) and ``moe_maxvio_max``.
    """
    model = getattr(trainer, "raw_model", trainer)
    vios = []
    for m in moe_layers(model):
        load = m.load_since_step
        if float(load.sum()) == 0:
            continue
        vios.append(max_violation(load))
        gamma = m.config.bias_update_speed
        if gamma > 0:
            bias = m.gate.e_score_correction_bias
            bias.add_(gamma * torch.sign(load.mean() - load).to(bias.device, bias.dtype))
        m.load_since_step = torch.zeros_like(load)
    if not vios:
        return {}
    return {"moe_maxvio": sum(vios) / len(vios), "moe_maxvio_max": max(vios)}


# ---------------------------------------------------------------- Hugging Face


@torch.no_grad()
def load_hf_moe(ours: MoE, hf_block) -> MoE:
    """Copy a Hugging Face ``DeepseekV3MoE``'s weights (and router bias) into ``ours``."""
    ours.gate.weight.copy_(hf_block.gate.weight)
    ours.gate.e_score_correction_bias.copy_(hf_block.gate.e_score_correction_bias)
    ours.experts.gate_up_proj.copy_(hf_block.experts.gate_up_proj)
    ours.experts.down_proj.copy_(hf_block.experts.down_proj)
    shared = getattr(hf_block, "shared_experts", None)
    if shared is not None and shared.gate_proj.weight.numel() == 0:
        shared = None  # HF builds a zero-width MLP for n_shared_experts=0
    if (ours.shared_experts is None) != (shared is None):
        raise ValueError("shared experts: one block has them and the other not")
    if shared is not None:
        ours.shared_experts.fc.weight.copy_(torch.cat((shared.gate_proj.weight,
                                                       shared.up_proj.weight)))
        ours.shared_experts.proj.weight.copy_(shared.down_proj.weight)
    return ours


@torch.no_grad()
def export_hf_moe(ours: MoE, hf_block):
    """Copy ``ours`` into a Hugging Face ``DeepseekV3MoE`` (the reverse of ``load_hf_moe``)."""
    hf_block.gate.weight.copy_(ours.gate.weight)
    hf_block.gate.e_score_correction_bias.copy_(ours.gate.e_score_correction_bias)
    hf_block.experts.gate_up_proj.copy_(ours.experts.gate_up_proj)
    hf_block.experts.down_proj.copy_(ours.experts.down_proj)
    if ours.shared_experts is not None:
        gate, up = ours.shared_experts.fc.weight.chunk(2, dim=0)
        hf_block.shared_experts.gate_proj.weight.copy_(gate)
        hf_block.shared_experts.up_proj.weight.copy_(up)
        hf_block.shared_experts.down_proj.weight.copy_(ours.shared_experts.proj.weight)
    return hf_block


@torch.no_grad()
def load_hf_mixtral(ours: MoE, hf_block) -> MoE:
    """Copy a Hugging Face ``MixtralSparseMoeBlock`` into ``ours`` (softmax gating, no shared)."""
    if ours.shared_experts is not None:
        raise ValueError("Mixtral has no shared experts: build ours with n_shared_experts=0")
    ours.gate.weight.copy_(hf_block.gate.weight)
    ours.gate.e_score_correction_bias.zero_()
    ours.experts.gate_up_proj.copy_(hf_block.experts.gate_up_proj)
    ours.experts.down_proj.copy_(hf_block.experts.down_proj)
    return ours


# ---------------------------------------------------------------- counting


def active_params(config: SotaConfig) -> int:
    """Parameters one token uses in one MoE layer: router + k routed + the shared experts."""
    C, I = config.n_embd, config.moe_intermediate_size
    return (config.n_routed_experts * C
            + (config.num_experts_per_tok + config.n_shared_experts) * 3 * C * I)


def moe_flops_per_token(config: SotaConfig) -> int:
    """Forward matmul FLOPs per token of one MoE layer's active path (2 per multiply-add)."""
    return 2 * active_params(config)


def _inactive(model: nn.Module) -> int:
    return sum((m.config.n_routed_experts - m.config.num_experts_per_tok)
               * (m.experts.gate_up_proj[0].numel() + m.experts.down_proj[0].numel())
               for m in moe_layers(model))


def active_param_count(model: nn.Module) -> int:
    """The model's parameters less the routed experts a token does not use."""
    return sum(p.numel() for p in model.parameters()) - _inactive(model)


def train_flops_per_token(model: nn.Module, block_size: int) -> float:
    """Training FLOPs per token with N the active parameters: the model's own
    ``flops_per_token`` when it has one (``SotaModel`` counts active parameters itself, and
    week03's ``flops_per_token`` believes it), else week03's 6 N + attention less 6 x the
    routed experts a token does not use."""
    if callable(getattr(model, "flops_per_token", None)):
        return float(model.flops_per_token(block_size))
    return flops_per_token(model, block_size) - 6.0 * _inactive(model)
