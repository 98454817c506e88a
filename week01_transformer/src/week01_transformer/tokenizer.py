"""A character-level tokenizer: one token id per distinct character.

The vocabulary is the sorted set of characters of a training text, so
``encode`` is a dictionary look-up per character and ``decode`` joins them
back; ``decode(encode(s)) == s`` for every string made of known characters.
It satisfies ``shared.Tokenizer`` and saves to / loads from a small JSON file.

Left out: unknown characters (they raise, naming them, rather than mapping to
an ``<unk>`` id that would break the round trip) and special tokens. Week02
builds the real byte-level BPE tokenizer.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

FORMAT = "week01-char-tokenizer"


class CharTokenizer:
    """Characters <-> ids. Build one with ``CharTokenizer.from_text(text)``."""

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"every vocabulary entry must be a single character, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise ValueError("the vocabulary has repeated characters")
        if not chars:
            raise ValueError("the vocabulary is empty: build it from a non-empty text")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is every character of ``text``, sorted."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            unknown = sorted({c for c in text if c not in self.stoi})
            raise ValueError(f"characters {unknown[:10]!r} are not in the vocabulary "
                             f"({self.vocab_size} characters); build the tokenizer from a text "
                             "that contains them") from None

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is out of range: valid ids are "
                                 f"0..{self.vocab_size - 1}")
            out.append(self.chars[i])
        return "".join(out)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the vocabulary as JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"format": FORMAT, "chars": self.chars}, ensure_ascii=False),
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharTokenizer:
        path = Path(path)
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read a char tokenizer from {path}: {e}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} file")
        return cls(data["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
