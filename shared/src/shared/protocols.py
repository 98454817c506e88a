"""The interfaces later weeks program against, and the project's one mask value.

A week that produces a model, a tokenizer or a tool only has to match these
shapes (structural typing, no inheritance needed), and every harness written
against them works unchanged: week05's evaluation runs on the GPT of week01,
the Llama-style model of week04, a LoRA-wrapped model of week06, and so on.

``Cache`` is what ``model.new_cache(batch_size, max_len, pad=None)`` returns:
the model's own decoding state (per-layer keys and values for week01/04, a
latent cache for week08's MLA), driven by week01's one decoding loop.

``IGNORE_INDEX`` (-1) is the one target value that means "not trained" in
the whole project (padding, prompts, tool outputs). Code that hands targets to
a peer library that expects PyTorch's -100 converts at that boundary.

Left out on purpose: training and configuration. Those differ between weeks
and live with the model that owns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch

IGNORE_INDEX = -1  # the target of a position that is not trained, everywhere in the project


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


@runtime_checkable
class Cache(Protocol):
    """A model's decoding state for ``batch_size`` rows of up to ``max_len`` positions.

    - ``pos``: how many positions every row has filled (rows share one clock);
    - ``pad``: (B,) left-padding positions per row, never attended to;
    - ``update(layer, k, v)``: store the new entries of ``layer`` at ``pos`` and
      return everything that layer has seen so far (what attention reads);
    - ``advance(n)``: move the clock by ``n`` after a forward pass;
    - ``positions(T)``: (B, T) position of each row's next ``T`` tokens, counted
      from its first real token;
    - ``nbytes()``: memory held;
    - ``keep(rows)``: keep only these batch rows (finished rows leave the batch).
    """

    pos: int
    max_len: int
    pad: torch.Tensor

    @property
    def batch_size(self) -> int: ...

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor): ...

    def advance(self, n: int) -> None: ...

    def positions(self, T: int) -> torch.Tensor: ...

    def nbytes(self) -> int: ...

    def keep(self, rows: torch.Tensor) -> None: ...
