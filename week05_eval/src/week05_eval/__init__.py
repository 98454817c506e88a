"""week05_eval: measure any model of the project the way the field does, and the first baseline.

- metrics: ``evaluate_text`` / ``evaluate_ids`` / ``evaluate_data_dir`` (loss, perplexity,
  bits per byte), ``unigram_bpb`` (the trivial baseline)
- multiple choice: ``MCExample``, ``MCTask``, ``evaluate_mc`` (acc, acc_norm, centred),
  ``build_prompt`` (few-shot), ``centered_accuracy``, ``core_score``
- generative: ``GenExample``, ``GenTask``, ``evaluate_generative`` (greedy or sampled, exact
  or numeric match, with or without week04 tools), ``extract_number``, ``extract_gsm8k_answer``
- tasks: ``load_arc``, ``load_mmlu``, ``load_hellaswag``, ``load_gsm8k`` (real ``datasets``
  code, ``data_files=`` for local files), ``pydocs_cloze``, ``pydocs_next_line``, ``tool_task``
- ``NanochatLM``: our models inside EleutherAI's lm-eval (``week05_eval.lm_eval_adapter``,
  imported lazily because lm-eval is an optional dependency)
- checkpoints: ``load_for_eval`` (model + tokenizer + meta, clear errors), ``find_baseline``
- ``python -m week05_eval.report <checkpoint>``: the report card;
  ``python -m week05_eval.baseline`` (``make baseline``): tokenizer, model, training, evaluation
"""

from week05_eval.generative import (
    GenExample,
    GenResult,
    GenTask,
    evaluate_generative,
    exact_match,
    extract_gsm8k_answer,
    extract_number,
    numeric_match,
)
from week05_eval.loading import find_baseline, load_for_eval
from week05_eval.metrics import (
    LossResult,
    UnigramLM,
    evaluate_data_dir,
    evaluate_ids,
    evaluate_text,
    token_bytes_of,
    unigram_bpb,
)
from week05_eval.multiple_choice import (
    MCExample,
    MCResult,
    MCTask,
    build_prompt,
    centered_accuracy,
    core_score,
    evaluate_mc,
)
from week05_eval.scoring import continuation_logprobs, encode_pair, greedy_generate
from week05_eval.tasks import (
    load_arc,
    load_gsm8k,
    load_hellaswag,
    load_mmlu,
    pydocs_cloze,
    pydocs_next_line,
    tool_task,
)

__all__ = [
    "LossResult", "evaluate_text", "evaluate_ids", "evaluate_data_dir", "unigram_bpb",
    "UnigramLM", "token_bytes_of",
    "MCExample", "MCTask", "MCResult", "evaluate_mc", "build_prompt", "centered_accuracy",
    "core_score",
    "GenExample", "GenTask", "GenResult", "evaluate_generative", "extract_number",
    "extract_gsm8k_answer", "exact_match", "numeric_match",
    "load_arc", "load_mmlu", "load_hellaswag", "load_gsm8k", "pydocs_cloze", "pydocs_next_line",
    "tool_task",
    "continuation_logprobs", "encode_pair", "greedy_generate",
    "load_for_eval", "find_baseline",
    "NanochatLM",
]


def __getattr__(name):
    if name == "NanochatLM":
        from week05_eval.lm_eval_adapter import NanochatLM
        return NanochatLM
    raise AttributeError(f"module 'week05_eval' has no attribute {name!r}")
