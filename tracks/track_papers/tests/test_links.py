"""The link checker: on a made-up repo with worked answers, against the tools that are the
real references (GNU make's own rule lookup, pytest's collection, Python's import
machinery), and on every note of the map."""

import importlib.util
import shutil
import subprocess
import sys
from importlib.machinery import PathFinder
from pathlib import Path

import pytest

from track_papers.links import (
    check_note,
    command_problem,
    file_problem,
    make_rules,
    make_target_problem,
    module_file,
    node_problem,
)
from track_papers.notes import NOTES_DIR, ROOT, load_notes, note_from_text

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

NOTES = load_notes(NOTES_DIR)

MAKEFILE = """\
# a comment: not a rule
VENV := .venv
STAMP = $(VENV)/.stamp
msg = $(error no folder week$(1)_* here; weeks are: x)
.PHONY: help test
help: ## list every target
\t@echo "recipe: not a rule"
test lint: setup
$(STAMP): pyproject.toml
speedrun: setup \\
    lint
setup: ## install
week%-test: setup
\t@echo week $*
track%-test: setup
\t@echo track $*
"""


def _fake_repo(root: Path) -> Path:
    """A repo with the Makefile above, a week, a track and modules with and without
    ``__main__`` guards."""
    (root / "Makefile").write_text(MAKEFILE)
    for folder in ("week06_lora", "tracks/track_papers"):
        (root / folder).mkdir(parents=True)
        (root / folder / "pyproject.toml").write_text("[project]\n")
    pkg = root / "week06_lora" / "src" / "week06_lora"
    (pkg / "cli").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "run.py").write_text('def main():\n    pass\n\n\nif __name__ == "__main__":\n    main()\n')
    (pkg / "lib.py").write_text("def main():\n    pass\n")
    (pkg / "cli" / "__init__.py").write_text("")
    (pkg / "cli" / "__main__.py").write_text("print('hi')\n")
    tests = root / "week06_lora" / "tests"
    tests.mkdir()
    (tests / "test_x.py").write_text(
        "import pytest\n\n\n@pytest.mark.parametrize('n', [1, 2])\ndef test_a(n):\n    pass\n\n\n"
        "class TestB:\n    def test_c(self):\n        pass\n\n\ndef helper():\n    pass\n")
    return root


# ---------------------------------------------------------------- the Makefile


def test_make_rules_of_a_worked_makefile():
    """Rules: help, test and lint (two targets on one line), speedrun (a continued line),
    setup; patterns week%-test, track%-test. Not rules: the assignments (one with ': '
    after its '='), .PHONY, $(STAMP), the recipe line and the comment."""
    explicit, patterns = make_rules(MAKEFILE)
    assert explicit == {"help", "test", "lint", "speedrun", "setup"}
    assert patterns == ["week%-test", "track%-test"]


def test_commands_in_a_made_up_repo(tmp_path):
    root = _fake_repo(tmp_path)
    good = ["make speedrun", "make week06-test TIER=core", "make -s test", "make trackpapers-test",
            "make track-papers-test", "OMP_NUM_THREADS=1 python -m week06_lora.run --steps 3",
            ".venv/bin/python -m week06_lora.cli", "python3 -m week06_lora.run"]
    for command in good:
        assert command_problem(command, root) is None, command
    bad = {"make nothing": "no such target", "make week99-test": "no such target",
           "make trackzzz-test": "no such target", "make week-test": "no such target",
           "make": "names no target", "python -m week06_lora.lib": "has no 'if __name__",
           "python -m week06_lora.nosuch": "no module week06_lora.nosuch",
           "python -m week06_lora": "no module", "python week06_lora/run.py": "only 'python -m",
           "pytest -q": "a command is 'make TARGET' or 'python -m module'",
           "make 'unclosed": "cannot split"}
    for command, says in bad.items():
        problem = command_problem(command, root)
        assert problem is not None and says in problem, (command, problem)


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_target_lookup_agrees_with_gnu_make(tmp_path):
    """`make -q TARGET` runs nothing and exits 2 only when make has no rule for TARGET: on
    the made-up Makefile and for every make command of the notes on the real one."""
    root = _fake_repo(tmp_path)

    def gnu_has_rule(target, where):
        done = subprocess.run(["make", "-q", "-C", str(where), target], capture_output=True)
        return done.returncode != 2

    for target in ("speedrun", "help", "lint", "week06-test", "nothing", "setup-x"):
        assert gnu_has_rule(target, root) == (make_target_problem(target, root) is None), target
    targets = {c.split()[1] for n in NOTES for c in n.commands if c.startswith("make ")}
    assert targets
    for target in sorted(targets):
        assert gnu_has_rule(target, ROOT) and make_target_problem(target, ROOT) is None, target
    assert not gnu_has_rule("no-such-target-here", ROOT)


