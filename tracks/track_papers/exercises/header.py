"""Track papers exercise: read a note's header block.

Every note in ``tracks/track_papers/notes/`` starts with a header between two ``---``
lines; the package reads it with ``parse_header`` (``track_papers.notes``; ``load_note``
calls it for every note, so your version is the one the link checker, the index and the
site see while its tests run). Read ``notes/11-lora.md`` to see one.

Fill in ``parse_header`` below, then run ``make trackpapers-exercises`` (``IMPL=solutions``
runs the worked one). The tests compare your result with hand-written answers and with
PyYAML's reading of every note: the header is a small subset of YAML.
"""

from __future__ import annotations

from track_papers.notes import NoteError  # noqa: F401  (raise it for a bad header)


def parse_header(text: str) -> tuple[dict, str]:
    """``text`` (a whole note) -> ``(header dict, body)``.

    1. The first line must be ``---`` (after stripping), else raise
       ``NoteError("a note starts with a '---' line, then its header")``. The header ends
       at the next line that is ``---``; none: ``NoteError("the header has no closing
       '---' line")``. The body is every line after it, unchanged (newlines kept).
    2. Inside the header, skip blank lines and lines whose first non-space character is ``#``.
    3. A line ``key: value`` (key: letters, digits, ``_``, not starting with a digit; one
       space after the colon) sets a scalar. A line ``key:`` with nothing after it starts a
       list, filled by the following lines of the form ``  - item`` (indented, dash, space).
    4. A value (scalar or item) is stripped; in matching quotes (``"..."`` or ``'...'``) it
       is the text inside them, a string even if it looks like a number; a bare whole
       number (``2017``, ``-3``) is an ``int``; anything else is the text.
    5. Errors, as ``NoteError`` with the 1-based line number of the file: a list item when
       no list is open (``"line 2: a list item outside a list: ..."``), a key seen before
       (``"line 3: 'tier' appears twice"``), any other line (``"line 2: expected 'key:
       value' or '  - item', got ..."``).

    Example: ``'---\\nyear: 2017\\nweeks:\\n  - week01_transformer\\n---\\nText\\n'`` ->
    ``({"year": 2017, "weeks": ["week01_transformer"]}, "Text\\n")``.
    """
    raise NotImplementedError("not implemented yet: parse_header (the --- block, key: value "
                              "scalars, key: + '  - item' lists, quotes and ints, errors by line)")
