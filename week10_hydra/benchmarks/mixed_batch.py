"""Mixed-adapter batches: the AdapterBank's gather against week06's per-adapter loop and PEFT.

    python week10_hydra/benchmarks/mixed_batch.py --threads 2   # a few minutes on 2 cores
    python week10_hydra/benchmarks/mixed_batch.py --smoke       # the plumbing, seconds

One randomly initialised week04 ``Llama`` (4 layers x 384, GQA 6/2 heads, vocab 2048), turned
into Hugging Face's ``LlamaForCausalLM`` by ``llama_to_hf``, and 16 rank-16 LoRA adapters with
random A and B on every attention and MLP projection (q, k, v, o, gate, up, down). The SAME
weights serve every system:

- ours: an ``AdapterBank`` hooked on the HF model, a per-row ``Plan`` (one gather per layer);
- loop: week06's ``inject_lora`` on a copy of the HF model and ``mixed_batch`` (each layer runs
  one pass per distinct adapter in the batch);
- PEFT: ``get_peft_model`` + ``add_adapter`` on another copy, the A/B copied in, forward and
  ``generate`` with ``adapter_names=``;
- ours (week04 Decoding): the bank on our own week04 Llama (the serving path), decoded by
  week01's ``Decoding(on_keep=plan.keep)``. Our Llama fuses q/k/v into ``qkv`` and gate/up into
  ``fc``, so there an adapter is the equal fused LoRA (A stacked, B block-diagonal: rank 48 on
  ``qkv``, 32 on ``fc``; the bank pads every layer to that rank, so this row does more LoRA work).

A batch is 16 rows; with k distinct adapters, row i uses adapter i mod k (k = 1, 4, 16). Before
any clock runs, the script asserts that ours, the loop and PEFT give the same logits (max abs
difference <= 1e-4, every k), and that the week04 bank gives the HF bank's logits. Prefill:
one forward of the (16, T) prompts. Decode: greedy generation of N new tokens with the KV cache
(HF ``generate(max_new_tokens=N, min_new_tokens=N, do_sample=False)`` with the plan active /
inside ``mixed_batch`` / with ``adapter_names``; ``Decoding`` at temperature 0); decode tokens/s
is 16 * N / the whole call (its own prefill included). The HF model with no adapter at all is
timed too: the ceiling any LoRA serving can reach. Systems run interleaved in a shuffled
order each round, one warm-up round, the median of ``--repeats`` rounds. Ratio columns: ours /
loop and ours / PEFT (> 1: ours is faster). Issue targets: >= 2x the loop at 16 adapters, and
not slower than PEFT.

Memory per extra adapter: ``bank.adapter_bytes`` and the measured growth of ``bank.nbytes()``
while 16 adapters are added; for PEFT and the loop, the growth of parameter bytes per added
adapter. Hot swap: the median time of ``bank.add`` of a rank-16 adapter (replacing one in place,
into a freed slot, and growing the pools), and PEFT's ``add_adapter`` + weight copy. Saved as
``runs/bench/week10_mixed_batch.json`` (not in a smoke run).

Left out: GPU timings, padded (ragged) prompts, sampling, stacks and Arrow rows (the bank's
tests cover them; PEFT's ``adapter_names`` has no stacks), and fused kernels.
"""

from __future__ import annotations

import argparse
import copy
import random
import statistics
import time
from dataclasses import dataclass, fields

import torch

from shared import add_threads_argument, is_smoke, save_benchmark, set_threads

HF_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SYSTEMS = ("ours", "loop", "peft", "ours_w04")  # ours_w04: the bank on week04's Llama
TIMED = (*SYSTEMS, "base")  # base: the HF model with no adapter at all (the ceiling)
ATOL = 1e-4


