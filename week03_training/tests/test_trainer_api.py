"""The Trainer's seams: loss_fn (auxiliary terms, metrics, any batch), params=, hooks,
evaluation through the loss_fn, runs that write nothing, and shared.load_model on its files.

References: a hand-written loop with ``torch.optim.AdamW`` (same groups, same
maths) for the weights, torch's cross-entropy for the losses.
"""

import signal
from collections import namedtuple

import pytest
import torch
import torch.nn.functional as F

from shared import read_metrics
from shared.checkpoint import CheckpointError
from week03_training import Muon, TrainConfig, Trainer, next_token_loss, to_device

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def _cfg(**kw):
    base = dict(steps=3, batch_size=4, block_size=16, warmup_steps=0, schedule="constant",
                eval_every=0, progress=False, lr=1e-2, grad_clip=0.0, optimizer="torch-adamw")
    return TrainConfig(**{**base, **kw})


def _l2(model):
    return sum((p ** 2).sum() for p in model.parameters() if p.ndim >= 2)


def with_l2(model, batch):
    """Cross-entropy + 1e-3 * the squared norm of the matrices, both logged."""
    x, y = batch
    ce = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    aux = 1e-3 * _l2(model)
    return ce + aux, {"ce": ce, "l2": aux, "rows": float(x.size(0))}


# ----------------------------------------------------------------------------- loss_fn


def test_auxiliary_loss_trains_like_a_hand_written_torch_loop(tiny_model, loaders, tmp_path):
    """Three steps of CE + L2 through the Trainer equal the same three steps written out with
    torch.optim.AdamW over the same two groups (matrices decay, vectors do not)."""
    train, _ = loaders()
    batches = [train.next_batch() for _ in range(3)]
    t = Trainer(tiny_model(dropout=0.0), train, _cfg(), loss_fn=with_l2, run_dir=tmp_path / "t")
    infos = [t.train_step([b]) for b in batches]

    ref = tiny_model(dropout=0.0)
    ps = list(ref.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in ps if p.ndim >= 2], "weight_decay": 0.1},
                             {"params": [p for p in ps if p.ndim < 2], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    for (x, y), info in zip(batches, infos):
        opt.zero_grad()
        ce = F.cross_entropy(ref(x).flatten(0, 1), y.flatten())
        aux = 1e-3 * _l2(ref)
        (ce + aux).backward()
        opt.step()
        assert info["loss"] == pytest.approx((ce + aux).item(), rel=1e-6)
        assert info["ce"] == pytest.approx(ce.item(), rel=1e-6)
        assert info["l2"] == pytest.approx(aux.item(), rel=1e-6)
    for (name, a), b in zip(t.raw_model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)


def test_metrics_average_over_micro_batches_and_reach_the_log(tiny_model, loaders, tmp_path):
    """grad_accum=2 with micro-batches of 1 and 3 rows: the 'rows' metric is (1 + 3) / 2 = 2,
    in the same metrics.jsonl row as the loss."""
    train, _ = loaders()
    x, y = train.next_batch()                                      # (4, 16)
    t = Trainer(tiny_model(dropout=0.0), train, _cfg(grad_accum=2), loss_fn=with_l2,
                run_dir=tmp_path)
    info = t.train_step([(x[:1], y[:1]), (x[1:], y[1:])])
    assert info["rows"] == 2.0
    t.fit()
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [2, 3]
    assert all(r["rows"] == 4.0 and "ce" in r and "loss" in r for r in rows)


class DictLoader:
    """(x, y) windows of an inner loader served as {"tokens": x, "targets": y}."""

    def __init__(self, inner):
        self.inner = inner

    def next_batch(self):
        x, y = self.inner.next_batch()
        return {"tokens": x, "targets": y}

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, d):
        self.inner.load_state_dict(d)


def dict_loss(model, batch):
    return next_token_loss(model, (batch["tokens"], batch["targets"]))


def test_any_batch_type_and_evaluation_through_the_loss_fn(tiny_model, loaders, tmp_path):
    """Dict batches train; validation averages the loss_fn over the val batches (checked
    against torch's cross-entropy on the same batches) and logs its metrics as val_*."""
    train, val = loaders()
    t = Trainer(tiny_model(dropout=0.0), DictLoader(train), _cfg(eval_every=3, eval_batches=2),
                loss_fn=dict_loss, val_loader=DictLoader(val), run_dir=tmp_path)
    hist = t.fit()
    assert len(hist) == 3
    got = t.evaluate()
    val.load_state_dict(t._val_start)
    with torch.no_grad():
        want = sum(F.cross_entropy(t.raw_model(x).flatten(0, 1), y.flatten()).item()
                   for x, y in (val.next_batch() for _ in range(2))) / 2
    assert got == {"val_loss": pytest.approx(want, rel=1e-6)}
    t2 = Trainer(tiny_model(dropout=0.0), train, _cfg(eval_batches=2), loss_fn=with_l2,
                 val_loader=val, token_bytes=torch.ones(64, dtype=torch.long),
                 run_dir=tmp_path / "b")
    out = t2.evaluate()
    assert set(out) == {"val_loss", "val_ce", "val_l2", "val_rows", "val_bpb"}
    assert out["val_bpb"] == pytest.approx(out["val_ce"] / torch.log(torch.tensor(2.0)).item(),
                                           rel=1e-5)          # 1-byte tokens: bpb = nats / ln 2


