"""Train a model through a task stream with a strategy, and fill the accuracy matrix.

A strategy is a ``+``-joined set of components, each composable with the others:

- ``naive``: sequential fine-tuning, nothing else (the baseline that forgets);
- ``ewc`` / ``online-ewc``: add ``EWC.penalty`` to the loss, consolidate after
  each task (``ewc.py``);
- ``replay``: mix a ``ReplayBuffer`` into each batch at ``replay_ratio``,
  offer the task's examples to the buffer after it (``replay.py``);
- ``lora``: a fresh week06 LoRA adapter per task over a frozen base, saved to
  an ``AdapterStore``; at test time a ``PrototypeRouter`` picks the adapter
  for every input from the base model's hidden states (``router.py``);
- ``shared``: one LoRA adapter shared by all tasks (the base frozen), for
  e.g. ``ewc+replay+shared``.

Each task trains through week03's ``Trainer`` (``train_task``): the EWC
penalty is added by the loss_fn (``ewc_loss``) and logged as ``ewc_penalty``,
replay is mixed in where batches are drawn (``TaskBatches``, a
``shared.SampledBatches``), and nothing is written to disk.

``run_stream`` evaluates every task before training (``b``) and after each
task (row i of ``R``), and measures wall time and the extra memory each
method keeps (EWC's Fishers and anchors, the replay buffer, the adapters and
prototypes), logging through ``shared.MetricsLogger``. ``train_separately``
gives the reference "each task trained on its own from the base".

``StreamHooks`` is the seam for strategies that live elsewhere (the research track
``tracks/track_continual``: O-LoRA, InfLoRA, self-generated replay, Progress &
Compress): hooks before and after each task, a wrapper around the loss_fn, their own
replay buffer and learning rate, and their memory, all run by this same ``run_stream``.

Left out: learning-rate schedules and early stopping inside a task, and
task-incremental evaluation with the task label given (LoRA-per-task here
always routes without it).
"""

from __future__ import annotations

import copy
import random
import re
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import torch

from shared import SampledBatches
from week03_training import TrainConfig as TrainConfig3
from week03_training import Trainer
from week06_lora import default_targets, inject_lora, mark_trainable, set_active_adapters
from week07_continual.ewc import EWC
from week07_continual.metrics import AccuracyMatrix
from week07_continual.replay import ReplayBuffer
from week07_continual.router import PrototypeRouter, embed_sequences
from week07_continual.store import AdapterStore
from week07_continual.tasks import Stream, Task, collate, lm_loss, prompt_ids, score_examples

COMPONENTS = ("naive", "ewc", "online-ewc", "replay", "lora", "shared")

# ---------------------------------------------------------------- configs


@dataclass
class StrategyConfig:
    """Which components are on, and their knobs."""

    name: str = "naive"
    ewc: bool = False
    online: bool = False
    ewc_lambda: float = 1000.0
    gamma: float = 0.9
    fisher_mode: str = "true"
    fisher_samples: int = 1
    fisher_examples: int = 64
    replay: bool = False
    replay_capacity: int = 200
    replay_ratio: float = 0.25
    replay_policy: str = "balanced"
    lora: bool = False
    shared_adapter: bool = False
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_head: bool = True  # adapt the output head too (default_targets leaves it out)
    router_threshold: float = 0.0

    @classmethod
    def parse(cls, spec: str, **overrides) -> StrategyConfig:
        """``"ewc+replay"`` -> the config with those components on (and ``overrides`` applied)."""
        parts = [p.strip().lower() for p in spec.split("+") if p.strip()]
        bad = [p for p in parts if p not in COMPONENTS]
        if not parts or bad:
            raise ValueError(f"unknown strategy component(s) {bad or spec!r} in {spec!r}; valid: "
                             f"{', '.join(COMPONENTS)}, joined with '+' (e.g. ewc+replay)")
        if "lora" in parts and "shared" in parts:
            raise ValueError("'lora' (an adapter per task) and 'shared' (one adapter) exclude "
                             "each other")
        cfg = cls(name=spec, ewc="ewc" in parts or "online-ewc" in parts,
                  online="online-ewc" in parts, replay="replay" in parts, lora="lora" in parts,
                  shared_adapter="shared" in parts)
        for k, v in overrides.items():
            if not hasattr(cfg, k):
                raise ValueError(f"unknown strategy setting {k!r}")
            setattr(cfg, k, v)
        return cfg


