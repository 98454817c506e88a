"""The two-moons demo: data, loss and training loop (CLI: ``python -m week00_micrograd.train``).

The data set is generated here (two interleaved half circles with Gaussian
noise, labels -1 / +1); the model is ``MLP(2, [16, 16, 1])`` with ReLU; the
loss is the SVM max-margin (hinge) loss, ``mean(relu(1 - y * score))``; the
optimizer is ``AdamW`` with a linear-warmup + cosine learning-rate schedule.
``train_moons`` logs every step's loss, accuracy and learning rate to a
``shared.MetricsLogger`` when given one.

Left out on purpose: mini-batches and a held-out split. The point is to watch
a from-scratch autograd engine fit a non-linear boundary, not model selection.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tqdm import tqdm

from shared import MetricsLogger
from week00_micrograd.engine import Value, vsum
from week00_micrograd.nn import MLP
from week00_micrograd.optim import AdamW, cosine_lr

__all__ = ["TrainConfig", "TrainResult", "make_moons", "hinge_loss", "train_moons", "example_graph"]


# ---------------------------------------------------------------------------
# data


def make_moons(n: int = 200, noise: float = 0.1, seed: int = 0) -> tuple[list[list[float]], list[int]]:
    """Two interleaving half circles: ``n`` points, labels -1 (upper) and +1 (lower).

    The upper moon is ``(cos t, sin t)`` and the lower one ``(1 - cos t, 0.5 - sin t)``
    for angles t in [0, pi], each point jittered by N(0, noise^2) per coordinate.
    Points alternate between the moons, so any prefix is balanced.
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"make_moons needs n >= 2 points (an int), got {n!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    rng = random.Random(seed)
    X, y = [], []
    for i in range(n):
        t = rng.uniform(0.0, math.pi)
        if i % 2 == 0:
            px, py, label = math.cos(t), math.sin(t), -1
        else:
            px, py, label = 1.0 - math.cos(t), 0.5 - math.sin(t), 1
        X.append([px + rng.gauss(0.0, noise), py + rng.gauss(0.0, noise)])
        y.append(label)
    return X, y


# ---------------------------------------------------------------------------
# loss


def hinge_loss(model: MLP, X: list[list[float]], y: list[int]) -> tuple[Value, float]:
    """Mean SVM max-margin loss over the data set, and the accuracy (a float in [0, 1])."""
    scores = [model(x) for x in X]
    margins = [(1.0 - yi * s).relu() for yi, s in zip(y, scores)]
    loss = vsum(margins) * (1.0 / len(margins))
    accuracy = sum((s.data > 0) == (yi > 0) for yi, s in zip(y, scores)) / len(y)
    return loss, accuracy


# ---------------------------------------------------------------------------
# training


@dataclass
class TrainConfig:
    n_samples: int = 100
    noise: float = 0.1
    hidden: tuple[int, ...] = (16, 16)
    steps: int = 100
    lr: float = 0.05
    warmup_steps: int = 5
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TrainResult:
    model: MLP
    X: list[list[float]]
    y: list[int]
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1]


def train_moons(cfg: TrainConfig, logger: MetricsLogger | None = None,
          progress: bool = True) -> TrainResult:
    """Full-batch AdamW on two moons; logs ``loss``, ``accuracy``, ``lr`` per step."""
    if cfg.steps < 1:
        raise ValueError(f"steps must be >= 1, got {cfg.steps}")
    X, y = make_moons(cfg.n_samples, cfg.noise, cfg.seed)
    model = MLP(2, [*cfg.hidden, 1], activation="relu", rng=random.Random(cfg.seed))
    opt = AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    result = TrainResult(model, X, y)
    bar = tqdm(range(cfg.steps), desc="week00 train", disable=not progress)
    for step in bar:
        opt.lr = cosine_lr(step, cfg.lr, cfg.steps, min(cfg.warmup_steps, cfg.steps))
        loss, acc = hinge_loss(model, X, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        result.losses.append(loss.data)
        result.accuracies.append(acc)
        if logger is not None:
            logger.log(step=step, loss=loss.data, accuracy=acc, lr=opt.lr)
        bar.set_postfix(loss=f"{loss.data:.4f}", acc=f"{acc:.3f}")
    # the accuracy after the last update (the loop measured it before each update)
    _, acc = hinge_loss(model, X, y)
    result.accuracies.append(acc)
    if logger is not None:
        logger.log(step=cfg.steps, accuracy=acc)
    return result


def example_graph() -> Value:
    """A small neuron, ``tanh(x1*w1 + x2*w2 + b)``, with labels, after backward."""
    x1, x2 = Value(2.0, label="x1"), Value(0.0, label="x2")
    w1, w2 = Value(-3.0, label="w1"), Value(1.0, label="w2")
    b = Value(6.8813735870195432, label="b")
    x1w1 = x1 * w1
    x1w1.label = "x1*w1"
    x2w2 = x2 * w2
    x2w2.label = "x2*w2"
    n = x1w1 + x2w2 + b
    n.label = "n"
    o = n.tanh()
    o.label = "o"
    o.backward()
    return o