@dataclass
class BenchConfig:
    """The model, the batch and the repeats."""

    n_layer: int = 4
    n_embd: int = 384
    n_head: int = 6
    n_kv_head: int = 2
    vocab_size: int = 2048
    rank: int = 16
    alpha: float = 32.0
    batch: int = 16
    distinct: tuple[int, ...] = (1, 4, 16)  # distinct adapters in a batch
    prompt_len: int = 64
    new_tokens: int = 32
    repeats: int = 3  # timed rounds after one warm-up round
    swap_repeats: int = 9
    seed: int = 0

    def __post_init__(self):
        self.distinct = tuple(self.distinct)
        for name in ("n_layer", "n_embd", "n_head", "n_kv_head", "vocab_size", "rank", "batch",
                     "prompt_len", "new_tokens", "repeats", "swap_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an int >= 1, got {v!r}")
        if not self.distinct or any(k < 1 or k > self.batch for k in self.distinct):
            raise ValueError(f"distinct adapter counts must be in 1..batch ({self.batch}), got "
                             f"{self.distinct}")
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:
            raise ValueError(f"n_embd ({self.n_embd}) must divide by n_head ({self.n_head}) and "
                             f"n_head by n_kv_head ({self.n_kv_head})")

    @property
    def n_adapters(self) -> int:
        return max(self.distinct)


SMOKE = dict(n_layer=2, n_embd=32, n_head=4, n_kv_head=2, vocab_size=128, rank=4, alpha=8.0,
             batch=4, distinct=(1, 4), prompt_len=8, new_tokens=4, repeats=1, swap_repeats=2)


# ---------------------------------------------------------------- models and adapters


def random_adapters(hf, cfg: BenchConfig) -> dict[str, dict[str, tuple]]:
    """``{name: {hf_layer: (A (r, in), B (out, r), scaling)}}`` for every target of ``hf``."""
    g = torch.Generator().manual_seed(cfg.seed + 1)
    layers = {n: m for n, m in hf.named_modules() if n.rsplit(".", 1)[-1] in HF_TARGETS}
    out = {}
    for i in range(cfg.n_adapters):
        out[f"t{i}"] = {n: (torch.randn(cfg.rank, m.in_features, generator=g) / m.in_features ** 0.5,
                            torch.randn(m.out_features, cfg.rank, generator=g) * 0.02,
                            cfg.alpha / cfg.rank) for n, m in layers.items()}
    return out


def fused(weights: dict[str, tuple]) -> dict[str, tuple]:
    """An HF-named adapter as the equal adapter on week04's fused layers (qkv, fc)."""
    out = {}
    n_layer = 1 + max(int(k.split(".")[2]) for k in weights)
    for i in range(n_layer):
        hf = f"model.layers.{i}."
        groups = {f"blocks.{i}.attn.qkv": ["self_attn.q_proj", "self_attn.k_proj",
                                           "self_attn.v_proj"],
                  f"blocks.{i}.attn.proj": ["self_attn.o_proj"],
                  f"blocks.{i}.mlp.fc": ["mlp.gate_proj", "mlp.up_proj"],
                  f"blocks.{i}.mlp.proj": ["mlp.down_proj"]}
        for ours, parts in groups.items():
            abs_ = [weights[hf + p] for p in parts]
            A = torch.cat([a for a, _, _ in abs_], 0)  # (sum r, in)
            B = torch.block_diag(*[b * s for _, b, s in abs_])  # (sum out, sum r)
            out[ours] = (A, B, 1.0)
    return out


def build(cfg: BenchConfig):
    """The four systems on the same weights: ``{system: model}``, the banks, the adapters."""
    import peft

    from week04_modern_arch_tools import Llama, LlamaConfig
    from week04_modern_arch_tools.hf import llama_to_hf
    from week06_lora import inject_lora, lora_layers
    from week10_hydra.bank import AdapterBank

    torch.manual_seed(cfg.seed)
    base = Llama(LlamaConfig(vocab_size=cfg.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                             n_kv_head=cfg.n_kv_head, n_embd=cfg.n_embd,
                             block_size=cfg.prompt_len + cfg.new_tokens)).eval()
    hf = llama_to_hf(base).eval()
    adapters = random_adapters(hf, cfg)
    names = list(adapters)
    # copies first: a deep copy would carry the bank's hooks along
    loop = copy.deepcopy(hf)
    for n in names:
        inject_lora(loop, targets=list(HF_TARGETS), r=cfg.rank, alpha=cfg.alpha, adapter=n,
                    freeze_base=False, activate=False)
    with torch.no_grad():
        for lname, layer in lora_layers(loop).items():
            for n in names:
                layer.lora[n].A.copy_(adapters[n][lname][0])
                layer.lora[n].B.copy_(adapters[n][lname][1])
    lcfg = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(HF_TARGETS),
                           init_lora_weights=False)
    pm = peft.get_peft_model(copy.deepcopy(hf), lcfg, adapter_name=names[0])
    for n in names[1:]:
        pm.add_adapter(n, lcfg)
    copy_into_peft(pm, adapters)
    pm.eval()
    bank = AdapterBank(hf, targets=list(adapters[names[0]]))
    bank_w04 = AdapterBank(base)
    for n in names:
        bank.add(n, adapters[n])
        bank_w04.add(n, fused(adapters[n]))
    models = {"ours": hf, "loop": loop.eval(), "peft": pm, "ours_w04": base}
    return models, {"ours": bank, "ours_w04": bank_w04}, adapters


