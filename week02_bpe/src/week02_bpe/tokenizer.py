"""A byte-level BPE tokenizer: fast training, encoding, decoding, save/load, tiktoken export.

Training follows the GPT-2/GPT-4 recipe: split the text into pre-tokens
("chunks") with a regex, count every *unique* chunk once, then learn merges
with incremental pair counts. Each merge only touches the unique chunks that
contain the merged pair, and a heap with lazy refresh finds the next most
frequent pair, so the corpus is never re-scanned. The merges are exactly those
of the PyPI ``rustbpe`` trainer (the one nanochat uses), because both share
the same rule:

    Tie-breaking rule. At each step merge the pair with the highest count,
    counting overlapping occurrences inside a chunk (``aaa`` holds ``(a, a)``
    twice) and weighting each chunk by how often it occurs. Among pairs with
    the same count, merge the smallest pair ``(left_id, right_id)``, compared
    as a tuple of token ids (so byte pairs before pairs that involve merged
    tokens, and among those the earliest-made tokens first). The new token
    gets id ``256 + merge_index``. Inside a chunk, occurrences are merged left
    to right without overlap (``aaa`` -> ``[X, a]``). Training stops early if
    no pair is left.

Special tokens are not learned: they get the ids right after the merges, so a
``vocab_size`` of 4096 with the 9 chat specials learns 4096 - 256 - 9 merges.

Encoding applies merges in the order they were learned (lowest id first),
which is what ``rustbpe`` and (for vocabularies learned this way) ``tiktoken``
do; ``to_tiktoken()`` hands the same ranks to tiktoken's Rust core for speed.

Left out on purpose: byte-to-unicode remapping of GPT-2 (we store raw bytes),
normalisation (NFC/NFKC), and encoding of arbitrary external vocabularies.
"""

from __future__ import annotations

import codecs
import heapq
import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import regex

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

# the GPT-4 (cl100k_base) split pattern, as in tiktoken and rustbpe
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
# the GPT-2 pattern, for comparison in the notebook
GPT2_SPLIT_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
)

# reserved from the start: chat turns and tool calls of later weeks
SPECIAL_TOKENS: list[str] = [
    "<|bos|>",
    "<|user_start|>",
    "<|user_end|>",
    "<|assistant_start|>",
    "<|assistant_end|>",
    "<|python_start|>",
    "<|python_end|>",
    "<|output_start|>",
    "<|output_end|>",
]

FILE_FORMAT = "week02-bpe-tokenizer"
FILE_VERSION = 1


class TokenizerFileError(ValueError):
    """A saved tokenizer file is missing, corrupt, or from another format version."""


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def count_chunks(texts: Iterable[str] | str, pattern: str = GPT4_SPLIT_PATTERN) -> Counter:
    """How often each unique pre-token chunk occurs. Each text is split on its own."""
    if isinstance(texts, str):
        texts = [texts]
    compiled = regex.compile(pattern)
    counts: Counter = Counter()
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        counts.update(compiled.findall(text))
    return counts


