"""The link checker: every file, test and command a note names must exist in this repo.

Three kinds of link, each checked without running anything:

- a **file**: a path relative to the note (``../../../week06_lora/src/week06_lora/lora.py``)
  that exists inside the repo; the note's own markdown links ``[text](relative/path)`` too;
- a **test**: a pytest node id relative to the repo root,
  ``week06_lora/tests/test_lora.py::test_merge_unmerge_round_trip`` (also ``::Class::test``
  and a parametrised ``test_x[id]``), whose function is defined in that file (read with
  ``ast``: nothing is imported);
- a **command**: ``make TARGET [VAR=value ...]`` where the root Makefile has a rule for
  TARGET (an explicit target, or a pattern rule ``week%-test`` / ``track%-test`` whose stem
  names a week or track folder), or ``python -m package.module [args]`` where that module
  is a file of a package in this repo with an ``if __name__ == "__main__":`` block, or is a
  package's ``__main__.py``. Leading ``VAR=value`` words and a ``.venv/bin/python`` prefix
  are allowed.

``check_note`` returns the problems as sentences (empty: the note is sound).

What it leaves out: whether a command succeeds (that is each week's tests' job), links to
the web, and Makefile features beyond rules (``include``, ``$(eval)``-made targets).
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

from track_papers.notes import ROOT, Note

# ---------------------------------------------------------------- the Makefile


def make_rules(text: str) -> tuple[set[str], list[str]]:
    """``(explicit targets, pattern targets)`` of a Makefile's rules.

    A rule line starts at column 0 with ``targets:`` (one or more names, ``:`` or ``::``,
    not ``:=``); recipe lines (a tab first), comments, variable assignments (an ``=``
    before the first ``:``), special targets (``.PHONY``) and targets made of variables
    (``$(STAMP)``) are not rules a user types. Continued lines (a trailing backslash)
    are joined first.
    """
    explicit: set[str] = set()
    patterns: list[str] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if not line or line[0] in "\t#" or line.startswith(" "):
            continue
        m = re.match(r"([^:=#]+?)\s*::?(?!=)", line)
        if not m:
            continue
        for target in m.group(1).split():
            if target.startswith(".") or "$" in target:
                continue
            if "%" in target:
                if target not in patterns:
                    patterns.append(target)
            else:
                explicit.add(target)
    return explicit, patterns


def _stem_is_a_folder(pattern: str, stem: str, root: Path) -> bool:
    """Whether a pattern rule's stem names what the Makefile's recipe will look up: a week
    folder for ``week%-x`` (stem ``06`` -> ``week06_*``), a track for ``track%-x`` (stem
    ``papers`` or ``-papers`` -> ``tracks/track_papers``); any stem for other patterns."""
    if pattern.startswith("week%"):
        return bool(stem) and any((p / "pyproject.toml").exists() for p in root.glob(f"week{stem}_*"))
    if pattern.startswith("track%"):
        name = stem.removeprefix("-")
        return bool(name) and (root / "tracks" / f"track_{name}" / "pyproject.toml").exists()
    return bool(stem)


def make_target_problem(target: str, root: Path = ROOT) -> str | None:
    """None when ``make TARGET`` has a rule in ``root/Makefile``, else why not."""
    makefile = root / "Makefile"
    if not makefile.exists():
        return f"no Makefile at the repo root for 'make {target}'"
    explicit, patterns = make_rules(makefile.read_text(encoding="utf-8"))
    if target in explicit:
        return None
    for pattern in patterns:
        head, _, tail = pattern.partition("%")
        if target.startswith(head) and target.endswith(tail) and len(target) > len(head) + len(tail):
            if _stem_is_a_folder(pattern, target[len(head):len(target) - len(tail)], root):
                return None
    return f"'make {target}': the Makefile has no such target"


# ---------------------------------------------------------------- python -m


def _package_roots(root: Path) -> list[Path]:
    """Folders that hold this repo's import packages: every ``src/`` of shared, the weeks
    and the tracks."""
    return sorted([*root.glob("*/src"), *root.glob("tracks/*/src")])


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The file ``python -m module`` runs, found in this repo's ``src/`` folders: ``a/b.py``
    or the package ``a/b/__main__.py``; None when no package here has it."""
    parts = module.split(".")
    if not all(p.isidentifier() for p in parts):
        return None
    for src in _package_roots(root):
        base = src.joinpath(*parts)
        if base.with_suffix(".py").is_file() and len(parts) > 1:
            return base.with_suffix(".py")
        if (base / "__main__.py").is_file():
            return base / "__main__.py"
    return None


