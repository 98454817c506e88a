"""The adapter library: many LoRA adapters on disk, a few in memory, nested ones as paths.

``AdapterLibrary(root, bank, budget_bytes)`` keeps adapters in a week07
``AdapterStore`` (one week06 adapter file each, committed through the store's
manifest) and serves them through an ``AdapterBank``. Each entry's meta
records its ``parent``, ``kind``, rank, scaling, a description and the bytes it
takes in the bank.

Names are paths. ``"domain/task/user"`` is a child of ``"domain/task"``, a child
of ``"domain"``; serving a nested name serves its whole chain as a stack
(``resolve``), so a user adapter is trained and served on top of its task and
domain adapters (nested LoRA, ``nested.py``)::

    resolve("domain/task/user")  ->  [("domain", 1), ("domain/task", 1), ("domain/task/user", 1)]

Serving is S-LoRA's idea: the library can hold far more adapters than memory
does. ``ensure(names)`` loads what a batch needs from the store (hash-checked)
and, while the bank's adapters exceed ``budget_bytes``, evicts the least
recently used ones the batch does not need (use time is a counter, not the
clock). ``plan(rows)`` is ``ensure`` + ``resolve`` + ``bank.plan``: what Hydra
calls per batch.

PEFT interop: ``import_peft`` reads a PEFT LoRA folder whose module names are
the bank's layer names (a Hugging Face model); ``export_peft`` writes one that
``peft.PeftModel.from_pretrained`` loads.

Left out: DoRA (the bank cannot gather it), paging parts of adapters between
CPU and GPU (whole adapters are loaded and evicted), renaming PEFT modules
between architectures (e.g. HF names onto week04's Llama, whose q/k rows are
permuted), and concurrent writers (one process owns a library).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file

from shared import load_checkpoint
from week06_lora import (
    NO_ADAPTER,
    adapter_config,
    load_peft_adapter,
    lora_layers,
    read_peft_config,
    save_peft_adapter,
    set_active_adapters,
)
from week06_lora.peft_io import PREFIX, WEIGHTS_FILE
from week07_continual import AdapterStore
from week10_hydra.bank import AdapterBank, ArrowSpec, Plan, Stack, as_stack

_NAME = re.compile(r"[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*")
_RESERVED = ("arrow", NO_ADAPTER)  # bank.plan reads these as routing / no adapter
_SHELL_ADAPTER = "x"  # the adapter's name inside a shell (files do not record layer keys by name)

# ---------------------------------------------------------------- names


class BudgetError(RuntimeError):
    """The adapters a batch needs do not fit the library's memory budget."""


def check_name(name) -> str:
    """``name`` if it is a valid adapter path (segments of letters, digits, ``_``, ``-``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED:
        raise ValueError(f"adapter name must be a path like 'domain/task/user' (segments of "
                         f"letters, digits, '_' and '-', joined by '/'; not {_RESERVED}), "
                         f"got {name!r}")
    return name


def path_parent(name: str) -> str | None:
    """The parent a name's path implies: ``"a/b/c"`` -> ``"a/b"``, ``"a"`` -> None."""
    head, _, _ = check_name(name).rpartition("/")
    return head or None


def _shell(bank: AdapterBank) -> nn.Module:
    """A module tree with the bank's target layers under their own names, as plain
    ``nn.Linear`` s that share the model's weights (nothing copied, the model untouched):
    week06's adapter and PEFT readers and writers work on it."""
    root = nn.Module()
    for name, layer in bank.layers.items():
        parent = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(parent, part):
                parent.add_module(part, nn.Module())
            parent = getattr(parent, part)
        lin = nn.Linear(1, 1, bias=False)
        lin.in_features, lin.out_features = layer.in_features, layer.out_features
        lin.weight = layer.weight
        lin.bias = layer.bias
        parent.add_module(leaf, lin)
    return root


# ---------------------------------------------------------------- the library


