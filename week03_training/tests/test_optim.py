"""Our optimizers against the reference: torch.optim.AdamW, and the SVD for Newton-Schulz."""

import pytest
import torch

from week03_training import AdamW, Muon, muon_param_groups, newton_schulz

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ----------------------------------------------------------------------------- AdamW


def _params(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(8, 5, generator=g), torch.randn(5, generator=g), torch.randn(3, 4, 2, generator=g)]


def _run(opt_cls, init, steps=100, **kw):
    params = [p.clone().requires_grad_(True) for p in init]
    opt = opt_cls(params, **kw)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        opt.zero_grad()
        # a loss whose gradients change every step and vary in scale between tensors
        loss = sum(((p - torch.randn(p.shape, generator=g)) ** 2).sum() * (i + 1)
                   for i, p in enumerate(params))
        loss.backward()
        opt.step()
    return params, opt


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("kw", [
    dict(lr=1e-2, betas=(0.9, 0.999), weight_decay=0.0),
    dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1),
    dict(lr=1e-3, betas=(0.8, 0.99), weight_decay=1.0, eps=1e-6),
    dict(lr=5e-2, betas=(0.0, 0.5), weight_decay=0.01),
])
def test_adamw_matches_torch(kw, foreach):
    """100 steps from the same start: every parameter within 1e-6 of torch.optim.AdamW.

    Both do the same float32 operations in the same order (the reference is
    run with its single-tensor path); 1e-6 leaves room only for the rounding
    differences of fused vs separate multiply-adds over 100 steps.
    """
    init = _params()
    ours, _ = _run(AdamW, init, foreach=foreach, **kw)
    ref, _ = _run(torch.optim.AdamW, init, foreach=False, **kw)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_adamw_state_dict_round_trip_continues_identically():
    """Stop after 10 of 20 steps, rebuild the optimizer from its state_dict: same end point."""
    init = _params()
    targets = [[torch.randn(p.shape) for p in init] for _ in range(20)]

    def steps(params, opt, ts):
        for t in ts:
            opt.zero_grad()
            sum(((p - q) ** 2).sum() for p, q in zip(params, t)).backward()
            opt.step()

    full = [p.clone().requires_grad_(True) for p in init]
    steps(full, AdamW(full, lr=1e-2, weight_decay=0.1), targets)
    half = [p.clone().requires_grad_(True) for p in init]
    opt = AdamW(half, lr=1e-2, weight_decay=0.1)
    steps(half, opt, targets[:10])
    again = [p.detach().clone().requires_grad_(True) for p in half]
    opt2 = AdamW(again, lr=1e-2, weight_decay=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.state[again[0]]["step"].item() == 10
    steps(again, opt2, targets[10:])
    for a, b in zip(again, full):
        assert torch.equal(a, b)


def test_adamw_rejects_bad_hyperparameters():
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match="betas"):
        AdamW(p, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="lr"):
        AdamW(p, lr=-1)


# ----------------------------------------------------------------------------- Newton-Schulz


@pytest.mark.parametrize("shape", [(32, 32), (64, 16), (16, 48)])
def test_newton_schulz_is_near_orthogonal(shape):
    """Muon's 5-step quintic puts every singular value in about [0.7, 1.2] (not exactly 1).

    The singular vectors must be those of G: the output is close to U V^T from
    the SVD (cosine similarity > 0.95), and the exact coefficient set with many
    steps converges to U V^T itself.
    """
    torch.manual_seed(0)
    G = torch.randn(*shape, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    polar = U @ Vh                                                   # exact orthogonal factor
    X = newton_schulz(G)
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.6 and s.max() < 1.25, s
    cos = (X * polar).sum() / (X.norm() * polar.norm())
    assert cos > 0.95
    # the classic (15x - 10x^3 + 3x^5)/8 iteration converges to the polar factor;
    # 1e-6 after 60 steps: small singular values grow ~1.875x per step until ~1, then quadratically
    Y = newton_schulz(G, steps=60, coeffs="exact")
    torch.testing.assert_close(Y, polar, atol=1e-6, rtol=0)
    r = min(shape)
    gram = Y.mT @ Y if shape[0] >= shape[1] else Y @ Y.mT
    torch.testing.assert_close(gram, torch.eye(r, dtype=torch.float64), atol=1e-6, rtol=0)


def test_newton_schulz_bf16_and_batched():
    G = torch.randn(3, 16, 24)
    X = newton_schulz(G, dtype=torch.bfloat16)
    assert X.dtype == torch.float32 and X.shape == G.shape
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.5 and s.max() < 1.35        # bf16 rounding widens the band a little
    with pytest.raises(ValueError, match="matrix"):
        newton_schulz(torch.randn(5))


# ----------------------------------------------------------------------------- Muon


def test_muon_decreases_loss_on_regression():
    """A 2-layer MLP fitting a random linear map: Muon drives the loss down 10x."""
    torch.manual_seed(0)
    X = torch.randn(256, 16)
    Y = X @ torch.randn(16, 8)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 8))
    opt = Muon(model.parameters(), lr=0.02, adamw_lr=1e-2)
    assert [g["use_muon"] for g in opt.param_groups] == [True, False]
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X), Y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < first / 10


def test_muon_update_is_orthogonalised():
    """With momentum 0 and no decay one step moves W by exactly lr * NS(grad)."""
    torch.manual_seed(0)
    W = torch.randn(12, 12, requires_grad=True)
    W0 = W.detach().clone()
    opt = Muon([{"params": [W], "use_muon": True}], lr=0.1, momentum=0.0, nesterov=False)
    (W.sum() * 0 + (W * torch.randn(12, 12)).sum()).backward()
    grad = W.grad.clone()
    opt.step()
    torch.testing.assert_close(W0 - W.detach(), 0.1 * newton_schulz(grad), atol=1e-6, rtol=0)


def test_muon_rejects_non_matrix_in_muon_group():
    with pytest.raises(ValueError, match="2-D"):
        Muon([{"params": [torch.zeros(3, requires_grad=True)], "use_muon": True}])


def test_muon_param_groups_split(tiny_model):
    model = tiny_model()
    groups = muon_param_groups(model)
    muon = {id(p) for p in groups[0]["params"]}
    assert groups[0]["use_muon"]
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in muon} == {"qkv.weight", "proj.weight", "fc.weight", "fc_out.weight"}
    adam = {names[id(p)] for g in groups[1:] for p in g["params"]}
    assert {"wte.weight", "wpe.weight", "lm_head.weight", "ln1.weight", "qkv.bias"} <= adam
    n_all = sum(1 for _ in model.parameters())
    assert sum(len(g["params"]) for g in groups) == n_all       # every parameter exactly once
