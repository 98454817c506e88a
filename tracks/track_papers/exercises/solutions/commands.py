"""Worked solution: is a note's command a real entry point (track papers exercises)."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

from track_papers.links import has_main_guard, make_rules, module_file


def _target_ok(target: str, root: Path) -> bool:
    explicit, patterns = make_rules((root / "Makefile").read_text(encoding="utf-8"))
    if target in explicit:
        return True
    for pattern in patterns:
        if not fnmatch.fnmatchcase(target, pattern.replace("%", "?*")):
            continue
        head, tail = pattern.split("%", 1)
        stem = target[len(head):len(target) - len(tail)] if tail else target[len(head):]
        if pattern.startswith("week%"):
            if any((d / "pyproject.toml").is_file() for d in root.glob(f"week{stem}_*")):
                return True
        elif pattern.startswith("track%"):
            name = stem[1:] if stem.startswith("-") else stem
            if name and (root / "tracks" / f"track_{name}" / "pyproject.toml").is_file():
                return True
        else:
            return True
    return False


def command_problem(command: str, root: Path) -> str | None:
    """make: every target has a rule; python -m: the module exists and can run as a script."""
    try:
        words = shlex.split(command)
    except ValueError as e:
        return f"cannot split {command!r}: {e}"
    i = 0
    while i < len(words) and re.fullmatch(r"[A-Za-z_]\w*=.*", words[i]):
        i += 1
    words = words[i:]
    if not words:
        return f"{command!r} has no command"
    program = words[0]
    if program == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        if not targets:
            return f"{command!r} names no target"
        for t in targets:
            if not (root / "Makefile").is_file() or not _target_ok(t, root):
                return f"make {t}: no such target in the Makefile"
        return None
    if program in ("python", "python3") or program.endswith("/python"):
        if words[1:2] != ["-m"] or len(words) < 3:
            return f"{command!r}: only 'python -m module' is accepted"
        path = module_file(words[2], root)
        if path is None:
            return f"{command!r}: no module {words[2]} here"
        if path.name != "__main__.py" and not has_main_guard(path):
            return f"{command!r}: {path.name} has no 'if __name__ == \"__main__\":' block"
        return None
    return f"{command!r}: a command is 'make TARGET' or 'python -m module'"
