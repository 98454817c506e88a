"""The README's generated index: in step with the notes, one row per note, links that
resolve; and the command line that writes and checks it."""

import re

import pytest

from track_papers.__main__ import main
from track_papers.index import (
    BEGIN,
    END,
    README,
    index_table,
    papers_per_week,
    readme_is_stale,
    render_readme,
    write_readme,
)
from track_papers.notes import NOTES_DIR, load_notes

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

NOTES = load_notes(NOTES_DIR)


def test_the_committed_readme_is_in_step():
    assert not readme_is_stale(NOTES), "run: .venv/bin/python -m track_papers --write"


def test_one_row_per_note_and_every_link_resolves():
    table = index_table(NOTES)
    rows = [r for r in table.splitlines() if re.match(r"\| \d\d ", r)]
    assert len(rows) == len(NOTES)
    for row, note in zip(rows, NOTES):
        target = re.search(r"\]\(([^)]+)\)", row).group(1)
        assert target == f"notes/{note.slug}.md" and (README.parent / target).is_file()
        assert f"| {note.fidelity} |" in row and f"`{note.commands[0]}`" in row
    assert f"{len(NOTES)} papers: 12 tier 1" in table


def test_render_and_write_on_a_copy(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text(f"# x\n\n{BEGIN}\nold table\n{END}\nafter\n", encoding="utf-8")
    assert readme_is_stale(NOTES, copy)
    assert write_readme(NOTES, copy) is True and not readme_is_stale(NOTES, copy)
    assert write_readme(NOTES, copy) is False
    text = copy.read_text(encoding="utf-8")
    assert text.startswith("# x\n\n") and text.endswith(f"{END}\nafter\n") and "old table" not in text
    with pytest.raises(ValueError, match="marker"):
        render_readme("no markers here", NOTES)


def test_papers_per_week_counts_each_week_a_note_names():
    counts = papers_per_week(NOTES)
    assert sum(sum(c.values()) for c in counts.values()) == sum(len(n.weeks) for n in NOTES)
    assert counts["08"][1] >= 2  # DeepSeek-V2 and FlashAttention-2


def test_cli_check_passes_and_prints_the_table(capsys):
    assert main(["--check"]) == 0
    assert f"{len(NOTES)} notes, 0 broken links" in capsys.readouterr().out
    assert main([]) == 0
    assert index_table(NOTES) in capsys.readouterr().out


def test_cli_plot_saves_the_chart(tmp_path, capsys):
    assert main(["--plot", str(tmp_path / "weeks.png")]) == 0
    assert (tmp_path / "weeks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| # | paper" not in capsys.readouterr().out
