"""The peers: an LSTM (``torch.nn.LSTM``) and week04's Llama-style transformer, as
next-token predictors over quantised values or symbols, sized to a parameter budget and
trained with week03's ``Trainer`` (default ``next_token_loss`` on ``(x, y)`` batches).

- ``LSTMLM(vocab, hidden)``: embedding -> one LSTM layer -> linear head, ``forward(idx)
  -> logits (B, T, V)``; ``lstm_for_budget(budget, vocab)`` picks the hidden size whose
  parameter count is closest to ``budget``;
- ``llama_for_budget(budget, vocab, block)``: a 2-layer ``Llama`` whose ``n_embd`` (a
  multiple of 8, 4 heads) gives the closest count;
- ``stream_examples(tokens, block)``: (x, y) windows of a token stream;
  ``sequence_examples(seqs, bos)``: one (x, y) per sequence, ``[BOS, s0 .. s_{L-2}] ->
  [IGNORE, s1 .. s_{L-1}]`` (the first symbol is unpredictable, as for the HTM);
- ``train_lm(model, examples, steps, ...)``: week03's Trainer with a ``shared.SampledBatches``
  loader, writing nothing to disk; call it again on new examples to fine-tune (the
  sequential, forgetting-prone way);
- ``predict_stream(model, tokens, block, start)``: for each t >= start, the argmax next
  token and the probability of the true one from the ``block`` tokens before t;
  ``sequence_accuracy(model, seqs, bos)``: next-symbol accuracy on positions 1 .. L-1.

Left out: online (per-step) training of the nets on the stream: they train on the first
part and are scored, frozen, on the rest (the HTM learns all along, as it is made to).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from shared import IGNORE_INDEX, SampledBatches
from week03_training import TrainConfig, Trainer
from week04_modern_arch_tools import Llama, LlamaConfig

__all__ = ["LSTMLM", "lstm_for_budget", "llama_for_budget", "n_params", "stream_examples",
           "sequence_examples", "train_lm", "predict_stream", "sequence_accuracy"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- models


class LSTMLM(nn.Module):
    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.emb = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(idx))                          # (B, T, H)
        return self.head(h)                                      # (B, T, V)


def lstm_for_budget(budget: int, vocab: int) -> LSTMLM:
    # params(h) = V h (emb) + 4 (2 h^2 + 2 h) (LSTM) + h V + V (head)
    sizes = np.arange(4, 1025)
    count = vocab * sizes + 8 * sizes ** 2 + 8 * sizes + sizes * vocab + vocab
    return LSTMLM(vocab, int(sizes[np.argmin(np.abs(count - budget))]))


def _llama_cfg(n_embd: int, vocab: int, block: int) -> LlamaConfig:
    return LlamaConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=4, n_embd=n_embd)


def llama_for_budget(budget: int, vocab: int, block: int) -> Llama:
    lo, hi = 1, 64                                               # n_embd = 8 * k, count grows with k
    while lo < hi:                                               # smallest k with count >= budget
        k = (lo + hi) // 2
        lo, hi = (k + 1, hi) if n_params(Llama(_llama_cfg(8 * k, vocab, block))) < budget else (lo, k)
    near = min({max(lo - 1, 1), lo}, key=lambda k: abs(n_params(Llama(_llama_cfg(8 * k, vocab, block))) - budget))
    return Llama(_llama_cfg(8 * near, vocab, block))


# --------------------------------------------------------------------------- data


def stream_examples(tokens: np.ndarray, block: int, stride: int = 1) -> list:
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    return [(t[i:i + block], t[i + 1:i + block + 1]) for i in range(0, len(t) - block - 1, stride)]


def sequence_examples(seqs, bos: int) -> list:
    out = []
    for s in seqs:
        s = torch.as_tensor(list(s), dtype=torch.long)
        x = torch.cat([torch.tensor([bos]), s[:-1]])
        y = s.clone()
        y[0] = IGNORE_INDEX
        out.append((x, y))
    return out


def _collate(batch):
    return torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])


# --------------------------------------------------------------------------- training


def train_lm(model: nn.Module, examples: list, steps: int, batch_size: int = 16, lr: float = 3e-3,
             seed: int = 0, progress: bool = False) -> list[float]:
    """Train ``model`` on ``examples`` for ``steps`` steps; returns the loss history."""
    torch.manual_seed(seed)
    block = int(examples[0][0].shape[0])
    cfg = TrainConfig(steps=steps, batch_size=batch_size, block_size=block, lr=lr, warmup_steps=min(10, steps // 10),
                      weight_decay=0.0, eval_every=0, ckpt_every=0, save_final=False,
                      write_metrics=False, progress=progress, seed=seed)
    loader = SampledBatches(examples, batch_size, _collate, seed=seed)
    trainer = Trainer(model, loader, cfg, run_dir="unused")  # with these settings it writes nothing
    return trainer.fit()


# --------------------------------------------------------------------------- scoring


@torch.no_grad()
def predict_stream(model: nn.Module, tokens: np.ndarray, block: int, start: int,
                   chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(pred (T - start,), p_true (T - start,)) for t = start .. T-1, from tokens[t-block:t]."""
    if start < block:
        raise ValueError(f"start ({start}) must be >= block ({block})")
    model.eval()
    t = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
    ctx = t.unfold(0, block, 1)[start - block:len(t) - block]      # (N, block): row i ends at start+i-1
    preds, ps = [], []
    for i in range(0, len(ctx), chunk):
        logits = model(ctx[i:i + chunk])[:, -1]                    # (n, V)
        prob = logits.float().softmax(-1)
        tgt = t[start + i:start + i + len(logits)]
        preds.append(prob.argmax(-1))
        ps.append(prob.gather(1, tgt[:, None])[:, 0])
    model.train()
    return torch.cat(preds).numpy(), torch.cat(ps).numpy()


@torch.no_grad()
def sequence_accuracy(model: nn.Module, seqs, bos: int) -> float:
    model.eval()
    x, y = _collate(sequence_examples(seqs, bos))
    pred = model(x).argmax(-1)                                     # (N, L)
    keep = y != IGNORE_INDEX
    model.train()
    return float((pred[keep] == y[keep]).float().mean())
