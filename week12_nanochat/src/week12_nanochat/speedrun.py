"""One command trains a chat model end to end: tokenizer -> base -> SFT -> RL -> eval -> card.

    python -m week12_nanochat.speedrun                      # the cpu preset, ~15 min on 2 cores
    python -m week12_nanochat.speedrun --from sft           # redo SFT and every later stage
    python -m week12_nanochat.speedrun --preset d20 --to tokenizer         # a GPU node: first
    torchrun --nproc-per-node 8 -m week12_nanochat.speedrun --preset d20   # then 8 x H100

Stages, each into ``<out>/<stage>`` (``presets.py`` sizes them, ``stages.py`` trains them):
``tokenizer`` (week02 BPE with the chat specials, the token shards), ``base`` (week04's Llama
from one depth knob, week03's Trainer; week11's DistributedTrainer under torchrun), ``sft``
(week09's SFT with tools, week12's reading conversations and pretraining rehearsal), ``rl``
(week09's GRPO on arithmetic with the calculator; the preset turns it on or off), ``eval``
(``card.measure``: every model measured the same way), ``report`` (``card.write_card``) and
``chat`` (``<out>/chat.json``, written last: ``engine.find_model`` reads it).

Each stage's ``stage.json`` holds its wall time and metrics; a stage whose ``stage.json``
says it finished is skipped, so a re-run continues with the first unfinished stage, and that
stage resumes from its week03 checkpoints (``<out>/<stage>/train/checkpoints``) exactly.
``--from STAGE`` removes ``chat.json``, then that stage's folder and every later one's;
``--to STAGE`` stops after that stage. On a GPU node the tokenizer runs first in one process
(``--to tokenizer``): under torchrun the other ranks would wait for it at a barrier, and
NCCL gives up on a wait of more than 10 minutes.

Data: ``--pretrain-data pydocs`` (offline, the default), ``fineweb-edu`` or ``climbmix`` (by
name through ``datasets``), or a local path; ``--sft-data default,smoltalk,gsm8k`` adds
SmolTalk and GSM8K (week09's hub loaders, GSM8K's calculations as calculator calls).

Left out: SFT and RL on several GPUs (rank 0 runs them alone after the distributed base),
multi-node launch flags (torchrun's own), and a web of stage dependencies other than this line.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from shared import runs_root, write_json_atomic
from week12_nanochat.presets import (
    PRESET_NAMES,
    PRESETS,
    SFT_DATA,
    SpeedrunPreset,
    plan_text,
    preset,
)

STAGES = ("tokenizer", "base", "sft", "rl", "eval", "report", "chat")
READY = "chat.json"

# ---------------------------------------------------------------- stage bookkeeping


def schedule(finished: set[str], start: str | None = None, until: str | None = None,
             rl: bool = True) -> dict[str, str]:
    """What each stage will do: ``"run"``, ``"skip"`` (finished earlier, kept) or ``"off"``
    (RL when the preset turns it off), for the stages up to ``until``.

    A stage is skipped only if it finished AND nothing before it runs: a stage that runs
    makes every later stage's inputs new, so they all run after it. ``start`` (``--from``)
    runs that stage whatever ``finished`` says. An "off" stage neither runs nor breaks the
    chain: the stage after it reads the one before it.
    """
    for name, value in (("--from", start), ("--to", until)):
        if value is not None and value not in STAGES:
            raise ValueError(f"unknown stage {value!r} for {name}; valid: {', '.join(STAGES)}")
    plan, dirty = {}, False
    for stage in STAGES:
        if stage == "rl" and not rl:
            plan[stage] = "off"
        else:
            dirty = dirty or stage == start or stage not in finished
            plan[stage] = "run" if dirty else "skip"
        if stage == until:
            break
    return plan


def default_out(preset_name: str) -> Path:
    return runs_root() / ("speedrun" if preset_name == "cpu" else f"speedrun-{preset_name}")


def stage_record(out: Path, stage: str) -> dict | None:
    """The speedrun's entry of a finished stage (None while unfinished)."""
    if stage == "chat":
        import json

        path = out / READY
        return {"wall_s": 0.0, "metrics": {}, **json.loads(path.read_text())} \
            if path.is_file() else None
    from week09_alignment.common import read_stage

    rec = read_stage(out / stage).get("speedrun")
    return rec if rec and rec.get("done") else None


