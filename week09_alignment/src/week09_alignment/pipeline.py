"""The whole week in one command: SFT -> DPO -> GRPO -> the alignment tax.

    python -m week09_alignment.pipeline                     # tiny presets, from --init auto
    python -m week09_alignment.pipeline --from dpo          # redo DPO and everything after
    python -m week09_alignment.pipeline --preset gpu --init runs/my-base --out runs/week09-gpu

Each stage is its own command (``sft``, ``dpo`` = ``dpo_train``, ``grpo_train``,
``report``) run here through its ``main``, into ``<out>/<stage>``, and each
starts from the one before: base (``--init``) -> ``sft`` -> ``dpo`` -> ``rl``
(GRPO on arithmetic with the calculator). A stage whose folder already holds
its model and ``stage.json`` is skipped, so a re-run after a crash continues
with the first unfinished stage (and that stage resumes from its own
checkpoints); ``--from STAGE`` redoes that stage and every later one. The
report card (``report.alignment_tax``) then measures all four models the same
way into ``<out>/report``.

Left out: multi-GPU launch (week11) and a stage list other than this one
(week12's speedrun adds pretraining in front).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from shared import runs_root

STAGES = ("sft", "dpo", "rl", "report")


def done(folder: Path, stage: str) -> bool:
    if stage == "report":
        return (folder / "report.md").is_file()
    return (folder / "model.safetensors").is_file() and (folder / "stage.json").is_file()


def run_pipeline(preset: str = "tiny", init: str = "auto", out: str | Path | None = None,
                 start: str | None = None, progress: bool = True, gen_limit: int = 30) -> Path:
    """Run the stages not yet done (or from ``start`` on) into ``out``; returns ``out``."""
    from week09_alignment import dpo_train, grpo_train, sft
    from week09_alignment.report import TaxConfig, alignment_tax

    out = Path(out) if out is not None else runs_root() / "week09"
    if start is not None and start not in STAGES:
        raise ValueError(f"--from must be one of {', '.join(STAGES)}, got {start!r}")
    quiet = [] if progress else ["--no-progress"]
    folders = {s: out / s for s in STAGES}
    commands = {
        "sft": lambda: sft.main(["--preset", preset, "--init", init, "--out",
                                 str(folders["sft"])] + quiet),
        "dpo": lambda: dpo_train.main(["--preset", preset, "--init", str(folders["sft"]),
                                       "--out", str(folders["dpo"])] + quiet),
        "rl": lambda: grpo_train.main(["--preset", preset, "--init", str(folders["dpo"]),
                                       "--out", str(folders["rl"]), "--kind", "arithmetic"]
                                      + quiet),
        "report": lambda: alignment_tax(
            {"base": init, "sft": str(folders["sft"]), "dpo": str(folders["dpo"]),
             "rl": str(folders["rl"])}, folders["report"],
            TaxConfig(gen_limit=gen_limit, progress=progress)),
    }
    redo = False
    for stage in STAGES:
        redo = redo or stage == start
        if redo and folders[stage].exists():
            shutil.rmtree(folders[stage])
        if done(folders[stage], stage):
            print(f"[pipeline] {stage}: done already ({folders[stage]})", flush=True)
            continue
        t0 = time.perf_counter()
        print(f"[pipeline] {stage}: starting", flush=True)
        commands[stage]()
        print(f"[pipeline] {stage}: finished in {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"[pipeline] the report card: {folders['report'] / 'report.md'}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m week09_alignment.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=("tiny", "gpu"))
    p.add_argument("--init", default="auto", help="the base: auto | baseline | tiny | a path")
    p.add_argument("--out", help="default: runs/week09")
    p.add_argument("--from", dest="start", choices=STAGES, help="redo this stage and the later ones")
    p.add_argument("--gen-limit", type=int, default=30, help="report card: examples per tool task")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    run_pipeline(a.preset, a.init, a.out, a.start, not a.no_progress, a.gen_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
