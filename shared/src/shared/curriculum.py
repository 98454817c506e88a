"""The curriculum as data: ``curriculum.toml`` at the repository root, loaded and checked.

The file lists every week and track: its folder, topic, status, objectives, self-check
questions, papers, and its parts, each with a tier (core | stretch | mega), estimated days,
the lesson section it lives in and the exercises that check it. This module loads it into
dataclasses, refuses a malformed file with an error that names the entry and what is
valid, and renders the tables that are generated from it:

- the root README's week table (between ``<!-- weeks table ... -->`` markers);
- each built week's tier table in its README (between ``<!-- tiers table ... -->``);
- the tier tag at the end of each numbered lesson heading (``## 2. RoPE, derived [Core]``),
  from the parts' ``section``.

``python -m shared.curriculum --write`` rewrites those blocks; ``--check`` exits 1 when any
is out of step (tests/test_curriculum.py runs the same check). ``make path``,
``make progress`` and ``make reflect`` read the parts from here.

Left out: editing the data (edit the TOML by hand) and anything about the learner's state
(``shared.plan`` and ``shared.progress`` hold that).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

FILE = "curriculum.toml"
TIERS = ("core", "stretch", "mega")
TIER_TAG = {"core": "[Core]", "stretch": "[Stretch]", "mega": "[Mega]"}
STATUSES = ("built", "planned")
WEEK_DAYS = 7.0  # each week's parts add up to one calendar week

WEEKS_BEGIN = "<!-- weeks table: generated from curriculum.toml (python -m shared.curriculum --write) -->"
WEEKS_END = "<!-- end of weeks table -->"
TIERS_BEGIN = "<!-- tiers table: generated from curriculum.toml (python -m shared.curriculum --write) -->"
TIERS_END = "<!-- end of tiers table -->"


class CurriculumError(ValueError):
    """curriculum.toml is missing or malformed; the message says where and what is valid."""


@dataclass(frozen=True)
class Part:
    name: str
    tier: str
    days: float
    section: str | None = None
    exercises: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unit:
    """A week (key "00".."12") or a track (key "htm", ...)."""

    key: str
    kind: str  # "week" | "track"
    folder: str
    topic: str
    status: str
    parts: tuple[Part, ...]
    objectives: tuple[str, ...] = ()
    questions: tuple[str, ...] = ()
    papers: tuple[str, ...] = ()
    run: str = ""
    measures: str = ""

    @property
    def label(self) -> str:
        return f"week {self.key}" if self.kind == "week" else f"track {self.key}"

    def days(self, tier: str | None = None) -> float:
        return sum(p.days for p in self.parts if tier is None or p.tier == tier)


@dataclass
class Curriculum:
    weeks: list[Unit]
    tracks: list[Unit] = field(default_factory=list)

    @property
    def units(self) -> list[Unit]:
        return [*self.weeks, *self.tracks]

    def unit(self, key: str) -> Unit:
        """A week by its number ("7", "07", "week07") or a track by its key; the error lists
        the valid ones."""
        k = str(key).removeprefix("week")
        k = k.zfill(2) if k.isdigit() else k
        for u in self.units:
            if u.key == k:
                return u
        valid = ", ".join(u.key for u in self.units)
        raise CurriculumError(f"no week or track {key!r} in {FILE}; valid: {valid}")


# ---------------------------------------------------------------------------- loading

def _part(raw: dict, where: str) -> Part:
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise CurriculumError(f"{where}: a part needs a name")
    where = f"{where}, part {raw['name']!r}"
    tier = raw.get("tier")
    if tier not in TIERS:
        raise CurriculumError(f"{where}: tier must be one of {', '.join(TIERS)}; got {tier!r}")
    days = raw.get("days")
    if isinstance(days, bool) or not isinstance(days, (int, float)) or days <= 0 or days * 2 != int(days * 2):
        raise CurriculumError(f"{where}: days must be a positive multiple of 0.5; got {days!r}")
    section = raw.get("section")
    if section is not None and not (isinstance(section, str) and section.isdigit()):
        raise CurriculumError(f"{where}: section must be the lesson's heading number as a string "
                              f"(\"3\" for \"## 3. ...\"); got {section!r}")
    unknown = set(raw) - {"name", "tier", "days", "section", "exercises"}
    if unknown:
        raise CurriculumError(f"{where}: unknown keys {sorted(unknown)}; valid: name, tier, days, "
                              "section, exercises")
    return Part(raw["name"], tier, float(days), section, tuple(raw.get("exercises", ())))


def _unit(raw: dict, kind: str, index: int) -> Unit:
    key = raw.get("key")
    where = f"{FILE}: {kind} #{index + 1}" + (f" ({key!r})" if key else "")
    for name in ("key", "folder", "topic", "status"):
        if not isinstance(raw.get(name), str) or not raw[name]:
            raise CurriculumError(f"{where}: {name} is required (a string)")
    if kind == "week" and not re.fullmatch(r"\d\d", key):
        raise CurriculumError(f"{where}: a week's key is its two-digit number, e.g. \"08\"")
    if raw["status"] not in STATUSES:
        raise CurriculumError(f"{where}: status must be one of {', '.join(STATUSES)}; "
                              f"got {raw['status']!r}")
    parts = tuple(_part(p, where) for p in raw.get("part", ()))
    if not parts:
        raise CurriculumError(f"{where}: no [[{kind}.part]] entries")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise CurriculumError(f"{where}: two parts share a name")
    return Unit(key=key, kind=kind, folder=raw["folder"], topic=raw["topic"], status=raw["status"],
                parts=parts, objectives=tuple(raw.get("objectives", ())),
                questions=tuple(raw.get("questions", ())), papers=tuple(raw.get("papers", ())),
                run=raw.get("run", ""), measures=raw.get("measures", ""))


def load(root: str | Path = ".") -> Curriculum:
    """Read and check ``<root>/curriculum.toml``."""
    path = Path(root) / FILE
    if not path.exists():
        raise CurriculumError(f"{path} not found: run from the repository root (or pass --root)")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise CurriculumError(f"{path} is not valid TOML: {e}") from None
    unknown = set(data) - {"week", "track"}
    if unknown:
        raise CurriculumError(f"{path}: unknown top-level tables {sorted(unknown)}; valid: week, track")
    cur = Curriculum([_unit(w, "week", i) for i, w in enumerate(data.get("week", ()))],
                     [_unit(t, "track", i) for i, t in enumerate(data.get("track", ()))])
    keys = [u.key for u in cur.units]
    if len(set(keys)) != len(keys):
        raise CurriculumError(f"{path}: keys repeat: {keys}")
    if [u.key for u in cur.weeks] != sorted(u.key for u in cur.weeks):
        raise CurriculumError(f"{path}: weeks must be listed in order")
    return cur


# ---------------------------------------------------------------------------- rendering

def _days(x: float) -> str:
    return f"{x:g}"


def week_table(cur: Curriculum) -> str:
    """The root README's table: every week and track, with its days per tier."""
    rows = ["| week | folder | topic | status | core / stretch / mega days | run it | what it measures (2-core CPU, see each README) |",
            "|---|---|---|---|---|---|---|"]
    for u in cur.units:
        num = str(int(u.key)) if u.kind == "week" else "track"
        built = u.status == "built"
        folder = f"[`{u.folder}`]({u.folder})" if built else f"`{u.folder}`"
        days = " / ".join(_days(u.days(t)) for t in TIERS)
        rows.append(f"| {num} | {folder} | {u.topic} | {u.status} | {days} | {u.run} | {u.measures} |")
    return "\n".join(rows)


