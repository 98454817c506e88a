"""The one primitive every harness here is built on: log p(continuation | context).

``continuation_logprobs(model, requests)`` takes ``(context_ids, continuation_ids)``
pairs and returns, for each, the summed log-probability of the continuation
tokens, whether greedy decoding would have produced them, and how many tokens
they are. The multiple-choice harness, the lm-eval adapter and the rolling
loss all call it, so they agree to the last bit on the same requests.

``encode_pair(tokenizer, context, continuation)`` turns text into such a pair
the way EleutherAI's lm-eval does: trailing spaces of the context move to the
continuation, the pair is encoded as one string and split where the context's
tokens end, so the continuation is tokenized in context (" Paris" after
"is" becomes one token, not a space and a word). A ``<|bos|>`` opens every
context when the tokenizer has one, as every training document did.

``greedy_generate`` is a decoding loop over any ``shared.LanguageModel``
(stop strings, temperature, top-k). A model with week04's key/value cache
(``run`` + ``decode``, e.g. ``Llama``) prefills once and then feeds one token
per step; any other model re-runs its whole context each step.

Left out: batching generation across prompts (the generative tasks here are
short; week04's ``generate_with_tools`` batches).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from shared import IGNORE_INDEX
from shared.batching import pad_batch

# --------------------------------------------------------------------------- helpers


def model_device(model) -> torch.device:
    """The device of the model's first parameter (CPU for parameter-free models)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def model_block_size(model, default: int = 1024) -> int:
    """The model's longest context: ``model.block_size`` or ``model.config.block_size``."""
    for obj in (model, getattr(model, "config", None)):
        size = getattr(obj, "block_size", None)
        if isinstance(size, int) and size > 0:
            return size
    return default


def bos_of(tokenizer) -> list[int]:
    """``[bos_id]`` when the tokenizer has a ``<|bos|>`` token, else ``[]``."""
    try:
        bos = getattr(tokenizer, "bos_id", None)
    except (KeyError, AttributeError):
        return []
    return [int(bos)] if isinstance(bos, int) else []


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool = True
                ) -> tuple[list[int], list[int]]:
    """``(context_ids, continuation_ids)`` with the continuation tokenized in context.

    Trailing whitespace of ``context`` (spaces and newlines, ``str.rstrip()``)
    moves to the front of ``continuation``, as lm-eval's ``_encode_pair`` does; then ``context + continuation`` is encoded once and split after
    the context's own tokens. If the tokenizer merges across that boundary
    (the joint encoding does not start with the context's tokens), the two
    parts are encoded separately instead.
    """
    if not continuation:
        raise ValueError("continuation is empty: there is nothing to score")
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    bos = bos_of(tokenizer) if add_bos else []
    ctx = tokenizer.encode(context) if context else []
    whole = tokenizer.encode(context + continuation)
    if whole[:len(ctx)] == ctx and len(whole) > len(ctx):
        cont = whole[len(ctx):]
    else:
        cont = tokenizer.encode(continuation)
    return bos + ctx, cont


# --------------------------------------------------------------------------- scoring


