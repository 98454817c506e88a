"""Train a character-level GPT on the embedded corpus with a plain loop.

    python -m week01_transformer.train_char --preset char-tiny --steps 1500
    python -m week01_transformer.train_char --no-causal      # the lesson's experiments:
    python -m week01_transformer.train_char --no-attn-scale  # GPTConfig's switches
    python -m week01_transformer.train_char --norm-position post

Reads the ``pydocs`` corpus (or any local text file or folder, ``--corpus``),
builds a ``CharTokenizer`` over all of it, and trains a ``GPT`` on random
windows of the train split with AdamW, a short warmup and cosine decay. It
logs train/val loss through ``shared.MetricsLogger`` (``runs/week01-char-*``),
compares the loss with the unigram baseline (the entropy of the character
distribution, in nats: the best loss a model that ignores context can reach),
saves the model with ``shared.save_model`` next to ``tokenizer.json``, and
prints samples.

Left out on purpose: gradient accumulation, mixed precision, resuming, data
loaders and learning-rate search. Week03 builds the real training loop.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from shared import (
    MetricsLogger,
    load_corpus,
    load_weights,
    new_run_dir,
    pick_device,
    save_model,
    seed_everything,
)
from week01_transformer.config import NORM_POSITIONS
from week01_transformer.model import GPT, PRESETS, GPTConfig
from week01_transformer.tokenizer import CharTokenizer

MODEL_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"

# ---------------------------------------------------------------- data


def unigram_entropy(ids: torch.Tensor, vocab_size: int) -> float:
    """Entropy (nats) of the token distribution: the loss of the best context-free model."""
    counts = torch.bincount(ids, minlength=vocab_size).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def get_batch(data: torch.Tensor, batch_size: int, block_size: int,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows: inputs x (B, T) and next-token targets y (B, T)."""
    if data.numel() <= block_size:
        raise ValueError(f"the text has {data.numel()} tokens, fewer than block_size + 1 = "
                         f"{block_size + 1}: use a longer text or a smaller --block-size")
    starts = torch.randint(0, data.numel() - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[s:s + block_size] for s in starts.tolist()])  # (B, T)
    y = torch.stack([data[s + 1:s + 1 + block_size] for s in starts.tolist()])  # (B, T)
    return x, y


