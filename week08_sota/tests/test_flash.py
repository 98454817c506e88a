"""FlashAttention-2 in PyTorch (``week08_sota.flash``) against SDPA's math path.

The reference is ``torch.nn.functional.scaled_dot_product_attention`` forced to the math
backend (softmax of the full score matrix), with the kv heads repeated for GQA and the
registry's bottom-right ``causal_mask`` when Tq != Tk. Tolerances: fp64 to 1e-10 (the two
add the same products in a different order, tiles and online rescaling against one
softmax: ~1e-15 is observed, 1e-10 leaves five orders of slack), fp32 to 1e-5 (~1e-7
observed).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import week08_sota.flash as flash
from week01_transformer import attention_kernel
from week01_transformer.attention import causal_mask
from week08_sota.flash import FlashAttention2, flash2_torch

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# (B, H, Hkv, Tq, Tk, hd, hd_v, causal): odd lengths, length 1, GQA and MQA, Tq != Tk
# (decode steps: the last Tq of Tk), v's head dim different from q's (as MLA)
SHAPES = {
    "mha-odd-causal": (2, 2, 2, 37, 37, 16, 16, True),
    "gqa-odd-causal": (2, 4, 2, 45, 45, 8, 8, True),
    "mqa-not-causal": (1, 4, 1, 29, 29, 16, 16, False),
    "len1": (2, 2, 1, 1, 1, 8, 8, True),
    "decode-1-of-23": (1, 4, 2, 1, 23, 16, 16, True),
    "chunk-19-of-50": (2, 2, 2, 19, 50, 8, 8, True),
    "cross-not-causal": (1, 2, 1, 33, 17, 8, 8, False),
    "hdv-differs": (1, 4, 2, 40, 40, 24, 16, True),
    "one-block": (1, 1, 1, 7, 7, 4, 4, True),
}
BLOCKS = (16, 8)  # small blocks, so every shape spans several tiles and a ragged last one


def qkv(B, H, Hkv, Tq, Tk, hd, hdv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, hd, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, Tk, hd, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, Tk, hdv, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (q, k, v)]


def reference(q, k, v, mask=None, causal=True, scale=None):
    """SDPA's math path with kv repeated for GQA and the bottom-right causal mask."""
    rep = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if mask is None and causal:
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def both(q, k, v, seed=1, **kw):
    """Outputs and (dq, dk, dv) of flash2_torch and the reference, for one random dO."""
    block_q, block_k = kw.pop("blocks", BLOCKS)
    y = flash2_torch(q, k, v, block_q=block_q, block_k=block_k, **kw)
    yr = reference(q, k, v, **kw)
    do = torch.randn(yr.shape, generator=torch.Generator().manual_seed(seed), dtype=yr.dtype)
    return (y, *torch.autograd.grad(y, (q, k, v), do)), (yr, *torch.autograd.grad(yr, (q, k, v), do))


def assert_close(ours, ref, atol):
    for name, a, b in zip(("y", "dq", "dk", "dv"), ours, ref):
        assert a.shape == b.shape, name
        err = (a - b).abs().max().item()
        assert err <= atol, f"{name}: max error {err:.3g} > {atol}"


