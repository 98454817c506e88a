"""The notes and their header: the parser against worked examples and against PyYAML, and
every note against what the curriculum lists and what the weeks' READMEs measured."""

import re
from pathlib import Path

import pytest
import tomllib
import yaml

from track_papers import notes as notes_mod
from track_papers.notes import NOTES_DIR, ROOT, NoteError, load_notes, note_from_text, parse_header

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

NOTES = load_notes(NOTES_DIR)
CURRICULUM = tomllib.loads((ROOT / "curriculum.toml").read_text(encoding="utf-8"))
WEEK_PAPERS = {w["folder"]: w["papers"] for w in CURRICULUM["week"]}

# the curriculum's twelve tier-1 papers, by arXiv id (or the page of the two that have none)
TIER1 = {"1706.03762", "2104.09864", "2106.09685", "2305.14314", "1612.00796",
         "https://thinkingmachines.ai/blog/lora/", "2405.04434", "2307.08691", "2305.18290",
         "2501.12948", "2210.03629", "1910.02054"}


# ---------------------------------------------------------------- the parser


def test_worked_example():
    """Scalars, a quoted value holding ': ', a bare number (int), a quoted number (str), a
    list, a comment and blank lines; the body is everything after the closing line."""
    text = ('---\ntitle: "RoFormer: rotary"\nyear: 2021\narxiv: "2104.09864"\n\n'
            "# a comment\nweeks:\n  - week04_modern_arch_tools\n  - week08_sota\n"
            "short: RoPE (rotary)\n---\n## The one idea\nRotate.\n")
    header, body = parse_header(text)
    assert header == {"title": "RoFormer: rotary", "year": 2021, "arxiv": "2104.09864",
                      "weeks": ["week04_modern_arch_tools", "week08_sota"],
                      "short": "RoPE (rotary)"}
    assert body == "## The one idea\nRotate.\n"
    assert parse_header("---\n---\n") == ({}, "")


@pytest.mark.parametrize("text, says", [
    ("title: x\n", "starts with a '---'"),
    ("---\ntitle: x\n", "no closing"),
    ("---\n  - orphan\n---\n", "line 2: a list item outside a list"),
    ("---\ntier: 1\ntier: 2\n---\n", "line 3: 'tier' appears twice"),
    ("---\ntitle = x\n---\n", "line 2: expected 'key: value'"),
])
def test_errors_name_the_line(text, says):
    with pytest.raises(NoteError, match=re.escape(says)):
        parse_header(text)


def _header_block(text: str) -> str:
    return text.split("---\n", 2)[1]


@pytest.mark.parametrize("note", NOTES, ids=lambda n: n.slug)
def test_every_header_equals_pyyaml(note):
    """The header subset is YAML: PyYAML reads each note's header to the same dict."""
    text = note.path.read_text(encoding="utf-8")
    assert parse_header(text)[0] == yaml.safe_load(_header_block(text))


def test_a_note_is_checked_for_what_the_map_needs():
    good = NOTES[0].path.read_text(encoding="utf-8")
    path = NOTES[0].path
    assert note_from_text(good, path).title == NOTES[0].title
    for old, new, says in [("tier: 2", "tier: 3", "tier is 1 or 2"),
                           ("fidelity: exact", "fidelity: roughly", "fidelity is one of"),
                           ('arxiv: "1412.6980"', "arxiv: 1412.6980x", "arxiv must be"),
                           ("year: 2015", "year: soon", "'year' must be a whole number"),
                           ("tier: 2\n", "tier: 2\ncolour: red\n", "unknown header keys")]:
        assert old in good
        with pytest.raises(NoteError, match=re.escape(says)):
            note_from_text(good.replace(old, new, 1), path)
    with pytest.raises(NoteError, match="lacks"):
        note_from_text(re.sub(r"\ncommands:\n(  - .*\n)+", "\n", good), path)


def test_load_note_calls_the_parser_through_the_module(monkeypatch):
    """The seam an exercise uses: load_note looks parse_header up at call time."""
    seen = []

    def spy(text):
        seen.append(len(text))
        return parse_header(text)

    monkeypatch.setattr(notes_mod, "parse_header", spy)
    assert notes_mod.load_note(NOTES[0].path).slug == NOTES[0].slug and seen


# ---------------------------------------------------------------- the notes


def test_twenty_five_notes_and_the_twelve_tier_one_papers():
    assert len(NOTES) >= 25
    assert len({n.slug.split("-")[0] for n in NOTES}) == len(NOTES), "two notes share a number"
    tier1 = {n.arxiv or n.url for n in NOTES if n.tier == 1}
    assert tier1 == TIER1


@pytest.mark.parametrize("note", NOTES, ids=lambda n: n.slug)
def test_the_paper_is_one_the_curriculum_lists_for_its_weeks(note):
    listed = [p for w in note.weeks for p in WEEK_PAPERS.get(w, [])]
    key = f"arXiv:{note.arxiv}" if note.arxiv else note.title.split(":")[0]
    assert any(key in p for p in listed), f"{note.slug}: {key!r} is not in {note.weeks}' papers"


SECTIONS = ("## The one idea", "## The key equation", "## What this repo reproduces", "## How faithful")


@pytest.mark.parametrize("note", NOTES, ids=lambda n: n.slug)
def test_every_note_has_its_sections_an_equation_and_its_command(note):
    at = [note.body.find(s) for s in SECTIONS]
    assert all(i >= 0 for i in at) and at == sorted(at), f"{note.slug}: sections {SECTIONS} in order"
    equation = note.body[at[1]:at[2]]
    assert re.search(r"\$\$.+?\$\$", equation, re.S), f"{note.slug}: no $$ ... $$ equation"
    reproduces = note.body[at[2]:at[3]]
    entries = [c.split("-m ")[1].split()[0] if " -m " in c else c.split()[1] for c in note.commands]
    assert any(e in reproduces for e in entries), f"{note.slug}: the section names none of {entries}"


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+\.\d+", text)


@pytest.mark.parametrize("note", NOTES, ids=lambda n: n.slug)
def test_the_figure_is_quoted_from_the_weeks_readmes(note):
    """Every decimal number of the header's figure appears in a README of the note's weeks:
    the map quotes what a week measured, it does not round or invent."""
    readmes = " ".join((ROOT / w / "README.md").read_text(encoding="utf-8") for w in note.weeks)
    missing = [x for x in _numbers(note.figure) if x not in readmes]
    assert not missing, f"{note.slug}: {missing} appear in no README of {note.weeks}"


def test_notes_live_in_the_track():
    assert all(Path(n.path).parent == NOTES_DIR for n in NOTES)
