"""MLA and continuous batching: ``LatentCache.join`` lets week01's ``Decoding.add`` put new
rows into a running MLA batch, each making exactly the tokens it makes alone (greedy), and
``LatentCache.trim`` drops the padding every row shares once the oldest rows leave."""

import pytest
import torch

from week01_transformer import DecodeConfig, Decoding, decode
from week08_sota.config import SotaConfig
from week08_sota.mla import LatentCache
from week08_sota.model import SotaModel

pytestmark = pytest.mark.core


@pytest.mark.parametrize("at", [1, 5])
def test_mla_rows_added_late_make_the_tokens_they_make_alone(at):
    torch.manual_seed(0)
    model = SotaModel(SotaConfig.preset("test", moe=False)).eval()
    assert isinstance(model.new_cache(1, 8), LatentCache)
    g = torch.Generator().manual_seed(2)
    V = model.config.vocab_size
    ps = [torch.randint(0, V, (n,), generator=g).tolist() for n in (6, 3, 2, 20)]
    cfg = DecodeConfig(max_new_tokens=10, temperature=0)
    ref = [decode(model, [p], cfg)[0].ids for p in ps]
    d = Decoding(model, ps[:2], cfg, continuous=True)
    for step, _ in enumerate(d):
        if step == at:  # one prompt shorter than the clock, one longer
            assert d.add(ps[2:]) == [2, 3]
    assert [r.ids for r in d.rows] == ref


def test_latent_caches_of_different_shapes_do_not_join():
    a, b = LatentCache(2, 1, 8, 4, 16), LatentCache(2, 1, 6, 4, 16)
    with pytest.raises(ValueError, match="different models"):
        a.join(b)


def test_mla_padding_every_row_shares_is_trimmed_when_rows_leave():
    """week01's trim test on MLA (its block is 32): a 14-token prompt with a 3-token limit beside a 3-token one,
    a 2-token prompt joining late; when the long row leaves, the clock goes back and every row
    still makes the tokens it makes alone."""
    torch.manual_seed(0)
    model = SotaModel(SotaConfig.preset("test", moe=False)).eval()
    g = torch.Generator().manual_seed(5)
    V = model.config.vocab_size
    ps = [torch.randint(0, V, (n,), generator=g).tolist() for n in (14, 3, 2)]
    ref = [decode(model, [p], DecodeConfig(max_new_tokens=16, temperature=0))[0].ids for p in ps]
    d = Decoding(model, ps[:2], DecodeConfig(max_new_tokens=16, temperature=0), continuous=True)
    d.limits[0] = 3
    clocks = []
    for step, _ in enumerate(d):
        if step == 1:
            d.add(ps[2:], max_new_tokens=12)
        clocks.append(d.cache.pos)
    assert d.rows[0].ids == ref[0][:3]
    assert d.rows[1].ids == ref[1] and d.rows[2].ids == ref[2][:12]
    assert min(clocks[3:]) < max(clocks[:3])  # the shared padding left: the clock went back


def test_latent_trim_moves_latents_left_and_keeps_positions():
    cache = LatentCache(1, 2, 3, 2, 8, pad=torch.tensor([3, 5]))
    cache.kv[0, :, :5] = torch.arange(50.0).view(2, 5, 5)
    cache.pos = 5
    before = cache.positions(1)
    kept = cache.kv[0, :, 3:5].clone()
    assert cache.trim(min_shift=4) == 0 and cache.pos == 5  # below the threshold: nothing
    assert cache.trim() == 3
    assert cache.pos == 2 and cache.pad.tolist() == [0, 2]
    assert torch.equal(cache.positions(1), before) and torch.equal(cache.kv[0, :, :2], kept)