# ---------------------------------------------------------------- parity with SDPA


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_fp64_outputs_and_gradients_equal_sdpa_math(shape):
    *dims, causal = shape
    q, k, v = qkv(*dims, torch.float64)
    assert_close(*both(q, k, v, causal=causal), atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_fp32_outputs_and_gradients_equal_sdpa_math(shape):
    *dims, causal = shape
    q, k, v = qkv(*dims, torch.float32)
    assert_close(*both(q, k, v, causal=causal), atol=1e-5)


def test_random_shapes_and_blocks_fp64():
    """Twenty random draws of every size, block sizes included (block 1 and > T too)."""
    g = torch.Generator().manual_seed(123)

    def r(lo, hi):
        return int(torch.randint(lo, hi + 1, (1,), generator=g))
    for i in range(20):
        Hkv, rep = r(1, 3), r(1, 3)
        Tk = r(1, 48)
        Tq = Tk if i % 2 else r(1, Tk)
        causal = bool(i % 3)
        q, k, v = qkv(r(1, 2), Hkv * rep, Hkv, Tq, Tk, r(1, 12), r(1, 12), torch.float64, seed=i)
        blocks = (r(1, 40), r(1, 40))
        assert_close(*both(q, k, v, causal=causal, blocks=blocks), atol=1e-10)


def test_default_blocks_and_scale():
    """Default block size (one tile here) and a scale that is not 1/sqrt(hd)."""
    q, k, v = qkv(1, 2, 1, 50, 50, 8, 8, torch.float64)
    assert_close(*both(q, k, v, causal=True, scale=0.3, blocks=(flash.DEFAULT_BLOCK,) * 2),
                 atol=1e-10)


def test_boolean_masks_tile_by_tile():
    """A padding mask (B, 1, 1, Tk), a sliding window (Tq, Tk) and a full (B, H, Tq, Tk)
    random mask, each with the diagonal allowed (so no row is empty), equal SDPA's."""
    B, H, Hkv, T = 2, 4, 2, 35
    q, k, v = qkv(B, H, Hkv, T, T, 8, 8, torch.float64)
    pad = torch.ones(B, 1, 1, T, dtype=torch.bool)
    pad[0, ..., :5] = False  # left padding of row 0 ...
    window = causal_mask(T, T) & ~causal_mask(T, T).tril(-7)  # causal, 7 keys wide
    rnd = torch.rand(B, H, T, T, generator=torch.Generator().manual_seed(3)) < 0.5
    rnd |= torch.eye(T, dtype=torch.bool)
    for mask in (window, rnd, pad | torch.eye(T, dtype=torch.bool)):
        assert_close(*both(q, k, v, mask=mask), atol=1e-10)


def test_a_row_that_reads_nothing_gives_zeros_and_zero_gradients():
    """The reference gives NaN there; ours 0 output, 0 gradient to that query, and the
    other rows still equal the reference."""
    q, k, v = qkv(1, 2, 1, 20, 20, 8, 8, torch.float64)
    mask = causal_mask(20, 20).clone()
    mask[3] = False
    y = flash2_torch(q, k, v, mask=mask, block_q=8, block_k=8)
    dq, dk, dv = torch.autograd.grad(y.sum(), (q, k, v))
    assert torch.all(y[:, :, 3] == 0) and torch.all(dq[:, :, 3] == 0)
    assert torch.isfinite(dk).all() and torch.isfinite(dv).all()
    keep = torch.arange(20) != 3
    assert (y[:, :, keep] - reference(q, k, v, mask=mask)[:, :, keep]).abs().max() < 1e-10


def test_gradcheck_tiny_fp64():
    """torch.autograd.gradcheck: our backward against finite differences of our forward,
    causal GQA with a decode-style offset and a masked variant."""
    q, k, v = qkv(1, 2, 1, 5, 7, 3, 2, torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash2_torch(q, k, v, causal=True, block_q=2, block_k=3), (q, k, v))
    mask = torch.rand(5, 7, generator=torch.Generator().manual_seed(0)) < 0.7
    mask[:, -1] = True
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash2_torch(q, k, v, mask=mask, block_q=3, block_k=2), (q, k, v))


def test_half_inputs_accumulate_in_float32():
    q, k, v = qkv(1, 2, 2, 33, 33, 16, 16, torch.bfloat16)
    y = flash2_torch(q, k, v, block_q=16, block_k=16)
    assert y.dtype == torch.bfloat16
    yr = reference(q.float(), k.float(), v.float())
    assert (y.float() - yr).abs().max() < 2e-2  # bf16 output rounding (8 bits of mantissa)


# ---------------------------------------------------------------- what it saves, what it skips


def test_saves_only_inputs_output_and_logsumexp():
    """No (Tq, Tk) tensor is kept for backward: the saved ones are q, k, v, o and lse."""
    B, H, T, hd = 1, 2, 64, 8
    q, k, v = qkv(B, H, H, T, T, hd, hd, torch.float32)
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        flash2_torch(q, k, v, block_q=16, block_k=16)
    assert sorted(shapes) == sorted([(B, H, T, hd)] * 4 + [(B, H, T)])


