"""BPETokenizer: worked example, parity with rustbpe and tiktoken, round trips, save/load."""

import json

import pytest
import rustbpe
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import Tokenizer
from week02_bpe import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    SPECIAL_TOKENS,
    BPETokenizer,
    StreamDecoder,
    TokenizerFileError,
    count_chunks,
    learn_merges,
)

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

# ---------------------------------------------------------------------------
# Worked example and the tie-breaking rule
# ---------------------------------------------------------------------------


def test_worked_example_merges():
    """The classic string "aaabdaaabac" (one chunk under the GPT-4 pattern).

    Bytes a=97, b=98, c=99, d=100. Adjacent pairs (overlapping ones count):
      aa x4, ab x2, bd, da, ba, ac x1      -> merge (97, 97) -> 256
    Left to right without overlap "aaab" becomes [256, a, b]:
      [256, 97, 98, 100, 256, 97, 98, 97, 99]
      (256, 97) x2 and (97, 98) x2 tie     -> the smaller pair (97, 98) -> 257
      [256, 257, 100, 256, 257, 97, 99]
      (256, 257) x2                        -> 258
      [258, 100, 258, 97, 99]: four pairs, each x1; the smallest is (97, 99) -> 259
      [258, 100, 258, 259]: (258, 100), (100, 258), (258, 259); smallest (100, 258) -> 260
    """
    tok = BPETokenizer.train("aaabdaaabac", vocab_size=261, special_tokens=[])
    assert list(tok.merges) == [(97, 97), (97, 98), (256, 257), (97, 99), (100, 258)]
    assert tok.encode("aaabdaaabac") == [258, 260, 259]
    assert tok.vocab[260] == b"daaab"
    # rustbpe learns the very same merges
    ref = rustbpe.Tokenizer()
    ref.train_from_iterator(["aaabdaaabac"], 261)
    assert ref.get_mergeable_ranks() == tok.mergeable_ranks()


def test_ties_go_to_the_smallest_pair():
    """Every pair of "abcd" occurs once: (97, 98) < (98, 99) < (99, 100) in that order.

    After (97, 98) -> 256 the word is [256, 99, 100]; (99, 100) < (256, 99), so 257 = "cd".
    """
    tok = BPETokenizer.train("abcd", vocab_size=258, special_tokens=[])
    assert list(tok.merges) == [(97, 98), (99, 100)]


def test_chunk_weights_and_overlap():
    """Counts are weighted by chunk frequency and overlapping pairs count twice.

    Chunks: "aaa" x1 (pair aa x2) and " ab" x3 -> (32, 97) x3, (97, 98) x3, (97, 97) x2.
    (32, 97) and (97, 98) tie at 3; (32, 97) is smaller, then " a"+"b" (256, 98) x3.
    """
    counts = count_chunks("aaa ab ab ab")
    assert counts == {"aaa": 1, " ab": 3}
    assert learn_merges(counts, 2) == [(32, 97), (256, 98)]


def test_stops_when_pairs_run_out():
    tok = BPETokenizer.train("ab", vocab_size=1000, special_tokens=[])
    assert list(tok.merges) == [(97, 98)]
    assert tok.vocab_size == 257


# ---------------------------------------------------------------------------
# Parity with rustbpe (training) and tiktoken (encoding)
# ---------------------------------------------------------------------------


def _rustbpe_ranks(texts, vocab_size, pattern=None):
    ref = rustbpe.Tokenizer()
    ref.train_from_iterator(texts, vocab_size, pattern=pattern)
    return ref


def test_training_matches_rustbpe_on_pydocs(train_texts, tok1k):
    ref = _rustbpe_ranks(train_texts, 1024 - len(SPECIAL_TOKENS))
    assert ref.get_mergeable_ranks() == tok1k.mergeable_ranks()
    assert ref.get_pattern() == GPT4_SPLIT_PATTERN


@pytest.mark.parametrize("pattern", [GPT2_SPLIT_PATTERN, r"\S+|\s+"], ids=["gpt2", "words"])
def test_training_matches_rustbpe_other_patterns(pydocs_texts, pattern):
    texts = pydocs_texts[2000:2400]
    ours = BPETokenizer.train(texts, vocab_size=700, pattern=pattern, special_tokens=[])
    ref = _rustbpe_ranks(texts, 700, pattern=pattern)
    assert ref.get_mergeable_ranks() == ours.mergeable_ranks()


def test_training_matches_rustbpe_on_multilingual_text(samples):
    """Many ties and multi-byte characters: a sharp test of the tie-breaking rule."""
    texts = samples * 3 + ["ünïcödé " * 7, "🙂🙃" * 11, "абвгд еёжз " * 5]
    ours = BPETokenizer.train(texts, vocab_size=600, special_tokens=[])
    ref = _rustbpe_ranks(texts, 600)
    assert ref.get_mergeable_ranks() == ours.mergeable_ranks()


def test_encoder_matches_tiktoken_and_rustbpe(tok1k, train_texts, pydocs_texts, samples):
    enc = tok1k.to_tiktoken()
    ref = _rustbpe_ranks(train_texts, 1024 - len(SPECIAL_TOKENS))
    texts = samples + pydocs_texts[-300:] + ["\n\n".join(pydocs_texts[100:140])]
    for text in texts:
        ids = tok1k.encode(text)
        assert ids == enc.encode_ordinary(text), text[:80]
        assert ids == ref.encode(text), text[:80]
    special_text = "<|bos|>hello<|user_start|>2+2?<|user_end|><|assistant_start|>4<|assistant_end|>"
    assert tok1k.encode(special_text, allowed_special="all") == enc.encode(special_text,
                                                                          allowed_special="all")
    assert enc.n_vocab == tok1k.vocab_size


