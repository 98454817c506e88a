"""Worked solution: a note's header block (track papers exercises)."""

from __future__ import annotations

import re

from track_papers.notes import NoteError

KEY = re.compile(r"[A-Za-z_]\w*")


def _value(raw: str):
    raw = raw.strip()
    if len(raw) > 1 and raw[0] in "'\"" and raw[-1] == raw[0]:
        return raw[1:-1]
    try:
        return int(raw) if raw.lstrip("-").isdigit() else raw
    except ValueError:
        return raw


def parse_header(text: str) -> tuple[dict, str]:
    """Walk the lines once: find the closing '---', then read scalars and lists."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise NoteError("a note starts with a '---' line, then its header")
    closing = [i for i, line in enumerate(lines) if i > 0 and line.strip() == "---"]
    if not closing:
        raise NoteError("the header has no closing '---' line")
    end = closing[0]
    header, open_list = {}, None
    for i in range(1, end):
        line, n = lines[i].rstrip(), i + 1
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[:1].isspace() and stripped.startswith("- "):
            if open_list is None:
                raise NoteError(f"line {n}: a list item outside a list: {line!r}")
            open_list.append(_value(stripped[2:]))
            continue
        key, colon, rest = line.partition(":")
        if not colon or not KEY.fullmatch(key) or (rest and not rest.startswith(" ")):
            raise NoteError(f"line {n}: expected 'key: value' or '  - item', got {line!r}")
        if key in header:
            raise NoteError(f"line {n}: {key!r} appears twice")
        if rest.strip():
            header[key], open_list = _value(rest), None
        else:
            header[key] = open_list = []
    return header, "".join(lines[end + 1:])
