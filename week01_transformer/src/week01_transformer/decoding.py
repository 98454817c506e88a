"""The one decoding loop: every way the project generates text runs through it.

``Decoding(model, prompts, cfg)`` prefills the (left-padded) prompts once,
then feeds one token per row per step through the model's fast
``step(token, cache)``, drawing each token with ``sample_next`` (greedy at
temperature 0, else top-k / top-p sampling from a seeded generator). Iterating
it yields, per step, one ``TokenEvent`` per live row (a server streams
these); when it ends, ``rows`` holds each prompt's ``Row``. On the way:

- stop rules: a sampled token in ``cfg.stop_tokens`` or a text in
  ``cfg.stop_strings`` (needs a ``tokenizer``) finishes its row; the stop
  token stays in the row's ids and ``Row.stop`` says what stopped it;
- forced tokens: ``on_token(row, token, forced)`` may return a list of ids
  that the row takes on its next steps instead of sampling (a tool's output),
  or ``True`` to finish the row; forced tokens never trigger stop rules;
- rows that finish early leave the batch (``cache.keep``), so the others
  decode at the speed of a smaller batch; ``on_keep(idx)`` hears of it too
  (per-row state outside the cache, such as week10's per-row adapters,
  follows the same rows).

A model needs ``new_cache``, ``run`` and ``step`` (week01's ``GPT`` and every
subclass have them) for the cached path. Without a cache (``use_cache=False``,
or prompt + new tokens longer than ``block_size``) every step recomputes the
context, sliding a window of the last ``block_size`` tokens.
``generate_ids`` is the tensor-in, tensor-out form behind ``model.generate``:
the same loop without per-row bookkeeping.

Continuous batching: a ``Decoding(..., continuous=True)`` allocates its cache
at ``block_size`` and takes new rows between any two steps with
``add(prompts, max_new_tokens=...)`` (from the consumer while iterating, or
from ``on_token``). At the top of the next step the new prompts are prefilled
on their own (``model.run(..., last_only=True)``), their cache is joined to
the running one (``KVCache.join``: the clocks are aligned by extra left
padding) and their first logits are appended (when rows leave, the leading positions every
row left pads are trimmed off: ``KVCache.trim``); from then on they decode like
every other row, each up to its own ``max_new_tokens``. ``on_join(rows)``, when
given, is a context manager around that prefill (``rows``: the joining rows'
indices): per-row state outside the cache switches to the new rows alone for
it and grows by them after (week10's adapter plan). A row added while the
batch is greedy makes exactly the tokens it makes alone. When the cache has no
room for the new rows ``add`` raises ``CannotAdd`` (the caller starts a new
batch once this one drains), as it does without a cache (``use_cache=False``)
or for a cache that cannot ``join`` (week01's ``KVCache`` and week08's
``LatentCache`` can).

Sampling draws from one generator for the batch (``generator``, or one seeded
with ``cfg.seed``), so a sampled row's tokens depend on the rows beside it;
``seeds=[...]`` (one per prompt, and ``add(..., seeds=...)``) gives every row a
generator of its own instead: a row makes the same tokens alone or in any batch,
joined late or not (what an API's per-request ``seed`` promises).

Left out: speculative decoding, beam search and paged caches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

TRIM_AT_LEAST = 8  # a continuous batch drops the padding its rows share when it is this long

# ---------------------------------------------------------------- sampling


def sampling_generator(idx: torch.Tensor, max_new_tokens: int, temperature: float,
                       seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    """Check ``generate``'s arguments; the generator to draw from (a fresh one seeded with
    ``seed``, 0 by default, unless one is given)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if generator is None:
        generator = torch.Generator(device=idx.device)
        generator.manual_seed(0 if seed is None else seed)
    return generator


