"""GRPO (DeepSeekMath, arXiv:2402.03300; DeepSeek-R1): group-relative policy optimization.

For each prompt, sample a group of G completions, score each with a verifier,
and use the reward minus the group's mean (divided by a std) as every token's
advantage; no value network. The loss is PPO's clipped surrogate on the
per-token importance ratio exp(logp - logp_old), plus ``beta`` times the k3
estimate of KL(pi || pi_ref) (times the ratio, TRL's default bias correction), aggregated over tokens as TRL 1.16's
``GRPOTrainer._compute_loss`` does (the tests run TRL's method on the same
inputs):

- ``group_advantages(rewards, G, scale)``: (r - group mean) / (std + 1e-4),
  the std being the group's or the whole batch's (Bessel-corrected, TRL's
  ``nanstd``), or none;
- ``grpo_loss(...)``: ``grpo`` (mean over each sequence, then over sequences),
  ``bnpo`` (mean over the batch's tokens), ``dr_grpo`` (sum / (N * max
  completion length)), ``dapo`` (sum / the generation batch's token count,
  TRL's default);
- ``sample_groups(...) -> Rollout``: G samples per prompt through week04's
  ``generate_with_tools`` (week01's one decoding loop, KV cache, tool calls run
  and their outputs forced in), the training tensors (left-padded prompt then
  right-padded completion), the tool mask (forced tokens out of the loss), old
  and reference log-probs at the sampling temperature, rewards, advantages;
- ``RolloutLoader``: week03's Trainer loader; a fresh rollout every
  ``num_iterations`` batches, the same one handed back in between (so the ratio
  moves off 1), resumable exactly; ``GRPOLoss``: the Trainer's loss_fn;
- the reference for ``beta > 0``: ``frozen_reference`` (a frozen copy) or
  ``LoraReference`` (the same model with week06's adapters switched off).

Left out: vLLM-style separate generation servers, sequence-level importance
sampling (GSPO), entropy masks and bonuses, truncated-completion masking,
multi-GPU gathering.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, fields

import torch

from week04_modern_arch_tools import generate_with_tools
from week09_alignment.logprobs import token_logprobs

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALES = ("group", "batch", "none")
STD_EPS = 1e-4  # TRL adds it to the std before dividing


@dataclass
class GRPOConfig:
    group_size: int = 8              # G completions per prompt (TRL: num_generations)
    num_iterations: int = 1          # mu: optimizer steps on one rollout
    epsilon: float = 0.2             # clip below: ratio >= 1 - epsilon
    epsilon_high: float | None = None  # clip above (DAPO's clip-higher); None: = epsilon
    beta: float = 0.0                # KL coefficient (TRL's default 0: no reference needed)
    kl_ratio_correction: bool = True  # KL term times the ratio (TRL's use_bias_correction_kl)
    loss_type: str = "dapo"          # grpo | bnpo | dr_grpo | dapo
    scale_rewards: str = "group"     # group | batch | none
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 64         # TRL: max_completion_length
    prompts_per_step: int = 4        # rollout = prompts_per_step * group_size completions
    lr: float = 1e-5
    steps: int = 100

    def __post_init__(self):
        problems = []
        if self.group_size < 2:
            problems.append(f"group_size must be >= 2 (a group needs a baseline), got {self.group_size}")
        for name in ("num_iterations", "max_new_tokens", "prompts_per_step", "steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.epsilon < 0 or (self.epsilon_high is not None and self.epsilon_high < 0):
            problems.append(f"epsilon / epsilon_high must be >= 0, got {self.epsilon}, {self.epsilon_high}")
        if self.beta < 0:
            problems.append(f"beta must be >= 0, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            problems.append(f"loss_type {self.loss_type!r} unknown; valid: {', '.join(LOSS_TYPES)}")
        if self.scale_rewards not in SCALES:
            problems.append(f"scale_rewards {self.scale_rewards!r} unknown; valid: {', '.join(SCALES)}")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0 (a group of greedy samples is one sample), "
                            f"got {self.temperature}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if problems:
            raise ValueError("bad GRPOConfig: " + "; ".join(problems))

    @property
    def eps_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


# ---------------------------------------------------------------- advantages


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group") -> torch.Tensor:
    """(N,) advantages of (N,) rewards laid out group after group (N = prompts * G).

    Worked example (the test): rewards [1, 0, 0, 1 | 1, 1, 1, 0], G = 4. Group
    means 0.5 and 0.75; Bessel stds sqrt(1/3) = 0.5774 and 0.5; so "group" gives
    [0.866, -0.866, -0.866, 0.866, 0.5, 0.5, 0.5, -1.5] (each / (std + 1e-4)).
    """
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be (N,) with N a multiple of group_size={group_size}, "
                         f"got shape {tuple(rewards.shape)}")
    if scale not in SCALES:
        raise ValueError(f"scale {scale!r} unknown; valid: {', '.join(SCALES)}")
    r = rewards.float().view(-1, group_size)  # (P, G)
    adv = (r - r.mean(dim=1, keepdim=True)).flatten()  # (N,)
    if scale == "group":
        std = r.std(dim=1, keepdim=True).expand_as(r).flatten()  # (N,) unbiased
    elif scale == "batch":
        std = rewards.float().std().expand_as(adv)  # (N,)
    else:
        return adv
    return adv / (std + STD_EPS)


# ---------------------------------------------------------------- the loss


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, ref_logps: torch.Tensor | None = None,
              cfg: GRPOConfig | None = None, num_items: float | torch.Tensor | None = None
              ) -> tuple[torch.Tensor, dict]:
    """(scalar loss, metrics) from (N, Tc) per-completion-token log-probs (see the module doc).

    ``mask`` is 1 on the completion tokens that train (completion mask times
    tool mask); ``num_items`` is dapo's normalizer, the number of such tokens in
    the whole generation batch (default: ``mask.sum()``).
    """
    cfg = cfg or GRPOConfig()
    if not (logps.shape == old_logps.shape == mask.shape) or logps.dim() != 2:
        raise ValueError(f"logps, old_logps and mask must be (N, Tc) of one shape, got "
                         f"{tuple(logps.shape)}, {tuple(old_logps.shape)}, {tuple(mask.shape)}")
    if cfg.beta > 0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps (the reference model's log-probs)")
    mask = mask.to(logps.dtype)
    adv = advantages.to(logps.dtype)
    adv = adv[:, None] if adv.dim() == 1 else adv  # (N, 1)
    ratio = torch.exp(logps - old_logps)  # (N, Tc)
    clipped = torch.clamp(ratio, 1 - cfg.epsilon, 1 + cfg.eps_high)  # (N, Tc)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (N, Tc)
    kl = None
    if cfg.beta > 0:
        d = ref_logps - logps  # (N, Tc)
        kl = torch.exp(d) - d - 1  # (N, Tc) k3 estimator, an estimate under pi_old's samples
        if cfg.kl_ratio_correction:  # importance-weight it to pi's: unbiased when mu > 1
            kl = kl * ratio
        per_token = per_token + cfg.beta * kl
    masked = per_token * mask  # (N, Tc)
    if cfg.loss_type == "grpo":
        loss = (masked.sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    elif cfg.loss_type == "bnpo":
        loss = masked.sum() / mask.sum().clamp(min=1.0)
    elif cfg.loss_type == "dr_grpo":
        loss = masked.sum() / (logps.size(0) * cfg.max_new_tokens)
    else:  # dapo
        n = mask.sum() if num_items is None else torch.as_tensor(num_items, dtype=logps.dtype)
        loss = masked.sum() / n.clamp(min=1.0)

    with torch.no_grad():
        tokens = mask.sum().clamp(min=1.0)
        low = ((ratio < 1 - cfg.epsilon) & (adv < 0)).to(mask.dtype)
        high = ((ratio > 1 + cfg.eps_high) & (adv > 0)).to(mask.dtype)
        metrics = {"clip_ratio": float(((low + high).clamp(max=1) * mask).sum() / tokens),
                   "clip_low": float((low * mask).sum() / tokens),
                   "clip_high": float((high * mask).sum() / tokens),
                   "ratio_mean": float((ratio * mask).sum() / tokens)}
        if kl is not None:
            metrics["kl"] = float((kl * mask).sum() / tokens)
    return loss, metrics


# ---------------------------------------------------------------- rollouts


@dataclass
class Rollout:
    """One generation batch, N = prompts * G rows, Tp prompt + Tc completion columns."""

    ids: torch.Tensor              # (N, Tp + Tc) left-padded prompt, then right-padded completion
    pad: torch.Tensor              # (N,) left padding of each prompt
    prompt_len: int                # Tp
    completion_mask: torch.Tensor  # (N, Tc) 1 on completion tokens (through <|assistant_end|>)
    tool_mask: torch.Tensor        # (N, Tc) 0 on tokens a tool output forced in
    old_logps: torch.Tensor        # (N, Tc) at sampling time, at the sampling temperature
    rewards: torch.Tensor          # (N,)
    advantages: torch.Tensor       # (N,)
    ref_logps: torch.Tensor | None = None  # (N, Tc) when beta > 0

    @property
    def loss_mask(self) -> torch.Tensor:
        return self.completion_mask * self.tool_mask  # (N, Tc)

    def batch(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        d["num_items"] = self.loss_mask.sum()
        return d

    @classmethod
    def from_batch(cls, d: dict) -> Rollout:
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


def completion_logps(model, ids: torch.Tensor, pad: torch.Tensor, prompt_len: int,
                     temperature: float = 1.0) -> torch.Tensor:
    """(N, Tc) log-probs of the completion tokens ids[:, prompt_len:]."""
    lp = token_logprobs(model, ids, temperature, pad=pad)  # (N, T - 1)
    return lp[:, prompt_len - 1:]  # (N, Tc)


def sample_groups(model, tokenizer, examples: list[dict], cfg: GRPOConfig, tools: dict,
                  seed: int = 0, reward_fn=None, reference=None) -> Rollout:
    """G samples per example, scored by ``reward_fn(example, run) -> float`` (default:
    ``rewards.reward``), as a ``Rollout``. ``reference`` (a model) gives ``ref_logps``."""
    if not examples:
        raise ValueError("sample_groups needs at least one example")
    if reward_fn is None:
        from week09_alignment.rewards import reward
        reward_fn = lambda ex, run: reward(ex, run, tokenizer)  # noqa: E731
    G = cfg.group_size
    prompts = [ex["prompt"] for ex in examples for _ in range(G)]
    runs = generate_with_tools(model, tokenizer, prompts, tools, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                               seed=seed)
    N = len(runs)
    Tp = max(len(r.prompt) for r in runs)
    Tc = max(1, max(len(r.ids) for r in runs))
    ids = torch.zeros(N, Tp + Tc, dtype=torch.long)  # (N, Tp + Tc); 0 pads, masked out
    cmask = torch.zeros(N, Tc)  # (N, Tc)
    tmask = torch.ones(N, Tc)   # (N, Tc)
    pad = torch.zeros(N, dtype=torch.long)  # (N,)
    for i, r in enumerate(runs):
        p = len(r.prompt)
        pad[i] = Tp - p
        ids[i, Tp - p:Tp] = torch.tensor(r.prompt)
        if r.ids:
            ids[i, Tp:Tp + len(r.ids)] = torch.tensor(r.ids)
            cmask[i, :len(r.ids)] = 1.0
            tmask[i, :len(r.ids)] = 1.0 - torch.tensor(r.forced, dtype=torch.float)
    rewards = torch.tensor([float(reward_fn(ex, run)) for ex, run in
                            zip((ex for ex in examples for _ in range(G)), runs)])  # (N,)
    device = next(model.parameters()).device
    with torch.no_grad():
        old = completion_logps(model, ids.to(device), pad.to(device), Tp, cfg.temperature).cpu()
        ref = None
        if cfg.beta > 0:
            if reference is None:
                raise ValueError("beta > 0 needs a reference model (frozen_reference(model) or "
                                 "LoraReference(model))")
            ref = completion_logps(reference, ids.to(device), pad.to(device), Tp,
                                   cfg.temperature).cpu()
    return Rollout(ids, pad, Tp, cmask, tmask, old, rewards,
                   group_advantages(rewards, G, cfg.scale_rewards), ref)


# ---------------------------------------------------------------- references


def frozen_reference(model):
    """A frozen copy of ``model`` (eval mode, no grads): pi_ref for beta > 0."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class LoraReference:
    """The LoRA-trained ``model`` with every week06 adapter switched off: the base as pi_ref,
    without a second copy of the weights."""

    def __init__(self, model):
        self.model = model

    def parameters(self):
        return self.model.parameters()

    def __call__(self, *args, **kwargs):
        from week06_lora.lora import active_adapters, set_active_adapters
        active = active_adapters(self.model)
        set_active_adapters(self.model, [])
        try:
            with torch.no_grad():
                return self.model(*args, **kwargs)
        finally:
            set_active_adapters(self.model, active)


