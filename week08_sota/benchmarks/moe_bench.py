"""Dense vs MoE + auxiliary loss vs MoE loss-free on pydocs, and our MoE vs Mixtral's block.

    python week08_sota/benchmarks/moe_bench.py                 # CPU, about 5 minutes
    python week08_sota/benchmarks/moe_bench.py --big --device cuda

Part 1: three ``SotaModel`` runs (grouped-query attention, ``--layers`` layers, the first
dense) with the same data order, schedule, seed and number of tokens and the same
*active* parameters per token: the dense MLP is a SwiGLU of width (k + shared) x the
expert width, so it computes what one token's k routed + shared experts compute (the MoE
adds only its router, N x C per layer). The MoE runs differ only in how they balance:
Switch's auxiliary loss (``--alpha``, gamma = 0) or DeepSeek-V3's auxiliary-loss-free bias
(``--gamma``, alpha = 0). Reported per run: final validation bits per byte, training
tokens/s, MFU from active parameters (``moe.train_flops_per_token`` over the measured
matmul peak of this machine), and MaxVio (max load / mean load - 1, per step, over the MoE
layers); at the end, which expert each layer's tokens went to on the validation batches.
Both go to one PNG: ``runs/bench/week08_moe.png`` (curves, then the expert-usage heatmap).

Part 2: forward + backward time of our ``MoE`` against ``transformers``'
``MixtralSparseMoeBlock`` (its default eager experts loop; its ``batched_mm`` and
``grouped_mm`` implementations too where they run here) with the same weights on the same
input, fp32; the ratio HF time / ours is printed (target: ours at least as fast).

Target met (the issue's one target): our layer's forward + backward at least as fast as
Mixtral's (eager) block. The balance comparison is reported beside it, not judged: the
summary says whether the loss-free run ends with a lower MaxVio (mean of the last tenth of
the steps) and a val bpb within 0.02 of the auxiliary-loss run's.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from shared import (
    add_threads_argument,
    read_metrics,
    runs_root,
    save_benchmark,
    seed_everything,
    set_threads,
)
from week02_bpe import TokenLoader
from week03_training import TrainConfig, Trainer
from week03_training.flops import measure_matmul_flops
from week03_training.train import ensure_data, load_token_bytes
from week08_sota.config import SotaConfig
from week08_sota.model import SotaModel
from week08_sota.moe import (
    MoE,
    active_param_count,
    balance_bias_hook,
    load_hf_mixtral,
    moe_layers,
    moe_loss_fn,
    train_flops_per_token,
)

SIZES = {  # n_embd, heads, layers, expert width, experts, k, shared, batch, block, steps
    "small": dict(n_embd=96, n_head=4, n_layer=4, width=64, experts=8, k=2, shared=1,
                  batch=16, block=64, steps=400),
    "big": dict(n_embd=256, n_head=8, n_layer=6, width=128, experts=16, k=2, shared=1,
                batch=16, block=256, steps=2000),
}


def make_config(args, vocab: int, kind: str) -> SotaConfig:
    s = args.size
    moe = kind != "dense"
    return SotaConfig(
        vocab_size=vocab, block_size=s["block"], n_layer=s["n_layer"], n_head=s["n_head"],
        n_kv_head=s["n_head"] // 2, n_embd=s["n_embd"], attn_type="gqa", dropout=0.0,
        intermediate_size=(s["k"] + s["shared"]) * s["width"],   # dense: the active width
        moe=moe, n_routed_experts=s["experts"], num_experts_per_tok=s["k"],
        n_shared_experts=s["shared"], moe_intermediate_size=s["width"], first_k_dense_replace=1,
        gating=args.gating, norm_topk_prob=True,
        aux_loss_alpha=args.alpha if kind == "moe-aux" else 0.0,
        bias_update_speed=args.gamma if kind == "moe-loss-free" else 0.0)


def train(kind: str, args, data_dir: Path, peak: float) -> dict:
    seed_everything(0)
    s = args.size
    train_loader = TokenLoader(data_dir, s["batch"], s["block"], "train", seed=0)
    val = TokenLoader(data_dir, s["batch"], s["block"], "val", seed=0)
    cfg = make_config(args, train_loader.vocab_size, kind)
    model = SotaModel(cfg)
    steps = args.steps or s["steps"]
    tc = TrainConfig(steps=steps, batch_size=s["batch"], block_size=s["block"], lr=args.lr,
                     warmup_steps=steps // 20, eval_every=args.eval_every or steps // 6,
                     eval_batches=args.eval_batches, device=args.device, progress=False,
                     log_every=1, ckpt_every=0, save_final=False,
                     dtype="bf16" if args.device == "cuda" else "fp32")
    run_dir = Path(tempfile.mkdtemp()) / kind
    trainer = Trainer(model, train_loader, tc, val_loader=val, run_dir=run_dir,
                      token_bytes=load_token_bytes(data_dir),
                      loss_fn=moe_loss_fn if cfg.moe else None,
                      hooks=[balance_bias_hook] if cfg.moe else ())
    t0 = time.perf_counter()
    trainer.fit()
    secs = time.perf_counter() - t0
    rows = read_metrics(run_dir)
    usage = expert_usage(model, val, args.eval_batches, args.device)
    fpt = train_flops_per_token(model, s["block"])
    tok_s = [r["tok_per_s"] for r in rows]
    tok_s_med = sorted(tok_s)[len(tok_s) // 2]
    last = [r for r in rows if "val_bpb" in r][-1]
    vio = [r["moe_maxvio"] for r in rows if "moe_maxvio" in r]
    tail = vio[-max(1, len(vio) // 10):]
    return {"kind": kind, "rows": rows, "usage": usage, "seconds": secs,
            "val_bpb": last["val_bpb"], "tok_per_s": tok_s_med,
            "mfu": fpt * tok_s_med / peak if peak else None,
            "active_params": active_param_count(model),
            "params": sum(p.numel() for p in model.parameters()),
            "maxvio_final": sum(tail) / len(tail) if tail else None}


@torch.no_grad()
def expert_usage(model, val, batches: int, device: str) -> list[list[float]]:
    """Fraction of each MoE layer's (token, expert) pairs per expert on the val batches."""
    layers = moe_layers(model)
    if not layers:
        return []
    model.eval()
    totals = [torch.zeros(m.config.n_routed_experts) for m in layers]
    for _ in range(batches):
        x, _y = val.next_batch()
        model(x.to(device))
        for t, m in zip(totals, layers):
            t += m.load.cpu()
    return [(t / t.sum()).tolist() for t in totals]


