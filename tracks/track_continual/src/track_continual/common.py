"""What every strategy of the track shares: task adapters on week06's LoRA layers, their
size, and the taught-facts stream built from week12's fact generator.

- ``lora_targets(model, head)``: week06's ``default_targets`` plus the output head
  (week07's ``lora_head`` rule: a tiny base's head must move for new answer tokens);
- ``add_task_adapter(model, name, r, alpha, targets)``: a fresh adapter on every target,
  the only trainable one; every adapter added so far stays active (their sum is the
  model: no task id is needed at test time);
- ``adapter_bytes(model, names)``: what the adapters cost to keep;
- ``make_conflict_stream(n_tasks)``, ``toy_base()``: the lesson's toy stream (week07's
  conflicting mappings) and a tiny pre-trained Llama for it;
- ``make_taught_stream(tokenizer, n_tasks, per_task)``: week12's ``teachdata.make_facts``
  (personal facts with made-up answers) cut into ``n_tasks`` tasks, each tested on the
  questions it taught (week07's rule for knowledge tasks);
- ``arithmetic_task(tokenizer, n_train, n_test)``: windows of worked sums, differences and
  products ("417 * 86 = 35862"), the frontier's far target (the paper's math domain, in
  bits per byte: text a pydocs base has rarely seen).

Left out: paraphrase recall (week12's mission test asks in other words; a tiny CPU model
answers only what it was taught).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from week06_lora import (
    adapter_names,
    default_targets,
    inject_lora,
    lora_layers,
    set_active_adapters,
)
from week07_continual import Stream, Task

# ---------------------------------------------------------------- task adapters


def lora_targets(model: nn.Module, head: bool = True) -> list[str]:
    """week06's default targets (attention and MLP projections), plus ``lm_head`` if asked."""
    targets = default_targets(model)
    if head and isinstance(getattr(model, "lm_head", None), nn.Module) and "lm_head" not in targets:
        targets.append("lm_head")
    return targets


def add_task_adapter(model: nn.Module, name: str, r: int, alpha: float,
                     targets: list[str]) -> dict[str, nn.Module]:
    """Add adapter ``name`` (B = 0: outputs unchanged) to every target; only it trains and
    every adapter so far is active. Returns ``{layer name: LoRALinear}`` of its layers."""
    inject_lora(model, targets=targets, r=r, alpha=alpha, adapter=name, freeze_base=True,
                activate=False)
    set_active_adapters(model, adapter_names(model))
    return {n: layer for n, layer in lora_layers(model).items() if name in layer.lora}


def adapter_bytes(model: nn.Module, names: list[str]) -> int:
    """Bytes of the A and B matrices of adapters ``names``."""
    total = 0
    for layer in lora_layers(model).values():
        for n in names:
            if n in layer.lora:
                total += sum(p.numel() * p.element_size() for p in layer.lora[n].parameters())
    return total


