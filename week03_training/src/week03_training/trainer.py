"""The training loop every later week uses: ``TrainConfig`` + ``Trainer``.

``Trainer(model, train_loader, cfg)`` trains any ``shared.LanguageModel``
(``forward(idx) -> logits``) on batches from a week02 ``TokenLoader`` (or
anything with ``next_batch()``, ``state_dict()`` and ``load_state_dict()``):

- optimizer: our ``AdamW``, our ``Muon`` (AdamW for embeddings, head, norms,
  biases), or ``torch.optim.AdamW`` as the reference ("torch-adamw");
- LR schedule (warmup + cosine, WSD or constant), gradient clipping by global
  norm, gradient accumulation over ``grad_accum`` micro-batches;
- bf16 autocast on CPU and CUDA with fp32 master weights (the parameters and
  optimizer state stay fp32; only the matmuls run in bf16);
- optional ``torch.compile``;
- periodic validation loss and bits-per-byte, metrics through
  ``shared.MetricsLogger``, a tqdm bar with tokens/s and ETA;
- checkpoints (model, optimizer, scheduler, loader, RNG states, step, config,
  the loss history) written atomically through ``shared.save_checkpoint``
  every ``ckpt_every`` steps and when SIGINT/SIGTERM arrives; ``resume()``
  continues bit-exactly on the CPU (and drops the metrics rows logged after
  the checkpoint, which the resumed run logs again). Only the last
  ``keep_last`` are kept.

Left out: multi-GPU (DDP/FSDP, week11), fp16 loss scaling (bf16 needs none),
and early stopping. ``NANOCHAT_KILL_AT_STEP=k`` is a test hook: the process
SIGKILLs itself right after the checkpoint of step ``k`` is written.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import signal
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from shared import MetricsLogger, load_checkpoint, new_run_dir, save_checkpoint
from shared.checkpoint import CheckpointError, check_state_dict
from shared.metrics import truncate_metrics
from week03_training.flops import flops_per_token, peak_flops
from week03_training.optim import AdamW, Muon, muon_param_groups
from week03_training.schedule import LRScheduler, ScheduleConfig

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "clip_grad_norm", "latest_checkpoint",
           "OPTIMIZERS", "DTYPES"]

OPTIMIZERS = ("adamw", "muon", "torch-adamw")
DTYPES = ("fp32", "bf16")
CKPT_KIND = "week03-train"
KILL_HOOK_ENV = "NANOCHAT_KILL_AT_STEP"

# keys of TrainConfig that may change between a checkpoint and its resume
_RESUMABLE_CHANGES = {"steps", "eval_every", "eval_batches", "log_every", "ckpt_every",
                      "keep_last", "progress", "compile", "device", "extra"}


# ----------------------------------------------------------------------------- config


@dataclass
class TrainConfig:
    steps: int = 100                   # optimizer steps in the whole run
    batch_size: int = 8                # sequences per micro-batch
    block_size: int = 64               # tokens per sequence
    grad_accum: int = 1                # micro-batches per optimizer step
    optimizer: str = "adamw"           # adamw | muon | torch-adamw
    lr: float = 3e-3                   # AdamW lr (and Muon's AdamW side)
    muon_lr: float = 0.02              # Muon lr for hidden matrices
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    schedule: str = "cosine"           # cosine | wsd | constant
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    decay_frac: float = 0.2            # WSD cool-down fraction
    grad_clip: float = 1.0             # 0 disables clipping
    dtype: str = "fp32"                # fp32 | bf16 (autocast; weights stay fp32)
    compile: bool = False
    device: str = "cpu"
    seed: int = 0
    eval_every: int = 50               # 0 disables validation
    eval_batches: int = 4
    log_every: int = 1
    ckpt_every: int = 0                # 0: only at the end and on signals
    keep_last: int = 3
    progress: bool = True
    extra: dict = field(default_factory=dict)   # free-form notes saved with the run

    def __post_init__(self):
        self.betas = tuple(self.betas)
        problems = []
        for name in ("steps", "batch_size", "block_size", "grad_accum", "keep_last",
                     "eval_batches", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "eval_every", "ckpt_every", "seed"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.lr <= 0 or self.muon_lr <= 0:
            problems.append(f"lr and muon_lr must be > 0, got {self.lr}, {self.muon_lr}")
        if self.grad_clip < 0:
            problems.append(f"grad_clip must be >= 0, got {self.grad_clip}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer {self.optimizer!r} unknown; valid: {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPES:
            problems.append(f"dtype {self.dtype!r} unknown; valid: {', '.join(DTYPES)}")
        if problems:
            raise ValueError("bad TrainConfig: " + "; ".join(problems))
        self.schedule_config()  # validates the schedule fields

    def schedule_config(self) -> ScheduleConfig:
        return ScheduleConfig(kind=self.schedule, warmup_steps=self.warmup_steps,
                              total_steps=self.steps, min_ratio=self.min_lr_ratio,
                              decay_frac=self.decay_frac)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.block_size * self.grad_accum

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class TrainingInterrupted(Exception):
    """Raised by ``Trainer.fit`` after a signal: the checkpoint is already written."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; "
                         f"checkpoint: {path}")