def sample_next(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
                generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """One token per row from logits (B, V): argmax at temperature 0, else a draw from the
    top-k / top-p filtered softmax of ``logits / temperature``; (B, 1). ``generator`` is one
    for the batch, or a list of B (row i draws from the i-th alone, so its tokens do not
    depend on the rows beside it)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    probs = F.softmax(filter_logits(logits / temperature, top_k=top_k, top_p=top_p), dim=-1)
    if isinstance(generator, (list, tuple)):
        if len(generator) != probs.size(0):
            raise ValueError(f"{len(generator)} generators for {probs.size(0)} rows")
        return torch.stack([torch.multinomial(probs[i], 1, generator=g)  # (1,) each
                            for i, g in enumerate(generator)])  # (B, 1)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)



def filter_logits(logits: torch.Tensor, top_k: int | None = None,
                  top_p: float | None = None) -> torch.Tensor:
    """Set to ``-inf`` every logit outside the top-k and outside the top-p nucleus.

    ``top_k`` keeps the k largest logits of each row (ties with the k-th are
    kept too). ``top_p`` keeps the smallest set of most likely tokens whose
    probabilities add up to at least ``top_p`` (always at least one token).
    Both may be given; top-k is applied first, as Hugging Face does.
    """
    if top_k is not None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = F.softmax(sorted_logits, dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the tokens ranked above
        drop_sorted = mass_before >= top_p  # the nucleus already holds top_p without this token
        drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


# ---------------------------------------------------------------- the loop


@dataclass
class DecodeConfig:
    """How to decode: length, sampling, stop rules, cache."""

    max_new_tokens: int = 64  # every appended token counts, forced ones too
    temperature: float = 1.0  # 0 = greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None  # the generator's seed (0 when None) unless one is passed
    stop_tokens: Sequence[int] = ()
    stop_strings: Sequence[str] = ()
    use_cache: bool = True

    def __post_init__(self):
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) \
                or self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {self.max_new_tokens!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        filter_logits(torch.zeros(1, 1), self.top_k, self.top_p)  # their own clear errors
        self.stop_tokens = tuple(int(t) for t in self.stop_tokens)
        self.stop_strings = tuple(self.stop_strings)
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ValueError(f"stop_strings must be non-empty strings, got {self.stop_strings!r}")


@dataclass
class Row:
    """One prompt's result: its new ids (sampled and forced) and why it ended."""

    prompt: list[int]
    ids: list[int] = field(default_factory=list)
    forced: list[bool] = field(default_factory=list)  # True where the id was forced
    finished: bool = False  # a stop rule or the hook ended it (else: out of tokens)
    stop: int | str | None = None  # the stop token, the stop string, or "hook"


@dataclass
class TokenEvent:
    row: int
    token: int
    forced: bool
    done: bool  # this token finished its row


OnToken = Callable[[int, int, bool], "list[int] | bool | None"]


class CannotAdd(ValueError):
    """Rows that cannot join this running batch; the message says why (start a new batch)."""


def _prompt_lists(prompts) -> list[list[int]]:
    if isinstance(prompts, torch.Tensor):
        if prompts.dim() != 2 or prompts.size(1) == 0:
            raise ValueError(f"prompts must be a (B, T) tensor with T >= 1, got shape "
                             f"{tuple(prompts.shape)}")
        return prompts.tolist()
    if isinstance(prompts, (list, tuple)) and prompts and all(isinstance(t, int) for t in prompts):
        return [list(prompts)]
    if not isinstance(prompts, (list, tuple)) or not prompts or not all(
            isinstance(p, (list, tuple)) and p and all(isinstance(t, int) for t in p)
            for p in prompts):
        raise ValueError("prompts must be a (B, T) tensor, a list of token ids, or a list of "
                         f"non-empty lists of token ids; got {prompts!r:.80}")
    return [list(p) for p in prompts]


class Decoding:
    """One batched decode; iterate for per-step events, then read ``rows``."""

    def __init__(self, model, prompts, cfg: DecodeConfig | None = None, *, tokenizer=None,
                 on_token: OnToken | None = None, generator: torch.Generator | None = None,
                 on_keep: Callable[[torch.Tensor], None] | None = None,
                 continuous: bool = False,
                 on_join: Callable[[list[int]], AbstractContextManager] | None = None,
                 seeds: Sequence[int | None] | None = None):
        self.model, self.cfg = model, cfg or DecodeConfig()
        self.on_keep, self.continuous, self.on_join = on_keep, continuous, on_join
        if self.cfg.stop_strings and tokenizer is None:
            raise ValueError("stop_strings need a tokenizer to read the text")
        self.tokenizer, self.on_token = tokenizer, on_token
        self.device = next(model.parameters()).device
        self.block = getattr(model, "block_size", None) or model.config.block_size
        self.rows: list[Row] = []
        self.limits: list[int] = []  # each row's max_new_tokens
        self.pending: list[int] = []  # rows added while decoding, joining at the next step
        self._state = "new"  # "new" | "running" | "ended"
        self._batch(_prompt_lists(prompts), self.cfg.max_new_tokens)
        self.generators: list[torch.Generator] | None = None  # per row, when ``seeds`` is given
        if seeds is not None:
            if generator is not None:
                raise ValueError("give seeds (a generator per row) or generator (one for the "
                                 "batch), not both")
            self.generators = self._row_generators(seeds, len(self.rows))
        elif generator is None:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(0 if self.cfg.seed is None else self.cfg.seed)
        self.generator = generator
        self.cache = None

    def _batch(self, prompts: list[list[int]], limit: int) -> None:
        """Rows for ``prompts`` in the first batch (before decoding starts)."""
        self.rows += [Row(p) for p in prompts]
        self.limits += [limit] * len(prompts)
        prompts = [r.prompt for r in self.rows]
        L = max(len(p) for p in prompts)
        self.cached = (self.cfg.use_cache and hasattr(self.model, "new_cache")
                       and L + max(self.limits) <= self.block)
        if not hasattr(self.model, "run") and len({len(p) for p in prompts}) > 1:
            raise ValueError(f"{type(self.model).__name__} has no run(idx, pad=...): give "
                             "prompts of one length")
        self.pad, self.padded, self.seq = self._left_padded(prompts)
        self.active = list(range(len(prompts)))  # original index of each live batch row

    def _left_padded(self, prompts: list[list[int]]):
        """``(pad (B,), padded, seq (B, L))`` of left-padded ``prompts``."""
        L = max(len(p) for p in prompts)
        filler = prompts[0][0]  # any valid id: padding keys are never read
        pad = torch.tensor([L - len(p) for p in prompts], device=self.device)
        seq = torch.tensor([[filler] * (L - len(p)) + p for p in prompts],
                           device=self.device)  # (B, L)
        return pad, L > min(len(p) for p in prompts), seq

    def _row_generators(self, seeds, n: int) -> list[torch.Generator]:
        """One generator per row, seeded with its seed (``cfg.seed``, else 0, for None)."""
        seeds = list(seeds)
        if len(seeds) != n or any(s is not None and (isinstance(s, bool) or not isinstance(
                s, int)) for s in seeds):
            raise ValueError(f"seeds must be one int (or None) per prompt: {n} prompt(s), got "
                             f"{seeds!r:.80}")
        default = 0 if self.cfg.seed is None else self.cfg.seed
        return [torch.Generator(device=self.device).manual_seed(default if s is None else s)
                for s in seeds]

    # -- growing the batch
    def add(self, prompts, max_new_tokens: int | None = None,
            seeds: Sequence[int | None] | None = None) -> list[int]:
        """Add rows for ``prompts`` (see the module docstring); their indices in ``rows``.
        ``max_new_tokens`` (default ``cfg.max_new_tokens``) is the new rows' own limit;
        ``seeds`` their generators' seeds, for a decoding that draws per row (built with
        ``seeds``; None: ``cfg.seed``). ``CannotAdd`` if the rows cannot join (no room, no
        cache, ended)."""
        limit = self.cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1, got {limit!r}")
        prompts = _prompt_lists(prompts)
        if seeds is not None and self.generators is None:
            raise ValueError("this Decoding draws from one generator for the batch: build it "
                             "with seeds=[...] to seed rows one by one")
        gens = None if self.generators is None else self._row_generators(
            [None] * len(prompts) if seeds is None else seeds, len(prompts))
        if not self.continuous:
            raise CannotAdd("this Decoding takes no new rows: build it with continuous=True")
        if self._state == "ended":
            raise CannotAdd("this decoding has ended: start a new one")
        if not self.fits([len(p) for p in prompts], limit):
            raise CannotAdd(f"no room for {len(prompts)} row(s) of up to {limit} new tokens "
                            f"after prompts of up to {max(len(p) for p in prompts)} tokens: "
                            "the batch must drain first (start a new one)")
        first = len(self.rows)
        if gens is not None:
            self.generators += gens
        if self._state == "new":
            self._batch(prompts, limit)
        else:
            self.rows += [Row(p) for p in prompts]
            self.limits += [limit] * len(prompts)
            self.pending += range(first, len(self.rows))
        return list(range(first, len(self.rows)))

    def fits(self, lengths: list[int], max_new_tokens: int) -> bool:
        """Whether rows with prompts of ``lengths`` tokens and ``max_new_tokens`` each can join
        now: a cache that can ``join``, and room in it for every row to its own limit."""
        if not (self.continuous and self.cfg.use_cache and hasattr(self.model, "new_cache")):
            return False
        if self._state == "new":
            return max(max(lengths), *(len(r.prompt) for r in self.rows)) + max(
                max_new_tokens, *self.limits) <= self.block
        if self.cache is not None and not hasattr(self.cache, "join"):
            return False
        live = [b for b in (*self.active, *self.pending) if not self.rows[b].finished]
        clock = max([self.cache.pos + 1 if self.active else 0, *lengths,
                     *(len(self.rows[b].prompt) for b in self.pending)])
        # after the join at ``clock``, a row needs one position per token but its last
        need = max([max_new_tokens - 1, *(self.limits[b] - len(self.rows[b].ids) - 1
                                          for b in live)])
        return clock + need <= self.block and self.cached

    # -- the model side
    def _prefill(self) -> torch.Tensor:
        """The first logits (B, V); builds the cache."""
        m = self.model
        if hasattr(m, "check_input"):
            m.check_input(self.seq[:, -self.block:])
        if self.cached:
            room = self.block if self.continuous else self.seq.size(1) + max(self.limits)
            self.cache = m.new_cache(self.seq.size(0), room,
                                     pad=self.pad if self.padded else None)
            return m.run(self.seq, self.cache, last_only=True)[:, -1, :]
        return self._recompute()

    def _recompute(self) -> torch.Tensor:
        """Next-token logits (B, V) from the last ``block_size`` tokens, no cache."""
        ctx = self.seq[:, -self.block:]  # (B, <= block)
        if not hasattr(self.model, "run"):
            return self.model(ctx)[:, -1, :]
        pad = (self.pad - (self.seq.size(1) - ctx.size(1))).clamp(min=0) if self.padded else None
        return self.model.run(ctx, pad=pad, last_only=True)[:, -1, :]

    def _feed(self, column: torch.Tensor) -> torch.Tensor:
        """Logits (B, V) after appending ``column`` (B, 1)."""
        if self.cached:
            return self.model.step(column, self.cache)
        self.seq = torch.cat([self.seq, column], dim=1)
        return self._recompute()

    def _drop(self, keep: list[int]) -> None:
        """Keep only batch rows ``keep`` (positions in the current batch)."""
        idx = torch.tensor(keep, device=self.device, dtype=torch.long)
        self.active = [self.active[j] for j in keep]
        if not self.cached:  # the cached path reads its padding from the cache
            self.pad = self.pad.index_select(0, idx)
            self.seq = self.seq.index_select(0, idx)
        if self.cache is not None:
            self.cache.keep(idx)
            if self.continuous and hasattr(self.cache, "trim"):  # the padding all rows share
                self.cache.trim(min_shift=TRIM_AT_LEAST)
        if self.on_keep is not None:
            self.on_keep(idx)

    def _join(self, logits: torch.Tensor) -> torch.Tensor:
        """Prefill the pending rows on their own, join their cache to the running one (or
        start it again when the batch is empty); the logits (B + new, V)."""
        m, rows = self.model, self.pending
        self.pending = []
        pad, padded, seq = self._left_padded([self.rows[b].prompt for b in rows])
        if hasattr(m, "check_input"):
            m.check_input(seq)
        empty = not self.active
        cache = m.new_cache(len(rows), self.block if empty else seq.size(1),
                            pad=pad if padded else None)
        with self.on_join(rows) if self.on_join is not None else nullcontext():
            first = m.run(seq, cache, last_only=True)[:, -1, :]  # (new, V)
        if empty:
            self.cache = cache
        else:
            self.cache.join(cache)
            first = torch.cat([logits, first])
        self.active += rows
        return first

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        gen = self.generator if self.generators is None else [self.generators[b]
                                                              for b in self.active]
        return sample_next(logits, c.temperature, c.top_k, c.top_p, gen)  # (B, 1)

    # -- the loop
    def _stops(self, row: Row, tok: int) -> int | str | None:
        if tok in self.cfg.stop_tokens:
            return tok
        if self.cfg.stop_strings:
            longest = max(len(s) for s in self.cfg.stop_strings)
            tail = self.tokenizer.decode(row.ids[-(4 * longest + 4):])  # a char is <= 4 bytes
            for s in self.cfg.stop_strings:
                if s in tail:
                    return s
        return None

    @torch.no_grad()
    def __iter__(self) -> Iterator[list[TokenEvent]]:
        if self.cfg.max_new_tokens == 0:
            self._state = "ended"
            return
        was_training = self.model.training
        self.model.eval()
        queues: dict[int, list[int]] = {}
        self._state = "running"
        try:
            logits = self._prefill()
            while True:
                if self.pending:
                    logits = self._join(logits)
                sampled = self._sample(logits)[:, 0].tolist()
                column, events, keep = [], [], []
                for j, b in enumerate(self.active):
                    row, queue = self.rows[b], queues.get(b)
                    forced = bool(queue)
                    tok = queue.pop(0) if forced else sampled[j]
                    row.ids.append(tok)
                    row.forced.append(forced)
                    column.append(tok)
                    stop = None if forced else self._stops(row, tok)
                    if self.on_token is not None:
                        said = self.on_token(b, tok, forced)
                        if said is True:
                            stop = "hook" if stop is None else stop
                        elif said:
                            queues.setdefault(b, []).extend(int(t) for t in said)
                    if stop is not None:
                        row.finished, row.stop = True, stop
                    elif len(row.ids) < self.limits[b]:
                        keep.append(j)
                    events.append(TokenEvent(b, tok, forced, stop is not None))
                yield events
                if not keep and not self.pending:
                    break
                if len(keep) < len(column):
                    column = [column[j] for j in keep]
                    self._drop(keep)
                if keep:
                    logits = self._feed(torch.tensor(column, device=self.device)[:, None])
        finally:
            self._state = "ended"
            self.model.train(was_training)

    def run(self) -> list[Row]:
        """Decode to the end; the rows."""
        for _ in self:
            pass
        return self.rows


def decode(model, prompts, cfg: DecodeConfig | None = None, **kwargs) -> list[Row]:
    """``Decoding(model, prompts, cfg, **kwargs).run()``: every prompt's ``Row``."""
    return Decoding(model, prompts, cfg, **kwargs).run()


@torch.no_grad()
def generate_ids(model, idx: torch.Tensor, cfg: DecodeConfig,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``idx`` (B, T) followed by ``cfg.max_new_tokens`` new tokens, (B, T + new).

    The loop of ``Decoding`` without stop rules or per-row bookkeeping: the
    sampled column is fed straight back (the path of ``model.generate``).
    """
    if cfg.stop_tokens or cfg.stop_strings:
        raise ValueError("generate_ids has no stop rules (every row gets max_new_tokens); use "
                         "decode() for stop tokens and strings")
    generator = sampling_generator(idx, cfg.max_new_tokens, cfg.temperature, cfg.seed, generator)
    if cfg.max_new_tokens == 0:
        return idx
    d = Decoding(model, idx, cfg, generator=generator)
    was_training = model.training
    model.eval()
    try:
        out = [idx]
        logits = d._prefill()
        for step in range(cfg.max_new_tokens):
            nxt = d._sample(logits)  # (B, 1)
            out.append(nxt)
            if step + 1 < cfg.max_new_tokens:
                logits = d._feed(nxt)
    finally:
        model.train(was_training)
    return torch.cat(out, dim=1)
