"""Our DPO and GRPO optimizer steps against TRL's DPOTrainer and GRPOTrainer, same model, one run.

    python week09_alignment/benchmarks/trl_step.py            # two sizes, a few minutes on 2 cores
    python week09_alignment/benchmarks/trl_step.py --smoke    # the plumbing, seconds (or NANOCHAT_SMOKE=1)

The model: a randomly initialised week04 ``Llama`` (swiglu, no qk_norm, so ``to_hf()`` is a
``transformers.LlamaForCausalLM`` with the same weights) at two sizes, ``tiny`` (2 layers x 64)
and ``small`` (6 layers x 384, about 11M parameters); the tokenizer is week04's
``fit_tokenizer`` on the synthetic tool conversations, handed to TRL as
``hf_tokenizer.to_hf_tokenizer``. Both sides: fp32 on the CPU, ``--threads`` torch threads
(default 1), AdamW (torch's, lr 5e-6, betas 0.9/0.999, no weight decay, constant lr, no warm-up),
gradients clipped at 1.0, dropout none (our model has none; TRL's ``disable_dropout``).

- DPO (sigmoid, beta 0.1, a frozen copy as the reference on both sides): ours is one
  ``Trainer.train_step`` of week03 with ``DPOLoss`` on a batch of ``preference_pairs``
  (``encode_pair`` / ``collate_pairs``, collated before the clock starts); TRL's is one step of
  ``DPOTrainer.train()`` on the same pairs in its conversational format (``to_hf_messages``),
  the same batch size and ``max_length``, ``ref_model`` the exported copy. TRL is timed from
  its ``on_step_begin`` to its ``on_step_end`` callback: ``training_step`` (forward, backward)
  plus clipping and ``optimizer.step``; its collation happens before, as ours does.
- GRPO (dapo loss, beta 0, G completions for each of P prompts of ``rewards.rl_prompts``,
  temperature 1, one iteration per rollout, the same reward for both: the completion's length
  in characters / 100): ours is ``RolloutLoader.next_batch`` (G samples per prompt through
  week04's ``generate_with_tools`` on week01's KV-cached decoding loop, no tools, then the old
  log-probs and the rewards) followed by ``Trainer.train_step`` with ``GRPOLoss``; TRL's is one
  ``GRPOTrainer`` step between the same callbacks (``model.generate`` with its cache, the
  rewards, the loss step). Generation is reported separately: ours is the ``next_batch`` time,
  TRL's the time inside ``_generate_and_score_completions`` (wrapped with a clock); update is
  the rest. Ours also scores the old log-probs each rollout; TRL skips that when one rollout
  feeds one step. Random models rarely stop early, so both mostly generate the full length.

Each system runs one warm-up step, then ``--steps`` timed steps; the table shows the median
seconds per step, ratio = TRL / ours (> 1: ours is faster) and tokens per second (DPO: the real
tokens of the batch's chosen and rejected rows; GRPO: completion tokens generated). Saved as
``runs/bench/week09_trl_step.json`` (the dashboard's benchmarks page). No target: a
measurement, not a test.

Left out: GPU timings (the same code runs with a CUDA torch, but only CPU is measured here),
LoRA and precomputed references, TRL's vLLM generation, bf16.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads

SIZES = {"tiny": dict(n_layer=2, n_head=2, n_kv_head=2, n_embd=64),
         "small": dict(n_layer=6, n_head=6, n_kv_head=6, n_embd=384)}


@dataclass
class BenchConfig:
    """What both sides share."""

    sizes: tuple[str, ...] = ("tiny", "small")
    steps: int = 3                # timed steps after one warm-up step
    dpo_batch: int = 8            # pairs per step (2x rows)
    block_size: int = 192         # DPO max_length (tokens per row)
    beta: float = 0.1
    lr: float = 5e-6
    group_size: int = 4           # G (TRL: num_generations)
    prompts: int = 4              # P prompts per step: P * G completions
    max_new_tokens: int = 32      # TRL: max_completion_length
    temperature: float = 1.0
    n_pairs: int = 64
    vocab_size: int = 512
    seed: int = 0

    def __post_init__(self):
        bad = [s for s in self.sizes if s not in SIZES]
        if bad:
            raise ValueError(f"unknown sizes {bad}; valid: {', '.join(SIZES)}")
        for name in ("steps", "dpo_batch", "block_size", "group_size", "prompts",
                     "max_new_tokens", "n_pairs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO needs a group), got {self.group_size}")


SMOKE = BenchConfig(sizes=("tiny",), steps=1, dpo_batch=2, block_size=96, group_size=2, prompts=2,
                    max_new_tokens=4, n_pairs=8, vocab_size=300)


# ---------------------------------------------------------------- model and data


def build(size: str, cfg: BenchConfig):
    """(model, tokenizer, parameter count) at ``size``, seeded."""
    from week04_modern_arch_tools import Llama, LlamaConfig, fit_tokenizer, make_tool_dataset

    convs = [c for k in ("arithmetic", "string", "facts")
             for c in make_tool_dataset(k, 100, seed=cfg.seed)]
    tok = fit_tokenizer(convs, vocab_size=cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, block_size=256, **SIZES[size]))
    return model, tok, sum(p.numel() for p in model.parameters())


def train_config(cfg: BenchConfig, batch_size: int, block_size: int):
    from week03_training import TrainConfig

    return TrainConfig(steps=10**6, batch_size=batch_size, block_size=block_size, lr=cfg.lr,
                       optimizer="torch-adamw", betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                       schedule="constant", warmup_steps=0, grad_clip=1.0, dtype="fp32",
                       device="cpu", seed=cfg.seed, eval_every=0, ckpt_every=0, save_final=False,
                       write_metrics=False, progress=False)


def trl_args(cls, cfg: BenchConfig, out: Path, steps: int, **kw):
    """TRL's config with our optimizer settings (``adamw_torch``: torch.optim.AdamW)."""
    return cls(output_dir=str(out), report_to="none", use_cpu=True, bf16=False, fp16=False,
               max_steps=steps, learning_rate=cfg.lr, optim="adamw_torch", adam_beta1=0.9,
               adam_beta2=0.999, adam_epsilon=1e-8, weight_decay=0.0,
               lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=1.0,
               logging_steps=10**6, save_strategy="no", dataloader_num_workers=0,
               disable_dropout=True, activation_checkpointing=False, disable_tqdm=True,
               seed=cfg.seed, **kw)


