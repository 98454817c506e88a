"""LoRALinear and the model-level helpers, checked against explicit weight formulas and autograd."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from week06_lora import (
    NO_ADAPTER,
    LoRALinear,
    active_adapters,
    default_targets,
    inject_lora,
    lora_layers,
    mark_trainable,
    merge_adapter,
    mixed_batch,
    set_active_adapters,
    trainable_report,
    unmerge_adapter,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# float32 matmuls summed in a different order (x A^T B^T vs x (W + s B A)^T) differ by a few
# ulps of the output scale (~1): 1e-5 absolute leaves two orders of magnitude of room.
ATOL = 1e-5


def make_layer(seed=0, in_f=24, out_f=16, bias=True):
    torch.manual_seed(seed)
    return LoRALinear(nn.Linear(in_f, out_f, bias=bias))


def randomize_layer(layer, name, seed):
    g = torch.Generator().manual_seed(seed)
    ad = layer.lora[name]
    with torch.no_grad():
        ad.A.copy_(torch.randn(ad.A.shape, generator=g) * 0.2)
        ad.B.copy_(torch.randn(ad.B.shape, generator=g) * 0.2)


# ---------------------------------------------------------------- one layer


def test_fresh_adapter_is_a_no_op_with_kaiming_A_and_zero_B():
    layer = make_layer()
    x = torch.randn(5, 24)
    before = layer(x)
    ad = layer.add_adapter("a", r=4, alpha=8)
    assert torch.equal(layer(x), before)  # B = 0: exactly nothing changes
    assert torch.count_nonzero(ad.B) == 0
    bound = 1 / math.sqrt(24)  # kaiming_uniform(a=sqrt(5)) on (r, in) gives U(-1/sqrt(in), 1/sqrt(in))
    assert ad.A.abs().max() <= bound and ad.A.abs().max() > 0.5 * bound


@pytest.mark.parametrize("rslora", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_layer_equals_linear_with_updated_weight(rslora, bias):
    layer = make_layer(bias=bias)
    layer.add_adapter("a", r=4, alpha=6, rslora=rslora)
    randomize_layer(layer, "a", 1)
    ad = layer.lora["a"]
    s = 6 / (math.sqrt(4) if rslora else 4)  # alpha / sqrt(r) for rsLoRA, alpha / r otherwise
    assert ad.scaling == pytest.approx(s)
    x = torch.randn(3, 7, 24)
    ref = F.linear(x, layer.weight + s * ad.B @ ad.A, layer.bias)
    torch.testing.assert_close(layer(x), ref, atol=ATOL, rtol=0)


def test_gradients_equal_autograd_on_the_explicit_formula():
    layer = make_layer()
    layer.add_adapter("a", r=3, alpha=5)
    randomize_layer(layer, "a", 2)
    ad = layer.lora["a"]
    A = ad.A.detach().clone().requires_grad_()
    B = ad.B.detach().clone().requires_grad_()
    x = torch.randn(6, 24)
    layer(x).pow(2).sum().backward()
    F.linear(x, layer.weight.detach() + ad.scaling * B @ A, layer.bias.detach()).pow(2).sum().backward()
    torch.testing.assert_close(ad.A.grad, A.grad, atol=1e-4, rtol=1e-5)  # sums of ~100 terms of O(1)
    torch.testing.assert_close(ad.B.grad, B.grad, atol=1e-4, rtol=1e-5)


def test_dora_equals_its_weight_formula():
    layer = make_layer()
    layer.add_adapter("d", r=4, alpha=8, dora=True)
    x = torch.randn(5, 24)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), atol=ATOL, rtol=0)
    randomize_layer(layer, "d", 3)
    ad = layer.lora["d"]
    with torch.no_grad():
        ad.magnitude.mul_(torch.linspace(0.5, 1.5, 16))
    Wd = layer.weight + ad.scaling * ad.B @ ad.A
    W_dora = ad.magnitude.unsqueeze(1) * Wd / Wd.norm(dim=1, keepdim=True)  # m * V / ||V||_row
    torch.testing.assert_close(layer(x), F.linear(x, W_dora, layer.bias), atol=ATOL, rtol=0)


@pytest.mark.parametrize("dora", [False, True])
def test_merge_unmerge_round_trip(dora):
    layer = make_layer()
    # DoRA rescales the whole weight, so it only commutes with itself: test it alone
    names = ["a"] if dora else ["a", "b"]
    layer.add_adapter("a", r=4, alpha=8, dora=dora)
    layer.add_adapter("b", r=2, alpha=2)
    randomize_layer(layer, "a", 4)
    randomize_layer(layer, "b", 5)
    layer.set_active(names)
    x = torch.randn(4, 24)
    W0 = layer.weight.detach().clone()
    y = layer(x)
    for name in reversed(names):
        layer.merge(name)
    assert layer.merged == names[::-1]
    torch.testing.assert_close(layer(x), y, atol=ATOL, rtol=0)  # merged == unmerged
    for name in names:
        layer.unmerge(name)
    torch.testing.assert_close(layer.weight.detach(), W0, atol=1e-6, rtol=0)  # float32 round trip
    torch.testing.assert_close(layer(x), y, atol=ATOL, rtol=0)


def test_stacking_is_the_sum_of_the_adapters():
    layer = make_layer()
    for i, name in enumerate(["a", "b", "c"]):
        layer.add_adapter(name, r=2 + i, alpha=3 + i)
        randomize_layer(layer, name, 10 + i)
    x = torch.randn(5, 24)
    layer.set_active([])
    base = layer(x)
    deltas = []
    for name in ["a", "b", "c"]:
        layer.set_active([name])
        deltas.append(layer(x) - base)
    layer.set_active(["a", "b", "c"])
    torch.testing.assert_close(layer(x), base + sum(deltas), atol=ATOL, rtol=0)


def test_stacked_adapters_equal_one_adapter_of_the_summed_rank(gpt, idx):
    """Two adapters (r=2, r=3) stacked == one r=5 adapter with A = [A1; A2], B = [B1 s1/s, B2 s2/s]."""
    inject_lora(gpt, r=2, alpha=4, adapter="a")
    inject_lora(gpt, r=3, alpha=2, adapter="b")
    inject_lora(gpt, r=5, alpha=5, adapter="ab")
    with torch.no_grad():
        for layer in lora_layers(gpt).values():
            a, b, ab = layer.lora["a"], layer.lora["b"], layer.lora["ab"]
            for ad in (a, b):
                torch.nn.init.normal_(ad.B, std=0.3)
            ab.A.copy_(torch.cat([a.A, b.A]))
            ab.B.copy_(torch.cat([a.B * a.scaling, b.B * b.scaling], dim=1) / ab.scaling)
    set_active_adapters(gpt, ["a", "b"])
    stacked = gpt(idx)
    set_active_adapters(gpt, ["ab"])
    torch.testing.assert_close(stacked, gpt(idx), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- models


def test_default_targets_are_the_projections_not_the_tied_head(gpt):
    names = default_targets(gpt)
    assert names == [f"blocks.{i}.{p}" for i in range(2)
                     for p in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]


def test_inject_keeps_outputs_and_base_state_dict_keys(gpt, idx):
    before = gpt(idx)
    base_keys = set(gpt.state_dict())
    inject_lora(gpt, r=4, alpha=8)
    assert torch.equal(gpt(idx), before)
    assert base_keys <= set(gpt.state_dict())  # base weights keep their names
    assert isinstance(gpt.blocks[0].attn.qkv, LoRALinear)
    assert not isinstance(gpt.lm_head, LoRALinear)


def test_trainable_report_counts(gpt):
    """r=4 on the test preset (C=32): qkv 4*(32+96) + proj 4*(32+32) + fc 4*(32+128)
    + proj 4*(128+32) = 512 + 256 + 640 + 640 = 2048 per block, 4096 for 2 blocks."""
    total = sum(p.numel() for p in gpt.parameters())
    inject_lora(gpt, r=4, alpha=8)
    rep = trainable_report(gpt)
    assert rep.trainable == 4096 and rep.per_adapter == {"default": 4096}
    assert rep.total == total + 4096
    assert "trainable params: 4,096" in str(rep)


def test_only_adapter_parameters_receive_gradients_and_change(gpt, idx, randomize):
    inject_lora(gpt, r=4, alpha=8, adapter="old")
    randomize(gpt, "old", seed=1)
    inject_lora(gpt, r=4, alpha=8, adapter="new")  # freezes the base and the "old" adapter
    set_active_adapters(gpt, ["old", "new"])
    frozen = {n: p.detach().clone() for n, p in gpt.named_parameters() if ".lora.new." not in n}
    opt = torch.optim.AdamW([p for p in gpt.parameters() if p.requires_grad], lr=1e-2)
    gpt.loss(idx, idx.roll(-1, dims=1)).backward()
    for n, p in gpt.named_parameters():
        if ".lora.new." in n:
            assert p.grad is not None, n
        else:
            assert p.grad is None, f"{n} is frozen but got a gradient"
    assert any(p.grad.abs().sum() > 0 for n, p in gpt.named_parameters() if n.endswith("new.B"))
    opt.step()
    for n, p in gpt.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    mark_trainable(gpt, ["old"])
    assert all(p.requires_grad == (".lora.old." in n) for n, p in gpt.named_parameters())


def test_mixed_batch_equals_per_row_runs(gpt, idx, randomize):
    inject_lora(gpt, r=4, alpha=8, adapter="a")
    inject_lora(gpt, r=2, alpha=8, adapter="b", targets=["attn.qkv", "mlp.fc"])  # fewer layers
    randomize(gpt, "a", seed=1)
    randomize(gpt, "b", seed=2)
    names = ["a", None, "b", NO_ADAPTER]
    with mixed_batch(gpt, names):
        mixed = gpt(idx)
    assert gpt.blocks[0].attn.qkv.batch_adapters is None  # the context cleans up
    for i, name in enumerate(names):
        set_active_adapters(gpt, [] if name in (None, NO_ADAPTER) else [name])
        torch.testing.assert_close(mixed[i], gpt(idx[i:i + 1])[0], atol=ATOL, rtol=0)
    layer = gpt.blocks[0].attn.qkv  # the layer-level argument does the same
    x = torch.randn(4, 5, 32)
    y = layer(x, adapter_names=names)
    layer.set_active(["b"])
    torch.testing.assert_close(y[2], layer(x[2:3])[0], atol=ATOL, rtol=0)


def test_model_merge_round_trip(gpt, idx, randomize):
    inject_lora(gpt, r=4, alpha=8, adapter="a", dora=True)
    randomize(gpt, "a", seed=3)
    y = gpt(idx)
    merge_adapter(gpt, "a")
    torch.testing.assert_close(gpt(idx), y, atol=ATOL, rtol=0)
    unmerge_adapter(gpt, "a")
    set_active_adapters(gpt, [])
    assert active_adapters(gpt) == []
    torch.testing.assert_close(gpt(idx), y, atol=1.0, rtol=0)  # sanity: still runs
    assert not torch.allclose(gpt(idx), y, atol=1e-3)  # and without the adapter it differs


def test_clear_errors(gpt, idx):
    layer = make_layer()
    with pytest.raises(ValueError, match="positive int"):
        layer.add_adapter("a", r=0)
    layer.add_adapter("a", r=2)
    with pytest.raises(ValueError, match="already exists"):
        layer.add_adapter("a", r=2)
    with pytest.raises(KeyError, match="no adapter 'zz'"):
        layer.set_active(["zz"])
    with pytest.raises(ValueError, match="one name per row"):
        layer(torch.randn(3, 24), adapter_names=["a"])
    layer.merge("a")
    with pytest.raises(RuntimeError, match="unmerged"):
        layer(torch.randn(2, 24), adapter_names=["a", None])
    with pytest.raises(ValueError, match="matches targets"):
        inject_lora(gpt, targets=["nope"])
    inject_lora(gpt, r=2)
    with pytest.raises(KeyError, match="unknown adapters"):
        set_active_adapters(gpt, ["nope"])
    with pytest.raises(KeyError, match="unknown adapters"):
        with mixed_batch(gpt, ["nope"] * 4):
            gpt(idx)


def test_inject_on_week04_llama(randomize):
    """The same API on week04's Llama (skipped when week04 is not installed)."""
    week04 = pytest.importorskip("week04_modern_arch_tools")
    torch.manual_seed(0)
    model = week04.Llama(week04.LlamaConfig.preset("test")).eval()
    idx = torch.randint(0, model.config.vocab_size, (3, 8), generator=torch.Generator().manual_seed(0))
    before = model(idx)
    inject_lora(model, r=4, alpha=8, adapter="a")
    assert torch.equal(model(idx), before)
    randomize(model, "a", seed=1)
    y = model(idx)
    with mixed_batch(model, ["a", None, "a"]):
        mixed = model(idx)
    torch.testing.assert_close(mixed[0], y[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(mixed[1], before[1], atol=ATOL, rtol=0)
    merge_adapter(model, "a")
    torch.testing.assert_close(model(idx), y, atol=ATOL, rtol=0)


def test_week04_cached_decoding_runs_the_adapters(randomize):
    """week04's lean one-token step calls LoRA layers as modules: the cached step's logits
    equal the full forward with the adapter on, and differ from the base with it off."""
    week04 = pytest.importorskip("week04_modern_arch_tools")
    torch.manual_seed(0)
    model = week04.Llama(week04.LlamaConfig.preset("test")).eval()
    inject_lora(model, r=4, alpha=8, adapter="a")
    randomize(model, "a", seed=1)
    idx = torch.randint(0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(idx)[:, -1]
        for active in (["a"], []):
            set_active_adapters(model, active)
            cache = model.new_cache(2, 9)
            model(idx[:, :-1], cache=cache)
            got = model.step(idx[:, -1:], cache)
            if active:
                torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
            else:
                assert (got - want).abs().max() > 1e-3
    set_active_adapters(model, ["a"])
    assert torch.equal(model.generate(idx, 8, temperature=0),
                       model.generate(idx, 8, temperature=0, use_cache=False))
