"""torchrun helper for test_dcp.py: a tiny week04 Llama under FSDP2 on 2 CPU ranks (gloo).

``dcp_fsdp.py save DIR``: train 2 steps, ``save_sharded`` step 2 into DIR/ckpt, dump the full
tensors (``DTensor.full_tensor()``) to DIR/full.safetensors.
``dcp_fsdp.py kill DIR``: the same, saving steps 1 and 2 (the test sets NANOCHAT_KILL_IN_SAVE=2);
the dump is of step 1.
``dcp_fsdp.py load DIR``: ``load_sharded`` DIR/ckpt/step_0000002 into a fresh FSDP2 model, dump
each rank's local shards, full tensors and RNG state to DIR/rank<r>.safetensors, then take one
step on DIR/batch.safetensors (rank r gets row-half r) and dump the full parameters after it.
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from shared import load_checkpoint, save_checkpoint
from week03_training import TrainConfig, build_optimizer, next_token_loss
from week04_modern_arch_tools import Llama, LlamaConfig
from week11_scale.dcp import load_sharded, save_sharded

# ----------------------------------------------------------------------------- setup


def sharded_model(seed: int):
    torch.manual_seed(seed)
    model = Llama(LlamaConfig.presets()["test"])
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    mp = MixedPrecisionPolicy(param_dtype=torch.float32)
    for block in model.blocks:
        fully_shard(block, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model, build_optimizer(model, TrainConfig(optimizer="adamw"))


def step(model, opt, x, y) -> float:
    loss, _ = next_token_loss(model, (x, y))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss.item()


def full(model, opt, local: bool = False) -> dict:
    """Every parameter and optimizer tensor by name, gathered (or this rank's shard)."""
    get = (lambda t: t.to_local().clone()) if local else (lambda t: t.full_tensor())
    out = {"model": {}, "state": {}}
    for name, p in model.named_parameters():
        out["model"][name] = get(p.detach())
        s = opt.state[p]
        out["state"][name] = {k: (get(v) if hasattr(v, "to_local") else v.clone())
                              for k, v in s.items()}
    return out


# ----------------------------------------------------------------------------- modes


def main(mode: str, folder: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    if mode in ("save", "kill"):
        model, opt = sharded_model(seed=0)
        saves = [2] if mode == "save" else [1, 2]
        g = torch.Generator().manual_seed(1000 + rank)
        for s in range(1, 3):
            x = torch.randint(0, 64, (2, 16), generator=g)
            step(model, opt, x[:, :-1], x[:, 1:])
            if s in saves:
                save_sharded(folder / "ckpt", model=model, optimizer=opt, step=s,
                             extra={"step": s, "note": torch.arange(3)},
                             meta={"run": "fsdp-test"})
                dump = full(model, opt)
                if s == saves[0] and rank == 0:
                    save_checkpoint(folder / "full.safetensors", dump)
    elif mode == "load":
        model, opt = sharded_model(seed=123)
        torch.manual_seed(100 + rank)
        extra, meta = load_sharded(folder / "ckpt" / "step_0000002", model=model, optimizer=opt)
        out = {"local": full(model, opt, local=True), "full": full(model, opt),
               "rng": torch.get_rng_state(), "extra": extra, "world_size": meta["world_size"]}
        batch, _ = load_checkpoint(folder / "batch.safetensors")
        x = batch.chunk(dist.get_world_size())[rank]
        out["loss"] = step(model, opt, x[:, :-1], x[:, 1:])
        out["after"] = full(model, opt)["model"]
        save_checkpoint(folder / f"rank{rank}.safetensors", out)
    else:
        raise SystemExit(f"unknown mode {mode!r}; valid: save, kill, load")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
