"""The whole HTM pipeline on a stream: encoder -> spatial pooler -> temporal memory, with a
next-step decoder and the anomaly score and likelihood, one value at a time (online: it
predicts each step before it learns from it, and never sees a value twice).

- ``HTMConfig``: the encoder (scalar + optional date), ``SPConfig``, ``TMConfig``, the
  number of value buckets the prediction is scored in, and the likelihood's windows;
  ``HTMConfig.preset("tiny" | "full")``.
- ``HTMStreamModel(cfg, lo, hi)``: ``step(value, timestamp) -> (predicted bucket for the
  next step, raw anomaly)``; ``run(stream) -> dict`` of per-step arrays: ``pred`` (the
  bucket predicted for step t at t-1, -1 at t=0), ``bucket`` (the true one), ``raw`` and
  ``likelihood``.
- the decoder: a table ``(C, B)`` of how often column c was active when the input was in
  bucket b (decaying, so it follows the spatial pooler as it learns); the next step's
  prediction is the bucket whose column profile best covers the predicted columns, or the
  current bucket when nothing is predicted.
- ``n_params``: what the model learns, counted as parameters: the spatial pooler's
  potential synapses, the temporal memory's synapses in use, and the decoder's table.

- ``SequenceHTM(n_symbols, tm_cfg, w)``: temporal memory alone on symbol sequences (each
  symbol a fixed random set of ``w`` columns, as in Hawkins & Ahmad 2016), with
  ``train(seqs, epochs)`` and ``accuracy(seqs)`` (next-symbol accuracy on positions
  1 .. L-1; a reset, then a start symbol, before each sequence, as the nets' BOS token):
  the forgetting experiment's HTM.

Left out: NuPIC's SDR classifier (a softmax on active cells); our decoder reads columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from track_htm.anomaly import AnomalyLikelihood, raw_anomaly
from track_htm.encoders import DateEncoder, ScalarEncoder, concat
from track_htm.sdr import random_sdr
from track_htm.spatial_pooler import SpatialPooler, SPConfig
from track_htm.temporal_memory import TemporalMemory, TMConfig

__all__ = ["HTMConfig", "HTMStreamModel", "SequenceHTM", "quantize"]


def quantize(values, lo: float, hi: float, n_buckets: int) -> np.ndarray:
    """Values -> bucket ids 0 .. n_buckets - 1 (equal widths over [lo, hi], clipped)."""
    v = (np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-12)
    return np.clip((v * n_buckets).astype(np.int64), 0, n_buckets - 1)


@dataclass
class HTMConfig:
    scalar_n: int = 400
    scalar_w: int = 41
    use_date: bool = False
    n_buckets: int = 32
    decoder_decay: float = 0.999
    sp: SPConfig = field(default_factory=SPConfig)
    tm: TMConfig = field(default_factory=TMConfig)
    learning_period: int = 288
    estimation_samples: int = 100
    historic_window: int = 8640

    @classmethod
    def preset(cls, name: str, **overrides) -> HTMConfig:
        if name == "tiny":
            cfg = dict(scalar_n=400, scalar_w=41, sp=SPConfig.preset("tiny"), tm=TMConfig.preset("tiny"),
                       learning_period=100, estimation_samples=50, historic_window=1000)
        elif name == "full":
            cfg = dict(sp=SPConfig.preset("full"), tm=TMConfig.preset("full"))
        else:
            raise ValueError(f"unknown preset {name!r}; valid: ['full', 'tiny']")
        return cls(**{**cfg, **overrides})


class HTMStreamModel:
    def __init__(self, cfg: HTMConfig, lo: float, hi: float):
        self.cfg, self.lo, self.hi = cfg, lo, hi
        self.scalar = ScalarEncoder(cfg.scalar_n, cfg.scalar_w, lo, hi)
        self.date = DateEncoder() if cfg.use_date else None
        n_in = cfg.scalar_n + (self.date.n if self.date else 0)
        sp_cfg = SPConfig(**{**cfg.sp.__dict__, "input_size": n_in})
        tm_cfg = TMConfig(**{**cfg.tm.__dict__, "n_columns": sp_cfg.n_columns})
        self.sp, self.tm = SpatialPooler(sp_cfg), TemporalMemory(tm_cfg)
        self.table = np.zeros((sp_cfg.n_columns, cfg.n_buckets))           # (C, B)
        self.likelihood = AnomalyLikelihood(cfg.learning_period, cfg.estimation_samples,
                                            cfg.historic_window)

    @property
    def n_params(self) -> int:
        return self.sp.n_synapses + self.tm.n_synapses + self.table.size

    def encode(self, value: float, timestamp=None) -> np.ndarray:
        x = self.scalar.encode(value)
        return concat(x, self.date.encode(timestamp)) if self.date else x

    def decode(self, predicted_cols: np.ndarray, current: int) -> int:
        if not predicted_cols.any():
            return current
        prof = self.table / np.maximum(self.table.sum(axis=0, keepdims=True), 1e-9)  # (C, B)
        score = predicted_cols.astype(np.float64) @ prof                            # (B,)
        return int(np.argmax(score)) if score.max() > 0 else current

    def step(self, value: float, timestamp=None, learn: bool = True) -> tuple[int, float]:
        predicted = self.tm.predicted_columns()               # made at the previous step
        cols = self.sp.compute(self.encode(value, timestamp), learn=learn)
        raw = raw_anomaly(cols, predicted)
        self.tm.compute(cols, learn=learn)
        b = int(quantize(value, self.lo, self.hi, self.cfg.n_buckets))
        if learn:
            self.table *= self.cfg.decoder_decay
            self.table[cols, b] += 1.0
        return self.decode(self.tm.predicted_columns(), b), raw

    def run(self, stream, learn: bool = True, progress: bool = False) -> dict:
        from tqdm.auto import tqdm
        T = len(stream)
        pred = np.full(T, -1, dtype=np.int64)
        raw, lik = np.zeros(T), np.zeros(T)
        nxt = -1
        for t in tqdm(range(T), desc=f"htm {stream.name}", disable=not progress, leave=False):
            pred[t] = nxt
            nxt, raw[t] = self.step(stream.values[t], stream.timestamps[t], learn)
            lik[t] = self.likelihood.update(raw[t])
        return {"pred": pred, "bucket": quantize(stream.values, self.lo, self.hi, self.cfg.n_buckets),
                "raw": raw, "likelihood": lik}


# --------------------------------------------------------------------------- sequences


class SequenceHTM:
    """Temporal memory on symbol sequences; symbols are fixed random column SDRs."""

    def __init__(self, n_symbols: int, tm_cfg: TMConfig, w: int = 20, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.tm = TemporalMemory(tm_cfg)
        # symbols 0 .. n-1, then a start symbol fed after each reset (the nets' BOS token)
        self.codes = np.stack([random_sdr(tm_cfg.n_columns, w, rng) for _ in range(n_symbols + 1)])  # (V+1, C)
        self.bos = n_symbols

    @property
    def n_params(self) -> int:
        return self.tm.n_synapses

    def predict(self) -> int:
        """The symbol whose columns the prediction covers best (-1: no prediction)."""
        p = self.tm.predicted_columns()
        if not p.any():
            return -1
        return int(np.argmax(self.codes[:self.bos].astype(np.int64) @ p))

    def train(self, seqs, epochs: int = 1, rng: np.random.Generator | None = None) -> None:
        rng = rng or np.random.default_rng(0)
        for _ in range(epochs):
            for i in rng.permutation(len(seqs)):
                self.tm.reset()
                for s in [self.bos, *seqs[i]]:
                    self.tm.compute(self.codes[s], learn=True)

    def accuracy(self, seqs) -> float:
        """Share of positions 2..L whose symbol the memory predicted (no learning)."""
        hit = tot = 0
        for seq in seqs:
            self.tm.reset()
            self.tm.compute(self.codes[self.bos], learn=False)
            for t, s in enumerate(seq):
                if t > 0:
                    hit += self.predict() == s
                    tot += 1
                self.tm.compute(self.codes[s], learn=False)
        return hit / max(tot, 1)
