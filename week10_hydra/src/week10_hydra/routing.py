"""Which adapter serves a request: per request (prototypes of base states) or per token (Arrow).

Two routers over the same ``AdapterBank``:

- ``PrototypeRouting`` picks ONE adapter per request, before decoding: the
  base model's mean-pooled final hidden state of the prompt, nearest centred
  prototype by cosine (week07's ``PrototypeRouter`` and ``embed_sequences``,
  composed, not copied), ``None`` (the bare base) below the threshold. It is
  what Hydra's ``adapter="auto"`` calls; its state is a dict of tensors that
  week07's ``AdapterStore.save_blob`` persists atomically.
- Arrow (``bank.plan(["arrow"], arrow=ArrowSpec(...))``, built into the bank)
  routes every token in every layer by |x . v_e| against each adapter's top
  right singular vector. ``arrow_coefficients`` reads those routing weights
  during an Arrow forward (hooks that only look, the bank's output is
  unchanged); a request's Arrow "choice" is the adapter with the largest mean
  weight over its tokens and all layers (``arrow_choice``).

``router_accuracy`` measures both on a week07 stream: prototypes are fitted on
``n_fit`` training prompts per task and scored on the task's test prompts that
were not among them (the knowledge tasks of week07's facts stream test on the
facts they taught, so held-out prompts are the honest measure). ``score_routed``
scores a stream's metric (exact match or bits per byte) with one bank row spec
per example, which prices routing errors: oracle adapter vs routed vs base.

Measured (``benchmarks/routing.py``, week07's tiny base): the prototype router sends 100%
of held-out fact questions and 85.8% of tool-use prompts to their task, Arrow's choice 23.4%
and 61.3% (chance: 25%): weight-space prototypes say little about which task a prompt is.

Left out: learned routers (a gating network trained on routing labels),
per-request top-k mixtures from prototype similarities (a row may still ask
for a stack by hand), and re-routing during decoding.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from week07_continual import PrototypeRouter, collate, embed_sequences, score_examples
from week07_continual.tasks import prompt_ids
from week10_hydra.bank import AdapterBank, ArrowSpec

# ---------------------------------------------------------------- per-request prototypes


@dataclass
class RoutingConfig:
    """Per-request routing: cosine ``threshold`` in [-1, 1] (below it: the base), at most
    ``max_tokens`` prompt tokens embedded, ``batch_size`` prompts per embedding forward."""

    threshold: float = 0.0
    max_tokens: int = 64
    batch_size: int = 64

    def __post_init__(self):
        if not -1.0 <= self.threshold <= 1.0:
            raise ValueError(f"routing threshold is a cosine in [-1, 1], got {self.threshold}")
        if self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_tokens and batch_size must be >= 1, got {self.max_tokens}, "
                             f"{self.batch_size}")


class PrototypeRouting:
    """One adapter per request from the base model's view of the prompt (week07's router)."""

    def __init__(self, model: nn.Module, tokenizer, cfg: RoutingConfig | None = None,
                 bank: AdapterBank | None = None):
        self.model, self.tokenizer, self.bank = model, tokenizer, bank
        self.cfg = cfg or RoutingConfig()
        self.router = PrototypeRouter(self.cfg.threshold)

    @classmethod
    def fit(cls, model: nn.Module, tokenizer, prompts: Mapping[str, Sequence],
            cfg: RoutingConfig | None = None, bank: AdapterBank | None = None) -> PrototypeRouting:
        """A router with one prototype per adapter: ``{adapter: [prompt text or token ids]}``."""
        if not isinstance(prompts, Mapping) or not prompts:
            raise ValueError("fit needs {adapter_name: [prompts, ...]} with at least one adapter")
        routing = cls(model, tokenizer, cfg, bank)
        for name, ps in prompts.items():
            routing.add(name, ps)
        return routing

    def add(self, name: str, prompts: Sequence) -> None:
        """Add (or extend) adapter ``name``'s prototype with these prompts."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"adapter name must be a non-empty str, got {name!r}")
        self.router.add(name, self.embed(prompts))

    @property
    def names(self) -> list[str]:
        return list(self.router.names)

    def _ids(self, prompt) -> list[int]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
        elif isinstance(prompt, (list, tuple)) and all(isinstance(t, int) for t in prompt):
            ids = list(prompt)
        else:
            raise ValueError(f"a prompt is a str or a list of token ids, got {prompt!r:.60}")
        if not ids:
            raise ValueError("a prompt is empty (no tokens to embed)")
        return ids[:self.cfg.max_tokens]

    def embed(self, prompts: Sequence) -> torch.Tensor:
        """(N, C): the BASE model's mean-pooled final hidden state of each prompt."""
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise ValueError("prompts must be a non-empty list of texts or token-id lists")
        seqs = [self._ids(p) for p in prompts]
        if self.bank is None:
            return embed_sequences(self.model, seqs, self.cfg.batch_size)
        with self.bank.use(None):  # the base, even when called inside a running batch's plan
            return embed_sequences(self.model, seqs, self.cfg.batch_size)

    def route_scores(self, prompts: Sequence) -> tuple[list[str | None], torch.Tensor]:
        """Each prompt's adapter (``None``: below threshold, the base) and its cosine (N,)."""
        if not self.router.names:
            raise ValueError("the router has no prototypes: fit() or add() first")
        return self.router.route(self.embed(prompts))

    def route(self, prompts: Sequence) -> list[str | None]:
        """Each prompt's adapter name, ``None`` for the base (what ``adapter="auto"`` uses)."""
        return self.route_scores(prompts)[0]

    # -- persistence (week07 AdapterStore.save_blob / load_blob)
    def state(self) -> dict:
        return {"router": self.router.state(), "max_tokens": self.cfg.max_tokens,
                "batch_size": self.cfg.batch_size}

    @classmethod
    def from_state(cls, state: Mapping, model: nn.Module, tokenizer,
                   bank: AdapterBank | None = None) -> PrototypeRouting:
        if "router" not in state:
            raise ValueError(f"not a PrototypeRouting state (keys {sorted(state)}); "
                             "expected the dict that state() returns")
        router = PrototypeRouter.from_state(state["router"])
        cfg = RoutingConfig(router.threshold, int(state["max_tokens"]), int(state["batch_size"]))
        routing = cls(model, tokenizer, cfg, bank)
        routing.router = router
        return routing


