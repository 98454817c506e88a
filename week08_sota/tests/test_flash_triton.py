"""The Triton FlashAttention-2 kernels (``week08_sota.flash_triton``) against SDPA's math path.

On a machine without CUDA the kernels run in Triton's interpreter: ``TRITON_INTERPRET=1``
is set here, before ``week08_sota.flash_triton`` is first imported (Triton reads it when
the kernels are decorated; if the module was imported earlier without it, it is reloaded).
It stays set for the rest of the pytest process: Triton reads it again whenever a jitted
helper is called from a kernel, so putting it back after the import breaks the kernels.
Without CUDA no Triton kernel can run any other way, so other test files that use triton
on a CPU need it too; no other test file in the repository imports triton today.
The interpreter runs every program with NumPy, about 0.1 s per launch of these tiny
shapes, so they stay tiny (T <= 40, hd <= 16, blocks of 16: still several tiles and a
ragged last one). The same tests run on CUDA when a GPU is present. Tolerances as in
``test_flash.py``: fp64 1e-10, fp32 1e-5 (the kernel's fp32 dots are IEEE, not TF32).
"""

import importlib
import os
import sys

import pytest
import torch

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ["TRITON_INTERPRET"] = "1"  # before the kernels are decorated
triton = pytest.importorskip("triton")

if "week08_sota.flash_triton" in sys.modules and not CUDA:
    importlib.reload(sys.modules["week08_sota.flash_triton"])
from week01_transformer import attention_kernel  # noqa: E402
from week01_transformer.attention import causal_mask  # noqa: E402
from week08_sota import flash_triton  # noqa: E402

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

DEVICE = "cuda" if CUDA else "cpu"
BLOCK = dict(block_m=16, block_n=16)

# (B, H, Hkv, Tq, Tk, hd, hd_v, causal), as test_flash.py's but smaller
SHAPES = {
    "gqa-odd-causal": (1, 4, 2, 37, 37, 16, 16, True),
    "mqa-not-causal": (1, 2, 1, 29, 29, 16, 16, False),
    "len1": (1, 2, 1, 1, 1, 8, 8, True),
    "decode-1-of-23": (1, 2, 1, 1, 23, 16, 16, True),
    "chunk-19-of-40": (1, 2, 2, 19, 40, 8, 8, True),
    "hdv-differs-hd-not-pow2": (1, 2, 1, 24, 24, 12, 8, True),
}


def qkv(B, H, Hkv, Tq, Tk, hd, hdv, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, Tq, hd, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, Tk, hd, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, Tk, hdv, generator=g, dtype=dtype)
    return [t.to(DEVICE).requires_grad_() for t in (q, k, v)]


def reference(q, k, v, mask=None, causal=True, scale=None):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    rep = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    if mask is None and causal:
        mask = causal_mask(q.size(-2), k.size(-2), q.device)
    with sdpa_kernel(SDPBackend.MATH):
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                                scale=scale)


def check(q, k, v, atol, **kw):
    y = flash_triton.flash2_triton(q, k, v, **BLOCK, **kw)
    yr = reference(q, k, v, **kw)
    do = torch.randn(yr.shape, generator=torch.Generator().manual_seed(1),
                     dtype=yr.dtype).to(DEVICE)
    ours = (y, *torch.autograd.grad(y, (q, k, v), do))
    ref = (yr, *torch.autograd.grad(yr, (q, k, v), do))
    for name, a, b in zip(("y", "dq", "dk", "dv"), ours, ref):
        assert a.shape == b.shape, name
        err = (a - b).abs().max().item()
        assert err <= atol, f"{name}: max error {err:.3g} > {atol}"


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)],
                         ids=["fp64", "fp32"])
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_outputs_and_gradients_equal_sdpa_math(shape, dtype, atol):
    *dims, causal = shape
    check(*qkv(*dims, dtype), atol, causal=causal)


def test_boolean_mask_read_through_broadcast_strides():
    """A (B, 1, Tq, Tk) random causal mask (heads broadcast: stride 0) and a (B, 1, 1, Tk)
    padding mask."""
    q, k, v = qkv(2, 2, 1, 20, 20, 16, 16, torch.float64)
    g = torch.Generator().manual_seed(2)
    rnd = (causal_mask(20, 20) & (torch.rand(2, 1, 20, 20, generator=g) < 0.6)) | torch.eye(
        20, dtype=torch.bool)
    pad = torch.ones(2, 1, 1, 20, dtype=torch.bool)
    pad[1, ..., :6] = False
    for mask in (rnd, pad):
        check(q, k, v, 1e-10, mask=mask.to(DEVICE))


def test_a_row_that_reads_nothing_gives_zeros():
    q, k, v = qkv(1, 2, 1, 17, 17, 16, 16, torch.float64)
    mask = causal_mask(17, 17).clone()
    mask[5] = False
    y = flash_triton.flash2_triton(q, k, v, mask=mask.to(DEVICE), **BLOCK)
    dq, dk, dv = torch.autograd.grad(y.sum(), (q, k, v))
    assert torch.all(y[:, :, 5] == 0) and torch.all(dq[:, :, 5] == 0)
    assert torch.isfinite(dk).all() and torch.isfinite(dv).all()


def test_gradcheck_tiny_fp64():
    """Finite differences of our forward against our backward (fast mode: random
    projections of the Jacobian, which keeps the interpreter's launches few)."""
    q, k, v = qkv(1, 2, 1, 5, 7, 4, 3, torch.float64)
    assert torch.autograd.gradcheck(
        lambda q, k, v: flash_triton.flash2_triton(q, k, v, causal=True, **BLOCK), (q, k, v),
        fast_mode=True)


def test_registered_and_equal_to_the_torch_kernel():
    q, k, v = qkv(1, 4, 2, 21, 21, 16, 16, torch.float64)
    y = attention_kernel("flash2_triton")(q, k, v, causal=True)  # default blocks (64)
    assert (y - attention_kernel("flash2_torch")(q, k, v, causal=True)).abs().max() < 1e-10


def test_bad_blocks_and_dropout_are_refused():
    q, k, v = qkv(1, 1, 1, 4, 4, 16, 16, torch.float32)
    with pytest.raises(ValueError, match="powers of two"):
        flash_triton.flash2_triton(q, k, v, block_m=24)
    with pytest.raises(NotImplementedError, match="dropout"):
        flash_triton.flash2_triton(q, k, v, dropout_p=0.1)


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_flash_attn_dispatch_and_half_precision():
    """On CUDA: "flash_attn" runs flash-attn's kernel when installed (else ours), and our
    bf16 kernel stays within bf16 rounding of the fp32 reference."""
    q, k, v = qkv(2, 4, 2, 40, 40, 16, 16, torch.bfloat16)
    ref = reference(q.float(), k.float(), v.float())
    for name in ("flash2_triton", "flash_attn"):
        y = attention_kernel(name)(q, k, v, causal=True)
        assert (y.float() - ref).abs().max() < 2e-2, name