# ---------------------------------------------------------------------------
# Round trips and special tokens
# ---------------------------------------------------------------------------


def test_round_trip(tok1k, samples):
    for text in samples:
        assert tok1k.decode(tok1k.encode(text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_round_trip_random_text(tiny_tok, text):
    assert tiny_tok.decode(tiny_tok.encode(text)) == text
    assert "".join(tiny_tok.decode_stream(tiny_tok.encode(text))) == text


def test_special_tokens(tok1k):
    assert list(tok1k.special_tokens) == SPECIAL_TOKENS
    assert tok1k.bos_id == tok1k.vocab_size - len(SPECIAL_TOKENS)
    assert sorted(tok1k.special_tokens.values()) == list(range(1024 - 9, 1024))
    text = "<|user_start|>hi<|user_end|>"
    ids_all = tok1k.encode(text, allowed_special="all")
    assert ids_all[0] == tok1k.special_tokens["<|user_start|>"]
    assert ids_all[-1] == tok1k.special_tokens["<|user_end|>"]
    assert tok1k.decode(ids_all) == text
    only = tok1k.encode(text, allowed_special={"<|user_end|>"})
    assert only[-1] == tok1k.special_tokens["<|user_end|>"]
    assert tok1k.special_tokens["<|user_start|>"] not in only
    plain = tok1k.encode(text)  # "none": the text of a special is ordinary bytes
    assert not set(plain) & set(tok1k.special_tokens.values())
    assert tok1k.decode(plain) == text
    with pytest.raises(ValueError, match="unknown special"):
        tok1k.encode(text, allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        tok1k.encode(text, allowed_special="some")


def test_satisfies_shared_protocol(tok1k):
    assert isinstance(tok1k, Tokenizer)
    assert tok1k.vocab_size == 1024


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(TypeError, match="must be str"):
        BPETokenizer.train([b"bytes"], vocab_size=300)
    with pytest.raises(ValueError, match="does not exist yet"):
        BPETokenizer([(300, 1)])
    with pytest.raises(ValueError, match="unknown token id"):
        BPETokenizer([]).decode([10_000])


# ---------------------------------------------------------------------------
# Decoding invalid UTF-8 and streaming
# ---------------------------------------------------------------------------


def test_decode_invalid_utf8_uses_replacement(tiny_tok):
    # byte tokens are ids 0..255: a lone continuation byte and a truncated emoji
    assert tiny_tok.decode([0x80]) == "\ufffd"
    assert tiny_tok.decode(list("a🙂".encode())[:-1]) == "a\ufffd"
    assert tiny_tok.decode(list(b"ok\xff!")) == "ok\ufffd!"


def test_stream_decoder_yields_only_complete_characters(tiny_tok):
    text = "héllo 🙂 日本"
    ids = list(text.encode())  # one byte per token: the worst case for streaming
    pieces = list(tiny_tok.decode_stream(ids))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    dec = StreamDecoder(tiny_tok)
    emoji = list("🙂".encode())
    assert [dec.push(i) for i in emoji] == ["", "", "", "🙂"]
    dec.push(0xF0)  # an unfinished character at the end becomes one replacement char
    assert dec.flush() == "\ufffd"


# ---------------------------------------------------------------------------
# Save / load
# ---------------------------------------------------------------------------


def test_save_load_round_trip(tok1k, tmp_path, samples):
    path = tok1k.save(tmp_path / "tok.json")
    loaded = BPETokenizer.load(path)
    assert loaded.mergeable_ranks() == tok1k.mergeable_ranks()
    assert loaded.special_tokens == tok1k.special_tokens
    assert loaded.pattern == tok1k.pattern
    for text in samples:
        assert loaded.encode(text, allowed_special="all") == tok1k.encode(text, allowed_special="all")
    listing = (tmp_path / "tok.json.vocab").read_text(encoding="utf-8")
    assert "256\t[" in listing and "<|bos|>\t(special)" in listing
    assert len(listing.splitlines()) == 1 + tok1k.vocab_size


def test_load_errors(tok1k, tmp_path):
    path = tok1k.save(tmp_path / "tok.json")
    with pytest.raises(TokenizerFileError, match="no tokenizer file"):
        BPETokenizer.load(tmp_path / "missing.json")
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated: corrupt JSON
    with pytest.raises(TokenizerFileError, match="corrupt"):
        BPETokenizer.load(path)
    d = json.loads(good)
    path.write_text(json.dumps({**d, "version": 99}))
    with pytest.raises(TokenizerFileError, match="version 99"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({**d, "format": "something-else"}))
    with pytest.raises(TokenizerFileError, match="not a week02-bpe-tokenizer"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({**d, "merges": [[1, 2], [1, 2]]}))
    with pytest.raises(TokenizerFileError, match="corrupt.*repeats"):
        BPETokenizer.load(path)
    path.write_text(json.dumps({**d, "special_tokens": {"<|bos|>": 5}}))
    with pytest.raises(TokenizerFileError, match="corrupt.*special token ids"):
        BPETokenizer.load(path)
