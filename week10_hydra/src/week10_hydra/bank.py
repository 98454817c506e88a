"""Many LoRA adapters on one frozen base, each row of a batch with its own: a gather, not a loop.

An ``AdapterBank`` holds, for every target linear layer of a model, the A and
B matrices of every loaded adapter stacked in one pool (the idea of S-LoRA's
unified memory pool)::

    A_pool[layer]  (N, R, in)    slot 0 is all zeros: "no adapter"
    B_pool[layer]  (N, out, R)   B already multiplied by the adapter's scaling

with ranks zero-padded to the largest rank R in the bank (a padded rank
contributes exactly zero). A forward hook on each target layer adds the
adapters' output to the base output; the base weights are never touched, so
nothing is merged and any row can use any adapter at any time.

A ``Plan`` says what each row of a batch uses: a stack of (adapter, weight)
pairs, padded to the longest stack S with slot 0. Its matrices are gathered
once per layer, then every forward of that batch is two batched matmuls
(Punica's BGMV/SGMV idea, written with ``torch.bmm``)::

    A_g = A_pool[slots]                      (B, S, R, in)   -> (B, S*R, in)
    B_g = B_pool[slots] * weights            (B, S, out, R)  -> B_g^T (B, S*R, out)
    y  += (x @ A_g^T) @ B_g^T                (B, T, in) -> (B, T, S*R) -> (B, T, out)

(one ``baddbmm`` adds the second product into the base output, in place under
``no_grad``; when every row has the same stack the gather is skipped: two plain
matmuls on (B*T, in), the second an ``addmm``).

A stack of adapters is thus one LoRA of rank S*R per row (a weighted sum of
low-rank updates is a low-rank update), and a row with the bare base gathers
slot 0. The cost per forward does not grow with the number of distinct
adapters in the batch, unlike week06's ``mixed_batch`` (one pass per adapter).

``Plan(..., arrow=...)`` routes rows per token instead (Arrow, Ostapenko et al.
2024, as PEFT implements it): each adapter's prototype in a layer is the top
right singular vector v_e of its delta W = s B A; a token x is scored
|x . v_e| against every prototype, the top-k are softmaxed (with a
temperature) and the token gets the weighted sum of those adapters' outputs.

``plan.keep(idx)`` follows the decoding loop when rows finish early (week01's
``Decoding(on_keep=...)``). Plans, the gather and ``ArrowSpec`` live in ``plan.py``.

Left out: DoRA (its update is not a low-rank term, so it cannot be gathered;
merge it or serve it alone), LoRA on embeddings, fused CUDA kernels (the
bmm form is what a GPU runs well anyway), and paging adapter weights between
CPU and GPU memory (``AdapterLibrary`` evicts whole adapters instead).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
import torch.nn as nn

from week06_lora import NO_ADAPTER, LoRALinear, default_targets, lora_layers
from week10_hydra.plan import ArrowSpec, Plan, Stack, as_stack, gather_adapters

__all__ = ["AdapterBank", "ArrowSpec", "Plan", "Stack", "as_stack", "gather_adapters"]

# ---------------------------------------------------------------- the bank


class AdapterBank:
    """Stacked LoRA weights of many adapters on ``model``'s target layers, applied by hooks."""

    def __init__(self, model: nn.Module, targets: Iterable[str] | None = None):
        self.model = model
        modules = dict(model.named_modules())
        names = list(targets) if targets is not None else (
            list(lora_layers(model)) or default_targets(model))
        bad = [n for n in names if not isinstance(modules.get(n), (nn.Linear, LoRALinear))]
        if bad:
            raise ValueError(f"bank targets must name linear layers of {type(model).__name__}; "
                             f"not linear or missing: {bad[:4]}")
        if not names:
            raise ValueError(f"{type(model).__name__} has no linear layers to adapt")
        self.layers = {n: modules[n] for n in names}
        ref = next(model.parameters())
        self.dtype, self.device = ref.dtype, ref.device
        self.rank = 1  # R: the padded rank of every pool
        self.A: dict[str, torch.Tensor] = {}
        self.B: dict[str, torch.Tensor] = {}
        for n, m in self.layers.items():
            self.A[n] = torch.zeros(1, 1, m.in_features, dtype=self.dtype, device=self.device)
            self.B[n] = torch.zeros(1, m.out_features, 1, dtype=self.dtype, device=self.device)
        self.slots: dict[str, int] = {}  # adapter name -> slot (0 is "none")
        self.ranks: dict[str, int] = {}  # adapter name -> its true (largest) rank
        self._free: list[int] = []
        self._plan: Plan | None = None
        self._protos: dict[tuple, torch.Tensor] = {}  # (layer, names) -> (E, in) Arrow prototypes
        # the forward hooks are on the layers only while a plan that adapts rows is in use
        # (``_sync``): a bare batch takes the layers' own fast path (week04's ``linear_rows``
        # runs a hooked layer as a module call: 28 of them per step cost a 1.3M model a third)
        self._hooks: list = []
        self._closed = False

    def close(self) -> None:
        """Remove the hooks for good: the model is the bare base again."""
        self._closed = True
        self._set_hooks(False)

    def _set_hooks(self, on: bool) -> None:
        if on and not self._hooks and not self._closed:
            # prepended: the bank adapts a layer's output before any other hook sees it
            self._hooks = [m.register_forward_hook(self._hook(n), prepend=True)
                           for n, m in self.layers.items()]
        elif not on and self._hooks:
            for h in self._hooks:
                h.remove()
            self._hooks = []

    def _sync(self) -> None:
        """Hooks on exactly while the plan in use adapts some row (stacks or Arrow)."""
        p = self._plan
        self._set_hooks(p is not None and (p.stacked or p.has_arrow))

    # -- contents
    def names(self) -> list[str]:
        return list(self.slots)

    def __contains__(self, name: str) -> bool:
        return name in self.slots

    def __len__(self) -> int:
        return len(self.slots)

    def adapter_bytes(self, name: str) -> int:
        """Bytes the adapter's own (unpadded) A and B take."""
        r = self.ranks[name]
        return sum(r * (m.in_features + m.out_features) for m in self.layers.values()) * \
            torch.finfo(self.dtype).bits // 8

    def nbytes(self) -> int:
        """Bytes of the pools (padding and free slots included)."""
        return sum(t.numel() * t.element_size() for d in (self.A, self.B) for t in d.values())

    def _grow(self, rank: int, slots: int) -> None:
        """Pad every pool to rank >= ``rank`` and at least ``slots`` slots."""
        for n in self.layers:
            A, B = self.A[n], self.B[n]
            N, R = A.size(0), A.size(1)
            if rank > R or slots > N:
                N2, R2 = max(N, slots), max(R, rank)
                A2 = A.new_zeros(N2, R2, A.size(2))
                B2 = B.new_zeros(N2, B.size(1), R2)
                A2[:N, :R], B2[:N, :, :R] = A, B
                self.A[n], self.B[n] = A2, B2
        self.rank = max(self.rank, rank)

    @torch.no_grad()
    def add(self, name: str, weights: Mapping[str, tuple[torch.Tensor, torch.Tensor, float]]) -> None:
        """Load adapter ``name``: ``{layer: (A (r, in), B (out, r), scaling)}`` (replaces a
        loaded adapter of that name in place, which is a hot swap between two forwards)."""
        if not isinstance(name, str) or not name or name == NO_ADAPTER:
            raise ValueError(f"adapter name must be a non-empty str other than {NO_ADAPTER!r}, "
                             f"got {name!r}")
        unknown = [layer for layer in weights if layer not in self.layers]
        if unknown:
            raise KeyError(f"adapter {name!r} has layers the bank does not target: {unknown[:3]}; "
                           f"targets: {list(self.layers)[:6]}...")
        if not weights:
            raise ValueError(f"adapter {name!r} has no layers")
        for layer, (A, B, _) in weights.items():
            m = self.layers[layer]
            if A.dim() != 2 or B.dim() != 2 or A.size(0) != B.size(1) or \
                    A.size(1) != m.in_features or B.size(0) != m.out_features:
                raise ValueError(f"adapter {name!r}, layer {layer}: A {tuple(A.shape)} and B "
                                 f"{tuple(B.shape)} do not fit a ({m.out_features} x "
                                 f"{m.in_features}) layer (want A (r, in), B (out, r))")
        rank = max(A.size(0) for A, _, _ in weights.values())
        if name in self.slots:
            slot = self.slots[name]
        elif self._free:
            slot = self._free.pop()
        else:
            slot = max([0, *self.slots.values()]) + 1
        self._grow(rank, slot + 1)
        for layer in self.layers:
            self.A[layer][slot].zero_()
            self.B[layer][slot].zero_()
        for layer, (A, B, scaling) in weights.items():
            r = A.size(0)
            self.A[layer][slot, :r] = A.to(self.dtype)
            self.B[layer][slot, :, :r] = (B.float() * float(scaling)).to(self.dtype)
        self.slots[name], self.ranks[name] = slot, rank
        self._protos = {k: v for k, v in self._protos.items() if name not in k[1]}

    def add_from_model(self, name: str, model: nn.Module, adapter: str | None = None) -> None:
        """Load week06 adapter ``adapter`` (default ``name``) of a model with ``inject_lora``."""
        adapter = adapter or name
        weights = {}
        for lname, layer in lora_layers(model).items():
            if adapter in layer.lora:
                ad = layer.lora[adapter]
                if ad.magnitude is not None:
                    raise ValueError(f"adapter {adapter!r} is DoRA; its update is not low-rank, "
                                     "so the bank cannot gather it (merge it instead)")
                weights[lname] = (ad.A.detach(), ad.B.detach(), ad.scaling)
        if not weights:
            raise KeyError(f"no layer of {type(model).__name__} holds adapter {adapter!r}")
        self.add(name, weights)

    def add_peft(self, name: str, peft_model: nn.Module, adapter: str | None = None) -> None:
        """Load adapter ``adapter`` (default ``name``) of a live ``peft.PeftModel`` whose base is
        this bank's model (its module names minus PEFT's ``base_model.model.`` prefix)."""
        adapter = adapter or name
        weights = {}
        for mname, m in peft_model.named_modules():
            if hasattr(m, "lora_A") and adapter in m.lora_A:
                if getattr(m, "use_dora", {}).get(adapter):
                    raise ValueError(f"PEFT adapter {adapter!r} is DoRA; the bank serves plain "
                                     "LoRA only")
                weights[mname.removeprefix("base_model.model.")] = (
                    m.lora_A[adapter].weight.detach(), m.lora_B[adapter].weight.detach(),
                    m.scaling[adapter])
        if not weights:
            raise KeyError(f"no LoRA layer of {type(peft_model).__name__} holds adapter "
                           f"{adapter!r}")
        self.add(name, weights)

    def add_state(self, name: str, state: Mapping[str, torch.Tensor], config: Mapping) -> None:
        """Load a week06 adapter file's contents (``{"<layer>.A", "<layer>.B"}`` + its config)."""
        if config.get("dora"):
            raise ValueError(f"adapter {name!r} is DoRA; the bank serves plain LoRA only")
        r, alpha = int(config["r"]), float(config["alpha"])
        scaling = alpha / (r ** 0.5 if config.get("rslora") else r)
        layers = sorted({k.rsplit(".", 1)[0] for k in state if k.endswith((".A", ".B"))})
        self.add(name, {layer: (state[f"{layer}.A"], state[f"{layer}.B"], scaling)
                        for layer in layers})

    def remove(self, name: str) -> None:
        """Unload ``name``; its slot is zeroed and reused."""
        if name not in self.slots:
            raise KeyError(f"adapter {name!r} is not loaded; loaded: {self.names()}")
        if self._plan is not None and bool((self._plan.slots == self.slots[name]).any()):
            raise RuntimeError(f"adapter {name!r} is in use by the running batch")
        slot = self.slots.pop(name)
        self.ranks.pop(name)
        with torch.no_grad():
            for layer in self.layers:
                self.A[layer][slot].zero_()
                self.B[layer][slot].zero_()
        self._free.append(slot)
        self._protos = {k: v for k, v in self._protos.items() if name not in k[1]}

    def delta_weight(self, name: str, layer: str) -> torch.Tensor:
        """s B A of adapter ``name`` in ``layer``: (out, in)."""
        slot = self.slots[name]
        return self.B[layer][slot] @ self.A[layer][slot]

    # -- plans
    def plan(self, rows: list, arrow: ArrowSpec | None = None) -> Plan:
        """A ``Plan`` for a batch: ``rows[i]`` is row i's adapter (None, a name, a stack
        ``[(name, weight), ...]`` / ``{name: weight}``, or ``"arrow"`` when ``arrow`` is given)."""
        if not isinstance(rows, (list, tuple)) or not rows:
            raise ValueError("a plan needs one adapter spec per row (a non-empty list)")
        stacks, arrow_rows = [], []
        for spec in rows:
            is_arrow = isinstance(spec, str) and spec == "arrow"
            if is_arrow and arrow is None:
                raise ValueError("a row asks for 'arrow' routing but no ArrowSpec was given")
            arrow_rows.append(is_arrow)
            stacks.append([] if is_arrow else as_stack(spec))
        needed = {n for s in stacks for n, _ in s} | set(arrow.names if arrow else ())
        missing = sorted(needed - set(self.slots))
        if missing:
            raise KeyError(f"adapters {missing} are not loaded in the bank; loaded: {self.names()}")
        S = max([1, *(len(s) for s in stacks)])
        slots = torch.zeros(len(rows), S, dtype=torch.long, device=self.device)
        weights = torch.zeros(len(rows), S, dtype=torch.float32, device=self.device)
        for i, s in enumerate(stacks):
            for j, (n, w) in enumerate(s):
                slots[i, j], weights[i, j] = self.slots[n], w
        return Plan(self, slots, weights, torch.tensor(arrow_rows, device=self.device), arrow)

    @contextmanager
    def use(self, plan: Plan | list | None) -> Iterator[Plan | None]:
        """Inside the block every forward of the model follows ``plan`` (a Plan or row specs)."""
        if plan is not None and not isinstance(plan, Plan):
            plan = self.plan(plan)
        saved, self._plan = self._plan, plan
        self._sync()
        try:
            yield plan
        finally:
            self._plan = saved
            self._sync()

    # -- the forward
    def _hook(self, layer: str):
        def hook(module, inputs, output):
            plan = self._plan
            if plan is None or not (plan.stacked or plan.has_arrow):
                return None
            x = inputs[0]  # (B, T, in) or (B, in)
            if x.size(0) != plan.batch_size:
                raise RuntimeError(f"the plan has {plan.batch_size} rows, the batch has "
                                   f"{x.size(0)}: rebuild the plan, or pass on_keep=plan.keep "
                                   "to the decoding loop")
            x3 = x if x.dim() == 3 else x.reshape(x.size(0), -1, x.size(-1))  # (B, T, in)
            out3 = output.reshape(x3.size(0), x3.size(1), -1)  # (B, T, out)
            y = out3
            if plan.stacked:
                a, bt = plan.gathered(layer)  # (B, S*R, in), (B, S*R, out); uniform: 2-D
                xa = x3.to(a.dtype)
                if a.dim() == 2:  # one stack for every row: (B*T, in) @ (in, S*R) @ (S*R, out)
                    h = xa.reshape(-1, xa.size(-1)) @ a.t()  # (B*T, S*R)
                    y2 = out3.reshape(-1, out3.size(-1))  # (B*T, out)
                    if y2.dtype != h.dtype:
                        y2 = y2 + (h @ bt).to(y2.dtype)
                    else:  # inference adds in place (as below)
                        y2 = torch.addmm(y2, h, bt) if torch.is_grad_enabled() else \
                            y2.addmm_(h, bt)
                    y = y2.reshape(out3.shape)
                else:
                    h = torch.bmm(xa, a.transpose(1, 2))  # (B, T, S*R)
                    if out3.dtype != h.dtype:
                        y = out3 + torch.bmm(h, bt).to(out3.dtype)  # (B, T, out)
                    elif torch.is_grad_enabled():
                        y = torch.baddbmm(out3, h, bt)
                    else:  # inference: add into the layer's fresh output, no copy of it
                        y = out3.baddbmm_(h, bt)
            if plan.has_arrow:
                y = y.clone() if y is out3 else y  # Arrow rows: index_put on a copy
                rows = plan.arrow_rows.nonzero()[:, 0]
                y[rows] = y[rows] + self._arrow(layer, x3[rows], plan.arrow).to(y.dtype)
            return y.reshape(output.shape)
        return hook

    # -- Arrow
    @torch.no_grad()
    def prototypes(self, layer: str, names: tuple[str, ...]) -> torch.Tensor:
        """(E, in): the top right singular vector of each adapter's delta W in ``layer``."""
        key = (layer, tuple(names))
        if key not in self._protos:
            vs = []
            for n in names:
                dw = self.delta_weight(n, layer).float()  # (out, in)
                _, _, vh = torch.linalg.svd(dw, full_matrices=False)
                vs.append(vh[0])  # (in,), unit norm; its sign does not matter (|cos|)
            self._protos[key] = torch.stack(vs).to(self.dtype)
        return self._protos[key]

    def _arrow(self, layer: str, x: torch.Tensor, spec: ArrowSpec) -> torch.Tensor:
        """Arrow's per-token mixture for rows x (b, T, in) -> (b, T, out)."""
        protos = self.prototypes(layer, spec.names)  # (E, in)
        tok = x.reshape(-1, x.size(-1))  # (t, in)
        coeff = spec.coefficients(tok, protos)  # (t, E)
        slots = torch.tensor([self.slots[n] for n in spec.names], device=x.device)
        A, B = self.A[layer][slots], self.B[layer][slots]  # (E, R, in), (E, out, R)
        z = torch.einsum("ti,eri->ter", tok, A)  # (t, E, R)
        y = torch.einsum("ter,eor->teo", z, B)  # (t, E, out)
        out = torch.einsum("te,teo->to", coeff, y)  # (t, out)
        return out.reshape(*x.shape[:-1], -1)
