"""NF4 from scratch against the definition (normal quantiles) and against bitsandbytes on CPU."""

import statistics

import pytest
import torch

from week06_lora import (
    dequantize_nf4,
    dynamic_levels,
    fake_quantize,
    nf4_levels,
    pack_4bit,
    quantize_nf4,
    uniform_levels,
    unpack_4bit,
)
from week06_lora.nf4 import NF4_OFFSET, nf4_absmax

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


@pytest.fixture
def bnbf():
    pytest.importorskip("bitsandbytes")
    import bitsandbytes.functional as bnbf

    return bnbf


def bnb_dequantize(bnbf, qb, st):
    """bitsandbytes' dequantisation of ``(qb, st)``.

    Its compiled AVX-512 CPU kernel (0.48 to 0.50.2) scales row by row, which is wrong when
    a row is shorter than a block: shape (96, 32) with blocks of 64 comes back scaled by the
    wrong absmax on machines with AVX-512 (on AVX2 ones bitsandbytes takes another path).
    For those shapes the reference is bitsandbytes' own portable kernel
    (``backends.default``), the formula its C++ and CUDA kernels share.
    """
    if st.shape[-1] >= st.blocksize:
        return bnbf.dequantize_4bit(qb, st)
    from bitsandbytes.backends.default.ops import _dequantize_4bit_compute
    from bitsandbytes.backends.utils import _get_4bit_code

    absmax = st.absmax
    if st.nested:
        absmax = bnbf.dequantize_blockwise(st.absmax, st.state2) + st.offset
    return _dequantize_4bit_compute(qb.view(torch.uint8).reshape(-1), absmax.float(),
                                    _get_4bit_code(st.quant_type, qb.device), st.blocksize,
                                    st.shape, st.dtype)


