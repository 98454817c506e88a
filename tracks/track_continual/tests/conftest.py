"""Tiny models and a tiny three-task stream shared by the tests (week07's conflict stream,
one task longer).

Task k's prompt is ``[0, m_k, m_k, m_k, key, 3]`` and its answer ``f_k(key)``, with
cyclic shifts of one permutation, so every task contradicts the others on every key
(sequential fine-tuning forgets), while the marker tokens m_k tell the tasks apart.
"""

from __future__ import annotations

import random

import pytest
import torch

from week04_modern_arch_tools import Llama, LlamaConfig
from week07_continual import Stream, Task, TrainConfig, train_task

VOCAB = 40
KEYS = list(range(8, 20))
ANSWERS = list(range(24, 36))


def tiny_config(**kw) -> LlamaConfig:
    base = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_kv_head=2, n_embd=32,
                mlp="swiglu", tie_embeddings=False)
    base.update(kw)
    return LlamaConfig(**base)


def make_task(name: str, marker: int, perm: list[int]) -> Task:
    exs = []
    for k, a in zip(KEYS, perm):
        exs.append({"ids": [0, marker, marker, marker, k, 3, a, 4],
                    "mask": [0, 0, 0, 0, 0, 0, 1, 1]})
    return Task(name, exs, exs)


def conflict_stream(n_tasks: int = 3) -> Stream:
    rng = random.Random(0)
    f = ANSWERS[:]
    rng.shuffle(f)
    return Stream("conflict", [make_task("ABC"[i], i + 1, f[i:] + f[:i]) for i in range(n_tasks)])


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def stream() -> Stream:
    return conflict_stream(3)


@pytest.fixture(scope="session")
def pretrained():
    """A tiny Llama pre-trained on a fourth mapping (marker 5), so its head emits the
    answer tokens (adapters over a random head learn nothing in a few steps)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Llama(tiny_config())
    f = ANSWERS[5:] + ANSWERS[:5]
    train_task(model, make_task("pre", 5, f), TrainConfig(steps_per_task=60, lr=1e-2),
               random.Random(0), progress=False)
    return model


@pytest.fixture
def pretraining_task() -> Task:
    """The mapping ``pretrained`` learned (the source domain of the frontier test)."""
    return make_task("pre", 5, ANSWERS[5:] + ANSWERS[:5])
