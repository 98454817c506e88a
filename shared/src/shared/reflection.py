"""The Sunday reflection log behind ``make reflect WEEK=NN``.

Appends a dated entry to ``weekNN_*/REFLECTION.md``, pre-filled with what was
measured: the week's test result (pytest is run, or ``--no-tests`` skips it),
the learner's own exercises (``shared.exercises``: which passed, by tier, and what is
not done yet; ``--no-exercises`` skips them), the latest run's final metrics (runs whose folder name starts with
``weekNN``), and the saved benchmark figures (``runs/bench/weekNN*.json``).
Then come the protocol's sections for the learner to write: build log, pivot
decision (proceed / repeat / compress / extend, with a suggestion derived from
the figures), next week's plan, paper queue and motivation check.

Left out: anything that edits earlier entries. The log is append-only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from shared.metrics import list_runs, load_benchmarks, read_metrics, runs_root

CHOICES = ("proceed", "repeat", "compress", "extend")


@dataclass
class SuiteResult:
    passed: int
    failed: int
    skipped: int
    seconds: float

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.skipped


def find_week(week: str, root: Path) -> Path:
    """The folder ``weekNN_*`` under ``root``; a clear error lists the valid weeks."""
    nn = str(week).removeprefix("week").zfill(2)
    weeks = sorted(p for p in root.glob("week[0-9][0-9]_*") if p.is_dir())
    match = [p for p in weeks if p.name.startswith(f"week{nn}_")]
    if not nn.isdigit() or not match:
        valid = ", ".join(p.name[4:6] for p in weeks) or "none"
        raise ValueError(f"no week {week!r} under {root}; valid WEEK values: {valid}")
    return match[0]


def run_tests(folder: Path) -> SuiteResult:
    """Run the week's pytest suite and count the outcomes from its JUnit XML."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        subprocess.run([sys.executable, "-m", "pytest", str(folder / "tests"), "-q",
                        f"--junitxml={xml}"], capture_output=True, text=True)
        if not xml.exists():
            return SuiteResult(0, 1, 0, 0.0)
        return parse_junit(xml)


def parse_junit(path: Path) -> SuiteResult:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    seconds = sum(float(s.get("time", 0)) for s in suites)
    return SuiteResult(tests - failed - skipped, failed, skipped, seconds)


def run_exercises(folder: Path) -> list[dict] | None:
    """The learner's exercise results for the week (``shared.exercises`` rows), or None
    when the week has no ``exercises/exercises.toml``."""
    if not (folder / "exercises" / "exercises.toml").exists():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "exercises.json"
        subprocess.run([sys.executable, "-m", "pytest", "-p", "shared.exercises", "--exercises",
                        str(folder), "--exercise-report", str(report), "-q", "--tb=no",
                        str(folder / "tests")], capture_output=True, text=True)
        if not report.exists():
            return []
        return json.loads(report.read_text())


def latest_metrics(nn: str, runs: Path) -> tuple[str, dict] | None:
    """(run name, last value of every scalar) of the newest run named weekNN*."""
    mine = [r for r in list_runs(runs) if r.name.startswith(f"week{nn}")]
    if not mine:
        return None
    run = max(mine, key=lambda r: (r / "metrics.jsonl").stat().st_mtime)
    last: dict = {}
    for row in read_metrics(run):
        last.update({k: v for k, v in row.items() if k != "time"})
    return run.name, last


def suggest(tests: SuiteResult | None, benches: list[dict],
            exercises: list[dict] | None = None) -> tuple[str, str]:
    """A suggested pivot choice and the reason, from the measured figures.

    In order: failing tests or a core exercise not passed -> repeat; a benchmark target
    missed -> extend; otherwise proceed.
    """
    if tests is not None and (tests.failed or tests.total == 0):
        return "repeat", f"{tests.failed} failing tests" if tests.failed else "no tests ran"
    undone = [e["exercise"] for e in exercises or () if e["tier"] == "core"
              and e["status"] != "passed"]
    if undone:
        return "repeat", f"core exercises not passed yet: {', '.join(undone)}"
    missed = [b["name"] for b in benches if b.get("target_met") is False]
    if missed:
        return "extend", f"benchmark targets missed: {', '.join(missed)}"
    if benches and all(b.get("target_met") for b in benches):
        return "proceed", "tests green and every benchmark target met"
    return "proceed", "tests green" if tests else "no figures yet: judge by hand"


