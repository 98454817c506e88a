"""Expert parallelism checked against week08's single-process MoE: same weights, same numbers.

A case is a week08 ``MoE`` layer (input x (B, T, C), loss = sum(y * G) + aux + z) or a whole
``SotaModel`` (input tokens (B, T), loss = summed next-token cross-entropy / all tokens + aux
+ z). ``reference(case)`` runs it in this process; ``ep_rank`` runs rank r's share under
``launch.spawn``: the same weights (routed experts sliced by ``shard_experts``), rows
``r * B/W .. (r+1) * B/W - 1`` of the batch. ``check(cases, folder)`` runs both and returns,
per case, the largest absolute difference of: the outputs, the input gradients, the
replicated parameters' gradients (summed over ranks: each rank saw its own tokens), the
routed experts' gradients (each rank's slice, concatenated), the loss and the global load.

Left out: optimizer steps (the gradients are what the parallel layout changes; an optimizer
step on equal gradients is the same step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from track_moe.expert_parallel import shard_experts
from track_moe.launch import spawn
from week08_sota import MoE, SotaConfig, SotaModel
from week08_sota.moe import moe_aux_loss, moe_layers

__all__ = ["ParityCase", "default_cases", "reference", "ep_rank", "check"]


# ---------------------------------------------------------------- cases


@dataclass
class ParityCase:
    """One comparison: ``kind`` "layer" or "model", a week08 config, batch (B, T), a seed."""

    name: str
    kind: str
    config: SotaConfig
    batch: int = 4
    seq: int = 8
    seed: int = 0
    bias: bool = False          # a random selection bias (as after balance_bias_hook steps)
    extra: dict = field(default_factory=dict)


def default_cases() -> list[ParityCase]:
    """A softmax layer with both balance losses, and a DeepSeek-V3-style model (sigmoid
    gating, group-limited routing, a shared expert, a nonzero selection bias)."""
    base = dict(vocab_size=64, block_size=16, n_layer=2, n_head=4, n_embd=32,
                intermediate_size=64, kv_lora_rank=16, q_lora_rank=12, qk_nope_head_dim=8,
                qk_rope_head_dim=4, v_head_dim=8, moe_intermediate_size=16)
    layer = SotaConfig(**base, n_routed_experts=8, num_experts_per_tok=2, n_shared_experts=0,
                       aux_loss_alpha=0.01, z_loss_coef=0.001)
    model = SotaConfig(**base, n_routed_experts=8, num_experts_per_tok=3, n_shared_experts=1,
                       first_k_dense_replace=1, gating="sigmoid", n_group=4, topk_group=2,
                       routed_scaling_factor=2.5, aux_loss_alpha=0.01)
    return [ParityCase("layer-softmax-aux-z", "layer", layer),
            ParityCase("model-sigmoid-groups-shared", "model", model, bias=True)]


def _build(case: ParityCase):
    torch.manual_seed(case.seed)
    module = MoE(case.config, 1) if case.kind == "layer" else SotaModel(case.config)
    B, T, C = case.batch, case.seq, case.config.n_embd
    if case.kind == "layer":
        inputs = {"x": torch.randn(B, T, C), "g": torch.randn(B, T, C)}
    else:
        inputs = {"idx": torch.randint(0, case.config.vocab_size, (B, T + 1))}
    if case.bias:
        with torch.no_grad():
            for m in moe_layers(module):
                m.gate.e_score_correction_bias.copy_(torch.randn(case.config.n_routed_experts) * 0.05)
    return module, inputs


def _loss(case, module, inputs, rows: slice, n_tokens: int):
    """The case's loss on ``rows`` of the batch; (loss, output, input leaf or None)."""
    if case.kind == "layer":
        x = inputs["x"][rows].clone().requires_grad_(True)
        y = module(x)
        loss = (y * inputs["g"][rows]).sum()
    else:
        x = None
        idx = inputs["idx"][rows]
        y = module(idx[:, :-1])                                     # (b, T, V)
        loss = F.cross_entropy(y.flatten(0, 1), idx[:, 1:].reshape(-1), reduction="sum") / n_tokens
    aux, _ = moe_aux_loss(module)
    return loss + aux, y, x


def _grads(module) -> dict:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _is_routed(name: str) -> bool:
    return name.endswith(("experts.gate_up_proj", "experts.down_proj")) and "shared" not in name


# ---------------------------------------------------------------- the two sides


def reference(case: ParityCase) -> dict:
    """The single-process run: output, input gradient, parameter gradients, loss, load."""
    module, inputs = _build(case)
    B = case.batch
    loss, y, x = _loss(case, module, inputs, slice(0, B), B * case.seq)
    loss.backward()
    return {"y": y.detach(), "x_grad": None if x is None else x.grad, "grads": _grads(module),
            "loss": loss.detach(), "load": torch.stack([m.load for m in moe_layers(module)])}


def ep_rank(rank: int, world: int, folder: str) -> None:
    """Rank ``rank``'s share of every case in ``folder``/cases.pt -> ``folder``/rank{r}.pt."""
    cases = torch.load(Path(folder) / "cases.pt", weights_only=False)
    out = {}
    for case in cases:
        module, inputs = _build(case)
        module = shard_experts(module, rank, world)
        b = case.batch // world
        rows = slice(rank * b, (rank + 1) * b)
        loss, y, x = _loss(case, module, inputs, rows, case.batch * case.seq)
        loss.backward()
        total = loss.detach().clone()
        dist.all_reduce(total)
        out[case.name] = {"y": y.detach(), "x_grad": None if x is None else x.grad,
                          "grads": _grads(module), "loss": total,
                          "load": torch.stack([m.load for m in moe_layers(module)])}
    torch.save(out, Path(folder) / f"rank{rank}.pt")


def check(cases: list[ParityCase] | None = None, folder: str | Path = ".", world: int = 2,
          timeout_s: float = 120) -> dict:
    """Run ``cases`` both ways; per case the max |difference| of each quantity (see above)."""
    cases = cases or default_cases()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(cases, folder / "cases.pt")
    spawn(ep_rank, world, args=(str(folder),), timeout_s=timeout_s)
    ranks = [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(world)]
    report = {}
    for case in cases:
        ref, parts = reference(case), [r[case.name] for r in ranks]
        d = {"y": (torch.cat([p["y"] for p in parts]) - ref["y"]).abs().max().item(),
             "loss": max(abs(float(p["loss"] - ref["loss"])) for p in parts),
             "load": max((p["load"] - ref["load"]).abs().max().item() for p in parts)}
        if ref["x_grad"] is not None:
            d["x_grad"] = (torch.cat([p["x_grad"] for p in parts]) - ref["x_grad"]).abs().max().item()
        routed, replicated = 0.0, 0.0
        for name, g in ref["grads"].items():
            if _is_routed(name):
                ours = torch.cat([p["grads"][name] for p in parts])
                routed = max(routed, (ours - g).abs().max().item())
            else:
                ours = sum(p["grads"][name] for p in parts)
                replicated = max(replicated, (ours - g).abs().max().item())
        d["routed_grads"], d["replicated_grads"] = routed, replicated
        d["n_params"] = len(ref["grads"])
        report[case.name] = d
    return report


if __name__ == "__main__":  # python -m track_moe.parity
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name, d in check(folder=tmp).items():
            print(name, {k: (f"{v:.1e}" if isinstance(v, float) else v) for k, v in d.items()})
