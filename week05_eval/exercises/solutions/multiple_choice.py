"""Week 05 exercises, multiple choice: the worked ``encode_pair`` and ``evaluate_mc`` (see
``../multiple_choice.py``)."""

from week05_eval import scoring
from week05_eval.multiple_choice import MCResult, MCTask, build_prompt, fewshot_examples


def encode_pair(tokenizer, context: str, continuation: str, add_bos: bool = True
                ) -> tuple[list[int], list[int]]:
    """lm-eval's ``_encode_pair``, with ``<|bos|>`` first and a guard at the boundary."""
    if not continuation:
        raise ValueError("continuation is empty: there is nothing to score")
    stripped = context.rstrip()
    context, continuation = stripped, context[len(stripped):] + continuation
    ctx = tokenizer.encode(context) if context else []
    whole = tokenizer.encode(context + continuation)
    ok = whole[:len(ctx)] == ctx and len(whole) > len(ctx)
    cont = whole[len(ctx):] if ok else tokenizer.encode(continuation)
    bos = scoring.bos_of(tokenizer) if add_bos else []
    return bos + ctx, cont


def _pick(values: list[float]) -> int:
    """Index of the largest value, ties to the first (``max`` keeps the first maximum)."""
    return max(range(len(values)), key=values.__getitem__)


def evaluate_mc(model, tokenizer, task: MCTask, num_fewshot: int = 0, seed: int = 1234,
                batch_size: int = 16, limit: int | None = None, progress: bool = False
                ) -> MCResult:
    """Every choice scored by ``continuation_logprobs``; acc, acc_norm and acc_token."""
    examples = task.examples[:limit] if limit else task.examples
    if not examples:
        raise ValueError(f"task {task.name!r} has no examples")
    if num_fewshot and not task.fewshot_pool:
        raise ValueError(f"task {task.name!r} has no few-shot pool; use num_fewshot=0")
    requests = []
    for i, ex in enumerate(examples):
        shots = fewshot_examples(task.fewshot_pool, num_fewshot, seed + i, ex) if num_fewshot else []
        prompt = build_prompt(ex, shots, task.description, task.separator)
        requests += [scoring.encode_pair(tokenizer, prompt, c) for c in ex.choices]
    scored = iter(scoring.continuation_logprobs(model, requests, batch_size=batch_size))
    hits = {"acc": 0, "acc_norm": 0, "acc_token": 0}
    preds, scores = [], []
    for ex in examples:
        got = [next(scored) for _ in ex.choices]            # (lp, is_greedy, n) per choice
        s = [lp for lp, _, _ in got]
        picks = {"acc": _pick(s),
                 "acc_norm": _pick([v / len(c) for v, c in zip(s, ex.choices)]),
                 "acc_token": _pick([v / n for v, (_, _, n) in zip(s, got)])}
        for k, p in picks.items():
            hits[k] += p == ex.gold
        preds.append(picks["acc_norm"])
        scores.append(s)
    n = len(examples)
    return MCResult(task=task.name, n=n, acc=hits["acc"] / n, acc_norm=hits["acc_norm"] / n,
                    acc_token=hits["acc_token"] / n,
                    chance=sum(1 / len(e.choices) for e in examples) / n,
                    num_fewshot=num_fewshot, predictions=preds, scores=scores)
