"""Paper notes: one markdown file per paper, with a small header this module reads.

A note (``tracks/track_papers/notes/NN-short-name.md``) starts with a header block between
two ``---`` lines, then the note itself::

    ---
    title: "LoRA: Low-Rank Adaptation of Large Language Models"
    authors: Hu et al.
    year: 2021
    arxiv: "2106.09685"
    tier: 1
    fidelity: exact
    figure: "logits equal PEFT's; unmerged forward +2.5% (char-small)"
    weeks:
      - week06_lora
    files:
      - ../../../week06_lora/src/week06_lora/lora.py
    tests:
      - week06_lora/tests/test_peft_parity.py::test_peft_adapter_loads_into_ours_with_the_same_logits
    commands:
      - make week06-test
    ---
    ## The one idea
    ...

The header is a small subset of YAML (``key: value`` scalars and ``key:`` followed by
``  - item`` lists; values in quotes are strings, bare whole numbers are ints), so any
YAML reader gives the same dict (``tests/test_notes.py`` checks it against PyYAML); the
parser here has no dependency. ``files`` are paths relative to the note; ``tests`` are
pytest node ids relative to the repo root; ``commands`` are ``make TARGET`` or ``python -m
module`` lines (``track_papers.links`` checks all three against the repo).

What it leaves out: the rest of YAML (flow lists, nesting, multi-line strings, anchors),
and any judgement of the note's prose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------- where things are

TRACK = Path(__file__).resolve().parents[2]          # tracks/track_papers
ROOT = TRACK.parents[1]                              # the repo root
NOTES_DIR = TRACK / "notes"

REQUIRED = ("title", "authors", "year", "tier", "fidelity", "figure",
            "weeks", "files", "tests", "commands")
OPTIONAL = ("arxiv", "url", "short")
LISTS = ("weeks", "files", "tests", "commands")
FIDELITY = {
    "exact": "equal to a reference implementation (a test compares them)",
    "measured": "the paper's effect measured here, at CPU size",
    "partial": "part of the paper; the rest is named in the note",
}
ARXIV_RE = re.compile(r"\d{4}\.\d{4,5}")


class NoteError(ValueError):
    """A note whose header cannot be read, or lacks what the map needs."""


# ---------------------------------------------------------------- the header


def _scalar(text: str):
    """A header value: quotes removed, a bare whole number as an int, else the text."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def parse_header(text: str) -> tuple[dict, str]:
    """``(header, body)`` of a note: the ``---`` block at the top as a dict, and the rest.

    Called through the module (``notes.parse_header``) by ``load_note``, so an exercise can
    swap it. Raises ``NoteError`` naming the line for anything outside the subset.
    """
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise NoteError("a note starts with a '---' line, then its header")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        raise NoteError("the header has no closing '---' line") from None
    header: dict = {}
    current = None                                    # the key whose list is being read
    for number, raw in enumerate(lines[1:end], start=2):
        line = raw.rstrip("\n").rstrip()
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = re.fullmatch(r"\s+- (.*)", line)
        if item:
            if current is None:
                raise NoteError(f"line {number}: a list item outside a list: {line!r}")
            header[current].append(_scalar(item.group(1)))
            continue
        pair = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*):(?: (.*))?", line)
        if not pair:
            raise NoteError(f"line {number}: expected 'key: value' or '  - item', got {line!r}")
        key, value = pair.group(1), (pair.group(2) or "").strip()
        if key in header:
            raise NoteError(f"line {number}: {key!r} appears twice")
        if value:
            header[key], current = _scalar(value), None
        else:
            header[key], current = [], key
    return header, "".join(lines[end + 1:])


# ---------------------------------------------------------------- the note


@dataclass(frozen=True)
class Note:
    """One paper, as its note's header says, plus the note's text."""

    path: Path
    title: str
    authors: str
    year: int
    tier: int
    fidelity: str
    figure: str
    weeks: tuple[str, ...]
    files: tuple[str, ...]
    tests: tuple[str, ...]
    commands: tuple[str, ...]
    arxiv: str | None = None
    url: str | None = None
    short: str | None = None
    body: str = field(default="", repr=False)

    @property
    def slug(self) -> str:
        """The file name without ``.md``: ``01-attention``."""
        return self.path.stem

    @property
    def link(self) -> str:
        """Where to read the paper: its arXiv page, else its ``url``."""
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else str(self.url)

    @property
    def short_title(self) -> str:
        """The header's ``short`` name, else the title up to its first colon (``DeepSeek-V2``)."""
        return self.short or self.title.split(":")[0].strip()


def note_from_text(text: str, path: Path) -> Note:
    """Parse and check one note's text (``path`` names it in errors and anchors ``files``)."""
    header, body = parse_header(text)
    name = Path(path).name
    missing = [k for k in REQUIRED if k not in header]
    if missing:
        raise NoteError(f"{name}: the header lacks {missing}")
    unknown = sorted(set(header) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise NoteError(f"{name}: unknown header keys {unknown}; valid: {[*REQUIRED, *OPTIONAL]}")
    for key in LISTS:
        value = header[key]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise NoteError(f"{name}: {key!r} must be a non-empty list of '  - item' lines")
    for key in ("year", "tier"):
        if not isinstance(header[key], int):
            raise NoteError(f"{name}: {key!r} must be a whole number, got {header[key]!r}")
    if header["tier"] not in (1, 2):
        raise NoteError(f"{name}: tier is 1 or 2, got {header['tier']}")
    if header["fidelity"] not in FIDELITY:
        raise NoteError(f"{name}: fidelity is one of {sorted(FIDELITY)}, got {header['fidelity']!r}")
    arxiv, url = header.get("arxiv"), header.get("url")
    if arxiv is None and url is None:
        raise NoteError(f"{name}: give an 'arxiv' id or a 'url'")
    if arxiv is not None and not (isinstance(arxiv, str) and ARXIV_RE.fullmatch(arxiv)):
        raise NoteError(f"{name}: arxiv must be a quoted id like \"2106.09685\", got {arxiv!r}")
    return Note(path=Path(path), title=str(header["title"]), authors=str(header["authors"]),
                year=header["year"], tier=header["tier"], fidelity=header["fidelity"],
                figure=str(header["figure"]),
                weeks=tuple(header["weeks"]), files=tuple(header["files"]),
                tests=tuple(header["tests"]), commands=tuple(header["commands"]),
                arxiv=arxiv, url=url,
                short=None if header.get("short") is None else str(header["short"]), body=body)


def load_note(path: Path) -> Note:
    """Read one note file."""
    path = Path(path)
    return note_from_text(path.read_text(encoding="utf-8"), path)


def load_notes(folder: Path = NOTES_DIR) -> list[Note]:
    """Every ``*.md`` note in ``folder``, in file-name order (the ``NN-`` prefix)."""
    paths = sorted(Path(folder).glob("*.md"))
    if not paths:
        raise NoteError(f"no notes (*.md) in {folder}")
    return [load_note(p) for p in paths]


def reading_order(notes: list[Note]) -> list[Note]:
    """The notes in the order a learner meets them: by first week, tier 1 before 2, year."""
    return sorted(notes, key=lambda n: (min(n.weeks), n.tier, n.year, n.slug))
