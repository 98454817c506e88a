"""track_papers: the paper map. Which of the curriculum's papers this repo reproduces,
where, and how faithfully.

One markdown note per paper in ``tracks/track_papers/notes/`` (a header block, then the
one idea, the key equation, what the repo reproduces and how faithfully). The public API:

- ``parse_header(text) -> (dict, body)``, ``Note``, ``load_note``, ``load_notes``,
  ``reading_order``, ``NoteError``: the notes and their header (``notes.py``)
- ``check_note(note) -> [problem]``, ``check_notes``, ``command_problem``, ``node_problem``,
  ``file_problem``, ``make_rules``, ``module_file``: the link checker against this repo's
  files, test functions, Makefile rules and ``python -m`` entry points (``links.py``)
- ``index_table``, ``write_readme``, ``readme_is_stale``, ``plot_weeks``: the README's
  generated index (``index.py``; ``python -m track_papers --write``)
- ``SiteConfig``, ``build_site(out)``: the static site with MkDocs (``site.py``;
  ``python -m track_papers.site --out DIR``, which ``make papers`` runs)
"""

from track_papers.index import (
    index_table,
    papers_per_week,
    plot_weeks,
    readme_is_stale,
    write_readme,
)
from track_papers.links import (
    check_note,
    check_notes,
    command_problem,
    file_problem,
    make_rules,
    module_file,
    node_problem,
)
from track_papers.notes import (
    NOTES_DIR,
    Note,
    NoteError,
    load_note,
    load_notes,
    parse_header,
    reading_order,
)


def __getattr__(name):
    """``SiteConfig`` and ``build_site`` load ``site.py`` on first use, so that
    ``python -m track_papers.site`` does not find its module imported already."""
    if name in ("SiteConfig", "build_site"):
        from track_papers import site

        return getattr(site, name)
    raise AttributeError(f"module 'track_papers' has no attribute {name!r}")


__all__ = [
    "NOTES_DIR", "Note", "NoteError", "SiteConfig", "build_site", "check_note", "check_notes",
    "command_problem", "file_problem", "index_table", "load_note", "load_notes", "make_rules",
    "module_file", "node_problem", "papers_per_week", "parse_header", "plot_weeks",
    "readme_is_stale", "reading_order", "write_readme",
]