# ---------------------------------------------------------------- Trainer pieces


class RolloutLoader:
    """week03 Trainer loader: ``next_batch()`` samples a rollout of ``prompts_per_step``
    examples every ``num_iterations`` calls and hands it back in between."""

    def __init__(self, model, tokenizer, examples: list[dict], cfg: GRPOConfig, tools: dict,
                 seed: int = 0, reward_fn=None, reference=None):
        if not examples:
            raise ValueError("RolloutLoader needs at least one example")
        self.model, self.tokenizer, self.examples, self.cfg = model, tokenizer, examples, cfg
        self.tools, self.reward_fn, self.reference = tools, reward_fn, reference
        self.rng = random.Random(seed)
        self.calls = 0
        self.rollout: Rollout | None = None
        self.rollouts = 0

    def _draw(self) -> list[dict]:
        k = self.cfg.prompts_per_step
        if k <= len(self.examples):
            return self.rng.sample(self.examples, k)
        return [self.examples[self.rng.randrange(len(self.examples))] for _ in range(k)]

    def next_batch(self) -> dict:
        if self.calls % self.cfg.num_iterations == 0 or self.rollout is None:
            examples = self._draw()
            seed = self.rng.randrange(2**31)
            self.rollout = sample_groups(self.model, self.tokenizer, examples, self.cfg, self.tools,
                                         seed, self.reward_fn, self.reference)
            self.rollouts += 1
        self.calls += 1
        return self.rollout.batch()

    def state_dict(self) -> dict:
        ro = None if self.rollout is None else self.rollout.batch()
        return {"rng": self.rng.getstate(), "calls": self.calls, "rollouts": self.rollouts,
                "rollout": ro}

    def load_state_dict(self, state: dict) -> None:
        v, inner, gauss = state["rng"]
        self.rng.setstate((v, tuple(inner), gauss))
        self.calls, self.rollouts = int(state["calls"]), int(state["rollouts"])
        ro = state.get("rollout")
        self.rollout = None if ro is None else Rollout.from_batch(ro)


