"""Sharded checkpoints (week11_scale.dcp): exact round trips in one process, FSDP2 on 2 ranks
-> one process and back, conversion to and from week03's single file, a kill during a save,
and the errors for folders or models that do not fit."""

import random
import shutil
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close

from shared import SampledBatches, load_checkpoint, load_model, save_checkpoint
from shared.checkpoint import CheckpointError
from week03_training import TrainConfig, Trainer, build_optimizer, next_token_loss
from week04_modern_arch_tools import Llama, LlamaConfig
from week11_scale.dcp import (
    CKPT_KIND,
    KILL_HOOK_ENV,
    latest_sharded,
    load_sharded,
    save_sharded,
    sharded_to_single,
    single_to_sharded,
)

SCRIPT = Path(__file__).parent / "dist_scripts" / "dcp_fsdp.py"
EXACT = dict(rtol=0, atol=0)

# ----------------------------------------------------------------------------- helpers


def tiny(seed: int = 0, **overrides) -> Llama:
    torch.manual_seed(seed)
    cfg = LlamaConfig.presets()["test"]
    return Llama(LlamaConfig.from_dict({**cfg.to_dict(), **overrides}) if overrides else cfg)


def with_opt(model, optimizer: str = "adamw"):
    return model, build_optimizer(model, TrainConfig(optimizer=optimizer))


def batches(n: int, seed: int = 0, rows: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (rows, 17), generator=g) for _ in range(n)]


def train(model, opt, xs) -> list[float]:
    losses = []
    for x in xs:
        loss, _ = next_token_loss(model, (x[:, :-1], x[:, 1:]))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


def by_name(model, opt) -> dict:
    """Parameters and optimizer state keyed by parameter name (comparable across objects)."""
    return {"model": {n: p.detach() for n, p in model.named_parameters()},
            "state": {n: dict(opt.state[p]) for n, p in model.named_parameters()
                      if p in opt.state}}


def save(folder, model, opt, step: int, **kw) -> Path:
    return save_sharded(folder, model=model, optimizer=opt, step=step,
                        extra={"step": step, "history": torch.arange(step, dtype=torch.float64)},
                        meta={"run": "test"}, **kw)


def trainer(tmp_path: Path, name: str, optimizer: str = "adamw", seed: int = 0) -> Trainer:
    g = torch.Generator().manual_seed(0)
    examples = [torch.randint(0, 64, (17,), generator=g) for _ in range(32)]
    loader = SampledBatches(examples, 2, lambda xs: (torch.stack(xs)[:, :-1],
                                                     torch.stack(xs)[:, 1:]), seed=3)
    cfg = TrainConfig(steps=6, batch_size=2, block_size=16, optimizer=optimizer, warmup_steps=2,
                      eval_every=0, save_final=False, write_metrics=False, progress=False)
    return Trainer(tiny(seed), loader, cfg, run_dir=tmp_path / name)


def week03_extra(t: Trainer) -> dict:
    return {k: v for k, v in t.state_dict().items() if k not in ("model", "optimizer", "rng")}


# ----------------------------------------------------------------------------- one process


@pytest.mark.core
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_round_trip_restores_everything_and_continues_identically(tmp_path, optimizer):
    model, opt = with_opt(tiny(0), optimizer)
    xs = batches(5)
    train(model, opt, xs[:3])
    path = save(tmp_path / "ckpt", model, opt, 3)
    after_save = torch.rand(4)                          # the RNG state was saved just before
    model2, opt2 = with_opt(tiny(1), optimizer)
    torch.manual_seed(99)
    extra, meta = load_sharded(path, model=model2, optimizer=opt2)
    assert_close(torch.rand(4), after_save, **EXACT)
    assert_close(by_name(model2, opt2), by_name(model, opt), **EXACT)   # weights, moments, steps
    assert extra["step"] == 3 and meta["kind"] == CKPT_KIND and meta["world_size"] == 1
    assert meta["run"] == "test" and meta["step"] == 3
    assert train(model2, opt2, xs[3:]) == train(model, opt, xs[3:])
    assert_close(by_name(model2, opt2), by_name(model, opt), **EXACT)