# ---------------------------------------------------------------- Arrow's coefficients


def _padded(seqs: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(s) for s in seqs)
    idx = torch.zeros(len(seqs), T, dtype=torch.long, device=device)  # right padding: causal,
    valid = torch.zeros(len(seqs), T, device=device)  # so real tokens never see it
    for b, s in enumerate(seqs):
        idx[b, :len(s)] = torch.tensor(s, device=device)
        valid[b, :len(s)] = 1.0
    return idx, valid


@torch.no_grad()
def arrow_coefficients(bank: AdapterBank, seqs: list[list[int]], spec: ArrowSpec,
                       batch_size: int = 32, per_layer: bool = False):
    """Arrow's routing weights while the bank's model runs ``seqs`` with every row "arrow".

    Returns (N, E): each sequence's weights over ``spec.names``, averaged over its tokens
    and every bank layer; with ``per_layer`` a dict ``{layer: (N, T, E)}`` of the weights of
    every token instead (zero on padding). The hooks only read the layers' inputs.
    """
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("arrow_coefficients needs a non-empty list of non-empty sequences")
    layers = {}
    store: dict[str, torch.Tensor] = {}

    def reader(name):
        def hook(module, inputs, output):
            x = inputs[0]  # (B, T, in)
            tok = x.reshape(-1, x.size(-1))
            coeff = spec.coefficients(tok.to(bank.dtype), bank.prototypes(name, spec.names))
            store[name] = coeff.reshape(x.size(0), -1, coeff.size(-1)).float()  # (B, T, E)
        return hook

    for name, m in bank.layers.items():
        layers[name] = m.register_forward_hook(reader(name))
    means, full = [], {n: [] for n in bank.layers}
    was_training = bank.model.training
    bank.model.eval()
    try:
        for s in range(0, len(seqs), batch_size):
            chunk = seqs[s:s + batch_size]
            idx, valid = _padded(chunk, bank.device)
            with bank.use(bank.plan(["arrow"] * len(chunk), arrow=spec)):
                bank.model(idx)
            total = 0
            for name in bank.layers:
                c = store[name] * valid[..., None]  # (B, T, E)
                total = total + c.sum(1)  # (B, E)
                if per_layer:
                    full[name].append(c.cpu())
            means.append((total / (valid.sum(1, keepdim=True) * len(bank.layers))).cpu())
    finally:
        for h in layers.values():
            h.remove()
        bank.model.train(was_training)
    if per_layer:
        T = max(len(s) for s in seqs)
        return {n: torch.cat([torch.nn.functional.pad(c, (0, 0, 0, T - c.size(1))) for c in cs])
                for n, cs in full.items()}
    return torch.cat(means)


