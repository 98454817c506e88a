"""The track's measurements: upcycling vs scratch vs dense, specialisation, collapse and cure.

``python -m track_moe.experiments --preset tiny|full [--out runs/track_moe]`` runs, on the
embedded Python docs (``shared.load_corpus("pydocs")``, a week02 BPE fitted on them):

1. **dense**: week04's ``Llama`` trained ``dense_steps`` (week03's ``Trainer``), saved with
   ``shared.save_model`` (the checkpoint the other arms start from);
2. **equal extra tokens**, ``extra_steps`` each at the same batch and schedule:
   the dense model continued; the MoE upcycled from the checkpoint (``upcycle_checkpoint``);
   the same MoE from scratch; all three with week08's ``moe_loss_fn`` (Switch aux loss
   ``aux_alpha``) where they have experts. Validation bits per byte at the end;
3. **specialisation**: the topic x expert routing table of the upcycled and the scratch MoE's
   last layer (documents grouped by module: ``topic:*`` pages, tkinter, email, asyncio ...);
4. **collapse**: MoEs from scratch with the un-renormalised gate (y = sum of the chosen
   p_j * expert_j(x), GShard / Switch style: the router gains by raising the probability of
   the experts it already uses) and a router learning rate ``collapse_router_lr_mult`` x the
   rest: no balancing collapses (the load piles onto a few experts), Switch's aux loss and
   DeepSeek-V3's bias update cure it. Routing entropy per step and the final load per expert.

Writes ``results.md`` (the tables), ``results.json``, ``upcycle.png``, ``topics_upcycled.png``,
``topics_scratch.png`` and ``collapse.png`` to ``--out``. ``tiny`` takes a few minutes on one
CPU core; ``full`` is the same code at a GPU-friendly size.

Left out: expert parallelism during these runs (the runs are one process; ``parity.py`` shows
the sharded layer computes the same numbers), and repeats over seeds (one seed per arm).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from shared import load_corpus, save_model
from track_moe.specialise import (
    LoadRecorder,
    entropy_of,
    max_violation,
    plot_collapse,
    plot_topic_heatmap,
    topic_routing,
    topic_specialisation,
)
from track_moe.upcycle import UpcycleConfig, moe_config_from_dense, upcycle_checkpoint
from week02_bpe import BPETokenizer, TokenLoader, prepare, token_bytes
from week03_training import TrainConfig, Trainer, next_token_loss
from week04_modern_arch_tools import Llama, LlamaConfig
from week08_sota import SotaModel, balance_bias_hook, moe_loss_fn

__all__ = ["ExpConfig", "PRESETS", "run", "topic_of", "main"]

TOPICS = ("topic", "tkinter", "email", "asyncio", "_pydecimal", "turtle", "logging", "unittest")


@dataclass
class ExpConfig:
    """One experiment run; ``PRESETS`` holds "tiny" (CPU), "full" (GPU) and "test"."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_kv_head: int = 2
    intermediate_size: int = 128
    block_size: int = 64
    batch_size: int = 8
    vocab_size: int = 512
    max_docs: int | None = 3000          # documents tokenized (None: the whole corpus)
    bpe_chars: int = 400_000             # characters of train text the BPE is fitted on
    dense_steps: int = 300
    extra_steps: int = 200
    collapse_steps: int = 200
    lr: float = 3e-3
    n_experts: int = 8
    top_k: int = 2
    aux_alpha: float = 0.01
    bias_gamma: float = 0.01
    collapse_router_std: float = 0.02     # week08's router init
    collapse_router_lr_mult: float = 10.0
    collapse_norm_topk: bool = False      # Switch/GShard's gate: y = sum of the chosen p_j * expert_j
    eval_batches: int = 8
    windows_per_topic: int = 4
    topics: tuple = TOPICS
    seed: int = 0
    extra: dict = field(default_factory=dict)