@pytest.mark.core
def test_save_before_the_first_step_leaves_the_optimizer_fresh(tmp_path):
    model, opt = with_opt(tiny(0))
    path = save(tmp_path / "ckpt", model, opt, 0)
    assert not opt.state                    # saving did not initialise moments or step counters
    model2, opt2 = with_opt(tiny(1))
    train(model2, opt2, batches(1, seed=5))  # a used optimizer: the load must reset it
    load_sharded(path, model=model2, optimizer=opt2)
    assert not opt2.state
    xs = batches(2)
    assert train(model2, opt2, xs) == train(model, opt, xs)


@pytest.mark.core
def test_a_parameter_without_optimizer_state_stays_without(tmp_path):
    model, opt = with_opt(tiny(0))
    x = batches(1)[0]
    loss, _ = next_token_loss(model, (x[:, :-1], x[:, 1:]))
    loss.backward()
    model.lm_head.weight.grad = None                # as if the head had been unused this step
    opt.step()
    path = save(tmp_path / "ckpt", model, opt, 1)
    model2, opt2 = with_opt(tiny(1))
    load_sharded(path, model=model2, optimizer=opt2)
    assert model2.lm_head.weight not in opt2.state  # not a zero-initialised stand-in
    assert_close(by_name(model2, opt2), by_name(model, opt), **EXACT)


@pytest.mark.core
def test_keep_last_latest_and_resave(tmp_path):
    ckpt = tmp_path / "ckpt"
    assert latest_sharded(ckpt) is None
    model, opt = with_opt(tiny(0))
    for step, x in enumerate(batches(4), start=1):
        train(model, opt, [x])
        save(ckpt, model, opt, step, keep_last=2)
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_0000003", "step_0000004"]
    assert latest_sharded(ckpt) == ckpt / "step_0000004"
    train(model, opt, batches(1, seed=9))
    save(ckpt, model, opt, 4, keep_last=2)          # the same step again replaces it
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_0000003", "step_0000004"]
    model2, opt2 = with_opt(tiny(1))
    load_sharded(ckpt / "step_0000004", model=model2, optimizer=opt2)
    assert_close(by_name(model2, opt2), by_name(model, opt), **EXACT)


# ----------------------------------------------------------------------------- resharding


@pytest.mark.core
def test_fsdp_on_two_ranks_loads_into_one_plain_process(tmp_path, torchrun_py):
    torchrun_py(SCRIPT, "save", tmp_path)
    path = tmp_path / "ckpt" / "step_0000002"
    assert {"__0_0.distcp", "__1_0.distcp", "rng_0.safetensors", "rng_1.safetensors"} <= {
        p.name for p in path.iterdir()}
    full, _ = load_checkpoint(tmp_path / "full.safetensors")   # DTensor.full_tensor() per rank 0
    model, opt = with_opt(tiny(7))
    extra, meta = load_sharded(path, model=model, optimizer=opt)
    assert meta["world_size"] == 2 and meta["run"] == "fsdp-test"
    assert_close(extra["note"], torch.arange(3), **EXACT)
    assert_close(by_name(model, opt), full, **EXACT)
    assert all(s["step"].item() == 2 for s in full["state"].values())


