"""The GPT on its own: causality, the two attention paths, init, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from shared import LanguageModel
from week01_transformer import GPT, PRESETS, GPTConfig

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------- shape and protocol


def test_forward_shape_and_protocol(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 5))
    logits = tiny_model(idx)
    assert logits.shape == (2, 5, tiny_config.vocab_size)
    assert isinstance(tiny_model, LanguageModel)
    assert tiny_model.block_size == 16 and tiny_model.vocab_size == 61


def test_weights_are_tied(tiny_model):
    assert tiny_model.lm_head.weight is tiny_model.tok_emb.weight
    assert "mask" not in " ".join(tiny_model.state_dict())  # the causal mask is not a weight


# ---------------------------------------------------------------- causality


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_future_tokens_never_change_earlier_logits(tiny_model, tiny_config, attention):
    """Change the token at position t: logits at positions < t stay bit-for-bit equal.

    Masked scores become exp(-inf) = 0 exactly, so the changed key/value adds
    exactly nothing to earlier rows: equality, not closeness, is the right check.
    """
    tiny_model.set_attention(attention)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, tiny_config.vocab_size, (2, tiny_config.block_size), generator=g)
    base = tiny_model(idx)
    for t in (1, 7, tiny_config.block_size - 1):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1 + torch.arange(2)) % tiny_config.vocab_size
        out = tiny_model(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"position {t} leaked backwards"
        assert not torch.allclose(out[:, t], base[:, t])  # ... and the change is visible at t


def test_gradient_of_early_logits_ignores_future_embeddings(tiny_model, tiny_config):
    """d logits[:, t] / d x[:, s] is exactly zero for every s > t (checked through autograd)."""
    idx = torch.randint(0, tiny_config.vocab_size, (1, 10))
    x = tiny_model.embed(idx).detach().requires_grad_(True)  # (1, T, C)
    h = x
    for block in tiny_model.blocks:
        h = block(h)
    logits = tiny_model.lm_head(tiny_model.ln_f(h))  # (1, T, V)
    t = 4
    logits[0, t].sum().backward()
    assert x.grad[0, t + 1:].abs().max().item() == 0.0
    assert x.grad[0, : t + 1].abs().max().item() > 0.0


# ---------------------------------------------------------------- the two attention paths


def test_explicit_equals_sdpa_forward_and_backward(tiny_model, tiny_config):
    """Same weights, both paths: logits within 1e-6 (float32 reordering only) and same grads."""
    idx = torch.randint(0, tiny_config.vocab_size, (3, tiny_config.block_size))
    targets = torch.randint(0, tiny_config.vocab_size, (3, tiny_config.block_size))
    results = {}
    for impl in ("explicit", "sdpa"):
        tiny_model.zero_grad()
        tiny_model.set_attention(impl)
        loss = tiny_model.loss(idx, targets)
        loss.backward()
        results[impl] = (tiny_model(idx).detach(),
                         {n: p.grad.clone() for n, p in tiny_model.named_parameters()})
    (a, ga), (b, gb) = results["explicit"], results["sdpa"]
    assert (a - b).abs().max().item() < 1e-6
    for name in ga:
        torch.testing.assert_close(ga[name], gb[name], rtol=1e-4, atol=1e-6)
    assert tiny_model.config.attention == "sdpa"


def test_attention_path_is_selectable_from_config(tiny_config):
    model = GPT(GPTConfig(**{**tiny_config.to_dict(), "attention": "sdpa"}))
    assert all(b.attn.impl == "sdpa" for b in model.blocks)
    with pytest.raises(ValueError, match="explicit"):
        model.set_attention("flash")


# ---------------------------------------------------------------- initialisation


def test_gpt2_initialisation():
    """N(0, 0.02) weights, zero biases, unit LayerNorms; residual projections 0.02/sqrt(2L)."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=512, block_size=64, n_layer=8, n_head=4, n_embd=128)
    model = GPT(config)
    block = model.blocks[3]
    # 128*384 = 49k samples: the sample std is within 1% of the true std with huge probability
    assert block.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert model.tok_emb.weight.std().item() == pytest.approx(0.02, rel=0.02)
    resid = 0.02 / math.sqrt(2 * config.n_layer)
    assert block.attn.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
    assert block.mlp.proj.weight.std().item() == pytest.approx(resid, rel=0.03)
    assert block.mlp.fc.bias.abs().max().item() == 0.0
    assert torch.equal(block.ln_1.weight, torch.ones(128))