def learn_merges(chunk_counts: dict[str, int], num_merges: int, progress: bool = False,
                 history: list | None = None) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from chunk counts; merge i makes token 256 + i.

    Incremental: every unique chunk is a list of ids; ``pair_counts`` holds
    the weighted count of every adjacent pair and ``where`` the chunks that
    may contain it. A merge rewrites only the chunks in ``where[pair]`` and
    adjusts the counts of the pairs around each occurrence. The heap holds
    ``(-count, pair)`` entries that may be stale (too high): a popped entry
    whose count is out of date is pushed back with the current count. New
    pairs (they always contain the new token) get a fresh entry. So the first
    up-to-date entry popped is the most frequent pair, ties to the smallest.

    ``history``, if given, receives ``(pair, count, tokens_removed)`` per
    merge (the benchmark uses it to model the cost of a re-scan trainer).
    """
    words: list[list[int]] = []
    weights: list[int] = []
    for chunk, c in chunk_counts.items():
        b = chunk.encode("utf-8")
        if len(b) >= 2 and c > 0:
            words.append(list(b))
            weights.append(c)

    pair_counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for wi, w in enumerate(words):
        c = weights[wi]
        for pair in zip(w, w[1:]):
            pair_counts[pair] += c
            where[pair].add(wi)
    heap = [(-c, pair) for pair, c in pair_counts.items()]
    heapq.heapify(heap)

    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=num_merges, desc="bpe merges", unit="merge")

    merges: list[tuple[int, int]] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    while len(merges) < num_merges and heap:
        neg, pair = heappop(heap)
        current = pair_counts.get(pair, 0)
        if current <= 0:
            continue
        if -neg != current:  # stale entry: requeue with the true count
            heappush(heap, (-current, pair))
            continue
        new_id = 256 + len(merges)
        merges.append(pair)
        a, b = pair
        gained: set[tuple[int, int]] = set()
        removed = 0
        for wi in where.pop(pair):
            w = words[wi]
            n = len(w)
            if n < 2:
                continue
            c = weights[wi]
            out: list[int] = []
            i = 0
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    if out:  # (x, a) becomes (x, new)
                        x = out[-1]
                        pair_counts[(x, a)] -= c
                        p = (x, new_id)
                        pair_counts[p] += c
                        where[p].add(wi)
                        gained.add(p)
                    if i + 2 < n:  # (b, y) becomes (new, y)
                        y = w[i + 2]
                        pair_counts[(b, y)] -= c
                        p = (new_id, y)
                        pair_counts[p] += c
                        where[p].add(wi)
                        gained.add(p)
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            if len(out) != n:
                pair_counts[pair] -= c * (n - len(out))
                removed += c * (n - len(out))
                words[wi] = out
        if history is not None:
            history.append((pair, current, removed))
        for p in gained:
            c = pair_counts[p]
            if c > 0:
                heappush(heap, (-c, p))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return merges


# ---------------------------------------------------------------------------
# The tokenizer
# ---------------------------------------------------------------------------


class BPETokenizer:
    """Byte-level BPE with a regex pre-split and reserved special tokens.

    Build one with ``BPETokenizer.train(texts, vocab_size)`` or
    ``BPETokenizer.load(path)``. Satisfies ``shared.Tokenizer``.
    """

    def __init__(self, merges: Sequence[tuple[int, int]], pattern: str = GPT4_SPLIT_PATTERN,
                 special_tokens: Sequence[str] | dict[str, int] = tuple(SPECIAL_TOKENS)):
        self.pattern = pattern
        self._compiled = regex.compile(pattern)
        self.merges: dict[tuple[int, int], int] = {}
        vocab = [bytes([i]) for i in range(256)]
        for i, pair in enumerate(merges):
            a, b = int(pair[0]), int(pair[1])
            new_id = 256 + i
            if not (0 <= a < new_id and 0 <= b < new_id):
                raise ValueError(f"merge {i} = ({a}, {b}) refers to a token that does not exist "
                                 f"yet (valid ids are 0..{new_id - 1})")
            if (a, b) in self.merges:
                raise ValueError(f"merge {i} = ({a}, {b}) repeats an earlier merge")
            self.merges[(a, b)] = new_id
            vocab.append(vocab[a] + vocab[b])
        self.vocab: list[bytes] = vocab  # id -> bytes for the ordinary tokens
        n = len(vocab)
        if isinstance(special_tokens, dict):
            specials = {str(k): int(v) for k, v in special_tokens.items()}
            expected = list(range(n, n + len(specials)))
            if sorted(specials.values()) != expected:
                raise ValueError(f"special token ids must be {expected} (right after the merges), "
                                 f"got {sorted(specials.values())}")
        else:
            if len(set(special_tokens)) != len(special_tokens):
                raise ValueError(f"special tokens must be unique, got {list(special_tokens)}")
            specials = {s: n + i for i, s in enumerate(special_tokens)}
        self.special_tokens: dict[str, int] = specials
        self.inverse_special_tokens = {v: k for k, v in specials.items()}
        self._cache: dict[str, list[int]] = {}
        self._special_re = None
        if specials:
            alternatives = sorted(specials, key=len, reverse=True)
            self._special_re = regex.compile("(" + "|".join(regex.escape(s) for s in alternatives)
                                             + ")")

    # -- construction ------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str] | str, vocab_size: int, pattern: str = GPT4_SPLIT_PATTERN,
              special_tokens: Sequence[str] = SPECIAL_TOKENS, progress: bool = False
              ) -> BPETokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``texts``.

        ``texts`` is one string or an iterable of documents (each split on its
        own, as rustbpe does). Fewer merges are learned if the corpus runs out
        of pairs; ``vocab_size`` then comes out smaller.
        """
        special_tokens = list(special_tokens)
        num_merges = int(vocab_size) - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"vocab_size must be at least 256 + {len(special_tokens)} special "
                             f"tokens = {256 + len(special_tokens)}, got {vocab_size}")
        counts = count_chunks(texts, pattern)
        merges = learn_merges(counts, num_merges, progress=progress)
        return cls(merges, pattern, special_tokens)

    # -- sizes and ids -----------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Ordinary tokens (256 bytes + merges) plus special tokens."""
        return len(self.vocab) + len(self.special_tokens)

    @property
    def n_ordinary(self) -> int:
        return len(self.vocab)

    @property
    def bos_id(self) -> int:
        if "<|bos|>" not in self.special_tokens:
            raise KeyError("this tokenizer has no <|bos|> special token")
        return self.special_tokens["<|bos|>"]

    def token_to_bytes(self, token_id: int) -> bytes:
        """The bytes of one token (a special token's UTF-8 text for specials)."""
        if 0 <= token_id < len(self.vocab):
            return self.vocab[token_id]
        if token_id in self.inverse_special_tokens:
            return self.inverse_special_tokens[token_id].encode("utf-8")
        raise ValueError(f"unknown token id {token_id}: valid ids are 0..{self.vocab_size - 1}")

    def mergeable_ranks(self) -> list[tuple[bytes, int]]:
        """``[(token_bytes, id), ...]`` for the ordinary tokens (rustbpe's format)."""
        return [(b, i) for i, b in enumerate(self.vocab)]

    # -- encoding ----------------------------------------------------------

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = self._cache.get(chunk)
        if ids is not None:
            return ids
        ids = list(chunk.encode("utf-8"))
        merges = self.merges
        while len(ids) >= 2:
            # the earliest-learned merge among the adjacent pairs
            best = None
            best_id = None
            for pair in zip(ids, ids[1:]):
                m = merges.get(pair)
                if m is not None and (best_id is None or m < best_id):
                    best, best_id = pair, m
            if best is None:
                break
            a, b = best
            out = []
            i, n = 0, len(ids)
            while i < n:
                if i + 1 < n and ids[i] == a and ids[i + 1] == b:
                    out.append(best_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        if len(self._cache) < 500_000:  # bound memory on huge corpora
            self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ignoring special tokens (their text is encoded as ordinary bytes)."""
        out: list[int] = []
        enc = self._encode_chunk
        for chunk in self._compiled.findall(text):
            out.extend(enc(chunk))
        return out

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Encode ``text``; ``allowed_special`` is ``"none"``, ``"all"`` or a set of specials.

        With ``"none"`` a special token's text is encoded as plain bytes, so
        ``decode(encode(s)) == s`` for every string. Listed specials become
        their single id.
        """
        if allowed_special == "none":
            return self.encode_ordinary(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"unknown special tokens {sorted(unknown)}; this tokenizer has "
                                 f"{list(self.special_tokens)}")
        else:
            raise ValueError(f'allowed_special must be "none", "all" or a set of special tokens, '
                             f"got {allowed_special!r}")
        if not allowed:
            return self.encode_ordinary(text)
        pattern = regex.compile("(" + "|".join(regex.escape(s) for s in
                                               sorted(allowed, key=len, reverse=True)) + ")")
        out: list[int] = []
        for i, part in enumerate(pattern.split(text)):
            if i % 2 == 1:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    # -- decoding ----------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_to_bytes(int(i)) for i in ids)

    def decode(self, ids: Sequence[int]) -> str:
        """Token ids to text; invalid UTF-8 becomes U+FFFD replacement characters."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_stream(self, ids: Iterable[int]) -> Iterator[str]:
        """Yield text as ids arrive, only ever complete characters (for streaming chat)."""
        dec = StreamDecoder(self)
        for i in ids:
            piece = dec.push(i)
            if piece:
                yield piece
        tail = dec.flush()
        if tail:
            yield tail

    # -- save / load -------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "pattern": self.pattern,
            "merges": [list(p) for p in self.merges],
            "special_tokens": dict(self.special_tokens),
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "tokenizer data") -> BPETokenizer:
        if not isinstance(d, dict) or d.get("format") != FILE_FORMAT:
            raise TokenizerFileError(f"{source} is not a {FILE_FORMAT} file "
                                     f"(format field: {d.get('format') if isinstance(d, dict) else None!r})")
        if d.get("version") != FILE_VERSION:
            raise TokenizerFileError(f"{source} has format version {d.get('version')!r}; this code "
                                     f"reads version {FILE_VERSION}. Re-save it with a matching "
                                     "week02_bpe, or retrain.")
        try:
            merges = [(int(a), int(b)) for a, b in d["merges"]]
            return cls(merges, str(d["pattern"]), {str(k): int(v)
                                                   for k, v in d["special_tokens"].items()})
        except (KeyError, TypeError, ValueError, regex.error) as e:
            raise TokenizerFileError(f"{source} is corrupt: {type(e).__name__}: {e}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON, versioned) and ``path.vocab`` (a human-readable listing)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        os.replace(tmp, path)
        lines = [f"# {len(self.vocab)} ordinary tokens + {len(self.special_tokens)} specials; "
                 "id, token (bytes rendered with replacement chars), and the merge that made it"]
        inverse = {v: k for k, v in self.merges.items()}
        for i, b in enumerate(self.vocab):
            text = _render(b)
            if i in inverse:
                a, c = inverse[i]
                lines.append(f"{i}\t[{text}]\t<- [{_render(self.vocab[a])}][{_render(self.vocab[c])}]"
                             f" ({a}, {c})")
            else:
                lines.append(f"{i}\t[{text}]")
        for s, i in self.special_tokens.items():
            lines.append(f"{i}\t{s}\t(special)")
        path.with_name(path.name + ".vocab").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerFileError(f"no tokenizer file at {path}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TokenizerFileError(f"{path} is corrupt (not valid JSON: {e})") from None
        return cls.from_dict(d, source=str(path))

    # -- export ------------------------------------------------------------

    def to_tiktoken(self, name: str = "week02_bpe"):
        """A ``tiktoken.Encoding`` with our ranks, pattern and specials (needs tiktoken)."""
        try:
            import tiktoken
        except ImportError:
            raise ImportError("to_tiktoken() needs tiktoken: pip install tiktoken") from None
        ranks = {b: i for i, b in enumerate(self.vocab)}
        if len(ranks) != len(self.vocab):
            raise ValueError("two tokens have the same bytes; tiktoken needs unique token bytes")
        return tiktoken.Encoding(name=name, pat_str=self.pattern, mergeable_ranks=ranks,
                                 special_tokens=dict(self.special_tokens))

    def __repr__(self) -> str:
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"specials={len(self.special_tokens)})")


def _render(b: bytes) -> str:
    """Token bytes as printable text (control characters escaped)."""
    s = b.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in s)


# ---------------------------------------------------------------------------
# Streaming decode
# ---------------------------------------------------------------------------


class StreamDecoder:
    """Feed token ids one at a time, get back only complete characters.

    A token can end in the middle of a multi-byte UTF-8 character (an emoji
    is 4 bytes, often split across tokens); the incremental decoder holds the
    partial bytes until the character is complete. Invalid sequences become
    U+FFFD, as in ``decode``.
    """

    def __init__(self, tokenizer: BPETokenizer):
        self.tokenizer = tokenizer
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._dec.decode(self.tokenizer.token_to_bytes(int(token_id)))

    def flush(self) -> str:
        """Whatever is pending (an unfinished character becomes U+FFFD)."""
        return self._dec.decode(b"", final=True)
