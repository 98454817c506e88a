"""CharTokenizer: round trips, the shared.Tokenizer protocol, save/load, clear errors."""

from __future__ import annotations

import pytest

from shared import Tokenizer
from week01_transformer import CharTokenizer

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")


def test_vocabulary_is_sorted_characters():
    """"hello" has characters e, h, l, o: ids 0..3 in sorted order, so "hello" -> 1 0 2 2 3."""
    tok = CharTokenizer.from_text("hello")
    assert tok.chars == ["e", "h", "l", "o"]
    assert tok.encode("hello") == [1, 0, 2, 2, 3]
    assert tok.vocab_size == 4
    assert isinstance(tok, Tokenizer)


def test_round_trip_with_unicode_and_whitespace():
    text = "déjà vu\n\tλx: x ** 2 — ok 🙂"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode(text[3:9])) == text[3:9]
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_save_and_load(tmp_path):
    tok = CharTokenizer.from_text("abc xyz\n")
    path = tok.save(tmp_path / "sub" / "tok.json")
    back = CharTokenizer.load(path)
    assert back.chars == tok.chars and back.encode("zyx cab") == tok.encode("zyx cab")


def test_errors_are_clear(tmp_path):
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"characters \['d', 'z'\] are not in the vocabulary"):
        tok.encode("abzdz")
    with pytest.raises(ValueError, match=r"token id 3 is out of range: valid ids are 0\.\.2"):
        tok.decode([0, 3])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
    bad = tmp_path / "bad.json"
    bad.write_text('{"chars": ["a"]}')
    with pytest.raises(ValueError, match="is not a week01-char-tokenizer file"):
        CharTokenizer.load(bad)
    with pytest.raises(ValueError, match="cannot read"):
        CharTokenizer.load(tmp_path / "missing.json")
