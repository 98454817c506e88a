"""Exercises: the learner's own code, checked by the week's existing reference tests.

Each week that has exercises keeps them in ``weekNN_x/exercises/``:

- one stub file per topic (``engine.py``, ``optim.py``, ...): functions that raise
  ``NotImplementedError("not implemented yet: ...")`` under a docstring that says what to
  build; the learner fills them in;
- ``solutions/``: the same files, worked;
- ``exercises.toml``: the manifest, one ``[[exercise]]`` table each::

      name = "backward"                   # what the learner builds
      tier = "core"                       # core | stretch | mega
      file = "engine.py"                  # the stub (and solutions/engine.py)
      function = "backward"               # the function in it
      replaces = ["week00_micrograd.engine:Value.backward"]   # the adapter: where it plugs in
      tests = ["tests/test_engine_vs_torch.py", "tests/test_deep_graph.py::test_x"]
      proves = "your backward equals torch.autograd on ..."   # printed when they pass

This module is also a pytest plugin (``pytest -p shared.exercises --exercises DIR``, which
``make weekNN-exercises`` runs). It keeps only the manifest's tests, and for each test it
swaps in the exercise(s) that test checks: the learner's function (``--exercise-impl mine``,
the default) or the worked one (``solutions``). The swap covers every place listed in
``replaces`` and every name in the test's own module bound to the replaced object, and it
is undone after the test, so each exercise is checked with the package's code around it.
The tests themselves are written once, against the package. A test shared by two
exercises counts for each, except that a stub's "not implemented" counts only for the
exercise it belongs to (a missing ``tanh`` says nothing about ``backward``). At the end it
prints, per
exercise, PASSED with what it proved, NOT IMPLEMENTED with what to build, or FAILED with
the first failing test; ``--exercise-report PATH`` writes the same as JSON. ``--exercises``
given several times checks several weeks in one run (one start-up of pytest and torch).

A test that runs the code in another process (week11's ``torchrun`` workers) reaches the
learner's function too: while a test runs, ``NANOCHAT_EXERCISE_SWAPS`` names the swaps
(file, function, places) and the child calls ``apply_env_swaps()`` first thing.

Left out: hints and partial credit (a test passes or not), and exercises that need a test
of their own (each exercise points at tests the week already has).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

IMPLS = ("mine", "solutions")
SWAP_ENV = "NANOCHAT_EXERCISE_SWAPS"
TIERS = ("core", "stretch", "mega")
NOT_YET = "not implemented yet"


@dataclass(frozen=True)
class Exercise:
    """One manifest entry (see the module doc)."""

    name: str
    tier: str
    file: str
    function: str
    replaces: tuple[str, ...]
    tests: tuple[str, ...]
    proves: str

    def checks(self, test_id: str) -> bool:
        """Whether ``test_id`` (``tests/test_x.py::test_y[...]``, relative to the week) is
        one of this exercise's tests."""
        for t in self.tests:
            if test_id == t or test_id.startswith((t + "[", t + "::")):
                return True
            if "[" in t and test_id.startswith(t):  # part of a parametrized id: "test_f[tanh-"
                return True
        return False


def load_manifest(week_dir: str | Path) -> list[Exercise]:
    """The exercises of ``week_dir`` (its ``exercises/exercises.toml``), checked."""
    path = Path(week_dir) / "exercises" / "exercises.toml"
    if not path.exists():
        raise FileNotFoundError(f"{week_dir} has no exercises yet (no {path})")
    out, seen = [], set()
    for i, e in enumerate(tomllib.loads(path.read_text())["exercise"]):
        missing = {"name", "tier", "file", "function", "replaces", "tests", "proves"} - set(e)
        if missing:
            raise ValueError(f"{path}: exercise {i} lacks {sorted(missing)}")
        if e["tier"] not in TIERS:
            raise ValueError(f"{path}: {e['name']}: tier must be one of {TIERS}, got {e['tier']!r}")
        if e["name"] in seen:
            raise ValueError(f"{path}: two exercises are named {e['name']!r}")
        seen.add(e["name"])
        out.append(Exercise(e["name"], e["tier"], e["file"], e["function"],
                            tuple(e["replaces"]), tuple(e["tests"]), e["proves"]))
    return out


def exercise_file(week_dir: str | Path, ex: Exercise, impl: str) -> Path:
    """Where the learner's (``mine``) or the worked (``solutions``) file of ``ex`` is."""
    if impl not in IMPLS:
        raise ValueError(f"--exercise-impl must be one of {IMPLS}, got {impl!r}")
    folder = Path(week_dir) / "exercises" / ("solutions" if impl == "solutions" else "")
    return (folder / ex.file).resolve()


