"""LLM-JEPA on a CPU: a JEPA term added to week04's language-model loss.

Huang, LeCun & Balestriero (2025) train an LLM with its usual next-token loss
plus a term that makes one *view* of a datum predict the embedding of another
view (a text and its code, a question and its answer):

    L = L_LM + lam * (1 - cos(Pred(Enc(view_a)), Enc(view_b)))

- ``Enc(v)``: the final-norm hidden state of the model at the last token of ``v``;
- ``Pred(Enc(a))``: the same model run on ``a`` followed by ``k`` [PRED] tokens, the
  hidden state at the last one (the paper's tied-weights predictor: no new module);
- the views here come from Python's own standard library (``docstring_pairs``): the
  first paragraph of a function's docstring and its signature ``def name(args)``.

``jepa_lm_loss`` is a week03 ``loss_fn``; a batch (``TextJEPABatches``) holds an LM
window of the pydocs corpus (``x``, ``y``) and a batch of pairs. ``lam = 0`` skips
the pairs, so both arms of the experiment train on the same LM batches.
``run_text_experiment`` trains both arms over several seeds and reports week05's
bits per byte and pydocs cloze accuracy, with confidence intervals, and how well a
held-out docstring's prediction retrieves its own signature.

Left out: the paper's larger models and datasets (NL-RX, GSM8K, Spider), and its
loss-dropout trick for saving compute.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from shared import SampledBatches, load_corpus, seed_everything
from track_jepa import text_jepa as _self
from track_jepa.ijepa import fit
from week01_transformer import CharTokenizer
from week03_training import token_cross_entropy
from week04_modern_arch_tools import Llama, LlamaConfig

__all__ = ["TextJEPAConfig", "TEXT_PRESETS", "docstring_pairs", "TextJEPABatches",
           "hidden_and_logits", "jepa_term", "jepa_lm_loss", "train_text_model",
           "evaluate_text_model", "run_text_experiment", "PRED_CHAR"]

PRED_CHAR = "\x07"  # the [PRED] token: a character the corpus never contains
STDLIB = ("os", "os.path", "shutil", "string", "textwrap", "re", "json", "csv", "collections",
          "itertools", "functools", "operator", "random", "statistics", "pathlib", "inspect",
          "typing", "argparse", "datetime", "calendar", "heapq", "bisect", "copy", "glob",
          "fnmatch", "tempfile", "zipfile", "tarfile", "gzip", "logging", "subprocess",
          "urllib.parse", "html", "base64", "hashlib", "difflib", "pprint", "uuid", "fractions",
          "decimal", "enum", "dataclasses", "contextlib", "abc", "io", "struct", "queue",
          "threading", "email.utils", "ast", "tokenize", "dis", "codecs", "locale", "gettext",
          "unittest", "doctest", "pdb", "timeit", "trace", "warnings", "weakref", "types",
          "numbers", "cmath", "zlib", "shlex", "configparser", "plistlib", "mimetypes", "secrets",
          "hmac", "platform", "sysconfig", "runpy", "pkgutil", "importlib", "socket", "selectors",
          "asyncio", "concurrent.futures", "multiprocessing", "sqlite3", "wave", "colorsys")


# --------------------------------------------------------------------------- config


@dataclass
class TextJEPAConfig:
    """Sizes of the text experiment; ``TEXT_PRESETS["tiny"]`` runs in about a minute."""

    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    block_size: int = 64       # LM window, characters
    batch_size: int = 16       # LM windows per step
    pair_batch: int = 8        # (docstring, signature) pairs per step
    max_view: int = 80         # characters kept of each view
    k_pred: int = 1            # [PRED] tokens appended to view a
    lam: float = 1.0           # weight of the JEPA term
    steps: int = 200
    lr: float = 3e-3
    eval_tokens: int = 20000   # bpb on this many held-out characters
    cloze_n: int = 200
    corpus: str = "pydocs"     # shared.load_corpus name or a folder of text files


TEXT_PRESETS = {
    "test": TextJEPAConfig(n_layer=1, n_embd=32, n_head=2, batch_size=4, pair_batch=4, steps=6,
                           eval_tokens=2000, cloze_n=20),
    "tiny": TextJEPAConfig(),
    "full": TextJEPAConfig(n_layer=4, n_embd=128, block_size=128, batch_size=32, pair_batch=16,
                           steps=2000, eval_tokens=200000, cloze_n=500),
}


# --------------------------------------------------------------------------- the pairs


def docstring_pairs(modules=STDLIB, max_chars: int = 80) -> list[tuple[str, str]]:
    """(docstring's first paragraph, ``def name(signature)``) for the public functions and
    methods of ``modules`` that have both, deduplicated, in a fixed order."""
    seen, pairs = set(), []
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        objs = []
        for attr, obj in sorted(vars(mod).items()):
            if attr.startswith("_"):
                continue
            if inspect.isfunction(obj) or inspect.isbuiltin(obj):
                objs.append((attr, obj))
            elif inspect.isclass(obj):
                objs += [(f"{attr}.{a}", o) for a, o in sorted(vars(obj).items())
                         if not a.startswith("_") and inspect.isfunction(o)]
        for qual, obj in objs:
            doc = inspect.getdoc(obj)
            try:
                sig = str(inspect.signature(obj))
            except (TypeError, ValueError):
                continue
            if not doc:
                continue
            para = " ".join(doc.split("\n\n")[0].split())[:max_chars]
            view_b = f"def {qual.split('.')[-1]}{sig}"[:max_chars]
            if len(para) < 12 or (para, view_b) in seen:
                continue
            seen.add((para, view_b))
            pairs.append((para, view_b))
    return pairs


def held_out(pair: tuple[str, str], fraction: float = 0.2) -> bool:
    """A fixed hash split of the pairs (held-out ones are never trained on)."""
    h = int.from_bytes(hashlib.sha256(pair[1].encode()).digest()[:8], "big")
    return h / 2**64 < fraction


# --------------------------------------------------------------------------- batches


def pad_views(views: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, L) and each row's last real position (B,). A causal model's
    hidden state at a real position never reads the padding after it."""
    L = max(len(v) for v in views)
    ids = torch.zeros(len(views), L, dtype=torch.long)
    for i, v in enumerate(views):
        ids[i, :len(v)] = torch.tensor(v)
    return ids, torch.tensor([len(v) - 1 for v in views])


class TextJEPABatches:
    """``next_batch() -> {"x", "y", "a", "a_last", "b", "b_last"}``, resumable.

    ``x``/``y`` (B, T): a random window of the training token stream and its next tokens;
    ``a`` (P, La): view a + [PRED] * k; ``b`` (P, Lb): view b; ``*_last`` (P,) the positions
    read. Two ``shared.SampledBatches`` underneath (windows and pairs).
    """

    def __init__(self, ids: list[int], pairs: list[tuple[str, str]], tok: CharTokenizer,
                 cfg: TextJEPAConfig, seed: int = 0):
        self.ids = torch.tensor(ids, dtype=torch.long)
        T, pred = cfg.block_size, tok.encode(PRED_CHAR * cfg.k_pred)
        enc = [(tok.encode(a) + pred, tok.encode(b)) for a, b in pairs]
        self.windows = SampledBatches(range(len(ids) - T - 1), cfg.batch_size,
                                      lambda s: self._window(s, T), seed=seed)
        self.pairs = SampledBatches(enc, cfg.pair_batch, self._pairs, seed=seed + 1)

    def _window(self, starts, T):
        rows = torch.stack([self.ids[s:s + T + 1] for s in starts])   # (B, T+1)
        return rows[:, :-1], rows[:, 1:]

    @staticmethod
    def _pairs(drawn):
        a, a_last = pad_views([x for x, _ in drawn])
        b, b_last = pad_views([y for _, y in drawn])
        return a, a_last, b, b_last

    def next_batch(self) -> dict:
        x, y = self.windows.next_batch()
        a, a_last, b, b_last = self.pairs.next_batch()
        return {"x": x, "y": y, "a": a, "a_last": a_last, "b": b, "b_last": b_last}

    def state_dict(self) -> dict:
        return {"windows": self.windows.state_dict(), "pairs": self.pairs.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.windows.load_state_dict(state["windows"])
        self.pairs.load_state_dict(state["pairs"])


# --------------------------------------------------------------------------- the loss


def hidden_and_logits(model: Llama, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass through week01/week04's seams: (final-norm hidden (B, T, C), logits (B, T, V))."""
    T = idx.size(1)
    ctx = model.context(T)
    x = model.embed(idx, ctx)                       # (B, T, C)
    for block in model.blocks:
        x = block(x, ctx)
    return model.ln_f(x), model.head(x)


def jepa_term(model: Llama, a: torch.Tensor, a_last: torch.Tensor, b: torch.Tensor,
              b_last: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos(Pred(Enc(a)), Enc(b)))`` over the P pairs (a scalar).

    a (P, La) ends each row with the [PRED] tokens; the hidden state at ``a_last`` is the
    prediction, the one at ``b_last`` of view b the target (gradients flow into both, as
    in LLM-JEPA; the LM loss keeps the embeddings from collapsing).
    """
    rows = torch.arange(a.size(0), device=a.device)
    ha, _ = hidden_and_logits(model, a)             # (P, La, C)
    hb, _ = hidden_and_logits(model, b)             # (P, Lb, C)
    pred, target = ha[rows, a_last], hb[rows, b_last]  # (P, C) each
    return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()


def jepa_lm_loss(model: Llama, batch: dict, lam: float = 1.0) -> tuple[torch.Tensor, dict]:
    """week03 ``loss_fn``: next-token cross-entropy on (x, y) + ``lam`` * ``jepa_term``."""
    _, logits = hidden_and_logits(model, batch["x"])
    lm = token_cross_entropy(logits, batch["y"])
    if lam == 0:
        return lm, {"lm": lm.detach()}
    jepa = _self.jepa_term(model, batch["a"], batch["a_last"], batch["b"], batch["b_last"])
    return lm + lam * jepa, {"lm": lm.detach(), "jepa": jepa.detach()}


# --------------------------------------------------------------------------- experiment


def _data(cfg: TextJEPAConfig):
    corpus = load_corpus(cfg.corpus)
    pairs = docstring_pairs(max_chars=cfg.max_view)
    tok = CharTokenizer.from_text(corpus.text + PRED_CHAR + "".join(a + b for a, b in pairs))
    return corpus, pairs, tok, tok.encode(corpus.train)


def train_text_model(cfg: TextJEPAConfig, lam: float, seed: int, data=None,
                     progress: bool = True) -> tuple[Llama, CharTokenizer, list]:
    """Train a week04 ``Llama`` on pydocs with ``lam`` * the JEPA term; (model, tok, pairs)."""
    corpus, pairs, tok, ids = data or _data(cfg)
    seed_everything(seed)
    mcfg = LlamaConfig(vocab_size=tok.vocab_size, block_size=max(cfg.block_size, 2 * cfg.max_view),
                       n_layer=cfg.n_layer, n_head=cfg.n_head, n_kv_head=cfg.n_head,
                       n_embd=cfg.n_embd)
    model = Llama(mcfg)
    train_pairs = [p for p in pairs if not held_out(p)]
    loader = TextJEPABatches(ids, train_pairs, tok, cfg, seed=seed)
    fit(model, loader, lambda m, b: _self.jepa_lm_loss(m, b, lam), cfg.steps, lr=cfg.lr,
        weight_decay=0.0, progress=progress, desc=f"lm+jepa lam={lam}", seed=seed)
    return model, tok, pairs


@torch.no_grad()
def retrieval_accuracy(model: Llama, tok: CharTokenizer, pairs, k_pred: int = 1) -> float:
    """Top-1: among held-out pairs, does Pred(Enc(docstring)) sit closest (cosine) to its own
    signature's Enc? Chance is 1 / len(pairs)."""
    model.eval()
    pred = tok.encode(PRED_CHAR * k_pred)
    a, a_last = pad_views([tok.encode(x) + pred for x, _ in pairs])
    b, b_last = pad_views([tok.encode(y) for _, y in pairs])
    rows = torch.arange(len(pairs))
    pa = F.normalize(hidden_and_logits(model, a)[0][rows, a_last], dim=-1)
    pb = F.normalize(hidden_and_logits(model, b)[0][rows, b_last], dim=-1)
    return float(((pa @ pb.T).argmax(1) == rows).float().mean())


def evaluate_text_model(model: Llama, tok: CharTokenizer, corpus, pairs, cfg: TextJEPAConfig
                        ) -> dict:
    """week05's bpb on held-out pydocs, its cloze (acc_norm + per-item hits), retrieval."""
    from week05_eval import evaluate_mc, evaluate_text, pydocs_cloze
    val = [d.text for d in corpus.val_docs]
    loss = evaluate_text(model, tok, val, block_size=cfg.block_size, max_tokens=cfg.eval_tokens)
    task = pydocs_cloze(n=cfg.cloze_n, seed=0, corpus=corpus)
    mc = evaluate_mc(model, tok, task)
    hits = np.array([p == ex.gold for p, ex in zip(mc.predictions, task.examples)], dtype=float)
    test_pairs = [p for p in pairs if held_out(p)]
    return {"bpb": loss.bpb, "cloze": mc.acc_norm, "hits": hits,
            "retrieval": retrieval_accuracy(model, tok, test_pairs, cfg.k_pred),
            "n_retrieval": len(test_pairs)}


def t_interval(diffs) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval of paired differences (one per seed)."""
    from scipy import stats
    d = np.asarray(diffs, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, float("nan"), float("nan")
    h = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return m, m - h, m + h


def bootstrap_diff(hits_a: np.ndarray, hits_b: np.ndarray, n_boot: int = 2000, seed: int = 0
                   ) -> tuple[float, float, float]:
    """Paired bootstrap over eval items of mean(b) - mean(a): (diff, 2.5%, 97.5%)."""
    rng = np.random.default_rng(seed)
    d = hits_b - hits_a
    boots = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return float(d.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))


def run_text_experiment(cfg: TextJEPAConfig, seeds=(0, 1, 2), progress: bool = True) -> dict:
    """Both arms (lam = 0 and ``cfg.lam``) over ``seeds``: per-arm means and the CIs."""
    data = _data(cfg)
    corpus = data[0]
    runs = {0.0: [], cfg.lam: []}
    for seed in seeds:
        for lam in runs:
            model, tok, pairs = train_text_model(cfg, lam, seed, data, progress)
            runs[lam].append(evaluate_text_model(model, tok, corpus, pairs, cfg))
    base, jepa = runs[0.0], runs[cfg.lam]
    hits0 = np.mean([r["hits"] for r in base], axis=0)
    hits1 = np.mean([r["hits"] for r in jepa], axis=0)
    return {
        "seeds": list(seeds), "lam": cfg.lam, "pairs": len(data[1]),
        "n_retrieval": base[0]["n_retrieval"],
        **{f"{k}_{arm}": float(np.mean([r[k] for r in rs]))
           for k in ("bpb", "cloze", "retrieval") for arm, rs in (("lm", base), ("jepa", jepa))},
        "bpb_diff": t_interval([b["bpb"] - a["bpb"] for a, b in zip(base, jepa)]),
        "cloze_diff_seeds": t_interval([b["cloze"] - a["cloze"] for a, b in zip(base, jepa)]),
        "cloze_diff_boot": bootstrap_diff(hits0, hits1),
        "retrieval_diff": t_interval([b["retrieval"] - a["retrieval"] for a, b in zip(base, jepa)]),
    }
