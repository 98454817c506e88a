"""The model contract later weeks build on: the kernel registry, overridable parts,
per-layer configs, the cache protocol and the one-token step."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from shared import Cache
from week01_transformer import (
    ATTENTION_KERNELS,
    GPT,
    MLP,
    Block,
    GPTConfig,
    KVCache,
    attention_kernel,
    register_attention,
)
from week01_transformer.attention import explicit_attention, sdpa_attention

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

ATOL = 1e-5  # fp32 sums over at most 64 channels: a few ulps of 1.0, far below this


def tiny(**kw):
    return GPTConfig(**{**dict(vocab_size=61, block_size=24, n_layer=2, n_head=4, n_embd=32), **kw})


# ---------------------------------------------------------------- the kernel registry


def test_a_registered_kernel_is_selected_by_name_without_editing_week01():
    calls = []

    def counting_sdpa(q, k, v, mask=None, causal=True, scale=None, dropout_p=0.0):
        calls.append(q.shape)
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, scale=scale)

    register_attention("test-counting", counting_sdpa)
    try:
        torch.manual_seed(0)
        ours = GPT(tiny(attention="test-counting")).eval()
        ref = GPT(tiny(attention="explicit")).eval()
        ref.load_state_dict(ours.state_dict())
        idx = torch.randint(0, 61, (2, 10), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(ours(idx), ref(idx), atol=ATOL, rtol=0)
        assert len(calls) == 2  # one call per layer
        with pytest.raises(ValueError, match="already registered"):
            register_attention("test-counting", sdpa_attention)
    finally:
        ATTENTION_KERNELS.pop("test-counting")
    # week01's two, and whatever other installed weeks registered (week08's FlashAttention)
    with pytest.raises(ValueError, match=r"registered: (.+, )?explicit, (.+, )?sdpa"):
        attention_kernel("test-counting")
    with pytest.raises(ValueError, match="registered attention kernel"):
        tiny(attention="test-counting")


@pytest.mark.parametrize("Tq,Tk", [(5, 5), (1, 9), (3, 8)])
def test_both_kernels_agree_with_and_without_masks(Tq, Tk):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, T, 8, generator=g) for T in (Tq, Tk, Tk))
    mask = torch.rand(2, 1, Tq, Tk, generator=g) > 0.3
    mask[..., -1] = True  # every query reads at least one key
    for kw in (dict(causal=True), dict(mask=mask), dict(causal=False)):
        torch.testing.assert_close(explicit_attention(q, k, v, **kw), sdpa_attention(q, k, v, **kw),
                                   atol=ATOL, rtol=0)


# ---------------------------------------------------------------- parts and layers


@dataclass
class TwoKindConfig(GPTConfig):
    """A config whose layers differ: the first ``n_dense`` keep the GELU MLP."""

    n_dense: int = 1
    kind: str = "moe"

    def layer_config(self, layer_idx):
        from dataclasses import replace

        return replace(self, kind="dense") if layer_idx < self.n_dense else self


class HalfMLP(MLP):
    """A toy 'other' MLP: half the width, ReLU."""

    def __init__(self, config, layer_idx=0):
        nn.Module.__init__(self)
        self.fc = nn.Linear(config.n_embd, config.n_embd // 2)
        self.act = nn.ReLU()
        self.proj = nn.Linear(config.n_embd // 2, config.n_embd)
        self.dropout = nn.Dropout(0.0)
        self.layer_idx = layer_idx


class TwoKindBlock(Block):
    def make_mlp(self, config, layer_idx):
        return super().make_mlp(config, layer_idx) if config.kind == "dense" else \
            HalfMLP(config, layer_idx)


class TwoKindGPT(GPT):
    config_class = TwoKindConfig
    block_cls = TwoKindBlock


def test_blocks_get_their_index_and_per_layer_choices_come_from_the_config():
    model = TwoKindGPT(TwoKindConfig(vocab_size=61, block_size=24, n_layer=3, n_head=4,
                                     n_embd=32, n_dense=1))
    assert [b.layer_idx for b in model.blocks] == [0, 1, 2]
    assert [b.attn.layer_idx for b in model.blocks] == [0, 1, 2]
    assert [type(b.mlp) for b in model.blocks] == [MLP, HalfMLP, HalfMLP]
    assert [b.mlp.layer_idx for b in model.blocks[1:]] == [1, 2]
    with pytest.raises(TypeError, match="needs a TwoKindConfig"):
        TwoKindGPT(tiny())


def test_untied_head_and_parameter_counts():
    tied, untied = GPT(tiny()), GPT(tiny(tie_embeddings=False))
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert untied.lm_head.weight is not untied.tok_emb.weight
    assert untied.num_params() - tied.num_params() == 61 * 32
    assert untied.num_params(non_embedding=True) == tied.num_params(non_embedding=True)


# ---------------------------------------------------------------- cache and step


def test_new_cache_speaks_the_shared_protocol_and_keeps_rows():
    model = GPT(tiny())
    cache = model.new_cache(3, 10, pad=torch.tensor([0, 2, 1]))
    assert isinstance(cache, Cache) and isinstance(cache, KVCache)
    assert cache.batch_size == 3 and cache.max_len == 10 and cache.pos == 0
    k = torch.arange(3.0)[:, None, None, None].expand(3, 4, 2, 8)  # row b holds value b
    cache.update(0, k, k)
    cache.advance(2)
    assert cache.positions(2).tolist() == [[2, 3], [0, 1], [1, 2]]
    cache.keep(torch.tensor([2, 0]))  # drop row 1, reorder the rest
    assert cache.batch_size == 2 and cache.pad.tolist() == [1, 0]
    assert cache.k[0, :, 0, 0, 0].tolist() == [2.0, 0.0] and cache.pos == 2
    assert cache.nbytes() == 2 * 2 * 2 * 4 * 10 * 8 * 4  # k and v, 2 layers, fp32
    with pytest.raises(ValueError, match="pad must be a tensor of shape"):
        model.new_cache(2, 10, pad=torch.tensor([0]))


@pytest.mark.parametrize("pad", [None, [0, 3, 1]], ids=["aligned", "left-padded"])
def test_gpt_step_equals_the_full_forward(pad):
    """The generic one-token step (week01's modules have no lean path) gives the logits of
    the full forward of each unpadded row."""
    torch.manual_seed(0)
    model = GPT(tiny()).eval()
    g = torch.Generator().manual_seed(2)
    idx = torch.randint(0, 61, (3, 12), generator=g)
    pad_t = None if pad is None else torch.tensor(pad)
    cache = model.new_cache(3, 12, pad=pad_t)
    with torch.no_grad():
        model(idx[:, :8], cache=cache)
        for t in range(8, 12):
            got = model.step(idx[:, t:t + 1], cache)  # (B, V)
            for b in range(3):
                p = 0 if pad is None else pad[b]
                want = model(idx[b:b + 1, p:t + 1])[0, -1]
                torch.testing.assert_close(got[b], want, atol=ATOL, rtol=0)


def test_a_block_with_its_own_forward_is_never_bypassed_by_step():
    class Doubling(Block):
        def forward(self, x, ctx=None):
            return 2 * super().forward(x, ctx)

    class DoublingGPT(GPT):
        block_cls = Doubling

    torch.manual_seed(0)
    model = DoublingGPT(tiny()).eval()
    idx = torch.randint(0, 61, (2, 6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        cache = model.new_cache(2, 6)
        model(idx[:, :5], cache=cache)
        torch.testing.assert_close(model.step(idx[:, 5:], cache), model(idx)[:, -1],
                                   atol=ATOL, rtol=0)
