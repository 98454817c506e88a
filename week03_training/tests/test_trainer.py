"""The Trainer in-process: accumulation, clipping, bf16, validation, checkpoints, resume."""

import math
import os
import random
import signal

import numpy as np
import pytest
import torch

from shared.checkpoint import CheckpointError
from week03_training import (
    Muon,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    build_optimizer,
    clip_grad_norm,
    latest_checkpoint,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _cfg(**kw):
    base = dict(steps=10, batch_size=4, block_size=16, warmup_steps=2, eval_every=0,
                progress=False, lr=1e-2)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- one step


def test_grad_accumulation_equals_one_big_batch(tiny_model, loaders, tmp_path):
    """4 micro-batches of 2 sequences give the gradients of one batch of 8.

    Each micro loss is a mean over 2*16 tokens divided by 4, so the sum is the
    mean over all 128 tokens. Only float summation order differs: rtol 1e-5.
    """
    train, _ = loaders(batch_size=8)
    x, y = train.next_batch()                                      # (8, 16)
    big = Trainer(tiny_model(dropout=0.0), train, _cfg(), run_dir=tmp_path / "a")
    acc = Trainer(tiny_model(dropout=0.0), train, _cfg(grad_accum=4, batch_size=2),
                  run_dir=tmp_path / "b")
    info_big = big.train_step([(x, y)])
    info_acc = acc.train_step([(x[i:i + 2], y[i:i + 2]) for i in range(0, 8, 2)])
    assert info_acc["loss"] == pytest.approx(info_big["loss"], rel=1e-6)
    assert info_acc["grad_norm"] == pytest.approx(info_big["grad_norm"], rel=1e-5)
    for (name, a), b in zip(acc.raw_model.named_parameters(), big.raw_model.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_ignore_index_targets_are_masked_out_and_others_refused(tiny_model, loaders, tmp_path):
    """IGNORE_INDEX (-1) drops a target: the expected value is torch's mean cross-entropy
    over the kept positions only. PyTorch's -100 is not a second mask: it is refused."""
    from shared import IGNORE_INDEX
    train, _ = loaders(batch_size=2)
    x, y = train.next_batch()                                      # (2, 16)
    trainer = Trainer(tiny_model(dropout=0.0), train, _cfg(batch_size=2), run_dir=tmp_path)
    masked = y.clone()
    masked[0, :5], masked[1, 3:] = IGNORE_INDEX, IGNORE_INDEX
    keep = masked >= 0
    with torch.no_grad():
        logits = trainer.raw_model(x)                              # (2, 16, V)
        want = torch.nn.functional.cross_entropy(logits[keep], y[keep])
        got = trainer.loss_on(x, masked)
    torch.testing.assert_close(got, want)
    masked[1, 3:] = -100
    with pytest.raises(ValueError, match=r"negative values \[-100\].*IGNORE_INDEX = -1"):
        trainer.train_step([(x, masked)])


def test_clip_grad_norm_matches_torch():
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    for ps in (a, b):
        (sum((p**3).sum() for p in ps)).backward()
    ours = clip_grad_norm(a, 1.0)
    ref = torch.nn.utils.clip_grad_norm_(b, 1.0)
    torch.testing.assert_close(ours, ref)
    for p, q in zip(a, b):
        torch.testing.assert_close(p.grad, q.grad)
    assert torch.cat([p.grad.flatten() for p in a]).norm() == pytest.approx(1.0, rel=1e-5)


def test_bf16_autocast_keeps_fp32_master_weights(tiny_model, loaders, tmp_path):
    """bf16 autocast: parameters and Adam moments stay fp32, the loss tracks fp32's.

    bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2%); over 5 steps the
    loss of ~4.2 nats may drift by a few hundredths, so 0.05 is the bound.
    """
    losses = {}
    for dtype in ("fp32", "bf16"):
        train, _ = loaders()
        t = Trainer(tiny_model(dropout=0.0), train, _cfg(steps=5, dtype=dtype),
                    run_dir=tmp_path / dtype)
        losses[dtype] = t.fit()
        assert all(p.dtype == torch.float32 for p in t.raw_model.parameters())
        state = t.optimizer.state_dict()["state"]
        assert all(s["exp_avg"].dtype == torch.float32 for s in state.values())
    for a, b in zip(losses["fp32"], losses["bf16"]):
        assert abs(a - b) < 0.05
    assert losses["fp32"] != losses["bf16"]                        # bf16 really was used


# ----------------------------------------------------------------------------- the loop


def test_fit_learns_and_validates_with_bits_per_byte(tiny_model, loaders, tmp_path):
    """The loss falls; with every token 1 byte long, bpb = val_loss / ln 2."""
    train, val = loaders()
    vocab = 64
    t = Trainer(tiny_model(), train, _cfg(steps=60, eval_every=20, eval_batches=3),
                val_loader=val, token_bytes=torch.ones(vocab, dtype=torch.long),
                run_dir=tmp_path)
    hist = t.fit()
    assert len(hist) == 60 and t.step == 60
    assert sum(hist[-10:]) / 10 < hist[0] - 0.5
    first = t.evaluate()
    state = train.state_dict()
    assert t.evaluate() == first                                  # val loader rewinds each time
    assert train.state_dict() == state                            # and leaves training alone
    assert first["val_bpb"] == pytest.approx(first["val_loss"] / math.log(2), rel=1e-6)
    from shared import read_metrics
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 61))
    assert [r["step"] for r in rows if "val_loss" in r] == [20, 40, 60]
    assert all(r["tok_per_s"] > 0 for r in rows)
    assert rows[-1]["val_loss"] == pytest.approx(first["val_loss"], rel=1e-6)