@pytest.mark.core
def test_one_process_loads_into_fsdp_on_two_ranks(tmp_path, torchrun_py):
    model, opt = with_opt(tiny(0))
    train(model, opt, batches(2))
    rng_at_save = torch.get_rng_state()
    save(tmp_path / "ckpt", model, opt, 2)
    saved = {k: {n: t.clone() for n, t in v.items()} if k == "model" else
             {n: {kk: vv.clone() for kk, vv in s.items()} for n, s in v.items()}
             for k, v in by_name(model, opt).items()}
    batch = batches(1, seed=11)[0]
    save_checkpoint(tmp_path / "batch.safetensors", batch)
    torchrun_py(SCRIPT, "load", tmp_path)
    ranks = [load_checkpoint(tmp_path / f"rank{r}.safetensors")[0] for r in range(2)]
    for r, out in enumerate(ranks):
        assert_close(out["full"], saved, **EXACT)
        assert out["world_size"] == 1 and out["extra"]["step"] == 2
        for name, t in saved["model"].items():         # FSDP2 shards dim 0 in equal chunks
            assert_close(out["local"]["model"][name], t.chunk(2)[r], **EXACT)
            for k in ("exp_avg", "exp_avg_sq"):
                assert_close(out["local"]["state"][name][k], saved["state"][name][k].chunk(2)[r],
                             **EXACT)
    assert_close(ranks[0]["rng"], rng_at_save, **EXACT)           # rank 0 had rng_0
    assert_close(ranks[1]["rng"], torch.manual_seed(101).get_state(), **EXACT)   # left alone
    # the next step under FSDP2 (each rank half the batch) matches one process on all of it
    loss = train(model, opt, [batch])[0]
    assert (ranks[0]["loss"] + ranks[1]["loss"]) / 2 == pytest.approx(loss, abs=1e-6)
    assert_close(ranks[0]["after"], {n: p.detach() for n, p in model.named_parameters()},
                 rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- conversion


@pytest.mark.stretch
def test_sharded_to_single_resumes_with_week03_trainer(tmp_path):
    a = trainer(tmp_path, "a")
    a.fit(3)
    weights3 = {k: v.clone() for k, v in a.raw_model.state_dict().items()}
    folder = save_sharded(tmp_path / "ckpt", model=a.raw_model, optimizer=a.optimizer,
                          step=a.step, extra=week03_extra(a), meta={"step": a.step,
                                                                    **a.describe()})
    a.fit()                                         # the reference: the run never stopped
    single = sharded_to_single(folder, tmp_path / "single.safetensors")
    assert_close(load_model(single).state_dict(), weights3, **EXACT)
    b = trainer(tmp_path, "b", seed=5)
    assert b.resume(single) == 3
    b.fit()
    c = trainer(tmp_path, "c", seed=6)              # continue the sharded run in one process
    extra, _ = load_sharded(folder, model=c.raw_model, optimizer=c.optimizer)
    c.scheduler.load_state_dict(extra["scheduler"])
    c.train_loader.load_state_dict(extra["train_loader"])
    c.step, c.history = extra["step"], extra["history"].tolist()
    c.fit()
    assert len(a.history) == 6 and b.history == a.history and c.history == a.history


@pytest.mark.stretch
def test_single_to_sharded_round_trip(tmp_path):
    a = trainer(tmp_path, "a", optimizer="muon")
    a.fit(3)
    random.random()                                 # the file's RNG, not the process's, is kept
    first = a.save_checkpoint()
    folder = single_to_sharded(first, tmp_path / "sharded")
    assert folder == tmp_path / "sharded" / "step_0000003"
    model, opt = with_opt(tiny(4), "muon")
    load_sharded(folder, model=model, optimizer=opt)
    assert_close(by_name(model, opt), by_name(a.raw_model, a.optimizer), **EXACT)
    (s1, m1), (s2, m2) = (load_checkpoint(p) for p in
                          (first, sharded_to_single(folder, tmp_path / "back.safetensors")))
    assert m2["kind"] == m1["kind"] == "week03-train" and m2["step"] == 3
    assert m2["model"] == m1["model"] and m2["train"] == m1["train"]
    assert_close(s2["model"], s1["model"], **EXACT)
    assert_close(s2["optimizer"]["state"], s1["optimizer"]["state"], **EXACT)
    assert s2["optimizer"]["param_groups"] == s1["optimizer"]["param_groups"]
    for key in ("scheduler", "train_loader", "hooks", "step"):
        assert s2[key] == s1[key], key
    assert_close(s2["history"], s1["history"], **EXACT)
    assert_close(s2["rng"]["torch"], s1["rng"]["torch"], **EXACT)
    assert s2["rng"]["python"] == s1["rng"]["python"]


# ----------------------------------------------------------------------------- a kill


@pytest.mark.stretch
def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, torchrun_py):
    out = torchrun_py(SCRIPT, "kill", tmp_path, env={KILL_HOOK_ENV: "2"}, check=False)
    assert out.returncode != 0
    ckpt = tmp_path / "ckpt"
    partial = ckpt / ".step_0000002.partial"
    assert (partial / ".metadata").is_file() and (partial / "__1_0.distcp").is_file()
    assert latest_sharded(ckpt) == ckpt / "step_0000001"
    model, opt = with_opt(tiny(7))
    load_sharded(latest_sharded(ckpt), model=model, optimizer=opt)
    assert_close(by_name(model, opt), load_checkpoint(tmp_path / "full.safetensors")[0], **EXACT)
    with pytest.raises(CheckpointError, match="partial save"):
        load_sharded(partial, model=model, optimizer=opt)
    train(model, opt, batches(1))
    save(ckpt, model, opt, 3)
    assert sorted(p.name for p in ckpt.iterdir()) == ["step_0000001", "step_0000003"]


