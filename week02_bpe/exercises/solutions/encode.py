"""Worked solutions: encoding one chunk and encoding with special tokens (week02 exercises)."""

import regex


def encode_chunk(self, chunk: str) -> list[int]:
    """Bytes, then the earliest-learned applicable merge, again and again."""
    ids = list(chunk.encode("utf-8"))
    while len(ids) >= 2:
        ranked = [(self.merges[p], p) for p in zip(ids, ids[1:]) if p in self.merges]
        if not ranked:
            break
        new_id, (a, b) = min(ranked)
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and ids[i] == a and ids[i + 1] == b:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out
    return ids


def encode(self, text: str, allowed_special="none") -> list[int]:
    """Allowed specials become one id each; the text between them is encoded as ordinary."""
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
    alternatives = sorted(allowed, key=len, reverse=True)
    parts = regex.split("(" + "|".join(regex.escape(s) for s in alternatives) + ")", text)
    out: list[int] = []
    for i, part in enumerate(parts):
        if i % 2 == 1:  # a captured special
            out.append(self.special_tokens[part])
        elif part:
            out.extend(self.encode_ordinary(part))
    return out
