"""``DistributedTrainer``: week03's Trainer under torchrun with DDP, FSDP2 or ZeRO-1.

It is week03's ``Trainer`` (same loop, loss_fn, hooks, schedule, clipping,
bf16 autocast, validation, metrics) with its data-parallel seams filled in:

- ``wrap_model``: activation checkpointing, then DDP or FSDP2
  (``week11_scale.parallel``);
- ``make_optimizer``: week03's optimizer; under ``zero1`` wrapped in
  ``ZeroRedundancyOptimizer`` (each rank steps its share, then broadcasts);
  Muon under FSDP2 orthogonalises each sharded matrix whole (``ShardedMuon``);
- ``accumulation_context``: no gradient sync on inner micro-batches
  (``no_sync()`` for DDP, ``set_requires_gradient_sync(False)`` for FSDP2);
- ``all_mean``: the logged loss and metrics are averaged over ranks, so the
  history is the loss of the global batch, as one process would log it;
- ``stop_requested``: a SIGTERM seen by any rank stops every rank at the same
  step, after a checkpoint; ``is_main``: only rank 0 logs and draws the bar;
- checkpoints: Distributed Checkpoint folders (``week11_scale.dcp``): every
  rank writes its shard, atomically; ``resume`` loads them at any world size.
  Under zero1 the optimizer state is consolidated on rank 0 into the folder's
  trainer file (it is partitioned by world size, so a reshard re-partitions it).

The loader must be this rank's shard of week02's ``TokenLoader``
(``rank=env.rank, world_size=env.world_size``): the global batch is then
``batch_size * grad_accum * world_size`` sequences, the same data one process
with ``batch_size * world_size`` rows sees, which is why the losses and
gradients match a single process (``tests/test_distributed.py``).

Muon and distribution: under DDP every rank runs Newton-Schulz on every
(all-reduced) matrix, redundant but exact; under zero1 each rank orthogonalises
only the matrices it owns and broadcasts them, which is the distributed Muon
of the speedrun repositories; under FSDP2 ``ShardedMuon`` all-gathers each
matrix's update, orthogonalises it on every rank and keeps its own rows (exact,
at the cost of one gather and a redundant NS per matrix).

Left out: gradient accumulation that also skips FSDP2's reshard between
micro-batches, loss averaging by token counts across ranks (a masked loss_fn
averages per rank, then over ranks), and asynchronous checkpoint saving.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from shared.checkpoint import CheckpointError, read_meta
from shared.metrics import truncate_metrics
from week03_training import TrainConfig, Trainer
from week03_training.optim import Muon, build_optimizer, newton_schulz
from week11_scale import dcp
from week11_scale.launch import DistEnv, all_mean, any_rank, current_env
from week11_scale.parallel import ParallelConfig, wrap_model

__all__ = ["DistributedTrainer", "ShardedMuon"]

# keys of a ParallelConfig a resumed run may change (the layout, not the maths)
PARALLEL_RESUMABLE = {"strategy", "activation_checkpointing", "reshard_after_forward"}


class ShardedMuon(Muon):
    """Muon whose matrices may be FSDP2 DTensor shards: NS runs on the gathered whole matrix."""

    def orthogonalize(self, u: torch.Tensor, group: dict) -> torch.Tensor:
        from torch.distributed.tensor import DTensor, distribute_tensor
        if not isinstance(u, DTensor):
            return super().orthogonalize(u, group)
        full = u.full_tensor()                                        # (m, n) on every rank
        o = newton_schulz(full, steps=group["ns_steps"], dtype=self.ns_dtype)
        return distribute_tensor(o, u.device_mesh, u.placements, src_data_rank=None)


class DistributedTrainer(Trainer):
    """Week03's Trainer on every rank of a torchrun launch; see the module docstring.

    ``parallel`` says how (``ParallelConfig``: strategy, activation checkpointing,
    FSDP2 mixed precision); ``env`` is this rank's ``DistEnv`` (default: the
    joined group). Everything else is week03's ``Trainer(model, loader, cfg, ...)``.
    """

    def __init__(self, model: torch.nn.Module, train_loader, cfg: TrainConfig | None = None, *,
                 parallel: ParallelConfig | None = None, env: DistEnv | None = None, **kwargs):
        self.env = env or current_env()
        self.parallel = parallel or ParallelConfig(strategy="ddp" if self.env.distributed
                                                   else "none")
        cfg = cfg or TrainConfig()
        if self.env.device.type != torch.device(cfg.device).type:
            raise ValueError(f"TrainConfig.device is {cfg.device!r} but this rank runs on "
                             f"{self.env.device}; set device={str(self.env.device)!r}")
        for name, loader in (("train_loader", train_loader), ("val_loader", kwargs.get("val_loader"))):
            world = getattr(loader, "world_size", None)
            if world is not None and (world != self.env.world_size
                                      or loader.rank != self.env.rank):
                raise ValueError(f"{name} is shard {loader.rank} of {world} but this is rank "
                                 f"{self.env.rank} of {self.env.world_size}: build it with "
                                 f"TokenLoader(..., rank={self.env.rank}, "
                                 f"world_size={self.env.world_size})")
        super().__init__(model, train_loader, cfg, **kwargs)
        self.device = self.env.device

    # ------------------------------------------------------------------ the seams

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return wrap_model(model, self.env, self.parallel, self.cfg.dtype)

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        opt = build_optimizer(self.raw_model, self.cfg, params)
        if isinstance(opt, Muon) and self.parallel.strategy == "fsdp":
            d = opt.defaults
            opt = ShardedMuon(opt.param_groups, lr=d["lr"], momentum=d["momentum"],
                              nesterov=d["nesterov"], ns_steps=d["ns_steps"],
                              weight_decay=d["weight_decay"], ns_dtype=opt.ns_dtype)
        if self.parallel.strategy == "zero1":
            from torch.distributed.optim import ZeroRedundancyOptimizer
            groups = [dict(g) for g in opt.param_groups]
            defaults = {k: v for k, v in opt.defaults.items() if k not in ("use_muon",)}
            if isinstance(opt, Muon):
                defaults = {k: opt.defaults[k] for k in ("lr", "momentum", "nesterov", "ns_steps",
                                                         "weight_decay")}
            opt = ZeroRedundancyOptimizer(groups, optimizer_class=type(opt), **defaults)
        return opt

    def accumulation_context(self, last: bool):
        strategy = self.parallel.strategy
        if strategy in ("ddp", "zero1") and not last:
            return self.model.no_sync()
        if strategy == "fsdp":
            self.raw_model.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    def all_mean(self, values: dict) -> dict:
        return all_mean(values)

    def stop_requested(self) -> bool:
        return any_rank(self._signal is not None)

    @property
    def is_main(self) -> bool:
        return self.env.is_main

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.tokens_per_step * self.env.world_size

    def describe(self) -> dict:
        return {**super().describe(), "parallel": {**vars(self.parallel),
                                                   "world_size": self.env.world_size}}

    # ------------------------------------------------------------------ checkpoints

    def _zero(self) -> bool:
        return self.parallel.strategy == "zero1"

    def save_checkpoint(self) -> Path:
        """A Distributed Checkpoint folder ``checkpoints/step_<step>`` (collective)."""
        state = self.state_dict_extra()
        meta = {"kind": "week03-train", "step": self.step, **self.describe()}
        optimizer = None if self._zero() else self.optimizer
        if self._zero():
            self.optimizer.consolidate_state_dict(to=0)
            if self.is_main:
                state["zero_optimizer"] = self.optimizer.state_dict()
        return dcp.save_sharded(self.ckpt_dir, model=self.raw_model, optimizer=optimizer,
                                step=self.step, extra=state, meta=meta,
                                keep_last=self.cfg.keep_last)

    def state_dict_extra(self) -> dict:
        """Everything of week03's checkpoint state but the model, optimizer and RNG."""
        return {
            "scheduler": self.scheduler.state_dict(),
            "train_loader": self.train_loader.state_dict(),
            "hooks": [h.state_dict() for h in self._stateful_hooks()],
            "step": self.step,
            "history": torch.tensor(self.history, dtype=torch.float64),
        }

    def latest(self) -> Path | None:
        return dcp.latest_sharded(self.ckpt_dir)

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load a sharded checkpoint (the latest in ``run_dir`` when None) at this world size."""
        path = Path(path) if path is not None else self.latest()
        if path is None:
            raise CheckpointError(f"no checkpoint to resume from in {self.ckpt_dir}")
        trainer_file = Path(path) / "trainer.safetensors"
        if not trainer_file.is_file():
            raise CheckpointError(f"{path} is not a complete week11 checkpoint folder (no "
                                  "trainer.safetensors)")
        self.check_resumable(path, read_meta(trainer_file))
        optimizer = None if self._zero() else self.optimizer
        extra, meta = dcp.load_sharded(path, model=self.raw_model, optimizer=optimizer)
        if self._zero():
            if "zero_optimizer" not in extra:
                raise CheckpointError(f"checkpoint {path} was not written by a zero1 run: it has "
                                      "no consolidated optimizer state; resume it with its "
                                      f"strategy ({meta.get('parallel', {}).get('strategy')})")
            self.optimizer.load_state_dict(extra["zero_optimizer"])
        hooks, hook_states = self._stateful_hooks(), list(extra.get("hooks", []))
        if len(hooks) != len(hook_states):
            raise CheckpointError(f"checkpoint {path} holds {len(hook_states)} hook state(s); "
                                  f"this Trainer has {len(hooks)} hook(s) with a state_dict")
        self.scheduler.load_state_dict(extra["scheduler"])
        self.train_loader.load_state_dict(extra["train_loader"])
        for hook, s in zip(hooks, hook_states):
            hook.load_state_dict(s)
        self.step = int(extra["step"])
        self.history = extra["history"].tolist()
        if self.is_main:
            truncate_metrics(self.run_dir, self.step)
        return self.step

    def check_resumable(self, path, meta: dict, allowed=()) -> None:
        """week03's checks, with the batch per rank free to change as long as the global batch
        (world size x batch_size) stays: a reshard continues the same run."""
        old_cfg, old_par = meta.get("train", {}), meta.get("parallel", {})
        old_world = old_par.get("world_size", self.env.world_size)
        old_global = old_world * old_cfg.get("batch_size", 0)
        new_global = self.env.world_size * self.cfg.batch_size
        if old_global != new_global:
            raise CheckpointError(
                f"checkpoint {path} trained on {old_world} rank(s) x {old_cfg.get('batch_size')} "
                f"rows = {old_global} rows per micro-batch; now {self.env.world_size} x "
                f"{self.cfg.batch_size} = {new_global}: keep world_size x batch_size the same "
                "to continue the run")
        diff = {f"parallel.{k}": (old_par[k], v) for k, v in vars(self.parallel).items()
                if k not in PARALLEL_RESUMABLE and k in old_par and old_par[k] != v}
        if diff:
            raise CheckpointError(f"checkpoint {path} was trained with other parallel settings "
                                  f"(checkpoint, now): {diff}")
        super().check_resumable(path, meta, allowed={*allowed, "batch_size"})
