"""Multiple-choice evaluation by continuation loss, with few-shot prompts and centring.

Each example is a ``context`` and several ``choices`` (continuations). The
model never writes anything: for every choice we compute
``log p(choice | prompt)`` with ``scoring.continuation_logprobs`` and pick the
most likely one. Three ways to compare choices of different lengths:

- ``acc``: the raw sum of log-probabilities. Longer choices pay for every
  extra token, so this is biased toward short answers;
- ``acc_norm``: the sum divided by the choice's length in characters, exactly
  lm-eval's ``acc_norm``: a per-character likelihood independent of the tokenizer;
- ``acc_token``: the mean log-probability per token.

``centered = (acc - chance) / (1 - chance)`` maps chance to 0 and a perfect
score to 1, so tasks with 2 and 5 choices average fairly; ``core_score`` is
the mean centred accuracy over the tasks given (the CORE metric of DCLM, as
nanochat reports it).

Few-shot: ``num_fewshot`` solved examples (context + gold choice) drawn from a
separate pool, with a seeded RNG per example so the prompt is reproducible,
go before the question, joined by ``separator``.

Left out: per-task prompt templates beyond ``context``/``choices`` (the
loaders in ``tasks`` build them), calibration, and "choices in the prompt"
letter scoring (MMLU's lettered format is just a context that lists them).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from week05_eval.scoring import continuation_logprobs, encode_pair

# --------------------------------------------------------------------------- data


@dataclass
class MCExample:
    context: str                    # the question, ending where the answer starts ("Answer:")
    choices: list[str]              # continuations, usually with a leading space (" Paris")
    gold: int                       # index of the right choice
    id: str = ""

    def __post_init__(self):
        if len(self.choices) < 2:
            raise ValueError(f"example {self.id!r} needs at least 2 choices, got {self.choices!r}")
        if not 0 <= self.gold < len(self.choices):
            raise ValueError(f"example {self.id!r}: gold {self.gold} is not a valid index into "
                             f"{len(self.choices)} choices")
        if any(not c for c in self.choices):
            raise ValueError(f"example {self.id!r} has an empty choice")


@dataclass
class MCTask:
    """A named list of examples plus what few-shot prompts are built from."""

    name: str
    examples: list[MCExample]
    fewshot_pool: list[MCExample] = field(default_factory=list)
    description: str = ""           # text before everything (e.g. "The following are ...")
    separator: str = "\n\n"         # between few-shot examples and the question

    @property
    def chance(self) -> float:
        """Expected accuracy of guessing uniformly: mean of 1 / n_choices."""
        return sum(1.0 / len(e.choices) for e in self.examples) / max(len(self.examples), 1)


@dataclass
class MCResult:
    task: str
    n: int
    acc: float
    acc_norm: float
    acc_token: float
    chance: float
    num_fewshot: int
    predictions: list[int] = field(default_factory=list, repr=False)       # by acc_norm
    scores: list[list[float]] = field(default_factory=list, repr=False)    # summed logprobs

    @property
    def centered(self) -> float:
        return centered_accuracy(self.acc_norm, self.chance)

    def to_dict(self) -> dict:
        return {"task": self.task, "n": self.n, "acc": self.acc, "acc_norm": self.acc_norm,
                "acc_token": self.acc_token, "chance": self.chance, "centered": self.centered,
                "num_fewshot": self.num_fewshot}


def centered_accuracy(acc: float, chance: float) -> float:
    """``(acc - chance) / (1 - chance)``: 0 at chance, 1 when perfect, negative below chance."""
    if not 0.0 <= chance < 1.0:
        raise ValueError(f"chance must be in [0, 1), got {chance}")
    return (acc - chance) / (1.0 - chance)


def core_score(results: Sequence[MCResult]) -> float:
    """The CORE-style aggregate: mean centred accuracy over the tasks given."""
    if not results:
        raise ValueError("core_score needs at least one task result")
    return sum(r.centered for r in results) / len(results)


# --------------------------------------------------------------------------- prompts


def fewshot_examples(pool: Sequence[MCExample], k: int, seed: int, exclude: MCExample | None = None
                     ) -> list[MCExample]:
    """``k`` examples from ``pool`` (never ``exclude``), drawn by a ``random.Random(seed)``."""
    candidates = [e for e in pool if e is not exclude and (not exclude or not e.id or e.id != exclude.id)]
    if k > len(candidates):
        raise ValueError(f"asked for {k} few-shot examples but the pool has only {len(candidates)}")
    return random.Random(seed).sample(candidates, k)


def build_prompt(example: MCExample, shots: Sequence[MCExample], description: str = "",
                 separator: str = "\n\n") -> str:
    """``description + shot_1 + sep + ... + shot_k + sep + context``; a shot is context + gold."""
    parts = [s.context + s.choices[s.gold] for s in shots]
    parts.append(example.context)
    return description + separator.join(parts)


# --------------------------------------------------------------------------- evaluation


def evaluate_mc(model, tokenizer, task: MCTask, num_fewshot: int = 0, seed: int = 1234,
                batch_size: int = 16, limit: int | None = None, progress: bool = False
                ) -> MCResult:
    """Score every choice of every example; accuracy three ways (see the module docstring)."""
    examples = task.examples[:limit] if limit else task.examples
    if not examples:
        raise ValueError(f"task {task.name!r} has no examples")
    if num_fewshot and not task.fewshot_pool:
        raise ValueError(f"task {task.name!r} has no few-shot pool; use num_fewshot=0")
    requests, owners = [], []
    for i, ex in enumerate(tqdm(examples, disable=not progress, desc=task.name, unit="ex")):
        shots = fewshot_examples(task.fewshot_pool, num_fewshot, seed + i, ex) if num_fewshot else []
        prompt = build_prompt(ex, shots, task.description, task.separator)
        for choice in ex.choices:
            requests.append(encode_pair(tokenizer, prompt, choice))
            owners.append(i)
    scored = continuation_logprobs(model, requests, batch_size=batch_size)
    scores: list[list[float]] = [[] for _ in examples]
    ntok: list[list[int]] = [[] for _ in examples]
    for i, (lp, _, n) in zip(owners, scored):
        scores[i].append(lp)
        ntok[i].append(n)
    hit = hit_norm = hit_tok = 0
    preds = []
    for ex, s, n in zip(examples, scores, ntok):
        nchars = [len(c) for c in ex.choices]
        p_sum = _argmax(s)
        p_norm = _argmax([v / c for v, c in zip(s, nchars)])
        p_tok = _argmax([v / k for v, k in zip(s, n)])
        hit += p_sum == ex.gold
        hit_norm += p_norm == ex.gold
        hit_tok += p_tok == ex.gold
        preds.append(p_norm)
    n = len(examples)
    chance = sum(1.0 / len(e.choices) for e in examples) / n
    return MCResult(task=task.name, n=n, acc=hit / n, acc_norm=hit_norm / n, acc_token=hit_tok / n,
                    chance=chance, num_fewshot=num_fewshot, predictions=preds, scores=scores)


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value; ties go to the first (so a uniform model picks choice 0)."""
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best
