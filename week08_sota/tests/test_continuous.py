"""MLA and continuous batching: ``LatentCache.join`` lets week01's ``Decoding.add`` put new
rows into a running MLA batch, each making exactly the tokens it makes alone (greedy)."""

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
