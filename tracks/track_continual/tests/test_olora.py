"""O-LoRA's orthogonality loss and its gradient, and the strategy inside week07's runner."""

import pytest
import torch

from track_continual import orthogonality_grad, orthogonality_loss, strategy
from week06_lora import lora_layers
from week07_continual import TrainConfig, run_stream

pytestmark = pytest.mark.core


def test_loss_equals_the_sum_of_squared_row_dot_products():
    """||A_new A_old^T||_F^2 = sum over row pairs (a, b) of (a . b)^2, summed over old adapters:
    computed here with explicit loops over rows, in float64."""
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 7, generator=g, dtype=torch.float64)
    olds = [torch.randn(2, 7, generator=g, dtype=torch.float64),
            torch.randn(4, 7, generator=g, dtype=torch.float64)]
    direct = sum(float(a @ b) ** 2 for B in olds for a in A for b in B)
    assert float(orthogonality_loss(A, olds)) == pytest.approx(direct, rel=1e-12)
    assert float(orthogonality_loss(A, [])) == 0.0
    # orthogonal rows give zero: A's rows in the first 3 coordinates, the old one's in the rest
    E = torch.eye(7, dtype=torch.float64)
    assert float(orthogonality_loss(E[:3], [E[3:]])) == 0.0


def test_gradient_equals_autograd_and_the_old_adapters_get_none():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(4, 9, generator=g, dtype=torch.float64, requires_grad=True)
    olds = [torch.randn(3, 9, generator=g, dtype=torch.float64, requires_grad=True)
            for _ in range(2)]
    orthogonality_loss(A, olds).backward()
    torch.testing.assert_close(A.grad, orthogonality_grad(A.detach(), [o.detach() for o in olds]),
                               rtol=1e-12, atol=1e-12)
    assert all(o.grad is None for o in olds)  # the old adapters are constants
    assert torch.autograd.gradcheck(lambda a: orthogonality_loss(a, [o.detach() for o in olds]),
                                    (A.detach().clone().requires_grad_(),))


def test_olora_runs_a_stream_and_keeps_the_new_adapter_orthogonal(pretrained, stream, tmp_path):
    cfg = TrainConfig(steps_per_task=20, batch_size=8, lora_lr=2e-2, router_examples=4)
    sc, hooks = strategy("olora", cfg)
    hooks.cfg.lam = 5.0
    res = run_stream(pretrained, stream, sc, cfg, tmp_path, progress=False, hooks=hooks)
    m = res.matrix
    assert ((m.R >= 0) & (m.R <= 1)).all() and ((m.b >= 0) & (m.b <= 1)).all()
    assert res.details["adapters"] == ["olora0", "olora1", "olora2"]
    assert res.extra_bytes == sum(p.numel() * 4 for n, p in res.model.named_parameters()
                                  if ".lora." in n)
    # all adapters active (no task id), only the last one trainable at the end
    layer = next(iter(lora_layers(res.model).values()))
    assert layer.active == ["olora0", "olora1", "olora2"]
    # the penalty did its job: the last adapter's A is far more orthogonal to the first's
    # than two random Kaiming-initialised A's are (measured as the cosine-normalised overlap)
    def overlap(a, b):
        with torch.no_grad():
            return float(orthogonality_loss(a, [b]) / (a.norm() ** 2 * b.norm() ** 2))
    trained = [overlap(lay.lora["olora2"].A, lay.lora["olora0"].A)
               for lay in lora_layers(res.model).values()]
    torch.manual_seed(0)
    rand = [overlap(torch.nn.init.kaiming_uniform_(torch.empty_like(lay.lora["olora2"].A), a=5 ** .5),
                    lay.lora["olora0"].A) for lay in lora_layers(res.model).values()]
    assert sum(trained) < 0.5 * sum(rand)
