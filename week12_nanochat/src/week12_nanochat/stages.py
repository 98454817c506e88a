"""The speedrun's training stages, each composed from the week that teaches it.

- ``tokenizer``: week02's BPE (its ``SPECIAL_TOKENS`` hold the chat and tool specials) on the
  pretraining text, then week02's ``prepare`` shards the corpus;
- ``base``: the preset's model (week04 ``LlamaConfig.from_depth``, week08 where asked) trained
  by week03's ``Trainer`` on week02's ``TokenLoader`` (with week05's ``ToolMixLoader`` putting
  week04 tool conversations in a few rows of each batch, so the chat format is not new to
  SFT); under torchrun the same code runs week11's ``DistributedTrainer`` (DDP) on every rank;
- ``sft``: week09's ``run_sft`` on its offline mixture (tool conversations, identity, pydocs
  Q&A, multi-turn, refusals), SmolTalk and GSM8K when asked, plus week12's ``reading_conversations``
  (taught facts read back from retrieved memories, the RAG prompt the engine builds), with
  week09's pretraining rehearsal (``pretrain_mix``);
- ``rl``: week09's GRPO (``RolloutLoader`` + ``GRPOLoss`` through ``common.run_stage``) on
  arithmetic with the calculator.

Every stage writes its folder under the speedrun's out folder and returns its metrics; the
checkpoints of week03's Trainer make a killed stage resume exactly.

Left out: SFT and RL on several GPUs (under torchrun they run on rank 0 alone), a stage
between base and SFT (nanochat's midtraining: the tool rows of the base batches stand in).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from pathlib import Path

import torch

from shared import write_json_atomic
from week02_bpe.data import HFSource

# ---------------------------------------------------------------- pretraining data

PRETRAIN_SOURCES = {
    "pydocs": "pydocs",
    # FineWeb-EDU's 10B-token sample, the text of nanochat's first speedruns
    "fineweb-edu": HFSource("HuggingFaceFW/fineweb-edu", name="sample-10BT"),
    # ClimbMix (NVIDIA's clustered web mix), the detokenized text release
    "climbmix": HFSource("OptimalScale/ClimbMix"),
}


def pretrain_source(name: str, limit: int | None = None):
    """week02's source for ``--pretrain-data``: a name above or a local text file / folder or
    a FineWeb-shaped ``.parquet`` / ``.jsonl`` file (a ``text`` column)."""
    from week02_bpe.data import parse_source

    if name in PRETRAIN_SOURCES:
        src = PRETRAIN_SOURCES[name]
    elif Path(name).exists():
        src = parse_source(name)
    else:
        raise ValueError(f"unknown --pretrain-data {name!r}; valid: "
                         f"{', '.join(PRETRAIN_SOURCES)} or a local path (.txt/.md file or "
                         "folder, or a .parquet/.jsonl file with a 'text' column)")
    if isinstance(src, HFSource) and limit is not None:
        src = replace(src, limit=limit)
    return src


def pretrain_texts(source, max_chars: int) -> list[str]:
    """The first documents of ``source`` up to ``max_chars`` characters (the tokenizer's)."""
    from week02_bpe import iter_documents

    texts, total = [], 0
    for _, text in iter_documents(source):
        texts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not texts:
        raise ValueError(f"the pretraining data {source!r} holds no documents")
    return texts


# ---------------------------------------------------------------- tokenizer


def train_tokenizer(p, folder: Path, data: str, progress: bool = True) -> dict:
    """BPE tokenizer + token shards into ``folder`` (``tokenizer.json``, ``data/``)."""
    from week02_bpe import BPETokenizer, prepare

    source = pretrain_source(data, p.data_limit)
    folder.mkdir(parents=True, exist_ok=True)
    tok = BPETokenizer.train(pretrain_texts(source, p.tokenizer_chars), p.vocab_size,
                             progress=progress)
    tok.save(folder / "tokenizer.json")
    gpu = p.device == "cuda"  # a GPU node's many cores and tiktoken's encoder (same ids)
    prepare(source, tok, folder / "data", num_workers=None if gpu else 1, progress=progress,
            encoder="tiktoken" if gpu else "python")
    index = json.loads((folder / "data" / "index.json").read_text())
    return {"vocab_size": tok.vocab_size, "data": data,
            "train_tokens": index["splits"]["train"]["tokens"],
            "val_tokens": index["splits"]["val"]["tokens"]}


# ---------------------------------------------------------------- base


def build_model(p, vocab_size: int, seed: int):
    from shared.checkpoint import resolve

    torch.manual_seed(seed)
    return resolve(p.model_class())(p.model_config(vocab_size))


def train_base(p, out: Path, env, progress: bool = True) -> dict:
    """Pretrain the preset's model on the tokenizer stage's shards into ``out / "base"``."""
    from week02_bpe import BPETokenizer, TokenLoader, token_bytes
    from week03_training import TrainConfig, Trainer
    from week05_eval.mixture import ToolMixLoader
    from week09_alignment.common import save_stage

    folder, data_dir = out / "base", out / "tokenizer" / "data"
    tok = BPETokenizer.load(out / "tokenizer" / "tokenizer.json")
    model = build_model(p, tok.vocab_size, p.seed)
    n_params = sum(t.numel() for t in model.parameters())
    steps = p.steps_for(n_params)
    tc = TrainConfig(steps=steps, batch_size=p.batch_size, block_size=p.block_size,
                     grad_accum=p.grad_accum, optimizer=p.optimizer, lr=p.base_lr,
                     warmup_steps=min(p.warmup_steps, steps // 10), schedule="cosine",
                     min_lr_ratio=0.1, weight_decay=0.1, eval_every=max(steps // 5, 1),
                     eval_batches=4, log_every=10, ckpt_every=max(steps // 4, 1), keep_last=1,
                     device=env.device.type, dtype=p.dtype, seed=p.seed, progress=progress,
                     extra={"stage": "base", "data_dir": str(data_dir.resolve()),
                            "data_source": p.pretrain_data, "preset": p.name})
    shard = dict(rank=env.rank, world_size=env.world_size, seed=p.seed)
    loader = TokenLoader(data_dir, p.batch_size, p.block_size, "train", **shard)
    if p.tool_rows:
        from week09_alignment.data import tool_conversations

        convs = tool_conversations(p.tool_conversations, p.seed, "train", p.tool_fresh)
        loader = ToolMixLoader(loader, convs, tok, p.tool_rows, seed=p.seed)
    val = TokenLoader(data_dir, p.batch_size, p.block_size, "val", **{**shard, "seed": p.seed + 1})
    kw = dict(val_loader=val, token_bytes=token_bytes(tok), run_dir=folder / "train", desc="base")
    if p.moe:
        from week08_sota import balance_bias_hook, moe_loss_fn

        kw.update(loss_fn=moe_loss_fn, hooks=[balance_bias_hook])
    if env.distributed:
        from week11_scale.parallel import ParallelConfig
        from week11_scale.trainer import DistributedTrainer

        trainer = DistributedTrainer(model, loader, tc, parallel=ParallelConfig(strategy="ddp"),
                                     env=env, **kw)
    else:
        trainer = Trainer(model, loader, tc, **kw)
    if trainer.latest() is not None:
        step = trainer.resume()
        if env.is_main:
            print(f"[speedrun] base resumed from step {step}", flush=True)
    trainer.fit()
    val_metrics = trainer.evaluate()
    info = {"params": n_params, "steps": trainer.step,
            "tokens": trainer.step * tc.tokens_per_step * env.world_size,
            "final_loss": trainer.history[-1] if trainer.history else None,
            "val_bpb": val_metrics.get("val_bpb"), "val_loss": val_metrics.get("val_loss")}
    if env.is_main:
        save_stage(folder, model.eval(), tok, {"stage": "base", "preset": p.name,
                                               "train": {"extra": tc.extra}, "base": info})
    return info


# ---------------------------------------------------------------- sft


def reading_file(p, folder: Path) -> Path:
    """week12's taught facts (train split) as week10 RAG reading conversations, one JSON
    ``{"messages": [...]}`` row each (week09's ``--data`` file format), atomically."""
    from week12_nanochat.teachdata import make_facts, reading_conversations

    folder.mkdir(parents=True, exist_ok=True)
    convs = reading_conversations(make_facts(p.taught_facts, seed=p.seed, split="train"),
                                  seed=p.seed)
    path = folder / "reading.jsonl"
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        for conv in convs:
            f.write(json.dumps({"messages": conv}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def train_sft(p, out: Path, progress: bool = True) -> dict:
    """week09's SFT from ``out / "base"`` into ``out / "sft"``."""
    from week09_alignment.sft import SFTConfig, run_sft

    folder = out / "sft"
    data = [d for d in p.sft_data.split(",") if d != "default"]
    mixture = {**p.mixture, "fresh_tools": p.tool_fresh}
    cfg = SFTConfig(data=",".join(["default", str(reading_file(p, folder))] + data),
                    mixture=mixture, block_size=p.block_size,
                    batch_size=p.sft_batch, steps=p.sft_steps, lr=p.sft_lr,
                    warmup_steps=min(20, p.sft_steps // 10), pretrain_mix=p.pretrain_mix,
                    eval_every=max(p.sft_steps // 4, 1), eval_conversations=min(200, 4 * p.sft_batch),
                    tool_eval=0, seed=p.seed, device=p.device, dtype=p.dtype)
    s = run_sft(cfg, init=str(out / "base"), out=folder, progress=progress)
    return {"steps": s["steps"], "conversations": s["conversations"], "cut": s["cut"],
            "tokens": s["steps"] * p.sft_batch * p.block_size,
            "heldout_loss": s["after"]["heldout_loss"], "pydocs_bpb": s["after"]["pydocs_bpb"],
            "pydocs_bpb_before": s["before"]["pydocs_bpb"]}


# ---------------------------------------------------------------- rl


def train_rl(p, out: Path, progress: bool = True) -> dict:
    """week09's GRPO on arithmetic with the calculator, from ``out / "sft"`` into ``out / "rl"``."""
    from week03_training import TrainConfig
    from week04_modern_arch_tools import Calculator
    from week09_alignment.common import load_start, run_stage
    from week09_alignment.grpo import GRPOConfig, GRPOLoss, RolloutLoader, frozen_reference
    from week09_alignment.rewards import RewardConfig, reward, rl_prompts

    model, tok, where = load_start(out / "sft", progress=progress)
    model.to(p.device)
    cfg = GRPOConfig(group_size=p.rl_group, prompts_per_step=p.rl_prompts_per_step,
                     num_iterations=2, max_new_tokens=p.rl_max_new_tokens, lr=p.rl_lr,
                     steps=p.rl_steps)
    rcfg = RewardConfig()
    reference = frozen_reference(model) if cfg.beta > 0 else None
    loader = RolloutLoader(model, tok, rl_prompts("arithmetic", p.rl_train, seed=p.seed,
                                                  split="train"),
                           cfg, {"calculator": Calculator()}, seed=p.seed, reference=reference,
                           reward_fn=lambda ex, run: reward(ex, run, tok, rcfg))
    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.group_size * cfg.prompts_per_step,
                     block_size=model.config.block_size, lr=cfg.lr, weight_decay=0.0,
                     schedule="constant", warmup_steps=0, grad_clip=1.0, device=p.device,
                     dtype=p.dtype, eval_every=0, ckpt_every=max(cfg.steps // 4, 1),
                     keep_last=1, seed=p.seed, optimizer="torch-adamw", progress=progress,
                     extra={"grpo": asdict(cfg), "kind": "arithmetic", "init": where})
    _, trainer = run_stage(model, tok, loader, tc, out / "rl", loss_fn=GRPOLoss(cfg, reference),
                           desc="rl", meta={"stage": "rl", "init": where, "grpo": asdict(cfg)})
    rewards = [json.loads(line).get("reward_mean") for line in
               (out / "rl" / "train" / "metrics.jsonl").read_text().splitlines() if line]
    rewards = [r for r in rewards if r is not None]
    return {"steps": trainer.step, "reward_first": rewards[0] if rewards else None,
            "reward_last": rewards[-1] if rewards else None}


def write_stage_file(folder: Path, entries: dict) -> Path:
    """Merge ``entries`` into ``folder / "stage.json"`` atomically (week09's layout)."""
    from week09_alignment.common import read_stage

    folder.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(folder / "stage.json", {**read_stage(folder), **entries})
