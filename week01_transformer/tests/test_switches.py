"""The experiment switches of ``GPTConfig``: ``attn_scale``, ``causal``, ``norm_position``.

Each switch is checked against a hand-written computation of what it means, on both
registered kernels ("explicit" and "sdpa"):

- ``attn_scale=False``: ``softmax(q k^T + mask) v`` with no 1/sqrt(head_dim), and Hugging
  Face's GPT-2 with ``scale_attn_weights=False`` holding the same weights;
- ``causal=False``: ``softmax(q k^T / sqrt(hd)) v`` with no mask; changing a later token
  changes earlier positions' logits (with the mask it never does); padding is still masked;
- ``norm_position="post"``: ``h = LN1(x + attn(x)); y = LN2(h + mlp(h))`` written out.

Defaults stay GPT-2 (the HF parity tests in test_hf_parity.py run with them), and a kernel
written against the older call without ``scale`` still runs every default model.

Tolerance: fp32 over at most 32 channels per head, logits of size ~1: the two kernels and the
hand-written versions differ by a few ulps (observed < 1e-6); 1e-5 leaves a 10x margin, as
in the HF parity tests. Unscaled scores are sqrt(hd) times larger, so the softmax is sharper,
but the weights stay in [0, 1] and the same margin holds.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from week01_transformer import (
    ATTENTION_KERNELS,
    GPT,
    Block,
    CausalSelfAttention,
    GPTConfig,
    attention_maps,
    register_attention,
)

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")

ATOL = 1e-5
KERNELS = ["explicit", "sdpa"]


def tiny(**kw) -> GPTConfig:
    return GPTConfig(**{**dict(vocab_size=61, block_size=16, n_layer=2, n_head=4, n_embd=32), **kw})


def random_model(randomize, seed: int = 1, **kw) -> GPT:
    torch.manual_seed(0)
    return randomize(GPT(tiny(**kw)), seed=seed).eval()


def random_idx(B: int = 2, T: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 61, (B, T), generator=torch.Generator().manual_seed(seed))


def attention_by_hand(attn: CausalSelfAttention, x: torch.Tensor, scale: float, causal: bool):
    """Multi-head self-attention written out: qkv, heads, softmax(q k^T * scale + M) v, proj."""
    B, T, C = x.shape
    H, hd = attn.n_head, attn.head_dim
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias  # (B, T, 3C)
    q, k, v = (t.reshape(B, T, H, hd).transpose(1, 2) for t in qkv.split(C, dim=-1))
    scores = q @ k.transpose(-2, -1) * scale  # (B, H, T, T)
    if causal:
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v  # (B, H, T, hd)
    y = y.transpose(1, 2).reshape(B, T, C)
    return y @ attn.proj.weight.T + attn.proj.bias


def mlp_by_hand(mlp, x: torch.Tensor) -> torch.Tensor:
    h = x @ mlp.fc.weight.T + mlp.fc.bias
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))  # gelu_new
    return h @ mlp.proj.weight.T + mlp.proj.bias


def ln_by_hand(ln, x: torch.Tensor) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


# ---------------------------------------------------------------- defaults and validation


def test_defaults_are_gpt2():
    cfg = GPTConfig()
    assert (cfg.attn_scale, cfg.causal, cfg.norm_position) == (True, True, "pre")
    model = GPT(tiny())
    assert all(b.attn.scale is None and b.attn.causal and not b.post_norm for b in model.blocks)
    # a checkpoint's config saved before the switches existed still loads, as GPT-2
    old = {k: v for k, v in tiny().to_dict().items()
           if k not in ("attn_scale", "causal", "norm_position")}
    assert GPTConfig.from_dict(old) == tiny()


def test_bad_values_raise_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"norm_position must be one of pre, post.*'mid'"):
        GPTConfig(norm_position="mid")
    with pytest.raises(ValueError, match=r"attn_scale must be True .* or False"):
        GPTConfig(attn_scale="no")
    with pytest.raises(ValueError, match=r"causal must be True .* or False"):
        GPTConfig(causal=0)


def test_a_kernel_without_the_scale_argument_still_runs_default_models(randomize):
    """Kernels written before ``scale`` was passed: the model passes it only when it changes."""

    def old_kernel(q, k, v, mask=None, causal=True, dropout_p=0.0):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              is_causal=causal and mask is None)

    register_attention("test-no-scale-arg", old_kernel)
    try:
        ours = random_model(randomize, attention="test-no-scale-arg")
        ref = random_model(randomize, attention="explicit")
        idx = random_idx()
        with torch.no_grad():
            torch.testing.assert_close(ours(idx), ref(idx), atol=ATOL, rtol=0)
    finally:
        ATTENTION_KERNELS.pop("test-no-scale-arg")


# ---------------------------------------------------------------- attn_scale=False


@pytest.mark.parametrize("attention", KERNELS)
def test_no_scale_is_softmax_of_raw_scores(attention, randomize):
    """attn_scale=False: the layer computes softmax(q k^T + M) v, no 1/sqrt(head_dim)."""
    model = random_model(randomize, attn_scale=False, attention=attention)
    attn = model.blocks[0].attn
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = attn(x)
        torch.testing.assert_close(got, attention_by_hand(attn, x, 1.0, causal=True),
                                   atol=ATOL, rtol=0)
        scaled = attention_by_hand(attn, x, 1 / math.sqrt(attn.head_dim), causal=True)
        assert (got - scaled).abs().max() > 1e-2  # the switch changes the function
        q, k, _ = attn.split_heads(x)
        want = torch.softmax((q @ k.transpose(-2, -1)).masked_fill(
            torch.triu(torch.ones(10, 10, dtype=torch.bool), 1), float("-inf")), -1)
        torch.testing.assert_close(attn.weights(q, k), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("attention", KERNELS)
def test_no_scale_equals_hugging_face_scale_attn_weights_false(attention, randomize):
    """Hugging Face's GPT-2 has this switch (scale_attn_weights): same weights, same logits,
    in both directions of conversion."""
    pytest.importorskip("transformers")
    ours = random_model(randomize, attn_scale=False, attention=attention)
    hf = ours.to_hf().eval()
    assert hf.config.scale_attn_weights is False
    back = GPT.from_hf(hf, attention=attention).eval()
    assert back.config.attn_scale is False
    idx = random_idx()
    with torch.no_grad():
        want = hf(idx).logits
        torch.testing.assert_close(ours(idx), want, atol=ATOL, rtol=0)
        torch.testing.assert_close(back(idx), want, atol=ATOL, rtol=0)


# ---------------------------------------------------------------- causal=False


@pytest.mark.parametrize("attention", KERNELS)
def test_no_mask_is_softmax_over_every_key(attention, randomize):
    model = random_model(randomize, causal=False, attention=attention)
    attn = model.blocks[0].attn
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = attention_by_hand(attn, x, 1 / math.sqrt(attn.head_dim), causal=False)
        torch.testing.assert_close(attn(x), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("attention", KERNELS)
@pytest.mark.parametrize("causal", [True, False], ids=["mask", "no-mask"])
def test_without_the_mask_a_future_token_changes_earlier_logits(attention, causal, randomize):
    """Change the token at position t: with the mask, logits before t stay bit-for-bit equal;
    without it every earlier position changes (it reads the future: it can see the answer)."""
    model = random_model(randomize, causal=causal, attention=attention)
    idx = random_idx()
    with torch.no_grad():
        base = model(idx)
        for t in (1, 7, 15):
            changed = idx.clone()
            changed[:, t] = (changed[:, t] + 1 + torch.arange(2)) % 61
            out = model(changed)
            if causal:
                assert torch.equal(out[:, :t], base[:, :t])
            else:
                per_position = (out[:, :t] - base[:, :t]).abs().amax(dim=(0, 2))  # (t,)
                assert bool((per_position > 1e-4).all()), per_position


def test_no_mask_attention_maps_have_weight_above_the_diagonal(randomize):
    model = random_model(randomize, causal=False)
    maps = attention_maps(model, random_idx(1, 8))  # (L, 1, H, 8, 8)
    above = torch.triu(torch.ones(8, 8, dtype=torch.bool), 1)
    assert bool((maps[..., above] > 0).all())
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]))


@pytest.mark.parametrize("attention", KERNELS)
def test_no_mask_still_never_reads_left_padding(attention, randomize):
    """Padding is masked whatever ``causal`` says: a left-padded row gives the logits of the
    same tokens without padding (positions count from the first real token)."""
    model = random_model(randomize, causal=False, attention=attention)
    idx = random_idx(2, 12)
    pad = torch.tensor([0, 4])
    with torch.no_grad():
        out = model(idx, pad=pad)
        torch.testing.assert_close(out[1, 4:], model(idx[1:, 4:])[0], atol=ATOL, rtol=0)
        torch.testing.assert_close(out[0], model(idx[:1])[0], atol=ATOL, rtol=0)


# ---------------------------------------------------------------- norm_position="post"


@pytest.mark.parametrize("attention", KERNELS)
def test_post_norm_block_is_ln_of_the_sum(attention, randomize):
    """One post-norm block written out: h = LN1(x + attn(x)), y = LN2(h + mlp(h))."""
    model = random_model(randomize, norm_position="post", attention=attention)
    block = model.blocks[0]
    assert isinstance(block, Block) and block.post_norm
    x = torch.randn(2, 10, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        h = ln_by_hand(block.ln_1, x + attention_by_hand(block.attn, x, 1 / math.sqrt(8), True))
        want = ln_by_hand(block.ln_2, h + mlp_by_hand(block.mlp, h))
        torch.testing.assert_close(block(x), want, atol=ATOL, rtol=0)
        pre = random_model(randomize, attention=attention).blocks[0]  # same weights, pre-norm
        assert (pre(x) - want).abs().max() > 1e-2


def test_post_norm_model_runs_the_blocks_then_ln_f(randomize):
    model = random_model(randomize, norm_position="post")
    idx = random_idx()
    with torch.no_grad():
        h = model.embed(idx)
        for block in model.blocks:
            x = block.ln_1(h + block.attn(h))
            h = block.ln_2(x + block.mlp(x))
        torch.testing.assert_close(model(idx), model.lm_head(model.ln_f(h)), atol=ATOL, rtol=0)


# ---------------------------------------------------------------- every switch, both kernels

SWITCHES = [dict(attn_scale=False), dict(causal=False), dict(norm_position="post"),
            dict(attn_scale=False, causal=False, norm_position="post")]
SWITCH_IDS = ["no-scale", "no-mask", "post-norm", "all-three"]


@pytest.mark.parametrize("switch", SWITCHES, ids=SWITCH_IDS)
def test_explicit_equals_sdpa_forward_and_backward(switch, randomize):
    idx, targets = random_idx(seed=1), random_idx(seed=2)
    models = [random_model(randomize, attention=a, **switch) for a in KERNELS]
    logits = [m(idx) for m in models]
    torch.testing.assert_close(logits[0], logits[1], atol=ATOL, rtol=0)
    for m in models:
        m.loss(idx, targets).backward()
    for (name, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        scale = p.grad.abs().max().item()
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6 + 1e-4 * scale,
                                   msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("switch", SWITCHES[::2], ids=SWITCH_IDS[::2])  # the causal ones
@pytest.mark.parametrize("attention", KERNELS)
def test_cached_step_equals_the_full_forward(switch, attention, randomize):
    """The one-token step (Block.step's own post-norm path included) gives the full forward's
    logits; a non-causal model has no such identity (later tokens change earlier keys)."""
    model = random_model(randomize, attention=attention, **switch)
    idx = random_idx(2, 12, seed=4)
    cache = model.new_cache(2, 12)
    with torch.no_grad():
        model(idx[:, :8], cache=cache)
        for t in range(8, 12):
            got = model.step(idx[:, t:t + 1], cache)
            torch.testing.assert_close(got, model(idx[:, :t + 1])[:, -1], atol=ATOL, rtol=0)


@pytest.mark.parametrize("switch", [dict(causal=False), dict(norm_position="post")],
                         ids=["no-mask", "post-norm"])
def test_to_hf_refuses_what_gpt2_cannot_express(switch):
    pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="causal and pre-norm"):
        GPT(tiny(**switch)).to_hf()


def test_attention_mask_without_causality():
    """``attention_mask(causal=False)``: nothing masked, or only padding and a window
    (then |query - key| < window)."""
    from week01_transformer import attention_mask

    assert attention_mask(0, 5, causal=False) == (None, False)
    assert attention_mask(3, 2, causal=False) == (None, False)  # after a cache: every key
    mask, causal = attention_mask(0, 5, window=2, causal=False)
    assert not causal
    d = torch.arange(5)[:, None] - torch.arange(5)[None, :]
    assert torch.equal(mask[0, 0], d.abs() < 2)
    mask, _ = attention_mask(0, 4, pad=torch.tensor([0, 2]), causal=False)  # (2, 1, 4, 4)
    assert mask[0, 0].all()
    # real queries (2, 3) read only the real keys; padding queries (0, 1) read themselves too
    assert torch.equal(mask[1, 0], torch.tensor([[1, 0, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1],
                                                 [0, 0, 1, 1]], dtype=torch.bool))