@torch.no_grad()
def copy_into_peft(pm, adapters: dict[str, dict[str, tuple]]) -> None:
    for mname, m in pm.named_modules():
        if not hasattr(m, "lora_A"):
            continue
        key = mname.removeprefix("base_model.model.")
        for n in adapters:
            if n in m.lora_A and key in adapters[n]:
                m.lora_A[n].weight.copy_(adapters[n][key][0])
                m.lora_B[n].weight.copy_(adapters[n][key][1])


# ---------------------------------------------------------------- one call per system


def rows_for(k: int, cfg: BenchConfig) -> list[str]:
    return [f"t{i % k}" for i in range(cfg.batch)]


@torch.no_grad()
def prefill(system: str, models, banks, rows, x) -> torch.Tensor:
    """Logits (B, T, V) of one forward of ``x`` with row i on adapter ``rows[i]``."""
    from week06_lora import mixed_batch

    if system == "base":
        return models["ours"](input_ids=x, use_cache=False).logits
    m = models[system]
    if system in banks:
        with banks[system].use(rows):
            return m(input_ids=x).logits if system == "ours" else m(x)
    if system == "loop":
        with mixed_batch(m, rows):
            return m(input_ids=x, use_cache=False).logits
    return m(input_ids=x, adapter_names=rows, use_cache=False).logits


@torch.no_grad()
def generate(system: str, models, banks, rows, x, n: int) -> torch.Tensor:
    """The (B, n) greedy new tokens with the KV cache."""
    from week01_transformer import DecodeConfig, Decoding
    from week06_lora import mixed_batch

    m = models["ours" if system == "base" else system]
    if system == "ours_w04":
        with banks[system].use(rows) as plan:
            out = Decoding(m, x, DecodeConfig(max_new_tokens=n, temperature=0),
                           on_keep=plan.keep).run()
        return torch.tensor([r.ids for r in out])
    kw = dict(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=n, min_new_tokens=n,
              do_sample=False, pad_token_id=0)
    if system == "base":
        out = m.generate(**kw)
    elif system == "ours":
        with banks[system].use(rows):
            out = m.generate(**kw)
    elif system == "loop":
        with mixed_batch(m, rows):
            out = m.generate(**kw)
    else:
        out = m.generate(**kw, adapter_names=rows)
    return out[:, x.size(1):]


def check_equal(models, banks, cfg: BenchConfig, x) -> float:
    """Max abs logit difference of loop, PEFT and week04 against ours, for every k (asserted)."""
    worst = 0.0
    for k in cfg.distinct:
        rows = rows_for(k, cfg)
        logits = {s: prefill(s, models, banks, rows, x) for s in SYSTEMS}
        for s in ("loop", "peft", "ours_w04"):
            d = float((logits[s] - logits["ours"]).abs().max())
            assert d <= ATOL, f"{s} differs from ours by {d:.2e} at {k} adapters (> {ATOL})"
            worst = max(worst, d)
        with torch.no_grad():
            plain = models["ours"](input_ids=x).logits
        assert not torch.allclose(plain, logits["ours"], atol=1e-3), "the adapters do nothing"
    return worst


# ---------------------------------------------------------------- timing


