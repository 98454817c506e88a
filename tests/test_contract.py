"""Every week and track folder honours the package contract of DESIGN.md.

weekNN_topic/ holds pyproject.toml (distribution "weekNN-topic" with a `dev`
extra), README.md, REFLECTION.md, weekNN_topic.ipynb, src/weekNN_topic/__init__.py
with a docstring and __all__, tests/ and, for weeks, benchmarks/.

Imports, in src/, tests/ and benchmarks/ alike (import statements and
``pytest.importorskip`` / ``importlib.import_module`` of a literal name): a week
imports shared and earlier weeks only; every week (and shared) it imports is in
its ``dependencies``; every third-party module comes from a distribution it
declares (``dependencies``, an optional extra such as ``dev`` for peers, or the
dependencies of the repo packages it depends on).
"""

import ast
import re
import sys
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.core  # this file's tier (README: "Tiers")

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


# ---------------------------------------------------------------- imports and dependencies

# what the Makefile installs for every package from requirements-dev.txt (the test runner and
# the notebook tools); a package need not list them in its own `dev` extra
RUNNER_TOOLS = {"pytest", "_pytest", "hypothesis", "nbclient", "nbformat", "ipykernel"}
FOLDERS = {"shared": ROOT / "shared", **{p.name: p for p in PACKAGES}}  # import name -> folder
REPO_PACKAGES = set(FOLDERS)


def _python_files(folder):
    """(part, path) for every .py file in src/, tests/ and benchmarks/."""
    for part in ("src", "tests", "benchmarks"):
        for py in sorted((folder / part).rglob("*.py")):
            yield part, py


DYNAMIC_IMPORTS = {"importorskip", "import_module", "__import__"}  # f("module") imports too


def _absolute_imports(py):
    """(top-level module, full name, line) of every absolute import in ``py``: import
    statements, and ``pytest.importorskip`` / ``importlib.import_module`` of a literal name."""
    for node in ast.walk(ast.parse(py.read_text(), str(py))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) \
                in DYNAMIC_IMPORTS and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            yield name.split(".")[0], name, node.lineno


def _local_modules(folder, py):
    """Modules a file imports from its own folder (tests' conftest, benchmarks' helpers)."""
    return {p.stem for p in py.parent.glob("*.py")} | {p.name for p in py.parent.iterdir()
                                                       if (p / "__init__.py").exists()}


