"""The diagonal Fisher against brute force, and the EWC penalty and its gradient."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from week07_continual import EWC, fisher_diagonal

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _data():
    torch.manual_seed(1)
    x = torch.randint(0, 5, (4, 2))
    y = torch.randint(0, 5, (4, 2))
    y[1, 0] = -1  # an unscored position
    return x, y


def _per_example_grads(model, x, labels_per_pos):
    """grad of sum_t log p(label_t | x_t) for one example (1, T), as a flat vector."""
    logp = F.log_softmax(model(x), dim=-1)[0]  # (T, V)
    ll = sum(logp[t, lab] for t, lab in labels_per_pos)
    grads = torch.autograd.grad(ll, list(model.parameters()))
    return torch.cat([g.reshape(-1) for g in grads])


def _brute_force_true_fisher(model, x, y):
    """E_x E_{y ~ p} [g^2] by enumerating every joint labelling of the scored positions.

    Returns the exact mean and the exact variance of g^2 (for the Monte Carlo error bar).
    """
    m1 = m2 = 0
    for b in range(x.size(0)):
        pos = [t for t in range(x.size(1)) if y[b, t] >= 0]
        with torch.no_grad():
            p = F.softmax(model(x[b:b + 1]), dim=-1)[0]  # (T, V)
        e1 = e2 = 0
        for labels in itertools.product(range(p.size(1)), repeat=len(pos)):
            w = torch.prod(torch.stack([p[t, lab] for t, lab in zip(pos, labels)]))
            g2 = _per_example_grads(model, x[b:b + 1], list(zip(pos, labels))) ** 2
            e1, e2 = e1 + w * g2, e2 + w * g2 ** 2
        m1, m2 = m1 + e1, m2 + e2 - e1 ** 2
    n = x.size(0)
    return m1 / n, m2 / n ** 2  # mean over examples; variance of that mean per single draw


def _flat(fisher, model):
    return torch.cat([fisher[n].reshape(-1) for n, _ in model.named_parameters()])


def test_empirical_fisher_equals_per_example_squared_gradients(tiny_lm):
    x, y = _data()
    fisher = fisher_diagonal(tiny_lm, [(x, y)], mode="empirical")
    want = 0
    for b in range(4):
        pos = [(t, int(y[b, t])) for t in range(2) if y[b, t] >= 0]
        want = want + _per_example_grads(tiny_lm, x[b:b + 1], pos) ** 2
    # same float32 maths in a different order: agreement to float rounding
    torch.testing.assert_close(_flat(fisher, tiny_lm), want / 4, rtol=1e-5, atol=1e-8)


def test_true_fisher_matches_brute_force_enumeration(tiny_lm):
    x, y = _data()
    exact, var = _brute_force_true_fisher(tiny_lm, x, y)
    S = 400
    gen = torch.Generator().manual_seed(0)
    fisher = fisher_diagonal(tiny_lm, [(x, y)], mode="true", samples=S, generator=gen)
    est = _flat(fisher, tiny_lm)
    # the estimate is a mean of S independent draws per example: standard error sqrt(var / S);
    # 5 standard errors per element (plus float slack) fails by chance with p < 1e-5 per element
    se = (var / S).sqrt()
    assert torch.all((est - exact).abs() <= 5 * se + 1e-7), (est - exact).abs().max()
    rel = (est - exact).norm() / exact.norm()
    assert rel < 0.1


def test_true_and_empirical_fisher_differ(tiny_lm):
    """They are different quantities (Kunstner et al. 2019); equality would mean a wiring bug."""
    x, y = _data()
    true = _flat(fisher_diagonal(tiny_lm, [(x, y)], mode="true", samples=50,
                                 generator=torch.Generator().manual_seed(0)), tiny_lm)
    emp = _flat(fisher_diagonal(tiny_lm, [(x, y)], mode="empirical"), tiny_lm)
    assert (true - emp).norm() / emp.norm() > 0.05


def test_penalty_value_and_gradient(tiny_lm):
    """penalty = lam/2 sum F (theta - theta*)^2, so d penalty / d theta = lam F (theta - theta*)."""
    torch.manual_seed(2)
    fisher = {n: torch.rand_like(p) for n, p in tiny_lm.named_parameters()}
    ewc = EWC(lam=7.0)
    ewc.consolidate(tiny_lm, None, fisher=fisher)
    anchor = {n: p.detach().clone() for n, p in tiny_lm.named_parameters()}
    with torch.no_grad():
        for p in tiny_lm.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    pen = ewc.penalty(tiny_lm)
    want = sum(0.5 * 7.0 * (fisher[n] * (p - anchor[n]) ** 2).sum()
               for n, p in tiny_lm.named_parameters())
    torch.testing.assert_close(pen, want.detach())
    pen.backward()
    for n, p in tiny_lm.named_parameters():
        torch.testing.assert_close(p.grad, 7.0 * fisher[n] * (p.detach() - anchor[n]))


def test_online_ewc_decays_and_reanchors(tiny_lm):
    f1 = {n: torch.ones_like(p) for n, p in tiny_lm.named_parameters()}
    f2 = {n: 2 * torch.ones_like(p) for n, p in tiny_lm.named_parameters()}
    online = EWC(lam=1.0, online=True, gamma=0.5)
    online.consolidate(tiny_lm, None, fisher=f1)
    with torch.no_grad():
        for p in tiny_lm.parameters():
            p.add_(1.0)
    online.consolidate(tiny_lm, None, fisher=f2)
    assert len(online.terms) == 1
    F_, anchor = online.terms[0]
    for n, p in tiny_lm.named_parameters():
        assert torch.equal(F_[n], torch.full_like(p, 0.5 * 1 + 2))  # gamma F1 + F2
        assert torch.equal(anchor[n], p.detach())
    offline = EWC(lam=1.0)
    offline.consolidate(tiny_lm, None, fisher=f1)
    offline.consolidate(tiny_lm, None, fisher=f2)
    assert len(offline.terms) == 2 and offline.nbytes() == 2 * online.nbytes()


def test_bad_settings_raise(tiny_lm):
    with pytest.raises(ValueError, match="fisher mode"):
        fisher_diagonal(tiny_lm, [], mode="exact")
    with pytest.raises(ValueError, match="gamma"):
        EWC(online=True, gamma=1.5)
    x, y = _data()
    with pytest.raises(ValueError, match="no scored"):
        fisher_diagonal(tiny_lm, [(x, torch.full_like(y, -1))])
