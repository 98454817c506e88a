"""Progress & Compress (Schwarz et al. 2018, arXiv:1805.06370): learn each task in an
active column, then distil it into a knowledge base protected by online EWC.

For every task:

1. **progress**: the active column, a copy of the knowledge base (KB), is fine-tuned
   on the task alone (plain cross-entropy, week07's ``train_task``);
2. **compress**: the KB is trained to match the active column on the task's inputs,

       L = T^2 * KL( p_active(. | x; T) || p_KB(. | x; T) )  +  online-EWC penalty(KB)

   (``distill_loss``, averaged over the scored positions; the task's labels are not
   used), then the KB's Fisher is folded into the running one
   (``EWC(online=True)``, F~ = gamma F~ + F, anchor at the new KB, week07's ``ewc.py``).

The KB is what is evaluated: one model, no task id. ``PCHooks`` runs it inside week07's
``run_stream``: ``before_task`` does the progress phase, the runner's training of the
task is the compress phase (the hooks' loss_fn), ``after_task`` consolidates.

Left out: the lateral (adaptor) connections from the KB into the active column (here
the column starts as a copy of the KB, which gives the same forward transfer in the
simplest form) and the active column's reset schedule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from week07_continual import EWC, StreamHooks, TrainConfig, collate, train_task

# ---------------------------------------------------------------- the distillation loss


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor,
                 temperature: float = 1.0) -> torch.Tensor:
    """T^2 * mean over scored positions (y >= 0) of KL(softmax(teacher/T) || softmax(student/T));
    logits (B, T, V), y (B, T)."""
    keep = y >= 0  # (B, T)
    t = torch.log_softmax(teacher_logits.detach().float()[keep] / temperature, -1)  # (N, V)
    s = torch.log_softmax(student_logits.float()[keep] / temperature, -1)
    return temperature ** 2 * (t.exp() * (t - s)).sum(-1).mean()


@torch.no_grad()
def kl_to(teacher, student, examples: list[dict], batch_size: int = 64) -> float:
    """Mean KL(teacher || student) over the scored positions of ``examples``."""
    device = next(student.parameters()).device
    was_t, was_s = teacher.training, student.training
    teacher.eval()
    student.eval()
    total, n = 0.0, 0
    try:
        for s in range(0, len(examples), batch_size):
            x, y = collate(examples[s:s + batch_size], None, device)
            k = int((y >= 0).sum())
            total += float(distill_loss(student(x), teacher(x), y)) * k
            n += k
    finally:
        teacher.train(was_t)
        student.train(was_s)
    return total / max(n, 1)


# ---------------------------------------------------------------- the strategy


@dataclass
class PCConfig:
    ewc_lambda: float = 2000.0
    gamma: float = 0.9
    fisher_examples: int = 32
    temperature: float = 1.0
    progress_lr: float | None = None  # the active column's (None: the train config's lr)
    lr: float | None = None  # the knowledge base's during compress


class PCHooks(StreamHooks):
    """Progress & Compress inside week07's ``run_stream`` (the model there is the KB)."""

    def __init__(self, train: TrainConfig, cfg: PCConfig | None = None):
        self.cfg, self.train = cfg or PCConfig(), train
        self.lr = self.cfg.lr
        self.ewc = EWC(self.cfg.ewc_lambda, online=True, gamma=self.cfg.gamma,
                       max_examples=self.cfg.fisher_examples)
        self.active = None
        self.active_bytes = 0
        self.kl_before: list[float] = []
        self.kl_after: list[float] = []

    def before_task(self, model, i, task, rng):
        self.active = copy.deepcopy(model)  # progress: a column that starts from the KB
        for p in self.active.parameters():
            p.requires_grad_(True)
        train_task(self.active, task, self.train, rng, lr=self.cfg.progress_lr, progress=False,
                   desc=f"progress: {task.name}")
        self.active.eval()
        for p in self.active.parameters():
            p.requires_grad_(False)
        self.active_bytes = sum(p.numel() * p.element_size() for p in self.active.parameters())
        self.kl_before.append(kl_to(self.active, model, task.test))

    def loss_fn(self, default):
        active, ewc, T = self.active, self.ewc, self.cfg.temperature

        def loss(model, batch):  # compress: match the active column, stay near the old KB
            x, y = batch
            with torch.no_grad():
                teacher = active(x)  # (B, T, V)
            kl = distill_loss(model(x), teacher, y, T)
            if not ewc.terms:
                return kl, {"kl": kl.detach()}
            pen = ewc.penalty(model)
            return kl + pen, {"kl": kl.detach(), "ewc_penalty": pen.detach()}
        return loss

    def after_task(self, model, i, task, rng):
        self.kl_after.append(kl_to(self.active, model, task.test))
        device = next(model.parameters()).device
        exs = [task.train[rng.randrange(len(task.train))] for _ in range(self.cfg.fisher_examples)]
        batches = (collate(exs[s:s + 16], None, device) for s in range(0, len(exs), 16))
        self.ewc.consolidate(model, batches)
        self.active = None  # the column is rebuilt from the KB for the next task

    def nbytes(self) -> int:
        return self.ewc.nbytes() + self.active_bytes  # the Fisher + anchor, and the column

    def details(self) -> dict:
        return {"kl_before_compress": self.kl_before, "kl_after_compress": self.kl_after}
