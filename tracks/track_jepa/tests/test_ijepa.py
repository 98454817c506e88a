"""I-JEPA: the EMA equals torch's AveragedModel, no gradient reaches the target encoder, the
loss equals a per-block reference, it falls on a tiny run, and the features do not collapse."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from shared import SampledBatches
from track_jepa import (
    IJEPA,
    EMAHook,
    IJEPAConfig,
    MaskConfig,
    ViTConfig,
    ViTEncoder,
    ema_momentum,
    ema_update,
    embedding_std,
    fit,
    jepa_loss,
    std_floor,
    train_ijepa,
)
from track_jepa.ijepa import image_examples
from track_jepa.masks import MaskCollator

pytestmark = pytest.mark.core


def test_ema_update_equals_torch_averaged_model():
    """torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn(decay) keeps
    ``ema = decay * ema + (1 - decay) * param`` after its first (copying) update."""
    torch.manual_seed(0)
    online = ViTEncoder(ViTConfig.preset("test"))
    target = copy.deepcopy(online)
    decay = 0.9
    ref = AveragedModel(online, multi_avg_fn=get_ema_multi_avg_fn(decay))
    ref.update_parameters(online)                      # n_averaged == 0: a copy
    opt = torch.optim.SGD(online.parameters(), lr=0.5)
    x = torch.randn(4, 1, 8, 8)
    for _ in range(5):
        opt.zero_grad()
        online(x).pow(2).mean().backward()
        opt.step()
        ref.update_parameters(online)
        ema_update(target, online, decay)
    for (name, p), q in zip(target.named_parameters(), ref.module.parameters()):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6, msg=name)
    assert any((p - q).abs().max() > 1e-3 for p, q in zip(target.parameters(), online.parameters()))


def test_ema_momentum_schedule_is_linear_from_0996_to_1():
    assert ema_momentum(0, 100) == pytest.approx(0.996)
    assert ema_momentum(50, 100) == pytest.approx(0.998)
    assert ema_momentum(100, 100) == pytest.approx(1.0)
    assert ema_momentum(500, 100) == pytest.approx(1.0)


def test_no_gradient_reaches_the_target_encoder(tiny_batch):
    model, batch = tiny_batch
    loss, metrics = jepa_loss(model, batch)
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in model.target_encoder.parameters())
    for part in (model.context_encoder, model.predictor):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert model.predictor.mask_token.grad.abs().sum() > 0


def test_trainer_moves_the_target_only_by_ema(digits):
    """With momentum 1.0 the target never changes while the context encoder trains; the
    Trainer's optimizer holds no target parameter."""
    torch.manual_seed(0)
    x, y = digits
    model = IJEPA(IJEPAConfig.preset("test", ema=(1.0, 1.0)))
    before = copy.deepcopy(model.target_encoder.state_dict())
    col = MaskCollator(model.config.vit.grid, model.config.mask, seed=0)
    loader = SampledBatches(image_examples(x[:64], y[:64]), 16, col, seed=0)
    tr = fit(model, loader, jepa_loss, 3, hooks=[EMAHook(3, (1.0, 1.0))], progress=False)
    trained = {id(p) for g in tr.optimizer.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in model.target_encoder.parameters()}
    for k, v in model.target_encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.context_encoder.patch_embed.weight,
                           before["patch_embed.weight"])


@pytest.mark.parametrize("kind", ["l2", "smooth_l1"])
def test_jepa_loss_equals_a_per_block_reference(tiny_batch, kind):
    """The batched loss (targets of all M blocks predicted at once) equals a loop over images
    and blocks: predictor(context tokens of image b, block m) vs layer_norm(target features),
    by squared error or torch's smooth_l1_loss."""
    model, (images, ctx, tgt) = tiny_batch
    model.config.loss = kind
    loss, _ = jepa_loss(model, (images, ctx, tgt))
    B, M, Kt = tgt.shape
    errs = []
    with torch.no_grad():
        for b in range(B):
            h = model.target_encoder(images[b:b + 1])[0]                    # (N, D)
            h = F.layer_norm(h, h.shape[-1:])
            z = model.context_encoder(images[b:b + 1], ctx[b:b + 1])        # (1, Kc, D)
            for m in range(M):
                p = model.predictor(z, ctx[b:b + 1], tgt[b, m][None])[0]    # (Kt, D)
                t = h[tgt[b, m]]
                errs.append((p - t).pow(2).mean() if kind == "l2" else F.smooth_l1_loss(p, t))
    torch.testing.assert_close(loss.detach(), torch.stack(errs).mean(), atol=1e-5, rtol=1e-5)


def test_prediction_never_sees_target_pixels(tiny_batch):
    """Changing the pixels of every patch outside the context leaves the predictions equal:
    only the target *encoder* reads them."""
    model, (images, ctx, tgt) = tiny_batch
    z = model.context_encoder(images, ctx)
    other = images.clone()
    for b in range(len(images)):
        keep = torch.zeros(16, dtype=torch.bool)
        keep[ctx[b]] = True
        pix = other[b, 0].reshape(4, 2, 4, 2).permute(0, 2, 1, 3).reshape(16, 4)
        pix[~keep] = torch.randn(int((~keep).sum()), 4)
        other[b, 0] = pix.reshape(4, 4, 2, 2).permute(0, 2, 1, 3).reshape(8, 8)
    torch.testing.assert_close(model.context_encoder(other, ctx), z)
    p1 = model.predictor(z, ctx, tgt[:, 0])
    p2 = model.predictor(z, ctx, tgt[:, 1])
    assert (p1 - p2).abs().max() > 1e-4 or torch.equal(tgt[:, 0], tgt[:, 1])


def test_loss_falls_and_features_do_not_collapse(digits):
    """60 steps of the "test" preset with a fast EMA (0.9 -> 0.99, so the target really moves):
    the loss falls, and the target encoder's patch features keep an embedding std above a
    quarter of isotropic unit vectors' 1/sqrt(D) and at least half of their std at init,
    where a collapsed (constant) encoder gives 0."""
    torch.manual_seed(0)
    x, y = digits
    model = IJEPA(IJEPAConfig.preset("test", ema=(0.9, 0.99), mask=MaskConfig(min_keep=2)))
    held = x[1500:1600]
    start = embedding_std(model.target_encoder(held).detach().flatten(0, 1))
    tr = train_ijepa(model, x[:512], y[:512], steps=60, batch_size=32, progress=False)
    h = tr.history
    assert sum(h[-10:]) / 10 < 0.8 * sum(h[:5]) / 5
    D = model.config.vit.dim
    end = embedding_std(model.target_encoder(held).detach().flatten(0, 1))  # (100 * N, D)
    assert end > std_floor(D) and end > 0.5 * start
    collapsed = ViTEncoder(model.config.vit)
    for p in collapsed.parameters():
        torch.nn.init.zeros_(p)
    assert embedding_std(collapsed(x[1500:1600]).detach().flatten(0, 1)) < std_floor(D)
