"""week03_training: the training loop every later week trains with.

- ``AdamW``, ``Muon`` (+ ``newton_schulz``, ``muon_param_groups``): optimizers from scratch
- ``warmup_cosine``, ``wsd``, ``ScheduleConfig``, ``LRScheduler``: learning-rate schedules
- ``TrainConfig``, ``Trainer``: any loss (``loss_fn(model, batch) -> (loss, metrics)``), any
  subset of parameters (``params=``), hooks after each step, accumulation, clipping, bf16
  autocast, validation + bits per byte, metrics, atomic checkpoints with exact resume after a kill
- ``next_token_loss``, ``token_cross_entropy``: the default loss (targets ``shared.IGNORE_INDEX``
  skipped, other negative targets refused)
- ``flops_per_token``: model FLOPs for MFU
- ``python -m week03_training.train``: the command line (``--help``), for any model class
"""

from week03_training.config import TrainConfig
from week03_training.flops import flops_per_token, measure_matmul_flops, peak_flops
from week03_training.loss import check_targets, next_token_loss, to_device, token_cross_entropy
from week03_training.optim import (
    AdamW,
    Muon,
    build_optimizer,
    clip_grad_norm,
    muon_param_groups,
    newton_schulz,
)
from week03_training.runstate import describe_model, latest_checkpoint
from week03_training.schedule import LRScheduler, ScheduleConfig, lr_multiplier, warmup_cosine, wsd
from week03_training.trainer import Trainer, TrainingInterrupted

__all__ = [
    "AdamW", "Muon", "muon_param_groups", "newton_schulz",
    "LRScheduler", "ScheduleConfig", "lr_multiplier", "warmup_cosine", "wsd",
    "TrainConfig", "Trainer", "TrainingInterrupted", "build_optimizer", "clip_grad_norm",
    "latest_checkpoint", "describe_model",
    "next_token_loss", "token_cross_entropy", "check_targets", "to_device",
    "flops_per_token", "measure_matmul_flops", "peak_flops",
]
