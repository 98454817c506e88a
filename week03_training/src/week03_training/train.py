"""Command line: train a language model on week02 token shards with the week03 Trainer.

    python -m week03_training.train --model tiny --data pydocs --steps 200
    python -m week03_training.train --model tiny --data data/pydocs --out runs/t1 --ckpt-every 50
    python -m week03_training.train --out runs/t1 --resume            # continue exactly
    python -m week03_training.train --model gpt2 --data data/fineweb --device cuda
    python -m week03_training.train --model week04_modern_arch_tools:Llama --preset tiny --data pydocs

``--model`` is either a preset of week01's GPT (a size plus training defaults:
batch, context, learning rate, warmup, dtype; any flag overrides them) or any
model class by import path (``package.module:Class``, resolved with
``shared.resolve``), built as ``Class(config)`` from its config class's
``preset(--preset, vocab_size=..., block_size=...)``. The config class is
``Class.config_class``, else ``--config-class``, else the annotation of the
``config`` argument of ``Class.__init__``. Such a model takes the training
defaults of the week03 preset of the same name (tiny, 20m, gpt2), else tiny's.
Checkpoints record the model by import path (``shared.model_spec``), so
``--resume`` and ``shared.load_model`` rebuild it. ``--data`` is a folder
written by ``week02_bpe.prepare`` (``index.json`` + shards); ``pydocs`` or a
local text file/folder is tokenized once into ``<runs>/data/`` with a BPE
tokenizer of ``--vocab-size`` tokens trained on it.

Bad input (unknown preset, a negative number, a missing data folder, a
corrupt checkpoint) ends with one line that says what was wrong, exit code 2.
SIGINT/SIGTERM write a checkpoint first and exit with 130/143.

Left out: multi-GPU launch (torchrun, week11) and config files: the presets
are Python dataclasses below, the flags the only overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from shared import runs_root, seed_everything
from shared.checkpoint import CheckpointError, read_meta, resolve
from shared.checkpoint import build_model as build_from_spec
from week03_training.schedule import SCHEDULES
from week03_training.trainer import (
    DTYPES,
    OPTIMIZERS,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    latest_checkpoint,
)

# ----------------------------------------------------------------------------- presets


@dataclass
class Preset:
    """A GPT size (week01 ``GPTConfig`` fields) and the training defaults that suit it."""

    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    vocab_size: int = 2048                  # tokenizer size when --data needs preparing
    train: dict = field(default_factory=dict)


PRESETS: dict[str, Preset] = {
    # seconds per 100 steps on a laptop CPU core; 0.2M parameters + embeddings
    "tiny": Preset(2, 2, 64, vocab_size=512, train=dict(
        batch_size=8, block_size=64, steps=200, lr=3e-3, warmup_steps=20, eval_every=50)),
    # about 18M non-embedding parameters: the "~20M" CPU/GPU middle size
    "20m": Preset(10, 6, 384, vocab_size=4096, train=dict(
        batch_size=16, block_size=256, steps=2000, lr=1e-3, warmup_steps=100, eval_every=200)),
    # GPT-2 small, 124M with a 50257 vocab: ~0.5M tokens per step as in the paper
    "gpt2": Preset(12, 12, 768, vocab_size=50257, train=dict(
        batch_size=16, block_size=1024, grad_accum=32, steps=19073, lr=6e-4, warmup_steps=700,
        weight_decay=0.1, dtype="bf16", eval_every=250, eval_batches=20, ckpt_every=1000)),
}


def build_model(preset: str | Preset, vocab_size: int, block_size: int, dropout: float | None = None):
    """week01's GPT at ``preset``'s size, for this tokenizer's ``vocab_size``."""
    from week01_transformer import GPT, GPTConfig
    p = PRESETS[preset] if isinstance(preset, str) else preset
    cfg = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=p.n_layer,
                    n_head=p.n_head, n_embd=p.n_embd,
                    dropout=p.dropout if dropout is None else dropout, attention="sdpa")
    return GPT(cfg)