def _function_from(path: Path, function: str, label: str):
    spec = importlib.util.spec_from_file_location(f"_exercise_{label}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, function)


def load_function(week_dir: str | Path, ex: Exercise, impl: str):
    """The learner's (``mine``) or the worked (``solutions``) function of ``ex``."""
    path = exercise_file(week_dir, ex, impl)
    return _function_from(path, ex.function, f"{Path(week_dir).name}_{impl}")


def apply_env_swaps() -> int:
    """In a child process of an exercise's test: plug in the functions ``SWAP_ENV`` names
    (nothing when it is unset, as in every normal run); returns how many places changed."""
    raw = os.environ.get(SWAP_ENV)
    if not raw:
        return 0
    done = 0
    for swap in json.loads(raw):
        fn = _function_from(Path(swap["file"]), swap["function"], "child")
        for spec in swap["replaces"]:
            owner, attr = _target(spec)
            setattr(owner, attr, fn)
            done += 1
    return done


def _target(spec: str):
    """``"pkg.mod:Owner.attr"`` -> (owner object, attribute name)."""
    module, _, attr = spec.partition(":")
    owner = importlib.import_module(module)
    *path, last = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    return owner, last


@dataclass(eq=False)  # hashable: pluggy keys its plugins
class _Plugin:
    week: Path
    impl: str
    exercises: list[Exercise]
    functions: dict = field(default_factory=dict)  # name -> function (or the load error)
    results: dict = field(default_factory=dict)  # name -> {nodeid: outcome}
    owners: dict = field(default_factory=dict)  # nodeid -> the exercises that test checks

    def for_item(self, item) -> list[Exercise]:
        if item.nodeid not in self.owners:
            try:
                rel = Path(item.path).resolve().relative_to(self.week).as_posix()
            except ValueError:  # a test outside the week
                rel = None
            test_id = rel + item.nodeid[item.nodeid.find("::"):] if rel else ""
            self.owners[item.nodeid] = [e for e in self.exercises if test_id and e.checks(test_id)]
        return self.owners[item.nodeid]

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item, nextitem):
        undo, swaps = [], []
        for ex in self.for_item(item):
            fn = self.functions.get(ex.name)
            if isinstance(fn, Exception) or fn is None:
                continue  # its load error is reported; the tests run on the package's code
            swaps.append({"file": str(exercise_file(self.week, ex, self.impl)),
                          "function": ex.function, "replaces": list(ex.replaces)})
            for spec in ex.replaces:
                owner, attr = _target(spec)
                old = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
                undo.append((owner, attr, old))
                setattr(owner, attr, fn)
                for name, value in list(vars(item.module).items()):
                    if value is old:  # `from pkg import f` in the test module
                        undo.append((item.module, name, value))
                        setattr(item.module, name, fn)
        before = os.environ.get(SWAP_ENV)
        if swaps:  # for the test's child processes (another week's test: not ours to set)
            os.environ[SWAP_ENV] = json.dumps(swaps)
        try:
            yield
        finally:
            for owner, attr, old in reversed(undo):
                setattr(owner, attr, old)
            if swaps and before is None:
                os.environ.pop(SWAP_ENV, None)
            elif swaps:
                os.environ[SWAP_ENV] = before

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = (yield).get_result()
        exc = call.excinfo
        if exc is not None and exc.errisinstance(NotImplementedError) and NOT_YET in str(exc.value):
            report.longrepr = f"{item.nodeid}: {exc.value}"  # a stub: one line, no traceback

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or report.failed:
            text = str(report.longrepr) if report.failed else ""
            for ex in self.owners.get(report.nodeid, ()):
                outcome = report.outcome
                if NOT_YET in text:  # a stub raised: this exercise's own, or another's?
                    if _stub_message(self.functions.get(ex.name)) not in text:
                        continue  # blocked by another exercise's stub: says nothing of this one
                    outcome = "not implemented"
                got = self.results.setdefault(ex.name, {})
                if got.get(report.nodeid) in (None, "passed"):
                    got[report.nodeid] = outcome

    def summary(self) -> list[dict]:
        rows = []
        for ex in self.exercises:
            fn, got = self.functions.get(ex.name), self.results.get(ex.name, {})
            if isinstance(fn, Exception):
                status, detail = "failed", f"could not load it: {type(fn).__name__}: {fn}"
            elif not got:
                status, detail = "failed", "none of its tests ran"
            elif any(v == "not implemented" for v in got.values()):
                status, detail = "not implemented", _stub_message(fn)
            elif all(v == "passed" for v in got.values()):
                status, detail = "passed", ex.proves
            else:
                bad = [k for k, v in got.items() if v != "passed"]
                status, detail = "failed", f"{len(bad)} of {len(got)} tests failed, first {bad[0]}"
            rows.append(dict(week=self.week.name, exercise=ex.name, tier=ex.tier,
                             status=status, detail=detail, tests=len(got), outcomes=got))
        return rows

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        tr = terminalreporter
        tr.section(f"exercises of {self.week.name} ({self.impl})")
        for r in self.summary():
            tr.write_line(f"{r['status'].upper():<16} {r['exercise']:<14} [{r['tier']}] "
                          f"{r['tests']} tests: {r['detail']}")


