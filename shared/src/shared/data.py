"""Text sources every week can read with zero downloads.

``load_corpus("pydocs")`` is the embedded default corpus: Python's own
documentation, read from the running interpreter. It joins the help topics of
``pydoc_data.topics`` (the language reference behind ``help("if")``) and the
docstrings of the standard library's modules, classes and functions, found
by parsing the library's source with ``ast`` (nothing is imported, so no
module's import side effects run). About 2.2 million characters of real English
about code (CPython 3.11; DESIGN.md's 3.8 MB counted more of the library), in a
deterministic order for a given Python version. Parsing takes a few seconds, so
the result is cached as JSON in ``$NANOCHAT_CACHE`` (default
``~/.cache/nanochat``); set ``NANOCHAT_CACHE=off`` to disable the cache.

``load_corpus(path)`` reads a local ``.txt``/``.md`` file or a folder of them.
Documents are split into train/val by a stable hash of their name, so the
split does not shift when documents are added.

Left out: the Hugging Face corpora (TinyStories, FineWeb-EDU...). Their
loading code lives with the data pipeline of week02, which streams them.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

CORPORA = ("pydocs",)
TEXT_SUFFIXES = (".txt", ".md", ".rst")
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Document:
    name: str  # where it came from, e.g. "topic:assert" or "doc:json.decoder.JSONDecoder"
    text: str


@dataclass(frozen=True)
class Corpus:
    """An ordered list of documents with a deterministic train/val split."""

    name: str
    documents: tuple[Document, ...]
    val_fraction: float = 0.1

    def _is_val(self, doc: Document) -> bool:
        h = int.from_bytes(hashlib.sha256(doc.name.encode()).digest()[:8], "big")
        return h / 2**64 < self.val_fraction

    @property
    def train_docs(self) -> list[Document]:
        return [d for d in self.documents if not self._is_val(d)]

    @property
    def val_docs(self) -> list[Document]:
        return [d for d in self.documents if self._is_val(d)]

    @property
    def text(self) -> str:
        return join_docs(self.documents)

    @property
    def train(self) -> str:
        return join_docs(self.train_docs)

    @property
    def val(self) -> str:
        return join_docs(self.val_docs)

    def __len__(self) -> int:
        return len(self.documents)


def join_docs(docs) -> str:
    """Documents joined by blank lines (the plain-text view of a corpus)."""
    return "\n\n".join(d.text for d in docs)


def load_corpus(name_or_path: str | os.PathLike = "pydocs", val_fraction: float = 0.1) -> Corpus:
    """Load a named corpus (``"pydocs"``) or local text file(s).

    An unknown name that is not an existing path raises ``ValueError`` naming
    the valid corpora.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    key = str(name_or_path)
    if key in CORPORA:
        return Corpus(key, _pydocs_documents(), val_fraction)
    path = Path(name_or_path)
    if path.exists():
        return Corpus(path.name, tuple(_local_documents(path)), val_fraction)
    raise ValueError(f"unknown corpus {key!r}: valid names are {', '.join(CORPORA)}, "
                     "or the path of a text file or folder")


def _local_documents(path: Path) -> list[Document]:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    if not files:
        raise ValueError(f"no text files ({', '.join(TEXT_SUFFIXES)}) under {path}")
    docs = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{f} is not UTF-8 text ({e})") from None
        docs.append(Document(str(f.relative_to(path) if path.is_dir() else f.name), text))
    return docs


def cache_dir() -> Path | None:
    """Where derived data is cached: ``$NANOCHAT_CACHE``, else ``~/.cache/nanochat``; None if off."""
    value = os.environ.get("NANOCHAT_CACHE", "")
    if value.lower() in ("off", "0", "none"):
        return None
    return Path(value) if value else Path.home() / ".cache" / "nanochat"


@functools.lru_cache(maxsize=1)
def _pydocs_documents() -> tuple[Document, ...]:
    stdlib = sysconfig.get_paths()["stdlib"]
    key = hashlib.sha256(f"{sys.version}|{stdlib}|v1".encode()).hexdigest()[:16]
    folder = cache_dir()
    path = folder / f"pydocs-{key}.json" if folder else None
    if path is not None and path.exists():
        try:
            return tuple(Document(n, t) for n, t in json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValueError, TypeError):
            pass  # a damaged cache file is rebuilt below
    docs = _parse_pydocs()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text(json.dumps([[d.name, d.text] for d in docs]), encoding="utf-8")
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home is fine: no cache
    return docs


def _parse_pydocs() -> tuple[Document, ...]:
    docs = []
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distro builds strip pydoc_data
        topics = {}
    for key in sorted(topics):
        text = topics[key].strip()
        if text:
            docs.append(Document(f"topic:{key}", text))
    root = Path(sysconfig.get_paths()["stdlib"])
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        docs.extend(_docstrings(file, ".".join(rel.with_suffix("").parts)))
    return tuple(docs)


def _docstrings(file: Path, module: str) -> list[Document]:
    try:
        tree = ast.parse(file.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []
    out = []

    def visit(node, qual):
        doc = ast.get_docstring(node)
        if doc and len(doc) > 40:
            out.append(Document(f"doc:{qual}", doc))
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, f"{qual}.{child.name}")

    visit(tree, module.removesuffix(".__init__"))
    return out
