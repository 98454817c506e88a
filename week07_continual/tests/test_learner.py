"""End to end on a tiny model: naive fine-tuning forgets, LoRA-per-task with the router does not."""

import pytest
import torch

from week07_continual import ReplayBuffer, StrategyConfig, TrainConfig, run_stream

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

CFG = TrainConfig(steps_per_task=60, batch_size=16, lr=1e-2, lora_lr=2e-2, router_examples=12)


def test_naive_forgets_and_lora_per_task_does_not(pretrained, two_task_stream, tmp_path):
    naive = run_stream(pretrained, two_task_stream, "naive", CFG, tmp_path / "n", progress=False)
    lora_cfg = StrategyConfig.parse("lora", lora_r=8, lora_alpha=16.0, lora_head=False)
    lora = run_stream(pretrained, two_task_stream, lora_cfg, CFG, tmp_path / "l", progress=False)
    # naive learns A, then B's contradicting answers overwrite it
    assert naive.matrix.R[0, 0] >= 0.75
    assert naive.matrix.bwt() <= -0.5 and naive.matrix.forgetting() >= 0.5
    # one adapter per task, frozen base, the router finds A's adapter for A's inputs
    assert lora.matrix.R[0, 0] >= 0.5 and lora.matrix.R[1, 1] >= 0.5
    assert lora.router_accuracy >= 0.9
    assert lora.matrix.bwt() >= -0.1 and lora.matrix.forgetting() <= 0.1
    assert lora.matrix.acc() > naive.matrix.acc()
    assert sorted(lora.details["adapters"]) == ["t0_A", "t1_B"]
    assert (tmp_path / "l" / "adapters" / "manifest.json").exists()
    # the base weights are untouched by LoRA-per-task
    after = dict(lora.model.named_parameters())
    for n, p in pretrained.named_parameters():
        assert torch.equal(p, after[n]), n


def test_combinations_run_and_account_for_memory(pretrained, two_task_stream, tmp_path):
    cfg = TrainConfig(steps_per_task=4, batch_size=8, router_examples=4)
    small = dict(fisher_examples=4, replay_capacity=8)
    combo = run_stream(pretrained, two_task_stream, StrategyConfig.parse("ewc+replay+shared",
                                                                          **small),
                       cfg, tmp_path / "c", progress=False)
    assert combo.extra_bytes > 0 and combo.details["replay_counts"] == {"A": 4, "B": 4}
    assert (tmp_path / "c" / "replay" / "buffer.json").exists()
    assert all(".lora.shared." in n for n, p in combo.model.named_parameters() if p.requires_grad)
    assert any(n.startswith("lm_head.lora.shared.") for n, _ in combo.model.named_parameters())
    lr = run_stream(pretrained, two_task_stream, StrategyConfig.parse("lora+replay", **small),
                    cfg, tmp_path / "lr", progress=False)
    online = run_stream(pretrained, two_task_stream, StrategyConfig.parse("online-ewc", **small),
                        cfg, tmp_path / "o", progress=False)
    for res in (combo, lr, online):
        # a complete matrix: every task scored before training and after each task, as an
        # accuracy (NaN, "not evaluated", fails both comparisons)
        for scores in (res.matrix.b, res.matrix.R):
            assert ((scores >= 0) & (scores <= 1)).all(), (res.strategy, scores)
    assert 0.0 <= lr.router_accuracy <= 1.0
    assert sorted(lr.details["adapters"]) == ["t0_A", "t1_B"]
    # where each task's test inputs were routed; its own adapter's share is the router accuracy
    routing = lr.details["routing"]
    assert list(routing) == ["A", "B"]
    assert [sum(routing[t.name].values()) for t in two_task_stream.tasks] == [
        len(t.test) for t in two_task_stream.tasks]
    right = routing["A"].get("t0_A", 0) + routing["B"].get("t1_B", 0)
    assert lr.router_accuracy == pytest.approx(right / sum(len(t.test) for t in two_task_stream.tasks))

    # the memory accounting, derived from what each method keeps
    def nbytes(model, trained_only=True):
        return sum(p.numel() * p.element_size() for p in model.parameters()
                   if p.requires_grad or not trained_only)

    buffer = ReplayBuffer.load(tmp_path / "c" / "replay").nbytes()
    # EWC (not online): a Fisher and an anchor per trained tensor for each of the two tasks,
    # here the shared adapter's; plus the shared adapter itself; plus the replayed examples
    assert combo.extra_bytes == 2 * 2 * nbytes(combo.model) + nbytes(combo.model) + buffer
    # online EWC: one running Fisher and one anchor, for every parameter (all of them train)
    assert online.extra_bytes == 2 * nbytes(online.model, trained_only=False)


def test_strategy_parsing():
    cfg = StrategyConfig.parse("ewc+replay", ewc_lambda=5.0)
    assert cfg.ewc and cfg.replay and not cfg.lora and cfg.ewc_lambda == 5.0
    assert StrategyConfig.parse("online-ewc").online
    with pytest.raises(ValueError, match="valid"):
        StrategyConfig.parse("ewc+magic")
    with pytest.raises(ValueError, match="exclude"):
        StrategyConfig.parse("lora+shared")
    with pytest.raises(ValueError, match="setting"):
        StrategyConfig.parse("naive", colour="red")


def test_stream_hooks_run_inside_run_stream(pretrained, two_task_stream, tmp_path):
    """The seam for strategies defined outside week07 (tracks/track_continual): the hooks are
    called around every task in order, their loss_fn wrapper is what trains, their buffer is
    mixed into the batches, their lr is used (1e-8: Adam moves each weight by at most about
    lr per step, against ~1e-3 at the default lr) and their memory and details are
    reported."""
    from week07_continual import StreamHooks

    class Probe(StreamHooks):
        lr = 1e-8
        replay_ratio = 0.5

        def __init__(self):
            self.calls, self.steps, self.replayed = [], 0, 0
            self.buffer = ReplayBuffer(4, "reservoir")
            self.buffer.add_many(two_task_stream.tasks[0].train[:4], "A")

        def before_task(self, model, i, task, rng):
            self.calls.append(("before", i, task.name))

        def after_task(self, model, i, task, rng):
            self.calls.append(("after", i, task.name))

        def loss_fn(self, default):
            def wrapped(model, batch):
                self.steps += 1
                self.replayed += int((batch[0][:, 1] == 1).sum())  # task A's marker token
                return default(model, batch)
            return wrapped

        def nbytes(self):
            return 1234

        def details(self):
            return {"probe": True}

    probe = Probe()
    cfg = TrainConfig(steps_per_task=3, batch_size=8)
    res = run_stream(pretrained, two_task_stream, "naive", cfg, tmp_path, progress=False,
                     hooks=probe)
    assert probe.calls == [("before", 0, "A"), ("after", 0, "A"), ("before", 1, "B"),
                           ("after", 1, "B")]
    assert probe.steps == 6
    assert probe.replayed >= 3 * 4  # task B's batches carry half rows of A from the buffer
    assert res.extra_bytes == 1234 and res.details["probe"] is True
    after = dict(res.model.named_parameters())
    moved = max(float((p - after[n]).abs().max()) for n, p in pretrained.named_parameters())
    assert 0.0 < moved < 1e-6
