"""Collapse monitors: RankMe on matrices of known rank and spectrum, embedding std on
collapsed and isotropic embeddings."""

import math

import numpy as np
import pytest
import torch

from track_jepa import embedding_std, rankme, std_floor

pytestmark = pytest.mark.core


@pytest.mark.parametrize("k", [1, 3, 8])
def test_rankme_of_k_equal_singular_values_is_k(k):
    """Q (n, k) orthonormal times equal singular values times R (k, D) orthonormal rows: k
    singular values equal, the rest 0 -> p = 1/k each (+eps), entropy log k, RankMe k; and
    torch.linalg.matrix_rank agrees."""
    g = torch.Generator().manual_seed(k)
    q, _ = torch.linalg.qr(torch.randn(50, k, generator=g, dtype=torch.float64))
    r, _ = torch.linalg.qr(torch.randn(16, k, generator=g, dtype=torch.float64))
    z = 3.0 * q @ r.T                                         # (50, 16), rank k
    assert int(torch.linalg.matrix_rank(z)) == k
    assert rankme(z) == pytest.approx(k, rel=1e-4)


def test_rankme_equals_the_entropy_of_numpys_singular_values():
    """exp(entropy) of numpy.linalg.svd's normalised singular values (RankMe, Garrido et al.
    2023, eq. 1), on an anisotropic Gaussian: strictly between 1 and D."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 10)) * np.geomspace(1, 0.01, 10)
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + 1e-7
    want = math.exp(-(p * np.log(p)).sum())
    assert rankme(torch.tensor(z)) == pytest.approx(want, rel=1e-9)
    assert 1 < want < 10


def test_embedding_std_zero_when_collapsed_and_near_isotropic_value():
    """Unit vectors spread uniformly in D dimensions have per-dimension std 1/sqrt(D)."""
    z = torch.randn(4000, 64, generator=torch.Generator().manual_seed(0))
    assert embedding_std(z) == pytest.approx(1 / 8, rel=0.02)
    assert embedding_std(z[:1].repeat(100, 1)) < 1e-6 < std_floor(64)
    assert embedding_std(z) > std_floor(64)
