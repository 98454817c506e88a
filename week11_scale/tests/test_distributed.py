"""DDP, FSDP2 and ZeRO-1 under torchrun (2 CPU processes, gloo) against one process.

The reference is week03's Trainer in this process with the same model, data, optimizer and the
global batch in one piece (batch_size * world_size rows, week02's loader unsharded).
"""

from pathlib import Path

import pytest
import torch

from week02_bpe import TokenLoader
from week03_training import TrainConfig, Trainer
from week04_modern_arch_tools import Llama, LlamaConfig

SCRIPTS = Path(__file__).parent / "dist_scripts"


def one_process(data_dir, steps, accum, optimizer, tmp_path):
    """Losses, first-step gradients and final parameters of the same run in one process."""
    cfg = TrainConfig(steps=steps, batch_size=4, block_size=16, grad_accum=accum,
                      optimizer=optimizer, lr=1e-2, muon_lr=0.02, warmup_steps=1, eval_every=0,
                      progress=False, save_final=False, write_metrics=False, grad_clip=1.0)
    loader = TokenLoader(data_dir, 4, 16, seed=3)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=loader.vocab_size, block_size=16, n_layer=2, n_head=4,
                              n_kv_head=2, n_embd=32))
    t = Trainer(model, loader, cfg, run_dir=tmp_path / "one")
    first = t.train_step()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    infos = [first] + [t.train_step() for _ in range(steps - 1)]
    return {"losses": [i["loss"] for i in infos], "grad_norms": [i["grad_norm"] for i in infos],
            "grads": grads, "params": {n: p.detach().clone() for n, p in model.named_parameters()}}


def assert_same_run(ours, ref, rtol, atol):
    assert ours["losses"] == pytest.approx(ref["losses"], rel=rtol)
    assert ours["grad_norms"] == pytest.approx(ref["grad_norms"], rel=rtol * 10)
    assert ours["grads"].keys() == ref["grads"].keys()
    for name, g in ref["grads"].items():
        torch.testing.assert_close(ours["grads"][name], g, rtol=rtol, atol=atol, msg=name)
    # after a few steps the parameters: Adam divides by sqrt(v), so an entry whose gradient is
    # all rounding (|g| ~ 1e-9) moves by up to lr either way; the bulk agrees far tighter
    for name, p in ref["params"].items():
        diff = (ours["params"][name] - p).abs()
        assert diff.max() < 1e-3 and diff.mean() < 1e-5, (name, diff.max(), diff.mean())


@pytest.mark.core
def test_ddp_fsdp2_and_zero1_equal_one_process_at_the_same_global_batch(
        torchrun_py, data_dir, tmp_path):
    """Two ranks x 2 rows x 2 micro-batches (no sync on the first) equal one process with 4
    rows x 2 micro-batches: losses and first-step gradients to 1e-6 (DDP, ZeRO-1) and 1e-5
    (FSDP2), parameters after 4 AdamW steps likewise."""
    out = tmp_path / "res.pt"
    torchrun_py(SCRIPTS / "train_equal.py", data_dir, out, 4, 2, "adamw", "ddp,fsdp,zero1")
    res = torch.load(out, weights_only=False)
    ref = one_process(data_dir, 4, 2, "adamw", tmp_path)
    assert_same_run(res["ddp"], ref, rtol=1e-6, atol=1e-7)
    assert_same_run(res["zero1"], ref, rtol=1e-6, atol=1e-7)
    assert_same_run(res["fsdp"], ref, rtol=1e-5, atol=1e-6)
    assert res["ddp"]["tokens_per_step"] == 2 * 2 * 16 * 2


@pytest.mark.stretch
def test_muon_and_activation_checkpointing_under_ddp_fsdp2_and_zero1(
        torchrun_py, data_dir, tmp_path):
    """Muon (AdamW for embeddings, head and norms) with every block checkpointed: DDP runs NS
    on the all-reduced matrices, FSDP2 on the gathered ones, ZeRO-1 on each rank's own; all
    equal one process without checkpointing."""
    out = tmp_path / "res.pt"
    torchrun_py(SCRIPTS / "train_equal.py", data_dir, out, 3, 1, "muon", "ddp,fsdp,zero1", "ac")
    res = torch.load(out, weights_only=False)
    ref = one_process(data_dir, 3, 1, "muon", tmp_path)
    for strategy in ("ddp", "fsdp", "zero1"):
        assert_same_run(res[strategy], ref, rtol=1e-5, atol=1e-6)
