"""Multiple-choice evaluation throughput: our harness vs lm-eval through NanochatLM.

Same model (a randomly initialised week04 Llama at the baseline's CPU size, or
the newest `make baseline` checkpoint when one exists), same tokenizer, same
task (pydocs next-line, 4 choices) in one run. Our harness: `evaluate_mc`.
lm-eval: `simple_evaluate` on the same examples written as a local task YAML,
calling our adapter. Both must report the same accuracy; we time examples/s.
A third row times the adapter's `loglikelihood` alone (lm-eval's per-request
work without its task pipeline). Each system runs REPEATS times and the best
time counts (the first pass also fills the tokenizer's chunk cache).

    .venv/bin/python week05_eval/benchmarks/mc_throughput.py
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
_TMP = tempfile.mkdtemp(prefix="week05-bench-")
os.environ.setdefault("HF_HOME", os.path.join(_TMP, "hf"))   # lm-eval's dataset cache stays here

import torch  # noqa: E402

from shared import best_time, load_corpus, save_benchmark, smoke  # noqa: E402
from week02_bpe import BPETokenizer  # noqa: E402
from week05_eval import evaluate_mc, pydocs_next_line  # noqa: E402
from week05_eval.lm_eval_adapter import NanochatLM, write_lm_eval_task  # noqa: E402

N = smoke(200, 20)
BATCH = 16
REPEATS = 2


def model_and_tokenizer(corpus):
    try:
        from week05_eval.loading import find_baseline, load_for_eval
        model, tok, meta = load_for_eval(find_baseline())
        return model, tok, f"baseline {meta['checkpoint']}"
    except FileNotFoundError:
        pass
    from week04_modern_arch_tools import Llama, LlamaConfig
    texts = [d.text for d in corpus.train_docs][:3000]
    tok = BPETokenizer.train(texts, 2048)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=4, n_head=4, n_embd=128,
                      mlp="relu2", qk_norm=True, logit_softcap=15.0)
    return Llama(cfg).eval(), tok, "random Llama 4x128 (no baseline found)"


def main():
    import lm_eval
    from lm_eval.tasks import TaskManager

    corpus = load_corpus("pydocs")
    model, tok, what = model_and_tokenizer(corpus)
    task = pydocs_next_line(n=N, seed=0, corpus=corpus)
    n_req = sum(len(e.choices) for e in task.examples)
    print(f"model: {what}; task {task.name}: {N} examples, {n_req} loglikelihood requests")

    rows = []
    dt, ours = best_time(lambda: evaluate_mc(model, tok, task, batch_size=BATCH), REPEATS)
    rows.append({"system": "week05 evaluate_mc", "seconds": dt, "examples_per_s": N / dt,
                 "acc": ours.acc, "acc_norm": ours.acc_norm})

    folder = os.path.join(_TMP, "tasks")
    name = write_lm_eval_task(task, folder)
    lm = NanochatLM(model, tok, batch_size=BATCH)
    dt, out = best_time(lambda: lm_eval.simple_evaluate(
        model=lm, tasks=[name], num_fewshot=0, bootstrap_iters=0,
        task_manager=TaskManager(include_path=folder, include_defaults=False)), REPEATS)
    res = out["results"][name]
    rows.append({"system": "lm-eval simple_evaluate + NanochatLM", "seconds": dt,
                 "examples_per_s": N / dt, "acc": res["acc,none"], "acc_norm": res["acc_norm,none"]})

    from lm_eval.api.instance import Instance
    reqs = [Instance("loglikelihood", {}, (e.context, c), i)
            for i, e in enumerate(task.examples) for c in e.choices]
    dt, _ = best_time(lambda: lm.loglikelihood(reqs), REPEATS)
    rows.append({"system": "NanochatLM.loglikelihood only", "seconds": dt,
                 "examples_per_s": N / dt, "acc": None, "acc_norm": None})

    print(f"\n{'system':<40} {'seconds':>8} {'examples/s':>11} {'acc':>6} {'acc_norm':>9}")
    for r in rows:
        acc = "" if r["acc"] is None else f"{r['acc']:.3f}"
        accn = "" if r["acc_norm"] is None else f"{r['acc_norm']:.3f}"
        print(f"{r['system']:<40} {r['seconds']:>8.2f} {r['examples_per_s']:>11.1f} {acc:>6} "
              f"{accn:>9}")
    ratio = rows[0]["examples_per_s"] / rows[1]["examples_per_s"]
    same = abs(rows[0]["acc"] - rows[1]["acc"]) < 1e-9 and \
        abs(rows[0]["acc_norm"] - rows[1]["acc_norm"]) < 1e-9
    print(f"\nours / lm-eval throughput: {ratio:.2f}x; same accuracy: {same}")
    path = save_benchmark("week05_mc_throughput", {
        "rows": rows,
        "summary": {"ratio_ours_over_lm_eval": ratio, "same_accuracy": same, "examples": N,
                    "model": what, "torch_threads": torch.get_num_threads()},
        "target_met": bool(same and ratio >= 1.0)})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
