"""The training loop every later week uses: ``TrainConfig`` + ``Trainer``.

``Trainer(model, train_loader, cfg, loss_fn=None, params=None, hooks=())``
trains any ``torch.nn.Module`` on batches from a week02 ``TokenLoader``,
a ``shared.SampledBatches``, or anything with ``next_batch()``,
``state_dict()`` and ``load_state_dict()``:

- the loss: ``loss_fn(model, batch) -> (loss, metrics)``, by default
  ``next_token_loss`` (fp32 cross-entropy on ``(x, y)`` batches, targets
  ``shared.IGNORE_INDEX`` skipped, any other negative target refused). A batch
  is whatever the loss_fn understands; the tensors in tuples, lists and dicts
  are moved to the device. Auxiliary terms go into the loss, and ``metrics``
  (averaged over the micro-batches) land in the same metrics row as it;
- what trains: ``params`` (a list of parameters or of param-group dicts: LoRA
  only, a router only), by default every parameter with ``requires_grad``;
- ``hooks``: ``hook(trainer, info)`` after every optimizer step (an MoE bias
  update, an EMA teacher); a returned dict is logged too, and a hook with
  ``state_dict``/``load_state_dict`` is checkpointed with the run;
- optimizer: our ``AdamW``, our ``Muon`` (AdamW for embeddings, head, norms,
  biases), or ``torch.optim.AdamW`` as the reference ("torch-adamw");
- LR schedule (warmup + cosine, WSD or constant), gradient clipping by global
  norm, gradient accumulation over ``grad_accum`` micro-batches;
- bf16 autocast on CPU and CUDA with fp32 master weights (the parameters and
  optimizer state stay fp32; only the matmuls run in bf16); optional ``torch.compile``;
- periodic validation with the same loss_fn (and bits per byte for ``(x, y)``
  batches), metrics through ``shared.MetricsLogger``, a tqdm bar with tokens/s and ETA;
- checkpoints (model, optimizer, scheduler, loader, hooks, RNG states, step,
  config, the loss history; the model recorded by ``shared.model_spec`` so
  ``shared.load_model`` rebuilds it) written atomically every ``ckpt_every``
  steps, at the end (``save_final``) and when SIGINT/SIGTERM arrives;
  ``resume()`` continues bit-exactly on the CPU (and drops the metrics rows
  logged after the checkpoint, which the resumed run logs again). Only the
  last ``keep_last`` are kept. ``ckpt_every=0, save_final=False,
  write_metrics=False`` writes nothing at all (a loop inside a larger
  program, such as week07's per-task training).

Seams for data parallelism (week11's ``DistributedTrainer`` overrides them;
here they do nothing): ``wrap_model`` (DDP / FSDP2 around the module before
the optimizer is built), ``make_optimizer``, ``accumulation_context(last)``
(skip the gradient sync on inner micro-batches), ``all_mean`` (average step
metrics over ranks), ``stop_requested`` (agree on a signal), ``is_main``
(who logs) and ``tokens_per_step`` (over all ranks).

Left out: multi-GPU itself (DDP/FSDP, week11), fp16 loss scaling (bf16 needs
none), and early stopping. ``NANOCHAT_KILL_AT_STEP=k`` is a test hook: the
process SIGKILLs itself right after step ``k`` (and its checkpoint, when one is
due) (with ``NANOCHAT_KILL_RANK=r`` under torchrun, only rank ``r`` does).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared import IGNORE_INDEX, MetricsLogger, load_checkpoint, new_run_dir, save_checkpoint
from shared.checkpoint import CheckpointError, check_state_dict
from shared.metrics import truncate_metrics
from week03_training.config import DTYPES, OPTIMIZERS, RESUMABLE_CHANGES, TrainConfig
from week03_training.flops import flops_per_token, peak_flops
from week03_training.loss import next_token_loss, to_device, token_cross_entropy
from week03_training.optim import build_optimizer, clip_grad_norm, grad_norm
from week03_training.runstate import (
    comparable,
    describe_model,
    latest_checkpoint,
    rng_state,
    set_rng_state,
    step_of,
)
from week03_training.schedule import LRScheduler

__all__ = ["TrainConfig", "Trainer", "TrainingInterrupted", "clip_grad_norm", "latest_checkpoint",
           "build_optimizer", "describe_model", "OPTIMIZERS", "DTYPES"]

CKPT_KIND = "week03-train"
KILL_HOOK_ENV = "NANOCHAT_KILL_AT_STEP"

# the Trainer's own entries of a metrics row: a loss_fn or hook metric may not reuse them
_ROW_KEYS = {"step", "loss", "grad_norm", "lr", "lr_mult", "tokens", "tok_per_s", "step_time",
             "mfu"}


class TrainingInterrupted(Exception):
    """Raised by ``Trainer.fit`` after a signal: the checkpoint is already written."""

    def __init__(self, signum: int, step: int, path: Path | None):
        self.signum, self.step, self.path = signum, step, path
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}; "
                         f"checkpoint: {path}")


# ----------------------------------------------------------------------------- helpers


def _metric(name: str, value, source: str) -> float:
    if name in _ROW_KEYS or name.startswith("val_"):
        raise ValueError(f"{source} returned a metric named {name!r}, which the Trainer logs "
                         f"itself; rename it (reserved: {sorted(_ROW_KEYS)} and 'val_*')")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{source} metric {name!r} has shape {tuple(value.shape)}; "
                             "metrics are scalars")
        return float(value.detach())
    return float(value)


def _xy(batch) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``batch`` as (x, y) when it is a pair of tensors, else None."""
    if isinstance(batch, (tuple, list)) and len(batch) == 2 and all(
            isinstance(t, torch.Tensor) for t in batch):
        return batch[0], batch[1]
    return None


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains ``model`` on ``train_loader`` under ``cfg``; see the module docstring.

    ``run_dir`` holds ``metrics.jsonl`` and ``checkpoints/`` (a fresh
    ``runs/week03-train-<time>`` when None, created only when something is
    written). ``logger`` (anything with ``log(step, **row)``) replaces the
    run's own ``MetricsLogger``. ``token_bytes`` (from
    ``week02_bpe.token_bytes(tokenizer)``) turns the validation loss of
    ``(x, y)`` batches into bits per byte. ``history`` is the list of training
    losses, one per step. Parameters outside ``params`` get no update (freeze
    them, or they still cost a gradient).
    """

    def __init__(self, model: torch.nn.Module, train_loader, cfg: TrainConfig | None = None, *,
                 loss_fn=None, params=None, hooks=(), val_loader=None,
                 token_bytes: torch.Tensor | None = None, run_dir: str | os.PathLike | None = None,
                 logger=None, desc: str = "train"):
        self.cfg = cfg = cfg or TrainConfig()
        self.device = torch.device(cfg.device)
        self.model_description = describe_model(model)     # before any wrapper changes it
        self.raw_model = model.to(self.device)
        wrapped = self.wrap_model(self.raw_model)
        self.model = torch.compile(wrapped) if cfg.compile else wrapped
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be a function (model, batch) -> (loss, metrics), "
                            f"got {loss_fn!r}")
        self.loss_fn = loss_fn or next_token_loss
        self.hooks = list(hooks)
        bad = [h for h in self.hooks if not callable(h)]
        if bad:
            raise TypeError(f"hooks must be functions hook(trainer, info), got {bad!r}")
        self.train_loader, self.val_loader = train_loader, val_loader
        self._val_start = val_loader.state_dict() if val_loader is not None else None
        self.token_bytes = token_bytes.to(self.device) if token_bytes is not None else None
        self.optimizer = self.make_optimizer(params)
        trained = {id(p) for g in self.optimizer.param_groups for p in g["params"]}
        self.params = [p for p in self.raw_model.parameters() if id(p) in trained]  # model order
        self.scheduler = LRScheduler(self.optimizer, cfg.schedule_config())
        self.run_dir = Path(run_dir) if run_dir is not None else new_run_dir("week03-train")
        self.ckpt_dir = self.run_dir / "checkpoints"
        self._logger, self.desc = logger, desc
        self.step = 0
        self.history: list[float] = []
        self.flops_per_token = flops_per_token(self.raw_model, cfg.block_size)
        self.peak = peak_flops(self.device, torch.bfloat16 if cfg.dtype == "bf16" else torch.float32)
        self._signal: int | None = None

    # ------------------------------------------------------------------ seams (week11)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module the forward passes go through (DDP / FSDP2 in week11); here ``model``."""
        return model

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The optimizer ``cfg.optimizer`` names over ``params`` (week03's ``build_optimizer``)."""
        return build_optimizer(self.raw_model, self.cfg, params)

    def accumulation_context(self, last: bool):
        """Around each micro-batch's forward and backward; ``last`` is the step's final one
        (data parallelism syncs gradients only there). Here a no-op."""
        return contextlib.nullcontext()

    def all_mean(self, values: dict) -> dict:
        """Scalar metrics averaged over the ranks of a data-parallel run; here as they are."""
        return values

    def stop_requested(self) -> bool:
        """Whether a signal asked the run to stop (every rank must agree in week11)."""
        return self._signal is not None

    @property
    def is_main(self) -> bool:
        """Whether this process logs, shows progress and writes run files (rank 0)."""
        return True

    @property
    def tokens_per_step(self) -> int:
        """Tokens one optimizer step trains on (over every rank)."""
        return self.cfg.tokens_per_step

    # ------------------------------------------------------------------ one step

    def autocast(self):
        """bf16 autocast on this device when ``dtype == "bf16"``, else a no-op."""
        if self.cfg.dtype != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def loss_on(self, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy of the model's next-token logits on (x, y), computed in fp32.

        Targets equal to ``shared.IGNORE_INDEX`` (-1) are not trained; any other
        negative target raises ValueError.
        """
        with self.autocast():
            logits = self.model(x)                                   # (B, T, V)
        return token_cross_entropy(logits, y, reduction=reduction)

    def compute_loss(self, batch) -> tuple[torch.Tensor, dict]:
        """``loss_fn(model, batch)`` under autocast, with its result checked."""
        with self.autocast():
            out = self.loss_fn(self.model, batch)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise TypeError(f"loss_fn must return (loss, metrics dict), got {type(out).__name__}")
        loss, metrics = out
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TypeError(f"loss_fn's loss must be a scalar tensor, got {loss!r}")
        return loss.reshape(()), metrics

    def train_step(self, batches: list | None = None) -> dict:
        """One optimizer step over ``grad_accum`` micro-batches (drawn from the loader if None).

        Each micro-batch loss is divided by the number of micro-batches, so the
        summed gradients equal those of one batch that holds them all; the
        loss_fn's metrics are averaged the same way. The hooks run after the step.
        """
        self.model.train()
        if batches is None:
            batches = [self.train_loader.next_batch() for _ in range(self.cfg.grad_accum)]
        self.raw_model.zero_grad(set_to_none=True)
        self.optimizer.zero_grad(set_to_none=True)
        total, sums = 0.0, {}
        for i, batch in enumerate(batches):
            with self.accumulation_context(last=i == len(batches) - 1):
                loss, metrics = self.compute_loss(to_device(batch, self.device))
                loss = loss / len(batches)
                loss.backward()
            total += loss.item()
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + _metric(k, v, "loss_fn") / len(batches)
        sums = self.all_mean({"loss": total, **sums})
        total = sums.pop("loss")
        norm = (clip_grad_norm(self.params, self.cfg.grad_clip)
                if self.cfg.grad_clip > 0 else grad_norm(self.params))
        lr_mult = self.scheduler.apply()
        self.optimizer.step()
        self.scheduler.advance()
        self.step += 1
        self.history.append(total)
        info = {"loss": total, **sums, "grad_norm": float(norm),
                "lr": self.optimizer.param_groups[0]["lr"], "lr_mult": lr_mult}
        for hook in self.hooks:
            extra = hook(self, dict(info, step=self.step))
            for k, v in (extra or {}).items():
                info[k] = _metric(k, v, f"hook {getattr(hook, '__name__', hook)!r}")
        return info

    @torch.no_grad()
    def evaluate(self, batches: int | None = None) -> dict:
        """Validation loss and metrics (``val_*``) and, with ``token_bytes``, bits per byte.

        The default loss averages the nats over every scored token of the
        validation batches; another loss_fn is averaged over batches. The val
        loader is rewound to its starting state first, so every evaluation
        sees the same batches and does not disturb training.
        """
        if self.val_loader is None:
            raise ValueError("evaluate() needs a val_loader; pass val_loader= to Trainer")
        self.val_loader.load_state_dict(self._val_start)
        self.model.eval()
        n = batches or self.cfg.eval_batches
        nats, targets, sums = [], [], {"val_loss": 0.0}
        try:
            for _ in range(n):
                batch = to_device(self.val_loader.next_batch(), self.device)
                xy = _xy(batch)
                if xy is None and self.loss_fn is next_token_loss:
                    next_token_loss(self.model, batch)      # raises: not an (x, y) batch
                if self.loss_fn is not next_token_loss:
                    loss, metrics = self.compute_loss(batch)
                    sums["val_loss"] += loss.item() / n
                    for k, v in metrics.items():
                        sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + _metric(k, v, "loss_fn") / n
                if xy is not None and (self.loss_fn is next_token_loss or self.token_bytes is not None):
                    nats.append(self.loss_on(*xy, reduction="none"))   # (B*T,)
                    targets.append(xy[1].reshape(-1))
        finally:
            self.model.train()
        out = self.all_mean(sums) if not nats else sums
        if nats:
            nats_t, targets_t = torch.cat(nats), torch.cat(targets)
            if self.loss_fn is next_token_loss:
                out["val_loss"] = nats_t[targets_t != IGNORE_INDEX].mean().item()
            if self.token_bytes is not None:
                from week02_bpe import bits_per_byte
                out["val_bpb"] = float(bits_per_byte(nats_t, targets_t, self.token_bytes))
            out = self.all_mean(out)
        return out

    # ------------------------------------------------------------------ the loop

    def fit(self, steps: int | None = None) -> list[float]:
        """Train until ``cfg.steps`` (or ``steps`` more, if given); returns ``history``.

        When the run writes checkpoints, SIGINT/SIGTERM finish the current step,
        write one and raise ``TrainingInterrupted`` (otherwise Ctrl-C is Python's
        KeyboardInterrupt). With ``save_final`` a checkpoint is written at the end.
        """
        cfg = self.cfg
        end = cfg.steps if steps is None else min(cfg.steps, self.step + steps)
        own_logger = self._logger is None and cfg.write_metrics and self.is_main
        logger = MetricsLogger(self.run_dir, config=self.describe()) if own_logger else (
            self._logger if self.is_main else None)
        old_handlers = self._install_signal_handlers() if cfg.checkpoints else {}
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.is_main),
                   unit="step", dynamic_ncols=True, desc=self.desc)
        kill_at = int(os.environ.get(KILL_HOOK_ENV, "-1"))
        kill_rank = os.environ.get("NANOCHAT_KILL_RANK")
        if kill_rank is not None and kill_rank != os.environ.get("RANK", "0"):
            kill_at = -1                                   # another rank is the one to die
        try:
            while self.step < end:
                t0 = time.perf_counter()
                info = self.train_step()
                if self.device.type == "cuda":
                    torch.cuda.synchronize()
                dt = time.perf_counter() - t0
                tok_s = self.tokens_per_step / dt
                row = {**info, "tokens": self.step * self.tokens_per_step, "tok_per_s": tok_s,
                       "step_time": dt}
                if self.peak:
                    row["mfu"] = self.flops_per_token * tok_s / self.peak
                if cfg.eval_every and self.val_loader is not None and (
                        self.step % cfg.eval_every == 0 or self.step == end):
                    row.update(self.evaluate())
                if logger is not None and (self.step % cfg.log_every == 0 or "val_loss" in row
                                           or self.step == end):
                    logger.log(step=self.step, **row)
                bar.update(1)
                bar.set_postfix(refresh=False, loss=f"{info['loss']:.4f}", tok_s=f"{tok_s:,.0f}",
                                **({"val": f"{row['val_loss']:.4f}"} if "val_loss" in row else {}))
                if not math.isfinite(info["loss"]):
                    raise FloatingPointError(f"loss is {info['loss']} at step {self.step}: lower "
                                             "the lr or use grad_clip")
                if self.stop_requested():
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(self._signal or signal.SIGTERM, self.step, path)
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0:
                    self.save_checkpoint()
                if self.step == kill_at:                           # test hook: die like a crash
                    os.kill(os.getpid(), signal.SIGKILL)
            if cfg.save_final and (self.latest() is None or step_of(self.latest()) != self.step):
                self.save_checkpoint()
        finally:
            bar.close()
            self._restore_signal_handlers(old_handlers)
            if own_logger:
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
        return {"train": self.cfg.to_dict(), "model": self.model_description}

    def _stateful_hooks(self) -> list:
        return [h for h in self.hooks if hasattr(h, "state_dict") and hasattr(h, "load_state_dict")]

    def state_dict(self) -> dict:
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "hooks": [h.state_dict() for h in self._stateful_hooks()],
            "rng": rng_state(),
            "step": self.step,
            "history": torch.tensor(self.history, dtype=torch.float64),
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoints/step_<step>.safetensors`` atomically; keep the last ``keep_last``."""
        path = self.ckpt_dir / f"step_{self.step:07d}.safetensors"
        meta = {"kind": CKPT_KIND, "step": self.step, **self.describe()}
        save_checkpoint(path, self.state_dict(), meta)
        ckpts = sorted(self.ckpt_dir.glob("step_*.safetensors"), key=step_of)
        for old in ckpts[:-self.cfg.keep_last]:
            old.unlink(missing_ok=True)
        return path

    def latest(self) -> Path | None:
        return latest_checkpoint(self.ckpt_dir)

    def check_resumable(self, path, meta: dict, allowed=()) -> None:
        """Raise ``CheckpointError`` unless the checkpoint's ``meta`` is this model and these
        settings (bar ``RESUMABLE_CHANGES`` and ``allowed``): resuming must continue the run."""
        mine, theirs = comparable(self.model_description), comparable(meta.get("model", {}))
        if ":" not in str(theirs["class"]):          # older checkpoints name the class only
            mine["class"] = str(mine["class"]).rsplit(":", 1)[-1].rsplit(".", 1)[-1]
        if theirs != mine:
            diff = {k: (theirs.get(k), mine.get(k)) for k in sorted(set(theirs) | set(mine))
                    if theirs.get(k) != mine.get(k)}
            raise CheckpointError(f"checkpoint {path} was written for another model: "
                                  f"(checkpoint, this model) differ in {diff}")
        old_cfg, new_cfg = meta.get("train", {}), self.cfg.to_dict()
        diff = {k: (old_cfg.get(k), v) for k, v in new_cfg.items()
                if k not in RESUMABLE_CHANGES and k not in allowed and old_cfg.get(k) != v}
        if diff:
            raise CheckpointError(f"checkpoint {path} was trained with other settings; resuming "
                                  f"would not continue the same run. (checkpoint, now): {diff}")

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load a checkpoint (the latest in ``run_dir`` when None); returns its step.

        Raises ``CheckpointError`` when the file is corrupt, is not a training
        checkpoint, or was written for a different model or training setup.
        """
        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise CheckpointError(f"no checkpoint to resume from in {self.ckpt_dir}")
        state, meta = load_checkpoint(path, map_location="cpu", expect={"kind": CKPT_KIND})
        self.check_resumable(path, meta)
        hooks, hook_states = self._stateful_hooks(), list(state.get("hooks", []))
        if len(hooks) != len(hook_states):
            raise CheckpointError(f"checkpoint {path} holds {len(hook_states)} hook state(s); "
                                  f"this Trainer has {len(hooks)} hook(s) with a state_dict")
        check_state_dict(self.raw_model, state["model"], source=f"checkpoint {path}")
        self.raw_model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as e:
            raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit this "
                                  f"Trainer's parameters (another params=?): {e}") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.train_loader.load_state_dict(state["train_loader"])
        for hook, s in zip(hooks, hook_states):
            hook.load_state_dict(s)
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        self.history = state["history"].tolist()
        truncate_metrics(self.run_dir, self.step)  # the resumed run logs later steps again
        return self.step
