"""Every week and track folder honours the package contract of DESIGN.md.

weekNN_topic/ holds pyproject.toml (distribution "weekNN-topic" with a `dev`
extra), README.md, REFLECTION.md, weekNN_topic.ipynb, src/weekNN_topic/__init__.py
with a docstring and __all__, tests/ and, for weeks, benchmarks/.
"""

import ast
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted([*ROOT.glob("week[0-9][0-9]_*/"), *ROOT.glob("tracks/*/")])
PACKAGES = [p for p in PACKAGES if p.is_dir() and (p / "pyproject.toml").exists()]


def test_there_are_weeks():
    assert any(p.name.startswith("week00_") for p in PACKAGES)
    assert (ROOT / "shared" / "src" / "shared" / "__init__.py").exists()


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_package_contract(folder):
    name = folder.name
    for rel in ("pyproject.toml", "README.md", "REFLECTION.md", f"{name}.ipynb",
                f"src/{name}/__init__.py", "tests"):
        assert (folder / rel).exists(), f"{folder.name}/{rel} is missing"
    if name.startswith("week"):
        assert (folder / "benchmarks").is_dir(), f"{name}/benchmarks/ is missing"
        assert re.fullmatch(r"week\d\d_[a-z0-9_]+", name), f"bad week folder name {name!r}"
    meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    assert meta["name"] == name.replace("_", "-"), f"distribution name should be {name.replace('_', '-')!r}"
    assert "dev" in meta.get("optional-dependencies", {}), f"{name}: add a `dev` extra (may be empty)"
    deps = " ".join(meta.get("dependencies", []))
    assert re.search(r"\bshared\b", deps), f"{name} must depend on shared"
    assert "torch==" not in deps, f"{name} pins torch; use a range that 2.13.0 satisfies"
    init = ast.parse((folder / "src" / name / "__init__.py").read_text())
    assert ast.get_docstring(init), f"{name}/__init__.py needs a docstring describing the public API"
    assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
               for n in init.body), f"{name}/__init__.py must define __all__"
    tests = list((folder / "tests").glob("test_*.py"))
    assert tests, f"{name}/tests has no test_*.py"
    text = (folder / "REFLECTION.md").read_text()
    for heading in ("Build log", "Pivot decision", "Next week", "Paper queue", "Motivation check"):
        assert heading in text, f"{name}/REFLECTION.md lacks the {heading!r} section"


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_imports_earlier_weeks_only(folder):
    """A week may import shared and earlier weeks, never later ones."""
    if not folder.name.startswith("week"):
        return
    n = int(folder.name[4:6])
    for py in (folder / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(py.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for mod in mods:
                m = re.match(r"week(\d\d)_", mod)
                assert not m or int(m.group(1)) <= n, f"{py.relative_to(ROOT)} imports later week {mod}"


def test_makefile_has_week_pattern_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("week%-test:", "week%-notebook:", "week%-bench:", "setup:", "test:", "lint:",
                   "dashboard:", "reflect:", "help:"):
        assert target in text, f"Makefile lacks {target}"


def test_makefile_comment_names_every_week_target():
    """The pattern rules make the targets; the header comment names them for readers and tools."""
    text = (ROOT / "Makefile").read_text()
    for folder in PACKAGES:
        if folder.name.startswith("week"):
            assert f"{folder.name[:6]}-test" in text, f"add {folder.name[:6]}-test to the Makefile header"


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
