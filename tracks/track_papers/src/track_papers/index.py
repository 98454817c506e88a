"""The index: one table row per note, written into the track's README between markers.

``python -m track_papers --write`` regenerates the block between ``BEGIN`` and ``END`` in
``tracks/track_papers/README.md``; ``--check`` (and ``tests/test_index.py``) fails when the
committed README is out of step with the notes. ``plot_weeks`` draws how many papers each
week reproduces, by tier.

What it leaves out: sorting by anything but the note's number, and any table the README
does not mark.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from track_papers.notes import FIDELITY, TRACK, Note

BEGIN = "<!-- paper index: generated from notes/ (python -m track_papers --write) -->"
END = "<!-- end of paper index -->"
README = TRACK / "README.md"

# ---------------------------------------------------------------- the table


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _week_label(folder: str) -> str:
    return folder[4:6] if folder.startswith("week") else folder


def index_table(notes: list[Note], link_prefix: str = "notes/", suffix: str = ".md") -> str:
    """The markdown table: paper (a link to its note), year, tier, weeks, how faithful,
    the figure measured here, the tests that check it and the command that reproduces it.

    ``link_prefix`` and ``suffix`` make the note links (``notes/01-attention.md`` from the
    README; the site uses the same shape)."""
    rows = ["| # | paper | year | tier | weeks | fidelity | measured here | tests | command |",
            "|---|---|---|---|---|---|---|---|---|"]
    for n in notes:
        number = n.slug.split("-")[0]
        weeks = ", ".join(_week_label(w) for w in n.weeks)
        rows.append(f"| {number} | [{_cell(n.short_title)}]({link_prefix}{n.slug}{suffix}) "
                    f"({_cell(n.authors)}) | {n.year} | {n.tier} | {weeks} | {n.fidelity} | "
                    f"{_cell(n.figure)} | {len(n.tests)} | `{_cell(n.commands[0])}` |")
    tiers = Counter(n.tier for n in notes)
    kinds = Counter(n.fidelity for n in notes)
    rows.append("")
    rows.append(f"{len(notes)} papers: {tiers[1]} tier 1, {tiers[2]} tier 2; "
                + ", ".join(f"{kinds[k]} {k}" for k in FIDELITY)
                + f"; {sum(len(n.tests) for n in notes)} linked tests.")
    return "\n".join(rows)


def render_readme(text: str, notes: list[Note]) -> str:
    """``text`` with the block between the markers replaced by the current table."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README lacks the marker lines {BEGIN!r} ... {END!r}")
    return text[:start + len(BEGIN)] + "\n" + index_table(notes) + "\n" + text[end:]


def readme_is_stale(notes: list[Note], readme: Path = README) -> bool:
    """Whether the committed README's table differs from the notes'."""
    text = readme.read_text(encoding="utf-8")
    return render_readme(text, notes) != text


def write_readme(notes: list[Note], readme: Path = README) -> bool:
    """Rewrite the README's table; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    new = render_readme(text, notes)
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


# ---------------------------------------------------------------- a figure


def papers_per_week(notes: list[Note]) -> dict[str, Counter]:
    """``{week label: Counter({tier: papers})}``, every week a note names."""
    out: dict[str, Counter] = {}
    for n in notes:
        for w in n.weeks:
            out.setdefault(_week_label(w), Counter())[n.tier] += 1
    return dict(sorted(out.items()))


def plot_weeks(notes: list[Note], ax=None):
    """A stacked bar chart of papers per week (tier 1 below, tier 2 on top)."""
    import matplotlib.pyplot as plt

    counts = papers_per_week(notes)
    ax = ax or plt.subplots(figsize=(7, 3))[1]
    labels = list(counts)
    one = [counts[w][1] for w in labels]
    two = [counts[w][2] for w in labels]
    ax.bar(labels, one, label="tier 1", color="#33658a")
    ax.bar(labels, two, bottom=one, label="tier 2", color="#86bbd8")
    ax.set_xlabel("week")
    ax.set_ylabel("papers")
    ax.set_title("Papers each week reproduces (a paper counts in each week it names)")
    ax.legend()
    return ax