def test_to_device_walks_tuples_lists_dicts_and_namedtuples():
    Pair = namedtuple("Pair", "x y")
    batch = {"a": [torch.zeros(2), (torch.ones(1), "text")], "b": Pair(torch.zeros(1), 3)}
    out = to_device(batch, torch.device("meta"))
    assert out["a"][0].device.type == "meta" and out["a"][1][0].device.type == "meta"
    assert out["a"][1][1] == "text" and isinstance(out["b"], Pair) and out["b"].y == 3


def test_bad_loss_fn_results_and_reserved_metric_names(tiny_model, loaders, tmp_path):
    train, _ = loaders()
    x, y = train.next_batch()

    def make(fn):
        return Trainer(tiny_model(), train, _cfg(), loss_fn=fn, run_dir=tmp_path)

    with pytest.raises(TypeError, match=r"must return \(loss, metrics dict\)"):
        make(lambda m, b: F.cross_entropy(m(b[0]).flatten(0, 1), b[1].flatten())).train_step()
    with pytest.raises(ValueError, match="metric named 'lr'"):
        make(lambda m, b: (next_token_loss(m, b)[0], {"lr": 1.0})).train_step()
    with pytest.raises(TypeError, match="default loss_fn takes"):
        Trainer(tiny_model(), DictLoader(train), _cfg(), run_dir=tmp_path).train_step()
    with pytest.raises(TypeError, match="default loss_fn takes"):
        Trainer(tiny_model(), train, _cfg(), val_loader=DictLoader(train),
                run_dir=tmp_path).evaluate()


# ----------------------------------------------------------------------------- params=


