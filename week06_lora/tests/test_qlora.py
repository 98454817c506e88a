"""QLoRALinear: NF4 base (bf16 compute) + LoRA, against PEFT's LoRA over bitsandbytes'
Linear4bit on CPU (the QLoRA stack of transformers + PEFT + bitsandbytes)."""

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

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


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


def peft_qlora(lin, double_quant, A, B, alpha):
    """PEFT's LoRA over bitsandbytes' Linear4bit (``peft.tuners.lora.bnb.Linear4bit``), the
    QLoRA layer of the QLoRA paper's own stack, with the given adapter matrices."""
    peft = pytest.importorskip("peft")

    class Holder(nn.Module):
        is_loaded_in_4bit = True  # what transformers sets on a 4-bit model; PEFT dispatches on it

        def __init__(self):
            super().__init__()
            self.layer = bnb_linear4bit(lin, double_quant)

        def forward(self, x):
            return self.layer(x)

    cfg = peft.LoraConfig(r=A.shape[0], lora_alpha=alpha, lora_dropout=0.0, target_modules=["layer"])
    # get_peft_model keeps the adapter in float32 over the bf16 layer (autocast_adapter_dtype)
    model = peft.get_peft_model(Holder(), cfg, adapter_name="task")
    layer = model.base_model.model.layer
    assert type(layer).__module__ == "peft.tuners.lora.bnb" and type(layer).__name__ == "Linear4bit"
    with torch.no_grad():
        layer.lora_A["task"].weight.copy_(A)
        layer.lora_B["task"].weight.copy_(B)
    assert layer.lora_A["task"].weight.dtype == torch.float32
    return model, layer


@pytest.mark.parametrize("double_quant", [False, True])
def test_qlora_equals_peft_lora_over_bnb_linear4bit(double_quant):
    lin = linear()
    ours = QLoRALinear(copy.deepcopy(lin), double_quant=double_quant)
    ours.add_adapter("a", r=4, alpha=8)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        ours.lora["a"].A.copy_(torch.randn(ours.lora["a"].A.shape, generator=g) * 0.1)
        ours.lora["a"].B.copy_(torch.randn(ours.lora["a"].B.shape, generator=g) * 0.1)
    ref, layer = peft_qlora(lin, double_quant, ours.lora["a"].A, ours.lora["a"].B, alpha=8)
    # the base weights are the same NF4 tensor: bit-identical after dequantisation
    from bitsandbytes.functional import dequantize_4bit

    w = layer.base_layer.weight
    assert torch.equal(ours.dequantize(torch.float32), dequantize_4bit(w.data, w.quant_state))
    x = torch.randn(3, 5, 128, generator=torch.Generator().manual_seed(1))
    # training mode, QLoRA's setting (dropout is 0, so it is deterministic): bitsandbytes
    # dequantises to bf16 and runs a bf16 matmul, as we do
    ref.train()
    with torch.no_grad():
        got, want = ours(x), ref(x)
        base = layer.base_layer(x)
    assert got.dtype == want.dtype == torch.float32
    # the adapter really contributes (here its largest change is ~3/4 of the base's scale)
    assert (want - base).abs().max() > 0.25 * base.abs().max()
    # the same bf16 base output, cast back to float32, plus a float32 LoRA path scaled by
    # alpha / r: equal up to float32 rounding of the LoRA matmuls (PEFT calls nn.Linear
    # modules, we F.linear on other shapes); bit-identical on this machine
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # eval mode: on a CPU with AVX512-BF16, bitsandbytes repacks the weight for its own bf16
    # inference kernel, which accumulates in another order; the base output then differs by
    # bf16 rounding: at most 2 units in the last place of bf16 (2 * 2^-8 of the output scale)
    ref.eval()
    with torch.no_grad():
        want_eval = ref(x)
    scale = want_eval.abs().max().item()
    torch.testing.assert_close(got, want_eval, atol=2 * 2**-8 * scale, rtol=0)


def test_qlora_bf16_compute_is_close_to_the_float_layer():
    """Quantisation error: NF4 moves each weight by up to ~1/10 of its block's absmax, bf16 adds
    ~0.4% relative; on this layer outputs stay within 8% of the output scale."""
    lin = linear(256, 64)
    q = QLoRALinear(copy.deepcopy(lin))
    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    y, yq = lin(x), q(x)
    assert (yq - y).abs().max() < 0.08 * y.abs().max()
    torch.testing.assert_close(q.dequantize(), dequantize_nf4(q.nf4), atol=0, rtol=0)


def test_qlora_gradients_reach_only_the_adapter_and_match_autograd():
    lin = linear()
    q = QLoRALinear(copy.deepcopy(lin))
    q.add_adapter("a", r=4, alpha=8)
    with torch.no_grad():
        q.lora["a"].B.normal_(std=0.1, generator=torch.Generator().manual_seed(2))
    x = torch.randn(6, 128, generator=torch.Generator().manual_seed(1), requires_grad=True)
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
