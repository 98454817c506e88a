"""The track's experiments: next-step prediction, anomaly detection and forgetting, HTM
against an LSTM and week04's transformer at equal parameter budgets.

``python -m track_htm.experiments --preset tiny|full [--out DIR] [--nab-root DIR --nab-key
group/name.csv]`` writes ``results.md`` (the tables), ``results.json`` and two PNGs to
``DIR`` (``runs/track_htm-<preset>`` by default).

1. Streams: a drifting sine, a drifting sawtooth, and a NAB-taxi-shaped stream that is
   written as a NAB ``timestamp,value`` CSV + ``combined_windows.json`` and read back with
   the strict readers (or your own NAB checkout with ``--nab-root``). Values are quantised
   into ``n_buckets`` equal buckets over the stream's range.
2. Prediction: the HTM runs online over the whole stream; the nets train on the first
   ``train_frac`` and are scored frozen on the rest; everyone is scored on the same rest:
   accuracy of the next step's bucket, within one bucket, and MAE of the bucket centre (in
   shares of the range). "persistence" (next = current) is the floor.
3. Anomalies: score per step (HTM raw and likelihood; nets ``1 - p(true bucket)``, raw and
   through the same likelihood); pointwise ROC AUC against the label windows, and, with the
   same alarm budget for all (the top ``alarm_pct`` % scores flagged), windows caught and
   false positives.
4. Forgetting: set A of high-order sequences, then set B that shares each A sequence's
   middle and changes its start and end; accuracy on A after A, on A after B, on B after
   B. The nets are fine-tuned on B with nothing of A (the sequential peer); the HTM
   just keeps learning.

Parameter budget: the HTM's count (``HTMStreamModel.n_params``: SP potential synapses +
TM synapses in use + the decoder table; for sequences the TM synapses) measured after its
run, and the nets sized to it (``lstm_for_budget``, ``llama_for_budget``).
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from shared import new_run_dir
from track_htm.anomaly import AnomalyLikelihood
from track_htm.baselines import (
    llama_for_budget,
    lstm_for_budget,
    n_params,
    predict_stream,
    sequence_accuracy,
    sequence_examples,
    stream_examples,
    train_lm,
)
from track_htm.htm import HTMConfig, HTMStreamModel, SequenceHTM
from track_htm.streams import (
    read_nab_csv,
    read_nab_windows,
    roc_auc,
    synthetic_stream,
    taxi_like_stream,
    window_scores,
    write_nab,
)
from track_htm.temporal_memory import TMConfig

__all__ = ["ExpConfig", "run_streams", "run_forgetting", "make_sequences", "main"]


@dataclass
class ExpConfig:
    htm: str = "tiny"              # HTMConfig / TMConfig preset
    stream_len: int = 400
    train_frac: float = 0.5
    n_buckets: int = 32
    block: int = 32                # the nets' context
    net_steps: int = 15
    batch_size: int = 16
    lr: float = 3e-3
    alarm_pct: float = 1.0
    n_symbols: int = 24
    n_seqs: int = 3
    seq_len: int = 8
    htm_epochs: int = 25
    seq_steps: int = 30            # net steps per sequence set
    seed: int = 0

    @classmethod
    def preset(cls, name: str) -> ExpConfig:
        if name == "tiny":
            return cls()
        if name == "full":
            return cls(stream_len=3000, net_steps=300, n_seqs=12, htm_epochs=60, seq_steps=300)
        raise ValueError(f"unknown preset {name!r}; valid: ['full', 'tiny']")


# --------------------------------------------------------------------------- streams


def _likelihood(raw: np.ndarray, cfg: HTMConfig) -> np.ndarray:
    al = AnomalyLikelihood(cfg.learning_period, cfg.estimation_samples, cfg.historic_window)
    return np.array([al.update(r) for r in raw])


def load_streams(cfg: ExpConfig, workdir: Path, nab_root=None, nab_key=None) -> list:
    if nab_root is None:  # write our NAB-shaped stream in NAB's layout, then read it back
        nab_root, nab_key = workdir / "nab", "synthetic/taxi_like.csv"
        write_nab(nab_root, nab_key, taxi_like_stream(cfg.stream_len, seed=cfg.seed))
    nab = read_nab_csv(Path(nab_root) / "data" / nab_key)
    nab.windows = read_nab_windows(Path(nab_root) / "labels" / "combined_windows.json", nab_key)
    nab.name = Path(nab_key).stem
    return [synthetic_stream("sine", cfg.stream_len, seed=cfg.seed),
            synthetic_stream("sawtooth", cfg.stream_len, seed=cfg.seed + 1), nab]


def run_stream(stream, cfg: ExpConfig) -> dict:
    lo, hi = float(stream.values.min()), float(stream.values.max())
    hcfg = HTMConfig.preset(cfg.htm, n_buckets=cfg.n_buckets,
                            use_date=not stream.name.endswith("_drift"))  # NAB streams: + time of day
    htm = HTMStreamModel(hcfg, lo, hi)
    out = htm.run(stream, progress=True)
    start = max(int(len(stream) * cfg.train_frac), cfg.block)
    tokens = out["bucket"]
    labels = stream.labels[start:]
    budget = htm.n_params
    rows = {"persistence": {"pred": tokens[start - 1:-1], "score": None},
            "HTM": {"pred": out["pred"][start:], "score": out["raw"][start:],
                    "score_lik": out["likelihood"][start:], "params": budget}}
    nets = {"LSTM": lstm_for_budget(budget, cfg.n_buckets),
            "transformer": llama_for_budget(budget, cfg.n_buckets, cfg.block)}
    for name, model in nets.items():
        train_lm(model, stream_examples(tokens[:start], cfg.block), cfg.net_steps, cfg.batch_size,
                 cfg.lr, cfg.seed)
        # scores from step `block` on (in-sample over the training part, as a deployed
        # detector's history would be), so the likelihood has a real history to fit
        pred, p_true = predict_stream(model, tokens, cfg.block, cfg.block)
        raw, off = 1.0 - p_true, start - cfg.block
        rows[name] = {"pred": pred[off:], "score": raw[off:],
                      "score_lik": _likelihood(raw, hcfg)[off:], "params": n_params(model)}
    centre = lo + (np.arange(cfg.n_buckets) + 0.5) / cfg.n_buckets * (hi - lo)
    truth = tokens[start:]
    scored = [w for w in stream.windows if w[1] >= stream.timestamps[start]]
    sub = type(stream)(stream.timestamps[start:], stream.values[start:], scored, stream.name)
    res = {}
    for name, r in rows.items():
        pred = np.where(r["pred"] < 0, tokens[start - 1:-1], r["pred"])
        res[name] = {"params": r.get("params", 0), "acc": float((pred == truth).mean()),
                     "acc_pm1": float((np.abs(pred - truth) <= 1).mean()),
                     "mae": float(np.abs(centre[pred] - stream.values[start:]).mean() / (hi - lo))}
        for key, label in (("score", ""), ("score_lik", "+lik")):
            if r.get(key) is None:
                continue
            s = r[key]
            thr = np.percentile(s, 100 - cfg.alarm_pct)
            w = window_scores(s, sub, thr)
            res[name]["auc" + label] = roc_auc(labels, s)
            res[name]["caught" + label] = f"{w['caught']}/{w['windows']}"
            res[name]["fp" + label] = w["false_pos"]
    res["_series"] = {"values": stream.values.tolist(), "htm_pred": out["pred"].tolist(),
                      "likelihood": out["likelihood"].tolist(), "raw": out["raw"].tolist(),
                      "labels": stream.labels.tolist(), "start": start, "lo": lo, "hi": hi}
    return res


def run_streams(cfg: ExpConfig, workdir: Path, nab_root=None, nab_key=None) -> dict:
    return {s.name: run_stream(s, cfg) for s in tqdm(load_streams(cfg, workdir, nab_root, nab_key),
                                                     desc="streams")}


# --------------------------------------------------------------------------- forgetting


def make_sequences(cfg: ExpConfig) -> tuple[list, list]:
    """A and B: same middles (positions 1 .. L-3), different first and last two symbols."""
    rng = np.random.default_rng(cfg.seed + 100)
    A, B = [], []
    for _ in range(cfg.n_seqs):
        a = list(rng.integers(0, cfg.n_symbols, cfg.seq_len))
        b = list(a)
        b[0], b[-2], b[-1] = (int(v) for v in rng.integers(0, cfg.n_symbols, 3))
        while b[0] == a[0] or b[-2] == a[-2]:
            b[0], b[-2] = (int(v) for v in rng.integers(0, cfg.n_symbols, 2))
        A.append([int(v) for v in a])
        B.append([int(v) for v in b])
    return A, B


def run_forgetting(cfg: ExpConfig) -> dict:
    A, B = make_sequences(cfg)
    tm_cfg = TMConfig.preset(cfg.htm, seed=cfg.seed)
    htm = SequenceHTM(cfg.n_symbols, tm_cfg, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    res = {}
    htm.train(A, cfg.htm_epochs, rng)
    a1 = htm.accuracy(A)
    htm.train(B, cfg.htm_epochs, rng)
    res["HTM"] = {"params": htm.n_params, "A_after_A": a1, "A_after_B": htm.accuracy(A),
                  "B_after_B": htm.accuracy(B)}
    bos, vocab = cfg.n_symbols, cfg.n_symbols + 1
    nets = {"LSTM": lstm_for_budget(htm.n_params, vocab),
            "transformer": llama_for_budget(htm.n_params, vocab, cfg.seq_len)}
    for name, model in tqdm(nets.items(), desc="forgetting"):
        train_lm(model, sequence_examples(A, bos), cfg.seq_steps, min(cfg.batch_size, len(A)), cfg.lr, cfg.seed)
        a1 = sequence_accuracy(model, A, bos)
        train_lm(model, sequence_examples(B, bos), cfg.seq_steps, min(cfg.batch_size, len(B)), cfg.lr, cfg.seed + 1)
        res[name] = {"params": n_params(model), "A_after_A": a1, "A_after_B": sequence_accuracy(model, A, bos),
                     "B_after_B": sequence_accuracy(model, B, bos)}
    for r in res.values():
        r["forgotten"] = r["A_after_A"] - r["A_after_B"]
    return res


# --------------------------------------------------------------------------- report


def tables(streams: dict, forgetting: dict) -> str:
    lines = ["## Next-step prediction (scored on the second half of each stream)", "",
             "| stream | model | params | bucket acc | acc +-1 | MAE (share of range) |",
             "|---|---|---|---|---|---|"]
    for s, res in streams.items():
        for m, r in res.items():
            if not m.startswith("_"):
                lines.append(f"| {s} | {m} | {r['params']:,} | {r['acc']:.3f} | {r['acc_pm1']:.3f} | {r['mae']:.4f} |")
    lines += ["", "## Anomaly detection (ROC AUC per step vs the label windows; top 1 % of scores "
              "flagged: windows caught, false positives)", "",
              "| stream | model | AUC raw | caught | FP | AUC likelihood | caught | FP |",
              "|---|---|---|---|---|---|---|---|"]
    for s, res in streams.items():
        for m, r in res.items():
            if "auc" in r:
                lines.append(f"| {s} | {m} | {r['auc']:.3f} | {r['caught']} | {r['fp']} | "
                             f"{r['auc+lik']:.3f} | {r['caught+lik']} | {r['fp+lik']} |")
    lines += ["", "## Forgetting (next-symbol accuracy; B shares A's middles)", "",
              "| model | params | A after A | A after B | B after B | forgotten |", "|---|---|---|---|---|---|"]
    for m, r in forgetting.items():
        lines.append(f"| {m} | {r['params']:,} | {r['A_after_A']:.3f} | {r['A_after_B']:.3f} | "
                     f"{r['B_after_B']:.3f} | {r['forgotten']:+.3f} |")
    return "\n".join(lines) + "\n"


def plot(streams: dict, forgetting: dict, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    fig, axes = plt.subplots(len(streams), 1, figsize=(9, 2.2 * len(streams)), squeeze=False)
    for ax, (name, res) in zip(axes[:, 0], streams.items()):
        s = res["_series"]
        v, lab = np.array(s["values"]), np.array(s["labels"])
        ax.plot(v, lw=0.7, label="value")
        ax.fill_between(np.arange(len(v)), v.min(), v.max(), where=lab, color="red", alpha=0.15, label="window")
        ax2 = ax.twinx()
        ax2.plot(s["likelihood"], color="k", lw=0.6, alpha=0.7, label="HTM likelihood")
        ax2.set_ylim(0, 1.05)
        ax.axvline(s["start"], color="gray", ls="--", lw=0.8)
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    paths.append(out / "streams.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    names = list(forgetting)
    x = np.arange(len(names))
    for i, key in enumerate(("A_after_A", "A_after_B", "B_after_B")):
        ax.bar(x + (i - 1) * 0.27, [forgetting[n][key] for n in names], 0.27, label=key.replace("_", " "))
    ax.set_xticks(x, names)
    ax.set_ylabel("next-symbol accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "forgetting.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close(fig)
    return paths


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m track_htm.experiments", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny", choices=["tiny", "full"])
    p.add_argument("--out", default=None, help="output folder (default runs/track_htm-<preset>-<time>)")
    p.add_argument("--nab-root", default=None, help="a NAB checkout (data/ and labels/)")
    p.add_argument("--nab-key", default=None, help="e.g. realKnownCause/nyc_taxi.csv")
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args(argv)
    if (a.nab_root is None) != (a.nab_key is None):
        p.error("--nab-root and --nab-key go together")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = ExpConfig.preset(a.preset)
    out = Path(a.out) if a.out else new_run_dir(f"track_htm-{a.preset}")
    out.mkdir(parents=True, exist_ok=True)
    streams = run_streams(cfg, out, a.nab_root, a.nab_key)
    forgetting = run_forgetting(cfg)
    text = f"# track_htm results, preset {a.preset}\n\n" + tables(streams, forgetting)
    (out / "results.md").write_text(text)
    clean = {s: {m: r for m, r in res.items() if not m.startswith("_")} for s, res in streams.items()}
    (out / "results.json").write_text(json.dumps({"config": asdict(cfg), "streams": clean,
                                                  "forgetting": forgetting}, indent=2))
    if not a.no_plots:
        plot(streams, forgetting, out)
    print(text)
    print(f"written to {out}")
    return {"streams": clean, "forgetting": forgetting, "out": out}


if __name__ == "__main__":
    main()
