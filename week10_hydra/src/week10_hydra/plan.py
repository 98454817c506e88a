"""A batch's adapter plan: what each row uses, and the gather that turns it into one LoRA per row.

``as_stack`` reads a row's spec (None, a name, ``[(name, weight), ...]``, ``{name: weight}``);
``AdapterBank.plan`` turns a batch of specs into a ``Plan``: slots (B, S) into the bank's pools
and their weights (B, S), padded with slot 0. ``gather_adapters`` builds, once per layer,
each row's stack as one LoRA of rank S*R (the A matrices one under another, the weighted B
side by side); ``Plan.keep`` follows the decoding loop when rows leave the batch. ``ArrowSpec``
is Arrow's per-token routing (top-k of |x . v|, softmax at a temperature).

Left out: the pools themselves and the forward hooks (``bank.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from week06_lora import NO_ADAPTER

if TYPE_CHECKING:
    from week10_hydra.bank import AdapterBank

Stack = list[tuple[str, float]]


# ---------------------------------------------------------------- plans


def as_stack(spec) -> Stack:
    """One row's adapters as ``[(name, weight), ...]`` from None, a name, a list or a dict."""
    if spec is None or spec == NO_ADAPTER:
        return []
    if isinstance(spec, str):
        return [(spec, 1.0)]
    if isinstance(spec, Mapping):
        spec = list(spec.items())
    if isinstance(spec, (list, tuple)):
        out = []
        for item in spec:
            if isinstance(item, str):
                out.append((item, 1.0))
            elif (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                  and isinstance(item[1], (int, float)) and not isinstance(item[1], bool)):
                out.append((item[0], float(item[1])))
            else:
                raise ValueError(f"a stack entry is a name or a (name, weight) pair, got {item!r}")
        return out
    raise ValueError(f"a row's adapter is None, a name, a list of names / (name, weight) pairs "
                     f"or a {{name: weight}} dict; got {spec!r:.80}")


