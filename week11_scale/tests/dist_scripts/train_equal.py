"""Under torchrun: train week04's tiny Llama with DistributedTrainer under each strategy named
on the command line and dump, from rank 0, the step losses, the first step's full gradients and
the final full parameters (torch.save), for the test to compare with one process.

    train_equal.py DATA OUT STEPS GRAD_ACCUM OPTIMIZER STRATEGY[,STRATEGY...] [ac][,bf16]
"""

import sys

import torch

from shared.exercises import apply_env_swaps
from week02_bpe import TokenLoader
from week03_training import TrainConfig
from week04_modern_arch_tools import Llama, LlamaConfig
from week11_scale.launch import cleanup, init_distributed
from week11_scale.parallel import ParallelConfig
from week11_scale.trainer import DistributedTrainer


def full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def gradient_syncs(t, loader, strategy):
    """(syncs in a step of grad_accum micro-batches, syncs in a step of one): DDP's comm-hook
    calls (one per gradient bucket it all-reduces), FSDP2's gradient reductions (one per
    fully_shard group: torch's internal foreach_reduce, the only way to count them)."""
    calls = [0]
    if strategy in ("ddp", "zero1"):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        def hook(state, bucket):
            calls[0] += 1
            return allreduce_hook(state, bucket)
        t.model.register_comm_hook(None, hook)
    else:                                      # FSDP2 reduces each group's grads here
        from torch.distributed.fsdp._fully_shard import _fsdp_param_group as group
        reduce = group.foreach_reduce

        def counted(*a, **k):
            calls[0] += 1
            return reduce(*a, **k)
        group.foreach_reduce = counted
    t.train_step()
    many, calls[0] = calls[0], 0
    t.train_step([loader.next_batch()])
    return many, calls[0]


def main():
    data, out, steps, accum, optimizer, strategies = sys.argv[1:7]
    flags = sys.argv[7].split(",") if len(sys.argv) > 7 else []
    ac, dtype = "ac" in flags, "bf16" if "bf16" in flags else "fp32"
    apply_env_swaps()                       # a learner's exercise, when a test runs one
    env = init_distributed("cpu")
    torch.set_num_threads(1)
    results = {}
    for strategy in strategies.split(","):
        cfg = TrainConfig(steps=int(steps), batch_size=2, block_size=16, grad_accum=int(accum),
                          optimizer=optimizer, lr=1e-2, muon_lr=0.02, warmup_steps=1,
                          eval_every=0, progress=False, save_final=False, write_metrics=False,
                          grad_clip=1.0, dtype=dtype)
        loader = TokenLoader(data, cfg.batch_size, cfg.block_size, seed=3, rank=env.rank,
                             world_size=env.world_size)
        torch.manual_seed(0)
        model = Llama(LlamaConfig(vocab_size=loader.vocab_size, block_size=16, n_layer=2,
                                  n_head=4, n_kv_head=2, n_embd=32))
        t = DistributedTrainer(model, loader, cfg, env=env, run_dir=f"{out}.{strategy}",
                               parallel=ParallelConfig(strategy=strategy,
                                                       activation_checkpointing=ac))
        first = t.train_step()
        grads = {n: full(p.grad).clone() for n, p in t.raw_model.named_parameters()}
        infos = [first] + [t.train_step() for _ in range(int(steps) - 1)]
        params = {n: full(p.detach()).clone() for n, p in t.raw_model.named_parameters()}
        results[strategy] = {"losses": [i["loss"] for i in infos],
                             "grad_norms": [i["grad_norm"] for i in infos],
                             "grads": grads, "params": params, "tokens_per_step": t.tokens_per_step}
        if "syncs" in flags:                   # a fresh trainer: hooks go on before a backward
            torch.manual_seed(0)
            probe = DistributedTrainer(Llama(model.config), loader, cfg, env=env,
                                       run_dir=f"{out}.probe", parallel=ParallelConfig(strategy))
            results[strategy]["syncs"] = gradient_syncs(probe, loader, strategy)
    if env.is_main:
        torch.save(results, out)
    cleanup(wait=True)


if __name__ == "__main__":
    main()
