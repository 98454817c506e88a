"""The ViT: patches equal torch's unfold, positions are MAE's table, attention is bidirectional."""

import pytest
import torch
import torch.nn.functional as F

from track_jepa import ViTConfig, ViTEncoder, patchify, sincos_pos_embed, unpatchify

pytestmark = pytest.mark.core


def test_patchify_equals_unfold_and_inverts():
    """``F.unfold`` with kernel = stride = patch lists each patch's pixels as a column in
    row-major patch order, channel-major inside the patch: exactly ``patchify``'s rows."""
    x = torch.randn(3, 2, 8, 8)
    ref = F.unfold(x, kernel_size=2, stride=2).transpose(1, 2)   # (B, N, C*p*p)
    assert torch.equal(patchify(x, 2), ref)
    assert torch.equal(unpatchify(patchify(x, 2), 2, channels=2), x)


def test_sincos_positions_match_the_formula():
    """Row r, column c, dim D: channels [0, D/4) are sin(r w_k), [D/4, D/2) cos(r w_k), then the
    same for c, with w_k = 10000^(-k / (D/4)) (MAE's get_2d_sincos_pos_embed)."""
    D, g = 16, 3
    pos = sincos_pos_embed(D, g)
    r, c = 2, 1
    w = 10000.0 ** (-torch.arange(D // 4, dtype=torch.float64) / (D // 4))
    want = torch.cat([torch.sin(r * w), torch.cos(r * w), torch.sin(c * w), torch.cos(c * w)])
    torch.testing.assert_close(pos[r * g + c].double(), want, atol=1e-6, rtol=0)


def test_attention_is_bidirectional_and_keep_selects_patches():
    torch.manual_seed(0)
    enc = ViTEncoder(ViTConfig.preset("test")).eval()
    x = torch.randn(2, 1, 8, 8)
    y = x.clone()
    y[:, :, 6:, 6:] += 1.0                      # only the last patch changes
    a, b = enc(x), enc(y)                       # (B, 16, D)
    assert (a[:, 0] - b[:, 0]).abs().max() > 1e-4   # the first patch reads the last one
    keep = torch.tensor([[0, 5, 15], [1, 2, 3]])
    assert enc(x, keep).shape == (2, 3, enc.config.dim)
    # a kept subset is the same as running the encoder on those tokens alone
    tokens = enc.patch_embed(patchify(x, 2)) + enc.pos
    alone = enc.embed_tokens(tokens[0, [0, 5, 15]][None])
    torch.testing.assert_close(enc(x, keep)[0:1], alone)


def test_explicit_and_sdpa_kernels_agree():
    """The same weights through week01's two registered kernels (causal=False)."""
    torch.manual_seed(0)
    e1 = ViTEncoder(ViTConfig.preset("test", attention="explicit"))
    e2 = ViTEncoder(ViTConfig.preset("test", attention="sdpa"))
    e2.load_state_dict(e1.state_dict())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(e1(x), e2(x), atol=1e-5, rtol=1e-5)