@dataclass
class TrainConfig:
    """How each task is trained and evaluated."""

    steps_per_task: int = 200
    batch_size: int = 16
    lr: float = 1e-3  # full fine-tuning
    lora_lr: float = 3e-3
    weight_decay: float = 0.0  # on matrices only (week03's rule), not on norms and biases
    grad_clip: float = 1.0
    eval_batch_size: int = 64
    max_len: int | None = None
    router_examples: int = 64
    seed: int = 0


@dataclass
class StreamResult:
    stream: str
    strategy: str
    matrix: AccuracyMatrix
    wall_s: float
    extra_bytes: int
    router_accuracy: float | None = None
    details: dict = field(default_factory=dict)

    def row(self) -> dict:
        s = self.matrix.summary()
        return {"stream": self.stream, "strategy": self.strategy, **s, "wall_s": self.wall_s,
                "extra_mb": self.extra_bytes / 2**20, "router_acc": self.router_accuracy}

    def to_dict(self) -> dict:
        return {**self.row(), "matrix": self.matrix.to_dict(), "details": self.details}


# ---------------------------------------------------------------- training one task


def _lora_targets(model, strategy: StrategyConfig) -> list[str]:
    targets = default_targets(model)
    head = getattr(model, "lm_head", None)
    if strategy.lora_head and isinstance(head, torch.nn.Linear) and "lm_head" not in targets:
        targets.append("lm_head")
    return targets


def _adapter_name(task: Task, i: int) -> str:
    return f"t{i}_" + re.sub(r"[^A-Za-z0-9_]", "_", task.name)


class TaskBatches(SampledBatches):
    """Random batches of a task's training examples (with replacement, drawn from the stream's
    ``rng``), with replayed examples of earlier tasks mixed in at ``replay_ratio``."""

    def __init__(self, task: Task, cfg: TrainConfig, rng: random.Random,
                 buffer: ReplayBuffer | None = None, replay_ratio: float = 0.0):
        super().__init__(task.train, cfg.batch_size, partial(collate, max_len=cfg.max_len),
                         rng=rng)
        self.buffer, self.replay_ratio = buffer, replay_ratio

    def sample(self) -> list[dict]:
        batch = super().sample()
        if self.buffer is not None and len(self.buffer):
            batch = self.buffer.mix(batch, self.replay_ratio, self.rng)
        return batch


def ewc_loss(ewc: EWC | None):
    """A week03 ``loss_fn``: the task's cross-entropy plus, once EWC holds a task, its
    penalty; both logged (``lm_loss``, ``ewc_penalty``)."""

    def loss_fn(model, batch):
        x, y = batch
        loss = lm_loss(model, x, y)
        if ewc is None or not ewc.terms:
            return loss, {}
        penalty = ewc.penalty(model)
        return loss + penalty, {"lm_loss": loss, "ewc_penalty": penalty}

    return loss_fn


class StreamHooks:
    """Extension points of ``run_stream`` for strategies defined outside this week; every
    method is a no-op, a subclass overrides what it needs.

    ``lr``: the learning rate of every task (None: ``run_stream``'s choice); ``buffer`` /
    ``replay_ratio``: a ``ReplayBuffer`` the hooks fill themselves, mixed into the batches
    instead of the strategy's own; ``loss_fn(default)`` wraps week07's loss_fn
    (``ewc_loss``) for each task; ``nbytes()`` is added to the memory the run reports and
    ``details()`` to its details.
    """

    lr: float | None = None
    buffer: ReplayBuffer | None = None
    replay_ratio: float = 0.0

    def before_task(self, model, i: int, task: Task, rng: random.Random) -> None:
        pass

    def loss_fn(self, default):
        return default

    def after_task(self, model, i: int, task: Task, rng: random.Random) -> None:
        pass

    def nbytes(self) -> int:
        return 0

    def details(self) -> dict:
        return {}


class _StepOffset:
    """Logs a task's steps after the steps of the tasks before it, in one metrics run."""

    def __init__(self, logger, offset: int):
        self.logger, self.offset = logger, offset

    def log(self, step: int, **row) -> None:
        self.logger.log(step=self.offset + step, **row)


