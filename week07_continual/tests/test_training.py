"""Per-task training and the tiny base, both through week03's Trainer.

The reference for ``train_task`` is the loop written out by hand with
``torch.optim.AdamW`` and ``torch.nn.utils.clip_grad_norm_``: the same batches
(the same ``random.Random`` draws, replayed rows at the end of each batch),
cross-entropy plus the EWC penalty ``lam / 2 * sum F (theta - theta*)^2``.
"""

import random

import pytest
import torch
import torch.nn.functional as F

from shared import load_checkpoint, load_model
from week07_continual import EWC, ReplayBuffer, TrainConfig, collate, train_task
from week07_continual.learner import TaskBatches

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


class ListLogger:
    def __init__(self):
        self.rows = []

    def log(self, step, **row):
        self.rows.append({"step": step, **row})


def test_train_task_with_ewc_and_replay_equals_a_hand_written_torch_loop(tiny_llama,
                                                                         two_task_stream):
    """Task B with an EWC anchor (Fisher = 1 everywhere, lambda 0.5) and replayed A rows:
    12 steps through the Trainer equal the same 12 steps with torch.optim.AdamW (1e-5),
    and ewc_penalty is logged at steps step0 + 10, step0 + 12."""
    task_a, task_b = two_task_stream.tasks
    ref = type(tiny_llama)(tiny_llama.config)
    ref.load_state_dict(tiny_llama.state_dict())
    fisher = {n: torch.ones_like(p) for n, p in tiny_llama.named_parameters()}
    ewc, ewc_ref = EWC(0.5), EWC(0.5)
    ewc.consolidate(tiny_llama, None, fisher=fisher)
    ewc_ref.consolidate(ref, None, fisher=fisher)
    with torch.no_grad():                      # move away from the anchor so the penalty is > 0
        for p in (*tiny_llama.parameters(), *ref.parameters()):
            p.add_(0.01)
    buffers = []
    for _ in range(2):
        buf = ReplayBuffer(8, "balanced", seed=0)
        buf.add_many(task_a.train, "A")
        buffers.append(buf)
    cfg = TrainConfig(steps_per_task=12, batch_size=8, lr=1e-2, grad_clip=0.5)
    log = ListLogger()
    assert train_task(tiny_llama, task_b, cfg, random.Random(3), ewc, buffers[0], 0.25,
                      logger=log, step0=100, progress=False) == 112
    assert [r["step"] for r in log.rows] == [110, 112]
    assert all(r["ewc_penalty"] > 0 and r["loss"] > r["lm_loss"] for r in log.rows)

    rng = random.Random(3)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2, betas=(0.9, 0.999), weight_decay=0.0)
    for _ in range(12):
        batch = [task_b.train[rng.randrange(len(task_b.train))] for _ in range(8)]
        batch = batch[:6] + buffers[1].sample(2, rng)
        x, y = collate(batch)
        loss = F.cross_entropy(ref(x).flatten(0, 1), y.flatten(), ignore_index=-1)
        loss = loss + ewc_ref.penalty(ref)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
        opt.step()
    for (n, a), b in zip(tiny_llama.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)


def test_task_batches_mix_replay_into_the_last_rows(two_task_stream):
    """batch 8, ratio 0.25: rows 0-5 from the task, rows 6-7 from the buffer (task A's)."""
    task_a, task_b = two_task_stream.tasks
    buf = ReplayBuffer(4, "balanced", seed=0)
    buf.add_many(task_a.train, "A")
    loader = TaskBatches(task_b, TrainConfig(batch_size=8), random.Random(0), buf, 0.25)
    drawn = loader.sample()
    assert all(ex in task_b.train for ex in drawn[:6])
    assert all(ex in task_a.train for ex in drawn[6:])
    x, y = loader.next_batch()
    assert x.shape == (8, 7) and (y == -1).any()


def test_tiny_base_trains_through_the_trainer_and_load_model_rebuilds_it(tmp_path):
    """A 4-step tiny base: saved by shared.save_model with the model's import path (no
    hand-written meta), rebuilt by shared.load_model with the same weights; load_base('tiny')
    reuses the cached files."""
    from week07_continual.models import TinyBaseConfig, load_base, train_tiny_base
    cfg = TinyBaseConfig(vocab_size=256 + 9 + 20, tokenizer_chars=5_000, n_layer=1, n_embd=32,
                         head_dim=16, block_size=32, steps=4, batch_size=4, seq_len=16)
    path = train_tiny_base(tmp_path / "week07-tiny-base", cfg, progress=False)
    state, meta = load_checkpoint(path)
    assert meta["model"]["class"].endswith(":Llama") and meta["model"]["config"]["n_layer"] == 1
    assert meta["tokenizer"] == "tokenizer.json" and meta["final_loss"] > 0
    model = load_model(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    again, tok, about = load_base("tiny", root=tmp_path, progress=False)
    assert "tiny base" in about and tok.vocab_size == cfg.vocab_size
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)


def test_train_task_writes_no_files_and_needs_trainable_parameters(tiny_llama, two_task_stream,
                                                                   tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_RUNS", str(tmp_path / "runs"))
    train_task(tiny_llama, two_task_stream.tasks[0], TrainConfig(steps_per_task=2),
               random.Random(0), progress=False)
    assert not (tmp_path / "runs").exists()
    for p in tiny_llama.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_task(tiny_llama, two_task_stream.tasks[0], TrainConfig(), random.Random(0))
