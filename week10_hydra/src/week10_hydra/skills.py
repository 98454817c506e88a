"""Two-skill tasks for adapter stacking: one adapter knows facts, another knows a format.

Built on week07's generated world (``world_facts``) and its tiny-model
training (``train_task``, week03's Trainer under the hood):

- ``base``: the world's capitals, currencies and languages, one-word answers
  (a full fine-tune of the tiny base: it learns the chat frame and those facts);
- ``knowledge`` (adapter A): the national animals, one-word answers - new
  facts only A knows;
- ``format`` (adapter B): the base's own facts answered in a fixed frame,
  ``"It is <value>."`` - a format only B knows, learnt on facts the base has;
- ``both``: the animals in B's frame - needs A's facts and B's format at once.

``train_skill_adapters`` trains the base and both adapters (week06 LoRA on a
copy of the base, each alone) and loads them into an ``AdapterBank``; the
measurement (base, A, B, A+B, LoraHub) is ``benchmarks/stacking.py``.

Left out: tasks tested on held-out facts (knowledge is tested on what was
taught, as in week07), more than two skills, and any claim that a tiny
model composes skills: the benchmark measures whether it does.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch

from week06_lora import inject_lora
from week07_continual import Task, TrainConfig, train_task
from week07_continual.tasks import qa_example, world_facts
from week10_hydra.bank import AdapterBank

BASE_ATTRIBUTES = ("capital", "currency", "language")
FRAME = "It is {value}."


# ---------------------------------------------------------------- the tasks


@dataclass
class SkillTasks:
    base: Task  # what the base is trained on
    knowledge: Task  # adapter A
    format: Task  # adapter B
    both: Task  # the two-skill test


def two_skill_tasks(tokenizer, n_countries: int = 24, seed: int = 0) -> SkillTasks:
    """The four tasks over the first ``n_countries`` countries of week04's world ``seed``."""
    if n_countries < 2:
        raise ValueError(f"n_countries must be >= 2, got {n_countries}")

    def exs(pairs, framed=False):
        return [qa_example(tokenizer, q, FRAME.format(value=a) if framed else a)
                for q, a in pairs]

    facts = {a: world_facts(a, seed, n_countries) for a in (*BASE_ATTRIBUTES, "animal")}
    base = [e for a in BASE_ATTRIBUTES for e in exs(facts[a])]
    fmt = [e for a in BASE_ATTRIBUTES for e in exs(facts[a], framed=True)]
    know, both = exs(facts["animal"]), exs(facts["animal"], framed=True)
    return SkillTasks(Task("base", base, base), Task("knowledge", know, know),
                      Task("format", fmt, fmt), Task("both", both, both))


# ---------------------------------------------------------------- training


@dataclass
class SkillsConfig:
    """How the base and the two adapters are trained (full fine-tune, then LoRA on a copy)."""

    n_countries: int = 24
    base_steps: int = 300
    base_lr: float = 3e-3
    adapter_steps: int = 200
    adapter_lr: float = 1e-2
    rank: int = 8
    alpha: float = 16.0
    batch_size: int = 16
    seed: int = 0
    progress: bool = True


def train_base(model, task: Task, cfg: SkillsConfig) -> None:
    """Full fine-tune of ``model`` on ``task`` (in place), then frozen in eval mode."""
    for p in model.parameters():
        p.requires_grad_(True)
    tc = TrainConfig(steps_per_task=cfg.base_steps, batch_size=2 * cfg.batch_size,
                     lr=cfg.base_lr, seed=cfg.seed)
    train_task(model, task, tc, random.Random(cfg.seed), progress=cfg.progress,
               desc="base")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()


def train_adapter(base, task: Task, name: str, cfg: SkillsConfig):
    """A week06 LoRA adapter ``name`` trained on ``task`` alone, on a copy of ``base``;
    returns that copy (``AdapterBank.add_from_model`` loads it)."""
    torch.manual_seed(cfg.seed)
    model = copy.deepcopy(base)
    inject_lora(model, r=cfg.rank, alpha=cfg.alpha, adapter=name)
    tc = TrainConfig(steps_per_task=cfg.adapter_steps, batch_size=cfg.batch_size,
                     lora_lr=cfg.adapter_lr, seed=cfg.seed)
    train_task(model, task, tc, random.Random(cfg.seed + 1), lr=cfg.adapter_lr,
               progress=cfg.progress, desc=f"adapter {name}")
    return model.eval()


def train_skill_adapters(model, tokenizer, cfg: SkillsConfig | None = None,
                         base_trained: bool = False) -> tuple[AdapterBank, SkillTasks]:
    """Train ``model`` as the base (unless ``base_trained``), then adapters ``"A"``
    (knowledge) and ``"B"`` (format); returns a bank on ``model`` holding both, and the tasks."""
    cfg = cfg or SkillsConfig()
    tasks = two_skill_tasks(tokenizer, cfg.n_countries, cfg.seed)
    if not base_trained:
        train_base(model, tasks.base, cfg)
    bank = AdapterBank(model)
    for name, task in (("A", tasks.knowledge), ("B", tasks.format)):
        bank.add_from_model(name, train_adapter(model, task, name, cfg))
    return bank, tasks


__all__ = ["SkillTasks", "SkillsConfig", "two_skill_tasks", "train_base", "train_adapter",
           "train_skill_adapters", "FRAME", "BASE_ATTRIBUTES"]