@dataclass(eq=False)
class _Weeks:
    """What the weeks' plugins share: the collection keeps the tests some week's manifest
    names, and the report holds every week's rows."""

    plugins: list[_Plugin]

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, config, items):
        def wanted(item):
            return any(p.for_item(item) for p in self.plugins)
        config.hook.pytest_deselected(items=[i for i in items if not wanted(i)])
        items[:] = [i for i in items if wanted(i)]

    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        path = config.getoption("exercise_report")
        if path:  # written whole or not at all (shared.progress reads it)
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps([r for p in self.plugins for r in p.summary()], indent=1))
            os.replace(tmp, path)


def _stub_message(fn) -> str:
    """The stub's own "not implemented yet: ..." sentence, else its docstring's first line."""
    for const in getattr(getattr(fn, "__code__", None), "co_consts", ()):
        if isinstance(const, str) and const.startswith(NOT_YET):
            return const
    return (fn.__doc__ or NOT_YET).strip().splitlines()[0]


def table(root: str | Path = ".") -> str:
    """The README's exercise table, one row per week (then per track) with exercises, from
    the manifests."""
    root = Path(root)
    rows = ["| week | core | stretch | mega |", "|---|---|---|---|"]
    manifests = [*sorted(root.glob("week*/exercises/exercises.toml")),
                 *sorted(root.glob("tracks/*/exercises/exercises.toml"))]
    for manifest in manifests:
        week = manifest.parent.parent
        rel = week.relative_to(root).as_posix()
        by_tier = {t: [f"`{e.name}`" for e in load_manifest(week) if e.tier == t] for t in TIERS}
        rows.append(f"| [{week.name}]({rel}/exercises) | "
                    + " | ".join(", ".join(by_tier[t]) or "" for t in TIERS) + " |")
    return "\n".join(rows)


README_BEGIN = "<!-- exercises table: python -m shared.exercises --table -->"
README_END = "<!-- end of exercises table -->"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="The exercises of every week.")
    ap.add_argument("--table", action="store_true", help="print the README's exercise table")
    ap.add_argument("--write-readme", metavar="README", help="replace the table in README")
    args = ap.parse_args(argv)
    if args.write_readme:
        path = Path(args.write_readme)
        text = path.read_text()
        if README_BEGIN not in text or README_END not in text:
            raise SystemExit(f"{path} has no {README_BEGIN} ... {README_END} block")
        head, rest = text.split(README_BEGIN, 1)
        path.write_text(head + README_BEGIN + "\n" + table(path.parent) + "\n"
                        + README_END + rest.split(README_END, 1)[1])
    else:
        print(table())
    return 0


def pytest_addoption(parser):
    g = parser.getgroup("exercises")
    g.addoption("--exercises", action="append", default=None, metavar="WEEK_DIR",
                help="run WEEK_DIR's exercises: its manifest's tests, with your functions "
                     "(give it again for more weeks in one run)")
    g.addoption("--exercise-impl", default="mine", choices=IMPLS,
                help="whose functions: mine (exercises/*.py) or solutions (exercises/solutions)")
    g.addoption("--exercise-report", default=None, metavar="PATH",
                help="also write the per-exercise results as JSON")


def pytest_configure(config):
    weeks = config.getoption("exercises")
    if not weeks:
        return
    plugins = []
    for week in dict.fromkeys(Path(w).resolve() for w in weeks):
        plugin = _Plugin(week, config.getoption("exercise_impl"), load_manifest(week))
        for ex in plugin.exercises:
            try:
                plugin.functions[ex.name] = load_function(week, ex, plugin.impl)
            except Exception as e:  # a syntax error in the learner's file: report, don't crash
                plugin.functions[ex.name] = e
        config.pluginmanager.register(plugin, f"nanochat-exercises-{week.name}")
        plugins.append(plugin)
    config.pluginmanager.register(_Weeks(plugins), "nanochat-exercises")


if __name__ == "__main__":
    raise SystemExit(main())
