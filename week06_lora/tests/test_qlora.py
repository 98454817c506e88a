"""QLoRALinear: NF4 base (bf16 compute) + LoRA, against bitsandbytes' Linear4bit on CPU."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from week06_lora import (
    LoRALinear,
    QLoRALinear,
    base_weight_bytes,
    dequantize_nf4,
    inject_lora,
    lora_layers,
    prepare_qlora,
    quantize_model,
    trainable_report,
)


def linear(in_f=128, out_f=64, seed=0):
    torch.manual_seed(seed)
    return nn.Linear(in_f, out_f)


def bnb_linear4bit(lin, double_quant):
    bnb = pytest.importorskip("bitsandbytes")
    q = bnb.nn.Linear4bit(lin.in_features, lin.out_features, bias=lin.bias is not None,
                          compute_dtype=torch.bfloat16, quant_type="nf4",
                          compress_statistics=double_quant)
    q.weight = bnb.nn.Params4bit(lin.weight.detach().clone(), requires_grad=False, quant_type="nf4",
                                 compress_statistics=double_quant, blocksize=64)
    q.bias = nn.Parameter(lin.bias.detach().clone())
    return q.to("cpu")  # quantises on the move


@pytest.mark.parametrize("double_quant", [False, True])
def test_qlora_equals_bnb_linear4bit_plus_our_lora(double_quant, randomize):
    lin = linear()
    ours = QLoRALinear(copy.deepcopy(lin), double_quant=double_quant)
    ours.add_adapter("a", r=4, alpha=8)
    with torch.no_grad():
        ours.lora["a"].B.normal_(std=0.1)
    ref = bnb_linear4bit(lin, double_quant)
    # the weights are the same NF4 tensor: bit-identical after dequantisation
    from bitsandbytes.functional import dequantize_4bit

    assert torch.equal(ours.dequantize(torch.float32), dequantize_4bit(ref.weight.data, ref.weight.quant_state))
    x = torch.randn(3, 5, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        base_ref = ref(x)  # bf16 matmul, cast back to the input's float32
        want = base_ref + ours.adapter_delta("a", x, base_ref)
        got = ours(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0, rtol=0)  # same bf16 weights and matmul: exact


def test_qlora_bf16_compute_is_close_to_the_float_layer():
    """Quantisation error: NF4 moves each weight by up to ~1/10 of its block's absmax, bf16 adds
    ~0.4% relative; on this layer outputs stay within 8% of the output scale."""
    lin = linear(256, 64)
    q = QLoRALinear(copy.deepcopy(lin))
    x = torch.randn(8, 256)
    y, yq = lin(x), q(x)
    assert (yq - y).abs().max() < 0.08 * y.abs().max()
    torch.testing.assert_close(q.dequantize(), dequantize_nf4(q.nf4), atol=0, rtol=0)


def test_qlora_gradients_reach_only_the_adapter_and_match_autograd():
    lin = linear()
    q = QLoRALinear(copy.deepcopy(lin))
    q.add_adapter("a", r=4, alpha=8)
    with torch.no_grad():
        q.lora["a"].B.normal_(std=0.1)
    x = torch.randn(6, 128, requires_grad=True)
    q(x).pow(2).sum().backward()
    # reference: autograd through an explicit bf16 weight (what the custom Function recomputes)
    W = q.dequantize(torch.bfloat16)
    xr = x.detach().clone().requires_grad_()
    A = q.lora["a"].A.detach().clone().requires_grad_()
    B = q.lora["a"].B.detach().clone().requires_grad_()
    base = F.linear(xr.bfloat16(), W, q.bias.bfloat16()).float()
    (base + F.linear(F.linear(xr, A), B) * q.lora["a"].scaling).pow(2).sum().backward()
    # x.grad passes through a bf16 matmul: compare at bf16 precision (8 mantissa bits ~ 0.4%)
    torch.testing.assert_close(x.grad, xr.grad, atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(q.lora["a"].B.grad, B.grad, atol=1e-4, rtol=1e-4)
    assert q.bias.grad is None and not q.bias.requires_grad
    assert all(not b.requires_grad for b in q.buffers())


def test_quantize_model_keeps_adapters_and_shrinks_the_base(gpt, idx, randomize):
    inject_lora(gpt, r=4, alpha=8)
    randomize(gpt, "default", seed=1)
    n_base = sum(m.in_features * m.out_features for m in lora_layers(gpt).values())
    y = gpt(idx)
    quantize_model(gpt)
    assert all(isinstance(m, QLoRALinear) for m in lora_layers(gpt).values())
    assert trainable_report(gpt).per_adapter == {"default": 4096}
    # bf16 stores 2 bytes per weight; NF4 + double-quantised constants ~0.516
    assert base_weight_bytes(gpt) <= 0.3 * 2 * n_base
    # close, not equal: NF4 leaves ~10% relative RMS error per weight matrix (on Gaussian weights),
    # which mostly averages out through 8 layers; the logits keep their direction
    rel = ((gpt(idx) - y).norm() / y.norm()).item()
    assert 0 < rel < 0.2, rel
    with pytest.raises(NotImplementedError, match="re-quantising"):
        gpt.blocks[0].attn.qkv.merge("default")


@pytest.mark.parametrize("compute", [torch.bfloat16, torch.float32])
def test_prepare_qlora_trains_only_the_adapter(gpt, idx, compute):
    prepare_qlora(gpt, r=4, alpha=8, adapter="q", compute_dtype=compute)
    assert isinstance(gpt.blocks[0].mlp.fc, LoRALinear)
    gpt.loss(idx, idx.roll(-1, 1)).backward()
    assert {n for n, p in gpt.named_parameters() if p.grad is not None} == {
        n for n, p in gpt.named_parameters() if ".lora.q." in n}
