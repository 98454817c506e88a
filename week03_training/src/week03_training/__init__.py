"""week03_training: the training loop every later week trains with.

- ``AdamW``, ``Muon`` (+ ``newton_schulz``, ``muon_param_groups``): optimizers from scratch
- ``warmup_cosine``, ``wsd``, ``ScheduleConfig``, ``LRScheduler``: learning-rate schedules
- ``TrainConfig``, ``Trainer``: accumulation, clipping, bf16 autocast, validation + bits per
  byte, metrics, atomic checkpoints with exact resume after a kill
- ``flops_per_token``: model FLOPs for MFU
- ``python -m week03_training.train``: the command line (``--help``)
"""

from week03_training.flops import flops_per_token, measure_matmul_flops, peak_flops
from week03_training.optim import AdamW, Muon, muon_param_groups, newton_schulz
from week03_training.schedule import LRScheduler, ScheduleConfig, lr_multiplier, warmup_cosine, wsd
from week03_training.trainer import (
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_optimizer,
    clip_grad_norm,
    latest_checkpoint,
)

__all__ = [
    "AdamW", "Muon", "muon_param_groups", "newton_schulz",
    "LRScheduler", "ScheduleConfig", "lr_multiplier", "warmup_cosine", "wsd",
    "TrainConfig", "Trainer", "TrainingInterrupted", "build_optimizer", "clip_grad_norm",
    "latest_checkpoint",
    "flops_per_token", "measure_matmul_flops", "peak_flops",
]
