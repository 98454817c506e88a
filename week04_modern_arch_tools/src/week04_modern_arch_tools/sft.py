"""A short supervised fine-tune on tool-use conversations, and its evaluation.

``fit_tokenizer`` trains a small week02 BPE tokenizer on the conversations'
text; ``collate`` renders a batch of conversations into (x, y) where y is -1
on every position whose target token is masked (user turns, tool outputs,
padding), so the loss only counts what the assistant writes; ``finetune``
runs AdamW (week03's) with a constant learning rate and logs the loss
through ``shared.MetricsLogger``; ``evaluate_tool_use`` generates with the
tools on held-out conversations and scores the calls and the final answers
by exact match.

Left out: packing several conversations into one row, learning-rate
schedules and checkpoints (week03's Trainer does those for pretraining).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from shared import MetricsLogger, new_run_dir
from week02_bpe import SPECIAL_TOKENS, BPETokenizer
from week03_training import AdamW
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
            device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) int64 (B, T): y[t] = ids[t + 1] where that token is trained, else -1."""
    rows = [render_conversation(c, tokenizer, max_tokens=block_size + 1) for c in conversations]
    T = max(len(ids) for ids, _ in rows) - 1
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for b, (ids, mask) in enumerate(rows):
        ids_t = torch.tensor(ids)
        n = len(ids) - 1
        x[b, :n] = ids_t[:-1]
        y[b, :n] = torch.where(torch.tensor(mask[1:]) == 1, ids_t[1:], -1)
    return x.to(device), y.to(device)


def finetune(model: Llama, tokenizer, conversations: list[list[dict]], steps: int,
             batch_size: int = 16, lr: float = 3e-3, seed: int = 0, log: bool = True,
             progress: bool = True) -> list[float]:
    """Train on random batches of ``conversations`` for ``steps`` steps; the loss per step."""
    if not conversations:
        raise ValueError("no conversations to train on")
    rng = random.Random(seed)
    opt = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    logger = MetricsLogger(new_run_dir("week04-tooluse")) if log else None
    device = model.tok_emb.weight.device
    losses = []
    model.train()
    bar = tqdm(range(steps), desc="fine-tune", disable=not progress)
    try:
        for step in bar:
            x, y = collate(rng.sample(conversations, min(batch_size, len(conversations))),
                           tokenizer, model.config.block_size, device)
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}")
            if logger is not None:
                logger.log(step, loss=losses[-1])
    finally:
        if logger is not None:
            logger.close()
        model.eval()
    return losses


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
