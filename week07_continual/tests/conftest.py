"""Tiny models and tiny task streams shared by the tests.

``two_task_stream``: two tasks over the same 12 keys with *conflicting*
answers. Task A's prompt is ``[1, 1, 1, k]`` and its answer ``fA(k)``; task
B's prompt is ``[2, 2, 2, k]`` and its answer ``fB(k) != fA(k)``. Sequential
fine-tuning on B overwrites A's answers (the model mostly reads k, and
``fB`` contradicts ``fA``), while the marker tokens make the two prompt
distributions easy to tell apart for a router.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

from week04_modern_arch_tools import Llama, LlamaConfig
from week07_continual import Stream, Task

VOCAB = 40
KEYS = list(range(8, 20))  # 12 keys
ANSWERS = list(range(24, 36))  # 12 answer tokens


def tiny_config(**kw) -> LlamaConfig:
    base = dict(vocab_size=VOCAB, block_size=16, n_layer=2, n_head=2, n_kv_head=2, n_embd=32,
                mlp="swiglu", tie_embeddings=False)
    base.update(kw)
    return LlamaConfig(**base)


@pytest.fixture
def tiny_llama():
    torch.manual_seed(0)
    return Llama(tiny_config())


def _task(name: str, marker: int, perm: list[int]) -> Task:
    exs = []
    for k, a in zip(KEYS, perm):
        ids = [0, marker, marker, marker, k, 3, a, 4]  # bos, marker x3, key, sep, answer, end
        exs.append({"ids": ids, "mask": [0, 0, 0, 0, 0, 0, 1, 1]})
    return Task(name, exs, exs)  # knowledge tasks: tested on what they taught


@pytest.fixture
def two_task_stream() -> Stream:
    rng = random.Random(0)
    fa = ANSWERS[:]
    rng.shuffle(fa)
    fb = fa[1:] + fa[:1]  # a cyclic shift: fb(k) != fa(k) for every key
    return Stream("conflict", [_task("A", 1, fa), _task("B", 2, fb)])


class TinyLM(nn.Module):
    """A bag-of-context language model small enough for brute-force Fisher checks.

    logits_t = W2 tanh(W1 E[x_t] + b1): each position sees only its own token.
    """

    def __init__(self, vocab: int = 5, hidden: int = 3):
        super().__init__()
        self.emb = nn.Embedding(vocab, 4)
        self.fc1 = nn.Linear(4, hidden)
        self.fc2 = nn.Linear(hidden, vocab)

    def forward(self, idx):
        return self.fc2(torch.tanh(self.fc1(self.emb(idx))))  # (B, T, V)


@pytest.fixture
def tiny_lm():
    torch.manual_seed(0)
    return TinyLM()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread; several threads on a busy 2-core box thrash."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def pretrained(tiny_llama):
    """The tiny model after a short pre-training on a third mapping (marker 5).

    LoRA needs a base whose output head already emits the answer tokens (a random head
    at init std 0.02 behind an RMSNorm cannot be moved by adapters in a few steps).
    """
    from week07_continual import TrainConfig, train_task

    fc = ANSWERS[5:] + ANSWERS[:5]
    train_task(tiny_llama, _task("C", 5, fc), TrainConfig(steps_per_task=60, lr=1e-2),
               random.Random(0), progress=False)
    return tiny_llama
