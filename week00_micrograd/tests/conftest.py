"""Shared fixtures: a torch twin of our MLP (same weights, float64) and tolerances."""

from __future__ import annotations

import pytest
import torch

from week00_micrograd import MLP

# Both sides compute in float64; they differ only in rounding (operation order,
# library formulas such as sigmoid), which stays near 1e-15 relative. 1e-6 (the
# issue's figure) still catches any real mistake, which is off by O(1).
TOL = 1e-6


@pytest.fixture
def tol() -> float:
    return TOL


@pytest.fixture
def torch_twin():
    """``torch_twin(model)`` -> (forward(x_batch) -> scores, [params]) sharing our weights.

    Parameters are returned in our order (per neuron: weights then bias) as
    float64 leaf tensors; ``forward`` maps a (N, nin) tensor to (N,) scores.
    """

    def build(model: MLP):
        layers = []
        for layer in model.layers:
            W = torch.tensor([[w.data for w in n.w] for n in layer.neurons],
                             dtype=torch.float64, requires_grad=True)  # (nout, nin)
            b = torch.tensor([n.b.data for n in layer.neurons],
                             dtype=torch.float64, requires_grad=True)  # (nout,)
            layers.append((W, b, layer.neurons[0].activation))

        def forward(x: torch.Tensor) -> torch.Tensor:  # (N, nin) -> (N,)
            for W, b, act in layers:
                x = x @ W.T + b  # (N, nout)
                if act == "relu":
                    x = x.relu()
                elif act == "tanh":
                    x = x.tanh()
                elif act == "sigmoid":
                    x = x.sigmoid()
            return x[:, 0]

        def params_in_our_order() -> list[tuple[torch.Tensor, tuple]]:
            # (tensor, index) pairs: each of our Values maps to one tensor element
            out = []
            for W, b, _ in layers:
                for i in range(W.shape[0]):
                    out += [(W, (i, j)) for j in range(W.shape[1])]
                    out.append((b, (i,)))
            return out

        return forward, [t for W, b, _ in layers for t in (W, b)], params_in_our_order()

    return build
