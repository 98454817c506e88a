"""Stacking adapters: task arithmetic (fixed weights) and LoraHub (weights learnt without gradients).

Task arithmetic (Ilharco et al. 2023) serves ``sum_i w_i * delta_W_i``. A
weighted stack is already one row spec of the bank (``{"a": w_a, "b": w_b}``),
and ``combine`` writes the same function as a single adapter of rank
``sum_i r_i`` (a weighted sum of low-rank updates is a low-rank update, stacked
side by side)::

    A = cat_i(A_i)                  (sum r, in)
    B = cat_i(w_i * s_i * B_i)      (out, sum r)       scaling 1
    B @ A = sum_i w_i * s_i * B_i @ A_i                 (out, in)

So a weighted stack in a plan and a combined adapter are the same function:
the stack is free to re-weigh per row and per batch, the combined adapter is
one name (to save, ship or put in a plan many times) that costs the sum of
the ranks in memory and compute. ``merged_delta`` is the dense (out, in) sum.

LoraHub (Huang et al. 2023) learns the weights ``w`` (one per adapter) from a
handful of examples without gradients: minimise ``fewshot_loss(w) + alpha *
sum_i |w_i|`` with a black-box optimiser over the box ``[-bound, bound]^n``.
The paper uses nevergrad's NGOpt; ``lorahub`` runs a CMA-ES written here
(Hansen's ``purecma`` update rules, clipped to the box) or, with
``optimizer="ngopt"``, nevergrad itself on the same objective as the peer.
The few-shot loss of a whole population is one batched forward: candidate
p's weights go on its own rows of the batch (rows = candidates x examples,
the bank's per-row stacks make that free), under ``torch.no_grad``.

Note: LoraHub's code divides the L1 term by the number of adapters; here it is
``alpha * sum |w_i|`` as written (rescale ``alpha`` to match).

Left out: LoraHub's retrieval of candidate adapters from a hub (pass the
names), gradient-based weight learning (week06 trains adapters), TIES / DARE
merging (sign resolution and dropping of entries of dense deltas), and
merging the combined adapter into the base weights (week06's ``merge``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from week07_continual import collate
from week10_hydra.bank import AdapterBank

OPTIMIZERS = ("cma", "ngopt")


# ---------------------------------------------------------------- task arithmetic


def _check_weights(bank: AdapterBank, weights: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(weights, Mapping) or not weights:
        raise ValueError("weights must be a non-empty {adapter name: weight} dict, "
                         f"got {weights!r:.80}")
    missing = [n for n in weights if n not in bank]
    if missing:
        raise KeyError(f"adapters {missing} are not loaded in the bank; loaded: {bank.names()}")
    out = {}
    for n, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise ValueError(f"the weight of adapter {n!r} must be a finite number, got {w!r}")
        out[n] = float(w)
    return out


def merged_delta(bank: AdapterBank, weights: Mapping[str, float], layer: str) -> torch.Tensor:
    """``sum_i w_i * s_i B_i A_i`` in ``layer``: the dense (out, in) update of a weighted stack."""
    weights = _check_weights(bank, weights)
    if layer not in bank.layers:
        raise KeyError(f"layer {layer!r} is not a bank target; targets: {list(bank.layers)[:6]}...")
    return sum(w * bank.delta_weight(n, layer) for n, w in weights.items())


@torch.no_grad()
def combine(bank: AdapterBank, name: str, weights: Mapping[str, float]) -> int:
    """Add adapter ``name`` = the weighted sum ``weights`` of loaded adapters; returns its rank.

    Serving ``name`` equals serving the stack ``weights`` (see the module
    docstring); re-using a loaded name hot-swaps it, even one of the parts.
    """
    weights = _check_weights(bank, weights)
    new = {}
    for layer in bank.layers:
        As, Bs = [], []
        for n, w in weights.items():
            slot, r = bank.slots[n], bank.ranks[n]
            As.append(bank.A[layer][slot, :r])  # (r, in)
            Bs.append(w * bank.B[layer][slot, :, :r])  # (out, r), the scaling already in
        new[layer] = (torch.cat(As, 0).clone(), torch.cat(Bs, 1).clone(), 1.0)
    bank.add(name, new)
    return bank.ranks[name]


# ---------------------------------------------------------------- the few-shot objective


@torch.no_grad()
def fewshot_losses(bank: AdapterBank, model, adapters: Sequence[str], W,
                   examples: list[dict], max_rows: int = 512) -> torch.Tensor:
    """(P,) mean next-token loss on ``examples`` of each candidate row of ``W`` (P, n).

    Candidate p serves the stack ``{adapters[j]: W[p, j]}`` on its own copy of
    the examples: one forward of P * len(examples) rows (in chunks of at most
    ``max_rows`` rows). Each value equals week07's ``lm_loss`` of that stack alone.
    """
    W = torch.as_tensor(np.asarray(W, dtype=np.float64), dtype=torch.float32)
    if W.dim() != 2 or W.size(1) != len(adapters):
        raise ValueError(f"W must be (candidates, {len(adapters)}) for adapters "
                         f"{list(adapters)}, got shape {tuple(W.shape)}")
    device = next(model.parameters()).device
    x, y = collate(examples, device=device)  # (E, T)
    E = x.size(0)
    per = max(1, max_rows // E)  # candidates per forward
    was_training = model.training
    model.eval()
    out = []
    try:
        for s in range(0, W.size(0), per):
            Wc = W[s:s + per]  # (p, n)
            rows = [dict(zip(adapters, w.tolist())) for w in Wc for _ in range(E)]
            with bank.use(rows):
                logits = model(x.repeat(Wc.size(0), 1))  # (p*E, T, V)
            yy = y.repeat(Wc.size(0), 1)  # (p*E, T)
            nats = F.cross_entropy(logits.float().transpose(1, 2), yy.clamp(min=0),
                                   reduction="none")  # (p*E, T)
            scored = (yy >= 0).float()
            nats, scored = nats.view(Wc.size(0), -1), scored.view(Wc.size(0), -1)  # (p, E*T)
            out.append((nats * scored).sum(1) / scored.sum(1))
    finally:
        model.train(was_training)
    return torch.cat(out)


# ---------------------------------------------------------------- CMA-ES


class CMAES:
    """(mu/mu_w, lambda)-CMA-ES (Hansen 2016, "The CMA Evolution Strategy: A Tutorial"), with
    samples clipped to the box ``[lower, upper]^n`` (the clipped point is what is evaluated and
    what updates the distribution). ``ask()`` -> (lambda, n); ``tell(X, f)`` with f (lambda,)."""

    def __init__(self, x0, sigma: float, popsize: int | None = None, lower: float = -np.inf,
                 upper: float = np.inf, seed: int = 0):
        self.mean = np.asarray(x0, dtype=np.float64).copy()
        n = self.n = self.mean.size
        if sigma <= 0:
            raise ValueError(f"CMA-ES needs sigma > 0, got {sigma}")
        self.sigma, self.lower, self.upper = float(sigma), lower, upper
        self.lam = popsize or 4 + int(3 * math.log(n))
        if self.lam < 2:
            raise ValueError(f"CMA-ES needs a population of at least 2, got {self.lam}")
        self.mu = self.lam // 2
        w = math.log(self.mu + 0.5) - np.log(np.arange(1, self.mu + 1))
        self.w = w / w.sum()  # (mu,) positive recombination weights
        self.mueff = 1.0 / float((self.w ** 2).sum())
        mueff = self.mueff
        self.cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
        self.cs = (mueff + 2) / (n + mueff + 5)
        self.c1 = 2 / ((n + 1.3) ** 2 + mueff)
        self.cmu = min(1 - self.c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
        self.damps = 1 + 2 * max(0.0, math.sqrt((mueff - 1) / (n + 1)) - 1) + self.cs
        self.chin = math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))
        self.pc, self.ps = np.zeros(n), np.zeros(n)
        self.C, self.Bm, self.D = np.eye(n), np.eye(n), np.ones(n)
        self.gen = 0
        self.rng = np.random.default_rng(seed)

    def ask(self) -> np.ndarray:
        z = self.rng.standard_normal((self.lam, self.n))  # (lambda, n)
        x = self.mean + self.sigma * (z * self.D) @ self.Bm.T
        return np.clip(x, self.lower, self.upper)

    def tell(self, X: np.ndarray, f) -> None:
        f = np.asarray(f, dtype=np.float64)
        if X.shape != (self.lam, self.n) or f.shape != (self.lam,):
            raise ValueError(f"tell wants X ({self.lam}, {self.n}) and f ({self.lam},), got "
                             f"{X.shape} and {f.shape}")
        n, old = self.n, self.mean
        best = X[np.argsort(f, kind="stable")[:self.mu]]  # (mu, n)
        self.mean = self.w @ best
        y = (self.mean - old) / self.sigma
        c_isqrt = self.Bm @ np.diag(1 / self.D) @ self.Bm.T  # C^(-1/2)
        self.ps = (1 - self.cs) * self.ps + math.sqrt(self.cs * (2 - self.cs) * self.mueff) * \
            (c_isqrt @ y)
        self.gen += 1
        ps_norm = float(np.linalg.norm(self.ps))
        hsig = ps_norm / math.sqrt(1 - (1 - self.cs) ** (2 * self.gen)) / self.chin < \
            1.4 + 2 / (n + 1)
        self.pc = (1 - self.cc) * self.pc + hsig * math.sqrt(self.cc * (2 - self.cc) *
                                                             self.mueff) * y
        art = (best - old) / self.sigma  # (mu, n)
        self.C = ((1 - self.c1 - self.cmu) * self.C
                  + self.c1 * (np.outer(self.pc, self.pc)
                               + (1 - hsig) * self.cc * (2 - self.cc) * self.C)
                  + self.cmu * (art.T * self.w) @ art)
        self.sigma *= math.exp(min(1.0, (self.cs / self.damps) * (ps_norm / self.chin - 1)))
        self.C = (self.C + self.C.T) / 2
        d2, self.Bm = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(d2, 1e-20))


# ---------------------------------------------------------------- LoraHub


@dataclass
class LoraHubConfig:
    """LoraHub's search: ``budget`` objective evaluations (the paper's ``max_inference_step``:
    40), ``alpha`` on the L1 term (0.05), weights in ``[-bound, bound]`` (1.5), from ``init``."""

    budget: int = 40
    alpha: float = 0.05
    bound: float = 1.5
    init: float = 0.0
    sigma: float = 0.5  # CMA-ES's first step size
    population: int | None = None  # CMA-ES's lambda (4 + 3 ln n when None); one forward each
    optimizer: str = "cma"  # or "ngopt": nevergrad's NGOpt on the same objective (the peer)
    max_rows: int = 512  # rows per forward (candidates x examples)
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.population is not None and not 2 <= self.population <= self.budget:
            raise ValueError(f"population must be in 2..budget ({self.budget} evaluations), "
                             f"got {self.population}")
        if self.bound <= 0 or abs(self.init) > self.bound:
            raise ValueError(f"need bound > 0 and |init| <= bound, got bound={self.bound}, "
                             f"init={self.init}")
        if self.alpha < 0:
            raise ValueError(f"alpha (the L1 weight) must be >= 0, got {self.alpha}")


@dataclass
class LoraHubResult:
    weights: dict[str, float]  # the best candidate evaluated
    loss: float  # its objective: few-shot loss + alpha * sum |w|
    fewshot_loss: float  # its few-shot loss alone
    history: list[float] = field(default_factory=list)  # best objective so far, per evaluation
    evaluations: int = 0


def lorahub_objective(bank: AdapterBank, model, adapters: Sequence[str], W, examples: list[dict],
                      alpha: float, max_rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(objective (P,), few-shot loss (P,)) of candidate weights W (P, n)."""
    W = np.atleast_2d(np.asarray(W, dtype=np.float64))
    fs = fewshot_losses(bank, model, adapters, W, examples, max_rows).double().cpu().numpy()
    return fs + alpha * np.abs(W).sum(1), fs


