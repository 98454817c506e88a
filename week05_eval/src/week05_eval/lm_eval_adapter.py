"""Our models inside EleutherAI's lm-evaluation-harness.

``NanochatLM(model, tokenizer)`` is an ``lm_eval.api.model.LM``: any
``shared.LanguageModel`` with a ``shared.Tokenizer`` can then run every task
lm-eval ships (ARC, HellaSwag, MMLU, GSM8K...) or a custom YAML task::

    import lm_eval
    from lm_eval.tasks import TaskManager
    lm = NanochatLM(model, tokenizer, batch_size=16)
    out = lm_eval.simple_evaluate(model=lm, tasks=["arc_easy"], task_manager=TaskManager())

The three request types map onto this package's primitives, so a task scored
here and through lm-eval gets the same numbers:

- ``loglikelihood``: ``scoring.encode_pair`` + ``scoring.continuation_logprobs``;
- ``loglikelihood_rolling``: a document (after ``<|bos|>``) in chunks of
  ``block_size`` tokens, each with as much preceding context as fits;
- ``generate_until``: ``scoring.greedy_generate`` (or sampling when
  ``do_sample``), cut at the ``until`` strings.

Left out: data-parallel ranks, request caching and chat templates.
"""

from __future__ import annotations

from lm_eval.api.model import LM

from week05_eval.scoring import (
    bos_of,
    continuation_logprobs,
    encode_pair,
    greedy_generate,
    model_block_size,
)


class NanochatLM(LM):
    """lm-eval's ``LM`` interface over a ``shared.LanguageModel`` + ``shared.Tokenizer``."""

    def __init__(self, model, tokenizer, batch_size: int = 16, max_gen_toks: int = 64,
                 block_size: int | None = None):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.batch_size = int(batch_size)
        self.max_gen_toks = int(max_gen_toks)
        self.block_size = block_size or model_block_size(model)

    # ------------------------------------------------------------------ scoring

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        pairs = []
        for r in requests:
            context, continuation = r.args
            ctx, cont = encode_pair(self.tokenizer, context, continuation)
            if not ctx:
                raise ValueError("an empty context needs a tokenizer with a <|bos|> token to "
                                 "condition on")
            pairs.append((ctx, cont))
        scored = continuation_logprobs(self.model, pairs, batch_size=self.batch_size,
                                       block_size=self.block_size)
        return [(lp, greedy) for lp, greedy, _ in scored]

    def loglikelihood_rolling(self, requests) -> list[float]:
        bos = bos_of(self.tokenizer)
        if not bos:
            raise ValueError("loglikelihood_rolling needs a tokenizer with a <|bos|> token")
        # one request per document: continuation_logprobs scores a continuation longer than
        # block_size in chunks of block_size tokens, each with as much context as fits
        docs = [self.tokenizer.encode(r.args[0]) for r in requests]
        nonempty = [i for i, ids in enumerate(docs) if ids]
        scored = continuation_logprobs(self.model, [(bos, docs[i]) for i in nonempty],
                                       batch_size=self.batch_size, block_size=self.block_size)
        out = [0.0] * len(docs)                     # an empty document has log-likelihood 0
        for i, (lp, _, _) in zip(nonempty, scored):
            out[i] = lp
        return out

    # ------------------------------------------------------------------ generation

    def generate_until(self, requests) -> list[str]:
        import torch
        out = []
        for r in requests:
            context, kwargs = r.args
            kwargs = dict(kwargs or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            max_new = int(kwargs.pop("max_gen_toks", self.max_gen_toks))
            temperature = float(kwargs.pop("temperature", 0.0)) if kwargs.pop("do_sample", False) \
                else 0.0
            seed = kwargs.pop("seed", None)
            gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
            prompt = bos_of(self.tokenizer) + self.tokenizer.encode(context)
            out.append(greedy_generate(self.model, self.tokenizer, prompt, max_new_tokens=max_new,
                                       stop=until, temperature=temperature,
                                       top_k=kwargs.pop("top_k", None), generator=gen))
        return out


# --------------------------------------------------------------------------- local tasks


def write_lm_eval_task(task, folder, name: str | None = None) -> str:
    """Write ``task`` (an ``MCTask``) as an lm-eval task: ``<name>.jsonl`` + ``<name>.yaml``.

    Returns the task name. Load it with ``TaskManager(include_path=folder)``;
    nothing is downloaded (the dataset is the local JSON-lines file). The
    continuation delimiter is empty because our choices carry their own
    leading space, so lm-eval scores exactly the strings our harness scores
    and its ``acc_norm`` divides by the same lengths.
    """
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or f"week05_{task.name}"
    data = folder / f"{name}.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for ex in task.examples:
            f.write(json.dumps({"context": ex.context, "choices": ex.choices, "gold": ex.gold}) + "\n")
    yaml = "\n".join([
        f"task: {name}",
        "dataset_path: json",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {json.dumps(str(data.resolve()))}",
        "test_split: test",
        "output_type: multiple_choice",
        "doc_to_text: context",
        "doc_to_choice: choices",
        "doc_to_target: gold",
        'target_delimiter: ""',
        *([f"description: {json.dumps(task.description)}"] if task.description else []),
        "metric_list:",
        "  - metric: acc",
        "    aggregation: mean",
        "    higher_is_better: true",
        "  - metric: acc_norm",
        "    aggregation: mean",
        "    higher_is_better: true",
        "metadata:",
        "  version: 1.0",
        "",
    ])
    (folder / f"{name}.yaml").write_text(yaml, encoding="utf-8")
    return name