def summary_line(stage: str, rec: dict, status: str) -> str:
    m = rec.get("metrics", {})
    parts = [f"[speedrun] {stage:<9} {status} in {rec.get('wall_s', 0):.0f} s"]
    if m.get("params"):
        parts.append(f"{m['params'] / 1e6:.1f}M params")
    for key, label in (("vocab_size", "vocab"), ("train_tokens", "train tokens"),
                       ("steps", "steps"), ("val_bpb", "val bpb"), ("pydocs_bpb", "pydocs bpb"),
                       ("heldout_loss", "assistant loss"), ("reward_last", "reward"),
                       ("chat_core", "ChatCORE"), ("arithmetic", "arithmetic"),
                       ("facts", "facts"), ("string", "strings")):
        v = m.get(key)
        if isinstance(v, float):
            parts.append(f"{label} {v:.3f}" if abs(v) < 100 else f"{label} {v:,.0f}")
        elif isinstance(v, int) and key != "params":
            parts.append(f"{label} {v:,}")
    if m.get("report"):
        parts.append(m["report"])
    return " · ".join(parts)


# ---------------------------------------------------------------- the stages


def _run_stage(stage: str, p: SpeedrunPreset, out: Path, env, progress: bool) -> dict:
    """Run one stage; its metrics (what goes into the summary line and stage.json)."""
    from week12_nanochat import card, stages

    if stage == "tokenizer":
        return stages.train_tokenizer(p, out / "tokenizer", p.pretrain_data, progress)
    if stage == "base":
        return stages.train_base(p, out, env, progress)
    if stage == "sft":
        return stages.train_sft(p, out, progress)
    if stage == "rl":
        return stages.train_rl(p, out, progress)
    if stage == "eval":
        from week09_alignment.report import TaxConfig

        tc = TaxConfig(limit=p.eval_limit, gen_limit=p.eval_gen, max_tokens=p.eval_max_tokens,
                       pairs=p.eval_pairs, max_new_tokens=p.eval_max_new, seed=p.seed,
                       progress=progress)
        folders = {s: out / s for s in card.MODEL_STAGES if stage_record(out, s)}
        scores = card.measure(folders, tc, progress)
        (out / "eval").mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "eval" / "scores.json", scores)
        last = scores["columns"][list(scores["columns"])[-1]]
        return {"chat_core": last["chat_core"], "arithmetic": last.get("tool_arithmetic_tools"),
                "facts": last.get("tool_facts_tools"), "string": last.get("tool_string_tools")}
    if stage == "report":
        import json

        scores = json.loads((out / "eval" / "scores.json").read_text())
        recs = {s: {**stage_record(out, s), "status": "done"} for s in STAGES[:5]
                if stage_record(out, s)}
        md = card.write_card(out, p.to_dict(), scores, recs)
        return {"report": card.display_path(md)}
    if stage == "chat":
        final = [s for s in ("rl", "sft") if stage_record(out, s)][0]
        write_json_atomic(out / READY, {"model": final, "preset": p.name,
                                        "report": "report/report.md",
                                        "finished": datetime.now(timezone.utc).isoformat()})
        return {"model": final}
    raise ValueError(f"unknown stage {stage!r}; valid: {', '.join(STAGES)}")