@dataclass
class ArrowSpec:
    """Per-token routing over ``names`` (PEFT's ``ArrowConfig``: top_k, router_temperature)."""

    names: tuple[str, ...]
    top_k: int = 3
    temperature: float = 1.0

    def __post_init__(self):
        self.names = tuple(self.names)
        if len(self.names) == 0:
            raise ValueError("Arrow needs at least one adapter to route between")
        if not 0 < self.top_k <= len(self.names):
            raise ValueError(f"Arrow top_k must be in 1..{len(self.names)} (the number of "
                             f"adapters), got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"Arrow temperature must be > 0, got {self.temperature}")

    def coefficients(self, tok: torch.Tensor, protos: torch.Tensor) -> torch.Tensor:
        """(t, E) routing weights of tokens (t, in) over prototypes (E, in): |x . v_e|, top-k,
        softmax at ``temperature`` (zero outside the top-k)."""
        sim = (tok @ protos.T).abs()  # (t, E)
        top, idx = sim.topk(self.top_k, dim=1)
        score = torch.full_like(sim, float("-inf")).scatter(1, idx, top)
        return F.softmax(score / self.temperature, dim=1)  # (t, E)


class Plan:
    """What each row of a batch uses; built by ``AdapterBank.plan``."""

    def __init__(self, bank: AdapterBank, slots: torch.Tensor, weights: torch.Tensor,
                 arrow_rows: torch.Tensor, arrow: ArrowSpec | None):
        self.bank = bank
        self.slots, self.weights = slots, weights  # (B, S) long, (B, S) float
        self.arrow_rows, self.arrow = arrow_rows, arrow  # (B,) bool
        self._gathered: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._flags()

    def _flags(self) -> None:
        """Python bools the hook reads on every forward (no tensor sync per layer)."""
        slots, weights = self.slots, self.weights
        self.stacked = bool((slots != 0).any())
        self.has_arrow = self.arrow is not None and bool(self.arrow_rows.any())
        # every padded entry is slot 0 (zeros), so only real entries' weights matter
        self.unit_weights = bool(((weights == 1) | (slots == 0)).all())
        # every row the same stack (one adapter for the whole batch): a plain matmul, no gather
        self.uniform = bool((slots == slots[:1]).all() and (weights == weights[:1]).all())

    @property
    def batch_size(self) -> int:
        return self.slots.size(0)

    def keep(self, idx: torch.Tensor) -> None:
        """Keep only rows ``idx`` (positions in the current batch), as the cache does."""
        idx = idx.to(self.slots.device)
        was_uniform = self.uniform
        self.slots, self.weights = self.slots[idx], self.weights[idx]
        self.arrow_rows = self.arrow_rows[idx]
        self._flags()
        if self.bank._plan is self:  # in use: the hooks come off when no row adapts
            self.bank._sync()
        if not was_uniform:  # a uniform plan's matrices are shared by every row: nothing to keep
            self._gathered = {k: (a[idx], b[idx]) for k, (a, b) in self._gathered.items()}
        self.uniform = was_uniform and self.uniform  # the cached matrices' form decides

    def extend(self, other: Plan) -> None:
        """Append ``other``'s rows after these (rows joining a running batch, as the cache
        joins theirs): the stacks are padded to the longer one (slot 0, weight 0), the
        gathered matrices are gathered again at the next forward."""
        if other.bank is not self.bank:
            raise ValueError("extend joins plans of the same bank")
        if other.arrow is not None and self.arrow is not None and other.arrow is not self.arrow:
            raise ValueError("the joining rows route with another ArrowSpec than this batch")
        S = max(self.slots.size(1), other.slots.size(1))

        def pad(t: torch.Tensor) -> torch.Tensor:  # (B, s) -> (B, S)
            return F.pad(t, (0, S - t.size(1)))

        self.slots = torch.cat([pad(self.slots), pad(other.slots.to(self.slots.device))])
        self.weights = torch.cat([pad(self.weights), pad(other.weights.to(self.weights.device))])
        self.arrow_rows = torch.cat([self.arrow_rows, other.arrow_rows.to(self.arrow_rows.device)])
        self.arrow = self.arrow if self.arrow is not None else other.arrow
        self._gathered = {}
        self._flags()
        if self.bank._plan is self:  # in use: the bank's hooks go on if rows now adapt
            self.bank._sync()

    def gathered(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """This batch's A (B, S*R, in) and weighted B^T (B, S*R, out) in ``layer``, gathered
        once; for a uniform plan the one stack's A (S*R, in) and B^T (S*R, out), shared by every
        row (B^T row-major, so the second matmul reads it without a copy)."""
        if layer not in self._gathered:
            slots, weights = (self.slots[:1], self.weights[:1]) if self.uniform else \
                (self.slots, self.weights)
            a, b = gather_adapters(self.bank.A[layer], self.bank.B[layer], slots,
                                   None if self.unit_weights else weights)
            self._gathered[layer] = (a[0], b[0]) if self.uniform else (a, b)
        return self._gathered[layer]


def gather_adapters(A_pool: torch.Tensor, B_pool: torch.Tensor, slots: torch.Tensor,
                    weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's stack as one LoRA: A (B, S*R, in) and weighted B^T (B, S*R, out).

    ``A_pool`` (N, R, in) and ``B_pool`` (N, out, R) hold every loaded adapter (slot 0 all
    zeros); ``slots`` (B, S) names row b's j-th adapter and ``weights`` (B, S) its weight
    (None: all 1). Row b's update is then (x @ A[b]^T) @ B^T[b] = sum_j w_bj B_j A_j x.
    """
    Bsz = slots.size(0)
    a = A_pool[slots].reshape(Bsz, -1, A_pool.size(-1))  # (B, S, R, in) -> (B, S*R, in)
    b = B_pool[slots]  # (B, S, out, R)
    if weights is not None:
        b = b * weights[:, :, None, None].to(B_pool.dtype)
    return a, b.transpose(2, 3).reshape(Bsz, -1, B_pool.size(1))  # (B, S*R, out)
