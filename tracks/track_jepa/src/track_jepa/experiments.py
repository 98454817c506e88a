"""The track's experiments: ``python -m track_jepa.experiments --preset tiny|cpu|full``.

1. Images (``run_images``): on each image set, four encoders of the same ViT
   shape, trained for the same steps on the same training images: random (not
   trained), I-JEPA (target encoder), MAE-style pixel reconstruction, and
   supervised. Each is frozen and probed (``probe.linear_probe``) on held-out
   images; collapse monitors (RankMe, embedding std) on the held-out features;
   a PCA plot of the embeddings and I-JEPA's loss curve.
2. Text (``text_jepa.run_text_experiment``): week04's Llama with and without the
   LLM-JEPA term, over seeds; bpb, cloze and signature retrieval with intervals.

Writes ``results.md``, ``results.json`` and PNGs under ``--out`` (default
``runs/track_jepa``). Presets: ``tiny`` (seconds: the tests), ``cpu`` (the
README's figures, about 20 minutes on 1 CPU thread), ``full`` (longer, for a GPU
or a patient CPU). Left out: hyper-parameter sweeps (one learning rate for all).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from shared import seed_everything
from track_jepa import baselines, ijepa, text_jepa
from track_jepa.data import load_animal_mnist, load_digits_images, split
from track_jepa.monitors import embedding_std, rankme
from track_jepa.probe import embedding_plot, linear_probe
from track_jepa.vit import ViTEncoder

__all__ = ["ExperimentConfig", "EXPERIMENT_PRESETS", "run_images", "run_method", "main",
           "image_table", "text_table"]

METHODS = ("random", "ijepa", "mae", "supervised")


# --------------------------------------------------------------------------- config


@dataclass
class ExperimentConfig:
    images: tuple[str, ...] = ("digits",)       # "digits", "animal" (when installed)
    model: dict = field(default_factory=lambda: {"digits": "tiny", "animal": "animal"})
    steps: int = 60
    batch_size: int = 64
    lr: float = 1e-3
    seeds: tuple[int, ...] = (0,)
    animal_limit: int = 4000                    # images of Animal-MNIST used (train + test)
    per_set: dict = field(default_factory=dict)  # name -> {"steps": n, "seeds": (...)} overrides
    text: str | None = "test"                   # a TEXT_PRESETS name, or None to skip
    text_steps: int | None = None
    text_seeds: tuple[int, ...] = (0, 1)


EXPERIMENT_PRESETS = {
    "tiny": ExperimentConfig(),
    "cpu": ExperimentConfig(images=("digits", "animal"),
                            model={"digits": "digits_p1", "animal": "animal"}, steps=200,
                            seeds=(0, 1), text="tiny", text_steps=200, text_seeds=(0, 1, 2),
                            animal_limit=2000, per_set={"animal": {"steps": 150, "seeds": (0,)}}),
    "full": ExperimentConfig(images=("digits", "animal"),
                             model={"digits": "digits_p1", "animal": "animal"}, steps=3000,
                             seeds=(0, 1, 2), text="full", text_seeds=(0, 1, 2, 3, 4),
                             animal_limit=10000),
}


# --------------------------------------------------------------------------- images


def _load(name: str, cfg: ExperimentConfig):
    if name == "digits":
        return load_digits_images()
    return load_animal_mnist(limit=cfg.animal_limit)


def run_method(method: str, jcfg: ijepa.IJEPAConfig, train_x, train_y, steps: int,
               batch_size: int, lr: float, seed: int, progress: bool = True):
    """(frozen encoder, loss history) of one method; the same ViT config for every method."""
    seed_everything(seed)
    if method == "random":
        return ViTEncoder(jcfg.vit), []
    if method == "ijepa":
        model = ijepa.IJEPA(jcfg)
        tr = ijepa.train_ijepa(model, train_x, train_y, steps, batch_size, lr, seed, progress)
    elif method == "mae":
        model = baselines.MAE(baselines.MAEConfig(jcfg.vit, jcfg.pred_dim, jcfg.pred_depth,
                                                  jcfg.pred_heads))
        tr = baselines.train_mae(model, train_x, train_y, steps, batch_size, lr, seed, progress)
    elif method == "supervised":
        model = baselines.Supervised(jcfg.vit, int(np.max(train_y)) + 1)
        tr = baselines.train_supervised(model, train_x, train_y, steps, batch_size, lr, seed,
                                        progress)
    else:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    return model.encoder(), tr.history


def run_images(name: str, cfg: ExperimentConfig, out: Path | None = None,
               progress: bool = True) -> dict:
    """Every method on image set ``name`` over ``cfg.seeds``: probe accuracy, RankMe, std."""
    images, labels = _load(name, cfg)
    train_x, test_x, train_y, test_y = split(images, labels, seed=0)
    jcfg = ijepa.IJEPAConfig.preset(cfg.model[name])
    own = cfg.per_set.get(name, {})
    steps, seeds = own.get("steps", cfg.steps), tuple(own.get("seeds", cfg.seeds))
    rows, panels, curves = {m: [] for m in METHODS}, {}, {}
    for seed in seeds:
        for method in METHODS:
            t0 = time.time()
            enc, hist = run_method(method, jcfg, train_x, train_y, steps, cfg.batch_size,
                                   cfg.lr, seed, progress)
            f_tr, f_te = enc.features(train_x), enc.features(test_x)   # (n, D) each
            rows[method].append({"acc": linear_probe(f_tr, train_y, f_te, test_y),
                                 "rankme": rankme(f_te), "std": embedding_std(f_te),
                                 "seconds": time.time() - t0})
            if seed == seeds[0]:
                panels[method], curves[method] = f_te, hist
    pixels = linear_probe(train_x.flatten(1), train_y, test_x.flatten(1), test_y)
    result = {"images": name, "model": cfg.model[name], "n_train": len(train_y),
              "n_test": len(test_y), "steps": steps, "seeds": list(seeds),
              "dim": jcfg.vit.dim, "raw_pixels_acc": pixels,
              "methods": {m: _summary(r) for m, r in rows.items()}}
    if out is not None:
        import matplotlib.pyplot as plt
        fig = embedding_plot(panels, test_y, out / f"embeddings_{name}.png")
        plt.close(fig)
        fig, ax = plt.subplots(figsize=(4.5, 3))
        for m in ("ijepa", "mae"):
            ax.plot(curves[m], label=m, lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"{name}: I-JEPA (latent L2) and MAE (pixel) losses", fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"loss_{name}.png", dpi=80)
        plt.close(fig)
    return result


def _summary(rows: list[dict]) -> dict:
    out = {}
    for k in rows[0]:
        v = np.array([r[k] for r in rows], dtype=float)
        out[k] = float(v.mean())
        out[k + "_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return out


# --------------------------------------------------------------------------- tables


def image_table(results: list[dict]) -> str:
    lines = ["| images | method | probe acc (held-out) | RankMe | embedding std |",
             "|---|---|---|---|---|"]
    for r in results:
        for m, s in r["methods"].items():
            lines.append(f"| {r['images']} ({r['n_train']}/{r['n_test']}, {r['steps']} steps, "
                         f"{len(r['seeds'])} seeds) | {m} | {s['acc']:.3f} ± {s['acc_sd']:.3f} | "
                         f"{s['rankme']:.1f} / {r['dim']} | {s['std']:.3f} |")
        lines.append(f"| {r['images']} | raw pixels (no encoder) | {r['raw_pixels_acc']:.3f} |"
                     " | |")
    return "\n".join(lines)


def _ci(t) -> str:
    return f"{t[0]:+.4f} [{t[1]:+.4f}, {t[2]:+.4f}]"


def text_table(r: dict) -> str:
    return "\n".join([
        f"| metric | LM only | LM + {r['lam']} x JEPA | difference, 95% CI |",
        "|---|---|---|---|",
        f"| bpb (held-out pydocs, lower is better) | {r['bpb_lm']:.4f} | {r['bpb_jepa']:.4f} | "
        f"{_ci(r['bpb_diff'])} (t over {len(r['seeds'])} seeds) |",
        f"| cloze acc_norm | {r['cloze_lm']:.3f} | {r['cloze_jepa']:.3f} | "
        f"{_ci(r['cloze_diff_seeds'])} (t, seeds); {_ci(r['cloze_diff_boot'])} (bootstrap, items) |",
        f"| signature retrieval top-1 ({r['n_retrieval']} held-out pairs) | "
        f"{r['retrieval_lm']:.3f} | {r['retrieval_jepa']:.3f} | {_ci(r['retrieval_diff'])} |",
    ])


# --------------------------------------------------------------------------- main


def run(cfg: ExperimentConfig, out: Path, progress: bool = True, skip_text: bool = False,
        skip_images: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"config": asdict(cfg), "images": []}
    for name in ([] if skip_images else cfg.images):
        try:
            results["images"].append(run_images(name, cfg, out, progress))
        except FileNotFoundError as e:
            results.setdefault("skipped", []).append(f"{name}: {e}")
    if cfg.text and not skip_text:
        tcfg = text_jepa.TEXT_PRESETS[cfg.text]
        if cfg.text_steps:
            tcfg = replace(tcfg, steps=cfg.text_steps)
        results["text"] = text_jepa.run_text_experiment(tcfg, cfg.text_seeds, progress)
    md = ["# track_jepa results", ""]
    if results["images"]:
        md += ["## Linear probes of frozen encoders", "", image_table(results["images"]), ""]
    if "text" in results:
        md += ["## LLM-JEPA term on week04's LM", "", text_table(results["text"]), ""]
    for s in results.get("skipped", []):
        md.append(f"- skipped {s}")
    (out / "results.md").write_text("\n".join(md) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="tiny", choices=sorted(EXPERIMENT_PRESETS))
    p.add_argument("--out", default="runs/track_jepa")
    p.add_argument("--steps", type=int, default=None, help="override the image steps")
    p.add_argument("--images", default=None, help="comma-separated image sets (default: the "
                   "preset's)")
    p.add_argument("--skip-text", action="store_true")
    p.add_argument("--skip-images", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    import matplotlib
    matplotlib.use("Agg")
    cfg = EXPERIMENT_PRESETS[a.preset]
    if a.steps:
        cfg = replace(cfg, steps=a.steps)
    if a.images:
        cfg = replace(cfg, images=tuple(a.images.split(",")))
    res = run(cfg, Path(a.out), not a.no_progress, a.skip_text, a.skip_images)
    print((Path(a.out) / "results.md").read_text())
    return res


if __name__ == "__main__":
    main()
