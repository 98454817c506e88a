"""Command line: week03's training run under torchrun, on one CPU process or many GPUs.

    # this CPU, 2 processes, FSDP2 over gloo
    python -m torch.distributed.run --nproc_per_node=2 -m week11_scale.train \\
        --preset tiny --data pydocs --steps 50 --strategy fsdp --out runs/w11-tiny
    # one 8-GPU machine: nanochat's first speedrun size, 20 tokens per parameter
    torchrun --standalone --nproc_per_node=8 -m week11_scale.train --preset d20 \\
        --data fineweb-edu --device cuda --dtype bf16 --strategy fsdp \\
        --batch-size 32 --block-size 2048 --total-batch-tokens 524288 --tokens-per-param 20
    # continue exactly (at the same or another GPU count with the same global batch)
    torchrun --standalone --nproc_per_node=8 -m week11_scale.train --out runs/d20 --resume

Every flag of ``python -m week03_training.train`` works the same (``--batch-size``
is per rank and micro-batch); the model is ``--model package.module:Class``
(default week04's Llama) at ``--preset`` (any ``LlamaConfig.presets()`` name).
Added here:

- ``--strategy`` none | ddp | zero1 | fsdp (default: ddp under torchrun, none
  without), ``--activation-checkpointing``, ``--param-dtype`` (FSDP2's
  gathered-parameter dtype; default bf16 with ``--dtype bf16``);
- ``--total-batch-tokens``: tokens per optimizer step over every rank;
  ``--grad-accum`` is derived (it must divide evenly, else a clear error);
- ``--tokens-per-param``: the run's length as tokens / parameters (20 is
  Chinchilla's compute-optimal ratio); ``--steps`` is derived.

Rank 0 tokenizes the data first (the others wait, then reuse it), logs,
shows progress and writes ``metrics.jsonl``; every rank writes its shard of
the Distributed Checkpoint folders ``<out>/checkpoints/step_<N>``.
SIGTERM (what torchrun forwards) stops every rank at the same step after a
checkpoint. Bad input ends with one line and exit code 2.

Left out: launching itself (torchrun does it: ``--nnodes``, ``--node_rank``,
``--rdzv-endpoint`` for several machines) and config files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from shared import new_run_dir, seed_everything
from shared.checkpoint import CheckpointError, build_model, read_meta
from week03_training import TrainConfig, TrainingInterrupted
from week03_training.train import PRESETS as TRAIN_PRESETS
from week03_training.train import (
    _config_from_args,
    build_model_class,
    ensure_data,
    load_token_bytes,
    make_parser,
    model_classes,
)
from week11_scale import dcp
from week11_scale.launch import barrier, cleanup, init_distributed
from week11_scale.parallel import STRATEGIES, ParallelConfig
from week11_scale.trainer import DistributedTrainer

DEFAULT_MODEL = "week04_modern_arch_tools:Llama"


def parser():
    ap = make_parser()
    ap.prog = "torchrun ... -m week11_scale.train"
    ap.description = __doc__
    ap.set_defaults(model=None)
    a = ap.add_argument
    a("--strategy", choices=STRATEGIES, default=None,
      help="how the ranks share the work (default: ddp under torchrun, none without)")
    a("--activation-checkpointing", action="store_true", default=None,
      help="recompute every block in the backward instead of keeping its activations")
    a("--param-dtype", choices=("fp32", "bf16"), default=None,
      help="fsdp: dtype of the gathered parameters (default bf16 with --dtype bf16)")
    a("--total-batch-tokens", type=int, default=None,
      help="tokens per optimizer step over every rank (derives --grad-accum)")
    a("--tokens-per-param", type=float, default=None,
      help="train on this many tokens per parameter (derives --steps; 20 = Chinchilla)")
    return ap


def _derive(args, cfg, world: int, n_params: int) -> None:
    """--total-batch-tokens -> grad_accum and --tokens-per-param -> steps, in place."""
    per_micro = cfg.batch_size * cfg.block_size * world
    if args.total_batch_tokens is not None:
        if args.total_batch_tokens <= 0 or args.total_batch_tokens % per_micro:
            raise ValueError(f"--total-batch-tokens {args.total_batch_tokens} is not a positive "
                             f"multiple of batch_size x block_size x ranks = {per_micro}")
        cfg.grad_accum = args.total_batch_tokens // per_micro
    if args.tokens_per_param is not None:
        if args.tokens_per_param <= 0:
            raise ValueError(f"--tokens-per-param must be > 0, got {args.tokens_per_param}")
        tokens = args.tokens_per_param * n_params
        cfg.steps = max(1, round(tokens / (per_micro * cfg.grad_accum)))


def run(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = init_distributed("cuda" if (args.device or "cpu").startswith("cuda") else "cpu")
    try:
        rc = _run(args, env)
    except BaseException:
        cleanup()
        raise
    cleanup(wait=True)
    return rc


def _run(args, env) -> int:
    ckpt, saved = None, {}
    if args.resume is not None:
        if args.resume == "latest":
            if args.out is None:
                raise ValueError("--resume without a folder needs --out RUN_FOLDER")
            ckpt = dcp.latest_sharded(Path(args.out) / "checkpoints")
            if ckpt is None:
                raise CheckpointError(f"--resume: no complete checkpoint in {args.out}/checkpoints")
        else:
            ckpt = Path(args.resume)
        saved = read_meta(Path(ckpt) / "trainer.safetensors")
        args.out = args.out or str(Path(ckpt).parent.parent)
    extra = saved.get("train", {}).get("extra", {})
    model_name = args.model or extra.get("model") or DEFAULT_MODEL
    preset_name = args.preset or extra.get("preset") or "tiny"
    par = saved.get("parallel", {})
    strategy = args.strategy or par.get("strategy") or ("ddp" if env.distributed else "none")
    pcfg = ParallelConfig(
        strategy=strategy,
        activation_checkpointing=bool(args.activation_checkpointing
                                      if args.activation_checkpointing is not None
                                      else par.get("activation_checkpointing", False)),
        param_dtype=args.param_dtype or par.get("param_dtype"))
    classes = None if saved else model_classes(model_name, args.config_class)
    defaults = TRAIN_PRESETS.get(preset_name, TRAIN_PRESETS["tiny"])
    data_arg = args.data or extra.get("data")
    if data_arg is None:
        raise ValueError("--data is required: a week02 prepared folder, 'pydocs', or a text path")
    known = getattr(classes[1], "presets", dict)() if classes else {}
    vocab = args.vocab_size or (known[preset_name].vocab_size if preset_name in known
                                else defaults.vocab_size)
    if not env.is_main:
        barrier()                                  # rank 0 tokenizes first
    data_dir = ensure_data(data_arg, vocab, progress=env.is_main and not args.no_progress)
    if env.is_main:
        barrier()
    base = dict(saved["train"]) if saved else {**TrainConfig().to_dict(), **defaults.train}
    cfg = _config_from_args(args, base)
    cfg.device = env.device.type
    cfg.extra = {"model": model_name, "preset": preset_name, "data": str(data_dir)}

    from week02_bpe import TokenLoader
    seed_everything(cfg.seed)
    shard = dict(rank=env.rank, world_size=env.world_size, seed=cfg.seed)
    train_loader = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "train", **shard)
    try:
        val_loader = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "val", **shard)
    except ValueError as e:
        print(f"warning: no validation ({e})", file=sys.stderr)
        val_loader = None
    if saved:
        model = build_model(saved["model"], source=f"checkpoint {ckpt}")
    else:
        model = build_model_class(*classes, preset_name, train_loader.vocab_size,
                                  cfg.block_size)
    n_params = sum(p.numel() for p in model.parameters())
    if not saved:
        _derive(args, cfg, env.world_size, n_params)
    if args.out:
        out = Path(args.out)
    else:                                            # rank 0 names it, every rank uses it
        holder = [str(new_run_dir(f"week11-{preset_name}-{strategy}")) if env.is_main else ""]
        if env.distributed:
            torch.distributed.broadcast_object_list(holder, src=0)
        out = Path(holder[0])
    if ckpt is None and dcp.latest_sharded(out / "checkpoints") is not None:
        raise ValueError(f"--out {out} already holds checkpoints; add --resume to continue that "
                         "run, or choose another --out")
    trainer = DistributedTrainer(model, train_loader, cfg, parallel=pcfg, env=env,
                                 val_loader=val_loader, token_bytes=load_token_bytes(data_dir),
                                 run_dir=out)
    if ckpt is not None:
        step = trainer.resume(ckpt)
        if env.is_main:
            print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    if env.is_main:
        print(f"{preset_name}: {n_params / 1e6:.2f}M parameters, {strategy} on "
              f"{env.world_size} x {env.device.type}, {trainer.tokens_per_step} tokens/step, "
              f"{cfg.steps} steps, run folder {out}", file=sys.stderr)
    try:
        trainer.fit()
    except TrainingInterrupted as e:
        if env.is_main:
            print(f"{e}\nresume with: torchrun ... -m week11_scale.train --out {out} --resume",
                  file=sys.stderr)
        return 128 + e.signum
    if env.is_main:
        last = trainer.history[-1] if trainer.history else float("nan")
        print(json.dumps({"step": trainer.step, "loss": last, "world_size": env.world_size,
                          "strategy": strategy, "checkpoint": str(trainer.latest())}))
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