def has_main_guard(path: Path) -> bool:
    """Whether a module has a top-level ``if __name__ == "__main__":`` block."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [node.test.left, *node.test.comparators]
            if any(isinstance(n, ast.Name) and n.id == "__name__" for n in names) and \
                    any(isinstance(n, ast.Constant) and n.value == "__main__" for n in names):
                return True
    return False


# ---------------------------------------------------------------- commands


def command_problem(command: str, root: Path = ROOT) -> str | None:
    """None when ``command`` is a real entry point of this repo, else why not.

    Called through the module (``links.command_problem``) by ``check_note``, so an
    exercise can swap it.
    """
    try:
        words = shlex.split(command)
    except ValueError as e:
        return f"{command!r}: cannot split it into words ({e})"
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
        words = words[1:]                                   # OMP_NUM_THREADS=1 ...
    if not words:
        return f"{command!r}: no command"
    if words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not targets:
            return f"{command!r}: names no target"
        problems = [p for t in targets if (p := make_target_problem(t, root))]
        return problems[0] if problems else None
    if re.fullmatch(r"(.*/)?python3?(\.\d+)?", words[0]):
        if len(words) < 3 or words[1] != "-m":
            return f"{command!r}: only 'python -m module' commands are checked; use one"
        path = module_file(words[2], root)
        if path is None:
            return f"{command!r}: no module {words[2]} in this repo's packages"
        if path.name != "__main__.py" and not has_main_guard(path):
            return f"{command!r}: {path.relative_to(root)} has no 'if __name__ == \"__main__\":'"
        return None
    return f"{command!r}: a command is 'make TARGET' or 'python -m module'"


# ---------------------------------------------------------------- tests and files


def _defines(tree: ast.Module, names: list[str]) -> bool:
    """Whether ``names`` (``[Class, ..., function]``) is defined in the module ``tree``."""
    body = tree.body
    for i, name in enumerate(names):
        last = i == len(names) - 1
        kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if last else (ast.ClassDef,)
        found = next((n for n in body if isinstance(n, kinds) and n.name == name), None)
        if found is None:
            return False
        body = getattr(found, "body", [])
    return True


def node_problem(test_id: str, root: Path = ROOT) -> str | None:
    """None when the pytest node id names a test function defined in its file."""
    path, _, rest = test_id.partition("::")
    if not rest:
        return f"test {test_id!r}: give 'path::test_function'"
    file = root / path
    if not (file.is_file() and file.name.startswith("test_") and file.suffix == ".py"):
        return f"test {test_id!r}: no test file {path}"
    names = re.sub(r"\[.*\]$", "", rest).split("::")
    if not _defines(ast.parse(file.read_text(encoding="utf-8")), names):
        return f"test {test_id!r}: {path} defines no {'::'.join(names)}"
    return None


def file_problem(link: str, note_path: Path, root: Path = ROOT) -> str | None:
    """None when a path relative to the note is a file or folder inside the repo."""
    target = (Path(note_path).parent / link.split("#")[0]).resolve()
    if not target.is_relative_to(root.resolve()):
        return f"file {link!r} points outside the repo"
    if not target.exists():
        return f"file {link!r} does not exist"
    return None


LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def body_links(body: str) -> list[str]:
    """The relative targets of the markdown links in a note's text (not web or anchors)."""
    return [t for t in LINK_RE.findall(body) if not re.match(r"[a-z]+:|#", t)]


def check_note(note: Note, root: Path = ROOT) -> list[str]:
    """Every problem with one note's links: its files, tests, commands and body links."""
    problems = []
    for week in note.weeks:
        if not (root / week / "pyproject.toml").exists():
            problems.append(f"week {week!r} is not a package folder of this repo")
    problems += [p for f in note.files if (p := file_problem(f, note.path, root))]
    problems += [p for t in note.tests if (p := node_problem(t, root))]
    problems += [p for c in note.commands if (p := command_problem(c, root))]
    problems += [p for f in body_links(note.body) if (p := file_problem(f, note.path, root))]
    return [f"{note.path.name}: {p}" for p in problems]


def check_notes(notes: list[Note], root: Path = ROOT) -> list[str]:
    """``check_note`` over every note."""
    return [p for n in notes for p in check_note(n, root)]
