"""Replay buffer: sampling properties of the two policies, mixing, and the on-disk copy."""

import random

import pytest

from week07_continual import ReplayBuffer

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_reservoir_keeps_every_example_with_equal_probability():
    """Vitter's algorithm R: after n offers each one is kept with probability capacity / n.

    1000 independent runs of a capacity-10 buffer over 50 examples: each example's inclusion
    count is Binomial(1000, 0.2), mean 200, sd sqrt(1000 * 0.2 * 0.8) = 12.6. A bound of
    +-60 (4.7 sd) makes a chance failure over 50 examples < 1e-4 (and the seeds are fixed).
    """
    counts = [0] * 50
    for run in range(1000):
        buf = ReplayBuffer(10, "reservoir", seed=run)
        for i in range(50):
            buf.add({"i": i}, "t")
        assert len(buf) == 10
        for ex in buf.examples():
            counts[ex["i"]] += 1
    assert all(abs(c - 200) <= 60 for c in counts), counts
    # early and late examples are treated alike (no recency bias): halves within 3%
    assert abs(sum(counts[:25]) - sum(counts[25:])) < 0.03 * 10000


def test_reservoir_share_follows_task_size_but_balanced_splits_evenly():
    res, bal = ReplayBuffer(30, "reservoir"), ReplayBuffer(30, "balanced")
    for buf in (res, bal):
        buf.add_many([{"i": i} for i in range(300)], "big")
        buf.add_many([{"i": i} for i in range(20)], "small")
        buf.add_many([{"i": i} for i in range(100)], "mid")
    assert bal.counts() == {"big": 10, "small": 10, "mid": 10}
    assert res.counts().get("small", 0) < 10  # 20 / 420 of 30 slots ~ 1.4 expected
    assert len(res) == len(bal) == 30


def test_balanced_quota_remainder_and_small_tasks():
    buf = ReplayBuffer(10, "balanced")
    buf.add_many([{"i": i} for i in range(50)], "a")
    assert buf.counts() == {"a": 10}
    buf.add_many([{"i": i} for i in range(2)], "b")  # b has only 2: a keeps its quota of 5
    buf.add_many([{"i": i} for i in range(50)], "c")
    assert buf.counts() == {"a": 4, "b": 2, "c": 3}  # quotas 4, 3, 3 (remainder to the first)
    assert len(buf) <= 10


def test_mix_replaces_the_given_fraction():
    buf = ReplayBuffer(5, "reservoir")
    batch = [{"new": j} for j in range(8)]
    assert buf.mix(batch, 0.25) == batch  # empty buffer: nothing to mix
    buf.add_many([{"old": j} for j in range(5)], "old")
    mixed = buf.mix(batch, 0.25, random.Random(0))
    assert len(mixed) == 8 and sum("old" in ex for ex in mixed) == 2
    with pytest.raises(ValueError, match="ratio"):
        buf.mix(batch, 1.0)


def test_save_load_round_trip_continues_identically(tmp_path):
    a = ReplayBuffer(8, "balanced", tmp_path / "buf", seed=3)
    a.add_many([{"i": i} for i in range(40)], "x")
    a.save()
    b = ReplayBuffer.load(tmp_path / "buf")
    assert b.examples() == a.examples() and b.counts() == a.counts()
    for buf in (a, b):  # same RNG state: the future is the same too
        buf.add_many([{"j": j} for j in range(40)], "y")
    assert a.examples() == b.examples()
    assert a.sample(5) == b.sample(5)
    assert not list((tmp_path / "buf").glob(".*tmp*"))  # no temp file left behind


def test_bad_input_raises(tmp_path):
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)
    with pytest.raises(ValueError, match="policy"):
        ReplayBuffer(5, "fifo")
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(5).sample(1)
    with pytest.raises(FileNotFoundError):
        ReplayBuffer.load(tmp_path)
