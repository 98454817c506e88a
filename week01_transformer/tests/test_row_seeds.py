"""Per-row generators: ``Decoding(..., seeds=[...])`` gives each row its own generator, so a
sampled row makes the same tokens alone, beside other rows, or joined late; one generator for
the batch (the default) does not promise that."""

import pytest
import torch

from week01_transformer import GPT, DecodeConfig, Decoding, GPTConfig, decode
from week01_transformer.decoding import sample_next

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

SAMPLED = dict(max_new_tokens=20, temperature=1.0, top_k=40)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=61, block_size=64, n_layer=2, n_head=4, n_embd=32)).eval()


def prompts(*lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 61, (n,), generator=g).tolist() for n in lengths]


def test_a_seeded_row_makes_the_same_tokens_alone_beside_others_and_joined_late(model):
    p, a, b, c = prompts(5, 9, 3, 12, seed=1)
    # alone: the old path (one generator for a batch of one, seeded with cfg.seed)
    ref = decode(model, [p], DecodeConfig(**SAMPLED, seed=7))[0].ids
    assert decode(model, [p], DecodeConfig(**SAMPLED), seeds=[7])[0].ids == ref
    beside = decode(model, [a, p, b], DecodeConfig(**SAMPLED), seeds=[1, 7, 2])
    assert beside[1].ids == ref
    # a neighbour that stops early leaves the batch; the row does not notice
    stop = beside[0].ids[2]
    short = decode(model, [a, p], DecodeConfig(**SAMPLED, stop_tokens=(stop,)), seeds=[1, 7])
    assert len(short[0].ids) < 20 and short[1].ids[:len(ref)] == ref[:len(short[1].ids)]
    # joined at step 3 of a running batch
    d = Decoding(model, [c, a], DecodeConfig(**SAMPLED), seeds=[3, 1], continuous=True)
    for step, _ in enumerate(d):
        if step == 3:
            (row,) = d.add([p], seeds=[7])
    assert d.rows[row].ids == ref
    assert d.rows[1].ids == beside[0].ids  # a, seed 1, beside c here and beside p, b there
    # one generator for the batch: the same prompt and seed draw differently beside others
    shared = decode(model, [a, p, b], DecodeConfig(**SAMPLED, seed=7))
    assert shared[1].ids != ref


def test_seeds_choose_the_draws_and_none_means_cfg_seed(model):
    (p,) = prompts(6, seed=2)
    rows = decode(model, [p, p, p], DecodeConfig(**SAMPLED, seed=5), seeds=[5, None, 6])
    assert rows[0].ids == rows[1].ids  # None: cfg.seed
    assert rows[0].ids != rows[2].ids
    d = Decoding(model, [p], DecodeConfig(**SAMPLED, seed=5), seeds=[0], continuous=True)
    new = d.add([p])  # no seeds: cfg.seed
    d.run()
    assert d.rows[new[0]].ids == rows[0].ids


def test_greedy_rows_ignore_their_seeds(model):
    a, b = prompts(4, 8, seed=3)
    cfg = DecodeConfig(max_new_tokens=10, temperature=0)
    assert [r.ids for r in decode(model, [a, b], cfg, seeds=[1, 2])] == \
        [r.ids for r in decode(model, [a, b], cfg)]


def test_seeds_are_checked(model):
    a, b = prompts(4, 8, seed=3)
    with pytest.raises(ValueError, match="not both"):
        Decoding(model, [a], DecodeConfig(**SAMPLED), seeds=[1], generator=torch.Generator())
    with pytest.raises(ValueError, match="one int .* per prompt: 2 prompt"):
        Decoding(model, [a, b], DecodeConfig(**SAMPLED), seeds=[1])
    with pytest.raises(ValueError, match="one int"):
        Decoding(model, [a], DecodeConfig(**SAMPLED), seeds=["1"])
    d = Decoding(model, [a], DecodeConfig(**SAMPLED), continuous=True)
    with pytest.raises(ValueError, match="build it with seeds"):
        d.add([b], seeds=[1])
    with pytest.raises(ValueError, match="2 generators for 1 rows"):
        sample_next(torch.zeros(1, 5), 1.0, None, None, [torch.Generator()] * 2)