def test_causal_skips_fully_masked_key_blocks(monkeypatch):
    """With 4 query blocks and 4 key blocks, causal attention computes 1 + 2 + 3 + 4 = 10
    score tiles in the forward, not 16 (counted as calls of the q @ k^T matmul)."""
    tiles = []
    real = flash.flash_block_forward

    def counting(q_blk, k, v, scale, block_k, kv_stop, fn):
        tiles.append(math.ceil(kv_stop / block_k))
        return real(q_blk, k, v, scale, block_k, kv_stop, fn)
    monkeypatch.setattr(flash, "flash_block_forward", counting)
    q, k, v = qkv(1, 1, 1, 64, 64, 8, 8, torch.float32)
    flash2_torch(q, k, v, causal=True, block_q=16, block_k=16)
    assert tiles == [1, 2, 3, 4]
    tiles.clear()
    flash2_torch(q, k, v, causal=False, block_q=16, block_k=16)
    assert tiles == [4, 4, 4, 4]


# ---------------------------------------------------------------- the registry


def test_registered_kernels_and_the_cpu_fallback_of_flash_attn(monkeypatch):
    """The three names are registered; on CPU "flash_attn" runs flash2_torch."""
    assert attention_kernel("flash2_torch") is flash2_torch
    assert callable(attention_kernel("flash2_triton"))
    calls = []
    real = flash.flash2_torch
    monkeypatch.setattr(flash, "flash2_torch", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    q, k, v = qkv(1, 4, 2, 9, 9, 8, 8, torch.float64)
    y = attention_kernel("flash_attn")(q, k, v, causal=True)
    assert calls == [1]
    assert (y - reference(q, k, v)).abs().max() < 1e-10


def test_dropout_is_refused_and_shapes_are_checked():
    q, k, v = qkv(1, 4, 2, 9, 9, 8, 8, torch.float32)
    with pytest.raises(NotImplementedError, match="dropout"):
        flash2_torch(q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match="divide"):
        flash2_torch(q, k[:, :1].expand(1, 3, 9, 8), v[:, :1].expand(1, 3, 9, 8))
    with pytest.raises(TypeError, match="boolean"):
        flash2_torch(q, k, v, mask=torch.ones(9, 9))


def test_is_an_autograd_function():
    q, k, v = qkv(1, 1, 1, 4, 4, 2, 2, torch.float64)
    y = flash2_torch(q, k, v)
    assert type(y.grad_fn).__name__ == FlashAttention2.__name__ + "Backward"


def test_llama_model_with_flash2_equals_sdpa():
    """week04's Llama (GQA, RoPE, KV-cache generation path) gives the same logits with the
    flash kernel as with SDPA (fp32, 1e-5)."""
    from week04_modern_arch_tools import Llama, LlamaConfig
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=50, block_size=64, n_layer=2, n_head=4, n_kv_head=2,
                              n_embd=32)).eval()
    idx = torch.randint(0, 50, (2, 41), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(idx)
        model.set_attention("flash2_torch")
        ours = model(idx)
    ref = ref[0] if isinstance(ref, tuple) else ref
    ours = ours[0] if isinstance(ours, tuple) else ours
    assert (ours - ref).abs().max() < 1e-5


def test_importing_needs_no_triton_and_its_absence_is_a_clear_error():
    """In a fresh interpreter where ``import triton`` fails: week08_sota and its flash
    module import, "flash2_torch" runs, and "flash2_triton" says to pip install triton."""
    import subprocess
    import sys
    code = (
        "import sys; sys.modules['triton'] = None\n"  # makes `import triton` raise
        "import torch, week08_sota, week08_sota.flash\n"
        "from week01_transformer import attention_kernel\n"
        "q = torch.randn(1, 1, 3, 4)\n"
        "attention_kernel('flash2_torch')(q, q, q)\n"
        "try:\n"
        "    attention_kernel('flash2_triton')(q, q, q)\n"
        "except ImportError as e:\n"
        "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "pip install triton" in out.stdout