@torch.no_grad()
def estimate_loss(model: GPT, data: torch.Tensor, batch_size: int, block_size: int,
                  batches: int, seed: int = 0) -> float:
    """Mean loss over ``batches`` fixed random batches (same windows every call)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(batches):
        x, y = get_batch(data, batch_size, block_size, g)
        total += model.loss(x.to(device), y.to(device)).item()
    model.train(was_training)
    return total / batches


# ---------------------------------------------------------------- training


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    train_loss: float
    val_loss: float
    unigram_loss: float
    seconds: float
    sample: str


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup for ``warmup`` steps, then cosine decay to lr / 10."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def train(args: argparse.Namespace) -> TrainResult:
    seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    corpus = load_corpus(args.corpus)
    tok = CharTokenizer.from_text(corpus.text)
    train_text, val_text = corpus.train, corpus.val
    if not train_text or not val_text:  # e.g. a single file: split its text 90/10 instead
        cut = int(len(corpus.text) * 0.9)
        train_text, val_text = corpus.text[:cut], corpus.text[cut:]
    train_ids = torch.tensor(tok.encode(train_text), dtype=torch.long)
    val_ids = torch.tensor(tok.encode(val_text), dtype=torch.long)
    baseline = unigram_entropy(train_ids, tok.vocab_size)

    overrides = {"vocab_size": tok.vocab_size, "attention": args.attention}
    for name in ("block_size", "n_layer", "n_head", "n_embd"):
        if getattr(args, name):
            overrides[name] = getattr(args, name)
    if args.dropout is not None:
        overrides["dropout"] = args.dropout
    if not args.attn_scale:
        overrides["attn_scale"] = False
    if not args.causal:
        overrides["causal"] = False
    if args.norm_position != "pre":
        overrides["norm_position"] = args.norm_position
    config = GPTConfig.preset(args.preset, **overrides)
    model = GPT(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99),
                            weight_decay=args.weight_decay)
    run_dir = Path(args.run_dir) if args.run_dir else new_run_dir("week01-char")
    print(f"corpus {args.corpus!r}: {train_ids.numel():,} train / {val_ids.numel():,} val chars, "
          f"vocab {tok.vocab_size}; model {model.num_params():,} parameters on {device}")
    print(f"unigram baseline (entropy of the character distribution): {baseline:.3f} nats")

    g = torch.Generator().manual_seed(args.seed)
    B, T = args.batch_size, config.block_size
    warmup = max(1, min(args.warmup, args.steps // 10))
    t0 = time.time()
    train_loss = val_loss = float("nan")
    with MetricsLogger(run_dir, config={"args": vars(args), "model": config.to_dict(),
                                        "unigram_loss": baseline}) as log:
        bar = tqdm(range(args.steps), desc="train", disable=not args.progress)
        for step in bar:
            lr = lr_at(step, args.steps, args.lr, warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            x, y = get_batch(train_ids, B, T, g)
            loss = model.loss(x.to(device), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            train_loss = loss.item()
            row = {"train_loss": train_loss, "lr": lr, "grad_norm": float(norm)}
            last = step == args.steps - 1
            if args.eval_every and (step % args.eval_every == 0 or last):
                val_loss = estimate_loss(model, val_ids, B, T, args.eval_batches)
                row["val_loss"] = val_loss
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
            row["tokens_per_s"] = (step + 1) * B * T / max(time.time() - t0, 1e-9)
            log.log(step=step, **row)
        seconds = time.time() - t0
        if math.isnan(val_loss):
            val_loss = estimate_loss(model, val_ids, B, T, args.eval_batches)
        log.log(step=args.steps, final_val_loss=val_loss, unigram_loss=baseline, seconds=seconds)

    save_model(run_dir / MODEL_FILE, model,
               meta={"kind": "week01-gpt", "config": config.to_dict(), "steps": args.steps,
                     "val_loss": val_loss, "unigram_loss": baseline})
    tok.save(run_dir / TOKENIZER_FILE)

    prompt_text = args.prompt
    if not prompt_text or any(c not in tok.stoi for c in prompt_text):
        prompt_text = train_text[:4]  # the prompt has characters this corpus lacks
        print(f"prompt {args.prompt!r} is not encodable with this vocabulary; using {prompt_text!r}")
    prompt = torch.tensor([tok.encode(prompt_text)], dtype=torch.long, device=device)
    out = model.generate(prompt, args.sample_tokens, temperature=args.temperature, top_k=args.top_k,
                         seed=args.seed)
    sample = tok.decode(out[0].tolist())
    print(f"\nafter {args.steps} steps ({seconds:.0f} s): train {train_loss:.3f}, val {val_loss:.3f} "
          f"nats/char vs unigram baseline {baseline:.3f} ({val_loss / baseline:.0%} of it)")
    print(f"saved {run_dir / MODEL_FILE} and {run_dir / TOKENIZER_FILE}\n--- sample ---\n{sample}")
    return TrainResult(run_dir, args.steps, train_loss, val_loss, baseline, seconds, sample)


def load_char_model(run_dir: str | Path, device: str = "cpu") -> tuple[GPT, CharTokenizer]:
    """The model and tokenizer that ``train_char`` saved in ``run_dir``."""
    from shared import read_meta

    run_dir = Path(run_dir)
    meta = read_meta(run_dir / MODEL_FILE)
    if meta.get("kind") != "week01-gpt":
        raise ValueError(f"{run_dir / MODEL_FILE} is not a week01 GPT checkpoint (kind="
                         f"{meta.get('kind')!r})")
    model = GPT(GPTConfig.from_dict(meta["config"]))
    load_weights(model, run_dir / MODEL_FILE)
    return model.to(device).eval(), CharTokenizer.load(run_dir / TOKENIZER_FILE)


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m week01_transformer.train_char",
        description="Train a character-level GPT on the embedded pydocs corpus (or a text file).")
    ap.add_argument("--preset", default="char-tiny", choices=sorted(PRESETS),
                    help="model size (default char-tiny, ~0.8M parameters; vocab comes from the text)")
    ap.add_argument("--steps", type=int, default=1500, help="optimizer steps (default 1500)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for torch; 0 keeps torch's default. On a busy machine 1 can be "
                         "much faster than several threads fighting for the cores")
    ap.add_argument("--corpus", default="pydocs",
                    help="'pydocs' (embedded Python docs) or the path of a text file or folder")
    ap.add_argument("--batch-size", type=int, default=16, help="sequences per step (default 16)")
    ap.add_argument("--block-size", type=int, default=0,
                    help="context length; 0 keeps the preset's (default 0)")
    for name, what in (("layer", "blocks"), ("head", "attention heads"), ("embd", "width")):
        ap.add_argument(f"--n-{name}", type=int, default=0,
                        help=f"{what}; 0 keeps the preset's (default 0)")
    ap.add_argument("--dropout", type=float, default=None, help="override the preset's dropout")
    ap.add_argument("--attention", default="sdpa", choices=["explicit", "sdpa"],
                    help="attention path (default sdpa, the faster one)")
    ap.add_argument("--no-attn-scale", dest="attn_scale", action="store_false",
                    help="experiment: do not divide attention scores by sqrt(head_dim)")
    ap.add_argument("--no-causal", dest="causal", action="store_false",
                    help="experiment: no causal mask (positions read the future: the loss "
                         "collapses by copying, generation does not work)")
    ap.add_argument("--norm-position", default="pre", choices=list(NORM_POSITIONS),
                    help="experiment: 'post' normalises after each residual addition "
                         "(the 2017 Transformer); default 'pre' (GPT-2)")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3)")
    ap.add_argument("--warmup", type=int, default=50, help="warmup steps (default 50)")
    ap.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay")
    ap.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (default 1)")
    ap.add_argument("--eval-every", type=int, default=100,
                    help="steps between val-loss estimates; 0 only at the end (default 100)")
    ap.add_argument("--eval-batches", type=int, default=10, help="batches per val estimate")
    ap.add_argument("--seed", type=int, default=1337, help="seed for init, batches and sampling")
    ap.add_argument("--run-dir", default="", help="where to log and save (default runs/week01-char-*)")
    ap.add_argument("--prompt", default="The ", help="text the sample starts from")
    ap.add_argument("--sample-tokens", type=int, default=300, help="characters to sample at the end")
    ap.add_argument("--temperature", type=float, default=0.8, help="sampling temperature")
    ap.add_argument("--top-k", type=int, default=None, help="sample from the k likeliest only")
    ap.add_argument("--no-progress", dest="progress", action="store_false",
                    help="hide the progress bar")
    return ap


def main(argv: list[str] | None = None) -> TrainResult:
    args = build_parser().parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0:
        raise SystemExit(f"--steps and --batch-size must be positive, got {args.steps} and "
                         f"{args.batch_size}")
    return train(args)


if __name__ == "__main__":
    main()