class AdapterLibrary:
    """Adapters on disk at ``root`` (a week07 ``AdapterStore``), served into ``bank``."""

    def __init__(self, root: str | os.PathLike, bank: AdapterBank, budget_bytes: int | None = None):
        if budget_bytes is not None and (isinstance(budget_bytes, bool) or
                                         not isinstance(budget_bytes, int) or budget_bytes <= 0):
            raise ValueError(f"budget_bytes must be a positive int or None (no limit), "
                             f"got {budget_bytes!r}")
        self.store = AdapterStore(root)
        self.bank = bank
        self.budget_bytes = budget_bytes
        self.evictions = 0
        self._clock = 0  # LRU time: one tick per adapter use
        self._last_used: dict[str, int] = {}  # adapters this library loaded -> last use
        elem = bank.A[next(iter(bank.layers))].element_size()
        self._bytes_per_rank = sum(m.in_features + m.out_features
                                   for m in bank.layers.values()) * elem

    # -- contents
    def names(self) -> list[str]:
        return self.store.names()

    def __contains__(self, name: str) -> bool:
        return name in self.store

    def __len__(self) -> int:
        return len(self.store)

    def meta(self, name: str) -> dict:
        return self.store.entry(name)["meta"]

    def children(self, name: str) -> list[str]:
        return [n for n in self.names() if self.meta(n).get("parent") == name]

    def loaded(self) -> list[str]:
        """Library adapters in the bank now, least recently used first."""
        return sorted((n for n in self._last_used if n in self.bank), key=self._last_used.get)

    def list(self) -> list[dict]:
        """One row per stored adapter: name, parent, rank, bytes (in the bank), file_bytes,
        loaded, last_used (the LRU counter; None if never served)."""
        rows = []
        for n in self.names():
            m, entry = self.meta(n), self.store.entry(n)
            rows.append({"name": n, "parent": m.get("parent"), "rank": m.get("r"),
                         "bytes": self.cost(n),
                         "file_bytes": (self.store.root / entry["file"]).stat().st_size,
                         "loaded": n in self.loaded(), "last_used": self._last_used.get(n),
                         "description": m.get("description", "")})
        return rows

    def cost(self, name: str) -> int:
        """Bytes adapter ``name`` takes in the bank (its unpadded A and B on every layer)."""
        if name in self._last_used and name in self.bank:
            return self.bank.adapter_bytes(name)
        return int(self.meta(name)["r"]) * self._bytes_per_rank

    # -- writing
    def _check_parent(self, name: str, parent: str | None) -> str | None:
        implied = path_parent(name)
        if parent is not None and parent != implied:
            raise ValueError(f"adapter {name!r}: its path says its parent is {implied!r}, "
                             f"got parent={parent!r} (name a child '<parent>/<child>')")
        if implied is not None and implied not in self:
            raise KeyError(f"adapter {name!r}: parent {implied!r} is not in the library; "
                           f"save it first (stored: {self.names()})")
        return implied

    def _commit(self, name: str, model: nn.Module, adapter: str, parent: str | None,
                meta: dict | None) -> Path:
        cfg = adapter_config(model, adapter)
        if cfg.dora:
            raise ValueError(f"adapter {adapter!r} is DoRA; the library serves through the bank, "
                             "which serves plain LoRA only (merge it instead)")
        layers = [n for n, m in lora_layers(model).items() if adapter in m.lora]
        foreign = [n for n in layers if n not in self.bank.layers]
        if foreign:
            raise KeyError(f"adapter {adapter!r} has layers the bank does not target: "
                           f"{foreign[:3]}; bank targets: {list(self.bank.layers)[:6]}...")
        info = {"description": "", **(self.meta(name) if name in self else {}), "kind": "lora",
                **(meta or {}), "parent": parent, "r": cfg.r, "alpha": cfg.alpha, "rslora": cfg.rslora,
                "scaling": cfg.scaling, "layers": len(layers),
                "bytes": cfg.r * self._bytes_per_rank}
        path = self.store.save(name, model, adapter=adapter, meta=info)
        if name in self.bank and name in self._last_used:  # keep the served copy current
            self._load(name)
        return path

    def save(self, name: str, model: nn.Module, adapter: str | None = None,
             parent: str | None = None, meta: dict | None = None) -> Path:
        """Store week06 adapter ``adapter`` (default ``name``) of ``model`` as ``name``.

        ``parent`` must be the name's path parent (``"a/b"`` for ``"a/b/c"``) and be
        stored already. ``meta`` (e.g. ``{"description": ...}``) is kept in the entry.
        Re-saving a name replaces it (and the bank's copy, if loaded).
        """
        parent = self._check_parent(check_name(name), parent)
        return self._commit(name, model, adapter or name, parent, meta)

    def hot_swap(self, name: str, model: nn.Module, adapter: str | None = None) -> Path:
        """Store a new version of stored adapter ``name``; if it is loaded, the bank's copy is
        replaced in place, so the next forward uses it. The old file is deleted."""
        if name not in self:
            raise KeyError(f"hot_swap replaces a stored adapter; {name!r} is not stored "
                           f"(stored: {self.names()}); use save() for a new one")
        old = self.meta(name)
        return self._commit(name, model, adapter or name, old.get("parent"),
                            {"kind": old.get("kind", "lora")})

    def import_peft(self, folder: str | os.PathLike, name: str, parent: str | None = None,
                    meta: dict | None = None) -> Path:
        """Store a PEFT LoRA folder as ``name``; its modules ``base_model.model.<M>`` must be
        the bank's layers ``<M>``."""
        parent = self._check_parent(check_name(name), parent)
        cfg = read_peft_config(folder)
        if cfg.get("use_dora"):
            raise ValueError(f"{folder} is a DoRA adapter; the bank serves plain LoRA only")
        keys = load_file(str(Path(folder) / WEIGHTS_FILE)).keys()
        modules = {k.removeprefix(PREFIX).rsplit(".lora_", 1)[0] for k in keys}
        missing = sorted(m for m in modules if m not in self.bank.layers)
        if missing:
            raise KeyError(f"PEFT adapter {folder} adapts modules the model does not have (or the "
                           f"bank does not target): {missing[:3]}; bank targets: "
                           f"{list(self.bank.layers)[:6]}...")
        shell = _shell(self.bank)
        load_peft_adapter(folder, shell, adapter=_SHELL_ADAPTER, activate=False, freeze_base=False)
        info = {"kind": "peft-import", "source": str(folder), **(meta or {})}
        return self._commit(name, shell, _SHELL_ADAPTER, parent, info)

    def export_peft(self, name: str, folder: str | os.PathLike,
                    base_model_name_or_path: str | None = None) -> Path:
        """Write stored adapter ``name`` (alone, not its chain) as a PEFT LoRA folder."""
        shell = _shell(self.bank)
        self.store.load(name, shell, adapter=_SHELL_ADAPTER, freeze_base=False)
        return save_peft_adapter(folder, shell, _SHELL_ADAPTER, base_model_name_or_path)

    def delete(self, name: str, recursive: bool = False) -> list[str]:
        """Delete ``name`` (and, with ``recursive``, its descendants); returns what went."""
        self.store.entry(name)  # a clear KeyError for a name not stored
        kids = self.children(name)
        if kids and not recursive:
            raise ValueError(f"adapter {name!r} has children {kids}; delete them first or pass "
                             "recursive=True")
        gone = [g for k in kids for g in self.delete(k, recursive=True)]
        if name in self.bank and name in self._last_used:
            self.bank.remove(name)
        self._last_used.pop(name, None)
        self.store.delete(name)
        return [*gone, name]

    # -- hierarchy
    def resolve(self, name: str) -> Stack:
        """The chain root -> ... -> ``name`` from the entries' ``parent``, weight 1 each."""
        chain, seen, cur = [], set(), check_name(name)
        while cur is not None:
            if cur in seen:
                raise ValueError(f"adapter {name!r}: its parent chain has a cycle through "
                                 f"{cur!r} (parent links: {' -> '.join(chain)} -> {cur})")
            if cur not in self:
                what = "is not in the library" if cur == name else \
                    f"has a missing ancestor {cur!r} (chain so far: {list(reversed(chain))})"
                raise KeyError(f"adapter {name!r} {what}; stored: {self.names()}")
            seen.add(cur)
            chain.append(cur)
            cur = self.meta(cur).get("parent")
        return [(n, 1.0) for n in reversed(chain)]

    def resolve_stack(self, spec) -> Stack:
        """A stack spec (see ``bank.as_stack``) with each name expanded to its chain, weights
        multiplied (a nested name's weight applies to its whole chain); an adapter met twice
        gets the sum of its weights."""
        out: dict[str, float] = {}
        for name, w in as_stack(spec):
            for n, w2 in self.resolve(name):
                out[n] = out.get(n, 0.0) + w * w2
        return list(out.items())

    # -- serving
    def _load(self, name: str) -> None:
        state, meta = load_checkpoint(self.store.verified_path(name),
                                      expect={"kind": "lora-adapter"})
        self.bank.add_state(name, state, meta["config"])

    def ensure(self, names: Iterable[str]) -> None:
        """Load every adapter ``names`` need (their chains too) into the bank, evicting least
        recently used others while the bank's adapters exceed ``budget_bytes``."""
        if isinstance(names, str):
            names = [names]
        needed = list(dict.fromkeys(n for name in names for n, _ in self.resolve(name)))
        new = [n for n in needed if not (n in self.bank and n in self._last_used)]
        if self.budget_bytes is not None:
            need = sum(self.cost(n) for n in needed)
            if need > self.budget_bytes:
                raise BudgetError(f"the batch needs {len(needed)} adapters of {need:,} bytes "
                                  f"together, over the library's budget of "
                                  f"{self.budget_bytes:,} bytes: raise budget_bytes or split the "
                                  f"batch ({needed[:6]})")
            held = sum(self.bank.adapter_bytes(n) for n in self.bank.names())
            incoming = sum(self.cost(n) for n in new)
            keep = set(needed)
            for victim in self.loaded():  # least recently used first
                if held + incoming <= self.budget_bytes:
                    break
                if victim not in keep:
                    held -= self.bank.adapter_bytes(victim)
                    self.bank.remove(victim)
                    del self._last_used[victim]
                    self.evictions += 1
            if held + incoming > self.budget_bytes:
                raise BudgetError(f"the bank holds {held:,} bytes of adapters the library cannot "
                                  f"evict; with {incoming:,} more it exceeds the budget of "
                                  f"{self.budget_bytes:,} bytes")
        for n in new:
            self._load(n)
        for n in needed:  # one tick per adapter, in the batch's order: no ties
            self._clock += 1
            self._last_used[n] = self._clock

    def plan(self, rows: list, arrow: ArrowSpec | None = None) -> Plan:
        """A bank ``Plan`` for a batch whose rows may name nested adapters (served with their
        chains); Arrow routes between ``arrow.names`` as they are (no chains)."""
        if not isinstance(rows, (list, tuple)) or not rows:
            raise ValueError("a plan needs one adapter spec per row (a non-empty list)")
        stacks = [spec if isinstance(spec, str) and spec == "arrow" else self.resolve_stack(spec)
                  for spec in rows]
        names = [n for s in stacks if s != "arrow" for n, _ in s]
        if arrow is not None:
            names += [check_name(n) for n in arrow.names]
        self.ensure(names)
        return self.bank.plan(stacks, arrow)


# ---------------------------------------------------------------- week06 models from the library


def load_chain(library: AdapterLibrary, model: nn.Module, name: str,
               activate: bool = True) -> list[str]:
    """Load ``name``'s chain from the store into week06 ``model`` as adapters of the same
    names (the reference the bank is compared with); returns the chain."""
    chain = [n for n, _ in library.resolve(name)]
    for n in chain:
        library.store.load(n, model, adapter=n, freeze_base=False)
    if activate:
        set_active_adapters(model, chain)
    return chain


__all__ = ["AdapterLibrary", "BudgetError", "check_name", "path_parent", "load_chain"]
