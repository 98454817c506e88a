"""Preference pairs from the model's own samples, the winner checked by the verifier.

Synthetic pairs (``prefs.preference_pairs``) teach the mistakes someone wrote
down: a wrong final number, a ramble. The model's own mistakes are often
others (it copies an operand wrongly into its calculator call). On-policy
pairs target those: for each prompt, sample ``samples`` replies with the
tools running (week04's ``generate_with_tools``: week01's batched, cached
decoding loop), judge each with ``prefs.is_correct``, and pair

- a correct sample (chosen) with a wrong one (rejected) when both exist;
- the prompt's reference reply (the synthetic pair's chosen, correct by
  construction) with a wrong sample when no sample is correct;
- nothing when every sample is correct (there is nothing to prefer).

This is the data side of iterative / on-policy DPO (e.g. Xiong et al. 2024,
"Iterative Preference Learning from Human Feedback"; Pang et al. 2024,
"Iterative Reasoning Preference Optimization"), with a verifier in place of
a reward model. ``run_to_message`` turns a sampled ``ToolRun`` back into
week04's message format (text, call and output parts), which DPO re-renders.

Left out: several rounds (re-sample after each DPO stage; the pipeline runs
one), ranking more than two samples, and length control.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from week04_modern_arch_tools import generate_with_tools
from week04_modern_arch_tools.chat import special_ids
from week09_alignment.prefs import is_correct


def run_to_message(run, tokenizer) -> dict:
    """A sampled ``ToolRun`` as a week04 assistant message: text, ``python`` calls and their
    ``output`` parts, in order, up to ``<|assistant_end|>``."""
    sp = special_ids(tokenizer)
    kinds = {sp["<|python_start|>"]: "python", sp["<|output_start|>"]: "output"}
    ends = {sp["<|python_end|>"], sp["<|output_end|>"]}
    parts: list[dict] = []
    kind, buf = "text", []

    def flush():
        if buf or kind != "text":
            parts.append({"type": kind, "text": tokenizer.decode(buf)})

    for t in run.ids:
        if t == sp["<|assistant_end|>"]:
            break
        if t in kinds:
            flush()
            kind, buf = kinds[t], []
        elif t in ends:
            flush()
            kind, buf = "text", []
        elif t not in sp.values():
            buf.append(t)
    if buf:
        flush()
    if not parts:
        parts = [{"type": "text", "text": ""}]
    return {"role": "assistant", "content": parts}


def on_policy_pairs(model, tokenizer, examples: list[dict], tools: dict, samples: int = 4,
                    temperature: float = 1.0, max_new_tokens: int = 48, seed: int = 0,
                    batch_size: int = 64, progress: bool = False) -> tuple[list[dict], dict]:
    """Pairs from the model's samples on ``examples``' prompts (``prefs`` pairs: prompt,
    answer, chosen reference); see the module docstring. Returns (pairs, counts); each
    pair's ``source`` says which case made it (the names of ``counts``)."""
    if samples < 2:
        raise ValueError(f"samples must be >= 2 to compare replies, got {samples}")
    was_training = model.training
    model.eval()
    pairs, counts = [], {"sampled_correct_vs_wrong": 0, "reference_vs_wrong": 0,
                         "all_correct": 0, "sample_accuracy": 0.0}
    per = max(1, batch_size // samples)
    right = 0
    try:
        for i in tqdm(range(0, len(examples), per), desc="on-policy pairs", disable=not progress):
            chunk = examples[i:i + per]
            runs = generate_with_tools(model, tokenizer, [list(ex["prompt"]) for ex in chunk
                                                          for _ in range(samples)], tools,
                                       max_new_tokens=max_new_tokens, temperature=temperature,
                                       seed=seed + i)
            for j, ex in enumerate(chunk):
                group = runs[j * samples:(j + 1) * samples]
                ok = [bool(is_correct(ex, r.answer(tokenizer))) for r in group]
                right += sum(ok)
                if all(ok):
                    counts["all_correct"] += 1
                    continue
                wrong = run_to_message(group[ok.index(False)], tokenizer)
                if any(ok):
                    chosen, how = run_to_message(group[ok.index(True)], tokenizer), \
                        "sampled_correct_vs_wrong"
                else:
                    chosen, how = ex["chosen"][0], "reference_vs_wrong"
                counts[how] += 1
                pairs.append({**{k: v for k, v in ex.items() if k not in ("chosen", "rejected")},
                              "chosen": [chosen], "rejected": [wrong],
                              "kind": f"{ex['kind']}/on-policy", "source": how})
    finally:
        model.train(was_training)
    counts["sample_accuracy"] = right / max(len(examples) * samples, 1)
    return pairs, counts