# ---------------------------------------------------------------- python -m


def _import_origin(module: str) -> Path:
    """Where Python's import system finds the file ``python -m module`` runs, without
    executing any package (a top-level find_spec imports nothing)."""
    parts = module.split(".")
    spec = importlib.util.find_spec(parts[0])
    for i in range(1, len(parts)):
        spec = PathFinder.find_spec(".".join(parts[:i + 1]), spec.submodule_search_locations)
    if spec.submodule_search_locations:  # a package: -m runs its __main__
        spec = PathFinder.find_spec(module + ".__main__", spec.submodule_search_locations)
    return Path(spec.origin).resolve()


def test_module_files_are_where_python_finds_them():
    modules = {c.split(" -m ")[1].split()[0] for n in NOTES for c in n.commands if " -m " in c}
    modules |= {"track_papers", "track_papers.site", "week12_nanochat.speedrun"}
    for module in sorted(modules):
        assert module_file(module, ROOT).resolve() == _import_origin(module), module


# ---------------------------------------------------------------- tests and files


def test_node_ids_agree_with_pytest_collection(tmp_path):
    root = _fake_repo(tmp_path)
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "--rootdir", str(root), "week06_lora/tests/test_x.py"],
                          cwd=root, capture_output=True, text=True)
    collected = {line.strip() for line in done.stdout.splitlines() if "::" in line}
    assert collected == {"week06_lora/tests/test_x.py::test_a[1]", "week06_lora/tests/test_x.py::test_a[2]",
                         "week06_lora/tests/test_x.py::TestB::test_c"}
    for node in collected | {"week06_lora/tests/test_x.py::test_a"}:
        assert node_problem(node, root) is None, node
    for node, says in {"week06_lora/tests/test_x.py::test_missing": "defines no test_missing",
                       "week06_lora/tests/test_x.py::TestB::test_a": "defines no TestB::test_a",
                       "week06_lora/tests/test_x.py::helper::x": "defines no",
                       "week06_lora/tests/test_y.py::test_a": "no test file",
                       "week06_lora/tests/test_x.py": "give 'path::test_function'"}.items():
        problem = node_problem(node, root)
        assert problem is not None and says in problem, (node, problem)


def test_file_links_stay_inside_the_repo():
    note = NOTES[0].path
    assert file_problem("../../../week06_lora/src/week06_lora/lora.py", note) is None
    assert "does not exist" in file_problem("../../../week06_lora/src/week06_lora/nope.py", note)
    assert "outside the repo" in file_problem("../../../../etc/passwd", note)


def test_a_broken_note_is_caught():
    """Three broken links in a copy of a real note: each is reported, and nothing else."""
    note = next(n for n in NOTES if n.slug.startswith("11-"))
    text = note.path.read_text(encoding="utf-8")
    broken = (text.replace("week06_lora/lora.py\n", "week06_lora/lora_nope.py\n", 1)
                  .replace("::test_merge_unmerge_round_trip", "::test_merge_nope", 1)
                  .replace("  - make week06-bench", "  - make week06-nope", 1))
    problems = check_note(note_from_text(broken, note.path), ROOT)
    assert len(problems) == 3, problems
    assert all(p.startswith("11-lora.md: ") for p in problems)


@pytest.mark.parametrize("note", NOTES, ids=lambda n: n.slug)
def test_every_note_links_exist(note):
    """Every file, test function, command and body link of the note is real."""
    assert check_note(note, ROOT) == []
