"""Multi-block masks: the paper's block scales and aspects, contexts that exclude the targets."""

import math
import random

import pytest
import torch

from track_jepa import MaskCollator, MaskConfig, block_shape, multiblock_mask, random_mask

pytestmark = pytest.mark.core


def _is_rectangle(idx, grid, h, w):
    rows = sorted({i // grid for i in idx})
    cols = sorted({i % grid for i in idx})
    return (len(idx) == h * w and rows == list(range(rows[0], rows[0] + h))
            and cols == list(range(cols[0], cols[0] + w)))


def test_target_blocks_have_the_paper_scale_and_aspect():
    """On the paper's 14 x 14 grid (196 patches), scale s in [0.15, 0.2] gives k = int(196 s)
    in [29, 39]; h = round(sqrt(k r)), w = round(sqrt(k / r)) with r in [0.75, 1.5]. Rounding
    moves each side by at most 0.5, so h*w = k +/- 0.5 (sqrt(kr) + sqrt(k/r)) + 0.25 lies in
    [29 - 6.4 + 0.25, 39 + 7.4 + 0.25] = [22.8, 46.7] patches, with a mean near
    196 * 0.175 = 34.3. The aspect h / w lies in [(sqrt(29 * .75) - .5) / (sqrt(29 / .75) + .5),
    its inverse] = [0.60, 1.67] widened by the rounding of k to [0.60, 1.97]."""
    rng = random.Random(0)
    cfg = MaskConfig()
    shapes = [block_shape(14, cfg.target_scale, cfg.target_aspect, rng) for _ in range(3000)]
    areas = [h * w for h, w in shapes]
    assert 23 <= min(areas) and max(areas) <= 46
    assert abs(sum(areas) / len(areas) - 34.3) < 2.0
    ratios = [h / w for h, w in shapes]
    assert 0.6 <= min(ratios) < 1 < max(ratios) <= 1.97
    ctx = [block_shape(14, cfg.context_scale, cfg.context_aspect, rng) for _ in range(500)]
    # context: s in [0.85, 1], r = 1 -> k in [166, 196], side round(sqrt(k)) in {13, 14}
    assert {h for h, w in ctx} <= {13, 14} and all(h == w for h, w in ctx)


@pytest.mark.parametrize("grid,min_keep", [(4, 2), (8, 4), (14, 10)])
def test_multiblock_targets_are_blocks_and_context_excludes_them(grid, min_keep):
    rng = random.Random(grid)
    cfg = MaskConfig(min_keep=min_keep)
    for _ in range(200):
        t_hw = block_shape(grid, cfg.target_scale, cfg.target_aspect, rng)
        c_hw = block_shape(grid, cfg.context_scale, cfg.context_aspect, rng)
        context, targets = multiblock_mask(grid, t_hw, c_hw, cfg, rng)
        assert len(targets) == cfg.num_targets
        for t in targets:
            assert t == sorted(t) and _is_rectangle(t, grid, *t_hw)
        covered = set().union(*map(set, targets))
        assert context == sorted(context) and len(context) >= min_keep
        assert not covered & set(context)                       # context excludes targets
        assert all(0 <= i < grid * grid for i in context)
        # the context is a c_hw block with the targets cut out: its bounding box fits c_hw
        rows = {i // grid for i in context}
        cols = {i % grid for i in context}
        assert max(rows) - min(rows) < c_hw[0] and max(cols) - min(cols) < c_hw[1]


def test_multiblock_spreads_over_positions():
    """Uniform placement: over many draws every patch of an 8x8 grid is a target sometimes."""
    rng = random.Random(1)
    cfg = MaskConfig(min_keep=4)
    seen = set()
    for _ in range(300):
        _, targets = multiblock_mask(8, (2, 2), (7, 7), cfg, rng)
        seen |= set().union(*map(set, targets))
    assert seen == set(range(64))


def test_impossible_context_raises():
    cfg = MaskConfig(num_targets=4, min_keep=16, max_tries=5)
    with pytest.raises(ValueError, match="no context"):
        multiblock_mask(4, (2, 2), (4, 4), cfg, random.Random(0))


def test_collator_stacks_to_the_shortest_and_resumes():
    col = MaskCollator(8, MaskConfig(min_keep=4), seed=3)
    examples = [(torch.randn(1, 8, 8), i % 10) for i in range(6)]
    state = col.state_dict()
    images, ctx, tgt = col(examples)
    assert images.shape == (6, 1, 8, 8) and ctx.dim() == 2 and tgt.shape[:2] == (6, 4)
    for b in range(6):
        assert not set(ctx[b].tolist()) & set(tgt[b].flatten().tolist())
    col.load_state_dict(state)
    _, ctx2, tgt2 = col(examples)
    assert torch.equal(ctx, ctx2) and torch.equal(tgt, tgt2)


def test_random_mask_partitions_the_patches():
    vis, msk = random_mask(16, 0.75, 5, torch.Generator().manual_seed(0))
    assert vis.shape == (5, 4) and msk.shape == (5, 12)
    for v, m in zip(vis.tolist(), msk.tolist()):
        assert sorted(v + m) == list(range(16))
    assert math.isclose(msk.shape[1] / 16, 0.75)
