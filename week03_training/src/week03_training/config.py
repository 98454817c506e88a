"""``TrainConfig``: every setting of a week03 training run, in one dataclass.

Saved in every checkpoint's metadata; ``Trainer.resume`` refuses a checkpoint
whose settings differ from the run's, except the ones a resumed run may change
(``RESUMABLE_CHANGES``: the length of the run, how often it logs, evaluates
and saves, the device).

Left out: config files and command-line parsing (``week03_training.train``
maps its flags onto these fields).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from week03_training.schedule import ScheduleConfig

__all__ = ["TrainConfig", "OPTIMIZERS", "DTYPES", "RESUMABLE_CHANGES"]

OPTIMIZERS = ("adamw", "muon", "torch-adamw")
DTYPES = ("fp32", "bf16")

# keys of TrainConfig that may change between a checkpoint and its resume
RESUMABLE_CHANGES = {"steps", "eval_every", "eval_batches", "log_every", "ckpt_every",
                     "keep_last", "progress", "compile", "device", "extra", "save_final",
                     "write_metrics"}


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
    ckpt_every: int = 0                # 0: no periodic checkpoints
    save_final: bool = True            # a checkpoint when fit() ends
    write_metrics: bool = True         # metrics.jsonl in run_dir (when no logger is given)
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

    @property
    def checkpoints(self) -> bool:
        """Whether this run writes checkpoints at all (periodic, final or on a signal)."""
        return self.ckpt_every > 0 or self.save_final

    def to_dict(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})
