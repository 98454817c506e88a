"""A small fine-tuning harness: full fine-tuning vs LoRA vs QLoRA on a synthetic task.

The task is character-level arithmetic, ``"7+8=15;"`` and ``"7-8=-1;"`` (one-digit
operands by default: 100 facts per operation),
packed into rows of ``T`` characters. The loss counts only the answer
characters (after ``=`` up to ``;``): the operands are random and cannot be
predicted. ``pretrain`` teaches a tiny GPT addition (our stand-in for the
week05 baseline, which does not exist yet); ``finetune`` then teaches it
subtraction with one of three methods and returns the loss curve, logging
every run through ``shared.MetricsLogger``.

Left out: evaluation by exact-match generation (week05's harness), learning
rate schedules and gradient accumulation (week03's Trainer has them).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from shared import MetricsLogger, new_run_dir
from week01_transformer import GPT, GPTConfig
from week06_lora.lora import inject_lora, trainable_report
from week06_lora.qlora import quantize_model

VOCAB = "0123456789+-=;"
METHODS = ("full", "lora", "qlora")

# ---------------------------------------------------------------- task data


def arithmetic_batch(op: str, batch: int, T: int, gen: torch.Generator,
                     digits: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, targets), both (batch, T); targets are -1 except on answer characters."""
    if op not in "+-" or len(op) != 1:
        raise ValueError(f"op must be '+' or '-', got {op!r}")
    rows_x, rows_y = [], []
    hi = 10**digits
    for _ in range(batch):
        text, answer_mask = "", []
        while len(text) < T + 1:
            a, b = (int(v) for v in torch.randint(0, hi, (2,), generator=gen))
            q, ans = f"{a}{op}{b}=", f"{a + b if op == '+' else a - b};"
            text += q + ans
            answer_mask += [False] * len(q) + [True] * len(ans)
        ids = torch.tensor([VOCAB.index(c) for c in text[: T + 1]])
        mask = torch.tensor(answer_mask[1: T + 1])  # is target t an answer character?
        rows_x.append(ids[:-1])
        rows_y.append(torch.where(mask, ids[1:], torch.full_like(ids[1:], -1)))
    return torch.stack(rows_x), torch.stack(rows_y)  # (B, T) each


def tiny_config(**overrides) -> GPTConfig:
    """The char-tiny GPT (4 layers, 128 channels) over the arithmetic vocabulary."""
    return GPTConfig.preset("char-tiny", vocab_size=len(VOCAB), block_size=64, **overrides)


# ---------------------------------------------------------------- training


@dataclass
class FinetuneConfig:
    method: str = "lora"  # "full", "lora" or "qlora"
    op: str = "-"
    digits: int = 1  # operands 0..9: 100 facts, learnable by a tiny model in a few hundred steps
    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 16
    T: int = 64
    r: int = 16
    alpha: float = 32.0
    seed: int = 0
    log_every: int = 10
    qlora_compute: str = "bfloat16"  # QLoRA's matmul dtype; "float32" where bf16 matmuls are slow

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")


def _train(model: GPT, params, cfg: FinetuneConfig, name: str, progress: bool) -> dict:
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed)
    losses, steps = [], []
    model.train()
    t0 = time.perf_counter()
    with MetricsLogger(new_run_dir(name), config=asdict(cfg), tensorboard=False) as log:
        for step in tqdm(range(cfg.steps), desc=name, disable=not progress, leave=False):
            x, y = arithmetic_batch(cfg.op, cfg.batch_size, cfg.T, gen, digits=cfg.digits)
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % cfg.log_every == 0 or step == cfg.steps - 1:
                losses.append(loss.item())
                steps.append(step)
                log.log(step=step, loss=loss.item())
    model.eval()
    return {"steps": steps, "losses": losses, "seconds": time.perf_counter() - t0,
            "run_dir": str(log.run_dir)}


def pretrain(steps: int = 300, lr: float = 3e-3, seed: int = 0, progress: bool = True) -> GPT:
    """A char-tiny GPT trained on addition: the base model that the methods fine-tune."""
    torch.manual_seed(seed)
    model = GPT(tiny_config())
    cfg = FinetuneConfig(method="full", op="+", steps=steps, lr=lr, seed=seed + 1000)
    _train(model, model.parameters(), cfg, "week06-pretrain", progress)
    return model


def finetune(base: GPT, cfg: FinetuneConfig, progress: bool = True) -> dict:
    """Fine-tune a copy of ``base`` on ``cfg.op`` with ``cfg.method``; returns the loss curve."""
    model = copy.deepcopy(base)
    if cfg.method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        if cfg.method == "qlora":
            quantize_model(model, compute_dtype=getattr(torch, cfg.qlora_compute))
        inject_lora(model, r=cfg.r, alpha=cfg.alpha)
    report = trainable_report(model)
    params = [p for p in model.parameters() if p.requires_grad]
    out = _train(model, params, cfg, f"week06-{cfg.method}-lr{cfg.lr:g}", progress)
    out.update(method=cfg.method, lr=cfg.lr, trainable=report.trainable, model=model)
    return out