def exercise_lines(exercises: list[dict] | None) -> list[str]:
    """The "Measured" lines for the learner's exercises."""
    if exercises is None:
        return ["- exercises: this week has none (or --no-exercises)"]
    if not exercises:
        return ["- exercises: could not run them (try make weekNN-exercises)"]
    done = [e for e in exercises if e["status"] == "passed"]
    tiers = []
    for tier in ("core", "stretch", "mega"):
        mine = [e for e in exercises if e["tier"] == tier]
        if mine:
            tiers.append(f"{tier} {sum(e['status'] == 'passed' for e in mine)}/{len(mine)}")
    lines = [f"- exercises: {len(done)} of {len(exercises)} passed ({', '.join(tiers)})"]
    for e in exercises:
        if e["status"] != "passed":
            lines.append(f"  - {e['status']}: `{e['exercise']}` [{e['tier']}]: {e['detail']}")
    return lines


def render_entry(nn: str, tests: SuiteResult | None, metrics: tuple[str, dict] | None,
                 benches: list[dict], today: date, exercises: list[dict] | None = None) -> str:
    choice, why = suggest(tests, benches, exercises)
    lines = [f"\n## Sunday {today.isoformat()} (week {nn})\n", "### Measured\n"]
    if tests is None:
        lines.append("- tests: not run (--no-tests)")
    else:
        lines.append(f"- tests: {tests.passed} passed, {tests.failed} failed, {tests.skipped} skipped "
                     f"in {tests.seconds:.1f}s")
    lines += exercise_lines(exercises)
    if metrics:
        name, last = metrics
        figures = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in last.items())
        lines.append(f"- latest run `{name}`: {figures}")
    else:
        lines.append("- latest run: none under runs/ yet")
    for b in benches:
        summary = b.get("summary") or {}
        figures = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in summary.items())
        met = {True: "target met", False: "target missed", None: "no target"}[b.get("target_met")]
        lines.append(f"- benchmark `{b.get('name')}` ({met}): {figures}")
    if not benches:
        lines.append("- benchmarks: none saved yet (make weekNN-bench)")
    lines += [
        "\n### Build log\n- What worked:\n- What broke:\n",
        "### Pivot decision\n"
        f"Choose one of {' / '.join(CHOICES)}. Suggested from the figures: **{choice}** ({why}).\n"
        "- Decision:\n- Why:\n",
        "### Next week's plan\n- \n",
        "### Paper queue\n- \n",
        "### Motivation check\n- Energy (1-5):\n- What would make next week more fun:\n",
    ]
    return "\n".join(lines)


def reflect(week: str, root: Path = Path("."), runs: Path | None = None, tests: bool = True,
            today: date | None = None, exercises: bool = True) -> Path:
    """Append the entry and return the REFLECTION.md path."""
    folder = find_week(week, root)
    nn = folder.name[4:6]
    runs = runs if runs is not None else runs_root()
    result = run_tests(folder) if tests else None
    mine = run_exercises(folder) if exercises else None
    entry = render_entry(nn, result, latest_metrics(nn, runs),
                         load_benchmarks(runs, prefix=f"week{nn}"), today or date.today(), mine)
    log = folder / "REFLECTION.md"
    if not log.exists():
        log.write_text(f"# Week {nn} reflection log\n", encoding="utf-8")
    with open(log, "a", encoding="utf-8") as f:
        f.write(entry)
    return log


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Append a dated Sunday entry to a week's REFLECTION.md.")
    ap.add_argument("--week", required=True, help="two-digit week number, e.g. 00")
    ap.add_argument("--root", default=".", help="the repository root (default: .)")
    ap.add_argument("--runs", default=None, help="the runs folder (default: $NANOCHAT_RUNS or runs)")
    ap.add_argument("--no-tests", action="store_true", help="do not run the week's tests")
    ap.add_argument("--no-exercises", action="store_true", help="do not run your exercises")
    args = ap.parse_args(argv)
    try:
        log = reflect(args.week, Path(args.root), Path(args.runs) if args.runs else None,
                      tests=not args.no_tests, exercises=not args.no_exercises)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(f"appended a Sunday entry to {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