def time_fwd_bwd(modules: dict, x: torch.Tensor, repeats: int) -> dict:
    """Best seconds of forward + backward of ``m(x).square().sum()`` for each module, the
    modules taking turns in every round (a shared, busy CPU slows them all alike; the
    minimum is the least disturbed run)."""
    best = {name: float("inf") for name in modules}
    for i in range(repeats + 1):  # round 0 warms up
        for name, m in modules.items():
            xi = x.clone().requires_grad_()
            m.zero_grad(set_to_none=True)
            if x.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            m(xi).square().sum().backward()
            if x.is_cuda:
                torch.cuda.synchronize()
            if i:
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def layer_speed(args) -> dict:
    from transformers import MixtralConfig
    from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock

    C, I, N, k, S = args.speed_dims
    hf_cfg = MixtralConfig(hidden_size=C, intermediate_size=I, num_local_experts=N,
                           num_experts_per_tok=k)
    hf_cfg._experts_implementation = "eager"
    hf = MixtralSparseMoeBlock(hf_cfg).to(args.device)
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.02)
    ours = MoE(SotaConfig(n_embd=C, n_head=4, n_kv_head=4, n_layer=2, n_routed_experts=N,
                          num_experts_per_tok=k, moe_intermediate_size=I, n_shared_experts=0,
                          gating="softmax")).to(args.device)
    load_hf_mixtral(ours, hf)
    x = torch.randn(1, S, C, device=args.device)
    with torch.no_grad():
        err = (ours(x) - hf(x)).abs().max().item()
    out = {"dims": dict(C=C, I=I, experts=N, k=k, tokens=S), "max_abs_diff": err}
    # HF's batched_mm gathers a weight matrix per (token, expert): minutes per call on a CPU
    impls = ("eager", "grouped_mm") + (("batched_mm",) if x.is_cuda else ())
    slices = copy.deepcopy(ours)
    slices.grouped = False  # our other dispatch: one loop over the experts' slices
    modules = {"ours": ours, "ours_slices": slices}
    for impl in impls:
        block = copy.deepcopy(hf)
        block.experts.config = copy.copy(block.experts.config)
        block.experts.config._experts_implementation = impl
        try:
            time_fwd_bwd({impl: block}, x[:, :64], 0)
            modules[f"hf_{impl}"] = block
        except Exception as e:  # an implementation this build or device lacks
            out[f"hf_{impl}_error"] = f"{type(e).__name__}: {str(e)[:120]}"
    for name, secs in time_fwd_bwd(modules, x, args.repeats).items():
        out[f"{name}_s"] = secs
    out["ratio_hf_eager_over_ours"] = out["hf_eager_s"] / out["ours_s"]
    return out


