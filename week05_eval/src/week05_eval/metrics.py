"""Loss, perplexity and bits per byte of any model on held-out text.

``evaluate_text(model, tokenizer, docs)`` encodes each document with a
leading ``<|bos|>`` (as week02's ``prepare`` does), joins them into one token
stream, cuts it into non-overlapping windows of ``block_size + 1`` tokens and
scores every next-token prediction. ``evaluate_ids`` does the same for a
token stream you already have, ``evaluate_data_dir`` for the ``val`` shards
of a prepared folder.

Why bits per byte: loss per token depends on the tokenizer (a bigger
vocabulary packs more bytes into a token and so has a higher loss per token
for the same model quality). Dividing the summed loss by the number of UTF-8
bytes the tokens stand for, and converting nats to bits, gives a number two
models with different tokenizers can be compared on. Special tokens cover 0
bytes; week02's ``bits_per_byte`` does the division.

``unigram_bpb`` is the trivial baseline: a model that ignores the context and
predicts each token with its (add-one smoothed) training frequency;
``UnigramLM`` is the same model as a ``shared.LanguageModel``, so every other
harness (multiple choice, say) can score it too.

Left out: sliding windows with overlapping context (lm-eval's
``loglikelihood_rolling`` with a stride), which cost block_size/stride times
more compute for a slightly lower loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from week02_bpe import bits_per_byte
from week05_eval.scoring import bos_of, model_block_size, model_device

# --------------------------------------------------------------------------- results


@dataclass
class LossResult:
    loss: float        # mean nats per predicted token
    ppl: float         # exp(loss)
    bpb: float         # bits per UTF-8 byte of the predicted tokens
    tokens: int        # predicted tokens scored
    bytes: int         # UTF-8 bytes those tokens stand for

    def to_dict(self) -> dict:
        return asdict(self)


def token_bytes_of(tokenizer) -> torch.Tensor:
    """(V,) int64 byte length of every token: week02's ``token_bytes`` when it applies.

    Other tokenizers fall back to ``len(decode([i]).encode())`` per id (exact
    for byte-level tokenizers whose tokens are whole characters).
    """
    try:
        from week02_bpe import token_bytes
        return token_bytes(tokenizer)
    except (TypeError, ImportError):
        pass
    out = []
    for i in range(tokenizer.vocab_size):
        try:
            out.append(len(tokenizer.decode([i]).encode("utf-8")))
        except Exception:  # noqa: BLE001 - an id the tokenizer cannot decode covers no bytes
            out.append(0)
    return torch.tensor(out, dtype=torch.long)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_ids(model, ids: Sequence[int] | torch.Tensor | np.ndarray, token_bytes: torch.Tensor,
                 block_size: int | None = None, batch_size: int = 8,
                 max_tokens: int | None = None, progress: bool = False) -> LossResult:
    """Loss / ppl / bpb of ``model`` on one token stream (non-overlapping windows).

    The stream is cut into windows of ``block_size + 1`` tokens (the last,
    shorter one included); each window predicts its last ``len - 1`` tokens.
    ``max_tokens`` caps how much of the stream is used.
    """
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    if max_tokens is not None:
        ids = ids[:max_tokens + 1]
    if ids.numel() < 2:
        raise ValueError(f"need at least 2 tokens to score a prediction, got {ids.numel()}")
    T = block_size or model_block_size(model)
    device = model_device(model)
    model.eval()
    starts = list(range(0, ids.numel() - 1, T))
    all_nats, all_targets = [], []
    for b0 in tqdm(range(0, len(starts), batch_size), disable=not progress, desc="loss", unit="batch"):
        rows = [ids[s:s + T + 1] for s in starts[b0:b0 + batch_size]]
        L = max(len(r) for r in rows)
        x = torch.zeros(len(rows), L - 1, dtype=torch.long)                 # (B, T)
        y = torch.full((len(rows), L - 1), -1, dtype=torch.long)            # (B, T), -1 = padding
        for i, r in enumerate(rows):
            x[i, :len(r) - 1] = r[:-1]
            y[i, :len(r) - 1] = r[1:]
        logits = model(x.to(device)).float()                                # (B, T, V)
        nats = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1).to(device),
                               ignore_index=-1, reduction="none").cpu()     # (B*T,)
        keep = y.reshape(-1) >= 0
        all_nats.append(nats[keep].double())
        all_targets.append(y.reshape(-1)[keep])
    nats_t, targets_t = torch.cat(all_nats), torch.cat(all_targets)         # (N,) each
    loss = nats_t.mean().item()
    n_bytes = int(token_bytes.to(torch.long)[targets_t].sum())
    bpb = bits_per_byte(nats_t, targets_t, token_bytes)   # week02: sum nats / (ln 2 * bytes)
    return LossResult(loss=loss, ppl=math.exp(min(loss, 700.0)), bpb=bpb,
                      tokens=int(targets_t.numel()), bytes=n_bytes)


def encode_docs(tokenizer, docs: str | Iterable[str]) -> list[int]:
    """One token stream: ``<|bos|>`` + the tokens of each document, in order."""
    if isinstance(docs, str):
        docs = [docs]
    bos = bos_of(tokenizer)
    out: list[int] = []
    for d in docs:
        out.extend(bos)
        out.extend(tokenizer.encode(d))
    return out


def evaluate_text(model, tokenizer, docs: str | Iterable[str], block_size: int | None = None,
                  batch_size: int = 8, max_tokens: int | None = None,
                  progress: bool = False) -> LossResult:
    """Loss / ppl / bpb of ``model`` on text (one string or a list of documents)."""
    ids = encode_docs(tokenizer, docs)
    return evaluate_ids(model, ids, token_bytes_of(tokenizer), block_size=block_size,
                        batch_size=batch_size, max_tokens=max_tokens, progress=progress)


def read_split(data_dir: str | Path, split: str = "val") -> np.ndarray:
    """All tokens of one split of a week02 prepared folder, concatenated (int64)."""
    from week02_bpe import read_index
    index = read_index(data_dir)
    if split not in index["splits"]:
        raise ValueError(f"unknown split {split!r}; {data_dir} has {sorted(index['splits'])}")
    dtype = np.dtype(index["dtype"])
    parts = [np.fromfile(Path(data_dir) / s["file"], dtype=dtype)
             for s in index["splits"][split]["shards"]]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def evaluate_data_dir(model, data_dir: str | Path, token_bytes: torch.Tensor, split: str = "val",
                      block_size: int | None = None, batch_size: int = 8,
                      max_tokens: int | None = None, progress: bool = False) -> LossResult:
    """Loss / ppl / bpb on the ``split`` shards of a folder made by ``week02_bpe.prepare``."""
    return evaluate_ids(model, read_split(data_dir, split), token_bytes, block_size=block_size,
                        batch_size=batch_size, max_tokens=max_tokens, progress=progress)


# --------------------------------------------------------------------------- trivial baseline


def unigram_bpb(train_ids: Sequence[int] | np.ndarray, val_ids: Sequence[int] | np.ndarray,
                token_bytes: torch.Tensor) -> LossResult:
    """The context-free baseline: add-one smoothed token frequencies from ``train_ids``.

    Scores every token of ``val_ids`` except the first (matching what a model
    predicts from a stream), so its numbers line up with ``evaluate_ids``.
    """
    V = int(token_bytes.numel())
    train = np.asarray(train_ids, dtype=np.int64)
    val = np.asarray(val_ids, dtype=np.int64)[1:]
    counts = np.bincount(train, minlength=V)[:V].astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    nats = -logp[val].sum()
    n_bytes = int(token_bytes.numpy()[val].sum())
    loss = float(nats / len(val))
    return LossResult(loss=loss, ppl=math.exp(loss), bpb=float(nats / (math.log(2) * n_bytes)),
                      tokens=int(len(val)), bytes=n_bytes)


class UnigramLM(torch.nn.Module):
    """The context-free model behind ``unigram_bpb`` as a ``shared.LanguageModel``.

    ``forward(idx)`` returns the same log-frequencies at every position, so its
    multiple-choice accuracy is what word frequency alone achieves.
    """

    def __init__(self, train_ids, vocab_size: int, block_size: int = 1024):
        super().__init__()
        counts = np.bincount(np.asarray(train_ids, dtype=np.int64), minlength=vocab_size)
        counts = counts[:vocab_size].astype(np.float64) + 1.0
        self.register_buffer("logp", torch.tensor(np.log(counts / counts.sum()),
                                                  dtype=torch.float32))   # (V,)
        self.vocab_size, self.block_size = vocab_size, block_size

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logp.expand(*idx.shape, -1)                            # (B, T, V)