def weight(shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 0.02


# ---------------------------------------------------------------- the levels


def test_levels_are_normal_quantiles_rescaled():
    """Positive levels: Phi^-1(p) for 8 p's evenly spaced from 0.9677 down to 0.5 (excluded),
    negative ones the same with 7 p's; then divided by the largest, Phi^-1(0.9677) ~ 1.848.
    The reference quantiles come from the standard library's NormalDist."""
    lv = nf4_levels()
    assert lv.shape == (16,) and lv.dtype == torch.float32
    assert torch.all(lv[1:] > lv[:-1])  # sorted, distinct
    assert lv[0] == -1 and lv[-1] == 1 and lv[7] == 0  # exact ends and an exact zero
    top = statistics.NormalDist().inv_cdf(NF4_OFFSET)
    assert top == pytest.approx(1.8481, abs=1e-4)
    pos = [statistics.NormalDist().inv_cdf(NF4_OFFSET - i * (NF4_OFFSET - 0.5) / 8) / top
           for i in range(8)]
    neg = [-statistics.NormalDist().inv_cdf(NF4_OFFSET - i * (NF4_OFFSET - 0.5) / 7) / top
           for i in range(7)]
    ref = torch.tensor(sorted(pos + neg + [0.0]))
    torch.testing.assert_close(lv, ref, atol=1e-6, rtol=0)  # float32 grid vs float64 reference


def test_levels_equal_bitsandbytes_table_exactly(bnbf):
    assert torch.equal(nf4_levels(), bnbf.get_4bit_type("nf4", device="cpu"))


def test_dynamic_levels_equal_bitsandbytes(bnbf):
    d = dynamic_levels()
    assert d.shape == (256,) and (d > 0).sum() == 128 and (d < 0).sum() == 127
    torch.testing.assert_close(-d[d < 0].flip(0), d[(d > 0) & (d < 1)], atol=0, rtol=0)  # symmetric
    assert (d.abs() < 1e-6).sum() == 3  # exponent 10^-6 holds one level per sign (0.55e-6), plus 0
    assert torch.equal(d, bnbf.create_dynamic_map(signed=True))
    assert d.max() == 1.0 and (d == 0).sum() == 1


# ---------------------------------------------------------------- packing


def test_packing_worked_example():
    """codes 1, 2, 15, 0, 7 -> bytes 0x12, 0xF0, 0x77 (first code in the high nibble; an odd
    count padded with 7, NF4's code for 0.0)."""
    packed = pack_4bit(torch.tensor([1, 2, 15, 0, 7]), pad_code=7)
    assert packed.tolist() == [0x12, 0xF0, 0x77]
    assert unpack_4bit(packed, 5).tolist() == [1, 2, 15, 0, 7]


def test_pack_round_trip_and_errors():
    codes = torch.randint(0, 16, (1001,), generator=torch.Generator().manual_seed(0)).to(torch.uint8)
    packed = pack_4bit(codes)
    assert packed.numel() == 501 and packed.dtype == torch.uint8
    assert torch.equal(unpack_4bit(packed, 1001), codes)
    with pytest.raises(ValueError, match="0..15"):
        pack_4bit(torch.tensor([16]))


# ---------------------------------------------------------------- against bitsandbytes


@pytest.mark.parametrize("shape", [(64, 128), (37, 53), (96, 32)])
def test_codes_and_dequantised_weights_equal_bitsandbytes(bnbf, shape):
    w = weight(shape)
    qb, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    q = quantize_nf4(w, blocksize=64, double_quant=False)
    assert torch.equal(q.packed, qb.view(-1))  # same codes, same nibble order, same padding
    assert torch.equal(q.absmax, st.absmax)
    assert torch.equal(dequantize_nf4(q), bnb_dequantize(bnbf, qb, st))  # bit-identical


@pytest.mark.parametrize("shape", [(64, 128), (96, 32)])
def test_double_quantised_equal_bitsandbytes(bnbf, shape):
    w = weight(shape, seed=1)
    qb, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    q = quantize_nf4(w, blocksize=64, double_quant=True)
    assert st.nested and st.state2.blocksize == 256
    assert torch.equal(q.packed, qb.view(-1))
    assert q.offset == pytest.approx(float(st.offset), abs=0)
    assert torch.equal(q.absmax, st.absmax)  # the 8-bit codes of the absmax
    assert torch.equal(q.absmax2, st.state2.absmax)
    assert torch.equal(dequantize_nf4(q), bnb_dequantize(bnbf, qb, st))


def test_a_value_on_a_midpoint_takes_the_lower_level_as_bitsandbytes(bnbf):
    """A scaled value exactly on the midpoint between NF4 levels i and i + 1 gets code i, the
    lower (more negative) level, for negative midpoints too: bitsandbytes' CPU quantize_4bit
    is ``torch.bucketize(scaled, midpoints)`` (``backends/default/ops.py``), and bucketize
    puts a value equal to a boundary in the bucket below it. One float32 step above the
    midpoint gets code i + 1, one below it code i.

    Each row of 64 (one block) is [+-1, the 15 midpoints, 15 one step above, 15 one step
    below, 18 zeros] times a power of two, so its absmax is that power of two, 1 / absmax is
    exact and the scaled values sit exactly on, above and below the midpoints. Codes: 15 or 0
    for +-1, i, i + 1, i for the three runs, 7 for the zeros."""
    table = bnbf.get_4bit_type("nf4", device="cpu")                    # (16,) sorted
    mid = (table[:-1] + table[1:]) / 2                                 # (15,) as bnb computes
    above = torch.nextafter(mid, torch.tensor(2.0))
    below = torch.nextafter(mid, torch.tensor(-2.0))
    runs = torch.cat([mid, above, below, torch.zeros(18)])             # (63,)
    w = torch.stack([torch.cat([torch.ones(1), runs]), torch.cat([-torch.ones(1), runs]),
                     torch.cat([torch.ones(1), runs]) * 0.25,
                     torch.cat([-torch.ones(1), runs]) * 8.0])          # (4, 64)
    q = quantize_nf4(w, blocksize=64, double_quant=False)
    codes = unpack_4bit(q.packed, w.numel()).view(4, 64).long()
    i = list(range(15))
    assert codes[:, 0].tolist() == [15, 0, 15, 0]
    for row in codes.tolist():
        assert row[1:16] == i                                          # on the midpoint: lower
        assert row[16:31] == [c + 1 for c in i]                        # a step above: upper
        assert row[31:46] == i                                         # a step below: lower
        assert row[46:] == [7] * 18                                    # 0.0
    qb, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    assert torch.equal(q.packed, qb.view(-1))
    assert torch.equal(q.absmax, st.absmax)


def test_double_quant_on_many_blocks_is_interchangeable_with_bitsandbytes(bnbf):
    """bitsandbytes' compiled CPU kernel for the 8-bit step searches the code table
    approximately: a few absmax values within ~1e-4 of a midpoint between two levels go to the
    farther level. So: (1) ours is always the nearest level and differs by at most one step, in
    under 1% of blocks; (2) each side dequantises the other's state exactly."""
    w = weight((300, 700), seed=2)
    qb, st = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    q = quantize_nf4(w)
    assert torch.equal(q.packed, qb.view(-1)) and torch.equal(q.absmax2, st.state2.absmax)
    diff = (q.absmax.int() - st.absmax.int()).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    levels = dynamic_levels()
    centred = torch.cat([a.view(-1) for a in bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4")[1]
                         .absmax.split(256)]) - st.offset
    scaled = centred / st.state2.absmax.repeat_interleave(256)[: centred.numel()]
    err_ours = (levels[q.absmax.long()] - scaled).abs()
    err_bnb = (levels[st.absmax.long()] - scaled).abs()
    assert torch.all(err_ours <= err_bnb + 1e-6)
    # bnb's state through our dequantiser, and ours through bnb's
    q_from_bnb = quantize_nf4(w)
    q_from_bnb.absmax = st.absmax.clone()
    assert torch.equal(dequantize_nf4(q_from_bnb), bnbf.dequantize_4bit(qb, st))
    st.absmax = q.absmax.clone()
    assert torch.equal(bnbf.dequantize_4bit(qb, st), dequantize_nf4(q))


def test_storage_cost_and_error():
    """Double-quantised NF4 costs 4 + 8/64 + 32/(64*256) = 4.127 bits per weight (+ the offset)."""
    w = weight((256, 1024), seed=3)
    q = quantize_nf4(w)
    assert q.bits_per_weight() == pytest.approx(4 + 8 / 64 + 32 / (64 * 256), abs=1e-3)
    assert quantize_nf4(w, double_quant=False).bits_per_weight() == pytest.approx(4.5)
    # double quantisation moves the absmax by at most ~1% of itself
    plain = nf4_absmax(quantize_nf4(w, double_quant=False))
    assert ((nf4_absmax(q) - plain).abs() / plain).max() < 0.01
    # on normal weights NF4's error is below a uniform 16-level grid's
    err_nf4 = (fake_quantize(w, nf4_levels()) - w).pow(2).mean()
    err_int4 = (fake_quantize(w, uniform_levels(4)) - w).pow(2).mean()
    assert err_nf4 < 0.9 * err_int4
    assert (dequantize_nf4(q) - w).abs().max() <= w.abs().max() * 0.2  # half the widest level gap


def test_bad_inputs():
    with pytest.raises(TypeError, match="floating-point"):
        quantize_nf4(torch.ones(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="offset"):
        nf4_levels(1.5)