PRESETS = {
    "test": ExpConfig(n_embd=32, intermediate_size=64, block_size=32, batch_size=4, max_docs=300,
                      bpe_chars=50_000, vocab_size=300, dense_steps=4, extra_steps=3,
                      collapse_steps=3, eval_batches=1, windows_per_topic=1, n_experts=4),
    "tiny": ExpConfig(),
    "full": ExpConfig(n_layer=8, n_embd=512, n_head=8, n_kv_head=4, intermediate_size=1536,
                      block_size=512, batch_size=32, vocab_size=8192, max_docs=None,
                      dense_steps=4000, extra_steps=2000, collapse_steps=1000, lr=1e-3,
                      n_experts=16, eval_batches=50, windows_per_topic=32),
}


# ---------------------------------------------------------------- data


def topic_of(doc_name: str) -> str:
    """``"topic:assert"`` -> "topic"; ``"doc:email.message.Message"`` -> "email"."""
    kind, _, rest = doc_name.partition(":")
    return "topic" if kind == "topic" else rest.split(".")[0]


def _data(cfg: ExpConfig, out: Path):
    corpus = load_corpus("pydocs")
    docs = list(corpus.documents if cfg.max_docs is None else corpus.documents[:cfg.max_docs])
    text = "\n".join(d.text for d in corpus.train_docs)[:cfg.bpe_chars]
    tok = BPETokenizer.train(text, vocab_size=cfg.vocab_size)
    data_dir = out / "data"
    prepare([d.text for d in docs], tok, data_dir, num_workers=1, progress=False)
    # held-out windows per topic (val documents first, then train ones) for the routing tables
    by_topic: dict[str, list] = {t: [] for t in cfg.topics}
    ordered = corpus.val_docs + corpus.train_docs
    for t in cfg.topics:
        ids: list[int] = []
        T, need = cfg.block_size, cfg.windows_per_topic * cfg.batch_size
        for d in ordered:
            if topic_of(d.name) == t:
                ids += tok.encode_ordinary(d.text)
            if len(ids) >= need * T:
                break
        n = len(ids) // T
        if n:
            rows = torch.tensor(ids[:n * T]).view(n, T)[:need]
            by_topic[t] = list(rows.split(cfg.batch_size))
    return data_dir, tok, {t: w for t, w in by_topic.items() if w}


def _train_cfg(cfg: ExpConfig, steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=cfg.batch_size, block_size=cfg.block_size,
                       lr=cfg.lr, warmup_steps=max(1, steps // 20), eval_every=0,
                       eval_batches=cfg.eval_batches, save_final=False, write_metrics=False,
                       progress=True, seed=cfg.seed)


def _fit(model, cfg, data_dir, tok, steps, run_dir, desc, loss_fn=next_token_loss, hooks=(),
         params=None, seed_offset=0):
    train = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "train", seed=cfg.seed + seed_offset)
    val = TokenLoader(data_dir, cfg.batch_size, cfg.block_size, "val", seed=cfg.seed)
    t = Trainer(model, train, _train_cfg(cfg, steps), loss_fn=loss_fn, hooks=hooks, params=params,
                val_loader=val, token_bytes=token_bytes(tok), run_dir=run_dir, desc=desc)
    fit_loss, t.loss_fn = t.loss_fn, next_token_loss
    t.start_bpb = t.evaluate()["val_bpb"]        # before the first step
    t.loss_fn = fit_loss
    t0 = time.time()
    t.fit()
    return t, time.time() - t0


def _bpb(trainer) -> float:
    # next_token_loss for every arm: the aux loss is not part of the model's bits per byte
    trainer.loss_fn = next_token_loss
    return trainer.evaluate()["val_bpb"]


# ---------------------------------------------------------------- the runs