# ----------------------------------------------------------------------------- helpers


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


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The highest-step ``step_*.safetensors`` in ``folder`` (temp files ignored), or None."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in folder.glob("step_*.safetensors")
             if (m := re.fullmatch(r"step_(\d+)\.safetensors", p.name))]
    return max(found)[1] if found else None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


def model_config_of(model: torch.nn.Module) -> dict:
    """A JSON-able description of ``model`` (its dataclass config if it has one)."""
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "__dataclass_fields__"):
        out = asdict(cfg)
    elif isinstance(cfg, dict):
        out = dict(cfg)
    else:
        out = {}
    out["class"] = type(model).__name__
    out["n_params"] = sum(p.numel() for p in model.parameters())
    return out


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` on ``train_loader`` under ``cfg``; see the module docstring.

    ``run_dir`` holds ``metrics.jsonl`` and ``checkpoints/`` (a fresh
    ``runs/week03-train-<time>`` when None). ``token_bytes`` (from
    ``week02_bpe.token_bytes(tokenizer)``) turns the validation loss into
    bits per byte. ``history`` is the list of training losses, one per step.
    """

    def __init__(self, model: torch.nn.Module, train_loader, cfg: TrainConfig | None = None, *,
                 val_loader=None, token_bytes: torch.Tensor | None = None,
                 run_dir: str | os.PathLike | None = None, logger: MetricsLogger | None = None):
        self.cfg = cfg = cfg or TrainConfig()
        self.device = torch.device(cfg.device)
        self.raw_model = model.to(self.device)
        self.model = torch.compile(self.raw_model) if cfg.compile else self.raw_model
        self.train_loader, self.val_loader = train_loader, val_loader
        self._val_start = val_loader.state_dict() if val_loader is not None else None
        self.token_bytes = token_bytes.to(self.device) if token_bytes is not None else None
        self.optimizer = build_optimizer(self.raw_model, cfg)
        self.scheduler = LRScheduler(self.optimizer, cfg.schedule_config())
        self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir("week03-train")
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._logger = logger
        self.step = 0
        self.history: list[float] = []
        self.flops_per_token = flops_per_token(self.raw_model, cfg.block_size)
        self.peak = peak_flops(self.device, torch.bfloat16 if cfg.dtype == "bf16" else torch.float32)
        self._signal: int | None = None

    # ------------------------------------------------------------------ one step

    def autocast(self):
        """bf16 autocast on this device when ``dtype == "bf16"``, else a no-op."""
        if self.cfg.dtype != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def loss_on(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the model's next-token logits on (x, y), computed in fp32.

        Negative targets are not trained: -1 (the project's mask value, as in
        week01's ``GPT.loss`` and week04's chat collate) and PyTorch's -100 alike.
        """
        with self.autocast():
            logits = self.model(x)                                   # (B, T, V)
        return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                               y.reshape(-1).clamp(min=-1), ignore_index=-1, reduction=reduction)

    def train_step(self, batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches (drawn from the loader if None).

        Each micro-batch loss is divided by the number of micro-batches, so the
        summed gradients equal those of one batch that holds them all.
        """
        self.model.train()
        if batches is None:
            batches = [self.train_loader.next_batch() for _ in range(self.cfg.grad_accum)]
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for x, y in batches:
            x, y = x.to(self.device), y.to(self.device)                # (B, T) each
            loss = self.loss_on(x, y) / len(batches)
            loss.backward()
            total += loss.item()
        norm = (clip_grad_norm(self.raw_model.parameters(), self.cfg.grad_clip)
                if self.cfg.grad_clip > 0 else _grad_norm(self.raw_model.parameters()))
        lr_mult = self.scheduler.apply()
        self.optimizer.step()
        self.scheduler.advance()
        self.step += 1
        self.history.append(total)
        return {"loss": total, "grad_norm": float(norm), "lr": self.optimizer.param_groups[0]["lr"],
                "lr_mult": lr_mult}

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict:
        """Validation loss (nats/token) and, with ``token_bytes``, bits per byte.

        The val loader is rewound to its starting state first, so every
        evaluation sees the same batches and does not disturb training.
        """
        if self.val_loader is None:
            raise ValueError("evaluate() needs a val_loader; pass val_loader= to Trainer")
        self.val_loader.load_state_dict(self._val_start)
        self.model.eval()
        nats, targets = [], []
        for _ in range(batches or self.cfg.eval_batches):
            x, y = self.val_loader.next_batch()
            x, y = x.to(self.device), y.to(self.device)
            nats.append(self.loss_on(x, y, reduction="none"))        # (B*T,)
            targets.append(y.reshape(-1))
        nats_t, targets_t = torch.cat(nats), torch.cat(targets)
        out = {"val_loss": nats_t.mean().item()}
        if self.token_bytes is not None:
            from week02_bpe import bits_per_byte
            out["val_bpb"] = float(bits_per_byte(nats_t, targets_t, self.token_bytes))
        self.model.train()
        return out

    # ------------------------------------------------------------------ the loop

    def fit(self, steps: int | None = None) -> list[float]:
        """Train until ``cfg.steps`` (or ``steps`` more, if given); returns ``history``.

        SIGINT/SIGTERM finish the current step, write a checkpoint and raise
        ``TrainingInterrupted``. A final checkpoint is written at the end.
        """
        cfg = self.cfg
        end = cfg.steps if steps is None else min(cfg.steps, self.step + steps)
        logger = self._logger or MetricsLogger(self.run_dir, config=self.describe())
        old_handlers = self._install_signal_handlers()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress,
                   unit="step", dynamic_ncols=True, desc="train")
        kill_at = int(os.environ.get(KILL_HOOK_ENV, "-1"))
        try:
            while self.step < end:
                t0 = time.perf_counter()
                info = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                tok_s = cfg.tokens_per_step / dt
                row = {**info, "tokens": self.step * cfg.tokens_per_step, "tok_per_s": tok_s,
                       "step_time": dt}
                if self.peak:
                    row["mfu"] = self.flops_per_token * tok_s / self.peak
                if cfg.eval_every and self.val_loader is not None and (
                        self.step % cfg.eval_every == 0 or self.step == end):
                    row.update(self.evaluate())
                if self.step % cfg.log_every == 0 or "val_loss" in row or self.step == end:
                    logger.log(step=self.step, **row)
                bar.update(1)
                bar.set_postfix(refresh=False, loss=f"{info['loss']:.4f}", tok_s=f"{tok_s:,.0f}",
                                **({"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}))
                if not math.isfinite(info["loss"]):
                    raise FloatingPointError(f"loss is {info['loss']} at step {self.step}: lower "
                                             "the lr or use grad_clip")
                if self._signal is not None:
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(self._signal, self.step, path)
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
                    if self.step == kill_at:                       # test hook: die like a crash
                        os.kill(os.getpid(), signal.SIGKILL)
            if self.latest() is None or _step_of(self.latest()) != self.step:
                self.save_checkpoint()
        finally:
            bar.close()
            self._restore_signal_handlers(old_handlers)
            if self._logger is None:
                logger.close()
        return self.history

    def _install_signal_handlers(self) -> dict:
        self._signal = None

        def handler(signum, frame):
            self._signal = signum
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT
                          else signal.SIG_DFL)   # a second signal stops at once

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old[sig] = signal.signal(sig, handler)
            except ValueError:   # not the main thread: no handlers, no graceful stop
                pass
        return old

    @staticmethod
    def _restore_signal_handlers(old: dict) -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    # ------------------------------------------------------------------ checkpoints

    def describe(self) -> dict:
        return {"train": self.cfg.to_dict(), "model": model_config_of(self.raw_model)}

    def state_dict(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "rng": _rng_state(),
            "step": self.step,
            "history": torch.tensor(self.history, dtype=torch.float64),
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_<step>.safetensors`` atomically; keep the last ``keep_last``."""
        path = self.ckpt_dir / f"step_{self.step:07d}.safetensors"
        meta = {"kind": CKPT_KIND, "step": self.step, **self.describe()}
        save_checkpoint(path, self.state_dict(), meta)
        ckpts = sorted(self.ckpt_dir.glob("step_*.safetensors"), key=_step_of)
        for old in ckpts[:-self.cfg.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        return latest_checkpoint(self.ckpt_dir)

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load a checkpoint (the latest in ``run_dir`` when None); returns its step.

        Raises ``CheckpointError`` when the file is corrupt, is not a training
        checkpoint, or was written for a different model or training setup.
        """
        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise CheckpointError(f"no checkpoint to resume from in {self.ckpt_dir}")
        state, meta = load_checkpoint(path, map_location="cpu", expect={"kind": CKPT_KIND})
        mine = model_config_of(self.raw_model)
        theirs = meta.get("model", {})
        if theirs != mine:
            diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(theirs) | set(mine))
                    if theirs.get(k) != mine.get(k)}
            raise CheckpointError(f"checkpoint {path} was written for another model: "
                                  f"(checkpoint, this model) differ in {diff}")
        old_cfg, new_cfg = meta.get("train", {}), self.cfg.to_dict()
        diff = {k: (old_cfg.get(k), v) for k, v in new_cfg.items()
                if k not in _RESUMABLE_CHANGES and old_cfg.get(k) != v}
        if diff:
            raise CheckpointError(f"checkpoint {path} was trained with other settings; resuming "
                                  f"would not continue the same run. (checkpoint, now): {diff}")
        check_state_dict(self.raw_model, state["model"], source=f"checkpoint {path}")
        self.raw_model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["train_loader"])
        _set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = state["history"].tolist()
        truncate_metrics(self.run_dir, self.step)  # the resumed run logs later steps again
        return self.step

def _step_of(path: Path) -> int:
    return int(path.stem.split("_")[1])


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    return torch.stack(grads).norm() if grads else torch.tensor(0.0)


# ----------------------------------------------------------------------------- optimizer


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` names, with decay on matrices only."""
    if cfg.optimizer == "muon":
        groups = muon_param_groups(model, lr=cfg.muon_lr, adamw_lr=cfg.lr,
                                   weight_decay=0.0, adamw_weight_decay=cfg.weight_decay)
        return Muon(groups, lr=cfg.muon_lr, adamw_betas=cfg.betas, adamw_eps=cfg.eps)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "torch-adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    return AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
