"""The loss law ``L(N) = E + A * N^-alpha``: its fit, its file, and which N it counts.

``fit_power_law(n, loss)`` fits the law with ``scipy.optimize.curve_fit`` (residuals in log L,
``E >= 0``, started from a grid over E); ``LossFit`` holds the result with ``predict(n)`` and
``to_dict``/``from_dict``; ``load_fit()`` reads the fit the CPU sweep committed into the package
(``data/scaling_fit.json``, written by ``python -m week11_scale.scaling --preset cpu --save-fit``).
This module needs no training code, so a planner imports it alone.

Which N: **non-embedding** parameters (Kaplan et al. 2020): every weight except the token
embedding table and the output head, so ``LossFit.n_kind == "non_embedding"``;
``count_for_fit(model_cfg)`` gives that count for a ``LlamaConfig`` (nothing allocated) or a
module, and is what a caller passes to ``LossFit.predict``. Chinchilla (Hoffmann et al. 2022)
counts total parameters; ``CHINCHILLA`` holds its approach-3 law for reference slopes.

Left out: laws in D or in compute (L(N, D), L(C)) and confidence intervals on the parameters.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from shared import write_json_atomic

__all__ = ["LossFit", "fit_power_law", "count_for_fit", "load_fit", "write_json", "FIT_PATH",
           "CHINCHILLA"]

FIT_PATH = Path(__file__).parent / "data" / "scaling_fit.json"
# Hoffmann et al. 2022 (Chinchilla), approach 3: L(N, D) = E + A / N^alpha + B / D^beta
CHINCHILLA = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}

# ----------------------------------------------------------------------------- counting N


def count_for_fit(model_cfg) -> float:
    """N as the fit counts it: non-embedding parameters (no token embedding, no output head).

    ``model_cfg`` is a config with ``num_params()`` (week04's ``LlamaConfig``: nothing is
    allocated) or a ``torch.nn.Module`` (embedding tables and vocab-sized heads skipped)."""
    if isinstance(model_cfg, torch.nn.Module):
        skip = {id(m.weight) for m in model_cfg.modules() if isinstance(m, torch.nn.Embedding)}
        vocab = {m.num_embeddings for m in model_cfg.modules() if isinstance(m, torch.nn.Embedding)}
        skip |= {id(m.weight) for m in model_cfg.modules()
                 if isinstance(m, torch.nn.Linear) and m.out_features in vocab}
        return float(sum(p.numel() for p in model_cfg.parameters() if id(p) not in skip))
    if not callable(getattr(model_cfg, "num_params", None)):
        raise TypeError(f"count_for_fit takes a LlamaConfig-like config (with num_params()) or "
                        f"an nn.Module, got {type(model_cfg).__name__}")
    tied = getattr(model_cfg, "tie_embeddings", False)
    return float(model_cfg.num_params()
                 - model_cfg.vocab_size * model_cfg.n_embd * (1 if tied else 2))


# ----------------------------------------------------------------------------- fit


@dataclass
class LossFit:
    """``L(N) = E + A * N^-alpha`` over ``n_min..n_max`` (``n_kind`` parameters), from ``source``."""

    E: float
    A: float
    alpha: float
    n_min: float
    n_max: float
    n_points: int
    source: dict = field(default_factory=dict)
    n_kind: str = "non_embedding"

    def predict(self, n):
        """The fitted loss at ``n`` (a number or an array of ``n_kind`` parameter counts)."""
        arr = np.asarray(n, dtype=float)
        if np.any(arr <= 0):
            raise ValueError(f"parameter counts must be > 0, got {n!r}")
        out = self.E + self.A * arr ** -self.alpha
        return float(out) if out.ndim == 0 else out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LossFit:
        known = {f.name for f in fields(cls)}
        missing = {"E", "A", "alpha", "n_min", "n_max", "n_points"} - set(d)
        if missing:
            raise ValueError(f"not a LossFit: missing {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in known})


def fit_power_law(n, loss, source: dict | None = None) -> LossFit:
    """Least-squares fit of ``L(N) = E + A * N^-alpha`` with ``E >= 0``, ``alpha > 0``.

    The residuals are taken in log L (relative errors, so every point counts alike), with
    ``A = exp(a)``. A grid over E (each E a straight-line fit of log(L - E) on log N) gives the
    start, ``scipy.optimize.curve_fit`` refines it within bounds (0 <= E < min L). Needs at
    least 3 points with N > 0 and L > 0."""
    from scipy.optimize import curve_fit
    n, loss = np.asarray(n, dtype=float).ravel(), np.asarray(loss, dtype=float).ravel()
    if n.shape != loss.shape:
        raise ValueError(f"n and loss differ in length: {n.size} vs {loss.size}")
    if n.size < 3:
        raise ValueError(f"fit_power_law needs at least 3 points for 3 parameters (E, A, "
                         f"alpha), got {n.size}")
    if not (np.all(np.isfinite(n)) and np.all(n > 0)):
        raise ValueError(f"parameter counts must be finite and > 0, got {n.tolist()}")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise ValueError(f"losses must be finite and > 0, got {loss.tolist()}")
    if np.unique(n).size < 3:
        raise ValueError(f"need at least 3 distinct parameter counts, got {np.unique(n).tolist()}")
    x, top = np.log(n), float(loss.min())

    def model(x, E, a, alpha):                                # log L at log N
        return np.log(E + np.exp(a - alpha * x))

    best = None
    for E in np.linspace(0.0, top * 0.999, 200):              # the start: a grid over E
        slope, a = np.polyfit(x, np.log(loss - E), 1)
        if slope >= 0:
            continue
        sse = float(np.sum((model(x, E, a, -slope) - np.log(loss)) ** 2))
        if best is None or sse < best[0]:
            best = (sse, E, a, -slope)
    if best is None:
        raise ValueError(f"the loss does not fall with N ({loss.tolist()}): no power law to fit")
    p0 = np.array(best[1:])
    lo, hi = [0.0, -np.inf, 1e-6], [top * (1 - 1e-9), np.inf, 10.0]
    p0 = np.clip(p0, np.array(lo) + [0, 0, 1e-9], np.array(hi) - [1e-9 * top, 0, 1e-9])
    try:
        (E, a, alpha), _ = curve_fit(model, x, np.log(loss), p0=p0, bounds=(lo, hi),
                                     maxfev=20000)
    except RuntimeError:          # no convergence: the grid start is a least-squares fit too
        E, a, alpha = p0
    return LossFit(E=float(E), A=float(math.exp(a)), alpha=float(alpha), n_min=float(n.min()),
                   n_max=float(n.max()), n_points=int(n.size), source=dict(source or {}))



# ----------------------------------------------------------------------------- files


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as JSON atomically (``shared.write_json_atomic``)."""
    return write_json_atomic(path, obj)


def load_fit(path: str | os.PathLike | None = None) -> LossFit | None:
    """The fit committed with the package (``data/scaling_fit.json``), or ``path``; None if
    the file is missing."""
    path = Path(path) if path is not None else FIT_PATH
    if not path.is_file():
        return None
    return LossFit.from_dict(json.loads(path.read_text(encoding="utf-8")))