def tier_table(unit: Unit) -> str:
    """A week's README table: its parts, tier, days, lesson section and exercises."""
    rows = ["| part | tier | days | lesson | exercises |", "|---|---|---|---|---|"]
    for p in unit.parts:
        lesson = f"§{p.section}" if p.section else ""
        ex = ", ".join(f"`{e}`" for e in p.exercises)
        rows.append(f"| {p.name} | {p.tier.capitalize()} | {_days(p.days)} | {lesson} | {ex} |")
    totals = ", ".join(f"{t.capitalize()} {_days(unit.days(t))}" for t in TIERS if unit.days(t))
    return "\n".join(rows) + f"\n\nDays: {totals} (of {_days(unit.days())})."


HEADING_RE = re.compile(r"^## (\d+)\. (.*?)(?: \[(?:Core|Stretch|Mega)\])?[ \t]*$", re.MULTILINE)


def section_tiers(unit: Unit) -> dict[str, str]:
    """lesson section number -> its tier; the parts that share a section must share a tier."""
    out: dict[str, str] = {}
    for p in unit.parts:
        if p.section is None:
            continue
        if out.setdefault(p.section, p.tier) != p.tier:
            raise CurriculumError(f"{unit.label}: parts in lesson section {p.section} have different "
                                  f"tiers ({out[p.section]}, {p.tier}); split the section or align them")
    return out


