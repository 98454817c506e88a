"""Track papers exercise: is a note's command a real entry point of this repo?

Each note lists ``commands`` that reproduce its paper. The link checker
(``track_papers.links.check_note``) asks ``command_problem`` about each one and reports
what it says; ``None`` means the command is real. Nothing may be run: read the Makefile
and the source files.

Fill in ``command_problem`` below, then run ``make trackpapers-exercises``
(``IMPL=solutions`` runs the worked one). It replaces ``track_papers.links.command_problem``
while its tests run: a made-up repo in a temporary folder with worked answers, a real note
with a broken command, and every command of the 25 notes.
"""

from __future__ import annotations

from pathlib import Path


def command_problem(command: str, root: Path) -> str | None:
    """None when ``command`` is a real entry point of the repo at ``root``, else a sentence
    saying why not. Helpers you may use: ``track_papers.links.make_rules(text)`` gives
    ``(explicit targets, pattern targets)`` of a Makefile; ``module_file(module, root)``
    the file ``python -m module`` would run (or None); ``has_main_guard(path)``.

    1. Split the command into words as a shell would (``shlex.split``; a ``ValueError``
       -> a problem containing ``"cannot split"``). Drop leading ``NAME=value`` words
       (``OMP_NUM_THREADS=1``). No words left -> a problem.
    2. ``make``: the targets are the later words that neither start with ``-`` nor contain
       ``=`` (``make week06-test TIER=core`` -> ``week06-test``). None -> a problem
       containing ``"names no target"``. Each target must be an explicit target of
       ``root / "Makefile"``, or match a pattern ``head%tail`` with a non-empty stem, where
       for ``week%...`` a folder ``root / f"week{stem}_*"`` with a ``pyproject.toml`` exists
       and for ``track%...`` the folder ``root / "tracks" / f"track_{name}"`` (``name`` =
       the stem without a leading ``-``) has one. Otherwise a problem containing ``"no such
       target"``.
    3. ``python``, ``python3`` or a path ending in ``/python`` (``.venv/bin/python``): the
       next words must be ``-m MODULE`` (else a problem containing ``"only 'python -m"``).
       ``module_file`` must find it (else a problem containing ``f"no module {MODULE}"``),
       and unless it is a ``__main__.py`` it needs a top-level ``if __name__ ==
       "__main__":`` (else a problem containing ``"has no 'if __name__"``).
    4. Anything else: a problem containing ``"a command is 'make TARGET' or 'python -m
       module'"``.
    """
    raise NotImplementedError("not implemented yet: command_problem (make targets against the "
                              "Makefile's rules, python -m against the repo's modules)")
