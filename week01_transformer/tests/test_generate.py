"""generate() and the top-k / top-p filters it samples through."""

from __future__ import annotations

import math

import pytest
import torch

from week01_transformer import filter_logits

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------- filters, worked by hand


def kept(logits: torch.Tensor) -> list[int]:
    return torch.isfinite(logits).nonzero().flatten().tolist()


# probabilities 0.05, 0.5, 0.1, 0.2, 0.15 in a shuffled order, so the filter must sort
PROBS = torch.tensor([0.05, 0.5, 0.1, 0.2, 0.15])
LOGITS = PROBS.log()


@pytest.mark.parametrize("k, want", [(1, [1]), (2, [1, 3]), (3, [1, 3, 4]), (5, [0, 1, 2, 3, 4]),
                                     (9, [0, 1, 2, 3, 4])])
def test_top_k_by_hand(k, want):
    """Ranked: id1 (0.5) > id3 (0.2) > id4 (0.15) > id2 (0.1) > id0 (0.05); k > V keeps all."""
    assert kept(filter_logits(LOGITS, top_k=k)) == want


@pytest.mark.parametrize("p, want", [(0.3, [1]), (0.6, [1, 3]), (0.8, [1, 3, 4]),
                                     (0.9, [1, 2, 3, 4]), (1.0, [0, 1, 2, 3, 4])])
def test_top_p_by_hand(p, want):
    """Cumulative mass in rank order: 0.5, 0.7, 0.85, 0.95, 1.0.

    The nucleus is the shortest prefix whose mass reaches p: p=0.3 needs only
    id1 (0.5); p=0.6 needs id1+id3 (0.7); p=0.8 adds id4 (0.85); p=0.9 adds
    id2 (0.95); p=1.0 keeps everything. (p values sit away from the cumulative
    sums, where float rounding could tip the choice.)
    """
    assert kept(filter_logits(LOGITS, top_p=p)) == want


def test_top_k_then_top_p():
    """top_k=3 renormalises to 0.5/0.85, 0.2/0.85, 0.15/0.85 = 0.588, 0.235, 0.176;
    top_p=0.7 then needs the first two (0.588 < 0.7 <= 0.824)."""
    assert kept(filter_logits(LOGITS, top_k=3, top_p=0.7)) == [1, 3]


def test_filters_match_hugging_face_warpers():
    """Random batches: the kept sets equal those of transformers' TopK/TopP warpers."""
    lp = pytest.importorskip("transformers.generation.logits_process")
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 50, generator=g) * 3
    for k in (1, 5, 17):
        want = lp.TopKLogitsWarper(top_k=k)(None, logits.clone())
        assert torch.equal(torch.isfinite(filter_logits(logits, top_k=k)), torch.isfinite(want))
    for p in (0.1, 0.5, 0.83, 0.99):
        want = lp.TopPLogitsWarper(top_p=p)(None, logits.clone())
        assert torch.equal(torch.isfinite(filter_logits(logits, top_p=p)), torch.isfinite(want))


def test_filter_arguments_are_checked():
    with pytest.raises(ValueError, match="top_k"):
        filter_logits(LOGITS, top_k=0)
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(LOGITS, top_p=1.5)


# ---------------------------------------------------------------- generate


def test_generation_is_deterministic_under_a_seed(tiny_model):
    prompt = torch.tensor([[1, 2, 3]])
    a = tiny_model.generate(prompt, 20, temperature=1.0, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    b = tiny_model.generate(prompt, 20, temperature=1.0, seed=7)
    c = tiny_model.generate(prompt, 20, temperature=1.0, seed=8)
    assert a.shape == (1, 23) and torch.equal(a[:, :3], prompt)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # 20 draws from ~61 tokens: a collision is vanishingly unlikely
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(tiny_model.generate(prompt, 10, generator=g1),
                       tiny_model.generate(prompt, 10, generator=g2))


def test_greedy_and_top_k_1_match_an_argmax_loop(tiny_model, tiny_config):
    """temperature=0 and top_k=1 both equal a hand-written argmax loop, past block_size too."""
    prompt = torch.tensor([[4, 5], [6, 7]])
    n = tiny_config.block_size + 5  # the context must slide
    idx = prompt
    with torch.no_grad():
        for _ in range(n):
            nxt = tiny_model(idx[:, -tiny_config.block_size:])[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat([idx, nxt], 1)
    assert torch.equal(tiny_model.generate(prompt, n, temperature=0.0), idx)
    assert torch.equal(tiny_model.generate(prompt, n, top_k=1, seed=3), idx)


def test_sampling_only_draws_from_the_filtered_set(tiny_model):
    """With top_k=3, each sampled token is among the 3 likeliest at that step."""
    out = tiny_model.generate(torch.tensor([[0]]), 12, top_k=3, seed=1)
    with torch.no_grad():
        logits = tiny_model(out[:, :-1])  # (1, T-1, V): step t predicts out[t+1]
    top3 = logits[0].topk(3, dim=-1).indices  # (T-1, 3)
    assert all(out[0, t + 1].item() in top3[t].tolist() for t in range(out.size(1) - 1))


def test_sampling_follows_the_model_distribution(tiny_model):
    """Empirical frequencies of one sampled token match softmax(logits) (chi-square style bound)."""
    prompt = torch.tensor([[3, 1, 4]]).repeat(2000, 1)
    out = tiny_model.generate(prompt, 1, seed=11)[:, -1]
    with torch.no_grad():
        p = torch.softmax(tiny_model(prompt[:1])[0, -1], -1)
    freq = torch.bincount(out, minlength=p.numel()).float() / out.numel()
    # each frequency has std sqrt(p(1-p)/2000) <= 0.0112; 5 std is a ~1e-6 false-alarm rate
    assert (freq - p).abs().max().item() < 5 * math.sqrt(0.25 / 2000)


def test_generate_arguments_are_checked(tiny_model):
    with pytest.raises(ValueError, match="temperature"):
        tiny_model.generate(torch.tensor([[1]]), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny_model.generate(torch.tensor([[1]]), -1)
    assert tiny_model.training is False  # generate restores the mode it found