def test_trainer_with_week01_gpt_and_week02_loader(data_dir, tmp_path):
    """The real pieces: week01 GPT, week02 TokenLoader and token_bytes, Muon."""
    from week01_transformer import GPT, GPTConfig
    from week02_bpe import BPETokenizer, TokenLoader, token_bytes
    train = TokenLoader(data_dir, 4, 32, "train")
    val = TokenLoader(data_dir, 4, 32, "val")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=train.vocab_size, block_size=32, n_layer=2, n_head=2,
                          n_embd=32))
    tb = token_bytes(BPETokenizer.load(data_dir / "tokenizer.json"))
    t = Trainer(model, train, _cfg(steps=30, optimizer="muon", block_size=32, eval_every=30),
                val_loader=val, token_bytes=tb, run_dir=tmp_path)
    assert isinstance(t.optimizer, Muon)
    hist = t.fit()
    assert hist[-1] < hist[0] - 1.0
    assert 0 < t.evaluate()["val_bpb"] < 8


def test_build_optimizer_kinds(tiny_model):
    model = tiny_model()
    for kind, cls in (("adamw", "AdamW"), ("torch-adamw", "AdamW"), ("muon", "Muon")):
        opt = build_optimizer(model, _cfg(optimizer=kind))
        assert type(opt).__name__ == cls
        n = sum(len(g["params"]) for g in opt.param_groups)
        assert n == len(list(model.parameters()))
        for g in opt.param_groups:                                 # no decay on norms/biases
            if any(p.ndim < 2 for p in g["params"]):
                assert g["weight_decay"] == 0.0


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="optimizer 'sgd' unknown; valid: adamw, muon"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="dtype"):
        TrainConfig(dtype="fp8")


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("kw", [dict(), dict(optimizer="muon", schedule="wsd"),
                                dict(dtype="bf16", grad_accum=2)])
def test_resume_in_process_is_bitwise_exact(tiny_model, loaders, tmp_path, kw):
    """10 steps straight == 6 steps, a fresh process-like restart, 4 more (dropout on)."""
    cfg = _cfg(eval_every=5, **kw)
    train, val = loaders()
    full = Trainer(tiny_model(), train, cfg, val_loader=val, run_dir=tmp_path / "f")
    full.fit()

    train, val = loaders()
    first = Trainer(tiny_model(), train, cfg, val_loader=val, run_dir=tmp_path / "r")
    first.fit(steps=6)
    torch.manual_seed(123)                                         # scramble the global RNG
    train, val = loaders(seed=99)                                  # loader state comes from ckpt
    again = Trainer(tiny_model(seed=7), train, cfg, val_loader=val, run_dir=tmp_path / "r")
    assert again.resume() == 6
    again.fit()
    assert again.history == full.history
    for a, b in zip(again.raw_model.state_dict().values(), full.raw_model.state_dict().values()):
        assert torch.equal(a, b)


