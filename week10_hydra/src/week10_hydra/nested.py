"""Nested LoRA: a child adapter trained on top of its frozen parent chain (domain -> task -> user).

``train_child(base, library, parent, child, examples, cfg)`` copies the base,
loads the parent's chain from the library as frozen week06 adapters, adds a
fresh child adapter (B = 0, so training starts from exactly what the chain
gives), activates ``[*chain, child]`` and trains only the child with week07's
``train_task`` (week03's ``Trainer``, ``lm_loss`` on week07 examples
``{"ids", "mask"}``). The child is stored as ``"<parent>/<child>"``; serving it
through the library serves the whole chain as one stack, the sum week06
computes with all of them active::

    y = x W^T + sum over (domain, domain/task, domain/task/user) of s_i x A_i^T B_i^T

So a user adapter only learns what the user needs beyond its task and domain,
and the parents stay shared by every child (one copy each in the bank).

Left out: training a chain jointly, re-training a parent under existing
children (their training assumed the old parent; ``hot_swap`` will not stop
you), and DoRA children.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch.nn as nn

from week06_lora import inject_lora, mark_trainable, set_active_adapters
from week07_continual import Task, train_task
from week07_continual import TrainConfig as TaskTrainConfig
from week10_hydra.library import AdapterLibrary, check_name, load_chain

# ---------------------------------------------------------------- config


@dataclass
class NestedConfig:
    """How a child adapter is trained."""

    r: int = 8
    alpha: float = 16.0
    steps: int = 50
    lr: float = 3e-3
    batch_size: int = 16
    seed: int = 0
    max_len: int | None = None
    progress: bool = True

    def __post_init__(self):
        for key in ("r", "steps", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"NestedConfig.{key} must be a positive int, got {v!r}")
        if not self.lr > 0:
            raise ValueError(f"NestedConfig.lr must be > 0, got {self.lr!r}")


@dataclass
class TrainedChild:
    """What ``train_child`` made: the stored name, its chain and the week06 training model
    (the base copy with every adapter of the chain active, the child last)."""

    name: str
    chain: list[str]
    model: nn.Module


# ---------------------------------------------------------------- training


def train_child(base_model: nn.Module, library: AdapterLibrary, parent: str | None, child: str,
                examples: list[dict], cfg: NestedConfig | None = None,
                meta: dict | None = None) -> TrainedChild:
    """Train adapter ``child`` over ``parent``'s frozen chain (None: over the bare base) on
    ``examples`` and store it in ``library`` as ``"<parent>/<child>"``."""
    cfg = cfg or NestedConfig()
    if not isinstance(child, str) or "/" in child:
        raise ValueError(f"child is one path segment (the parent gives the rest), got {child!r}")
    name = check_name(f"{parent}/{child}" if parent is not None else child)
    if not examples:
        raise ValueError(f"adapter {name!r} needs training examples ({{'ids', 'mask'}} dicts)")
    model = copy.deepcopy(base_model)
    chain = load_chain(library, model, parent, activate=False) if parent is not None else []
    targets = [f"^{t.replace('.', '[.]')}$" for t in library.bank.layers]  # servable layers only
    inject_lora(model, targets=targets, r=cfg.r, alpha=cfg.alpha, adapter=name,
                freeze_base=False, activate=False)
    set_active_adapters(model, [*chain, name])
    mark_trainable(model, name)  # the base and every ancestor stay frozen
    tc = TaskTrainConfig(steps_per_task=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                         max_len=cfg.max_len, seed=cfg.seed)
    was_training = model.training
    model.train()
    train_task(model, Task(name, examples, examples), tc, random.Random(cfg.seed), lr=cfg.lr,
               progress=cfg.progress, desc=f"nested {name}")
    model.train(was_training)
    library.save(name, model, adapter=name, parent=parent,
                 meta={"kind": "nested-lora", "examples": len(examples), "steps": cfg.steps,
                       **(meta or {})})
    return TrainedChild(name, [*chain, name], model)
