"""Study paths: which parts of the curriculum to take, and on which dates (``make path``).

``python -m shared.plan --weeks 8|12|16 [--start YYYY-MM-DD]`` picks the parts of
``curriculum.toml`` by the path's rule, lays them end to end from the start date (each part
takes its estimated days), prints the plan by study week and saves the choice in the
learner's folder (``.learner/`` at the repository root, ignored by git; ``$NANOCHAT_LEARNER``
moves it): ``plan.json`` (the choice) and ``PLAN.md`` (the printed plan). ``--show``
prints the saved plan again. The rules:

- **8 weeks, fast**: the Core parts of weeks 00-12, nothing else.
- **12 weeks, balanced**: Core, plus every Stretch part of at most one day (the longer
  stretches wait for the deep path); no Mega, no tracks.
- **16 weeks, deep**: every part of weeks 00-12, then the tracks (Week 13+).

The schedule is recomputed from ``curriculum.toml`` each time it is read, so only the
choice (weeks, start) is stored. ``shared.progress`` and ``shared.reflection`` read it.

Left out: days off, custom part selections (edit nothing: pick the nearest path and
let ``make reflect`` suggest compressing or extending).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from shared.curriculum import TIERS, Curriculum, CurriculumError, Part, Unit, load

STRETCH_MAX_DAYS = 1.0  # the balanced path's cut-off for a Stretch part
PATHS = {
    8: ("fast", "the Core parts of weeks 00-12, nothing else"),
    12: ("balanced", f"Core, plus every Stretch part of at most {STRETCH_MAX_DAYS:g} day "
                     "(longer stretches wait for the deep path); no Mega, no tracks"),
    16: ("deep", "every part of weeks 00-12, then the tracks (Week 13+)"),
}


class PlanError(ValueError):
    """Bad input for a plan; the message lists what is valid."""


def learner_dir(root: str | Path = ".") -> Path:
    """Where the learner's own state lives (outside git)."""
    env = os.environ.get("NANOCHAT_LEARNER")
    return Path(env) if env else Path(root) / ".learner"


def parse_weeks(value) -> int:
    valid = ", ".join(f"{w} ({name}: {rule})" for w, (name, rule) in PATHS.items())
    try:
        weeks = int(str(value).strip())
    except ValueError:
        weeks = None
    if weeks not in PATHS:
        raise PlanError(f"WEEKS must be one of {', '.join(map(str, PATHS))}; got {value!r}. "
                        f"The paths: {valid}")
    return weeks


def parse_start(value) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise PlanError(f"START must be a date written YYYY-MM-DD (e.g. {date.today().isoformat()}); "
                        f"got {value!r}") from None


def included(weeks: int, unit: Unit, part: Part) -> bool:
    """The path's rule (see the module doc)."""
    if weeks == 16:
        return True
    if unit.kind != "week":
        return False
    if part.tier == "core":
        return True
    return weeks == 12 and part.tier == "stretch" and part.days <= STRETCH_MAX_DAYS


# ---------------------------------------------------------------------------- the schedule

@dataclass(frozen=True)
class Slot:
    unit: Unit
    part: Part
    start: float  # study days from the start date
    end: float


@dataclass
class Plan:
    weeks: int
    start: date
    slots: list[Slot]

    @property
    def name(self) -> str:
        return PATHS[self.weeks][0]

    @property
    def days(self) -> float:
        return self.slots[-1].end if self.slots else 0.0

    def date_of(self, day: float) -> date:
        return self.start + timedelta(days=math.floor(day))

    def last_date(self, end: float) -> date:
        """The calendar day on which work ending at ``end`` study days is finished."""
        return self.start + timedelta(days=max(math.ceil(end) - 1, 0))

    @property
    def finish(self) -> date:
        return self.last_date(self.days)

    def units(self) -> list[Unit]:
        seen: dict[str, Unit] = {}
        for s in self.slots:
            seen.setdefault(s.unit.key, s.unit)
        return list(seen.values())

    def slots_of(self, key: str) -> list[Slot]:
        return [s for s in self.slots if s.unit.key == key]

    def span(self, key: str) -> tuple[date, date] | None:
        mine = self.slots_of(key)
        if not mine:
            return None
        return self.date_of(mine[0].start), self.last_date(mine[-1].end)

    def elapsed(self, today: date) -> float:
        """Study days from the start to the end of ``today`` (0 before the start)."""
        return max(0.0, float((today - self.start).days + 1))

    def planned_by(self, today: date) -> float:
        """How many days of parts the plan has finished by the end of ``today``."""
        t = self.elapsed(today)
        return sum(min(s.end, t) - s.start for s in self.slots if s.start < t)

    def current(self, today: date) -> Slot | None:
        t = self.elapsed(today) - 0.5  # the middle of today
        for s in self.slots:
            if s.start <= t < s.end:
                return s
        return None

    def study_week(self, day: date) -> int:
        """1-based study week of ``day`` (week 1 = the start date and the 6 days after)."""
        return (day - self.start).days // 7 + 1

    def next_unit(self, key: str) -> Unit | None:
        units = self.units()
        keys = [u.key for u in units]
        if key in keys:
            i = keys.index(key)
            return units[i + 1] if i + 1 < len(units) else None
        later = [s.unit for s in self.slots if s.unit.kind == "week" and key.isdigit()
                 and s.unit.key > key]
        return later[0] if later else None