class _LossSum:
    """A stateful hook: the running sum of the step losses (a float, saved as JSON)."""

    def __init__(self):
        self.total, self.calls = 0.0, 0

    def __call__(self, trainer, info):
        self.total += info["loss"]
        self.calls += 1

    def state_dict(self):
        return {"total": self.total, "calls": self.calls}

    def load_state_dict(self, d):
        self.total, self.calls = d["total"], d["calls"]


def _noisy_loss(model, batch):
    """Cross-entropy scaled by a draw from Python's and one from NumPy's RNG, so those
    streams steer the run as much as dropout steers it through torch's."""
    x, y = batch
    ce = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
    return ce * (1 + 0.01 * (random.random() + float(np.random.rand()))), {}


def _same(a, b) -> bool:
    """Equal all the way down: dicts, lists, tuples, tensors and arrays compared exactly."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


def test_state_dict_holds_everything_the_next_step_reads(tiny_model, loaders, tmp_path):
    """After 3 steps (batches of 4 x 16 tokens) with a stateful hook and a plain one, the
    state is the live model, optimizer, scheduler and loader state; the loader 192 tokens in;
    the stateful hook's state only; the torch, NumPy and Python RNG states as they are now;
    step 3 and the 3 losses as float64 (each Python float exactly). The loss draws from
    NumPy's and Python's RNGs, seeded here, so their states are this run's and no fresh ones."""
    random.seed(1)
    np.random.seed(2)
    train, _ = loaders()
    hook = _LossSum()
    t = Trainer(tiny_model(), train, _cfg(), loss_fn=_noisy_loss,
                hooks=[hook, lambda tr, info: None], run_dir=tmp_path)
    t.fit(steps=3)
    rng_now = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
               "python": random.getstate()}
    sd = t.state_dict()
    assert sorted(sd) == sorted(["model", "optimizer", "scheduler", "train_loader", "hooks",
                                 "rng", "step", "history"])
    assert _same(sd["model"], t.raw_model.state_dict())
    assert _same(sd["optimizer"], t.optimizer.state_dict())
    assert len(sd["optimizer"]["state"]) == len(t.params)           # every moment saved
    assert _same(sd["scheduler"], t.scheduler.state_dict())
    assert _same(sd["train_loader"], train.state_dict())
    assert sd["train_loader"]["tokens_seen"] == 3 * 4 * 16          # where in the data
    assert sd["hooks"] == [{"total": hook.total, "calls": 3}]
    for k, v in rng_now.items():
        assert _same(sd["rng"][k], v), k
    assert sd["step"] == 3
    assert sd["history"].dtype == torch.float64 and sd["history"].tolist() == t.history


def test_what_state_dict_saves_resumes_bitwise_exactly(tiny_model, loaders, tmp_path):
    """10 steps straight == 6 steps, a checkpoint written from state_dict(), a Trainer rebuilt
    with other model and loader seeds and every global RNG scrambled, resume, 4 more: the
    same losses, weights and hook state, exactly. Dropout draws from torch's RNG and the loss
    from NumPy's and Python's, so each saved stream, the loader position, the optimizer and
    scheduler state and the hook's state all change the result if they are missing. Two
    micro-batches per step make each loss a float64 sum of two float32 halves, which float32
    storage of the history would round."""
    cfg = _cfg(grad_accum=2)
    random.seed(0)
    np.random.seed(0)
    train, _ = loaders()
    full_hook = _LossSum()
    full = Trainer(tiny_model(), train, cfg, loss_fn=_noisy_loss, hooks=[full_hook],
                   run_dir=tmp_path / "f")
    full.fit()

    random.seed(0)
    np.random.seed(0)
    train, _ = loaders()
    first = Trainer(tiny_model(), train, cfg, loss_fn=_noisy_loss, hooks=[_LossSum()],
                    run_dir=tmp_path / "r")
    first.fit(steps=6)                                              # writes step 6 at the end
    torch.manual_seed(123)                                         # scramble every stream
    random.seed(123)
    np.random.seed(123)
    train, _ = loaders(seed=99)
    hook = _LossSum()
    again = Trainer(tiny_model(seed=7), train, cfg, loss_fn=_noisy_loss, hooks=[hook],
                    run_dir=tmp_path / "r")
    assert again.resume() == 6
    again.fit()
    assert again.history == full.history
    for a, b in zip(again.raw_model.state_dict().values(), full.raw_model.state_dict().values()):
        assert torch.equal(a, b)
    assert (hook.total, hook.calls) == (full_hook.total, 10)


