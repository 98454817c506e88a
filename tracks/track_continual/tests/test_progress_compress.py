"""Progress & Compress: the distillation loss against torch's KL, the compress step lowers
the KL to the active column, online EWC holds one Fisher, and the strategy runs a stream."""


import pytest
import torch
import torch.nn.functional as F

from track_continual import distill_loss, kl_to, strategy
from week07_continual import TrainConfig, run_stream

pytestmark = pytest.mark.core


def test_distill_loss_is_torch_kl_div_over_the_scored_positions():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 5, 7, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 5, 7, generator=g, dtype=torch.float64)
    y = torch.tensor([[-1, 3, 2, -1, 1], [0, -1, -1, 4, 4]])
    keep = y >= 0
    for T in (1.0, 2.0):
        ref = F.kl_div(F.log_softmax(s[keep] / T, -1), F.log_softmax(t[keep] / T, -1),
                       log_target=True, reduction="batchmean") * T ** 2
        got = distill_loss(s, t, y, T)
        torch.testing.assert_close(got.double(), ref, rtol=1e-6, atol=1e-7)
        g1, = torch.autograd.grad(got, s)
        g2, = torch.autograd.grad(ref, s)
        torch.testing.assert_close(g1.double(), g2, rtol=1e-5, atol=1e-7)
    assert float(distill_loss(t, t, y)) == pytest.approx(0.0, abs=1e-6)


def test_compress_lowers_the_kl_to_the_active_column(pretrained, stream, tmp_path):
    cfg = TrainConfig(steps_per_task=25, batch_size=12, lr=1e-2, router_examples=4)
    sc, hooks = strategy("pc", cfg)
    hooks.cfg.fisher_examples = 8
    res = run_stream(pretrained, stream, sc, cfg, tmp_path, progress=False, hooks=hooks)
    before, after = res.details["kl_before_compress"], res.details["kl_after_compress"]
    assert len(before) == len(after) == 3
    for b, a in zip(before, after):
        assert a < 0.5 * b  # the knowledge base moved most of the way to the column
    assert len(hooks.ewc.terms) == 1  # online EWC: one running Fisher and anchor
    assert ((res.matrix.R >= 0) & (res.matrix.R <= 1)).all()
    # the reported memory: the running Fisher + anchor, and one full column
    n = sum(p.numel() for p in pretrained.parameters())
    assert res.extra_bytes == hooks.ewc.nbytes() + 4 * n
    assert kl_to(res.model, res.model, stream.tasks[0].test) == pytest.approx(0.0, abs=1e-6)