def test_num_params_counts_by_hand(tiny_config):
    """vocab*C + T*C + L*(12C^2 + 13C) + 2C for GPT-2 with biases (head tied)."""
    V, T, L, C = (tiny_config.vocab_size, tiny_config.block_size, tiny_config.n_layer,
                  tiny_config.n_embd)
    per_block = (2 * C) + (3 * C * C + 3 * C) + (C * C + C) + (2 * C) + (4 * C * C + 4 * C) + (
        4 * C * C + C)
    assert per_block == 12 * C * C + 13 * C
    assert GPT(tiny_config).num_params() == V * C + T * C + L * per_block + 2 * C
    no_bias = GPT(GPTConfig(**{**tiny_config.to_dict(), "bias": False}))
    assert no_bias.num_params() == V * C + T * C + L * 12 * C * C + L * 2 * C + C


# ---------------------------------------------------------------- bad input


def test_sequence_longer_than_block_size_raises(tiny_model):
    idx = torch.zeros(1, 17, dtype=torch.long)
    with pytest.raises(ValueError, match=r"sequence length 17.*1\.\.16"):
        tiny_model(idx)


@pytest.mark.parametrize("bad", [-1, 61, 1000])
def test_token_ids_out_of_range_raise(tiny_model, bad):
    idx = torch.zeros(1, 4, dtype=torch.long)
    idx[0, 2] = bad
    with pytest.raises(ValueError, match=rf"token id {bad} is out of range.*0\.\.60"):
        tiny_model(idx)


def test_forward_traces_as_one_compiled_graph(tiny_model, tiny_config):
    """The input checks must not break ``torch.compile``'s graph (the id range check, which
    reads values, steps aside while compiling); the eager backend keeps this test fast."""
    compiled = torch.compile(tiny_model, backend="eager", fullgraph=True)
    idx = torch.randint(0, tiny_config.vocab_size, (2, 8))
    torch.testing.assert_close(compiled(idx), tiny_model(idx), atol=0, rtol=0)


def test_wrong_dtype_and_shape_raise(tiny_model):
    with pytest.raises(TypeError, match="integer token ids"):
        tiny_model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        tiny_model(torch.zeros(4, dtype=torch.long))


def test_invalid_configs_raise():
    with pytest.raises(ValueError, match=r"n_embd \(30\) must be divisible by n_head \(4\)"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="n_layer must be a positive int"):
        GPTConfig(n_layer=0)
    with pytest.raises(ValueError, match="dropout"):
        GPTConfig(dropout=1.0)
    with pytest.raises(ValueError, match="attention must be a registered attention kernel"):
        GPTConfig(attention="flash")
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        GPTConfig.preset("gpt5")
    with pytest.raises(ValueError, match="unknown GPTConfig fields"):
        GPTConfig.from_dict({"n_layers": 2})


def test_presets_are_valid_and_overridable():
    for name, cfg in PRESETS.items():
        assert cfg.n_embd % cfg.n_head == 0, name
    cfg = GPTConfig.preset("char-tiny", vocab_size=99)
    assert cfg.vocab_size == 99 and cfg.n_layer == PRESETS["char-tiny"].n_layer
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg


def test_pieces_can_be_swapped_by_subclassing(tiny_config):
    """Week04's route: a subclass replaces one piece and the rest of GPT is reused."""
    import torch.nn as nn

    from week01_transformer import MLP, Block

    class ReluMLP(MLP):
        def __init__(self, config, layer_idx=0):
            super().__init__(config, layer_idx)
            self.act = nn.ReLU()

    class ReluBlock(Block):
        mlp_cls = ReluMLP

    class ReluGPT(GPT):
        block_cls = ReluBlock

    model = ReluGPT(tiny_config)
    assert all(isinstance(b.mlp.act, nn.ReLU) for b in model.blocks)
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, tiny_config.vocab_size)