def test_keep_last_k_checkpoints(tiny_model, loaders, tmp_path):
    train, _ = loaders()
    t = Trainer(tiny_model(), train, _cfg(steps=7, ckpt_every=2, keep_last=2), run_dir=tmp_path)
    t.fit()
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_0000006.safetensors", "step_0000007.safetensors"]
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_0000007.safetensors"


class _Killed(BaseException):
    """Stands in for the process dying: not an Exception, so nothing catches it."""


def test_write_killed_half_way_leaves_previous_checkpoint(tiny_model, loaders, tmp_path,
                                                          monkeypatch):
    """The second write dies after writing half of its bytes: step 2 is still the latest."""
    import shared.checkpoint as ck
    train, _ = loaders()
    t = Trainer(tiny_model(), train, _cfg(steps=4), run_dir=tmp_path)
    t.fit(steps=2)
    real = ck.save_file

    def half(tensors, path, metadata=None):
        real(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
        raise _Killed("killed during the write")

    monkeypatch.setattr(ck, "save_file", half)
    t.train_step()                                                  # step 3
    with pytest.raises(_Killed):
        t.save_checkpoint()
    monkeypatch.undo()
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["step_0000002.safetensors"]                    # no partial file left
    train2, _ = loaders()
    t2 = Trainer(tiny_model(), train2, _cfg(steps=4), run_dir=tmp_path)
    assert t2.resume() == 2


def test_corrupt_and_mismatched_checkpoints_raise_clear_errors(tiny_model, loaders, tmp_path):
    train, _ = loaders()
    t = Trainer(tiny_model(), train, _cfg(steps=2), run_dir=tmp_path)
    t.fit()
    good = t.latest()
    bad = tmp_path / "checkpoints" / "step_0000009.safetensors"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 3])                          # truncated
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        Trainer(tiny_model(), train, _cfg(steps=2), run_dir=tmp_path).resume()
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="checkpoint .*step_0000009"):
        Trainer(tiny_model(), train, _cfg(steps=2), run_dir=tmp_path).resume(bad)
    with pytest.raises(CheckpointError, match="another model.*n_embd"):
        Trainer(tiny_model(n_embd=16), train, _cfg(steps=2), run_dir=tmp_path).resume(good)
    with pytest.raises(CheckpointError, match="other settings.*'lr'"):
        Trainer(tiny_model(), train, _cfg(steps=2, lr=0.5), run_dir=tmp_path).resume(good)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(tiny_model(), train, _cfg(), run_dir=tmp_path / "empty").resume()


class _SignalAt:
    """A loader wrapper that sends this process ``sig`` when batch ``n`` is drawn."""

    def __init__(self, inner, n, sig):
        self.inner, self.n, self.sig, self.count = inner, n, sig, 0

    def next_batch(self):
        self.count += 1
        if self.count == self.n:
            os.kill(os.getpid(), self.sig)
        return self.inner.next_batch()

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, d):
        self.inner.load_state_dict(d)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_saves_and_stops(tiny_model, loaders, tmp_path, sig):
    train, _ = loaders()
    t = Trainer(tiny_model(), _SignalAt(train, 4, sig), _cfg(), run_dir=tmp_path)
    before = signal.getsignal(sig)
    with pytest.raises(TrainingInterrupted) as e:
        t.fit()
    assert e.value.step == 4 and e.value.signum == sig
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_0000004.safetensors"
    assert signal.getsignal(sig) == before                          # handlers restored
