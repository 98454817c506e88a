"""A training loader that mixes tool-use conversations into plain-text batches.

The baseline learns the language of pydocs and, from a few rows of every
batch, the conversation and tool-call format of week04, so "with and without
tools" means something when it is evaluated: with tools it only has to copy
the question into a ``calculator:`` call and the output into its answer;
without them it has to do the arithmetic itself.

``ToolMixLoader(base, conversations, tokenizer, tool_rows)`` wraps a week02
``TokenLoader``: each ``next_batch`` takes the base batch and replaces its
last ``tool_rows`` rows with windows of the packed, rendered conversations
(``week04.render_conversation``). Targets outside the trained spans (the
user's turn, tool outputs, the prompt tokens) are ``shared.IGNORE_INDEX``
(-1), the project's one mask value, so week03's ``Trainer`` only learns the
assistant's part of them (it refuses any other negative target). ``state_dict``/``load_state_dict`` resume
exactly, like the base loader.

Left out: sampling by token budget per source and more than two sources.
"""

from __future__ import annotations

import numpy as np
import torch

from shared import IGNORE_INDEX

IGNORE = IGNORE_INDEX  # the target of a position that is not trained


class ToolMixLoader:
    def __init__(self, base, conversations: list[list[dict]], tokenizer, tool_rows: int,
                 seed: int = 0):
        from week04_modern_arch_tools import render_conversation
        if not 0 <= tool_rows <= base.batch_size:
            raise ValueError(f"tool_rows must be in [0, batch_size={base.batch_size}], "
                             f"got {tool_rows}")
        if not conversations:
            raise ValueError("no conversations to mix in")
        self.base, self.tool_rows, self.seed = base, tool_rows, int(seed)
        self.batch_size, self.block_size = base.batch_size, base.block_size
        ids, targets = [], []
        for conv in conversations:
            x, mask = render_conversation(conv, tokenizer)
            ids.extend(x)
            # the target of position t is token t + 1 where that token is trained
            targets.extend([t if m else IGNORE for t, m in zip(x[1:], mask[1:])] + [IGNORE])
        self._ids = np.asarray(ids, dtype=np.int64)          # (N,)
        self._targets = np.asarray(targets, dtype=np.int64)  # (N,): target of each position
        T = self.block_size
        self.num_windows = max((len(ids) - 1) // T, 0)
        if self.num_windows < 1:
            raise ValueError(f"the conversations hold {len(ids)} tokens: not one window of "
                             f"{T + 1}; give more conversations or a smaller block_size")
        self.epoch, self.cursor = 0, 0
        self.vocab_size = getattr(base, "vocab_size", None)

    @property
    def tokens_seen(self) -> int:
        return self.base.tokens_seen

    def _perm(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_windows)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base.next_batch()                          # (B, T) each
        if self.tool_rows == 0:
            return x, y
        x, y = x.clone(), y.clone()
        T = self.block_size
        perm = self._perm()
        for r in range(self.tool_rows):
            if self.cursor >= self.num_windows:
                self.epoch, self.cursor = self.epoch + 1, 0
                perm = self._perm()
            start = int(perm[self.cursor]) * T
            self.cursor += 1
            row = self.batch_size - 1 - r
            x[row] = torch.from_numpy(self._ids[start:start + T]).to(x.device)
            y[row] = torch.from_numpy(self._targets[start:start + T]).to(y.device)
        return x, y

    def __iter__(self):
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "epoch": self.epoch, "cursor": self.cursor,
                "seed": self.seed, "tool_rows": self.tool_rows}

    def load_state_dict(self, state: dict) -> None:
        if state.get("tool_rows") != self.tool_rows:
            raise ValueError(f"loader state has tool_rows={state.get('tool_rows')}, this loader "
                             f"{self.tool_rows}; they must match")
        self.base.load_state_dict(state["base"])
        self.epoch, self.cursor, self.seed = int(state["epoch"]), int(state["cursor"]), \
            int(state["seed"])
