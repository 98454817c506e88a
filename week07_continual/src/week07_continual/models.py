"""The base model a stream starts from: week05's baseline, or a tiny one trained here.

``load_base("baseline")`` loads the newest ``make baseline`` checkpoint
(``week05_eval.find_baseline`` + ``load_for_eval``). ``load_base("tiny")``
trains, once, a small BPE tokenizer (week02) and a tiny week04 ``Llama`` on
the pydocs text that no domain of the domains stream uses, plus a few
conversations in week04's chat format that none of the skills tasks use (so
the base knows the format and its head can emit every kind of token, while
every task of both streams is still new to it), and caches both under
``<runs>/week07-tiny-base/`` in week05's checkpoint layout (a
``shared.save_model`` file, whose ``meta["model"]`` names the model by import
path, and a ``tokenizer.json``); ``shared.load_model`` rebuilds it. It trains
through week03's ``Trainer`` on ``shared.SampledBatches``. ``"auto"`` is the
baseline when one exists, else the tiny model. Any other value is a
checkpoint path.

Left out: pretraining at any real scale (week03/week05 do that).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from shared import SampledBatches, load_model, runs_root, save_model

TINY_DIR = "week07-tiny-base"

# ---------------------------------------------------------------- the tiny base


@dataclass
class TinyBaseConfig:
    vocab_size: int = 256 + 9 + 247  # 512 tokens
    tokenizer_chars: int = 400_000
    n_layer: int = 2
    n_embd: int = 128
    head_dim: int = 32
    block_size: int = 256
    steps: int = 400
    batch_size: int = 16
    seq_len: int = 128
    lr: float = 3e-3
    seed: int = 0


def _format_conversations(n: int, seed: int) -> list[list[dict]]:
    """Chat-format warm-up data unrelated to every skills task: echo a word, name a letter count."""
    rng = random.Random(f"format-{seed}")
    words = ["river", "stone", "maple", "cloud", "ember", "harbor", "quartz", "willow", "falcon"]
    out = []
    for _ in range(n):
        w = rng.choice(words)
        if rng.random() < 0.5:
            out.append([{"role": "user", "content": f"Say {w}."},
                        {"role": "assistant", "content": w.capitalize() + "."}])
        else:
            out.append([{"role": "user", "content": f"Repeat after me: {w} {w}"},
                        {"role": "assistant", "content": f"{w} {w}"}])
    return out


class _BaseBatches(SampledBatches):
    """A quarter of every batch from the format conversations, the rest pydocs windows."""

    def __init__(self, chats: list[dict], ids: list[int], cfg: TinyBaseConfig):
        from week07_continual.tasks import collate

        super().__init__(chats, cfg.batch_size, collate, seed=cfg.seed)
        self.ids, self.seq_len = ids, cfg.seq_len

    def sample(self) -> list[dict]:
        batch = []
        for b in range(self.batch_size):
            if b < self.batch_size // 4:
                batch.append(self.rng.choice(self.examples))
            else:
                s = self.rng.randrange(len(self.ids) - self.seq_len - 1)
                window = self.ids[s:s + self.seq_len + 1]
                batch.append({"ids": window, "mask": [0] + [1] * self.seq_len})
        return batch


def train_tiny_base(out_dir: str | Path, cfg: TinyBaseConfig | None = None,
                    progress: bool = True) -> Path:
    """Train and save the tiny tokenizer + model into ``out_dir``; returns the checkpoint path.

    week03's Trainer, constant lr, AdamW without weight decay, clipping at 1, no files of
    its own; ``shared.save_model`` records the model's import path, so
    ``shared.load_model`` (and week05's ``load_for_eval``) rebuild it.
    """
    from week02_bpe import BPETokenizer
    from week03_training import TrainConfig, Trainer
    from week04_modern_arch_tools import Llama, LlamaConfig
    from week07_continual.tasks import chat_example, pretraining_text

    cfg = cfg or TinyBaseConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = pretraining_text(max_chars=cfg.tokenizer_chars)
    tok = BPETokenizer.train(text, cfg.vocab_size)
    tok.save(out_dir / "tokenizer.json")
    config = LlamaConfig.from_depth(cfg.n_layer, vocab_size=tok.vocab_size,
                                    block_size=cfg.block_size, aspect_ratio=cfg.n_embd // cfg.n_layer,
                                    head_dim=cfg.head_dim)
    torch.manual_seed(cfg.seed)
    model = Llama(config)
    chats = [chat_example(tok, c) for c in _format_conversations(400, cfg.seed)]
    loader = _BaseBatches(chats, tok.encode(text), cfg)
    tc = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, block_size=cfg.seq_len,
                     lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.999), schedule="constant",
                     warmup_steps=0, grad_clip=1.0, eval_every=0, log_every=20, ckpt_every=0,
                     save_final=False, write_metrics=False, progress=progress, seed=cfg.seed)
    trainer = Trainer(model, loader, tc, desc="tiny base")
    trainer.fit()
    meta = {"tokenizer": "tokenizer.json", "week07_tiny_base": asdict(cfg),
            "final_loss": trainer.history[-1]}
    return save_model(out_dir / "model.safetensors", model.eval(), meta)


def load_base(which: str = "auto", root: str | Path | None = None, progress: bool = True,
              tiny: TinyBaseConfig | None = None):
    """``(model, tokenizer, description)`` for ``which`` in auto / baseline / tiny / a path."""
    from week05_eval import find_baseline, load_for_eval

    if which in ("auto", "baseline"):
        try:
            path = find_baseline(root)
            model, tok, _ = load_for_eval(path)
            return model.train(), tok, f"week05 baseline ({path})"
        except FileNotFoundError:
            if which == "baseline":
                raise
    if which in ("auto", "tiny"):
        folder = Path(root if root is not None else runs_root()) / TINY_DIR
        ckpt = folder / "model.safetensors"
        if not ckpt.exists():
            train_tiny_base(folder, tiny, progress)
        from week02_bpe import BPETokenizer

        return (load_model(ckpt).train(), BPETokenizer.load(folder / "tokenizer.json"),
                f"tiny base trained by week07 ({ckpt})")
    if not Path(which).exists():
        raise ValueError(f"--model must be auto, baseline, tiny or a checkpoint path; got {which!r}")
    model, tok, _ = load_for_eval(which)
    return model.train(), tok, f"checkpoint {which}"