def model_classes(path: str, config_class: str | None = None) -> tuple[type, type]:
    """(model class, config class) for an import path ``package.module:Class``."""
    try:
        cls = resolve(path)
        cfg_cls = resolve(config_class) if config_class else getattr(cls, "config_class", None)
    except CheckpointError as e:
        raise ValueError(f"--model/--config-class: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"--model {path!r} is not a torch.nn.Module class")
    if cfg_cls is None:
        import typing
        try:
            cfg_cls = typing.get_type_hints(cls.__init__).get("config")
        except (NameError, TypeError):
            cfg_cls = None
    if not isinstance(cfg_cls, type) or not hasattr(cfg_cls, "preset"):
        raise ValueError(f"--model {path!r}: no config class with a preset() table found "
                         "(no config_class attribute, no annotated config argument); pass "
                         "--config-class package.module:Config")
    return cls, cfg_cls


def build_model_class(cls: type, cfg_cls: type, preset: str, vocab_size: int, block_size: int,
                      dropout: float | None = None) -> torch.nn.Module:
    """``cls(cfg_cls.preset(preset, vocab_size=..., block_size=...[, dropout=...]))``."""
    overrides = {"vocab_size": vocab_size, "block_size": block_size}
    if dropout is not None:
        overrides["dropout"] = dropout
    try:
        config = cfg_cls.preset(preset, **overrides)
    except (ValueError, TypeError) as e:
        raise ValueError(f"--preset {preset!r} for {cls.__name__}: {e}") from None
    return cls(config)


# ----------------------------------------------------------------------------- data


def ensure_data(source: str, vocab_size: int, cache: Path | None = None,
                progress: bool = True) -> Path:
    """A prepared data folder for ``source``: itself if it has ``index.json``, else tokenize it.

    ``pydocs`` or a local text file/folder is tokenized (once; later calls reuse
    it) into ``<cache>/<name>-v<vocab_size>`` with a freshly trained BPE tokenizer.
    """
    path = Path(source)
    if (path / "index.json").is_file():
        return path
    if source != "pydocs" and not path.exists():
        raise FileNotFoundError(
            f"--data {source!r}: no such folder. Give a folder made by "
            "`python -m week02_bpe.prepare SOURCE --vocab-size N --out DIR`, 'pydocs', "
            "or a local .txt/.md file or folder")
    if path.is_dir() and any(path.glob("*.bin")):
        raise FileNotFoundError(f"--data {source!r} has shards but no index.json: the prepare "
                                "run did not finish; run week02_bpe.prepare again")
    from week02_bpe import BPETokenizer, iter_documents, prepare
    name = "pydocs" if source == "pydocs" else path.resolve().name
    out = (cache or runs_root() / "data") / f"{name}-v{vocab_size}"
    if (out / "index.json").is_file():
        return out
    texts = [text for _, text in iter_documents(source)]
    tok = BPETokenizer.train(texts, vocab_size, progress=progress)
    prepare(texts, tok, out, num_workers=1, progress=progress)
    return out


def load_token_bytes(data_dir: Path) -> torch.Tensor | None:
    """Byte length of every token, from the tokenizer saved next to the shards (or None)."""
    from week02_bpe import BPETokenizer, read_index, token_bytes
    name = read_index(data_dir).get("tokenizer")
    if not name or not (data_dir / name).is_file():
        return None
    return token_bytes(BPETokenizer.load(data_dir / name))


# ----------------------------------------------------------------------------- arguments


def _number(kind: type, low: float, strict: bool):
    """An argparse type: a finite ``kind`` (int or float) >= ``low`` (> ``low`` if strict)."""
    noun = "an integer" if kind is int else "a number"
    bound = f"> {low}" if strict else f">= {low}"

    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (v > low if strict else v >= low) or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{v} is not allowed; use a finite number {bound}")
        return v

    return parse


_nonneg_int, _pos_int = _number(int, 0, False), _number(int, 1, False)
_pos_float, _nonneg_float = _number(float, 0.0, True), _number(float, 0.0, False)


def _model(text: str) -> str:
    if text not in PRESETS and text.count(":") != 1:
        raise argparse.ArgumentTypeError(f"unknown preset {text!r}; valid: {', '.join(PRESETS)}, "
                                         "or a model class as package.module:Class")
    return text


def make_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m week03_training.train", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a = ap.add_argument
    a("--model", type=_model, default=None,
      help=f"a GPT + training preset ({', '.join(PRESETS)}; default tiny) or a model class "
           "as package.module:Class (taken from the checkpoint with --resume)")
    a("--preset", default=None,
      help="with --model package.module:Class: the config preset (default tiny)")
    a("--config-class", default=None,
      help="with --model package.module:Class: its config class, when the class has no "
           "config_class attribute")
    a("--data", default=None,
      help="prepared data folder (week02 index.json + shards), or 'pydocs' / a text file or "
           "folder to tokenize first")
    a("--vocab-size", type=_pos_int, default=None,
      help="tokenizer size when --data must be tokenized first (default: the preset's)")
    a("--steps", type=_pos_int, default=None, help="total optimizer steps of the run")
    a("--batch-size", type=_pos_int, default=None, help="sequences per micro-batch")
    a("--block-size", type=_pos_int, default=None, help="context length in tokens")
    a("--grad-accum", type=_pos_int, default=None, help="micro-batches per optimizer step")
    a("--optimizer", choices=OPTIMIZERS, default=None,
      help="adamw (ours), muon (ours, AdamW for embeddings/head/norms), torch-adamw (reference)")
    a("--lr", type=_pos_float, default=None, help="peak AdamW learning rate")
    a("--muon-lr", type=_pos_float, default=None, help="peak Muon learning rate (hidden matrices)")
    a("--weight-decay", type=_nonneg_float, default=None, help="decoupled weight decay")
    a("--schedule", choices=SCHEDULES, default=None, help="learning-rate schedule")
    a("--warmup-steps", type=_nonneg_int, default=None, help="linear warmup steps")
    a("--min-lr-ratio", type=_nonneg_float, default=None, help="final lr / peak lr")
    a("--decay-frac", type=_pos_float, default=None, help="WSD: fraction of steps spent decaying")
    a("--grad-clip", type=_nonneg_float, default=None, help="clip the global grad norm (0: off)")
    a("--dropout", type=_nonneg_float, default=None, help="dropout probability of the GPT")
    a("--dtype", choices=DTYPES, default=None,
      help="fp32, or bf16 autocast with fp32 master weights")
    a("--compile", action="store_true", default=None, help="torch.compile the model")
    a("--device", default=None, help="cpu | cuda | cuda:N | mps | auto (default cpu)")
    a("--seed", type=_nonneg_int, default=None, help="seed of weights, dropout and data order")
    a("--eval-every", type=_nonneg_int, default=None, help="validate every N steps (0: never)")
    a("--eval-batches", type=_pos_int, default=None, help="validation batches per evaluation")
    a("--log-every", type=_pos_int, default=None, help="write metrics every N steps")
    a("--ckpt-every", type=_nonneg_int, default=None,
      help="checkpoint every N steps (0: only at the end and on SIGINT/SIGTERM)")
    a("--keep-last", type=_pos_int, default=None, help="keep this many newest checkpoints")
    a("--out", default=None,
      help="run folder for metrics.jsonl and checkpoints/ (default runs/week03-<preset>-<time>)")
    a("--resume", nargs="?", const="latest", default=None,
      help="continue from the latest checkpoint in --out, or from this checkpoint file")
    a("--no-progress", action="store_true", help="no progress bar")
    return ap


# ----------------------------------------------------------------------------- main

_FLAG_TO_FIELD = {f.name: f.name for f in fields(TrainConfig)}


def _config_from_args(args, base: dict) -> TrainConfig:
    d = dict(base)
    for name in _FLAG_TO_FIELD:
        v = getattr(args, name, None)
        if v is not None:
            d[name] = v
    if args.no_progress:
        d["progress"] = False
    if d.get("device") == "auto":
        from shared import pick_device
        d["device"] = str(pick_device())
    return TrainConfig.from_dict(d)


def run(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    ckpt = None
    saved: dict = {}
    if args.resume is not None:
        if args.resume == "latest":
            if args.out is None:
                raise ValueError("--resume without a file needs --out RUN_FOLDER")
            ckpt = latest_checkpoint(Path(args.out) / "checkpoints")
            if ckpt is None:
                raise CheckpointError(f"--resume: no checkpoint in {args.out}/checkpoints")
        else:
            ckpt = Path(args.resume)
        saved = read_meta(ckpt)
        if saved.get("kind") != "week03-train":
            raise CheckpointError(f"{ckpt} is not a week03 training checkpoint "
                                  f"(kind {saved.get('kind')!r})")
        args.out = args.out or str(ckpt.parent.parent)
    cli = saved.get("train", {}).get("extra", {})
    saved_model = cli.get("model", cli.get("preset"))
    if saved and args.model and args.model != saved_model:
        raise ValueError(f"--model {args.model} but the checkpoint was a {saved_model} run")
    model_name = args.model or saved_model or "tiny"
    by_class = model_name not in PRESETS
    preset_name = (args.preset or cli.get("preset", "tiny")) if by_class else model_name
    if args.preset and not by_class:
        raise ValueError(f"--preset is for --model package.module:Class; {model_name!r} is "
                         "already a preset of week01's GPT")
    if by_class and not saved:
        classes = model_classes(model_name, args.config_class)   # fails before any data work
    preset = PRESETS.get(preset_name, PRESETS["tiny"])          # training defaults
    data_arg = args.data or cli.get("data")
    if data_arg is None:
        raise ValueError("--data is required: a week02 prepared folder, 'pydocs', or a text path")
    vocab = args.vocab_size or preset.vocab_size
    data_dir = ensure_data(data_arg, vocab, progress=not args.no_progress)

    base = {**TrainConfig().to_dict(), **preset.train}
    if saved:
        base = dict(saved["train"])
    cfg = _config_from_args(args, base)
    dropout = args.dropout if args.dropout is not None else cli.get(
        "dropout", None if by_class else preset.dropout)
    cfg.extra = {"model": model_name, "preset": preset_name, "data": str(data_dir),
                 "dropout": dropout}

    from week02_bpe import TokenLoader
    seed_everything(cfg.seed)
    train_loader = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "train", seed=cfg.seed,
                               device=cfg.device)
    try:
        val_loader = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "val", seed=cfg.seed,
                                 device=cfg.device)
    except ValueError as e:  # too little validation text for one window
        print(f"warning: no validation ({e})", file=sys.stderr)
        val_loader = None
    if saved:      # the checkpoint names its model by import path: rebuild that
        model = build_from_spec(saved.get("model"), source=f"checkpoint {ckpt}")
    elif by_class:
        model = build_model_class(*classes, preset_name, train_loader.vocab_size, cfg.block_size,
                                  dropout)
    else:
        model = build_model(preset, train_loader.vocab_size, cfg.block_size, dropout)
    from shared import new_run_dir
    label = f"{type(model).__name__.lower()}-{preset_name}" if by_class else preset_name
    out = Path(args.out) if args.out else new_run_dir(f"week03-{label}")
    if ckpt is None and latest_checkpoint(out / "checkpoints") is not None:
        raise ValueError(f"--out {out} already holds checkpoints (latest "
                         f"{latest_checkpoint(out / 'checkpoints').name}); add --resume to "
                         "continue that run, or choose another --out")
    trainer = Trainer(model, train_loader, cfg, val_loader=val_loader,
                      token_bytes=load_token_bytes(data_dir), run_dir=out)
    if ckpt is not None:
        step = trainer.resume(ckpt)
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)
    n = sum(p.numel() for p in model.parameters())
    print(f"{label}: {n / 1e6:.2f}M parameters, {cfg.tokens_per_step} tokens/step, "
          f"run folder {out}", file=sys.stderr)
    try:
        trainer.fit()
    except TrainingInterrupted as e:
        print(f"{e}\nresume with: python -m week03_training.train --out {out} --resume",
              file=sys.stderr)
        return 128 + e.signum
    last = trainer.history[-1] if trainer.history else float("nan")
    print(json.dumps({"step": trainer.step, "loss": last, "checkpoint": str(trainer.latest())}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: clear one-line errors (exit 2) instead of tracebacks for bad input."""
    try:
        return run(argv)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
