"""``python -m track_papers``: print the paper index and any broken link.

``--write`` rewrites the table in the track's README; ``--check`` exits 1 when the README
is out of step or a note links to something that does not exist; ``--plot PATH`` saves the
papers-per-week chart (the README's ``figures/papers_per_week.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from track_papers.index import README, index_table, plot_weeks, readme_is_stale, write_readme
from track_papers.links import check_notes
from track_papers.notes import NOTES_DIR, load_notes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m track_papers", description=__doc__.split("\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the README's index table")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README or a link is stale")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH", help="save the papers-per-week chart")
    args = p.parse_args(argv)
    notes = load_notes(NOTES_DIR)
    problems = check_notes(notes)
    for line in problems:
        print(f"[papers] {line}", file=sys.stderr)
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        ax = plot_weeks(notes)
        ax.figure.tight_layout()
        ax.figure.savefig(args.plot, dpi=80)
        print(f"[papers] saved {args.plot}")
    if args.write:
        changed = write_readme(notes)
        print(f"[papers] {README.name}: {'rewritten' if changed else 'already in step'} "
              f"({len(notes)} notes)")
    elif args.check:
        stale = readme_is_stale(notes)
        if stale:
            print("[papers] the README's index is stale: python -m track_papers --write", file=sys.stderr)
        print(f"[papers] {len(notes)} notes, {len(problems)} broken links")
        return 1 if (stale or problems) else 0
    elif args.plot is None:
        print(index_table(notes))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
