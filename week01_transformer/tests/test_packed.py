"""Packed rows (``forward(idx, segments=...)``): each document as if it were alone.

Week09's SFT packs several conversations into one row; the block-diagonal mask
and the per-document positions make a packed row give every document exactly
the logits it gets on its own, so nothing leaks from one conversation into the next.
"""

import pytest
import torch

from week01_transformer import GPT, GPTConfig
from week01_transformer.cache import attention_mask, segment_positions

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _packed(lengths, V, pad=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(0, V, (n,), generator=g) for n in lengths]
    row = torch.cat(docs + [torch.zeros(pad, dtype=torch.long)])[None]  # (1, T)
    seg = torch.tensor([i for i, n in enumerate(lengths) for _ in range(n)] + [-1] * pad)[None]
    return docs, row, seg


def test_segment_positions_restart_at_each_document():
    """Runs [0 0 0][1 1][-1]: positions 0 1 2, 0 1, 0."""
    seg = torch.tensor([[0, 0, 0, 1, 1, -1], [5, 5, 5, 5, 5, 5]])
    assert segment_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 4, 5]]


def test_mask_is_block_diagonal_and_causal():
    seg = torch.tensor([[0, 0, 1, 1, 1]])
    mask, causal = attention_mask(0, 5, segments=seg)
    assert not causal and mask.shape == (1, 1, 5, 5)
    want = torch.zeros(5, 5, dtype=torch.bool)
    want[:2, :2] = torch.ones(2, 2, dtype=torch.bool).tril()
    want[2:, 2:] = torch.ones(3, 3, dtype=torch.bool).tril()
    assert torch.equal(mask[0, 0], want)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_each_packed_document_gets_its_own_logits(attention):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32,
                          attention=attention)).eval()
    docs, row, seg = _packed([5, 3, 9], 40, pad=3)
    out = model(row, segments=seg)  # (1, T, V)
    start = 0
    for d in docs:
        alone = model(d[None])[0]
        torch.testing.assert_close(out[0, start:start + len(d)], alone, atol=1e-5, rtol=1e-5)
        start += len(d)
    # without the segments the later documents do see the earlier ones
    assert not torch.allclose(model(row)[0, 5:8], model(docs[1][None])[0], atol=1e-3)


def test_gradients_do_not_cross_documents():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, block_size=32, n_layer=2, n_head=2, n_embd=32))
    _, row, seg = _packed([4, 6], 40)
    emb = model.tok_emb(row).detach().requires_grad_(True)  # probe: d(doc 1's logits)/d(doc 0)
    x = emb + model.pos_emb(segment_positions(seg))
    ctx = model.context(row.size(1), segments=seg)
    for block in model.blocks:
        x = block(x, ctx)
    model.head(x)[0, 4:].sum().backward()
    assert emb.grad[0, :4].abs().max() == 0 and emb.grad[0, 4:].abs().max() > 0


def test_bad_segments_are_refused():
    model = GPT(GPTConfig(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16))
    idx = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="segments shape"):
        model(idx, segments=torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="cache"):
        model(idx, cache=model.new_cache(2), segments=torch.zeros(2, 5, dtype=torch.long))
