"""Padding, best-fit packing and the resumable sampler, with worked examples and references."""

import itertools
import random

import pytest
import torch
import torch.nn.functional as F

from shared import (
    IGNORE_INDEX,
    SampledBatches,
    best_fit,
    load_checkpoint,
    pack_batch,
    pack_documents,
    pad_batch,
    save_checkpoint,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ----------------------------------------------------------------------------- padding


def test_pad_right_and_left_worked_example():
    """[5, 6, 7, 8] mask [0, 0, 1, 1] -> x [5, 6, 7], y [-1, 7, 8] (7 and 8 are trained);
    [1, 2] mask [0, 1] -> x [1], y [2], padded to T = 4 - 1 = 3 with 0 in x and -1 in y,
    after the tokens (right) or before them (left)."""
    seqs, masks = [[5, 6, 7, 8], [1, 2]], [[0, 0, 1, 1], [0, 1]]
    x, y = pad_batch(seqs, masks)
    assert x.tolist() == [[5, 6, 7], [1, 0, 0]]
    assert y.tolist() == [[-1, 7, 8], [2, -1, -1]]
    assert x.dtype == y.dtype == torch.long
    x, y = pad_batch(seqs, masks, side="left", pad_id=9)
    assert x.tolist() == [[5, 6, 7], [9, 9, 1]]
    assert y.tolist() == [[-1, 7, 8], [-1, -1, 2]]
    assert IGNORE_INDEX == -1


def test_pad_without_masks_is_plain_language_modelling():
    """No mask: every token but the first is a target, so y is x shifted by one."""
    x, y = pad_batch([[3, 4, 5], [6, 7]])
    assert x.tolist() == [[3, 4], [6, 0]]
    assert y.tolist() == [[4, 5], [7, -1]]


def test_max_len_cuts_and_pad_to_widens():
    """max_len=2 keeps the first 3 tokens ([5, 6, 7]); pad_to=5 pads every row to 5 columns."""
    x, y = pad_batch([[5, 6, 7, 8, 9]], max_len=2)
    assert x.tolist() == [[5, 6]] and y.tolist() == [[6, 7]]
    x, y = pad_batch([[5, 6, 7]], pad_to=5)
    assert x.tolist() == [[5, 6, 0, 0, 0]] and y.tolist() == [[6, 7, -1, -1, -1]]


class CumulativeMeanLM(torch.nn.Module):
    """A causal model: the logits at t depend on the tokens 0..t only (a running mean)."""

    def __init__(self, vocab=12, dim=8):
        super().__init__()
        self.emb, self.out = torch.nn.Embedding(vocab, dim), torch.nn.Linear(dim, vocab)

    def forward(self, idx):
        h = self.emb(idx).cumsum(1) / torch.arange(1, idx.size(1) + 1).view(1, -1, 1)
        return self.out(h)  # (B, T, V)


def test_right_padded_loss_equals_each_sequence_alone():
    """The reference: each sequence run on its own (no padding), its trained tokens' summed
    cross-entropy; the padded batch with ignore_index=IGNORE_INDEX gives the same total."""
    torch.manual_seed(0)
    model = CumulativeMeanLM()
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, 12, (n,), generator=g).tolist() for n in (7, 3, 5)]
    masks = [[0, 0, 1, 1, 0, 1, 1], [0, 1, 1], [1, 0, 1, 1, 1]]
    x, y = pad_batch(seqs, masks)
    logits = model(x)
    got = F.cross_entropy(logits.reshape(-1, 12), y.reshape(-1), ignore_index=IGNORE_INDEX,
                          reduction="sum")
    want = 0.0
    for ids, m in zip(seqs, masks):
        one = model(torch.tensor([ids[:-1]]))[0]                      # (n - 1, V)
        nats = F.cross_entropy(one, torch.tensor(ids[1:]), reduction="none")
        want = want + nats[torch.tensor(m[1:], dtype=torch.bool)].sum()
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("kwargs, match", [
    (dict(seqs=[[1]]), "sequence 0 has 1 token"),
    (dict(seqs=[[1, 2], [3, 4]], masks=[[0, 1]]), "2 sequences but 1 masks"),
    (dict(seqs=[[1, 2, 3]], masks=[[0, 1]]), "3 tokens but its mask 2"),
    (dict(seqs=[[1, 2]], side="middle"), "side must be one of"),
    (dict(seqs=[[1, 2, 3]], pad_to=1), "pad_to=1 is shorter than the longest row"),
    (dict(seqs=[]), "no sequences"),
])
def test_pad_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        pad_batch(**kwargs)


# ----------------------------------------------------------------------------- packing


def test_best_fit_worked_example_differs_from_first_fit():
    """Capacity 10, lengths [1, 8, 3, 6] (see the docstring): 8 -> bin 0 (room 2),
    6 -> bin 1 (room 4), 3 -> bin 1 (room 1), 1 -> bin 1, the tighter fit (first fit
    would take bin 0)."""
    assert best_fit([1, 8, 3, 6], 10) == [[1], [3, 2, 0]]
    assert best_fit([], 4) == []
    with pytest.raises(ValueError, match="item 1 has length 11 > capacity 10"):
        best_fit([3, 11], 10)