def time_throughput(models, banks, cfg: BenchConfig, x) -> list[dict]:
    """Prefill and decode tokens/s of every system at every k: median of interleaved rounds."""
    from tqdm.auto import tqdm

    rng = random.Random(cfg.seed)
    B, T, N = cfg.batch, cfg.prompt_len, cfg.new_tokens
    out = []
    jobs = [(k, s) for k in cfg.distinct for s in TIMED]
    bar = tqdm(total=(1 + cfg.repeats) * len(jobs), desc="mixed batch", leave=False)
    for k in cfg.distinct:
        rows = rows_for(k, cfg)
        times = {(s, p): [] for s in TIMED for p in ("prefill", "decode")}
        same = {}
        for rnd in range(1 + cfg.repeats):
            order = list(TIMED)
            rng.shuffle(order)
            for s in order:
                t0 = time.perf_counter()
                prefill(s, models, banks, rows, x)
                t1 = time.perf_counter()
                toks = generate(s, models, banks, rows, x, N)
                t2 = time.perf_counter()
                if rnd:  # round 0 is the warm-up
                    times[s, "prefill"].append(t1 - t0)
                    times[s, "decode"].append(t2 - t1)
                same[s] = toks
                bar.update()
        agree = {s: float((same[s] == same["ours"]).float().mean()) for s in SYSTEMS}
        for phase, tokens in (("prefill", B * T), ("decode", B * N)):
            tps = {s: tokens / statistics.median(times[s, phase]) for s in TIMED}
            out.append({"adapters": k, "phase": phase, **{f"{s}_tok_s": tps[s] for s in TIMED},
                        "ours_over_loop": tps["ours"] / tps["loop"],
                        "ours_over_peft": tps["ours"] / tps["peft"],
                        "same_tokens": agree if phase == "decode" else None})
    bar.close()
    return out


def _median_ms(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(ts)


def _param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def memory_and_swap(cfg: BenchConfig, models, adapters) -> dict:
    """Bytes per extra adapter (bank, PEFT, loop) and the latency of loading one."""
    import peft

    from week06_lora import inject_lora
    from week10_hydra.bank import AdapterBank

    names = list(adapters)
    hf = models["ours"]
    bank = AdapterBank(hf, targets=list(adapters[names[0]]))
    sizes, grow_ms = [], []
    for n in names:
        t0 = time.perf_counter()
        bank.add(n, adapters[n])
        grow_ms.append(1e3 * (time.perf_counter() - t0))
        sizes.append(bank.nbytes())
    growth = [b - a for a, b in zip(sizes, sizes[1:])]
    last = names[-1]
    swap_ms = _median_ms(lambda: bank.add(last, adapters[names[0]]), cfg.swap_repeats)

    def reload():
        bank.remove(last)
        t0 = time.perf_counter()
        bank.add(last, adapters[last])
        return time.perf_counter() - t0

    free_ms = 1e3 * statistics.median(reload() for _ in range(cfg.swap_repeats))
    res = {"bank_adapter_bytes": bank.adapter_bytes(last),
           "bank_growth_bytes": statistics.median(growth) if growth else None,
           "bank_swap_ms": swap_ms, "bank_free_slot_ms": free_ms,
           "bank_grow_ms": statistics.median(grow_ms[1:] or grow_ms), "bank_slots": len(bank)}
    bank.close()
    # PEFT: parameter bytes of one more adapter, and add_adapter + copying its weights in
    pm = models["peft"]
    lcfg = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(HF_TARGETS),
                           init_lora_weights=False)
    before = _param_bytes(pm)
    ts = []
    for _ in range(cfg.swap_repeats):
        t0 = time.perf_counter()
        pm.add_adapter("swap", lcfg)
        copy_into_peft(pm, {"swap": adapters[names[0]]})
        ts.append(time.perf_counter() - t0)
        res["peft_growth_bytes"] = _param_bytes(pm) - before
        pm.delete_adapter("swap")
    pm.eval()
    res["peft_add_ms"] = 1e3 * statistics.median(ts)
    # the loop: week06's LoRALinear parameters of one more adapter
    loop = models["loop"]
    before = _param_bytes(loop)
    inject_lora(loop, targets=list(HF_TARGETS), r=cfg.rank, alpha=cfg.alpha, adapter="extra",
                freeze_base=False, activate=False)
    res["loop_growth_bytes"] = _param_bytes(loop) - before
    from week06_lora import delete_adapter

    delete_adapter(loop, "extra")
    return res


# ---------------------------------------------------------------- the tables


def table(rows: list[dict]) -> str:
    head = ("| adapters | phase | ours tok/s | loop tok/s | PEFT tok/s | ours week04 Decoding tok/s "
            "| no adapter tok/s | ours/loop | ours/PEFT |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['adapters']} | {r['phase']} | {r['ours_tok_s']:.0f} | "
                     f"{r['loop_tok_s']:.0f} | {r['peft_tok_s']:.0f} | {r['ours_w04_tok_s']:.0f} | "
                     f"{r['base_tok_s']:.0f} | "
                     f"{r['ours_over_loop']:.3g} | {r['ours_over_peft']:.3g} |")
    return "\n".join(lines)