def arrow_choice(bank: AdapterBank, seqs: list[list[int]], spec: ArrowSpec,
                 batch_size: int = 32) -> list[str]:
    """Arrow's per-request choice: the adapter with the largest mean routing weight."""
    coeff = arrow_coefficients(bank, seqs, spec, batch_size)  # (N, E)
    return [spec.names[i] for i in coeff.argmax(1).tolist()]


# ---------------------------------------------------------------- measuring on a stream


@dataclass
class RouterAccuracy:
    """Fraction of held-out test prompts routed to their own task's adapter."""

    prototype: float
    arrow: float | None
    per_task: dict = field(default_factory=dict)  # task -> {"prototype": acc, "arrow": acc, "n"}
    routes: dict = field(default_factory=dict)  # task -> {"prototype": [...], "arrow": [...]}
    held_out: dict = field(default_factory=dict)  # task -> indices of its scored test examples


def router_accuracy(model: nn.Module, stream, n_fit: int = 32,
                    adapters: Sequence[str] | None = None, bank: AdapterBank | None = None,
                    arrow: ArrowSpec | None = None,
                    cfg: RoutingConfig | None = None, seed: int = 0) -> RouterAccuracy:
    """Route every task's held-out test prompts of a week07 ``stream``; how often is it right?

    ``adapters[i]`` is task i's adapter name (default: the task names). Prototypes are fitted
    on ``n_fit`` random training prompts per task; test examples whose tokens are among those
    are left out. With ``bank`` and ``arrow`` (the bank holding every task's adapter), Arrow's
    per-request choice is scored on the same prompts.
    """
    names = list(adapters) if adapters is not None else stream.task_names
    if len(names) != len(stream.tasks):
        raise ValueError(f"{len(names)} adapter names for {len(stream.tasks)} tasks")
    if (bank is None) != (arrow is None):
        raise ValueError("Arrow accuracy needs both bank= and arrow=")
    rng = random.Random(seed)
    fit, held = {}, {}
    for name, task in zip(names, stream.tasks):
        picks = rng.sample(range(len(task.train)), min(n_fit, len(task.train)))
        fit[name] = [prompt_ids(task.train[i]) for i in picks]
        used = {tuple(task.train[i]["ids"]) for i in picks}
        held[task.name] = [j for j, e in enumerate(task.test) if tuple(e["ids"]) not in used]
        if not held[task.name]:
            raise ValueError(f"task {task.name!r}: every test example was used to fit; lower n_fit")
    routing = PrototypeRouting.fit(model, stream.tokenizer, fit, cfg, bank)
    per_task, routes, right, right_a, total = {}, {}, 0, 0, 0
    for name, task in zip(names, stream.tasks):
        seqs = [prompt_ids(task.test[j]) for j in held[task.name]]
        got = routing.route(seqs)
        ok = sum(g == name for g in got)
        per_task[task.name] = {"prototype": ok / len(got), "n": len(got)}
        routes[task.name] = {"prototype": got}
        right, total = right + ok, total + len(got)
        if arrow is not None:
            got_a = arrow_choice(bank, seqs, arrow)
            ok_a = sum(g == name for g in got_a)
            per_task[task.name]["arrow"] = ok_a / len(got_a)
            routes[task.name]["arrow"] = got_a
            right_a += ok_a
    return RouterAccuracy(right / total, right_a / total if arrow is not None else None,
                          per_task, routes, held)


@torch.no_grad()
def score_routed(bank: AdapterBank, examples: list[dict], metric: str, rows: list,
                 arrow: ArrowSpec | None = None, batch_size: int = 32,
                 token_bytes: torch.Tensor | None = None, max_len: int | None = None) -> float:
    """week07's ``score_examples`` with ``rows[i]`` (a bank row spec: None, a name, a stack or
    "arrow") for example i, batch by batch through the bank."""
    if len(rows) != len(examples):
        raise ValueError(f"{len(rows)} row specs for {len(examples)} examples")
    num = den = 0.0
    for s in range(0, len(examples), batch_size):
        chunk = examples[s:s + batch_size]
        with bank.use(bank.plan(list(rows[s:s + batch_size]), arrow=arrow)):
            value = score_examples(bank.model, chunk, metric, len(chunk), token_bytes, max_len)
        if metric == "bpb":  # a ratio: weight each batch by the bytes it scores
            _, y = collate(chunk, max_len)
            weight = float(token_bytes[y[y >= 0]].sum())
        else:
            weight = len(chunk)
        num, den = num + value * weight, den + weight
    return num / den


__all__ = ["RoutingConfig", "PrototypeRouting", "arrow_coefficients", "arrow_choice",
           "RouterAccuracy", "router_accuracy", "score_routed"]