def tagged_notebook(path: Path, unit: Unit) -> str:
    """The notebook's text with every ``## N. Title`` heading ending in its part's tier tag.

    A numbered heading with no part in curriculum.toml, or a part whose section has no
    heading, is an error naming both, so the lesson and the data cannot drift apart."""
    import nbformat  # the notebook tools are installed for every package (requirements-dev)

    tiers = section_tiers(unit)
    nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
    seen = set()

    def tag(m: re.Match) -> str:
        num, title = m.group(1), m.group(2)
        if num not in tiers:
            raise CurriculumError(f"{path}: heading '## {num}. {title}' has no part with "
                                  f"section = \"{num}\" in {FILE} ({unit.label})")
        seen.add(num)
        return f"## {num}. {title} {TIER_TAG[tiers[num]]}"

    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = HEADING_RE.sub(tag, cell.source)
    missing = sorted(set(tiers) - seen, key=int)
    if missing:
        raise CurriculumError(f"{path}: no '## N.' heading for section(s) {', '.join(missing)} "
                              f"that {FILE} gives parts of {unit.label}")
    return nbformat.writes(nb) + "\n"


def replace_block(text: str, begin: str, end: str, body: str, where: str) -> str:
    if begin not in text or end not in text:
        raise CurriculumError(f"{where} lacks the generated-block markers:\n{begin}\n...\n{end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def generated(root: str | Path = ".") -> dict[Path, str]:
    """path -> the text it should have (root README, every built week's README and lesson)."""
    root = Path(root)
    cur = load(root)
    out = {}
    readme = root / "README.md"
    out[readme] = replace_block(readme.read_text(encoding="utf-8"), WEEKS_BEGIN, WEEKS_END,
                                week_table(cur), str(readme))
    for u in cur.units:
        path = root / u.folder / "README.md"
        if u.status == "built":
            if not path.exists():
                raise CurriculumError(f"{u.label} is marked built but {path} does not exist")
            out[path] = replace_block(path.read_text(encoding="utf-8"), TIERS_BEGIN, TIERS_END,
                                      tier_table(u), str(path))
            lesson = root / u.folder / f"{Path(u.folder).name}.ipynb"
            if lesson.exists() and any(p.section for p in u.parts):
                out[lesson] = tagged_notebook(lesson, u)
    return out


def stale(root: str | Path = ".") -> list[Path]:
    """The generated files whose text is out of step with curriculum.toml."""
    return [p for p, text in generated(root).items() if p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render the tables generated from curriculum.toml.")
    ap.add_argument("--root", default=".", help="the repository root")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="rewrite the generated blocks")
    group.add_argument("--check", action="store_true", help="exit 1 when a block is out of step")
    args = ap.parse_args(argv)
    try:
        if args.write:
            for path, text in generated(args.root).items():
                if path.read_text(encoding="utf-8") != text:
                    path.write_text(text, encoding="utf-8")
                    print(f"updated {path}")
            return 0
        bad = stale(args.root)
    except CurriculumError as e:
        print(e, file=sys.stderr)
        return 2
    for path in bad:
        print(f"{path} is out of step with {FILE}: python -m shared.curriculum --write", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
