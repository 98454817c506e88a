"""``KVCache``: the keys and values of every layer for the tokens seen so far.

It speaks ``shared.Cache``, the one cache protocol of the project: a model's
``new_cache(batch_size, max_len, pad=None)`` returns one, every attention layer
calls ``update(layer, k, v)`` during a forward pass, the model calls
``advance(n)`` after it, and week01's decoding loop drops finished rows with
``keep(rows)``. Rows may be left-padded (``pad``): padding keys are never read
and each row counts its positions from its first real token. ``join(other)``
appends the rows of another cache (new prompts, prefilled on their own) to a
running one: the cache whose clock is behind is shifted right in time and its
padding raised by as much, so both clocks agree, then the rows are concatenated
(what continuous batching needs; week01's ``Decoding.add``). ``trim()`` undoes
what no row needs any more: the leading positions every row pads move out.

Storage is preallocated, (n_layer, B, n_kv_head, max_len, head_dim) for ``k``
and for ``v``, so a decode step writes in place and reads views.

The clock, the padding and the positions live in ``CacheClock``, which week08's
latent cache for MLA shares.

Left out: paged, quantised and sliding-window-evicting caches.
"""

from __future__ import annotations

import torch


def check_sizes(owner: str, **sizes) -> None:
    """Every size a positive int, or a ValueError naming the first that is not."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{owner} {name} must be a positive int, got {value!r}")


class CacheClock:
    """What every cache of the project shares (``shared.Cache`` minus the storage): one clock
    ``pos`` for all rows, ``max_len``, the rows' left padding ``pad`` and their positions.

    A cache class stores its tensors, then calls ``_start(batch_size, max_len, pad, device)``;
    it implements ``batch_size``, ``update``, ``nbytes`` and ``keep`` (which calls
    ``_set_pad`` with the kept rows' padding). ``KVCache`` below and week08's ``LatentCache``
    are the two. A cache that can take rows from another implements ``join`` with
    ``_join_clock``, ``_aligned`` and ``_joined_pad`` (both caches do); one that names its
    tensors' time dimension (``_time_buffers``) gets ``trim``, the shared padding dropped.
    """

    def _start(self, batch_size: int, max_len: int, pad: torch.Tensor | None, device) -> None:
        self.max_len = max_len
        self.pos = 0
        if pad is None:
            pad = torch.zeros(batch_size, dtype=torch.long, device=device)
        if not isinstance(pad, torch.Tensor) or pad.shape != (batch_size,):
            got = tuple(pad.shape) if isinstance(pad, torch.Tensor) else type(pad).__name__
            raise ValueError(f"pad must be a tensor of shape ({batch_size},), got {got}")
        self._set_pad(pad.to(device=device, dtype=torch.long))

    @staticmethod
    def checked_max_len(model, max_len: int | None) -> int:
        """``max_len`` for a cache of ``model`` (default: its block size), checked."""
        block = model.config.block_size
        if max_len is not None and not 0 < max_len <= block:
            raise ValueError(f"max_len must be in 1..{block} (block_size), got {max_len}")
        return max_len or block

    def _set_pad(self, pad: torch.Tensor) -> None:
        if bool((pad < 0).any()) or bool((pad >= self.max_len).any()):
            raise ValueError(f"pad values must be in 0..{self.max_len - 1}, got {pad.tolist()}")
        self.pad = pad
        self.padded = bool(pad.any())  # read once: no host sync per decode step

    def advance(self, n: int) -> None:
        self.pos += n

    def _time_buffers(self) -> list[tuple[torch.Tensor, int]]:
        """Every stored tensor with its time dimension (what ``trim`` moves)."""
        raise NotImplementedError(f"{type(self).__name__} does not say which tensors hold time")

    def trim(self, min_shift: int = 1) -> int:
        """Drop the leading positions that every row pads (after the oldest rows left a
        continuous batch, the rows that joined later pad them all): the stored tensors
        (``_time_buffers``), the clock and every row's padding move left by that many, so
        each row keeps its positions (RoPE was applied at write time, the mask reads the
        padding), attention reads fewer keys and the cache has that much more room. The
        shift, 0 when below ``min_shift``."""
        shift = int(self.pad.min()) if self.batch_size else 0
        if shift < min_shift or shift >= self.pos:
            return 0
        n = self.pos - shift
        for t, dim in self._time_buffers():
            t.narrow(dim, 0, n).copy_(t.narrow(dim, shift, n).clone())
        self.pos = n
        self._set_pad(self.pad - shift)
        return shift

    def _join_clock(self, other: CacheClock) -> tuple[int, int, int]:
        """Check that ``other``'s rows can join; ``(pos, shift of self, shift of other)``:
        the joined clock and how far each cache's keys move right in time."""
        if type(other) is not type(self):
            raise ValueError(f"a {type(self).__name__} can only join rows of another "
                             f"{type(self).__name__}, got {type(other).__name__}")
        pos = max(self.pos, other.pos)
        if pos >= self.max_len:
            raise ValueError(f"joining needs {pos + 1} of the cache's {self.max_len} positions "
                             "(a new row's prompt and one token): the batch must drain first "
                             "(start a new cache)")
        return pos, pos - self.pos, pos - other.pos

    def _aligned(self, mine: torch.Tensor, theirs: torch.Tensor, time_dim: int,
                 shifts: tuple[int, int, int]) -> torch.Tensor:
        """One storage tensor of the joined cache: ``mine`` then ``theirs`` along dim 1 (the
        batch), each one's first ``pos`` positions moved right by its shift, ``max_len``
        long in ``time_dim``."""
        pos, mine_shift, their_shift = shifts
        shape = list(mine.shape)
        shape[1] = mine.size(1) + theirs.size(1)
        out = mine.new_zeros(shape)
        B = mine.size(1)
        out.narrow(1, 0, B).narrow(time_dim, mine_shift, pos - mine_shift).copy_(
            mine.narrow(time_dim, 0, pos - mine_shift))
        out.narrow(1, B, theirs.size(1)).narrow(time_dim, their_shift, pos - their_shift).copy_(
            theirs.narrow(time_dim, 0, pos - their_shift))
        return out

    def _joined_pad(self, other: CacheClock, shifts: tuple[int, int, int]) -> None:
        pos, mine_shift, their_shift = shifts
        self.pos = pos
        self._set_pad(torch.cat([self.pad + mine_shift, other.pad.to(self.pad.device)
                                 + their_shift]))

    def positions(self, T: int) -> torch.Tensor:
        """(B, T): each row's position of its next ``T`` tokens, from its first real token."""
        absolute = torch.arange(self.pos, self.pos + T, device=self.pad.device)  # (T,)
        return (absolute[None, :] - self.pad[:, None]).clamp(min=0)


class KVCache(CacheClock):
    """Per-layer keys and values; see the module docstring. ``pos`` is shared by every row."""

    def __init__(self, n_layer: int, batch_size: int, n_kv_head: int, head_dim: int, max_len: int,
                 device=None, dtype=torch.float32, pad: torch.Tensor | None = None):
        check_sizes("KVCache", n_layer=n_layer, batch_size=batch_size, n_kv_head=n_kv_head,
                    head_dim=head_dim, max_len=max_len)
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self._start(batch_size, max_len, pad, device)
        self._views()

    @classmethod
    def for_model(cls, model, batch_size: int, max_len: int | None = None,
                  pad: torch.Tensor | None = None) -> KVCache:
        """A cache shaped for ``model`` (its config's layers, kv heads and head size)."""
        c = model.config
        p = model.tok_emb.weight
        n_kv = getattr(c, "n_kv_head", None) or c.n_head
        return cls(c.n_layer, batch_size, n_kv, c.head_dim, cls.checked_max_len(model, max_len),
                   p.device, p.dtype, pad)

    def _views(self) -> None:
        self.layers = list(zip(self.k.unbind(0), self.v.unbind(0)))  # per-layer views, made once

    # -- the protocol
    @property
    def batch_size(self) -> int:
        return self.k.size(1)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store the new (B, Hkv, T, hd) keys/values at ``pos`` (one token may come as
        (B, Hkv, hd)); return all of them so far, (B, Hkv, pos + T, hd) views."""
        if k.dim() == 3:  # one token per row, as a decode step makes it
            if torch.is_grad_enabled():
                k, v = k[:, :, None], v[:, :, None]
            elif self.pos < self.max_len:
                k_all, v_all = self.layers[layer]
                k_all.select(2, self.pos).copy_(k)
                v_all.select(2, self.pos).copy_(v)
                return k_all.narrow(2, 0, self.pos + 1), v_all.narrow(2, 0, self.pos + 1)
        T = k.size(2)
        if self.pos + T > self.max_len:
            raise ValueError(f"the cache holds {self.max_len} positions: {self.pos} are used and "
                             f"{T} more do not fit; start a new cache")
        end = self.pos + T
        if torch.is_grad_enabled():  # through the base: autograd forbids writes into unbind views
            self.k[layer, :, :, self.pos:end] = k
            self.v[layer, :, :, self.pos:end] = v
            return self.k[layer, :, :, :end], self.v[layer, :, :, :end]
        k_all, v_all = self.layers[layer]  # inference: views made once, few kernels per step
        if T == 1:
            k_all.select(2, self.pos).copy_(k[:, :, 0])
            v_all.select(2, self.pos).copy_(v[:, :, 0])
        else:
            k_all.narrow(2, self.pos, T).copy_(k)
            v_all.narrow(2, self.pos, T).copy_(v)
        return k_all.narrow(2, 0, end), v_all.narrow(2, 0, end)

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def keep(self, rows: torch.Tensor) -> None:
        """Keep only batch rows ``rows`` (a 1-D index tensor), in that order."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.k.device)
        self.k = self.k.index_select(1, rows)
        self.v = self.v.index_select(1, rows)
        self._set_pad(self.pad.index_select(0, rows))
        self._views()

    def _time_buffers(self) -> list[tuple[torch.Tensor, int]]:
        return [(self.k, 3), (self.v, 3)]  # (n_layer, B, Hkv, max_len, hd): time is dim 3

    def join(self, other: KVCache) -> None:
        """Append ``other``'s rows (a cache of the same model, e.g. new prompts just
        prefilled) after this cache's rows, aligning the two clocks (see the module
        docstring). Every row keeps its keys, values and positions; a ValueError if the
        joined clock leaves no room (the batch must drain first) or the shapes differ."""
        if isinstance(other, KVCache) and other.k.shape[0::2] != self.k.shape[0::2]:
            raise ValueError(f"cannot join caches of different models: k {tuple(self.k.shape)} "
                             f"vs {tuple(other.k.shape)} (n_layer, B, n_kv_head, max_len, hd)")
        shifts = self._join_clock(other)
        self.k = self._aligned(self.k, other.k.to(self.k), 3, shifts)
        self.v = self._aligned(self.v, other.v.to(self.v), 3, shifts)
        self._joined_pad(other, shifts)
        self._views()


# ---------------------------------------------------------------- the mask of one forward pass


def segment_positions(segments: torch.Tensor) -> torch.Tensor:
    """(B, T) int64: each token's position inside its segment (0 at a segment's first token).

    ``segments`` (B, T) labels the documents packed into each row, each one a contiguous
    run of equal values: ``[[0, 0, 0, 1, 1, -1]]`` -> ``[[0, 1, 2, 0, 1, 0]]``.
    """
    B, T = segments.shape
    t = torch.arange(T, device=segments.device).expand(B, T)  # (B, T)
    first = torch.ones_like(segments, dtype=torch.bool)
    first[:, 1:] = segments[:, 1:] != segments[:, :-1]  # (B, T): a segment starts here
    start = torch.where(first, t, torch.zeros_like(t)).cummax(dim=1).values  # (B, T)
    return t - start


def attention_mask(start: int, T: int, pad: torch.Tensor | None = None,
                   padded: bool | None = None, window: int | None = None, device=None,
                   causal: bool = True, segments: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor | None, bool]:
    """``(mask, causal)`` for ``T`` new queries at positions ``start..start+T-1``, shared by
    every layer of one forward pass (the attention kernels' contract):

    - ``(None, True)``: plain causal attention over the new tokens alone (``start == 0``);
    - ``(None, False)``: one new token per row that may read every key (a decode step);
    - ``(mask, False)``: a boolean (B or 1, 1, T, start + T) mask, True where a query may
      read a key (left padding, several new tokens after a filled cache, or a window).

    ``pad`` (B,) counts each row's left-padding positions: they are never read, and a
    padding query reads only itself (its output is never used; this keeps softmax finite).
    ``window``: a query reads only the ``window`` most recent positions, itself included
    (``query - key < window``, Mistral's and Hugging Face's sliding window).

    ``causal=False`` (a model built with ``GPTConfig(causal=False)``): a query also reads
    the keys after it, so only padding (and a window, then ``|query - key| < window``) is
    masked: ``(None, False)`` when nothing is. With a cache, the keys after a query are
    only those of the same pass (earlier ones were computed before later tokens existed).

    ``segments`` (B, T): several documents packed into each row (no cache, no left
    padding); a query reads only keys of its own segment, so the mask is block-diagonal,
    (B, 1, T, T). Right padding is a segment of its own.
    """
    if segments is not None:
        if start != 0 or (pad is not None and bool(pad.any())):
            raise ValueError("segments= (packed documents) works on a whole row without a "
                             "cache or left padding")
        allowed, _ = attention_mask(0, T, None, False, window, segments.device, causal)
        same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
        if allowed is None:  # plain causal (or nothing masked)
            allowed = torch.ones(1, 1, T, T, dtype=torch.bool, device=segments.device)
            if causal:
                allowed = allowed.tril()
        return allowed & same[:, None], False  # (B, 1, T, T)
    if padded is None:
        padded = pad is not None and bool(pad.any())
    if window is not None and start + T <= window:
        window = None  # every key is inside the window
    if not padded and window is None:
        if not causal:
            return None, False  # every query reads every key
        if start == 0:
            return None, True
        if T == 1:
            return None, False
    dev = pad.device if pad is not None else device
    absolute = torch.arange(start, start + T, device=dev)  # (T,)
    keys = torch.arange(start + T, device=dev)  # (Tk,)
    distance = absolute[None, :, None] - keys[None, None, :]  # (1, T, Tk): query - key
    if causal:
        allowed = distance >= 0  # (1, T, Tk)
        if window is not None:
            allowed = allowed & (distance < window)
    else:
        allowed = torch.ones_like(distance, dtype=torch.bool)
        if window is not None:
            allowed = distance.abs() < window
    if not padded:
        return allowed[:, None], False  # (1, 1, T, Tk)
    real = keys[None, None, :] >= pad[:, None, None]  # (B, 1, Tk): not a padding key
    self_key = distance == 0  # padding queries read themselves
    return (allowed & (real | self_key))[:, None], False  # (B, 1, T, Tk)
