"""Temporal memory (Hawkins & Ahmad 2016): a repeated sequence is learned to full
prediction, A B C D and X B C Y are told apart after training, learned transitions score
near 0 anomaly and novel ones near 1; ``activate_cells`` equals a per-column loop written
the slow, obvious way; the segment store grows and then recycles."""

import numpy as np
import pytest

from track_htm.anomaly import raw_anomaly
from track_htm.sdr import random_sdr
from track_htm.temporal_memory import TemporalMemory, TMConfig, activate_cells

pytestmark = pytest.mark.core


def _symbols(cfg, names, seed=0, w=20):
    rng = np.random.default_rng(seed)
    return {s: random_sdr(cfg.n_columns, w, rng) for s in names}


def _train(tm, syms, seqs, reps):
    for _ in range(reps):
        for s in seqs:
            tm.reset()
            for ch in s:
                tm.compute(syms[ch])


def _run(tm, syms, seq):
    """Raw anomaly per step and predicted columns after each step (no learning)."""
    tm.reset()
    raws, preds = [], []
    for ch in seq:
        raws.append(raw_anomaly(syms[ch], tm.predicted_columns()))
        tm.compute(syms[ch], learn=False)
        preds.append(tm.predicted_columns())
    return raws, preds


def test_repeated_sequence_is_learned_to_full_prediction():
    cfg = TMConfig.preset("tiny")
    syms = _symbols(cfg, "ABCDEFGH")
    tm = TemporalMemory(cfg)
    raws0, _ = _run(tm, syms, "ABCDEFGH")
    _train(tm, syms, ["ABCDEFGH"], 10)
    raws, preds = _run(tm, syms, "ABCDEFGH")
    assert raws0[1:] == [1.0] * 7                     # nothing known: every step is novel
    assert raws[1:] == [0.0] * 7                      # every step after the first predicted in full
    for nxt, p in zip("BCDEFGH", preds):
        assert np.array_equal(p, syms[nxt])            # and nothing else predicted
    assert not tm.bursting.any()


def test_high_order_sequences_are_told_apart():
    cfg = TMConfig.preset("tiny")
    syms = _symbols(cfg, "ABCDXY")
    tm = TemporalMemory(cfg)
    _train(tm, syms, ["ABCD", "XBCY"], 120)
    _, p1 = _run(tm, syms, "ABC")
    _, p2 = _run(tm, syms, "XBC")
    d, y = syms["D"], syms["Y"]
    assert (p1[-1] & d).sum() == 20 and (p1[-1] & y).sum() <= 2    # after A B C: D only
    assert (p2[-1] & y).sum() == 20 and (p2[-1] & d).sum() <= 2    # after X B C: Y only
    # B and C are represented by different cells in the two contexts
    tm.reset()
    cells = {}
    for seq in ("ABC", "XBC"):
        tm.reset()
        for ch in seq:
            tm.compute(syms[ch], learn=False)
        cells[seq] = tm.active_cells.copy()
    assert (cells["ABC"] & cells["XBC"]).sum() == 0


def test_learned_transitions_near_zero_novel_near_one():
    cfg = TMConfig.preset("tiny")
    syms = _symbols(cfg, "ABCDEZ")
    tm = TemporalMemory(cfg)
    _train(tm, syms, ["ABCDE"], 10)
    raws, _ = _run(tm, syms, "ABCDE")
    novel, _ = _run(tm, syms, "ABZDE")                 # Z never follows B
    assert max(raws[1:]) < 0.1
    assert novel[2] > 0.9
    assert novel[3] > 0.9                              # D after Z: a new context too


def _loop_reference(active_cols, active_segs, matching_segs, seg_cell, seg_potential, seg_count, cpc, rng):
    C = len(active_cols)
    active = np.zeros(C * cpc, dtype=bool)
    winners = np.zeros(C * cpc, dtype=bool)
    correct, best, fresh = [], [], []
    for seg in active_segs:
        if active_cols[seg_cell[seg] // cpc]:
            correct.append(seg)
            active[seg_cell[seg]] = winners[seg_cell[seg]] = True
    predicted = {seg_cell[s] // cpc for s in correct}
    bursting = np.zeros(C, dtype=bool)
    for col in range(C):
        if not active_cols[col] or col in predicted:
            continue
        bursting[col] = True
        active[col * cpc:(col + 1) * cpc] = True
        mine = [s for s in matching_segs if seg_cell[s] // cpc == col]
        if mine:
            b = max(mine, key=lambda s: (seg_potential[s], -s))
            best.append(b)
            winners[seg_cell[b]] = True
        else:
            fresh.append(col)
    noise = rng.random((len(fresh), cpc)) * 0.5
    grow = []
    for i, col in enumerate(fresh):
        use = [seg_count[col * cpc + j] + noise[i, j] for j in range(cpc)]
        grow.append(col * cpc + int(np.argmin(use)))
        winners[grow[-1]] = True
    return active, winners, np.array(correct + best, dtype=np.int64), np.array(grow, dtype=np.int64), bursting


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_activate_cells_equals_loop(seed):
    rng = np.random.default_rng(seed)
    C, cpc, S = 60, 4, 150
    seg_cell = rng.integers(0, C * cpc, S)
    seg_potential = rng.integers(0, 12, S)
    seg_count = np.bincount(seg_cell, minlength=C * cpc)
    active_cols = rng.random(C) < 0.3
    active_segs = np.sort(rng.choice(S, 25, replace=False))
    matching_segs = np.union1d(active_segs, rng.choice(S, 40, replace=False))
    got = activate_cells(active_cols, active_segs, matching_segs, seg_cell, seg_potential, seg_count,
                         cpc, np.random.default_rng(99))
    ref = _loop_reference(active_cols, active_segs, matching_segs, seg_cell, seg_potential, seg_count,
                          cpc, np.random.default_rng(99))
    for g, r in zip(got, ref):
        assert np.array_equal(g, r)


def test_segment_store_grows_then_recycles():
    cfg = TMConfig.preset("tiny", max_segments=2048)
    rng = np.random.default_rng(0)
    tm = TemporalMemory(cfg)
    for _ in range(400):                                # random inputs: every step bursts and grows
        tm.compute(random_sdr(cfg.n_columns, 20, rng))
    assert tm.n_segs == 2048 == len(tm.seg_cell)
    assert tm.seg_count.sum() == 2048                   # each reused segment changed owner once
    assert np.array_equal(np.bincount(tm.seg_cell, minlength=cfg.n_cells), tm.seg_count)
    assert tm.n_synapses > 0 and (tm.syn_pre[tm.syn_pre >= 0] < cfg.n_cells).all()