def memory_table(m: dict) -> str:
    def kib(b):
        return "-" if b is None else f"{b / 1024:.1f}"

    lines = ["| system | KiB per extra adapter | load latency ms |", "|---|---|---|",
             f"| ours: bank.adapter_bytes | {kib(m['bank_adapter_bytes'])} | - |",
             f"| ours: bank.nbytes() growth (add, pools grow) | {kib(m['bank_growth_bytes'])} | "
             f"{m['bank_grow_ms']:.3g} |",
             f"| ours: hot swap (bank.add over a loaded name) | - | {m['bank_swap_ms']:.3g} |",
             f"| ours: bank.add into a freed slot | - | {m['bank_free_slot_ms']:.3g} |",
             f"| PEFT: add_adapter + copy weights | {kib(m['peft_growth_bytes'])} | "
             f"{m['peft_add_ms']:.3g} |",
             f"| loop: week06 inject_lora | {kib(m['loop_growth_bytes'])} | - |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true",
                    help="a tiny model, one timed round: seconds, measures nothing")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds after one warm-up")
    ap.add_argument("--new-tokens", type=int, default=None, help="N, greedy tokens per row")
    ap.add_argument("--n-embd", type=int, default=None, help="model width (default 384)")
    add_threads_argument(ap)
    args = ap.parse_args(argv)
    threads = set_threads(args.threads)
    smoke = args.smoke or is_smoke()
    over = {k: v for k, v in {"repeats": args.repeats, "new_tokens": args.new_tokens,
                              "n_embd": args.n_embd}.items() if v is not None}
    try:
        cfg = BenchConfig(**{**(SMOKE if smoke else {}), **over})
    except ValueError as e:
        ap.error(str(e))
    import transformers

    transformers.logging.set_verbosity_error()
    models, banks, adapters = build(cfg)
    params = sum(p.numel() for p in models["ours_w04"].parameters())
    print(f"torch threads: {threads}; fp32 CPU; Llama {cfg.n_layer} x {cfg.n_embd} "
          f"({params / 1e6:.2f}M params), {cfg.n_adapters} adapters of rank {cfg.rank} on "
          f"{len(adapters['t0'])} layers; batch {cfg.batch} x {cfg.prompt_len} prompt tokens, "
          f"{cfg.new_tokens} new; median of {cfg.repeats} rounds after 1 warm-up", flush=True)
    x = torch.randint(0, cfg.vocab_size, (cfg.batch, cfg.prompt_len),
                      generator=torch.Generator().manual_seed(cfg.seed + 2))
    worst = check_equal(models, banks, cfg, x)
    print(f"same logits: loop, PEFT and week04 within {worst:.1e} of ours (<= {ATOL})", flush=True)
    rows = time_throughput(models, banks, cfg, x)
    mem = memory_and_swap(cfg, models, adapters)
    print("\n" + table(rows) + "\n\n" + memory_table(mem))
    top = [r for r in rows if r["adapters"] == cfg.n_adapters]
    target_loop = all(r["ours_over_loop"] >= 2 for r in top)
    target_peft = all(r["ours_over_peft"] >= 1 for r in rows)
    agree = {s: v for r in rows if r["same_tokens"] for s, v in r["same_tokens"].items()}
    per_phase = ", ".join(f"{r['phase']} {r['ours_over_loop']:.2f}x" for r in top)
    print(f"\ntargets: >= 2x the loop at {cfg.n_adapters} adapters ({per_phase}): "
          f"{'met' if target_loop else 'MISSED'}; not slower than PEFT: "
          f"{'met' if target_peft else 'MISSED'}; greedy tokens equal to ours (last k): "
          + ", ".join(f"{s} {v:.0%}" for s, v in agree.items() if s != "ours"))
    if not smoke:
        summary = {f"{r['phase']}_{r['adapters']}_ours_over_{o}": round(r[f"ours_over_{o}"], 3)
                   for r in rows for o in ("loop", "peft")}
        path = save_benchmark("week10_mixed_batch", {
            "rows": rows, "memory": mem, "threads": threads, "max_logit_diff": worst,
            "config": {f.name: getattr(cfg, f.name) for f in fields(cfg)}, "summary": summary,
            "target_met": target_loop and target_peft})
        print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