def schedule(cur: Curriculum, weeks: int, start: date) -> Plan:
    weeks = parse_weeks(weeks)
    slots, t = [], 0.0
    for unit in cur.units:
        for part in unit.parts:
            if included(weeks, unit, part):
                slots.append(Slot(unit, part, t, t + part.days))
                t += part.days
    return Plan(weeks, parse_start(start), slots)


# ---------------------------------------------------------------------------- saved choice

def save(plan: Plan, root: str | Path = ".") -> Path:
    """Write plan.json (atomically) and PLAN.md to the learner's folder."""
    folder = learner_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"weeks": plan.weeks, "start": plan.start.isoformat()}, indent=1))
    os.replace(tmp, path)
    (folder / "PLAN.md").write_text(render(plan), encoding="utf-8")
    return path


def load_saved(root: str | Path = ".", cur: Curriculum | None = None) -> Plan | None:
    """The learner's saved plan, recomputed from curriculum.toml; None when there is none."""
    path = learner_dir(root) / "plan.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return schedule(cur or load(root), data["weeks"], data["start"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise PlanError(f"{path} is unreadable ({e}); choose again: make path WEEKS=8|12|16") from None


# ---------------------------------------------------------------------------- printing

def _tiers(slots: list[Slot]) -> str:
    by = {t: [s.part.name for s in slots if s.part.tier == t] for t in TIERS}
    return "; ".join(f"{t.capitalize()}: {', '.join(names)}" for t, names in by.items() if names)


def render(plan: Plan, detail: bool = True) -> str:
    """The plan as markdown: by study week (every part's name when ``detail``, else each
    curriculum unit's days), then by curriculum unit with its dates."""
    name, rule = PATHS[plan.weeks]
    budget = plan.weeks * 7
    lines = [f"# Study plan: {plan.weeks} weeks, {name}\n",
             f"Rule: {rule}. {plan.days:g} days of parts in {budget} calendar days "
             f"({budget - plan.days:g} spare).",
             f"Starts {plan.start.isoformat()}, finishes {plan.finish.isoformat()}.\n",
             f"| study week | dates | curriculum | {'parts (tier: name)' if detail else 'days'} |",
             "|---|---|---|---|"]
    n_weeks = max(plan.study_week(plan.finish), 1)
    for w in range(1, n_weeks + 1):
        lo = plan.start + timedelta(days=7 * (w - 1))
        hi = lo + timedelta(days=6)
        mine = [s for s in plan.slots if plan.study_week(plan.date_of(s.start)) == w]
        units = ", ".join(dict.fromkeys(s.unit.label for s in mine))
        what = _tiers(mine) if detail else f"{sum(s.part.days for s in mine):g}"
        lines.append(f"| {w} | {lo.isoformat()} to {hi.isoformat()} | {units} | {what} |")
    lines += ["", "| curriculum | from | to | days | parts |", "|---|---|---|---|---|"]
    for unit in plan.units():
        lo, hi = plan.span(unit.key)
        mine = plan.slots_of(unit.key)
        lines.append(f"| {unit.label}: {unit.topic} | {lo.isoformat()} | {hi.isoformat()} | "
                     f"{sum(s.part.days for s in mine):g} | {len(mine)} of {len(unit.parts)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Choose a study path and print its dated plan.")
    ap.add_argument("--weeks", help="8 (fast), 12 (balanced) or 16 (deep)")
    ap.add_argument("--start", default=None, help="YYYY-MM-DD (default: today)")
    ap.add_argument("--show", action="store_true", help="print the saved plan")
    ap.add_argument("--root", default=".", help="the repository root")
    args = ap.parse_args(argv)
    try:
        if args.show or not args.weeks:
            plan = load_saved(args.root)
            if plan is None:
                print("no plan saved yet: make path WEEKS=8|12|16 [START=YYYY-MM-DD]", file=sys.stderr)
                return 2
            print(render(plan, detail=False))
            print(f"every part, week by week: {learner_dir(args.root) / 'PLAN.md'}")
            return 0
        plan = schedule(load(args.root), parse_weeks(args.weeks),
                        parse_start(args.start) if args.start else date.today())
        where = save(plan, args.root)
    except (PlanError, CurriculumError) as e:
        print(e, file=sys.stderr)
        return 2
    print(render(plan, detail=False))
    print(f"saved in {where.parent}/: plan.json (your choice) and PLAN.md (every part, week by "
          "week); outside git. `make progress` and `make reflect` follow it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