def train_task(model, task: Task, cfg: TrainConfig, rng: random.Random, ewc: EWC | None = None,
               buffer: ReplayBuffer | None = None, replay_ratio: float = 0.0, lr: float | None = None,
               logger=None, step0: int = 0, progress: bool = True, desc: str = "",
               loss_fn=None) -> int:
    """``steps_per_task`` AdamW steps on ``task`` through week03's Trainer (plus the EWC
    penalty in the loss and replayed rows in the batches); returns the next global step.

    Constant learning rate, gradient clipping at ``cfg.grad_clip``, weight decay on
    matrices only; every parameter with ``requires_grad`` trains (the base is frozen under
    LoRA). Nothing is written to disk; with a ``logger`` every 10th step is logged at
    ``step0 + step``. ``loss_fn`` (a week03 loss_fn) replaces ``ewc_loss(ewc)``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    block = cfg.max_len or getattr(getattr(model, "config", None), "block_size", None) or 64
    tc = TrainConfig3(steps=cfg.steps_per_task, batch_size=cfg.batch_size, block_size=block,
                      optimizer="adamw", lr=lr or cfg.lr, weight_decay=cfg.weight_decay,
                      betas=(0.9, 0.999), schedule="constant", warmup_steps=0,
                      grad_clip=cfg.grad_clip, eval_every=0, log_every=10, ckpt_every=0,
                      save_final=False, write_metrics=False, progress=progress,
                      device=str(params[0].device), seed=cfg.seed)
    trainer = Trainer(model, TaskBatches(task, cfg, rng, buffer, replay_ratio), tc,
                      loss_fn=loss_fn or ewc_loss(ewc), params=params, desc=desc or task.name,
                      logger=_StepOffset(logger, step0) if logger is not None else None)
    trainer.fit()
    return step0 + cfg.steps_per_task


def _fisher_batches(task: Task, cfg: TrainConfig, n: int, rng: random.Random, device):
    exs = [task.train[rng.randrange(len(task.train))] for _ in range(n)]
    for s in range(0, n, 16):
        yield collate(exs[s:s + 16], cfg.max_len, device)


# ---------------------------------------------------------------- the stream


class _Evaluator:
    """Scores every task of a stream; under LoRA-per-task it routes every test input first."""

    def __init__(self, stream: Stream, cfg: TrainConfig, token_bytes):
        self.stream, self.cfg, self.token_bytes = stream, cfg, token_bytes
        self._prompt_emb: dict[int, torch.Tensor] = {}

    def test_embeddings(self, model, j: int) -> torch.Tensor:
        if j not in self._prompt_emb:  # the base is frozen under LoRA-per-task: embed once
            task = self.stream.tasks[j]
            self._prompt_emb[j] = embed_sequences(model, [prompt_ids(e) for e in task.test],
                                                  self.cfg.eval_batch_size)
        return self._prompt_emb[j]

    def score(self, model, j: int, router: PrototypeRouter | None = None) -> tuple[float, list]:
        task = self.stream.tasks[j]
        names = None
        if router is not None and router.names:
            names, _ = router.route(self.test_embeddings(model, j))
        value = score_examples(model, task.test, task.metric, self.cfg.eval_batch_size,
                               self.token_bytes, self.cfg.max_len, adapter_names=names)
        return value, names


def _token_bytes(stream: Stream):
    if stream.metric != "bpb":
        return None
    from week02_bpe import token_bytes

    return token_bytes(stream.tokenizer)


def run_stream(base_model, stream: Stream, strategy: StrategyConfig | str,
               cfg: TrainConfig | None = None, workdir: str | Path | None = None, logger=None,
               progress: bool = True, hooks: StreamHooks | None = None) -> StreamResult:
    """Train a copy of ``base_model`` through ``stream`` with ``strategy``; returns the results.

    ``hooks``: a ``StreamHooks`` that extends the strategy (see its docstring).

    ``workdir`` holds the replay buffer and the adapter store (a temp folder
    when None is given is the caller's job: both need a place on disk).
    """
    import tempfile

    strategy = StrategyConfig.parse(strategy) if isinstance(strategy, str) else strategy
    cfg = cfg or TrainConfig()
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="week07-"))
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    t0 = time.perf_counter()
    model = copy.deepcopy(base_model)
    for p in model.parameters():
        p.requires_grad_(True)
    evaluator = _Evaluator(stream, cfg, _token_bytes(stream))
    matrix = AccuracyMatrix(stream.task_names, stream.higher_is_better, stream.metric)
    ewc = EWC(strategy.ewc_lambda, online=strategy.online, gamma=strategy.gamma,
              fisher_mode=strategy.fisher_mode, samples=strategy.fisher_samples,
              max_examples=strategy.fisher_examples) if strategy.ewc else None
    buffer = ReplayBuffer(strategy.replay_capacity, strategy.replay_policy, workdir / "replay",
                          seed=cfg.seed) if strategy.replay else None
    store = AdapterStore(workdir / "adapters") if strategy.lora else None
    router = PrototypeRouter(strategy.router_threshold) if strategy.lora else None
    if strategy.shared_adapter:
        inject_lora(model, targets=_lora_targets(model, strategy), r=strategy.lora_r,
                    alpha=strategy.lora_alpha, adapter="shared")
    lr = cfg.lora_lr if (strategy.lora or strategy.shared_adapter) else cfg.lr
    if hooks is not None and hooks.lr is not None:
        lr = hooks.lr
    gen = torch.Generator().manual_seed(cfg.seed)

    matrix.record_row(-1, [evaluator.score(model, j)[0] for j in range(len(stream.tasks))])
    step = 0
    for i, task in enumerate(stream.tasks):
        if strategy.lora:
            name = _adapter_name(task, i)
            inject_lora(model, targets=_lora_targets(model, strategy), r=strategy.lora_r,
                        alpha=strategy.lora_alpha, adapter=name)
        mix, ratio, loss_fn = buffer, strategy.replay_ratio, None
        if hooks is not None:
            hooks.before_task(model, i, task, rng)
            loss_fn = hooks.loss_fn(ewc_loss(ewc))
            if hooks.buffer is not None:
                mix, ratio = hooks.buffer, hooks.replay_ratio
        step = train_task(model, task, cfg, rng, ewc, mix, ratio, lr, logger,
                          step, progress, desc=f"{strategy.name}: {task.name} ({i + 1}/"
                                               f"{len(stream.tasks)})", loss_fn=loss_fn)
        if ewc is not None:
            ewc.consolidate(model, _fisher_batches(task, cfg, strategy.fisher_examples, rng,
                                                   next(model.parameters()).device), gen)
        if buffer is not None:
            buffer.add_many(task.train, task.name)
            buffer.save()
        if strategy.lora:
            store.save(name, model, meta={"task": task.name, "index": i})
            exs = [task.train[rng.randrange(len(task.train))] for _ in range(cfg.router_examples)]
            router.add(name, embed_sequences(model, [prompt_ids(e) for e in exs],
                                             cfg.eval_batch_size))
            store.save_blob("router", router.state())
            set_active_adapters(model, [])
        if hooks is not None:
            hooks.after_task(model, i, task, rng)
        row = [evaluator.score(model, j, router)[0] for j in range(len(stream.tasks))]
        matrix.record_row(i, row)
        if logger is not None:
            logger.log(step=step, **{f"R_{task.name}_on_{n}": v
                                     for n, v in zip(stream.task_names, row)})
    wall = time.perf_counter() - t0

    router_acc, details = None, {}
    if strategy.lora:
        right = total = 0
        routing = {}  # task -> {adapter picked (None: the base): how many of its test inputs}
        for j in range(len(stream.tasks)):
            names, _ = router.route(evaluator.test_embeddings(model, j))
            want = _adapter_name(stream.tasks[j], j)
            right += sum(n == want for n in names)
            total += len(names)
            routing[stream.tasks[j].name] = {n: names.count(n) for n in dict.fromkeys(names)}
        router_acc = right / total
        details["routing"] = routing
        details["adapters"] = store.names()
    extra = 0
    if ewc is not None:
        extra += ewc.nbytes()
    if buffer is not None:
        extra += buffer.nbytes()
        details["replay_counts"] = buffer.counts()
    if store is not None:
        extra += store.nbytes()
    if strategy.shared_adapter:
        extra += sum(p.numel() * p.element_size() for n, p in model.named_parameters()
                     if ".lora." in n)
    if hooks is not None:
        extra += hooks.nbytes()
        details.update(hooks.details())
    details["config"] = {"strategy": asdict(strategy), "train": asdict(cfg)}
    result = StreamResult(stream.name, strategy.name, matrix, wall, extra, router_acc, details)
    result.model = model
    return result


def train_separately(base_model, stream: Stream, cfg: TrainConfig | None = None,
                     progress: bool = True) -> list[float]:
    """Each task trained on its own from ``base_model`` (full fine-tuning); its own test score."""
    cfg = cfg or TrainConfig()
    evaluator = _Evaluator(stream, cfg, _token_bytes(stream))
    out = []
    for j, task in enumerate(stream.tasks):
        torch.manual_seed(cfg.seed)
        model = copy.deepcopy(base_model)
        for p in model.parameters():
            p.requires_grad_(True)
        train_task(model, task, cfg, random.Random(cfg.seed + j), progress=progress,
                   desc=f"separate: {task.name}")
        out.append(evaluator.score(model, j)[0])
    return out


__all__ = ["StrategyConfig", "TrainConfig", "StreamResult", "StreamHooks", "run_stream", "train_separately",
           "train_task", "TaskBatches", "ewc_loss", "mark_trainable"]
