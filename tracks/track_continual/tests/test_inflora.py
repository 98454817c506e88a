"""InfLoRA: A is orthogonal to the old input subspace, only B trains, the memory grows by
GPM's energy rule, and the strategy runs a stream."""

import pytest
import torch

from track_continual import collect_inputs, inflora_subspace, strategy, update_memory
from track_continual.common import add_task_adapter, lora_targets
from week07_continual import TrainConfig, collate, run_stream

pytestmark = pytest.mark.core


def _data(n=200, dim=12, k=4, seed=0):
    """n inputs that live mostly in a k-dim subspace of R^dim (plus small noise)."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, k, generator=g, dtype=torch.float64))
    return torch.randn(n, k, generator=g, dtype=torch.float64) @ basis.t() + \
        0.01 * torch.randn(n, dim, generator=g, dtype=torch.float64)


def test_a_is_orthogonal_to_the_old_subspace_and_follows_the_new_inputs():
    M = update_memory(None, _data(seed=0), threshold=0.99)  # old tasks' input subspace
    assert M.shape[1] == 4  # the 4 directions that hold 99% of the energy
    torch.testing.assert_close(M.t() @ M, torch.eye(4, dtype=torch.float64))
    X = _data(seed=1)  # a new task in another subspace
    A = inflora_subspace(X, M, r=3)  # (3, 12)
    assert A.shape == (3, 12)
    assert float((A @ M).abs().max()) < 1e-12  # A x = 0 for every x in span(M)
    torch.testing.assert_close(A @ A.t(), torch.eye(3, dtype=torch.float64))
    # A's rows are the best rank-3 directions of X outside span(M): the projected X keeps at
    # least as much energy on them as on any other 3 orthonormal directions outside span(M)
    P = torch.eye(12, dtype=torch.float64) - M @ M.t()
    Xp = X @ P
    captured = float((Xp @ A.t()).pow(2).sum())
    S = torch.linalg.svdvals(Xp)
    assert captured == pytest.approx(float(S[:3].pow(2).sum()), rel=1e-9)
    # a new input inside span(M) (the old task) is untouched by any B: A x = 0
    x_old = _data(n=5, seed=0) @ M @ M.t()
    assert float((x_old @ A.t()).abs().max()) < 1e-12


def test_a_full_memory_leaves_zero_rows_and_the_energy_rule_is_minimal():
    X = _data(dim=6, k=6)
    M = update_memory(None, X, threshold=1.0)
    assert M.shape[1] == 6
    assert float(inflora_subspace(X, M, 2).abs().max()) == 0.0
    # the fewest directions: with threshold just under the top-1 share, one direction
    Y = _data(dim=8, k=3, seed=3)
    S = torch.linalg.svdvals(Y).pow(2)
    share1 = float(S[0] / S.sum())
    assert update_memory(None, Y, threshold=share1 - 1e-6).shape[1] == 1
    assert update_memory(None, Y, threshold=share1 + 1e-6).shape[1] == 2


def test_only_b_gets_gradients_and_old_inputs_are_not_interfered_with(pretrained, stream):
    import copy

    model = copy.deepcopy(pretrained)
    layers = add_task_adapter(model, "t0", 4, 8.0, lora_targets(model, head=False))
    X = collect_inputs(model, layers, stream.tasks[0].train)
    name, layer = next(iter(layers.items()))
    assert X[name].shape == (len(stream.tasks[0].train) * 7, layer.in_features)  # 7 real tokens
    M = {n: update_memory(None, x.double(), 0.999) for n, x in X.items()}
    sc, hooks = strategy("inflora", TrainConfig())
    hooks.memory = {n: m.float() for n, m in M.items()}
    hooks.cfg.head = False
    import random

    hooks.before_task(model, 1, stream.tasks[1], random.Random(0))
    x, y = collate(stream.tasks[1].train, None)
    torch.nn.functional.cross_entropy(model(x).transpose(1, 2), y.clamp(min=0)).backward()
    for lay in hooks.layers.values():
        ad = lay.lora["inflora1"]
        assert ad.A.grad is None and not ad.A.requires_grad
        assert ad.B.grad is not None and float(ad.B.grad.abs().sum()) > 0
    # the first layer's inputs do not depend on any adapter: task A's inputs there are
    # (almost entirely) in span(M), so the new A reads next to nothing of them
    first = next(n for n in X if n.startswith("blocks.0.attn"))
    A1 = hooks.layers[first].lora["inflora1"].A
    assert float((X[first] @ A1.t()).norm() / X[first].norm()) < 0.05


def test_inflora_runs_a_stream(pretrained, stream, tmp_path):
    cfg = TrainConfig(steps_per_task=6, batch_size=8, router_examples=4)
    sc, hooks = strategy("inflora", cfg)
    hooks.cfg.examples = 12
    res = run_stream(pretrained, stream, sc, cfg, tmp_path, progress=False, hooks=hooks)
    assert ((res.matrix.R >= 0) & (res.matrix.R <= 1)).all()
    assert res.details["adapters"] == ["inflora0", "inflora1", "inflora2"]
    dims = res.details["memory_dims"]
    assert dims and all(0 < d <= 32 for d in dims.values())
    assert all(not p.requires_grad for n, p in res.model.named_parameters() if n.endswith(".A"))