def lorahub(bank: AdapterBank, model, adapters: Sequence[str], examples: list[dict],
            cfg: LoraHubConfig | None = None) -> LoraHubResult:
    """LoraHub: the weights of ``adapters`` that minimise the few-shot objective on ``examples``."""
    cfg = cfg or LoraHubConfig()
    adapters = list(adapters)
    if not adapters or len(set(adapters)) != len(adapters):
        raise ValueError(f"adapters must be distinct loaded adapter names, got {adapters}")
    missing = [n for n in adapters if n not in bank]
    if missing:
        raise KeyError(f"adapters {missing} are not loaded in the bank; loaded: {bank.names()}")
    if not examples:
        raise ValueError("LoraHub needs a few examples to score the candidates on")
    n = len(adapters)
    best = {"f": math.inf, "fs": math.inf, "w": np.full(n, cfg.init)}
    history: list[float] = []

    def evaluate(W: np.ndarray) -> np.ndarray:
        f, fs = lorahub_objective(bank, model, adapters, W, examples, cfg.alpha, cfg.max_rows)
        for i in range(len(f)):
            if f[i] < best["f"]:
                best.update(f=float(f[i]), fs=float(fs[i]), w=W[i].copy())
            history.append(best["f"])
        return f

    lam = cfg.population or 4 + int(3 * math.log(n))
    gens = max(1, cfg.budget // lam)  # whole generations; NGOpt gets the same count
    bar = tqdm(total=gens * lam, desc=f"lorahub ({cfg.optimizer})", unit="eval",
               disable=not cfg.progress, leave=False)
    if cfg.optimizer == "cma":
        es = CMAES(np.full(n, cfg.init), cfg.sigma, lam, -cfg.bound, cfg.bound, cfg.seed)
        for _ in range(gens):
            X = es.ask()
            es.tell(X, evaluate(X))
            bar.update(len(X))
    else:
        opt = _ngopt(n, cfg, gens * lam)
        for _ in range(gens * lam):  # one at a time, as LoraHub's code runs it
            cand = opt.ask()
            opt.tell(cand, float(evaluate(np.asarray(cand.value)[None])[0]))
            bar.update(1)
    bar.close()
    return LoraHubResult({a: float(w) for a, w in zip(adapters, best["w"])}, best["f"],
                         best["fs"], history, len(history))


def _ngopt(n: int, cfg: LoraHubConfig, budget: int):
    try:
        import nevergrad as ng
    except ImportError as e:  # a dev extra: the peer the tests compare against
        raise ImportError("optimizer='ngopt' needs nevergrad (pip install nevergrad, or "
                          "week10's dev extra)") from e
    param = ng.p.Array(init=np.full(n, cfg.init), lower=-cfg.bound, upper=cfg.bound)
    param.random_state = np.random.RandomState(cfg.seed)
    return ng.optimizers.NGOpt(parametrization=param, budget=budget)


__all__ = ["combine", "merged_delta", "fewshot_losses", "lorahub_objective", "CMAES",
           "LoraHubConfig", "LoraHubResult", "lorahub"]
