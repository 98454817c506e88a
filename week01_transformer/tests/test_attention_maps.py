"""attention_maps returns the weights the model really uses; plot_attention draws them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from week01_transformer import attention_maps, plot_attention  # noqa: E402

pytestmark = pytest.mark.stretch  # this file's tier (README: "Tiers")


def test_maps_shape_rows_and_mask(tiny_model, tiny_config):
    idx = torch.randint(0, tiny_config.vocab_size, (2, 9),
                        generator=torch.Generator().manual_seed(0))
    maps = attention_maps(tiny_model, idx)
    L, H = tiny_config.n_layer, tiny_config.n_head
    assert maps.shape == (L, 2, H, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(L, 2, H, 9))  # softmax rows
    upper = torch.triu(torch.ones(9, 9, dtype=torch.bool), diagonal=1)
    assert maps[..., upper].abs().max().item() == 0.0  # nothing attends to the future


def test_maps_reproduce_every_layers_attention_output(tiny_model, tiny_config):
    """Recompute each layer's attention output as maps @ v -> merge heads -> proj: it must equal
    what the (SDPA) forward pass computes, so the maps are the weights actually used."""
    tiny_model.set_attention("sdpa")
    idx = torch.randint(0, tiny_config.vocab_size, (2, 12),
                        generator=torch.Generator().manual_seed(1))
    maps = attention_maps(tiny_model, idx)  # (L, B, H, T, T)
    with torch.no_grad():
        x = tiny_model.embed(idx)
        for layer, block in enumerate(tiny_model.blocks):
            h = block.ln_1(x)
            _, _, v = block.attn.split_heads(h)  # (B, H, T, hd)
            y = (maps[layer] @ v).transpose(1, 2).reshape(x.shape)  # (B, T, C)
            torch.testing.assert_close(block.attn.proj(y), block.attn(h), rtol=1e-5, atol=1e-6)
            x = block(x)


def test_plot_attention(tiny_model, tmp_path):
    idx = torch.tensor([[1, 2, 3, 4, 5]])
    maps = attention_maps(tiny_model, idx)
    fig = plot_attention(maps, tokens=list("abcde"), layer=1, ncols=2)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 4  # one panel per head
    assert visible[0].get_title() == "layer 1 head 0"
    fig.savefig(tmp_path / "maps.png")
    assert (tmp_path / "maps.png").stat().st_size > 0
    with pytest.raises(ValueError, match="layer must be in 0..1"):
        plot_attention(maps, layer=2)
    with pytest.raises(ValueError, match="5 token labels|got 3 token labels"):
        plot_attention(maps, tokens=list("abc"))