class GRPOLoss:
    """The Trainer's ``loss_fn(model, batch)`` over a ``Rollout.batch()`` dict."""

    def __init__(self, cfg: GRPOConfig, reference=None):
        self.cfg, self.reference = cfg, reference

    def __call__(self, model, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg, Tp = self.cfg, int(batch["prompt_len"])
        logps = completion_logps(model, batch["ids"], batch["pad"], Tp, cfg.temperature)  # (N, Tc)
        ref = batch.get("ref_logps")
        if cfg.beta > 0 and ref is None:
            if self.reference is None:
                raise ValueError("beta > 0 needs ref_logps in the batch or GRPOLoss(reference=...)")
            with torch.no_grad():
                ref = completion_logps(self.reference, batch["ids"], batch["pad"], Tp,
                                       cfg.temperature)
        mask = batch["completion_mask"] * batch["tool_mask"]  # (N, Tc)
        loss, metrics = grpo_loss(logps, batch["old_logps"], batch["advantages"], mask, ref, cfg,
                                  batch["num_items"])
        r = batch["rewards"].float()
        G = cfg.group_size
        metrics.update(reward_mean=float(r.mean()), reward_std=float(r.std()) if r.numel() > 1 else 0.0,
                       frac_zero_std=float((r.view(-1, G).std(dim=1) < 1e-6).float().mean()),
                       completion_len=float(batch["completion_mask"].sum(-1).mean()))
        return loss, metrics


if __name__ == "__main__":  # python -m week09_alignment.grpo: the command
    from week09_alignment.grpo_train import main
    raise SystemExit(main())