def _optimal_bins(lengths, capacity):
    """The fewest bins, by trying every assignment of items to bins (tiny inputs only)."""
    n = len(lengths)
    for k in range(1, n + 1):
        for assign in itertools.product(range(k), repeat=n):
            loads = [0] * k
            for i, b in enumerate(assign):
                loads[b] += lengths[i]
            if max(loads) <= capacity:
                return k
    return n


def test_best_fit_is_valid_and_near_optimal_against_brute_force():
    """Every item placed once, no bin over capacity, and at most 11/9 OPT + 6/9 bins
    (the tight bound for first/best-fit decreasing) where OPT comes from exhaustive search."""
    rng = random.Random(0)
    for _ in range(40):
        lengths = [rng.randint(1, 9) for _ in range(rng.randint(1, 6))]
        bins = best_fit(lengths, 10)
        assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
        assert len(bins) <= 11 / 9 * _optimal_bins(lengths, 10) + 6 / 9


def test_pack_batch_worked_example():
    """block_size 4: rows of up to 5 tokens. Lengths 3, 2, 4 -> best fit: [c] (4 tokens,
    room 1), then a (3) opens a row (room 2), b (2) fits only there: rows c and a+b.
    Row a+b = [1, 2, 3, 4, 5]: x [1, 2, 3, 4], y [2, 3, -1, 5] (4 is b's first token,
    untrained by the default mask); row c = [6, 7, 8, 9] padded: x [6, 7, 8, 0]."""
    a, b, c = [1, 2, 3], [4, 5], [6, 7, 8, 9]
    x, y = pack_batch([a, b, c], 4)
    assert x.tolist() == [[6, 7, 8, 0], [1, 2, 3, 4]]
    assert y.tolist() == [[7, 8, 9, -1], [2, 3, -1, 5]]
    with pytest.raises(ValueError, match="length 6 > capacity 5"):
        pack_batch([[1] * 6], 4)


def test_pack_documents_worked_example():
    """The same packing as pack_batch's example, plus labels: row c is document 0 then a
    padding column (-1); row a+b is [0 0 0 1] (x holds a's 3 tokens and b's first). With
    masks that train every token, b's first token 4 is still no target of a's last (3):
    it lies in another document (pack_batch would train that pair)."""
    a, b, c = [1, 2, 3], [4, 5], [6, 7, 8, 9]
    x, y, seg = pack_documents([a, b, c], 4)
    assert x.tolist() == [[6, 7, 8, 0], [1, 2, 3, 4]]
    assert y.tolist() == [[7, 8, 9, -1], [2, 3, -1, 5]]
    assert seg.tolist() == [[0, 0, 0, -1], [0, 0, 0, 1]]
    ones = [[1] * len(s) for s in (a, b, c)]
    assert pack_batch([a, b, c], 4, ones)[1].tolist()[1] == [2, 3, 4, 5]
    assert pack_documents([a, b, c], 4, ones)[1].tolist()[1] == [2, 3, -1, 5]


# ----------------------------------------------------------------------------- sampling


def test_sampled_batches_draw_like_random_and_resume_exactly(tmp_path):
    """With replacement each draw is ``rng.randrange(n)`` of random.Random(seed); the state
    goes through a real checkpoint file and the restored loader continues identically."""
    examples = [f"ex{i}" for i in range(7)]
    loader = SampledBatches(examples, 3, collate=list, seed=5)
    ref = random.Random(5)
    assert loader.next_batch() == [examples[ref.randrange(7)] for _ in range(3)]
    save_checkpoint(tmp_path / "s.safetensors", {"loader": loader.state_dict()})
    ahead = [loader.next_batch() for _ in range(4)]
    again = SampledBatches(examples, 3, collate=list, seed=99)
    again.load_state_dict(load_checkpoint(tmp_path / "s.safetensors")[0]["loader"])
    assert [again.next_batch() for _ in range(4)] == ahead
    assert again.batches == loader.batches == 5


def test_sampled_batches_without_replacement_and_shared_rng():
    """replace=False: random.sample, distinct examples, at most n; rng= shares a generator."""
    rng = random.Random(3)
    loader = SampledBatches(list(range(5)), 8, collate=sorted, rng=rng, replace=False)
    assert loader.next_batch() == [0, 1, 2, 3, 4]
    ref = random.Random(3)
    ref.sample(list(range(5)), 5)
    assert rng.random() == ref.random()                 # the loader drew from the caller's rng
    x, y = SampledBatches([[1, 2, 3], [4, 5]], 2, collate=pad_batch, replace=False).next_batch()
    assert sorted(x.tolist()) == [[1, 2], [4, 0]] and sorted(y.tolist()) == [[2, 3], [5, -1]]


def test_sampled_batches_reject_bad_input():
    with pytest.raises(ValueError, match="at least one example"):
        SampledBatches([], 2, list)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SampledBatches([1], 0, list)
    with pytest.raises(TypeError, match="collate must be a function"):
        SampledBatches([1], 1, None)
