"""The three interfaces later weeks program against.

A week that produces a model, a tokenizer or a tool only has to match these
shapes (structural typing, no inheritance needed), and every harness written
against them works unchanged: week05's evaluation runs on the GPT of week01,
the Llama-style model of week04, a LoRA-wrapped model of week06, and so on.

Left out on purpose: training, generation and configuration. Those differ
between weeks and live with the model that owns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class LanguageModel(Protocol):
    """An autoregressive model: token ids in, next-token logits out.

    ``forward(idx)`` takes ``idx`` of shape (B, T) (int64 token ids) and returns
    logits of shape (B, T, V): position t scores the token at t + 1.
    Models usually also carry ``block_size`` (their longest context) and
    ``vocab_size``; harnesses read them with ``getattr`` when they need them.
    """

    def forward(self, idx: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Tokenizer(Protocol):
    """Text to token ids and back. ``decode(encode(s)) == s`` for any string."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


@runtime_checkable
class Tool(Protocol):
    """Something the model can call: a name it writes, and text in, text out.

    ``run`` must never raise on bad input: it returns an error message as text,
    because whatever the model wrote ends up here.
    """

    name: str

    def run(self, text: str) -> str: ...