def kl_per_token(teacher_logits: torch.Tensor, student_logits: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor:
    """Mean KL(teacher || student) over the scored positions (y >= 0); logits (B, T, V)."""
    keep = y >= 0  # (B, T)
    lt = torch.log_softmax(teacher_logits.float()[keep], -1)  # (N, V)
    ls = torch.log_softmax(student_logits.float()[keep], -1)
    return (lt.exp() * (lt - ls)).sum(-1).mean()


# ---------------------------------------------------------------- week12's taught facts


def make_taught_stream(tokenizer, n_tasks: int = 10, per_task: int = 5, seed: int = 0) -> Stream:
    """week12's taught facts (``teachdata.make_facts``, test split) as ``n_tasks`` tasks of
    ``per_task`` facts: question -> the made-up answer, trained and tested on the same
    question (exact match). Every task is the same kind of thing, so a router by prompt
    has nothing to tell the tasks apart by: the no-task-id setting."""
    from week07_continual.tasks import qa_example
    from week12_nanochat.teachdata import make_facts

    facts = make_facts(n_tasks * per_task, seed=seed, split="test")
    tasks = []
    for t in range(n_tasks):
        exs = [qa_example(tokenizer, f.questions[0], f.answer)
               for f in facts[t * per_task:(t + 1) * per_task]]
        tasks.append(Task(f"facts{t:02d}", exs, exs))
    return Stream("taught", tasks, tokenizer, {"n_tasks": n_tasks, "per_task": per_task,
                                                "seed": seed, "source": "week12 teachdata"})


# ---------------------------------------------------------------- a toy stream (notebook)


def make_conflict_stream(n_tasks: int = 3, n_keys: int = 12, seed: int = 0) -> Stream:
    """week07's conflict stream with ``n_tasks`` tasks over a 40-token vocabulary: task k's
    prompt is ``[0, k+1, k+1, k+1, key, 3]`` and its answer a cyclic shift (by k) of one
    permutation of 12 answer tokens, so each task contradicts the others on every key; the
    marker tells the tasks apart. Tested on what it taught."""
    import random

    if not 1 <= n_tasks <= 4:
        raise ValueError(f"the toy stream has 1 to 4 tasks (marker 5 is the toy base's), got {n_tasks}")
    keys, answers = list(range(8, 8 + n_keys)), list(range(24, 24 + n_keys))
    rng = random.Random(seed)
    perm = answers[:]
    rng.shuffle(perm)
    tasks = []
    for k in range(n_tasks):
        f = perm[k:] + perm[:k]
        exs = [{"ids": [0, k + 1, k + 1, k + 1, key, 3, a, 4], "mask": [0, 0, 0, 0, 0, 0, 1, 1]}
               for key, a in zip(keys, f)]
        tasks.append(Task("ABCD"[k], exs, exs))
    return Stream("conflict", tasks, None, {"n_tasks": n_tasks})


def toy_base(steps: int = 60, seed: int = 0):
    """A 2-layer, 32-wide week04 Llama (vocabulary 40) pre-trained on a fifth mapping
    (marker 5), so its head already emits the answer tokens; ``(model, pretraining task)``."""
    import random

    from week04_modern_arch_tools import Llama, LlamaConfig
    from week07_continual import TrainConfig, train_task

    torch.manual_seed(seed)
    model = Llama(LlamaConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_kv_head=2,
                              n_embd=32, mlp="swiglu", tie_embeddings=False))
    answers = list(range(24, 36))
    exs = [{"ids": [0, 5, 5, 5, key, 3, a, 4], "mask": [0, 0, 0, 0, 0, 0, 1, 1]}
           for key, a in zip(range(8, 20), answers[5:] + answers[:5])]
    pre = Task("pre", exs, exs)
    train_task(model, pre, TrainConfig(steps_per_task=steps, lr=1e-2), random.Random(seed),
               progress=False)
    return model, pre


def arithmetic_lines(rng, n: int) -> list[str]:
    """``n`` lines ``"a op b = c"`` with a, b in 0..999 and op one of + - *, the result exact."""
    out = []
    for _ in range(n):
        a, b, op = rng.randint(0, 999), rng.randint(0, 999), rng.choice("+-*")
        c = a + b if op == "+" else a - b if op == "-" else a * b
        out.append(f"{a} {op} {b} = {c}")
    return out


def arithmetic_task(tokenizer, n_train: int, n_test: int, tokens: int = 64, seed: int = 0) -> Task:
    """A bits-per-byte task of ``tokens``-token windows of arithmetic lines (train and test
    drawn from one generator, so no window repeats): the frontier's target far from pydocs."""
    import random

    from week07_continual.tasks import text_example

    if n_train < 1 or n_test < 1 or tokens < 8:
        raise ValueError(f"arithmetic_task needs n_train, n_test >= 1 and tokens >= 8; "
                         f"got {n_train}, {n_test}, {tokens}")
    rng = random.Random(seed)

    def window() -> dict:
        lines: list[str] = []
        while len(tokenizer.encode("\n".join(lines))) < tokens:
            lines += arithmetic_lines(rng, 4)
        return text_example(tokenizer, "\n".join(lines) + "\n", tokens)

    train = [window() for _ in range(n_train)]
    test = [window() for _ in range(n_test)]
    return Task("arithmetic", train, test, metric="bpb")
