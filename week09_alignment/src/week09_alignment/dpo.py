"""DPO (Rafailov et al., 2023): the loss, its reference model, preference batches, evaluation.

A preference pair is TRL's conversational format: ``{"prompt": [messages],
"chosen": [assistant message], "rejected": [assistant message], ...}``. DPO
trains the policy pi so that its implicit reward r(x, y) = beta * log
(pi(y | x) / pi_ref(y | x)) ranks the chosen reply above the rejected one;
no reward model, no sampling.

- ``dpo_loss``: the loss from the four summed completion log-probs (B,), in
  TRL's variants ``sigmoid`` (the paper), ``ipo`` (Azar et al., 2023; length
  normalised as TRL does) and ``robust`` (Chowdhury et al., 2024), with the
  metrics TRL logs (``rewards/chosen`` ... ``logps/rejected``);
- ``encode_pair`` / ``collate_pairs``: week04's ``render_conversation`` of
  prompt + chosen and prompt + rejected; a batch is ``ids`` (2B, T), chosen
  rows then rejected rows, right-padded, and ``mask`` (2B, T), 1 on the
  completion tokens week04's mask trains (never the prompt, never a tool
  output inside the completion, never padding);
- the reference three ways (``Reference``): ``copy`` (a frozen deep copy),
  ``lora`` (the policy itself with every week06 adapter switched off, then
  switched back: no second model in memory), ``precomputed`` (log-probs
  computed once before training and carried by the pairs and batches);
- ``DPOLoss``: the week03 ``Trainer`` loss_fn.

``dpo_train.py`` holds the held-out measurements (``implicit_reward_accuracy``,
``verified_win_rate``) and the command (``python -m week09_alignment.dpo``:
presets, the stage run, the before / after figures).

``DPOConfig.sft_weight`` adds RPO's NLL on the chosen replies (Pang et al.,
2024, "Iterative Reasoning Preference Optimization"; TRL's ``"sft"`` loss type).

Left out: TRL's other loss types (hinge, exo, nca, bco, apo, ...), f-divergence
variants, WPO weighting, length-desensitised DPO (``ld_alpha``), syncing the
reference during training, padding-free batches and multi-GPU.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from week09_alignment.logprobs import sequence_logprobs, token_logprobs

LOSS_TYPES = ("sigmoid", "ipo", "robust")
REFERENCES = ("copy", "lora", "precomputed")
PAIRS = ("synthetic", "on_policy")  # prefs.preference_pairs, or onpolicy.on_policy_pairs
REF_KEYS = ("ref_chosen_logps", "ref_rejected_logps")  # TRL's column names, on a pair


# ---------------------------------------------------------------- config


@dataclass
class DPOConfig:
    """Everything a DPO run sets (the ``tiny`` / ``gpu`` presets in dpo_train fill it)."""

    beta: float = 0.1              # KL strength (IPO's tau)
    loss_type: str = "sigmoid"     # sigmoid | ipo | robust
    label_smoothing: float = 0.0   # robust only: the assumed label-flip rate, in [0, 0.5)
    reference: str = "copy"        # copy | lora | precomputed
    lora_r: int = 8                # reference == "lora": the adapters the policy trains
    lora_alpha: float = 16.0
    lr: float = 5e-4
    steps: int = 60
    batch_size: int = 8            # pairs per step (2 * batch_size rows)
    block_size: int = 128          # tokens per row; longer rows are cut at the end
    warmup_steps: int = 5
    n_train: int = 256             # synthetic preference pairs to train on
    n_eval: int = 64               # held-out pairs for the before / after figures
    n_arith: int = 100             # held-out week05 arithmetic problems (calculator exact match)
    max_new_tokens: int = 48       # verified win rate: reply length
    eval_batch_size: int = 32
    seed: int = 0
    pairs: str = "synthetic"      # synthetic | on_policy (the model's own samples, verified)
    samples: int = 4               # on_policy: replies sampled per training prompt
    sft_weight: float = 0.0        # RPO: + sft_weight * NLL of the chosen replies (TRL "sft")

    def __post_init__(self):
        problems = []
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type {self.loss_type!r} unknown; valid: {', '.join(LOSS_TYPES)}")
        if self.reference not in REFERENCES:
            problems.append(f"reference {self.reference!r} unknown; valid: {', '.join(REFERENCES)}")
        if self.pairs not in PAIRS:
            problems.append(f"pairs {self.pairs!r} unknown; valid: {', '.join(PAIRS)}")
        if self.beta <= 0:
            problems.append(f"beta must be > 0, got {self.beta}")
        if self.sft_weight < 0:
            problems.append(f"sft_weight must be >= 0, got {self.sft_weight}")
        if not 0.0 <= self.label_smoothing < 0.5:
            problems.append(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss_type != "robust":
            problems.append("label_smoothing is used by loss_type 'robust' only; "
                            f"got {self.label_smoothing} with {self.loss_type!r}")
        for name in ("lora_r", "steps", "batch_size", "block_size", "n_train", "n_eval",
                     "n_arith", "max_new_tokens", "eval_batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if problems:
            raise ValueError("bad DPOConfig: " + "; ".join(problems))


# ---------------------------------------------------------------- the loss


def dpo_loss(chosen_logps: torch.Tensor, rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing: float = 0.0,
             chosen_tokens: torch.Tensor | None = None,
             rejected_tokens: torch.Tensor | None = None, sft_weight: float = 0.0,
             chosen_token_logps: torch.Tensor | None = None,
             chosen_token_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(mean loss, metrics) from summed completion log-probs, each (B,).

    With h = log(pi(y_w)/pi_ref(y_w)) - log(pi(y_l)/pi_ref(y_l)) (chosen y_w, rejected y_l):

    - sigmoid (DPO eq. 7): Bradley-Terry on the implicit rewards: -log sigmoid(beta * h);
    - ipo (IPO eq. 17): regress the per-token h onto 1/(2 tau), tau = beta:
      (h_w / n_w - h_l / n_l - 1 / (2 beta))^2 with n the completion token counts
      (``chosen_tokens``, ``rejected_tokens``; TRL's normalisation, clamped at 1);
    - robust (Chowdhury et al. eq. 8): the unbiased loss under labels flipped with
      rate e: ((1 - e) * -log s(beta h) - e * -log s(-beta h)) / (1 - 2e).

    ``sft_weight`` alpha > 0 adds RPO's NLL term (Pang et al. 2024; TRL's
    ``loss_type=[..., "sft"]``, ``loss_weights=[1, alpha]``): alpha times minus the
    mean log-prob over every chosen completion token of the batch (one mean over
    tokens, not per row), from ``chosen_token_logps`` (B, T-1) where
    ``chosen_token_mask`` (B, T-1) is 1; logged as ``nll`` whenever those are given.

    Metrics (TRL's names, floats): rewards/chosen and rewards/rejected are the mean
    implicit rewards beta * log-ratio; rewards/accuracies the fraction with
    chosen reward > rejected reward; rewards/margins their mean difference;
    logps/chosen, logps/rejected the mean policy log-probs.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} unknown; valid: {', '.join(LOSS_TYPES)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    shapes = {t.shape for t in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1 or chosen_logps.dim() != 1:
        raise ValueError(f"the four log-prob tensors must all be (B,), got shapes {sorted(shapes)}")
    chosen_ratio = chosen_logps - ref_chosen_logps  # (B,)
    rejected_ratio = rejected_logps - ref_rejected_logps  # (B,)
    h = chosen_ratio - rejected_ratio  # (B,)
    if loss_type == "sigmoid":
        per_pair = -F.logsigmoid(beta * h)  # (B,)
    elif loss_type == "ipo":
        if chosen_tokens is None or rejected_tokens is None:
            raise ValueError("loss_type 'ipo' needs chosen_tokens and rejected_tokens "
                             "(the completion token counts, (B,))")
        n_w = chosen_tokens.to(h.dtype).clamp(min=1.0)  # (B,)
        n_l = rejected_tokens.to(h.dtype).clamp(min=1.0)  # (B,)
        per_pair = (chosen_ratio / n_w - rejected_ratio / n_l - 1.0 / (2.0 * beta)) ** 2
    else:
        e = label_smoothing
        if not 0.0 <= e < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5) for 'robust', got {e}")
        per_pair = (-(1 - e) * F.logsigmoid(beta * h) + e * F.logsigmoid(-beta * h)) / (1 - 2 * e)
    loss = per_pair.mean()
    if sft_weight < 0:
        raise ValueError(f"sft_weight must be >= 0, got {sft_weight}")
    if sft_weight > 0 and (chosen_token_logps is None or chosen_token_mask is None):
        raise ValueError("sft_weight > 0 needs chosen_token_logps and chosen_token_mask "
                         "(the chosen rows' per-token log-probs and completion mask, (B, T-1))")
    nll = None
    if chosen_token_logps is not None and chosen_token_mask is not None:
        if chosen_token_logps.shape != chosen_token_mask.shape or len(chosen_token_logps) != len(h):
            raise ValueError(f"chosen_token_logps {tuple(chosen_token_logps.shape)} and "
                             f"chosen_token_mask {tuple(chosen_token_mask.shape)} must both be "
                             f"(B={len(h)}, T-1)")
        nll = -chosen_token_logps[chosen_token_mask.bool()].mean()  # scalar: over all tokens
        if sft_weight > 0:
            loss = loss + sft_weight * nll
    chosen_rewards = beta * chosen_ratio.detach()  # (B,)
    rejected_rewards = beta * rejected_ratio.detach()  # (B,)
    metrics = {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": chosen_logps.detach().mean().item(),
        "logps/rejected": rejected_logps.detach().mean().item(),
    }
    if nll is not None:
        metrics["nll"] = nll.item()
    return loss, metrics


# ---------------------------------------------------------------- pairs to batches


def _check_pair(pair) -> None:
    if not isinstance(pair, dict) or not all(k in pair for k in ("prompt", "chosen", "rejected")):
        got = sorted(pair) if isinstance(pair, dict) else type(pair).__name__
        raise ValueError("a preference pair is a dict with 'prompt' (messages), 'chosen' and "
                         f"'rejected' (each a list with one assistant message); got {got}")
    for key in ("chosen", "rejected"):
        reply = pair[key]
        if not isinstance(reply, list) or not reply or reply[0].get("role") != "assistant":
            raise ValueError(f"pair[{key!r}] must be a non-empty list of messages starting with "
                             f"an assistant message, got {reply!r:.120}")


def encode_pair(pair: dict, tokenizer, block_size: int) -> dict:
    """Token ids and completion masks of one pair (lists), plus its reference log-probs if any.

    Each side is ``render_conversation(prompt + side)``; the completion is everything
    after the prompt (which ends in ``<|assistant_start|>``), and its mask is week04's
    render mask there (tool outputs stay 0). Truncation keeps the start: a row is cut
    to its first ``block_size`` tokens (as TRL's ``truncation_mode="keep_start"``), and
    a pair whose prompt leaves no completion token inside ``block_size`` is refused.
    """
    from week04_modern_arch_tools import render_conversation, render_for_completion

    _check_pair(pair)
    prompt_ids = render_for_completion(list(pair["prompt"]), tokenizer)
    out = {}
    for key in ("chosen", "rejected"):
        ids, mask = render_conversation(list(pair["prompt"]) + list(pair[key]), tokenizer)
        n = len(prompt_ids)
        if ids[:n] != prompt_ids:
            raise ValueError("the rendered prompt is not a prefix of prompt + completion; "
                             "the prompt must end with a user message")
        mask = [0] * n + list(mask[n:])
        ids, mask = ids[:block_size], mask[:block_size]
        if not any(mask):
            raise ValueError(f"the prompt has {n} tokens: no {key} completion token fits in "
                             f"block_size={block_size}; raise block_size or drop the pair")
        out[f"{key}_ids"], out[f"{key}_mask"] = ids, mask
    for k in REF_KEYS:
        if k in pair:
            out[k] = float(pair[k])
    return out


def collate_pairs(pairs: list[dict], tokenizer, block_size: int, device=None) -> dict:
    """A batch from pairs (raw, or already through ``encode_pair``).

    ``ids`` (2B, T) int64 and ``mask`` (2B, T): rows 0..B-1 the chosen sides, rows
    B..2B-1 the rejected ones, right-padded with 0 (mask 0); ``attention_mask``
    (2B, T) is 1 on real tokens. ``ref_chosen`` / ``ref_rejected`` (B,) fp32 come
    along when every pair carries precomputed reference log-probs.
    """
    if not pairs:
        raise ValueError("collate_pairs needs at least one pair")
    enc = [p if "chosen_ids" in p else encode_pair(p, tokenizer, block_size) for p in pairs]
    rows = [e["chosen_ids"] for e in enc] + [e["rejected_ids"] for e in enc]
    masks = [e["chosen_mask"] for e in enc] + [e["rejected_mask"] for e in enc]
    T = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)  # (2B, T)
    mask = torch.zeros(len(rows), T, dtype=torch.long)  # (2B, T)
    attn = torch.zeros(len(rows), T, dtype=torch.long)  # (2B, T)
    for i, (r, m) in enumerate(zip(rows, masks)):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(m)] = torch.tensor(m)
        attn[i, :len(r)] = 1
    batch = {"ids": ids, "mask": mask, "attention_mask": attn}
    if all(REF_KEYS[0] in e and REF_KEYS[1] in e for e in enc):
        batch["ref_chosen"] = torch.tensor([e[REF_KEYS[0]] for e in enc])  # (B,)
        batch["ref_rejected"] = torch.tensor([e[REF_KEYS[1]] for e in enc])  # (B,)
    if device is not None:
        batch = {k: v.to(device) for k, v in batch.items()}
    return batch


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ---------------------------------------------------------------- the reference


@contextmanager
def adapters_disabled(model):
    """Inside the block every week06 adapter of ``model`` is off (week06's
    ``set_active_adapters(model, [])``); each layer's own active list is put back after."""
    from week06_lora import lora_layers, set_active_adapters

    layers = lora_layers(model)
    if not layers:
        raise ValueError("reference 'lora' needs a policy trained through week06 LoRA adapters "
                         "(week06_lora.inject_lora); this model has none")
    saved = {name: list(layer.active) for name, layer in layers.items()}
    set_active_adapters(model, [])
    try:
        yield model
    finally:
        for name, layer in layers.items():
            layer.set_active(saved[name])


class Reference:
    """pi_ref, one of three ways (see the module docstring); ``logps(policy, batch)`` gives
    (ref_chosen, ref_rejected), each (B,), without gradients."""

    def __init__(self, kind: str, model=None):
        if kind not in REFERENCES:
            raise ValueError(f"reference {kind!r} unknown; valid: {', '.join(REFERENCES)}")
        if kind == "copy" and model is None:
            raise ValueError("reference 'copy' needs the frozen model (use Reference.make)")
        self.kind, self.model = kind, model

    @classmethod
    def make(cls, kind: str, policy) -> Reference:
        """``copy``: a frozen deep copy of ``policy`` as it is now (eval mode, no grad);
        ``lora``: checks that ``policy`` carries adapters; ``precomputed``: nothing kept."""
        if kind == "copy":
            ref = copy.deepcopy(policy).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
            return cls(kind, ref)
        if kind == "lora":
            with adapters_disabled(policy):
                pass
        return cls(kind)

    def sequence_logps(self, policy, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N,) summed reference log-probs of rows ``ids`` (N, T) over ``mask`` (N, T)."""
        if self.kind == "precomputed":
            raise ValueError("a precomputed reference has no model; its log-probs come with the "
                             "pairs (precompute_reference) and batches ('ref_chosen', 'ref_rejected')")
        with torch.no_grad():
            if self.kind == "copy":
                return sequence_logprobs(self.model, ids, mask)
            with adapters_disabled(policy):
                return sequence_logprobs(policy, ids, mask)

    def logps(self, policy, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "precomputed":
            if "ref_chosen" not in batch:
                raise ValueError("reference 'precomputed': the batch has no 'ref_chosen' / "
                                 "'ref_rejected'; run precompute_reference on the pairs first")
            return batch["ref_chosen"], batch["ref_rejected"]
        return self.sequence_logps(policy, batch["ids"], batch["mask"]).chunk(2)


def precompute_reference(model, pairs: list[dict], tokenizer, block_size: int,
                         batch_size: int = 32, progress: bool = False) -> list[dict]:
    """The pairs (new dicts) with ``ref_chosen_logps`` / ``ref_rejected_logps`` from
    ``model`` as it is now (eval mode, no grad; its mode is restored)."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for chunk in tqdm(list(_chunks(pairs, batch_size)), desc="reference log-probs",
                          disable=not progress):
            batch = collate_pairs(chunk, tokenizer, block_size, device=_device(model))
            with torch.no_grad():
                c, r = sequence_logprobs(model, batch["ids"], batch["mask"]).chunk(2)  # (B,) each
            for p, lc, lr in zip(chunk, c.tolist(), r.tolist()):
                out.append({**p, REF_KEYS[0]: lc, REF_KEYS[1]: lr})
    finally:
        model.train(was_training)
    return out


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------- the Trainer's loss_fn