# ----------------------------------------------------------------------------- errors


@pytest.mark.core
def test_load_refuses_missing_incomplete_and_foreign_folders(tmp_path):
    model, opt = with_opt(tiny(0))
    train(model, opt, batches(1))
    good = save(tmp_path / "ckpt", model, opt, 1)
    load = lambda p: load_sharded(p, model=model, optimizer=opt)    # noqa: E731
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"latest is .*step_0000001"):
        load(tmp_path / "ckpt")                     # the parent folder, not a checkpoint
    with pytest.raises(CheckpointError, match="is a file"):
        load(good / "trainer.safetensors")
    broken = shutil.copytree(good, tmp_path / "other" / "step_0000001")
    (broken / "trainer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="incomplete: trainer.safetensors missing"):
        load(broken)
    assert latest_sharded(tmp_path / "other") is None
    save_checkpoint(broken / "trainer.safetensors", {}, {"kind": "week03-train"})
    with pytest.raises(CheckpointError, match="kind 'week03-train'"):
        load(broken)
    with pytest.raises(CheckpointError, match="no meta\\['model'\\]"):
        sharded_to_single(good, tmp_path / "x.safetensors")


@pytest.mark.core
def test_load_refuses_another_model_or_optimizer_and_changes_nothing(tmp_path):
    model, opt = with_opt(tiny(0))
    train(model, opt, batches(2))
    path = save(tmp_path / "ckpt", model, opt, 2)
    deeper, deeper_opt = with_opt(tiny(1, n_layer=3))
    train(deeper, deeper_opt, batches(1))
    before = {k: {n: t.clone() for n, t in v.items()} if k == "model" else
              {n: {kk: vv.clone() for kk, vv in s.items()} for n, s in v.items()}
              for k, v in by_name(deeper, deeper_opt).items()}
    with pytest.raises(CheckpointError, match=r"missing from the checkpoint: \['model.blocks.2"):
        load_sharded(path, model=deeper, optimizer=deeper_opt)
    assert_close(by_name(deeper, deeper_opt), before, **EXACT)       # refused: untouched
    wider, wider_opt = with_opt(tiny(1, n_embd=64))
    with pytest.raises(CheckpointError, match=r"shape mismatch: \['model.tok_emb.weight: "
                                              r"checkpoint \(64, 32\) vs here \(64, 64\)"):
        load_sharded(path, model=wider, optimizer=wider_opt)
    muon, muon_opt = with_opt(tiny(1), "muon")
    with pytest.raises(CheckpointError, match="momentum_buffer"):
        load_sharded(path, model=muon, optimizer=muon_opt)


@pytest.mark.core
def test_save_refuses_bad_arguments(tmp_path):
    model, opt = with_opt(tiny(0))
    with pytest.raises(ValueError, match="step must be an int >= 0"):
        save_sharded(tmp_path, model=model, optimizer=opt, step=-1, extra={}, meta={})
    with pytest.raises(ValueError, match="keep_last must be an int >= 1"):
        save(tmp_path, model, opt, 1, keep_last=0)
    with pytest.raises(ValueError, match=r"extra holds \['model'\]"):
        save_sharded(tmp_path, model=model, optimizer=opt, step=1, extra={"model": 1}, meta={})