def run(cfg: ExpConfig, out: str | Path = "runs/track_moe") -> dict:
    """Every experiment of the module docstring; returns (and writes) the results."""
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir, tok, windows = _data(cfg, out)
    dense_cfg = LlamaConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size,
                            n_layer=cfg.n_layer, n_head=cfg.n_head, n_kv_head=cfg.n_kv_head,
                            n_embd=cfg.n_embd, intermediate_size=cfg.intermediate_size)
    up = UpcycleConfig(n_experts=cfg.n_experts, top_k=cfg.top_k, aux_loss_alpha=cfg.aux_alpha)
    moe_cfg = moe_config_from_dense(dense_cfg, up)
    res: dict = {"config": asdict(cfg), "arms": {}}

    # 1. the dense checkpoint
    torch.manual_seed(cfg.seed)
    dense = Llama(dense_cfg)
    t, secs = _fit(dense, cfg, data_dir, tok, cfg.dense_steps, out / "dense", "dense")
    ckpt = save_model(out / "dense.safetensors", dense)
    res["dense_start_bpb"] = _bpb(t)
    n_tokens = cfg.extra_steps * cfg.batch_size * cfg.block_size

    # 2. equal extra tokens
    def arm(name, model, loss_fn, seed_offset=1):
        t, secs = _fit(model, cfg, data_dir, tok, cfg.extra_steps, out / name, name, loss_fn,
                       hooks=(balance_bias_hook,) if loss_fn is moe_loss_fn else (),
                       seed_offset=seed_offset)
        params = sum(p.numel() for p in model.parameters())
        from week08_sota import active_param_count
        res["arms"][name] = {"start_bpb": t.start_bpb, "val_bpb": _bpb(t), "params": params,
                             "active_params": active_param_count(model), "seconds": secs,
                             "final_train_loss": t.history[-1]}
        return model

    from shared import load_model
    arm("dense continued", load_model(ckpt), next_token_loss)
    upcycled = arm("MoE upcycled", upcycle_checkpoint(ckpt, up, seed=cfg.seed + 1), moe_loss_fn)
    torch.manual_seed(cfg.seed + 2)
    scratch = arm("MoE from scratch", SotaModel(moe_cfg), moe_loss_fn)
    res["extra_tokens"] = n_tokens
    _close(_plot_arms(res, out / "upcycle.png"))

    # 3. specialisation
    res["topics"] = {}
    for name, model in (("upcycled", upcycled), ("scratch", scratch)):
        topics, table = topic_routing(model, windows, layer=-1)
        _close(plot_topic_heatmap(topics, table, f"MoE {name}: last layer, share of each "
                                  f"topic's top-{cfg.top_k} pairs", out / f"topics_{name}.png"))
        res["topics"][name] = {"topics": topics, "table": table.tolist(),
                               "max_share": float(table.max()),
                               "specialisation_bits": topic_specialisation(table),
                               "mean_row_entropy": sum(entropy_of(r) for r in table) / len(table)}

    # 4. collapse and its cures
    recs = {}
    for name, alpha, gamma in (("no balancing", 0.0, 0.0), ("aux loss", cfg.aux_alpha, 0.0),
                               ("bias update (V3)", 0.0, cfg.bias_gamma)):
        torch.manual_seed(cfg.seed + 3)            # the same collapsed start for all three
        model = SotaModel(replace(moe_cfg, aux_loss_alpha=alpha, bias_update_speed=gamma,
                                  norm_topk_prob=cfg.collapse_norm_topk))
        routers = [p for n, p in model.named_parameters() if ".mlp.gate." in n]
        with torch.no_grad():
            for p in routers:
                p.normal_(0.0, cfg.collapse_router_std)
        others = [p for n, p in model.named_parameters() if ".mlp.gate." not in n]
        groups = [{"params": [p for p in others if p.ndim >= 2]},
                  {"params": [p for p in others if p.ndim < 2], "weight_decay": 0.0},
                  {"params": routers, "lr": cfg.lr * cfg.collapse_router_lr_mult}]
        rec = LoadRecorder()
        t, secs = _fit(model, cfg, data_dir, tok, cfg.collapse_steps, out / f"collapse-{name}",
                       name, moe_loss_fn, hooks=(rec, balance_bias_hook), params=groups,
                       seed_offset=3)
        last = torch.stack(rec.loads[-10:]).sum(0)                      # (L, N)
        recs[name] = rec
        res.setdefault("collapse", {})[name] = {
            "entropy_first": rec.series(entropy_of)[0], "entropy_last10": sum(
                entropy_of(r) for r in last) / len(last),
            "maxvio_last10": sum(max_violation(r) for r in last) / len(last),
            "val_bpb": _bpb(t)}
    _close(plot_collapse(recs, cfg.n_experts, cfg.top_k, out / "collapse.png"))
    (out / "results.json").write_text(json.dumps(res, indent=1))
    (out / "results.md").write_text(render(res))
    return res


