"""A tiny neural-net library on ``Value``: ``Neuron``, ``Layer``, ``MLP``.

A neuron computes ``act(b + sum_i w_i * x_i)`` with one fused ``dot`` node for
the weighted sum, so a forward pass makes one graph node per neuron (plus one
for the activation) instead of ``2 * nin + 1``. Parameters are listed as
``w_0 .. w_{n-1}, b`` per neuron, neuron by neuron, layer by layer: the same
order as Karpathy's micrograd, so weights can be copied between the two.

Left out on purpose: batching (a model is called on one example, a list of
numbers, at a time), losses (they are a line of ``Value`` arithmetic) and
any layer type other than fully connected.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from week00_micrograd.engine import Value, dot

__all__ = ["ACTIVATIONS", "Module", "Neuron", "Layer", "MLP"]

ACTIVATIONS = ("relu", "tanh", "sigmoid", "linear")


# ---------------------------------------------------------------------------
# Module: the two methods every model has


class Module:
    """Base class: ``parameters()`` lists the learnable Values, ``zero_grad()`` resets them."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0

    def num_parameters(self) -> int:
        return len(self.parameters())


# ---------------------------------------------------------------------------
# Neuron, Layer, MLP


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    return activation


# Glorot/He gains: the factor that keeps activations' variance steady layer to layer
_GAIN = {"relu": math.sqrt(2.0), "tanh": 5.0 / 3.0, "sigmoid": 1.0, "linear": 1.0}


class Neuron(Module):
    """``act(b + w . x)`` with ``w_i ~ U(-a, a)``, ``a = gain * sqrt(3 / nin)``, ``b = 0``.

    That is He (Kaiming) uniform initialization: ``Var(w) = gain^2 / nin`` with
    gain sqrt(2) for ReLU, 5/3 for tanh, 1 otherwise. ``rng`` is a
    ``random.Random`` (default: the ``random`` module, which ``seed_everything`` seeds).
    """

    def __init__(self, nin: int, activation: str = "relu", rng: random.Random | None = None):
        if not isinstance(nin, int) or isinstance(nin, bool) or nin < 1:
            raise ValueError(f"Neuron needs nin >= 1 inputs (an int), got {nin!r}")
        self.activation = _check_activation(activation)
        rng = rng if rng is not None else random
        bound = _GAIN[activation] * math.sqrt(3.0 / nin)
        self.w = [Value(rng.uniform(-bound, bound)) for _ in range(nin)]
        self.b = Value(0.0)

    def __call__(self, x: Sequence) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"Neuron({len(self.w)}) got an input of length {len(x)}")
        act = dot(self.w, x, self.b)
        if self.activation == "relu":
            return act.relu()
        if self.activation == "tanh":
            return act.tanh()
        if self.activation == "sigmoid":
            return act.sigmoid()
        return act

    def parameters(self) -> list[Value]:
        return self.w + [self.b]

    def __repr__(self) -> str:
        return f"Neuron({len(self.w)}, {self.activation})"


class Layer(Module):
    """``nout`` independent neurons on the same input.

    Returns a list of ``nout`` Values, or the single Value when ``nout == 1``
    (micrograd's convention, handy for a scalar-output model).
    """

    def __init__(self, nin: int, nout: int, activation: str = "relu",
                 rng: random.Random | None = None):
        if not isinstance(nout, int) or isinstance(nout, bool) or nout < 1:
            raise ValueError(f"Layer needs nout >= 1 neurons (an int), got {nout!r}")
        self.neurons = [Neuron(nin, activation, rng) for _ in range(nout)]

    def __call__(self, x: Sequence) -> Value | list[Value]:
        out = [n(x) for n in self.neurons]
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]

    def __repr__(self) -> str:
        return f"Layer({len(self.neurons[0].w)} -> {len(self.neurons)}, {self.neurons[0].activation})"


class MLP(Module):
    """A multi-layer perceptron: ``MLP(2, [16, 16, 1])`` maps 2 numbers to 1.

    Hidden layers use ``activation``; the last layer is linear (its output is a
    score / logit), as in micrograd.
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "relu",
                 rng: random.Random | None = None):
        if not nouts:
            raise ValueError("MLP needs at least one layer size in nouts, e.g. MLP(2, [16, 1])")
        sizes = [nin, *nouts]
        last = len(nouts) - 1
        self.layers = [
            Layer(sizes[i], sizes[i + 1], activation if i < last else "linear", rng)
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence) -> Value | list[Value]:
        for layer in self.layers:
            x = layer(x)
            if isinstance(x, Value):  # a 1-wide hidden layer feeds the next as a list
                x = [x] if layer is not self.layers[-1] else x
        return x

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]

    def __repr__(self) -> str:
        return f"MLP({', '.join(repr(layer) for layer in self.layers)})"
