"""Supervised fine-tuning: the base model becomes an assistant that calls its tools.

    python -m week09_alignment.sft                          # tiny CPU preset, from --init auto
    python -m week09_alignment.sft --preset gpu --data default,smoltalk,gsm8k --device cuda

The data are conversations in week04's format (``week09_alignment.data``: the
project's offline mixture, or SmolTalk and GSM8K by name). Each is rendered
by week04's ``render_conversation``: the loss mask is 1 on what the assistant
writes (its text, its tool calls, ``<|assistant_end|>``) and 0 on ``<|bos|>``,
the user turns, ``<|assistant_start|>`` and every tool output (at inference
the tool writes those; training on them would teach the model to imagine
tool results). The tests hold this mask equal to TRL's ``assistant_only_loss``
(and, for prompt/completion pairs, ``completion_only_loss``) on the same
conversations, through ``hf_tokenizer``.

Packing (``SFTConfig.packing``, on by default): the whole set is packed once
into rows of ``block_size + 1`` tokens by best-fit decreasing
(``shared.pack_documents``, what TRL's ``packing_strategy="bfd"`` does), and
every row carries its documents' labels, so the model runs with week01's
``segments=`` mask: no conversation attends to another, positions restart at
each one (TRL's padding-free packing with ``position_ids``), and the target
that would cross from one conversation into the next is masked. Padding
positions are masked too. ``packing=False`` pads each batch instead.

Training is week03's ``Trainer`` with ``sft_loss`` as its ``loss_fn``
(``week09_alignment.common.run_stage``: resumable, metrics for the dashboard);
the held-out assistant-token loss is the validation loss, and the command
prints it with the tool-task accuracy (week05's ``tool_task``, with the tools)
before and after.

Left out: chat templates of other model families, multi-epoch schedules over a
fixed dataset (batches are sampled), NEFTune and other tricks.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from shared import SampledBatches, pack_documents, pad_batch, seed_everything
from week03_training import TrainConfig, token_cross_entropy
from week04_modern_arch_tools import render_conversation

# ---------------------------------------------------------------- rows and batches


def encode(conversations: list[list[dict]], tokenizer, block_size: int
           ) -> tuple[list[tuple[list[int], list[int]]], int]:
    """(ids, mask) of each conversation, cut to ``block_size + 1`` tokens; and how many were
    cut. A conversation whose cut leaves no trained token is dropped (counted as cut)."""
    rows, cut = [], 0
    for conv in conversations:
        ids, mask = render_conversation(conv, tokenizer)
        if len(ids) > block_size + 1:
            cut += 1
            ids, mask = ids[:block_size + 1], mask[:block_size + 1]
        if sum(mask[1:]):
            rows.append((ids, mask))
    return rows, cut


class PackedRows:
    """Every conversation best-fit packed once into (R, T) rows: ``x``, ``y``, ``segments``."""

    def __init__(self, rows: list[tuple[list[int], list[int]]], block_size: int):
        if not rows:
            raise ValueError("no conversations to pack")
        self.x, self.y, self.segments = pack_documents([r[0] for r in rows], block_size,
                                                       [r[1] for r in rows])  # (R, T) each
        self.documents = len(rows)

    def __len__(self) -> int:
        return self.x.size(0)

    def collate(self, picks: list[int]) -> dict:
        i = torch.tensor(picks, dtype=torch.long)
        return {"x": self.x[i], "y": self.y[i], "segments": self.segments[i]}

    def fill(self) -> float:
        """The fraction of row positions holding a real token (not padding)."""
        return float((self.segments >= 0).float().mean())


def padded_collate(rows: list[tuple[list[int], list[int]]]) -> dict:
    x, y = pad_batch([r[0] for r in rows], [r[1] for r in rows])  # (B, T)
    return {"x": x, "y": y}


def make_loader(rows, block_size: int, batch_size: int, packing: bool = True, seed: int = 0
                ) -> SampledBatches:
    """Random batches (resumable) of packed rows or of padded conversations."""
    if packing:
        packed = PackedRows(rows, block_size)
        return SampledBatches(list(range(len(packed))), batch_size, packed.collate, seed=seed,
                              replace=False)
    return SampledBatches(rows, batch_size, padded_collate, seed=seed, replace=False)


def sft_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """week03 ``loss_fn``: mean cross-entropy over the trained (assistant) targets; packed
    rows run with their ``segments`` mask."""
    x, y = batch["x"], batch["y"]  # (B, T)
    seg = batch.get("segments")
    logits = model(x, segments=seg) if seg is not None else model(x)  # (B, T, V)
    trained = int((y >= 0).sum())
    return token_cross_entropy(logits, y), {"trained_tokens": float(trained)}


# ---------------------------------------------------------------- the stage


@dataclass
class SFTConfig:
    """One SFT run: the data, the batches, the optimisation."""

    data: str = "default"           # comma list: default | smoltalk | gsm8k | a .jsonl of messages
    limit: int | None = None        # conversations per named dataset
    mixture: dict = field(default_factory=dict)  # data.MixtureConfig fields
    block_size: int = 256           # cut to the model's block size when smaller
    packing: bool = True
    batch_size: int = 16
    steps: int = 300
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    pretrain_mix: float = 0.0       # fraction of rows that are pydocs text (rehearsal), 0..0.9
    eval_every: int = 100
    eval_conversations: int = 200
    tool_eval: int = 30             # examples per week05 tool task before / after (0: skip)
    seed: int = 0
    device: str = "cpu"
    dtype: str = "fp32"


PRESETS = {
    # ~12 minutes on 2 CPU cores from the week05 baseline (tool conversations weighted up)
    "tiny": SFTConfig(steps=600, mixture={"tools_per_kind": 900, "multi_turn": 500}),
    # GPU size: the same code with real data by name and longer rows
    "gpu": SFTConfig(data="default,smoltalk,gsm8k", limit=200_000, block_size=2048,
                     batch_size=32, steps=3000, lr=3e-4, warmup_steps=100, eval_every=500,
                     eval_conversations=2000, tool_eval=200, device="cuda", dtype="bf16",
                     mixture={"scale": 10}),
    # seconds: the command's test
    "smoke": SFTConfig(block_size=128, batch_size=4, steps=3, eval_every=3,
                       eval_conversations=8, tool_eval=0, mixture={"scale": 0.02}),
}


def pretraining_rows(tokenizer, block_size: int, n: int, seed: int = 0
                     ) -> list[tuple[list[int], list[int]]]:
    """``n`` windows of ``block_size + 1`` tokens of pydocs training text (the week05
    baseline's own pretraining data), every token but the first trained: rehearsal rows."""
    import random

    from shared import load_corpus
    from week05_eval.metrics import encode_docs

    docs = list(load_corpus("pydocs").train_docs)
    rng = random.Random(f"pretrain-{seed}")
    rng.shuffle(docs)
    ids: list[int] = []
    need = (n + 1) * (block_size + 1)
    for d in docs:
        ids += encode_docs(tokenizer, d.text)
        if len(ids) >= need:
            break
    W = block_size + 1
    starts = [rng.randrange(len(ids) - W) for _ in range(n)]
    return [(ids[i:i + W], [0] + [1] * block_size) for i in starts]


def mixture_config(over: dict | None = None):
    """``data.MixtureConfig`` with ``over``'s fields; ``scale`` multiplies every count."""
    from dataclasses import fields

    from week09_alignment.data import MixtureConfig

    over = dict(over or {})
    scale = over.pop("scale", 1.0)
    cfg = MixtureConfig(**over)
    counts = {f.name: max(1, round(getattr(cfg, f.name) * scale)) for f in fields(cfg)
              if isinstance(getattr(cfg, f.name), int) and not isinstance(getattr(cfg, f.name), bool)}
    return replace(cfg, **counts)


def load_conversations(spec: str, split: str, seed: int = 0, limit: int | None = None,
                       mixture: dict | None = None) -> list[list[dict]]:
    """The conversations of a comma-separated ``--data`` spec (see ``SFTConfig.data``)."""
    from week09_alignment import data

    out: list[list[dict]] = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        if name == "default":
            out += data.default_mixture(mixture_config(mixture), split=split, seed=seed)
        elif name == "smoltalk":
            out += data.load_smoltalk("train" if split == "train" else "test", limit=limit)
        elif name == "gsm8k":
            out += data.load_gsm8k_sft("train" if split == "train" else "test", limit=limit)
        elif Path(name).is_file():
            rows = [json.loads(line) for line in Path(name).read_text().splitlines() if line]
            out += [r["messages"] if isinstance(r, dict) else r for r in rows]
        else:
            raise ValueError(f"unknown SFT data {name!r}; valid: default, smoltalk, gsm8k or a "
                             ".jsonl file of {{'messages': [...]}} rows")
    if not out:
        raise ValueError(f"--data {spec!r} gave no conversations")
    return out


def tool_accuracy(model, tokenizer, n: int, seed: int = 0, max_new_tokens: int = 128) -> dict:
    """week05's three tool tasks (held-out problems), answered with the tools: accuracy each
    (``max_new_tokens`` counts the forced tool output too: a search result is ~60 tokens)."""
    if n <= 0:
        return {}
    from week05_eval import evaluate_generative, tool_task
    from week05_eval.report import default_tools

    tools = default_tools(seed)
    try:
        return {kind: evaluate_generative(model, tokenizer, tool_task(kind, n=n, seed=seed),
                                          style="chat", tools=tools,
                                          max_new_tokens=max_new_tokens).accuracy
                for kind in ("arithmetic", "string", "facts")}
    finally:
        for tool in tools.values():
            getattr(tool, "close", lambda: None)()


def pydocs_bpb(model, tokenizer, max_tokens: int = 20_000) -> float:
    """Bits per byte on pydocs' validation documents: what the base knew before SFT."""
    from shared import load_corpus
    from week05_eval.metrics import encode_docs, evaluate_ids, token_bytes_of

    ids = encode_docs(tokenizer, [d.text for d in load_corpus("pydocs").val_docs[:40]])
    model.eval()
    return evaluate_ids(model, ids[:max_tokens + 1], token_bytes_of(tokenizer)).bpb


@torch.no_grad()
def heldout_loss(model, rows, block_size: int, batch_size: int = 16) -> float:
    """Mean assistant-token loss of held-out conversations (padded, one pass)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(rows), batch_size):
        b = padded_collate(rows[i:i + batch_size])
        n = int((b["y"] >= 0).sum())
        total += float(sft_loss(model, b)[0]) * n
        count += n
    return total / max(count, 1)


def run_sft(cfg: SFTConfig, init: str = "auto", out: str | Path = "runs/week09-sft",
            progress: bool = True, resume: bool = True) -> dict:
    """Train one SFT stage from ``init`` into ``out``; the before/after figures."""
    from week09_alignment.common import load_start, run_stage, update_stage

    seed_everything(cfg.seed)
    model, tok, where = load_start(init, progress=progress)
    model.to(cfg.device)
    block = min(cfg.block_size, model.config.block_size)
    train, cut = encode(load_conversations(cfg.data, "train", cfg.seed, cfg.limit, cfg.mixture),
                        tok, block)
    if not 0.0 <= cfg.pretrain_mix <= 0.9:
        raise ValueError(f"pretrain_mix must be in [0, 0.9], got {cfg.pretrain_mix}")
    if cfg.pretrain_mix > 0:  # rehearsal: whole rows of pretraining text among the chats
        chat_rows = len(PackedRows(train, block)) if cfg.packing else len(train)
        n = round(chat_rows * cfg.pretrain_mix / (1 - cfg.pretrain_mix))
        train = train + pretraining_rows(tok, block, n, cfg.seed)
    test, _ = encode(load_conversations("default", "test", cfg.seed, None, cfg.mixture), tok,
                     block)
    test = test[:cfg.eval_conversations]
    before = {"heldout_loss": heldout_loss(model, test, block),
              "pydocs_bpb": pydocs_bpb(model, tok),
              "tools": tool_accuracy(model, tok, cfg.tool_eval, cfg.seed)}
    loader = make_loader(train, block, cfg.batch_size, cfg.packing, cfg.seed)
    val = SampledBatches(test, cfg.batch_size, padded_collate, seed=cfg.seed + 1, replace=False)
    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, block_size=block, lr=cfg.lr,
                     weight_decay=cfg.weight_decay, betas=(0.9, 0.95), schedule="cosine",
                     warmup_steps=cfg.warmup_steps, min_lr_ratio=0.1, grad_clip=1.0,
                     eval_every=cfg.eval_every, eval_batches=4, log_every=10,
                     ckpt_every=max(cfg.steps // 4, 1), keep_last=1, device=cfg.device,
                     dtype=cfg.dtype, seed=cfg.seed, progress=progress,
                     extra={"stage": "sft", "init": where})
    path, trainer = run_stage(model, tok, loader, tc, out, loss_fn=sft_loss, val_loader=val,
                              desc="sft", resume=resume,
                              meta={"stage": "sft", "init": where, "config": asdict(cfg)})
    after = {"heldout_loss": heldout_loss(model, test, block),
             "pydocs_bpb": pydocs_bpb(model, tok),
             "tools": tool_accuracy(model, tok, cfg.tool_eval, cfg.seed)}
    summary = {"stage": "sft", "init": where, "model": str(path), "conversations": len(train),
               "cut": cut, "steps": trainer.step, "before": before, "after": after}
    if cfg.packing:
        summary["rows_fill"] = PackedRows(train, block).fill()
    update_stage(out, summary=summary)
    return summary


# ---------------------------------------------------------------- command line


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m week09_alignment.sft", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    p.add_argument("--init", default="auto",
                   help="auto | baseline | tiny | a checkpoint or stage folder (default: auto)")
    p.add_argument("--out", default="runs/week09-sft", help="stage folder (resumed if present)")
    p.add_argument("--data", help="override the preset's data: default,smoltalk,gsm8k,<file>")
    p.add_argument("--steps", type=int)
    p.add_argument("--no-packing", action="store_true", help="pad each batch instead")
    p.add_argument("--pretrain-mix", type=float,
                   help="fraction of rows that are pydocs text: rehearsal against forgetting")
    p.add_argument("--device")
    p.add_argument("--fresh", action="store_true", help="ignore checkpoints already in --out")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    cfg = PRESETS[args.preset]
    over = {k: v for k, v in (("data", args.data), ("steps", args.steps),
                              ("device", args.device), ("pretrain_mix", args.pretrain_mix))
            if v is not None}
    if args.no_packing:
        over["packing"] = False
    cfg = replace(cfg, **over)
    s = run_sft(cfg, args.init, args.out, progress=not args.no_progress, resume=not args.fresh)
    b, a = s["before"], s["after"]
    print(f"SFT from {s['init']}: {s['conversations']} conversations ({s['cut']} cut), "
          f"{s['steps']} steps -> {s['model']}")
    print(f"held-out assistant loss {b['heldout_loss']:.3f} -> {a['heldout_loss']:.3f}")
    print(f"pydocs bits per byte    {b['pydocs_bpb']:.3f} -> {a['pydocs_bpb']:.3f} "
          "(what SFT costs the base)")
    for kind in a["tools"]:
        print(f"tool task {kind:10s} {b['tools'][kind]:.0%} -> {a['tools'][kind]:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