def plot(results: list[dict], path: Path, title: str) -> None:
    from matplotlib.figure import Figure

    moes = [r for r in results if r["usage"]]
    fig = Figure(figsize=(15, 4 + 1.2 * sum(len(r["usage"]) for r in moes)))
    grid = fig.add_gridspec(2, 3, height_ratios=[3, max(1, sum(len(r["usage"]) for r in moes))])
    ax = [fig.add_subplot(grid[0, i]) for i in range(3)]
    for r in results:
        ev = [x for x in r["rows"] if "val_bpb" in x]
        ax[0].plot([x["tokens"] for x in ev], [x["val_bpb"] for x in ev], "o-", label=r["kind"])
        ax[1].plot([x["tokens"] for x in r["rows"]], [x["tok_per_s"] for x in r["rows"]],
                   label=r["kind"], alpha=0.7)
        if r["usage"]:
            ax[2].plot([x["tokens"] for x in r["rows"]],
                       [x.get("moe_maxvio", float("nan")) for x in r["rows"]], label=r["kind"],
                       alpha=0.8)
    for a, t, y in zip(ax, ("validation", "training speed", "MaxVio per step (mean over layers)"),
                       ("bits per byte", "tokens / s", "max load / mean load - 1")):
        a.set_title(t)
        a.set_xlabel("tokens")
        a.set_ylabel(y)
        a.legend()
    hm = fig.add_subplot(grid[1, :])
    labels, rows = [], []
    for r in moes:
        for i, u in enumerate(r["usage"]):
            labels.append(f"{r['kind']} layer {i + 1}")
            rows.append(u)
    im = hm.imshow(rows, aspect="auto", cmap="viridis")
    hm.set_yticks(range(len(labels)), labels)
    hm.set_xlabel("expert")
    hm.set_title("expert usage on the validation batches (fraction of a layer's routed pairs)")
    fig.colorbar(im, ax=hm)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--big", action="store_true", help="the bigger model and run (a GPU)")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--alpha", type=float, default=0.01, help="aux-loss run's alpha")
    ap.add_argument("--gamma", type=float, default=0.01, help="loss-free run's bias speed")
    ap.add_argument("--gating", default="sigmoid", choices=("softmax", "sigmoid"))
    ap.add_argument("--eval-every", type=int, default=None)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--speed-dims", type=lambda t: tuple(int(v) for v in t.split(",")),
                    default=(256, 512, 8, 2, 2048), help="C,I,experts,k,tokens of part 2")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--skip-training", action="store_true", help="part 2 only")
    ap.add_argument("--device", default="cpu")
    add_threads_argument(ap)
    args = ap.parse_args()
    set_threads(args.threads)
    args.size = SIZES["big" if args.big else "small"]

    speed = layer_speed(args)
    print(f"MoE layer fwd+bwd, {speed['dims']} fp32 on {args.device}: ours "
          f"{speed['ours_s'] * 1e3:.1f} ms (slice loop {speed['ours_slices_s'] * 1e3:.1f} ms); HF Mixtral eager {speed['hf_eager_s'] * 1e3:.1f} ms "
          f"(ratio HF / ours {speed['ratio_hf_eager_over_ours']:.2f}); "
          + "; ".join(f"HF {impl} {speed[f'hf_{impl}_s'] * 1e3:.1f} ms"
                      if f"hf_{impl}_s" in speed else f"HF {impl} not run"
                      for impl in ("grouped_mm", "batched_mm"))
          + f"; max |ours - HF| {speed['max_abs_diff']:.1e}", flush=True)
    results = []
    if not args.skip_training:
        data_dir = ensure_data("pydocs", args.vocab_size)
        peak = measure_matmul_flops(args.device)
        for kind in ("dense", "moe-aux", "moe-loss-free"):
            r = train(kind, args, data_dir, peak)
            results.append(r)
            print(f"  {kind}: val bpb {r['val_bpb']:.4f}, {r['tok_per_s']:,.0f} tok/s, "
                  f"{r['seconds']:.0f}s", flush=True)
    table = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()
              if k not in ("rows", "usage")} for r in results]
    if results:
        s = args.size
        tokens = (args.steps or s["steps"]) * s["batch"] * s["block"]
        print(f"\nSotaModel (gqa) on pydocs, {tokens:,} tokens each, {args.device}")
        print(f"{'run':<15}{'val bpb':>9}{'tok/s':>10}{'MFU':>8}{'MaxVio':>8}"
              f"{'active':>10}{'params':>10}")
        for r in table:
            mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
            vio = f"{r['maxvio_final']:.3f}" if r["maxvio_final"] is not None else "-"
            print(f"{r['kind']:<15}{r['val_bpb']:>9.4f}{r['tok_per_s']:>10,.0f}{mfu:>8}{vio:>8}"
                  f"{r['active_params']:>10,}{r['params']:>10,}")
        png = runs_root() / "bench" / "week08_moe.png"
        plot(results, png, f"dense vs MoE (aux loss) vs MoE (loss-free), {tokens:,} tokens")
        print(f"plot: {png}")
    by = {r["kind"]: r for r in table}
    fast = speed["ratio_hf_eager_over_ours"] >= 1.0
    compare = {}
    if results:
        lf, aux = by["moe-loss-free"], by["moe-aux"]
        compare = {"loss_free_lower_maxvio": lf["maxvio_final"] < aux["maxvio_final"],
                   "loss_free_bpb_within_0.02_of_aux": lf["val_bpb"] <= aux["val_bpb"] + 0.02,
                   "moe_aux_minus_dense_bpb": round(aux["val_bpb"] - by["dense"]["val_bpb"], 4),
                   "moe_loss_free_minus_dense_bpb": round(lf["val_bpb"] - by["dense"]["val_bpb"], 4)}
        print("; ".join(f"{k}: {v}" for k, v in compare.items()))
    path = save_benchmark("week08_moe", {
        "rows": table, "layer_speed": speed,
        "summary": {**compare, "device": args.device, "size": "big" if args.big else "small",
                    "gating": args.gating, "alpha": args.alpha, "gamma": args.gamma,
                    "curves": {r["kind"]: [[x["tokens"], x["val_bpb"]] for x in r["rows"]
                                           if "val_bpb" in x] for r in results},
                    "maxvio": {r["kind"]: [x["moe_maxvio"] for x in r["rows"] if "moe_maxvio" in x]
                               for r in results if r["usage"]},
                    "usage": {r["kind"]: r["usage"] for r in results if r["usage"]}},
        "target_met": bool(fast)})
    print(f"target (ours at least as fast as Mixtral's eager block) met: {fast}; saved {path}")


if __name__ == "__main__":
    main()
