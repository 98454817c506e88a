"""A small fine-tuning harness: full fine-tuning vs LoRA vs QLoRA on a synthetic task.

The task is character-level arithmetic, ``"7+8=15;"`` and ``"7-8=-1;"`` (one-digit
operands by default: 100 facts per operation), written one after another into
rows of ``T`` characters (a stream cut into rows, so a problem may straddle two
rows). The loss counts only the answer characters (after ``=`` up to ``;``):
the operands are random and cannot be predicted; ``shared.pad_batch`` turns
each row and its answer mask into (x, y) with ``IGNORE_INDEX`` elsewhere.
``pretrain`` teaches a tiny GPT addition (our stand-in for the week05
baseline); ``finetune`` then teaches it subtraction with one of three methods
and returns the loss curve. Both train through week03's ``Trainer``: every
parameter for full fine-tuning, ``params=`` only the LoRA matrices for LoRA
and QLoRA; ``torch.optim.AdamW`` at a constant learning rate, no clipping,
each run logged through ``shared.MetricsLogger``.

Left out: evaluation by exact-match generation (week05's harness), learning
rate schedules and gradient accumulation (the Trainer has them; the
comparison keeps the plain setting so the three methods differ in one thing).
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch

from shared import new_run_dir, pad_batch
from week01_transformer import GPT, GPTConfig
from week03_training import TrainConfig, Trainer
from week06_lora.lora import inject_lora, trainable_report
from week06_lora.qlora import quantize_model

VOCAB = "0123456789+-=;"
METHODS = ("full", "lora", "qlora")

# ---------------------------------------------------------------- task data


def arithmetic_batch(op: str, batch: int, T: int, gen: torch.Generator,
                     digits: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """(idx, targets), both (batch, T); targets are IGNORE_INDEX except on answer characters."""
    if op not in "+-" or len(op) != 1:
        raise ValueError(f"op must be '+' or '-', got {op!r}")
    rows, masks = [], []
    hi = 10**digits
    for _ in range(batch):
        text, answer_mask = "", []
        while len(text) < T + 1:
            a, b = (int(v) for v in torch.randint(0, hi, (2,), generator=gen))
            q, ans = f"{a}{op}{b}=", f"{a + b if op == '+' else a - b};"
            text += q + ans
            answer_mask += [0] * len(q) + [1] * len(ans)
        rows.append([VOCAB.index(c) for c in text[: T + 1]])
        masks.append(answer_mask[: T + 1])  # is character i an answer character?
    return pad_batch(rows, masks)  # (B, T) each


class ArithmeticBatches:
    """``arithmetic_batch`` as a week03 loader: ``next_batch`` and a resumable generator."""

    def __init__(self, cfg: FinetuneConfig, op: str | None = None):
        self.op, self.batch, self.T, self.digits = op or cfg.op, cfg.batch_size, cfg.T, cfg.digits
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return arithmetic_batch(self.op, self.batch, self.T, self.gen, digits=self.digits)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])


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
    """``cfg.steps`` steps of ``params`` through week03's Trainer; the loss every ``log_every``."""
    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, block_size=cfg.T,
                     optimizer="torch-adamw", lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999),
                     schedule="constant", warmup_steps=0, grad_clip=0.0, eval_every=0,
                     log_every=cfg.log_every, ckpt_every=0, save_final=False, progress=progress,
                     seed=cfg.seed, extra=asdict(cfg))
    trainer = Trainer(model, ArithmeticBatches(cfg), tc, params=list(params),
                      run_dir=new_run_dir(name), desc=name)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    model.eval()
    steps = [s for s in range(cfg.steps) if s % cfg.log_every == 0 or s == cfg.steps - 1]
    return {"steps": steps, "losses": [trainer.history[s] for s in steps], "seconds": seconds,
            "run_dir": str(trainer.run_dir)}


def pretrain(steps: int = 300, lr: float = 3e-3, seed: int = 0, progress: bool = True) -> GPT:
    """A char-tiny GPT trained on addition: the base model that the methods fine-tune."""
    torch.manual_seed(seed)
    model = GPT(tiny_config())
    cfg = FinetuneConfig(method="full", op="+", steps=steps, lr=lr, seed=seed + 1000)
    _train(model, list(model.parameters()), cfg, "week06-pretrain", progress)
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
    if cfg.method == "full":
        params = list(model.parameters())
    else:  # only the adapters' matrices (inject_lora froze the rest)
        params = [p for n, p in model.named_parameters() if ".lora." in n]
    out = _train(model, params, cfg, f"week06-{cfg.method}-lr{cfg.lr:g}", progress)
    out.update(method=cfg.method, lr=cfg.lr, trainable=report.trainable, model=model)
    return out