def quiet(trainer):
    """``trainer`` without the callbacks that print its logs (the table is the output)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    return trainer


class StepClock:
    """A ``transformers.TrainerCallback`` (built lazily) that times each optimizer step."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class _Clock(TrainerCallback):
            def __init__(self):
                self.times, self._t0 = [], None

            def on_step_begin(self, args, state, control, **kw):
                self._t0 = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                self.times.append(time.perf_counter() - self._t0)

        return _Clock()


def _median_after_warmup(xs: list[float]) -> float:
    return statistics.median(xs[1:] if len(xs) > 1 else xs)


# ---------------------------------------------------------------- DPO


def bench_dpo(model, tok, cfg: BenchConfig, work: Path) -> dict:
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    from shared import SampledBatches
    from week03_training import Trainer
    from week09_alignment.dpo import DPOConfig, DPOLoss, Reference, collate_pairs, encode_pair
    from week09_alignment.hf_tokenizer import to_hf_messages, to_hf_tokenizer
    from week09_alignment.prefs import preference_pairs

    pairs = preference_pairs(cfg.n_pairs, cfg.seed, "train")
    n = 1 + cfg.steps
    # ours
    policy = copy.deepcopy(model).train()
    dcfg = DPOConfig(beta=cfg.beta, loss_type="sigmoid", reference="copy", lr=cfg.lr,
                     batch_size=cfg.dpo_batch, block_size=cfg.block_size)
    loss_fn = DPOLoss(dcfg, Reference.make("copy", policy))
    encoded = [encode_pair(p, tok, cfg.block_size) for p in pairs]
    loader = SampledBatches(encoded, cfg.dpo_batch, lambda b: collate_pairs(b, tok, cfg.block_size),
                            seed=cfg.seed)
    trainer = Trainer(policy, loader, train_config(cfg, cfg.dpo_batch, cfg.block_size),
                      loss_fn=loss_fn, run_dir=work / "ours-dpo", desc="dpo")
    ours, tokens = [], []
    for _ in range(n):
        batch = loader.next_batch()
        t0 = time.perf_counter()
        trainer.train_step([batch])
        ours.append(time.perf_counter() - t0)
        tokens.append(int(batch["attention_mask"].sum()))
    # TRL
    hf_tok = to_hf_tokenizer(tok)
    ds = Dataset.from_list([{"prompt": to_hf_messages(p["prompt"]),
                             "chosen": to_hf_messages(p["chosen"]),
                             "rejected": to_hf_messages(p["rejected"])} for p in pairs])
    args = trl_args(TRLDPOConfig, cfg, work / "trl-dpo", n, per_device_train_batch_size=cfg.dpo_batch,
                    beta=cfg.beta, loss_type=["sigmoid"], max_length=cfg.block_size,
                    truncation_mode="keep_start", precompute_ref_log_probs=False,
                    include_num_input_tokens_seen="non_padding")
    from transformers import TrainerCallback

    clock = StepClock.make()
    seen = []

    class _Tokens(TrainerCallback):  # the real (non-padding) tokens seen after each step
        def on_step_end(self, args, state, control, **kw):
            seen.append(state.num_input_tokens_seen)

    hf_ref = model.to_hf().eval()
    t = DPOTrainer(model=model.to_hf().train(), ref_model=hf_ref, args=args, train_dataset=ds,
                   processing_class=hf_tok, callbacks=[clock, _Tokens()])
    quiet(t).train()
    trl_tokens = [b - a for a, b in zip([0] + seen[:-1], seen)]
    s_ours, s_trl = _median_after_warmup(ours), _median_after_warmup(clock.times)
    return {"method": "DPO", "ours_s": s_ours, "trl_s": s_trl, "ratio": s_trl / s_ours,
            "ours_tok_s": _median_after_warmup(tokens) / s_ours,
            "trl_tok_s": (_median_after_warmup(trl_tokens) / s_trl) if trl_tokens and
            trl_tokens[-1] > 0 else None,
            "ours_steps_s": ours, "trl_steps_s": clock.times}