def _close(fig) -> None:
    """The PNG is written: close the figure (a notebook would show it a second time)."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def _plot_arms(res, path):
    import matplotlib.pyplot as plt

    names = list(res["arms"])
    vals = [res["arms"][n]["val_bpb"] for n in names]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.barh(names, vals, color=["gray", "tab:green", "tab:orange"])
    ax.axvline(res["dense_start_bpb"], ls="--", c="k", lw=0.8, label="dense checkpoint")
    lo = min(vals + [res["dense_start_bpb"]])
    ax.set_xlim(lo * 0.97, max(vals + [res["dense_start_bpb"]]) * 1.01)
    ax.set_xlabel(f"val bits per byte after {res['extra_tokens']:,} extra tokens")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    return fig


def render(res: dict) -> str:
    """The markdown tables of a ``run``'s results."""
    c = res["config"]
    lines = [f"Dense checkpoint after {c['dense_steps']} steps: val bpb "
             f"{res['dense_start_bpb']:.4f}. Then {res['extra_tokens']:,} extra tokens each "
             f"({c['extra_steps']} steps of {c['batch_size']} x {c['block_size']}):", "",
             "| arm | val bpb at start | val bpb after | params | active params | train s |",
             "|---|---|---|---|---|---|"]
    for n, a in res["arms"].items():
        lines.append(f"| {n} | {a['start_bpb']:.4f} | {a['val_bpb']:.4f} | {a['params']:,} | {a['active_params']:,} "
                     f"| {a['seconds']:.0f} |")
    lines += ["", f"Topic routing, last MoE layer (uniform share = {1 / c['n_experts']:.3f}, "
              f"uniform entropy = {math.log2(c['n_experts']):.2f} bits):", "",
              "| model | largest topic share of one expert | mean topic-row entropy (bits) "
              "| specialisation: mean KL(topic row, mean row) (bits) |", "|---|---|---|---|"]
    for n, t in res["topics"].items():
        lines.append(f"| {n} | {t['max_share']:.3f} | {t['mean_row_entropy']:.2f} "
                     f"| {t['specialisation_bits']:.4f} |")
    gate = "renormalised" if c["collapse_norm_topk"] else "un-renormalised"
    lines += ["", f"Collapse ({c['collapse_steps']} steps, {gate} top-{c['top_k']} gate, router "
              f"init std {c['collapse_router_std']}, router lr x{c['collapse_router_lr_mult']:g}; "
              f"entropy balanced {math.log2(c['n_experts']):.2f}, collapsed "
              f"{math.log2(c['top_k']):.2f} bits):", "",
              "| balancing | entropy step 1 | entropy last 10 steps | MaxVio last 10 | val bpb |",
              "|---|---|---|---|---|"]
    for n, r in res["collapse"].items():
        lines.append(f"| {n} | {r['entropy_first']:.2f} | {r['entropy_last10']:.2f} | "
                     f"{r['maxvio_last10']:.2f} | {r['val_bpb']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--out", default="runs/track_moe")
    a = p.parse_args(argv)
    res = run(PRESETS[a.preset], a.out)
    print(render(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