@torch.no_grad()
def continuation_logprobs(model, requests: Sequence[tuple[Sequence[int], Sequence[int]]],
                          batch_size: int = 16, block_size: int | None = None
                          ) -> list[tuple[float, bool, int]]:
    """``[(sum log p(cont | ctx), is_greedy, n_cont_tokens), ...]`` in request order.

    Each request is ``context + continuation`` cut from the left to the
    model's ``block_size + 1`` tokens; a continuation longer than ``block_size``
    is scored in chunks, each with the context that fits. Requests are
    sorted longest first and right-padded into batches: padding sits after
    every scored position, and a causal model never looks ahead, so it
    changes nothing. ``model`` is put in eval mode.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    block = block_size or model_block_size(model)
    device = model_device(model)
    model.eval()
    prepared = []                       # (request index, input ids, scored ids)
    for i, (ctx, cont) in enumerate(requests):
        ctx, cont = list(ctx), list(cont)
        if not cont:
            raise ValueError(f"request {i} has an empty continuation")
        if not ctx:
            raise ValueError(f"request {i} has an empty context: give at least one token "
                             "(a <|bos|>) to condition on")
        # a continuation longer than the window is scored in chunks of block tokens, each
        # with as much of what precedes it as fits (lm-eval's rolling windows)
        for j in range(0, len(cont), block):
            full = (ctx + cont[:j + block])[-(block + 1):]
            n = min(block, len(cont) - j)
            prepared.append((i, full, n))  # score the last n tokens of full given the rest
    order = sorted(range(len(prepared)), key=lambda k: -len(prepared[k][1]))
    sums = [0.0] * len(requests)
    greedy_all = [True] * len(requests)
    counts = [0] * len(requests)
    for start in range(0, len(order), batch_size):
        chunk = [prepared[k] for k in order[start:start + batch_size]]
        # shared's one batching helper: y holds the scored tokens, IGNORE_INDEX elsewhere
        x, y = pad_batch([full for _, full, _ in chunk],
                         [[0] * (len(full) - n) + [1] * n for _, full, n in chunk], device=device)
        logp = F.log_softmax(model(x).float(), dim=-1)                      # (B, T, V)
        scored = y != IGNORE_INDEX                                          # (B, T)
        target = y.clamp(min=0)                                             # (B, T)
        lp = logp.gather(-1, target[..., None])[..., 0].masked_fill(~scored, 0.0)
        greedy = ((logp.argmax(-1) == target) | ~scored).all(-1)            # (B,)
        for (i, _, n), s, g in zip(chunk, lp.sum(-1).tolist(), greedy.tolist()):
            sums[i] += s
            greedy_all[i] &= g
            counts[i] += n
    out = [(float(s), g, c) for s, g, c in zip(sums, greedy_all, counts)]
    return out


# --------------------------------------------------------------------------- generation


def has_kv_cache(model) -> bool:
    """Whether ``model`` decodes with a cache (``new_cache`` + the one-token ``step``)."""
    return callable(getattr(model, "new_cache", None)) and callable(getattr(model, "step", None))


def greedy_ids(model, prompt_ids: Sequence[int], max_new_tokens: int = 32,
               stop_ids: Sequence[int] = (), temperature: float = 0.0, top_k: int | None = None,
               generator: torch.Generator | None = None, stop_check=None,
               use_cache: bool = True) -> list[int]:
    """Up to ``max_new_tokens`` new ids after ``prompt_ids`` (see ``greedy_generate``).

    Stops before any id in ``stop_ids``, or after a token for which
    ``stop_check(new_ids)`` is true. Runs week01's decoding loop: with
    ``use_cache`` a model that ``has_kv_cache`` prefills once and decodes one
    token per step (the same ids as without, the tests check); past its
    ``block_size`` every model slides a window.
    """
    from week01_transformer import DecodeConfig, Decoding

    if not prompt_ids:
        raise ValueError("prompt_ids is empty: give at least one token (a <|bos|>)")
    cfg = DecodeConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                       stop_tokens=tuple(stop_ids), use_cache=use_cache)
    decoding = Decoding(model, [list(prompt_ids)], cfg, generator=generator,
                        on_token=None if stop_check is None else
                        lambda b, tok, forced: bool(stop_check(decoding.rows[b].ids)))
    row = decoding.run()[0]
    if isinstance(row.stop, int) and row.stop in cfg.stop_tokens:
        return row.ids[:-1]  # the stop id itself is not part of the answer
    return row.ids


def greedy_generate(model, tokenizer, prompt_ids: Sequence[int], max_new_tokens: int = 32,
                    stop: Sequence[str] = (), stop_ids: Sequence[int] = (),
                    temperature: float = 0.0, top_k: int | None = None,
                    generator: torch.Generator | None = None, use_cache: bool = True) -> str:
    """Decode up to ``max_new_tokens`` after ``prompt_ids``; return the new text.

    ``temperature=0`` is greedy (argmax); otherwise tokens are sampled from the
    softmax at ``temperature`` over the ``top_k`` best (all when None). Stops at
    any token in ``stop_ids`` (not included) and cuts the text at the first of
    the ``stop`` strings. An empty prompt starts from ``<|bos|>``. ``use_cache``:
    see ``greedy_ids``.
    """
    ids = list(prompt_ids) or bos_of(tokenizer)
    if not ids:
        raise ValueError("prompt_ids is empty and the tokenizer has no <|bos|> to start from")
    check = None
    if stop:
        def check(new):
            text = tokenizer.decode(new)
            return any(s in text for s in stop)
    new = greedy_ids(model, ids, max_new_tokens, stop_ids, temperature, top_k, generator, check,
                     use_cache)
    return cut_at_stop(tokenizer.decode(new), stop)


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to (not including) the earliest of the ``stop`` strings."""
    cut = len(text)
    for s in stop:
        if s:
            j = text.find(s)
            if j != -1:
                cut = min(cut, j)
    return text[:cut]