class DPOLoss:
    """``loss_fn(model, batch) -> (loss, metrics)`` for week03's Trainer: the policy's
    log-probs by ``token_logprobs`` (one forward; summed over the completion mask as
    ``sequence_logprobs`` does, and kept per token for the RPO NLL term), the reference's
    by ``reference``, then ``dpo_loss``."""

    def __init__(self, config: DPOConfig, reference: Reference):
        if reference.kind != config.reference:
            raise ValueError(f"config.reference is {config.reference!r} but the Reference "
                             f"given is {reference.kind!r}")
        self.config, self.reference = config, reference

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        ids, mask = batch["ids"], batch["mask"]  # (2B, T)
        lp = token_logprobs(model, ids)  # (2B, T-1): token t's log-prob at t - 1
        target_mask = mask[:, 1:]  # (2B, T-1)
        chosen, rejected = (lp * target_mask.to(lp.dtype)).sum(dim=1).chunk(2)  # (B,) each
        ref_chosen, ref_rejected = self.reference.logps(model, batch)  # (B,) each
        n_chosen, n_rejected = mask.sum(dim=1).chunk(2)  # (B,) completion token counts
        c = self.config
        return dpo_loss(chosen, rejected, ref_chosen.to(chosen.dtype), ref_rejected.to(chosen.dtype),
                        beta=c.beta, loss_type=c.loss_type, label_smoothing=c.label_smoothing,
                        chosen_tokens=n_chosen, rejected_tokens=n_rejected,
                        sft_weight=c.sft_weight, chosen_token_logps=lp.chunk(2)[0],
                        chosen_token_mask=target_mask.chunk(2)[0])


if __name__ == "__main__":
    from week09_alignment.dpo_train import main

    raise SystemExit(main())