def run_speedrun(p: SpeedrunPreset, out: str | Path | None = None, start: str | None = None,
                 progress: bool = True, until: str | None = None) -> dict:
    """Run the stages not yet finished (or ``start`` and every later one) into ``out``,
    stopping after ``until``; returns {stage: "ran" | "skipped" | "off"}."""
    from week11_scale.launch import barrier, cleanup, init_distributed

    out = Path(out) if out is not None else default_out(p.name)
    plan = schedule({s for s in STAGES if stage_record(out, s) is not None}, start, until, p.rl)
    env = init_distributed("cuda" if p.device == "cuda" else "cpu")
    status: dict[str, str] = {}
    try:
        redo = [s for s, what in plan.items() if what == "run"]
        if redo and env.is_main:
            (out / READY).unlink(missing_ok=True)        # first: no half-redone run looks done
            for s in STAGES[STAGES.index(start):] if start is not None else ():
                if s != "chat" and (out / s).exists():
                    shutil.rmtree(out / s)
            for s in redo[1:]:  # after the first stage that runs, every input is new: a
                if s != "chat" and (out / s).exists():  # later stage starts from nothing
                    shutil.rmtree(out / s)  # (the first one resumes its own checkpoints)
            if stage_record(out, redo[0]) is not None and redo[0] != "chat":
                shutil.rmtree(out / redo[0])  # finished, yet asked to run: from nothing
        barrier()
        out.mkdir(parents=True, exist_ok=True)
        for stage in STAGES:
            if not env.is_main and stage != "base":     # rank 0 alone, but for the base
                if stage == "tokenizer":
                    barrier()                            # wait for rank 0's shards
                    continue
                break
            if stage not in plan:
                break
            if plan[stage] == "off":
                status[stage] = "off"
            elif plan[stage] == "skip":
                status[stage] = "skipped"
                print(summary_line(stage, stage_record(out, stage), "skipped, done earlier"),
                      flush=True)
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                metrics = _run_stage(stage, p, out, env, progress)
                rec = {"done": True, "wall_s": time.perf_counter() - t0,
                       "cpu_s": time.process_time() - c0, "metrics": metrics,
                       "preset": p.name,
                       "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                if env.is_main and stage != "chat":
                    from week12_nanochat.stages import write_stage_file

                    write_stage_file(out / stage, {"speedrun": rec})
                status[stage] = "ran"
                if env.is_main:
                    print(summary_line(stage, rec, "done"), flush=True)
            if stage == "tokenizer":
                barrier()                                # the other ranks wait for the shards
            if stage == until:
                break
    finally:
        cleanup()
    return status


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # bad input: one line, exit 2
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def make_parser() -> argparse.ArgumentParser:
    plans = "\n".join("  " + plan_text(PRESETS[n]) for n in ("d20", "1b"))
    p = _Parser(prog="python -m week12_nanochat.speedrun", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter,
                epilog="presets:\n" + "\n".join(f"  {n}: {PRESETS[n].about}"
                                                for n in PRESET_NAMES)
                + "\nthe GPU presets, by week11's planner:\n" + plans)
    p.add_argument("--preset", default="cpu", help=f"{' | '.join(PRESET_NAMES)} (default cpu)")
    p.add_argument("--out", help="default: <runs>/speedrun (cpu) or <runs>/speedrun-<preset>")
    p.add_argument("--from", dest="start", metavar="STAGE",
                   help=f"redo this stage and every later one: {', '.join(STAGES)}")
    p.add_argument("--to", dest="until", metavar="STAGE", help="stop after this stage")
    p.add_argument("--pretrain-data", help="pydocs | fineweb-edu | climbmix | a local path "
                                           "(default: the preset's)")
    p.add_argument("--sft-data", help="a comma list of default | smoltalk | gsm8k (default: "
                                      "the preset's; SmolTalk and GSM8K by name, week09)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    a = parser.parse_args(argv)
    if a.preset not in PRESETS:
        parser.error(f"unknown --preset {a.preset!r}; valid: {', '.join(PRESET_NAMES)}")
    if a.start is not None and a.start not in STAGES:
        parser.error(f"unknown --from stage {a.start!r}; valid: {', '.join(STAGES)}")
    if a.until is not None and a.until not in STAGES:
        parser.error(f"unknown --to stage {a.until!r}; valid: {', '.join(STAGES)}")
    if a.sft_data is not None and set(a.sft_data.split(",")) - set(SFT_DATA):
        parser.error(f"unknown --sft-data {a.sft_data!r}; valid: a comma list of "
                     f"{', '.join(SFT_DATA)}")
    over = {k: v for k, v in (("pretrain_data", a.pretrain_data), ("sft_data", a.sft_data))
            if v is not None}
    p = preset(a.preset, **over)
    from week12_nanochat.stages import pretrain_source

    try:
        pretrain_source(p.pretrain_data)
    except ValueError as e:
        parser.error(str(e))
    if p.device == "cuda":
        print(f"[speedrun] {plan_text(p)}", flush=True)
    run_speedrun(p, a.out, a.start, progress=not a.no_progress, until=a.until)
    return 0


if __name__ == "__main__":
    sys.exit(main())