# ---------------------------------------------------------------- GRPO


def _length_reward_ours(example, run) -> float:
    return len(run.text) / 100.0


def _length_reward_trl(completions, **kw) -> list[float]:
    out = []
    for c in completions:  # conversational: a list of messages; else a string
        text = c if isinstance(c, str) else "".join(m.get("content") or "" for m in c)
        out.append(len(text) / 100.0)
    return out


def bench_grpo(model, tok, cfg: BenchConfig, work: Path) -> dict:
    from datasets import Dataset
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    from week03_training import Trainer
    from week09_alignment.grpo import GRPOConfig, GRPOLoss, RolloutLoader
    from week09_alignment.hf_tokenizer import to_hf_messages, to_hf_tokenizer
    from week09_alignment.rewards import rl_prompts

    examples = rl_prompts("arithmetic", max(16, cfg.prompts * (cfg.steps + 1)), seed=cfg.seed)
    n = 1 + cfg.steps
    N = cfg.prompts * cfg.group_size
    # ours
    policy = copy.deepcopy(model).train()
    gcfg = GRPOConfig(group_size=cfg.group_size, num_iterations=1, beta=0.0, loss_type="dapo",
                      temperature=cfg.temperature, max_new_tokens=cfg.max_new_tokens,
                      prompts_per_step=cfg.prompts, lr=cfg.lr, steps=n)
    loader = RolloutLoader(policy, tok, examples, gcfg, tools={}, seed=cfg.seed,
                           reward_fn=_length_reward_ours)
    trainer = Trainer(policy, loader, train_config(cfg, N, policy.config.block_size),
                      loss_fn=GRPOLoss(gcfg), run_dir=work / "ours-grpo", desc="grpo")
    gen, upd, tokens = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        batch = loader.next_batch()
        t1 = time.perf_counter()
        trainer.train_step([batch])
        upd.append(time.perf_counter() - t1)
        gen.append(t1 - t0)
        tokens.append(int(batch["completion_mask"].sum()))
    ours = [g + u for g, u in zip(gen, upd)]
    # TRL
    ds = Dataset.from_list([{"prompt": to_hf_messages(ex["prompt"])} for ex in examples])
    args = trl_args(TRLGRPOConfig, cfg, work / "trl-grpo", n, per_device_train_batch_size=N,
                    num_generations=cfg.group_size, max_completion_length=cfg.max_new_tokens,
                    temperature=cfg.temperature, top_p=1.0, top_k=0, beta=0.0, loss_type="dapo",
                    num_iterations=1, scale_rewards="group")
    clock = StepClock.make()
    t = GRPOTrainer(model=model.to_hf().train(), reward_funcs=_length_reward_trl, args=args,
                    train_dataset=ds, processing_class=to_hf_tokenizer(tok), callbacks=[clock])
    trl_gen, trl_tokens = [], []
    inner = t._generate_and_score_completions

    def timed(*a, **kw):  # TRL's rollout: generation, rewards, advantages
        t0 = time.perf_counter()
        out = inner(*a, **kw)
        trl_gen.append(time.perf_counter() - t0)
        trl_tokens.append(int(out["completion_mask"].sum()))
        return out

    t._generate_and_score_completions = timed
    quiet(t).train()
    s_ours, s_trl = _median_after_warmup(ours), _median_after_warmup(clock.times)
    g_trl = _median_after_warmup(trl_gen)
    return {"method": "GRPO", "ours_s": s_ours, "trl_s": s_trl, "ratio": s_trl / s_ours,
            "ours_gen_s": _median_after_warmup(gen), "ours_update_s": _median_after_warmup(upd),
            "trl_gen_s": g_trl, "trl_update_s": s_trl - g_trl,
            "ours_tok_s": _median_after_warmup(tokens) / s_ours,
            "trl_tok_s": (_median_after_warmup(trl_tokens) / s_trl) if trl_tokens else None,
            "ours_steps_s": ours, "trl_steps_s": clock.times}


