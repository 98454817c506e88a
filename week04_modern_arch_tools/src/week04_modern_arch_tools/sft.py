"""A short supervised fine-tune on tool-use conversations, and its evaluation.

``fit_tokenizer`` trains a small week02 BPE tokenizer on the conversations'
text; ``collate`` renders a batch of conversations and pads them with
``shared.pad_batch`` into (x, y), where y is ``IGNORE_INDEX`` (-1) on every
position whose target token is masked (user turns, tool outputs, padding), so
the loss only counts what the assistant writes; ``finetune`` trains on random
batches (``shared.SampledBatches``) through week03's ``Trainer`` (AdamW,
constant learning rate, clipping at 1, the loss in a ``shared.MetricsLogger``
run); ``evaluate_tool_use`` generates with the tools on held-out
conversations and scores the calls and the final answers by exact match.

Left out: packing several conversations into one row (our models have no
document mask, so a packed conversation would see the ones before it),
learning-rate schedules and checkpoints (the Trainer has them; this
fine-tune is seconds to minutes long).
"""

from __future__ import annotations

from functools import partial

import torch

from shared import SampledBatches, new_run_dir, pad_batch
from week02_bpe import SPECIAL_TOKENS, BPETokenizer
from week03_training import TrainConfig, Trainer
from week04_modern_arch_tools.chat import generate_with_tools, render_conversation
from week04_modern_arch_tools.model import Llama


def conversation_text(conversation: list[dict]) -> str:
    """Every piece of text in a conversation, one per line (tokenizer training data)."""
    out = []
    for m in conversation:
        c = m["content"]
        out += [c] if isinstance(c, str) else [p["text"] for p in c]
    return "\n".join(out)


def fit_tokenizer(conversations: list[list[dict]], vocab_size: int = 512) -> BPETokenizer:
    """A BPE tokenizer with the chat special tokens, trained on the conversations' text."""
    return BPETokenizer.train([conversation_text(c) for c in conversations], vocab_size,
                              special_tokens=SPECIAL_TOKENS)


def collate(conversations: list[list[dict]], tokenizer, block_size: int,
            device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) int64 (B, T): y[t] = ids[t + 1] where that token is trained, else IGNORE_INDEX."""
    rows = [render_conversation(c, tokenizer, max_tokens=block_size + 1) for c in conversations]
    return pad_batch([ids for ids, _ in rows], [mask for _, mask in rows], device=device)


def finetune(model: Llama, tokenizer, conversations: list[list[dict]], steps: int,
             batch_size: int = 16, lr: float = 3e-3, seed: int = 0, log: bool = True,
             progress: bool = True) -> list[float]:
    """Train on random batches of ``conversations`` for ``steps`` steps; the loss per step.

    Each batch holds ``batch_size`` distinct conversations; week03's Trainer
    runs AdamW (betas 0.9/0.999, no weight decay) at a constant ``lr`` with
    the gradient norm clipped at 1, and (``log=True``) writes the metrics to
    a fresh ``runs/week04-tooluse-<time>`` folder. No checkpoints.
    """
    if not conversations:
        raise ValueError("no conversations to train on")
    device = next(model.parameters()).device
    loader = SampledBatches(conversations, batch_size,
                            partial(collate, tokenizer=tokenizer,
                                    block_size=model.config.block_size),
                            seed=seed, replace=False)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, block_size=model.config.block_size,
                      lr=lr, weight_decay=0.0, betas=(0.9, 0.999), schedule="constant",
                      warmup_steps=0, grad_clip=1.0, eval_every=0, ckpt_every=0,
                      save_final=False, write_metrics=log, progress=progress,
                      device=str(device), seed=seed)
    trainer = Trainer(model, loader, cfg, run_dir=new_run_dir("week04-tooluse"),
                      desc="fine-tune")
    try:
        return trainer.fit()
    finally:
        model.eval()


def evaluate_tool_use(model: Llama, tokenizer, conversations: list[list[dict]], tools: dict,
                      max_new_tokens: int = 64, batch_size: int = 16) -> dict:
    """Greedy replies to each conversation's question, scored against its reference reply.

    ``call_rate``: fraction of replies that made a tool call; ``call_exact``:
    the first call's text equals the reference call; ``answer_exact``: the
    final text equals the reference answer.
    """
    n = calls = call_ok = ans_ok = 0
    examples = []
    for i in range(0, len(conversations), batch_size):
        chunk = conversations[i:i + batch_size]
        runs = generate_with_tools(model, tokenizer, [c[:1] for c in chunk], tools,
                                   max_new_tokens=max_new_tokens)
        for conv, run in zip(chunk, runs):
            parts = conv[1]["content"]
            ref_call = next(p["text"] for p in parts if p["type"] == "python")
            ref_answer = parts[-1]["text"]
            n += 1
            calls += bool(run.calls)
            call_ok += bool(run.calls) and f"{run.calls[0].name}: {run.calls[0].input}" == ref_call
            answer = run.answer(tokenizer).strip()
            ans_ok += answer == ref_answer
            if len(examples) < 5:
                examples.append((conv[0]["content"], run.text))
    return {"n": n, "call_rate": calls / max(n, 1), "call_exact": call_ok / max(n, 1),
            "answer_exact": ans_ok / max(n, 1), "examples": examples}
