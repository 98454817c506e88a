"""The MLP against a float64 PyTorch twin with the same weights."""

from __future__ import annotations

import random

import pytest
import torch

from week00_micrograd import MLP, Layer, Neuron, Value, vsum

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_parameter_count_and_order():
    model = MLP(2, [16, 16, 1], rng=random.Random(0))
    assert model.num_parameters() == (2 * 16 + 16) + (16 * 16 + 16) + (16 + 1)  # 337
    n0 = model.layers[0].neurons[0]
    assert model.parameters()[:3] == [n0.w[0], n0.w[1], n0.b]  # micrograd's order
    assert [layer.neurons[0].activation for layer in model.layers] == ["relu", "relu", "linear"]


def test_zero_grad_resets_every_parameter():
    model = MLP(3, [4, 2], activation="tanh", rng=random.Random(1))  # tanh: no dead units
    out = model([1.0, -2.0, 0.5])
    vsum(o * o for o in out).backward()
    assert any(p.grad != 0.0 for p in model.parameters())
    model.zero_grad()
    assert all(p.grad == 0.0 for p in model.parameters())


def test_init_is_seeded_and_scaled():
    a, b = MLP(4, [8, 1], rng=random.Random(7)), MLP(4, [8, 1], rng=random.Random(7))
    assert [p.data for p in a.parameters()] == [p.data for p in b.parameters()]
    # He uniform for ReLU: |w| <= sqrt(2) * sqrt(3 / nin) = sqrt(6 / 4)
    assert max(abs(w.data) for n in a.layers[0].neurons for w in n.w) <= (6 / 4) ** 0.5
    assert all(n.b.data == 0.0 for n in a.layers[0].neurons)


def test_layer_returns_single_value_for_one_neuron():
    assert isinstance(Layer(2, 1)([1.0, 2.0]), Value)
    assert len(Layer(2, 3)([1.0, 2.0])) == 3
    assert isinstance(Neuron(2, "tanh")([Value(1.0), 2.0]), Value)
    assert isinstance(MLP(2, [1, 1])([1.0, 2.0]), Value)  # a 1-wide hidden layer works


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_mlp_forward_and_gradients_match_torch(activation, torch_twin, tol):
    rng = random.Random(3)
    model = MLP(3, [5, 4, 1], activation=activation, rng=rng)
    X = [[rng.uniform(-2, 2) for _ in range(3)] for _ in range(7)]
    y = [1 if i % 2 else -1 for i in range(7)]
    # hinge loss + L2, the demo's loss
    scores = [model(x) for x in X]
    loss = vsum((1.0 - yi * s).relu() for yi, s in zip(y, scores)) * (1 / 7)
    loss = loss + 1e-3 * vsum(p * p for p in model.parameters())
    loss.backward()

    forward, tensors, mapping = torch_twin(model)
    t_scores = forward(torch.tensor(X, dtype=torch.float64))  # (7,)
    t_y = torch.tensor(y, dtype=torch.float64)
    t_loss = (1.0 - t_y * t_scores).relu().mean() + 1e-3 * sum((t * t).sum() for t in tensors)
    t_loss.backward()

    assert [s.data for s in scores] == pytest.approx(t_scores.tolist(), rel=tol, abs=tol)
    assert loss.data == pytest.approx(t_loss.item(), rel=tol)
    ref_grads = [t.grad[idx].item() for t, idx in mapping]
    assert [p.grad for p in model.parameters()] == pytest.approx(ref_grads, rel=tol, abs=tol)
