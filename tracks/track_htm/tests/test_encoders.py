"""Encoders and SDR helpers: fixed sparsity, overlap that falls with distance, wrap-around
for cyclic values, private bits per category, and the date's parts."""

import numpy as np
import pytest

from track_htm.encoders import CategoryEncoder, CyclicEncoder, DateEncoder, ScalarEncoder
from track_htm.sdr import add_noise, overlap, random_sdr, sparsity, to_dense, to_indices

pytestmark = pytest.mark.core


def test_scalar_overlap_falls_with_distance_and_w_is_fixed():
    enc = ScalarEncoder(n=100, w=11, minval=0, maxval=89)     # 90 buckets: one per unit
    x = enc.encode_many(np.arange(0, 90))
    assert (x.sum(1) == 11).all()
    ov = [overlap(x[40], x[40 + d]) for d in range(0, 13)]
    assert ov == [11 - d for d in range(0, 12)] + [0]          # a run of 11 shifted by d shares 11 - d
    assert overlap(enc.encode(-5), enc.encode(0)) == 11        # clipped
    assert np.array_equal(enc.encode(3.0), enc.encode(3.0))


def test_cyclic_wraps_round():
    enc = CyclicEncoder(n=24, w=5, period=24.0)
    assert np.array_equal(enc.encode(0.0), enc.encode(24.0))
    assert overlap(enc.encode(23.0), enc.encode(0.0)) == 4     # neighbours across midnight
    assert overlap(enc.encode(0.0), enc.encode(12.0)) == 0


def test_category_bits_are_private_and_unknown_raises():
    enc = CategoryEncoder(["a", "b", "c"], w=7)
    x = enc.encode_many(["a", "b", "c", "a"])
    assert x.shape == (4, 21) and (x.sum(1) == 7).all()
    assert overlap(x[0], x[1]) == 0 and np.array_equal(x[0], x[3])
    with pytest.raises(KeyError, match="unknown category 'z'"):
        enc.encode("z")


def test_date_encoder_parts():
    enc = DateEncoder()
    mon9 = np.datetime64("2026-11-30T09:00:00")                # a Monday
    sat9 = np.datetime64("2026-12-05T09:00:00")
    mon10 = np.datetime64("2026-11-30T10:00:00")
    a, b, c = enc.encode(mon9), enc.encode(sat9), enc.encode(mon10)
    tod, dow = slice(0, enc.tod_n), slice(enc.tod_n, enc.tod_n + enc.dow_n)
    wk = slice(enc.tod_n + enc.dow_n, enc.n)
    assert np.array_equal(a[tod], b[tod])                      # same time of day
    assert overlap(a[dow], b[dow]) == 0                        # Monday vs Saturday
    assert overlap(a[wk], b[wk]) == 0 and np.array_equal(a[wk], c[wk])
    assert 0 < overlap(a[tod], c[tod]) < enc.tod_w


def test_sdr_helpers():
    rng = np.random.default_rng(0)
    s = random_sdr(1000, 40, rng)
    assert s.sum() == 40 and sparsity(s) == 0.04
    assert np.array_equal(to_dense(to_indices(s), 1000), s)
    noisy = add_noise(s, 0.25, rng)
    assert noisy.sum() == 40 and overlap(s, noisy) == 30
