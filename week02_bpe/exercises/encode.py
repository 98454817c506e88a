"""Week 02 exercises, encoding: one chunk (core ``encode_chunk``) and special tokens
(stretch ``encode``).

Fill in the functions below, then run ``make week02-exercises``. ``encode_chunk`` replaces
``BPETokenizer._encode_chunk`` and ``encode`` replaces ``BPETokenizer.encode`` while their
tests run; the tests compare your ids with ``tiktoken`` and ``rustbpe`` built from the same
merges, and check round trips and the special tokens. Both are methods: ``self`` is a
trained ``BPETokenizer``. What it holds that you need:

- ``self.merges``: ``{(left_id, right_id): new_id}`` in training order; a smaller
  ``new_id`` means an earlier-learned merge (its "rank");
- ``self.special_tokens``: ``{"<|bos|>": id, ...}``, the ids right after the merges;
- ``self.encode_ordinary(text)``: the regex split into chunks, then ``self._encode_chunk``
  on each one (so your ``encode_chunk`` is what it calls while that exercise runs).
"""


def encode_chunk(self, chunk: str) -> list[int]:
    """Token ids of one pre-tokenised chunk (a ``str`` such as ``" hello"``).

    Start from its UTF-8 bytes, ``list(chunk.encode("utf-8"))``. Then repeat: among the
    adjacent pairs of the current ids, find the one learned earliest (the smallest
    ``self.merges[pair]``; pairs not in ``self.merges`` do not count). If there is none,
    stop. Else replace every non-overlapping occurrence of that pair, left to right, by its
    new id, and go again. Fewer than 2 ids: nothing to merge.

    Applying merges in the order they were learned is what tiktoken and rustbpe do, so the
    ids match theirs exactly. Note that this is not "merge the most frequent pair in this
    chunk": frequencies were the trainer's business; the encoder only follows ranks.

    Example with the merges of ``"aaabdaaabac"`` (``(97, 97)``->256, ``(97, 98)``->257,
    ``(256, 257)``->258, ``(97, 99)``->259, ``(100, 258)``->260): ``"aaab"`` ->
    ``[97, 97, 97, 98]`` -> ``[256, 97, 98]`` -> ``[256, 257]`` -> ``[258]``.

    (The package also caches each chunk's ids in ``self._cache``; you need not.)
    """
    raise NotImplementedError("not implemented yet: BPETokenizer._encode_chunk (bytes, then "
                              "apply the earliest-learned merge until none applies)")


def encode(self, text: str, allowed_special="none") -> list[int]:
    """Encode ``text``; the special tokens named by ``allowed_special`` become one id each.

    ``allowed_special`` is one of:

    - ``"none"``: every special token's text is ordinary text; return
      ``self.encode_ordinary(text)`` (so ``decode(encode(s)) == s`` for every string);
    - ``"all"``: every key of ``self.special_tokens``;
    - a set (or frozenset, list, tuple) of special token strings. Any that this tokenizer
      does not have: ``ValueError("unknown special tokens [...]; this tokenizer has [...]")``.

    Anything else: ``ValueError`` whose message names ``allowed_special`` and says what is
    valid. An empty allowed set is the same as ``"none"``.

    Then cut the text at every occurrence of an allowed special: each occurrence becomes
    ``self.special_tokens[s]``; each piece between them (if not empty) becomes
    ``self.encode_ordinary(piece)``, in order. Specials that are not allowed stay text.
    One way: ``regex.split`` with the escaped specials as a capturing alternation, longest
    first (so that one special that is a prefix of another cannot steal its match); the
    odd-numbered parts are then the specials.

    Example: with ``"all"``, ``"<|user_start|>hi<|user_end|>"`` -> ``[id of <|user_start|>,
    *encode_ordinary("hi"), id of <|user_end|>]``; with ``{"<|user_end|>"}`` the first
    special is encoded as its 14 characters of text.
    """
    raise NotImplementedError("not implemented yet: BPETokenizer.encode (check allowed_special, "
                              "then split at the allowed specials and encode the pieces)")