def test_params_subset_trains_only_those(tiny_model, loaders, tmp_path):
    """params=[head weight, final norm]: everything else stays bit-identical; the two train as
    torch.optim.AdamW would (weight decay on the matrix only)."""
    train, _ = loaders()
    model = tiny_model(dropout=0.0)
    chosen = [model.lm_head.weight, model.ln_f.weight]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    t = Trainer(model, train, _cfg(), params=chosen, run_dir=tmp_path)
    assert [g["weight_decay"] for g in t.optimizer.param_groups] == [0.1, 0.0]
    batches = [train.next_batch() for _ in range(3)]
    for b in batches:
        t.train_step([b])
    ref = tiny_model(dropout=0.0)
    opt = torch.optim.AdamW([{"params": [ref.lm_head.weight], "weight_decay": 0.1},
                             {"params": [ref.ln_f.weight], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95))
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(ref(x).flatten(0, 1), y.flatten()).backward()
        opt.step()
    for name, p in model.named_parameters():
        if name in ("lm_head.weight", "ln_f.weight"):
            torch.testing.assert_close(p, dict(ref.named_parameters())[name], rtol=1e-5, atol=1e-6)
            assert not torch.equal(p, before[name])
        else:
            assert torch.equal(p, before[name]), name


def test_param_groups_and_muon_with_a_subset(tiny_model, loaders, tmp_path):
    """Group dicts are taken as given; with Muon a plain subset keeps muon_param_groups' split
    (hidden matrices Muon, the head AdamW)."""
    train, _ = loaders()
    model = tiny_model()
    groups = [{"params": [model.fc.weight], "lr": 5e-3}, {"params": [model.fc.bias]}]
    t = Trainer(model, train, _cfg(), params=groups, run_dir=tmp_path)
    assert [g["lr"] for g in t.optimizer.param_groups] == [5e-3, 1e-2]
    m = Trainer(model, train, _cfg(optimizer="muon"),
                params=[model.fc.weight, model.lm_head.weight, model.fc.bias], run_dir=tmp_path)
    assert isinstance(m.optimizer, Muon)
    split = {g["use_muon"]: [tuple(p.shape) for p in g["params"]] for g in m.optimizer.param_groups
             if g["use_muon"]}
    assert split == {True: [(128, 32)]}
    m.train_step()
    with pytest.raises(ValueError, match="not a parameter of the model"):
        Trainer(model, train, _cfg(), params=[torch.nn.Parameter(torch.zeros(2))])
    model.fc.bias.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad=False"):
        Trainer(model, train, _cfg(), params=[model.fc.bias])
    with pytest.raises(ValueError, match="empty"):
        Trainer(model, train, _cfg(), params=[])


# ----------------------------------------------------------------------------- hooks


class EMA:
    """An exponential moving average of the weights (a teacher), kept by a hook."""

    def __init__(self, model, decay=0.5):
        self.decay = decay
        self.shadow = {n: p.detach().clone() for n, p in model.named_parameters()}

    def __call__(self, trainer, info):
        with torch.no_grad():
            for n, p in trainer.raw_model.named_parameters():
                self.shadow[n].lerp_(p, 1 - self.decay)
        return {"ema_gap": sum((self.shadow[n] - p).abs().sum()
                               for n, p in trainer.raw_model.named_parameters())}

    def state_dict(self):
        return {"shadow": self.shadow}

    def load_state_dict(self, d):
        self.shadow = {n: t.clone() for n, t in d["shadow"].items()}


def test_hooks_run_after_each_step_log_and_resume_exactly(tiny_model, loaders, tmp_path):
    """The hook sees the step just taken; its metric is logged; an EMA hook's state goes into
    the checkpoint, so 6 steps + resume + 4 equals 10 straight, EMA included."""
    seen = []
    cfg = _cfg(steps=10, optimizer="adamw", grad_clip=1.0)
    train, _ = loaders()
    model = tiny_model()
    ema = EMA(model)
    full = Trainer(model, train, cfg, hooks=[ema, lambda tr, info: seen.append(info["step"])],
                   run_dir=tmp_path / "f")
    full.fit()
    assert seen == list(range(1, 11))
    assert all("ema_gap" in r for r in read_metrics(tmp_path / "f"))

    train, _ = loaders()
    model = tiny_model()
    first = Trainer(model, train, cfg, hooks=[EMA(model)], run_dir=tmp_path / "r")
    first.fit(steps=6)
    train, _ = loaders(seed=5)
    model = tiny_model(seed=3)
    again_ema = EMA(model)
    again = Trainer(model, train, cfg, hooks=[again_ema], run_dir=tmp_path / "r")
    assert again.resume() == 6
    again.fit()
    assert again.history == full.history
    for n, t in ema.shadow.items():
        assert torch.equal(t, again_ema.shadow[n]), n
    with pytest.raises(CheckpointError, match="1 hook state"):
        Trainer(tiny_model(), train, cfg, run_dir=tmp_path / "r").resume()


# ----------------------------------------------------------------------------- files


def test_a_run_can_write_nothing_and_leaves_signals_alone(tiny_model, loaders, tmp_path):
    """ckpt_every=0, save_final=False, write_metrics=False: no run folder, no checkpoint, and
    the caller's SIGTERM handler stays in place during training."""
    train, _ = loaders()
    handlers = []
    cfg = _cfg(ckpt_every=0, save_final=False, write_metrics=False)
    t = Trainer(tiny_model(), train, cfg, run_dir=tmp_path / "run",
                hooks=[lambda tr, info: handlers.append(signal.getsignal(signal.SIGTERM))])
    before = signal.getsignal(signal.SIGTERM)
    assert len(t.fit()) == 3
    assert not (tmp_path / "run").exists() and t.latest() is None
    assert handlers == [before] * 3


def test_shared_load_model_rebuilds_a_trainer_checkpoint(data_dir, tmp_path):
    """A week01 GPT trained 2 steps: shared.load_model(checkpoint) rebuilds it from the meta's
    import paths, with the trained weights (same logits)."""
    from shared import load_model, read_meta
    from week01_transformer import GPT, GPTConfig
    from week02_bpe import TokenLoader
    train = TokenLoader(data_dir, 2, 16, "train")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=train.vocab_size, block_size=16, n_layer=1, n_head=2,
                          n_embd=16))
    t = Trainer(model, train, _cfg(steps=2, block_size=16), run_dir=tmp_path)
    t.fit()
    meta = read_meta(t.latest())["model"]
    assert meta["class"].endswith(":GPT") and meta["config"]["n_embd"] == 16
    back = load_model(t.latest())
    assert type(back) is GPT
    x = torch.randint(0, train.vocab_size, (1, 8), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)


# ----------------------------------------------------------------------------- seams for week11


class _Seams(Trainer):
    """Records what week11's DistributedTrainer hooks into: which micro-batch is the last one
    (where data parallelism syncs), and the step metrics handed over for averaging."""

    def wrap_model(self, model):
        self.wrapped = torch.nn.Sequential(model)       # any wrapper the forward goes through
        return self.wrapped

    def accumulation_context(self, last):
        import contextlib
        self.lasts = [*getattr(self, "lasts", []), last]
        return contextlib.nullcontext()

    def all_mean(self, values):
        self.averaged = [*getattr(self, "averaged", []), dict(values)]
        return {k: 2 * v for k, v in values.items()}     # as if another rank had twice the loss


def test_data_parallel_seams_see_every_micro_batch_and_the_step_metrics(
        tiny_model, loaders, tmp_path):
    train, _ = loaders()
    t = _Seams(tiny_model(dropout=0.0), train, _cfg(grad_accum=3), loss_fn=with_l2,
               run_dir=tmp_path / "s")
    assert t.model is t.wrapped and t.model_description["config"]["n_layer"] >= 1
    info = t.train_step()
    assert t.lasts == [False, False, True]
    (seen,) = t.averaged
    assert set(seen) == {"loss", "ce", "l2", "rows"}
    assert info["loss"] == pytest.approx(2 * seen["loss"]) and info["ce"] == 2 * seen["ce"]
    assert t.history == [info["loss"]]