# ---------------------------------------------------------------- the table


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(rows: list[dict]) -> str:
    head = ("| size | params | method | ours s/step | TRL s/step | ratio TRL/ours | ours tok/s | "
            "TRL tok/s | ours gen / update s | TRL gen / update s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    def split(r, a, b):
        return "-" if r.get(a) is None else f"{r[a]:.4g} / {r[b]:.4g}"

    for r in rows:
        lines.append(f"| {r['size']} | {r['params'] / 1e6:.2f}M | {r['method']} | {r['ours_s']:.4g} | "
                     f"{r['trl_s']:.4g} | {r['ratio']:.3g} | {_fmt(r['ours_tok_s'], '.0f')} | "
                     f"{_fmt(r['trl_tok_s'], '.0f')} | {split(r, 'ours_gen_s', 'ours_update_s')} | "
                     f"{split(r, 'trl_gen_s', 'trl_update_s')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="one tiny size, one timed step, short rows: seconds, measures nothing")
    ap.add_argument("--steps", type=int, default=None, help="timed steps after the warm-up step")
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=None)
    ap.add_argument("--methods", nargs="+", choices=("dpo", "grpo"), default=("dpo", "grpo"))
    add_threads_argument(ap)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    smoke = args.smoke or is_smoke()
    cfg = SMOKE if smoke else BenchConfig()
    over = {k: v for k, v in {"steps": args.steps,
                              "sizes": tuple(args.sizes) if args.sizes else None}.items()
            if v is not None}
    try:
        cfg = BenchConfig(**{**cfg.__dict__, **over})
    except ValueError as e:
        ap.error(str(e))
    import logging
    import warnings

    import datasets
    import transformers
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    print(f"torch threads: {threads}; fp32 CPU; {cfg.steps} timed steps after 1 warm-up; "
          f"DPO batch {cfg.dpo_batch} pairs x {cfg.block_size} tokens; GRPO {cfg.prompts} prompts x "
          f"G={cfg.group_size}, {cfg.max_new_tokens} new tokens", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="week09-bench-") as tmp:
        for size in cfg.sizes:
            model, tok, params = build(size, cfg)
            for method in args.methods:
                fn = bench_dpo if method == "dpo" else bench_grpo
                r = fn(model, tok, cfg, Path(tmp) / size)
                rows.append({"size": size, "params": params, **r})
                print(f"{size} {r['method']}: ours {r['ours_s']:.3f}s, TRL {r['trl_s']:.3f}s, "
                      f"ratio {r['ratio']:.2f}", flush=True)
    print("\n" + table(rows))
    summary = {f"{r['size']}_{r['method'].lower()}_ratio": round(r["ratio"], 3) for r in rows}
    if not smoke:
        path = save_benchmark("week09_trl_step", {"rows": rows, "threads": threads,
                                                  "config": cfg.__dict__, "summary": summary})
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