def _normalise(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _declared(folder):
    """(names in `dependencies`, names in any optional extra), normalised distribution names."""
    meta = tomllib.loads((folder / "pyproject.toml").read_text())["project"]

    def names(reqs):
        return {_normalise(re.match(r"[A-Za-z0-9_.\-]+", r.strip()).group(0)) for r in reqs}

    extras = set().union(*[names(v) for v in meta.get("optional-dependencies", {}).values()])
    return names(meta.get("dependencies", [])), extras


# Known breaks of the rules below, each with the fix it waits for. An entry that no longer
# matches an import fails test_known_breaks_still_exist, so the list only shrinks.
KNOWN_BREAKS: set[tuple[str, str]] = set()  # (file, later week) pairs allowed for now: none


def _week_number(name):
    m = re.match(r"week(\d\d)_", name)
    return int(m.group(1)) if m else None


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_imports_earlier_weeks_only(folder):
    """A week's code, tests and benchmarks may import shared and earlier weeks, never later ones."""
    n = _week_number(folder.name + "_")
    if n is None:
        return
    for _, py in _python_files(folder):
        for top, name, line in _absolute_imports(py):
            if (str(py.relative_to(ROOT)), top) in KNOWN_BREAKS:
                continue
            m = _week_number(top)
            assert m is None or m <= n, \
                f"{py.relative_to(ROOT)}:{line} imports later week {name}"


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_imported_repo_packages_are_dependencies(folder):
    """Every other week (and shared) that src/, tests/ or benchmarks/ import is in
    `dependencies`: an editable install of this package alone must bring them."""
    deps, _ = _declared(folder)
    for _, py in _python_files(folder):
        for top, name, line in _absolute_imports(py):
            if (str(py.relative_to(ROOT)), top) in KNOWN_BREAKS:
                continue
            if top in REPO_PACKAGES and top != folder.name:
                assert _normalise(top) in deps, (
                    f"{py.relative_to(ROOT)}:{line} imports {name}; add "
                    f"{top.replace('_', '-')!r} to {folder.name}/pyproject.toml dependencies")


@pytest.mark.parametrize("folder", PACKAGES, ids=lambda p: p.name)
def test_third_party_imports_are_declared(folder):
    """Every third-party module imported is provided by a distribution the package declares:
    in `dependencies`, or in an optional extra (`dev` for peers that tests and benchmarks,
    or lazy imports in src/, compare against). Distributions are looked up in the venv; a
    module that is not installed passes only when an extra names a distribution of its name
    (week08's `gpu` extra: flash-attn for `import flash_attn`, CUDA only)."""
    from importlib.metadata import packages_distributions

    provides = packages_distributions()  # top-level module -> distributions that install it
    deps, extras = _declared(folder)
    # what the repo packages in `dependencies` depend on comes with them, transitively
    # (week07 -> shared -> torch); their optional extras do not (week05 -> week04's dev extra)
    inherited, todo = set(), [d for d in deps if d.replace("-", "_") in REPO_PACKAGES]
    while todo:
        pkg = todo.pop().replace("-", "_")
        sub = _declared(FOLDERS[pkg])[0] - inherited
        inherited |= sub
        todo += [d for d in sub if d.replace("-", "_") in REPO_PACKAGES]
    for _, py in _python_files(folder):
        local = _local_modules(folder, py)
        for top, name, line in _absolute_imports(py):
            if top in sys.stdlib_module_names or top in REPO_PACKAGES or top in local \
                    or top in RUNNER_TOOLS or top == "__future__":
                continue
            dists = {_normalise(d) for d in provides.get(top, [])}
            if not dists and _normalise(top) in extras:
                continue  # an optional extra this machine lacks (a GPU kernel), named alike
            assert dists, f"{py.relative_to(ROOT)}:{line} imports {name}, which is not installed"
            assert dists & (deps | extras | inherited), (
                f"{py.relative_to(ROOT)}:{line} imports {name} (from {sorted(dists)}); declare it "
                f"in {folder.name}/pyproject.toml (dependencies, or the dev extra for a peer)")


def test_known_breaks_still_exist():
    for rel, module in KNOWN_BREAKS:
        path = ROOT / rel
        imported = {top for top, _, _ in _absolute_imports(path)} if path.exists() else set()
        assert module in imported, f"{rel} no longer imports {module}: drop it from KNOWN_BREAKS"


def test_makefile_has_week_pattern_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("week%-test:", "week%-notebook:", "week%-bench:", "setup:", "test:", "lint:",
                   "dashboard:", "reflect:", "help:", "week%-exercises:", "path:", "progress:",
                   "curriculum:", "track%-test:", "track%-notebook:", "track%-bench:",
                   "track%-exercises:"):
        assert target in text, f"Makefile lacks {target}"


def test_makefile_comment_names_every_week_target():
    """The pattern rules make the targets; the header comment names them for readers and tools."""
    text = (ROOT / "Makefile").read_text()
    for folder in PACKAGES:
        if folder.name.startswith("week"):
            assert f"{folder.name[:6]}-test" in text, f"add {folder.name[:6]}-test to the Makefile header"
        else:
            target = f"track{folder.name.removeprefix('track_')}-test"
            assert target in text, f"add {target} to the Makefile header"


def test_ci_runs_make_test():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


TIERS = ("core", "stretch", "mega")


def _tiers_of(decorators) -> set[str]:
    """The tier markers among ``@pytest.mark.<tier>`` decorators or a ``pytestmark`` value."""
    found = set()
    for node in decorators:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Attribute) and sub.attr in TIERS and \
                    isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark":
                found.add(sub.attr)
    return found


def test_every_test_has_exactly_one_tier():
    """Each test is Core, Stretch or Mega (the root pyproject registers the markers):
    through its file's ``pytestmark`` or its own decorator, never two."""
    files = [*ROOT.glob("week*/tests/test_*.py"), *ROOT.glob("tracks/*/tests/test_*.py"),
             *ROOT.glob("shared/tests/test_*.py"), *ROOT.glob("tests/test_*.py")]
    assert files
    bad = []
    for f in files:
        tree = ast.parse(f.read_text())
        module = set()
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
                module |= _tiers_of([node.value])
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.name.startswith("test"):
                tiers = module | _tiers_of(node.decorator_list)
                if len(tiers) != 1:
                    bad.append(f"{f.relative_to(ROOT)}::{node.name}: tiers {sorted(tiers)}")
    assert not bad, "each test needs one of pytest.mark." + "/".join(TIERS) + ":\n" + \
        "\n".join(bad[:20])
