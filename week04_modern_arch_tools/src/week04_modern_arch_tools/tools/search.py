"""``Search``: BM25 over a local document store, answering with passages and their sources.

Documents are cut into passages of about ``passage_words`` words (on
paragraph boundaries where possible), each remembered with its source, e.g.
``doc:json.loads`` or ``facts/zorvania.txt#2``. Text is lower-cased and split
into word tokens (letters, digits, underscores); a few English stop words
are dropped. A query scores every passage that shares a term with it:

    score(q, p) = sum over terms t of q:
        idf(t) * tf(t, p) * (k1 + 1) / (tf(t, p) + k1 * (1 - b + b * |p| / avg|p|))
    idf(t) = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))

with N passages, n(t) of them containing t, ``k1 = 1.5`` and ``b = 0.75``
(Lucene's BM25: the "+1" keeps idf positive for very common terms). The
index is an inverted list ``term -> [(passage, tf)]``, so a query only
touches the passages that contain its terms.

By default the store is the pydocs corpus (``shared.load_corpus("pydocs")``),
loaded on the first search; ``Search(documents=...)`` takes your own
documents, ``add`` / ``add_path`` add more at any time.

Left out: stemming, phrase queries, dense (embedding) retrieval and
re-ranking; a later week can put a learned retriever behind the same tool.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from shared import Document, load_corpus

_WORD = re.compile(r"\w+")
STOP_WORDS = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were "
    "what which who will with".split())


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]


def split_passages(text: str, words: int = 120) -> list[str]:
    """Cut ``text`` into passages of about ``words`` words, joining short paragraphs."""
    out, current, n = [], [], 0
    for para in re.split(r"\n\s*\n", text):
        para_words = para.split()
        if not para_words:
            continue
        while len(para_words) > words:  # a long paragraph: hard cuts
            if current:
                out.append(" ".join(current))
                current, n = [], 0
            out.append(" ".join(para_words[:words]))
            para_words = para_words[words:]
        if n + len(para_words) > words and current:
            out.append(" ".join(current))
            current, n = [], 0
        current += para_words
        n += len(para_words)
    if current:
        out.append(" ".join(current))
    return out


@dataclass(frozen=True)
class Hit:
    score: float
    source: str
    text: str


# ---------------------------------------------------------------- the index


class Search:
    """BM25 search tool; satisfies ``shared.Tool`` (name "search")."""

    name = "search"

    def __init__(self, documents=None, top_k: int = 3, passage_words: int = 120,
                 k1: float = 1.5, b: float = 0.75, max_chars: int = 1200):
        """``documents``: None (pydocs), a corpus name or path, or an iterable of
        ``shared.Document`` / ``(source, text)`` pairs / plain strings."""
        if top_k <= 0 or passage_words <= 0 or k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"need top_k > 0, passage_words > 0, k1 >= 0, 0 <= b <= 1; got "
                             f"top_k={top_k}, passage_words={passage_words}, k1={k1}, b={b}")
        self.top_k, self.passage_words, self.k1, self.b = top_k, passage_words, k1, b
        self.max_chars = max_chars
        self.sources: list[str] = []
        self.passages: list[str] = []
        self.lengths: list[int] = []
        self.postings: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self._pending = "pydocs" if documents is None else documents

    # -- building
    def _load_pending(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        if isinstance(pending, (str, Path)):
            self.add_documents(load_corpus(pending).documents)
        else:
            self.add_documents(pending)

    def add_documents(self, documents) -> Search:
        for i, doc in enumerate(documents):
            if isinstance(doc, Document):
                self.add(doc.text, doc.name)
            elif isinstance(doc, str):
                self.add(doc, f"doc{len(self.sources)}")
            elif isinstance(doc, (tuple, list)) and len(doc) == 2:
                self.add(str(doc[1]), str(doc[0]))
            else:
                raise TypeError(f"document {i} must be a shared.Document, a (source, text) pair "
                                f"or a string, got {type(doc).__name__}")
        return self

    def add(self, text: str, source: str) -> Search:
        """Index one document under the name ``source`` (its passages become ``source#k``)."""
        parts = split_passages(text, self.passage_words)
        for k, passage in enumerate(parts):
            pid = len(self.passages)
            terms = tokenize(passage)
            self.passages.append(passage)
            self.sources.append(source if len(parts) == 1 else f"{source}#{k}")
            self.lengths.append(len(terms))
            for term, tf in Counter(terms).items():
                self.postings[term].append((pid, tf))
        return self

    def add_path(self, path) -> Search:
        """Index a local text file or a folder of ``.txt``/``.md``/``.rst`` files."""
        return self.add_documents(load_corpus(path).documents)

    def __len__(self) -> int:
        self._load_pending()
        return len(self.passages)

    # -- scoring
    def idf(self, term: str) -> float:
        self._load_pending()
        N, n = len(self.passages), len(self.postings.get(term, ()))
        return math.log(1 + (N - n + 0.5) / (n + 0.5))

    def scores(self, query: str) -> dict[int, float]:
        """BM25 score of every passage sharing a term with ``query`` (others score 0)."""
        self._load_pending()
        if not self.passages:
            return {}
        avg = sum(self.lengths) / len(self.lengths) or 1.0
        k1, b = self.k1, self.b
        out: dict[int, float] = defaultdict(float)
        for term in tokenize(query):  # a repeated query term counts again, as in rank_bm25
            postings = self.postings.get(term)
            if not postings:
                continue
            idf = self.idf(term)
            for pid, tf in postings:
                norm = k1 * (1 - b + b * self.lengths[pid] / avg)
                out[pid] += idf * tf * (k1 + 1) / (tf + norm)
        return out

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The ``k`` best passages, best first (ties: the earlier passage first)."""
        scores = self.scores(query)
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[: k or self.top_k]
        return [Hit(s, self.sources[i], self.passages[i]) for i, s in best]

    # -- the tool
    def run(self, text: str) -> str:
        """Top passages as ``[1] source: text`` lines, or a message; never raises."""
        if not isinstance(text, str) or not tokenize(text):
            return "Error: empty search query"
        try:
            hits = self.search(text)
        except (OSError, ValueError, TypeError) as e:
            return f"Error: the document store could not be searched ({e})"
        if not hits:
            return f"No results for {text.strip()!r}."
        lines = [f"[{i}] {h.source}: {h.text}" for i, h in enumerate(hits, 1)]
        out = "\n".join(lines)
        return out if len(out) <= self.max_chars else out[: self.max_chars - 3] + "..."
